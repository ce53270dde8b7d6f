//! End to end with the real drgn (PyPI's, in the virtual environment `.ci/run` makes at
//! `$VMSCOPE_CACHE/drgn-venv`): `drgn --qemu SOCKET -s vmlinux` on the live guest over
//! vmscope's QMP socket, and `drgn -c VMCORE -s vmlinux` on a dump `vmscope dump` wrote of the
//! same stopped guest, give the same answers (init_task's comm, every task's pid and comm,
//! pid 1's stack trace), and those tasks are vmscope's own `ps` and the guest's `ps`.

mod common;
mod kernel_tools;
use common::vmlinux;
use kernel_tools::LinuxVm;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What drgn is asked, as one JSON line: the same script live and post-mortem.
const SCRIPT: &str = r#"
import json
from drgn.helpers.linux.pid import for_each_task, find_task
tasks = sorted([t.pid.value_(), t.comm.string_().decode()]
               for t in for_each_task(prog) if t.pid.value_() == t.tgid.value_())
frames = [f.name for f in prog.stack_trace(find_task(prog, 1))]
print(json.dumps({"init_task": prog["init_task"].comm.string_().decode(),
                  "tasks": tasks, "pid1_frames": frames}))
"#;

/// drgn from the cache's virtual environment (made here as `.ci/run` makes it when it is
/// missing), or `None` with the reason printed when it cannot be had.
fn drgn() -> Option<PathBuf> {
    let cache = std::env::var_os("VMSCOPE_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/vmscope")
    });
    let venv = cache.join("drgn-venv");
    let bin = venv.join("bin/drgn");
    let works = |b: &Path| Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success());
    if works(&bin) {
        return Some(bin);
    }
    let made = Command::new("python3").arg("-m").arg("venv").arg(&venv).status().is_ok_and(|s| s.success())
        && Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "drgn"])
            .status()
            .is_ok_and(|s| s.success());
    if made && works(&bin) {
        return Some(bin);
    }
    eprintln!(
        "SKIP: drgn cannot be installed here (python3 -m venv {} && pip install drgn failed)",
        venv.display()
    );
    None
}

fn run_drgn(drgn: &Path, target: &[&std::ffi::OsStr], vmlinux: &Path, script: &Path) -> Value {
    let o = Command::new(drgn)
        .args(target)
        .arg("-s")
        .arg(vmlinux)
        .arg(script)
        .output()
        .expect("cannot start drgn");
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "drgn {target:?} failed:\n{out}\n{err}");
    let line =
        out.lines().rfind(|l| l.starts_with('{')).unwrap_or_else(|| panic!("drgn printed:\n{out}\n{err}"));
    serde_json::from_str(line).unwrap()
}

fn tasks(v: &Value) -> Vec<(i64, String)> {
    v["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t[0].as_i64().unwrap(), t[1].as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn drgn_live_over_qmp_and_on_a_dump_sees_vmscopes_tasks() {
    let Some(drgn) = drgn() else { return };
    let vmlinux = vmlinux();
    let mut vm = LinuxVm::boot();
    let script = vm.dir.path().join("tasks.py");
    std::fs::write(&script, SCRIPT).unwrap();

    let live = run_drgn(&drgn, &["--qemu".as_ref(), vm.socket.as_os_str()], &vmlinux, &script);
    let core = vm.dump("vmcore");
    let dead = run_drgn(&drgn, &["-c".as_ref(), core.as_os_str()], &vmlinux, &script);

    assert_eq!(live["init_task"], "swapper/0", "{live}");
    // The guest is stopped: live and post-mortem answers are the same.
    assert_eq!(live, dead);
    let frames: Vec<&str> =
        live["pid1_frames"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(frames.contains(&"schedule") || frames.contains(&"__schedule"), "pid 1 sleeps: {frames:?}");

    // drgn's for_each_task leaves out the idle task (pid 0); vmscope's ps starts with it.
    let ours = vm.vmscope_ps();
    assert_eq!(ours[0], (0, "swapper/0".to_string()));
    let mut listed = ours[1..].to_vec();
    listed.sort();
    assert_eq!(tasks(&live), listed, "drgn's tasks against vmscope's ps");

    // Every task the guest listed (but its own exited ps) is there.
    assert!(vm.guest_ps.len() >= 3, "{:?}", vm.guest_ps);
    for (pid, cmd) in &vm.guest_ps {
        if cmd == "ps" || cmd.starts_with("{ps}") {
            continue;
        }
        let comm =
            &ours.iter().find(|(p, _)| p == pid).unwrap_or_else(|| panic!("pid {pid} ({cmd}) missing")).1;
        assert!(cmd == &format!("[{comm}]") || cmd.contains(comm.as_str()), "pid {pid}: {cmd:?} vs {comm:?}");
    }
}
