//! `Z`/`z` packets become the machine's breakpoints: `Z0` an `int3` the VMM writes and
//! hides from memory reads (so gdb's own breakpoint writes never reach the guest), `Z1`
//! an execute slot in DR0-DR3, `Z2`-`Z4` data slots there, split into the aligned 1, 2, 4
//! or 8-byte pieces a debug register can watch (at most `watch::MAX_WATCH_LEN` bytes in
//! `watch::DR_SLOTS` pieces; an empty, longer or wrapping range is refused before anything
//! is built). A refusal is answered with an error, which gdb reports as "Could not insert
//! hardware breakpoint/watchpoint"; the reason (all four debug registers in use, say) is
//! printed on vmscope's standard error.

use super::VmTarget;
use debugger::watch::{self, dr_pieces, Watch};
use gdbstub::target::ext::breakpoints::{
    Breakpoints, HwBreakpoint, HwBreakpointOps, HwWatchpoint, HwWatchpointOps, SwBreakpoint, SwBreakpointOps,
    WatchKind,
};
use gdbstub::target::TargetResult;
use inspect::Gva;
use vmm::machine::{HwBreakpoint as Slot, HwKind};

impl Breakpoints for VmTarget<'_> {
    fn support_sw_breakpoint(&mut self) -> Option<SwBreakpointOps<'_, Self>> {
        Some(self)
    }

    fn support_hw_breakpoint(&mut self) -> Option<HwBreakpointOps<'_, Self>> {
        Some(self)
    }

    fn support_hw_watchpoint(&mut self) -> Option<HwWatchpointOps<'_, Self>> {
        Some(self)
    }
}

/// Tells the person at vmscope's terminal why gdb got an error.
fn refused(what: &str, e: impl std::fmt::Display) -> bool {
    eprintln!("vmscope: gdb asked for {what}: {e}");
    false
}

impl SwBreakpoint for VmTarget<'_> {
    fn add_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(match self.machine.insert_sw_breakpoint(Gva(addr)) {
            Ok(()) => true,
            Err(e) => refused(&format!("a breakpoint at {addr:#x}"), e),
        })
    }

    fn remove_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.machine.remove_sw_breakpoint(Gva(addr)).is_ok())
    }
}

impl HwBreakpoint for VmTarget<'_> {
    fn add_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(match self.machine.insert_hw_breakpoint(Slot { addr, kind: HwKind::Execute, len: 1 }) {
            Ok(()) => true,
            Err(e) => refused(&format!("a hardware breakpoint at {addr:#x}"), e),
        })
    }

    fn remove_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.machine.remove_hw_breakpoint(addr, HwKind::Execute).is_ok())
    }
}

/// The debug-register kind for a gdb watchpoint: x86 has no read-only data breakpoint, so
/// a read watchpoint takes a read/write slot (gdb sorts out which it was, as it does on
/// real hardware; an emulated one fires on reads only).
fn slot_kind(kind: WatchKind) -> HwKind {
    match kind {
        WatchKind::Write => HwKind::Write,
        WatchKind::Read | WatchKind::ReadWrite => HwKind::Access,
    }
}

/// gdb's watchpoint kind as the debugger core's.
fn core_kind(kind: WatchKind) -> watch::WatchKind {
    match kind {
        WatchKind::Write => watch::WatchKind::Write,
        WatchKind::Read => watch::WatchKind::Read,
        WatchKind::ReadWrite => watch::WatchKind::ReadWrite,
    }
}

/// The debugger core's watchpoint kind as gdb's (for stop replies).
pub(crate) fn gdb_kind(kind: watch::WatchKind) -> WatchKind {
    match kind {
        watch::WatchKind::Write => WatchKind::Write,
        watch::WatchKind::Read => WatchKind::Read,
        watch::WatchKind::ReadWrite => WatchKind::ReadWrite,
    }
}

impl HwWatchpoint for VmTarget<'_> {
    fn add_hw_watchpoint(&mut self, addr: u64, len: u64, kind: WatchKind) -> TargetResult<bool, Self> {
        // A range is checked (length, wrap, pieces) before any slot is taken; a refusal is
        // gdbstub's error reply (E22), and the stub goes on serving.
        let pieces = match dr_pieces(addr, len) {
            Ok(p) => p,
            Err(e) => return Ok(refused(&format!("a {len}-byte watchpoint at {addr:#x}"), e)),
        };
        for (i, &(at, size)) in pieces.iter().enumerate() {
            if let Err(e) =
                self.machine.insert_hw_breakpoint(Slot { addr: at, kind: slot_kind(kind), len: size })
            {
                for &(at, _) in &pieces[..i] {
                    let _ = self.machine.remove_hw_breakpoint(at, slot_kind(kind));
                }
                let what = format!("a {len}-byte watchpoint at {addr:#x} ({} debug registers)", pieces.len());
                return Ok(refused(&what, e));
            }
        }
        self.watches.push(Watch { addr, len, kind: core_kind(kind) });
        Ok(true)
    }

    fn remove_hw_watchpoint(&mut self, addr: u64, len: u64, kind: WatchKind) -> TargetResult<bool, Self> {
        let Some(i) = self.watches.iter().position(|w| *w == Watch { addr, len, kind: core_kind(kind) })
        else {
            return Ok(false);
        };
        self.watches.remove(i);
        for (at, _) in dr_pieces(addr, len).unwrap_or_default() {
            let _ = self.machine.remove_hw_breakpoint(at, slot_kind(kind));
        }
        Ok(true)
    }
}
