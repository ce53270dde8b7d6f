//! `vmscope guests`: build and list the provided guests.

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use std::process::ExitCode;

/// Arguments of `vmscope guests`.
#[derive(Args, Debug)]
pub struct GuestsArgs {
    #[command(subcommand)]
    command: GuestsCommand,
}

#[derive(Subcommand, Debug)]
enum GuestsCommand {
    /// Build a guest now (the Linux kernel takes minutes once, then it is cached).
    Build {
        /// Which guest.
        guest: Buildable,
        /// Install what is missing with apt-get first (as root): the build tools, the kernel
        /// source package and busybox.
        #[arg(long)]
        install_deps: bool,
    },
    /// Show what is built and cached.
    List,
    /// Print the path of a guest's image (for gdb: `gdb $(vmscope guests path unikernel)`).
    Path {
        /// Which image.
        image: Image,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Buildable {
    /// The minimal Linux kernel.
    Linux,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Image {
    /// The unikernel ELF (written to the cache).
    Unikernel,
    /// The Linux vmlinux with DWARF (built if needed).
    Vmlinux,
    /// The kernel's gdb helpers beside it (`lx-ps`, `lx-dmesg`, ...; gdb auto-loads them
    /// from the vmlinux's directory once it is an auto-load safe path).
    VmlinuxGdb,
}

/// Runs `vmscope guests`.
pub fn run(args: GuestsArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        GuestsCommand::Build { guest: Buildable::Linux, install_deps } => {
            // The build tools, the source, and busybox (the guest's user space).
            let mut missing = guests::prereq::missing(guests::prereq::LINUX_BUILD);
            missing.extend(guests::prereq::missing(&[guests::prereq::BUSYBOX]));
            if install_deps && !missing.is_empty() {
                eprintln!("vmscope: installing {}", guests::prereq::packages(&missing).join(" "));
                guests::prereq::install(&missing)?;
            }
            let a = guests::linux::ensure_built(&build_options())?;
            println!("linux kernel {} in {}", a.key, a.dir.display());
            print_artifacts(&a);
        }
        GuestsCommand::List => {
            println!("unikernel: built in ({} bytes)", guests::unikernel::ELF.len());
            let cached = guests::linux::list_cached();
            if cached.is_empty() {
                println!("linux: not built yet (vmscope guests build linux)");
            }
            let current = guests::linux::build_key();
            for a in cached {
                println!(
                    "linux {}{}:",
                    a.key,
                    if a.key == current { " (current inputs)" } else { " (stale)" }
                );
                print_artifacts(&a);
            }
        }
        GuestsCommand::Path { image: Image::Unikernel } => println!("{}", unikernel_path()?.display()),
        GuestsCommand::Path { image: Image::Vmlinux } => {
            println!("{}", guests::linux::ensure_built(&build_options())?.vmlinux.display())
        }
        GuestsCommand::Path { image: Image::VmlinuxGdb } => {
            let a = guests::linux::ensure_built(&build_options())?;
            anyhow::ensure!(
                a.vmlinux_gdb.exists(),
                "{} has no gdb helpers (vmlinux-gdb.py); it was built before vmscope made them: rebuild it",
                a.dir.display()
            );
            println!("{}", a.vmlinux_gdb.display())
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn build_options() -> guests::linux::BuildOptions {
    guests::linux::BuildOptions {
        progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        ..Default::default()
    }
}

fn print_artifacts(a: &guests::linux::LinuxArtifacts) {
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!("  vmlinux (DWARF)   {} ({:.1} MiB)", a.vmlinux.display(), mib(a.sizes.0));
    println!("  vmlinux (to boot) {} ({:.1} MiB)", a.vmlinux_stripped.display(), mib(a.sizes.1));
    println!("  bzImage           {} ({:.1} MiB)", a.bzimage.display(), mib(a.sizes.2));
    if a.vmlinux_gdb.exists() {
        println!("  gdb helpers       {}", a.vmlinux_gdb.display());
    }
    println!("  built in {:.0} s", a.build_seconds);
    for (name, want, got) in &a.dropped_options {
        println!("  note: {name} wanted {want:?}, Kconfig kept {got:?}");
    }
}

/// Writes the embedded unikernel ELF into the cache (once per content, atomically) and
/// returns its path.
pub fn unikernel_path() -> anyhow::Result<std::path::PathBuf> {
    guests::cache::content_file("unikernel", "unikernel", "elf", guests::unikernel::ELF)
        .context("cannot write the unikernel ELF into the cache")
}
