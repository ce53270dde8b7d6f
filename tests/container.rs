//! End to end: the container guest, a real OCI bundle run by the embedded runtime (youki's
//! libcontainer, the default) and by runc when it is installed.

mod common;
use common::{stderr, stdout, vmscope};

/// The runtimes to test: the embedded one always, runc where it is installed.
fn runtimes() -> Vec<&'static str> {
    let mut r = vec!["embedded"];
    if guests::container::runtime_path("runc").is_some() {
        r.push("runc");
    }
    r
}

#[test]
fn every_workload_runs_in_a_container() {
    for runtime in runtimes() {
        every_workload_runs_with(runtime);
    }
}

fn every_workload_runs_with(runtime: &str) {
    for (workload, expect) in [
        (&["hello"][..], "Hello from the vmscope workload (pid 1"),
        (&["compute", "1000000"][..], "compute: N=1000000 primes=78498 checksum=0x8be2da9e7"),
        (&["syscalls", "1000"][..], "syscalls: 1000 getppid calls"),
        (&["io 65536 --batch 4096"][..], "io: 65536 bytes in 16 writes"),
    ] {
        let mut args = vec!["run", "container", "--runtime", runtime, "--workload"];
        args.extend_from_slice(workload);
        let o = vmscope(&args);
        assert_eq!(o.status.code(), Some(0), "{runtime} {workload:?}: {}", stderr(&o));
        assert!(stdout(&o).contains(expect), "{runtime} {workload:?}: {}", stdout(&o));
    }
}

#[test]
fn the_memory_limit_is_enforced() {
    for runtime in runtimes() {
        let o = vmscope(&[
            "run",
            "container",
            "--runtime",
            runtime,
            "--mem",
            "8",
            "--workload",
            "compute",
            "400000000",
        ]);
        assert_eq!(o.status.code(), Some(137), "{runtime}: {}", stderr(&o));
        assert!(stderr(&o).contains("memory limit of 8 MiB"), "{runtime}: {}", stderr(&o));
    }
}

#[test]
fn the_default_runtime_is_the_embedded_one() {
    let o = vmscope(&["run", "container", "-v", "--workload", "hello"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("run by embedded"), "{}", stderr(&o));
}

#[test]
fn an_embedded_runtime_failure_names_the_bundle() {
    // The hidden subcommand, called the way `--runtime embedded` calls it, on no bundle.
    let o = vmscope(&["oci-runtime", "run", "--bundle", "/nonexistent-bundle", "vmscope-test"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("vmscope oci-runtime run failed"), "{}", stderr(&o));
    assert!(stderr(&o).contains("/nonexistent-bundle"), "{}", stderr(&o));
}

#[test]
fn a_missing_runtime_is_named() {
    let o = vmscope(&["run", "container", "--runtime", "no-such-oci-runtime"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("\"no-such-oci-runtime\" is not on PATH"), "{}", stderr(&o));
}

/// The pid of a `/bin/workload` process whose cgroup names `bundle`, if one runs.
fn workload_in(bundle: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.filter_map(Result::ok).find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let cgroup = std::fs::read_to_string(e.path().join("cgroup")).ok()?;
        (cmdline.starts_with(b"/bin/workload\0") && cgroup.contains(bundle)).then_some(pid)
    })
}

/// Ctrl-C (SIGINT to vmscope alone, as `kill -INT` sends it) while a container runs: the
/// container is killed, the runtime deletes it, vmscope removes the bundle and exits 130.
#[test]
fn an_interrupt_ends_the_container_and_removes_its_bundle() {
    for runtime in runtimes() {
        let cache = tempfile::tempdir().unwrap();
        let bundles = cache.path().join("containers");
        common::require_kvm();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_vmscope"))
            .args(["run", "container", "--runtime", runtime, "--workload", "syscalls", "100000000000"])
            .env("VMSCOPE_CACHE", cache.path())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Wait (bounded) until the workload runs inside the bundle's container.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let workload = loop {
            let bundle = std::fs::read_dir(&bundles)
                .ok()
                .and_then(|mut d| d.next())
                .and_then(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned());
            if let Some(pid) = bundle.as_deref().and_then(workload_in) {
                break pid;
            }
            assert!(std::time::Instant::now() < deadline, "{runtime}: the workload never started");
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let ok = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
        assert!(ok.success());
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(130), "{runtime}: {}", stderr(&o));
        assert!(stderr(&o).contains("interrupted by signal 2"), "{runtime}: {}", stderr(&o));
        assert!(
            !std::path::Path::new(&format!("/proc/{workload}")).exists(),
            "{runtime}: the workload is gone"
        );
        let left: Vec<_> = std::fs::read_dir(&bundles).unwrap().collect();
        assert!(left.is_empty(), "{runtime}: bundles left behind: {left:?}");
    }
}

#[test]
fn the_default_seccomp_profile_refuses_a_call_outside_it() {
    // runc enforces Docker's default profile: personality(ADDR_NO_RANDOMIZE) gets EPERM.
    if guests::container::runtime_path("runc").is_some() {
        let o = vmscope(&["run", "container", "--runtime", "runc", "-v", "--workload", "syscall-denied"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(stdout(&o).contains("failed with EPERM: seccomp refused it"), "{}", stdout(&o));
        assert!(stderr(&o).contains("seccomp: default profile ("), "{}", stderr(&o));
    }
    // The embedded runtime has no libseccomp: the call goes through, and -v says so.
    let o = vmscope(&["run", "container", "-v", "--workload", "syscall-denied"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("was allowed"), "{}", stdout(&o));
    assert!(stderr(&o).contains("not enforced"), "{}", stderr(&o));
}
