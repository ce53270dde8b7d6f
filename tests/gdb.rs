//! End to end with the real gdb (batch mode) against `vmscope run unikernel --gdb`.

mod common;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A vmscope serving gdb, with the address it listens on.
struct Served {
    child: Child,
    addr: String,
    stderr: mpsc::Receiver<String>,
}

fn serve(workload: &[&str], wait: bool) -> Served {
    common::require_kvm();
    let mut args =
        vec!["run", "unikernel", "--ring", "0", "--gdb", "127.0.0.1:0", "--timeout", "120", "--workload"];
    args.extend_from_slice(workload);
    if wait {
        args.push("--gdb-wait");
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_vmscope"))
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(30)).expect("vmscope announces its gdb address");
    let addr = line.split("target remote ").nth(1).unwrap().trim_end_matches('\'').to_string();
    Served { child, addr, stderr: rx }
}

impl Served {
    fn finish(mut self) -> (Option<i32>, String, String) {
        let status = self.child.wait().unwrap();
        let mut out = String::new();
        std::io::Read::read_to_string(self.child.stdout.as_mut().unwrap(), &mut out).unwrap();
        let err: Vec<String> = self.stderr.try_iter().collect();
        (status.code(), out, err.join("\n"))
    }
}

fn unikernel_elf() -> String {
    let o = common::vmscope(&["guests", "path", "unikernel"]);
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

fn gdb(addr: &str, commands: &[&str]) -> Output {
    let mut args = vec!["-nx".to_string(), "-batch".to_string(), "-ex".into(), "set pagination off".into()];
    args.extend(["-ex".to_string(), format!("target remote {addr}")]);
    for c in commands {
        args.extend(["-ex".to_string(), c.to_string()]);
    }
    args.push(unikernel_elf());
    Command::new("gdb").args(&args).output().expect("gdb is installed (apt-get install gdb)")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// `$N = 0x…` values in gdb output, in order.
fn printed_hex(out: &str) -> Vec<u64> {
    out.lines()
        .filter_map(|l| l.split_once(" = 0x").map(|(_, v)| v))
        .filter_map(|v| u64::from_str_radix(v.split_whitespace().next().unwrap_or(""), 16).ok())
        .collect()
}

#[test]
fn debug_the_unikernel_from_gdb() {
    let served = serve(&["compute", "100"], true);
    let o = gdb(
        &served.addr,
        &[
            "break workload_compute",
            "continue",
            "bt",
            "info registers rip cr3 efer",
            "x/4i $pc",
            // Each stepi lands where the disassembly said the next instruction is.
            "p/x $pc",
            "stepi",
            "p/x $pc",
            "stepi",
            "p/x $pc",
            "print unikernel::workloads::WORKLOAD_PROGRESS",
            "hbreak console_write",
            "monitor pt $pc",
            "monitor exits",
            "monitor host",
            "info threads",
            "detach",
        ],
    );
    let out = text(&o);
    assert!(out.contains("Breakpoint 1, "), "{out}");
    assert!(out.contains("workload_compute (boot="), "{out}");
    assert!(out.lines().any(|l| l.starts_with("cr3") && l.contains("0x9000")), "{out}");
    assert!(out.lines().any(|l| l.starts_with("efer") && l.contains("0x500")), "{out}");
    assert!(out.contains("=> 0x"), "{out}");
    assert!(out.contains("AtomicU64"), "{out}");
    assert!(out.contains("Hardware assisted breakpoint 2"), "{out}");
    assert!(out.contains("PDE") && out.contains("gpa:"), "{out}");
    assert!(out.contains("total"), "{out}");
    assert!(out.contains("Thread 1") && out.contains("CPL0"), "{out}");
    // RIP after each stepi is the next instruction's address from `x/4i`.
    let listed: Vec<u64> = out
        .lines()
        .filter(|l| l.trim_start().starts_with("=> 0x") || l.starts_with("   0x"))
        .filter_map(|l| {
            u64::from_str_radix(
                l.trim_start_matches(['=', '>', ' ']).trim_start_matches("0x").split_whitespace().next()?,
                16,
            )
            .ok()
        })
        .collect();
    let pcs = printed_hex(&out);
    assert!(listed.len() >= 3 && pcs.len() >= 3, "{out}");
    assert_eq!(pcs[0], listed[0], "{out}");
    assert_eq!(pcs[pcs.len() - 2], listed[1], "{out}");
    assert_eq!(pcs[pcs.len() - 1], listed[2], "{out}");
    // After detach the guest finishes on its own, with its own exit code.
    let (code, stdout, stderr) = served.finish();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("compute: N=100 primes=25"), "{stdout}");
}

#[test]
fn watchpoint_fires_on_the_workloads_write() {
    let served = serve(&["compute", "100"], true);
    let o = gdb(
        &served.addr,
        &[
            "break workload_compute",
            "continue",
            // PVM does not fire debug registers for guest code: gdb's software watchpoints
            // (single-stepping) are the portable choice.
            "set can-use-hw-watchpoints 0",
            "watch unikernel::workloads::WORKLOAD_PROGRESS.v.value",
            "continue",
            "continue",
            "delete",
            "detach",
        ],
    );
    let out = text(&o);
    assert!(out.contains("Old value = 0\nNew value = 2"), "{out}");
    assert!(out.contains("Old value = 2\nNew value = 3"), "{out}");
    assert_eq!(served.finish().0, Some(0));
}

#[test]
fn kill_ends_the_guest() {
    let served = serve(&["compute", "100"], true);
    let out = text(&gdb(&served.addr, &["kill"]));
    assert!(out.contains("Remote connection closed") || out.contains("[Inferior 1"), "{out}");
    let (code, _, stderr) = served.finish();
    assert_eq!(code, Some(137), "{stderr}");
    assert!(stderr.contains("gdb killed the guest"), "{stderr}");
}

#[test]
fn an_abrupt_disconnect_leaves_the_guest_running() {
    let served = serve(&["compute", "100"], true);
    // A gdb that is killed while the guest is stopped at a breakpoint.
    let mut g = Command::new("gdb")
        .args([
            "-nx",
            "-batch",
            "-ex",
            &format!("target remote {}", served.addr),
            "-ex",
            "break workload_compute",
            "-ex",
            "continue",
            "-ex",
            "shell sleep 30",
        ])
        .arg(unikernel_elf())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    g.kill().unwrap();
    g.wait().unwrap();
    let (code, stdout, stderr) = served.finish();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("compute: N=100 primes=25"), "{stdout}");
    assert!(stderr.contains("the guest runs on"), "{stderr}");
}

#[test]
fn a_garbage_client_does_not_crash_vmscope() {
    let served = serve(&["hello"], true);
    let mut s = std::net::TcpStream::connect(&served.addr).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\n\r\n$zz#00\x03\xff\xfe garbage").unwrap();
    drop(s);
    std::thread::sleep(Duration::from_millis(300));
    // vmscope still serves, and the guest is still held for gdb (--gdb-wait): a real gdb
    // attaches afterwards, finds it before its first instruction, and lets it finish.
    let out = text(&gdb(&served.addr, &["info registers rip", "detach"]));
    assert!(out.contains("_start"), "{out}");
    let (code, stdout, _) = served.finish();
    assert_eq!(code, Some(0));
    assert!(stdout.contains("Hello from the vmscope unikernel (ring 0)"), "{stdout}");
}
