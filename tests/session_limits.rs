//! End to end: hostile counts, lengths and addresses in a `--script` session get a one-line
//! error naming the argument and the limit, and the session goes on (issue 12); a guest's
//! MMIO stores leave the exit statistics bounded.

mod common;
use common::{stderr, stdout, vmscope};
use serde_json::Value;

/// Runs `vmscope run unikernel --ring 0 --break workload_hello --script SCRIPT` (with
/// `--json` when asked) and returns its output.
fn session(script: &str, json: bool) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("script");
    std::fs::write(&path, script).unwrap();
    let mut args = vec!["run", "unikernel", "--ring", "0", "--timeout", "120", "--break", "workload_hello"];
    if json {
        args.push("--json");
    }
    args.extend(["--script", path.to_str().unwrap()]);
    vmscope(&args)
}

/// Hostile commands and words their error must contain (the argument and the limit).
const HOSTILE: &[(&str, &[&str])] = &[
    ("x/99999999999 0", &["x: length 99999999999", "limit of 65536 bytes"]),
    ("xp 0xffffffffffffff00 0x1000", &["xp: 0xffffffffffffff00 + 0x1000 bytes", "end of the address space"]),
    ("dis 0 18446744073709551615", &["dis: count 18446744073709551615", "limit of 1024 instructions"]),
    ("xp/18446744073709551615 0", &["xp: length 18446744073709551615", "65536"]),
    ("x/16 0xffffffffffffffff+0x10", &["runs past the end of the address space"]),
    ("x/16 workload_hello+0xffffffffffffffff", &["workload_hello", "runs past the end"]),
    ("x/16 $rsp+0xffffffffffffffff", &["$rsp", "runs past the end"]),
    ("step 18446744073709551615", &["step: count 18446744073709551615", "limit of 1000000"]),
    ("watch workload_hello 4096", &["watch: length 4096", "1, 2, 4 or 8"]),
    ("watch 0xfffffffffffffffc 8", &["watch: 0xfffffffffffffffc + 0x8 bytes", "end of the address space"]),
];

#[test]
fn hostile_counts_lengths_and_addresses_are_refused_and_the_session_goes_on() {
    let mut script: String = HOSTILE.iter().map(|(c, _)| format!("{c}\n")).collect();
    // At the limits: answered, with exactly what was asked for or what exists.
    script.push_str("xp/65536 0\ndis 0xfffffffffffffff8 1024\nregs\ncont\n");
    let o = session(&script, true);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let lines: Vec<Value> =
        stdout(&o).lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    let find = |input: &str| {
        lines.iter().find(|l| l["input"] == input).unwrap_or_else(|| panic!("no line for {input}: {lines:?}"))
    };
    for (cmd, words) in HOSTILE {
        let line = find(cmd);
        let e = line["error"].as_str().unwrap_or_else(|| panic!("{cmd} is refused: {line}"));
        assert!(words.iter().all(|w| e.contains(w)), "{cmd}: {e}");
        assert!(!e.contains('\n'), "{cmd}: one line: {e:?}");
    }
    assert_eq!(find("xp/65536 0")["result"]["bytes"].as_array().map(Vec::len), Some(65536));
    assert!(find("dis 0xfffffffffffffff8 1024")["result"]["instructions"].is_array());
    // The session went on: the vCPU is still at the breakpoint, and cont ends the guest.
    let rip = find("regs")["result"]["regs"]["rip"].as_u64().unwrap();
    let first = &find("cont")["result"];
    assert!(first["stop"]["breakpoint"].is_object(), "{first}");
    assert_eq!(first["rip"].as_u64(), Some(rip), "{first}");
    let last = &lines.last().unwrap()["result"];
    assert_eq!(last["stop"]["guest-exit"]["code"].as_u64(), Some(0), "{last}");
    assert!(stderr(&o).contains("Hello from the vmscope unikernel (ring 0)"), "{}", stderr(&o));
}

#[test]
fn in_text_sessions_each_refusal_is_one_error_line() {
    let script = "x/99999999999 0\nxp 0xffffffffffffff00 0x1000\ndis 0 18446744073709551615\nregs\ncont\n";
    let o = session(script, false);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    let errors: Vec<&str> = out.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 3, "{out}");
    assert!(errors[0].contains("x: length 99999999999 is over the limit of 65536 bytes per read"), "{out}");
    assert!(errors[1].contains("xp: 0xffffffffffffff00 + 0x1000 bytes runs past the end"), "{out}");
    assert!(errors[2].contains("dis: count 18446744073709551615 is over the limit of 1024"), "{out}");
    // `regs` after them answers.
    assert!(out.lines().any(|l| l.starts_with("rip 0x")), "{out}");
}

/// The unikernel's `mmio N` workload stores N times to one page (`MMIO_PROBE_GPA`): the
/// statistics have one row for it, however large N, and count every store.
#[test]
fn mmio_stores_keep_the_exit_statistics_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("stats.json");
    let o = vmscope(&[
        "run",
        "unikernel",
        "--timeout",
        "120",
        "--stats-json",
        json.to_str().unwrap(),
        "--workload",
        "mmio",
        "100000",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("mmio: 100000 stores to the MMIO probe in "), "{}", stdout(&o));
    let stats: Value = serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
    let rows = stats["exits"]["per_key"].as_array().unwrap();
    assert!(rows.len() < 16, "a handful of rows: {rows:?}");
    let mmio: Vec<&Value> = rows.iter().filter(|r| r["kind"] == "mmio-write").collect();
    assert_eq!(mmio.len(), 1, "{mmio:?}");
    assert_eq!(mmio[0]["addr"].as_u64(), Some(0xfe00_0000));
    assert_eq!(mmio[0]["count"].as_u64(), Some(100_000));
}
