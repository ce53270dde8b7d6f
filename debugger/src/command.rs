//! The one dispatch from a command of the language (`inspect::command`) to the query,
//! breakpoint or run-control function that answers it.

use crate::reply::{QuitReply, Reply};
use crate::{Debugger, DebuggerError};
use inspect::command::Command;

impl Debugger<'_> {
    /// Runs one command. Its counts and lengths are checked against the limits of
    /// `inspect::command` first, also for commands that did not come through the parser.
    /// `step`, `next` and `cont` wait for the next stop (up to `stop_timeout`).
    pub fn execute(&self, cmd: &Command) -> Result<Reply, DebuggerError> {
        cmd.check_limits()?;
        match cmd {
            Command::Regs => self.regs(),
            Command::Sregs => self.sregs(),
            Command::Pt { addr, host } => self.page_walk(addr, *host),
            Command::Mappings => self.mappings(),
            Command::ReadVirt { addr, len } => self.read_virt(addr, *len),
            Command::ReadPhys { addr, len } => self.read_phys(addr, *len),
            Command::Dis { addr, count } => self.disassemble(addr.as_ref(), *count),
            Command::Sym(addr) => self.symbol(addr),
            Command::Break(addr) => self.set_break(addr),
            Command::Hbreak(addr) => self.set_hbreak(addr),
            Command::Watch { addr, len } => self.set_watch(addr, *len),
            Command::Delete(addr) => self.delete(addr),
            Command::Exits => Ok(self.exits()),
            Command::Host => Ok(self.host()),
            Command::Devices => Ok(self.devices()),
            Command::Vq { device, queue } => self.virtqueue(*device, *queue),
            Command::Help => Ok(Self::help()),
            Command::Checkpoint { name } => self.checkpoint(name.as_deref()),
            Command::Checkpoints => Ok(self.checkpoints()),
            Command::Rewind { number } => self.rewind(*number),
            Command::CheckpointDelete { number } => self.checkpoint_delete(*number),
            Command::Step(n) => self.step(*n),
            Command::Next => self.step_over(),
            Command::Cont => self.cont(),
            Command::Quit => Ok(Reply::Quit(QuitReply { quit: true })),
        }
    }
}
