//! vmscope's debugger core: the command language of `inspect::command` run against a
//! [`vmm::machine::Machine`], between the VMM and inspect crates below and the frontends
//! above (the `vmscope run --script` session, the TUI, the gdb stub's `monitor`). It owns
//! run control for those commands (`step`, `next` — the step-over —, `cont` and the wait
//! for the next stop), the software-watchpoint engine, breakpoint bookkeeping, and typed
//! queries (registers, memory, page walks, mappings, disassembly, symbols, exits, devices,
//! virtqueues). Every command returns a serialisable [`Reply`]; frontends show it through
//! [`render`] (text and JSON), and none of them formats a command's result itself.
//!
//! A command is added once, here: a variant of `inspect::command::Command`, a function that
//! answers it (in `query`, `breakpoints` or `run`), a [`Reply`] variant, and its text in
//! [`render`]; every frontend then has it.
//!
//! ```no_run
//! # fn demo(machine: &vmm::machine::Machine) -> Result<(), debugger::DebuggerError> {
//! use debugger::{render, Debugger};
//! let symbols = inspect::symbols::SymbolTable::default();
//! let dbg = Debugger::new(machine, &symbols, std::time::Duration::from_secs(10));
//! let regs = dbg.execute(&inspect::command::parse("regs").unwrap())?;
//! print!("{}", render::text(&regs));
//! let stop = dbg.execute(&inspect::command::Command::Step(1))?;
//! println!("{}", render::json(&stop));
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod breakpoints;
mod checkpoints;
mod command;
pub mod control;
mod error;
mod query;
pub mod render;
pub mod reply;
mod run;
pub mod watch;

pub use control::{Go, Run, StopEvent};
pub use error::DebuggerError;
pub use query::MAX_LISTED_MAPPINGS;
pub use render::Output;
pub use reply::{Reply, Stop};
pub use watch::MAX_SOFT_WATCHES;

use inspect::symbols::SymbolTable;
use std::cell::RefCell;
use std::time::Duration;
use vmm::machine::Machine;

/// A debugging session on one machine: which vCPU commands act on, which symbols name
/// addresses, how long `step`/`next`/`cont` wait for a stop, and the software watchpoints.
pub struct Debugger<'a> {
    /// The machine.
    pub machine: &'a Machine,
    /// The vCPU commands act on.
    pub vcpu: usize,
    /// Symbols for names in addresses and disassembly.
    pub symbols: &'a SymbolTable,
    /// How long `step`/`next`/`cont` wait for the next stop.
    pub stop_timeout: Duration,
    /// Which decoder `dis` uses (iced-x86 by default, capstone as a second opinion).
    pub decoder: inspect::disasm::Decoder,
    /// Software watchpoints (PVM: its instruction emulator does not check the debug
    /// registers), kept across commands.
    watches: RefCell<watch::SoftWatches>,
}

impl<'a> Debugger<'a> {
    /// A session on vCPU 0 whose run-control commands wait `stop_timeout` for a stop.
    pub fn new(machine: &'a Machine, symbols: &'a SymbolTable, stop_timeout: Duration) -> Self {
        Self {
            machine,
            vcpu: 0,
            symbols,
            stop_timeout,
            decoder: Default::default(),
            watches: Default::default(),
        }
    }
}
