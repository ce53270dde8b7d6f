//! End to end: `vmscope run unikernel --ring 0 --break … --script … --json` on real KVM.

mod common;
use common::{stderr, stdout, vmscope};
use serde_json::Value;

fn session(workload: &[&str], breaks: &[&str], script: &str) -> (Vec<Value>, std::process::Output) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("script");
    std::fs::write(&path, script).unwrap();
    let mut args = vec![
        "run",
        "unikernel",
        "--ring",
        "0",
        "--json",
        "--timeout",
        "120",
        "--script",
        path.to_str().unwrap(),
    ];
    args.push("--workload");
    args.extend_from_slice(workload);
    for b in breaks {
        args.extend_from_slice(&["--break", b]);
    }
    let o = vmscope(&args);
    let lines =
        stdout(&o).lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    (lines, o)
}

fn result<'a>(lines: &'a [Value], input: &str) -> &'a Value {
    &lines.iter().find(|l| l["input"] == input).unwrap_or_else(|| panic!("no result for {input}: {lines:?}"))
        ["result"]
}

#[test]
fn break_step_read_and_walk() {
    let script = "sym workload_compute\ndis 4\nstep\nstep\nstep\nx/8 WORKLOAD_PROGRESS\npt $rip\npt --host $rip\nmappings\nregs\nsregs\nexits\ncont\n";
    let (lines, o) = session(&["compute", "100"], &["workload_compute"], script);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    // The first stop is the breakpoint, at the symbol's address.
    let entry = result(&lines, "sym workload_compute")["symbol"]["addr"].as_u64().unwrap();
    let first = result(&lines, "cont");
    assert_eq!(first["stop"]["breakpoint"]["addr"].as_u64(), Some(entry), "{first}");
    assert_eq!(first["rip"].as_u64(), Some(entry));

    // Each step lands on the next instruction of the disassembly.
    let insns = result(&lines, "dis 4")["instructions"].as_array().unwrap().clone();
    assert_eq!(insns[0]["address"].as_u64(), Some(entry));
    let steps: Vec<u64> =
        lines.iter().filter(|l| l["input"] == "step").map(|l| l["result"]["rip"].as_u64().unwrap()).collect();
    assert_eq!(steps.len(), 3);
    for (i, rip) in steps.iter().enumerate() {
        assert_eq!(Some(*rip), insns[i]["next_ip"].as_u64(), "step {i}");
        assert_eq!(lines.iter().filter(|l| l["input"] == "step").nth(i).unwrap()["result"]["stop"], "step");
    }

    // A variable read by name.
    let bytes = result(&lines, "x/8 WORKLOAD_PROGRESS")["bytes"].as_array().unwrap().len();
    assert_eq!(bytes, 8);

    // The page tables are the ones the VMM built: PML4 at 0x9000, identity, 2 MiB pages,
    // supervisor-only at CPL0, and one range covering all 64 MiB of guest memory.
    let t = &result(&lines, "pt $rip")["translation"];
    let steps = t["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3);
    assert_eq!(steps[0]["table"].as_u64(), Some(0x9000));
    assert_eq!(t["gpa"], t["gva"]);
    assert_eq!(t["page_size"].as_u64(), Some(2 << 20));
    assert_eq!(t["user"], false);
    // The VMM's own address of the page only when asked (issue 12).
    assert!(t["host"].is_null(), "{t}");
    let h = &result(&lines, "pt --host $rip")["translation"];
    assert_eq!(h["gpa"], t["gpa"]);
    assert!(h["host"].as_u64().is_some_and(|a| a != 0), "{h}");
    let maps = result(&lines, "mappings")["mappings"]["mappings"].as_array().unwrap().clone();
    // Guest memory, and the uncached MMIO probe page that no memory backs.
    assert_eq!(maps.len(), 2, "{maps:?}");
    assert_eq!(
        (maps[0]["gva"].as_u64(), maps[0]["gpa"].as_u64(), maps[0]["size"].as_u64()),
        (Some(0), Some(0), Some(64 << 20))
    );
    assert_eq!(
        (maps[1]["gva"].as_u64(), maps[1]["gpa"].as_u64(), maps[1]["size"].as_u64()),
        (Some(0xfe00_0000), Some(0xfe00_0000), Some(2 << 20))
    );
    assert_eq!(result(&lines, "sregs")["sregs"]["cr3"].as_u64(), Some(0x9000));
    assert_eq!(result(&lines, "sregs")["cpl"].as_u64(), Some(0));
    assert!(result(&lines, "exits")["vmm"]["per_key"].is_array());

    // `cont` runs the workload to its end.
    assert!(stderr(&o).contains("compute: N=100 primes=25"), "{}", stderr(&o));
}

/// The unikernel's entry point (`e_entry` of its ELF).
fn unikernel_entry() -> u64 {
    let o = vmscope(&["guests", "path", "unikernel"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let elf = std::fs::read(stdout(&o).trim()).unwrap();
    assert_eq!(&elf[..4], b"\x7fELF");
    u64::from_le_bytes(elf[24..32].try_into().unwrap())
}

/// A breakpoint on the instruction the vCPU is held at when the session starts is hit
/// before that instruction runs, and `cont` from it runs the guest to its end.
#[test]
fn a_breakpoint_on_the_entry_point_is_hit() {
    let entry = unikernel_entry();
    let (lines, o) = session(&["hello"], &["_start"], "regs\ncont\n");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(result(&lines, "break _start")["breakpoint"].as_u64(), Some(entry), "{lines:?}");
    let first = lines.iter().find(|l| l["input"] == "cont").unwrap();
    assert_eq!(first["result"]["stop"]["breakpoint"]["addr"].as_u64(), Some(entry), "{first}");
    assert_eq!(first["result"]["rip"].as_u64(), Some(entry), "{first}");
    assert_eq!(result(&lines, "regs")["regs"]["rip"].as_u64(), Some(entry));
    let last = &lines.last().unwrap()["result"];
    assert_eq!(last["stop"]["guest-exit"]["code"].as_u64(), Some(0), "{last}");
    assert!(stderr(&o).contains("Hello from the vmscope unikernel (ring 0)"), "{}", stderr(&o));
}

/// The same in a script that places the breakpoint itself.
#[test]
fn a_script_breakpoint_on_the_entry_point_is_hit() {
    let entry = unikernel_entry();
    let (lines, o) = session(&["hello"], &[], "break _start\ncont\nregs\ncont\n");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let conts: Vec<&Value> = lines.iter().filter(|l| l["input"] == "cont").map(|l| &l["result"]).collect();
    assert_eq!(conts.len(), 2, "{lines:?}");
    assert_eq!(conts[0]["stop"]["breakpoint"]["addr"].as_u64(), Some(entry), "{}", conts[0]);
    assert_eq!(conts[0]["rip"].as_u64(), Some(entry));
    assert_eq!(result(&lines, "regs")["regs"]["rip"].as_u64(), Some(entry));
    assert_eq!(conts[1]["stop"]["guest-exit"]["code"].as_u64(), Some(0), "{}", conts[1]);
    assert!(stderr(&o).contains("Hello from the vmscope unikernel (ring 0)"), "{}", stderr(&o));
}

/// `cont` from a hardware breakpoint leaves it (its DR7 slot is off for that one step) and
/// the breakpoint fires again the next time the code runs.
#[test]
fn cont_leaves_a_hardware_breakpoint_which_then_fires_again() {
    let script = "hbreak console_write\ncont\ncont\ndelete console_write\ncont\n";
    let (lines, o) = session(&["hello"], &[], script);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let addr = result(&lines, "hbreak console_write")["hbreak"].as_u64().unwrap();
    let conts: Vec<&Value> = lines.iter().filter(|l| l["input"] == "cont").map(|l| &l["result"]).collect();
    assert_eq!(conts.len(), 3, "{lines:?}");
    for hit in &conts[..2] {
        assert_eq!(hit["stop"]["hw-breakpoint"]["index"].as_u64(), Some(0), "{hit}");
        assert_eq!(hit["rip"].as_u64(), Some(addr), "{hit}");
    }
    assert_eq!(conts[2]["stop"]["guest-exit"]["code"].as_u64(), Some(0), "{}", conts[2]);
    assert!(stderr(&o).contains("Hello from the vmscope unikernel (ring 0)"), "{}", stderr(&o));
}

#[test]
fn watchpoint_fires_on_the_workloads_write() {
    let script = "watch WORKLOAD_PROGRESS 8\ncont\ncont\ndelete WORKLOAD_PROGRESS\ncont\n";
    let (lines, o) = session(&["compute", "100"], &["workload_compute"], script);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let hits: Vec<&Value> =
        lines.iter().filter(|l| l["input"] == "cont" && l["result"]["watchpoint"].is_u64()).collect();
    assert_eq!(hits.len(), 2, "{lines:?}");
    assert_eq!(
        (hits[0]["result"]["old"].as_str(), hits[0]["result"]["new"].as_str()),
        (Some("0"), Some("2"))
    );
    assert_eq!(
        (hits[1]["result"]["old"].as_str(), hits[1]["result"]["new"].as_str()),
        (Some("2"), Some("3"))
    );
}

#[test]
fn bad_commands_are_reported_and_the_session_goes_on() {
    let (lines, o) = session(&["hello"], &["workload_hello"], "frobnicate\nx/8 no_such_symbol\nregs\ncont\n");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(lines
        .iter()
        .any(|l| l["input"] == "frobnicate" && l["error"].as_str().unwrap().contains("unknown command")));
    assert!(lines
        .iter()
        .any(|l| l["input"] == "x/8 no_such_symbol" && l["error"].as_str().unwrap().contains("no symbol")));
    assert!(result(&lines, "regs")["regs"]["rip"].is_u64());
}

#[test]
fn an_unknown_break_symbol_is_a_clear_error() {
    let o = vmscope(&["run", "unikernel", "--ring", "0", "--break", "no_such_function"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o)
            .contains("cannot set the breakpoint no_such_function: no symbol named \"no_such_function\""),
        "{}",
        stderr(&o)
    );
}

#[test]
fn capstone_disassembles_the_same_instructions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("script");
    std::fs::write(&path, "dis 6\ncont\n").unwrap();
    let run = |decoder: &str| {
        let o = vmscope(&[
            "run",
            "unikernel",
            "--ring",
            "0",
            "--json",
            "--decoder",
            decoder,
            "--break",
            "workload_compute",
            "--script",
            path.to_str().unwrap(),
            "--workload",
            "compute",
            "100",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let lines: Vec<Value> = stdout(&o).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        result(&lines, "dis 6")["instructions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| (i["address"].as_u64().unwrap(), i["mnemonic"].as_str().unwrap().to_string()))
            .collect::<Vec<_>>()
    };
    assert_eq!(run("iced"), run("capstone"));
}
