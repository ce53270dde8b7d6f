//! A hostile gdb client (issue 12): raw remote-protocol packets over TCP (`$body#checksum`,
//! `+` acknowledgements) against `vmscope run unikernel --ring 0 --gdb 127.0.0.1:0
//! --gdb-wait`. Each case sends what no gdb would and asserts what the protocol promises:
//! an `E` reply (or a one-line monitor message), the stub still answering `?` and `g`
//! afterwards, vmscope alive with a resident size far below what the request asked for.
//! Nothing here asserts a duration: the test side's read timeout only turns a hang into a
//! failure.

mod common;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Child;
use std::sync::mpsc;
use std::time::Duration;

/// How long the test waits for any one reply before it calls the stub hung.
const HUNG: Duration = Duration::from_secs(120);

/// A vmscope serving gdb.
struct Served {
    child: Child,
    addr: String,
    stderr: mpsc::Receiver<String>,
    /// The lines before the address was announced.
    early: Vec<String>,
}

/// `vmscope run unikernel --ring 0 --gdb LISTEN --gdb-wait EXTRA… --workload WORKLOAD…`.
fn serve_with(listen: &str, extra: &[&str], workload: &[&str]) -> Served {
    common::require_kvm();
    let mut args = vec!["run", "unikernel", "--ring", "0", "--gdb", listen, "--gdb-wait"];
    args.extend_from_slice(extra);
    args.push("--workload");
    args.extend_from_slice(workload);
    let (child, rx) = common::spawn_with_stderr_lines(&args);
    let mut early = vec![];
    let addr = loop {
        let line = rx.recv_timeout(Duration::from_secs(60)).expect("vmscope announces its gdb address");
        match line.split("target remote ").nth(1) {
            Some(a) => break a.trim_end_matches('\'').to_string(),
            None => early.push(line),
        }
    };
    Served { child, addr, stderr: rx, early }
}

fn serve(workload: &[&str]) -> Served {
    serve_with("127.0.0.1:0", &["--timeout", "600"], workload)
}

impl Served {
    fn connect(&self) -> Rsp {
        let s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(HUNG)).unwrap();
        let mut rsp = Rsp { s };
        rsp.s.write_all(b"+").unwrap();
        rsp
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Resident memory of vmscope, in KiB.
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// Checks that vmscope is alive and small (its guest has 64 MiB by default; the hostile
    /// requests asked for gigabytes to exabytes).
    fn assert_healthy(&mut self) {
        assert!(self.alive(), "vmscope died: {}", self.stderr_text());
        let rss = self.rss_kib();
        assert!(rss < 512 * 1024, "vmscope's resident size grew to {rss} KiB");
    }

    fn stderr_text(&self) -> String {
        self.early.iter().cloned().chain(self.stderr.try_iter()).collect::<Vec<_>>().join("\n")
    }

    fn kill(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stderr_text()
    }

    /// Waits for vmscope to end: its exit status and standard error.
    fn finish(mut self) -> (Option<i32>, String) {
        let status = self.child.wait().unwrap();
        // The reader thread ends with the pipe.
        let mut lines = self.early.clone();
        while let Ok(l) = self.stderr.recv_timeout(Duration::from_secs(10)) {
            lines.push(l);
        }
        (status.code(), lines.join("\n"))
    }
}

/// A raw remote-protocol client.
struct Rsp {
    s: TcpStream,
}

fn checksum(body: &str) -> u8 {
    body.bytes().fold(0u8, |a, b| a.wrapping_add(b))
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> String {
    let bytes: Vec<u8> =
        (0..s.len() / 2).filter_map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

impl Rsp {
    fn send(&mut self, body: &str) {
        let packet = format!("${body}#{:02x}", checksum(body));
        self.s.write_all(packet.as_bytes()).unwrap();
    }

    /// The next packet's body (acknowledged), skipping `+` acknowledgements; `None` when
    /// the stub closed the connection.
    fn reply(&mut self) -> Option<String> {
        let mut byte = [0u8];
        loop {
            match self.s.read(&mut byte) {
                Ok(0) => return None,
                Ok(_) if byte[0] == b'$' => break,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("no reply from the stub ({e})"),
            }
        }
        let mut body = vec![];
        loop {
            self.s.read_exact(&mut byte).expect("a whole packet");
            if byte[0] == b'#' {
                break;
            }
            body.push(byte[0]);
        }
        let mut sum = [0u8; 2];
        self.s.read_exact(&mut sum).unwrap();
        self.s.write_all(b"+").unwrap();
        // Run-length encoding: `X*n` is X and (n - 29) more of it.
        let mut out: Vec<u8> = vec![];
        let mut i = 0;
        while i < body.len() {
            match (body[i], out.last().copied(), body.get(i + 1)) {
                (b'*', Some(prev), Some(&n)) => {
                    out.extend(std::iter::repeat_n(prev, usize::from(n) - 29));
                    i += 2;
                }
                (b, _, _) => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        Some(String::from_utf8_lossy(&out).into_owned())
    }

    fn ask(&mut self, body: &str) -> String {
        self.send(body);
        self.reply().unwrap_or_else(|| panic!("the stub closed the connection after {body:?}"))
    }

    /// `monitor CMD`: the console text, up to the final `OK`.
    fn monitor(&mut self, cmd: &str) -> String {
        self.send(&format!("qRcmd,{}", hex(cmd)));
        let mut text = String::new();
        loop {
            let r = self.reply().expect("a monitor reply");
            match r.strip_prefix('O') {
                Some(h) if r != "OK" => text.push_str(&unhex(h)),
                _ => {
                    assert_eq!(r, "OK", "{text}");
                    return text;
                }
            }
        }
    }

    /// The stub still serves: `?` is a stop reply and `g` the registers; returns RIP.
    fn still_serves(&mut self) -> u64 {
        let stop = self.ask("?");
        assert!(stop.starts_with('T') || stop.starts_with('S'), "{stop}");
        let g = self.ask("g");
        assert!(g.len() >= 17 * 16 && g.bytes().all(|b| b.is_ascii_hexdigit()), "{g}");
        // RIP is the 17th 8-byte register, little-endian.
        let rip = &g[16 * 16..17 * 16];
        (0..8).rev().fold(0u64, |a, i| a << 8 | u64::from_str_radix(&rip[2 * i..2 * i + 2], 16).unwrap())
    }
}

fn is_error(reply: &str) -> bool {
    reply.len() == 3 && reply.starts_with('E') && reply[1..].bytes().all(|b| b.is_ascii_hexdigit())
}

#[test]
fn hostile_watchpoints_get_an_error_and_the_stub_serves_on() {
    let mut served = serve(&["hello"]);
    let mut gdb = served.connect();
    gdb.still_serves();
    for packet in [
        // address + length wraps past the end of the address space
        "Z2,fffffffffffffff8,10",
        "Z3,ffffffffffffffff,2",
        // a huge length
        "Z2,1000,ffffffffffffff",
        "Z4,0,ffffffffffffffff",
        // longer than four debug registers can watch, and nothing at all
        "Z2,1000,21",
        "Z4,1000,0",
        // 31 unaligned bytes: six pieces for four registers
        "Z3,1001,1f",
    ] {
        let r = gdb.ask(packet);
        assert!(is_error(&r), "{packet} -> {r}");
        gdb.still_serves();
        served.assert_healthy();
    }
    // A watchpoint gdb would send still works, and so does removing it.
    assert_eq!(gdb.ask("Z2,1000,8"), "OK");
    assert_eq!(gdb.ask("z2,1000,8"), "OK");
    let stderr = served.kill();
    assert!(stderr.contains("run past the end of the address space"), "{stderr}");
    assert!(stderr.contains("over the limit of 32"), "{stderr}");
}

#[test]
fn hostile_memory_reads_get_an_error_and_the_stub_serves_on() {
    let mut served = serve_with("127.0.0.1:0", &["--timeout", "600", "--mem", "64"], &["hello"]);
    let mut gdb = served.connect();
    let rip = gdb.still_serves();
    // What gdb reads at most in one packet (PacketSize 4096, hex-encoded).
    let ok = gdb.ask(&format!("m{rip:x},800"));
    assert_eq!(ok.len(), 2 * 0x800, "{ok}");
    for packet in [
        "m0,ffffffffffffffff".to_string(),
        format!("m{rip:x},801"),
        format!("m{rip:x},100000"),
        "mfffffffffffff000,800".to_string(),
        "m7fffffffffff0000,10".to_string(),
    ] {
        let r = gdb.ask(&packet);
        assert!(is_error(&r), "{packet} -> {}", &r[..r.len().min(80)]);
        gdb.still_serves();
        served.assert_healthy();
    }
    // Physically (64 MiB of RAM): past its end is an error, a read that runs into it a
    // short read.
    assert!(gdb.monitor("phys on").contains("physical"));
    let r = gdb.ask("m100000000000,10");
    assert!(is_error(&r), "{r}");
    let r = gdb.ask("m3fffff8,800");
    assert!(!r.is_empty() && r.len() < 2 * 0x800 && !is_error(&r), "{r}");
    assert!(is_error(&gdb.ask("m0,ffffffffffffffff")));
    gdb.still_serves();
    served.assert_healthy();
    served.kill();
}

#[test]
fn hostile_monitor_commands_are_refused_in_one_line() {
    let mut served = serve(&["hello"]);
    let mut gdb = served.connect();
    gdb.still_serves();
    for (cmd, expect) in [
        ("xp 0 0x7fffffffffff", "over the limit"),
        ("xp/0xffffffffffffffff 0", "over the limit"),
        ("xp 0xfffffffffffffff0 0x20", "past the end"),
        ("x/99999999999 $rsp", "over the limit"),
        ("dis 0 0x7fffffffffffffff", "over the limit"),
        ("dis $pc 100000", "over the limit"),
    ] {
        let text = gdb.monitor(cmd);
        assert!(text.contains(expect) && text.trim().lines().count() == 1, "monitor {cmd}: {text}");
        gdb.still_serves();
        served.assert_healthy();
    }
    // Within the limits the commands work.
    let dump = gdb.monitor("xp 0x9000 16");
    assert!(dump.contains("9000"), "{dump}");
    let dis = gdb.monitor("dis $pc 4");
    assert!(dis.lines().count() >= 4, "{dis}");
    served.kill();
}

#[test]
fn a_silent_or_stalling_client_is_dropped_and_the_next_gdb_attaches() {
    let mut served = serve(&["hello"]);
    // A client that acknowledges and then says nothing: dropped (the stub closes).
    let mut silent = served.connect();
    assert_eq!(silent.reply(), None, "the stub closes a client that sends no packet");
    // One that starts a packet and never finishes it: dropped too.
    let mut stalled = served.connect();
    stalled.still_serves();
    stalled.s.write_all(b"$m0,1").unwrap();
    assert_eq!(stalled.reply(), None, "the stub closes a client that stalls inside a packet");
    // The guest is still held for the next gdb, which gets answers.
    let mut gdb = served.connect();
    gdb.still_serves();
    served.assert_healthy();
    let stderr = served.kill();
    assert!(stderr.contains("no packet within"), "{stderr}");
    assert!(stderr.contains("a packet stayed unfinished"), "{stderr}");
}

#[test]
fn the_timeout_bounds_gdb_sessions() {
    // Nobody attaches to the held guest: the run ends at --timeout.
    let served = serve_with("127.0.0.1:0", &["--timeout", "3"], &["hello"]);
    let (code, stderr) = served.finish();
    assert_eq!(code, Some(124), "{stderr}");
    assert!(stderr.contains("--timeout"), "{stderr}");

    // A client attached and idle at its prompt: the run ends too, and the stub closes.
    let served = serve_with("127.0.0.1:0", &["--timeout", "5"], &["hello"]);
    let mut gdb = served.connect();
    gdb.still_serves();
    assert_eq!(gdb.reply(), None);
    let (code, stderr) = served.finish();
    assert_eq!(code, Some(124), "{stderr}");

    // The guest running under gdb: gdb hears it was terminated by SIGALRM (14).
    let served = serve_with("127.0.0.1:0", &["--timeout", "5"], &["spin"]);
    let mut gdb = served.connect();
    gdb.still_serves();
    gdb.send("vCont;c");
    let stop = gdb.reply().expect("a stop reply");
    let signal = stop.strip_prefix('X').and_then(|s| u8::from_str_radix(s.split(';').next()?, 16).ok());
    assert_eq!(signal, Some(14), "{stop}");
    let (code, stderr) = served.finish();
    assert_eq!(code, Some(124), "{stderr}");
}

#[test]
fn a_unix_socket_is_private_and_never_replaces_a_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gdb.sock");
    let listen = format!("unix:{}", path.display());
    // A regular file at the path: vmscope refuses, naming it, and leaves it alone.
    std::fs::write(&path, "precious").unwrap();
    let o = common::vmscope(&["run", "unikernel", "--ring", "0", "--gdb", &listen, "--workload", "hello"]);
    let err = common::stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains(&*path.to_string_lossy()) && err.contains("not a socket"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
    std::fs::remove_file(&path).unwrap();
    // The socket vmscope creates: mode 0600.
    let served = serve_with(&listen, &["--timeout", "600"], &["hello"]);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
    served.kill();
}

#[test]
fn a_non_loopback_address_needs_confirming() {
    let o =
        common::vmscope(&["run", "unikernel", "--ring", "0", "--gdb", "0.0.0.0:0", "--workload", "hello"]);
    let err = common::stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("not a loopback address") && err.contains("--gdb-any-address"), "{err}");
    // Confirmed: a warning, and it serves (here through loopback, which 0.0.0.0 includes).
    let served = serve_with("0.0.0.0:0", &["--gdb-any-address", "--timeout", "600"], &["hello"]);
    let port = served.addr.rsplit(':').next().unwrap().to_string();
    let s = TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    s.set_read_timeout(Some(HUNG)).unwrap();
    let mut gdb = Rsp { s };
    gdb.s.write_all(b"+").unwrap();
    gdb.still_serves();
    let stderr = served.kill();
    assert!(stderr.contains("warning: gdb listens on 0.0.0.0"), "{stderr}");
}
