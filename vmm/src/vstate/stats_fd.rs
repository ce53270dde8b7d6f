//! KVM's binary statistics (`KVM_GET_STATS_FD`): an fd per VM and per vCPU whose contents
//! (header, descriptors, data) `inspect::kvmstats` decodes. Reading it never disturbs the
//! guest, so it works on a running VM.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::FileExt;
use vmm_sys_util::ioctl::ioctl;

mod ioctls {
    #![allow(missing_docs)]
    vmm_sys_util::ioctl_io_nr!(KVM_GET_STATS_FD, kvm_bindings::KVMIO, 0xce);
}
use ioctls::KVM_GET_STATS_FD;

/// Errors from the stats fd.
#[derive(Debug, thiserror::Error)]
pub enum StatsFdError {
    /// The ioctl failed (old kernel, or the backend has no binary stats).
    #[error("KVM_GET_STATS_FD failed")]
    Ioctl(#[source] std::io::Error),
    /// Reading it failed.
    #[error("cannot read the KVM statistics fd")]
    Read(#[source] std::io::Error),
}

/// An open binary-statistics fd.
#[derive(Debug)]
pub struct StatsFd(File);

/// The largest statistics blob vmscope reads (KVM's are a few KiB).
const MAX_STATS_BYTES: u64 = 1 << 20;

impl StatsFd {
    /// Opens the statistics fd of a VM or vCPU fd.
    pub fn open(owner: &impl AsRawFd) -> Result<Self, StatsFdError> {
        // SAFETY: KVM_GET_STATS_FD takes no argument and returns a new fd or -1; `owner`
        // is a live KVM VM or vCPU fd for the duration of the call.
        let fd = unsafe { ioctl(owner, KVM_GET_STATS_FD()) };
        if fd < 0 {
            return Err(StatsFdError::Ioctl(std::io::Error::last_os_error()));
        }
        // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
        Ok(Self(unsafe { File::from_raw_fd(fd) }))
    }

    /// Reads the whole blob (header, id, descriptors, data) as it is now.
    pub fn read_all(&self) -> Result<Vec<u8>, StatsFdError> {
        let mut out = Vec::new();
        let mut chunk = vec![0u8; 4096];
        loop {
            let n = self.0.read_at(&mut chunk, out.len() as u64).map_err(StatsFdError::Read)?;
            if n == 0 || out.len() as u64 >= MAX_STATS_BYTES {
                return Ok(out);
            }
            out.extend_from_slice(&chunk[..n]);
        }
    }
}
