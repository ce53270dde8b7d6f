//! End to end: vmscope's own `ps`, `dmesg`, `uname`, `pt --pid` and `mappings --pid` on the
//! minimal Linux, compared with what the guest says of itself. One boot: the guest's shell
//! runs `ps` then `sync`, whose system call is a breakpoint, and the session's script reads
//! the stopped guest from outside.

mod common;
use serde_json::Value;
use std::io::Write;
use std::time::{Duration, Instant};

/// The release the kernel was built as (`include/config/kernel.release` beside vmlinux).
fn built_release() -> String {
    let vmlinux = common::vmlinux();
    let p = vmlinux.parent().unwrap().join("include/config/kernel.release");
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).trim().to_string()
}

#[test]
fn vmscope_ps_dmesg_uname_agree_with_the_guest() {
    common::require_kvm();
    let release = built_release();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("aware.script");
    std::fs::write(&script, "ps\ndmesg\nuname\npt --pid 1\nmappings --pid 1\nmappings --pid 2\nquit\n")
        .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vmscope"))
        .args([
            "run",
            "linux",
            "--shell",
            "--json",
            "--break",
            "__x64_sys_sync",
            "--timeout",
            "900",
            "--script",
        ])
        .arg(&script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cannot start the vmscope binary");
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let out_thread = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
    // With --json the guest's console is on stderr.
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut console = vec![];
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut typed = false;
    while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        if !typed && line.contains("built-in shell") {
            // Input before the tty is open is dropped: wait for the prompt to settle.
            std::thread::sleep(Duration::from_secs(2));
            stdin.write_all(b"ps; sync\n").unwrap();
            stdin.flush().unwrap();
            typed = true;
        }
        console.push(line);
    }
    let status = child.wait().unwrap();
    let out = out_thread.join().unwrap();
    let all = console.join("\n");
    assert!(status.success(), "{out}\n{all}");
    let results: Vec<Value> = out.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let result = |input: &str| -> &Value {
        results
            .iter()
            .find(|v| v["input"] == input)
            .unwrap_or_else(|| panic!("no result for {input}:\n{out}\n{all}"))
    };

    // ps: every task the guest lists, with the same pid and name.
    let tasks = result("ps")["result"]["tasks"].as_array().unwrap_or_else(|| panic!("{out}")).clone();
    let ours: Vec<(i64, String)> =
        tasks.iter().map(|t| (t["pid"].as_i64().unwrap(), t["comm"].as_str().unwrap().to_string())).collect();
    let theirs = common::busybox_ps(&console);
    assert!(theirs.len() >= 3, "{all}");
    for (pid, cmd) in &theirs {
        // busybox shows the `ps` process itself as `ps` or `{ps} sh`; it exited before sync ran.
        if cmd == "ps" || cmd.starts_with("{ps}") {
            continue;
        }
        let comm = &ours
            .iter()
            .find(|(p, _)| p == pid)
            .unwrap_or_else(|| panic!("pid {pid} ({cmd}) missing from {ours:?}"))
            .1;
        // busybox shows a kernel thread as [comm] and a process by its command line.
        assert!(
            cmd == &format!("[{comm}]") || cmd.contains(comm.as_str()),
            "pid {pid}: guest says {cmd:?}, vmscope {comm:?}"
        );
    }
    assert_eq!(ours[0], (0, "swapper/0".to_string()));
    assert!(ours.iter().any(|(_, c)| c == "sync"), "the stopped sync is a task: {ours:?}");

    // dmesg holds the boot banner; uname the release that was built.
    let records = result("dmesg")["result"]["records"].as_array().unwrap_or_else(|| panic!("{out}")).clone();
    assert!(
        records
            .iter()
            .any(|r| r["text"].as_str().unwrap_or("").starts_with(&format!("Linux version {release} "))),
        "{out}"
    );
    assert_eq!(result("uname")["result"]["uname"]["release"], release.as_str(), "{out}");
    assert_eq!(result("uname")["result"]["uname"]["sysname"], "Linux");

    // pid 1's page tables are its mm->pgd, and map user memory (its code and stack).
    let init = tasks.iter().find(|t| t["pid"] == 1).unwrap();
    assert_eq!(result("pt --pid 1")["result"]["cr3"], init["pgd"], "{out}");
    let maps = result("mappings --pid 1")["result"]["mappings"]["mappings"].as_array().unwrap().clone();
    assert!(maps.iter().any(|m| m["user"] == true), "{out}");
    let kthread = result("mappings --pid 2")["error"].as_str().unwrap_or_default().to_string();
    assert!(kthread.contains("is a kernel thread"), "{out}");
}
