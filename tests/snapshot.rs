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

    // Another format version (with a correct header CRC).
    let mut b = good.clone();
    b[8..12].copy_from_slice(&2u32.to_le_bytes());
    let h = crc(&b[..20]);
    b[20..24].copy_from_slice(&h.to_le_bytes());
    std::fs::write(&bad, &b).unwrap();
    refused(&bad, "format version 2; this vmscope reads version 1 only");

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

#[test]
fn a_guest_with_a_disk_is_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
    let snap = dir.path().join("d.vmsnap");
    let sc = script(dir.path(), "take", &format!("snapshot {}\nquit\n", s(&snap)));
    let o = vmscope(&["run", "unikernel", "--ring", "3", "--disk", s(&disk), "--script", s(&sc)]);
    assert!(
        stdout(&o).contains("virtio devices (--disk) are not in snapshots yet"),
        "{}\n{}",
        stdout(&o),
        stderr(&o)
    );
    assert!(!snap.exists(), "no file is left behind");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2, "no temporary file either");
}
