//! `checkpoint [NAME]`, `checkpoints`, `rewind N` and `checkpoint delete N`: the guest
//! kept in memory at a stop and put back later (gdb's `checkpoint`/`restart N`). The store
//! and the capture and write-back are the VMM's (`vmm::checkpoint`, kept in the machine,
//! so the script session, the TUI and gdb's `monitor` share the checkpoints); this adds the
//! symbols and the instruction at RIP. Breakpoints and software watchpoints are the
//! debugger's, not the guest's: a rewind leaves them as they are.

use crate::control::MAX_INSTRUCTION;
use crate::reply::{CheckpointDeleteReply, CheckpointReply, CheckpointsReply, Reply, RewindReply};
use crate::{Debugger, DebuggerError};
use inspect::disasm;
use inspect::Gva;
use vmm::checkpoint;

impl Debugger<'_> {
    /// The RIP of the session's vCPU among `rips`.
    fn rip_of(&self, rips: &[u64]) -> u64 {
        rips.get(self.vcpu).copied().unwrap_or_default()
    }

    pub(crate) fn checkpoint(&self, name: Option<&str>) -> Result<Reply, DebuggerError> {
        let taken = checkpoint::take(self.machine, name)?;
        let symbol = self.symbol_of(self.rip_of(&taken.checkpoint.rips));
        Ok(Reply::Checkpoint(Box::new(CheckpointReply { taken, vcpu: self.vcpu, symbol })))
    }

    pub(crate) fn checkpoints(&self) -> Reply {
        let listing = checkpoint::list(self.machine);
        let symbols = listing.checkpoints.iter().map(|c| self.symbol_of(self.rip_of(&c.rips))).collect();
        Reply::Checkpoints(Box::new(CheckpointsReply { listing, vcpu: self.vcpu, symbols }))
    }

    pub(crate) fn rewind(&self, number: u64) -> Result<Reply, DebuggerError> {
        let rewound = checkpoint::rewind(self.machine, number)?;
        let rip = self.rip_of(&rewound.rips);
        let instruction = match self.snapshot() {
            Ok(snap) => self
                .machine
                .read_virt(self.vcpu, Gva(rip), MAX_INSTRUCTION)
                .map(|code| disasm::decode_one(&code, rip, snap.sregs.cpu_mode()).text)
                .unwrap_or_default(),
            Err(_) => String::new(),
        };
        let symbol = self.symbol_of(rip);
        Ok(Reply::Rewind(Box::new(RewindReply { rewound, vcpu: self.vcpu, symbol, instruction })))
    }

    pub(crate) fn checkpoint_delete(&self, number: u64) -> Result<Reply, DebuggerError> {
        Ok(Reply::CheckpointDelete(CheckpointDeleteReply {
            deleted: checkpoint::delete(self.machine, number)?,
        }))
    }
}
