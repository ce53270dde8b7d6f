//! Snapshots: the whole state of a stopped guest in one file, and a new machine made from
//! it. `save` holds every vCPU out of the guest, reads each vCPU's state on its own thread
//! (registers, FPU/XSAVE, XCRs, debug registers, MSRs, MP state, pending events, CPUID),
//! local APIC, CPUID), the VM's state ([`vm`]: kvmclock, and for Linux the PICs, IOAPIC and
//! PIT), the devices ([`devices`]: COM1, the doorbell, virtio-mmio transports and queues,
//! each disk's identity), the guest's boot identity ([`guest`]), vmscope's breakpoints and
//! the non-zero pages of RAM, and writes them as checked sections ([`format`]); `restore`
//! checks every section, refuses a missing or changed disk and a host whose CPUID differs,
//! maps RAM copy-on-write from the file, and only then creates vCPUs with that state. See
//! vmm/DESIGN.md ("Snapshots").
//!
//! The sections are self-contained (name, length, CRC), so a live migration can send the
//! same ones over a socket.
//!
//! ```no_run
//! # fn f(machine: &vmm::machine::Machine) -> Result<(), vmm::snapshot::SnapshotError> {
//! use vmm::snapshot::{restore, save, RestoreOptions};
//! let summary = save(machine, "/tmp/guest.vmsnap".as_ref())?;
//! println!("{} bytes of RAM saved", summary.nonzero_bytes);
//! let restored = restore("/tmp/guest.vmsnap".as_ref(), RestoreOptions::default(),
//!     vmm::devices::console::Console::stdout())?;
//! # Ok(()) }
//! ```

pub mod command;
pub mod devices;
pub mod format;
pub mod guest;
pub mod memory;
pub mod meta;
pub mod probe;
pub mod vcpu;
pub mod vm;

use crate::devices::console::Console;
use crate::machine::{GuestLayout, Machine, MachineError, Parts};
use crate::vstate::kvm::KvmSystem;
use crate::vstate::memory::{map_guest_memory_file, mem_size};
use crate::vstate::vcpu::state::{self, SaveRequest, VcpuState};
use crate::vstate::vcpu::{EmulationFixups, VcpuError, VcpuRequest};
use crate::vstate::vm::Vm;
use format::{FormatError, Reader, SectionEntry, Writer};
use meta::{DebugMeta, DevicesMeta, Meta};
use serde::Serialize;
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Errors from taking, reading or restoring a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The container: I/O, magic, version, damage, a CRC.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// A section whose contents do not parse.
    #[error("snapshot section {section:?} is malformed: {detail}")]
    BadSection {
        /// The section.
        section: String,
        /// What does not hold.
        detail: String,
    },
    /// Something this slice of snapshots does not cover yet.
    #[error("cannot snapshot this guest: {0} are not in snapshots yet (issue 13)")]
    NotSupported(&'static str),
    /// A vCPU would not give or take its state.
    #[error(transparent)]
    Vcpu(#[from] VcpuError),
    /// Building the machine failed.
    #[error(transparent)]
    Machine(#[from] MachineError),
    /// This host would show the guest a different CPU than the one it was running on.
    #[error("{path}: this host's CPU differs from the one the guest saw: {detail}; restoring would change the CPU under the running guest")]
    CpuidMismatch {
        /// The snapshot.
        path: PathBuf,
        /// The first difference.
        detail: String,
    },
    /// A VM-level ioctl failed during restore.
    #[error("{op} failed while restoring")]
    VmIoctl {
        /// The ioctl.
        op: &'static str,
        /// KVM's errno.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// A disk the guest had attached is missing or is not the image it was.
    #[error("disk image {path} is not the one in the snapshot: {detail}; the guest's file system would not match it, so the restore is refused")]
    DiskChanged {
        /// The image.
        path: PathBuf,
        /// What differs.
        detail: String,
    },
    /// A device refused its saved state.
    #[error("device {device} refused its saved state: {detail}")]
    Device {
        /// The device.
        device: &'static str,
        /// What the device said of the state.
        detail: String,
    },
}

/// What `save` wrote.
#[derive(Clone, Debug, Serialize)]
pub struct SaveSummary {
    /// The file.
    pub path: PathBuf,
    /// Guest RAM in bytes.
    pub mem_bytes: u64,
    /// RAM bytes written (non-zero pages).
    pub nonzero_bytes: u64,
    /// The sections.
    pub sections: Vec<SectionInfo>,
    /// State the host refused to give.
    pub refused: Vec<String>,
    /// Wall time from the request to the renamed, synced file.
    pub elapsed_ns: u64,
}

/// A section as `info` and `save` report it.
#[derive(Clone, Debug, Serialize)]
pub struct SectionInfo {
    /// Its name.
    pub name: String,
    /// Byte offset.
    pub offset: u64,
    /// Length.
    pub length: u64,
    /// Its CRC-32.
    pub crc32: u32,
}

impl From<&SectionEntry> for SectionInfo {
    fn from(e: &SectionEntry) -> Self {
        Self { name: e.name.clone(), offset: e.offset, length: e.length, crc32: e.crc }
    }
}

/// Holds every vCPU out of the guest for as long as it lives (a snapshot of a running
/// guest, the stop-and-copy phase of a migration); releases them when dropped, whatever
/// happened in between.
pub struct Hold<'a>(&'a Machine);

impl<'a> Hold<'a> {
    /// Holds every vCPU of `machine` (each answers once it is out of `KVM_RUN`).
    pub fn new(machine: &'a Machine) -> Result<Self, VcpuError> {
        let hold = Self(machine);
        for i in 0..machine.vcpu_count() {
            if let Ok(v) = machine.vcpu(i) {
                v.ask(VcpuRequest::Hold)?;
            }
        }
        Ok(hold)
    }
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        for i in 0..self.0.vcpu_count() {
            if let Ok(v) = self.0.vcpu(i) {
                let _ = v.send(VcpuRequest::Release);
            }
        }
    }
}

/// The state of a held guest except its RAM: the `meta` record and the encoded `devices`,
/// `debug`, `vm` and `vcpuN` sections (what a snapshot file and a migration stream carry).
pub struct Captured {
    /// `meta`, with `nonzero_bytes` still 0 (the writer of RAM fills it in).
    pub meta: Meta,
    /// `devices`, `debug`, `vm`, `vcpu0`… in that order.
    pub sections: Vec<(String, Vec<u8>)>,
    /// State the host refused to give, one line each.
    pub refused: Vec<String>,
}

/// Checks, before any vCPU is held, what would make a snapshot of `machine` impossible: a
/// disk whose image can no longer be looked at (a snapshot must be able to tell later
/// whether the disk changed).
pub fn check_supported(machine: &Machine) -> Result<(), SnapshotError> {
    for (_, _, t) in machine.bus().mmio().transports() {
        if let Some(Err(e)) = t.lock().unwrap_or_else(|e| e.into_inner()).device().disk_identity() {
            return Err(SnapshotError::Device {
                device: "virtio-blk",
                detail: format!("cannot read the metadata of its image: {e}"),
            });
        }
    }
    Ok(())
}

/// Reads everything but RAM from `machine`, whose vCPUs the caller holds ([`Hold`]).
pub fn capture(machine: &Machine) -> Result<Captured, SnapshotError> {
    let req = SaveRequest { msrs: machine.msr_indices().clone(), lapic: machine.vm().has_irqchip() };
    let mut vcpus = Vec::with_capacity(machine.vcpu_count());
    for i in 0..machine.vcpu_count() {
        let r = req.clone();
        vcpus.push(machine.vcpu(i)?.ask(|tx| VcpuRequest::SaveState(r, tx))??);
    }
    let mut refused: Vec<String> = vcpus
        .iter()
        .enumerate()
        .flat_map(|(i, s)| s.refused.iter().map(move |r| format!("vCPU {i}: {r}")))
        .collect();
    let vm_section = vm::encode(&vm::capture(machine.vm(), &mut refused));
    let devices = devices::capture_devices(machine)?;
    let debug = DebugMeta { sw_breakpoints: machine.breakpoints().list().into_iter().map(|g| g.0).collect() };
    let meta = Meta {
        vmscope_version: env!("CARGO_PKG_VERSION").into(),
        created_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        host_kind: machine.host().to_string(),
        guest_name: machine.name().to_string(),
        guest: guest::guest_meta(machine),
        mem_bytes: mem_size(machine.memory()),
        vcpus: machine.vcpu_count(),
        runnable_vcpus: machine.runnable_vcpus(),
        irqchip: machine.vm().has_irqchip(),
        nonzero_bytes: 0,
        refused: refused.clone(),
    };
    let mut sections = vec![
        ("devices".to_string(), to_json(&devices)),
        ("debug".to_string(), to_json(&debug)),
        ("vm".to_string(), vm_section),
    ];
    for (i, s) in vcpus.iter().enumerate() {
        sections.push((format!("vcpu{i}"), vcpu::encode(s)));
    }
    Ok(Captured { meta, sections, refused })
}

/// Writes a snapshot of `machine` to `path` (atomically). Running vCPUs are held out of the
/// guest while it is taken and go on afterwards; stopped ones stay stopped.
pub fn save(machine: &Machine, path: &Path) -> Result<SaveSummary, SnapshotError> {
    let started = Instant::now();
    check_supported(machine)?;
    let _hold = Hold::new(machine)?;
    let Captured { mut meta, sections, refused } = capture(machine)?;
    let mut w = Writer::create(path, 3 + sections.len() as u32)?;
    let runs = memory::write(&mut w, machine.memory(), machine.breakpoints())?;
    let nonzero_bytes = memory::run_bytes(&runs);
    w.section("pagemap", &memory::encode_runs(&runs))?;
    meta.nonzero_bytes = nonzero_bytes;
    w.section("meta", &to_json(&meta))?;
    for (name, bytes) in &sections {
        w.section(name, bytes)?;
    }
    let entries = w.commit()?;
    Ok(SaveSummary {
        path: path.to_path_buf(),
        mem_bytes: meta.mem_bytes,
        nonzero_bytes,
        sections: entries.iter().map(SectionInfo::from).collect(),
        refused,
        elapsed_ns: started.elapsed().as_nanos() as u64,
    })
}

fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec_pretty(v).unwrap_or_default()
}

/// A snapshot file read and checked: every section but memory loaded and decoded.
pub struct Snapshot {
    reader: Reader,
    /// The `meta` section.
    pub meta: Meta,
    /// The `devices` section.
    pub devices: DevicesMeta,
    /// The `debug` section.
    pub debug: DebugMeta,
    /// Each vCPU's state.
    pub vcpus: Vec<VcpuState>,
    /// The VM's clock and, with an irqchip, the PICs, IOAPIC and PIT.
    pub vm: vm::VmState,
    /// The runs of non-zero pages.
    pub runs: Vec<memory::Run>,
}

fn json<T: serde::de::DeserializeOwned>(bytes: &[u8], section: &str) -> Result<T, SnapshotError> {
    serde_json::from_slice(bytes)
        .map_err(|e| SnapshotError::BadSection { section: section.into(), detail: e.to_string() })
}

/// Everything of a guest but its RAM, decoded and checked: what a snapshot file's sections
/// or a migration stream give [`restore_state`].
pub struct State {
    /// The `meta` section.
    pub meta: Meta,
    /// The `devices` section.
    pub devices: DevicesMeta,
    /// The `debug` section.
    pub debug: DebugMeta,
    /// Each vCPU's state.
    pub vcpus: Vec<VcpuState>,
    /// The VM's clock and, with an irqchip, the PICs, IOAPIC and PIT.
    pub vm: vm::VmState,
}

impl State {
    /// Decodes and checks the sections that `read` returns by name.
    pub fn decode(
        mut read: impl FnMut(&str) -> Result<Vec<u8>, SnapshotError>,
    ) -> Result<Self, SnapshotError> {
        let meta: Meta = json(&read("meta")?, "meta")?;
        let devices: DevicesMeta = json(&read("devices")?, "devices")?;
        let debug: DebugMeta = json(&read("debug")?, "debug")?;
        if !(1..=32).contains(&meta.vcpus) || meta.runnable_vcpus > meta.vcpus {
            return Err(SnapshotError::BadSection {
                section: "meta".into(),
                detail: format!("{} vCPUs of which {} run", meta.vcpus, meta.runnable_vcpus),
            });
        }
        let mut vcpus = Vec::with_capacity(meta.vcpus);
        for i in 0..meta.vcpus {
            let name = format!("vcpu{i}");
            vcpus.push(vcpu::decode(&read(&name)?, &name)?);
        }
        let vm = vm::decode(&read("vm")?)?;
        if meta.irqchip && !vm.has_irqchip() {
            return Err(SnapshotError::BadSection {
                section: "vm".into(),
                detail: "the guest had an in-kernel irqchip, but the PIC, IOAPIC or PIT state is missing"
                    .into(),
            });
        }
        if meta.irqchip != matches!(meta.guest, meta::GuestMeta::Linux { .. }) {
            return Err(SnapshotError::BadSection {
                section: "meta".into(),
                detail: "only a Linux guest has an in-kernel irqchip".into(),
            });
        }
        Ok(Self { meta, devices, debug, vcpus, vm })
    }
}

impl Snapshot {
    /// Opens `path` and checks and decodes everything except the memory image.
    pub fn open(path: &Path) -> Result<Self, SnapshotError> {
        let mut reader = Reader::open(path)?;
        let State { meta, devices, debug, vcpus, vm } = State::decode(|name| Ok(reader.read(name)?))?;
        let runs = memory::decode_runs(&reader.read("pagemap")?, meta.mem_bytes)?;
        let mem = reader.entry("memory")?;
        if mem.length != meta.mem_bytes || mem.flags & format::PAGE_ALIGNED == 0 {
            return Err(SnapshotError::BadSection {
                section: "memory".into(),
                detail: format!("{} bytes, but the guest had {} bytes of RAM", mem.length, meta.mem_bytes),
            });
        }
        Ok(Self { reader, meta, devices, debug, vcpus, vm, runs })
    }

    /// The section table.
    pub fn sections(&self) -> Vec<SectionInfo> {
        self.reader.entries.iter().map(SectionInfo::from).collect()
    }

    /// The file's format version.
    pub fn version(&self) -> u32 {
        self.reader.version
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.reader.path
    }

    /// The file's length, and the bytes it occupies on disk (holes are free).
    pub fn file_sizes(&self) -> (u64, Option<u64>) {
        use std::os::unix::fs::MetadataExt;
        let disk = self.reader.file.metadata().ok().map(|m| m.blocks() * 512);
        (self.reader.len, disk)
    }

    /// Maps the memory image copy-on-write and checks its CRC over the non-zero pages.
    pub fn map_memory(&self) -> Result<crate::vstate::memory::GuestMemory, SnapshotError> {
        let e = self.reader.entry("memory")?;
        let mem = map_guest_memory_file(&self.reader.file, e.offset, e.length)
            .map_err(|source| SnapshotError::Machine(MachineError::Memory(source)))?;
        let found = memory::crc_of_runs(&mem, &self.runs);
        if found != e.crc {
            return Err(FormatError::BadChecksum {
                path: self.reader.path.clone(),
                section: "memory".into(),
                found,
                expected: e.crc,
            }
            .into());
        }
        Ok(mem)
    }
}

/// How to restore.
#[derive(Clone, Copy, Debug, Default)]
pub struct RestoreOptions {
    /// Keep every vCPU stopped (a debug session or gdb will resume it).
    pub start_paused: bool,
    /// Put the snapshot's software breakpoints back (only where something handles them: a
    /// script session or gdb).
    pub keep_breakpoints: bool,
}

/// A machine made from a snapshot.
pub struct Restored {
    /// The machine, running unless `start_paused`.
    pub machine: Machine,
    /// The snapshot's metadata.
    pub meta: Meta,
    /// What was not carried over, one line each (breakpoints left out, a clock KVM would
    /// not set).
    pub notes: Vec<String>,
    /// MSRs KVM would not take back (on PVM: MSR_KVM_ASYNC_PF_INT at its reset value 0).
    pub msrs_not_taken: Vec<String>,
    /// Time from opening the file to the vCPUs being ready to run.
    pub elapsed: Duration,
}

/// Makes a machine from the snapshot at `path`. Every check (format, CRCs, CPUID) passes
/// before any vCPU runs.
pub fn restore(path: &Path, opts: RestoreOptions, console: Console) -> Result<Restored, SnapshotError> {
    let started = Instant::now();
    let snap = Snapshot::open(path)?;
    // A missing or changed disk is named before the memory image is even mapped.
    devices::check_disks(&snap.devices)?;
    let mem = snap.map_memory()?;
    let Snapshot { meta, devices, debug, vcpus, vm, .. } = snap;
    restore_state(State { meta, devices, debug, vcpus, vm }, mem, path, opts, console, started)
}

/// Makes a machine from `state` over `mem` (RAM already filled: mapped from a snapshot, or
/// received by a migration); `origin` names where it came from in errors. `started` is when
/// the restore began (for [`Restored::elapsed`]).
pub fn restore_state(
    snap: State,
    mem: crate::vstate::memory::GuestMemory,
    origin: &Path,
    opts: RestoreOptions,
    console: Console,
    started: Instant,
) -> Result<Restored, SnapshotError> {
    devices::check_disks(&snap.devices)?;
    let layout = guest::layout_of(&snap.meta.guest)?;
    let linux = matches!(layout, GuestLayout::Linux(_));
    let kvm = KvmSystem::open().map_err(MachineError::from)?;
    let vm = Vm::new(&kvm, &mem, snap.meta.irqchip).map_err(MachineError::from)?;
    let mut notes = Vec::new();
    vm::restore(&vm, &snap.vm, &mut notes)?;
    let (bus, doorbell) = devices::restore_devices(&vm, &mem, &snap.devices, console)?;
    let cmdline = match &snap.meta.guest {
        meta::GuestMeta::Linux { cmdline, .. } => cmdline.clone(),
        meta::GuestMeta::Elf { .. } => String::new(),
    };
    let parts = Parts {
        kvm,
        vm,
        mem,
        bus,
        layout,
        started,
        name: snap.meta.guest_name.clone(),
        cmdline,
        restored: true,
    };
    // The emulation failures `run linux` answers on PVM are the host's limits, not the
    // guest's state: a Linux guest restored here gets the answers this host needs.
    let pvm = crate::host::host_kind() == inspect::HostKind::Pvm;
    let fixups = EmulationFixups { int3_to_bp: linux && pvm, skip_fwait: linux && pvm };
    let mismatch = RefCell::new(None);
    let not_taken = RefCell::new(Vec::new());
    let assembled =
        Machine::assemble(parts, snap.meta.vcpus, snap.meta.runnable_vcpus, true, fixups, |index, fd| {
            let saved = &snap.vcpus[index];
            let fail = |op, source| VcpuError::Ioctl { index, op, source };
            let host = state::cpuid_of(fd).map_err(|e| fail(e.op, e.source))?;
            if let Some(d) = cpuid_difference(&saved.cpuid, &host) {
                *mismatch.borrow_mut() = Some(format!("vCPU {index}: {d}"));
                return Err(fail("the CPUID check", kvm_ioctls::Error::new(libc::EINVAL)));
            }
            let refused = state::restore(fd, saved).map_err(|e| fail(e.op, e.source))?;
            not_taken.borrow_mut().extend(refused.into_iter().map(|r| format!("vCPU {index}: {r}")));
            Ok(())
        });
    let mut machine = match assembled {
        Ok(m) => m,
        Err(_) if mismatch.borrow().is_some() => {
            return Err(SnapshotError::CpuidMismatch {
                path: origin.to_path_buf(),
                detail: mismatch.take().unwrap_or_default(),
            })
        }
        Err(e) => return Err(e.into()),
    };
    machine.doorbell = doorbell;
    if opts.keep_breakpoints {
        for &gva in &snap.debug.sw_breakpoints {
            if let Err(e) = machine.insert_sw_breakpoint(inspect::Gva(gva)) {
                notes.push(format!("breakpoint at {gva:#x} not restored: {e}"));
            }
        }
    } else if !snap.debug.sw_breakpoints.is_empty() {
        notes.push(format!(
            "{} software breakpoint(s) in the snapshot are left out: nothing would handle them without --script or --gdb",
            snap.debug.sw_breakpoints.len()
        ));
    }
    let elapsed = started.elapsed();
    if !opts.start_paused {
        machine.resume_all()?;
    }
    Ok(Restored { machine, meta: snap.meta, notes, msrs_not_taken: not_taken.take(), elapsed })
}

/// The first difference between the CPUID a guest saw and what this host gives, in words.
pub fn cpuid_difference(
    saved: &[kvm_bindings::kvm_cpuid_entry2],
    host: &[kvm_bindings::kvm_cpuid_entry2],
) -> Option<String> {
    let key = |e: &kvm_bindings::kvm_cpuid_entry2| (e.function, e.index);
    let regs =
        |e: &kvm_bindings::kvm_cpuid_entry2| [("EAX", e.eax), ("EBX", e.ebx), ("ECX", e.ecx), ("EDX", e.edx)];
    for s in saved {
        let Some(h) = host.iter().find(|h| key(h) == key(s)) else {
            return Some(format!("leaf {:#x} subleaf {} is not offered here", s.function, s.index));
        };
        for ((name, a), (_, b)) in regs(s).into_iter().zip(regs(h)) {
            if a != b {
                return Some(format!(
                    "leaf {:#x} subleaf {} {name} was {a:#010x}, this host gives {b:#010x}",
                    s.function, s.index
                ));
            }
        }
    }
    host.iter()
        .find(|h| !saved.iter().any(|s| key(s) == key(h)))
        .map(|h| format!("leaf {:#x} subleaf {} is new on this host", h.function, h.index))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::kvm_cpuid_entry2;

    #[test]
    fn cpuid_differences_are_named() {
        let e = |function, ecx| kvm_cpuid_entry2 { function, ecx, ..Default::default() };
        assert_eq!(cpuid_difference(&[e(1, 5)], &[e(1, 5)]), None);
        let d = cpuid_difference(&[e(1, 5)], &[e(1, 7)]).unwrap();
        assert!(d.contains("leaf 0x1") && d.contains("ECX"), "{d}");
        assert!(cpuid_difference(&[e(7, 0)], &[]).unwrap().contains("not offered"));
        assert!(cpuid_difference(&[], &[e(7, 0)]).unwrap().contains("new"));
    }
}
