//! Legacy PC devices.

pub mod i8042;
pub mod serial;
