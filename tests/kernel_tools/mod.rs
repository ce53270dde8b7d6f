//! Shared by tests/drgn.rs and tests/crash.rs: the minimal Linux booted with a QMP socket,
//! its shell made to run `ps`, then the guest stopped over QMP so that every reader (vmscope's
//! own `ps` over QMP, drgn live, a dump) sees the same frozen kernel.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// The most a boot may take on a loaded PVM host (a bound, not a timing assertion).
const BOOT_BOUND: Duration = Duration::from_secs(900);
/// The most one QMP reply may take (a dump of 128 MiB included).
const REPLY_BOUND: Duration = Duration::from_secs(300);

/// A running `vmscope run linux --shell --qmp unix:…`, stopped once [`LinuxVm::boot`] returns.
pub struct LinuxVm {
    child: Child,
    pub qmp: Qmp,
    pub socket: PathBuf,
    /// The guest's own `ps` lines (busybox: `PID USER TIME COMMAND`).
    pub guest_ps: Vec<(i64, String)>,
    pub dir: tempfile::TempDir,
}

impl Drop for LinuxVm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for(rx: &Receiver<String>, seen: &mut Vec<String>, deadline: Instant, what: &str) {
    loop {
        let line = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).unwrap_or_else(|_| {
            panic!("the guest never printed {what:?}; its console:\n{}", seen.join("\n"))
        });
        let found = line.contains(what);
        seen.push(line);
        if found {
            return;
        }
    }
}

impl LinuxVm {
    /// Boots the guest, runs `ps` in its shell, and stops it over QMP.
    pub fn boot() -> Self {
        common_kvm();
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("vm.qmp");
        let mut child = Command::new(env!("CARGO_BIN_EXE_vmscope"))
            .args(["run", "linux", "--shell", "--timeout", "1800", "--qmp"])
            .arg(format!("unix:{}", socket.display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start the vmscope binary");
        let mut stdin = child.stdin.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        let deadline = Instant::now() + BOOT_BOUND;
        let mut console = vec![];
        wait_for(&rx, &mut console, deadline, "built-in shell");
        // Input before the tty is open is dropped: type until the shell answers. The marker
        // is split in the typed line so that the tty's echo of it does not count.
        let mut answered = false;
        for _ in 0..10 {
            stdin.write_all(b"ps; echo KT-\"\"PS-DONE\n").unwrap();
            stdin.flush().unwrap();
            let until = Instant::now() + Duration::from_secs(30);
            while let Ok(line) = rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
                let done = line.contains("KT-PS-DONE");
                console.push(line);
                if done {
                    answered = true;
                    break;
                }
            }
            if answered {
                break;
            }
        }
        assert!(answered, "the guest's shell never ran ps; its console:\n{}", console.join("\n"));
        let guest_ps = crate::common::busybox_ps(&console);
        let mut qmp = Qmp::connect(&socket);
        qmp.cmd(json!({"execute": "stop"}));
        assert_eq!(qmp.cmd(json!({"execute": "query-status"}))["return"]["status"], "paused");
        LinuxVm { child, qmp, socket, guest_ps, dir }
    }

    /// vmscope's own `ps` over QMP (HMP `ps`): (pid, comm).
    pub fn vmscope_ps(&mut self) -> Vec<(i64, String)> {
        let text = self.qmp.hmp("ps");
        let tasks: Vec<(i64, String)> = text
            .lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                // PID TGID S COMM… TASK PGD
                (f.len() >= 6).then(|| (f[0].parse().ok(), f[3..f.len() - 2].join(" ")))
            })
            .filter_map(|(p, c)| Some((p?, c)))
            .collect();
        assert!(tasks.len() > 3, "vmscope's ps over QMP:\n{text}");
        tasks
    }

    /// Writes a dump of the stopped guest with `vmscope dump SOCKET FILE`.
    pub fn dump(&self, name: &str) -> PathBuf {
        let core = self.dir.path().join(name);
        let o = Command::new(env!("CARGO_BIN_EXE_vmscope"))
            .arg("dump")
            .arg(&self.socket)
            .arg(&core)
            .output()
            .expect("cannot start the vmscope binary");
        assert!(o.status.success(), "vmscope dump: {}", String::from_utf8_lossy(&o.stderr));
        core
    }
}

fn common_kvm() {
    assert!(
        Path::new("/dev/kvm").exists(),
        "the end-to-end tests boot real guests and need /dev/kvm (hardware KVM or PVM); it is missing"
    );
}

/// A plain QMP client.
pub struct Qmp {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Qmp {
    pub fn connect(socket: &Path) -> Self {
        let stream = UnixStream::connect(socket).unwrap();
        stream.set_read_timeout(Some(REPLY_BOUND)).unwrap();
        let mut q = Qmp { reader: BufReader::new(stream.try_clone().unwrap()), stream };
        assert!(q.reply().get("QMP").is_some());
        assert_eq!(q.cmd(json!({"execute": "qmp_capabilities"})), json!({"return": {}}));
        q
    }

    /// The next message that is not an event.
    fn reply(&mut self) -> Value {
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).unwrap();
            let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
            if v.get("event").is_none() {
                return v;
            }
        }
    }

    pub fn cmd(&mut self, v: Value) -> Value {
        self.stream.write_all(format!("{v}\r\n").as_bytes()).unwrap();
        let r = self.reply();
        assert!(r.get("error").is_none(), "{v}: {r}");
        r
    }

    pub fn hmp(&mut self, line: &str) -> String {
        let r = self.cmd(json!({"execute": "human-monitor-command", "arguments": {"command-line": line}}));
        r["return"].as_str().unwrap_or_else(|| panic!("{line}: {r}")).to_string()
    }
}
