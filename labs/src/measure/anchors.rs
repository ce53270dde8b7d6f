//! `anchors`: the very same unikernel file under every VMM found here — vmscope (`--elf`,
//! its direct entry, at CPL0 like the others), QEMU microvm, Firecracker and Cloud
//! Hypervisor (their PVH path) — interleaved round by round: process start → first console
//! output → exit, the VMM's peak RSS and private memory, the ratios to vmscope, and the
//! cost of one port-I/O exit (a UART byte) under each. Missing VMMs are named in the notes.

use super::{progress, Environment, MeasureError, Options, Report, Summary};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MIB: f64 = 1024.0 * 1024.0;
/// Guest memory every VMM gets.
const MEM_MIB: u32 = 128;
/// A run longer than this is killed and reported as failed.
const RUN_LIMIT: Duration = Duration::from_secs(120);
/// How often /proc is read while a VMM runs.
const POLL: Duration = Duration::from_millis(2);

/// One VMM that can boot the file.
struct Vmm {
    name: &'static str,
    /// The command for a guest command line (the file is bound in).
    cmd: Box<dyn Fn(&str) -> Command>,
}

/// What one run gave.
struct Sample {
    first_output_ms: Option<f64>,
    exit_ms: f64,
    peak_rss_mib: Option<f64>,
    private_mib: Option<f64>,
    stdout: String,
}

/// Reads a `Key:   N kB` line of a /proc file in bytes.
fn proc_kb(text: &str, key: &str) -> Option<f64> {
    let rest = text.lines().find_map(|l| l.strip_prefix(key))?;
    let kb: f64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb * 1024.0)
}

/// Spawns `cmd`, reads its output, polls its VmHWM and Private_Dirty until it exits.
fn measure(mut cmd: Command, what: &str) -> Result<Sample, MeasureError> {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|source| MeasureError::Spawn { bin: what.into(), source })?;
    let pid = child.id();
    let mut out = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let (mut bytes, mut first, mut buf) = (Vec::new(), None, [0u8; 4096]);
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            first.get_or_insert_with(|| start.elapsed().as_secs_f64() * 1e3);
            bytes.extend_from_slice(&buf[..n.min(buf.len())]);
            bytes.truncate(1 << 20);
        }
        (bytes, first)
    });
    let (mut peak, mut private) = (None::<f64>, None::<f64>);
    let status = loop {
        if let Some(s) =
            child.try_wait().map_err(|source| MeasureError::Spawn { bin: what.into(), source })?
        {
            break s;
        }
        if start.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(MeasureError::GuestFailed {
                args: what.into(),
                detail: format!("still running after {RUN_LIMIT:?}; killed"),
            });
        }
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            peak = proc_kb(&s, "VmHWM:").map_or(peak, |v| Some(v.max(peak.unwrap_or(0.0))));
        }
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) {
            private = proc_kb(&s, "Private_Dirty:").map_or(private, |v| Some(v.max(private.unwrap_or(0.0))));
        }
        std::thread::sleep(POLL);
    };
    let exit_ms = start.elapsed().as_secs_f64() * 1e3;
    let (bytes, first_output_ms) = reader.join().unwrap_or_default();
    let stdout = String::from_utf8_lossy(&bytes).into_owned();
    let _ = status;
    Ok(Sample {
        first_output_ms,
        exit_ms,
        peak_rss_mib: peak.map(|b| b / MIB),
        private_mib: private.map(|b| b / MIB),
        stdout,
    })
}

/// GNU time, which reports a child's true peak RSS (`ru_maxrss` from `wait4`, `%M`). The
/// polled VmHWM misses what a short run touches after the last poll, and a child's own
/// `ru_maxrss` cannot be had from a big parent: the kernel counts the parent's pages in it
/// when the child is spawned by `vfork` or `fork` before its `exec`. GNU time is small, so
/// its child's count before `exec` is far below any VMM's.
fn gnu_time() -> Option<PathBuf> {
    let time = PathBuf::from("/usr/bin/time");
    let o = Command::new(&time).arg("--version").stdin(Stdio::null()).output().ok()?;
    let text = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    text.contains("GNU").then_some(time)
}

/// The peak RSS in MiB of one run of `cmd` under GNU `time`.
fn true_peak(time: &Path, cmd: &Command, what: &str) -> Result<f64, MeasureError> {
    const MARK: &str = "vmscope-anchors-maxrss-kib ";
    let o = Command::new(time)
        .args(["-f", &format!("{MARK}%M"), "--"])
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .stdin(Stdio::null())
        .output()
        .map_err(|source| MeasureError::Spawn { bin: what.into(), source })?;
    let err = String::from_utf8_lossy(&o.stderr);
    let kib = err.lines().rev().find_map(|l| l.strip_prefix(MARK)).and_then(|v| v.trim().parse::<f64>().ok());
    // QEMU ends through isa-debug-exit with a status of its own making: any status will do.
    match kib {
        Some(kib) => Ok(kib * 1024.0 / MIB),
        None => Err(MeasureError::GuestFailed {
            args: format!("{what} hello under GNU time"),
            detail: format!(
                "{}; it wrote: {}",
                o.status,
                err.chars().skip(err.chars().count().saturating_sub(300)).collect::<String>()
            ),
        }),
    }
}

/// `name` on PATH.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(name)).find(|p| p.is_file())
}

/// The unikernel ELF, as `vmscope guests path unikernel` gives it to users.
fn unikernel_file(bin: &Path) -> Result<PathBuf, MeasureError> {
    let o = Command::new(bin)
        .args(["guests", "path", "unikernel"])
        .output()
        .map_err(|source| MeasureError::Spawn { bin: bin.into(), source })?;
    if !o.status.success() {
        return Err(MeasureError::GuestFailed {
            args: "guests path unikernel".into(),
            detail: String::from_utf8_lossy(&o.stderr).trim().to_string(),
        });
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
}

/// The VMMs found, and notes naming the ones that were not.
fn vmms(opts: &Options, elf: &Path) -> (Vec<Vmm>, Vec<String>) {
    let mut found = vec![];
    let mut notes = vec![];
    let (bin, file) = (opts.bin.clone(), elf.to_path_buf());
    found.push(Vmm {
        name: "vmscope",
        cmd: Box::new(move |cmdline| {
            let mut c = Command::new(&bin);
            c.args(["run", "--ring", "0", "--mem", &format!("{MEM_MIB}"), "--timeout", "120", "--elf"])
                .arg(&file);
            c.arg("--workload").args(cmdline.split(' '));
            c
        }),
    });
    match on_path("qemu-system-x86_64") {
        Some(qemu) => {
            let kvm = Path::new("/dev/kvm").exists();
            let file = elf.to_path_buf();
            found.push(Vmm {
                name: "qemu-microvm",
                cmd: Box::new(move |cmdline| {
                    let mut c = Command::new(&qemu);
                    c.args(["-M", "microvm", "-m", &MEM_MIB.to_string(), "-nodefaults", "-no-user-config"]);
                    if kvm {
                        c.args(["-accel", "kvm", "-cpu", "host,-arch-capabilities"]);
                    } else {
                        c.args(["-accel", "tcg", "-cpu", "max"]);
                    }
                    c.args(["-display", "none", "-no-reboot", "-serial", "stdio"])
                        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=4", "-kernel"])
                        .arg(&file)
                        .args(["-append", cmdline]);
                    c
                }),
            })
        }
        None => notes.push("not found: qemu-system-x86_64 (Debian: apt-get install qemu-system-x86)".into()),
    }
    match opts.firecracker.clone().or_else(|| on_path("firecracker")) {
        Some(fc) => {
            let file = elf.to_path_buf();
            found.push(Vmm {
                name: "firecracker",
                cmd: Box::new(move |cmdline| {
                    let config = serde_json::json!({
                        "boot-source": { "kernel_image_path": file, "boot_args": cmdline },
                        "drives": [],
                        "machine-config": { "vcpu_count": 1, "mem_size_mib": MEM_MIB }
                    });
                    let path =
                        std::env::temp_dir().join(format!("vmscope-anchors-fc-{}.json", std::process::id()));
                    let _ = std::fs::write(&path, config.to_string());
                    let mut c = Command::new(&fc);
                    c.args(["--no-api", "--level", "Error", "--config-file"]).arg(path);
                    c
                }),
            })
        }
        None => notes.push("not found: firecracker (give --firecracker PATH or put it on PATH)".into()),
    }
    match opts.cloud_hypervisor.clone().or_else(|| on_path("cloud-hypervisor")) {
        Some(ch) => {
            let file = elf.to_path_buf();
            found.push(Vmm {
                name: "cloud-hypervisor",
                cmd: Box::new(move |cmdline| {
                    let mut c = Command::new(&ch);
                    c.arg("--kernel").arg(&file).args(["--cmdline", cmdline]);
                    c.args([
                        "--memory",
                        &format!("size={MEM_MIB}M"),
                        "--cpus",
                        "boot=1",
                        "--serial",
                        "tty",
                        "--console",
                        "off",
                    ]);
                    c
                }),
            })
        }
        None => {
            notes.push("not found: cloud-hypervisor (give --cloud-hypervisor PATH or put it on PATH)".into())
        }
    }
    (found, notes)
}

/// One round for one VMM: `hello` (timed), then `uart 0` and `uart N`, and `hello` once more
/// under GNU time when there is one; returns the `hello` sample, the µs per UART byte and
/// the true peak RSS.
fn round(
    v: &Vmm,
    uart: &str,
    uart_bytes: u64,
    time: Option<&Path>,
) -> Result<(Sample, f64, Option<f64>), MeasureError> {
    let hello = measure((v.cmd)("hello"), v.name)?;
    if !hello.stdout.contains("Hello from the vmscope unikernel") {
        return Err(MeasureError::GuestFailed {
            args: format!("{} hello", v.name),
            detail: format!(
                "no greeting in its output: {:?}",
                hello.stdout.chars().take(300).collect::<String>()
            ),
        });
    }
    let zero = measure((v.cmd)("uart 0"), v.name)?;
    let many = measure((v.cmd)(uart), v.name)?;
    if !many.stdout.contains(&format!("uart: {uart_bytes} bytes through COM1")) {
        return Err(MeasureError::GuestFailed {
            args: format!("{} {uart}", v.name),
            detail: "the uart workload did not finish".into(),
        });
    }
    let per_byte_us = (many.exit_ms - zero.exit_ms) * 1e3 / uart_bytes as f64;
    let peak = time.map(|t| true_peak(t, &(v.cmd)("hello"), v.name)).transpose()?;
    Ok((hello, per_byte_us, peak))
}

pub(super) fn run(opts: &Options) -> Result<Report, MeasureError> {
    let runs = opts.runs.unwrap_or(if opts.quick { 3 } else { 20 });
    let uart_bytes: u64 = if opts.quick { 2000 } else { 20000 };
    let env = Environment::here();
    let elf = unikernel_file(&opts.bin)?;
    let (vmms, mut notes) = vmms(opts, &elf);
    let bar = progress(opts, (runs * vmms.len()) as u64, "anchors: every VMM");
    let time = gnu_time();
    // Per VMM: first output, exit, peak RSS (polled), private, per-UART-byte µs, true peak RSS.
    let mut s: Vec<[Vec<f64>; 6]> = vmms.iter().map(|_| Default::default()).collect();
    let uart = format!("uart {uart_bytes}");
    // A VMM that was found but cannot boot the file (a version without PVH, a host it does
    // not run on) is named in the notes and left out of the later rounds; vmscope must work.
    let mut failed: Vec<Option<String>> = vec![None; vmms.len()];
    for _ in 0..runs {
        for (i, v) in vmms.iter().enumerate() {
            if failed[i].is_some() {
                bar.inc(1);
                continue;
            }
            match round(v, &uart, uart_bytes, time.as_deref()) {
                Ok((hello, per_byte_us, peak)) => {
                    s[i][0].extend(hello.first_output_ms);
                    s[i][1].push(hello.exit_ms);
                    s[i][2].extend(hello.peak_rss_mib);
                    s[i][3].extend(hello.private_mib);
                    s[i][4].push(per_byte_us);
                    s[i][5].extend(peak);
                }
                Err(e) if i == 0 => return Err(e),
                Err(e) => failed[i] = Some(e.to_string()),
            }
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    for (v, why) in vmms.iter().zip(&failed) {
        if let Some(why) = why {
            notes.push(format!("{} was found but could not run the file, so it has no rows: {why}", v.name));
        }
    }
    let mut metrics = vec![];
    let labels = [
        ("start -> first output", "ms"),
        ("start -> exit", "ms"),
        ("VMM peak RSS (VmHWM, polled)", "MiB"),
        ("VMM private memory (Private_Dirty, polled)", "MiB"),
        ("UART byte (port I/O exit) round trip", "us"),
        ("VMM peak RSS (ru_maxrss, GNU time)", "MiB"),
    ];
    for (i, v) in vmms.iter().enumerate() {
        for (k, (label, unit)) in labels.iter().enumerate() {
            metrics.extend(Summary::of(&format!("{label}, {}", v.name), unit, &s[i][k]));
        }
    }
    for (i, v) in vmms.iter().enumerate().skip(1) {
        for (k, (label, _)) in labels.iter().enumerate() {
            let ratios: Vec<f64> =
                s[i][k].iter().zip(&s[0][k]).filter(|(_, b)| **b > 0.0).map(|(a, b)| a / b).collect();
            metrics.extend(Summary::of(&format!("{label}, {} / vmscope", v.name), "x", &ratios));
        }
    }
    notes.push(format!(
        "the same file ({}) under each VMM, {MEM_MIB} MiB, one vCPU, at CPL0 everywhere (vmscope: --elf --ring 0, its direct entry and hypercalls; the others: the PVH note, console on COM1); VMMs interleaved run by run",
        elf.display()
    ));
    notes.push(format!(
        "UART byte = (start -> exit of `uart {uart_bytes}` - of `uart 0`) / {uart_bytes}, each run a pair"
    ));
    notes.push("peak RSS (VmHWM) and private memory are read from /proc every 2 ms while the VMM runs: lower bounds, and the polling itself costs a little time".into());
    match time {
        Some(_) => notes.push("VMM peak RSS (ru_maxrss) = GNU time's %M for one more `hello` run per round: the whole process's true peak, its file pages (code, shared libraries) included".into()),
        None => notes.push("no GNU time at /usr/bin/time (Debian: apt-get install time), so no true peak RSS; the polled VmHWM is a lower bound".into()),
    }
    Ok(Report { suite: "anchors".into(), environment: env, quick: opts.quick, metrics, notes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_lines_are_read_in_bytes() {
        assert_eq!(proc_kb("Name: x\nVmHWM:\t  1234 kB\n", "VmHWM:"), Some(1234.0 * 1024.0));
        assert_eq!(proc_kb("VmHWM: lots kB", "VmHWM:"), None);
        assert_eq!(proc_kb("", "Private_Dirty:"), None);
    }
}
