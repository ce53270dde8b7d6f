//! End to end: the real `vmscope tui` in a real terminal (tmux): pause, step three times and
//! see RIP change, set a breakpoint, continue and see it hit, open the page-table view,
//! quit, and check the terminal was restored; the default workload's ticks; typing at the
//! Linux shell (Backspace, Ctrl-C, `q` in the console); and SIGTERM/SIGHUP/SIGINT ending the
//! TUI and `run linux --shell` with the terminal restored (`stty -a` of the pane); `:migrate`
//! moving the TUI's unikernel to a `vmscope run --incoming` with no tick lost or repeated,
//! a failed move (no target) leaving it ticking in the TUI with the reason shown, the Linux
//! shell moved and answering in the target, and `:checkpoint`/`:rewind` at the prompt; the
//! Linux guest's processes pane (a `sleep` typed at its shell, its parent the shell) and
//! kernel log pane (the boot banner, a line written to /dev/kmsg).

mod common;
use std::process::Command;
use std::time::{Duration, Instant};

struct Tmux(String);

impl Tmux {
    fn start(cmd: &str) -> Self {
        common::require_kvm();
        // Tests run in parallel in one process: a counter keeps their sessions apart.
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("vmscope-tui-test-{}-{seq}", std::process::id());
        let ok = Command::new("tmux")
            .args(["new-session", "-d", "-s", &name, "-x", "100", "-y", "30", cmd])
            .status()
            .expect("tmux is installed (apt-get install tmux)");
        assert!(ok.success());
        Self(name)
    }

    fn keys(&self, keys: &[&str]) {
        for k in keys {
            Command::new("tmux").args(["send-keys", "-t", &self.0, k]).status().unwrap();
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    fn screen(&self) -> String {
        let o = Command::new("tmux").args(["capture-pane", "-p", "-t", &self.0]).output().unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Waits until the screen satisfies `ok` (the TUI refreshes every 50 ms).
    fn wait_for(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        self.wait_within(what, Duration::from_secs(30), ok)
    }

    /// [`Self::wait_for`] with a bound of its own (a Linux boot on a busy PVM host takes
    /// minutes); the bound only turns a hang into a failure, it is not what is tested.
    fn wait_within(&self, what: &str, bound: Duration, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + bound;
        loop {
            let s = self.screen();
            if ok(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; screen:\n{s}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The pane's terminal as `stty -a` describes it now.
    fn stty(&self) -> String {
        let tty = self.option("#{pane_tty}");
        let o = Command::new("stty").args(["-a", "-F", &tty]).output().unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// The pid of the pane's `vmscope` (the child of the pane's shell).
    fn vmscope_pid(&self) -> u32 {
        let shell = self.option("#{pane_pid}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let o = Command::new("pgrep").args(["-P", &shell, "-x", "vmscope"]).output().unwrap();
            if let Some(pid) = String::from_utf8_lossy(&o.stdout).split_whitespace().next() {
                return pid.parse().unwrap();
            }
            assert!(Instant::now() < deadline, "no vmscope under the pane's shell {shell}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Resizes the window (the TUI redraws at the new size).
    fn resize(&self, cols: u16, rows: u16) {
        let (x, y) = (cols.to_string(), rows.to_string());
        Command::new("tmux").args(["resize-window", "-t", &self.0, "-x", &x, "-y", &y]).status().unwrap();
    }

    fn option(&self, name: &str) -> String {
        let o = Command::new("tmux").args(["display", "-p", "-t", &self.0, name]).output().unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["kill-session", "-t", &self.0]).status();
    }
}

fn rip(screen: &str) -> Option<String> {
    screen.split("rip ").nth(1).map(|s| s.chars().take(16).collect())
}

#[test]
fn pause_step_break_continue_pagetables_quit() {
    let bin = env!("CARGO_BIN_EXE_vmscope");
    // A long sieve (the default workload sleeps most of the time): its loop is where the
    // steps and the breakpoint below land.
    let t = Tmux::start(&format!(
        "{bin} tui unikernel --workload 'compute 20000000'; echo VMSCOPE-EXITED $?; sleep 30"
    ));
    t.wait_for("the TUI", |s| s.contains("registers (vCPU 0)") && s.contains("[running]"));

    t.keys(&["Space"]);
    let mut last = rip(&t.wait_for("pause", |s| s.contains("[paused")));
    for i in 0..3 {
        t.keys(&["s"]);
        let s = t.wait_for("a step", |s| rip(s) != last && s.contains("step"));
        assert_ne!(rip(&s), last, "step {i}");
        last = rip(&s);
    }

    // A breakpoint two instructions below the cursor's start, then continue to it.
    t.keys(&["Down", "Down", "b"]);
    let s = t.wait_for("the breakpoint", |s| s.contains("breakpoint at 0x"));
    let bp = s
        .split("breakpoint at 0x")
        .nth(1)
        .unwrap()
        .chars()
        .take_while(|c| c.is_ascii_hexdigit())
        .collect::<String>();
    assert!(s.contains('●'), "{s}");
    t.keys(&["c"]);
    let s = t.wait_for("the breakpoint hit", |s| s.contains("[paused: breakpoint"));
    assert!(rip(&s).unwrap().ends_with(&bp), "rip {:?} vs breakpoint {bp}\n{s}", rip(&s));

    t.keys(&["p"]);
    let s = t.wait_for("the page-table view", |s| s.contains("PML4E"));
    assert!(s.contains("PDPTE") && s.contains("PDE") && s.contains("gpa:"), "{s}");
    t.keys(&["Escape"]);
    t.wait_for("the overlay to close", |s| !s.contains("PML4E"));

    t.keys(&["?"]);
    t.wait_for("the help", |s| s.contains("step one instruction"));
    t.keys(&["Escape"]);
    std::thread::sleep(Duration::from_millis(300));
    t.keys(&["q"]);
    let s = t.wait_for("the exit", |s| s.contains("VMSCOPE-EXITED"));
    assert!(s.contains("VMSCOPE-EXITED 0"), "{s}");
    assert_eq!(t.option("#{alternate_on}"), "0", "the terminal left the alternate screen");
    assert_eq!(t.option("#{cursor_flag}"), "1", "the cursor is visible again");
}

/// The container pane shows what the kernel accounts to the container's own cgroups (found
/// from its init process, wherever the runtime nested them), and quitting ends it.
#[test]
fn a_container_shows_its_cgroup_memory_cpu_and_processes() {
    let bin = env!("CARGO_BIN_EXE_vmscope");
    let mut runtimes = vec!["embedded"];
    if guests::container::runtime_path("runc").is_some() {
        runtimes.push("runc");
    }
    for runtime in runtimes {
        let t = Tmux::start(&format!(
            "{bin} tui container --runtime {runtime}; echo VMSCOPE-EXITED $?; sleep 30"
        ));
        let s = t.wait_for("the container's cgroup", |s| {
            s.contains(&format!("runtime {runtime}"))
                && s.contains(" MiB")
                && !s.contains("cgroup CPU ?")
                && s.contains("workload")
        });
        assert!(!s.contains("not available"), "{runtime}: {s}");
        t.keys(&["q"]);
        t.wait_for("the exit", |s| s.contains("VMSCOPE-EXITED 0"));
    }
}

/// On a host where a guest cannot start (here: Linux, whose kernel is not in an empty cache),
/// `vmscope tui` still starts the others and gives the missing one a tab with the reason and
/// the command that fixes it.
#[test]
fn a_guest_that_cannot_start_gets_a_tab_with_the_fix() {
    let bin = env!("CARGO_BIN_EXE_vmscope");
    let empty = tempfile::tempdir().unwrap();
    let t = Tmux::start(&format!(
        "VMSCOPE_CACHE={} {bin} tui; echo VMSCOPE-EXITED $?; sleep 30",
        empty.path().display()
    ));
    let s = t.wait_for("the TUI", |s| s.contains("linux [not started]"));
    assert!(s.contains("unikernel [running]"), "the unikernel runs beside it:\n{s}");
    assert!(s.contains("container ["), "the container has its tab:\n{s}");
    // The Linux tab is last: its panes say why and how to fix it.
    t.keys(&["Left"]);
    let s = t.wait_for("the Linux tab", |s| s.contains("did not start on this host"));
    assert!(s.contains("not built yet"), "{s}");
    assert!(s.contains("vmscope guests build linux"), "{s}");
    t.keys(&["s"]);
    t.wait_for("the explanation of a refused step", |s| s.contains("linux did not start; to fix:"));
    t.keys(&["q"]);
    let s = t.wait_for("the exit", |s| s.contains("VMSCOPE-EXITED"));
    assert!(s.contains("VMSCOPE-EXITED 0"), "{s}");
}

/// The lines of the console pane (the left column, between its borders), trimmed.
fn console_lines(screen: &str) -> Vec<String> {
    screen
        .lines()
        .filter_map(|l| l.strip_prefix('│'))
        .map(|l| l.split('│').next().unwrap_or("").trim().to_string())
        .collect()
}

/// The default TUI idles: the unikernel and the container print ticks (the container at
/// once, not after minutes of a busy workload), and a pause lands the unikernel in its sleep.
#[test]
fn the_default_workload_ticks_in_the_unikernel_and_the_container() {
    let bin = env!("CARGO_BIN_EXE_vmscope");
    let t = Tmux::start(&format!("{bin} tui unikernel container; echo VMSCOPE-EXITED $?; sleep 30"));
    t.wait_for("the unikernel's ticks", |s| console_lines(s).iter().any(|l| l == "tick 2"));
    t.keys(&["Right"]);
    t.wait_for("the container's ticks", |s| {
        s.contains("container [running]") && console_lines(s).iter().any(|l| l == "tick 2")
    });
    t.keys(&["Left", "Space"]);
    let s = t.wait_for("the pause", |s| s.contains("[paused"));
    assert!(s.contains("rdx 0000000000000504") || s.contains("sleep_us"), "paused in its sleep:\n{s}");
    t.keys(&["q"]);
    t.wait_for("the exit", |s| s.contains("VMSCOPE-EXITED 0"));
}

/// `vmscope tui linux` in a tmux pane (then `echo VMSCOPE-EXITED $?; {after}`), waited for
/// until the guest's shell prompt shows and the console has the focus; the tmux session and
/// its screen then.
fn tui_linux_at_its_shell(after: &str) -> (Tmux, String) {
    let bin = env!("CARGO_BIN_EXE_vmscope");
    let t = Tmux::start(&format!("{bin} tui linux; echo VMSCOPE-EXITED $?; {after}"));
    // The kernel boots in KVM's emulator on PVM: minutes on a busy host.
    t.wait_within("the shell prompt", Duration::from_secs(1800), |s| {
        console_lines(s).iter().any(|l| l.starts_with("/ #"))
    });
    // Focus starts on the disassembly; Tab goes registers, exits, console.
    t.keys(&["Tab", "Tab", "Tab"]);
    let s = t.wait_for("console focus", |s| s.contains("console: keys go to the guest"));
    (t, s)
}

/// A learner at the Linux shell in the TUI: Backspace edits, Enter runs, the shell's
/// cursor-position query is answered (never shown as `[6n`), Ctrl-C interrupts the guest's
/// command and not the TUI, `q` with the console focused is typed into the guest while the
/// footer says how to leave, and Ctrl-] then `q` quits with the terminal restored.
#[test]
fn typing_at_the_linux_shell_in_the_tui() {
    let (t, s) = tui_linux_at_its_shell("stty -a; sleep 600");
    assert!(s.contains("Ctrl-]"), "the footer says how to leave the console:\n{s}");

    t.keys(&["echo helx", "BSpace", "lo", "Enter"]);
    let s = t.wait_within("echo's output", Duration::from_secs(300), |s| {
        console_lines(s).iter().any(|l| l == "hello")
    });
    assert!(!s.contains("[6n"), "the cursor-position query is answered, not shown:\n{s}");
    assert!(!s.contains("helx"), "Backspace erased the x:\n{s}");

    // Ctrl-C ends the guest's command (ticks for far longer than the wait below), not the
    // TUI. Once it has printed a tick the workload is the terminal's foreground process.
    t.keys(&["workload ticks 3000 --every 1000", "Enter"]);
    t.wait_within("the ticks", Duration::from_secs(300), |s| console_lines(s).iter().any(|l| l == "tick 2"));
    t.keys(&["C-c"]);
    t.keys(&["echo after-ctrl-c", "Enter"]);
    let s = t.wait_within("the shell after Ctrl-C", Duration::from_secs(300), |s| {
        console_lines(s).iter().any(|l| l == "after-ctrl-c")
    });
    assert!(!s.contains("VMSCOPE-EXITED") && s.contains("linux [running]"), "the TUI stays:\n{s}");

    // q is typed into the guest: its shell answers that there is no such command.
    t.keys(&["q", "Enter"]);
    let s =
        t.wait_within("the guest's answer to q", Duration::from_secs(300), |s| s.contains("q: not found"));
    assert!(s.contains("console: keys go to the guest") && !s.contains("VMSCOPE-EXITED"), "{s}");

    t.keys(&["C-]"]);
    t.wait_for("vmscope's keys", |s| s.contains("vmscope keys"));
    t.keys(&["q"]);
    let s = t.wait_for("the exit", |s| s.contains("VMSCOPE-EXITED"));
    assert!(s.contains("VMSCOPE-EXITED 0"), "{s}");
    let stty = t.stty();
    assert!(stty.contains(" icanon") && stty.contains(" echo "), "the terminal is cooked again:\n{stty}");
}

/// SIGTERM, SIGHUP and SIGINT end the TUI with the terminal restored (cooked, main screen,
/// cursor shown) and a status that names the signal.
#[test]
fn a_signal_ends_the_tui_with_the_terminal_restored() {
    let bin = env!("CARGO_BIN_EXE_vmscope");
    for (signal, number) in [("TERM", 15), ("HUP", 1), ("INT", 2)] {
        let t = Tmux::start(&format!("{bin} tui unikernel container; echo VMSCOPE-EXITED $?; sleep 30"));
        t.wait_for("the TUI", |s| s.contains("registers (vCPU 0)"));
        assert!(t.stty().contains("-icanon"), "raw while the TUI runs");
        let pid = t.vmscope_pid();
        assert!(Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .unwrap()
            .success());
        let s = t.wait_for("the exit", |s| s.contains("VMSCOPE-EXITED"));
        assert!(s.contains(&format!("VMSCOPE-EXITED {}", 128 + number)), "SIG{signal}: {s}");
        let stty = t.stty();
        assert!(stty.contains(" icanon") && stty.contains(" echo "), "SIG{signal}: cooked again:\n{stty}");
        assert_eq!(t.option("#{alternate_on}"), "0", "SIG{signal}: the main screen is back");
        assert_eq!(t.option("#{cursor_flag}"), "1", "SIG{signal}: the cursor is visible");
    }
}

/// A TUI whose terminal goes away (its tmux session killed, an ssh connection dropped) ends,
/// instead of spinning on the dead terminal for ever: the hang-up's SIGHUP goes to the pane's
/// shell, the session leader, and need not reach vmscope at all.
#[test]
fn the_tui_ends_when_its_terminal_goes_away() {
    let bin = env!("CARGO_BIN_EXE_vmscope");
    let t = Tmux::start(&format!("{bin} tui unikernel; sleep 30"));
    t.wait_for("the TUI", |s| s.contains("registers (vCPU 0)"));
    let pid = t.vmscope_pid();
    drop(t); // kill-session: the pane's terminal hangs up
    let running = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| stat.rsplit(") ").next().is_some_and(|rest| !rest.starts_with('Z')))
    };
    // The bound only turns a hang into a failure; the TUI looks once a second.
    let deadline = Instant::now() + Duration::from_secs(120);
    while running() {
        assert!(Instant::now() < deadline, "vmscope {pid} still runs after its terminal went away");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The same for `run linux --shell`, which holds the terminal in raw mode from the start
/// (no need to wait for the boot).
#[test]
fn a_signal_ends_run_linux_shell_with_the_terminal_restored() {
    let bin = env!("CARGO_BIN_EXE_vmscope");
    for (signal, number) in [("TERM", 15), ("HUP", 1), ("INT", 2)] {
        let t = Tmux::start(&format!("{bin} run linux --shell; echo VMSCOPE-EXITED $?; sleep 30"));
        let pid = t.vmscope_pid();
        // Raw mode once the kernel is loaded (the cached build is found first).
        let deadline = Instant::now() + Duration::from_secs(600);
        while !t.stty().contains("-icanon") {
            assert!(Instant::now() < deadline, "raw mode never came:\n{}", t.screen());
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .unwrap()
            .success());
        let s = t.wait_for("the exit", |s| s.contains("VMSCOPE-EXITED"));
        assert!(s.contains(&format!("VMSCOPE-EXITED {}", 128 + number)), "SIG{signal}: {s}");
        let stty = t.stty();
        assert!(stty.contains(" icanon") && stty.contains(" echo "), "SIG{signal}: cooked again:\n{stty}");
    }
}

/// The highest `tick N` in the console pane.
fn last_tick(screen: &str) -> Option<u64> {
    console_lines(screen).iter().filter_map(|l| l.strip_prefix("tick ")?.trim().parse().ok()).max()
}

/// `:migrate unix:…` moves the TUI's ticking unikernel to a `vmscope run --incoming`: the
/// TUI says where it went (tab, console, the summary), stops driving it, and the target
/// prints the ticks that follow the last one the TUI showed, with none lost or repeated.
#[test]
fn migrate_moves_the_tuis_unikernel_to_a_target_with_no_tick_lost() {
    let dir = tempfile::tempdir().unwrap();
    migrate_the_tuis_unikernel(&format!("unix:{}", dir.path().join("m.sock").display()));
}

/// The same over TCP on the loopback, to the port the target bound.
#[test]
fn migrate_moves_the_tuis_unikernel_over_tcp() {
    migrate_the_tuis_unikernel("tcp:127.0.0.1:0");
}

/// Moves the TUI's ticking unikernel to a target started at `listen` (its announced address).
fn migrate_the_tuis_unikernel(listen: &str) {
    use std::io::BufRead;
    let bin = env!("CARGO_BIN_EXE_vmscope");
    let (mut target, err) =
        common::spawn_with_stderr_lines(&["run", "--incoming", listen, "--timeout", "600"]);
    let uri = loop {
        let line = err.recv_timeout(Duration::from_secs(300)).expect("the target says where it waits");
        if let Some(at) = line.split("waiting for a guest at ").nth(1) {
            break at.split_whitespace().next().unwrap_or_default().to_string();
        }
    };
    let scheme = &uri[..uri.find(':').unwrap_or(0) + 1];
    let t = Tmux::start(&format!(
        "{bin} tui unikernel --workload 'ticks 1000000 --every 200'; echo VMSCOPE-EXITED $?; sleep 30"
    ));
    t.wait_for("the unikernel's ticks", |s| last_tick(s) >= Some(3));
    t.keys(&[":", &format!("migrate {uri}"), "Enter"]);
    let s = t.wait_for("the move's end", |s| s.contains("migrated (esc closes)"));
    assert!(s.contains(&format!("migrated to {uri}")) && s.contains("downtime"), "{s}");
    assert!(s.contains("round 0"), "the summary lists the rounds:\n{s}");
    assert!(s.contains(&format!("[migrated to {scheme}")), "the tab says where the guest went:\n{s}");
    t.keys(&["Escape"]);
    let s = t.wait_for("the console", |s| !s.contains("migrated (esc closes)"));
    let last = last_tick(&s).unwrap_or_else(|| panic!("no tick in the console:\n{s}"));
    let flat: String = console_lines(&s).concat().replace(' ', "");
    assert!(flat.contains("[vmscope]migratedto"), "the console says where it went:\n{s}");

    // The target goes on from the next tick.
    let out = std::io::BufReader::new(target.stdout.take().unwrap());
    let mut got = vec![];
    for line in out.lines().map_while(Result::ok) {
        if let Some(n) = line.strip_prefix("tick ").and_then(|n| n.trim().parse::<u64>().ok()) {
            got.push(n);
            if got.len() == 3 {
                break;
            }
        }
    }
    let _ = target.kill();
    let _ = target.wait();
    assert_eq!(got, vec![last + 1, last + 2, last + 3], "the target ticks on from tick {last}");

    // The TUI no longer drives it: a step is refused with the reason, and q quits.
    t.keys(&["s"]);
    let s = t.wait_for("the refusal", |s| s.contains("nothing here drives unikernel"));
    assert_eq!(last_tick(&s), Some(last), "the source printed nothing more:\n{s}");
    t.keys(&["q"]);
    let s = t.wait_for("the exit", |s| s.contains("VMSCOPE-EXITED"));
    assert!(s.contains("VMSCOPE-EXITED 0"), "{s}");
}

/// A move to an address where no target listens fails at once: the reason is shown, the
/// guest runs on in the TUI (its ticks go on) and the TUI still drives it.
#[test]
fn migrate_to_a_missing_target_leaves_the_guest_running_in_the_tui() {
    let bin = env!("CARGO_BIN_EXE_vmscope");
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("unix:{}", dir.path().join("nobody.sock").display());
    let t = Tmux::start(&format!(
        "{bin} tui unikernel --workload 'ticks 1000000 --every 200'; echo VMSCOPE-EXITED $?; sleep 30"
    ));
    t.wait_for("the unikernel's ticks", |s| last_tick(s) >= Some(2));
    t.keys(&[":", &format!("migrate {uri}"), "Enter"]);
    let s = t.wait_for("the failure", |s| s.contains("migration failed (esc closes)"));
    assert!(s.contains("failed; the guest runs on here"), "{s}");
    assert!(s.contains("nobody.sock"), "the reason names the address:\n{s}");
    t.keys(&["Escape"]);
    let s = t.wait_for("the console", |s| !s.contains("migration failed (esc closes)"));
    let flat: String = console_lines(&s).concat().replace(' ', "");
    assert!(flat.contains("failed;theguestrunsonhere"), "the console says so too:\n{s}");
    let before = last_tick(&s).unwrap_or(0);
    let s = t.wait_for("more ticks", |s| last_tick(s) > Some(before) && s.contains("unikernel [running]"));
    // Still driven here: a pause works.
    t.keys(&["Space"]);
    t.wait_for("the pause", |s| s.contains("[paused"));
    t.keys(&["q"]);
    let s2 = t.wait_for("the exit", |s| s.contains("VMSCOPE-EXITED"));
    assert!(s2.contains("VMSCOPE-EXITED 0"), "{s2}\n(before: {s})");
}

/// `:checkpoint` and `:rewind 1` at the TUI's prompt (the debugger core's commands): the
/// guest goes back to the checkpoint — TICKS_SEQ reads as it did, the console pane marks
/// where the rewound guest's output starts, and the ticks after the mark repeat those that
/// followed the checkpoint.
#[test]
fn checkpoint_and_rewind_at_the_tuis_prompt() {
    let bin = env!("CARGO_BIN_EXE_vmscope");
    let t = Tmux::start(&format!(
        "{bin} tui unikernel --workload 'ticks 1000000 --every 200'; echo VMSCOPE-EXITED $?; sleep 30"
    ));
    t.wait_for("the unikernel's ticks", |s| last_tick(s) >= Some(2));
    // The first byte of TICKS_SEQ (the last tick printed), from `x/8`'s overlay.
    let seq = |t: &Tmux| -> u64 {
        t.keys(&[":", "x/8 TICKS_SEQ", "Enter"]);
        let s = t.wait_for("x/8's answer", |s| s.contains(" 00 00 00 00 00 00 "));
        let line = s.lines().find(|l| l.contains(" 00 00 00 00 00 00 ")).unwrap();
        let bytes: Vec<&str> = line.split_whitespace().filter(|w| w.len() == 2).collect();
        t.keys(&["Escape"]);
        t.wait_for("the overlay to close", |s| !s.contains(" 00 00 00 00 00 00 "));
        u64::from_str_radix(bytes[0], 16).unwrap_or_else(|e| panic!("{e}: {line}"))
    };
    t.keys(&["Space"]);
    t.wait_for("the pause", |s| s.contains("[paused"));
    t.keys(&[":", "checkpoint", "Enter"]);
    let s = t.wait_for("the checkpoint", |s| s.contains("checkpoint 1: vCPU 0 at"));
    assert!(!s.contains("error"), "{s}");
    t.keys(&["Escape"]);
    let k = seq(&t);
    t.keys(&["c"]);
    t.wait_for("ticks after the checkpoint", |s| last_tick(s) >= Some(k + 2));
    t.keys(&["Space"]);
    t.wait_for("the pause", |s| s.contains("[paused"));
    assert!(seq(&t) >= k + 2, "the guest ran on after the checkpoint");
    t.keys(&[":", "rewind 1", "Enter"]);
    let s = t.wait_for("the rewind", |s| s.contains("rewound to checkpoint 1:"));
    assert!(!s.contains("error"), "{s}");
    t.keys(&["Escape"]);
    assert_eq!(seq(&t), k, "TICKS_SEQ is back as at the checkpoint");
    t.keys(&["c"]);
    // The ticks under the mark start again after the checkpoint's.
    let s = t.wait_for("ticks after the rewind", |s| {
        let lines = console_lines(s);
        let mark = lines.iter().position(|l| l.starts_with("[vmscope] rewound"));
        mark.is_some_and(|m| lines[m..].iter().any(|l| l.starts_with("tick ")))
    });
    let lines = console_lines(&s);
    let mark = lines.iter().position(|l| l.starts_with("[vmscope] rewound")).unwrap();
    let after: Vec<u64> =
        lines[mark..].iter().filter_map(|l| l.strip_prefix("tick ")?.trim().parse().ok()).collect();
    assert_eq!(after[0], k + 1, "the first tick after the rewind follows the checkpoint's:\n{s}");
    t.keys(&["q"]);
    t.wait_for("the exit", |s| s.contains("VMSCOPE-EXITED 0"));
}

/// The same move for the TUI's Linux guest at its shell: typed at in the console pane,
/// moved with `:migrate`, and the shell answers in the target's terminal (`run --incoming`
/// feeds its standard input to the guest's console).
#[test]
fn migrate_moves_the_tuis_linux_shell_to_a_target_where_it_answers() {
    use std::io::{BufRead, Write};
    use std::process::Stdio;
    let bin = env!("CARGO_BIN_EXE_vmscope");
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("unix:{}", dir.path().join("m.sock").display());
    let mut target = Command::new(bin)
        .args(["run", "--incoming", &uri, "--timeout", "1800"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, out) = std::sync::mpsc::channel();
    let stdout = target.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let t = Tmux::start(&format!("{bin} tui linux; echo VMSCOPE-EXITED $?; sleep 60"));
    // The kernel boots in KVM's emulator on PVM: minutes on a busy host.
    t.wait_within("the shell prompt", Duration::from_secs(1800), |s| {
        console_lines(s).iter().any(|l| l.starts_with("/ #"))
    });
    t.keys(&["Tab", "Tab", "Tab"]);
    t.wait_for("console focus", |s| s.contains("console: keys go to the guest"));
    t.keys(&["echo before-$((40+2))", "Enter"]);
    t.wait_within("the shell's answer", Duration::from_secs(300), |s| {
        console_lines(s).iter().any(|l| l == "before-42")
    });
    t.keys(&["C-]", ":", &format!("migrate {uri}"), "Enter"]);
    let s =
        t.wait_within("the move's end", Duration::from_secs(600), |s| s.contains("migrated (esc closes)"));
    assert!(s.contains("linux [migrated to unix:"), "{s}");
    // Typing before the target has let the guest run could be lost: ask until it answers.
    let stdin = target.stdin.as_mut().unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut seen = vec![];
    'asking: loop {
        stdin.write_all(b"echo moved-$((6*7))\n").unwrap();
        stdin.flush().unwrap();
        while let Ok(line) = out.recv_timeout(Duration::from_secs(10)) {
            if line.contains("moved-42") {
                break 'asking;
            }
            seen.push(line);
        }
        assert!(Instant::now() < deadline, "the shell never answered on the target: {seen:?}");
    }
    let _ = target.kill();
    let _ = target.wait();
    t.keys(&["Escape", "q"]);
    let s = t.wait_for("the exit", |s| s.contains("VMSCOPE-EXITED"));
    assert!(s.contains("VMSCOPE-EXITED 0"), "{s}");
}

/// The pane under the console (processes or kernel log): the left column's lines from its
/// title (a line holding `title`) down, trimmed.
fn lower_pane_lines(screen: &str, title: &str) -> Vec<String> {
    let lines: Vec<&str> = screen.lines().collect();
    let Some(at) = lines.iter().position(|l| l.contains(title)) else { return vec![] };
    lines[at + 1..].iter().map(|l| l.split('│').nth(1).unwrap_or("").trim().to_string()).collect()
}

/// The reads' cost, for the record (shown in the panes' titles; never asserted).
fn print_read_times(screen: &str) {
    for l in screen.lines().filter(|l| l.contains("read in")) {
        println!("{}", l.split('┐').next().unwrap_or(l).trim_start_matches(['┌', '─']));
    }
}

/// The processes pane's rows: (PID, PPID, COMM).
fn process_rows(screen: &str) -> Vec<(i64, i64, String)> {
    lower_pane_lines(screen, "processes, l: log")
        .iter()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((f.first()?.parse().ok()?, f.get(1)?.parse().ok()?, f.get(3)?.to_string()))
        })
        .collect()
}

/// Linux awareness in the TUI: the processes pane lists init and the shell, and a `sleep`
/// started at the console shows up as the shell's child; `l` shows the kernel log, with the
/// boot banner (Home scrolls up to it) and a line the shell wrote to /dev/kmsg.
#[test]
fn the_linux_guests_processes_and_kernel_log_panes() {
    let (t, _) = tui_linux_at_its_shell("sleep 60");
    t.keys(&["echo shell-pid-$$", "Enter"]);
    let s = t.wait_within("the shell's pid", Duration::from_secs(300), |s| {
        console_lines(s)
            .iter()
            .any(|l| l.strip_prefix("shell-pid-").is_some_and(|p| p.parse::<i64>().is_ok()))
    });
    let shell: i64 = console_lines(&s)
        .iter()
        .find_map(|l| l.strip_prefix("shell-pid-").and_then(|p| p.parse().ok()))
        .unwrap();
    t.keys(&["echo vmscope-tui-log-test > /dev/kmsg", "Enter"]);
    // Ctrl-] puts the focus on the processes pane, under the console.
    t.keys(&["C-]"]);
    t.wait_for("the processes pane's focus", |s| s.contains("processes: vmscope keys"));
    // A busybox program may die as it starts on PVM (its FS base read as 0): start it again.
    let mut sleep = None;
    for _ in 0..5 {
        t.keys(&["Tab", "Tab", "Tab", "Tab"]);
        t.wait_for("console focus", |s| s.contains("console: keys go to the guest"));
        t.keys(&["sleep 1234 &", "Enter", "C-]"]);
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline && sleep.is_none() {
            sleep = process_rows(&t.screen()).into_iter().find(|(_, _, comm)| comm == "sleep");
            std::thread::sleep(Duration::from_millis(500));
        }
        if sleep.is_some() {
            break;
        }
    }
    let s = t.screen();
    let rows = process_rows(&s);
    let (_, ppid, _) = sleep.unwrap_or_else(|| panic!("no sleep row in the processes pane:\n{s}"));
    assert_eq!(ppid, shell, "sleep's parent is the shell it was typed at:\n{s}");
    assert!(
        rows.iter().any(|(pid, ppid, comm)| (*pid, *ppid, comm.as_str()) == (1, 0, "init")),
        "init:\n{s}"
    );
    assert!(rows.iter().any(|(pid, _, comm)| *pid == shell && comm == "sh"), "the shell's row:\n{s}");

    // l: the kernel log in its place, following the newest lines.
    t.keys(&["l"]);
    let s = t.wait_within("the line written to /dev/kmsg", Duration::from_secs(120), |s| {
        lower_pane_lines(s, "kernel log").iter().any(|l| l.ends_with("] vmscope-tui-log-test"))
    });
    assert!(s.contains("kernel log: vmscope keys"), "the log pane has the focus:\n{s}");
    // The reads' cost, for the record (shown in the panes' titles; never asserted).

    t.keys(&["Home"]);
    let s = t.wait_for("the boot banner", |s| {
        lower_pane_lines(s, "kernel log").iter().any(|l| l.contains("] Linux version"))
    });
    assert!(s.contains("End follows"), "the title says the log is scrolled:\n{s}");
    // Wide enough for the titles' read times, printed for the record (never asserted).
    t.resize(200, 40);
    t.keys(&["End"]);
    let s = t.wait_for("the log's read time", |s| s.contains("lines, read in"));
    print_read_times(&s);
    t.keys(&["l"]);
    let s =
        t.wait_for("the processes again", |s| s.contains("processes: vmscope keys") && s.contains("read in"));
    print_read_times(&s);
    t.keys(&["q"]);
    let s = t.wait_for("the exit", |s| s.contains("VMSCOPE-EXITED"));
    assert!(s.contains("VMSCOPE-EXITED 0"), "{s}");
}
