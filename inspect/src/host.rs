//! What kind of host KVM is running on. Every figure vmscope reports carries it, because
//! the same guest costs wildly different amounts on hardware KVM and on PVM (where CPL0
//! guest code runs in KVM's instruction emulator).

use serde::{Deserialize, Serialize};
use std::fmt;

/// The kind of virtualization that backs `/dev/kvm`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostKind {
    /// Hardware KVM on Intel VT-x (`kvm_intel`).
    IntelVtx,
    /// Hardware KVM on AMD-V (`kvm_amd`).
    AmdV,
    /// PVM: KVM's software backend (shadow paging, CPL0 guest code emulated).
    Pvm,
    /// None of the above could be recognised.
    Unknown,
}

impl HostKind {
    /// Decides the host kind from the text of `/proc/cpuinfo` and the names of the loaded
    /// kernel modules (the entries of `/sys/module`). A loaded `kvm_pvm` wins: it serves
    /// `/dev/kvm` even on a CPU that has `vmx`/`svm`.
    pub fn from_probe<'a>(cpuinfo: &str, modules: impl IntoIterator<Item = &'a str>) -> Self {
        let modules: Vec<&str> = modules.into_iter().collect();
        if modules.contains(&"kvm_pvm") {
            return HostKind::Pvm;
        }
        let flags = cpuinfo
            .lines()
            .find(|l| l.starts_with("flags"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, f)| f.split_whitespace().collect::<Vec<_>>())
            .unwrap_or_default();
        if flags.contains(&"vmx") || modules.contains(&"kvm_intel") {
            HostKind::IntelVtx
        } else if flags.contains(&"svm") || modules.contains(&"kvm_amd") {
            HostKind::AmdV
        } else {
            HostKind::Unknown
        }
    }

    /// Whether guest code at CPL0 runs in hardware (false on PVM and unknown hosts).
    pub fn is_hardware(self) -> bool {
        matches!(self, HostKind::IntelVtx | HostKind::AmdV)
    }

    /// The CPL a guest should run at by default to run natively here: CPL0 on hardware
    /// KVM, CPL3 on PVM (and on an unknown host, the safe choice).
    pub fn native_ring(self) -> u8 {
        if self.is_hardware() {
            0
        } else {
            3
        }
    }

    /// A short stable name, as used in JSON and on figures.
    pub fn as_str(self) -> &'static str {
        match self {
            HostKind::IntelVtx => "intel-vtx",
            HostKind::AmdV => "amd-v",
            HostKind::Pvm => "pvm",
            HostKind::Unknown => "unknown",
        }
    }

    /// A sentence for people.
    pub fn describe(self) -> &'static str {
        match self {
            HostKind::IntelVtx => "hardware KVM (Intel VT-x)",
            HostKind::AmdV => "hardware KVM (AMD-V)",
            HostKind::Pvm => "PVM (software KVM: CPL0 guest code is emulated)",
            HostKind::Unknown => "unknown KVM backend",
        }
    }
}

impl fmt::Display for HostKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pvm_module_wins_over_cpu_flags() {
        let cpu = "processor\t: 0\nflags\t\t: fpu vme svm sse\n";
        assert_eq!(HostKind::from_probe(cpu, ["kvm", "kvm_pvm"]), HostKind::Pvm);
        assert_eq!(HostKind::from_probe(cpu, ["kvm", "kvm_amd"]), HostKind::AmdV);
        let intel = "flags\t\t: fpu vmx sse\n";
        assert_eq!(HostKind::from_probe(intel, ["kvm"]), HostKind::IntelVtx);
        assert_eq!(HostKind::from_probe("flags: fpu\n", ["kvm"]), HostKind::Unknown);
        assert_eq!(HostKind::Pvm.native_ring(), 3);
        assert_eq!(HostKind::AmdV.native_ring(), 0);
    }
}
