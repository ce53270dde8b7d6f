//! Opening `/dev/kvm` and checking that it can run a vmscope guest.

use kvm_bindings::{CpuId, KVM_API_VERSION, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{Cap, Kvm};
use std::path::{Path, PathBuf};

/// Errors from opening or checking the KVM device.
#[derive(Debug, thiserror::Error)]
pub enum KvmError {
    /// The device node does not exist.
    #[error("{path} does not exist: this machine has no KVM (load kvm_intel, kvm_amd or kvm_pvm)")]
    Missing {
        /// The device path.
        path: PathBuf,
    },
    /// The device exists but could not be opened.
    #[error("cannot open {path}")]
    Open {
        /// The device path.
        path: PathBuf,
        /// The errno of `open` (EACCES: not in the kvm group).
        #[source]
        source: kvm_ioctls::Error,
    },
    /// The kernel speaks another KVM API.
    #[error("{path} speaks KVM API version {found}, vmscope needs {KVM_API_VERSION}")]
    ApiVersion {
        /// The device path.
        path: PathBuf,
        /// What the kernel reported.
        found: i32,
    },
    /// A capability vmscope cannot work without.
    #[error("{path} lacks the KVM capability {cap}, which vmscope needs")]
    MissingCap {
        /// The device path.
        path: PathBuf,
        /// The capability's name.
        cap: &'static str,
    },
    /// KVM_GET_SUPPORTED_CPUID failed.
    #[error("KVM_GET_SUPPORTED_CPUID failed")]
    SupportedCpuid(#[source] kvm_ioctls::Error),
}

/// The capabilities every vmscope VM needs, with their names for error messages.
const REQUIRED_CAPS: &[(Cap, &str)] = &[
    (Cap::UserMemory, "KVM_CAP_USER_MEMORY"),
    (Cap::SetTssAddr, "KVM_CAP_SET_TSS_ADDR"),
    (Cap::ExtCpuid, "KVM_CAP_EXT_CPUID"),
    (Cap::ImmediateExit, "KVM_CAP_IMMEDIATE_EXIT"),
];

/// An open, checked `/dev/kvm`.
#[derive(Debug)]
pub struct KvmSystem {
    kvm: Kvm,
    path: PathBuf,
}

/// The conventional KVM device path.
pub const DEFAULT_KVM_PATH: &str = "/dev/kvm";

impl KvmSystem {
    /// Opens `/dev/kvm` (or `$VMSCOPE_KVM_DEVICE`) and checks its API version and the
    /// capabilities vmscope needs.
    pub fn open() -> Result<Self, KvmError> {
        let path = std::env::var_os("VMSCOPE_KVM_DEVICE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_KVM_PATH));
        Self::open_path(&path)
    }

    /// Opens and checks the KVM device at `path`.
    pub fn open_path(path: &Path) -> Result<Self, KvmError> {
        if !path.exists() {
            return Err(KvmError::Missing { path: path.into() });
        }
        let cpath = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| KvmError::Missing { path: path.into() })?;
        let kvm = Kvm::new_with_path(cpath).map_err(|source| KvmError::Open { path: path.into(), source })?;
        let found = kvm.get_api_version();
        if found != KVM_API_VERSION as i32 {
            return Err(KvmError::ApiVersion { path: path.into(), found });
        }
        for (cap, name) in REQUIRED_CAPS {
            if !kvm.check_extension(*cap) {
                return Err(KvmError::MissingCap { path: path.into(), cap: name });
            }
        }
        Ok(Self { kvm, path: path.into() })
    }

    /// The underlying kvm-ioctls handle.
    pub fn kvm(&self) -> &Kvm {
        &self.kvm
    }

    /// The device path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The CPUID leaves KVM can present to a guest.
    pub fn supported_cpuid(&self) -> Result<CpuId, KvmError> {
        self.kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).map_err(KvmError::SupportedCpuid)
    }

    /// Whether an optional capability is present.
    pub fn has_cap(&self, cap: Cap) -> bool {
        self.kvm.check_extension(cap)
    }

    /// A one-line-per-item description of the capabilities vmscope uses (for `vmscope host`).
    pub fn capability_report(&self) -> Vec<(&'static str, bool)> {
        let optional: &[(Cap, &str)] = &[
            (Cap::Irqchip, "KVM_CAP_IRQCHIP"),
            (Cap::Pit2, "KVM_CAP_PIT2"),
            (Cap::SetGuestDebug, "KVM_CAP_SET_GUEST_DEBUG"),
            (Cap::Irqfd, "KVM_CAP_IRQFD"),
            (Cap::Ioeventfd, "KVM_CAP_IOEVENTFD"),
            (Cap::TscDeadlineTimer, "KVM_CAP_TSC_DEADLINE_TIMER"),
            (Cap::Xcrs, "KVM_CAP_XCRS"),
            (Cap::VcpuEvents, "KVM_CAP_VCPU_EVENTS"),
        ];
        REQUIRED_CAPS
            .iter()
            .chain(optional)
            .map(|(cap, name)| (*name, self.kvm.check_extension(*cap)))
            .chain([(
                "KVM_CAP_EXIT_ON_EMULATION_FAILURE",
                self.kvm.check_extension_raw(kvm_bindings::KVM_CAP_EXIT_ON_EMULATION_FAILURE.into()) > 0,
            )])
            .collect()
    }
}
