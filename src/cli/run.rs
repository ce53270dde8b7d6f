//! `vmscope run`: boot a guest, stream its console to stdout, exit with its code.

use anyhow::Context;
use clap::{Args, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vmm::arch::x86_64::Ring;
use vmm::devices::console::Console;
use vmm::machine::{ElfGuestConfig, Machine, Outcome};

/// The name the built-in unikernel goes by (in messages and in snapshots).
pub const UNIKERNEL_NAME: &str = "the built-in unikernel";

/// Process exit status when the guest faulted.
pub const EXIT_GUEST_FAULT: u8 = 125;
/// Process exit status when the time limit passed.
pub const EXIT_TIMEOUT: u8 = 124;

/// `--boot`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BootArg {
    /// PVH if the kernel has the note, else the 64-bit boot protocol.
    Auto,
    /// PVH: 32-bit entry, paging off, `hvm_start_info`.
    Pvh,
    /// The 64-bit boot protocol: long mode, `boot_params` (the zero page).
    Linux64,
}

impl From<BootArg> for vmm::boot::linux::BootChoice {
    fn from(b: BootArg) -> Self {
        match b {
            BootArg::Auto => Self::Auto,
            BootArg::Pvh => Self::Pvh,
            BootArg::Linux64 => Self::Linux64,
        }
    }
}

/// `--ring-consumer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RingConsumerArg {
    /// Say "sleeping" in the ring header when the ring is empty and wait for the guest's
    /// kick (a doorbell write); how many batches kick depends on the host's scheduling.
    Sleep,
    /// Never say "sleeping": poll the ring (napping 1 ms at a time once it stays empty), so
    /// the guest never kicks.
    Poll,
}

impl From<RingConsumerArg> for vmm::devices::doorbell::RingConsumerMode {
    fn from(r: RingConsumerArg) -> Self {
        match r {
            RingConsumerArg::Sleep => Self::Sleep,
            RingConsumerArg::Poll => Self::Poll,
        }
    }
}

/// Which guest to boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GuestKind {
    /// vmscope's own no_std unikernel (built in).
    Unikernel,
    /// A minimal Linux: a kernel vmscope builds from source, busybox and the workload.
    Linux,
    /// The workload in an OCI container (its only program) run by --runtime (default: the
    /// runtime built into vmscope).
    Container,
}

/// Arguments of `vmscope run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// The guest to boot (or use --elf).
    #[arg(value_enum, required_unless_present_any = ["elf", "restore", "incoming"])]
    pub(super) guest: Option<GuestKind>,
    /// Boot this ELF instead (it must follow the unikernel's entry contract).
    #[arg(long, conflicts_with = "guest")]
    pub(super) elf: Option<PathBuf>,
    /// Resume the guest saved in this snapshot (from `snapshot FILE` in a session or gdb's
    /// `monitor`) instead of booting one; its console output continues here.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["guest", "elf", "workload", "mem", "vcpus", "ring", "disks"])]
    pub(super) restore: Option<PathBuf>,
    /// Wait for a guest that another vmscope migrates here (`migrate URI` in its session or
    /// gdb monitor) at unix:PATH or tcp:HOST:PORT (loopback unless
    /// --incoming-any-address), and run it.
    #[arg(long, value_name = "URI", conflicts_with_all = ["guest", "elf", "workload", "mem", "vcpus", "ring", "disks", "restore"])]
    pub(super) incoming: Option<String>,
    /// With --incoming: confirm a non-loopback TCP address (whoever reaches it can send a guest).
    #[arg(long, requires = "incoming")]
    pub(super) incoming_any_address: bool,
    /// The workload and its arguments, e.g. `--workload compute 1000000`.
    #[arg(long, num_args = 1.., value_delimiter = None, default_value = "hello")]
    pub(super) workload: Vec<String>,
    /// Privilege level the guest runs at: 0 or 3 (default: the one that runs natively on
    /// this host — CPL3 on PVM, CPL0 on hardware KVM).
    #[arg(long, value_parser = parse_ring)]
    pub(super) ring: Option<Ring>,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 64)]
    pub(super) mem: u64,
    /// Number of vCPUs.
    #[arg(long, default_value_t = 1)]
    pub(super) vcpus: usize,
    /// Stop the guest after this many seconds (fractions allowed); in a --break/--script
    /// session, how long `cont` and `step` wait for the next stop.
    #[arg(long)]
    pub(super) timeout: Option<f64>,
    /// Print the host kind, the guest's layout, timings and exit statistics to stderr.
    #[arg(long, short)]
    pub(super) verbose: bool,
    /// Unikernel/--elf: how the VMM thread consumes the shared byte ring (`io … --ring`):
    /// `sleep` waits for the guest's kick once the ring is empty, `poll` keeps looking so
    /// the guest never kicks.
    #[arg(long, value_enum, default_value = "sleep")]
    pub(super) ring_consumer: RingConsumerArg,
    /// Write the run's figures (outcome, memory, exit statistics, host kind) as JSON here.
    #[arg(long, value_name = "FILE")]
    pub(super) stats_json: Option<PathBuf>,
    /// Linux: boot this kernel (an uncompressed vmlinux with a PVH note) instead of the
    /// one vmscope builds.
    #[arg(long, value_name = "PATH")]
    pub(super) kernel: Option<PathBuf>,
    /// Linux: the boot protocol. `auto`: PVH when the kernel has a PVH note, else the 64-bit
    /// boot protocol (zero page); a bzImage always takes the 64-bit protocol.
    #[arg(long, value_enum, default_value = "auto")]
    pub(super) boot: BootArg,
    /// Linux: use this initramfs (newc cpio, plain or gzip) instead of vmscope's.
    #[arg(long, value_name = "PATH")]
    pub(super) initrd: Option<PathBuf>,
    /// Linux: extra kernel command-line arguments.
    #[arg(long, value_name = "ARGS")]
    pub(super) append: Option<String>,
    /// Linux: an interactive busybox shell on the console instead of the workload.
    #[arg(long)]
    pub(super) shell: bool,
    /// Attach this disk image as a virtio-blk device (Linux: /dev/vda, /dev/vdb, …; an ELF
    /// guest finds virtio-mmio windows from 0xd0000000, without interrupts; up to 3);
    /// `PATH,ro` attaches it read-only. Linux's /init mounts /dev/vda at /mnt when it holds
    /// a file system.
    #[arg(long = "disk", value_name = "PATH[,ro]", value_parser = parse_disk)]
    pub(super) disks: Vec<vmm::machine::DiskConfig>,
    /// Stop at this symbol or address and take debug commands (repeatable). On PVM the
    /// guest then runs at CPL0 unless --ring says otherwise: only CPL0 code can be stepped.
    #[arg(long = "break", value_name = "SYMBOL|ADDR")]
    pub(super) breaks: Vec<String>,
    /// Read debug commands from this file instead of standard input.
    #[arg(long, value_name = "FILE")]
    pub(super) script: Option<PathBuf>,
    /// Debug commands answer in JSON, one line each (the guest console goes to stderr).
    #[arg(long)]
    pub(super) json: bool,
    /// The disassembler `dis` uses: iced (default) or capstone.
    #[arg(long, default_value = "iced")]
    pub(super) decoder: inspect::disasm::Decoder,
    /// Let gdb attach: PORT or HOST:PORT (loopback unless a host is given), or unix:PATH.
    #[arg(long, value_name = "ADDR")]
    pub(super) gdb: Option<gdb::ListenAddr>,
    /// Container: the OCI runtime: `embedded` (youki's libcontainer inside vmscope, nothing to
    /// install), or `runc` or any runtime on PATH (or a path) with runc's command line.
    #[arg(long, default_value = guests::container::embedded::NAME)]
    pub(super) runtime: String,
    /// With --gdb: hold the vCPUs before the first instruction until gdb continues.
    #[arg(long, requires = "gdb")]
    pub(super) gdb_wait: bool,
    /// With --gdb: confirm a non-loopback address (anyone who reaches it can read and write
    /// guest memory).
    #[arg(long, requires = "gdb")]
    pub(super) gdb_any_address: bool,
    /// A QMP control socket beside the guest, as QEMU's `-qmp`: unix:PATH (created 0600) or
    /// tcp:HOST:PORT (loopback unless --qmp-any-address). `drgn --qemu PATH` attaches to it.
    #[arg(long, value_name = "ADDR")]
    pub(super) qmp: Option<qmp::QmpAddr>,
    /// With --qmp: confirm a non-loopback TCP address (whoever reaches it controls the guest).
    #[arg(long, requires = "qmp")]
    pub(super) qmp_any_address: bool,
}

pub(super) fn parse_disk(s: &str) -> Result<vmm::machine::DiskConfig, String> {
    let (path, read_only) = match s.strip_suffix(",ro") {
        Some(p) if !std::path::Path::new(s).exists() => (p, true),
        _ => (s, false),
    };
    if path.is_empty() {
        return Err("a disk needs a path".into());
    }
    Ok(vmm::machine::DiskConfig { path: path.into(), read_only })
}

fn parse_ring(s: &str) -> Result<Ring, String> {
    s.parse::<u8>().ok().and_then(Ring::from_cpl).ok_or_else(|| format!("ring must be 0 or 3, not {s:?}"))
}

/// Runs `vmscope run`.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    if let Some(file) = &args.restore {
        return super::snapshot::run_restored(&args, file);
    }
    if let Some(uri) = &args.incoming {
        return super::migrate::run_incoming(&args, uri);
    }
    let process_start = Instant::now();
    let host = vmm::host_kind();
    super::gdb::configure(&args)?;
    let debugging = !args.breaks.is_empty() || args.script.is_some() || args.gdb.is_some();
    let ring = match args.ring {
        Some(r) => r,
        // Single-stepping and int3 need CPL0 on PVM (CPL3 debug exceptions go to the guest).
        None if debugging => Ring::Ring0,
        None if host.native_ring() == 0 => Ring::Ring0,
        None => Ring::Ring3,
    };
    if debugging && ring == Ring::Ring3 && host == inspect::HostKind::Pvm && !args.breaks.is_empty() {
        anyhow::bail!(
            "--break needs --ring 0 on this PVM host: PVM delivers a CPL3 int3 to the guest, not to vmscope"
        );
    }
    if !args.disks.is_empty() && args.guest == Some(GuestKind::Container) {
        anyhow::bail!("--disk attaches a virtio-blk device to a VM; a container has none");
    }
    match args.guest {
        Some(GuestKind::Linux) => return super::linux::run(&args, process_start),
        Some(GuestKind::Container) => return super::container::run(&args),
        _ => {}
    }
    let (name, elf): (String, Arc<[u8]>) = match (&args.elf, args.guest) {
        (Some(path), _) => {
            let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            (path.display().to_string(), bytes.into())
        }
        (None, _) => (UNIKERNEL_NAME.into(), guests::unikernel::ELF.into()),
    };
    if let Some(t) = args.timeout {
        anyhow::ensure!(t.is_finite() && t > 0.0, "--timeout must be a positive number of seconds, not {t}");
    }
    let cfg = ElfGuestConfig {
        name: name.clone(),
        elf,
        cmdline: args.workload.join(" "),
        mem_mib: args.mem,
        vcpus: args.vcpus,
        ring,
        start_paused: (debugging && args.gdb.is_none()) || args.gdb_wait,
        // The unikernel rings the doorbell only in some workloads; an ELF of the user's may
        // ring it at any time.
        doorbell: args.elf.is_some() || guests::unikernel::rings_doorbell(&args.workload),
        ring_consumer: args.ring_consumer.into(),
    };
    if args.verbose {
        eprintln!(
            "vmscope: host {} ({}); guest {name} at CPL{}, {} MiB, {} vCPU(s), command line {:?}",
            host,
            host.describe(),
            ring.cpl(),
            args.mem,
            args.vcpus,
            cfg.cmdline
        );
    }
    let console = if args.json { Console::writer(std::io::stderr()) } else { Console::stdout() };
    let machine = Machine::boot_elf_with_disks(&cfg, &args.disks, console)
        .with_context(|| format!("cannot boot {name}"))?;
    let qmp_symbols = qmp::SymbolSource::Elf(cfg.name.clone(), cfg.elf.clone());
    let outcome = super::qmp::around(&machine, args.qmp.as_ref(), args.qmp_any_address, qmp_symbols, || {
        vmm::seccomp::install(vmm::seccomp::Thread::Main)?;
        Ok(Ok(if let Some(addr) = &args.gdb {
            let symbols = inspect::symbols::SymbolTable::from_elf(&cfg.name, &cfg.elf).unwrap_or_default();
            match super::gdb::serve(&machine, addr, &symbols, args.elf.as_deref(), args.gdb_wait)? {
                Some(outcome) => outcome,
                None => return Ok(Err(ExitCode::from(super::gdb::EXIT_KILLED))),
            }
        } else if debugging {
            let symbols = inspect::symbols::SymbolTable::from_elf(&cfg.name, &cfg.elf).unwrap_or_default();
            match super::session::run_for(&machine, &symbols, &args, super::session::STOP_TIMEOUT)? {
                Ok(outcome) => outcome,
                Err(status) => return Ok(Err(status)),
            }
        } else {
            super::qmp::wait(&machine, args.timeout)
        }))
    })?;
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(status) => return Ok(status),
    };
    let hint = (host == inspect::HostKind::Pvm && ring == Ring::Ring0).then_some(
        "this host is PVM, where CPL0 guest code runs in KVM's instruction emulator; some instructions (SSE, int3, …) are not emulated. Try --ring 3.",
    );
    finish(&args, &machine, outcome, process_start, ring, hint, None)
}

/// Reports how a guest ended (statistics, the fault report) and turns it into vmscope's
/// exit status. `console_tail` adds the guest's last output to a fault report (a kernel
/// panic message).
pub(super) fn finish(
    args: &RunArgs,
    machine: &Machine,
    outcome: Outcome,
    process_start: Instant,
    ring: Ring,
    hint: Option<&str>,
    console_tail: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let name = machine.name();
    let elapsed = process_start.elapsed();
    if let Some(path) = &args.stats_json {
        write_stats(path, machine, &outcome, elapsed, ring)?;
    }
    if args.verbose {
        eprintln!(
            "vmscope: {name} ran for {:.3} ms (process start to guest end)",
            elapsed.as_secs_f64() * 1e3
        );
        eprintln!("{}", machine.exit_stats());
    }
    Ok(match outcome {
        Outcome::Exited { code } => {
            if code > 255 {
                eprintln!(
                    "vmscope: guest exit code {code} does not fit in a process exit status; exiting with {}",
                    code & 0xff
                );
            }
            ExitCode::from((code & 0xff) as u8)
        }
        // A reboot the guest asked for (not a panic) ends the run cleanly.
        Outcome::Fault { reason: vmm::vstate::vcpu::StopReason::Reset, .. } if console_tail.is_none() => {
            eprintln!("vmscope: guest {name} reset the machine (a reboot); vmscope ends the VM there");
            ExitCode::SUCCESS
        }
        Outcome::Fault { reason, snapshot } => {
            if let Some(tail) = console_tail {
                eprintln!("vmscope: the guest's last words:\n{tail}");
            }
            eprint!(
                "vmscope: guest {name} stopped: {}",
                vmm::report::render(&reason, &snapshot, machine.memory())
            );
            if let Some(hint) = hint {
                eprintln!("vmscope: note: {hint}");
            }
            ExitCode::from(EXIT_GUEST_FAULT)
        }
        Outcome::TimedOut { limit, snapshot } => {
            eprintln!(
                "vmscope: guest {name} still running after the --timeout of {:.1} s; stopped it",
                limit.as_secs_f64()
            );
            if let Some(s) = snapshot {
                eprint!(
                    "vmscope: where it was: {}",
                    vmm::report::render(&vmm::vstate::vcpu::StopReason::Paused, &s, machine.memory())
                );
            }
            ExitCode::from(EXIT_TIMEOUT)
        }
    })
}

/// The figures `--stats-json` writes.
fn write_stats(
    path: &std::path::Path,
    machine: &Machine,
    outcome: &Outcome,
    elapsed: Duration,
    ring: Ring,
) -> anyhow::Result<()> {
    use vmm::vstate::rss;
    let peak = rss::peak_rss_bytes();
    let guest = rss::guest_resident_bytes(machine.memory());
    let outcome = match outcome {
        _ if super::qmp::quit_requested() => serde_json::json!("qmp-quit"),
        Outcome::Exited { code } => serde_json::json!({ "exited": code }),
        Outcome::Fault { reason, .. } => serde_json::json!({ "fault": vmm::report::describe(reason) }),
        Outcome::TimedOut { .. } => serde_json::json!("timed-out"),
    };
    let v = serde_json::json!({
        "host_kind": machine.host(),
        "guest": machine.name(),
        "ring": ring.cpl(),
        "outcome": outcome,
        "in_process_ns": elapsed.as_nanos() as u64,
        "vmm_peak_rss_bytes": peak,
        "guest_resident_bytes": guest,
        "vmm_overhead_bytes": peak.zip(guest).map(|(p, g)| p.saturating_sub(g)),
        "vmm_private_overhead_bytes": rss::private_dirty_bytes().zip(guest).map(|(p, g)| p.saturating_sub(g)),
        "exits": machine.exit_stats(),
        // KVM's own counters for vCPU 0 at the end of the run (they start at zero with the
        // vCPU): exits handled inside the kernel show here and not in "exits".
        "kvm_stats": machine.kvm_stats().into_iter().collect::<std::collections::BTreeMap<_, _>>(),
        "doorbell_rings": machine.doorbell_rings(),
        // Hypercalls refused: argument structs outside RAM, console buffers refused.
        "hypercalls": machine.hypercall_refusals(),
        // Each virtio device's registers and counters (refused accesses, errors, …).
        "virtio": machine.virtio_devices(),
        "shared_ring": machine.ring_stats().map(|(bytes, sleeps, errors)| serde_json::json!({
            "consumer": machine.ring_consumer().map(|m| m.name()),
            "bytes": bytes,
            "consumer_sleeps": sleeps,
            "errors": errors,
        })),
    });
    std::fs::write(path, serde_json::to_vec_pretty(&v)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
