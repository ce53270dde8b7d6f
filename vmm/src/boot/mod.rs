//! Putting a guest into memory and choosing the state its boot vCPU starts in.

pub mod elf_guest;
pub mod linux;
pub mod mptable;
pub mod pvh;
pub mod zero_page;
