//! The arguments of `vmscope run`, in groups: the guest and its machine, Linux, debugging
//! and control, the container, and the report. Each guest kind's module takes the groups
//! it uses, never the whole set.

use clap::{Args, ValueEnum};
use std::path::PathBuf;
use vmm::arch::x86_64::Ring;

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
    pub guest: Option<GuestKind>,
    /// Boot this ELF instead: entered as the unikernel is (long mode, vmscope's hypercalls),
    /// or, when it has a PVH note and not vmscope's, through its PVH entry as QEMU's -kernel
    /// does (command line: --append, else the workload's words; console on COM1).
    #[arg(long, conflicts_with = "guest")]
    pub elf: Option<PathBuf>,
    /// Resume the guest saved in this snapshot (from `snapshot FILE` in a session or gdb's
    /// `monitor`) instead of booting one; its console output continues here.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["guest", "elf", "workload", "mem", "vcpus", "ring", "disks"])]
    pub restore: Option<PathBuf>,
    /// Wait for a guest that another vmscope migrates here (`migrate URI` in its session or
    /// gdb monitor) at unix:PATH or tcp:HOST:PORT (loopback unless
    /// --incoming-any-address), and run it.
    #[arg(long, value_name = "URI", conflicts_with_all = ["guest", "elf", "workload", "mem", "vcpus", "ring", "disks", "restore"])]
    pub incoming: Option<String>,
    /// With --incoming: confirm a non-loopback TCP address (whoever reaches it can send a guest).
    #[arg(long, requires = "incoming")]
    pub incoming_any_address: bool,
    #[command(flatten)]
    pub machine: MachineArgs,
    #[command(flatten)]
    pub linux: LinuxArgs,
    #[command(flatten)]
    pub debug: DebugArgs,
    #[command(flatten)]
    pub container: ContainerArgs,
    #[command(flatten)]
    pub report: ReportArgs,
}

/// What the guest runs and on what machine.
#[derive(Args, Debug)]
pub struct MachineArgs {
    /// The workload and its arguments, e.g. `--workload compute 1000000`.
    #[arg(long, num_args = 1.., value_delimiter = None, default_value = "hello")]
    pub workload: Vec<String>,
    /// Privilege level the guest runs at: 0 or 3 (default: the one that runs natively on
    /// this host — CPL3 on PVM, CPL0 on hardware KVM).
    #[arg(long, value_parser = parse_ring)]
    pub ring: Option<Ring>,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 64)]
    pub mem: u64,
    /// Number of vCPUs.
    #[arg(long, default_value_t = 1)]
    pub vcpus: usize,
    /// Unikernel/--elf: how the VMM thread consumes the shared byte ring (`io … --ring`):
    /// `sleep` waits for the guest's kick once the ring is empty, `poll` keeps looking so
    /// the guest never kicks.
    #[arg(long, value_enum, default_value = "sleep")]
    pub ring_consumer: RingConsumerArg,
    /// Attach this disk image as a virtio-blk device (Linux: /dev/vda, /dev/vdb, …; an ELF
    /// guest finds virtio-mmio windows from 0xd0000000, without interrupts; up to 3);
    /// `PATH,ro` attaches it read-only. Linux's /init mounts /dev/vda at /mnt when it holds
    /// a file system.
    #[arg(long = "disk", value_name = "PATH[,ro]", value_parser = parse_disk)]
    pub disks: Vec<vmm::machine::DiskConfig>,
}

/// The Linux guest's kernel, initramfs and command line.
#[derive(Args, Debug)]
#[command(next_help_heading = "Linux")]
pub struct LinuxArgs {
    /// Linux: boot this kernel (an uncompressed vmlinux with a PVH note) instead of the
    /// one vmscope builds.
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,
    /// Linux: the boot protocol. `auto`: PVH when the kernel has a PVH note, else the 64-bit
    /// boot protocol (zero page); a bzImage always takes the 64-bit protocol.
    #[arg(long, value_enum, default_value = "auto")]
    pub boot: BootArg,
    /// Linux: use this initramfs (newc cpio, plain or gzip) instead of vmscope's.
    #[arg(long, value_name = "PATH")]
    pub initrd: Option<PathBuf>,
    /// Linux: extra kernel command-line arguments.
    #[arg(long, value_name = "ARGS")]
    pub append: Option<String>,
    /// Linux: an interactive busybox shell on the console instead of the workload.
    #[arg(long)]
    pub shell: bool,
}

/// Debugging and control: a script session, gdb, QMP.
#[derive(Args, Debug)]
#[command(next_help_heading = "Debugging and control")]
pub struct DebugArgs {
    /// Stop the guest after this many seconds (fractions allowed); in a --break/--script
    /// session, how long `cont` and `step` wait for the next stop.
    #[arg(long)]
    pub timeout: Option<f64>,
    /// Stop at this symbol or address and take debug commands (repeatable). On PVM the
    /// guest then runs at CPL0 unless --ring says otherwise: only CPL0 code can be stepped.
    #[arg(long = "break", value_name = "SYMBOL|ADDR")]
    pub breaks: Vec<String>,
    /// Read debug commands from this file instead of standard input.
    #[arg(long, value_name = "FILE")]
    pub script: Option<PathBuf>,
    /// Debug commands answer in JSON, one line each (the guest console goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// The disassembler `dis` uses: iced (default) or capstone.
    #[arg(long, default_value = "iced")]
    pub decoder: inspect::disasm::Decoder,
    /// Let gdb attach: PORT or HOST:PORT (loopback unless a host is given), or unix:PATH.
    #[arg(long, value_name = "ADDR")]
    pub gdb: Option<gdb::ListenAddr>,
    /// With --gdb: hold the vCPUs before the first instruction until gdb continues.
    #[arg(long, requires = "gdb")]
    pub gdb_wait: bool,
    /// With --gdb: confirm a non-loopback address (anyone who reaches it can read and write
    /// guest memory).
    #[arg(long, requires = "gdb")]
    pub gdb_any_address: bool,
    /// A QMP control socket beside the guest, as QEMU's `-qmp`: unix:PATH (created 0600) or
    /// tcp:HOST:PORT (loopback unless --qmp-any-address). `drgn --qemu PATH` attaches to it.
    #[arg(long, value_name = "ADDR")]
    pub qmp: Option<qmp::QmpAddr>,
    /// With --qmp: confirm a non-loopback TCP address (whoever reaches it controls the guest).
    #[arg(long, requires = "qmp")]
    pub qmp_any_address: bool,
}

impl DebugArgs {
    /// `--timeout`, checked: a positive, finite number of seconds.
    pub fn time_limit(&self) -> anyhow::Result<Option<std::time::Duration>> {
        match self.timeout {
            None => Ok(None),
            Some(t) if t.is_finite() && t > 0.0 => Ok(Some(std::time::Duration::from_secs_f64(t))),
            Some(t) => anyhow::bail!("--timeout must be a positive number of seconds, not {t}"),
        }
    }

    /// Whether a debugger drives the guest (a script session or gdb): it then starts at
    /// CPL0 on PVM, where only CPL0 code can be stepped.
    pub fn debugging(&self) -> bool {
        !self.breaks.is_empty() || self.script.is_some() || self.gdb.is_some()
    }

    /// Whether the vCPUs are held before the first instruction: a script session starts
    /// paused, and gdb with --gdb-wait.
    pub fn start_paused(&self) -> bool {
        (self.debugging() && self.gdb.is_none()) || self.gdb_wait
    }

    /// Whether a session reads its commands from this process's standard input (so the
    /// guest's console does not).
    pub fn session_reads_stdin(&self) -> bool {
        self.debugging() && self.script.is_none() && self.gdb.is_none()
    }
}

/// The container guest.
#[derive(Args, Debug)]
#[command(next_help_heading = "Container")]
pub struct ContainerArgs {
    /// Container: the OCI runtime: `embedded` (youki's libcontainer inside vmscope, nothing to
    /// install), or `runc` or any runtime on PATH (or a path) with runc's command line.
    #[arg(long, default_value = guests::container::embedded::NAME)]
    pub runtime: String,
}

/// What the run reports besides the guest's console.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Print the host kind, the guest's layout, timings and exit statistics to stderr.
    #[arg(long, short)]
    pub verbose: bool,
    /// Write the run's figures (outcome, memory, exit statistics, host kind) as JSON here.
    #[arg(long, value_name = "FILE")]
    pub stats_json: Option<PathBuf>,
}

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

/// `--disk PATH[,ro]` (a file whose name ends in `,ro` is taken whole).
pub fn parse_disk(s: &str) -> Result<vmm::machine::DiskConfig, String> {
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
