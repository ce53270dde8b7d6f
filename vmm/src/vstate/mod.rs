//! KVM state: the system handle, a VM, its memory and its vCPUs.

pub mod kvm;
pub mod memory;
pub mod rss;
pub mod stats_fd;
pub mod vcpu;
pub mod vm;
