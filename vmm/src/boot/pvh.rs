//! The PVH boot protocol (Xen's `hvm_start_info`, which Linux accepts through the
//! `XEN_ELFNOTE_PHYS32_ENTRY` note of an uncompressed `vmlinux`): the structures, written
//! as little-endian bytes, and where vmscope puts them.

use inspect::Gpa;

/// `hvm_start_info.magic`: "xEn3" with the high bit set.
pub const XEN_HVM_START_MAGIC: u32 = 0x336e_c578;

/// E820 type: usable RAM.
pub const E820_RAM: u32 = 1;
/// E820 type: reserved.
pub const E820_RESERVED: u32 = 2;

/// Where vmscope puts the PVH structures (all below 1 MiB, away from the GDT at 0x1000).
pub mod layout {
    /// `hvm_start_info`.
    pub const START_INFO_GPA: u64 = 0x6000;
    /// The module list (the initrd).
    pub const MODLIST_GPA: u64 = 0x6100;
    /// The memory map.
    pub const MEMMAP_GPA: u64 = 0x7000;
    /// The kernel command line.
    pub const CMDLINE_GPA: u64 = 0x2_0000;
    /// Room for the command line (Linux's COMMAND_LINE_SIZE on x86 is 2048).
    pub const CMDLINE_MAX: usize = 2048;
    /// End of the low-RAM area the BIOS would own (EBDA starts here).
    pub const EBDA_START: u64 = 0x9_fc00;
    /// Start of high RAM.
    pub const HIGH_RAM_START: u64 = 0x10_0000;
}

/// One memory-map entry (`hvm_memmap_table_entry`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemmapEntry {
    /// Start.
    pub addr: u64,
    /// Size in bytes.
    pub size: u64,
    /// E820 type.
    pub type_: u32,
}

/// One module (`hvm_modlist_entry`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Module {
    /// Where it is.
    pub paddr: u64,
    /// How big.
    pub size: u64,
}

/// `hvm_start_info` (version 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StartInfo {
    /// Number of modules.
    pub nr_modules: u32,
    /// GPA of the module list.
    pub modlist_paddr: u64,
    /// GPA of the command line.
    pub cmdline_paddr: u64,
    /// GPA of the memory map.
    pub memmap_paddr: u64,
    /// Entries in it.
    pub memmap_entries: u32,
}

impl StartInfo {
    /// The 56-byte structure.
    pub fn to_bytes(&self) -> [u8; 56] {
        let mut b = [0u8; 56];
        b[0..4].copy_from_slice(&XEN_HVM_START_MAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&1u32.to_le_bytes()); // version
                                                      // flags (8..12) = 0
        b[12..16].copy_from_slice(&self.nr_modules.to_le_bytes());
        b[16..24].copy_from_slice(&self.modlist_paddr.to_le_bytes());
        b[24..32].copy_from_slice(&self.cmdline_paddr.to_le_bytes());
        // rsdp_paddr (32..40) = 0: no ACPI
        b[40..48].copy_from_slice(&self.memmap_paddr.to_le_bytes());
        b[48..52].copy_from_slice(&self.memmap_entries.to_le_bytes());
        b
    }
}

impl MemmapEntry {
    /// The 24-byte entry.
    pub fn to_bytes(&self) -> [u8; 24] {
        let mut b = [0u8; 24];
        b[0..8].copy_from_slice(&self.addr.to_le_bytes());
        b[8..16].copy_from_slice(&self.size.to_le_bytes());
        b[16..20].copy_from_slice(&self.type_.to_le_bytes());
        b
    }
}

impl Module {
    /// The 32-byte entry (no per-module command line).
    pub fn to_bytes(&self) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[0..8].copy_from_slice(&self.paddr.to_le_bytes());
        b[8..16].copy_from_slice(&self.size.to_le_bytes());
        b
    }
}

/// The memory map of a guest with `mem_size` bytes of RAM at 0: low RAM up to the EBDA,
/// the legacy hole reserved, and high RAM from 1 MiB.
pub fn memory_map(mem_size: u64) -> Vec<MemmapEntry> {
    vec![
        MemmapEntry { addr: 0, size: layout::EBDA_START, type_: E820_RAM },
        MemmapEntry {
            addr: layout::EBDA_START,
            size: layout::HIGH_RAM_START - layout::EBDA_START,
            type_: E820_RESERVED,
        },
        MemmapEntry {
            addr: layout::HIGH_RAM_START,
            size: mem_size - layout::HIGH_RAM_START,
            type_: E820_RAM,
        },
    ]
}

/// Everything to write for a PVH boot: (GPA, bytes) pairs.
pub fn boot_structures(mem_size: u64, cmdline: &str, initrd: Option<Module>) -> Vec<(Gpa, Vec<u8>)> {
    let map = memory_map(mem_size);
    let info = StartInfo {
        nr_modules: u32::from(initrd.is_some()),
        modlist_paddr: if initrd.is_some() { layout::MODLIST_GPA } else { 0 },
        cmdline_paddr: layout::CMDLINE_GPA,
        memmap_paddr: layout::MEMMAP_GPA,
        memmap_entries: map.len() as u32,
    };
    let mut cmd = cmdline.as_bytes().to_vec();
    cmd.push(0);
    let mut out = vec![
        (Gpa(layout::START_INFO_GPA), info.to_bytes().to_vec()),
        (Gpa(layout::MEMMAP_GPA), map.iter().flat_map(|e| e.to_bytes()).collect()),
        (Gpa(layout::CMDLINE_GPA), cmd),
    ];
    if let Some(m) = initrd {
        out.push((Gpa(layout::MODLIST_GPA), m.to_bytes().to_vec()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_info_layout() {
        let b = StartInfo {
            nr_modules: 1,
            modlist_paddr: 0x6100,
            cmdline_paddr: 0x20000,
            memmap_paddr: 0x7000,
            memmap_entries: 3,
        }
        .to_bytes();
        assert_eq!(&b[0..4], &[0x78, 0xc5, 0x6e, 0x33]);
        assert_eq!(u32::from_le_bytes(b[4..8].try_into().unwrap()), 1);
        assert_eq!(u32::from_le_bytes(b[12..16].try_into().unwrap()), 1);
        assert_eq!(u64::from_le_bytes(b[16..24].try_into().unwrap()), 0x6100);
        assert_eq!(u64::from_le_bytes(b[24..32].try_into().unwrap()), 0x20000);
        assert_eq!(u64::from_le_bytes(b[32..40].try_into().unwrap()), 0, "no RSDP");
        assert_eq!(u64::from_le_bytes(b[40..48].try_into().unwrap()), 0x7000);
        assert_eq!(u32::from_le_bytes(b[48..52].try_into().unwrap()), 3);
    }

    #[test]
    fn memory_map_covers_ram_and_reserves_the_legacy_hole() {
        let map = memory_map(256 << 20);
        assert_eq!(map[0], MemmapEntry { addr: 0, size: 0x9fc00, type_: E820_RAM });
        assert_eq!(map[1].type_, E820_RESERVED);
        assert_eq!(map[2].addr + map[2].size, 256 << 20);
        let e = map[2].to_bytes();
        assert_eq!(u32::from_le_bytes(e[16..20].try_into().unwrap()), E820_RAM);
    }

    #[test]
    fn structures_without_initrd_have_no_module_list() {
        let s = boot_structures(128 << 20, "console=ttyS0", None);
        assert_eq!(s.len(), 3);
        assert_eq!(s[2].1.last(), Some(&0));
        let with = boot_structures(128 << 20, "x", Some(Module { paddr: 0x700_0000, size: 4096 }));
        assert_eq!(with.len(), 4);
        assert_eq!(u32::from_le_bytes(with[0].1[12..16].try_into().unwrap()), 1);
    }
}
