//! The page-table walker (`inspect::paging`) over arbitrary memory, control registers and
//! addresses: `translate` for four addresses and `mappings` for the whole space, as
//! `pt`/`x` and the TUI use them on a guest that wrote its own page tables.
//!
//! Input: base u64 | cr0 u64 | cr3 u64 | cr4 u64 | efer u64 | maxphyaddr u8 | 4 × gva u64 |
//! guest memory bytes (at GPA `base`).
#![no_main]

#[path = "common.rs"]
mod common;

use inspect::mem::BufferMemory;
use inspect::paging::{mappings, translate, PagingContext};
use inspect::regs::SpecialRegs;
use inspect::{Gpa, Gva};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut f = common::Fields::new(data);
    let base = f.u64();
    let sregs = SpecialRegs { cr0: f.u64(), cr3: f.u64(), cr4: f.u64(), efer: f.u64(), ..Default::default() };
    let mut ctx = PagingContext::from_sregs(&sregs);
    // MAXPHYADDR comes from CPUID: 36..=52 on real CPUs; 0 keeps the default (52).
    let maxphy = f.u8();
    if (36..=52).contains(&maxphy) {
        ctx.maxphyaddr = maxphy;
    }
    let gvas = [f.u64(), f.u64(), f.u64(), f.u64()];
    let mem = BufferMemory { base: Gpa(base), bytes: f.data.to_vec() };
    for gva in gvas {
        match translate(&mem, &ctx, Gva(gva)) {
            Ok(t) => {
                assert!(t.page_size.is_power_of_two());
                assert!(common::display_len(&t) > 0);
            }
            Err(e) => {
                assert!(common::display_len(&e) > 0);
            }
        }
    }
    let list = mappings(&mem, &ctx);
    let _ = common::display_len(&list);
});
