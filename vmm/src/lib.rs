//! vmscope's VMM: a small KVM virtual machine monitor with debug control built in.
//!
//! The layout follows the machine: [`vstate`] (KVM, the VM, memory, vCPU threads),
//! [`arch`] (x86_64 descriptor tables, page tables, CPUID, entry registers), [`boot`]
//! (putting a guest in memory), [`devices`] (serial, exit port, hypercalls), [`breakpoints`]
//! (the software-breakpoint table), [`machine`] (a running guest, as the CLI, gdb stub and
//! TUI see it) and
//! [`seccomp`] (the system-call filters each VMM thread installs on itself) and [`snapshot`]
//! (a guest's whole state in a file, and a machine restored from one).
//! `unsafe` lives only where memory is mapped and ioctls are issued.
//!
//! ```no_run
//! use vmm::{machine::{ElfGuestConfig, Machine, Outcome}, devices::console::Console};
//! let cfg = ElfGuestConfig {
//!     name: "guest.elf".into(),
//!     elf: std::fs::read("guest.elf").unwrap().into(),
//!     cmdline: "hello".into(),
//!     mem_mib: 64,
//!     vcpus: 1,
//!     ring: vmm::arch::x86_64::Ring::Ring3,
//!     start_paused: false,
//!     doorbell: false,
//!     ring_consumer: Default::default(),
//! };
//! let mut m = Machine::boot_elf(&cfg, Console::stdout()).unwrap();
//! if let Outcome::Exited { code } = m.wait(None) {
//!     println!("guest exited with {code}");
//! }
//! ```
#![warn(missing_docs)]

pub mod arch;
pub mod boot;
pub mod breakpoints;
pub mod checkpoint;
pub mod devices;
pub mod host;
pub mod loader;
pub mod machine;
pub mod migration;
pub mod report;
pub mod seccomp;
pub mod snapshot;
pub mod socket;
#[doc(hidden)]
pub mod test_utils;
pub mod vstate;

pub use host::host_kind;
