//! End to end with the real gdb (batch mode) against `vmscope run unikernel --gdb`.
//! Symbols come from the unikernel ELF (`vmscope guests path unikernel`); no test depends on
//! an address, so the guest can change. The guest runs at CPL0 (on PVM, the only level
//! where single steps and breakpoints reach vmscope), where PVM emulates every
//! instruction: the workloads are small.

mod common;
use std::io::Write;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const PROGRESS: &str = "unikernel::workloads::WORKLOAD_PROGRESS.v.value";

/// A vmscope serving gdb, with the address gdb should connect to.
struct Served {
    child: Child,
    addr: String,
    stderr: mpsc::Receiver<String>,
}

/// `vmscope run unikernel --ring 0 --gdb LISTEN [--gdb-wait] --workload …`.
fn serve_on(listen: &str, workload: &[&str], wait: bool) -> Served {
    common::require_kvm();
    let mut args = vec!["run", "unikernel", "--ring", "0", "--gdb", listen, "--timeout", "600", "--workload"];
    args.extend_from_slice(workload);
    if wait {
        args.push("--gdb-wait");
    }
    let (child, rx) = common::spawn_with_stderr_lines(&args);
    let line = rx.recv_timeout(Duration::from_secs(30)).expect("vmscope announces its gdb address");
    let addr = line.split("target remote ").nth(1).expect(&line).trim_end_matches('\'').to_string();
    Served { child, addr, stderr: rx }
}

/// On a free loopback port, held before the first instruction.
fn serve(workload: &[&str]) -> Served {
    serve_on("127.0.0.1:0", workload, true)
}

impl Served {
    /// Waits for vmscope to end: its exit status, standard output and standard error.
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

/// gdb's arguments: batch mode, connected to `addr`, running `commands`, with the ELF.
fn gdb_args(addr: &str, commands: &[&str]) -> Vec<String> {
    let mut args = vec!["-nx".to_string(), "-batch".to_string(), "-ex".into(), "set pagination off".into()];
    args.extend(["-ex".to_string(), format!("target remote {addr}")]);
    for c in commands {
        args.extend(["-ex".to_string(), c.to_string()]);
    }
    args.push(unikernel_elf());
    args
}

fn gdb(addr: &str, commands: &[&str]) -> Output {
    Command::new("gdb")
        .args(gdb_args(addr, commands))
        .output()
        .expect("gdb is installed (apt-get install gdb)")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// The hex number after `prefix` at the start of a trimmed line.
fn hex_after(line: &str, prefix: &str) -> Option<u64> {
    let rest = line.trim_start().strip_prefix(prefix)?;
    let digits: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
    u64::from_str_radix(&digits, 16).ok()
}

/// Checks `x/2i $pc` / `stepi` / `p/x $pc` triples: after each step RIP is the next
/// instruction the listing showed (or, for a jump or call, its target). Returns how many
/// steps were checked.
fn check_steps(out: &str) -> usize {
    let mut listing: Vec<(u64, String)> = vec![];
    let mut checked = 0;
    for line in out.lines() {
        if let Some(addr) = hex_after(line, "=> 0x") {
            listing = vec![(addr, line.split(":\t").nth(1).unwrap_or_default().to_string())];
        } else if let Some(addr) = hex_after(line, "0x").filter(|_| line.starts_with("   0x")) {
            listing.push((addr, String::new()));
        } else if let (Some(pc), [(_, insn), (next, _)]) = (
            line.split_once(" = 0x").and_then(|(_, v)| hex_after(v, "")).filter(|_| line.starts_with('$')),
            listing.as_slice(),
        ) {
            let mnemonic = insn.split_whitespace().next().unwrap_or_default();
            let target = insn.split_whitespace().nth(1).and_then(|t| hex_after(t, "0x"));
            match mnemonic {
                m if m.starts_with('j') || m.starts_with("call") => {
                    assert!(pc == *next || Some(pc) == target, "after `{insn}` RIP is {pc:#x}\n{out}")
                }
                m if m.starts_with("ret") => {}
                _ => assert_eq!(pc, *next, "after `{insn}` RIP is {pc:#x}\n{out}"),
            }
            checked += 1;
            listing.clear();
        }
    }
    checked
}

#[test]
fn debug_the_unikernel_from_gdb() {
    let served = serve(&["compute", "1000"]);
    let mut commands = vec![
        "break workload_compute",
        "continue",
        "bt",
        "info registers rip cr3 efer cs eflags fs_base k_gs_base",
        "x/4i $pc",
    ];
    for _ in 0..8 {
        commands.extend(["x/2i $pc", "stepi", "p/x $pc"]);
    }
    commands.extend([
        // Range stepping (`vCont;r`): gdb's `next` and `step`.
        "next",
        "next",
        "print unikernel::workloads::WORKLOAD_PROGRESS",
        "hbreak console_write",
        "continue",
        "monitor pt $pc",
        "monitor exits",
        "monitor host",
        "monitor sym workload_compute",
        "monitor break workload_hello",
        "info threads",
        "detach",
    ]);
    let o = gdb(&served.addr, &commands);
    let out = text(&o);
    assert!(out.contains("Breakpoint 1, "), "{out}");
    assert!(out.contains("#1  ") && out.contains("workload_compute (boot="), "{out}");
    let reg =
        |name: &str| out.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_default().to_string();
    assert!(reg("rip").contains("<unikernel::workloads::workload_compute+"), "{out}");
    assert!(reg("cr3").contains("0x9000"), "{out}");
    assert!(reg("efer").contains("0x500"), "{out}");
    assert!(reg("cs").contains("0x8"), "{out}");
    assert!(!reg("eflags").is_empty() && !reg("fs_base").is_empty() && !reg("k_gs_base").is_empty(), "{out}");
    assert!(check_steps(&out) >= 8, "{out}");
    assert!(out.contains("AtomicU64"), "{out}");
    assert!(out.contains("Hardware assisted breakpoint 2"), "{out}");
    assert!(out.contains("Breakpoint 2, unikernel::console::console_write"), "{out}");
    assert!(out.contains("PDE") && out.contains("gpa:"), "{out}");
    assert!(out.contains("total"), "{out}");
    assert!(out.contains("workload_compute = 0x"), "{out}");
    assert!(out.contains("use gdb's own commands for `break`"), "{out}");
    assert!(out.contains("Thread 1") && out.contains("CPL0") && out.contains("rip=0x"), "{out}");
    // After detach the guest finishes on its own, with its own exit code.
    let (code, stdout, stderr) = served.finish();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("compute: N=1000 primes=168"), "{stdout}");
    assert!(stderr.contains("gdb detached; the guest runs on"), "{stderr}");
}

#[test]
fn hardware_watchpoints_fire_on_the_workloads_accesses() {
    let served = serve(&["compute", "1000"]);
    let watch = format!("watch {PROGRESS}");
    let awatch = format!("awatch {PROGRESS}");
    let o = gdb(
        &served.addr,
        &[
            "break workload_compute",
            "continue",
            &watch,
            "continue",
            "continue",
            "delete",
            &awatch,
            "continue",
            "delete",
            "detach",
        ],
    );
    let out = text(&o);
    // On PVM the debug registers do not fire for emulated code: the stub emulates them by
    // stepping, and gdb cannot tell.
    assert!(out.contains("Hardware watchpoint 2"), "{out}");
    assert!(out.contains("Old value = 0\nNew value = 2"), "{out}");
    assert!(out.contains("Old value = 2\nNew value = 3"), "{out}");
    assert!(out.contains("Hardware access (read/write) watchpoint 3"), "{out}");
    assert!(out.contains("Old value = 3\nNew value = 5"), "{out}");
    let (code, stdout, _) = served.finish();
    assert_eq!(code, Some(0));
    assert!(stdout.contains("compute: N=1000 primes=168"), "{stdout}");
}

#[test]
fn software_watchpoints_work_too() {
    let served = serve(&["compute", "100"]);
    let watch = format!("watch {PROGRESS}");
    let o = gdb(
        &served.addr,
        &[
            "break workload_compute",
            "continue",
            "set can-use-hw-watchpoints 0",
            &watch,
            "continue",
            "delete",
            "detach",
        ],
    );
    let out = text(&o);
    assert!(out.contains("Watchpoint 2") && out.contains("Old value = 0\nNew value = 2"), "{out}");
    assert_eq!(served.finish().0, Some(0));
}

#[test]
fn a_fifth_hardware_breakpoint_is_refused_clearly() {
    let served = serve(&["compute", "1000"]);
    let o = gdb(
        &served.addr,
        &[
            "hbreak workload_compute",
            "hbreak workload_hello",
            "hbreak console_write",
            "hbreak workload_uart",
            "hbreak workload_spin",
            "continue",
            "delete",
            "detach",
        ],
    );
    let out = text(&o);
    assert!(out.contains("Could not insert hardware breakpoints"), "{out}");
    let (code, _, stderr) = served.finish();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("all four hardware breakpoint/watchpoint slots (DR0-DR3) are in use"),
        "{stderr}"
    );
}

#[test]
fn registers_and_memory_can_be_written_and_read_physically() {
    let served = serve(&["compute", "1000"]);
    let set = format!("set var {PROGRESS} = 42");
    let print = format!("print {PROGRESS}");
    let o = gdb(
        &served.addr,
        &[
            "break workload_compute",
            "continue",
            "set $r15 = 0x1234",
            "p/x $r15",
            "monitor regs",
            &set,
            &print,
            "monitor phys on",
            "x/2xg 0x9000",
            "monitor phys off",
            "monitor xp 0x9000 16",
            "detach",
        ],
    );
    let out = text(&o);
    assert!(out.contains("= 0x1234"), "{out}");
    assert!(out.contains("r15 0x0000000000001234"), "{out}");
    assert!(out.contains("= 42"), "{out}");
    // The PML4's first entry, both ways: gdb's x with phys on, and the monitor's xp.
    let pml4e = out.lines().find(|l| l.starts_with("0x9000:")).expect(&out);
    let entry = pml4e.split_whitespace().nth(1).unwrap().trim_start_matches("0x");
    let entry = u64::from_str_radix(entry, 16).unwrap();
    assert_eq!(entry & 1, 1, "present\n{out}");
    let xp = out.lines().find(|l| l.starts_with("0000000000009000")).expect(&out);
    assert!(xp.contains(&format!("{:02x}", entry & 0xff)), "{out}");
    let (code, stdout, stderr) = served.finish();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("primes=168"), "{stdout}");
}

#[test]
fn the_guests_exit_code_reaches_gdb_and_vmscope() {
    let served = serve(&["exit", "7"]);
    let out = text(&gdb(&served.addr, &["continue"]));
    assert!(out.contains("[Inferior 1 (process 1) exited with code 07]"), "{out}");
    assert_eq!(served.finish().0, Some(7));
}

/// A breakpoint on the instruction the held vCPU starts at: gdb's `jump` there stops at
/// once (the VMM does not step over a breakpoint at a RIP it never stopped at); gdb's
/// `continue` from it steps off it first (gdb's own rule for a breakpoint at its stop PC),
/// and the guest runs to its end.
#[test]
fn a_breakpoint_on_the_entry_point_is_hit_and_left() {
    let served = serve(&["hello"]);
    let out =
        text(&gdb(&served.addr, &["break *_start", "jump *_start", "p/x $pc", "p/x &_start", "continue"]));
    assert!(out.contains("Breakpoint 1, "), "{out}");
    let values: Vec<&str> = out.lines().filter_map(|l| l.split_once(" = ").map(|(_, v)| v)).collect();
    assert_eq!(values.len(), 2, "{out}");
    assert_eq!(values[0], values[1], "{out}");
    assert!(out.contains("[Inferior 1 (process 1) exited normally]"), "{out}");
    let (code, stdout, stderr) = served.finish();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("Hello from the vmscope unikernel (ring 0)"), "{stdout}");
}

#[test]
fn a_triple_fault_is_a_sigsegv_gdb_can_inspect() {
    let served = serve(&["triple-fault"]);
    let out = text(&gdb(&served.addr, &["continue", "x/i $pc", "continue"]));
    assert!(out.contains("Program received signal SIGSEGV"), "{out}");
    assert!(out.contains("workload_triple_fault") && out.contains("ud2"), "{out}");
    assert!(out.contains("Program terminated with signal SIGSEGV"), "{out}");
    let (code, _, stderr) = served.finish();
    assert_eq!(code, Some(125), "{stderr}");
    assert!(stderr.contains("triple fault"), "{stderr}");
}

#[test]
fn an_instruction_the_emulator_cannot_run_is_a_sigill() {
    if !common::host_is_pvm() {
        // Hardware KVM runs SSE at CPL0: nothing to see.
        return;
    }
    let served = serve(&["sse"]);
    let out = text(&gdb(&served.addr, &["continue", "x/i $pc", "detach"]));
    assert!(out.contains("Program received signal SIGILL"), "{out}");
    assert!(out.contains("xmm0"), "{out}");
    // Detaching cannot make the instruction runnable: vmscope reports the fault.
    let (code, _, stderr) = served.finish();
    assert_eq!(code, Some(125), "{stderr}");
    assert!(stderr.contains("could not run an instruction"), "{stderr}");
}

#[test]
fn kill_ends_the_guest() {
    let served = serve(&["compute", "100"]);
    let out = text(&gdb(&served.addr, &["kill"]));
    assert!(out.contains("Remote connection closed") || out.contains("[Inferior 1"), "{out}");
    let (code, _, stderr) = served.finish();
    assert_eq!(code, Some(137), "{stderr}");
    assert!(stderr.contains("gdb killed the guest"), "{stderr}");
}

#[test]
fn ctrl_c_pauses_a_guest_gdb_attached_to_later() {
    // No --gdb-wait: the guest runs before gdb comes.
    let served = serve_on("127.0.0.1:0", &["spin"], false);
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("continuing");
    let touch = format!("shell touch {}", marker.display());
    let g = Command::new("gdb")
        .args(gdb_args(&served.addr, &["info threads", &touch, "continue", "info registers rip", "kill"]))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..300 {
        if marker.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(marker.exists(), "gdb did not get to `continue`");
    // gdb is in `continue` now (or about to be); Ctrl-C is SIGINT to gdb, which sends ^C.
    std::thread::sleep(Duration::from_millis(500));
    let sent = Command::new("kill").args(["-INT", &g.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let out = text(&g.wait_with_output().unwrap());
    assert!(out.contains("Program received signal SIGINT"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("rip") && l.contains("workload_spin")), "{out}");
    let (code, stdout, stderr) = served.finish();
    assert_eq!(code, Some(137), "{stderr}");
    assert!(stdout.contains("spin: looping forever"), "{stdout}");
}

#[test]
fn gdb_attaches_through_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gdb.sock");
    let served = serve_on(&format!("unix:{}", path.display()), &["hello"], true);
    assert_eq!(served.addr, path.display().to_string());
    let out = text(&gdb(&served.addr, &["break workload_hello", "continue", "detach"]));
    assert!(out.contains("Breakpoint 1, "), "{out}");
    let (code, stdout, _) = served.finish();
    assert_eq!(code, Some(0));
    assert!(stdout.contains("Hello from the vmscope unikernel (ring 0)"), "{stdout}");
    assert!(!path.exists(), "vmscope removes its socket");
}

#[test]
fn an_abrupt_disconnect_leaves_the_guest_running() {
    let served = serve(&["compute", "100"]);
    // A gdb that is killed while the guest is stopped at a breakpoint.
    let mut g = Command::new("gdb")
        .args(gdb_args(&served.addr, &["break workload_compute", "continue", "shell sleep 30"]))
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
fn a_disconnect_while_the_stub_steps_for_a_watchpoint_leaves_the_guest_running() {
    let served = serve(&["compute", "1000"]);
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("continuing");
    let touch = format!("shell touch {}", marker.display());
    // Nothing reads WORKLOAD_PROGRESS: this `continue` steps until gdb goes away.
    let rwatch = format!("rwatch {PROGRESS}");
    let mut g = Command::new("gdb")
        .args(gdb_args(&served.addr, &[&rwatch, &touch, "continue"]))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..300 {
        if marker.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    g.kill().unwrap();
    g.wait().unwrap();
    let (code, stdout, stderr) = served.finish();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("compute: N=1000 primes=168"), "{stdout}");
    assert!(stderr.contains("the guest runs on"), "{stderr}");
}

#[test]
fn garbage_clients_do_not_crash_vmscope() {
    let served = serve(&["hello"]);
    // Not gdb at all: turned away at the first byte.
    let mut s = std::net::TcpStream::connect(&served.addr).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    drop(s);
    // Something that starts like gdb, then sends nonsense and vanishes.
    let mut s = std::net::TcpStream::connect(&served.addr).unwrap();
    s.write_all(b"+$zz#00$qSupported#00\x03\xff\xfe garbage $g#67").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    drop(s);
    std::thread::sleep(Duration::from_millis(300));
    // vmscope still serves, and the guest is still held for gdb (--gdb-wait): a real gdb
    // attaches afterwards, finds it before its first instruction, and lets it finish.
    let out = text(&gdb(&served.addr, &["info registers rip", "detach"]));
    assert!(out.contains("_start"), "{out}");
    let (code, stdout, stderr) = served.finish();
    assert_eq!(code, Some(0));
    assert!(stdout.contains("Hello from the vmscope unikernel (ring 0)"), "{stdout}");
    assert!(stderr.contains("turned away a client"), "{stderr}");
}

/// Not a test of correctness: the figures in gdb/DESIGN.md. Run with
/// `cargo test --release --test gdb -- --ignored --nocapture measure`.
#[test]
#[ignore]
fn measure_stepi_and_memory_reads() {
    let served = serve(&["compute", "100000"]);
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("measure.py");
    std::fs::write(&script, MEASURE_PY).unwrap();
    let source = format!("source {}", script.display());
    let out = text(&gdb(&served.addr, &[&source, "kill"]));
    let host = common::vmscope(&["host"]);
    println!("{}", common::stdout(&host).lines().next().unwrap_or_default());
    for line in out.lines().filter(|l| l.starts_with("measure:")) {
        println!("{line}");
    }
    assert!(out.contains("measure: stepi"), "{out}");
    served.finish();
}

const MEASURE_PY: &str = r#"
import gdb, time, statistics
def timed(cmd, n):
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        gdb.execute(cmd, to_string=True)
        ts.append(time.perf_counter() - t)
    ts.sort()
    return statistics.median(ts), ts[int(len(ts) * 0.9)]
gdb.execute("break workload_compute")
gdb.execute("continue")
gdb.execute("delete")
pc = int(gdb.parse_and_eval("$pc"))
med, p90 = timed("stepi", 1000)
print("measure: stepi x1000: median %.0f us, p90 %.0f us" % (med * 1e6, p90 * 1e6))
page_end = (pc | 0xfff) + 1
cross = "x/1024xb %#x" % (page_end - 512)
med, p90 = timed(cross, 20)
print("measure: %s (across a page boundary, gdb sends 1024 one-byte m packets): median %.1f ms" % (cross, med * 1e3))
dump = "dump binary memory /dev/null %#x %#x" % (page_end - 512, page_end + 512)
med, p90 = timed(dump, 50)
print("measure: 1 KiB across a page boundary in one m packet (dump memory): median %.2f ms" % (med * 1e3))
"#;
