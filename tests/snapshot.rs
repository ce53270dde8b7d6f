//! End to end: `snapshot FILE` in a debug session, `vmscope run --restore FILE` in a new
//! process, `vmscope snapshot info|diff`, and the files a restore must refuse. The guest is
//! the unikernel's `ticks N [SPIN]` workload, whose numbered lines show any tick lost or
//! repeated across the restore.

mod common;
use common::{stderr, stdout, vmscope};
use std::path::{Path, PathBuf};

/// The tick numbers a run printed, in order.
fn ticks(out: &str) -> Vec<u64> {
    out.lines().filter_map(|l| l.trim().strip_prefix("tick ")).filter_map(|n| n.trim().parse().ok()).collect()
}

fn script(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Takes a snapshot of `ticks N` before its first instruction (a script session starts the
/// guest paused) and returns its path.
fn snapshot_at_start(dir: &Path, n: &str) -> PathBuf {
    let snap = dir.join("start.vmsnap");
    let sc = script(dir, "take", &format!("snapshot {}\nquit\n", s(&snap)));
    let o = vmscope(&["run", "unikernel", "--ring", "3", "--workload", "ticks", n, "--script", s(&sc)]);
    assert!(stdout(&o).contains("snapshot written to"), "{}\n{}", stdout(&o), stderr(&o));
    assert!(ticks(&stdout(&o)).is_empty(), "nothing ran before the snapshot: {}", stdout(&o));
    snap
}

#[test]
fn ring0_snapshot_at_a_breakpoint_goes_on_in_a_new_process() {
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("bp.vmsnap");
    // --break runs to tick_reached(1); two `cont`s print ticks 1 and 2 and stop before 3.
    let sc = script(dir.path(), "take", &format!("cont\ncont\nsnapshot {}\nquit\n", s(&snap)));
    let o = vmscope(&[
        "run",
        "unikernel",
        "--ring",
        "0",
        "--workload",
        "ticks",
        "12",
        "--break",
        "tick_reached",
        "--script",
        s(&sc),
        "--timeout",
        "300",
    ]);
    let before = ticks(&stdout(&o));
    assert_eq!(before, vec![1, 2], "{}\n{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("snapshot written to"), "{}", stdout(&o));

    // Without a session the breakpoint is left out (and said so); the guest runs to its end.
    let o = vmscope(&["run", "--restore", s(&snap), "--timeout", "300"]);
    assert_eq!(o.status.code(), Some(12), "exit status is N mod 256: {}\n{}", stdout(&o), stderr(&o));
    assert_eq!(ticks(&stdout(&o)), (3..=12).collect::<Vec<_>>(), "{}", stdout(&o));
    assert!(stdout(&o).contains("ticks: done 12"), "{}", stdout(&o));
    assert!(stderr(&o).contains("breakpoint(s) in the snapshot are left out"), "{}", stderr(&o));

    // With a session the breakpoint comes back: `cont` steps over the one at RIP, prints
    // tick 3 and stops at tick_reached again.
    let sc = script(dir.path(), "again", "cont\nregs\nquit\n");
    let o = vmscope(&["run", "--restore", s(&snap), "--script", s(&sc), "--timeout", "300"]);
    assert_eq!(ticks(&stdout(&o)), vec![3], "{}\n{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("tick_reached"), "stopped at the restored breakpoint: {}", stdout(&o));
}

#[test]
fn ring3_snapshot_of_a_running_guest_loses_no_tick() {
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("run.vmsnap");
    // The guest runs natively at CPL3 for seconds; `cont` gives up after --timeout 1 and
    // pauses it wherever it is; the snapshot is taken there.
    let n = 2000u64;
    let sc = script(dir.path(), "take", &format!("cont\nsnapshot {}\nquit\n", s(&snap)));
    let o = vmscope(&[
        "run",
        "unikernel",
        "--ring",
        "3",
        "--workload",
        "ticks",
        &n.to_string(),
        "5000000",
        "--script",
        s(&sc),
        "--timeout",
        "1",
    ]);
    let before = ticks(&stdout(&o));
    assert!(stdout(&o).contains("snapshot written to"), "{}\n{}", stdout(&o), stderr(&o));
    assert!(
        !stdout(&o).contains("ticks: done"),
        "the guest ended before the pause (a host 10x faster than expected?): {}",
        stdout(&o)
    );
    let k = before.len() as u64;
    assert_eq!(before, (1..=k).collect::<Vec<_>>());

    let o = vmscope(&["run", "--restore", s(&snap), "--timeout", "600"]);
    assert_eq!(o.status.code(), Some((n % 256) as i32), "{}", stderr(&o));
    let after = ticks(&stdout(&o));
    assert_eq!(after, (k + 1..=n).collect::<Vec<_>>(), "no gap, no repeat after tick {k}");
}

#[test]
fn snapshot_info_and_diff_describe_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let snap = snapshot_at_start(dir.path(), "3");
    let o = vmscope(&["snapshot", "info", s(&snap)]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    for want in [
        "ELF guest at CPL3",
        "vCPUs:     1",
        "memory:    64 MiB",
        "COM1 16550",
        "every CRC-32 verified",
        "vcpu0",
        "pagemap",
    ] {
        assert!(out.contains(want), "{want:?} missing from:\n{out}");
    }
    let o = vmscope(&["snapshot", "info", "--json", s(&snap)]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["meta"]["vcpus"], 1);
    assert_eq!(v["meta"]["mem_bytes"], 64u64 << 20);
    assert!(v["meta"]["nonzero_bytes"].as_u64().unwrap() < 8 << 20, "only non-zero pages are stored");
    assert!(v["disk_bytes"].as_u64().unwrap() < 16 << 20, "zero pages are holes: {}", v["disk_bytes"]);

    let o = vmscope(&["snapshot", "diff", s(&snap), s(&snap)]);
    assert_eq!(stdout(&o).trim(), "no differences", "{}", stderr(&o));

    // Restored from before the first instruction, the whole workload runs.
    let o = vmscope(&["run", "--restore", s(&snap), "--timeout", "60"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert_eq!(ticks(&stdout(&o)), vec![1, 2, 3]);
}

/// The section table: (name, offset, length, offset of the table entry).
fn entries(bytes: &[u8]) -> Vec<(String, usize, usize, usize)> {
    let count = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    (0..count)
        .map(|i| {
            let e = &bytes[32 + 32 * i..64 + 32 * i];
            let name = String::from_utf8_lossy(&e[..8]).trim_end_matches('\0').to_string();
            let off = u64::from_le_bytes(e[8..16].try_into().unwrap()) as usize;
            let len = u64::from_le_bytes(e[16..24].try_into().unwrap()) as usize;
            (name, off, len, 32 + 32 * i)
        })
        .collect()
}

/// CRC-32 (IEEE, reflected), bit by bit: the format's checksum, computed independently.
fn crc(b: &[u8]) -> u32 {
    let mut c = !0u32;
    for &byte in b {
        c ^= u32::from(byte);
        for _ in 0..8 {
            c = if c & 1 != 0 { (c >> 1) ^ 0xedb8_8320 } else { c >> 1 };
        }
    }
    !c
}

/// `vmscope run --restore FILE` must refuse with `what` in its message, exit 1, print no tick.
fn refused(file: &Path, what: &str) {
    let o = vmscope(&["run", "--restore", s(file), "--timeout", "30"]);
    assert_eq!(o.status.code(), Some(1), "{}\n{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains(what), "{what:?} missing from: {}", stderr(&o));
    assert!(ticks(&stdout(&o)).is_empty(), "nothing may run: {}", stdout(&o));
}

#[test]
fn damaged_and_foreign_snapshots_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let snap = snapshot_at_start(dir.path(), "3");
    let good = std::fs::read(&snap).unwrap();
    let table = entries(&good);
    let bad = dir.path().join("bad.vmsnap");
    let find = |name: &str| table.iter().find(|e| e.0 == name).cloned().unwrap();

    // One byte flipped inside the vCPU section.
    let (_, off, _, _) = find("vcpu0");
    let mut b = good.clone();
    b[off + 20] ^= 0x01;
    std::fs::write(&bad, &b).unwrap();
    refused(&bad, "section \"vcpu0\" is corrupted");

    // One byte flipped in a non-zero page of memory (the page map's first run).
    let (_, pm, _, _) = find("pagemap");
    let first_page = u64::from_le_bytes(good[pm..pm + 8].try_into().unwrap()) as usize;
    let (_, mem, _, _) = find("memory");
    let mut b = good.clone();
    b[mem + first_page * 4096 + 100] ^= 0x80;
    std::fs::write(&bad, &b).unwrap();
    refused(&bad, "section \"memory\" is corrupted");

    // Truncated: the file ends inside the memory image.
    std::fs::write(&bad, &good[..good.len() - 4096]).unwrap();
    refused(&bad, "truncated");

    // A newer format version (with a correct header CRC).
    let mut b = good.clone();
    b[8..12].copy_from_slice(&3u32.to_le_bytes());
    let h = crc(&b[..20]);
    b[20..24].copy_from_slice(&h.to_le_bytes());
    std::fs::write(&bad, &b).unwrap();
    refused(&bad, "format version 3; this vmscope reads versions 1 to 2 (it was written by a newer vmscope)");

    // Not a snapshot at all.
    std::fs::write(&bad, b"#!/bin/sh\n").unwrap();
    refused(&bad, "is not a vmscope snapshot");

    // A guest that saw another CPU: change the first CPUID entry's EAX in vcpu0 and fix
    // every CRC, so only the CPUID check can catch it.
    let (_, off, len, entry) = find("vcpu0");
    let mut b = good.clone();
    let mut at = off;
    while at < off + len {
        let tag = u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
        let rlen = u32::from_le_bytes(b[at + 4..at + 8].try_into().unwrap()) as usize;
        if tag == 11 {
            // kvm_cpuid_entry2: function, index, flags, eax, …
            b[at + 8 + 12] ^= 0x01;
            break;
        }
        at += 8 + rlen;
    }
    let c = crc(&b[off..off + len]);
    b[entry + 24..entry + 28].copy_from_slice(&c.to_le_bytes());
    let count = table.len();
    let t = crc(&b[32..32 + 32 * count]);
    b[16..20].copy_from_slice(&t.to_le_bytes());
    let h = crc(&b[..20]);
    b[20..24].copy_from_slice(&h.to_le_bytes());
    std::fs::write(&bad, &b).unwrap();
    refused(&bad, "this host's CPU differs from the one the guest saw");

    // The good file still restores (none of the above touched it).
    let o = vmscope(&["run", "--restore", s(&snap), "--timeout", "60"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
}

/// A guest with a disk: the disk's identity is saved, the restored guest gets it back, and
/// an image that changed or went away since is refused before anything runs.
#[test]
fn a_guest_with_a_disk_is_restored_only_onto_the_same_image() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
    let snap = dir.path().join("d.vmsnap");
    let sc = script(dir.path(), "take", &format!("snapshot {}\nquit\n", s(&snap)));
    let o = vmscope(&[
        "run",
        "unikernel",
        "--ring",
        "3",
        "--workload",
        "ticks",
        "3",
        "--disk",
        s(&disk),
        "--script",
        s(&sc),
    ]);
    assert!(stdout(&o).contains("snapshot written to"), "{}\n{}", stdout(&o), stderr(&o));
    let o = vmscope(&["snapshot", "info", "--json", s(&snap)]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let d = &v["devices"]["virtio"][0];
    assert_eq!(d["name"], "blk", "{v}");
    assert_eq!(d["disk"]["size"], 1 << 20);
    assert_eq!(d["disk"]["path"], disk.canonicalize().unwrap().to_str().unwrap());

    // Restored onto the same image, from another directory: it runs to its end.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_vmscope"))
        .args(["run", "--restore", s(&snap), "--timeout", "60"])
        .current_dir("/")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert_eq!(ticks(&stdout(&o)), vec![1, 2, 3]);

    // One byte of the image changed: refused, naming the image and why.
    let mut bytes = std::fs::read(&disk).unwrap();
    bytes[512] = 1;
    std::fs::write(&disk, &bytes).unwrap();
    refused(&snap, "is not the one in the snapshot: it was modified after the snapshot");
    // Another size.
    std::fs::write(&disk, vec![0u8; 2 << 20]).unwrap();
    refused(&snap, "its size is 2097152 bytes, it was 1048576 bytes");
    // Gone.
    std::fs::remove_file(&disk).unwrap();
    refused(&snap, "it cannot be found");
}

/// The first numbers of every line that is `/proc/uptime`'s output ("12.34 5.67").
fn uptimes(out: &str) -> Vec<f64> {
    out.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let (a, b) = (w.next()?, w.next()?);
            if w.next().is_some() || !a.contains('.') || !b.contains('.') {
                return None;
            }
            b.parse::<f64>().ok()?;
            a.parse::<f64>().ok()
        })
        .collect()
}

/// An ext2 image holding `hello.txt`, made with mke2fs (e2fsprogs) as a user would.
fn ext2_image(dir: &Path, text: &str) -> PathBuf {
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

/// One boot for the whole Linux story: the shell with a disk mounted prints the guest's
/// uptime and is stopped in the `sync` it runs next (a breakpoint at the system call), where
/// the snapshot is taken; `snapshot info` describes it; a new process goes on with the same
/// shell (a typed command is answered), the same clock (uptime did not go back) and the same
/// disk (a file not read before the snapshot is read through the restored virtio queue); a
/// changed or missing disk is refused before anything runs.
#[test]
fn linux_shell_with_a_disk_goes_on_in_a_new_process() {
    let dir = tempfile::tempdir().unwrap();
    let img = ext2_image(dir.path(), "read after the restore\n");
    let snap = dir.path().join("shell.vmsnap");
    // Stopped at start_kernel (a hardware breakpoint: the kernel is not mapped at entry), then
    // with a software one at the sync(2) system call, which nothing but the typed line makes.
    let sc = script(
        dir.path(),
        "take",
        &format!(
            "delete start_kernel\nbreak __x64_sys_sync\ncont\ndelete __x64_sys_sync\nsnapshot {}\nquit\n",
            s(&snap)
        ),
    );
    let disk = format!("{},ro", s(&img));
    let mut first = common::typing::Typing::spawn(&[
        "run",
        "linux",
        "--shell",
        "--disk",
        &disk,
        "--break",
        "start_kernel",
        "--script",
        s(&sc),
        "--timeout",
        "1800",
    ]);
    first.expect_out("built-in shell");
    first.type_until("cat /proc/uptime; sync", "stopped: breakpoint");
    let (code, out1, err1) = first.finish();
    assert_eq!(code, Some(0), "{out1}\n{err1}");
    assert!(out1.contains("<__x64_sys_sync>"), "{out1}");
    assert!(out1.contains("snapshot written to"), "{out1}\n{err1}");

    let o = vmscope(&["snapshot", "info", s(&snap)]);
    let info = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{info}{}", stderr(&o));
    for want in [
        "Linux kernel booted through pvh",
        "vmscope.shell=1",
        "virtio-mmio 0: virtio-blk (id 2) at 0xd0000000 irq 5",
        "queue 0: size",
        &format!("disk {} (read-only)", img.canonicalize().unwrap().display()),
        "in-kernel PIC master and slave, IOAPIC, PIT",
        "format version 2",
    ] {
        assert!(info.contains(want), "{want:?} missing from:\n{info}");
    }

    let mut second = common::typing::Typing::spawn(&["run", "--restore", s(&snap), "--timeout", "1200"]);
    second.type_line("cat /proc/uptime");
    second.type_line("cat /mnt/hello.txt");
    second.expect_out("read after the restore");
    second.type_line("poweroff");
    let (code, out2, err2) = second.finish();
    assert_eq!(code, Some(0), "{out2}\n{err2}");
    assert!(out2.contains("vmscope: power-off requested"), "{out2}\n{err2}");
    let all = uptimes(&format!("{out1}{out2}"));
    assert!(all.len() >= 2, "two uptimes, before and after: {out1}\n{out2}");
    let (before, after) = (all[0], all[all.len() - 1]);
    assert!(after >= before, "the guest's clock went back from {before} to {after}");
    assert!(!out2.contains("Linux version"), "the restored guest did not boot again: {out2}");

    // The image changed after the snapshot: refused, naming the disk and why.
    let saved = std::fs::read(&img).unwrap();
    let mut changed = saved.clone();
    changed[2048] ^= 1;
    std::fs::write(&img, &changed).unwrap();
    let o = vmscope(&["run", "--restore", s(&snap), "--timeout", "30"]);
    assert_eq!(o.status.code(), Some(1), "{}\n{}", stdout(&o), stderr(&o));
    assert!(
        stderr(&o).contains("is not the one in the snapshot: it was modified after the snapshot"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains(&img.canonicalize().unwrap().display().to_string()), "{}", stderr(&o));
    assert!(stdout(&o).is_empty(), "nothing ran: {}", stdout(&o));
    // Gone: refused too.
    std::fs::remove_file(&img).unwrap();
    let o = vmscope(&["run", "--restore", s(&snap), "--timeout", "30"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("it cannot be found"), "{}", stderr(&o));
}
