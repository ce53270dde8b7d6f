//! The minimal-Linux guest: a kernel built from Debian's `linux-source-6.1` with the config
//! fragment and patches in `guests/linux/`, cached outside the checkout, and the
//! initramfs vmscope assembles for it. See guests/linux/README.md for the PVM profile.

mod build;
pub mod config;
pub mod initramfs;
pub mod profile;

pub use build::{
    cached, current_key as build_key, ensure_built, list_cached, BuildOptions, LinuxArtifacts, SOURCE_TARBALL,
};

use std::path::PathBuf;

/// Errors from building the Linux guest.
#[derive(Debug, thiserror::Error)]
pub enum LinuxError {
    /// The kernel source package is not installed and cannot be installed here.
    #[error("the kernel source {path} is missing: install Debian's linux-source-6.1 (apt-get install linux-source-6.1)")]
    NoSource {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// A build tool failed.
    #[error("{step} failed (see {log} for the full output):\n{tail}")]
    Step {
        /// Which step.
        step: String,
        /// The log file.
        log: PathBuf,
        /// The last lines of output.
        tail: String,
    },
    /// A tool could not be started.
    #[error("cannot run {tool}")]
    Spawn {
        /// The tool.
        tool: String,
        /// The operating system's error (errno), shown as the cause.
        #[source]
        source: std::io::Error,
    },
    /// File system trouble in the cache.
    #[error("{what} {path}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The operating system's error (errno), shown as the cause.
        #[source]
        source: std::io::Error,
    },
    /// Build tools or the source package are missing (all of them are named at once).
    #[error("cannot build the Linux kernel: missing {names}; install them with `{command}` (or `vmscope guests build linux --install-deps`)")]
    MissingTools {
        /// What is missing.
        names: String,
        /// The command that installs it.
        command: String,
    },
    /// busybox is missing.
    #[error("{0} is missing: install Debian's busybox-static (apt-get install busybox-static)")]
    NoBusybox(PathBuf),
}
