//! What `vmscope tui` runs unless told: `ticks N --every MS`, the same contract in the
//! unikernel (sleeping through the VMM's sleep port, 0x504) and in the container (nanosleep),
//! so the TUI idles while a learner looks. And what a failing container workload says
//! without `-v`.

mod common;
use common::{stderr, stdout, vmscope};

fn ticks(out: &str) -> Vec<u64> {
    out.lines().filter_map(|l| l.strip_prefix("tick ")).filter_map(|n| n.trim().parse().ok()).collect()
}

#[test]
fn the_unikernel_ticks_and_sleeps_through_the_sleep_port_at_both_rings() {
    common::require_kvm();
    let dir = tempfile::tempdir().unwrap();
    for ring in ["0", "3"] {
        let json = dir.path().join(format!("ring{ring}.json"));
        let o = vmscope(&[
            "run",
            "unikernel",
            "--ring",
            ring,
            "--workload",
            "ticks 3 --every 150",
            "--stats-json",
            json.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(3), "ticks exits with N: {}", stderr(&o));
        assert_eq!(ticks(&stdout(&o)), vec![1, 2, 3], "{}", stdout(&o));
        assert!(stdout(&o).contains("ticks: done 3"), "{}", stdout(&o));
        let stats: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        let text = stats.to_string();
        // One sleep per tick, each an exit on port 0x504 (1284) that the VMM answered.
        let sleeps: Vec<&serde_json::Value> = stats["exits"]["per_key"]
            .as_array()
            .unwrap_or_else(|| panic!("exits in {text}"))
            .iter()
            .filter(|e| e["kind"] == "io-out" && e["addr"] == 0x504)
            .collect();
        assert_eq!(sleeps.len(), 1, "one row for the sleep port: {text}");
        assert_eq!(sleeps[0]["count"], 3, "{text}");
    }
}

#[test]
fn a_bad_ticks_command_line_is_refused_with_its_usage() {
    common::require_kvm();
    for bad in ["ticks 3 --every", "ticks 3 --every x", "ticks 3 1 2"] {
        let o = vmscope(&["run", "unikernel", "--workload", bad]);
        assert_eq!(o.status.code(), Some(2), "{bad}");
        assert!(
            stdout(&o).contains("ticks needs N, an optional SPIN count and an optional --every MS"),
            "{bad}"
        );
    }
}

#[test]
fn the_container_runs_the_same_ticks() {
    let o = vmscope(&["run", "container", "--workload", "ticks 3 --every 50"]);
    assert_eq!(ticks(&stdout(&o)), vec![1, 2, 3], "{}\n{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("ticks: done 3"), "{}", stdout(&o));
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("the workload in the container exited with status 3"),
        "a non-zero status is named: {}",
        stderr(&o)
    );
}

#[test]
fn a_failing_container_workload_says_why_without_dash_v() {
    let o = vmscope(&["run", "container", "--workload", "no-such-workload"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("workload: unknown workload 'no-such-workload'"), "the workload's reason: {err}");
    assert!(err.contains("the workload in the container exited with status 2"), "{err}");
    assert!(!err.contains("bundle"), "without -v no set-up details: {err}");
}
