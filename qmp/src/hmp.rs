//! `human-monitor-command`: the HMP commands QMP clients send, with QEMU's output format
//! where clients parse it (`xp`/`x` lines `ADDR: 0x.. 0x..`, `gpa2hva`'s "Host virtual
//! address for …", `info mtree -f`'s flat view — drgn reads all three), QEMU's
//! `dump-guest-memory [-p] FILE [BEGIN LENGTH]`, and vmscope's own session commands (`regs`,
//! `sregs`, `pt`, `mappings`, `host`, and a Linux guest's `ps`, `dmesg [N]`, `uname`,
//! `pt --pid N [ADDR]`, `mappings --pid N` from `inspect::linux`, as in a session).

use crate::guest::Guest;
use crate::protocol::QmpError;
use inspect::paging;
use inspect::Gva;
use serde_json::{json, Map, Value};
use std::fmt::Write;

/// The most bytes one `x`/`xp` may show: 256 KiB.
pub const MAX_DUMP_BYTES: u64 = 256 * 1024;
/// The most lines `info mem`/`info tlb`/`mappings` list.
pub const MAX_LINES: usize = 4096;

/// The HMP commands this monitor knows, for `help`.
pub const HELP: &[(&str, &str)] = &[
    ("xp /fmt addr", "physical memory dump starting at 'addr' (fmt: count, x/d/u/o/c, b/h/w/g)"),
    ("x /fmt addr", "virtual memory dump starting at 'addr' (vCPU 0's page tables)"),
    ("gpa2hva addr", "print the host virtual address corresponding to a guest physical address"),
    ("gva2gpa addr", "print the guest physical address corresponding to a guest virtual address"),
    ("info registers [-a]", "show the cpu registers (-a: all vCPUs)"),
    ("info mtree [-f]", "show memory tree (-f: flat view)"),
    ("info mem", "show the active virtual memory mappings"),
    ("info tlb", "show virtual to physical memory mappings"),
    ("info status", "show the current VM status (running|paused)"),
    ("info cpus", "show infos for each CPU"),
    ("info version", "show the version of QEMU this monitor follows"),
    ("dump-guest-memory [-p] file [begin length]", "dump guest memory into file (-p: paging)"),
    ("stop / cont / quit / system_reset", "as the QMP commands"),
    ("regs / sregs / pt ADDR / mappings / host", "vmscope's session commands (vCPU 0 or cpu-index)"),
    (
        "ps / dmesg [N] / uname / pt --pid N [ADDR] / mappings --pid N",
        "a Linux guest's tasks, log, release and a process's page tables (its vmlinux's DWARF)",
    ),
];

/// What an HMP line asks for beyond its text output.
#[derive(Debug, PartialEq, Eq)]
pub enum Hmp {
    /// Text to return.
    Text(String),
    /// Run this QMP command with these arguments instead (`stop`, `cont`, `quit`,
    /// `system_reset`, `dump-guest-memory`).
    Qmp(&'static str, Map<String, Value>),
}

fn number(s: &str) -> Option<u64> {
    let s = s.trim();
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

fn bad(desc: impl Into<String>) -> QmpError {
    QmpError::generic(desc)
}

/// Runs one HMP line on vCPU `cpu`.
pub fn run(guest: &Guest<'_>, line: &str, cpu: usize) -> Result<Hmp, QmpError> {
    let line = line.trim();
    // ps, dmesg, uname, pt/mappings --pid: the same engine as a session's and gdb's monitor.
    let ctx = || guest.paging(cpu).unwrap_or(paging::PagingContext::long_mode(0, false));
    let vmlinux = inspect::linux::commands::vmlinux();
    if let Some(r) = inspect::linux::commands::execute_line(line, &guest.phys(), ctx, vmlinux) {
        return r.map(|reply| Hmp::Text(reply.text)).map_err(|e| bad(e.to_string()));
    }
    let (cmd, rest) = line.split_once(char::is_whitespace).map(|(c, r)| (c, r.trim())).unwrap_or((line, ""));
    let text = match cmd {
        "" => String::new(),
        "xp" | "x" => memory_dump(guest, cmd == "xp", rest, cpu)?,
        "gpa2hva" => gpa2hva(guest, rest)?,
        "gva2gpa" => {
            let a = number(rest).ok_or_else(|| bad(format!("gva2gpa: bad address {rest:?}")))?;
            let ctx = guest.paging(cpu).map_err(bad)?;
            match paging::translate(&guest.phys(), &ctx, Gva(a)) {
                Ok(t) => format!("gpa: {:#x}\n", t.gpa.0),
                Err(_) => "Unmapped\n".into(),
            }
        }
        "info" => info(guest, rest, cpu)?,
        "stop" => return Ok(Hmp::Qmp("stop", Map::new())),
        "c" | "cont" => return Ok(Hmp::Qmp("cont", Map::new())),
        "q" | "quit" => return Ok(Hmp::Qmp("quit", Map::new())),
        "system_reset" => return Ok(Hmp::Qmp("system_reset", Map::new())),
        "dump-guest-memory" => return dump_args(rest).map(|a| Hmp::Qmp("dump-guest-memory", a)),
        "help" | "?" => HELP.iter().map(|(c, d)| format!("{c} -- {d}\n")).collect(),
        "regs" | "sregs" => {
            let (r, s) = guest.regs(cpu).map_err(bad)?;
            if cmd == "regs" {
                format!("{r:#x?}\n")
            } else {
                format!("{s:#x?}\n")
            }
        }
        "pt" => {
            let a = number(rest).ok_or_else(|| bad(format!("pt: bad address {rest:?}")))?;
            let ctx = guest.paging(cpu).map_err(bad)?;
            match paging::translate(&guest.phys(), &ctx, Gva(a)) {
                Ok(mut t) => {
                    t.host = None;
                    format!("{t}\n")
                }
                Err(e) => format!("{e}\n"),
            }
        }
        "mappings" => {
            let ctx = guest.paging(cpu).map_err(bad)?;
            let mut list = paging::mappings(&guest.phys(), &ctx);
            list.mappings.truncate(MAX_LINES);
            format!("{list}\n")
        }
        "host" => {
            let h = vmm::host_kind();
            format!("{h}: {}\n", h.describe())
        }
        other => return Err(bad(format!("unknown command: '{other}'"))),
    };
    Ok(Hmp::Text(text))
}

/// QEMU's HMP `dump-guest-memory [-p] FILE [BEGIN LENGTH]` as the QMP command's arguments.
fn dump_args(rest: &str) -> Result<Map<String, Value>, QmpError> {
    let mut words: Vec<&str> = rest.split_whitespace().collect();
    let paging = words.first() == Some(&"-p");
    if paging {
        words.remove(0);
    }
    let usage = "usage: dump-guest-memory [-p] FILE [BEGIN LENGTH]";
    let mut args = Map::new();
    args.insert("paging".into(), json!(paging));
    match words.as_slice() {
        [file] => {
            args.insert("protocol".into(), json!(format!("file:{file}")));
        }
        [file, begin, length] => {
            let begin = number(begin)
                .ok_or_else(|| bad(format!("dump-guest-memory: bad begin {begin:?}; {usage}")))?;
            let length = number(length)
                .ok_or_else(|| bad(format!("dump-guest-memory: bad length {length:?}; {usage}")))?;
            args.insert("protocol".into(), json!(format!("file:{file}")));
            args.insert("begin".into(), json!(begin));
            args.insert("length".into(), json!(length));
        }
        _ => return Err(bad(usage)),
    }
    Ok(args)
}

/// `/fmt`: count, format letter, size letter, in any order after the count (QEMU's rules).
fn parse_format(f: &str) -> Result<(u64, char, u64), QmpError> {
    let digits: String = f.chars().take_while(char::is_ascii_digit).collect();
    let count = if digits.is_empty() {
        1
    } else {
        digits.parse().map_err(|_| bad(format!("invalid count in /{f}")))?
    };
    let (mut format, mut size) = ('x', 4u64);
    for c in f[digits.len()..].chars() {
        match c {
            'x' | 'd' | 'u' | 'o' | 'c' => format = c,
            'b' => size = 1,
            'h' => size = 2,
            'w' => size = 4,
            'g' => size = 8,
            _ => return Err(bad(format!("invalid char in format: '{c}'"))),
        }
    }
    if format == 'c' {
        size = 1;
    }
    Ok((count, format, size))
}

fn memory_dump(guest: &Guest<'_>, physical: bool, args: &str, cpu: usize) -> Result<String, QmpError> {
    let (fmt, addr) = match args.strip_prefix('/') {
        Some(r) => r.split_once(char::is_whitespace).map(|(f, a)| (f, a.trim())).unwrap_or((r, "")),
        None => ("", args),
    };
    let (count, format, size) = parse_format(fmt)?;
    let mut addr = number(addr).ok_or_else(|| bad(format!("bad address {addr:?}")))?;
    let mut len = count.checked_mul(size).filter(|&l| l <= MAX_DUMP_BYTES).ok_or_else(|| {
        bad(format!(
            "{count} items of {size} bytes is more than {MAX_DUMP_BYTES} bytes, the most one dump shows"
        ))
    })?;
    let ctx = if physical { None } else { Some(guest.paging(cpu).map_err(bad)?) };
    let line_size = if size == 1 { 8 } else { 16 };
    let digits = match format {
        'o' => (size * 8).div_ceil(3) as usize,
        'x' => (size * 2) as usize,
        'u' | 'd' => (size * 8 * 10).div_ceil(33) as usize,
        _ => 0,
    };
    let mut out = String::new();
    while len > 0 {
        let _ = write!(out, "{addr:016x}:");
        let l = len.min(line_size);
        let bytes = match &ctx {
            None => guest.read_phys(addr, l as usize),
            Some(ctx) => read_virt(guest, ctx, addr, l as usize),
        };
        if (bytes.len() as u64) < l {
            out.push_str(" Cannot access memory\n");
            break;
        }
        for item in bytes.chunks(size as usize) {
            let mut v = 0u64;
            for (i, b) in item.iter().enumerate() {
                v |= u64::from(*b) << (8 * i);
            }
            out.push(' ');
            match format {
                'o' => {
                    let _ = write!(out, "{:#0w$o}", v, w = digits);
                }
                'u' => {
                    let _ = write!(out, "{v:>digits$}");
                }
                'd' => {
                    let shift = 64 - size * 8;
                    let s = ((v << shift) as i64) >> shift;
                    let _ = write!(out, "{s:>digits$}");
                }
                'c' => {
                    let c = v as u8;
                    if (0x20..0x7f).contains(&c) {
                        let _ = write!(out, "'{}'", c as char);
                    } else {
                        let _ = write!(out, "\\x{c:02x}");
                    }
                }
                _ => {
                    let _ = write!(out, "0x{v:0digits$x}");
                }
            }
        }
        out.push('\n');
        addr = addr.wrapping_add(l);
        len -= l;
    }
    Ok(out)
}

fn read_virt(guest: &Guest<'_>, ctx: &paging::PagingContext, gva: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let at = gva.wrapping_add(out.len() as u64);
        let Ok(t) = paging::translate(&guest.phys(), ctx, Gva(at)) else { break };
        let page_left = t.page_size - (at & (t.page_size - 1));
        let want = (len - out.len()).min(page_left as usize);
        let bytes = guest.read_phys(t.gpa.0, want);
        let short = bytes.len() < want;
        out.extend_from_slice(&bytes);
        if short {
            break;
        }
    }
    out
}

fn gpa2hva(guest: &Guest<'_>, args: &str) -> Result<String, QmpError> {
    use inspect::GuestPhysMemory;
    let a = number(args).ok_or_else(|| bad(format!("gpa2hva: bad address {args:?}")))?;
    match guest.phys().host_addr(inspect::Gpa(a)) {
        Some(h) => Ok(format!("Host virtual address for {a:#x} (ram) is {:#x}\n", h.0)),
        None => Err(bad(format!("No memory is mapped at address {a:#x}"))),
    }
}

fn info(guest: &Guest<'_>, what: &str, cpu: usize) -> Result<String, QmpError> {
    let mut out = String::new();
    match what {
        "registers" | "registers -a" => {
            let cpus: Vec<usize> =
                if what.ends_with("-a") { (0..guest.vcpu_count()).collect() } else { vec![cpu] };
            for i in cpus {
                if what.ends_with("-a") {
                    let _ = writeln!(out, "\nCPU#{i}");
                }
                let (r, s) = guest.regs(i).map_err(bad)?;
                registers(&mut out, &r, &s);
            }
        }
        "mtree" | "mtree -f" => {
            let flat = what.ends_with("-f");
            if flat {
                out.push_str("FlatView #0\n AS \"memory\", root: system\n AS \"cpu-memory-0\", root: system\n Root memory region: system\n");
            } else {
                out.push_str(
                    "address-space: memory\n  0000000000000000-ffffffffffffffff (prio 0, i/o): system\n",
                );
            }
            let indent = if flat { "  " } else { "    " };
            let mut regions: Vec<(u64, u64, &str, &str)> =
                guest.ram().into_iter().map(|(s, l)| (s, l, "ram", "ram")).collect();
            regions.extend(guest.mmio().iter().map(|(b, l, n)| (*b, *l, "i/o", n.as_str())));
            regions.sort();
            for (start, len, kind, name) in regions {
                let _ =
                    writeln!(out, "{indent}{start:016x}-{:016x} (prio 0, {kind}): {name}", start + len - 1);
            }
            out.push('\n');
        }
        "mem" | "tlb" => {
            let ctx = guest.paging(cpu).map_err(bad)?;
            if ctx.mode == paging::PagingMode::Disabled {
                return Ok("PG disabled\n".into());
            }
            let list = paging::mappings(&guest.phys(), &ctx);
            for m in list.mappings.iter().take(MAX_LINES) {
                let (u, w) = (if m.user { 'u' } else { '-' }, if m.writable { 'w' } else { '-' });
                if what == "mem" {
                    let end = m.gva.0.wrapping_add(m.size);
                    let _ = writeln!(out, "{:016x}-{end:016x} {:016x} {u}r{w}", m.gva.0, m.size);
                } else {
                    let x = if m.executable { '-' } else { 'X' };
                    let _ = writeln!(
                        out,
                        "{:016x}: {:016x} {x}------{}{}",
                        m.gva.0,
                        m.gpa.0,
                        u.to_ascii_uppercase(),
                        w.to_ascii_uppercase()
                    );
                }
            }
            if list.mappings.len() > MAX_LINES {
                let _ = writeln!(out, "(the first {MAX_LINES} of {} ranges)", list.mappings.len());
            }
        }
        "status" => {
            let _ = writeln!(out, "VM status: {}", if guest.running() { "running" } else { "paused" });
        }
        "cpus" => {
            for (i, tid) in guest.thread_ids().iter().enumerate() {
                let _ = writeln!(out, "{}CPU #{i}: thread_id={tid}", if i == cpu { "* " } else { "  " });
            }
        }
        "version" => {
            let _ = writeln!(out, "7.2.0 (vmscope {})", env!("CARGO_PKG_VERSION"));
        }
        other => {
            return Err(bad(format!(
                "info: unknown item {other:?} (registers, mtree, mem, tlb, status, cpus, version)"
            )))
        }
    }
    Ok(out)
}

fn registers(out: &mut String, r: &inspect::regs::Regs, s: &inspect::regs::SpecialRegs) {
    let _ = writeln!(out, "RAX={:016x} RBX={:016x} RCX={:016x} RDX={:016x}", r.rax, r.rbx, r.rcx, r.rdx);
    let _ = writeln!(out, "RSI={:016x} RDI={:016x} RBP={:016x} RSP={:016x}", r.rsi, r.rdi, r.rbp, r.rsp);
    let _ = writeln!(out, "R8 ={:016x} R9 ={:016x} R10={:016x} R11={:016x}", r.r8, r.r9, r.r10, r.r11);
    let _ = writeln!(out, "R12={:016x} R13={:016x} R14={:016x} R15={:016x}", r.r12, r.r13, r.r14, r.r15);
    let _ = writeln!(out, "RIP={:016x} RFL={:08x} CPL={}", r.rip, r.rflags, s.cpl());
    for (name, seg) in [
        ("ES", &s.es),
        ("CS", &s.cs),
        ("SS", &s.ss),
        ("DS", &s.ds),
        ("FS", &s.fs),
        ("GS", &s.gs),
        ("LDT", &s.ldt),
        ("TR", &s.tr),
    ] {
        let _ = writeln!(
            out,
            "{name:<3}={:04x} {:016x} {:08x} DPL={}",
            seg.selector, seg.base, seg.limit, seg.dpl
        );
    }
    let _ = writeln!(out, "GDT=     {:016x} {:08x}", s.gdt.base, s.gdt.limit);
    let _ = writeln!(out, "IDT=     {:016x} {:08x}", s.idt.base, s.idt.limit);
    let _ = writeln!(out, "CR0={:08x} CR2={:016x} CR3={:016x} CR4={:08x}", s.cr0, s.cr2, s.cr3, s.cr4);
    let _ = writeln!(out, "EFER={:016x}", s.efer);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_follow_qemus_rules() {
        assert_eq!(parse_format("").unwrap(), (1, 'x', 4));
        assert_eq!(parse_format("16xb").unwrap(), (16, 'x', 1));
        assert_eq!(parse_format("4gx").unwrap(), (4, 'x', 8));
        assert_eq!(parse_format("2c").unwrap(), (2, 'c', 1));
        assert!(parse_format("3q").is_err());
        assert_eq!(number("0x10"), Some(16));
        assert_eq!(number("10"), Some(10));
        assert_eq!(number("zz"), None);
    }

    #[test]
    fn hmp_dump_guest_memory_becomes_the_qmp_command() {
        let a = dump_args("-p /tmp/c 0x1000 4096").unwrap();
        assert_eq!(
            Value::Object(a),
            json!({"paging": true, "protocol": "file:/tmp/c", "begin": 4096, "length": 4096})
        );
        assert_eq!(
            Value::Object(dump_args("/tmp/c").unwrap()),
            json!({"paging": false, "protocol": "file:/tmp/c"})
        );
        for bad in ["", "-p", "/tmp/c 1", "/tmp/c x 1"] {
            assert!(dump_args(bad).is_err(), "{bad}");
        }
    }
}
