//! The subcommands.

pub mod doctor;
pub mod gdb;
pub mod guests;
pub mod host;
pub mod lab;
pub mod linux;
pub mod measure;
pub mod migrate;
pub mod oci_runtime;
pub mod qmp;
pub mod run;
pub mod session;
pub mod snapshot;
pub mod tui;

/// An error and its causes on one line: "a: b: c".
pub fn chain(e: &anyhow::Error) -> String {
    e.chain().map(|c| c.to_string()).collect::<Vec<_>>().join(": ")
}
