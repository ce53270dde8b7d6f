//! End to end: the unikernel file that `vmscope guests path unikernel` prints boots under
//! QEMU's microvm through its Xen PVH note (console on COM1, exit through isa-debug-exit)
//! and, the very same file, under vmscope: directly (`--elf`, the ELF entry point) and
//! through PVH (`run linux --kernel`, vmscope's PVH loader); and that `run --elf` enters a
//! PVH ELF without vmscope's note (this file with the note renamed) through its PVH entry.

mod common;
use common::{require_kvm, stderr, stdout, vmscope};
use std::path::PathBuf;
use std::process::{Command, Output};

/// The unikernel ELF as users get it.
fn unikernel_path() -> PathBuf {
    let o = vmscope(&["guests", "path", "unikernel"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    PathBuf::from(stdout(&o).trim())
}

fn qemu_installed() -> bool {
    Command::new("qemu-system-x86_64").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// Boots `elf` under QEMU microvm with `cmdline`; KVM when /dev/kvm is there, else TCG.
fn qemu(elf: &PathBuf, cmdline: &str) -> Output {
    let kvm = std::path::Path::new("/dev/kvm").exists();
    let mut cmd = Command::new("timeout");
    cmd.args(["300", "qemu-system-x86_64", "-M", "microvm", "-m", "128", "-nodefaults", "-no-user-config"]);
    if kvm {
        // PVM refuses QEMU's IA32_ARCH_CAPABILITIES write; `-cpu host` needs it dropped.
        cmd.args(["-accel", "kvm", "-cpu", "host,-arch-capabilities"]);
    } else {
        cmd.args(["-accel", "tcg", "-cpu", "max"]);
    }
    cmd.args(["-display", "none", "-no-reboot", "-serial", "stdio"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=4", "-kernel"])
        .arg(elf)
        .args(["-append", cmdline]);
    cmd.output().expect("run qemu-system-x86_64")
}

#[test]
fn qemu_microvm_boots_the_unikernel_through_pvh() {
    if !qemu_installed() {
        eprintln!("SKIP: qemu-system-x86_64 is not installed (Debian: apt-get install qemu-system-x86)");
        return;
    }
    let elf = unikernel_path();
    let o = qemu(&elf, "compute 1000");
    let out = stdout(&o);
    assert!(out.contains("compute: N=1000 primes=168 checksum=0x1295f"), "{out}\n{}", stderr(&o));
    // isa-debug-exit: QEMU exits with (code << 1) | 1; compute exits with 0.
    assert_eq!(o.status.code(), Some(1), "{out}\n{}", stderr(&o));
    let o = qemu(&elf, "exit 5");
    assert_eq!(o.status.code(), Some(11), "{}\n{}", stdout(&o), stderr(&o));
    let o = qemu(&elf, "uart 3");
    assert!(stdout(&o).contains("uuu\nuart: 3 bytes through COM1"), "{}", stdout(&o));
}

#[test]
fn vmscope_boots_the_same_file_directly_and_through_pvh() {
    require_kvm();
    let elf = unikernel_path();
    let elf_s = elf.to_str().expect("cache path is UTF-8");
    // The ELF entry point: vmscope's direct long-mode entry and its hypercalls.
    let o = vmscope(&["run", "--elf", elf_s, "--workload", "compute", "1000", "--timeout", "300"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("compute: N=1000 primes=168"), "{}", stdout(&o));
    // The PVH note, through vmscope's PVH loader (the one that boots a Linux vmlinux):
    // vmscope's Linux command line comes first, so the unikernel names it as unknown on
    // COM1 and resets through the i8042, which vmscope reports as a reboot.
    let o = vmscope(&["run", "linux", "--kernel", elf_s, "--workload", "hello", "--timeout", "300"]);
    assert!(
        stdout(&o).contains("unikernel: unknown workload 'console=ttyS0'"),
        "{}\n{}",
        stdout(&o),
        stderr(&o)
    );
    assert!(stderr(&o).contains("reset the machine"), "{}", stderr(&o));
}

/// The unikernel with its vmscope note's owner renamed: a PVH ELF like any other VMM's.
fn without_vmscope_note(elf: &std::path::Path, dir: &std::path::Path) -> PathBuf {
    let mut bytes = std::fs::read(elf).unwrap();
    // namesz 8, descsz 4, type 1 (vmscope_abi::NOTE_DIRECT_ENTRY), "vmscope\0".
    let note: Vec<u8> =
        [8u32, 4, 1].iter().flat_map(|v| v.to_le_bytes()).chain(b"vmscope\0".iter().copied()).collect();
    let at = bytes.windows(note.len()).position(|w| w == note).expect("the unikernel carries vmscope's note");
    bytes[at + 18] = b'X';
    let path = dir.join("pvh-only.elf");
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn run_elf_enters_a_pvh_elf_without_vmscopes_note_through_pvh() {
    require_kvm();
    let dir = tempfile::tempdir().unwrap();
    let elf = unikernel_path();
    let pvh = without_vmscope_note(&elf, dir.path());
    let pvh_s = pvh.to_str().unwrap();
    // Through the PVH entry: the workload's words are the command line (hvm_start_info),
    // the console is COM1, and the guest ends with an i8042 reset.
    let o = vmscope(&["run", "-v", "--elf", pvh_s, "--workload", "compute", "1000", "--timeout", "300"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("compute: N=1000 primes=168"), "{}\n{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains("entered through the PVH entry"), "{}", stderr(&o));
    assert!(stderr(&o).contains("command line: compute 1000"), "{}", stderr(&o));
    assert!(stderr(&o).contains("reset the machine"), "{}", stderr(&o));
    // --append gives the command line instead.
    let o = vmscope(&["run", "--elf", pvh_s, "--append", "hello", "--timeout", "300"]);
    assert!(
        stdout(&o).contains("Hello from the vmscope unikernel (ring 0)"),
        "{}\n{}",
        stdout(&o),
        stderr(&o)
    );
    // With the note, the same file is entered directly (its hypercall console, no COM1).
    let o =
        vmscope(&["run", "-v", "--elf", elf.to_str().unwrap(), "--workload", "hello", "--timeout", "300"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("Hello from the vmscope unikernel"), "{}", stdout(&o));
    assert!(!stderr(&o).contains("PVH entry"), "{}", stderr(&o));
}
