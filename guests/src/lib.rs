//! The guests vmscope provides, and the code that builds them: the `no_std` unikernel
//! (built with the normal cargo build and embedded).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod unikernel;
