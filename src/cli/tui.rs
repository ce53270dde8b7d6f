//! `vmscope tui [GUEST…]`: explore running guests side by side.

use anyhow::Context;
use clap::{Args, ValueEnum};
use std::process::ExitCode;
use std::sync::Arc;
use vmm::arch::x86_64::Ring;
use vmm::devices::console::Console;
use vmm::machine::{ElfGuestConfig, LinuxGuestConfig, Machine};
use vmm::vstate::vcpu::EmulationFixups;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum TuiGuest {
    /// The unikernel at CPL0 (steppable on every host).
    Unikernel,
    /// The minimal Linux (built first if it is not cached).
    Linux,
    /// The workload in an OCI container (run by --runtime).
    Container,
}

/// Arguments of `vmscope tui`.
#[derive(Args, Debug)]
pub struct TuiArgs {
    /// Guests to start (default: the unikernel, a container, and Linux when its kernel is
    /// already built).
    guests: Vec<TuiGuest>,
    /// The container's OCI runtime: `embedded` (youki's libcontainer inside vmscope), or
    /// `runc` or any runtime on PATH with runc's command line.
    #[arg(long, default_value = guests::container::embedded::NAME)]
    runtime: String,
    /// The unikernel's workload.
    #[arg(long, num_args = 1.., default_value = "compute 20000000")]
    workload: Vec<String>,
    /// Linux: attach this disk image as virtio-blk (`PATH,ro` read-only); the exits pane
    /// shows its queue activity and `:vq 0 0` decodes its request queue.
    #[arg(long = "disk", value_name = "PATH[,ro]", value_parser = super::run::parse_disk)]
    disks: Vec<vmm::machine::DiskConfig>,
}

/// Runs `vmscope tui`.
pub fn run(args: TuiArgs) -> anyhow::Result<ExitCode> {
    let mut which = args.guests.clone();
    if which.is_empty() {
        which.push(TuiGuest::Unikernel);
        if guests::container::runtime_path(&args.runtime).is_some() {
            which.push(TuiGuest::Container);
        }
        if guests::linux::list_cached().iter().any(|a| a.key == guests::linux::build_key()) {
            which.push(TuiGuest::Linux);
        }
    }
    let mut live = vec![];
    let mut containers = vec![];
    for g in which {
        let console = Console::buffer();
        match g {
            TuiGuest::Container => {
                let runtime = args.runtime.clone();
                let args: Vec<String> = ["syscalls", "1000000000"].iter().map(|s| s.to_string()).collect();
                containers.push(
                    tui::LiveContainer::start("container", &runtime, &args)
                        .context("cannot start the container")?,
                );
            }
            TuiGuest::Unikernel => {
                let cfg = ElfGuestConfig {
                    name: "unikernel".into(),
                    elf: Arc::from(guests::unikernel::ELF),
                    cmdline: args.workload.join(" "),
                    mem_mib: 64,
                    vcpus: 1,
                    ring: Ring::Ring0,
                    start_paused: false,
                    doorbell: guests::unikernel::rings_doorbell(&args.workload),
                    ring_consumer: Default::default(),
                };
                let m = Machine::boot_elf(&cfg, console.clone()).context("cannot boot the unikernel")?;
                let symbols = inspect::symbols::SymbolTable::from_elf("unikernel", guests::unikernel::ELF)
                    .unwrap_or_default();
                live.push(tui::LiveGuest::new("unikernel", m, console, symbols));
            }
            TuiGuest::Linux => {
                let pvm = vmm::host_kind() == inspect::HostKind::Pvm;
                let opts = guests::linux::BuildOptions { progress: true, ..Default::default() };
                let a = guests::linux::ensure_built(&opts).context("cannot build the Linux guest")?;
                let kernel = std::fs::read(&a.vmlinux_stripped)?;
                let initrd = guests::linux::initramfs::build(
                    std::path::Path::new(guests::linux::initramfs::BUSYBOX),
                    guests::workload::ELF,
                )?;
                let cfg = LinuxGuestConfig {
                    disks: args.disks.clone(),
                    boot: Default::default(),
                    kernel_name: "linux".into(),
                    kernel: kernel.into(),
                    initrd: Some(("initramfs".into(), initrd.into())),
                    cmdline: guests::linux::profile::cmdline(pvm, &["vmscope.shell=1".into()]),
                    mem_mib: 256,
                    vcpus: 1,
                    start_paused: false,
                    fixups: EmulationFixups { int3_to_bp: pvm, skip_fwait: pvm },
                };
                let m = Machine::boot_linux(&cfg, console.clone()).context("cannot boot Linux")?;
                let symbols = inspect::symbols::SymbolTable::from_elf_file(&a.vmlinux).unwrap_or_default();
                live.push(tui::LiveGuest::new("linux", m, console, symbols));
            }
        }
    }
    tui::run(live, containers)?;
    Ok(ExitCode::SUCCESS)
}
