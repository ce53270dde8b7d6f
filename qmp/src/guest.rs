//! What the QMP thread may touch of a running machine: guest memory, and each vCPU through
//! its handle (pause, resume, snapshot). A `Machine` cannot cross threads (its event channel
//! belongs to the thread that waits for the guest), so the frontend builds this view from it
//! and keeps the machine; stops the QMP thread asks for show up there as `Paused` stops,
//! which [`crate::wait_for_guest`] lets pass.

use inspect::paging::PagingContext;
use inspect::regs::{Regs, SpecialRegs};
use inspect::symbols::SymbolTable;
use inspect::{Gpa, GuestPhysMemory};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};
use vmm::machine::Machine;
use vmm::vstate::memory::{GuestMemory, PhysView};
use vmm::vstate::vcpu::{RunState, VcpuHandle, VcpuRequest, VcpuSnapshot};

/// Where the guest's symbols come from (read the first time a dump needs them: a Linux
/// vmlinux with DWARF is large).
#[derive(Clone, Debug)]
pub enum SymbolSource {
    /// No symbols.
    None,
    /// An ELF image in memory.
    Elf(String, Arc<[u8]>),
    /// An ELF file.
    File(PathBuf),
}

/// The parts of a machine the QMP thread uses.
pub struct Guest<'a> {
    pub(crate) mem: &'a GuestMemory,
    vcpus: Vec<&'a VcpuHandle>,
    runnable: usize,
    name: String,
    symbols: SymbolSource,
    loaded: OnceLock<SymbolTable>,
    borrowed: Option<&'a SymbolTable>,
    mmio: Vec<(u64, u64, String)>,
}

impl<'a> Guest<'a> {
    /// The view of `machine`, with its symbols.
    pub fn new(machine: &'a Machine, symbols: SymbolSource) -> Self {
        let vcpus = (0..machine.vcpu_count()).filter_map(|i| machine.vcpu(i).ok()).collect();
        let mmio = machine
            .virtio_devices()
            .iter()
            .map(|d| {
                (
                    d.base,
                    vmm::devices::virtio::mmio::MMIO_WINDOW,
                    format!("virtio-mmio.{} (virtio-{})", d.index, d.name),
                )
            })
            .collect();
        Self {
            mem: machine.memory(),
            vcpus,
            runnable: machine.runnable_vcpus(),
            name: machine.name().to_string(),
            symbols,
            loaded: OnceLock::new(),
            borrowed: None,
            mmio,
        }
    }

    /// The view of `machine` with symbols already loaded (a session's).
    pub fn with_symbols(machine: &'a Machine, symbols: &'a SymbolTable) -> Self {
        Self { borrowed: Some(symbols), ..Self::new(machine, SymbolSource::None) }
    }

    /// The guest's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of vCPUs.
    pub fn vcpu_count(&self) -> usize {
        self.vcpus.len()
    }

    /// Guest memory for `inspect`.
    pub fn phys(&self) -> PhysView<'a> {
        PhysView(self.mem)
    }

    /// The RAM ranges: (first guest-physical address, length).
    pub fn ram(&self) -> Vec<(u64, u64)> {
        self.mem.iter().map(|r| (r.start_addr().0, r.len())).collect()
    }

    /// The virtio-mmio windows: (base, size, name).
    pub fn mmio(&self) -> &[(u64, u64, String)] {
        &self.mmio
    }

    /// The symbols, loaded on first use (an unreadable file gives none).
    pub fn symbols(&self) -> &SymbolTable {
        if let Some(s) = self.borrowed {
            return s;
        }
        self.loaded.get_or_init(|| match &self.symbols {
            SymbolSource::None => SymbolTable::default(),
            SymbolSource::Elf(name, bytes) => SymbolTable::from_elf(name, bytes).unwrap_or_default(),
            SymbolSource::File(p) => SymbolTable::from_elf_file(p).unwrap_or_default(),
        })
    }

    /// A snapshot of vCPU `i`.
    pub fn snapshot(&self, i: usize) -> Result<VcpuSnapshot, String> {
        let v = self.vcpus.get(i).ok_or_else(|| format!("there is no vCPU {i}"))?;
        v.ask(VcpuRequest::Snapshot).map_err(|e| e.to_string())
    }

    /// Whether vCPU 0 is running guest code.
    pub fn running(&self) -> bool {
        self.snapshot(0).is_ok_and(|s| s.state == RunState::Running)
    }

    /// Pauses every vCPU and returns once each has stopped (its snapshot, taken after the
    /// pause request in the same queue, says so).
    pub fn stop(&self) -> Result<(), String> {
        for v in &self.vcpus {
            v.send(VcpuRequest::Pause).map_err(|e| e.to_string())?;
        }
        for i in 0..self.vcpus.len() {
            self.snapshot(i)?;
        }
        Ok(())
    }

    /// Lets the vCPUs that run guest code run again.
    pub fn cont(&self) -> Result<(), String> {
        for v in self.vcpus.iter().take(self.runnable) {
            v.send(VcpuRequest::Resume).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Registers of vCPU `i`.
    pub fn regs(&self, i: usize) -> Result<(Regs, SpecialRegs), String> {
        let s = self.snapshot(i)?;
        Ok((s.regs, s.sregs))
    }

    /// The paging context of vCPU `i`.
    pub fn paging(&self, i: usize) -> Result<PagingContext, String> {
        Ok(PagingContext::from_sregs(&self.snapshot(i)?.sregs))
    }

    /// Reads guest-physical memory; the readable prefix.
    pub fn read_phys(&self, gpa: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        let n = self.phys().read_phys(Gpa(gpa), &mut buf);
        buf.truncate(n);
        buf
    }

    /// The Linux thread id of each vCPU thread (by its name, `vcpuN`), 0 where not found.
    pub fn thread_ids(&self) -> Vec<u64> {
        let mut ids = vec![0; self.vcpus.len()];
        if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
            for e in dir.flatten() {
                let Some(tid) = e.file_name().to_str().and_then(|s| s.parse::<u64>().ok()) else { continue };
                let Ok(comm) = std::fs::read_to_string(e.path().join("comm")) else { continue };
                if let Some(i) = comm.trim().strip_prefix("vcpu").and_then(|n| n.parse::<usize>().ok()) {
                    if let Some(slot) = ids.get_mut(i) {
                        *slot = tid;
                    }
                }
            }
        }
        ids
    }
}
