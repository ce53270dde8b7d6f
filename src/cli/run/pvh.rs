//! `vmscope run --elf FILE` of a PVH guest: an ELF with a `XEN_ELFNOTE_PHYS32_ENTRY` note and
//! without vmscope's own (`vmm::loader::entry_kind`), such as a unikernel built for QEMU's
//! `-kernel`, Firecracker or Cloud Hypervisor, or a Linux vmlinux. It is entered through its
//! 32-bit PVH entry with `hvm_start_info`, on the machine `run linux` builds (COM1, the
//! in-kernel interrupt controllers, an MP table) and with no initramfs. Its command line is
//! `--append` when given, else the workload's words; its console is COM1 on this process's
//! standard output.

use super::args::RunArgs;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;
use vmm::boot::linux::BootChoice;
use vmm::machine::LinuxGuestConfig;

/// Boots `bytes`, read from `path`, through its PVH entry and runs it to its end.
pub fn run(args: &RunArgs, path: &Path, bytes: Vec<u8>, started: Instant) -> anyhow::Result<ExitCode> {
    let pvm = vmm::host_kind() == inspect::HostKind::Pvm;
    let cmdline = match &args.linux.append {
        Some(a) => a.clone(),
        None => args.machine.workload.join(" "),
    };
    if args.report.verbose {
        eprintln!("vmscope: {} has a PVH entry and no vmscope note: entering it there", path.display());
    }
    let preset = crate::cli::linux::Preset {
        config: LinuxGuestConfig {
            kernel_name: path.display().to_string(),
            kernel: bytes.into(),
            initrd: None,
            cmdline,
            mem_mib: args.machine.mem,
            vcpus: args.machine.vcpus,
            start_paused: args.debug.start_paused(),
            fixups: crate::cli::linux::fixups(pvm),
            disks: args.machine.disks.clone(),
            boot: BootChoice::Pvh,
        },
        debug_image: Some(path.to_path_buf()),
        pvm,
    };
    super::linux::boot_and_drive(args, &preset, started)
}
