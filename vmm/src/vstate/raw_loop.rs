//! The smallest VMM that can serve a port I/O exit: one VM, one vCPU, `KVM_RUN`, look at
//! the exit, run again. No devices, no bus, no statistics, no threads, no seccomp. It runs
//! a few bytes of hand-assembled guest code (an `out` loop, [`loop_code`]) at CPL0 or CPL3
//! in long mode, so `vmscope measure exits` can show vmscope's own exit path as a ratio to
//! the cheapest one this host allows. The same bytes are also an ELF ([`loop_elf`]) that
//! `vmscope run --elf` boots, so both sides of the ratio run the very same instructions.
//!
//! The set-up reuses vmscope's (memory, GDT and TSS, identity page tables, long-mode
//! registers): it is not timed. What is timed is the loop alone, from the first `KVM_RUN`
//! to the exit on [`DONE_PORT`]; a caller that wants the cost of one exit alone takes the
//! difference of a run with N iterations and one with none, as `measure exits` does.
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
/// The port the guest writes to when the loop is done: vmscope's exit port, so the very
/// same code also runs as an ELF guest under `vmscope run --elf` ([`loop_elf`]), which it
/// ends with status 0.
pub const DONE_PORT: u16 = vmscope_abi::PORT_EXIT;
/// Where the guest code is placed (and entered).
pub const CODE_GPA: u64 = 0x10_0000;
/// Stop after this many exits that are not the loop's: the guest code has gone wrong.
const MAX_OTHER_EXITS: u64 = 1000;
/// The byte the loop writes (what a console shows of it).
const LOOP_BYTE: u8 = b'.';

/// The guest: `iterations` times `out dx, al` to [`LOOP_PORT`], then `out dx, eax` of 0 to
/// [`DONE_PORT`] and a jump to itself. It needs no stack, no memory and no register set
/// by the VMM, so the raw loop and vmscope run exactly the same instructions.
pub fn loop_code(iterations: u32) -> Vec<u8> {
    let mut code = vec![0xb9]; // mov ecx, imm32 (zero-extended into rcx)
    code.extend_from_slice(&iterations.to_le_bytes());
    code.push(0xba); // mov edx, imm32
    code.extend_from_slice(&u32::from(LOOP_PORT).to_le_bytes());
    code.extend_from_slice(&[
        0xb0, LOOP_BYTE, // mov al, LOOP_BYTE
        0x48, 0x85, 0xc9, // test rcx, rcx
        0x74, 0x06, //       jz done
        0xee, //             loop: out dx, al
        0x48, 0xff, 0xc9, // dec rcx
        0x75, 0xfa, //       jnz loop
        0xba, //             done: mov edx, imm32
    ]);
    code.extend_from_slice(&u32::from(DONE_PORT).to_le_bytes());
    code.extend_from_slice(&[
        0x31, 0xc0, // xor eax, eax
        0xef, //       out dx, eax
        0xeb, 0xfe, // jmp $
    ]);
    code
}

/// [`loop_code`] as an ELF (one segment at [`CODE_GPA`], entered there), for
/// `vmscope run --elf`.
pub fn loop_elf(iterations: u32) -> Vec<u8> {
    crate::test_utils::tiny_elf(CODE_GPA, &loop_code(iterations), object::elf::EM_X86_64.0)
}

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
pub fn run(ring: Ring, iterations: u32) -> Result<RawLoop, RawLoopError> {
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
    write_phys(&mem, Gpa(CODE_GPA), &loop_code(iterations))?;
    let mut fd = vm.create_vcpu(&kvm, 0, 1)?;
    let entry = LongModeEntry { entry: CODE_GPA, stack: MIN_MEM_SIZE - 8, arg: 0, cr3: tables.cr3(), ring };
    vcpu::enter(&fd, &long_mode_regs(&entry), |base| long_mode_sregs(base, &entry))
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
                assert_eq!(r.port_exits, u64::from(n), "CPL{}", ring.cpl());
                assert_eq!(r.ns_per_exit() == 0.0, n == 0);
            }
        }
    }

    #[test]
    fn the_guest_code_jumps_where_it_says() {
        let code = loop_code(0x1234_5678);
        assert_eq!(code[..5], [0xb9, 0x78, 0x56, 0x34, 0x12]);
        assert_eq!(code[5..10], [0xba, 0xf8, 0x03, 0, 0]);
        // jz at 15 (2 bytes) lands on `done` at 23; jnz at 21 lands back on the `out` at 17.
        assert_eq!(code[15..17], [0x74, 23 - 17]);
        assert_eq!(code[17], 0xee);
        assert_eq!(code[21..23], [0x75, (17i8 - 23) as u8]);
        assert_eq!(code[23..28], [0xba, 0x02, 0x05, 0, 0]);
        assert_eq!(code[28..], [0x31, 0xc0, 0xef, 0xeb, 0xfe]);
    }

    #[test]
    fn the_loop_elf_is_a_guest_vmscope_loads() {
        let elf = loop_elf(3);
        let mem = create_guest_memory(MIN_MEM_SIZE).unwrap();
        let loaded = crate::loader::load_elf(&mem, "loop.elf", &elf, MIN_MEM_SIZE).unwrap();
        assert_eq!(loaded.entry, CODE_GPA);
        let mut back = vec![0; loop_code(3).len()];
        crate::vstate::memory::read_phys_exact(&mem, Gpa(CODE_GPA), &mut back).unwrap();
        assert_eq!(back, loop_code(3));
    }
}
