//! `vmscope snapshot info|diff` (what a snapshot file holds) and `vmscope run --restore FILE`
//! (a new process that resumes the guest in it). Taking one is the `snapshot FILE` command
//! of a debug session or gdb's `monitor`.

use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use vmm::snapshot::meta::GuestMeta;
use vmm::snapshot::Snapshot;

/// Arguments of `vmscope snapshot`.
#[derive(Args, Debug)]
pub struct SnapshotArgs {
    #[command(subcommand)]
    command: SnapshotCommand,
}

#[derive(Subcommand, Debug)]
enum SnapshotCommand {
    /// What a snapshot holds: guest kind, vCPUs, devices, memory, host kind, sections and
    /// checksums (every checksum is verified).
    Info {
        /// The snapshot file.
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// What differs between two snapshots: metadata, each vCPU's registers, devices, and
    /// which memory pages differ.
    Diff {
        /// The first snapshot.
        a: PathBuf,
        /// The second snapshot.
        b: PathBuf,
    },
}

/// Runs `vmscope snapshot …`.
pub fn run(args: SnapshotArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        SnapshotCommand::Info { file, json } => info(&file, json),
        SnapshotCommand::Diff { a, b } => diff(&a, &b),
    }
}

fn open_checked(file: &Path) -> anyhow::Result<(Snapshot, vmm::vstate::memory::GuestMemory)> {
    let snap = Snapshot::open(file)?;
    let mem = snap.map_memory()?;
    Ok((snap, mem))
}

fn guest_kind(g: &GuestMeta) -> String {
    match g {
        GuestMeta::Elf { ring, entry, .. } => format!("ELF guest at CPL{ring}, entry {entry:#x}"),
        GuestMeta::Linux { protocol, entry, .. } => {
            format!("Linux kernel booted through {protocol} at {entry:#x}")
        }
    }
}

/// The devices line of `info`, and one line per virtio device (with its disk).
fn device_lines(d: &vmm::snapshot::meta::DevicesMeta) -> Vec<String> {
    let mut lines = vec![format!(
        "COM1 16550 (LCR {:#04x}, IER {:#04x}, {} bytes sent, {} waiting in its FIFO); doorbell {}; {}",
        d.serial.line_control,
        d.serial.interrupt_enable,
        d.serial.bytes_out,
        d.serial.in_buffer.len(),
        d.doorbell.as_deref().map_or("none".to_string(), |m| format!("with a {m} ring consumer")),
        d.stateless.join(", ")
    )];
    for (i, v) in d.virtio.iter().enumerate() {
        let t = &v.transport;
        let queues: Vec<String> = t
            .queues
            .iter()
            .enumerate()
            .map(|(q, s)| {
                if s.ready {
                    format!(
                        "queue {q}: size {} next avail {} next used {}",
                        s.size, s.next_avail, s.next_used
                    )
                } else {
                    format!("queue {q}: not ready")
                }
            })
            .collect();
        lines.push(format!(
            "virtio-mmio {i}: virtio-{} (id {}) at {:#x} irq {}, status {:#x}, features {:#x}; {}",
            v.name,
            v.device_id,
            v.base,
            v.irq,
            t.status,
            t.driver_features,
            queues.join("; ")
        ));
        if let Some(disk) = &v.disk {
            lines.push(format!(
                "  disk {}{}: {} bytes, device {:#x} inode {}, modified {}.{:09} (Unix time); a restore refuses it if any of these changed",
                disk.path.display(),
                if disk.read_only { " (read-only)" } else { "" },
                disk.size,
                disk.dev,
                disk.ino,
                disk.mtime_ns.div_euclid(1_000_000_000),
                disk.mtime_ns.rem_euclid(1_000_000_000)
            ));
        }
    }
    lines
}

fn info(file: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let (snap, _mem) = open_checked(file)?;
    let (len, on_disk) = snap.file_sizes();
    let m = &snap.meta;
    if json {
        let v = serde_json::json!({
            "file": file,
            "file_bytes": len,
            "disk_bytes": on_disk,
            "meta": m,
            "devices": snap.devices,
            "breakpoints": snap.debug.sw_breakpoints,
            "vcpus": snap.vcpus.iter().enumerate().map(|(i, v)| serde_json::json!({
                "index": i,
                "rip": v.regs.rip,
                "rsp": v.regs.rsp,
                "cr3": v.sregs.cr3,
                "cpl": v.sregs.cs.selector & 3,
                "msrs": v.msrs.len(),
                "xsave": v.xsave.is_some(),
                "lapic": v.lapic.is_some(),
                "refused": v.refused,
            })).collect::<Vec<_>>(),
            "kvmclock_ns": snap.vm.clock.map(|c| c.clock),
            "irqchip": snap.vm.has_irqchip(),
            "sections": snap.sections(),
            "checksums": "verified",
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "snapshot {} (format version {}, vmscope {})",
        file.display(),
        snap.version(),
        m.vmscope_version
    );
    println!("  taken on:  host {} at {} (Unix time)", m.host_kind, m.created_unix);
    println!("  guest:     {} — {}", m.guest_name, guest_kind(&m.guest));
    println!("  vCPUs:     {} ({} running guest code, the rest parked)", m.vcpus, m.runnable_vcpus);
    for (i, v) in snap.vcpus.iter().enumerate() {
        println!(
            "    vCPU {i}: rip {:#x} rsp {:#x} cr3 {:#x} CPL{}; {} MSRs, XSAVE {}, local APIC {}",
            v.regs.rip,
            v.regs.rsp,
            v.sregs.cr3,
            v.sregs.cs.selector & 3,
            v.msrs.len(),
            if v.xsave.is_some() { "yes" } else { "no" },
            if v.lapic.is_some() { "yes" } else { "none (no in-kernel irqchip)" },
        );
    }
    println!(
        "  memory:    {} MiB, {} KiB not zero; file {} bytes, {} on disk (zero pages are holes)",
        m.mem_bytes >> 20,
        m.nonzero_bytes >> 10,
        len,
        on_disk.map_or("?".to_string(), |d| format!("{} KiB", d >> 10))
    );
    if let GuestMeta::Linux { cmdline, initrd, .. } = &m.guest {
        println!("  cmdline:   {cmdline}");
        if let Some((at, size)) = initrd {
            println!("  initramfs: {size} bytes at {at:#x}");
        }
    }
    for (i, line) in device_lines(&snap.devices).into_iter().enumerate() {
        println!("  {}{line}", if i == 0 { "devices:   " } else { "           " });
    }
    println!("  kvmclock:  {}", snap.vm.clock.map_or("not saved".to_string(), |c| format!("{} ns", c.clock)));
    if snap.vm.has_irqchip() {
        println!("  irqchip:   in-kernel PIC master and slave, IOAPIC, PIT (KVM_GET_IRQCHIP, KVM_GET_PIT2)");
    }
    println!(
        "  debug:     {}",
        if snap.debug.sw_breakpoints.is_empty() {
            "no breakpoints".to_string()
        } else {
            let list: Vec<String> = snap.debug.sw_breakpoints.iter().map(|a| format!("{a:#x}")).collect();
            format!("software breakpoints at {}", list.join(", "))
        }
    );
    if m.refused.is_empty() {
        println!("  refused:   nothing (the host gave every part of the state)");
    } else {
        println!("  refused by the host: {}", m.refused.join("; "));
    }
    println!("  sections (every CRC-32 verified):");
    for s in snap.sections() {
        println!(
            "    {:<8} offset {:>10}  length {:>10}  crc32 {:#010x}",
            s.name, s.offset, s.length, s.crc32
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn diff(a: &Path, b: &Path) -> anyhow::Result<ExitCode> {
    let (sa, ma) = open_checked(a)?;
    let (sb, mb) = open_checked(b)?;
    let mut same = true;
    let mut say = |line: String| {
        same = false;
        println!("{line}");
    };
    let (x, y) = (&sa.meta, &sb.meta);
    if x.guest_name != y.guest_name {
        say(format!("guest: {} vs {}", x.guest_name, y.guest_name));
    }
    if x.mem_bytes != y.mem_bytes {
        say(format!("memory: {} vs {} bytes", x.mem_bytes, y.mem_bytes));
    }
    if x.vcpus != y.vcpus {
        say(format!("vCPUs: {} vs {}", x.vcpus, y.vcpus));
    }
    for (i, (va, vb)) in sa.vcpus.iter().zip(&sb.vcpus).enumerate() {
        let ra = regs_of(va);
        let rb = regs_of(vb);
        for ((name, p), (_, q)) in ra.iter().zip(rb.iter()) {
            if p != q {
                say(format!("vCPU {i} {name}: {p:#x} -> {q:#x}"));
            }
        }
        for (name, p, q) in [
            ("cr0", va.sregs.cr0, vb.sregs.cr0),
            ("cr3", va.sregs.cr3, vb.sregs.cr3),
            ("cr4", va.sregs.cr4, vb.sregs.cr4),
            ("efer", va.sregs.efer, vb.sregs.efer),
        ] {
            if p != q {
                say(format!("vCPU {i} {name}: {p:#x} -> {q:#x}"));
            }
        }
        let changed =
            va.msrs.iter().filter(|(k, v)| vb.msrs.iter().any(|(k2, v2)| k == k2 && v != v2)).count();
        if changed > 0 {
            say(format!("vCPU {i}: {changed} MSR(s) differ"));
        }
    }
    if sa.devices.serial.bytes_out != sb.devices.serial.bytes_out {
        say(format!("COM1 bytes sent: {} -> {}", sa.devices.serial.bytes_out, sb.devices.serial.bytes_out));
    }
    if sa.debug.sw_breakpoints != sb.debug.sw_breakpoints {
        say(format!("breakpoints: {:x?} -> {:x?}", sa.debug.sw_breakpoints, sb.debug.sw_breakpoints));
    }
    let pages = x.mem_bytes.min(y.mem_bytes) / 4096;
    let (mut differ, mut first) = (0u64, Vec::new());
    let (mut pa, mut pb) = (vec![0u8; 4096], vec![0u8; 4096]);
    for p in 0..pages {
        read_page(&ma, p, &mut pa);
        read_page(&mb, p, &mut pb);
        if pa != pb {
            differ += 1;
            if first.len() < 16 {
                first.push(format!("{:#x}", p * 4096));
            }
        }
    }
    if differ > 0 {
        say(format!(
            "memory: {differ} of {pages} pages differ (first at guest-physical {})",
            first.join(", ")
        ));
    }
    if same {
        println!("no differences");
    }
    Ok(ExitCode::SUCCESS)
}

fn regs_of(v: &vmm::vstate::vcpu::state::VcpuState) -> Vec<(&'static str, u64)> {
    let r = &v.regs;
    vec![
        ("rip", r.rip),
        ("rsp", r.rsp),
        ("rflags", r.rflags),
        ("rax", r.rax),
        ("rbx", r.rbx),
        ("rcx", r.rcx),
        ("rdx", r.rdx),
        ("rsi", r.rsi),
        ("rdi", r.rdi),
        ("rbp", r.rbp),
    ]
}

/// Page `page` of `mem` into `buf` (zeros where it cannot be read).
fn read_page(mem: &vmm::vstate::memory::GuestMemory, page: u64, buf: &mut [u8]) {
    if vmm::vstate::memory::read_phys_exact(mem, inspect::Gpa(page * 4096), buf).is_err() {
        buf.fill(0);
    }
}

/// The snapshot lines of `vmscope host`: which state ioctls this host's KVM answers.
pub fn print_probe(kvm: &vmm::vstate::kvm::KvmSystem) {
    match vmm::snapshot::probe::probe(kvm) {
        Ok(results) => {
            println!("snapshot state (tried on a scratch VM with irqchip, PIT and one vCPU):");
            for r in results {
                let status = if r.ok { "yes" } else { "REFUSED" };
                let detail = if r.detail.is_empty() { String::new() } else { format!(" — {}", r.detail) };
                println!("  {:<44} {status}{detail}", r.what);
            }
        }
        Err(e) => println!("snapshot state: no scratch VM could be made: {e}"),
    }
}
