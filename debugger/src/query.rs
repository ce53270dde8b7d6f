//! Typed queries of a stopped (or running) guest: registers, memory, page walks, mappings,
//! disassembly, symbols, exits, devices and virtqueues. Each reads through the machine's
//! public methods and returns a [`Reply`]; none formats text.
//!
//! Every count and length was checked against the limits of `inspect::command` before a
//! query runs (`Command::check_limits` in [`Debugger::execute`]); addresses given as symbols
//! or registers are checked for wrapping once resolved here, and what a guest's page tables
//! can make long (the mappings listing) is cut at [`MAX_LISTED_MAPPINGS`].

use crate::reply::*;
use crate::{Debugger, DebuggerError};
use inspect::command::{check_range, Addr, LimitError, HELP, MAX_INSN_LEN};
use inspect::disasm::{self, Options};
use inspect::paging;
use inspect::{Gpa, Gva};
use vmm::vstate::memory::PhysView;
use vmm::vstate::vcpu::VcpuSnapshot;

/// The most mappings `mappings` lists: 4096. A guest's page tables can alias one table
/// under every entry and so describe millions of ranges (the walk itself stops at
/// `inspect::paging::MAX_ENTRIES` entries); more than a few thousand lines is not a listing a
/// person or a gdb `monitor` reply can use. The total is shown beside the cut.
pub const MAX_LISTED_MAPPINGS: usize = 4096;

/// Register `name` (as the command language spells it) of a snapshot.
fn register(snap: &VcpuSnapshot, name: &str) -> Option<u64> {
    let (r, s) = (&snap.regs, &snap.sregs);
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

/// `base + off`, or an error naming `what` when it runs past the end of the address space.
fn plus(what: String, base: u64, off: u64) -> Result<u64, LimitError> {
    base.checked_add(off).ok_or_else(|| {
        LimitError(format!(
            "{what} ({base:#x}) + {off:#x} runs past the end of the address space ({:#x})",
            u64::MAX
        ))
    })
}

impl Debugger<'_> {
    pub(crate) fn snapshot(&self) -> Result<VcpuSnapshot, DebuggerError> {
        Ok(self.machine.snapshot(self.vcpu)?)
    }

    /// `symbol+offset` of `addr`, when a symbol holds it.
    pub(crate) fn symbol_of(&self, addr: u64) -> Option<String> {
        self.symbols.locate(addr).map(|l| l.to_string())
    }

    /// Resolves a typed address (a base plus an offset that wraps past `u64::MAX` is an
    /// error).
    pub fn resolve(&self, addr: &Addr) -> Result<u64, DebuggerError> {
        match addr {
            Addr::Number(n) => Ok(*n),
            Addr::Symbol(name, off) => {
                let base = self.symbols.resolve(name).ok_or_else(|| DebuggerError::NoSymbol(name.clone()))?;
                Ok(plus(name.clone(), base, *off)?)
            }
            Addr::Register(name, off) => {
                let snap = self.snapshot()?;
                let base = register(&snap, name).ok_or_else(|| DebuggerError::NoRegister(name.clone()))?;
                Ok(plus(format!("${name}"), base, *off)?)
            }
        }
    }

    pub(crate) fn regs(&self) -> Result<Reply, DebuggerError> {
        let s = self.snapshot()?;
        let rip_symbol = self.symbol_of(s.regs.rip);
        Ok(Reply::Regs(Box::new(RegsReply { vcpu: self.vcpu, regs: s.regs, host: s.host, rip_symbol })))
    }

    pub(crate) fn sregs(&self) -> Result<Reply, DebuggerError> {
        let s = self.snapshot()?;
        let (mode, cpl) = (s.sregs.cpu_mode(), s.sregs.cpl());
        Ok(Reply::Sregs(Box::new(SregsReply { vcpu: self.vcpu, sregs: s.sregs, mode, cpl, host: s.host })))
    }

    /// `pt ADDR`; the VMM's own addresses only when asked (`pt --host`).
    pub(crate) fn page_walk(&self, addr: &Addr, host: bool) -> Result<Reply, DebuggerError> {
        let addr = self.resolve(addr)?;
        let ctx = self.machine.paging_context(self.vcpu)?;
        Ok(match paging::translate(&PhysView(self.machine.memory()), &ctx, Gva(addr)) {
            Ok(mut translation) => {
                if !host {
                    translation.host = None;
                }
                Reply::Translation(Box::new(TranslationReply { translation, mode: ctx.mode }))
            }
            Err(e) => Reply::WalkFailed(Box::new(WalkFailedReply {
                error: e.to_string(),
                walk_error: e,
                mode: ctx.mode,
            })),
        })
    }

    pub(crate) fn mappings(&self) -> Result<Reply, DebuggerError> {
        let ctx = self.machine.paging_context(self.vcpu)?;
        let mut mappings = paging::mappings(&PhysView(self.machine.memory()), &ctx);
        let ranges_total = mappings.mappings.len();
        mappings.mappings.truncate(MAX_LISTED_MAPPINGS);
        let ranges_listed = mappings.mappings.len();
        Ok(Reply::Mappings(MappingsReply {
            mode: ctx.mode,
            cr3: ctx.cr3,
            mappings,
            ranges_total,
            ranges_listed,
        }))
    }

    pub(crate) fn read_virt(&self, addr: &Addr, len: u64) -> Result<Reply, DebuggerError> {
        let gva = self.resolve(addr)?;
        check_range("x", gva, len)?;
        // `len` is at most MAX_READ_LEN (checked by `execute`).
        let bytes = self.machine.read_virt(self.vcpu, Gva(gva), len as usize)?;
        Ok(Reply::VirtMemory(VirtMemoryReply { gva, requested: len, bytes }))
    }

    pub(crate) fn read_phys(&self, addr: &Addr, len: u64) -> Result<Reply, DebuggerError> {
        let gpa = self.resolve(addr)?;
        check_range("xp", gpa, len)?;
        let bytes = self.machine.read_phys(Gpa(gpa), len as usize);
        Ok(Reply::PhysMemory(PhysMemoryReply { gpa, requested: len, bytes }))
    }

    pub(crate) fn disassemble(&self, addr: Option<&Addr>, count: u64) -> Result<Reply, DebuggerError> {
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
        let code = self.machine.read_virt(self.vcpu, Gva(at), usize::try_from(want).unwrap_or(usize::MAX))?;
        let opts = Options { decoder: self.decoder, ..Options::default() };
        let mode = snap.sregs.cpu_mode();
        let instructions = disasm::disassemble(&code, at, mode, count as usize, opts, self.symbols);
        let notes = instructions
            .iter()
            .map(|i| LineNote {
                symbol: self.symbol_of(i.address),
                breakpoint: self.machine.breakpoints().contains(i.address),
            })
            .collect();
        Ok(Reply::Disassembly(DisassemblyReply { rip: snap.regs.rip, instructions, notes }))
    }

    pub(crate) fn symbol(&self, addr: &Addr) -> Result<Reply, DebuggerError> {
        if let Addr::Symbol(name, _) = addr {
            let s = self.symbols.get(name).ok_or_else(|| DebuggerError::NoSymbol(name.clone()))?;
            return Ok(Reply::Symbol(SymbolReply { symbol: s.clone() }));
        }
        let addr = self.resolve(addr)?;
        Ok(Reply::Address(AddressReply { addr, name: self.symbol_of(addr) }))
    }

    pub(crate) fn exits(&self) -> Reply {
        let (host, vmm, kvm) = (self.machine.host(), self.machine.exit_stats(), self.machine.kvm_stats());
        Reply::Exits(Box::new(ExitsReply { host, vmm, kvm }))
    }

    pub(crate) fn host(&self) -> Reply {
        let host = self.machine.host();
        Reply::Host(HostReply { host, description: host.describe() })
    }

    pub(crate) fn devices(&self) -> Reply {
        Reply::Devices(DevicesReply { devices: self.machine.virtio_devices() })
    }

    pub(crate) fn virtqueue(&self, device: u64, queue: u64) -> Result<Reply, DebuggerError> {
        let d = usize::try_from(device)
            .ok()
            .and_then(|i| self.machine.virtio_devices().into_iter().nth(i))
            .ok_or(DebuggerError::NoDevice(device))?;
        let layout = usize::try_from(queue)
            .ok()
            .and_then(|q| d.queues.get(q).copied().flatten())
            .ok_or(DebuggerError::NoQueue { device, queue })?;
        let snapshot = inspect::virtqueue::decode(&PhysView(self.machine.memory()), &layout)?;
        Ok(Reply::Queue(Box::new(QueueReply { device: d, queue, layout, snapshot })))
    }

    pub(crate) fn help() -> Reply {
        let commands = HELP.iter().map(|&(command, help)| HelpEntry { command, help }).collect();
        Reply::Help(HelpReply { commands })
    }
}
