//! End to end: `vmscope measure --quick` writes sane reports for every suite.

mod common;
use common::{stdout, vmscope};

/// Checks a report's shape: host kind, metrics with min ≤ median ≤ max, none zero, and
/// `runs` samples each (metrics measured once by design are named in `single`).
fn check_report(dir: &std::path::Path, suite: &str, runs: u64, single: &[&str]) -> serde_json::Value {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(format!("{suite}.json"))).unwrap()).unwrap();
    assert_eq!(v["suite"], suite);
    assert!(v["environment"]["host_kind"].is_string(), "{v}");
    assert!(v["environment"]["cpu_model"].is_string(), "{v}");
    let metrics = v["metrics"].as_array().unwrap();
    assert!(!metrics.is_empty(), "{suite}: no metrics");
    for m in metrics {
        let (min, med, max) =
            (m["min"].as_f64().unwrap(), m["median"].as_f64().unwrap(), m["max"].as_f64().unwrap());
        assert!(min > 0.0 && min <= med && med <= max, "{suite}: {m}");
        let name = m["metric"].as_str().unwrap();
        let expected = if single.iter().any(|s| name.starts_with(s)) { 1 } else { runs };
        assert_eq!(m["runs"].as_u64(), Some(expected), "{suite}: {m}");
        assert_eq!(m["samples"].as_array().unwrap().len() as u64, expected, "{suite}: {m}");
    }
    // The plot labels every metric (its geometry is unit-tested in labs' measure::plot)
    // and names each unit in its panel's title.
    let svg = std::fs::read_to_string(dir.join(format!("{suite}.svg"))).unwrap();
    assert!(svg.contains("<svg"), "{suite}.svg");
    for m in metrics {
        let name =
            m["metric"].as_str().unwrap().replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
        assert!(svg.contains(&format!("\n{name}\n")), "{suite}.svg has no label {name:?}");
        let unit = m["unit"].as_str().unwrap();
        assert!(svg.contains(&format!("unit: {unit} —")), "{suite}.svg has no panel for {unit}");
    }
    v
}

fn metric<'a>(v: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    v["metrics"].as_array().unwrap().iter().find(|m| m["metric"] == name)
}

#[test]
fn density_reports_rates_and_idle_memory() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let o = vmscope(&["measure", "density", "--quick", "--runs", "1", "--out", out]);
    assert_eq!(o.status.code(), Some(0), "{}", common::stderr(&o));
    let v = check_report(dir.path(), "density", 1, &[]);
    let cpus = v["environment"]["cpus"].as_u64().unwrap();
    for p in [1, cpus, 2 * cpus] {
        let rate = metric(&v, &format!("unikernel VMs started and finished per second, {p} at a time"));
        assert_eq!(rate.unwrap()["unit"], "VMs/s", "{v}");
        assert!(metric(&v, &format!("start -> exit of one VM, {p} at a time (median)")).is_some(), "{v}");
    }
    // Per idle VM: Pss never exceeds RSS, and what fits in 1 GiB follows from the Pss.
    let get =
        |name: &str| metric(&v, name).unwrap_or_else(|| panic!("{name}: {v}"))["median"].as_f64().unwrap();
    let (rss, pss) =
        (get("idle VM, 4 at once: resident (VmRSS)"), get("idle VM, 4 at once: proportional (Pss)"));
    assert!(pss <= rss, "{v}");
    assert_eq!(get("idle VMs that fit in 1 GiB (by Pss)"), (1024.0 / pss).floor(), "{v}");
}

#[test]
fn quick_suites_write_sane_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    // The Linux guest's row takes about a minute per boot on PVM: opt in with
    // VMSCOPE_TEST_LINUX=1 (it is skipped anyway when the kernel is not built).
    let mut args =
        vec!["measure", "boot", "exits", "compute", "io-batching", "--quick", "--runs", "3", "--out", out];
    if std::env::var_os("VMSCOPE_TEST_LINUX").is_none() {
        args.push("--no-linux");
    }
    let o = vmscope(&args);
    assert_eq!(o.status.code(), Some(0), "{}", common::stderr(&o));
    assert!(stdout(&o).contains("metric"), "{}", stdout(&o));
    for suite in ["boot", "exits", "compute", "io-batching"] {
        check_report(dir.path(), suite, 3, &["Linux guest"]);
    }
    let exits = check_report(dir.path(), "exits", 3, &[]);
    for ring in [3, 0] {
        // Every new kind is there; the MMIO store reaches the VMM once per store.
        for kind in ["MMIO store", "cpuid", "ioeventfd doorbell"] {
            assert!(metric(&exits, &format!("{kind}, CPL{ring} (timed in the guest)")).is_some(), "{exits}");
        }
        let mmio = metric(&exits, &format!("MMIO store, CPL{ring}: exits to the VMM per op")).unwrap();
        assert_eq!(mmio["median"].as_f64(), Some(1.0), "{mmio}");
        // The doorbell never reaches the VMM, and every ring is counted.
        assert!(metric(&exits, &format!("ioeventfd doorbell, CPL{ring}: exits to the VMM per op")).is_none());
        let notes = exits["notes"].to_string();
        assert!(
            notes.contains(&format!("ioeventfd doorbell, CPL{ring}: the VMM's drain thread counted all")),
            "{notes}"
        );
    }
    let a = dir.path().join("boot.json");
    let o = vmscope(&["measure", "--compare", a.to_str().unwrap(), a.to_str().unwrap()]);
    assert!(stdout(&o).contains("1.00x"), "{}", stdout(&o));
}

#[test]
fn quick_memory_and_surface_suites() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let o = vmscope(&["measure", "memory", "surface", "--quick", "--runs", "2", "--out", out]);
    assert_eq!(o.status.code(), Some(0), "{}", common::stderr(&o));
    let memory = check_report(dir.path(), "memory", 2, &["smallest --mem"]);
    let smallest = metric(&memory, "smallest --mem for unikernel hello").unwrap();
    assert!(smallest["median"].as_f64().unwrap() >= 4.0, "{smallest}");
    assert!(metric(&memory, "VMM peak RSS - guest touched, unikernel hello, --mem 64").is_some());
    let notes = memory["notes"].to_string();
    if guests_has_runc() {
        // Either the container's memory cgroup was read or the notes say why not.
        assert!(
            notes.contains("container peak = the memory cgroup") || notes.contains("no memory cgroup"),
            "{notes}"
        );
    }
    // What each kernel offers is read once from its symbols, not measured per run.
    let surface = check_report(dir.path(), "surface", 2, &["system calls offered", "hypercall ports"]);
    assert!(metric(&surface, "distinct host syscalls, VMM + unikernel").is_some(), "{surface}");
    let host = metric(&surface, "system calls offered, host kernel (container)").unwrap();
    assert!(host["median"].as_f64().unwrap() > 100.0, "{host}");
    assert!(surface["notes"].to_string().contains("io-out port 0x502"), "{surface}");
}

fn guests_has_runc() -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("runc").exists()))
}

#[test]
fn bad_suite_names_and_runs_are_refused() {
    let o = vmscope(&["measure", "boot", "no-such-suite", "--quick"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(common::stderr(&o).contains("unknown suite \"no-such-suite\""), "{}", common::stderr(&o));
    assert!(!stdout(&o).contains("metric"), "nothing runs before the check: {}", stdout(&o));
    let o = vmscope(&["measure", "boot", "--runs", "0"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(common::stderr(&o).contains("--runs must be at least 1"), "{}", common::stderr(&o));
}

#[test]
fn quick_anchors_has_vmscope_and_every_vmm_found_or_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let o = vmscope(&["measure", "anchors", "--quick", "--runs", "2", "--out", out]);
    assert_eq!(o.status.code(), Some(0), "{}", common::stderr(&o));
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("anchors.json")).unwrap()).unwrap();
    assert_eq!(v["suite"], "anchors");
    assert!(v["environment"]["host_kind"].is_string(), "{v}");
    assert!(std::fs::read_to_string(dir.path().join("anchors.svg")).unwrap().contains("<svg"));
    let notes: Vec<&str> = v["notes"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
    let on_path = |name: &str| {
        std::env::var("PATH").unwrap().split(':').any(|d| std::path::Path::new(d).join(name).is_file())
    };
    let mut vmms = vec![("vmscope", true)];
    for (name, bin) in [
        ("qemu-microvm", "qemu-system-x86_64"),
        ("firecracker", "firecracker"),
        ("cloud-hypervisor", "cloud-hypervisor"),
    ] {
        if on_path(bin) {
            vmms.push((name, true));
        } else {
            assert!(
                notes.iter().any(|n| n.starts_with("not found: ") && n.contains(bin)),
                "{bin} not named: {notes:?}"
            );
            assert!(metric(&v, &format!("start -> exit, {name}")).is_none(), "{name} has rows but is absent");
        }
    }
    for (name, _) in &vmms {
        for (prefix, runs) in
            [("start -> first output", 2), ("start -> exit", 2), ("UART byte (port I/O exit) round trip", 2)]
        {
            let m = metric(&v, &format!("{prefix}, {name}"))
                .unwrap_or_else(|| panic!("no {prefix} row for {name}: {v}"));
            assert_eq!(m["runs"].as_u64(), Some(runs), "{m}");
            assert!(m["min"].as_f64().unwrap() <= m["median"].as_f64().unwrap(), "{m}");
        }
        let exit = metric(&v, &format!("start -> exit, {name}")).unwrap();
        assert!(exit["min"].as_f64().unwrap() > 0.0, "{exit}");
        let rss = metric(&v, &format!("VMM peak RSS (VmHWM, polled), {name}"));
        assert!(rss.is_none_or(|m| m["min"].as_f64().unwrap() > 0.0), "{rss:?}");
        if *name != "vmscope" {
            assert!(metric(&v, &format!("start -> exit, {name} / vmscope")).is_some(), "no ratio for {name}");
        }
    }
}
