//! End to end: the minimal Linux, built by vmscope and booted under vmscope's VMM. On a PVM
//! host the kernel runs in KVM's instruction emulator, so each boot takes about a minute:
//! one boot checks several workloads.

mod common;
use common::{stderr, stdout, vmscope};

#[test]
fn linux_boots_runs_workloads_and_powers_off() {
    let o = vmscope(&["run", "linux", "--workload", "hello;compute 1000000", "--timeout", "900"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{}", stderr(&o));
    assert!(out.contains("vmscope: ready"), "{out}");
    assert!(out.contains("Hello from the vmscope workload"), "{out}");
    assert!(out.contains("compute: N=1000000 primes=78498 checksum=0x8be2da9e7"), "{out}");
    assert!(out.contains("vmscope: done with status 0"), "{out}");
}

#[test]
fn a_kernel_panic_ends_the_run_with_its_text() {
    // No /init to run and no root device: the kernel panics.
    let o = vmscope(&["run", "linux", "--append", "rdinit=/nonexistent", "--timeout", "900"]);
    assert_eq!(o.status.code(), Some(125), "{}\n{}", stdout(&o), stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("Kernel panic"), "{err}");
    assert!(err.contains("reset the machine (i8042"), "{err}");
}

/// `elf` with its `XEN_ELFNOTE_PHYS32_ENTRY` note (type 18, name "Xen") renamed "Xyn", so
/// no loader takes it for a PVH entry.
fn without_pvh_note(elf: &[u8]) -> Vec<u8> {
    let mut out = elf.to_vec();
    let header = [4, 0, 0, 0]; // namesz = 4 ("Xen\0")
    let pattern: Vec<u8> = [18u8, 0, 0, 0].iter().chain(b"Xen\0").copied().collect();
    let at = out
        .windows(pattern.len())
        .position(|w| w == pattern.as_slice())
        .expect("the unikernel has a PVH note");
    assert_eq!(out[at - 8..at - 4], header, "a note header precedes the PVH note's type");
    out[at + 5] = b'y';
    out
}

#[test]
fn bad_kernels_and_initrds_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not a kernel").unwrap();
    let text = text.to_str().unwrap();

    let o = vmscope(&["run", "linux", "--kernel", "/nonexistent/vmlinux"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot read /nonexistent/vmlinux"), "{}", stderr(&o));

    let o = vmscope(&["run", "linux", "--kernel", text]);
    assert!(stderr(&o).contains("notes.txt is not a vmlinux ELF kernel"), "{}", stderr(&o));

    // The unikernel has a Xen PVH entry note (QEMU and Firecracker boot it through it), so
    // the ELF without a PVH note is the unikernel with its note renamed.
    let uk = dir.path().join("unikernel.elf");
    std::fs::write(&uk, without_pvh_note(guests::unikernel::ELF)).unwrap();
    let o = vmscope(&["run", "linux", "--kernel", uk.to_str().unwrap()]);
    assert!(stderr(&o).contains("has no PVH entry note"), "{}", stderr(&o));

    let o = vmscope(&["run", "linux", "--kernel", uk.to_str().unwrap(), "--initrd", text]);
    // The initramfs is checked before the kernel is loaded.
    assert!(stderr(&o).contains("notes.txt is not an initramfs"), "{}", stderr(&o));
}

#[test]
fn gdb_on_the_guest_kernel() {
    use std::io::BufRead;
    common::require_kvm();
    let vmlinux =
        String::from_utf8(vmscope(&["guests", "path", "vmlinux"]).stdout).unwrap().trim().to_string();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vmscope"))
        .args(["run", "linux", "--gdb", "127.0.0.1:0", "--gdb-wait"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let announce = lines.find_map(|l| l.ok().filter(|l| l.contains("target remote"))).unwrap();
    let addr = announce.split("target remote ").nth(1).unwrap().trim_end_matches('\'').to_string();
    let o = std::process::Command::new("gdb")
        .args(["-nx", "-batch", "-ex", "set pagination off", "-ex", &format!("target remote {addr}")])
        // Before the kernel enables paging, a software breakpoint's address cannot be
        // translated; a hardware breakpoint matches the linear address (as with QEMU).
        .args([
            "-ex",
            "hbreak start_kernel",
            "-ex",
            "continue",
            "-ex",
            "bt",
            "-ex",
            "list",
            "-ex",
            "info registers cr3",
        ])
        .args(["-ex", "monitor pt $pc", "-ex", "kill", &vmlinux])
        .output()
        .unwrap();
    let out = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("start_kernel () at init/main.c"), "{out}");
    assert!(out.contains("x86_64_start_kernel"), "{out}");
    assert!(out.contains("set_task_stack_end_magic"), "list shows the kernel's source: {out}");
    assert!(out.lines().any(|l| l.starts_with("cr3")), "{out}");
    assert!(out.contains("PML4E") && out.contains("PDE"), "{out}");
    assert_eq!(child.wait().unwrap().code(), Some(137));
}

/// An ext2 image holding `hello.txt`, made with mke2fs (e2fsprogs) as a user would.
fn ext2_image(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("hello.txt"), text).unwrap();
    let img = dir.join("disk.img");
    let o = std::process::Command::new("mke2fs")
        .args(["-q", "-t", "ext2", "-d"])
        .arg(&root)
        .arg(&img)
        .arg("4M")
        .output()
        .expect("mke2fs (e2fsprogs) is installed");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    img
}

#[test]
fn a_virtio_blk_disk_is_read_and_its_queue_watched_in_flight() {
    common::require_kvm();
    let dir = tempfile::tempdir().unwrap();
    let img = ext2_image(dir.path(), "the quick brown fox reads virtio-blk\n");
    let script = dir.path().join("vq.script");
    // Stop in the driver's notify (the request is on the ring, the device has not seen it),
    // look at the device and its queue, then let the guest run its workload to the end.
    std::fs::write(&script, "devices\nvq 0 0\ndelete vm_notify\ncont\n").unwrap();
    let disk = format!("{},ro", img.display());
    let o = vmscope(&[
        "run",
        "linux",
        "--disk",
        &disk,
        "--workload",
        "cat /mnt/hello.txt",
        "--break",
        "vm_notify",
        "--script",
        script.to_str().unwrap(),
        "--timeout",
        "900",
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{}", stderr(&o));
    assert!(out.contains("<vm_notify>"), "{out}");
    assert!(out.contains("0: virtio-blk (id 2) at 0xd0000000 irq 5"), "{out}");
    // The read request in flight: a 16-byte header the device reads, a data buffer and a
    // status byte it writes.
    assert!(out.contains("in flight 1"), "{out}");
    let chain = out.lines().find(|l| l.starts_with("chain ")).unwrap_or_else(|| panic!("{out}"));
    assert!(chain.contains("+16]") && chain.ends_with("+1 W]"), "{chain}");
    assert!(out.contains("disk /dev/vda (8192 sectors) mounted at /mnt"), "{out}");
    assert!(out.contains("the quick brown fox reads virtio-blk"), "{out}");
    assert!(out.contains("vmscope: done with status 0"), "{out}");
}

#[test]
fn bad_disks_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let o = vmscope(&["run", "linux", "--disk", "/nonexistent/disk.img"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot open disk image /nonexistent/disk.img"), "{}", stderr(&o));
    let odd = dir.path().join("odd.img");
    std::fs::write(&odd, [0u8; 1000]).unwrap();
    let o = vmscope(&["run", "linux", "--disk", odd.to_str().unwrap()]);
    assert!(
        stderr(&o).contains("is 1000 bytes: a disk must be a non-empty multiple of 512 bytes"),
        "{}",
        stderr(&o)
    );
    let o = vmscope(&["run", "unikernel", "--disk", odd.to_str().unwrap()]);
    assert!(stderr(&o).contains("is 1000 bytes: a disk must be a non-empty multiple"), "{}", stderr(&o));
    let img = dir.path().join("d.img");
    std::fs::write(&img, [0u8; 4096]).unwrap();
    let d = img.to_str().unwrap();
    let o = vmscope(&["run", "linux", "--disk", d, "--disk", d, "--disk", d, "--disk", d]);
    assert!(stderr(&o).contains("at most 3 virtio devices"), "{}", stderr(&o));
}

/// One boot for two paths: the 64-bit boot protocol (zero page, long-mode entry) instead of
/// PVH, and `reboot` in the interactive shell ending the VM through the i8042 reset.
#[test]
fn linux64_boot_and_reboot_in_the_shell_end_the_vm_cleanly() {
    use std::io::{BufRead, Write};
    common::require_kvm();
    // The limit only ends a hung guest: a boot and a reboot in KVM's emulator on a busy
    // 2-core PVM host once took longer than 900 s.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vmscope"))
        .args(["run", "linux", "--boot", "linux64", "--shell", "--timeout", "2400", "-v"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut seen = String::new();
    // Type only once the shell is there: input before the tty is open is dropped.
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        seen += &line;
        seen.push('\n');
        if line.contains("built-in shell") {
            std::thread::sleep(std::time::Duration::from_secs(2));
            stdin.write_all(b"reboot\n").unwrap();
            stdin.flush().unwrap();
        }
    }
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{seen}\n{err}");
    assert!(seen.contains("vmscope: reboot requested"), "{seen}");
    assert!(err.contains("reset the machine (a reboot)"), "{err}");
    assert!(err.contains("entered through the 64-bit boot protocol at 0x1000000"), "{err}");
}
