//! Seccomp filters per VMM thread, built with seccompiler as Firecracker does: each thread
//! that handles guest or client input gets the smallest allow-list of system calls it needs,
//! installed on itself after its set-up and before the first input.
//!
//! | thread | installed | input it handles |
//! |---|---|---|
//! | [`Thread::Vcpu`] | first thing on the vCPU thread, before its first `KVM_RUN` | the guest's exits (port I/O, MMIO, virtio-blk requests, hypercalls) |
//! | [`Thread::Doorbell`] | first thing on the doorbell thread | the shared byte ring in guest memory |
//! | [`Thread::Main`] | by `vmscope run` once the guest is booted | gdb packets, session commands, stop events |
//! | [`Thread::Qmp`] | first thing on the QMP thread (`--qmp`) | QMP clients' JSON and passed descriptors |
//!
//! A call outside a thread's list raises `SIGSYS` (`SeccompAction::Trap`); the handler writes
//! which thread made which call (number and name) to standard error and ends the process
//! with [`EXIT_DENIED`], so a denied call is never a silent death. `--no-seccomp` sets
//! [`Policy::Off`] before anything starts, for experiments.
//!
//! ```no_run
//! use vmm::seccomp::{self, Policy, Thread};
//! seccomp::set_policy(Policy::On);
//! // ... boot the guest, then on the thread that serves clients:
//! seccomp::install(Thread::Main).unwrap();
//! ```

mod filters;
mod names;
mod sigsys;

use seccompiler::BpfProgram;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

pub use filters::Allowed;
pub use sigsys::syscall_name;

/// vmscope's exit status when a thread made a system call its filter denies (128 + SIGSYS,
/// as a shell reports a process killed by that signal).
pub const EXIT_DENIED: u8 = 128 + libc::SIGSYS as u8;

/// Whether threads get filters (set once at start-up, read by every thread start).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Every VMM thread installs its filter (the default).
    On,
    /// No filters (`--no-seccomp`), for experiments.
    Off,
}

static OFF: AtomicBool = AtomicBool::new(false);

/// Sets the process-wide policy. Threads started afterwards follow it; filters already
/// installed stay (a filter cannot be removed).
pub fn set_policy(policy: Policy) {
    OFF.store(policy == Policy::Off, Ordering::SeqCst);
}

/// The process-wide policy.
pub fn policy() -> Policy {
    if OFF.load(Ordering::SeqCst) {
        Policy::Off
    } else {
        Policy::On
    }
}

/// A kind of VMM thread, each with its own allow-list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Thread {
    /// A vCPU thread: `KVM_RUN` and the devices it drives.
    Vcpu,
    /// A doorbell's drain thread: the eventfd and the shared byte ring.
    Doorbell,
    /// The main thread of `vmscope run` after set-up: waiting for the guest, the gdb stub
    /// and session commands. Not installed by the TUI, whose main thread keeps starting
    /// guests and containers.
    Main,
    /// The QMP control socket's thread (`--qmp`): its clients, guest memory, vCPU requests
    /// and dump files.
    Qmp,
}

impl Thread {
    /// Every kind, in the order they are reported.
    pub const ALL: [Thread; 4] = [Thread::Vcpu, Thread::Doorbell, Thread::Main, Thread::Qmp];

    /// The kind's name, as reports spell it.
    pub fn name(self) -> &'static str {
        match self {
            Thread::Vcpu => "vcpu",
            Thread::Doorbell => "doorbell",
            Thread::Main => "main",
            Thread::Qmp => "qmp",
        }
    }

    /// When the filter is installed.
    pub fn installed(self) -> &'static str {
        match self {
            Thread::Vcpu => "on each vCPU thread before its first KVM_RUN",
            Thread::Doorbell => "on each doorbell thread before it reads the ring",
            Thread::Main => "on vmscope run's main thread once the guest is booted (not in the TUI)",
            Thread::Qmp => "on the QMP thread (--qmp) before it serves its first client",
        }
    }

    /// The system calls this thread may make, with the argument values it is held to.
    pub fn allow_list(self) -> Vec<Allowed> {
        filters::allow_list(self)
    }
}

/// Errors from building or installing a filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// seccompiler refused the allow-list (a bug in vmscope's lists).
    #[error("cannot build the seccomp filter of the {thread} thread")]
    Build {
        /// Which kind of thread.
        thread: &'static str,
        /// seccompiler's error compiling the allow-list into BPF.
        #[source]
        source: seccompiler::BackendError,
    },
    /// The kernel refused the filter (no seccomp support?).
    #[error("cannot install the seccomp filter of the {thread} thread (--no-seccomp runs without filters)")]
    Install {
        /// Which kind of thread.
        thread: &'static str,
        /// seccompiler's error (the kernel refused the filter, or it did not compile).
        #[source]
        source: seccompiler::Error,
    },
    /// The SIGSYS handler could not be installed.
    #[error("cannot install the SIGSYS handler that reports denied system calls")]
    Handler(#[source] std::io::Error),
}

/// The compiled filter of `thread` (compiled once per process).
fn program(thread: Thread) -> Result<&'static BpfProgram, SeccompError> {
    static PROGRAMS: [OnceLock<BpfProgram>; Thread::ALL.len()] =
        [const { OnceLock::new() }; Thread::ALL.len()];
    let slot = &PROGRAMS[thread as usize];
    if let Some(p) = slot.get() {
        return Ok(p);
    }
    let built =
        filters::compile(thread).map_err(|source| SeccompError::Build { thread: thread.name(), source })?;
    Ok(slot.get_or_init(|| built))
}

/// Installs `thread`'s filter on the calling thread, unless the policy is off. Returns
/// whether a filter was installed. Threads this thread starts afterwards inherit the filter.
pub fn install(thread: Thread) -> Result<bool, SeccompError> {
    if policy() == Policy::Off {
        return Ok(false);
    }
    let program = program(thread)?;
    sigsys::install_handler().map_err(SeccompError::Handler)?;
    sigsys::set_label(thread.name(), std::thread::current().name().unwrap_or("unnamed"));
    seccompiler::apply_filter(program)
        .map_err(|source| SeccompError::Install { thread: thread.name(), source })?;
    Ok(true)
}

/// [`install`] for a thread vmm starts itself (vCPU, doorbell): if the filter the policy
/// asks for cannot be installed, the process ends with a clear message rather than let the
/// thread serve a guest unfiltered.
pub fn enter(thread: Thread) {
    if let Err(e) = install(thread) {
        let mut msg = format!("vmscope: {e}");
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            msg.push_str(&format!(": {s}"));
            source = s.source();
        }
        eprintln!("{msg}");
        std::process::exit(1);
    }
}

/// Whether this kernel can trap a denied call (`SECCOMP_RET_TRAP`, listed in
/// `/proc/sys/kernel/seccomp/actions_avail`); the error says what is missing.
pub fn kernel_support() -> Result<(), String> {
    const ACTIONS: &str = "/proc/sys/kernel/seccomp/actions_avail";
    let actions = std::fs::read_to_string(ACTIONS)
        .map_err(|e| format!("the kernel offers no seccomp filters (cannot read {ACTIONS}: {e})"))?;
    if actions.split_whitespace().any(|a| a == "trap") {
        Ok(())
    } else {
        Err(format!("the kernel's seccomp cannot trap a call ({ACTIONS}: {})", actions.trim()))
    }
}

/// One kind of thread in a [`Report`].
#[derive(Clone, Debug, Serialize)]
pub struct ThreadReport {
    /// The kind.
    pub thread: Thread,
    /// How many system calls its allow-list holds.
    pub allowed: usize,
    /// When its filter is installed.
    pub installed: &'static str,
}

/// What the seccomp policy is and means here, for `vmscope host` and `vmscope doctor`.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// On or off (`--no-seccomp`).
    pub policy: Policy,
    /// `None` when the kernel can trap denied calls, else what is missing.
    pub kernel_problem: Option<String>,
    /// The exit status of a run that made a denied call.
    pub exit_status_when_denied: u8,
    /// The threads that get filters (all of them, whatever the policy).
    pub threads: Vec<ThreadReport>,
}

/// The policy and the filters of every kind of thread.
pub fn report() -> Report {
    Report {
        policy: policy(),
        kernel_problem: kernel_support().err(),
        exit_status_when_denied: EXIT_DENIED,
        threads: Thread::ALL
            .iter()
            .map(|&t| ThreadReport { thread: t, allowed: t.allow_list().len(), installed: t.installed() })
            .collect(),
    }
}

/// Whether the calling thread runs under a seccomp filter (from `/proc/thread-self/status`;
/// `None` when that cannot be read).
pub fn current_thread_filtered() -> Option<bool> {
    let status = std::fs::read_to_string("/proc/thread-self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Seccomp:"))?;
    Some(line.split_whitespace().nth(1)? != "0")
}

#[cfg(test)]
mod tests;
