//! Debug operations on a whole machine, as the gdb stub, the TUI and `vmscope inspect` use
//! them: guest memory by physical and virtual address (our `int3` bytes hidden), software
//! and hardware breakpoints, watchpoints, and stepping. Everything goes through vCPU
//! requests or the shared memory map; nothing here holds a vCPU fd.
//!
//! Lengths come from outside (gdb packets, session commands), so reads allocate as the
//! bytes arrive ([`READ_CHUNK`] at a time), never the requested size up front, and stop at
//! the end of the address space instead of wrapping to 0. Callers still bound what they
//! ask for (`inspect::command::MAX_READ_LEN` for session commands): a guest-virtual read
//! can alias one page many times over.

use super::{Machine, MachineError};
use crate::vstate::memory::{write_phys, PhysView};
use crate::vstate::vcpu::{GuestDebug, VcpuRequest};
use inspect::paging::{PagingContext, Translation};
use inspect::{Gpa, GuestPhysMemory, Gva};
use serde::Serialize;

/// Errors from debug operations.
#[derive(Debug, thiserror::Error)]
pub enum DebugError {
    /// A breakpoint operation.
    #[error(transparent)]
    Breakpoint(#[from] crate::breakpoints::BreakpointError),
    /// A guest-virtual address that does not translate.
    #[error("cannot translate {gva}")]
    Translate {
        /// The address.
        gva: Gva,
        /// The level of the walk that failed, and how.
        #[source]
        source: inspect::paging::WalkError,
    },
    /// All four debug registers are taken.
    #[error("all four hardware breakpoint/watchpoint slots (DR0-DR3) are in use")]
    NoFreeDebugRegister,
    /// A watchpoint length the hardware cannot watch.
    #[error("a hardware watchpoint covers 1, 2, 4 or 8 aligned bytes, not {len} at {addr:#x}")]
    BadWatchLength {
        /// Address.
        addr: u64,
        /// Length.
        len: u64,
    },
    /// No hardware breakpoint/watchpoint there.
    #[error("no hardware breakpoint or watchpoint at {0:#x}")]
    NoHwBreakpoint(u64),
    /// A guest-virtual range that runs past the end of the address space.
    #[error("{len} bytes at {gva} run past the end of the address space")]
    WrapsAround {
        /// Where.
        gva: Gva,
        /// How much.
        len: usize,
    },
    /// A write outside guest memory.
    #[error("cannot write {len} bytes at {gpa}: outside guest memory")]
    WriteOutside {
        /// Where.
        gpa: Gpa,
        /// How much.
        len: usize,
    },
}

/// What a hardware debug register watches (the R/W bits of DR7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HwKind {
    /// Instruction execution.
    Execute,
    /// Data writes.
    Write,
    /// Data reads or writes.
    Access,
}

/// One DR0-DR3 slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct HwBreakpoint {
    /// Linear address.
    pub addr: u64,
    /// What it watches.
    pub kind: HwKind,
    /// Length in bytes (1 for execute).
    pub len: u64,
}

impl HwBreakpoint {
    fn dr7_bits(&self, slot: usize) -> u64 {
        let rw = match self.kind {
            HwKind::Execute => 0b00,
            HwKind::Write => 0b01,
            HwKind::Access => 0b11,
        };
        let len = match self.len {
            2 => 0b01,
            8 => 0b10,
            4 => 0b11,
            _ => 0b00,
        };
        // Local and global enable, then R/W and LEN for this slot.
        (0b11 << (slot * 2)) | ((rw | (len << 2)) << (16 + slot * 4))
    }
}

/// The debug-register slots shared by every vCPU of a machine.
#[derive(Debug, Default)]
pub struct HwSlots(pub [Option<HwBreakpoint>; 4]);

impl HwSlots {
    /// DR0-DR3 and DR7 for KVM_SET_GUEST_DEBUG, or `None` when no slot is used.
    pub fn debugregs(&self) -> Option<([u64; 4], u64)> {
        if self.0.iter().all(Option::is_none) {
            return None;
        }
        let mut addrs = [0u64; 4];
        // DR7 bit 10 is reserved as 1; GE/LE (bits 8-9) ask for exact breakpoints.
        let mut dr7 = (1 << 10) | (0b11 << 8);
        for (i, slot) in self.0.iter().enumerate() {
            if let Some(bp) = slot {
                addrs[i] = bp.addr;
                dr7 |= bp.dr7_bits(i);
            }
        }
        Some((addrs, dr7))
    }
}

/// How much a debug read allocates at a time: 64 KiB. A read grows by this much while
/// guest memory keeps answering, so a request far larger than guest memory costs at most
/// the memory that exists plus one chunk.
pub const READ_CHUNK: usize = 64 * 1024;

impl Machine {
    /// Reads guest-physical memory; returns the readable prefix (it ends where guest memory
    /// does, or at the end of the address space). Our breakpoint bytes are shown as the
    /// guest's original bytes.
    pub fn read_phys(&self, gpa: Gpa, len: usize) -> Vec<u8> {
        let view = PhysView(&self.mem);
        let mut buf = Vec::new();
        while buf.len() < len {
            let Some(at) = gpa.checked_add(buf.len() as u64) else { break };
            let start = buf.len();
            let want = (len - start).min(READ_CHUNK);
            buf.resize(start + want, 0);
            let n = view.read_phys(at, &mut buf[start..]);
            buf.truncate(start + n);
            if n < want {
                break;
            }
        }
        self.breakpoints.hide_in(gpa, &mut buf);
        buf
    }

    /// Writes guest-physical memory (all or nothing).
    pub fn write_phys(&self, gpa: Gpa, data: &[u8]) -> Result<(), MachineError> {
        write_phys(&self.mem, gpa, data).map_err(|_| DebugError::WriteOutside { gpa, len: data.len() })?;
        Ok(())
    }

    /// The paging context of vCPU `vcpu` (from its control registers).
    pub fn paging_context(&self, vcpu: usize) -> Result<PagingContext, MachineError> {
        Ok(PagingContext::from_sregs(&self.snapshot(vcpu)?.sregs))
    }

    /// Translates `gva` in vCPU `vcpu`'s address space, with every level of the walk.
    pub fn translate(&self, vcpu: usize, gva: Gva) -> Result<Translation, MachineError> {
        let ctx = self.paging_context(vcpu)?;
        Ok(inspect::paging::translate(&PhysView(&self.mem), &ctx, gva)
            .map_err(|source| DebugError::Translate { gva, source })?)
    }

    /// Reads guest-virtual memory as vCPU `vcpu` sees it; returns the readable prefix (a
    /// read that runs into an unmapped page stops there).
    pub fn read_virt(&self, vcpu: usize, gva: Gva, len: usize) -> Result<Vec<u8>, MachineError> {
        Ok(self.read_virt_in(&self.paging_context(vcpu)?, gva, len))
    }

    /// Reads guest-virtual memory in the address space `ctx` describes (callers that read
    /// often while the guest is stopped keep the context instead of asking the vCPU again).
    pub fn read_virt_in(&self, ctx: &PagingContext, gva: Gva, len: usize) -> Vec<u8> {
        let view = PhysView(&self.mem);
        let mut out = Vec::with_capacity(len.min(READ_CHUNK));
        let mut addr = gva;
        while out.len() < len {
            let Ok(t) = inspect::paging::translate(&view, ctx, addr) else { break };
            let page_left = t.page_size - (addr.0 & (t.page_size - 1));
            let chunk = (len - out.len()).min(usize::try_from(page_left).unwrap_or(usize::MAX));
            let bytes = self.read_phys(t.gpa, chunk);
            let short = bytes.len() < chunk;
            out.extend_from_slice(&bytes);
            if short {
                break;
            }
            // The end of the address space ends the read; it does not wrap to 0.
            let Some(next) = addr.checked_add(chunk as u64) else { break };
            addr = next;
        }
        out
    }

    /// Writes guest-virtual memory as vCPU `vcpu` sees it (page by page; stops with an
    /// error at the first unmapped page).
    pub fn write_virt(&self, vcpu: usize, gva: Gva, data: &[u8]) -> Result<(), MachineError> {
        let ctx = self.paging_context(vcpu)?;
        let view = PhysView(&self.mem);
        let mut done = 0;
        while done < data.len() {
            let addr =
                gva.checked_add(done as u64).ok_or(DebugError::WrapsAround { gva, len: data.len() })?;
            let t = inspect::paging::translate(&view, &ctx, addr)
                .map_err(|source| DebugError::Translate { gva: addr, source })?;
            let page_left = t.page_size - (addr.0 & (t.page_size - 1));
            let chunk = (data.len() - done).min(usize::try_from(page_left).unwrap_or(usize::MAX));
            self.write_phys(t.gpa, &data[done..done + chunk])?;
            done += chunk;
        }
        Ok(())
    }

    /// Places a software breakpoint at `gva` (translated through vCPU 0's page tables) and
    /// turns on `int3` interception on every vCPU.
    pub fn insert_sw_breakpoint(&self, gva: Gva) -> Result<(), MachineError> {
        let t = self.translate(0, gva)?;
        self.breakpoints.insert(gva, t.gpa).map_err(DebugError::from)?;
        self.sync_guest_debug()
    }

    /// Removes the software breakpoint at `gva`.
    pub fn remove_sw_breakpoint(&self, gva: Gva) -> Result<(), MachineError> {
        self.breakpoints.remove(gva).map_err(DebugError::from)?;
        self.sync_guest_debug()
    }

    /// Uses a free debug register for a hardware breakpoint or watchpoint.
    pub fn insert_hw_breakpoint(&self, bp: HwBreakpoint) -> Result<(), MachineError> {
        if bp.kind != HwKind::Execute && (![1, 2, 4, 8].contains(&bp.len) || !bp.addr.is_multiple_of(bp.len))
        {
            return Err(DebugError::BadWatchLength { addr: bp.addr, len: bp.len }.into());
        }
        {
            let mut slots = self.hw_slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if slots.0.contains(&Some(bp)) {
                return Ok(());
            }
            let free = slots.0.iter_mut().find(|s| s.is_none()).ok_or(DebugError::NoFreeDebugRegister)?;
            *free = Some(bp);
        }
        self.sync_guest_debug()
    }

    /// Frees the debug register holding a breakpoint/watchpoint at `addr` of `kind`.
    pub fn remove_hw_breakpoint(&self, addr: u64, kind: HwKind) -> Result<(), MachineError> {
        {
            let mut slots = self.hw_slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let slot = slots
                .0
                .iter_mut()
                .find(|s| s.is_some_and(|b| b.addr == addr && b.kind == kind))
                .ok_or(DebugError::NoHwBreakpoint(addr))?;
            *slot = None;
        }
        self.sync_guest_debug()
    }

    /// The hardware slots in use.
    pub fn hw_breakpoints(&self) -> [Option<HwBreakpoint>; 4] {
        self.hw_slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner).0
    }

    /// Pushes the breakpoint configuration to every vCPU.
    fn sync_guest_debug(&self) -> Result<(), MachineError> {
        let hw = self.hw_slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner).debugregs();
        let debug = GuestDebug { sw_breakpoints: !self.breakpoints.is_empty(), hw };
        for v in &self.vcpus {
            v.ask(|tx| VcpuRequest::SetGuestDebug(debug, tx))??;
        }
        Ok(())
    }

    /// Removes every software and hardware breakpoint and watchpoint.
    pub fn clear_breakpoints(&self) {
        self.breakpoints.clear();
        self.hw_slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner).0 = [None; 4];
        let _ = self.sync_guest_debug();
    }

    /// How many vCPUs (from 0) run guest code; an ELF guest's other vCPUs stay parked.
    pub fn runnable_vcpus(&self) -> usize {
        self.runnable_vcpus
    }

    /// Resumes every vCPU that was let run (vCPUs other than 0 of an ELF guest stay parked).
    pub fn resume_all(&self) -> Result<(), MachineError> {
        for v in self.vcpus.iter().take(self.runnable_vcpus) {
            v.send(VcpuRequest::Resume)?;
        }
        Ok(())
    }

    /// Pauses vCPU `vcpu`.
    pub fn pause(&self, vcpu: usize) -> Result<(), MachineError> {
        self.vcpu(vcpu)?.send(VcpuRequest::Pause)?;
        Ok(())
    }

    /// Resumes vCPU `vcpu`.
    pub fn resume(&self, vcpu: usize) -> Result<(), MachineError> {
        self.vcpu(vcpu)?.send(VcpuRequest::Resume)?;
        Ok(())
    }

    /// Steps vCPU `vcpu` by `count` instructions (a `Stopped { Step }` event follows).
    pub fn step(&self, vcpu: usize, count: u64) -> Result<(), MachineError> {
        self.vcpu(vcpu)?.send(VcpuRequest::Step(count))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dr7_encoding() {
        let mut slots = HwSlots::default();
        assert_eq!(slots.debugregs(), None);
        slots.0[0] = Some(HwBreakpoint { addr: 0x1000, kind: HwKind::Execute, len: 1 });
        slots.0[2] = Some(HwBreakpoint { addr: 0x2000, kind: HwKind::Write, len: 8 });
        let (addrs, dr7) = slots.debugregs().unwrap();
        assert_eq!(addrs, [0x1000, 0, 0x2000, 0]);
        // L0|G0, L2|G2, LE|GE, reserved bit 10; slot 2: R/W=01, LEN=10 -> 0b1001 at bit 24.
        assert_eq!(dr7, 0b11 | (0b11 << 4) | (0b11 << 8) | (1 << 10) | (0b1001 << 24));
    }
}
