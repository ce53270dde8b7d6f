//! The Linux guest preset that `vmscope run linux` and `vmscope tui` share: the kernel (the
//! one vmscope builds and caches, or the user's), the initramfs (vmscope's busybox and
//! workload, or the user's), the command line with the PVM profile, and the emulation
//! fix-ups a PVM host needs.

use anyhow::Context;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use vmm::machine::{DiskConfig, LinuxGuestConfig};
use vmm::vstate::vcpu::EmulationFixups;

/// The least memory the Linux guest boots with, in MiB.
pub const MIN_MEM_MIB: u64 = 128;

/// What the caller chooses of the Linux guest.
pub struct Choice<'a> {
    /// The user's kernel instead of the one vmscope builds.
    pub kernel: Option<&'a Path>,
    /// The user's initramfs instead of vmscope's.
    pub initrd: Option<&'a Path>,
    /// Words for the kernel command line, after the profile's.
    pub cmdline: Vec<String>,
    /// The boot protocol.
    pub boot: vmm::boot::linux::BootChoice,
    /// Guest memory in MiB (at least [`MIN_MEM_MIB`]).
    pub mem_mib: u64,
    /// Number of vCPUs.
    pub vcpus: usize,
    /// virtio-blk disks.
    pub disks: Vec<DiskConfig>,
    /// Hold the vCPUs before the first instruction.
    pub start_paused: bool,
    /// Show the kernel build's progress (someone watches stderr).
    pub progress: bool,
}

/// The Linux guest, ready to boot.
pub struct Preset {
    /// What `Machine::boot_linux` takes.
    pub config: LinuxGuestConfig,
    /// The kernel with symbols and DWARF: the built `vmlinux` (the guest boots its stripped
    /// copy), or the user's kernel.
    pub debug_image: Option<PathBuf>,
    /// Whether this is a PVM host (the profile and fix-ups were applied).
    pub pvm: bool,
}

/// Builds the kernel if it is not cached (or reads the user's), the initramfs, and the
/// command line.
pub fn prepare(choice: Choice) -> anyhow::Result<Preset> {
    let pvm = vmm::host_kind() == inspect::HostKind::Pvm;
    let (kernel_name, kernel, debug_image) = kernel(choice.kernel, choice.progress)?;
    let initrd = match choice.initrd {
        Some(p) => (p.display().to_string(), read(p)?),
        None => {
            let archive = guests::linux::initramfs::build(
                Path::new(guests::linux::initramfs::BUSYBOX),
                guests::workload::ELF,
            )?;
            ("vmscope's initramfs".to_string(), archive.into())
        }
    };
    let config = LinuxGuestConfig {
        kernel_name: kernel_name.clone(),
        kernel,
        initrd: Some(initrd),
        cmdline: guests::linux::profile::cmdline(pvm, &choice.cmdline),
        mem_mib: choice.mem_mib.max(MIN_MEM_MIB),
        vcpus: choice.vcpus,
        start_paused: choice.start_paused,
        fixups: fixups(pvm),
        disks: choice.disks,
        boot: choice.boot,
    };
    if pvm && vmm::boot::linux::is_bzimage(&config.kernel) {
        eprintln!(
            "vmscope: {kernel_name} is a bzImage: it decompresses itself before it starts, and on this PVM host that runs in KVM's instruction emulator and takes minutes; boot the vmlinux to skip it"
        );
    }
    Ok(Preset { config, debug_image, pvm })
}

/// The emulation failures the VMM answers for a kernel that runs at CPL0: on PVM the
/// kernel's own int3 (a self-test, text patching) and fwait reach the VMM as emulation
/// failures, answered as the CPU would; none on hardware KVM.
pub fn fixups(pvm: bool) -> EmulationFixups {
    EmulationFixups { int3_to_bp: pvm, skip_fwait: pvm }
}

/// The kernel's name, bytes, and the image with its symbols.
fn kernel(user: Option<&Path>, progress: bool) -> anyhow::Result<(String, Arc<[u8]>, Option<PathBuf>)> {
    if let Some(p) = user {
        return Ok((p.display().to_string(), read(p)?, Some(p.to_path_buf())));
    }
    let opts = guests::linux::BuildOptions { progress, ..Default::default() };
    let built = guests::linux::ensure_built(&opts).context("cannot build the Linux guest")?;
    let bytes = read(&built.vmlinux_stripped)?;
    Ok((built.vmlinux_stripped.display().to_string(), bytes, Some(built.vmlinux)))
}

fn read(path: &Path) -> anyhow::Result<Arc<[u8]>> {
    Ok(std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?.into())
}
