//! ELF core files of a whole guest, as QEMU's `dump-guest-memory` writes them: an ELF64
//! `ET_CORE` file whose first program header is a `PT_NOTE` (per vCPU an `NT_PRSTATUS` note
//! named "CORE" and a "QEMU" CPU-state note, then a "VMCOREINFO" note for Linux guests),
//! followed by one `PT_LOAD` per range of guest RAM. drgn (`drgn -c`) and crash read such
//! files. Pure: memory comes through [`GuestPhysMemory`], registers as plain structs, and
//! the file goes to any [`std::io::Write`].
//!
//! ```
//! use inspect::mem::BufferMemory;
//! use inspect::vmcore::{write_core, CoreLayout, Load};
//! let mem = BufferMemory::zeroed(0x2000);
//! let layout = CoreLayout { cpus: vec![], loads: vec![Load::physical(0, 0x2000)], vmcoreinfo: None };
//! let mut file = Vec::new();
//! let written = write_core(&mut file, &layout, &mem).unwrap();
//! assert_eq!(written, file.len() as u64);
//! assert_eq!(&file[..4], b"\x7fELF");
//! ```

mod notes;
pub mod vmcoreinfo;

use crate::mem::GuestPhysMemory;
use crate::regs::{Regs, SpecialRegs};
use crate::Gpa;
use std::io::Write;

pub use notes::{PRSTATUS_SIZE, QEMU_CPU_STATE_SIZE};

/// Size of the ELF64 file header.
const EHDR_SIZE: u64 = 64;
/// Size of one ELF64 program header.
const PHDR_SIZE: u64 = 56;
/// `PT_LOAD`.
const PT_LOAD: u32 = 1;
/// `PT_NOTE`.
const PT_NOTE: u32 = 4;
/// `ET_CORE`.
const ET_CORE: u16 = 4;
/// `EM_X86_64`.
const EM_X86_64: u16 = 62;
/// The most `PT_LOAD` headers a core may have (an ELF64 header counts them in 16 bits and
/// QEMU's `PN_XNUM` escape is not worth it for a guest's few RAM ranges or mappings).
pub const MAX_LOADS: usize = 0xfffe;
/// How much memory is copied at a time.
const CHUNK: usize = 1 << 20;

/// Errors of writing a core file.
#[derive(Debug, thiserror::Error)]
pub enum VmcoreError {
    /// Writing the file failed.
    #[error("cannot write the core file")]
    Write(#[source] std::io::Error),
    /// A `PT_LOAD` covers bytes that are not guest memory.
    #[error("guest memory ends at {at:#x}, inside the range {start:#x}+{len:#x} the dump was to hold")]
    Unbacked {
        /// First unreadable guest-physical address.
        at: u64,
        /// Start of the range.
        start: u64,
        /// Its length.
        len: u64,
    },
    /// Too many ranges for one ELF file.
    #[error("{0} memory ranges do not fit in one ELF core file (at most {MAX_LOADS})")]
    TooManyLoads(usize),
}

/// One vCPU's registers at the dump.
#[derive(Clone, Debug, Default)]
pub struct CpuRegs {
    /// General registers.
    pub regs: Regs,
    /// Segment, control and descriptor-table registers.
    pub sregs: SpecialRegs,
}

/// One `PT_LOAD`: guest-physical bytes `[paddr, paddr + len)` and where they appear in the
/// guest's linear address space (0 when the dump is of physical memory only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Load {
    /// First guest-physical address (`p_paddr`).
    pub paddr: u64,
    /// First linear address (`p_vaddr`), 0 for a physical dump.
    pub vaddr: u64,
    /// Length in bytes (`p_filesz` = `p_memsz`).
    pub len: u64,
}

impl Load {
    /// A range of physical memory (`p_vaddr` 0, as QEMU writes with `paging: false`).
    pub fn physical(paddr: u64, len: u64) -> Self {
        Self { paddr, vaddr: 0, len }
    }
}

/// What goes into a core file.
#[derive(Clone, Debug, Default)]
pub struct CoreLayout {
    /// Each vCPU's registers, in vCPU order.
    pub cpus: Vec<CpuRegs>,
    /// The memory ranges, each a `PT_LOAD`.
    pub loads: Vec<Load>,
    /// The text of the VMCOREINFO note ("KEY=value" lines), if any.
    pub vmcoreinfo: Option<Vec<u8>>,
}

impl CoreLayout {
    /// The size of the file [`write_core`] writes.
    pub fn file_size(&self) -> u64 {
        let notes = notes::build(&self.cpus, self.vmcoreinfo.as_deref()).len() as u64;
        EHDR_SIZE
            + PHDR_SIZE * (1 + self.loads.len() as u64)
            + notes
            + self.loads.iter().map(|l| l.len).sum::<u64>()
    }
}

/// The `PT_LOAD`s of a physical dump: every RAM range, cut to `[begin, begin + length)`
/// when a filter is given (QEMU's `begin`/`length`).
pub fn physical_loads(ram: &[(u64, u64)], filter: Option<(u64, u64)>) -> Vec<Load> {
    ram.iter()
        .filter_map(|&(start, len)| {
            let end = start.saturating_add(len);
            let (lo, hi) = match filter {
                Some((b, l)) => (start.max(b), end.min(b.saturating_add(l))),
                None => (start, end),
            };
            (hi > lo).then(|| Load::physical(lo, hi - lo))
        })
        .collect()
}

/// Writes the core file to `out`; returns the bytes written. Every `PT_LOAD` must be
/// readable guest memory.
pub fn write_core(
    out: &mut dyn Write,
    layout: &CoreLayout,
    mem: &dyn GuestPhysMemory,
) -> Result<u64, VmcoreError> {
    if layout.loads.len() > MAX_LOADS {
        return Err(VmcoreError::TooManyLoads(layout.loads.len()));
    }
    let notes = notes::build(&layout.cpus, layout.vmcoreinfo.as_deref());
    let phnum = 1 + layout.loads.len() as u64;
    let notes_at = EHDR_SIZE + PHDR_SIZE * phnum;
    let mut head = Vec::with_capacity((notes_at as usize) + notes.len());
    ehdr(&mut head, phnum as u16);
    phdr(&mut head, PT_NOTE, 0, notes_at, 0, 0, notes.len() as u64);
    let mut offset = notes_at + notes.len() as u64;
    for l in &layout.loads {
        // Read, write, execute: QEMU leaves p_flags 0; readers ignore them in a core.
        phdr(&mut head, PT_LOAD, 7, offset, l.vaddr, l.paddr, l.len);
        offset += l.len;
    }
    head.extend_from_slice(&notes);
    out.write_all(&head).map_err(VmcoreError::Write)?;
    let mut buf = vec![0u8; CHUNK];
    for l in &layout.loads {
        let mut done = 0u64;
        while done < l.len {
            let n = (l.len - done).min(CHUNK as u64) as usize;
            let at = l.paddr + done;
            let got = mem.read_phys(Gpa(at), &mut buf[..n]);
            if got < n {
                return Err(VmcoreError::Unbacked { at: at + got as u64, start: l.paddr, len: l.len });
            }
            out.write_all(&buf[..n]).map_err(VmcoreError::Write)?;
            done += n as u64;
        }
    }
    out.flush().map_err(VmcoreError::Write)?;
    Ok(offset)
}

fn ehdr(b: &mut Vec<u8>, phnum: u16) {
    // ELFCLASS64, ELFDATA2LSB, EV_CURRENT, ELFOSABI_NONE.
    b.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    b.extend_from_slice(&ET_CORE.to_le_bytes());
    b.extend_from_slice(&EM_X86_64.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes()); // e_version
    b.extend_from_slice(&0u64.to_le_bytes()); // e_entry
    b.extend_from_slice(&EHDR_SIZE.to_le_bytes()); // e_phoff
    b.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    b.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    b.extend_from_slice(&(EHDR_SIZE as u16).to_le_bytes());
    b.extend_from_slice(&(PHDR_SIZE as u16).to_le_bytes());
    b.extend_from_slice(&phnum.to_le_bytes());
    b.extend_from_slice(&0u16.to_le_bytes()); // e_shentsize
    b.extend_from_slice(&0u16.to_le_bytes()); // e_shnum
    b.extend_from_slice(&0u16.to_le_bytes()); // e_shstrndx
}

fn phdr(b: &mut Vec<u8>, kind: u32, flags: u32, offset: u64, vaddr: u64, paddr: u64, size: u64) {
    b.extend_from_slice(&kind.to_le_bytes());
    b.extend_from_slice(&flags.to_le_bytes());
    b.extend_from_slice(&offset.to_le_bytes());
    b.extend_from_slice(&vaddr.to_le_bytes());
    b.extend_from_slice(&paddr.to_le_bytes());
    b.extend_from_slice(&size.to_le_bytes()); // p_filesz
    b.extend_from_slice(&size.to_le_bytes()); // p_memsz
    b.extend_from_slice(&0u64.to_le_bytes()); // p_align
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::BufferMemory;
    use object::read::elf::{ElfFile64, ProgramHeader};
    use object::{Endianness, Object};

    fn memory() -> BufferMemory {
        let mut mem = BufferMemory::zeroed(0x3000);
        for (i, b) in mem.bytes.iter_mut().enumerate() {
            *b = (i * 7 % 251) as u8;
        }
        mem
    }

    #[test]
    fn loads_hold_the_guest_bytes_at_their_physical_addresses() {
        let mem = memory();
        let cpus = vec![
            CpuRegs::default(),
            CpuRegs { regs: Regs { rip: 0x1234, ..Default::default() }, ..Default::default() },
        ];
        let layout = CoreLayout {
            cpus,
            loads: physical_loads(&[(0, 0x3000)], Some((0x1000, 0x1800))),
            vmcoreinfo: Some(b"OSRELEASE=6.1.0\nPAGESIZE=4096\n".to_vec()),
        };
        let mut file = Vec::new();
        let n = write_core(&mut file, &layout, &mem).unwrap();
        assert_eq!(n, file.len() as u64);
        assert_eq!(n, layout.file_size());
        let elf = ElfFile64::<Endianness>::parse(&file[..]).unwrap();
        assert_eq!(elf.kind(), object::ObjectKind::Core);
        let e = Endianness::Little;
        let phdrs = elf.elf_program_headers();
        assert_eq!(phdrs.len(), 2);
        assert_eq!(phdrs[0].p_type(e).0, PT_NOTE);
        let l = &phdrs[1];
        assert_eq!((l.p_type(e).0, l.p_paddr(e), l.p_vaddr(e), l.p_filesz(e)), (PT_LOAD, 0x1000, 0, 0x1800));
        let off = l.p_offset(e) as usize;
        assert_eq!(&file[off..off + 0x1800], &mem.bytes[0x1000..0x2800]);
        let notes: Vec<(Vec<u8>, u32, Vec<u8>)> = phdrs[0]
            .notes(e, &file[..])
            .unwrap()
            .unwrap()
            .map(|n| n.map(|n| (n.name().to_vec(), n.n_type(e).0, n.desc().to_vec())))
            .collect::<Result<_, _>>()
            .unwrap();
        let names: Vec<&[u8]> = notes.iter().map(|n| &n.0[..]).collect();
        assert_eq!(names, [&b"CORE"[..], b"CORE", b"QEMU", b"QEMU", b"VMCOREINFO"]);
        assert_eq!(notes[1].2.len(), PRSTATUS_SIZE);
        // pr_pid is the vCPU number from 1; pr_reg's rip is register 16.
        assert_eq!(u32::from_le_bytes(notes[1].2[32..36].try_into().unwrap()), 2);
        assert_eq!(u64::from_le_bytes(notes[1].2[112 + 16 * 8..112 + 17 * 8].try_into().unwrap()), 0x1234);
        assert_eq!(notes[2].2.len(), QEMU_CPU_STATE_SIZE);
        assert_eq!(notes[4].2, b"OSRELEASE=6.1.0\nPAGESIZE=4096\n");
    }

    #[test]
    fn a_range_outside_memory_is_an_error_naming_it() {
        let layout = CoreLayout { loads: vec![Load::physical(0x2000, 0x2000)], ..Default::default() };
        let err = write_core(&mut Vec::new(), &layout, &memory()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "guest memory ends at 0x3000, inside the range 0x2000+0x2000 the dump was to hold"
        );
    }

    #[test]
    fn filters_cut_ram_ranges() {
        let ram = [(0, 0x1000), (0x10000, 0x1000)];
        assert_eq!(physical_loads(&ram, None).len(), 2);
        assert_eq!(
            physical_loads(&ram, Some((0x800, 0x10000))),
            [Load::physical(0x800, 0x800), Load::physical(0x10000, 0x800)]
        );
        assert!(physical_loads(&ram, Some((0x2000, 0x100))).is_empty());
        assert_eq!(physical_loads(&ram, Some((0x10fff, u64::MAX))), [Load::physical(0x10fff, 1)]);
    }
}
