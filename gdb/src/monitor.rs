//! `monitor …` (qRcmd): the inspect engine inside gdb. Everything but `phys` is the same
//! command language as `vmscope run --script` (`monitor pt $pc`, `monitor mappings`,
//! `monitor xp 0x9000 64`, `monitor exits`, `monitor host`, `monitor sym NAME`,
//! `monitor devices`, `monitor vq 0 0`).

use crate::target::VmTarget;
use gdbstub::target::ext::monitor_cmd::{ConsoleOutput, MonitorCmd};
use inspect::command::Command;
use std::fmt::Write;
use std::time::Duration;
use vmm::machine::commands::Session;

const HELP: &str = "vmscope monitor commands:
  help                this list
  phys on|off         gdb's memory reads and writes use guest-physical addresses
  pt ADDR             walk the page tables for ADDR (every level and its bits)
  mappings            every mapping of the current address space
  xp ADDR LEN         guest-physical memory
  exits               exit statistics (the VMM's and KVM's own)
  host                the host kind (hardware KVM or PVM)
  regs | sregs        registers as vmscope decodes them
  sym NAME|ADDR       symbol lookup both ways
  dis [ADDR] [N]      disassembly with symbols
  devices             virtio devices: MMIO window, IRQ, status, queues, counters
  vq DEVICE QUEUE     a virtqueue decoded: rings and the chains in flight
";

impl MonitorCmd for VmTarget<'_> {
    fn handle_monitor_cmd(&mut self, cmd: &[u8], mut out: ConsoleOutput<'_>) -> Result<(), Self::Error> {
        let line = String::from_utf8_lossy(cmd).trim().to_string();
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [] | ["help"] => {
                let _ = out.write_str(HELP);
            }
            ["phys", "on"] => {
                self.phys = true;
                let _ = writeln!(out, "memory accesses now use guest-physical addresses");
            }
            ["phys", "off"] => {
                self.phys = false;
                let _ = writeln!(out, "memory accesses now use guest-virtual addresses");
            }
            ["phys"] => {
                let _ = writeln!(out, "phys is {}", if self.phys { "on" } else { "off" });
            }
            ["xp", addr, len] => return self.run(&format!("xp/{len} {addr}"), &mut out),
            _ => return self.run(&line, &mut out),
        }
        Ok(())
    }
}

impl VmTarget<'_> {
    fn run(&mut self, line: &str, out: &mut ConsoleOutput<'_>) -> Result<(), String> {
        // gdb spells the program counter $pc; the command language knows $rip too.
        let line = line.replace("$pc", "$rip");
        match inspect::command::parse(&line) {
            // Running and breakpoints are gdb's business: a stop or a breakpoint it did not
            // ask for would confuse it.
            Ok(
                Command::Step(_)
                | Command::Next
                | Command::Cont
                | Command::Quit
                | Command::Break(_)
                | Command::Hbreak(_)
                | Command::Watch { .. }
                | Command::Delete(_),
            ) => {
                let word = line.split_whitespace().next().unwrap_or_default();
                let _ = writeln!(
                    out,
                    "use gdb's own commands for `{word}` (stepi, continue, break, watch, delete)"
                );
            }
            Ok(cmd) => {
                let session = Session::new(self.machine, self.symbols, Duration::from_secs(10));
                match session.execute(&cmd) {
                    Ok(o) => {
                        let _ = out.write_str(&o.text);
                    }
                    Err(e) => {
                        let _ = writeln!(out, "error: {e}");
                    }
                }
            }
            Err(e) => {
                let _ = writeln!(out, "error: {e}");
            }
        }
        Ok(())
    }
}
