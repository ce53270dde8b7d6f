//! The gdb stub's packet handlers (`gdb::serve_connection`: gdbstub's state machine and
//! vmscope's target, breakpoint, resume, stop and `monitor` handlers) against a real
//! unikernel guest on KVM, paused as gdb finds it when it attaches. The input is what a
//! client sends; the stub's replies are swallowed.
//!
//! Input: grace u8 | the client's bytes (packets, acks, Ctrl-C). When the bytes run out,
//! the connection reports "nothing yet" `grace % 4` more times (so a resumed guest can stop
//! and a Ctrl-C be answered, each wait ≤ 5 ms) and then that the client hung up.
//!
//! One machine per fuzzing process, reused: after each input the vCPUs are paused and the
//! breakpoints cleared. An input that could have changed the guest (memory or register
//! writes, resuming, restarting, killing) or that ended it gets a fresh machine for the
//! next input, so every input starts from the same guest state.
#![no_main]

use gdbstub::conn::{Connection, ConnectionExt};
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use std::io::{Error, ErrorKind};
use std::time::Duration;
use vmm::arch::x86_64::Ring;
use vmm::devices::console::Console;
use vmm::machine::{ElfGuestConfig, Machine};
use vmm::vstate::vcpu::VcpuEventKind;

/// The client: the fuzz input as the bytes it sends.
struct Client<'a> {
    input: &'a [u8],
    /// "Nothing yet" answers left once the input is used up.
    grace: u8,
}

impl Connection for Client<'_> {
    type Error = Error;

    fn write(&mut self, _byte: u8) -> Result<(), Error> {
        Ok(())
    }

    fn write_all(&mut self, _buf: &[u8]) -> Result<(), Error> {
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Error> {
        Ok(())
    }
}

impl ConnectionExt for Client<'_> {
    fn read(&mut self) -> Result<u8, Error> {
        let (&byte, rest) = self.input.split_first().ok_or_else(|| Error::from(ErrorKind::UnexpectedEof))?;
        self.input = rest;
        Ok(byte)
    }

    fn peek(&mut self) -> Result<Option<u8>, Error> {
        if let Some(&byte) = self.input.first() {
            return Ok(Some(byte));
        }
        if self.grace > 0 {
            self.grace -= 1;
            return Ok(None);
        }
        Err(ErrorKind::UnexpectedEof.into())
    }
}

/// The guest: the built-in unikernel at CPL0 (single-stepping works there on PVM too),
/// two vCPUs (the second parked, as for any ELF guest), held before its first instruction.
fn boot() -> Machine {
    // The vCPU threads' seccomp filters would trap the system calls of the sanitizer and
    // libFuzzer runtimes (which share those threads); the filters have their own tests.
    vmm::seccomp::set_policy(vmm::seccomp::Policy::Off);
    let cfg = ElfGuestConfig {
        name: "unikernel".into(),
        elf: vmm::machine::ElfImage::Static(guests::unikernel::ELF),
        cmdline: "compute 1000000000".into(),
        mem_mib: 16,
        vcpus: 2,
        ring: Ring::Ring0,
        start_paused: true,
        doorbell: false,
        ring_consumer: Default::default(),
    };
    // A boot failed once in a long run on a busy host and did not fail again with the same
    // input (the message went to the closed stderr): try again before giving up, and name
    // the error when giving up.
    let mut attempt = 0;
    let machine = loop {
        match Machine::boot_elf(&cfg, Console::writer(std::io::sink())) {
            Ok(m) => break m,
            Err(e) if attempt < 5 => {
                attempt += 1;
                eprintln!("gdb_packets: booting the unikernel failed ({e}); attempt {attempt} of 5 again");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("cannot boot the unikernel for the gdb fuzz target: {e}"),
        }
    };
    // Every vCPU thread has started once it answers: LeakSanitizer, which checks after
    // some inputs, takes the start closure of a thread not yet scheduled for a leak.
    for index in 0..machine.vcpu_count() {
        let _ = machine.snapshot(index);
    }
    machine
}

struct Guest {
    machine: Machine,
    symbols: inspect::symbols::SymbolTable,
}

thread_local! {
    static GUEST: RefCell<Option<Guest>> = const { RefCell::new(None) };
}

/// Whether `bytes` hold a packet that can change the guest for the next input: memory or
/// register writes, resuming or stepping, restart, kill (`$` or `}`-escaped `$` followed by
/// the command letter; other packets only read, or set state the next session drops).
fn may_change_guest(bytes: &[u8]) -> bool {
    bytes.windows(2).any(|w| w[0] == b'$' && b"MXGPcCsSvRrkiIQ".contains(&w[1])) || bytes.contains(&0x03)
}

/// Pauses every vCPU and waits until each has taken the pause; false if the guest ended.
fn quiesce(machine: &Machine) -> bool {
    machine.pause_all();
    for index in 0..machine.vcpu_count() {
        if machine.snapshot(index).is_err() {
            return false;
        }
    }
    let mut alive = true;
    while let Some(event) = machine.next_event(Duration::ZERO) {
        if let VcpuEventKind::Stopped { reason, .. } = event.kind {
            if reason.is_fatal() || matches!(reason, vmm::vstate::vcpu::StopReason::GuestExit { .. }) {
                alive = false;
            }
        }
    }
    alive
}

fuzz_target!(|data: &[u8]| {
    let (grace, bytes) = data.split_first().map_or((0, data), |(g, rest)| (g % 4, rest));
    GUEST.with(|cell| {
        let mut slot = cell.borrow_mut();
        let guest = slot.get_or_insert_with(|| {
            let machine = boot();
            let symbols = inspect::symbols::SymbolTable::from_elf("unikernel", guests::unikernel::ELF)
                .unwrap_or_default();
            Guest { machine, symbols }
        });
        let client = Client { input: bytes, grace };
        let end =
            gdb::serve_connection(&guest.machine, &guest.symbols, client).expect("the stub's configuration");
        let killed = matches!(end.reason, Ok(gdbstub::stub::DisconnectReason::Kill));
        let alive = quiesce(&guest.machine);
        guest.machine.clear_breakpoints();
        if killed || !alive || end.guest.is_some() || end.resumed || may_change_guest(bytes) {
            *slot = None;
        }
    });
});
