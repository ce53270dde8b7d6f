//! The container guest: a real OCI bundle (config.json built with the `oci-spec` crate,
//! a root file system whose only program is the static workload binary, so nothing needs
//! installing) run by a real OCI runtime
//! (`--runtime`): the embedded one, youki's `libcontainer` linked into vmscope ([`embedded`]),
//! or `runc` or any runtime on PATH with runc's CLI.

pub mod cgroup;
pub mod embedded;
mod interrupt;
pub mod seccomp;
pub mod seccomp_bpf;
pub mod userns;

pub use cgroup::CgroupStats;
use oci_spec::runtime::{
    LinuxIdMappingBuilder, LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder,
    LinuxResourcesBuilder, ProcessBuilder, RootBuilder, Spec,
};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Errors from the container guest.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// The runtime is not installed.
    #[error(
        "the OCI runtime {0:?} is not on PATH: install it (apt-get install runc) or pass --runtime embedded"
    )]
    NoRuntime(String),
    /// Writing the bundle failed.
    #[error("cannot write the OCI bundle at {path}")]
    Bundle {
        /// Where.
        path: PathBuf,
        /// The operating system's error (errno), shown as the cause.
        #[source]
        source: std::io::Error,
    },
    /// The OCI spec could not be built or saved.
    #[error("cannot build config.json: {0}")]
    Spec(String),
    /// The runtime could not be started.
    #[error("cannot run {runtime}")]
    Spawn {
        /// The runtime.
        runtime: String,
        /// The operating system's error (errno), shown as the cause.
        #[source]
        source: std::io::Error,
    },
    /// The runtime failed before the workload ran.
    #[error("{runtime} failed: {stderr}")]
    Runtime {
        /// The runtime.
        runtime: String,
        /// What it said.
        stderr: String,
    },
}

/// An OCI bundle on disk (removed when dropped).
#[derive(Debug)]
pub struct Bundle {
    /// The bundle directory (config.json and rootfs/).
    pub dir: PathBuf,
    /// Whether the container gets a user namespace, and with which mapping (`-v` prints it).
    pub userns: userns::Decision,
}

impl Drop for Bundle {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What a container run produced.
#[derive(Debug)]
pub struct ContainerRun {
    /// The workload's exit status.
    pub code: Option<i32>,
    /// Wall time from starting the runtime to its exit.
    pub elapsed: Duration,
    /// What the runtime printed on stderr.
    pub stderr: String,
    /// The signal (SIGINT, SIGTERM, SIGHUP) that ended the container early, if one did.
    pub interrupted: Option<i32>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ContainerError + '_ {
    move |source| ContainerError::Bundle { path: path.into(), source }
}

/// Processes a container may have at once (the cgroup `pids` controller): the built-in
/// workloads need one; this leaves room for a shell and its pipelines.
pub const PIDS_LIMIT: i64 = 128;

/// Where bundles are made: `<cache>/containers`, or, for containers in a user namespace,
/// a root-owned `vmscope-bundles-0` (0711) in the temporary directory: the mapped root
/// must be able to walk down to its rootfs, and the cache is usually under `/root` (0700).
fn bundles_dir(decision: &userns::Decision) -> Result<PathBuf, ContainerError> {
    let userns::Decision::Use(_) = decision else { return Ok(crate::cache::root().join("containers")) };
    let dir = std::env::temp_dir().join(format!("vmscope-bundles-{}", nix::unistd::geteuid()));
    traversable_dir(&dir)?;
    Ok(dir)
}

/// Creates `dir` (0711) or checks an existing one: a real directory (not a symbolic link),
/// owned by this user, writable by no one else, so no other user can plant a bundle or
/// redirect one in a shared temporary directory.
fn traversable_dir(dir: &Path) -> Result<(), ContainerError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    match std::fs::DirBuilder::new().mode(0o711).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(dir)(e)),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(io(dir))?;
    let refuse = |why: &str| ContainerError::Bundle {
        path: dir.into(),
        source: std::io::Error::new(std::io::ErrorKind::PermissionDenied, why.to_string()),
    };
    if !meta.file_type().is_dir() {
        return Err(refuse("not a directory (a symbolic link or a file is in the way)"));
    }
    if meta.uid() != nix::unistd::geteuid().as_raw() {
        return Err(refuse("owned by another user"));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(refuse("writable by others"));
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711)).map_err(io(dir))
}

/// The user-namespace decision for this process's containers, probed once.
fn userns_decision() -> userns::Decision {
    static DECISION: std::sync::OnceLock<userns::Decision> = std::sync::OnceLock::new();
    DECISION
        .get_or_init(|| {
            if std::env::var_os("VMSCOPE_NO_USERNS").is_some() {
                return userns::Decision::Skip("VMSCOPE_NO_USERNS is set".into());
            }
            userns::decide(&userns::probe())
        })
        .clone()
}

/// Gives `path` and everything under it to the container's root (`lchown`: links are
/// not followed).
fn chown_tree(path: &Path, uid: u32, gid: u32) -> Result<(), ContainerError> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(io(path))?;
    if std::fs::symlink_metadata(path).map_err(io(path))?.is_dir() {
        for e in std::fs::read_dir(path).map_err(io(path))? {
            chown_tree(&e.map_err(io(path))?.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// Adds a user namespace mapping container ids 0..[`userns::MAP_SIZE`] to `m`'s host range.
fn add_user_namespace(spec: &mut Spec, m: userns::Mapping) -> Result<(), ContainerError> {
    let spec_err = |e: &dyn std::fmt::Display| ContainerError::Spec(e.to_string());
    let map = |host: u32| {
        LinuxIdMappingBuilder::default()
            .container_id(0u32)
            .host_id(host)
            .size(userns::MAP_SIZE)
            .build()
            .map_err(|e| spec_err(&e))
    };
    let (uids, gids) = (map(m.uid_start)?, map(m.gid_start)?);
    let user =
        LinuxNamespaceBuilder::default().typ(LinuxNamespaceType::User).build().map_err(|e| spec_err(&e))?;
    if let Some(linux) = spec.linux_mut() {
        let mut namespaces = linux.namespaces().clone().unwrap_or_default();
        namespaces.push(user);
        linux.set_namespaces(Some(namespaces));
        linux.set_uid_mappings(Some(vec![uids]));
        linux.set_gid_mappings(Some(vec![gids]));
    }
    Ok(())
}

/// Eight random bytes in hex, from the kernel's generator.
fn random_suffix() -> std::io::Result<String> {
    let mut b = [0u8; 8];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Removes bundles whose process is gone (`bundle-PID-…` with no `/proc/PID`): what a run
/// that was killed left behind.
fn remove_stale_bundles(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        let pid = name
            .strip_prefix("bundle-")
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists()) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Creates a fresh bundle directory, private (0700) and with a name no one can guess or
/// already hold: `bundle-PID-SEQ-RANDOM`.
fn create_bundle_dir(decision: &userns::Decision) -> Result<PathBuf, ContainerError> {
    use std::os::unix::fs::DirBuilderExt;
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let parent = bundles_dir(decision)?;
    std::fs::create_dir_all(&parent).map_err(io(&parent))?;
    remove_stale_bundles(&parent);
    let suffix = random_suffix().map_err(io(Path::new("/dev/urandom")))?;
    let dir = parent.join(format!(
        "bundle-{}-{}-{suffix}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::DirBuilder::new().mode(0o700).create(&dir).map_err(io(&dir))?;
    Ok(dir)
}

/// Builds a bundle that runs `/bin/workload ARGS…` with an optional memory limit (bytes).
/// Its root file system holds the static workload binary and nothing else. When
/// [`userns::decide`] allows it (vmscope runs as root, user namespaces work; set
/// `VMSCOPE_NO_USERNS` to opt out) the container gets a user namespace: its root is an
/// unprivileged host uid, and the bundle belongs to that uid.
pub fn prepare_bundle(args: &[String], memory_limit: Option<i64>) -> Result<Bundle, ContainerError> {
    prepare_bundle_with(args, memory_limit, userns_decision())
}

/// [`prepare_bundle`] with the user-namespace decision given.
pub fn prepare_bundle_with(
    args: &[String],
    memory_limit: Option<i64>,
    decision: userns::Decision,
) -> Result<Bundle, ContainerError> {
    let dir = create_bundle_dir(&decision)?;
    let bundle = Bundle { dir: dir.clone(), userns: decision };
    let rootfs = dir.join("rootfs");
    for d in ["bin", "proc", "dev", "sys", "tmp", "etc"] {
        std::fs::create_dir_all(rootfs.join(d)).map_err(io(&rootfs))?;
    }
    let workload = rootfs.join("bin/workload");
    std::fs::write(&workload, crate::workload::ELF).map_err(io(&workload))?;
    let mut perm = std::fs::metadata(&workload).map_err(io(&workload))?.permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&workload, perm).map_err(io(&workload))?;

    let spec_err = |e: &dyn std::fmt::Display| ContainerError::Spec(e.to_string());
    let mut spec = Spec::default();
    let mut argv = vec!["/bin/workload".to_string()];
    argv.extend(args.iter().cloned());
    let process = ProcessBuilder::default()
        .terminal(false)
        .args(argv)
        .env(vec!["PATH=/bin".to_string()])
        .cwd("/")
        .build()
        .map_err(|e| spec_err(&e))?;
    spec.set_process(Some(process));
    spec.set_root(Some(
        RootBuilder::default().path("rootfs").readonly(true).build().map_err(|e| spec_err(&e))?,
    ));
    spec.set_hostname(Some("vmscope-container".into()));
    // A fork bomb in the workload stops at PIDS_LIMIT processes instead of filling the host.
    let pids = LinuxPidsBuilder::default().limit(PIDS_LIMIT).build().map_err(|e| spec_err(&e))?;
    let mut resources = LinuxResourcesBuilder::default().pids(pids);
    if let Some(limit) = memory_limit {
        let memory = LinuxMemoryBuilder::default().limit(limit).build().map_err(|e| spec_err(&e))?;
        resources = resources.memory(memory);
    }
    let resources = resources.build().map_err(|e| spec_err(&e))?;
    // Docker's default seccomp profile: what a container user expects a runtime to apply.
    let profile = seccomp::default_profile().map_err(|e| spec_err(&e))?;
    if let Some(linux) = spec.linux_mut() {
        linux.set_resources(Some(resources));
        linux.set_seccomp(Some(profile));
    }
    if let userns::Decision::Use(m) = bundle.userns {
        add_user_namespace(&mut spec, m)?;
    }
    spec.save(dir.join("config.json")).map_err(|e| spec_err(&e))?;
    if let userns::Decision::Use(m) = bundle.userns {
        chown_tree(&dir, m.uid_start, m.gid_start)?;
    }
    Ok(bundle)
}

/// Where `runtime` is: the current executable for the embedded runtime, else a path or a
/// program on PATH.
pub fn runtime_path(runtime: &str) -> Option<PathBuf> {
    if runtime == embedded::NAME {
        return std::env::current_exe().ok();
    }
    if runtime.contains('/') {
        return Path::new(runtime).exists().then(|| runtime.into());
    }
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(runtime)).find(|p| p.exists()))
}

/// A container started in the background (for the TUI): its runtime process, with the
/// workload's standard output piped.
pub struct ContainerProcess {
    /// The runtime process (`runc run`), which lives as long as the workload.
    pub child: std::process::Child,
    /// The container id.
    pub id: String,
    /// The init process, once found (it keeps its pid when it execs the workload).
    init: std::sync::OnceLock<u32>,
}

/// `RUNTIME run --bundle DIR ID` for `bundle`, and the container id.
fn run_command(bundle: &Bundle, runtime: &str) -> Result<(Command, String), ContainerError> {
    let path = runtime_path(runtime).ok_or_else(|| ContainerError::NoRuntime(runtime.into()))?;
    let id =
        bundle.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "vmscope".into());
    let mut cmd = if runtime == embedded::NAME {
        embedded::command(&bundle.dir, &id)
            .map_err(|source| ContainerError::Spawn { runtime: runtime.into(), source })?
    } else {
        let mut cmd = Command::new(&path);
        cmd.args(["run", "--bundle"]).arg(&bundle.dir).arg(&id);
        cmd
    };
    cmd.stdin(Stdio::null()).stderr(Stdio::piped());
    Ok((cmd, id))
}

/// Starts the bundle with `runtime` without waiting for it.
pub fn spawn(bundle: &Bundle, runtime: &str) -> Result<ContainerProcess, ContainerError> {
    let (mut cmd, id) = run_command(bundle, runtime)?;
    let child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|source| ContainerError::Spawn { runtime: runtime.into(), source })?;
    Ok(ContainerProcess { child, id, init: Default::default() })
}

impl ContainerProcess {
    /// The container's init process (the workload, pid 1 in its namespace) once the
    /// runtime has started it: runc and libcontainer both make it a child of the runtime
    /// process. `None` before it exists and after it exits.
    pub fn init_pid(&self) -> Option<u32> {
        if let Some(pid) = self.init.get() {
            return Some(*pid);
        }
        // The runtime's first children may be its own set-up stages (runc's nsexec forks
        // twice before the init), which exit: taking one of them would leave the cgroup and
        // process views empty for good. The init is the child in a PID namespace of its own.
        let pid =
            cgroup::children_of(self.child.id()).into_iter().find(|p| cgroup::in_own_pid_namespace(*p))?;
        Some(*self.init.get_or_init(|| pid))
    }

    /// Ends the container: SIGKILL to its init process (which, as pid 1 of the container's
    /// pid namespace, takes every process in it along), so that the runtime sees it exit and
    /// cleans up its state and cgroups; then waits for the runtime, killing it only if it
    /// is still there after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        if let Some(pid) = self.init_pid().and_then(|p| i32::try_from(p).ok()) {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// What the kernel accounts to the container's cgroups, found through its init
    /// process's `/proc/PID/cgroup` (empty when the container is not running).
    pub fn cgroup_stats(&self) -> CgroupStats {
        self.init_pid().and_then(cgroup::dirs_of).map(|d| d.stats()).unwrap_or_default()
    }
}

/// Runs the bundle with `runtime`; the workload's output goes to this process's stdout.
/// A SIGINT, SIGTERM or SIGHUP meanwhile ends the container (SIGKILL to its init) rather
/// than this process, so the runtime and the caller still clean up ([`ContainerRun::interrupted`]).
pub fn run(bundle: &Bundle, runtime: &str) -> Result<ContainerRun, ContainerError> {
    let (mut cmd, _) = run_command(bundle, runtime)?;
    let spawn_err = |source| ContainerError::Spawn { runtime: runtime.into(), source };
    let start = Instant::now();
    let mut child = cmd.stdout(Stdio::inherit()).spawn().map_err(spawn_err)?;
    let guard = interrupt::Guard::new(child.id());
    let stderr = child.stderr.take().map(|mut pipe| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = std::io::Read::read_to_end(&mut pipe, &mut text);
            text
        })
    });
    let status = child.wait().map_err(spawn_err)?;
    let elapsed = start.elapsed();
    let interrupted = guard.caught();
    drop(guard);
    let stderr = stderr.and_then(|t| t.join().ok()).unwrap_or_default();
    let stderr = String::from_utf8_lossy(&stderr).into_owned();
    // runc and the embedded runtime report their own failures on stderr with a non-zero
    // status before the process starts; a workload's own non-zero status comes without
    // such a message.
    if !status.success() && (stderr.contains("runc run failed") || stderr.contains(embedded::FAILED)) {
        return Err(ContainerError::Runtime { runtime: runtime.into(), stderr: stderr.trim().into() });
    }
    Ok(ContainerRun { code: status.code(), elapsed, stderr, interrupted })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_parent_in_a_shared_directory_must_be_ours_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let fresh = tmp.path().join("fresh");
        traversable_dir(&fresh).unwrap();
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o711, "traversable, not listable");
        traversable_dir(&fresh).expect("an existing one of ours is reused");

        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&fresh, &link).unwrap();
        let e = traversable_dir(&link).unwrap_err().to_string() + &format!("{:?}", traversable_dir(&link));
        assert!(e.contains("symbolic link"), "{e}");

        let open = tmp.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(format!("{:?}", traversable_dir(&open)).contains("writable by others"));

        if nix::unistd::geteuid().is_root() {
            let theirs = tmp.path().join("theirs");
            std::fs::create_dir(&theirs).unwrap();
            std::os::unix::fs::chown(&theirs, Some(12345), None).unwrap();
            assert!(format!("{:?}", traversable_dir(&theirs)).contains("owned by another user"));
        }
    }

    #[test]
    fn a_user_namespace_bundle_maps_root_and_belongs_to_the_mapped_root() {
        use std::os::unix::fs::MetadataExt;
        if !nix::unistd::geteuid().is_root() {
            return; // chown needs root; the decision skips the namespace without it anyway
        }
        let m =
            userns::Mapping { uid_start: 300_000, gid_start: 400_000, source: userns::RangeSource::Fixed };
        let b = prepare_bundle_with(&["hello".into()], None, userns::Decision::Use(m)).unwrap();
        let spec = Spec::load(b.dir.join("config.json")).unwrap();
        let linux = spec.linux().as_ref().unwrap();
        let kinds: Vec<_> = linux.namespaces().as_ref().unwrap().iter().map(|n| n.typ()).collect();
        assert!(kinds.contains(&LinuxNamespaceType::User), "{kinds:?}");
        let uid = &linux.uid_mappings().as_ref().unwrap()[0];
        assert_eq!((uid.container_id(), uid.host_id(), uid.size()), (0, 300_000, userns::MAP_SIZE));
        let gid = &linux.gid_mappings().as_ref().unwrap()[0];
        assert_eq!((gid.container_id(), gid.host_id(), gid.size()), (0, 400_000, userns::MAP_SIZE));
        for p in [b.dir.clone(), b.dir.join("rootfs/bin/workload"), b.dir.join("config.json")] {
            let meta = std::fs::symlink_metadata(&p).unwrap();
            assert_eq!((meta.uid(), meta.gid()), (300_000, 400_000), "{}", p.display());
        }
        let skip = prepare_bundle_with(&[], None, userns::Decision::Skip("test".into())).unwrap();
        let spec = Spec::load(skip.dir.join("config.json")).unwrap();
        assert!(spec.linux().as_ref().unwrap().uid_mappings().is_none());
    }

    #[test]
    fn bundle_has_a_config_and_a_rootfs() {
        let b = prepare_bundle(&["compute".into(), "100".into()], Some(64 << 20)).unwrap();
        let spec = Spec::load(b.dir.join("config.json")).unwrap();
        assert_eq!(
            spec.process().as_ref().unwrap().args().as_ref().unwrap(),
            &["/bin/workload", "compute", "100"]
        );
        let limit =
            spec.linux().as_ref().unwrap().resources().as_ref().unwrap().memory().as_ref().unwrap().limit();
        assert_eq!(limit, Some(64 << 20));
        let pids = spec.linux().as_ref().unwrap().resources().as_ref().unwrap().pids().unwrap().limit();
        assert_eq!(pids, PIDS_LIMIT);
        assert!(b.dir.join("rootfs/bin/workload").exists());
        let programs: Vec<_> =
            std::fs::read_dir(b.dir.join("rootfs/bin")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(programs, ["workload"], "the workload is the container's only program");
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&b.dir).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o700, "the bundle is private");
        let other = prepare_bundle(&[], None).unwrap();
        assert_ne!(other.dir, b.dir);
        let dir = b.dir.clone();
        drop(b);
        assert!(!dir.exists(), "the bundle is removed with its handle");
        assert!(matches!(
            run(
                &Bundle { dir: "/nonexistent".into(), userns: userns::Decision::Skip("test".into()) },
                "no-such-runtime"
            ),
            Err(ContainerError::NoRuntime(_))
        ));
    }
}
