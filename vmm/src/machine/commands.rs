//! Executing the inspection command language (`inspect::command`) against a machine:
//! each command produces text for people and JSON for scripts. Stepping and continuing
//! wait for the vCPU's next stop (with a time limit).
//!
//! Every count and length is checked against the limits of `inspect::command` before
//! anything is read or allocated ([`Command::check_limits`], also for commands that did not
//! come through the parser), addresses given as symbols or registers are checked for
//! wrapping once resolved, and what a guest's page tables can make long (the mappings
//! listing) is shown up to [`MAX_LISTED_MAPPINGS`].

use super::{HwBreakpoint, HwKind, Machine, MachineError, Outcome};
use crate::vstate::memory::PhysView;
use crate::vstate::vcpu::{StopReason, VcpuEventKind, VcpuSnapshot};
use inspect::command::{check_range, Addr, Command, LimitError, HELP, MAX_INSN_LEN};
use inspect::disasm::{self, Options};
use inspect::paging;
use inspect::symbols::SymbolTable;
use inspect::{Gpa, Gva};
use serde_json::{json, Value};
use std::fmt::Write;
use std::time::Duration;

/// The most mappings `mappings` lists: 4096. A guest's page tables can alias one table
/// under every entry and so describe millions of ranges (the walk itself stops at
/// `inspect::paging::MAX_ENTRIES` entries); more than a few thousand lines is not a listing a
/// person or a gdb `monitor` reply can use. The total is shown beside the cut.
pub const MAX_LISTED_MAPPINGS: usize = 4096;

/// The most software watchpoints a session keeps: 16. On PVM each one is read back after
/// every single-stepped instruction of `cont`, so a long list slows it to a crawl; real
/// hardware has four slots (DR0-DR3).
pub const MAX_SOFT_WATCHES: usize = 16;

/// What a command produced.
#[derive(Debug)]
pub struct Output {
    /// For people.
    pub text: String,
    /// For scripts.
    pub json: Value,
    /// The guest ended (exit code or fault); the session should end.
    pub ended: Option<Outcome>,
}

impl Output {
    fn new(text: String, json: Value) -> Self {
        Self { text, json, ended: None }
    }
}

/// Errors of a command that the guest did not cause (unknown symbol, bad register…).
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// A symbol that is not in the table.
    #[error("no symbol named {0:?}")]
    NoSymbol(String),
    /// A register name that does not exist.
    #[error("no register ${0}")]
    NoRegister(String),
    /// The vCPU did not stop in time.
    #[error("vCPU {vcpu} did not stop within {limit:?}")]
    NoStop {
        /// Which.
        vcpu: usize,
        /// The limit.
        limit: Duration,
    },
    /// No virtio device with that index.
    #[error("this guest has no virtio device {0} (`devices` lists them)")]
    NoDevice(u64),
    /// The device has no such queue, or the driver has not set it up.
    #[error("virtio device {device} has no queue {queue} set up by its driver")]
    NoQueue {
        /// The device.
        device: u64,
        /// The queue.
        queue: u64,
    },
    /// A count, length or address over its limit, or a range that wraps.
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// Too many software watchpoints.
    #[error("watch: {MAX_SOFT_WATCHES} software watchpoints are set, the limit (delete one first)")]
    TooManyWatches,
    /// The queue's rings cannot be read.
    #[error(transparent)]
    Queue(#[from] inspect::virtqueue::QueueError),
    /// The machine.
    #[error(transparent)]
    Machine(#[from] MachineError),
}

/// A debugging session's context: which vCPU, which symbols, how long to wait.
pub struct Session<'a> {
    /// The machine.
    pub machine: &'a Machine,
    /// The vCPU commands act on.
    pub vcpu: usize,
    /// Symbols for names in addresses and disassembly.
    pub symbols: &'a SymbolTable,
    /// How long `step`/`cont` wait for the next stop.
    pub stop_timeout: Duration,
    /// Software watchpoints: (address, length). Used where hardware watchpoints do not
    /// fire (PVM: its instruction emulator does not check data breakpoints), as gdb does:
    /// `cont` single-steps and compares the watched bytes after every instruction.
    pub soft_watches: std::cell::RefCell<Vec<(u64, u64)>>,
    /// Which decoder `dis` uses (iced-x86 by default, capstone as a second opinion).
    pub decoder: inspect::disasm::Decoder,
}

impl<'a> Session<'a> {
    /// A session on vCPU 0.
    pub fn new(machine: &'a Machine, symbols: &'a SymbolTable, stop_timeout: Duration) -> Self {
        Self {
            machine,
            vcpu: 0,
            symbols,
            stop_timeout,
            soft_watches: Default::default(),
            decoder: Default::default(),
        }
    }
}

fn register(snap: &VcpuSnapshot, name: &str) -> Option<u64> {
    let r = &snap.regs;
    let s = &snap.sregs;
    Some(match name {
        "rip" | "pc" => r.rip,
        "rsp" | "sp" => r.rsp,
        "rbp" => r.rbp,
        "rax" => r.rax,
        "rbx" => r.rbx,
        "rcx" => r.rcx,
        "rdx" => r.rdx,
        "rsi" => r.rsi,
        "rdi" => r.rdi,
        "r8" => r.r8,
        "r9" => r.r9,
        "r10" => r.r10,
        "r11" => r.r11,
        "r12" => r.r12,
        "r13" => r.r13,
        "r14" => r.r14,
        "r15" => r.r15,
        "rflags" | "eflags" => r.rflags,
        "cr0" => s.cr0,
        "cr2" => s.cr2,
        "cr3" => s.cr3,
        "cr4" => s.cr4,
        _ => return None,
    })
}

fn hex_dump(base: u64, bytes: &[u8]) -> String {
    let mut out = String::new();
    for (i, chunk) in bytes.chunks(16).enumerate() {
        let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
        let ascii: String =
            chunk.iter().map(|&b| if (0x20..0x7f).contains(&b) { b as char } else { '.' }).collect();
        let _ = writeln!(out, "{:016x}  {:<48} {ascii}", base.wrapping_add(i as u64 * 16), hex.join(" "));
    }
    out
}

impl Session<'_> {
    fn snapshot(&self) -> Result<VcpuSnapshot, CommandError> {
        Ok(self.machine.snapshot(self.vcpu)?)
    }

    /// Resolves a typed address (a base plus an offset that wraps past `u64::MAX` is an
    /// error).
    pub fn resolve(&self, addr: &Addr) -> Result<u64, CommandError> {
        let plus = |what: String, base: u64, off: u64| {
            base.checked_add(off).ok_or_else(|| {
                LimitError(format!(
                    "{what} ({base:#x}) + {off:#x} runs past the end of the address space ({:#x})",
                    u64::MAX
                ))
            })
        };
        match addr {
            Addr::Number(n) => Ok(*n),
            Addr::Symbol(name, off) => {
                let base = self.symbols.resolve(name).ok_or_else(|| CommandError::NoSymbol(name.clone()))?;
                Ok(plus(name.clone(), base, *off)?)
            }
            Addr::Register(name, off) => {
                let snap = self.snapshot()?;
                let base = register(&snap, name).ok_or_else(|| CommandError::NoRegister(name.clone()))?;
                Ok(plus(format!("${name}"), base, *off)?)
            }
        }
    }

    fn name_of(&self, addr: u64) -> String {
        self.symbols.locate(addr).map(|l| format!(" <{l}>")).unwrap_or_default()
    }

    /// Runs one command.
    pub fn execute(&self, cmd: &Command) -> Result<Output, CommandError> {
        cmd.check_limits()?;
        match cmd {
            Command::Regs => {
                let s = self.snapshot()?;
                let r = &s.regs;
                let text = format!(
                    "rip {:#018x}{}\nrsp {:#018x} rbp {:#018x} rflags {:#x}\nrax {:#018x} rbx {:#018x} rcx {:#018x} rdx {:#018x}\nrsi {:#018x} rdi {:#018x} r8  {:#018x} r9  {:#018x}\nr10 {:#018x} r11 {:#018x} r12 {:#018x} r13 {:#018x}\nr14 {:#018x} r15 {:#018x}\n",
                    r.rip, self.name_of(r.rip), r.rsp, r.rbp, r.rflags, r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15
                );
                Ok(Output::new(text, json!({ "vcpu": self.vcpu, "regs": r, "host": s.host })))
            }
            Command::Sregs => {
                let s = self.snapshot()?;
                let sr = &s.sregs;
                let text = format!(
                    "cr0 {:#x} cr2 {:#x} cr3 {:#x} cr4 {:#x} cr8 {:#x} efer {:#x}\nmode {:?}, CPL {}\ncs {:#06x} ss {:#06x} ds {:#06x} tr {:#06x}\ngdt {:#x}/{:#x} idt {:#x}/{:#x}\n",
                    sr.cr0, sr.cr2, sr.cr3, sr.cr4, sr.cr8, sr.efer, sr.cpu_mode(), sr.cpl(), sr.cs.selector, sr.ss.selector, sr.ds.selector, sr.tr.selector, sr.gdt.base, sr.gdt.limit, sr.idt.base, sr.idt.limit
                );
                Ok(Output::new(
                    text,
                    json!({ "vcpu": self.vcpu, "sregs": sr, "mode": sr.cpu_mode(), "cpl": sr.cpl(), "host": s.host }),
                ))
            }
            Command::Pt { addr: a, host } => {
                let addr = self.resolve(a)?;
                let ctx = self.machine.paging_context(self.vcpu)?;
                match paging::translate(&PhysView(self.machine.memory()), &ctx, Gva(addr)) {
                    Ok(mut t) => Ok({
                        // The VMM's own addresses only when asked (`pt --host`).
                        if !host {
                            t.host = None;
                        }
                        Output::new(format!("{t}\n"), json!({ "translation": t, "mode": ctx.mode }))
                    }),
                    Err(e) => Ok(Output::new(
                        format!("{e}\n"),
                        json!({ "error": e.to_string(), "walk_error": e, "mode": ctx.mode }),
                    )),
                }
            }
            Command::Mappings => {
                let ctx = self.machine.paging_context(self.vcpu)?;
                let mut list = paging::mappings(&PhysView(self.machine.memory()), &ctx);
                let total = list.mappings.len();
                list.mappings.truncate(MAX_LISTED_MAPPINGS);
                let mut text = format!("{list}\n");
                if total > MAX_LISTED_MAPPINGS {
                    let _ = writeln!(
                        text,
                        "(listed the first {MAX_LISTED_MAPPINGS} of {total} ranges, the limit; `pt ADDR` walks any one address)"
                    );
                }
                Ok(Output::new(
                    text,
                    json!({ "mode": ctx.mode, "cr3": ctx.cr3, "mappings": list, "ranges_total": total, "ranges_listed": list.mappings.len() }),
                ))
            }
            Command::ReadVirt { addr, len } => {
                let a = self.resolve(addr)?;
                check_range("x", a, *len)?;
                // `len` is at most MAX_READ_LEN (checked above).
                let bytes = self.machine.read_virt(self.vcpu, Gva(a), *len as usize)?;
                let mut text = hex_dump(a, &bytes);
                if (bytes.len() as u64) < *len {
                    let _ = writeln!(text, "(only {} of {len} bytes are mapped)", bytes.len());
                }
                Ok(Output::new(text, json!({ "gva": a, "requested": len, "bytes": bytes })))
            }
            Command::ReadPhys { addr, len } => {
                let a = self.resolve(addr)?;
                check_range("xp", a, *len)?;
                let bytes = self.machine.read_phys(Gpa(a), *len as usize);
                let mut text = hex_dump(a, &bytes);
                if (bytes.len() as u64) < *len {
                    let _ = writeln!(text, "(only {} of {len} bytes are in guest memory)", bytes.len());
                }
                Ok(Output::new(text, json!({ "gpa": a, "requested": len, "bytes": bytes })))
            }
            Command::Dis { addr, count } => {
                let snap = self.snapshot()?;
                let at = match addr {
                    Some(a) => self.resolve(a)?,
                    None => snap.regs.rip,
                };
                // At most MAX_DIS_COUNT * 15 bytes, and never past the end of the address space.
                let want = count
                    .checked_mul(MAX_INSN_LEN)
                    .ok_or_else(|| LimitError(format!("dis: count {count} is too large")))?
                    .min((u64::MAX - at).saturating_add(1));
                let code = self.machine.read_virt(
                    self.vcpu,
                    Gva(at),
                    usize::try_from(want).unwrap_or(usize::MAX),
                )?;
                let opts = Options { decoder: self.decoder, ..Options::default() };
                let insns = disasm::disassemble(
                    &code,
                    at,
                    snap.sregs.cpu_mode(),
                    *count as usize,
                    opts,
                    self.symbols,
                );
                let mut text = String::new();
                for i in &insns {
                    let marker = if i.address == snap.regs.rip { "=>" } else { "  " };
                    let bp = if self.machine.breakpoints().contains(i.address) { "*" } else { " " };
                    let _ = writeln!(
                        text,
                        "{marker}{bp}{:#018x}{:<28} {}",
                        i.address,
                        self.name_of(i.address),
                        i.text
                    );
                }
                Ok(Output::new(text, json!({ "rip": snap.regs.rip, "instructions": insns })))
            }
            Command::Sym(a) => match a {
                Addr::Symbol(name, _) => {
                    let s = self.symbols.get(name).ok_or_else(|| CommandError::NoSymbol(name.clone()))?;
                    Ok(Output::new(
                        format!("{} = {:#x} (size {:#x}, {:?})\n", s.name, s.addr, s.size, s.kind),
                        json!({ "symbol": s }),
                    ))
                }
                other => {
                    let addr = self.resolve(other)?;
                    let name = self.symbols.locate(addr).map(|l| l.to_string());
                    Ok(Output::new(
                        format!("{addr:#x} = {}\n", name.as_deref().unwrap_or("?")),
                        json!({ "addr": addr, "name": name }),
                    ))
                }
            },
            Command::Break(a) => {
                let addr = self.resolve(a)?;
                self.machine.insert_sw_breakpoint(Gva(addr))?;
                Ok(Output::new(
                    format!("breakpoint at {addr:#x}{}\n", self.name_of(addr)),
                    json!({ "breakpoint": addr }),
                ))
            }
            Command::Hbreak(a) => {
                let addr = self.resolve(a)?;
                self.machine.insert_hw_breakpoint(HwBreakpoint { addr, kind: HwKind::Execute, len: 1 })?;
                Ok(Output::new(
                    format!("hardware breakpoint at {addr:#x}{}\n", self.name_of(addr)),
                    json!({ "hbreak": addr }),
                ))
            }
            Command::Watch { addr, len } => {
                let a = self.resolve(addr)?;
                check_range("watch", a, *len)?;
                if self.machine.host() == inspect::HostKind::Pvm {
                    let mut watches = self.soft_watches.borrow_mut();
                    if !watches.contains(&(a, *len)) {
                        if watches.len() >= MAX_SOFT_WATCHES {
                            return Err(CommandError::TooManyWatches);
                        }
                        watches.push((a, *len));
                    }
                    drop(watches);
                    let text = format!(
                        "watchpoint (write, {len} bytes) at {a:#x}{}, in software: this PVM host does not fire hardware watchpoints, so `cont` single-steps\n",
                        self.name_of(a)
                    );
                    return Ok(Output::new(text, json!({ "watch": a, "len": len, "software": true })));
                }
                self.machine.insert_hw_breakpoint(HwBreakpoint {
                    addr: a,
                    kind: HwKind::Write,
                    len: *len,
                })?;
                Ok(Output::new(
                    format!("watchpoint (write, {len} bytes) at {a:#x}{}\n", self.name_of(a)),
                    json!({ "watch": a, "len": len }),
                ))
            }
            Command::Delete(a) => {
                let addr = self.resolve(a)?;
                let soft = {
                    let mut w = self.soft_watches.borrow_mut();
                    let before = w.len();
                    w.retain(|(a, _)| *a != addr);
                    w.len() != before
                };
                let removed = soft
                    | self.machine.remove_sw_breakpoint(Gva(addr)).is_ok()
                    | self.machine.remove_hw_breakpoint(addr, HwKind::Execute).is_ok()
                    | self.machine.remove_hw_breakpoint(addr, HwKind::Write).is_ok();
                let text =
                    if removed { format!("deleted {addr:#x}\n") } else { format!("nothing at {addr:#x}\n") };
                Ok(Output::new(text, json!({ "deleted": addr, "found": removed })))
            }
            Command::Exits => {
                let stats = self.machine.exit_stats();
                let kvm = self.machine.kvm_stats();
                let mut text = format!("{stats}\n");
                if !kvm.is_empty() {
                    let _ = writeln!(text, "KVM's counters (vCPU 0, non-zero):");
                    for (name, v) in kvm.iter().filter(|(_, v)| *v != 0) {
                        let _ = writeln!(text, "  {name:<32} {v}");
                    }
                }
                Ok(Output::new(text, json!({ "host": self.machine.host(), "vmm": stats, "kvm": kvm })))
            }
            Command::Host => {
                let h = self.machine.host();
                Ok(Output::new(
                    format!("{h}: {}\n", h.describe()),
                    json!({ "host": h, "description": h.describe() }),
                ))
            }
            Command::Devices => {
                let devices = self.machine.bus().mmio().devices();
                let mut text = String::new();
                if devices.is_empty() {
                    text.push_str("no virtio devices (vmscope run linux --disk FILE attaches one)\n");
                }
                for d in &devices {
                    let _ = writeln!(
                        text,
                        "{}: virtio-{} (id {}) at {:#x} irq {}  status {:#x}  features {:#x}  interrupts {}  refused accesses {}",
                        d.index, d.name, d.device_id, d.base, d.irq, d.status, d.features, d.interrupts, d.bad_accesses
                    );
                    for (q, layout) in d.queues.iter().enumerate() {
                        let notes = d.notifications.get(q).copied().unwrap_or(0);
                        match layout {
                            Some(l) => {
                                let _ = writeln!(
                                    text,
                                    "   queue {q}: size {} desc {} avail {} used {}  notifications {notes}",
                                    l.size, l.desc_table, l.avail_ring, l.used_ring
                                );
                            }
                            None => {
                                let _ = writeln!(text, "   queue {q}: not set up");
                            }
                        }
                    }
                    let counters: Vec<String> = d.counters.iter().map(|(n, v)| format!("{n} {v}")).collect();
                    if !counters.is_empty() {
                        let _ = writeln!(text, "   {}", counters.join(", "));
                    }
                }
                Ok(Output::new(text, json!({ "devices": devices })))
            }
            Command::Vq { device, queue } => {
                let devices = self.machine.bus().mmio().devices();
                let d = devices.get(*device as usize).ok_or(CommandError::NoDevice(*device))?;
                let layout = d
                    .queues
                    .get(*queue as usize)
                    .copied()
                    .flatten()
                    .ok_or(CommandError::NoQueue { device: *device, queue: *queue })?;
                let snapshot = inspect::virtqueue::decode(&PhysView(self.machine.memory()), &layout)?;
                let text = format!("virtio-{} queue {queue}: {snapshot}", d.name);
                Ok(Output::new(
                    text,
                    json!({ "device": d, "queue": queue, "layout": layout, "snapshot": snapshot }),
                ))
            }
            Command::Help => {
                let text: String = HELP.iter().map(|(c, d)| format!("  {c:<18} {d}\n")).collect();
                Ok(Output::new(
                    text,
                    json!({ "commands": HELP.iter().map(|(c, d)| json!({"command": c, "help": d})).collect::<Vec<_>>() }),
                ))
            }
            Command::Step(n) => {
                self.machine.step(self.vcpu, *n)?;
                self.await_stop()
            }
            Command::Next => {
                let snap = self.snapshot()?;
                let code = self.machine.read_virt(self.vcpu, Gva(snap.regs.rip), 15)?;
                match disasm::step_over_target(&code, snap.regs.rip, snap.sregs.cpu_mode()) {
                    Some(after) => {
                        let temporary = !self.machine.breakpoints().contains(after);
                        if temporary {
                            self.machine.insert_sw_breakpoint(Gva(after))?;
                        }
                        self.machine.resume_all()?;
                        let out = self.await_stop();
                        if temporary {
                            let _ = self.machine.remove_sw_breakpoint(Gva(after));
                        }
                        out
                    }
                    None => {
                        self.machine.step(self.vcpu, 1)?;
                        self.await_stop()
                    }
                }
            }
            Command::Cont if !self.soft_watches.borrow().is_empty() => self.cont_watching(),
            Command::Cont => {
                self.machine.resume_all()?;
                self.await_stop()
            }
            Command::Quit => Ok(Output::new(String::new(), json!({ "quit": true }))),
        }
    }

    fn watched_bytes(&self) -> Result<Vec<Vec<u8>>, CommandError> {
        let watches = self.soft_watches.borrow().clone();
        watches.iter().map(|(a, l)| Ok(self.machine.read_virt(self.vcpu, Gva(*a), *l as usize)?)).collect()
    }

    /// `cont` with software watchpoints: step until a watched value changes, a breakpoint
    /// is reached, or the guest stops for another reason.
    fn cont_watching(&self) -> Result<Output, CommandError> {
        let mut before = self.watched_bytes()?;
        loop {
            self.machine.step(self.vcpu, 1)?;
            let out = self.await_stop()?;
            if out.ended.is_some() || !matches!(out.json["stop"], Value::String(ref s) if s == "step") {
                return Ok(out);
            }
            let now = self.watched_bytes()?;
            if let Some(i) = (0..now.len()).find(|&i| now[i] != before[i]) {
                let (addr, _) = self.soft_watches.borrow()[i];
                let le = |b: &[u8]| b.iter().rev().fold(0u128, |acc, x| (acc << 8) | u128::from(*x));
                let (old, new) = (le(&before[i]), le(&now[i]));
                let text = format!(
                    "watchpoint at {addr:#x}{}: {old:#x} -> {new:#x}\n{}",
                    self.name_of(addr),
                    out.text
                );
                let json = json!({ "watchpoint": addr, "old": old.to_string(), "new": new.to_string(), "stop": out.json });
                return Ok(Output::new(text, json));
            }
            let rip = out.json["rip"].as_u64().unwrap_or(0);
            if self.machine.breakpoints().contains(rip) {
                return Ok(out);
            }
            before = now;
        }
    }

    /// Waits for the next stop of any vCPU, pauses the others, and describes it.
    pub fn await_stop(&self) -> Result<Output, CommandError> {
        loop {
            let Some(event) = self.machine.next_event(self.stop_timeout) else {
                self.machine.pause_all();
                return Err(CommandError::NoStop { vcpu: self.vcpu, limit: self.stop_timeout });
            };
            let VcpuEventKind::Stopped { reason, snapshot } = event.kind else { continue };
            if matches!(reason, StopReason::Paused) {
                continue;
            }
            self.machine.pause_all();
            let rip = snapshot.regs.rip;
            let insn = self
                .machine
                .read_virt(event.vcpu, Gva(rip), 15)
                .map(|code| disasm::decode_one(&code, rip, snapshot.sregs.cpu_mode()).text)
                .unwrap_or_default();
            // A breakpoint's address is RIP: say it once.
            let what = match reason {
                StopReason::Breakpoint { addr } if addr == rip => "breakpoint".into(),
                _ => crate::report::describe(&reason),
            };
            let text =
                format!("vCPU {} stopped: {what} at {rip:#x}{}: {insn}\n", event.vcpu, self.name_of(rip));
            let json = json!({ "vcpu": event.vcpu, "stop": reason, "rip": rip, "symbol": self.symbols.locate(rip).map(|l| l.to_string()), "instruction": insn });
            let ended = Outcome::from_stop(&reason, &snapshot);
            return Ok(Output { text, json, ended });
        }
    }
}
