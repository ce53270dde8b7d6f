//! `dump-guest-memory`: the guest's memory and registers as an ELF core file
//! (`inspect::vmcore`), taken with the vCPUs paused (and resumed afterwards if they ran), as
//! QEMU does. `paging: false` writes every RAM range at its physical address (`p_vaddr` 0,
//! or for a Linux guest the range's direct-map address, as the kernel's /proc/vmcore has it);
//! `paging: true` writes what vCPU 0's page tables map, each range at its linear address.
//! `begin`/`length` keep only that guest-physical window.

use crate::guest::Guest;
use inspect::paging;
use inspect::vmcore::{self, vmcoreinfo, CoreLayout, CpuRegs, Load};
use std::io::Write;

/// What to dump.
#[derive(Clone, Copy, Debug, Default)]
pub struct DumpRequest {
    /// Write linear addresses from vCPU 0's page tables.
    pub paging: bool,
    /// Only guest-physical `[begin, begin + length)`.
    pub filter: Option<(u64, u64)>,
}

/// What a dump wrote.
#[derive(Clone, Debug)]
pub struct DumpReport {
    /// Bytes written.
    pub bytes: u64,
    /// Memory bytes in the `PT_LOAD`s.
    pub memory: u64,
    /// Where the VMCOREINFO came from, if there is one.
    pub vmcoreinfo: Option<vmcoreinfo::Source>,
}

/// Errors of a dump.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// A vCPU did not answer.
    #[error("cannot read the vCPUs' registers: {0}")]
    Vcpu(String),
    /// The core writer failed.
    #[error(transparent)]
    Write(#[from] vmcore::VmcoreError),
    /// Nothing to dump.
    #[error("no guest memory lies in the range {begin:#x}+{length:#x}")]
    Empty {
        /// `begin`.
        begin: u64,
        /// `length`.
        length: u64,
    },
}

/// The layout of the core file for `req` (the vCPUs must be paused).
pub fn layout(guest: &Guest<'_>, req: DumpRequest) -> Result<CoreLayout, DumpError> {
    let mut cpus = Vec::with_capacity(guest.vcpu_count());
    for i in 0..guest.vcpu_count() {
        let (regs, sregs) = guest.regs(i).map_err(DumpError::Vcpu)?;
        cpus.push(CpuRegs { regs, sregs });
    }
    let ram = guest.ram();
    let loads = if req.paging {
        let ctx = paging::PagingContext::from_sregs(&cpus[0].sregs);
        virtual_loads(&paging::mappings(&guest.phys(), &ctx).mappings, &ram, req.filter)
    } else {
        vmcore::physical_loads(&ram, req.filter)
    };
    if let (true, Some((begin, length))) = (loads.is_empty(), req.filter) {
        return Err(DumpError::Empty { begin, length });
    }
    let info = vmcoreinfo::for_linux(&guest.phys(), guest.symbols());
    let mut loads = loads;
    if let (false, Some(info)) = (req.paging, &info) {
        // A Linux guest's RAM at its direct-map address, as the kernel's /proc/vmcore has
        // it: with QEMU's p_vaddr 0, drgn reads a user address below the RAM size from
        // physical memory (a stack trace runs on into user space with wrong frames).
        for l in &mut loads {
            l.vaddr = info.page_offset.wrapping_add(l.paddr);
        }
    }
    Ok(CoreLayout { cpus, loads, vmcoreinfo: info.map(|i| i.text) })
}

/// The mapped ranges backed by RAM (inside the filter), each at its linear address.
fn virtual_loads(maps: &[paging::Mapping], ram: &[(u64, u64)], filter: Option<(u64, u64)>) -> Vec<Load> {
    let mut out = Vec::new();
    for m in maps {
        for l in vmcore::physical_loads(ram, Some((m.gpa.0, m.size))) {
            for l in vmcore::physical_loads(&[(l.paddr, l.len)], filter) {
                out.push(Load { paddr: l.paddr, vaddr: m.gva.0.wrapping_add(l.paddr - m.gpa.0), len: l.len });
                if out.len() == vmcore::MAX_LOADS {
                    return out;
                }
            }
        }
    }
    out
}

/// Writes the dump for `req` to `out` (the vCPUs must be paused).
pub fn write(guest: &Guest<'_>, req: DumpRequest, out: &mut dyn Write) -> Result<DumpReport, DumpError> {
    let layout = layout(guest, req)?;
    let source = layout.vmcoreinfo.as_ref().map(|text| {
        if text.ends_with(b"=guest\n") {
            vmcoreinfo::Source::Guest
        } else {
            vmcoreinfo::Source::Derived
        }
    });
    let mut w = std::io::BufWriter::with_capacity(1 << 20, out);
    let bytes = vmcore::write_core(&mut w, &layout, &guest.phys())?;
    Ok(DumpReport { bytes, memory: layout.loads.iter().map(|l| l.len).sum(), vmcoreinfo: source })
}

/// What `dump FILE` wrote, for a frontend to show.
#[derive(Clone, Debug)]
pub struct LineReply {
    /// For people.
    pub text: String,
    /// For programs (`--json`).
    pub json: serde_json::Value,
}

/// `dump FILE` (a line of a debug session, the TUI's prompt or gdb's `monitor`): an ELF core
/// of the whole guest to FILE (created 0600, or truncated), with the VMCOREINFO of a Linux
/// guest. vCPUs that run are paused for it and resumed; a guest a debugger holds stopped
/// stays stopped (no pause is sent, so the debugger sees no stop of its own). `None` when
/// `line` is not a dump command.
pub fn execute_line(
    machine: &vmm::machine::Machine,
    symbols: &inspect::symbols::SymbolTable,
    line: &str,
) -> Option<Result<LineReply, String>> {
    let rest = line.trim().strip_prefix("dump")?;
    if !rest.is_empty() && !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let path = rest.trim();
    if path.is_empty() {
        return Some(Err("dump: give a file, e.g. `dump /tmp/vmcore`".into()));
    }
    Some(dump_to_path(machine, symbols, path))
}

fn dump_to_path(
    machine: &vmm::machine::Machine,
    symbols: &inspect::symbols::SymbolTable,
    path: &str,
) -> Result<LineReply, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let guest = Guest::with_symbols(machine, symbols);
    let was_running = guest.running();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("dump: cannot create {path}: {e}"))?;
    if was_running {
        guest.stop()?;
    }
    let r = write(&guest, DumpRequest::default(), &mut file);
    if was_running {
        guest.cont()?;
    }
    let report = r.map_err(|e| format!("dump: {path}: {e}"))?;
    let info = match report.vmcoreinfo {
        Some(s) => format!(", VMCOREINFO {}", s.name()),
        None => String::new(),
    };
    let text = format!(
        "wrote {path}: {} bytes ({} of guest memory, {} vCPU(s){info})\n",
        report.bytes,
        report.memory,
        guest.vcpu_count()
    );
    let json = serde_json::json!({"dump": path, "bytes": report.bytes, "memory": report.memory, "vmcoreinfo": report.vmcoreinfo.map(|s| s.name())});
    Ok(LineReply { text, json })
}
