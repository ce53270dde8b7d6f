//! The smallest VMM that can serve a port I/O exit: one VM, one vCPU, `KVM_RUN`, look at
//! the exit, run again. No devices, no bus, no statistics, no threads, no seccomp. It runs
//! a few bytes of hand-assembled guest code (an `out` loop) at CPL0 or CPL3 in long mode,
//! so `vmscope measure exits` can show vmscope's own exit path as a ratio to the cheapest
//! one this host allows.
//!
//! The set-up reuses vmscope's (memory, GDT and TSS, identity page tables, long-mode
//! registers): it is not timed. What is timed is the loop alone.
//!
//! ```no_run
//! use vmm::arch::x86_64::Ring;
//! let r = vmm::vstate::raw_loop::run(Ring::Ring0, 1000)?;
//! assert_eq!(r.port_exits, 1000);
//! println!("{:.2} us per exit", r.ns_per_exit() / 1e3);
//! # Ok::<(), vmm::vstate::raw_loop::RawLoopError>(())
//! ```

use super::kvm::{KvmError, KvmSystem};
use super::memory::{create_guest_memory, write_phys, MemoryError, MIN_MEM_SIZE};
use super::vm::{Vm, VmError};
use crate::arch::x86_64::regs::{long_mode_regs, long_mode_sregs, LongModeEntry};
use crate::arch::x86_64::{gdt, paging, vcpu, Ring};
use inspect::Gpa;
use kvm_ioctls::VcpuExit;
use std::time::Instant;
use vmscope_abi::layout;

/// The port the loop writes to (COM1's data register, as the unikernel's `uart` workload).
pub const LOOP_PORT: u16 = 0x3f8;
/// The port the guest writes to when the loop is done.
pub const DONE_PORT: u16 = 0x3f9;
/// Where the guest code is placed (and entered).
const CODE_GPA: u64 = 0x10_0000;
/// Stop after this many exits that are not the loop's: the guest code has gone wrong.
const MAX_OTHER_EXITS: u64 = 1000;

/// The guest: `RCX` iterations of `out dx, al` (`RDX` = [`LOOP_PORT`]), then one `out` to
/// `RSI` ([`DONE_PORT`]) and a jump to itself.
const GUEST_CODE: [u8; 16] = [
    0x48, 0x85, 0xc9, // test rcx, rcx
    0x74, 0x06, //       jz done
    0xee, //             loop: out dx, al
    0x48, 0xff, 0xc9, // dec rcx
    0x75, 0xfa, //       jnz loop
    0x89, 0xf2, //       done: mov edx, esi
    0xee, //             out dx, al
    0xeb, 0xfe, //       jmp $
];

/// Errors from the raw loop.
#[derive(Debug, thiserror::Error)]
pub enum RawLoopError {
    /// /dev/kvm could not be opened or lacks a capability.
    #[error(transparent)]
    Kvm(#[from] KvmError),
    /// The VM or its vCPU could not be created.
    #[error(transparent)]
    Vm(#[from] VmError),
    /// Guest memory could not be created or written.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// The page tables could not be built.
    #[error(transparent)]
    Paging(#[from] paging::PagingError),
    /// Setting the vCPU's entry state failed.
    #[error("{op} on the raw loop's vCPU failed")]
    Setup {
        /// The ioctl.
        op: &'static str,
        /// KVM's errno.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// `KVM_RUN` failed.
    #[error("KVM_RUN failed after {exits} loop exits")]
    Run {
        /// Loop exits before the failure.
        exits: u64,
        /// KVM's errno.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// The guest stopped in a way the loop code never does.
    #[error("the raw loop's guest ended with {exit} after {exits} loop exits at CPL{cpl}")]
    Unexpected {
        /// The exit, as kvm-ioctls names it.
        exit: String,
        /// Loop exits before it.
        exits: u64,
        /// The privilege level the guest ran at.
        cpl: u8,
    },
}

/// What one run of the loop gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawLoop {
    /// `KVM_EXIT_IO` exits on [`LOOP_PORT`] (the iterations, when all went well).
    pub port_exits: u64,
    /// Other exits that were answered by running again (`EINTR`, a host signal).
    pub other_exits: u64,
    /// Nanoseconds from the first `KVM_RUN` to the exit on [`DONE_PORT`].
    pub ns: u64,
}

impl RawLoop {
    /// Nanoseconds per loop exit (the whole round trip: guest `out`, KVM exit, this loop,
    /// re-entry); 0 without exits.
    pub fn ns_per_exit(&self) -> f64 {
        if self.port_exits == 0 {
            0.0
        } else {
            self.ns as f64 / self.port_exits as f64
        }
    }
}

/// Runs `iterations` port writes at `ring` and times them.
pub fn run(ring: Ring, iterations: u64) -> Result<RawLoop, RawLoopError> {
    let kvm = KvmSystem::open()?;
    let mem = create_guest_memory(MIN_MEM_SIZE)?;
    let vm = Vm::new(&kvm, &mem, false)?;
    let gdt_bytes: Vec<u8> = gdt::gdt_entries().iter().flat_map(|e| e.to_le_bytes()).collect();
    write_phys(&mem, Gpa(layout::GDT_GPA), &gdt_bytes)?;
    write_phys(&mem, Gpa(layout::TSS_GPA), &gdt::tss_image())?;
    let tables = paging::identity_map(MIN_MEM_SIZE, ring == Ring::Ring3)?;
    for (gpa, bytes) in tables.bytes() {
        write_phys(&mem, gpa, &bytes)?;
    }
    write_phys(&mem, Gpa(CODE_GPA), &GUEST_CODE)?;
    let mut fd = vm.create_vcpu(&kvm, 0, 1)?;
    let entry = LongModeEntry { entry: CODE_GPA, stack: MIN_MEM_SIZE - 8, arg: 0, cr3: tables.cr3(), ring };
    let mut regs = long_mode_regs(&entry);
    regs.rcx = iterations;
    regs.rdx = LOOP_PORT.into();
    regs.rsi = DONE_PORT.into();
    regs.rax = u64::from(b'r');
    vcpu::enter(&fd, &regs, |base| long_mode_sregs(base, &entry))
        .map_err(|e| RawLoopError::Setup { op: e.op, source: e.source })?;

    let (mut port_exits, mut other_exits) = (0u64, 0u64);
    let start = Instant::now();
    loop {
        match fd.run() {
            Ok(VcpuExit::IoOut(LOOP_PORT, _)) => port_exits += 1,
            Ok(VcpuExit::IoOut(DONE_PORT, _)) => break,
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => other_exits += 1,
            Err(source) => return Err(RawLoopError::Run { exits: port_exits, source }),
            Ok(other) => {
                let exit = format!("{other:?}");
                return Err(RawLoopError::Unexpected { exit, exits: port_exits, cpl: ring.cpl() });
            }
        }
        if other_exits > MAX_OTHER_EXITS {
            let exit = format!("{other_exits} interrupted runs");
            return Err(RawLoopError::Unexpected { exit, exits: port_exits, cpl: ring.cpl() });
        }
    }
    let ns = start.elapsed().as_nanos() as u64;
    Ok(RawLoop { port_exits, other_exits, ns })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loop_exits_once_per_iteration_at_both_privilege_levels() {
        for ring in [Ring::Ring0, Ring::Ring3] {
            for n in [0, 1, 500] {
                let r = run(ring, n).unwrap_or_else(|e| panic!("CPL{} with {n}: {e}", ring.cpl()));
                assert_eq!(r.port_exits, n, "CPL{}", ring.cpl());
                assert_eq!(r.ns_per_exit() == 0.0, n == 0);
            }
        }
    }

    #[test]
    fn the_guest_code_jumps_where_it_says() {
        // jz at 3 (2 bytes) lands on `done` at 11; jnz at 9 lands back on the `out` at 5.
        assert_eq!(GUEST_CODE[3..5], [0x74, 11 - 5]);
        assert_eq!(GUEST_CODE[9..11], [0x75, (5i8 - 11) as u8]);
        assert_eq!(GUEST_CODE[11..14], [0x89, 0xf2, 0xee]);
    }
}
