//! What the host must have for each guest and feature, and the one command that adds it.
//!
//! A requirement is probed the cheap way a person would check it (a program on `PATH`, a
//! file that a Debian package installs) and names that package, so that every "missing"
//! message can end with the exact `apt-get install` line. `vmscope doctor` lists them all;
//! the kernel build checks [`LINUX_BUILD`] before it starts, so it never stops half-way for
//! a missing tool.

use std::path::{Path, PathBuf};
use std::process::Command;

/// How a requirement is found on the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// A program on `PATH`.
    Program(&'static str),
    /// A file (a header, a tarball, a binary at a fixed path).
    File(&'static str),
}

/// One thing a guest or feature needs from the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Requirement {
    /// What it is, for people (`gcc`, `libelf headers`).
    pub name: &'static str,
    /// How to find it.
    pub probe: Probe,
    /// The Debian package that provides it.
    pub package: &'static str,
}

const fn program(name: &'static str, package: &'static str) -> Requirement {
    Requirement { name, probe: Probe::Program(name), package }
}

const fn file(name: &'static str, path: &'static str, package: &'static str) -> Requirement {
    Requirement { name, probe: Probe::File(path), package }
}

/// busybox, the Linux guest's user space (its `/init` and the shell).
pub const BUSYBOX: Requirement = file("busybox", crate::linux::initramfs::BUSYBOX, "busybox-static");

/// What building the Linux guest's kernel runs (see `linux::build`).
pub const LINUX_BUILD: &[Requirement] = &[
    file("kernel source", crate::linux::SOURCE_TARBALL, "linux-source-6.1"),
    program("tar", "tar"),
    program("xz", "xz-utils"),
    program("patch", "patch"),
    program("make", "make"),
    program("gcc", "gcc"),
    program("ld", "binutils"),
    program("objcopy", "binutils"),
    program("bc", "bc"),
    program("flex", "flex"),
    program("bison", "bison"),
    program("perl", "perl"),
    file("libelf headers", "/usr/include/libelf.h", "libelf-dev"),
    file("OpenSSL headers", "/usr/include/openssl/ssl.h", "libssl-dev"),
];

/// Clients that features talk to: gdb for `--gdb`, tmux for the TUI tests, strace for
/// `measure surface`, runc as the second container runtime, QEMU (the unikernel's PVH entry
/// in the tests, and `measure anchors`) and GNU time (`measure anchors`' true peak RSS).
pub const CLIENTS: &[Requirement] = &[
    program("gdb", "gdb"),
    program("tmux", "tmux"),
    program("strace", "strace"),
    program("runc", "runc"),
    program("mke2fs", "e2fsprogs"),
    program("qemu-system-x86_64", "qemu-system-x86"),
    file("GNU time", "/usr/bin/time", "time"),
];

/// Where a program is on `PATH`.
pub fn which(program: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths).map(|d| d.join(program)).find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

impl Requirement {
    /// Where it was found on this host, or `None`.
    pub fn found(&self) -> Option<PathBuf> {
        match self.probe {
            Probe::Program(p) => which(p),
            Probe::File(f) => Path::new(f).exists().then(|| f.into()),
        }
    }
}

/// The requirements of `reqs` this host lacks.
pub fn missing(reqs: &[Requirement]) -> Vec<Requirement> {
    reqs.iter().filter(|r| r.found().is_none()).copied().collect()
}

/// The distinct packages of `reqs`, in order.
pub fn packages(reqs: &[Requirement]) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = vec![];
    for r in reqs {
        if !out.contains(&r.package) {
            out.push(r.package);
        }
    }
    out
}

/// The command that installs `reqs`: `apt-get install -y PKG…` (with `sudo` when not root).
pub fn install_command(reqs: &[Requirement]) -> String {
    let sudo = if is_root() { "" } else { "sudo " };
    format!("{sudo}apt-get install -y {}", packages(reqs).join(" "))
}

/// Whether this process runs as root (from `/proc/self/status`, so no `unsafe` is needed).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Errors of [`install`].
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// Installing packages needs root.
    #[error("installing {packages} needs root: run `sudo apt-get install -y {packages}`")]
    NotRoot {
        /// The packages, space-separated.
        packages: String,
    },
    /// apt-get could not be started.
    #[error("cannot run apt-get (is this Debian or Ubuntu?)")]
    Spawn(#[source] std::io::Error),
    /// apt-get failed.
    #[error("`apt-get {step}` failed with {status}")]
    Failed {
        /// `update` or `install …`.
        step: String,
        /// Its exit status.
        status: std::process::ExitStatus,
    },
}

/// Installs the packages of `reqs` with apt-get (`update`, then `install -y`), as root.
pub fn install(reqs: &[Requirement]) -> Result<(), InstallError> {
    let pkgs = packages(reqs);
    if pkgs.is_empty() {
        return Ok(());
    }
    if !is_root() {
        return Err(InstallError::NotRoot { packages: pkgs.join(" ") });
    }
    let run = |args: &[&str]| -> Result<(), InstallError> {
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map_err(InstallError::Spawn)?;
        if status.success() {
            Ok(())
        } else {
            Err(InstallError::Failed { step: args.join(" "), status })
        }
    };
    run(&["update", "-qq"])?;
    let mut args = vec!["install", "-y", "-qq"];
    args.extend(&pkgs);
    run(&args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_find_what_is_there_and_name_packages_once() {
        assert!(program("sh", "dash").found().is_some(), "every Debian has /bin/sh");
        let absent = [
            program("no-such-program-vmscope", "pkg-a"),
            file("no file", "/nonexistent/vmscope", "pkg-b"),
            program("no-such-program-vmscope-2", "pkg-a"),
        ];
        assert_eq!(missing(&absent).len(), 3);
        assert_eq!(packages(&absent), ["pkg-a", "pkg-b"]);
        assert!(install_command(&absent).ends_with("apt-get install -y pkg-a pkg-b"));
        assert!(install(&[]).is_ok(), "nothing to install is no error");
    }
}
