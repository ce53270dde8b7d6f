//! The embedded OCI runtime: youki's `libcontainer` crate, linked into vmscope, so a
//! container runs with nothing installed.
//!
//! libcontainer forks (clone) an intermediate and an init process from the calling
//! process, and runs Rust code in them before the workload's `execve`. Doing that from a
//! multi-threaded process (the TUI, a measurement harness) is unsafe: a lock held by another
//! thread at the fork stays held forever in the child. So vmscope never calls it in
//! process: `--runtime embedded` re-executes the vmscope binary itself as a small OCI
//! runtime, `vmscope oci-runtime run --bundle DIR ID` (a hidden subcommand with runc's
//! CLI shape), and [`run_here`] is what that single-threaded process calls. Its exit status
//! is the workload's (128 + signal when a signal ended it, as runc reports), so callers
//! treat the two runtimes alike.
//!
//! Seccomp: libcontainer is built without libseccomp, so the bundle's profile is compiled
//! here with seccompiler ([`super::seccomp_bpf`]) before the container is created, and a
//! small executor installs it in the init process right before the workload's `execve`
//! (where libcontainer would have installed it).
//!
//! Cgroups: libcontainer picks its v1 manager on a legacy or hybrid host (this one: v1
//! controllers, a v2 mount with none) and its v2 manager on a unified one; the spec's
//! `cgroupsPath` places the container (vmscope leaves it unset, and libcontainer then
//! uses `:youki:ID`, a directory of that name under each v1 controller's root).

use std::path::{Path, PathBuf};

/// The `--runtime` name that selects the embedded runtime.
pub const NAME: &str = "embedded";

/// The first line the embedded runtime prints on stderr when it fails before the workload
/// ran (how a caller tells its failure from a workload's own non-zero status).
pub const FAILED: &str = "vmscope oci-runtime run failed";

/// Where the embedded runtime keeps container state (runc's is /run/runc).
pub const STATE_ROOT: &str = "/run/vmscope-oci";

/// Errors of the embedded runtime.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    /// libcontainer could not create or start the container.
    #[error("libcontainer cannot {action} container {id:?} from bundle {bundle}")]
    Container {
        /// What it was doing.
        action: &'static str,
        /// The container id.
        id: String,
        /// The bundle.
        bundle: PathBuf,
        /// libcontainer's error, with its own chain of causes.
        #[source]
        source: Box<libcontainer::error::LibcontainerError>,
    },
    /// The bundle's seccomp profile cannot be read or compiled.
    #[error("cannot use the seccomp profile of bundle {bundle}: {reason}")]
    Seccomp {
        /// The bundle.
        bundle: PathBuf,
        /// What went wrong (reading config.json, or the profile).
        reason: String,
    },
    /// The container started but has no init process recorded.
    #[error("container {0:?} started without an init pid")]
    NoPid(String),
    /// Waiting for the init process failed.
    #[error("cannot wait for container {id:?} (init pid {pid})")]
    Wait {
        /// The container id.
        id: String,
        /// Its init pid.
        pid: i32,
        /// The system call's error (errno).
        #[source]
        source: nix::Error,
    },
}

/// The command line that runs `bundle` as container `id` with the embedded runtime: the
/// current executable's hidden `oci-runtime run` subcommand.
pub fn command(bundle: &Path, id: &str) -> std::io::Result<std::process::Command> {
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.args(["oci-runtime", "run", "--bundle"]).arg(bundle).arg(id);
    Ok(cmd)
}

/// The workload's executor: installs the compiled seccomp programs, then does what
/// libcontainer's default executor does (`execvp` of the process's args).
#[derive(Clone)]
struct FilteredExecutor {
    seccomp: Option<super::seccomp_bpf::Compiled>,
}

impl libcontainer::workload::Executor for FilteredExecutor {
    fn exec(&self, spec: &oci_spec::runtime::Spec) -> Result<(), libcontainer::workload::ExecutorError> {
        if let Some(programs) = &self.seccomp {
            super::seccomp_bpf::install(programs)
                .map_err(|e| libcontainer::workload::ExecutorError::Other(e.to_string()))?;
        }
        libcontainer::workload::default::DefaultExecutor {}.exec(spec)
    }

    fn validate(
        &self,
        spec: &oci_spec::runtime::Spec,
    ) -> Result<(), libcontainer::workload::ExecutorValidationError> {
        libcontainer::workload::default::DefaultExecutor {}.validate(spec)
    }
}

/// The bundle's seccomp profile compiled to BPF (`None` when config.json has none).
fn bundle_seccomp(bundle: &Path) -> Result<Option<super::seccomp_bpf::Compiled>, EmbeddedError> {
    let err = |reason: String| EmbeddedError::Seccomp { bundle: bundle.into(), reason };
    let spec = oci_spec::runtime::Spec::load(bundle.join("config.json")).map_err(|e| err(e.to_string()))?;
    let Some(profile) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) else { return Ok(None) };
    super::seccomp_bpf::compile(profile).map(Some).map_err(|e| err(e.to_string()))
}

/// Creates, starts and waits for container `id` from `bundle` in this process, removes it,
/// and returns the workload's exit status (128 + signal when killed). Call it only from a
/// single-threaded process (see the module documentation).
pub fn run_here(bundle: &Path, id: &str) -> Result<i32, EmbeddedError> {
    use libcontainer::container::builder::ContainerBuilder;
    use libcontainer::syscall::syscall::SyscallType;

    let err = |action| {
        let (id, bundle) = (id.to_string(), bundle.to_path_buf());
        move |source| EmbeddedError::Container { action, id, bundle, source: Box::new(source) }
    };
    let seccomp = bundle_seccomp(bundle)?;
    let built = ContainerBuilder::new(id.into(), SyscallType::default())
        .with_executor(FilteredExecutor { seccomp })
        .with_root_path(STATE_ROOT)
        .map_err(err("use the state directory of"))?
        .validate_id()
        .map_err(err("accept the id of"))?
        .as_init(bundle)
        .with_systemd(false)
        .with_detach(false)
        .build();
    let mut container = match built {
        Ok(c) => c,
        Err(e) => {
            // A failed create can leave the container's state directory behind; the id is
            // validated, so it names a directory under STATE_ROOT and nothing else.
            let _ = std::fs::remove_dir_all(Path::new(STATE_ROOT).join(id));
            return Err(err("create")(e));
        }
    };
    let started = container.start().map_err(err("start"));
    let status = started.and_then(|()| {
        let pid = container.pid().ok_or_else(|| EmbeddedError::NoPid(id.into()))?;
        wait_for_init(pid).map_err(|source| EmbeddedError::Wait { id: id.into(), pid: pid.as_raw(), source })
    });
    // Remove the state and the cgroups whatever happened; a failed clean-up must not hide
    // the workload's status.
    if let Err(e) = container.delete(true) {
        tracing::warn!("cannot delete container {id:?}: {e}");
    }
    status
}

/// Waits for the init process `pid` and returns its status (128 + signal when killed).
///
/// SIGINT, SIGTERM and SIGHUP (a Ctrl-C reaches the whole process group) are taken
/// synchronously and answered with SIGKILL to the init: as pid 1 of its pid namespace the
/// workload ignores signals it has no handler for, and this process must live on to
/// delete the container rather than die and leave its state and cgroups behind. The mask
/// is set after the init was cloned, so the workload does not inherit it.
fn wait_for_init(pid: nix::unistd::Pid) -> Result<i32, nix::Error> {
    use nix::sys::signal::{kill, SigSet, Signal};
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

    let mut signals = SigSet::empty();
    for s in [Signal::SIGCHLD, Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        signals.add(s);
    }
    signals.thread_block()?;
    loop {
        // Checked before every wait: the init may have exited before SIGCHLD was blocked.
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, signal, _)) => return Ok(128 + signal as i32),
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(e) => return Err(e),
        }
        match signals.wait()? {
            Signal::SIGCHLD => {}
            _ => kill(pid, Signal::SIGKILL)?,
        }
    }
}
