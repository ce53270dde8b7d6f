//! The guests vmscope provides, and the code that builds them: the `no_std` unikernel
//! (built with the normal cargo build and embedded), the minimal Linux (kernel built from
//! source once and cached, initramfs assembled here).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cache;
pub mod container;
pub mod cpio;
pub mod linux;
pub mod prereq;
pub mod unikernel;
pub mod workload;
