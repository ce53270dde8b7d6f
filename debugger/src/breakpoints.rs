//! Breakpoint and watchpoint bookkeeping: `break` (an `int3`), `hbreak` (a debug register),
//! `watch` (a debug register, or a software watchpoint on PVM) and `delete`.

use crate::reply::{BreakReply, DeleteReply, HbreakReply, Reply, WatchReply};
use crate::{Debugger, DebuggerError};
use inspect::command::{check_range, Addr};
use inspect::Gva;
use vmm::machine::{HwBreakpoint, HwKind};

impl Debugger<'_> {
    pub(crate) fn set_break(&self, addr: &Addr) -> Result<Reply, DebuggerError> {
        let addr = self.resolve(addr)?;
        self.machine.insert_sw_breakpoint(Gva(addr))?;
        Ok(Reply::Break(BreakReply { breakpoint: addr, symbol: self.symbol_of(addr) }))
    }

    pub(crate) fn set_hbreak(&self, addr: &Addr) -> Result<Reply, DebuggerError> {
        let addr = self.resolve(addr)?;
        self.machine.insert_hw_breakpoint(HwBreakpoint { addr, kind: HwKind::Execute, len: 1 })?;
        Ok(Reply::Hbreak(HbreakReply { hbreak: addr, symbol: self.symbol_of(addr) }))
    }

    /// A write watchpoint: in a debug register, except on PVM, whose instruction emulator
    /// does not check them; there `cont` single-steps and compares (see [`crate::watch`]).
    pub(crate) fn set_watch(&self, addr: &Addr, len: u64) -> Result<Reply, DebuggerError> {
        let watch = self.resolve(addr)?;
        check_range("watch", watch, len)?;
        let software = self.machine.host() == inspect::HostKind::Pvm;
        if software {
            self.watches.borrow_mut().add(watch, len)?;
        } else {
            self.machine.insert_hw_breakpoint(HwBreakpoint { addr: watch, kind: HwKind::Write, len })?;
        }
        Ok(Reply::Watch(WatchReply { watch, len, software, symbol: self.symbol_of(watch) }))
    }

    /// Removes whatever sits at the address: software watchpoints, the `int3`, and
    /// execute and write debug registers.
    pub(crate) fn delete(&self, addr: &Addr) -> Result<Reply, DebuggerError> {
        let addr = self.resolve(addr)?;
        let soft = self.watches.borrow_mut().remove(addr);
        let found = soft
            | self.machine.remove_sw_breakpoint(Gva(addr)).is_ok()
            | self.machine.remove_hw_breakpoint(addr, HwKind::Execute).is_ok()
            | self.machine.remove_hw_breakpoint(addr, HwKind::Write).is_ok();
        Ok(Reply::Delete(DeleteReply { deleted: addr, found }))
    }
}
