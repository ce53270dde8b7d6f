//! Legacy PC devices.

pub mod serial;
