//! What the stub knows about each vCPU while the guest is stopped. A stop event already
//! carries the stopped vCPU's registers, and nothing changes them until gdb writes a
//! register or resumes, so `g` and `m` packets after a stop are answered from here instead
//! of asking the vCPU thread again (each request is a wake-up of that thread and back).
//! IA32_KERNEL_GS_BASE is not in the snapshot: it is asked for the moment the stop is
//! seen, so its answer is usually in by the time gdb's `g` packet arrives.

use inspect::paging::PagingContext;
use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::sync::mpsc::{self, Receiver};
use vmm::machine::{Machine, MachineError};
use vmm::vstate::vcpu::{VcpuError, VcpuRequest, VcpuSnapshot, REQUEST_TIMEOUT};

/// IA32_KERNEL_GS_BASE (the value `swapgs` exchanges GS.base with).
pub const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;

/// An MSR value: asked for, or known.
enum Msr {
    Asked(Receiver<Result<Vec<(u32, u64)>, VcpuError>>),
    Known(u64),
}

/// Per-vCPU state valid until the guest runs again.
#[derive(Default)]
pub struct StopCache {
    snapshots: BTreeMap<usize, VcpuSnapshot>,
    kernel_gs_base: BTreeMap<usize, Msr>,
}

impl StopCache {
    /// Forgets everything (the guest is about to run).
    pub fn clear(&mut self) {
        self.snapshots.clear();
        self.kernel_gs_base.clear();
    }

    /// Forgets what is known of vCPU `index` (gdb wrote its registers).
    pub fn forget(&mut self, index: usize) {
        self.snapshots.remove(&index);
        self.kernel_gs_base.remove(&index);
    }

    /// Records the state a stop event carried, and asks for the MSR gdb will want next.
    pub fn stopped(&mut self, machine: &Machine, snapshot: VcpuSnapshot) {
        let index = snapshot.index;
        self.snapshots.insert(index, snapshot);
        if let Ok(vcpu) = machine.vcpu(index) {
            let (tx, rx) = mpsc::channel();
            if vcpu.send(VcpuRequest::GetMsrs(vec![MSR_KERNEL_GS_BASE], tx)).is_ok() {
                self.kernel_gs_base.insert(index, Msr::Asked(rx));
            }
        }
    }

    /// Records a vCPU's registers without asking for anything more (a step the stub takes
    /// on gdb's behalf).
    pub fn remember(&mut self, snapshot: VcpuSnapshot) {
        self.snapshots.insert(snapshot.index, snapshot);
    }

    /// vCPU `index`'s registers, asking its thread only if this stop has not told us yet.
    pub fn snapshot(&mut self, machine: &Machine, index: usize) -> Result<&VcpuSnapshot, MachineError> {
        Ok(match self.snapshots.entry(index) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(machine.snapshot(index)?),
        })
    }

    /// The registers, if known, without asking (for `&self` callers).
    pub fn peek(&self, index: usize) -> Option<&VcpuSnapshot> {
        self.snapshots.get(&index)
    }

    /// vCPU `index`'s paging context (CR0, CR3, CR4, EFER of its snapshot).
    pub fn paging(&mut self, machine: &Machine, index: usize) -> Result<PagingContext, MachineError> {
        Ok(PagingContext::from_sregs(&self.snapshot(machine, index)?.sregs))
    }

    /// IA32_KERNEL_GS_BASE of vCPU `index` (0 where the host will not say).
    pub fn kernel_gs_base(&mut self, machine: &Machine, index: usize) -> u64 {
        let value = match self.kernel_gs_base.remove(&index) {
            Some(Msr::Known(v)) => Some(v),
            Some(Msr::Asked(rx)) => rx.recv_timeout(REQUEST_TIMEOUT).ok().and_then(first_value),
            None => machine
                .vcpu(index)
                .ok()
                .and_then(|v| v.ask(|tx| VcpuRequest::GetMsrs(vec![MSR_KERNEL_GS_BASE], tx)).ok())
                .and_then(first_value),
        }
        .unwrap_or(0);
        self.kernel_gs_base.insert(index, Msr::Known(value));
        value
    }
}

fn first_value(r: Result<Vec<(u32, u64)>, VcpuError>) -> Option<u64> {
    r.ok()?.first().map(|(_, v)| *v)
}
