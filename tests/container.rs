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
    use std::time::{Duration, Instant};
    for runtime in runtimes() {
        let args = ["run", "container", "-v", "--runtime", runtime, "--workload", "syscalls", "100000000000"];
        let (child, lines) = common::spawn_with_stderr_lines(&args);
        let mut said = Vec::new();
        // `-v` names the bundle (under the cache, or a traversable temporary directory
        // when the container has a user namespace).
        let deadline = Instant::now() + Duration::from_secs(60);
        let bundle = loop {
            let line = lines.recv_timeout(Duration::from_secs(60)).expect("vmscope -v names the bundle");
            said.push(line.clone());
            if let Some(rest) =
                line.strip_prefix("vmscope: host ").and_then(|l| l.split("container bundle ").nth(1))
            {
                break std::path::PathBuf::from(rest.split(" run by ").next().unwrap());
            }
            assert!(Instant::now() < deadline, "{runtime}: no bundle named: {said:?}");
        };
        let name = bundle.file_name().unwrap().to_string_lossy().into_owned();
        // Wait (bounded) until the workload runs inside the bundle's container.
        let workload = loop {
            if let Some(pid) = workload_in(&name) {
                break pid;
            }
            assert!(Instant::now() < deadline, "{runtime}: the workload never started");
            std::thread::sleep(Duration::from_millis(20));
        };
        let ok = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
        assert!(ok.success());
        let o = child.wait_with_output().unwrap();
        said.extend(lines.iter());
        let said = said.join("\n");
        assert_eq!(o.status.code(), Some(130), "{runtime}: {said}");
        assert!(said.contains("interrupted by signal 2"), "{runtime}: {said}");
        assert!(
            !std::path::Path::new(&format!("/proc/{workload}")).exists(),
            "{runtime}: the workload is gone"
        );
        assert!(!bundle.exists(), "{runtime}: bundle left behind: {}", bundle.display());
    }
}

/// As root with user namespaces available, the container's root is an unprivileged host
/// uid under both runtimes (`/proc/self/uid_map` inside says so), and -v prints the
/// decision; `VMSCOPE_NO_USERNS` opts out.
#[test]
fn the_container_runs_in_a_user_namespace_when_the_host_allows() {
    let decision = guests::container::userns::decide(&guests::container::userns::probe());
    for runtime in runtimes() {
        let o = vmscope(&[
            "run",
            "container",
            "-v",
            "--runtime",
            runtime,
            "--workload",
            "cat",
            "/proc/self/uid_map",
        ]);
        assert_eq!(o.status.code(), Some(0), "{runtime}: {}", stderr(&o));
        assert!(stderr(&o).contains(&format!("vmscope: {decision}")), "{runtime}: {}", stderr(&o));
        let map: Vec<u64> = stdout(&o).split_whitespace().filter_map(|w| w.parse().ok()).collect();
        match decision {
            guests::container::userns::Decision::Use(m) => {
                assert_eq!(map, [0, u64::from(m.uid_start), 65536], "{runtime}: {}", stdout(&o))
            }
            guests::container::userns::Decision::Skip(_) => {
                assert_eq!(map, [0, 0, 4294967295], "{runtime}: {}", stdout(&o))
            }
        }
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_vmscope"))
            .args(["run", "container", "-v", "--runtime", runtime, "--workload", "cat", "/proc/self/uid_map"])
            .env("VMSCOPE_NO_USERNS", "1")
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{runtime}: {}", stderr(&o));
        assert!(stderr(&o).contains("no user namespace: VMSCOPE_NO_USERNS is set"), "{}", stderr(&o));
        let map: Vec<u64> = stdout(&o).split_whitespace().filter_map(|w| w.parse().ok()).collect();
        assert_eq!(map, [0, 0, 4294967295], "{runtime}: host root, unmapped: {}", stdout(&o));
    }
}

#[test]
fn the_default_seccomp_profile_refuses_a_call_outside_it() {
    // Both runtimes enforce Docker's default profile (runc through libseccomp, the embedded
    // one through seccompiler): personality(ADDR_NO_RANDOMIZE) gets EPERM, and the
    // workload runs in filter mode.
    for runtime in runtimes() {
        let o = vmscope(&["run", "container", "--runtime", runtime, "-v", "--workload", "syscall-denied"]);
        assert_eq!(o.status.code(), Some(0), "{runtime}: {}", stderr(&o));
        assert!(stdout(&o).contains("failed with EPERM: seccomp refused it"), "{runtime}: {}", stdout(&o));
        assert!(stderr(&o).contains("seccomp: default profile ("), "{runtime}: {}", stderr(&o));
        let o =
            vmscope(&["run", "container", "--runtime", runtime, "--workload", "cat", "/proc/self/status"]);
        assert_eq!(o.status.code(), Some(0), "{runtime}: {}", stderr(&o));
        let status = stdout(&o);
        let mode = status.lines().find(|l| l.starts_with("Seccomp:")).map(|l| l.split_whitespace().nth(1));
        assert_eq!(mode, Some(Some("2")), "{runtime}: seccomp filter mode: {status}");
    }
}
