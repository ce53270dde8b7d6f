//! KVM state: the system handle, a VM, its memory and its vCPUs, and the bus trait through
//! which vCPUs reach the devices.

pub mod bus;
pub mod kvm;
pub mod memory;
pub mod raw_loop;
pub mod rss;
pub mod stats_fd;
pub mod vcpu;
pub mod vm;
