//! End to end with the real gdb and the kernel's own gdb helpers (`scripts/gdb`, built with
//! the kernel as `vmlinux-gdb.py`): gdb started the way vmscope's `--gdb` announcement says
//! auto-loads them, and `lx-ps` / `lx-dmesg` read the live guest through vmscope's stub.
//! The helpers read guest memory packet by packet, so the test runs each of them once.

mod common;
use std::io::{BufRead, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The text between the markers `start` and `end` in `text`.
fn section<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let rest = &text[text.find(start)? + start.len()..];
    Some(&rest[..rest.find(end)?])
}

/// The text between `start` and the next `end` in `line`.
fn between<'a>(line: &'a str, start: &str, end: char) -> Option<&'a str> {
    let rest = &line[line.find(start)? + start.len()..];
    Some(rest.split(end).next().unwrap_or(rest))
}

#[test]
fn lx_ps_and_lx_dmesg_read_the_guest_through_the_stub() {
    common::require_kvm();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vmscope"))
        .args(["run", "linux", "--shell", "--gdb", "127.0.0.1:0", "--timeout", "900"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start the vmscope binary");
    let mut stdin = child.stdin.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<(bool, String)>();
    for (is_err, stream) in [
        (false, Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>),
        (true, Box::new(child.stderr.take().unwrap())),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send((is_err, line));
            }
        });
    }
    // Wait for the announcement and the shell, then let the guest run its own ps.
    let deadline = Instant::now() + Duration::from_secs(900);
    let (mut announce, mut console, mut shell) = (None, vec![], false);
    while announce.is_none() || !shell {
        let (is_err, line) = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("vmscope announces gdb and starts the shell");
        if is_err && line.contains("gdb can attach:") {
            announce = Some(line.clone());
        }
        shell |= line.contains("built-in shell");
        console.push(line);
    }
    std::thread::sleep(Duration::from_secs(2));
    stdin.write_all(b"ps; echo ps-done\n").unwrap();
    stdin.flush().unwrap();
    loop {
        let (_, line) = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the guest's ps finishes");
        let done = line.trim() == "ps-done";
        console.push(line);
        if done {
            break;
        }
    }
    let announce = announce.unwrap();
    // gdb as vmscope says to start it: the helpers' directory is an auto-load safe path.
    let safe = between(&announce, "add-auto-load-safe-path ", '\'').unwrap_or_else(|| panic!("{announce}"));
    let image = between(&announce, "' ", ' ').unwrap_or_else(|| panic!("{announce}"));
    let addr = between(&announce, "target remote ", '\'').unwrap_or_else(|| panic!("{announce}"));
    assert!(std::path::Path::new(safe).join("vmlinux-gdb.py").exists(), "{announce}");
    let o = Command::new("gdb")
        .args([
            "-nx",
            "-batch",
            "-iex",
            &format!("add-auto-load-safe-path {safe}"),
            "-ex",
            "set pagination off",
        ])
        .args(["-ex", &format!("target remote {addr}"), "-ex", "echo ==lx-ps==\\n", "-ex", "lx-ps"])
        .args([
            "-ex",
            "echo ==lx-dmesg==\\n",
            "-ex",
            "lx-dmesg",
            "-ex",
            "echo ==end==\\n",
            "-ex",
            "detach",
            image,
        ])
        .output()
        .expect("gdb is installed (apt-get install gdb)");
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    stdin.write_all(b"poweroff\n").unwrap();
    stdin.flush().unwrap();
    let status = child.wait().unwrap();
    let all = console.join("\n");
    assert_eq!(status.code(), Some(0), "{text}\n{all}");

    let ps = section(&text, "==lx-ps==\n", "==lx-dmesg==").unwrap_or_else(|| panic!("{text}"));
    // lx-ps: `0xTASK PID COMM` per task (threads too).
    let lx: Vec<(i64, String)> = ps
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            w.next().filter(|a| a.starts_with("0x"))?;
            Some((w.next()?.parse().ok()?, w.collect::<Vec<_>>().join(" ")))
        })
        .collect();
    let theirs = common::busybox_ps(&console);
    assert!(theirs.len() >= 3, "{all}");
    // busybox shows the `ps` process itself as `ps` or `{ps} sh`; it exited before sync ran.
    for (pid, cmd) in theirs.iter().filter(|(_, c)| c != "ps" && !c.starts_with("{ps}")) {
        let comm = &lx
            .iter()
            .find(|(p, _)| p == pid)
            .unwrap_or_else(|| panic!("pid {pid} ({cmd}) missing from lx-ps:\n{ps}\n{text}"))
            .1;
        assert!(
            cmd == &format!("[{comm}]") || cmd.contains(comm.as_str()),
            "pid {pid}: guest {cmd:?}, lx-ps {comm:?}"
        );
    }
    let dmesg = section(&text, "==lx-dmesg==\n", "==end==").unwrap_or_else(|| panic!("{text}"));
    assert!(dmesg.contains("Linux version 6.1"), "{text}");
}
