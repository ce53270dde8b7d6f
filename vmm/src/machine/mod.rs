//! A running guest: the VM, its memory, devices and vCPU threads, and the one place that
//! waits for what they report. The CLI, the gdb stub and the TUI drive a guest through a
//! [`Machine`] (and its vCPU handles); none of them touches KVM.

mod debug;
mod image;

pub use debug::{DebugError, HwBreakpoint, HwKind, HwSlots};
pub use image::ElfImage;

use crate::arch::x86_64::regs::{long_mode_regs, long_mode_sregs};
use crate::arch::x86_64::{vcpu, Ring};
use crate::boot::elf_guest::{self, ElfBootError, ElfGuestLayout};
use crate::boot::linux::{self, BootChoice, LinuxBootError, LinuxLayout};
use crate::breakpoints::Breakpoints;
use crate::devices::console::Console;
use crate::devices::doorbell::{Doorbell, RingConsumerMode, SharedRing};
use crate::devices::hypercall::Hypercalls;
use crate::devices::legacy::serial::{SerialPort, COM1_IRQ};
use crate::devices::virtio::block::{Block, BlockError};
use crate::devices::virtio::mmio::MmioTransport;
use crate::devices::{MmioBus, PortIoBus};
use crate::vstate::kvm::{KvmError, KvmSystem};
use crate::vstate::memory::{create_guest_memory, GuestMemory, MemoryError};
use crate::vstate::stats_fd::StatsFd;
use crate::vstate::vcpu::{
    EmulationFixups, StopReason, Vcpu, VcpuError, VcpuEvent, VcpuEventKind, VcpuHandle, VcpuOptions,
    VcpuRequest, VcpuSnapshot,
};
use crate::vstate::vm::{Vm, VmError};
use inspect::exits::ExitStats;
use inspect::HostKind;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vmm_sys_util::eventfd::EventFd;

/// Errors from starting or driving a machine.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    /// `/dev/kvm`.
    #[error(transparent)]
    Kvm(#[from] KvmError),
    /// Guest memory.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// The VM.
    #[error(transparent)]
    Vm(#[from] VmError),
    /// The guest image and its boot structures.
    #[error(transparent)]
    Boot(#[from] ElfBootError),
    /// The Linux kernel, initramfs and their boot structures.
    #[error(transparent)]
    LinuxBoot(#[from] LinuxBootError),
    /// A vCPU.
    #[error(transparent)]
    Vcpu(#[from] VcpuError),
    /// A bad vCPU count.
    #[error("--vcpus {0} is not supported: choose 1 to 32")]
    BadVcpuCount(usize),
    /// No such vCPU.
    #[error("there is no vCPU {0}")]
    NoSuchVcpu(usize),
    /// A debug operation failed.
    #[error(transparent)]
    Debug(#[from] debug::DebugError),
    /// A disk image.
    #[error(transparent)]
    Disk(#[from] BlockError),
    /// Too many virtio devices.
    #[error("--disk {path}: {source}")]
    TooManyDevices {
        /// The disk that did not fit.
        path: std::path::PathBuf,
        /// The MMIO bus's refusal (no free window or interrupt line).
        #[source]
        source: crate::devices::mmio_bus::MmioBusError,
    },
}

/// How often [`Machine::wait`] writes out guest output that waits for its line to end.
const CONSOLE_TICK: Duration = Duration::from_millis(20);

/// What to boot and how.
#[derive(Clone, Debug)]
pub struct ElfGuestConfig {
    /// Name for messages (the path, or "unikernel").
    pub name: String,
    /// The ELF image (borrowed when it is the built-in unikernel: see [`ElfImage`]).
    pub elf: ElfImage,
    /// The command line handed to the guest.
    pub cmdline: String,
    /// Guest memory in MiB.
    pub mem_mib: u64,
    /// Number of vCPUs (only vCPU 0 runs the entry point; the others stay parked).
    pub vcpus: usize,
    /// The CPL the guest starts at.
    pub ring: Ring,
    /// Hold every vCPU before the first instruction.
    pub start_paused: bool,
    /// Register the ioeventfd doorbell on `vmscope_abi::PORT_DOORBELL`. Only for guests
    /// that ring it: with an ioeventfd registered, closing the VM waits for an SRCU grace
    /// period in KVM (10–18 ms on this PVM host), which every short run would pay.
    pub doorbell: bool,
    /// How the doorbell's thread consumes the shared byte ring (`vmscope_abi::ring`):
    /// sleeping until the guest kicks (the default), or polling so that the guest never
    /// needs to kick. Only matters with `doorbell`.
    pub ring_consumer: RingConsumerMode,
}

/// How a guest run ended.
#[derive(Debug)]
pub enum Outcome {
    /// The guest wrote its exit code to the exit port.
    Exited {
        /// The code.
        code: u32,
    },
    /// A vCPU stopped for a reason that ends the guest (triple fault, emulation failure…).
    Fault {
        /// The stop that ended the guest (never a pause, step or breakpoint).
        reason: StopReason,
        /// The vCPU's state at the fault.
        snapshot: Box<VcpuSnapshot>,
    },
    /// The time limit passed; the vCPUs were paused.
    TimedOut {
        /// The limit.
        limit: Duration,
        /// vCPU 0's state when it was stopped.
        snapshot: Option<Box<VcpuSnapshot>>,
    },
}

impl Outcome {
    /// What a vCPU's stop means for the guest: `Some` when it ends it (the guest wrote its
    /// exit code, or a fatal stop such as a triple fault or an emulation failure), `None`
    /// for stops a debugger handles (pauses, steps, breakpoints). The one mapping from a
    /// stop to an outcome: the CLI, the gdb stub, the debugger core and the TUI all use it.
    pub fn from_stop(reason: &StopReason, snapshot: &VcpuSnapshot) -> Option<Self> {
        match reason {
            StopReason::GuestExit { code } => Some(Self::Exited { code: *code }),
            r if r.is_fatal() => {
                Some(Self::Fault { reason: r.clone(), snapshot: Box::new(snapshot.clone()) })
            }
            _ => None,
        }
    }
}

/// A booted guest.
pub struct Machine {
    _kvm: KvmSystem,
    vm: Vm,
    mem: GuestMemory,
    bus: PortIoBus,
    breakpoints: Arc<Breakpoints>,
    hw_slots: Mutex<HwSlots>,
    vcpus: Vec<VcpuHandle>,
    /// How many vCPUs (from 0) run guest code; the rest stay parked.
    runnable_vcpus: usize,
    /// KVM's binary statistics of the VM and of each vCPU, where the host offers them.
    vm_stats: Option<StatsFd>,
    vcpu_stats: Vec<Option<StatsFd>>,
    events: Receiver<VcpuEvent>,
    layout: GuestLayout,
    started: Instant,
    host: HostKind,
    name: String,
    /// The command line the guest booted with.
    cmdline: String,
    /// The ioeventfd doorbell of an ELF guest (`vmscope_abi::PORT_DOORBELL`).
    pub(crate) doorbell: Option<Doorbell>,
    /// KVM_GET_MSR_INDEX_LIST of the host: the MSRs a snapshot saves.
    msr_indices: Arc<[u32]>,
    /// The debugger's checkpoints (`checkpoint`, `rewind N`), shared by every frontend.
    checkpoints: crate::checkpoint::Store,
}

/// A Linux guest to boot.
#[derive(Clone, Debug)]
pub struct LinuxGuestConfig {
    /// Name of the kernel file (for messages).
    pub kernel_name: String,
    /// The uncompressed `vmlinux` ELF.
    pub kernel: Arc<[u8]>,
    /// Name and bytes of the initramfs.
    pub initrd: Option<(String, Arc<[u8]>)>,
    /// The full kernel command line.
    pub cmdline: String,
    /// Guest memory in MiB.
    pub mem_mib: u64,
    /// Number of vCPUs.
    pub vcpus: usize,
    /// Hold every vCPU before the first instruction.
    pub start_paused: bool,
    /// Emulation failures the VMM answers itself (the PVM profile turns these on).
    pub fixups: EmulationFixups,
    /// Disk images, each a virtio-blk device on virtio-mmio (`/dev/vda`, `/dev/vdb`, …).
    pub disks: Vec<DiskConfig>,
    /// The boot protocol (PVH when the kernel has the note, by default).
    pub boot: BootChoice,
}

/// A disk image to attach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskConfig {
    /// The image file.
    pub path: std::path::PathBuf,
    /// Refuse guest writes.
    pub read_only: bool,
}

/// How the guest was put into memory.
#[derive(Clone, Copy, Debug)]
pub enum GuestLayout {
    /// An ELF guest with vmscope's entry contract.
    Elf(ElfGuestLayout),
    /// A Linux kernel entered through PVH.
    Linux(LinuxLayout),
}

/// The parts every machine is assembled from (by a boot, or by `snapshot::restore`).
pub(crate) struct Parts {
    pub(crate) kvm: KvmSystem,
    pub(crate) vm: Vm,
    pub(crate) mem: GuestMemory,
    pub(crate) bus: PortIoBus,
    pub(crate) layout: GuestLayout,
    pub(crate) started: Instant,
    pub(crate) name: String,
    /// The command line the guest booted with.
    pub(crate) cmdline: String,
    /// The vCPUs' state comes from a snapshot taken at a stop (see `VcpuOptions::restored`).
    pub(crate) restored: bool,
}

/// A set-up ioctl's failure as the error of vCPU `index`.
fn setup_failed(index: usize) -> impl Fn(vcpu::SetupError) -> VcpuError {
    move |e| VcpuError::Ioctl { index, op: e.op, source: e.source }
}

impl Machine {
    /// Boots an ELF guest: memory, VM, boot structures, vCPU threads. The guest starts
    /// running at once unless `start_paused`.
    pub fn boot_elf(cfg: &ElfGuestConfig, console: Console) -> Result<Self, MachineError> {
        Self::boot_elf_with_disks(cfg, &[], console)
    }

    /// [`Machine::boot_elf`] with virtio-blk devices on the MMIO bus (windows from
    /// [`crate::devices::mmio_bus::MMIO_BASE`]). An ELF guest has no interrupt controller,
    /// so its devices raise no interrupt: the guest polls the used rings (a notification is
    /// handled during the guest's `QueueNotify` write, so the answer is there when it
    /// resumes).
    pub fn boot_elf_with_disks(
        cfg: &ElfGuestConfig,
        disks: &[DiskConfig],
        console: Console,
    ) -> Result<Self, MachineError> {
        let started = Instant::now();
        if !(1..=32).contains(&cfg.vcpus) {
            return Err(MachineError::BadVcpuCount(cfg.vcpus));
        }
        let kvm = KvmSystem::open()?;
        let mem = create_guest_memory(cfg.mem_mib.saturating_mul(1 << 20))?;
        let vm = Vm::new(&kvm, &mem, false)?;
        let layout = elf_guest::setup(&mem, &cfg.name, &cfg.elf, &cfg.cmdline, cfg.ring, cfg.vcpus as u32)?;
        let serial = Arc::new(Mutex::new(SerialPort::new(console.clone(), None)));
        let mmio = Self::build_virtio_devices(None, &mem, disks)?;
        // Best effort: without it, doorbell writes are ordinary (ignored) port exits. Its
        // ioeventfd is registered on the first ring (see devices/doorbell.rs).
        let doorbell = if cfg.doorbell {
            let ring = SharedRing { memory: mem.clone(), console: console.clone(), mode: cfg.ring_consumer };
            Doorbell::new(vm.shared_fd(), vmscope_abi::PORT_DOORBELL, Some(ring)).ok()
        } else {
            None
        };
        let mut bus = PortIoBus::new(serial, Hypercalls::new(mem.clone(), console)).with_mmio(mmio);
        if let Some(d) = &doorbell {
            bus = bus.with_doorbell(d.port_handle());
        }
        let parts = Parts {
            kvm,
            vm,
            mem,
            bus,
            layout: GuestLayout::Elf(layout),
            started,
            name: cfg.name.clone(),
            cmdline: cfg.cmdline.clone(),
            restored: false,
        };
        let entry = layout.entry;
        let mut machine = Self::assemble(
            parts,
            cfg.vcpus,
            1,
            cfg.start_paused,
            EmulationFixups::default(),
            |index, fd| {
                vcpu::enter(fd, &long_mode_regs(&entry), |base| long_mode_sregs(base, &entry))
                    .map_err(setup_failed(index))
            },
        )?;
        machine.doorbell = doorbell;
        Ok(machine)
    }

    /// Boots a Linux kernel (through PVH, or the 64-bit boot protocol) with an in-kernel
    /// irqchip, PIT and COM1 on IRQ 4.
    pub fn boot_linux(cfg: &LinuxGuestConfig, console: Console) -> Result<Self, MachineError> {
        let started = Instant::now();
        if !(1..=32).contains(&cfg.vcpus) {
            return Err(MachineError::BadVcpuCount(cfg.vcpus));
        }
        let kvm = KvmSystem::open()?;
        let mem = create_guest_memory(cfg.mem_mib.saturating_mul(1 << 20))?;
        let vm = Vm::new(&kvm, &mem, true)?;
        let mmio = Self::build_virtio_devices(Some(&vm), &mem, &cfg.disks)?;
        let cmdline = with_device_args(&cfg.cmdline, &mmio.kernel_cmdline());
        let initrd = cfg.initrd.as_ref().map(|(n, b)| (n.as_str(), &b[..]));
        let layout =
            linux::setup(&mem, &cfg.kernel_name, &cfg.kernel, initrd, &cmdline, cfg.boot, cfg.vcpus)?;
        let irq = irqfd(&vm, COM1_IRQ)?;
        let serial = Arc::new(Mutex::new(SerialPort::new(console.clone(), Some(irq))));
        let bus = PortIoBus::new(serial, Hypercalls::new(mem.clone(), console)).with_mmio(mmio);
        let parts = Parts {
            kvm,
            vm,
            mem,
            bus,
            layout: GuestLayout::Linux(layout),
            started,
            name: cfg.kernel_name.clone(),
            cmdline: cmdline.clone(),
            restored: false,
        };
        Self::assemble(parts, cfg.vcpus, cfg.vcpus, cfg.start_paused, cfg.fixups, |index, fd| {
            linux::setup_vcpu(fd, index, &layout).map_err(setup_failed(index))
        })
    }

    /// One virtio-blk device per disk, each on its own window and interrupt line (an
    /// irqfd on `vm`'s in-kernel irqchip; no interrupt without one).
    fn build_virtio_devices(
        vm: Option<&Vm>,
        mem: &GuestMemory,
        disks: &[DiskConfig],
    ) -> Result<MmioBus, MachineError> {
        // The count is checked before any image is opened (and locked): a fourth disk is a
        // configuration error, whatever the images are.
        if let Some(extra) = disks.get(crate::devices::mmio_bus::MAX_DEVICES) {
            return Err(MachineError::TooManyDevices {
                path: extra.path.clone(),
                source: crate::devices::mmio_bus::MmioBusError::Full,
            });
        }
        let mut bus = MmioBus::default();
        for disk in disks {
            let (_, line) = bus
                .next_slot()
                .map_err(|source| MachineError::TooManyDevices { path: disk.path.clone(), source })?;
            let block = Block::open(&disk.path, disk.read_only)?;
            let irq = vm.map(|vm| irqfd(vm, line)).transpose()?;
            let transport = MmioTransport::new(Box::new(block), mem.clone(), irq);
            bus.add(transport)
                .map_err(|source| MachineError::TooManyDevices { path: disk.path.clone(), source })?;
        }
        Ok(bus)
    }

    /// Creates the vCPUs (configured by `setup`) and their threads.
    pub(crate) fn assemble(
        parts: Parts,
        nr_vcpus: usize,
        runnable_vcpus: usize,
        start_paused: bool,
        fixups: EmulationFixups,
        setup: impl Fn(usize, &kvm_ioctls::VcpuFd) -> Result<(), VcpuError>,
    ) -> Result<Self, MachineError> {
        let Parts { kvm, vm, mem, bus, layout, started, name, cmdline, restored } = parts;
        // Read before any thread filters its system calls: snapshots read these MSRs.
        let msr_indices: Arc<[u32]> =
            kvm.kvm().get_msr_index_list().map(|l| l.as_slice().to_vec()).unwrap_or_default().into();
        let breakpoints = Arc::new(Breakpoints::new(mem.clone()));
        let (tx, events) = mpsc::channel();
        let block_irq = kvm.kvm().check_extension_raw(kvm_bindings::KVM_CAP_SET_GUEST_DEBUG2.into()) as u32
            & kvm_bindings::KVM_GUESTDBG_BLOCKIRQ
            != 0;
        let mut vcpus = Vec::with_capacity(nr_vcpus);
        let guest_bus: Arc<dyn crate::vstate::bus::GuestBus> = Arc::new(bus.clone());
        let mut vcpu_stats = Vec::with_capacity(nr_vcpus);
        for index in 0..nr_vcpus {
            let fd = vm.create_vcpu(&kvm, index, nr_vcpus)?;
            vcpu_stats.push(StatsFd::open(&fd).ok());
            setup(index, &fd)?;
            let options = VcpuOptions {
                start_paused: start_paused || index >= runnable_vcpus,
                block_irq,
                fixups,
                restored,
            };
            let vcpu = Vcpu::new(index, fd, guest_bus.clone(), breakpoints.clone(), tx.clone(), options);
            vcpus.push(vcpu.spawn()?);
        }
        let vm_stats = StatsFd::open(vm.fd()).ok();
        Ok(Self {
            _kvm: kvm,
            vm_stats,
            vcpu_stats,
            vm,
            mem,
            bus,
            breakpoints,
            hw_slots: Mutex::new(HwSlots::default()),
            vcpus,
            runnable_vcpus,
            events,
            layout,
            started,
            host: crate::host::host_kind(),
            name,
            cmdline,
            doorbell: None,
            msr_indices,
            checkpoints: Default::default(),
        })
    }

    /// The MSRs a snapshot saves (KVM_GET_MSR_INDEX_LIST, read when the machine was made).
    pub fn msr_indices(&self) -> &Arc<[u32]> {
        &self.msr_indices
    }

    /// The guest's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The command line the guest booted with (Linux: with the device declarations).
    pub fn cmdline(&self) -> &str {
        &self.cmdline
    }

    /// Guest memory (shared with the vCPUs; reads see the live guest).
    pub fn memory(&self) -> &GuestMemory {
        &self.mem
    }

    /// The host kind.
    pub fn host(&self) -> HostKind {
        self.host
    }

    /// How the guest was laid out.
    pub fn layout(&self) -> &GuestLayout {
        &self.layout
    }

    /// When boot started (process-relative timings).
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The VM (for the VMM's own state savers; frontends ask the machine).
    pub(crate) fn vm(&self) -> &Vm {
        &self.vm
    }

    /// The checkpoints kept for this machine.
    pub(crate) fn checkpoint_store(&self) -> &crate::checkpoint::Store {
        &self.checkpoints
    }

    /// The port I/O bus (for the VMM's own state savers; frontends ask the machine).
    pub(crate) fn bus(&self) -> &PortIoBus {
        &self.bus
    }

    /// The virtio-mmio devices and their queues, as the debugger's `devices` and `vq` show
    /// them.
    pub fn virtio_devices(&self) -> Vec<crate::devices::MmioDeviceInfo> {
        self.bus.mmio().devices()
    }

    /// A handle that types into the guest's serial port (COM1) from any thread.
    pub fn serial_input(&self) -> crate::devices::legacy::serial::SerialInput {
        crate::devices::legacy::serial::SerialInput::new(self.bus.serial().clone())
    }

    /// What the hypercall device refused so far, by reason.
    pub fn hypercall_refusals(&self) -> crate::devices::hypercall::HypercallRefusals {
        self.bus.hypercall_refusals()
    }

    /// The software-breakpoint table.
    pub fn breakpoints(&self) -> &Arc<Breakpoints> {
        &self.breakpoints
    }

    /// Number of vCPUs.
    pub fn vcpu_count(&self) -> usize {
        self.vcpus.len()
    }

    /// The handle of vCPU `index`.
    pub fn vcpu(&self, index: usize) -> Result<&VcpuHandle, MachineError> {
        self.vcpus.get(index).ok_or(MachineError::NoSuchVcpu(index))
    }

    /// A snapshot of vCPU `index`.
    pub fn snapshot(&self, index: usize) -> Result<VcpuSnapshot, MachineError> {
        Ok(self.vcpu(index)?.ask(VcpuRequest::Snapshot)?)
    }

    /// Exit statistics summed over all vCPUs.
    pub fn exit_stats(&self) -> ExitStats {
        let mut total = ExitStats::default();
        for i in 0..self.vcpus.len() {
            if let Ok(s) = self.snapshot(i) {
                total.merge(&s.exits);
            }
        }
        total
    }

    /// KVM's raw binary statistics: the VM's and each vCPU's blob (decode them with
    /// `inspect::kvmstats`). `None` where the host has no stats fd.
    pub fn kvm_stats_raw(&self) -> (Option<Vec<u8>>, Vec<Option<Vec<u8>>>) {
        let vm = self.vm_stats.as_ref().and_then(|s| s.read_all().ok());
        let vcpus = self.vcpu_stats.iter().map(|s| s.as_ref().and_then(|s| s.read_all().ok())).collect();
        (vm, vcpus)
    }

    /// Guest writes to the doorbell port so far; `None` without a doorbell.
    pub fn doorbell_rings(&self) -> Option<u64> {
        self.doorbell.as_ref().map(Doorbell::rings)
    }

    /// How the shared byte ring's consumer waits; `None` without a doorbell.
    pub fn ring_consumer(&self) -> Option<RingConsumerMode> {
        self.doorbell.as_ref().and_then(Doorbell::consumer_mode)
    }

    /// The shared byte ring's consumer: (bytes taken, times it slept, broken-ring events);
    /// `None` without a doorbell.
    pub fn ring_stats(&self) -> Option<(u64, u64, u64)> {
        self.doorbell.as_ref().map(|d| {
            let s = d.ring_stats();
            let get = |a: &AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
            (get(&s.bytes), get(&s.sleeps), get(&s.errors))
        })
    }

    /// The next vCPU event, waiting at most `timeout`.
    pub fn next_event(&self, timeout: Duration) -> Option<VcpuEvent> {
        self.events.recv_timeout(timeout).ok()
    }

    /// KVM's own counters for vCPU 0 (decoded from the binary stats fd), by name.
    pub fn kvm_stats(&self) -> Vec<(String, u64)> {
        let (_, vcpus) = self.kvm_stats_raw();
        let Some(Some(blob)) = vcpus.first() else { return vec![] };
        inspect::kvmstats::parse(blob)
            .map(|stats| stats.into_iter().filter_map(|s| Some((s.name, *s.values.first()?))).collect())
            .unwrap_or_default()
    }

    /// Runs until the guest exits, faults, or `limit` passes (then pauses every vCPU).
    /// Debugger stops (breakpoints, steps, pauses) end the run as faults: nobody handles
    /// them here; a debugger takes the events with [`Machine::next_event`] instead.
    pub fn wait(&self, limit: Option<Duration>) -> Outcome {
        self.wait_until(limit, false)
    }

    /// As [`Machine::wait`], except that pauses do not end the run: a control-socket client
    /// that stops and continues the guest (QMP `stop`, a dump) is no reason to end it.
    pub fn wait_past_pauses(&self, limit: Option<Duration>) -> Outcome {
        self.wait_until(limit, true)
    }

    fn wait_until(&self, limit: Option<Duration>, past_pauses: bool) -> Outcome {
        let deadline = limit.and_then(|l| Instant::now().checked_add(l));
        loop {
            // Wakes every CONSOLE_TICK to write out an unfinished line of guest output
            // (a prompt) that no exit has flushed, while the guest computes.
            let left = deadline.map_or(CONSOLE_TICK, |d| d.saturating_duration_since(Instant::now()));
            let event = match self.events.recv_timeout(left.min(CONSOLE_TICK)) {
                Ok(e) => e,
                Err(RecvTimeoutError::Timeout) if deadline.is_some_and(|d| Instant::now() >= d) => {
                    return self.time_out(limit.unwrap_or_default())
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.bus.console().flush();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return self.all_gone(),
            };
            if let VcpuEventKind::Stopped { reason, snapshot } = event.kind {
                if past_pauses && reason == StopReason::Paused {
                    continue;
                }
                return Outcome::from_stop(&reason, &snapshot).unwrap_or(Outcome::Fault { reason, snapshot });
            }
        }
    }

    fn time_out(&self, limit: Duration) -> Outcome {
        self.pause_all();
        let snapshot = self.snapshot(0).ok().map(Box::new);
        Outcome::TimedOut { limit, snapshot }
    }

    fn all_gone(&self) -> Outcome {
        Outcome::Fault {
            reason: StopReason::RunFailed { error: "every vCPU thread ended".into() },
            snapshot: Box::new(VcpuSnapshot {
                index: 0,
                state: crate::vstate::vcpu::RunState::Paused,
                regs: Default::default(),
                sregs: Default::default(),
                exits: Default::default(),
                host: self.host,
            }),
        }
    }

    /// Pauses every vCPU.
    pub fn pause_all(&self) {
        for v in &self.vcpus {
            let _ = v.send(VcpuRequest::Pause);
        }
    }

    /// Ends every vCPU thread.
    pub fn shutdown(&mut self) {
        for v in &mut self.vcpus {
            v.terminate();
        }
    }
}

/// An eventfd bound to interrupt line `gsi` of the in-kernel irqchip.
fn irqfd(vm: &Vm, gsi: u32) -> Result<EventFd, VmError> {
    let fd = EventFd::new(libc::EFD_NONBLOCK).map_err(|e| VmError::Ioctl {
        op: "eventfd",
        source: kvm_ioctls::Error::new(e.raw_os_error().unwrap_or(libc::EIO)),
    })?;
    vm.fd().register_irqfd(&fd, gsi).map_err(|source| VmError::Ioctl { op: "KVM_IRQFD", source })?;
    Ok(fd)
}

/// `cmdline` with the device declarations added before any `--` (which starts init's
/// arguments).
fn with_device_args(cmdline: &str, devices: &str) -> String {
    if devices.is_empty() {
        return cmdline.to_string();
    }
    match cmdline.find(" -- ") {
        Some(i) => format!("{} {devices}{}", &cmdline[..i], &cmdline[i..]),
        None if cmdline.is_empty() => devices.to_string(),
        None => format!("{cmdline} {devices}"),
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::with_device_args;

    #[test]
    fn device_args_go_before_init_args() {
        assert_eq!(with_device_args("console=ttyS0", ""), "console=ttyS0");
        assert_eq!(
            with_device_args("console=ttyS0", "virtio_mmio.device=x"),
            "console=ttyS0 virtio_mmio.device=x"
        );
        assert_eq!(with_device_args("a -- b", "d"), "a d -- b");
        assert_eq!(with_device_args("", "d"), "d");
    }
}
