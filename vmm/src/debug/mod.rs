//! Debug control shared by all vCPUs of a VM: the software-breakpoint table. (Per-vCPU
//! stepping and debug registers live with the vCPU, see `vstate::vcpu`.)

mod breakpoints;

pub use breakpoints::{BreakpointError, Breakpoints};
