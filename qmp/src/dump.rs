//! `dump-guest-memory`: the guest's memory and registers as an ELF core file
//! (`inspect::vmcore`), taken with the vCPUs paused (and resumed afterwards if they ran), as
//! QEMU does. `paging: false` writes every RAM range at its physical address (`p_vaddr` 0);
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
