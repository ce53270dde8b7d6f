//! Shared helpers for the end-to-end tests: they run the real `vmscope` binary.
#![allow(dead_code)]

use std::process::{Command, Output};

pub mod typing;

/// Fails with a clear message when the machine has no KVM.
pub fn require_kvm() {
    assert!(
        std::path::Path::new("/dev/kvm").exists(),
        "the end-to-end tests boot real guests and need /dev/kvm (hardware KVM or PVM); it is missing"
    );
}

/// Runs `vmscope ARGS…` to completion.
pub fn vmscope(args: &[&str]) -> Output {
    require_kvm();
    Command::new(env!("CARGO_BIN_EXE_vmscope")).args(args).output().expect("cannot start the vmscope binary")
}

/// Standard output as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Whether this host is PVM (CPL0 guest code is emulated there).
pub fn host_is_pvm() -> bool {
    std::path::Path::new("/sys/module/kvm_pvm").exists()
}

/// Runs `vmscope ARGS…` for commands that boot no guest (`lab`, `--help`): no KVM needed.
pub fn vmscope_offline(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vmscope")).args(args).output().expect("cannot start the vmscope binary")
}

/// The host kind as vmscope names it (`pvm`, `vt-x`, `amd-v`, …), from `vmscope host --json`.
pub fn host_kind_name() -> serde_json::Value {
    let o = vmscope_offline(&["host", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("vmscope host --json prints JSON");
    v["host_kind"].clone()
}

/// Starts `vmscope ARGS…` with stdout piped and its stderr lines sent, as they come, to the
/// returned channel (so a test can wait for an announcement with a bound).
pub fn spawn_with_stderr_lines(args: &[&str]) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    require_kvm();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vmscope"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cannot start the vmscope binary");
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().expect("piped");
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

/// The vmlinux (with DWARF) `vmscope run linux` boots.
pub fn vmlinux() -> std::path::PathBuf {
    let o = vmscope_offline(&["guests", "path", "vmlinux"]);
    assert!(o.status.success(), "{}", stderr(&o));
    std::path::PathBuf::from(stdout(&o).trim())
}

/// `(pid, command)` of each line of busybox `ps` output (`PID USER TIME COMMAND`, aligned:
/// the command starts in the header's COMMAND column) after the last header in `lines`;
/// empty without one.
pub fn busybox_ps(lines: &[String]) -> Vec<(i64, String)> {
    let Some(start) = lines.iter().rposition(|l| l.contains("PID") && l.contains("COMMAND")) else {
        return vec![];
    };
    let column = lines[start].find("COMMAND").unwrap_or(0);
    lines[start + 1..]
        .iter()
        .map_while(|l| {
            let pid = l.split_whitespace().next()?.parse().ok()?;
            Some((pid, l.get(column..)?.trim().to_string()))
        })
        .collect()
}
