//! The identity-mapped 4-level page tables vmscope builds for a long-mode guest: a PML4, a
//! PDPT and one page directory of 2 MiB pages per GiB of guest memory.

use inspect::Gpa;
use vmscope_abi::layout;

/// Present.
pub const PTE_P: u64 = 1 << 0;
/// Writable.
pub const PTE_RW: u64 = 1 << 1;
/// User-accessible.
pub const PTE_US: u64 = 1 << 2;
/// Page-level write-through.
pub const PTE_PWT: u64 = 1 << 3;
/// Page-level cache disable.
pub const PTE_PCD: u64 = 1 << 4;
/// Page size (a 2 MiB page in a PDE).
pub const PTE_PS: u64 = 1 << 7;

const PAGE_2M: u64 = 2 << 20;
const GIB: u64 = 1 << 30;

/// Errors from building page tables.
#[derive(Debug, thiserror::Error)]
pub enum PagingError {
    /// Guest memory is larger than the page-directory area can map.
    #[error("cannot identity-map {mib} MiB: the page-table area maps at most {max_gib} GiB")]
    TooLarge {
        /// Requested size in MiB.
        mib: u64,
        /// The limit in GiB.
        max_gib: u64,
    },
}

/// Page tables as (GPA, 4 KiB table) pairs ready to be written to guest memory.
#[derive(Debug, Default)]
pub struct PageTables {
    /// The tables; the first is the PML4 (CR3 points at it).
    pub tables: Vec<(Gpa, Box<[u64; 512]>)>,
}

impl PageTables {
    /// The value for CR3.
    pub fn cr3(&self) -> u64 {
        layout::PML4_GPA
    }

    /// The tables as bytes, for writing into guest memory.
    pub fn bytes(&self) -> impl Iterator<Item = (Gpa, Vec<u8>)> + '_ {
        self.tables.iter().map(|(gpa, t)| (*gpa, t.iter().flat_map(|e| e.to_le_bytes()).collect()))
    }
}

/// Builds tables that map guest-virtual = guest-physical for `[0, mem_size)` (rounded up
/// to 2 MiB), writable, with the U/S bit set at every level when `user` is true; and,
/// uncached, the 2 MiB page of [`vmscope_abi::MMIO_PROBE_GPA`], which no memory backs, so
/// that a guest can cause an MMIO exit without building page tables of its own.
pub fn identity_map(mem_size: u64, user: bool) -> Result<PageTables, PagingError> {
    let max_pds = (layout::PD_END_GPA - layout::PD_GPA) / 0x1000;
    let nr_pds = mem_size.div_ceil(GIB);
    if nr_pds > max_pds {
        return Err(PagingError::TooLarge { mib: mem_size >> 20, max_gib: max_pds });
    }
    let flags = PTE_P | PTE_RW | if user { PTE_US } else { 0 };
    let mut pml4 = Box::new([0u64; 512]);
    pml4[0] = layout::PDPT_GPA | flags;
    let mut pdpt = Box::new([0u64; 512]);
    let mut tables = vec![];
    let pages = mem_size.div_ceil(PAGE_2M);
    for pd_idx in 0..nr_pds {
        let pd_gpa = layout::PD_GPA + pd_idx * 0x1000;
        pdpt[pd_idx as usize] = pd_gpa | flags;
        let mut pd = Box::new([0u64; 512]);
        for (i, entry) in pd.iter_mut().enumerate() {
            let page = pd_idx * 512 + i as u64;
            if page < pages {
                *entry = (page * PAGE_2M) | flags | PTE_PS;
            }
        }
        tables.push((Gpa(pd_gpa), pd));
    }
    map_mmio_probe(&mut pdpt, &mut tables, mem_size, flags);
    tables.insert(0, (Gpa(layout::PDPT_GPA), pdpt));
    tables.insert(0, (Gpa(layout::PML4_GPA), pml4));
    Ok(PageTables { tables })
}

/// Adds the uncached 2 MiB page of the MMIO probe (unless guest memory covers it).
fn map_mmio_probe(pdpt: &mut [u64; 512], pds: &mut Vec<(Gpa, Box<[u64; 512]>)>, mem_size: u64, flags: u64) {
    let probe = vmscope_abi::MMIO_PROBE_GPA;
    if probe < mem_size.next_multiple_of(PAGE_2M) {
        return;
    }
    let pd_idx = probe / GIB;
    let pd_gpa = layout::PD_GPA + pd_idx * 0x1000;
    if pd_gpa >= layout::PD_END_GPA {
        return;
    }
    let at = pds.iter().position(|(g, _)| g.0 == pd_gpa).unwrap_or_else(|| {
        pdpt[pd_idx as usize] = pd_gpa | flags;
        pds.push((Gpa(pd_gpa), Box::new([0u64; 512])));
        pds.len() - 1
    });
    pds[at].1[((probe % GIB) / PAGE_2M) as usize] =
        (probe & !(PAGE_2M - 1)) | flags | PTE_PS | PTE_PCD | PTE_PWT;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_every_2m_page_once() {
        let pt = identity_map(3 * GIB + PAGE_2M, true).unwrap();
        assert_eq!(pt.tables.len(), 2 + 4);
        let (pml4_gpa, pml4) = &pt.tables[0];
        assert_eq!(pml4_gpa.0, pt.cr3());
        assert_eq!(pml4[0], layout::PDPT_GPA | PTE_P | PTE_RW | PTE_US);
        let pdpt = &pt.tables[1].1;
        assert_eq!(pdpt[3] & !0xfff, layout::PD_GPA + 3 * 0x1000);
        let last_pd = &pt.tables[5].1;
        assert_eq!(last_pd[0], (3 * GIB) | PTE_P | PTE_RW | PTE_US | PTE_PS);
        assert_eq!(last_pd[1], 0, "nothing beyond guest memory is mapped");
        let probe = vmscope_abi::MMIO_PROBE_GPA;
        assert_eq!(last_pd[0x1f0], probe | PTE_P | PTE_RW | PTE_US | PTE_PS | PTE_PCD | PTE_PWT);
        assert_eq!(last_pd.iter().filter(|e| **e != 0).count(), 2, "RAM's page and the MMIO probe's");
    }

    #[test]
    fn the_mmio_probe_gets_its_own_page_directory() {
        let pt = identity_map(64 << 20, true).unwrap();
        assert_eq!(pt.tables.len(), 2 + 2);
        assert_eq!(pt.tables[1].1[3], (layout::PD_GPA + 3 * 0x1000) | PTE_P | PTE_RW | PTE_US);
        let (gpa, pd) = &pt.tables[3];
        assert_eq!(gpa.0, layout::PD_GPA + 3 * 0x1000);
        assert_eq!(pd.iter().filter(|e| **e != 0).count(), 1);
        assert_eq!(pd[0x1f0] & !0xfff, vmscope_abi::MMIO_PROBE_GPA);
    }

    #[test]
    fn supervisor_tables_have_no_user_bit() {
        let pt = identity_map(64 << 20, false).unwrap();
        assert!(pt.tables.iter().all(|(_, t)| t.iter().all(|e| e & PTE_US == 0)));
        let pd = &pt.tables[2].1;
        assert_eq!(pd.iter().filter(|e| **e & PTE_P != 0).count(), 32);
        assert_eq!(pt.tables.len(), 2 + 2, "the MMIO probe's page directory");
    }

    #[test]
    fn too_large_is_an_error() {
        assert!(matches!(identity_map(64 * GIB, false), Err(PagingError::TooLarge { .. })));
    }
}
