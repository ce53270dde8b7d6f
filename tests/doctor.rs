//! End to end: `vmscope doctor` reports every guest and feature, names a fix for each missing
//! piece, and its exit status says whether anything required is missing.

mod common;
use common::{stdout, vmscope_offline};

#[test]
fn doctor_reports_every_feature_with_fixes() {
    let empty = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_vmscope"))
        .args(["doctor", "--json"])
        .env("VMSCOPE_CACHE", empty.path())
        .output()
        .unwrap();
    let v: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&o)));
    let checks = v["checks"].as_array().unwrap();
    for feature in ["kvm", "unikernel", "linux", "container", "debugging", "tests"] {
        assert!(checks.iter().any(|c| c["feature"] == feature), "no {feature} checks: {v}");
    }
    for c in checks {
        if c["status"] != "ok" {
            assert!(c["fix"].as_str().is_some_and(|f| !f.is_empty()), "a missing piece without a fix: {c}");
        }
    }
    // With an empty cache the kernel is not built: that is a required piece, with its command.
    let kernel = checks.iter().find(|c| c["feature"] == "linux" && c["name"] == "kernel").unwrap();
    assert_eq!(kernel["status"], "missing", "{kernel}");
    assert!(kernel["fix"].as_str().unwrap().starts_with("vmscope guests build linux"), "{kernel}");
    assert_eq!(o.status.code(), Some(1), "something required is missing, so doctor exits 1");
    assert!(v["missing"].as_u64().unwrap() >= 1);
    assert_eq!(v["host_kind"], common::host_kind_name(), "{v}");

    // The text form says the same, with one install line when packages are missing.
    let o = vmscope_offline(&["doctor"]);
    let text = stdout(&o);
    assert!(text.contains("kvm\n") && text.contains("linux\n") && text.contains("container\n"), "{text}");
    if !v["packages_to_install"].as_array().unwrap().is_empty() {
        assert!(text.contains("install every missing package at once: "), "{text}");
    }
}
