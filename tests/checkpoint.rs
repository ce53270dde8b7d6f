//! End to end: `checkpoint`, `checkpoints`, `rewind N` and `checkpoint delete N` in a
//! script session and through gdb's `monitor`, on the unikernel's `ticks N [SPIN]`
//! workload, whose numbered console lines show that the guest truly went back: the tick
//! after a checkpoint is printed again after a rewind, and `TICKS_SEQ` (the last number
//! printed) reads as it was at the checkpoint. A Linux guest rewinds too: stopped in
//! `hrtimer_nanosleep` by its user-space `ticks` workload, its registers, the kernel's
//! `jiffies` and its console go back to the checkpoint.

mod common;
use common::{stderr, stdout, vmscope};
use serde_json::Value;

/// The tick numbers printed, in order.
fn ticks(out: &str) -> Vec<u64> {
    out.lines().filter_map(|l| l.trim().strip_prefix("tick ")).filter_map(|n| n.trim().parse().ok()).collect()
}

/// Runs a `--json` script session on the unikernel; returns its JSON lines and output.
fn session(
    ring: &str,
    workload: &[&str],
    extra: &[&str],
    script: &str,
) -> (Vec<Value>, std::process::Output) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("script");
    std::fs::write(&path, script).unwrap();
    let mut args = vec!["run", "unikernel", "--ring", ring, "--json", "--script", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.push("--workload");
    args.extend_from_slice(workload);
    let o = vmscope(&args);
    let lines = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}\n{}", stderr(&o))))
        .collect();
    (lines, o)
}

/// The results (or errors) of every line `input`, in order.
fn all<'a>(lines: &'a [Value], input: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["input"] == input).collect()
}

/// The little-endian u64 of an `x`/`xp` result.
fn word(v: &Value) -> u64 {
    let bytes: Vec<u8> = v["result"]["bytes"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|b| b.as_u64().unwrap() as u8)
        .collect();
    u64::from_le_bytes(bytes[..8].try_into().unwrap())
}

#[test]
fn ring0_rewind_goes_back_to_the_tick_after_the_checkpoint() {
    // --break stops at tick_reached(1); `cont` prints tick 1 and stops at tick_reached(2),
    // where the checkpoint is taken (TICKS_SEQ = 1). Two more `cont`s print ticks 2 and 3.
    let script = "\
cont
pt TICKS_SEQ
checkpoint first
x/8 TICKS_SEQ
cont
cont
checkpoint
x/8 TICKS_SEQ
rewind 1
x/8 TICKS_SEQ
checkpoints
rewind 7
cont
rewind 2
x/8 TICKS_SEQ
checkpoint delete 1
rewind 1
checkpoints
quit
";
    let (lines, o) = session("0", &["ticks", "12"], &["--break", "tick_reached", "--timeout", "300"], script);
    let fail = || format!("{}\n{}", stdout(&o), stderr(&o));
    // The console (stderr with --json): 1, 2, 3, then after the rewind to 1 tick 2 again.
    assert_eq!(ticks(&stderr(&o)), vec![1, 2, 3, 2], "{}", fail());

    let reads = all(&lines, "x/8 TICKS_SEQ");
    assert_eq!(reads.iter().map(|v| word(v)).collect::<Vec<_>>(), vec![1, 3, 1, 3], "{}", fail());

    // Guest-physical memory agrees: TICKS_SEQ's page, read with xp after the rewind.
    let walk = &all(&lines, "pt TICKS_SEQ")[0]["result"]["translation"];
    let gpa = walk["gpa"].as_u64().unwrap_or_else(|| panic!("{walk}"));
    assert!(gpa != 0, "{walk}");

    let first = &all(&lines, "checkpoint first")[0]["result"];
    assert_eq!(first["checkpoint"]["number"], 1, "{first}");
    assert_eq!(first["checkpoint"]["name"], "first");
    assert!(first["checkpoint"]["pages"].as_u64().unwrap() > 0, "the first keeps every page not zero");
    let second = &all(&lines, "checkpoint")[0]["result"]["checkpoint"];
    assert_eq!(second["number"], 2);
    assert!(
        second["pages"].as_u64().unwrap() < first["checkpoint"]["pages"].as_u64().unwrap(),
        "the second keeps only what changed: {second} vs {first}"
    );

    let rewound = &all(&lines, "rewind 1")[0]["result"];
    assert_eq!(rewound["number"], 1, "{rewound}");
    assert!(rewound["pages_written"].as_u64().unwrap() > 0);
    let listing = &all(&lines, "checkpoints")[0]["result"];
    let cps = listing["checkpoints"].as_array().unwrap();
    assert_eq!(cps.len(), 2, "later checkpoints are kept: {listing}");
    assert_eq!(cps[0]["current"], true);
    assert_eq!(cps[1]["current"], false);
    assert!(listing["kept_bytes"].as_u64().unwrap() <= listing["limit_bytes"].as_u64().unwrap());

    let missing = all(&lines, "rewind 7")[0]["error"].as_str().unwrap_or_default().to_string();
    assert!(missing.contains("no checkpoint 7") && missing.contains("1, 2"), "{missing}");

    // Forward again, to checkpoint 2 (TICKS_SEQ = 3); then 1 is deleted and is gone.
    let forward = all(&lines, "x/8 TICKS_SEQ");
    assert_eq!(word(forward[3]), 3);
    assert!(all(&lines, "checkpoint delete 1")[0]["result"]["number"] == 1);
    let gone = &all(&lines, "rewind 1")[1];
    assert!(gone["error"].as_str().unwrap_or_default().contains("no checkpoint 1"), "{gone}");
    let after = all(&lines, "checkpoints")[1]["result"]["checkpoints"].as_array().unwrap().clone();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0]["number"], 2);
}

#[test]
fn ring0_rewind_in_text_says_where_the_guest_is() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("script");
    std::fs::write(
        &path,
        "checkpoint start\ncont\ncheckpoints\nrewind 1\nxp/8 0\nrewind 0x100000000\nquit\n",
    )
    .unwrap();
    let o = vmscope(&[
        "run",
        "unikernel",
        "--ring",
        "0",
        "--workload",
        "ticks",
        "3",
        "--break",
        "tick_reached",
        "--timeout",
        "300",
        "--script",
        path.to_str().unwrap(),
    ]);
    let out = stdout(&o);
    assert!(out.contains("checkpoint 1 (start): vCPU 0 at 0x"), "{out}");
    assert!(out.contains("<tick_reached"), "{out}");
    assert!(out.contains("rewound to checkpoint 1:"), "{out}");
    assert!(out.contains("*   1  start"), "{out}");
    assert!(out.contains("error: no checkpoint 4294967296 (the checkpoints are 1)"), "{out}");
    assert!(!out.contains("disk image"), "no disk, no note: {out}");
}

#[test]
fn ring3_rewind_of_a_running_guest_repeats_its_ticks() {
    // The guest runs natively at CPL3; `cont` gives up after --timeout 1 and pauses it
    // wherever it is. TICKS_SEQ + 2 is printed before the rewind and again after it
    // (TICKS_SEQ + 1 may have been printed just before the pause, its store not done).
    let script =
        "cont\ncheckpoint\nx/8 TICKS_SEQ\ncont\nx/8 TICKS_SEQ\nrewind 1\nx/8 TICKS_SEQ\ncont\nquit\n";
    let (lines, o) = session("3", &["ticks", "100000", "5000000"], &["--timeout", "1"], script);
    let fail = || format!("{}\n{}", stdout(&o), stderr(&o));
    let reads: Vec<u64> = all(&lines, "x/8 TICKS_SEQ").iter().map(|v| word(v)).collect();
    assert_eq!(reads.len(), 3, "{}", fail());
    let k = reads[0];
    assert!(reads[1] > k + 2, "the guest ran on after the checkpoint: {reads:?}");
    assert_eq!(reads[2], k, "memory is back: {reads:?}");
    let printed = ticks(&stderr(&o));
    let twice = printed.iter().filter(|&&t| t == k + 2).count();
    assert_eq!(twice, 2, "tick {} printed before and after the rewind: {printed:?}", k + 2);
}

/// A Linux guest at a breakpoint its workload reaches through a system call: `ticks 4
/// --every 50` prints a line, then sleeps 50 ms in `nanosleep`, whose kernel side stops at
/// `hrtimer_nanosleep`. A checkpoint after `tick 1`; two `cont`s run through `tick 2` and its
/// 50 ms sleep (the tty sends the line to the UART meanwhile) to the sleep after `tick 3`,
/// with `jiffies` advanced; `rewind 1` puts the registers and `jiffies` back as they were at
/// the checkpoint, and `cont` prints `tick 2` again: the kernel's timers and the tty go on
/// from the checkpoint. Then the workload runs to its end (status 4).
///
/// Whether `tick 3` reached the console before the rewind depends on where the stop caught
/// the UART's transmission (a line still in the kernel's buffer is rewound away with it), so
/// both orders are right; `tick 2` after the first sleep is out by then.
#[test]
fn linux_rewind_goes_back_to_the_sleep_after_the_first_tick() {
    let script = "\
checkpoint
regs
x/8 jiffies
cont
cont
x/8 jiffies
rewind 1
regs
x/8 jiffies
cont
x/8 jiffies
delete hrtimer_nanosleep
cont
";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("script");
    std::fs::write(&path, script).unwrap();
    // The bound only ends a hung boot (about two minutes of kernel emulation on PVM).
    let o = vmscope(&[
        "run",
        "linux",
        "--json",
        "--workload",
        "ticks 4 --every 50",
        "--break",
        "hrtimer_nanosleep",
        "--timeout",
        "1200",
        "--script",
        path.to_str().unwrap(),
    ]);
    let lines: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}\n{}", stderr(&o))))
        .collect();
    let fail = || format!("{}\n{}", stdout(&o), stderr(&o));
    // With --json the console is on stderr: tick 2 is printed again after the rewind.
    let printed = ticks(&stderr(&o));
    assert!(printed == [1, 2, 2, 3, 4] || printed == [1, 2, 3, 2, 3, 4], "{printed:?}: {}", fail());
    assert_eq!(o.status.code(), Some(4), "the workload ran to its end from the checkpoint: {}", fail());

    let jiffies: Vec<u64> = all(&lines, "x/8 jiffies").iter().map(|v| word(v)).collect();
    assert_eq!(jiffies.len(), 4, "{}", fail());
    assert!(jiffies[1] > jiffies[0], "the guest slept 50 ms of its clock after the checkpoint: {jiffies:?}");
    assert_eq!(jiffies[2], jiffies[0], "jiffies is back as at the checkpoint: {jiffies:?}");
    assert!(jiffies[3] > jiffies[0], "and the clock goes on from there: {jiffies:?}");

    let regs = all(&lines, "regs");
    assert_eq!(regs.len(), 2, "{}", fail());
    assert!(regs[0]["result"].is_object(), "{}", regs[0]);
    assert_eq!(regs[0]["result"], regs[1]["result"], "vCPU 0's registers are the checkpoint's");
    let rewound = &all(&lines, "rewind 1")[0]["result"];
    assert_eq!(rewound["number"], 1, "{rewound}");
    assert!(
        rewound["pages_written"].as_u64().unwrap_or(0) > 0,
        "the pages the guest wrote went back: {rewound}"
    );
}

/// A vmscope serving gdb on a free loopback port, the guest held before its first
/// instruction; returns the child and the address.
fn serve_gdb(workload: &[&str]) -> (std::process::Child, String, std::sync::mpsc::Receiver<String>) {
    let mut args =
        vec!["run", "unikernel", "--ring", "0", "--gdb", "127.0.0.1:0", "--gdb-wait", "--timeout", "600"];
    args.push("--workload");
    args.extend_from_slice(workload);
    let (child, rx) = common::spawn_with_stderr_lines(&args);
    let line =
        rx.recv_timeout(std::time::Duration::from_secs(30)).expect("vmscope announces its gdb address");
    let addr = line.split("target remote ").nth(1).expect(&line).trim_end_matches('\'').to_string();
    (child, addr, rx)
}

#[test]
fn gdb_monitor_checkpoint_and_rewind() {
    let (mut child, addr, _stderr) = serve_gdb(&["ticks", "6"]);
    let elf = String::from_utf8(vmscope(&["guests", "path", "unikernel"]).stdout).unwrap().trim().to_string();
    let mut args: Vec<String> =
        ["-nx", "-batch", "-ex", "set pagination off"].iter().map(|s| s.to_string()).collect();
    for c in [
        format!("target remote {addr}"),
        "break tick_reached".into(),
        "continue".into(),
        "continue".into(),
        "monitor checkpoint".into(),
        "continue".into(),
        "continue".into(),
        "monitor x/8 TICKS_SEQ".into(),
        "monitor rewind 1".into(),
        "maintenance flush register-cache".into(),
        "monitor x/8 TICKS_SEQ".into(),
        "monitor checkpoints".into(),
        "monitor rewind 9".into(),
        "delete".into(),
        "detach".into(),
    ] {
        args.extend(["-ex".to_string(), c]);
    }
    args.push(elf);
    let o = std::process::Command::new("gdb").args(&args).output().expect("gdb is installed");
    let out = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("checkpoint 1: vCPU 0 at 0x"), "{out}");
    assert!(out.contains("rewound to checkpoint 1:"), "{out}");
    assert!(out.contains("no checkpoint 9 (the checkpoints are 1)"), "{out}");
    assert!(out.contains("*   1"), "{out}");
    // TICKS_SEQ read through the monitor: 3 before the rewind, 1 after.
    let dumps: Vec<&str> =
        out.lines().filter(|l| l.contains("  0") && l.split_whitespace().count() > 8).collect();
    assert!(dumps.iter().any(|l| l.contains(" 03 00 00 00 00 00 00 00")), "{out}");
    assert!(dumps.iter().any(|l| l.contains(" 01 00 00 00 00 00 00 00")), "{out}");
    // After detach the guest runs to its end from the checkpoint: ticks 2 and 3 again.
    let status = child.wait().unwrap();
    let mut console = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut console).unwrap();
    assert_eq!(ticks(&console), vec![1, 2, 3, 2, 3, 4, 5, 6], "{console}\n{out}");
    assert_eq!(status.code(), Some(6), "{out}");
}
