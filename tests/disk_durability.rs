//! Nothing the guest's disk acknowledged is lost when vmscope is killed: the unikernel's
//! `disk-write N` workload writes sectors 0..N through virtio-blk and prints
//! `disk-write: sector I ok` after the device completed each one with status OK; the test
//! reads vmscope's stdout line by line, SIGKILLs vmscope once every sector was
//! acknowledged (the guest is spinning by then), and reads the image file back.
//! The device writes a request's data to the image before it puts the request in the used
//! ring, so an acknowledged write is in the host's page cache and survives the process.

mod common;
use common::require_kvm;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

/// Sectors the guest writes.
const SECTORS: u64 = 16;

/// Byte `j` of sector `i` as the guest writes it (guests/unikernel/src/disk_write.rs).
fn pattern(i: u64, j: u64) -> u8 {
    ((i.wrapping_mul(31) + j) as u8) ^ 0x5a
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    require_kvm();
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    // 32 sectors of 0xab: the last 16 must stay untouched.
    std::fs::write(&disk, vec![0xabu8; 32 * 512]).unwrap();
    let workload = format!("disk-write {SECTORS}");
    // The timeout only bounds a broken run; the test kills vmscope long before.
    let mut child = Command::new(env!("CARGO_BIN_EXE_vmscope"))
        .args([
            "run",
            "unikernel",
            "--workload",
            &workload,
            "--disk",
            disk.to_str().unwrap(),
            "--timeout",
            "600",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start the vmscope binary");
    let stdout = child.stdout.take().expect("piped");
    let mut acknowledged = Vec::new();
    let mut seen = Vec::new();
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        seen.push(line.clone());
        if let Some(i) = line.strip_prefix("disk-write: sector ").and_then(|r| r.strip_suffix(" ok")) {
            acknowledged.push(i.parse::<u64>().expect("a sector number"));
        }
        if line == format!("disk-write: {SECTORS} sectors written") {
            break;
        }
    }
    // SIGKILL: no chance to flush or clean up.
    child.kill().expect("SIGKILL vmscope");
    let status = child.wait().unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(status.code().is_none(), "vmscope ended by itself ({status}) before the kill:\n{seen:?}\n{err}");
    assert_eq!(acknowledged, (0..SECTORS).collect::<Vec<_>>(), "the guest's lines:\n{seen:?}\n{err}");

    let image = std::fs::read(&disk).unwrap();
    assert_eq!(image.len(), 32 * 512, "the image changed size");
    for i in 0..SECTORS {
        let sector = &image[(i * 512) as usize..((i + 1) * 512) as usize];
        let want: Vec<u8> = (0..512).map(|j| pattern(i, j)).collect();
        assert!(
            sector == want.as_slice(),
            "sector {i} acknowledged but not in the image: {:02x?}",
            &sector[..16]
        );
    }
    assert!(
        image[(SECTORS * 512) as usize..].iter().all(|&b| b == 0xab),
        "sectors past {SECTORS} were written"
    );
}

#[test]
fn disk_write_without_a_disk_says_so() {
    let o = common::vmscope(&["run", "unikernel", "--workload", "disk-write 1", "--timeout", "60"]);
    let out = common::stdout(&o);
    assert!(out.contains("disk-write: no virtio-mmio device"), "{out}\n{}", common::stderr(&o));
    assert_eq!(o.status.code(), Some(3), "{out}");
}

#[test]
fn disk_write_past_the_capacity_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    std::fs::write(&disk, vec![0u8; 4 * 512]).unwrap();
    let o = common::vmscope(&[
        "run",
        "unikernel",
        "--workload",
        "disk-write 5",
        "--disk",
        disk.to_str().unwrap(),
        "--timeout",
        "60",
    ]);
    let out = common::stdout(&o);
    assert!(
        out.contains("disk-write: N must be 1..4 (the disk has 4 sectors), got 5"),
        "{out}\n{}",
        common::stderr(&o)
    );
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(std::fs::read(&disk).unwrap().iter().all(|&b| b == 0), "a refused run wrote to the disk");
}
