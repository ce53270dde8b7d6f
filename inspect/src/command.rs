//! The inspection command language shared by `vmscope run --break … --script`, the TUI's
//! `:` line and the gdb stub's `monitor`: parsing only (executing needs a live guest).
//!
//! ```
//! use inspect::command::{parse, Command, Addr};
//! assert_eq!(parse("x/16 0x1000").unwrap(), Command::ReadVirt { addr: Addr::Number(0x1000), len: 16 });
//! assert_eq!(parse("step 3").unwrap(), Command::Step(3));
//! ```

use serde::Serialize;

/// An address as typed: a number, a symbol, or a register.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Addr {
    /// `0x1000`, `4096`.
    Number(u64),
    /// `workload_compute`, `WORKLOAD_PROGRESS+8`.
    Symbol(String, u64),
    /// `$rip`, `$rsp`, `$cr3` (plus an offset).
    Register(String, u64),
}

/// One command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum Command {
    /// General registers.
    Regs,
    /// Segment, control and system registers.
    Sregs,
    /// Execute N instructions.
    Step(u64),
    /// Step over a call (one instruction otherwise).
    Next,
    /// Run until the next stop.
    Cont,
    /// Walk the page tables for an address, every level.
    Pt(Addr),
    /// All mappings of the current address space.
    Mappings,
    /// Guest-virtual memory, hex.
    ReadVirt {
        /// Where.
        addr: Addr,
        /// Bytes.
        len: u64,
    },
    /// Guest-physical memory, hex.
    ReadPhys {
        /// Where.
        addr: Addr,
        /// Bytes.
        len: u64,
    },
    /// Disassemble N instructions (at RIP when no address).
    Dis {
        /// Where.
        addr: Option<Addr>,
        /// How many.
        count: u64,
    },
    /// Name → address, or address → symbol+offset.
    Sym(Addr),
    /// A software breakpoint.
    Break(Addr),
    /// A hardware breakpoint.
    Hbreak(Addr),
    /// A hardware write watchpoint of LEN bytes.
    Watch {
        /// Where.
        addr: Addr,
        /// Bytes (1, 2, 4, 8).
        len: u64,
    },
    /// Remove a breakpoint or watchpoint.
    Delete(Addr),
    /// The virtio devices: window, interrupt line, status, queues, counters.
    Devices,
    /// Decode a virtqueue of a device.
    Vq {
        /// Device index.
        device: u64,
        /// Queue index.
        queue: u64,
    },
    /// Exit statistics (VMM and KVM's own counters).
    Exits,
    /// Which host kind this is.
    Host,
    /// The commands.
    Help,
    /// End the session.
    Quit,
}

/// A command that did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0} (type `help` for the commands)")]
pub struct ParseError(pub String);

/// One line of help per command.
pub const HELP: &[(&str, &str)] = &[
    ("regs", "general registers"),
    ("sregs", "segment, control and system registers, decoded"),
    ("step [N]", "execute N instructions (default 1)"),
    ("next", "step over a call"),
    ("cont", "run until the next breakpoint, watchpoint or exit"),
    ("pt ADDR", "walk the page tables for ADDR: every level and its bits"),
    ("mappings", "every mapping of the current address space"),
    ("x/N ADDR", "N bytes of guest-virtual memory"),
    ("xp/N GPA", "N bytes of guest-physical memory"),
    ("dis [ADDR] [N]", "disassemble N instructions (default: 8 at RIP)"),
    ("sym NAME|ADDR", "symbol lookup both ways"),
    ("break ADDR", "software breakpoint (int3)"),
    ("hbreak ADDR", "hardware breakpoint (DR0-DR3)"),
    ("watch ADDR [LEN]", "hardware write watchpoint"),
    ("delete ADDR", "remove a breakpoint or watchpoint"),
    ("devices", "virtio devices: MMIO window, IRQ, status, queues, counters"),
    ("vq DEVICE QUEUE", "decode a virtqueue: rings, chains in flight"),
    ("exits", "exit statistics: the VMM's and KVM's"),
    ("host", "the host kind"),
    ("quit", "end the session"),
];

/// Parses `0x10`, `16`, `name`, `name+0x8`, `$rip`, `$rsp+16`.
pub fn parse_addr(s: &str) -> Result<Addr, ParseError> {
    let (base, off) = match s.split_once('+') {
        Some((b, o)) => (b, parse_number(o).ok_or_else(|| ParseError(format!("bad offset {o:?} in {s:?}")))?),
        None => (s, 0),
    };
    if let Some(reg) = base.strip_prefix('$') {
        return Ok(Addr::Register(reg.to_lowercase(), off));
    }
    if let Some(n) = parse_number(base) {
        return Ok(Addr::Number(n.wrapping_add(off)));
    }
    if base.is_empty() || !base.chars().all(|c| c.is_alphanumeric() || "_.$@".contains(c)) {
        return Err(ParseError(format!("{s:?} is not an address, register or symbol")));
    }
    Ok(Addr::Symbol(base.to_string(), off))
}

/// `0x…` hex or decimal.
pub fn parse_number(s: &str) -> Option<u64> {
    let s = s.replace('_', "");
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Parses one command line.
pub fn parse(line: &str) -> Result<Command, ParseError> {
    let mut words = line.split_whitespace();
    let Some(first) = words.next() else { return Err(ParseError("empty command".into())) };
    let rest: Vec<&str> = words.collect();
    let (verb, slash) = match first.split_once('/') {
        Some((v, n)) => (v, Some(n)),
        None => (first, None),
    };
    let num = |i: usize, default: u64| -> Result<u64, ParseError> {
        rest.get(i).map_or(Ok(default), |s| {
            parse_number(s).ok_or_else(|| ParseError(format!("{s:?} is not a number")))
        })
    };
    let addr = |i: usize| -> Result<Addr, ParseError> {
        rest.get(i).ok_or_else(|| ParseError(format!("{verb} needs an address"))).and_then(|s| parse_addr(s))
    };
    let count =
        slash.map_or(Ok(16), |n| parse_number(n).ok_or_else(|| ParseError(format!("bad count {n:?}"))));
    let cmd = match verb {
        "regs" | "r" => Command::Regs,
        "sregs" => Command::Sregs,
        "step" | "s" | "si" | "stepi" => Command::Step(num(0, 1)?.max(1)),
        "next" | "n" => Command::Next,
        "cont" | "c" | "continue" => Command::Cont,
        "pt" => Command::Pt(addr(0)?),
        "mappings" | "maps" => Command::Mappings,
        "x" => Command::ReadVirt { addr: addr(0)?, len: count? },
        "xp" => Command::ReadPhys { addr: addr(0)?, len: count? },
        "dis" | "disas" => match rest.first() {
            None => Command::Dis { addr: None, count: 8 },
            Some(a) if parse_number(a).is_some() && rest.len() == 1 && !a.starts_with("0x") => {
                Command::Dis { addr: None, count: num(0, 8)? }
            }
            Some(_) => Command::Dis { addr: Some(addr(0)?), count: num(1, 8)? },
        },
        "sym" => Command::Sym(addr(0)?),
        "break" | "b" => Command::Break(addr(0)?),
        "hbreak" => Command::Hbreak(addr(0)?),
        "watch" => Command::Watch { addr: addr(0)?, len: num(1, 8)? },
        "delete" | "d" => Command::Delete(addr(0)?),
        "devices" => Command::Devices,
        "vq" => Command::Vq { device: num(0, 0)?, queue: num(1, 0)? },
        "exits" => Command::Exits,
        "host" => Command::Host,
        "help" | "?" => Command::Help,
        "quit" | "q" | "exit" => Command::Quit,
        other => return Err(ParseError(format!("unknown command {other:?}"))),
    };
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        assert_eq!(parse("regs").unwrap(), Command::Regs);
        assert_eq!(parse("step").unwrap(), Command::Step(1));
        assert_eq!(parse("si 10").unwrap(), Command::Step(10));
        assert_eq!(parse("pt $rip").unwrap(), Command::Pt(Addr::Register("rip".into(), 0)));
        assert_eq!(parse("xp/32 0x9000").unwrap(), Command::ReadPhys { addr: Addr::Number(0x9000), len: 32 });
        assert_eq!(
            parse("x WORKLOAD_PROGRESS").unwrap(),
            Command::ReadVirt { addr: Addr::Symbol("WORKLOAD_PROGRESS".into(), 0), len: 16 }
        );
        assert_eq!(parse("dis").unwrap(), Command::Dis { addr: None, count: 8 });
        assert_eq!(parse("dis 4").unwrap(), Command::Dis { addr: None, count: 4 });
        assert_eq!(
            parse("dis workload_hello+0x4 3").unwrap(),
            Command::Dis { addr: Some(Addr::Symbol("workload_hello".into(), 4)), count: 3 }
        );
        assert_eq!(
            parse("watch WORKLOAD_PROGRESS 8").unwrap(),
            Command::Watch { addr: Addr::Symbol("WORKLOAD_PROGRESS".into(), 0), len: 8 }
        );
        assert_eq!(parse("vq 0 1").unwrap(), Command::Vq { device: 0, queue: 1 });
        assert_eq!(parse("devices").unwrap(), Command::Devices);
        assert!(parse("frobnicate").unwrap_err().to_string().contains("unknown command"));
        assert!(parse("x/zz 0x10").is_err());
        assert!(parse("pt").unwrap_err().to_string().contains("needs an address"));
        assert!(parse("pt a-b").is_err());
        assert!(parse("").is_err());
    }
}
