//! The contract between vmscope's VMM and a guest booted with `vmscope run --elf`
//! (vmscope's own unikernel is one such guest).
//!
//! This crate is `no_std` and has no dependencies, so the VMM and the freestanding
//! unikernel compile the very same definitions.
//!
//! # Entry
//! The VMM loads the ELF's `PT_LOAD` segments at their physical addresses (at or above
//! [`KERNEL_MIN_GPA`]) and enters `e_entry` (the `_start` symbol) in 64-bit long mode with:
//! - paging on, guest-virtual = guest-physical for all of guest memory (2 MiB pages);
//!   every level has the U/S bit set when the guest runs at CPL3;
//! - `CS` a 64-bit code segment and `SS`/`DS`/`ES` flat data segments at the chosen CPL
//!   (see [`gdt`]); at CPL3 `in`/`out` are allowed (`RFLAGS.IOPL` = 3 and a TSS I/O
//!   bitmap that allows every port, see [`layout::TSS_GPA`]);
//! - no IDT (an exception ends the VM with a triple fault, which the VMM reports);
//! - `RDI` = guest-physical address of a [`BootInfo`];
//! - `RSP` = top of guest memory minus 8 (16-byte aligned as after a `call`).
//!
//! # Hypercalls
//! A hypercall is one `out dx, eax` to the call's port with `EAX` = the guest-physical
//! address of its argument struct (as in Solo5's hvt); the VMM writes results back into the
//! struct before the guest resumes. [`PORT_EXIT`] is the one exception: its value is the exit
//! code itself, so it doubles as a plain "exit port" for any guest.
#![no_std]
#![warn(missing_docs)]

/// The lowest guest-physical address a guest ELF may load a segment at (1 MiB); the VMM
/// keeps its boot structures below it.
pub const KERNEL_MIN_GPA: u64 = 0x10_0000;

/// `BootInfo::magic`: "VMSCOPE1" in little-endian.
pub const BOOT_MAGIC: u64 = u64::from_le_bytes(*b"VMSCOPE1");
/// An ELF note owned by `"vmscope"` of this type says the file follows the direct-entry
/// contract (entered in long mode at `e_entry`, [`BOOT_MAGIC`] boot info, the ports below),
/// so `vmscope run --elf` enters it there even when it has a PVH entry too.
pub const NOTE_DIRECT_ENTRY: u32 = 1;
/// The owner name of vmscope's ELF notes.
pub const NOTE_OWNER: &[u8] = b"vmscope";

/// Hypercall: write a buffer to the guest console in one exit. Argument: [`ConsoleWrite`].
pub const PORT_CONSOLE_WRITE: u16 = 0x500;
/// Hypercall: read the host's wall-clock time. Argument: [`WallTime`].
pub const PORT_WALL_TIME: u16 = 0x501;
/// Exit port: stop the VM; the 32-bit value written is the exit code.
pub const PORT_EXIT: u16 = 0x502;
/// Doorbell: a write to this port (any value, any size) signals a KVM ioeventfd inside the
/// host kernel and the guest resumes at once, with no exit to the VMM; a VMM thread counts
/// the rings. Without the ioeventfd (another VMM) it is an ordinary, ignored port write.
pub const PORT_DOORBELL: u16 = 0x503;
/// Sleep: the 32-bit value written is a duration in microseconds (at most
/// [`SLEEP_MAX_US`]; more is cut to it). The VMM keeps the vCPU out of the guest that long,
/// so an idle guest costs no CPU, while a debugger's requests are still served: a pause
/// keeps what is left of the sleep for when the guest runs again, a step ends it. Another
/// VMM ignores the write (the guest then simply does not sleep).
pub const PORT_SLEEP: u16 = 0x504;
/// The longest sleep one [`PORT_SLEEP`] write asks for: one second.
pub const SLEEP_MAX_US: u32 = 1_000_000;

/// A guest-physical address in the hole below 4 GiB that no memory backs: the VMM maps its
/// 2 MiB page in the boot page tables (uncached), so a load or store there is an MMIO exit
/// to the VMM, which ignores writes and answers reads with all ones.
pub const MMIO_PROBE_GPA: u64 = 0xfe00_0000;

/// Fixed guest-physical addresses of the structures the VMM lays out below
/// [`KERNEL_MIN_GPA`].
pub mod layout {
    /// The GDT (see [`super::gdt`]).
    pub const GDT_GPA: u64 = 0x1000;
    /// The 64-bit TSS that `TR` points at: 104 bytes, then an I/O permission bitmap that
    /// allows every port (8 KiB + a terminating 0xff byte). PVM runs CPL3 guest code with
    /// IOPL 0 whatever RFLAGS says, and its emulator then consults this bitmap for
    /// `in`/`out`.
    pub const TSS_GPA: u64 = 0x5000;
    /// The [`super::BootInfo`] struct.
    pub const BOOT_INFO_GPA: u64 = 0x3000;
    /// The command line, NUL-terminated, at most [`CMDLINE_MAX`] bytes including the NUL.
    pub const CMDLINE_GPA: u64 = 0x4000;
    /// Size of the command-line area.
    pub const CMDLINE_MAX: u64 = 0x1000;
    /// The PML4 table; the PDPT follows at +0x1000, then page directories.
    pub const PML4_GPA: u64 = 0x9000;
    /// The PDPT.
    pub const PDPT_GPA: u64 = 0xa000;
    /// The first page directory (one per GiB of guest memory follows it).
    pub const PD_GPA: u64 = 0xb000;
    /// The end of the area the page directories may use (32 of them: 32 GiB).
    pub const PD_END_GPA: u64 = 0x2_b000;
    /// The shared byte ring's header (see [`super::ring`]).
    pub const RING_HEADER_GPA: u64 = 0x3_0000;
    /// The shared byte ring's data.
    pub const RING_DATA_GPA: u64 = 0x3_1000;
}

/// A byte ring shared by the guest (producer) and a VMM thread (consumer), the mechanism of
/// a virtqueue reduced to its core: the guest copies bytes in and advances `head`; the VMM
/// copies them out and advances `tail`; the guest kicks (rings [`PORT_DOORBELL`]) only when
/// the consumer has said it is going to sleep. Indices count bytes from 0 and never wrap;
/// a byte lives at `RING_DATA_GPA + index % RING_SIZE`.
///
/// The handshake needs sequentially consistent accesses on both sides: the producer stores
/// `head` then loads `consumer_sleeping`; the consumer stores `consumer_sleeping = 1` then
/// loads `head` again before it sleeps, so one of them always sees the other.
pub mod ring {
    /// Bytes in the ring.
    pub const RING_SIZE: u64 = 0x1_0000;
    /// Offset of `head` (u64): bytes the producer has written.
    pub const HEAD: u64 = 0;
    /// Offset of `tail` (u64): bytes the consumer has taken.
    pub const TAIL: u64 = 8;
    /// Offset of `consumer_sleeping` (u32): 1 while the consumer waits for a kick.
    pub const CONSUMER_SLEEPING: u64 = 16;
}

/// GDT selectors the VMM installs. Indices: 1 = 64-bit code DPL0, 2 = data DPL0,
/// 3 = 64-bit code DPL3, 4 = data DPL3, 5-6 = the 64-bit TSS descriptor.
pub mod gdt {
    /// Kernel (CPL0) code selector.
    pub const KERNEL_CS: u16 = 0x08;
    /// Kernel (CPL0) data selector.
    pub const KERNEL_DS: u16 = 0x10;
    /// User (CPL3) code selector, RPL 3.
    pub const USER_CS: u16 = 0x1b;
    /// User (CPL3) data selector, RPL 3.
    pub const USER_DS: u16 = 0x23;
    /// TSS selector.
    pub const TSS: u16 = 0x28;
}

/// What the VMM tells the guest at entry; `RDI` holds its guest-physical address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BootInfo {
    /// [`BOOT_MAGIC`].
    pub magic: u64,
    /// Size of guest memory in bytes (guest memory starts at GPA 0).
    pub mem_size: u64,
    /// GPA of the NUL-terminated command line.
    pub cmdline_gpa: u64,
    /// Length of the command line without its NUL.
    pub cmdline_len: u64,
    /// First free byte after the loaded ELF (page aligned).
    pub free_start: u64,
    /// End of the free area (the stack grows down from here).
    pub free_end: u64,
    /// The CPL the guest was entered at (0 or 3).
    pub ring: u32,
    /// Number of vCPUs the VM has (only the boot vCPU runs the entry point).
    pub nr_vcpus: u32,
}

/// Argument of [`PORT_CONSOLE_WRITE`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConsoleWrite {
    /// GPA of the bytes to write.
    pub buf_gpa: u64,
    /// Number of bytes.
    pub len: u64,
    /// Out: bytes written, or `u64::MAX` when the buffer was outside guest memory.
    pub ret: u64,
}

/// Argument of [`PORT_WALL_TIME`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WallTime {
    /// Out: nanoseconds since the Unix epoch.
    pub nsecs: u64,
}
