//! `vmscope tui [GUEST…]`: explore running guests side by side.

use anyhow::Context;
use clap::{Args, ValueEnum};
use std::process::ExitCode;
use vmm::arch::x86_64::Ring;
use vmm::devices::console::Console;
use vmm::machine::{ElfGuestConfig, Machine};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum TuiGuest {
    /// The unikernel at CPL0 (steppable on every host).
    Unikernel,
    /// The minimal Linux (built first if it is not cached).
    Linux,
    /// The workload in an OCI container (run by --runtime: the embedded one by default).
    Container,
}

/// What the guests run unless told: a tick a second, asleep in between (the unikernel
/// through the VMM's sleep hypercall, the container with nanosleep), for about 11 days.
pub const DEFAULT_WORKLOAD: &str = "ticks 1000000 --every 1000";

/// The Linux guest's memory in the TUI, in MiB.
const LINUX_MEM_MIB: u64 = 256;

/// Arguments of `vmscope tui`.
#[derive(Args, Debug)]
pub struct TuiArgs {
    /// Guests to start (default: the unikernel, a container, and Linux when its kernel is
    /// already built; a guest that cannot start gets a tab that says why and how to fix it).
    guests: Vec<TuiGuest>,
    /// The container's OCI runtime: `embedded` (youki's libcontainer inside vmscope), or
    /// `runc` or any runtime on PATH with runc's command line.
    #[arg(long, default_value = guests::container::embedded::NAME)]
    runtime: String,
    /// The workload of the unikernel and the container (the same contract in both). The
    /// default prints a numbered tick every second and sleeps in between, so the TUI idles
    /// while you look; a learner's long run is e.g. `--workload 'compute 20000000'`.
    #[arg(long, num_args = 1.., default_value = DEFAULT_WORKLOAD)]
    workload: Vec<String>,
    /// Linux: attach this disk image as virtio-blk (`PATH,ro` read-only); the exits pane
    /// shows its queue activity and `:vq 0 0` decodes its request queue.
    #[arg(long = "disk", value_name = "PATH[,ro]", value_parser = super::run::args::parse_disk)]
    disks: Vec<vmm::machine::DiskConfig>,
}

/// Runs `vmscope tui`. Every guest that can start runs; one that cannot (no kernel built
/// yet, a package missing, no KVM) gets a tab that says why and the command that fixes it.
pub fn run(args: TuiArgs) -> anyhow::Result<ExitCode> {
    let explicit = !args.guests.is_empty();
    let which = if explicit {
        args.guests.clone()
    } else {
        vec![TuiGuest::Unikernel, TuiGuest::Container, TuiGuest::Linux]
    };
    let mut live = vec![];
    let mut containers = vec![];
    let mut unavailable = vec![];
    for g in which {
        let console = Console::buffer();
        let name = g.to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_default();
        let started = match g {
            TuiGuest::Container => start_container(&args).map(|c| containers.push(c)),
            TuiGuest::Unikernel => start_unikernel(&args, console.clone())
                .map(|(m, symbols)| live.push(tui::LiveGuest::new("unikernel", m, console, symbols))),
            // Unless asked for, Linux is shown only once its kernel is built: the build takes
            // minutes, and the TUI should come up at once.
            TuiGuest::Linux if !explicit && guests::linux::cached().is_none() => Err(anyhow::anyhow!(
                "its kernel is not built yet (a one-time build of about 8 minutes, then cached)"
            )),
            TuiGuest::Linux => start_linux(&args, console).map(|g| live.push(g)),
        };
        if let Err(e) = started {
            unavailable.push(tui::Unavailable { fix: fix_for(g, &e), reason: super::chain(&e), name });
        }
    }
    match tui::run(live, containers, unavailable) {
        // Guests are stopped and the terminal is back: end as the signal would have.
        Err(tui::TuiError::Interrupted(signal)) => tui::signals::die_by(signal),
        r => r?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The one command that fixes why guest `g` could not start.
fn fix_for(g: TuiGuest, e: &anyhow::Error) -> String {
    use guests::linux::LinuxError;
    for cause in e.chain() {
        if let Some(LinuxError::MissingTools { command, .. }) = cause.downcast_ref::<LinuxError>() {
            return format!("{command}, then vmscope guests build linux");
        }
        if let Some(LinuxError::NoBusybox(_)) = cause.downcast_ref::<LinuxError>() {
            return guests::prereq::install_command(&[guests::prereq::BUSYBOX]);
        }
        if let Some(guests::container::ContainerError::NoRuntime(_)) = cause.downcast_ref() {
            return "apt-get install -y runc, or --runtime embedded (built in)".into();
        }
    }
    match g {
        TuiGuest::Linux => {
            let missing = guests::prereq::missing(guests::prereq::LINUX_BUILD);
            if missing.is_empty() {
                "vmscope guests build linux (or vmscope tui linux, which builds it first)".into()
            } else {
                format!("{}, then vmscope guests build linux", guests::prereq::install_command(&missing))
            }
        }
        _ => "vmscope doctor lists what this host lacks and how to add it".into(),
    }
}

fn start_container(args: &TuiArgs) -> anyhow::Result<tui::LiveContainer> {
    let runtime = args.runtime.as_str();
    if runtime == guests::container::embedded::NAME && !guests::prereq::is_root() {
        anyhow::bail!(
            "the embedded runtime needs root: vmscope does not make rootless containers (as root, containers get a user namespace)"
        );
    }
    let words: Vec<String> = args.workload.join(" ").split_whitespace().map(String::from).collect();
    tui::LiveContainer::start("container", runtime, &words).context("cannot start the container")
}

fn start_unikernel(
    args: &TuiArgs,
    console: Console,
) -> anyhow::Result<(Machine, inspect::symbols::SymbolTable)> {
    let cfg = ElfGuestConfig {
        name: "unikernel".into(),
        elf: guests::unikernel::ELF.into(),
        cmdline: args.workload.join(" "),
        mem_mib: 64,
        vcpus: 1,
        ring: Ring::Ring0,
        start_paused: false,
        doorbell: guests::unikernel::rings_doorbell(&args.workload),
        ring_consumer: Default::default(),
    };
    let m = Machine::boot_elf(&cfg, console).context("cannot boot the unikernel")?;
    let symbols =
        inspect::symbols::SymbolTable::from_elf("unikernel", guests::unikernel::ELF).unwrap_or_default();
    Ok((m, symbols))
}

fn start_linux(args: &TuiArgs, console: Console) -> anyhow::Result<tui::LiveGuest> {
    let preset = super::linux::prepare(super::linux::Choice {
        kernel: None,
        initrd: None,
        cmdline: vec!["vmscope.shell=1".into()],
        boot: Default::default(),
        mem_mib: LINUX_MEM_MIB,
        vcpus: 1,
        disks: args.disks.clone(),
        start_paused: false,
        progress: true,
    })?;
    let m = Machine::boot_linux(&preset.config, console.clone()).context("cannot boot Linux")?;
    let Some(vmlinux) = &preset.debug_image else {
        return Ok(tui::LiveGuest::new("linux", m, console, Default::default()));
    };
    let symbols = inspect::symbols::SymbolTable::from_elf_file(vmlinux).unwrap_or_default();
    // The processes pane and `:ps`, `:dmesg`, `:pt --pid N` read the guest with the kernel's
    // DWARF.
    Ok(tui::LiveGuest::new("linux", m, console, symbols).with_vmlinux(vmlinux))
}
