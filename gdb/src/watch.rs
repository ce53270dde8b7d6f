//! Watchpoints: what gdb asked for, how it maps onto the debug registers, and — where the
//! debug registers do not fire for guest data accesses — how the stub emulates them.
//!
//! On PVM, KVM's instruction emulator runs CPL0 guest code and never checks DR0-DR3 for
//! data accesses (execute breakpoints do fire). The stub then carries out a `continue` one
//! instruction at a time: before each step it decodes the instruction at RIP and works out
//! every byte it will read or write (operands, pushes and pops, string moves) with
//! iced-x86's instruction info and the vCPU's registers; after the step, an access that
//! overlaps a watched range is reported exactly as the debug register would have: a trap
//! after the instruction, with the watchpoint's address.

use gdbstub::target::ext::breakpoints::WatchKind;
use iced_x86::{Decoder, DecoderOptions, InstructionInfoFactory, OpAccess, Register};
use inspect::regs::{Regs, SpecialRegs};

/// A watchpoint as gdb asked for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watch {
    /// First byte.
    pub addr: u64,
    /// Length in bytes.
    pub len: u64,
    /// Which accesses fire it.
    pub kind: WatchKind,
}

/// One memory access of an instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// Linear address.
    pub addr: u64,
    /// Bytes.
    pub len: u64,
    /// It reads.
    pub read: bool,
    /// It writes (or may write).
    pub write: bool,
}

impl Watch {
    /// Whether `access` fires this watchpoint.
    pub fn fired_by(&self, access: &Access) -> bool {
        let kind_matches = match self.kind {
            WatchKind::Write => access.write,
            WatchKind::Read => access.read,
            WatchKind::ReadWrite => access.read || access.write,
        };
        let end = self.addr.saturating_add(self.len);
        let access_end = access.addr.saturating_add(access.len);
        kind_matches && access.addr < end && self.addr < access_end
    }
}

/// The first watchpoint any of `accesses` fires.
pub fn first_hit<'w>(watches: &'w [Watch], accesses: &[Access]) -> Option<&'w Watch> {
    watches.iter().find(|w| accesses.iter().any(|a| w.fired_by(a)))
}

/// The debug registers a watchpoint's pieces are taken from (DR0-DR3), on every host: the
/// emulated watchpoints of PVM take their slots too.
pub const DR_SLOTS: usize = 4;

/// The longest watchpoint the stub accepts: four debug registers of 8 aligned bytes. gdb
/// watches longer ranges with its own software watchpoints (single steps, no `Z` packet),
/// so nothing a gdb sends through `Z2`-`Z4` is ever longer; a packet that is gets an error.
pub const MAX_WATCH_LEN: u64 = 8 * DR_SLOTS as u64;

/// Why a watchpoint cannot be set (the text vmscope prints; gdb gets an error reply).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WatchError {
    /// Zero bytes.
    #[error("a watchpoint of 0 bytes watches nothing")]
    Empty,
    /// Longer than [`MAX_WATCH_LEN`].
    #[error("{len} bytes is over the limit of {MAX_WATCH_LEN} (four 8-byte debug registers)")]
    TooLong {
        /// Asked for.
        len: u64,
    },
    /// `addr + len` passes the end of the address space.
    #[error("{len} bytes from {addr:#x} run past the end of the address space")]
    Wraps {
        /// Where.
        addr: u64,
        /// How long.
        len: u64,
    },
    /// More aligned pieces than there are debug registers.
    #[error("{len} bytes at {addr:#x} need {pieces} aligned debug-register pieces; there are {DR_SLOTS} registers")]
    TooManyPieces {
        /// Where.
        addr: u64,
        /// How long.
        len: u64,
        /// How many pieces it would take.
        pieces: usize,
    },
}

/// The debug-register pieces covering `[addr, addr + len)`: a debug register watches 1,
/// 2, 4 or 8 naturally aligned bytes, so a longer or unaligned range takes several. A range
/// that is empty, longer than [`MAX_WATCH_LEN`], runs past the end of the address space or
/// takes more than [`DR_SLOTS`] pieces is refused before anything is built (the loop runs
/// at most `MAX_WATCH_LEN` times, whatever a client asks for).
pub fn dr_pieces(addr: u64, len: u64) -> Result<Vec<(u64, u64)>, WatchError> {
    if len == 0 {
        return Err(WatchError::Empty);
    }
    if len > MAX_WATCH_LEN {
        return Err(WatchError::TooLong { len });
    }
    // The last byte may be the address space's last byte: the end is computed in u128.
    let end = u128::from(addr) + u128::from(len);
    if end > 1u128 << 64 {
        return Err(WatchError::Wraps { addr, len });
    }
    let mut pieces = Vec::with_capacity(DR_SLOTS);
    let mut at = u128::from(addr);
    while at < end {
        let size = [8u64, 4, 2, 1]
            .into_iter()
            .find(|&s| at % u128::from(s) == 0 && at + u128::from(s) <= end)
            .unwrap_or(1);
        // `at < end <= 2^64`: it fits.
        pieces.push((at as u64, size));
        at += u128::from(size);
    }
    if pieces.len() > DR_SLOTS {
        return Err(WatchError::TooManyPieces { addr, len, pieces: pieces.len() });
    }
    Ok(pieces)
}

/// The memory accesses of the instruction at the start of `code` (fetched at `rip`, in a
/// `bitness`-bit code segment), given the registers it will execute with. Undecodable
/// bytes access nothing (the CPU will fault on them instead).
pub fn accesses(code: &[u8], rip: u64, bitness: u32, regs: &Regs, sregs: &SpecialRegs) -> Vec<Access> {
    let mut decoder = Decoder::with_ip(bitness, code, rip, DecoderOptions::NONE);
    let insn = decoder.decode();
    if insn.is_invalid() {
        return vec![];
    }
    let mut factory = InstructionInfoFactory::new();
    let info = factory.info(&insn);
    info.used_memory()
        .iter()
        .filter_map(|m| {
            let (read, write) = match m.access() {
                OpAccess::Read | OpAccess::CondRead => (true, false),
                OpAccess::Write | OpAccess::CondWrite => (false, true),
                OpAccess::ReadWrite | OpAccess::ReadCondWrite => (true, true),
                _ => return None,
            };
            let addr = m.virtual_address(0, |reg, _, _| register_value(reg, bitness, regs, sregs))?;
            Some(Access { addr, len: m.memory_size().size().max(1) as u64, read, write })
        })
        .collect()
}

/// A register's value for an address computation.
fn register_value(reg: Register, bitness: u32, r: &Regs, s: &SpecialRegs) -> Option<u64> {
    if reg.is_segment_register() {
        // Long mode ignores the bases of CS, DS, ES and SS.
        return Some(match reg {
            Register::FS => s.fs.base,
            Register::GS => s.gs.base,
            _ if bitness == 64 => 0,
            Register::CS => s.cs.base,
            Register::DS => s.ds.base,
            Register::ES => s.es.base,
            Register::SS => s.ss.base,
            _ => return None,
        });
    }
    let full = match reg.full_register() {
        Register::RAX => r.rax,
        Register::RBX => r.rbx,
        Register::RCX => r.rcx,
        Register::RDX => r.rdx,
        Register::RSI => r.rsi,
        Register::RDI => r.rdi,
        Register::RSP => r.rsp,
        Register::RBP => r.rbp,
        Register::R8 => r.r8,
        Register::R9 => r.r9,
        Register::R10 => r.r10,
        Register::R11 => r.r11,
        Register::R12 => r.r12,
        Register::R13 => r.r13,
        Register::R14 => r.r14,
        Register::R15 => r.r15,
        Register::RIP => r.rip,
        _ => return None,
    };
    Some(match reg.size() {
        8 => full,
        4 => full & 0xffff_ffff,
        2 => full & 0xffff,
        // AH, BH, CH, DH.
        1 if matches!(reg, Register::AH | Register::BH | Register::CH | Register::DH) => (full >> 8) & 0xff,
        1 => full & 0xff,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regs() -> Regs {
        Regs { rax: 0x1000, rbx: 0x2000, rsp: 0x8000, rsi: 0x3000, rdi: 0x4000, ..Default::default() }
    }

    fn one(code: &[u8]) -> Vec<Access> {
        accesses(code, 0x10_0000, 64, &regs(), &SpecialRegs::default())
    }

    #[test]
    fn operands_pushes_and_rip_relative() {
        // mov [rax+8], rbx
        assert_eq!(
            one(&[0x48, 0x89, 0x58, 0x08]),
            [Access { addr: 0x1008, len: 8, read: false, write: true }]
        );
        // mov ecx, [rbx]
        assert_eq!(one(&[0x8b, 0x0b]), [Access { addr: 0x2000, len: 4, read: true, write: false }]);
        // add [rax], edx: read and write
        assert_eq!(one(&[0x01, 0x10]), [Access { addr: 0x1000, len: 4, read: true, write: true }]);
        // push rbx: a write just below RSP
        assert_eq!(one(&[0x53]), [Access { addr: 0x7ff8, len: 8, read: false, write: true }]);
        // mov [rip+0x10], rax: relative to the next instruction (7 bytes long)
        let a = one(&[0x48, 0x89, 0x05, 0x10, 0, 0, 0]);
        assert_eq!(a, [Access { addr: 0x10_0000 + 7 + 0x10, len: 8, read: false, write: true }]);
        // movsb: reads [rsi], writes [rdi]
        let a = one(&[0xa4]);
        assert!(a.contains(&Access { addr: 0x3000, len: 1, read: true, write: false }), "{a:?}");
        assert!(a.contains(&Access { addr: 0x4000, len: 1, read: false, write: true }), "{a:?}");
        // lea touches no memory; bytes that are invalid in 64-bit mode (push es) neither
        assert!(one(&[0x48, 0x8d, 0x40, 0x08]).is_empty());
        assert!(one(&[0x06]).is_empty());
    }

    #[test]
    fn segment_bases_and_sub_registers() {
        let mut s = SpecialRegs::default();
        s.fs.base = 0x7000_0000;
        s.ds.base = 0x5000; // ignored in long mode
                            // mov rax, fs:[rbx]
        let a = accesses(&[0x64, 0x48, 0x8b, 0x03], 0, 64, &regs(), &s);
        assert_eq!(a[0].addr, 0x7000_2000);
        let a = accesses(&[0x48, 0x8b, 0x03], 0, 64, &regs(), &s);
        assert_eq!(a[0].addr, 0x2000);
        // mov eax, [ebx] (address-size override): the 32-bit register.
        let r = Regs { rbx: 0xffff_ffff_0000_2000, ..regs() };
        assert_eq!(accesses(&[0x67, 0x8b, 0x03], 0, 64, &r, &s)[0].addr, 0x2000);
    }

    #[test]
    fn watch_matching() {
        let w = Watch { addr: 0x1000, len: 8, kind: WatchKind::Write };
        let write = |addr, len| Access { addr, len, read: false, write: true };
        assert!(w.fired_by(&write(0x1004, 1)));
        assert!(w.fired_by(&write(0xffc, 8)));
        assert!(!w.fired_by(&write(0x1008, 8)));
        assert!(!w.fired_by(&Access { addr: 0x1000, len: 8, read: true, write: false }));
        let r = Watch { kind: WatchKind::Read, ..w };
        assert!(r.fired_by(&Access { addr: 0x1000, len: 1, read: true, write: false }));
        assert!(!r.fired_by(&write(0x1000, 1)));
        let a = Watch { kind: WatchKind::ReadWrite, ..w };
        assert!(a.fired_by(&write(0x1000, 1)));
        assert_eq!(first_hit(&[r, w], &[write(0x1000, 1)]), Some(&w));
    }

    #[test]
    fn debug_register_pieces() {
        assert_eq!(dr_pieces(0x1000, 8).unwrap(), [(0x1000, 8)]);
        assert_eq!(dr_pieces(0x1000, 16).unwrap(), [(0x1000, 8), (0x1008, 8)]);
        assert_eq!(dr_pieces(0x1003, 4).unwrap(), [(0x1003, 1), (0x1004, 2), (0x1006, 1)]);
        assert_eq!(dr_pieces(0x1004, 4).unwrap(), [(0x1004, 4)]);
        assert_eq!(dr_pieces(0x1000, 32).unwrap().len(), 4);
        // The last 8 bytes of the address space are a valid watchpoint.
        assert_eq!(dr_pieces(u64::MAX - 7, 8).unwrap(), [(u64::MAX - 7, 8)]);
        assert_eq!(dr_pieces(u64::MAX, 1).unwrap(), [(u64::MAX, 1)]);
    }

    /// What a hostile `Z2`-`Z4` packet can ask for: each is refused at once (before the fix,
    /// a range that wrapped made `dr_pieces` loop over the whole address space, growing its
    /// list until the allocator aborted).
    #[test]
    fn hostile_watchpoint_ranges_are_refused() {
        assert_eq!(dr_pieces(0x1000, 0), Err(WatchError::Empty));
        assert_eq!(dr_pieces(u64::MAX - 7, 16), Err(WatchError::Wraps { addr: u64::MAX - 7, len: 16 }));
        assert_eq!(dr_pieces(u64::MAX - 7, 9), Err(WatchError::Wraps { addr: u64::MAX - 7, len: 9 }));
        assert_eq!(dr_pieces(u64::MAX, 2), Err(WatchError::Wraps { addr: u64::MAX, len: 2 }));
        assert_eq!(dr_pieces(0, u64::MAX), Err(WatchError::TooLong { len: u64::MAX }));
        assert_eq!(dr_pieces(0x1000, MAX_WATCH_LEN + 1), Err(WatchError::TooLong { len: MAX_WATCH_LEN + 1 }));
        // 31 unaligned bytes take six pieces (1, 2, 4, 8, 8, 8): more than there are registers.
        assert_eq!(
            dr_pieces(0x1001, 31),
            Err(WatchError::TooManyPieces { addr: 0x1001, len: 31, pieces: 6 })
        );
    }
}
