//! End to end with Debian's crash (8.0.x, installed by `.ci/run`) on a dump `vmscope dump`
//! wrote of the stopped minimal Linux, run as a user runs it (`crash vmlinux vmcore`, no
//! special flag) in batch mode (`-s`, commands from a file): `sys` names the release that was
//! built, `log` holds the boot banner, the task list crash walks (`list task_struct.tasks …
//! -h init_task`) and its own `ps` are vmscope's `ps`, and `bt` unwinds pid 1 (asleep in a
//! system call) and the task that was running.
//!
//! The guest kernel is built for this crash (guests/linux/README.md): SLUB rather than SLOB
//! (crash 8.0.2 knows only SLAB and SLUB), `struct pid` with `numbers[1]` (crash before 8.0.4
//! reads `sizeof(struct pid)` bytes and needs `numbers[0]` in them), and IST entries only for
//! the exceptions the kernel handles (crash 8.0.2 reads every non-zero entry as a stack, and
//! `bt` of the running task failed on #MC's, which a kernel without `CONFIG_X86_MCE` leaves
//! nameless and of size 0).

mod common;
mod kernel_tools;
use common::vmlinux;
use kernel_tools::LinuxVm;
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

/// `(pid, comm)` of `crash> ps` rows (`   PID    PPID  CPU  TASK  ST  %MEM  VSZ  RSS  COMM`;
/// the running task is marked with `>`, kernel threads' comm is in brackets).
fn ps_tasks(out: &str) -> Vec<(i64, String)> {
    let Some(start) = out.lines().position(|l| l.contains("PID") && l.contains("PPID") && l.contains("COMM"))
    else {
        return vec![];
    };
    out.lines()
        .skip(start + 1)
        .map_while(|l| {
            let f: Vec<&str> = l.trim_start_matches(['>', ' ']).split_whitespace().collect();
            let pid = f.first()?.parse().ok()?;
            (f.len() >= 9)
                .then(|| (pid, f[8..].join(" ").trim_start_matches('[').trim_end_matches(']').to_string()))
        })
        .collect()
}

/// The part of crash's output that one command printed: from the line naming `header` to
/// the next `PID:` header or the end.
fn bt_of<'a>(out: &'a str, header: &str) -> &'a str {
    let Some(at) = out.find(header) else { return "" };
    let rest = &out[at..];
    let end = rest[header.len()..].find("PID: ").map_or(rest.len(), |e| e + header.len());
    &rest[..end]
}

#[test]
fn crash_reads_sys_log_ps_and_bt_of_a_vmscope_dump() {
    let version = crash_version();
    assert!(version >= (8, 0, 0), "crash {version:?}: the tests expect 8.0 or later");
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
        "sys\nlog\nlist task_struct.tasks -s task_struct.pid,comm -h init_task\nps\nbt 1\nbt\nquit\n",
    )
    .unwrap();
    let o = Command::new("crash")
        .arg("-s")
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
    for bad in
        ["invalid structure member offset", "not found in PID hash", "bt: read of stack", "bt: invalid"]
    {
        assert!(!all.contains(bad), "crash said {bad:?}:\n{all}");
    }

    assert_eq!(sys_field(&out, "RELEASE"), Some(release.as_str()), "{all}");
    assert_eq!(sys_field(&out, "CPUS"), Some("1"), "{all}");
    assert!(out.contains(&format!("] Linux version {release} ")), "crash's log has no boot banner:\n{all}");

    // crash walks init_task.tasks as vmscope's ps does: the same tasks in the same order.
    assert_eq!(listed_tasks(&out), ours, "crash's task list against vmscope's ps:\n{all}");

    // crash's ps builds its task table from the pid xarray: the same tasks (no process of
    // this guest has a second thread), sorted by pid.
    let mut want = ours.clone();
    want.sort();
    assert_eq!(ps_tasks(&out), want, "crash's ps against vmscope's:\n{all}");

    // pid 1 (/init) sleeps in a system call (wait4, or rt_sigsuspend while its shell runs):
    // the trace runs from the scheduler through the system call's handler to the user-mode
    // registers it came from (CS 0x33). The entry differs by host: entry_SYSCALL_64 on
    // hardware, the page-fault path on PVM (which delivers a guest's syscall to its kernel as
    // a #PF; guests/linux/patches/0001).
    let comm1 = &ours.iter().find(|t| t.0 == 1).expect("vmscope's ps has pid 1").1;
    let bt1 = bt_of(&out, "PID: 1 ");
    assert!(bt1.contains(&format!("COMMAND: \"{comm1}\"")), "bt 1:\n{all}");
    assert!(bt1.contains(" schedule at "), "bt 1 has no schedule frame:\n{all}");
    assert!(bt1.contains(" __x64_sys_"), "bt 1 has no system call frame:\n{all}");
    assert!(
        bt1.contains("entry_SYSCALL_64") || bt1.contains("asm_exc_page_fault"),
        "bt 1 does not reach the kernel's entry:\n{all}"
    );
    assert!(bt1.contains("CS: 0033"), "bt 1 does not end in the user-mode registers:\n{all}");

    // crash's ps marks the task that was current on the vCPU when it stopped.
    assert!(
        out.lines().any(|l| l
            .strip_prefix('>')
            .and_then(|r| r.split_whitespace().next()?.parse::<i64>().ok())
            .is_some()),
        "crash's ps marks no running task:\n{all}"
    );
    // `bt` with no argument (the last command): crash's current context, one of the guest's
    // tasks (the one whose kernel stack the vCPU's registers are on, else the CPU's idle task:
    // which one depends on where the stop caught the guest), unwound from the dump.
    let last = &out[out.rfind("PID: ").unwrap_or_else(|| panic!("no bt output:\n{all}"))..];
    let pid: i64 = last["PID: ".len()..]
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("bt's header names no pid:\n{all}"));
    assert!(ours.iter().any(|t| t.0 == pid), "bt's task {pid} is not one of vmscope's ps:\n{all}");
    assert!(last.contains(" #0 "), "bt of the current context (pid {pid}) has no frame:\n{all}");
}
