//! What can go wrong in a debugger command that the guest did not cause.

use inspect::command::LimitError;
use std::time::Duration;
use vmm::machine::MachineError;

/// Errors of a debugger command (unknown symbol, bad register, a stop that did not come…).
#[derive(Debug, thiserror::Error)]
pub enum DebuggerError {
    /// A symbol that is not in the table.
    #[error("no symbol named {0:?}")]
    NoSymbol(String),
    /// A register name that does not exist.
    #[error("no register ${0}")]
    NoRegister(String),
    /// The vCPU did not stop in time.
    #[error("vCPU {vcpu} did not stop within {limit:?}")]
    NoStop {
        /// The vCPU the command acted on.
        vcpu: usize,
        /// How long the command waited.
        limit: Duration,
    },
    /// No virtio device with that index.
    #[error("this guest has no virtio device {0} (`devices` lists them)")]
    NoDevice(u64),
    /// The device has no such queue, or the driver has not set it up.
    #[error("virtio device {device} has no queue {queue} set up by its driver")]
    NoQueue {
        /// The device index.
        device: u64,
        /// The queue index.
        queue: u64,
    },
    /// A count, length or address over its limit, or a range that wraps.
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// Too many software watchpoints.
    #[error(
        "watch: {} software watchpoints are set, the limit (delete one first)",
        crate::watch::MAX_SOFT_WATCHES
    )]
    TooManyWatches,
    /// The queue's rings cannot be read.
    #[error(transparent)]
    Queue(#[from] inspect::virtqueue::QueueError),
    /// A checkpoint could not be taken, found or rewound to.
    #[error(transparent)]
    Checkpoint(#[from] vmm::checkpoint::CheckpointError),
    /// The machine refused a request (no such vCPU, a breakpoint outside memory, …).
    #[error(transparent)]
    Machine(#[from] MachineError),
}
