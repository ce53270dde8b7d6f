//! vmscope's hypercall ports (see the `vmscope-abi` crate): console write and wall-clock
//! time. The guest passes the guest-physical address of an argument struct; a malformed
//! address is answered in the struct (or ignored when the struct itself is unreachable),
//! never trusted.

use super::console::Console;
use crate::vstate::memory::{write_phys, GuestMemory, PhysView};
use inspect::{Gpa, GuestPhysMemory};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use vm_memory::ByteValued;
use vmscope_abi::{ConsoleWrite, WallTime, PORT_CONSOLE_WRITE, PORT_WALL_TIME};

/// The largest buffer one console write may pass.
pub const MAX_CONSOLE_WRITE: u64 = 1 << 20;

/// A `ByteValued` wrapper so argument structs can be read from guest memory.
#[derive(Clone, Copy, Default)]
#[repr(transparent)]
struct Arg<T>(T);
// SAFETY: the ABI structs are `repr(C)` and made only of `u64` fields, so they have no
// padding and every bit pattern is a valid value.
unsafe impl ByteValued for Arg<ConsoleWrite> {}
// SAFETY: as above.
unsafe impl ByteValued for Arg<WallTime> {}

/// What a hypercall did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HypercallOutcome {
    /// Handled (possibly with an error code written back to the guest).
    Done,
}

/// Hypercalls refused, by reason (shown under `"hypercalls"` in `--stats-json`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct HypercallRefusals {
    /// The argument struct was not (wholly) in RAM: nothing was done and nothing written.
    pub argument_outside_ram: u64,
    /// A console write whose buffer was outside RAM, wrapped or was longer than
    /// [`MAX_CONSOLE_WRITE`]: answered `u64::MAX` in the struct's `ret`.
    pub console_buffer_refused: u64,
}

#[derive(Debug, Default)]
struct Counters {
    argument_outside_ram: AtomicU64,
    console_buffer_refused: AtomicU64,
}

/// The hypercall handler of one VM.
#[derive(Clone, Debug)]
pub struct Hypercalls {
    mem: GuestMemory,
    console: Console,
    refused: Arc<Counters>,
}

impl Hypercalls {
    /// Handles hypercalls against `mem`, writing console output to `console`.
    pub fn new(mem: GuestMemory, console: Console) -> Self {
        Self { mem, console, refused: Arc::default() }
    }

    /// How many hypercalls were refused so far, by reason.
    pub fn refusals(&self) -> HypercallRefusals {
        HypercallRefusals {
            argument_outside_ram: self.refused.argument_outside_ram.load(Ordering::Relaxed),
            console_buffer_refused: self.refused.console_buffer_refused.load(Ordering::Relaxed),
        }
    }

    /// The console sink.
    pub fn console(&self) -> &Console {
        &self.console
    }

    /// Handles the hypercall on `port` whose argument struct is at GPA `arg`.
    pub fn handle(&self, port: u16, arg: u32) -> HypercallOutcome {
        let arg = Gpa(u64::from(arg));
        match port {
            PORT_CONSOLE_WRITE => self.console_write(arg),
            PORT_WALL_TIME => self.wall_time(arg),
            _ => {}
        }
        HypercallOutcome::Done
    }

    fn read_arg<T: Copy + Default>(&self, gpa: Gpa) -> Option<Arg<T>>
    where
        Arg<T>: ByteValued,
    {
        let mut a = Arg::<T>::default();
        let len = std::mem::size_of::<T>();
        let whole = PhysView(&self.mem).read_phys(gpa, a.as_mut_slice()) == len;
        if !whole {
            self.refused.argument_outside_ram.fetch_add(1, Ordering::Relaxed);
        }
        whole.then_some(a)
    }

    /// Whether the `size_of::<T>()` bytes at `gpa` are all RAM (counted when not).
    fn arg_in_ram<T: Copy + Default>(&self, gpa: Gpa) -> bool
    where
        Arg<T>: ByteValued,
    {
        self.read_arg::<T>(gpa).is_some()
    }

    fn console_write(&self, gpa: Gpa) {
        let Some(Arg(mut req)) = self.read_arg::<ConsoleWrite>(gpa) else {
            return;
        };
        let mut buf = vec![0u8; req.len.min(MAX_CONSOLE_WRITE) as usize];
        let ok = req.len <= MAX_CONSOLE_WRITE
            && PhysView(&self.mem).read_phys(Gpa(req.buf_gpa), &mut buf) == buf.len();
        req.ret = if ok {
            self.console.write(&buf);
            req.len
        } else {
            self.refused.console_buffer_refused.fetch_add(1, Ordering::Relaxed);
            u64::MAX
        };
        let _ = write_phys(&self.mem, gpa, Arg(req).as_slice());
    }

    fn wall_time(&self, gpa: Gpa) {
        if !self.arg_in_ram::<WallTime>(gpa) {
            return;
        }
        let nsecs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
        let _ = write_phys(&self.mem, gpa, Arg(WallTime { nsecs }).as_slice());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vstate::memory::create_guest_memory;

    fn setup() -> (Hypercalls, GuestMemory, Console) {
        let mem = create_guest_memory(4 << 20).unwrap();
        let console = Console::buffer();
        (Hypercalls::new(mem.clone(), console.clone()), mem, console)
    }

    fn ret_at(mem: &GuestMemory, gpa: u64) -> u64 {
        PhysView(mem).read_u64(Gpa(gpa + 16)).unwrap()
    }

    #[test]
    fn console_write_copies_the_buffer() {
        let (hc, mem, console) = setup();
        write_phys(&mem, Gpa(0x5000), b"hello").unwrap();
        let req = ConsoleWrite { buf_gpa: 0x5000, len: 5, ret: 0 };
        write_phys(&mem, Gpa(0x6000), Arg(req).as_slice()).unwrap();
        hc.handle(PORT_CONSOLE_WRITE, 0x6000);
        assert_eq!(console.take_buffer(), b"hello");
        assert_eq!(ret_at(&mem, 0x6000), 5);
    }

    #[test]
    fn hostile_arguments_are_refused() {
        let (hc, mem, console) = setup();
        for (buf_gpa, len) in
            [(u64::MAX - 2, 8), (0x3f_fffe, 4), (0x5000, u64::MAX), (0, MAX_CONSOLE_WRITE + 1)]
        {
            let req = ConsoleWrite { buf_gpa, len, ret: 0 };
            write_phys(&mem, Gpa(0x6000), Arg(req).as_slice()).unwrap();
            hc.handle(PORT_CONSOLE_WRITE, 0x6000);
            assert_eq!(ret_at(&mem, 0x6000), u64::MAX, "buf {buf_gpa:#x} len {len:#x}");
        }
        // The argument struct itself outside memory: nothing happens, nothing panics.
        hc.handle(PORT_CONSOLE_WRITE, 0xffff_fff0);
        hc.handle(PORT_WALL_TIME, 0x3f_fffc);
        hc.handle(PORT_WALL_TIME, 0x40_0000);
        assert!(console.take_buffer().is_empty());
        let last = PhysView(&mem).read_u32(Gpa(0x3f_fffc)).unwrap();
        assert_eq!(last, 0, "a straddling wall-time struct is not half written");
        assert_eq!(
            hc.refusals(),
            HypercallRefusals { argument_outside_ram: 3, console_buffer_refused: 4 },
            "every refusal is counted"
        );
    }

    #[test]
    fn wall_time_is_plausible() {
        let (hc, mem, _) = setup();
        hc.handle(PORT_WALL_TIME, 0x7000);
        let ns = PhysView(&mem).read_u64(Gpa(0x7000)).unwrap();
        assert!(ns > 1_600_000_000_000_000_000);
    }
}
