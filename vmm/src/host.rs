//! Detects which kind of KVM backs `/dev/kvm` on this machine (see [`inspect::HostKind`]).

use inspect::HostKind;
use std::sync::OnceLock;

/// The host kind of this machine, probed once per process from `/proc/cpuinfo` and
/// `/sys/module`.
pub fn host_kind() -> HostKind {
    static KIND: OnceLock<HostKind> = OnceLock::new();
    *KIND.get_or_init(probe)
}

fn probe() -> HostKind {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let modules: Vec<String> = std::fs::read_dir("/sys/module")
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with("kvm"))
                .collect()
        })
        .unwrap_or_default();
    HostKind::from_probe(&cpuinfo, modules.iter().map(String::as_str))
}

/// The CPU model name from `/proc/cpuinfo`, for stamping measurements.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string())
}
