//! End to end: memory dumps. `dump FILE` in a script session writes an ELF core whose loads
//! cover RAM and whose NT_PRSTATUS holds the vCPU's registers; `vmscope dump SOCKET FILE`
//! asks a running vmscope over QMP.

mod common;
use common::{spawn_with_stderr_lines, stderr, stdout, vmscope};
use std::time::Duration;

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes(b[o..o + 2].try_into().unwrap())
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

/// (p_type, p_offset, p_paddr, p_filesz) of each program header.
fn phdrs(f: &[u8]) -> Vec<(u32, u64, u64, u64)> {
    assert_eq!(&f[..4], b"\x7fELF");
    assert_eq!(u16_at(f, 16), 4, "ET_CORE");
    let (off, n) = (u64_at(f, 32) as usize, u16_at(f, 56) as usize);
    (0..n)
        .map(|i| off + i * 56)
        .map(|p| (u32_at(f, p), u64_at(f, p + 8), u64_at(f, p + 24), u64_at(f, p + 32)))
        .collect()
}

/// The notes of the PT_NOTE segment: (name, type, descriptor).
fn notes(f: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
    let (_, off, _, len) = phdrs(f)[0];
    let (mut at, end) = (off as usize, (off + len) as usize);
    let mut out = vec![];
    while at < end {
        let (namesz, descsz, kind) = (u32_at(f, at) as usize, u32_at(f, at + 4) as usize, u32_at(f, at + 8));
        let name = String::from_utf8(f[at + 12..at + 12 + namesz - 1].to_vec()).unwrap();
        let desc_at = at + 12 + namesz.div_ceil(4) * 4;
        out.push((name, kind, f[desc_at..desc_at + descsz].to_vec()));
        at = desc_at + descsz.div_ceil(4) * 4;
    }
    out
}

#[test]
fn a_session_dump_holds_ram_and_the_registers() {
    let dir = tempfile::tempdir().unwrap();
    let core = dir.path().join("core");
    let script = dir.path().join("s");
    std::fs::write(&script, format!("step 3\nregs\ndump {}\ncont\n", core.display())).unwrap();
    let o = vmscope(&["run", "unikernel", "--ring", "0", "--script", script.to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let replies: Vec<serde_json::Value> =
        stdout(&o).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let rip =
        replies.iter().find(|r| r["input"] == "regs").unwrap()["result"]["regs"]["rip"].as_u64().unwrap();
    let dumped = replies.iter().find(|r| r["input"].as_str().unwrap().starts_with("dump ")).unwrap();
    assert_eq!(dumped["result"]["memory"], 64 << 20, "{dumped}");

    let f = std::fs::read(&core).unwrap();
    let loads: Vec<_> = phdrs(&f).into_iter().filter(|p| p.0 == 1).collect();
    assert_eq!(loads.iter().map(|p| p.3).sum::<u64>(), 64 << 20);
    let n = notes(&f);
    let prstatus = n.iter().find(|(name, kind, _)| name == "CORE" && *kind == 1).unwrap();
    // pr_reg starts at 112; rip is its 17th register.
    assert_eq!(u64_at(&prstatus.2, 112 + 16 * 8), rip);
    assert!(n.iter().any(|(name, _, d)| name == "QEMU" && d.len() == 440));
    // The unikernel is not Linux: no VMCOREINFO.
    assert!(!n.iter().any(|(name, _, _)| name == "VMCOREINFO"));
}

#[test]
fn vmscope_dump_asks_a_running_guest_over_qmp() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("q");
    let qmp = format!("unix:{}", socket.display());
    let (mut child, lines) = spawn_with_stderr_lines(&[
        "run",
        "unikernel",
        "--workload",
        "spin",
        "--timeout",
        "300",
        "--qmp",
        &qmp,
    ]);
    assert!(lines.recv_timeout(Duration::from_secs(60)).unwrap().contains("QMP listening"));
    let core = dir.path().join("core");
    let o = vmscope(&["dump", socket.to_str().unwrap(), core.to_str().unwrap()]);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let f = std::fs::read(&core).unwrap();
    assert_eq!(phdrs(&f).iter().filter(|p| p.0 == 1).map(|p| p.3).sum::<u64>(), 64 << 20);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&core).unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
fn gdb_monitor_dump_writes_the_stopped_guest() {
    let dir = tempfile::tempdir().unwrap();
    let core = dir.path().join("core");
    let (mut child, lines) = spawn_with_stderr_lines(&[
        "run",
        "unikernel",
        "--ring",
        "0",
        "--gdb",
        "127.0.0.1:0",
        "--gdb-wait",
        "--timeout",
        "300",
        "--workload",
        "hello",
    ]);
    let line = lines.recv_timeout(Duration::from_secs(60)).expect("vmscope announces its gdb address");
    let addr = line.split("target remote ").nth(1).expect(&line).trim_end_matches('\'').to_string();
    let o = std::process::Command::new("gdb")
        .args(["-nx", "-batch", "-ex", &format!("target remote {addr}"), "-ex", "stepi"])
        .args(["-ex", "info registers rip", "-ex", &format!("monitor dump {}", core.display())])
        .args(["-ex", "monitor dump", "-ex", "kill"])
        .output()
        .expect("gdb is installed (apt-get install gdb)");
    let _ = child.kill();
    let _ = child.wait();
    let out = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(out.contains(&format!("wrote {}: ", core.display())), "{out}");
    assert!(out.contains("error: dump: give a file"), "{out}");
    // The core holds RAM and the registers gdb sees.
    let rip = out
        .lines()
        .find_map(|l| l.strip_prefix("rip").and_then(|r| r.split_whitespace().next()))
        .and_then(|h| u64::from_str_radix(h.trim_start_matches("0x"), 16).ok())
        .unwrap_or_else(|| panic!("{out}"));
    let f = std::fs::read(&core).unwrap();
    assert_eq!(phdrs(&f).iter().filter(|p| p.0 == 1).map(|p| p.3).sum::<u64>(), 64 << 20);
    let n = notes(&f);
    let prstatus = n.iter().find(|(name, kind, _)| name == "CORE" && *kind == 1).unwrap();
    assert_eq!(u64_at(&prstatus.2, 112 + 16 * 8), rip, "{out}");
}
