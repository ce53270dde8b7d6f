//! Live migration, pre-copy: a running guest moves to another vmscope process (`vmscope run
//! --incoming URI`) over a unix or TCP socket while it keeps running. The source turns on
//! KVM's dirty-page log (`KVM_MEM_LOG_DIRTY_PAGES`, [`dirty_log`]), sends every non-zero
//! page, then in rounds the pages the guest wrote meanwhile, until what is left would go in
//! the downtime budget at the rate measured so far (or a round limit is reached). Then it
//! holds the vCPUs, sends the last dirty pages and the snapshot sections (vCPUs, devices,
//! clock, breakpoints: [`crate::snapshot::capture`]), and the target builds the machine with
//! [`crate::snapshot::restore_state`]. The guest runs on the target only once the source has
//! said it will not run it again; until then any failure (the target refuses, dies, answers
//! garbage) leaves the guest running on the source. See vmm/DESIGN.md ("Live migration").
//!
//! ```no_run
//! # fn f(machine: &vmm::machine::Machine) -> Result<(), vmm::migration::MigrationError> {
//! use vmm::migration::{migrate, MigrateOptions, Uri};
//! let uri: Uri = "unix:/tmp/vm.sock".parse()?;
//! let done = migrate(machine, &uri, &MigrateOptions::default(), &mut |_| {})?;
//! println!("downtime {} µs over {} rounds", done.summary.downtime_us, done.summary.rounds.len());
//! # Ok(()) }
//! ```

pub mod command;
pub mod dirty_log;
pub mod source;
pub mod target;
pub mod uri;
pub mod wire;

pub use source::{migrate, MigrateOptions, Migrated, Progress, Round, Summary};
pub use target::{accept, receive, IncomingSummary, Received};
pub use uri::Uri;

use crate::snapshot::SnapshotError;

/// Errors of a migration, on either side.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// A URI that is not `unix:PATH` or `tcp:HOST:PORT`.
    #[error("migration address {uri:?}: {detail} (expected unix:PATH or tcp:HOST:PORT)")]
    BadUri {
        /// The text.
        uri: String,
        /// What is wrong with it.
        detail: String,
    },
    /// Socket I/O failed.
    #[error("{what} {uri}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The peer or listening address.
        uri: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The peer sent something outside the protocol (the other side is hostile input too).
    #[error("the migration stream from {uri} is malformed: {detail}")]
    Protocol {
        /// The peer.
        uri: String,
        /// What does not hold.
        detail: String,
    },
    /// The target refused the guest.
    #[error("the target at {uri} refused the guest: {reason}")]
    Refused {
        /// The target.
        uri: String,
        /// Its reason.
        reason: String,
    },
    /// The dirty-page log could not be used.
    #[error("{op} failed (dirty-page logging)")]
    DirtyLog {
        /// The ioctl.
        op: &'static str,
        /// KVM's errno.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// Someone asked to give up (QMP's `migrate_cancel`) before the guest was handed over.
    #[error("the migration to {uri} was cancelled; the guest runs on here")]
    Cancelled {
        /// The target.
        uri: String,
    },
    /// Reading or restoring the guest's state failed.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

impl MigrationError {
    fn protocol(uri: &Uri, detail: impl Into<String>) -> Self {
        Self::Protocol { uri: uri.to_string(), detail: detail.into() }
    }

    fn io(what: &'static str, uri: &Uri) -> impl FnOnce(std::io::Error) -> Self {
        let uri = uri.to_string();
        move |source| Self::Io { what, uri, source }
    }
}
