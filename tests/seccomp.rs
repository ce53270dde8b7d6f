//! End to end: with the seccomp filters on (the default), every guest and client vmscope
//! serves runs as it does with `--no-seccomp`, and the filters are really there: each VMM
//! thread's `Seccomp:` line in /proc says filter mode. A denied call's report and exit
//! status are tested in vmm (`seccomp::tests`, in a child process).

mod common;
use common::{spawn_with_stderr_lines, stderr, stdout, vmscope};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

/// Standard output with every digit removed: what a workload says, without its timings and
/// scheduling-dependent counts.
fn shape(o: &std::process::Output) -> String {
    stdout(o).chars().filter(|c| !c.is_ascii_digit()).collect()
}

#[test]
fn unikernel_workloads_run_as_without_filters() {
    let runs: &[&[&str]] = &[
        &["--workload", "hello"],
        &["--workload", "compute 1000"],
        &["--workload", "hypercalls 50"],
        &["--workload", "mmio 20"],
        &["--workload", "uart 20"],
        &["--workload", "cpuid 5"],
        &["--workload", "doorbell 20"],
        &["--workload", "io 20000 --ring"],
        &["--ring-consumer", "poll", "--workload", "io 20000 --ring"],
        &["--vcpus", "2", "--workload", "compute 1000"],
        &["--workload", "exit 3"],
    ];
    for extra in runs {
        let args = |policy: &[&'static str]| -> Vec<String> {
            let mut a: Vec<String> = policy.iter().map(|s| s.to_string()).collect();
            a.extend(["run", "unikernel"].map(String::from));
            a.extend(extra.iter().map(|s| s.to_string()));
            a
        };
        let on = args(&[]);
        let off = args(&["--no-seccomp"]);
        let o_on = vmscope(&on.iter().map(String::as_str).collect::<Vec<_>>());
        let o_off = vmscope(&off.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(!stderr(&o_on).contains("seccomp"), "{extra:?}: {}", stderr(&o_on));
        assert_eq!(o_on.status.code(), o_off.status.code(), "{extra:?}: {}", stderr(&o_on));
        assert_eq!(shape(&o_on), shape(&o_off), "{extra:?}");
    }
}

#[test]
fn an_elf_a_session_and_stats_json_run_under_the_main_filter() {
    let dir = tempfile::tempdir().unwrap();
    let elf = String::from_utf8(vmscope(&["guests", "path", "unikernel"]).stdout).unwrap().trim().to_string();
    let o = vmscope(&["run", "--elf", &elf, "--workload", "io 10000 --ring"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("io: 10000 bytes"), "{}", stdout(&o));
    // A session reads its script, answers commands and writes --stats-json after the main
    // thread's filter is in place.
    let script = dir.path().join("s.script");
    std::fs::write(&script, "regs\nstep\nx/16 0x100000\ndis 0x100000 4\npt\nexits\ncont\n").unwrap();
    let stats = dir.path().join("stats.json");
    let o = vmscope(&[
        "run",
        "unikernel",
        "--ring",
        "0",
        "--script",
        script.to_str().unwrap(),
        "--stats-json",
        stats.to_str().unwrap(),
        "--workload",
        "compute 100",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}\n{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("primes=25"), "{}", stdout(&o));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&stats).unwrap()).unwrap();
    assert_eq!(v["outcome"]["exited"], 0, "{v}");
}

/// Each thread of process `pid` by name, with its `Seccomp:` mode (0 none, 2 filter).
fn seccomp_modes(pid: u32) -> BTreeMap<String, u32> {
    let mut modes = BTreeMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().map_while(Result::ok) {
        let (Ok(comm), Ok(status)) = (
            std::fs::read_to_string(task.path().join("comm")),
            std::fs::read_to_string(task.path().join("status")),
        ) else {
            continue;
        };
        let mode = status.lines().find_map(|l| l.strip_prefix("Seccomp:")).map(|v| v.trim().parse().unwrap());
        // The main thread is the one whose tid is the pid (threads it spawned unnamed share
        // its name, `vmscope`).
        let name = if task.file_name().to_string_lossy() == pid.to_string() {
            "main".into()
        } else {
            comm.trim().to_string()
        };
        modes.insert(name, mode.expect("a Seccomp: line"));
    }
    modes
}

/// [`seccomp_modes`] once every thread in `want` is there with its filter (mode 2), or
/// after a bound: what the threads were then, for the assertion to show.
fn modes_when_filtered(pid: u32, want: &[&str]) -> BTreeMap<String, u32> {
    modes_when(pid, want, 2)
}

/// [`seccomp_modes`] once every thread in `want` is there (named: a thread just spawned
/// still bears the process's name) in seccomp mode `mode`, or after a bound.
fn modes_when(pid: u32, want: &[&str], mode: u32) -> BTreeMap<String, u32> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let modes = seccomp_modes(pid);
        if want.iter().all(|t| modes.get(*t) == Some(&mode)) || std::time::Instant::now() > deadline {
            return modes;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// vmscope serving gdb (held before the first instruction) on `listen`, with the doorbell
/// thread running; returns the child and the address gdb should connect to.
fn serve(policy: &[&str], listen: &str) -> (std::process::Child, String) {
    let mut args = policy.to_vec();
    args.extend([
        "run",
        "unikernel",
        "--ring",
        "0",
        "--gdb",
        listen,
        "--gdb-wait",
        "--timeout",
        "300",
        "--workload",
        "doorbell 10",
    ]);
    let (child, rx) = spawn_with_stderr_lines(&args);
    let mut seen = vec![];
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("vmscope announces its gdb address ({e}); it said: {seen:?}"));
        if let Some(addr) = line.split("target remote ").nth(1) {
            return (child, addr.trim_end_matches('\'').to_string());
        }
        seen.push(line);
    }
}

fn gdb(addr: &str, commands: &[&str]) -> String {
    let elf = String::from_utf8(vmscope(&["guests", "path", "unikernel"]).stdout).unwrap().trim().to_string();
    let mut args = vec!["-nx", "-batch", "-ex", "set pagination off"];
    let target = format!("target remote {addr}");
    args.extend(["-ex", &target]);
    for c in commands {
        args.extend(["-ex", c]);
    }
    args.push(&elf);
    let o = Command::new("gdb").args(&args).output().expect("gdb is installed (apt-get install gdb)");
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn every_vmm_thread_runs_under_its_filter_and_gdb_works_through_them() {
    let (mut child, addr) = serve(&[], "127.0.0.1:0");
    let modes = modes_when_filtered(child.id(), &["vcpu0", "main"]);
    assert_eq!(modes.get("vcpu0"), Some(&2), "{modes:?}");
    assert_eq!(modes.get("main"), Some(&2), "the main thread serving gdb: {modes:?}");
    let out = gdb(
        &addr,
        &[
            "break workload_doorbell",
            "continue",
            "info registers rip",
            "stepi",
            "x/4xb $pc",
            "monitor regs",
            "monitor exits",
            "monitor devices",
            "hbreak console_write",
            "delete",
            "continue",
        ],
    );
    assert!(out.contains("Breakpoint 1, "), "{out}");
    assert!(out.contains("rip "), "{out}");
    assert!(out.contains("exited normally"), "{out}");
    assert_eq!(child.wait().unwrap().code(), Some(0), "{out}");
}

/// The doorbell thread starts with the guest's first doorbell write (its ioeventfd is
/// registered lazily) and runs under its own filter from then on.
#[test]
fn the_doorbell_thread_runs_under_its_filter_once_the_guest_rings() {
    let (mut child, _lines) = spawn_with_stderr_lines(&[
        "run",
        "unikernel",
        "--ring",
        "0",
        "--timeout",
        "300",
        "--workload",
        "doorbell 100000000",
    ]);
    // Bounded wait for the thread and its filter (the condition, not a duration, ends it).
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let mode = loop {
        let modes = seccomp_modes(child.id());
        if modes.get("doorbell-0x503") == Some(&2) || std::time::Instant::now() > deadline {
            break modes;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(mode.get("doorbell-0x503"), Some(&2), "{mode:?}");
    assert_eq!(mode.get("vcpu0"), Some(&2), "{mode:?}");
}

#[test]
fn gdb_over_a_unix_socket_works_under_the_main_filter() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gdb.sock");
    let (mut child, addr) = serve(&[], &format!("unix:{}", path.display()));
    let out = gdb(&addr, &["break workload_doorbell", "continue", "kill"]);
    assert!(out.contains("Breakpoint 1, "), "{out}");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(137), "gdb's kill ends the guest: {out}");
    assert!(!path.exists(), "vmscope removes its socket under the filter too");
}

/// With an empty cache, the gdb stub writes the unikernel ELF it names into the cache (a
/// temporary file, fsync, rename) after the main thread's filter is in place.
#[test]
fn gdb_with_an_empty_cache_writes_the_elf_under_the_main_filter() {
    use std::io::BufRead;
    common::require_kvm();
    let cache = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vmscope"))
        .args(["run", "unikernel", "--ring", "0", "--gdb", "127.0.0.1:0", "--gdb-wait", "--timeout", "300"])
        .env("VMSCOPE_CACHE", cache.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let line = lines.next().expect("vmscope says something").unwrap();
    let addr = line.split("target remote ").nth(1).unwrap_or_else(|| panic!("{line}"));
    let out = gdb(addr.trim_end_matches('\''), &["continue"]);
    assert!(out.contains("exited normally"), "{out}");
    assert_eq!(child.wait().unwrap().code(), Some(0), "{out}");
    let written: Vec<_> =
        std::fs::read_dir(cache.path().join("unikernel")).unwrap().map_while(Result::ok).collect();
    assert_eq!(written.len(), 1, "the ELF and no temporary file: {written:?}");
    assert!(line.contains(&*written[0].path().to_string_lossy()), "{line}");
}

#[test]
fn no_seccomp_leaves_every_thread_unfiltered() {
    let (mut child, addr) = serve(&["--no-seccomp"], "127.0.0.1:0");
    // The vCPU and doorbell threads may not have named themselves yet when gdb's address is
    // announced (on a busy host): wait for them, with a bound.
    let modes = modes_when(child.id(), &["main", "vcpu0", "doorbell-0x503"], 0);
    assert!(modes.len() >= 3 && modes.values().all(|&m| m == 0), "{modes:?}");
    let out = gdb(&addr, &["continue"]);
    assert!(out.contains("exited normally"), "{out}");
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn the_policy_shows_in_host_and_doctor() {
    let json = |args: &[&str]| -> serde_json::Value {
        let o = common::vmscope_offline(args);
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {}", stdout(&o)))
    };
    let on = json(&["host", "--json"]);
    assert_eq!(on["seccomp"]["policy"], "on", "{on}");
    assert_eq!(on["seccomp"]["exit_status_when_denied"], 159, "{on}");
    let threads: Vec<&str> =
        on["seccomp"]["threads"].as_array().unwrap().iter().map(|t| t["thread"].as_str().unwrap()).collect();
    assert_eq!(threads, ["vcpu", "doorbell", "main", "qmp"]);
    // The flag is global: before or after the subcommand.
    for args in [&["--no-seccomp", "host", "--json"][..], &["host", "--json", "--no-seccomp"]] {
        assert_eq!(json(args)["seccomp"]["policy"], "off", "{args:?}");
    }
    let text = stdout(&common::vmscope_offline(&["host", "--no-seccomp"]));
    assert!(text.contains("seccomp:      off (--no-seccomp)"), "{text}");
    let doctor = json(&["doctor", "--json", "--no-seccomp"]);
    let filters = doctor["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["feature"] == "seccomp" && c["name"] == "filters")
        .cloned()
        .unwrap_or_else(|| panic!("{doctor}"));
    assert_eq!(filters["status"], "optional", "{filters}");
}

/// An ext2 image holding `hello.txt`, made with mke2fs as a user would.
fn ext2_image(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("hello.txt"), text).unwrap();
    let img = dir.join("disk.img");
    let o = Command::new("mke2fs")
        .args(["-q", "-t", "ext2", "-d"])
        .arg(&root)
        .arg(&img)
        .arg("4M")
        .output()
        .expect("mke2fs (e2fsprogs) is installed");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    img
}

/// One Linux boot (about a minute on PVM) with a writable virtio-blk disk: the kernel's
/// requests (reads, and the writes of mounting ext2 read-write) are served on the vCPU under
/// its filter.
#[test]
fn linux_reads_a_writable_virtio_blk_disk_under_the_filters() {
    let dir = tempfile::tempdir().unwrap();
    let img = ext2_image(dir.path(), "seccomp lets virtio-blk through\n");
    let o = vmscope(&[
        "run",
        "linux",
        "--disk",
        img.to_str().unwrap(),
        "--workload",
        "cat /mnt/hello.txt",
        "--timeout",
        "900",
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{}", stderr(&o));
    assert!(out.contains("disk /dev/vda (8192 sectors) mounted at /mnt"), "{out}");
    assert!(out.contains("seccomp lets virtio-blk through"), "{out}");
    assert!(!stderr(&o).contains("seccomp"), "{}", stderr(&o));
}
