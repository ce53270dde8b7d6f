//! Walker tests on synthetic tables.

use super::test_utils::*;
use super::*;
use crate::addr::{Gpa, Gva};
use crate::mem::GuestPhysMemory;

/// PML4[0] -> PDPT; PDPT[0] -> PD; PD[1] -> PT; PT[2] -> 4 KiB page at 0x5000;
/// PD[2] = 2 MiB page at 0x40_0000; PDPT[1] = 1 GiB page at 0 (NX, read-only).
fn four_level() -> (TableBuilder, PagingContext) {
    let mut b = TableBuilder::new(0x80_0000);
    let (pml4, pdpt, pd, pt) = (b.table(), b.table(), b.table(), b.table());
    b.set(pml4, 0, pdpt.0 | P | RW | US);
    b.set(pdpt, 0, pd.0 | P | RW | US);
    b.set(pd, 1, pt.0 | P | RW | US);
    b.set(pt, 2, 0x5000 | P | RW | US);
    b.set(pd, 2, 0x40_0000 | P | RW | PS);
    b.set(pdpt, 1, P | PS | NX | US);
    (b, PagingContext::long_mode(pml4.0, false))
}

#[test]
fn four_kib_page_with_every_level() {
    let (b, ctx) = four_level();
    let t = translate(&b.mem, &ctx, Gva(0x20_2123)).unwrap();
    assert_eq!(t.gpa, Gpa(0x5123));
    assert_eq!(t.page_size, 0x1000);
    assert_eq!(t.steps.len(), 4);
    assert_eq!(t.steps.iter().map(|s| s.index).collect::<Vec<_>>(), vec![0, 0, 1, 2]);
    assert_eq!(t.steps[3].level, Level::Pt);
    assert!(t.writable && t.user && t.executable);
    let text = t.to_string();
    assert!(text.contains("PTE") && text.contains("gpa:0x5123"), "{text}");
}

#[test]
fn large_pages() {
    let (b, ctx) = four_level();
    let t = translate(&b.mem, &ctx, Gva(0x41_0000)).unwrap();
    assert_eq!((t.gpa, t.page_size, t.user), (Gpa(0x41_0000), 2 << 20, false));
    let t = translate(&b.mem, &ctx, Gva((1 << 30) + 0x1234)).unwrap();
    assert_eq!((t.gpa, t.page_size), (Gpa(0x1234), 1 << 30));
    assert!(!t.executable && !t.writable);
}

#[test]
fn not_present_names_the_level_and_index() {
    let (b, ctx) = four_level();
    let e = translate(&b.mem, &ctx, Gva(0x60_0000)).unwrap_err();
    assert!(matches!(e, WalkError::NotPresent { level: Level::Pd, index: 3, .. }), "{e}");
    assert!(e.to_string().contains("not present at PDE index 3"), "{e}");
    let e = translate(&b.mem, &ctx, Gva(1 << 39)).unwrap_err();
    assert!(matches!(e, WalkError::NotPresent { level: Level::Pml4, index: 1, .. }));
}

#[test]
fn non_canonical_and_reserved_bits() {
    let (mut b, ctx) = four_level();
    assert!(matches!(
        translate(&b.mem, &ctx, Gva(0x0000_8000_0000_0000)),
        Err(WalkError::NonCanonical { .. })
    ));
    // A 2 MiB page with bit 13 set (inside the frame's reserved low bits).
    let pd = Gpa(0x3000);
    b.set(pd, 4, 0x80_0000 | (1 << 13) | P | PS);
    assert!(matches!(
        translate(&b.mem, &ctx, Gva(0x80_0000)),
        Err(WalkError::ReservedBits { level: Level::Pd, .. })
    ));
    // A table pointer outside memory.
    b.set(pd, 5, 0x7fff_f000 | P);
    assert!(matches!(
        translate(&b.mem, &ctx, Gva(0xa0_0000)),
        Err(WalkError::TableOutsideMemory { level: Level::Pt, .. })
    ));
}

#[test]
fn five_level() {
    let mut b = TableBuilder::new(0x10_0000);
    let (pml5, pml4, pdpt, pd) = (b.table(), b.table(), b.table(), b.table());
    b.set(pml5, 256, pml4.0 | P | RW);
    b.set(pml4, 0, pdpt.0 | P | RW);
    b.set(pdpt, 0, pd.0 | P | RW);
    b.set(pd, 0, 0x20_0000 | P | RW | PS);
    let ctx = PagingContext::long_mode(pml5.0, true);
    let t = translate(&b.mem, &ctx, Gva(0xff00_0000_0000_1000)).unwrap();
    assert_eq!(t.gpa, Gpa(0x20_1000));
    assert_eq!(t.steps[0].level, Level::Pml5);
    assert!(!ctx.is_canonical(Gva(0x0100_0000_0000_0000)));
    let l = mappings(&b.mem, &ctx);
    assert_eq!(l.mappings.len(), 1);
    assert_eq!(l.mappings[0].gva, Gva(0xff00_0000_0000_0000));
}

#[test]
fn pae_and_32_bit() {
    let mut b = TableBuilder::new(0x10_0000);
    let (pdpt, pd) = (Gpa(0x1000), Gpa(0x2000));
    b.table();
    b.table();
    b.set(pdpt, 3, pd.0 | P);
    b.set(pd, 0, 0x60_0000 | P | RW | PS);
    let ctx = PagingContext {
        mode: PagingMode::Pae,
        cr3: pdpt.0,
        nxe: false,
        pse: false,
        pke: false,
        maxphyaddr: 36,
    };
    let t = translate(&b.mem, &ctx, Gva(0xc000_0010)).unwrap();
    assert_eq!((t.gpa, t.page_size), (Gpa(0x60_0010), 2 << 20));

    let mut b = TableBuilder::new(0x10_0000);
    let (pd, pt) = (b.table(), b.table());
    b.set32(pd, 1, (pt.0 as u32) | 7);
    b.set32(pt, 3, 0x9000 | 3);
    b.set32(pd, 2, 0x80_0000 | 0x83);
    let mut ctx = PagingContext {
        mode: PagingMode::Bits32,
        cr3: pd.0,
        nxe: false,
        pse: true,
        pke: false,
        maxphyaddr: 32,
    };
    assert_eq!(translate(&b.mem, &ctx, Gva(0x40_3456)).unwrap().gpa, Gpa(0x9456));
    let t = translate(&b.mem, &ctx, Gva(0x80_1234)).unwrap();
    assert_eq!((t.gpa, t.page_size), (Gpa(0x80_1234), 4 << 20));
    ctx.pse = false;
    // Without PSE the PS bit is ignored: the entry points at a "page table" at 8 MiB,
    // outside this 1 MiB memory.
    assert!(matches!(
        translate(&b.mem, &ctx, Gva(0x80_1234)),
        Err(WalkError::TableOutsideMemory { level: Level::Pt, .. })
    ));
}

#[test]
fn paging_off_is_identity() {
    let mem = crate::mem::BufferMemory::zeroed(0x1000);
    let ctx = PagingContext::from_sregs(&crate::regs::SpecialRegs::default());
    assert_eq!(ctx.mode, PagingMode::Disabled);
    assert_eq!(translate(&mem, &ctx, Gva(0x123)).unwrap().gpa, Gpa(0x123));
}

#[test]
fn mappings_merge_and_report_loops() {
    let (mut b, ctx) = four_level();
    // Two more 4 KiB pages contiguous with PT[2] (0x5000): they merge into one range.
    let pt = Gpa(0x4000);
    b.set(pt, 3, 0x6000 | P | RW | US);
    b.set(pt, 4, 0x7000 | P | RW | US);
    // A loop: PT's parent PD gets an entry pointing back at the PML4.
    b.set(Gpa(0x3000), 7, 0x1000 | P | RW);
    let l = mappings(&b.mem, &ctx);
    let small = l.mappings.iter().find(|m| m.gva == Gva(0x20_2000)).unwrap();
    assert_eq!((small.gpa, small.size), (Gpa(0x5000), 0x3000));
    assert!(l.mappings.iter().any(|m| m.size == 1 << 30));
    assert!(!l.truncated);
    // PD[7] -> 0x1000 is treated as a page table (its contents are PML4 entries), which is
    // not a loop in the hierarchy; a PT that is its own ancestor is.
    let mut b2 = TableBuilder::new(0x10_0000);
    let pml4 = b2.table();
    b2.set(pml4, 0, pml4.0 | P);
    let l = mappings(&b2.mem, &PagingContext::long_mode(pml4.0, false));
    assert!(l.problems.iter().any(|p| p.contains("loop")), "{:?}", l.problems);
    assert!(l.to_string().contains("problem: loop"));
}

#[test]
fn host_address_comes_from_the_memory() {
    let (b, ctx) = four_level();
    assert_eq!(b.mem.host_addr(Gpa(0)), None);
    assert_eq!(translate(&b.mem, &ctx, Gva(0x20_2000)).unwrap().host, None);
}

/// Seen while fuzzing the walker, reproduced by fuzz/regressions/paging/shared-table-of-bad-entries:
/// three tables, each entry pointing at the next one, the last full of large pages with
/// reserved bits, gave one problem message per visited entry (4 Mi strings, 1.4 GB). The
/// list keeps MAX_PROBLEMS and counts the rest, and the shared tables are re-read only
/// within MAX_SHARED_READS.
#[test]
fn problems_from_a_shared_bad_table_are_capped() {
    let mut b = TableBuilder::new(0x5000);
    let (pml4, pdpt, pd) = (b.table(), b.table(), b.table());
    for i in 0..512 {
        b.set(pml4, i, pdpt.0 | P | RW);
        b.set(pdpt, i, pd.0 | P | RW);
        b.set(pd, i, 0x20_0000 | P | PS | (1 << 13));
    }
    let l = mappings(&b.mem, &PagingContext::long_mode(pml4.0, false));
    assert!(l.mappings.is_empty());
    assert_eq!(l.problems.len(), MAX_PROBLEMS + 1);
    assert!(l.problems[0].contains("reserved bits set"), "{}", l.problems[0]);
    // The PD is listed once and re-read MAX_SHARED_READS / 512 times; every entry of it
    // read is a problem.
    let last = l.problems.last().unwrap();
    let more: u64 = last.strip_prefix("... and ").unwrap().split(' ').next().unwrap().parse().unwrap();
    assert_eq!(more + MAX_PROBLEMS as u64, 512 + MAX_SHARED_READS, "{last}");
    // The rest of the PDPT's entries and all but the first PML4 entry are not followed.
    assert_eq!(l.shared_not_followed, (511 - MAX_SHARED_READS / 512) + 511);
    assert!(!l.truncated);
    assert!(l.to_string().contains("truncated: 894 entries lead to page tables listed already"));
}

/// Found by the paging fuzz target (a libFuzzer timeout, fuzz/regressions/paging/
/// sparse-tables-timeout): tables whose present entries all lead to one table with a single
/// present entry cost 512 reads per counted entry, so a listing read up to 512 x
/// MAX_ENTRIES entries (10 s under the fuzzer for 16 KiB of guest memory, worse when
/// crafted). Later bounded by MAX_READS (16 Mi reads, ~2 s); now by MAX_SHARED_READS, as a
/// real walk never re-reads that much.
#[test]
fn sparse_shared_tables_are_bounded_by_shared_reads() {
    let mut b = TableBuilder::new(0x6000);
    let (pml4, pdpt, pd, pt) = (b.table(), b.table(), b.table(), b.table());
    for i in 0..512 {
        b.set(pml4, i, pdpt.0 | P | RW);
        b.set(pdpt, i, pd.0 | P | RW);
        b.set(pd, i, pt.0 | P | RW);
    }
    b.set(pt, 0, 0x5000 | P | RW);
    let l = mappings(&b.mem, &PagingContext::long_mode(pml4.0, false));
    // Four tables read once (3 x 512 + 1 present entries) and MAX_SHARED_READS entries of
    // shared tables at most, half of which can be present.
    assert!(l.entries_visited <= 3 * 512 + 1 + MAX_SHARED_READS, "{}", l.entries_visited);
    assert!(l.shared_not_followed > 0);
    // The PT listed once and re-read MAX_SHARED_READS / 512 times, each time at another PDE.
    assert_eq!(l.mappings.len() as u64, 1 + MAX_SHARED_READS / 512);
    assert!(l.to_string().contains("were not followed again (after 65536 entries re-read in shared tables)"));
}

/// A table shared by a few entries (the same PDPT under PML4[0] and PML4[256], as an
/// identity map and its higher-half alias) is listed under each: a real walk is unchanged.
#[test]
fn an_aliased_table_is_listed_under_every_entry() {
    let (mut b, ctx) = four_level();
    let before = mappings(&b.mem, &ctx);
    let pdpt = b.mem.read_u64(Gpa(ctx.cr3)).unwrap() & !0xfff;
    b.set(Gpa(ctx.cr3), 256, pdpt | P | RW | US);
    let l = mappings(&b.mem, &ctx);
    assert_eq!(l.mappings.len(), 2 * before.mappings.len());
    assert_eq!(l.shared_not_followed, 0);
    for (low, high) in before.mappings.iter().zip(&l.mappings[before.mappings.len()..]) {
        assert_eq!(high.gva.0, low.gva.0 | 0xffff_8000_0000_0000);
        assert_eq!((high.gpa, high.size), (low.gpa, low.size));
    }
    assert!(!l.to_string().contains("truncated"));
}
