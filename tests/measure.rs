//! End to end: `vmscope measure --quick` writes sane reports.

mod common;
use common::{stdout, vmscope};

#[test]
fn quick_suites_write_sane_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let o = vmscope(&[
        "measure",
        "boot",
        "exits",
        "compute",
        "io-batching",
        "--quick",
        "--runs",
        "3",
        "--out",
        out,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", common::stderr(&o));
    assert!(stdout(&o).contains("metric"), "{}", stdout(&o));
    for suite in ["boot", "exits", "compute", "io-batching"] {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join(format!("{suite}.json"))).unwrap())
                .unwrap();
        assert!(v["environment"]["host_kind"].is_string(), "{v}");
        let metrics = v["metrics"].as_array().unwrap();
        assert!(!metrics.is_empty());
        for m in metrics {
            let (min, med, max) =
                (m["min"].as_f64().unwrap(), m["median"].as_f64().unwrap(), m["max"].as_f64().unwrap());
            assert!(min > 0.0 && min <= med && med <= max, "{m}");
            assert_eq!(m["runs"].as_u64(), Some(3), "{m}");
        }
        assert!(std::fs::read_to_string(dir.path().join(format!("{suite}.svg"))).unwrap().contains("<svg"));
    }
    let a = dir.path().join("boot.json");
    let o = vmscope(&["measure", "--compare", a.to_str().unwrap(), a.to_str().unwrap()]);
    assert!(stdout(&o).contains("1.00x"), "{}", stdout(&o));
}
