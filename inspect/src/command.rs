//! The inspection command language shared by `vmscope run --break … --script`, the TUI's
//! `:` line and the gdb stub's `monitor`: parsing only (executing needs a live guest).
//!
//! ```
//! use inspect::command::{parse, Command, Addr};
//! assert_eq!(parse("x/16 0x1000").unwrap(), Command::ReadVirt { addr: Addr::Number(0x1000), len: 16 });
//! assert_eq!(parse("step 3").unwrap(), Command::Step(3));
//! ```
//!
//! Every count, length and address typed here comes from outside (a script, a gdb client's
//! `monitor`, the TUI), so [`Command::check_limits`] bounds each one at a documented maximum
//! ([`MAX_READ_LEN`], [`MAX_DIS_COUNT`], [`MAX_STEP_COUNT`], [`WATCH_LENGTHS`]) and a range
//! that would wrap past `u64::MAX` is an error ([`check_range`]): a request gets a one-line
//! error naming the argument and the limit, never an allocation of the size it asked for.

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
    Pt {
        /// The guest-virtual address.
        addr: Addr,
        /// Also show the host-virtual address backing the page (`pt --host ADDR`): it
        /// reveals the VMM's memory layout, so it is shown only when asked.
        host: bool,
    },
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
    /// Keep the whole guest in memory to come back to (`checkpoint [NAME]`).
    Checkpoint {
        /// A name to know it by.
        name: Option<String>,
    },
    /// The checkpoints kept.
    Checkpoints,
    /// Put the guest back as it was at a checkpoint (`rewind N`).
    Rewind {
        /// The checkpoint's number.
        number: u64,
    },
    /// Forget a checkpoint (`checkpoint delete N`).
    CheckpointDelete {
        /// The checkpoint's number.
        number: u64,
    },
    /// The commands.
    Help,
    /// End the session.
    Quit,
}

/// A command that did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0} (type `help` for the commands)")]
pub struct ParseError(pub String);

/// A count, length or address outside what a command accepts (one line: the argument
/// and the limit).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LimitError(pub String);

impl From<LimitError> for ParseError {
    fn from(e: LimitError) -> Self {
        ParseError(e.0)
    }
}

/// The most bytes one `x`/`xp` reads: 64 KiB. Its hex dump is 4096 lines (and its JSON a
/// 65536-element array), already more than a person reads or a gdb `monitor` reply should
/// carry; a bigger region is read in steps by a script.
pub const MAX_READ_LEN: u64 = 64 * 1024;

/// The most instructions one `dis` decodes: 1024. It reads up to
/// [`MAX_INSN_LEN`] bytes per instruction (15 KiB), and a listing longer than that is read in
/// steps (`dis ADDR N` from the last address shown).
pub const MAX_DIS_COUNT: u64 = 1024;

/// The longest x86 instruction, in bytes: `dis N` reads `N * MAX_INSN_LEN` bytes.
pub const MAX_INSN_LEN: u64 = 15;

/// The most instructions one `step N` executes: 1,000,000. A single-step exit costs about
/// 8 us on PVM (see ENVIRONMENT.md), so that is seconds, within a session's stop timeout;
/// going further is what `break` + `cont` are for.
pub const MAX_STEP_COUNT: u64 = 1_000_000;

/// The lengths `watch ADDR LEN` accepts: what a debug register's LEN field encodes (DR7),
/// and what the software watchpoints used on PVM compare after each step.
pub const WATCH_LENGTHS: [u64; 4] = [1, 2, 4, 8];

/// Checks that `len` bytes from `addr` do not run past `u64::MAX` (the last byte of the
/// address space may be read; wrapping around to 0 is an error). `what` names the command.
pub fn check_range(what: &str, addr: u64, len: u64) -> Result<(), LimitError> {
    if len > 0 && addr.checked_add(len - 1).is_none() {
        return Err(LimitError(format!(
            "{what}: {addr:#x} + {len:#x} bytes runs past the end of the address space ({:#x})",
            u64::MAX
        )));
    }
    Ok(())
}

impl Command {
    /// Checks every count and length against its limit, and a numeric address plus length
    /// for wrapping (addresses given as symbols or registers are checked once resolved,
    /// with [`check_range`]). [`parse`] calls it; so does a session before it runs a
    /// command built some other way.
    pub fn check_limits(&self) -> Result<(), LimitError> {
        match self {
            Command::ReadVirt { addr, len } | Command::ReadPhys { addr, len } => {
                let what = if matches!(self, Command::ReadVirt { .. }) { "x" } else { "xp" };
                if *len > MAX_READ_LEN {
                    return Err(LimitError(format!(
                        "{what}: length {len} is over the limit of {MAX_READ_LEN} bytes per read"
                    )));
                }
                if let Addr::Number(a) = addr {
                    check_range(what, *a, *len)?;
                }
            }
            Command::Dis { count, .. } if *count > MAX_DIS_COUNT => {
                return Err(LimitError(format!(
                    "dis: count {count} is over the limit of {MAX_DIS_COUNT} instructions"
                )));
            }
            Command::Step(n) if *n > MAX_STEP_COUNT => {
                return Err(LimitError(format!(
                    "step: count {n} is over the limit of {MAX_STEP_COUNT} instructions (use break and cont to go further)"
                )));
            }
            Command::Watch { addr, len } => {
                if !WATCH_LENGTHS.contains(len) {
                    return Err(LimitError(format!("watch: length {len} is not 1, 2, 4 or 8 bytes")));
                }
                if let Addr::Number(a) = addr {
                    check_range("watch", *a, *len)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// One line of help per command.
pub const HELP: &[(&str, &str)] = &[
    ("regs", "general registers"),
    ("sregs", "segment, control and system registers, decoded"),
    ("step [N]", "execute N instructions (default 1, at most 1000000)"),
    ("next", "step over a call"),
    ("cont", "run until the next breakpoint, watchpoint or exit"),
    (
        "pt [--host] ADDR",
        "walk the page tables for ADDR: every level and its bits (--host: and the host address)",
    ),
    ("mappings", "every mapping of the current address space"),
    ("x/N ADDR", "N bytes of guest-virtual memory (or x ADDR N; default 16, at most 65536)"),
    ("xp/N GPA", "N bytes of guest-physical memory (or xp GPA N)"),
    ("dis [ADDR] [N]", "disassemble N instructions (default: 8 at RIP, at most 1024)"),
    ("sym NAME|ADDR", "symbol lookup both ways"),
    ("break ADDR", "software breakpoint (int3)"),
    ("hbreak ADDR", "hardware breakpoint (DR0-DR3)"),
    ("watch ADDR [LEN]", "hardware write watchpoint of 1, 2, 4 or 8 bytes (default 8)"),
    ("delete ADDR", "remove a breakpoint or watchpoint"),
    ("devices", "virtio devices: MMIO window, IRQ, status, queues, counters"),
    ("vq DEVICE QUEUE", "decode a virtqueue: rings, chains in flight"),
    ("exits", "exit statistics: the VMM's and KVM's"),
    ("host", "the host kind"),
    ("checkpoint [NAME]", "keep the whole guest in memory (only what changed since the last one)"),
    ("checkpoints", "list them: number, name, RIP, guest time and exits since, bytes kept"),
    ("rewind N", "memory, vCPUs and devices back as at checkpoint N (disks are not rewound)"),
    ("checkpoint delete N", "forget checkpoint N"),
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
        return n.checked_add(off).map(Addr::Number).ok_or_else(|| {
            ParseError(format!("{s:?} runs past the end of the address space ({:#x})", u64::MAX))
        });
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
    // `x/N ADDR` or `x ADDR N` (as gdb's `monitor xp ADDR LEN`), not both.
    let count = match (slash, rest.get(1)) {
        (Some(_), Some(_)) if matches!(verb, "x" | "xp") => {
            Err(ParseError(format!("{verb}: give the length once (x/N ADDR or x ADDR N)")))
        }
        (Some(n), _) => parse_number(n).ok_or_else(|| ParseError(format!("bad count {n:?}"))),
        (None, _) => num(1, 16),
    };
    let cmd = match verb {
        "regs" | "r" => Command::Regs,
        "sregs" => Command::Sregs,
        "step" | "s" | "si" | "stepi" => Command::Step(num(0, 1)?.max(1)),
        "next" | "n" => Command::Next,
        "cont" | "c" | "continue" => Command::Cont,
        "pt" if rest.first() == Some(&"--host") => Command::Pt { addr: addr(1)?, host: true },
        "pt" => Command::Pt { addr: addr(0)?, host: false },
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
        "checkpoint" if rest.first() == Some(&"delete") => match rest.get(1) {
            Some(_) if rest.len() == 2 => Command::CheckpointDelete { number: num(1, 0)? },
            _ => return Err(ParseError("usage: checkpoint delete N".into())),
        },
        "checkpoint" if rest.len() > 1 => {
            return Err(ParseError("checkpoint takes at most one word, its name".into()))
        }
        "checkpoint" => Command::Checkpoint { name: rest.first().map(|s| s.to_string()) },
        "checkpoints" => Command::Checkpoints,
        "rewind" | "restart" => match rest.as_slice() {
            [_] => Command::Rewind { number: num(0, 0)? },
            _ => return Err(ParseError(format!("usage: {verb} N (`checkpoints` lists them)"))),
        },
        "help" | "?" => Command::Help,
        "quit" | "q" | "exit" => Command::Quit,
        other => return Err(ParseError(format!("unknown command {other:?}"))),
    };
    cmd.check_limits()?;
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
        assert_eq!(
            parse("pt $rip").unwrap(),
            Command::Pt { addr: Addr::Register("rip".into(), 0), host: false }
        );
        assert_eq!(parse("pt --host 0x10").unwrap(), Command::Pt { addr: Addr::Number(0x10), host: true });
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
        assert_eq!(parse("xp 0x9000 64").unwrap(), Command::ReadPhys { addr: Addr::Number(0x9000), len: 64 });
        assert!(parse("xp/8 0x9000 64").unwrap_err().to_string().contains("length once"));
    }

    #[test]
    fn checkpoint_commands() {
        assert_eq!(parse("checkpoint").unwrap(), Command::Checkpoint { name: None });
        assert_eq!(
            parse("checkpoint before-bug").unwrap(),
            Command::Checkpoint { name: Some("before-bug".into()) }
        );
        assert_eq!(parse("checkpoints").unwrap(), Command::Checkpoints);
        assert_eq!(parse("rewind 2").unwrap(), Command::Rewind { number: 2 });
        assert_eq!(parse("restart 0x3").unwrap(), Command::Rewind { number: 3 });
        assert_eq!(parse("checkpoint delete 1").unwrap(), Command::CheckpointDelete { number: 1 });
        assert!(parse("rewind").unwrap_err().to_string().contains("usage: rewind N"));
        assert!(parse("rewind one").unwrap_err().to_string().contains("not a number"));
        assert!(parse("checkpoint delete").unwrap_err().to_string().contains("usage: checkpoint delete N"));
        assert!(parse("checkpoint a b").unwrap_err().to_string().contains("one word"));
    }

    /// The message of a command refused for its size.
    fn refused(line: &str) -> String {
        parse(line).expect_err(line).to_string()
    }

    #[test]
    fn counts_and_lengths_are_bounded() {
        // At the limit: accepted.
        assert_eq!(
            parse("x/65536 0").unwrap(),
            Command::ReadVirt { addr: Addr::Number(0), len: MAX_READ_LEN }
        );
        assert_eq!(parse("dis 0 1024").unwrap(), Command::Dis { addr: Some(Addr::Number(0)), count: 1024 });
        assert_eq!(parse("step 1000000").unwrap(), Command::Step(MAX_STEP_COUNT));
        // One past it, or far past it: a one-line error naming the argument and the limit.
        for (line, words) in [
            ("x/65537 0", ["x: length 65537", "limit of 65536 bytes"]),
            ("x/99999999999 0", ["x: length 99999999999", "limit of 65536 bytes"]),
            ("xp 0 0x10001", ["xp: length 65537", "limit of 65536 bytes"]),
            ("xp/18446744073709551615 0", ["xp: length 18446744073709551615", "65536"]),
            ("dis 1025", ["dis: count 1025", "limit of 1024 instructions"]),
            ("dis 0 18446744073709551615", ["dis: count 18446744073709551615", "1024"]),
            ("dis main 4096", ["dis: count 4096", "1024"]),
            ("step 1000001", ["step: count 1000001", "limit of 1000000"]),
            ("si 18446744073709551615", ["step: count", "1000000"]),
            ("watch 0x1000 16", ["watch: length 16", "1, 2, 4 or 8"]),
            ("watch 0x1000 0", ["watch: length 0", "1, 2, 4 or 8"]),
            ("watch x 18446744073709551615", ["watch: length", "1, 2, 4 or 8"]),
        ] {
            let e = refused(line);
            assert!(words.iter().all(|w| e.contains(w)), "{line}: {e}");
            assert!(!e.contains('\n'), "{line}: one line: {e}");
        }
        // Numbers that do not fit in 64 bits are not numbers.
        assert!(refused("x/18446744073709551616 0").contains("bad count"));
    }

    #[test]
    fn ranges_that_wrap_are_refused() {
        let e = refused("xp 0xffffffffffffff00 0x1000");
        assert!(
            e.contains("xp: 0xffffffffffffff00 + 0x1000 bytes runs past the end of the address space"),
            "{e}"
        );
        assert!(refused("x/2 0xffffffffffffffff").contains("runs past the end"));
        assert!(refused("watch 0xfffffffffffffffc 8").contains("runs past the end"));
        assert!(refused("pt 0xffffffffffffffff+1").contains("runs past the end"));
        assert!(refused("x 0xfffffffffffffff0+0x20").contains("runs past the end"));
        // The last bytes of the address space can be read: that is not a wrap.
        assert_eq!(
            parse("x/16 0xfffffffffffffff0").unwrap(),
            Command::ReadVirt { addr: Addr::Number(0xffff_ffff_ffff_fff0), len: 16 }
        );
        assert!(parse("x/1 0xffffffffffffffff").is_ok());
        assert!(parse("x/0 0xffffffffffffffff").is_ok());
        assert!(check_range("x", u64::MAX, 1).is_ok());
        assert!(check_range("x", u64::MAX, 2).is_err());
        assert!(check_range("x", 0, u64::MAX).is_ok());
        // Symbols and registers are resolved later; their lengths are checked now.
        assert!(refused("x/65537 $rsp").contains("limit of 65536"));
        assert!(parse("x/16 $rsp+0xffffffffffffffff").is_ok());
    }
}
