//! Pure, unsafe-free readers of guest state.
//!
//! Everything here reads a guest through [`GuestPhysMemory`] and plain register structs
//! ([`regs`]), never through KVM, so the same code serves the CLI, the gdb stub, the TUI
//! and the labs, and is tested on byte buffers.
//!
//! ```
//! use inspect::{addr::Gpa, mem::{BufferMemory, GuestPhysMemory}};
//! let mut mem = BufferMemory::zeroed(0x2000);
//! mem.write_u64(Gpa(0x1000), 0xdead_beef);
//! assert_eq!(mem.read_u64(Gpa(0x1000)), Some(0xdead_beef));
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod addr;
pub mod command;
pub mod disasm;
pub mod exits;
pub mod host;
pub mod kvmstats;
pub mod linux;
pub mod mem;
pub mod paging;
pub mod regs;
pub mod symbols;
pub mod virtqueue;
pub mod vmcore;

pub use addr::{Gpa, Gva, HostAddr};
pub use host::HostKind;
pub use mem::GuestPhysMemory;
