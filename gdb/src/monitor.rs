//! `monitor …` (qRcmd): the inspect engine inside gdb. Everything but `phys` is the same
//! command language as `vmscope run --script` (`monitor pt $pc`, `monitor mappings`,
//! `monitor xp 0x9000 64`, `monitor exits`, `monitor host`, `monitor sym NAME`,
//! `monitor devices`, `monitor vq 0 0`).

use crate::target::VmTarget;
use debugger::{render, Debugger};
use gdbstub::target::ext::monitor_cmd::{ConsoleOutput, MonitorCmd};
use inspect::command::Command;
use std::fmt::Write;
use std::time::Duration;

/// The most bytes one `monitor xp`/`monitor x` reads (64 KiB: a 4096-line dump). The
/// session commands behind `monitor` allocate what they are asked for, so the stub refuses
/// more with a one-line message before calling them.
pub const MAX_MONITOR_READ: u64 = 64 * 1024;

/// The most instructions one `monitor dis` decodes (it reads 15 bytes per instruction).
pub const MAX_MONITOR_DIS: u64 = 1024;

/// The most text one `monitor` reply carries (gdbstub sends it as one hex-encoded `O`
/// packet); longer output is cut at a character boundary with a note.
pub const MAX_MONITOR_OUTPUT: usize = 256 * 1024;

/// Why a monitor command is refused before it runs: a length or count over its limit, or a
/// range that runs past the end of the address space.
fn over_limit(cmd: &Command) -> Option<String> {
    use inspect::command::Addr;
    match cmd {
        Command::ReadVirt { addr, len } | Command::ReadPhys { addr, len } => {
            let what = if matches!(cmd, Command::ReadVirt { .. }) { "x" } else { "xp" };
            if *len > MAX_MONITOR_READ {
                return Some(format!("{what}: length {len} is over the limit of {MAX_MONITOR_READ} bytes"));
            }
            if let Addr::Number(a) = addr {
                if *len > 0 && a.checked_add(*len - 1).is_none() {
                    return Some(format!(
                        "{what}: {len} bytes from {a:#x} run past the end of the address space"
                    ));
                }
            }
            None
        }
        Command::Dis { count, .. } if *count > MAX_MONITOR_DIS => {
            Some(format!("dis: count {count} is over the limit of {MAX_MONITOR_DIS} instructions"))
        }
        _ => None,
    }
}

/// `text`, cut to [`MAX_MONITOR_OUTPUT`] bytes at a character boundary.
fn bounded(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= MAX_MONITOR_OUTPUT {
        return text.into();
    }
    let mut end = MAX_MONITOR_OUTPUT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n[output cut at {MAX_MONITOR_OUTPUT} of {} bytes]\n", &text[..end], text.len()).into()
}

const HELP: &str = "vmscope monitor commands:
  help                this list
  phys on|off         gdb's memory reads and writes use guest-physical addresses
  pt [--host] ADDR    walk the page tables for ADDR (every level and its bits;
                      --host adds the host address backing the page)
  mappings            every mapping of the current address space
  xp ADDR LEN         guest-physical memory (at most 65536 bytes)
  exits               exit statistics (the VMM's and KVM's own)
  host                the host kind (hardware KVM or PVM)
  regs | sregs        registers as vmscope decodes them
  sym NAME|ADDR       symbol lookup both ways
  dis [ADDR] [N]      disassembly with symbols (at most 1024 instructions)
  devices             virtio devices: MMIO window, IRQ, status, queues, counters
  vq DEVICE QUEUE     a virtqueue decoded: rings and the chains in flight
  snapshot FILE       the whole guest to FILE (vmscope run --restore FILE resumes it)
  migrate URI [--downtime-ms N] [--max-rounds N]
                      move the guest to `vmscope run --incoming URI` (unix:PATH or
                      tcp:HOST:PORT), where it runs on; this gdb session then ends
  dump FILE           an ELF core of the guest (drgn -c FILE, crash vmlinux FILE)
  ps | dmesg [N] | uname | pt --pid N [ADDR] | mappings --pid N
                      a Linux guest's processes, log, release and a process's
                      page tables, read from its memory with the vmlinux's DWARF
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
    /// `monitor migrate`: the guest gdb holds stopped moves as it is (its pre-copy finds
    /// nothing dirty, so the downtime is the whole move) and runs on the target. On success
    /// the summary goes to gdb and the handler fails on purpose: gdbstub then ends the
    /// session without its `OK`, the connection closes, and gdb says "Remote connection
    /// closed" once (a clean end: the inferior is gone from here). [`crate::serve`] sees
    /// [`VmTarget::migrated`] and ends the process, the guest's vCPUs still held. On failure
    /// the guest stays here, stopped under gdb as before, and the error is printed.
    fn migrate(
        &mut self,
        parsed: Result<(vmm::migration::Uri, vmm::migration::MigrateOptions), vmm::migration::MigrationError>,
        out: &mut ConsoleOutput<'_>,
    ) -> Result<(), String> {
        let r =
            parsed.and_then(|(uri, opts)| vmm::migration::migrate(self.machine, &uri, &opts, &mut |_| {}));
        match r {
            Ok(done) => {
                let _ = writeln!(out, "{}", done.summary);
                let _ = writeln!(out, "the guest runs on at {}; this gdb session ends", done.summary.uri);
                out.flush();
                self.migrated = Some(done.summary.uri.clone());
                // The vCPUs stay held until the process ends: the guest must never run twice.
                std::mem::forget(done);
                Err(format!("the guest migrated to {}", self.migrated.as_deref().unwrap_or_default()))
            }
            Err(e) => {
                let _ = writeln!(out, "migration failed; the guest stays here: {}", chain(&e));
                Ok(())
            }
        }
    }

    fn run(&mut self, line: &str, out: &mut ConsoleOutput<'_>) -> Result<(), String> {
        // gdb spells the program counter $pc; the command language knows $rip too.
        let line = line.replace("$pc", "$rip");
        // ps, dmesg, uname, pt/mappings --pid: inspect::linux reads the Linux guest.
        let mem = vmm::vstate::memory::PhysView(self.machine.memory());
        let ctx =
            || self.machine.paging_context(0).unwrap_or(inspect::paging::PagingContext::long_mode(0, false));
        if let Some(r) =
            inspect::linux::commands::execute_line(&line, &mem, ctx, inspect::linux::commands::vmlinux())
        {
            let _ = match r {
                Ok(o) => out.write_str(&bounded(&o.text)),
                Err(e) => writeln!(out, "error: {e}"),
            };
            return Ok(());
        }
        // dump FILE: an ELF core (drgn -c, crash) of the guest gdb holds stopped.
        if let Some(r) = qmp::dump::execute_line(self.machine, self.symbols, &line) {
            let _ = match r {
                Ok(o) => out.write_str(&o.text),
                Err(e) => writeln!(out, "error: {e}"),
            };
            return Ok(());
        }
        // migrate URI: the guest moves; gdb's session ends with the connection.
        if let Some(parsed) = vmm::migration::command::parse_line(&line) {
            return self.migrate(parsed, out);
        }
        // snapshot FILE: the whole guest, while gdb holds it stopped.
        if let Some(r) = vmm::snapshot::command::execute_line(self.machine, &line) {
            let _ = match r {
                Ok(o) => out.write_str(&bounded(&o.text)),
                Err(e) => writeln!(out, "error: {e}"),
            };
            return Ok(());
        }
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
            Ok(cmd) if over_limit(&cmd).is_some() => {
                let _ = writeln!(out, "error: {}", over_limit(&cmd).unwrap_or_default());
            }
            Ok(cmd) => {
                let session = Debugger::new(self.machine, self.symbols, Duration::from_secs(10));
                match session.execute(&cmd) {
                    Ok(reply) => {
                        let _ = out.write_str(&bounded(&render::text(&reply)));
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

/// An error and its causes, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        text.push_str(": ");
        text.push_str(&s.to_string());
        src = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_requests_are_refused_before_they_run() {
        use inspect::command::Addr;
        let xp = |addr, len| Command::ReadPhys { addr: Addr::Number(addr), len };
        assert!(over_limit(&xp(0x9000, 64)).is_none());
        assert!(over_limit(&xp(0x9000, MAX_MONITOR_READ)).is_none());
        assert!(over_limit(&xp(0x9000, MAX_MONITOR_READ + 1)).unwrap().contains("over the limit"));
        assert!(over_limit(&xp(u64::MAX, 1)).is_none());
        assert!(over_limit(&xp(u64::MAX, 2)).unwrap().contains("past the end"));
        let x = Command::ReadVirt { addr: Addr::Register("rsp".into(), 0), len: u64::MAX };
        assert!(over_limit(&x).unwrap().starts_with("x: length"));
        let dis = |count| Command::Dis { addr: None, count };
        assert!(over_limit(&dis(MAX_MONITOR_DIS)).is_none());
        assert!(over_limit(&dis(u64::MAX)).is_some());
    }

    #[test]
    fn long_output_is_cut_at_a_character() {
        let text = "é".repeat(MAX_MONITOR_OUTPUT);
        let cut = bounded(&text);
        assert!(cut.len() < MAX_MONITOR_OUTPUT + 100 && cut.contains("[output cut at"), "{}", cut.len());
        assert_eq!(bounded("short"), "short");
    }
}
