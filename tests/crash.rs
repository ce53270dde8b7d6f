//! End to end with Debian's crash (8.0.x, installed by `.ci/run`) on a dump `vmscope dump`
//! wrote of the stopped minimal Linux, in batch mode (`-s`, commands from a file): `sys`
//! names the release that was built, `log` holds the boot banner, and the task list crash
//! walks (`list task_struct.tasks … -h init_task`) is vmscope's own `ps`. crash's `ps` is
//! compared too, as far as this crash can build its task table (see the test's notes).
//!
//! `--no_kmem_cache`: the guest kernel uses SLOB, and crash knows only SLAB and SLUB (without
//! the flag it stops at "invalid structure member offset: kmem_cache_s_num", whatever wrote
//! the dump).

mod kernel_tools;
use kernel_tools::{vmlinux, LinuxVm};
use std::process::{Command, Stdio};

/// crash's version (`crash --version`'s first line: `crash 8.0.2`), or a failure saying
/// how to install it.
fn crash_version() -> (u32, u32, u32) {
    let o = Command::new("crash").arg("--version").output();
    let o =
        o.unwrap_or_else(|e| panic!("crash is not installed ({e}): apt-get install crash (.ci/run does)"));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let v = text.split_whitespace().nth(1).unwrap_or_else(|| panic!("crash --version printed {text:?}"));
    let n: Vec<u32> = v.split(['.', '-', '+']).filter_map(|p| p.parse().ok()).collect();
    (n[0], n.get(1).copied().unwrap_or(0), n.get(2).copied().unwrap_or(0))
}

/// The value of `crash> sys`'s `NAME:` line.
fn sys_field<'a>(out: &'a str, name: &str) -> Option<&'a str> {
    out.lines().find_map(|l| l.trim_start().strip_prefix(name)?.strip_prefix(':').map(str::trim))
}

/// `(pid, comm)` from `list … -s task_struct.pid,comm` output (`  pid = 1,` then
/// `  comm = "init\000…",`).
fn listed_tasks(out: &str) -> Vec<(i64, String)> {
    let mut tasks = vec![];
    let mut pid = None;
    for l in out.lines().map(str::trim) {
        if let Some(p) = l.strip_prefix("pid = ").and_then(|p| p.trim_end_matches(',').parse().ok()) {
            pid = Some(p);
        } else if let (Some(c), Some(p)) = (l.strip_prefix("comm = \""), pid.take()) {
            let comm = c.split(['"', '\\']).next().unwrap_or_default();
            tasks.push((p, comm.to_string()));
        }
    }
    tasks
}

/// The pids of `crash> ps` rows (`   PID    PPID  CPU  TASK  ST  %MEM  VSZ  RSS  COMM`; the
/// active task is marked with `>`).
fn ps_pids(out: &str) -> Vec<i64> {
    let Some(start) = out.lines().position(|l| l.contains("PID") && l.contains("PPID") && l.contains("COMM"))
    else {
        return vec![];
    };
    out.lines()
        .skip(start + 1)
        .map_while(|l| l.trim_start_matches(['>', ' ']).split_whitespace().next()?.parse().ok())
        .collect()
}

#[test]
fn crash_reads_sys_log_and_the_task_list_of_a_vmscope_dump() {
    let version = crash_version();
    let vmlinux = vmlinux();
    let release = std::fs::read_to_string(vmlinux.parent().unwrap().join("include/config/kernel.release"))
        .unwrap()
        .trim()
        .to_string();
    let mut vm = LinuxVm::boot();
    let ours = vm.vmscope_ps();
    let core = vm.dump("vmcore");
    let commands = vm.dir.path().join("crash.cmds");
    std::fs::write(
        &commands,
        "sys\nlog\nlist task_struct.tasks -s task_struct.pid,comm -h init_task\nps\nquit\n",
    )
    .unwrap();
    let o = Command::new("crash")
        .args(["-s", "--no_kmem_cache"])
        .arg(&vmlinux)
        .arg(&core)
        .arg("-i")
        .arg(&commands)
        .stdin(Stdio::null())
        .output()
        .expect("cannot start crash");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let all = format!("{out}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "crash failed:\n{all}");

    assert_eq!(sys_field(&out, "RELEASE"), Some(release.as_str()), "{all}");
    assert_eq!(sys_field(&out, "CPUS"), Some("1"), "{all}");
    assert!(out.contains(&format!("] Linux version {release} ")), "crash's log has no boot banner:\n{all}");

    // crash walks init_task.tasks as vmscope's ps does: the same tasks in the same order.
    assert_eq!(listed_tasks(&out), ours, "crash's task list against vmscope's ps:\n{all}");

    let pids = ps_pids(&out);
    let mut want: Vec<i64> = ours.iter().map(|t| t.0).collect();
    want.sort();
    if version < (8, 0, 4) {
        // crash before 8.0.4 reads `struct pid` without its flexible `numbers[]` (kernel
        // commit b69f0aeb0689, in 6.5 and backported to 6.1.y), so its task table holds only
        // the idle task and the task running on the vCPU, whatever dump it reads (crash
        // commit 8858006 fixed it). Those it has are vmscope's.
        eprintln!(
            "note: crash {version:?} cannot build its whole task table on this kernel; its ps: {pids:?}"
        );
        assert!(pids.contains(&0) && pids.len() <= 2, "{all}");
        assert!(pids.iter().all(|p| want.contains(p)), "crash's ps against vmscope's {want:?}:\n{all}");
    } else {
        let mut got = pids;
        got.sort();
        assert_eq!(got, want, "crash's ps against vmscope's:\n{all}");
    }
}
