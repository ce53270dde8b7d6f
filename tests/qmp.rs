//! End to end: `vmscope run … --qmp unix:PATH` speaks QMP as QEMU does, to a plain JSON
//! client: the greeting, capability negotiation, ids echoed, QEMU's error classes,
//! STOP/RESUME/SHUTDOWN events, HMP output in the formats clients parse, `getfd` with a
//! descriptor passed over the socket and a dump written to it, and hostile input (garbage,
//! an oversized message, more clients than the limit) that never stops the guest.

mod common;
use common::spawn_with_stderr_lines;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

/// How long a reply may take before the test gives up (a bound, not a timing assertion).
const REPLY_BOUND: Duration = Duration::from_secs(60);

/// A unikernel that computes for a long time, with a QMP socket.
struct Vm {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Vm {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("vm.qmp");
        let qmp = format!("unix:{}", socket.display());
        let args = ["run", "unikernel", "--workload", "spin", "--timeout", "600", "--qmp", &qmp];
        let (child, lines) = spawn_with_stderr_lines(&args);
        let line = lines.recv_timeout(REPLY_BOUND).expect("vmscope announces its QMP socket");
        assert_eq!(line, format!("vmscope: QMP listening on {qmp}"));
        Vm { child, socket, _dir: dir }
    }

    fn connect(&self) -> Client {
        let s = UnixStream::connect(&self.socket).unwrap();
        s.set_read_timeout(Some(REPLY_BOUND)).unwrap();
        Client { reader: BufReader::new(s.try_clone().unwrap()), stream: s, events: vec![] }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Client {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
    events: Vec<Value>,
}

impl Client {
    fn read(&mut self) -> Value {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        assert!(line.ends_with("\r\n"), "QMP lines end with CRLF: {line:?}");
        serde_json::from_str(&line).unwrap()
    }

    /// The next message that is not an event (events are kept).
    fn reply(&mut self) -> Value {
        loop {
            let v = self.read();
            if v.get("event").is_some() {
                self.events.push(v);
            } else {
                return v;
            }
        }
    }

    fn send(&mut self, raw: &[u8]) {
        self.stream.write_all(raw).unwrap();
    }

    fn cmd(&mut self, v: Value) -> Value {
        self.send(format!("{v}\n").as_bytes());
        self.reply()
    }

    fn hmp(&mut self, line: &str) -> String {
        let r = self.cmd(json!({"execute": "human-monitor-command", "arguments": {"command-line": line}}));
        r["return"].as_str().unwrap_or_else(|| panic!("{line}: {r}")).to_string()
    }

    fn negotiated(vm: &Vm) -> Self {
        let mut c = vm.connect();
        assert!(c.read().get("QMP").is_some());
        assert_eq!(c.cmd(json!({"execute": "qmp_capabilities"})), json!({"return": {}}));
        c
    }

    fn event(&mut self, name: &str) -> Value {
        loop {
            if let Some(i) = self.events.iter().position(|e| e["event"] == name) {
                return self.events.remove(i);
            }
            let v = self.read();
            self.events.push(v);
        }
    }
}

fn error_class(v: &Value) -> (&str, &str) {
    (v["error"]["class"].as_str().unwrap_or_default(), v["error"]["desc"].as_str().unwrap_or_default())
}

fn check_timestamp(e: &Value) {
    let t = &e["timestamp"];
    assert!(t["seconds"].as_u64().unwrap() > 1_600_000_000, "{e}");
    assert!(t["microseconds"].as_u64().unwrap() < 1_000_000, "{e}");
}

#[test]
fn greeting_negotiation_commands_errors_and_events() {
    let mut vm = Vm::start();
    let mut c = vm.connect();
    let greeting = c.read();
    assert!(greeting["QMP"]["version"]["qemu"]["major"].is_u64(), "{greeting}");
    assert!(greeting["QMP"]["capabilities"].is_array(), "{greeting}");

    // Before negotiation only qmp_capabilities is accepted.
    let r = c.cmd(json!({"execute": "query-status", "id": 1}));
    assert_eq!(
        error_class(&r),
        ("CommandNotFound", "Expecting capabilities negotiation with 'qmp_capabilities'")
    );
    assert_eq!(r["id"], 1);
    assert_eq!(
        c.cmd(json!({"execute": "qmp_capabilities", "id": {"a": [1]}})),
        json!({"return": {}, "id": {"a": [1]}})
    );
    assert_eq!(error_class(&c.cmd(json!({"execute": "qmp_capabilities"}))).0, "CommandNotFound");

    let r = c.cmd(json!({"execute": "no-such-command", "id": "u"}));
    assert_eq!(error_class(&r), ("CommandNotFound", "The command no-such-command has not been found"));
    assert_eq!(r["id"], "u");
    assert_eq!(
        error_class(&c.cmd(json!({"execute": "getfd"}))),
        ("GenericError", "Parameter 'fdname' is missing")
    );
    assert_eq!(
        error_class(&c.cmd(json!({"execute": "stop", "arguments": {"x": 1}}))),
        ("GenericError", "Parameter 'x' is unexpected")
    );
    assert_eq!(error_class(&c.cmd(json!({"execute": "system_reset"}))).0, "GenericError");

    assert_eq!(c.cmd(json!({"execute": "query-target"}))["return"]["arch"], "x86_64");
    let status = c.cmd(json!({"execute": "query-status"}));
    assert_eq!(
        (status["return"]["status"].as_str(), status["return"]["running"].as_bool()),
        (Some("running"), Some(true))
    );

    // stop: STOP with QEMU's timestamp; the guest is paused; cont: RESUME.
    assert_eq!(c.cmd(json!({"execute": "stop", "id": 2})), json!({"return": {}, "id": 2}));
    check_timestamp(&c.event("STOP"));
    assert_eq!(c.cmd(json!({"execute": "query-status"}))["return"]["status"], "paused");

    // query-cpus-fast names the vCPU thread.
    let cpus = c.cmd(json!({"execute": "query-cpus-fast"}))["return"].clone();
    let tid = cpus[0]["thread-id"].as_u64().unwrap();
    assert_eq!(cpus[0]["cpu-index"], 0);
    let comm = std::fs::read_to_string(format!("/proc/{}/task/{tid}/comm", vm.child.id())).unwrap();
    assert_eq!(comm.trim(), "vcpu0");

    // HMP in the formats clients parse.
    let mtree = c.hmp("info mtree -f");
    assert!(mtree.contains(" AS \"memory\""), "{mtree}");
    assert!(mtree.contains("  0000000000000000-0000000003ffffff (prio 0, ram): ram"), "{mtree}");
    let xp = c.hmp("xp /16xb 0x100000");
    let lines: Vec<&str> = xp.lines().collect();
    assert_eq!(lines.len(), 2, "{xp}");
    assert!(lines[0].starts_with("0000000000100000: 0x"), "{xp}");
    assert_eq!(lines[0].split_whitespace().count(), 9, "{xp}");
    assert!(c.hmp("xp /2g 0x100000").starts_with("0000000000100000: 0x"));
    assert_eq!(c.hmp("xp /1xb 0xfffffffff0"), "000000fffffffff0: Cannot access memory\n");
    let hva = c.hmp("gpa2hva 0x1000");
    assert!(hva.starts_with("Host virtual address for 0x1000 (ram) is 0x"), "{hva}");
    assert!(c.hmp("info registers").contains("RIP="));
    assert!(c.hmp("nonsense").starts_with("Error: "));

    assert_eq!(c.cmd(json!({"execute": "cont"})), json!({"return": {}}));
    check_timestamp(&c.event("RESUME"));
    assert_eq!(c.cmd(json!({"execute": "query-status"}))["return"]["status"], "running");

    // quit: the reply, SHUTDOWN, and vmscope ends with status 0, removing its socket.
    assert_eq!(c.cmd(json!({"execute": "quit"})), json!({"return": {}}));
    let shutdown = c.event("SHUTDOWN");
    assert_eq!(shutdown["data"], json!({"guest": false, "reason": "host-qmp-quit"}));
    assert_eq!(vm.child.wait().unwrap().code(), Some(0));
    assert!(!vm.socket.exists());
}

/// Sends `msg` with `file`'s descriptor attached (SCM_RIGHTS).
fn send_with_fd(c: &Client, msg: &str, file: &std::fs::File) {
    use std::os::fd::AsRawFd;
    use vmm_sys_util::sock_ctrl_msg::ScmSocket;
    let n = c.stream.send_with_fd(msg.as_bytes(), file.as_raw_fd()).unwrap();
    assert_eq!(n, msg.len());
}

/// The program headers of an ELF64 core: (p_type, p_offset, p_vaddr, p_paddr, p_filesz).
pub fn program_headers(file: &[u8]) -> Vec<(u32, u64, u64, u64, u64)> {
    let u16_at = |o: usize| u16::from_le_bytes(file[o..o + 2].try_into().unwrap());
    let u32_at = |o: usize| u32::from_le_bytes(file[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(file[o..o + 8].try_into().unwrap());
    assert_eq!(&file[..4], b"\x7fELF");
    assert_eq!(u16_at(16), 4, "ET_CORE");
    assert_eq!(u16_at(18), 62, "EM_X86_64");
    let (phoff, phnum) = (u64_at(32) as usize, u16_at(56) as usize);
    (0..phnum)
        .map(|i| {
            let p = phoff + i * 56;
            (u32_at(p), u64_at(p + 8), u64_at(p + 16), u64_at(p + 24), u64_at(p + 32))
        })
        .collect()
}

/// Guest-physical bytes through HMP `xp` (what the guest has there).
fn xp_bytes(c: &mut Client, addr: u64, len: usize) -> Vec<u8> {
    let text = c.hmp(&format!("xp /{len}xb {addr:#x}"));
    text.lines()
        .flat_map(|l| {
            l.split_once(':')
                .unwrap()
                .1
                .split_whitespace()
                .map(|b| u8::from_str_radix(&b[2..], 16).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn getfd_then_dump_to_the_passed_descriptor_holds_guest_memory() {
    let vm = Vm::start();
    let mut c = Client::negotiated(&vm);
    let dir = tempfile::tempdir().unwrap();

    // Without a descriptor, getfd says so; with one, it is kept by name.
    assert_eq!(
        error_class(&c.cmd(json!({"execute": "getfd", "arguments": {"fdname": "d"}}))),
        ("GenericError", "No file descriptor supplied via SCM_RIGHTS")
    );
    let path = dir.path().join("core");
    let file =
        std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
    send_with_fd(&c, "{\"execute\": \"getfd\", \"arguments\": {\"fdname\": \"d\"}}\r\n", &file);
    assert_eq!(c.reply(), json!({"return": {}}));
    drop(file);

    // The dump pauses the guest and resumes it; stop it first so memory holds still.
    assert_eq!(c.cmd(json!({"execute": "stop"})), json!({"return": {}}));
    let r =
        c.cmd(json!({"execute": "dump-guest-memory", "arguments": {"paging": false, "protocol": "fd:d"}}));
    assert_eq!(r, json!({"return": {}}));
    let done = c.event("DUMP_COMPLETED");
    assert_eq!(done["data"]["result"]["status"], "completed");
    let q = c.cmd(json!({"execute": "query-dump"}))["return"].clone();
    assert_eq!((q["status"].as_str(), q["completed"].as_u64()), (Some("completed"), Some(64 << 20)));
    // The descriptor was used up, as in QEMU.
    let r =
        c.cmd(json!({"execute": "dump-guest-memory", "arguments": {"paging": false, "protocol": "fd:d"}}));
    assert_eq!(error_class(&r), ("GenericError", "File descriptor named 'd' has not been found"));

    let core = std::fs::read(&path).unwrap();
    let phdrs = program_headers(&core);
    assert_eq!(phdrs[0].0, 4, "PT_NOTE first");
    let loads: Vec<_> = phdrs.iter().filter(|p| p.0 == 1).collect();
    assert_eq!(loads.iter().map(|p| p.4).sum::<u64>(), 64 << 20, "the loads cover all of RAM");
    for addr in [0u64, 0x1000, 0x100000, (64 << 20) - 64] {
        let l = loads.iter().find(|p| p.3 <= addr && addr < p.3 + p.4).unwrap();
        assert_eq!(l.2, 0, "p_vaddr is 0 without paging");
        let off = (l.1 + addr - l.3) as usize;
        assert_eq!(&core[off..off + 64], &xp_bytes(&mut c, addr, 64)[..], "bytes at {addr:#x}");
    }

    // begin/length to a file: one load, exactly that range.
    let small = dir.path().join("small");
    let args = json!({"paging": false, "protocol": format!("file:{}", small.display()), "begin": 0x100000, "length": 0x2000});
    assert_eq!(c.cmd(json!({"execute": "dump-guest-memory", "arguments": args})), json!({"return": {}}));
    let core = std::fs::read(&small).unwrap();
    let loads: Vec<_> = program_headers(&core).into_iter().filter(|p| p.0 == 1).collect();
    assert_eq!(loads.len(), 1);
    assert_eq!((loads[0].3, loads[0].4), (0x100000, 0x2000));
    let off = loads[0].1 as usize;
    assert_eq!(&core[off..off + 256], &xp_bytes(&mut c, 0x100000, 256)[..]);
    let args = json!({"paging": false, "protocol": "file:/nonexistent-dir/core"});
    assert!(error_class(&c.cmd(json!({"execute": "dump-guest-memory", "arguments": args})))
        .1
        .starts_with("Could not open '/nonexistent-dir/core'"));
    let args = json!({"paging": false, "protocol": "fd:x", "begin": 0});
    assert_eq!(
        error_class(&c.cmd(json!({"execute": "dump-guest-memory", "arguments": args}))).1,
        "Parameter 'length' is missing"
    );
}

#[test]
fn hostile_clients_get_errors_and_the_guest_runs_on() {
    let vm = Vm::start();
    let mut c = Client::negotiated(&vm);

    // Garbage and JSON that is not a command: errors, and the connection goes on.
    c.send(b"this is not json\n");
    assert_eq!(error_class(&c.reply()).0, "GenericError");
    c.send(b"[1, 2]\n");
    assert_eq!(error_class(&c.reply()), ("GenericError", "QMP input must be a JSON object"));
    c.send(b"{\"execute\": 5}\n");
    assert_eq!(error_class(&c.reply()).0, "GenericError");
    // A message split over two writes is one message.
    c.send(b"{\"execute\": \"query-status\",");
    c.send(b" \"id\": 9}");
    assert_eq!(c.reply()["id"], 9);
    assert_eq!(c.cmd(json!({"execute": "query-status"}))["return"]["running"], true);

    // A message over 1 MiB: an error, then the connection closes.
    let mut big = vm.connect();
    let _ = big.read();
    let mut msg = b"{\"execute\": \"".to_vec();
    msg.resize((1 << 20) + 4096, b'a');
    let _ = big.stream.write_all(&msg);
    assert!(error_class(&big.reply()).1.contains("the limit"));
    let mut rest = Vec::new();
    let _ = big.reader.read_to_end(&mut rest);
    drop(big);

    // More clients than the limit: the extra ones are told and closed.
    let mut extra = vec![];
    let mut refused = 0;
    for _ in 0..12 {
        let mut e = vm.connect();
        let first = e.read();
        if first.get("QMP").is_some() {
            extra.push(e);
        } else {
            assert!(error_class(&first).1.contains("QMP clients are connected, the limit"), "{first}");
            refused += 1;
        }
    }
    assert_eq!(extra.len() + 1, 8, "eight clients at once");
    assert_eq!(refused, 5);
    drop(extra);
    // Once they are gone, new clients are served again.
    let mut later = None;
    for _ in 0..50 {
        let mut e = vm.connect();
        if e.read().get("QMP").is_some() {
            later = Some(e);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(later.is_some(), "a client is served once the others left");
    assert_eq!(c.cmd(json!({"execute": "query-status"}))["return"]["running"], true);
}

#[test]
fn a_unix_socket_path_that_is_a_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p: &Path = &dir.path().join("file");
    std::fs::write(p, "keep me").unwrap();
    let o = common::vmscope(&["run", "unikernel", "--qmp", &format!("unix:{}", p.display())]);
    assert_ne!(o.status.code(), Some(0));
    assert!(common::stderr(&o).contains("exists and is not a socket"), "{}", common::stderr(&o));
    assert_eq!(std::fs::read_to_string(p).unwrap(), "keep me");
}

#[test]
fn quit_still_writes_stats_json_and_hmp_dumps_and_refuses_linux_commands_on_the_unikernel() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("vm.qmp");
    let stats = dir.path().join("stats.json");
    let qmp = format!("unix:{}", socket.display());
    let args = [
        "run",
        "unikernel",
        "--workload",
        "spin",
        "--timeout",
        "600",
        "--stats-json",
        stats.to_str().unwrap(),
        "--qmp",
        &qmp,
    ];
    let (child, lines) = spawn_with_stderr_lines(&args);
    let mut vm = Vm { child, socket: socket.clone(), _dir: dir };
    assert_eq!(lines.recv_timeout(REPLY_BOUND).unwrap(), format!("vmscope: QMP listening on {qmp}"));
    let mut c = Client::negotiated(&vm);

    // HMP's dump-guest-memory is QMP's with file: (a core covering RAM); its usage on misuse.
    let core = vm._dir.path().join("core");
    assert_eq!(c.hmp(&format!("dump-guest-memory {}", core.display())), "");
    let f = std::fs::read(&core).unwrap();
    assert_eq!(program_headers(&f).iter().filter(|p| p.0 == 1).map(|p| p.4).sum::<u64>(), 64 << 20);
    assert_eq!(c.hmp("dump-guest-memory"), "Error: usage: dump-guest-memory [-p] FILE [BEGIN LENGTH]\n");
    // The Linux commands need a Linux guest's vmlinux: an HMP error naming the command.
    let ps = c.hmp("ps");
    assert!(ps.starts_with("Error: `ps` reads a Linux guest's structures"), "{ps}");

    assert_eq!(c.cmd(json!({"execute": "quit"})), json!({"return": {}}));
    assert_eq!(vm.child.wait().unwrap().code(), Some(0));
    let v: Value =
        serde_json::from_slice(&std::fs::read(&stats).expect("--stats-json written on quit")).unwrap();
    assert_eq!(v["outcome"], "qmp-quit", "{v}");
    // The run's figures, as after the guest's own end.
    assert!(v["exits"]["per_key"].is_array() && v["host_kind"].is_string(), "{v}");
    assert!(!socket.exists());
}
