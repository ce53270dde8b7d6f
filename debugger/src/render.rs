//! The text and JSON every frontend shows for a [`Reply`]: the script session prints
//! [`text`] or [`json`], the TUI puts [`text`] in an overlay, gdb's `monitor` writes it to
//! the console. The JSON is the reply's serde form; the text is formatted here and nowhere
//! else.

use crate::reply::*;
use serde_json::Value;
use std::fmt::Write;
use vmm::machine::Outcome;

/// What a command produced, rendered: text for people, JSON for scripts, and how the guest
/// ended when the command's stop ended it (the session should end).
#[derive(Debug)]
pub struct Output {
    /// For people.
    pub text: String,
    /// For scripts.
    pub json: Value,
    /// The guest ended (exit code or fault).
    pub ended: Option<Outcome>,
}

/// Renders a reply as text and JSON, taking how the guest ended out of it.
pub fn output(mut reply: Reply) -> Output {
    let text = text(&reply);
    let json = json(&reply);
    let ended = match &mut reply {
        Reply::Stop(s) => s.ended.take(),
        Reply::WatchHit(w) => w.stop.ended.take(),
        _ => None,
    };
    Output { text, json, ended }
}

/// The reply as JSON (what `--json` prints under `"result"`).
pub fn json(reply: &Reply) -> Value {
    serde_json::to_value(reply).unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }))
}

/// ` <symbol+offset>`, or nothing.
fn named(symbol: &Option<String>) -> String {
    symbol.as_ref().map(|s| format!(" <{s}>")).unwrap_or_default()
}

/// The reply as text for people (each line ends in a newline).
pub fn text(reply: &Reply) -> String {
    match reply {
        Reply::Regs(r) => regs(r),
        Reply::Sregs(s) => sregs(s),
        Reply::Translation(t) => format!("{}\n", t.translation),
        Reply::WalkFailed(w) => format!("{}\n", w.error),
        Reply::Mappings(m) => mappings(m),
        Reply::VirtMemory(m) => memory(m.gva, m.requested, &m.bytes, "are mapped"),
        Reply::PhysMemory(m) => memory(m.gpa, m.requested, &m.bytes, "are in guest memory"),
        Reply::Disassembly(d) => disassembly(d),
        Reply::Symbol(SymbolReply { symbol: s }) => {
            format!("{} = {:#x} (size {:#x}, {:?})\n", s.name, s.addr, s.size, s.kind)
        }
        Reply::Address(a) => format!("{:#x} = {}\n", a.addr, a.name.as_deref().unwrap_or("?")),
        Reply::Break(b) => format!("breakpoint at {:#x}{}\n", b.breakpoint, named(&b.symbol)),
        Reply::Hbreak(b) => format!("hardware breakpoint at {:#x}{}\n", b.hbreak, named(&b.symbol)),
        Reply::Watch(w) => watch(w),
        Reply::Delete(d) if d.found => format!("deleted {:#x}\n", d.deleted),
        Reply::Delete(d) => format!("nothing at {:#x}\n", d.deleted),
        Reply::Exits(e) => exits(e),
        Reply::Host(h) => format!("{}: {}\n", h.host, h.description),
        Reply::Devices(d) => devices(d),
        Reply::Queue(q) => format!("virtio-{} queue {}: {}", q.device.name, q.queue, q.snapshot),
        Reply::Help(h) => h.commands.iter().map(|e| format!("  {:<18} {}\n", e.command, e.help)).collect(),
        Reply::Stop(s) => stop(s),
        Reply::WatchHit(w) => {
            format!(
                "watchpoint at {:#x}{}: {:#x} -> {:#x}\n{}",
                w.watchpoint,
                named(&w.symbol),
                w.old,
                w.new,
                stop(&w.stop)
            )
        }
        Reply::Checkpoint(c) => checkpoint(c),
        Reply::Checkpoints(c) => checkpoints(c),
        Reply::Rewind(r) => rewind(r),
        Reply::CheckpointDelete(d) => {
            format!(
                "deleted checkpoint {}; the checkpoints keep {}\n",
                d.deleted.number,
                mib(d.deleted.kept_bytes)
            )
        }
        Reply::Quit(_) => String::new(),
    }
}

fn regs(x: &RegsReply) -> String {
    let r = &x.regs;
    format!(
        "rip {:#018x}{}\nrsp {:#018x} rbp {:#018x} rflags {:#x}\nrax {:#018x} rbx {:#018x} rcx {:#018x} rdx {:#018x}\nrsi {:#018x} rdi {:#018x} r8  {:#018x} r9  {:#018x}\nr10 {:#018x} r11 {:#018x} r12 {:#018x} r13 {:#018x}\nr14 {:#018x} r15 {:#018x}\n",
        r.rip, named(&x.rip_symbol), r.rsp, r.rbp, r.rflags, r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15
    )
}

fn sregs(x: &SregsReply) -> String {
    let sr = &x.sregs;
    format!(
        "cr0 {:#x} cr2 {:#x} cr3 {:#x} cr4 {:#x} cr8 {:#x} efer {:#x}\nmode {:?}, CPL {}\ncs {:#06x} ss {:#06x} ds {:#06x} tr {:#06x}\ngdt {:#x}/{:#x} idt {:#x}/{:#x}\n",
        sr.cr0, sr.cr2, sr.cr3, sr.cr4, sr.cr8, sr.efer, x.mode, x.cpl, sr.cs.selector, sr.ss.selector, sr.ds.selector, sr.tr.selector, sr.gdt.base, sr.gdt.limit, sr.idt.base, sr.idt.limit
    )
}

fn mappings(m: &MappingsReply) -> String {
    let mut text = format!("{}\n", m.mappings);
    if m.ranges_total > m.ranges_listed {
        let _ = writeln!(
            text,
            "(listed the first {} of {} ranges, the limit; `pt ADDR` walks any one address)",
            m.ranges_listed, m.ranges_total
        );
    }
    text
}

/// A hex dump, 16 bytes a line with their ASCII, and a note when only a prefix was read
/// (`where_` says what the readable bytes are).
fn memory(base: u64, requested: u64, bytes: &[u8], where_: &str) -> String {
    let mut out = String::new();
    for (i, chunk) in bytes.chunks(16).enumerate() {
        let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
        let ascii: String =
            chunk.iter().map(|&b| if (0x20..0x7f).contains(&b) { b as char } else { '.' }).collect();
        let _ = writeln!(out, "{:016x}  {:<48} {ascii}", base.wrapping_add(i as u64 * 16), hex.join(" "));
    }
    if (bytes.len() as u64) < requested {
        let _ = writeln!(out, "(only {} of {requested} bytes {where_})", bytes.len());
    }
    out
}

fn disassembly(d: &DisassemblyReply) -> String {
    let mut text = String::new();
    for (i, note) in d.instructions.iter().zip(d.notes.iter().chain(std::iter::repeat(&LineNote::default())))
    {
        let marker = if i.address == d.rip { "=>" } else { "  " };
        let bp = if note.breakpoint { "*" } else { " " };
        let _ = writeln!(text, "{marker}{bp}{:#018x}{:<28} {}", i.address, named(&note.symbol), i.text);
    }
    text
}

fn watch(w: &WatchReply) -> String {
    let head = format!("watchpoint (write, {} bytes) at {:#x}{}", w.len, w.watch, named(&w.symbol));
    if w.software {
        format!(
            "{head}, in software: this PVM host does not fire hardware watchpoints, so `cont` single-steps\n"
        )
    } else {
        format!("{head}\n")
    }
}

fn exits(e: &ExitsReply) -> String {
    let mut text = format!("{}\n", e.vmm);
    if !e.kvm.is_empty() {
        let _ = writeln!(text, "KVM's counters (vCPU 0, non-zero):");
        for (name, v) in e.kvm.iter().filter(|(_, v)| *v != 0) {
            let _ = writeln!(text, "  {name:<32} {v}");
        }
    }
    text
}

fn devices(d: &DevicesReply) -> String {
    let mut text = String::new();
    if d.devices.is_empty() {
        text.push_str("no virtio devices (vmscope run linux --disk FILE attaches one)\n");
    }
    for d in &d.devices {
        let _ = writeln!(
            text,
            "{}: virtio-{} (id {}) at {:#x} irq {}  status {:#x}  features {:#x}  interrupts {}  refused accesses {}",
            d.index, d.name, d.device_id, d.base, d.irq, d.status, d.features, d.interrupts, d.bad_accesses
        );
        for (q, layout) in d.queues.iter().enumerate() {
            let notes = d.notifications.get(q).copied().unwrap_or(0);
            let _ = match layout {
                Some(l) => writeln!(
                    text,
                    "   queue {q}: size {} desc {} avail {} used {}  notifications {notes}",
                    l.size, l.desc_table, l.avail_ring, l.used_ring
                ),
                None => writeln!(text, "   queue {q}: not set up"),
            };
        }
        let counters: Vec<String> = d.counters.iter().map(|(n, v)| format!("{n} {v}")).collect();
        if !counters.is_empty() {
            let _ = writeln!(text, "   {}", counters.join(", "));
        }
    }
    text
}

fn stop(s: &Stop) -> String {
    // A breakpoint's address is RIP: say it once.
    let what = match s.reason {
        vmm::vstate::vcpu::StopReason::Breakpoint { addr } if addr == s.rip => "breakpoint".into(),
        _ => vmm::report::describe(&s.reason),
    };
    format!("vCPU {} stopped: {what} at {:#x}{}: {}\n", s.vcpu, s.rip, named(&s.symbol), s.instruction)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

fn checkpoint(c: &CheckpointReply) -> String {
    let (t, cp) = (&c.taken, &c.taken.checkpoint);
    let name = if cp.name.is_empty() { String::new() } else { format!(" ({})", cp.name) };
    let rip = cp.rips.get(c.vcpu).copied().unwrap_or_default();
    format!(
        "checkpoint {}{name}: vCPU {} at {rip:#x}{}; {} pages changed of {}, keeps {} (all checkpoints {} of {}), {:.1} ms\n",
        cp.number,
        c.vcpu,
        named(&c.symbol),
        cp.pages,
        t.scanned_pages,
        mib(cp.bytes),
        mib(t.kept_bytes),
        mib(t.limit_bytes),
        t.elapsed_us as f64 / 1e3
    )
}

fn checkpoints(c: &CheckpointsReply) -> String {
    let l = &c.listing;
    if l.checkpoints.is_empty() {
        return "no checkpoints (`checkpoint [NAME]` takes one at a stop)\n".into();
    }
    let mut text = format!(
        "  {:>3}  {:<12} {:<40} {:>12} {:>11} {:>8} {:>10}\n",
        "#",
        "name",
        format!("rip (vCPU {})", c.vcpu),
        "guest time",
        "exits",
        "pages",
        "kept"
    );
    for (cp, symbol) in l.checkpoints.iter().zip(c.symbols.iter().chain(std::iter::repeat(&None))) {
        let rip = cp.rips.get(c.vcpu).copied().unwrap_or_default();
        let time = cp.guest_ns_since.map_or("?".into(), |ns| format!("{:+.3} s", ns as f64 / 1e9));
        let name = if cp.name.is_empty() { "-" } else { &cp.name };
        let _ = writeln!(
            text,
            "{} {:>3}  {:<12} {:<40} {:>12} {:>11} {:>8} {:>10}",
            if cp.current { "*" } else { " " },
            cp.number,
            name,
            format!("{rip:#x}{}", named(symbol)),
            time,
            cp.exits_since,
            cp.pages,
            mib(cp.bytes)
        );
    }
    let _ = writeln!(
        text,
        "(* the guest's memory comes from it; guest time and exits are since each was taken) kept {} of {}",
        mib(l.kept_bytes),
        mib(l.limit_bytes)
    );
    text
}

fn rewind(r: &RewindReply) -> String {
    let w = &r.rewound;
    let rip = w.rips.get(r.vcpu).copied().unwrap_or_default();
    let mut text = format!(
        "rewound to checkpoint {}: {} pages written back, vCPUs and devices restored in {:.1} ms\nvCPU {} at {rip:#x}{}: {}\n",
        w.number,
        w.pages_written,
        w.elapsed_us as f64 / 1e3,
        r.vcpu,
        named(&r.symbol),
        r.instruction
    );
    for n in &w.notes {
        let _ = writeln!(text, "note: {n}");
    }
    text
}
