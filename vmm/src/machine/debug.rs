//! Debug operations on a whole machine: memory by guest-physical and guest-virtual
//! address, breakpoints, stepping. (Filled in by the debug-control work.)

/// Errors from debug operations.
#[derive(Debug, thiserror::Error)]
pub enum DebugError {
    /// A breakpoint operation.
    #[error(transparent)]
    Breakpoint(#[from] crate::debug::BreakpointError),
}
