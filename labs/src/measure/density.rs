//! `density`: how many unikernel VMs this host starts and finishes per second, and how many
//! idle ones fit in its memory.
//!
//! - Rate: a batch of VMs (`vmscope run unikernel --workload exit 0`, each its own process,
//!   as Firecracker's "microVMs per core per second" counts them) is run by N workers at a
//!   time, for several N; VMs per second = batch / wall time of the batch.
//! - Idle: M VMs are booted to a debugger stop (`--break workload_hello`: the guest has run
//!   its boot path and waits in a session, using no CPU), all at once; then each process's
//!   resident (`VmRSS`), proportional (`Pss`: shared pages divided among the processes that
//!   map them) and private memory is read from /proc. What fits in a given memory is that
//!   memory over the PSS per VM.

use super::{progress, Environment, MeasureError, Options, Report, Summary};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const MIB: f64 = 1024.0 * 1024.0;
/// Guest memory of every VM, in MiB.
const MEM_MIB: &str = "16";
/// An idle VM that has not reached its stop by then is an error.
const BOOT_LIMIT: Duration = Duration::from_secs(120);

/// How big a measurement is.
#[derive(Clone, Debug, PartialEq)]
struct Plan {
    /// VMs per batch in the rate measurement.
    batch: usize,
    /// How many VMs run at a time, per row.
    parallel: Vec<usize>,
    /// Idle VMs held at once.
    idle: usize,
    /// Memory (GiB) the "fit" figure is given for.
    fit_gib: f64,
}

impl Plan {
    fn for_options(opts: &Options, cpus: usize) -> Self {
        let mut parallel = vec![1, cpus.max(1), 2 * cpus.max(1)];
        if !opts.quick {
            parallel.push(4 * cpus.max(1));
        }
        parallel.dedup();
        if opts.quick {
            Self { batch: 12, parallel, idle: 4, fit_gib: 1.0 }
        } else {
            Self { batch: 100, parallel, idle: 40, fit_gib: 1.0 }
        }
    }
}

/// Runs `batch` trivial VMs, `parallel` at a time; returns the wall time in seconds and
/// each VM's start → exit in milliseconds.
fn batch(bin: &Path, batch: usize, parallel: usize) -> Result<(f64, Vec<f64>), MeasureError> {
    let next = AtomicUsize::new(0);
    let each = Mutex::new(Vec::with_capacity(batch));
    let failure = Mutex::new(None);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..parallel {
            s.spawn(|| {
                while next.fetch_add(1, Ordering::Relaxed) < batch {
                    let t = Instant::now();
                    let out = Command::new(bin)
                        .args([
                            "run",
                            "unikernel",
                            "--mem",
                            MEM_MIB,
                            "--timeout",
                            "120",
                            "--workload",
                            "exit",
                            "0",
                        ])
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::piped())
                        .output();
                    let ms = t.elapsed().as_secs_f64() * 1e3;
                    match out {
                        Ok(o) if o.status.success() => {
                            each.lock().unwrap_or_else(|e| e.into_inner()).push(ms)
                        }
                        Ok(o) => {
                            *failure.lock().unwrap_or_else(|e| e.into_inner()) =
                                Some(MeasureError::GuestFailed {
                                    args: "run unikernel --workload exit 0".into(),
                                    detail: format!(
                                        "{} with {parallel} in parallel: {}",
                                        o.status,
                                        String::from_utf8_lossy(&o.stderr).trim()
                                    ),
                                });
                            return;
                        }
                        Err(source) => {
                            *failure.lock().unwrap_or_else(|e| e.into_inner()) =
                                Some(MeasureError::Spawn { bin: bin.into(), source });
                            return;
                        }
                    }
                }
            });
        }
    });
    let wall = start.elapsed().as_secs_f64();
    if let Some(e) = failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e);
    }
    Ok((wall, each.into_inner().unwrap_or_else(|e| e.into_inner())))
}

/// Memory of one process, in bytes: (VmRSS, Pss, Private_Clean + Private_Dirty).
fn process_memory(pid: u32) -> Option<(f64, f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let rss = proc_kb(&status, "VmRSS:")?;
    let pss = proc_kb(&rollup, "Pss:")?;
    let private = proc_kb(&rollup, "Private_Clean:")? + proc_kb(&rollup, "Private_Dirty:")?;
    Some((rss, pss, private))
}

/// A `Key:   N kB` line of a /proc file, in bytes.
fn proc_kb(text: &str, key: &str) -> Option<f64> {
    let rest = text.lines().find_map(|l| l.strip_prefix(key))?;
    let kb: f64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb * 1024.0)
}

/// The median of `v` (0 when empty).
fn median(v: &[f64]) -> f64 {
    Summary::of("", "", v).map_or(0.0, |s| s.median)
}

/// Idle VMs, ended (a `quit` on their session, then a kill) when dropped; their standard
/// output is kept open so that what they print as they end does not hit a closed pipe.
struct IdleVms(Vec<Child>, Vec<BufReader<std::process::ChildStdout>>);

impl Drop for IdleVms {
    fn drop(&mut self) {
        for c in &mut self.0 {
            if let Some(mut stdin) = c.stdin.take() {
                let _ = stdin.write_all(b"quit\n");
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for c in &mut self.0 {
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Boots `count` VMs to their stop, all held at once; returns the median per-VM (RSS, PSS,
/// private) in bytes.
fn idle(bin: &Path, count: usize) -> Result<(f64, f64, f64), MeasureError> {
    let mut vms = IdleVms(Vec::with_capacity(count), Vec::with_capacity(count));
    let args = [
        "run",
        "unikernel",
        "--mem",
        MEM_MIB,
        "--timeout",
        "120",
        "--workload",
        "hello",
        "--break",
        "workload_hello",
    ];
    for _ in 0..count {
        let child = Command::new(bin)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| MeasureError::Spawn { bin: bin.into(), source })?;
        vms.0.push(child);
    }
    let started = Instant::now();
    for i in 0..vms.0.len() {
        let mut out = BufReader::new(vms.0[i].stdout.take().expect("piped"));
        let mut line = String::new();
        let mut stopped = false;
        while !stopped && started.elapsed() < BOOT_LIMIT {
            line.clear();
            match out.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => stopped = line.starts_with("vCPU 0 stopped"),
            }
        }
        vms.1.push(out);
        if !stopped {
            return Err(MeasureError::GuestFailed {
                args: args.join(" "),
                detail: format!("{count} at once: one never reached its stop"),
            });
        }
    }
    let mut samples = (vec![], vec![], vec![]);
    for c in &vms.0 {
        let (rss, pss, private) = process_memory(c.id()).ok_or_else(|| MeasureError::GuestFailed {
            args: args.join(" "),
            detail: format!("cannot read /proc/{}/status or smaps_rollup", c.id()),
        })?;
        samples.0.push(rss);
        samples.1.push(pss);
        samples.2.push(private);
    }
    Ok((median(&samples.0), median(&samples.1), median(&samples.2)))
}

pub(super) fn run(opts: &Options) -> Result<Report, MeasureError> {
    let env = Environment::here();
    let plan = Plan::for_options(opts, env.cpus);
    let runs = opts.runs.unwrap_or(if opts.quick { 2 } else { 5 });
    let bar = progress(opts, (runs * (plan.parallel.len() + 1)) as u64, "density");
    let mut rate = vec![vec![]; plan.parallel.len()];
    let mut latency = vec![vec![]; plan.parallel.len()];
    let (mut rss, mut pss, mut private, mut fit) = (vec![], vec![], vec![], vec![]);
    for _ in 0..runs {
        for (i, &p) in plan.parallel.iter().enumerate() {
            let (wall, each) = batch(&opts.bin, plan.batch, p)?;
            rate[i].push(plan.batch as f64 / wall);
            latency[i].push(median(&each));
            bar.inc(1);
        }
        let (r, s, v) = idle(&opts.bin, plan.idle)?;
        rss.push(r / MIB);
        pss.push(s / MIB);
        private.push(v / MIB);
        fit.push((plan.fit_gib * 1024.0 * MIB / s).floor());
        bar.inc(1);
    }
    bar.finish_and_clear();
    let mut metrics = vec![];
    for (i, p) in plan.parallel.iter().enumerate() {
        metrics.extend(Summary::of(
            &format!("unikernel VMs started and finished per second, {p} at a time"),
            "VMs/s",
            &rate[i],
        ));
    }
    for (i, p) in plan.parallel.iter().enumerate() {
        metrics.extend(Summary::of(
            &format!("start -> exit of one VM, {p} at a time (median)"),
            "ms",
            &latency[i],
        ));
    }
    let n = plan.idle;
    metrics.extend(Summary::of(&format!("idle VM, {n} at once: resident (VmRSS)"), "MiB", &rss));
    metrics.extend(Summary::of(&format!("idle VM, {n} at once: proportional (Pss)"), "MiB", &pss));
    metrics.extend(Summary::of(&format!("idle VM, {n} at once: private"), "MiB", &private));
    metrics.extend(Summary::of(&format!("idle VMs that fit in {} GiB (by Pss)", plan.fit_gib), "VMs", &fit));
    let mut notes = vec![
        format!("rate: batches of {} `vmscope run unikernel --mem {MEM_MIB} --workload exit 0` processes, N at a time (a worker starts the next as soon as its VM exits); VMs/s = batch / wall time of the batch; {} CPUs here", plan.batch, env.cpus),
        format!("idle: {n} `run unikernel --mem {MEM_MIB} --workload hello --break workload_hello` processes held at once at their breakpoint (booted, waiting in a debug session, no CPU used), then VmRSS from /proc/PID/status and Pss and Private_Clean + Private_Dirty from /proc/PID/smaps_rollup; the median over the {n} is one sample; code pages shared between the processes count fully in RSS and divided in Pss"),
        format!("fit = {} GiB / the Pss of one idle VM (the guest's {MEM_MIB} MiB are reserved but only the pages it touched are resident)", plan.fit_gib),
    ];
    if let Some(avail) =
        std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| proc_kb(&m, "MemAvailable:"))
    {
        let per_vm = median(&pss) * MIB;
        if per_vm > 0.0 {
            notes.push(format!(
                "MemAvailable here is {:.1} GiB: about {:.0} idle VMs of this kind would fit in it by Pss",
                avail / (1024.0 * MIB),
                (avail / per_vm).floor()
            ));
        }
    }
    if !env.host_kind.is_hardware() {
        notes.push("PVM: the rate VMs run at the native CPL (3 here); the idle ones at CPL0, where a --break puts the guest on PVM, so their boot path ran in KVM's instruction emulator".into());
    }
    Ok(Report { suite: "density".into(), environment: env, quick: opts.quick, metrics, notes })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(quick: bool) -> Options {
        Options {
            bin: "vmscope".into(),
            runs: None,
            quick,
            progress: false,
            linux: false,
            firecracker: None,
            cloud_hypervisor: None,
        }
    }

    #[test]
    fn the_plan_scales_with_the_cpus() {
        let quick = Plan::for_options(&opts(true), 2);
        assert_eq!(quick.parallel, vec![1, 2, 4]);
        assert!(quick.batch < 20 && quick.idle < 10);
        let full = Plan::for_options(&opts(false), 2);
        assert_eq!(full.parallel, vec![1, 2, 4, 8]);
        assert_eq!(Plan::for_options(&opts(true), 1).parallel, vec![1, 2]);
    }

    #[test]
    fn proc_lines_are_read_in_bytes() {
        let rollup = "Rss:  2048 kB\nPss:  1024 kB\nPrivate_Clean: 4 kB\nPrivate_Dirty:   8 kB\n";
        assert_eq!(proc_kb(rollup, "Pss:"), Some(1024.0 * 1024.0));
        assert_eq!(proc_kb(rollup, "Private_Dirty:"), Some(8.0 * 1024.0));
        assert_eq!(proc_kb(rollup, "Swap:"), None);
        // This process: resident memory is there and Pss never exceeds RSS.
        let (rss, pss, private) = process_memory(std::process::id()).expect("our own /proc");
        assert!(rss > 0.0 && pss <= rss && private <= rss, "{rss} {pss} {private}");
    }
}
