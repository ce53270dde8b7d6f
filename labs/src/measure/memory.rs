//! `memory`: what each form costs in memory for the same workload — the VMM's own
//! overhead (its peak RSS minus the guest memory it touched), the guest memory touched,
//! a container's memory-cgroup peak, a native process's peak RSS — and the smallest guest
//! memory the unikernel still runs in.

use super::{progress, run_guest, Environment, MeasureError, Options, Report, Summary};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MIB: f64 = 1024.0 * 1024.0;
/// The smallest `--mem` vmscope accepts.
const MIN_MEM_MIB: u64 = 4;

/// `workload: VmHWM:  1234 kB`, which the workload prints with `VMSCOPE_REPORT_PEAK_RSS`
/// set, in bytes.
pub(super) fn workload_vmhwm(stderr: &str) -> Option<u64> {
    let line = stderr.lines().find_map(|l| l.strip_prefix("workload: VmHWM:"))?;
    let mut words = line.split_whitespace();
    let kib: u64 = words.next()?.parse().ok()?;
    (words.next()? == "kB").then_some(kib * 1024)
}

/// The peak usage a memory cgroup recorded (v1 `memory.max_usage_in_bytes`, v2 `memory.peak`).
fn cgroup_peak(dir: &Path) -> Option<u64> {
    ["memory.max_usage_in_bytes", "memory.peak"]
        .iter()
        .find_map(|f| std::fs::read_to_string(dir.join(f)).ok()?.trim().parse().ok())
}

/// What one container run told about its memory.
enum ContainerMemory {
    /// The memory cgroup's peak (runc init + the workload), and where it was read.
    CgroupPeak(u64, PathBuf),
    /// No memory cgroup for the container: the workload process's VmHWM as last polled.
    PolledVmHwm(Option<u64>),
}

fn failed(what: &str, detail: impl Into<String>) -> MeasureError {
    MeasureError::GuestFailed { args: what.into(), detail: detail.into() }
}

/// Runs `workload` in a runc container with `create` + `start`, so that the stopped
/// container's cgroup can still be read before `delete`.
fn container_peak(runc: &Path, workload: &[String]) -> Result<ContainerMemory, MeasureError> {
    let bundle = guests::container::prepare_bundle(workload, Some(256 << 20))
        .map_err(|e| failed("container bundle", e.to_string()))?;
    let id = bundle.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let runc_cmd = |args: &[&str]| {
        let mut c = Command::new(runc);
        c.args(args).stdin(Stdio::null());
        c
    };
    let log = bundle.dir.join("create.log");
    let log_file =
        std::fs::File::create(&log).map_err(|source| MeasureError::Write { path: log.clone(), source })?;
    // The container inherits runc create's standard streams: no pipes that stay open.
    let status = runc_cmd(&["create", "--bundle", &bundle.dir.to_string_lossy(), &id])
        .stdout(Stdio::null())
        .stderr(log_file)
        .status()
        .map_err(|source| MeasureError::Spawn { bin: runc.into(), source })?;
    if !status.success() {
        return Err(failed("runc create", std::fs::read_to_string(&log).unwrap_or_default()));
    }
    let result = (|| {
        let state = |id: &str| -> Result<serde_json::Value, MeasureError> {
            let out = runc_cmd(&["state", id])
                .output()
                .map_err(|source| MeasureError::Spawn { bin: runc.into(), source })?;
            serde_json::from_slice(&out.stdout)
                .map_err(|_| failed("runc state", String::from_utf8_lossy(&out.stderr).into_owned()))
        };
        let pid = state(&id)?["pid"].as_u64().ok_or_else(|| failed("runc state", "no pid"))?;
        // The same lookup the TUI uses: /proc/PID/cgroup against the host's cgroup mounts.
        let cgroup = u32::try_from(pid)
            .ok()
            .and_then(guests::container::cgroup::dirs_of)
            .and_then(|d| d.memory.or(d.unified))
            .filter(|d| cgroup_peak(d).is_some());
        let status = runc_cmd(&["start", &id])
            .status()
            .map_err(|source| MeasureError::Spawn { bin: runc.into(), source })?;
        if !status.success() {
            return Err(failed("runc start", format!("{status}")));
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut hwm = None;
        while state(&id)?["status"] != "stopped" {
            if Instant::now() > deadline {
                return Err(failed("container", "still running after 120 s"));
            }
            if cgroup.is_none() {
                let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                hwm = status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                    .map(|kib| kib * 1024)
                    .or(hwm);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(match cgroup {
            Some(dir) => ContainerMemory::CgroupPeak(cgroup_peak(&dir).unwrap_or(0), dir),
            None => ContainerMemory::PolledVmHwm(hwm),
        })
    })();
    let _ = runc_cmd(&["delete", "--force", &id]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    result
}

/// The smallest `--mem` (MiB) in `[MIN_MEM_MIB, hi]` the unikernel runs `workload` in,
/// by bisection; `None` if it fails even at `hi`.
fn smallest_mem(opts: &Options, workload: &str, hi: u64) -> Result<Option<u64>, MeasureError> {
    let fits = |mib: u64| -> Result<bool, MeasureError> {
        let m = mib.to_string();
        let args = ["unikernel", "--mem", &m, "--workload", workload, "--timeout", "60"];
        Ok(run_guest(&opts.bin, &args).map(|r| r.code == Some(0)).unwrap_or(false))
    };
    if !fits(hi)? {
        return Ok(None);
    }
    let (mut lo, mut hi) = (MIN_MEM_MIB, hi);
    if fits(lo)? {
        return Ok(Some(lo));
    }
    // Invariant: `lo` fails, `hi` fits.
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fits(mid)? {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(Some(hi))
}

pub(super) fn run(opts: &Options) -> Result<Report, MeasureError> {
    let runs = opts.runs.unwrap_or(if opts.quick { 3 } else { 10 });
    let n: u64 = if opts.quick { 4_000_000 } else { 40_000_000 };
    let env = Environment::here();
    let ring = env.host_kind.native_ring().to_string();
    let runc = guests::container::runtime_path("runc");
    let native_bin = super::compute::write_native_workload()?;
    let workloads = [("hello".to_string(), "hello"), (format!("compute {n}"), "compute")];
    let bar = progress(opts, (runs * (2 * 3 + 2) + 2) as u64, "memory");
    let mut metrics = vec![];
    let mut notes = vec![
        "VMM overhead = the vmscope process's peak RSS (VmHWM) - guest memory resident at exit (the pages the guest or the boot code touched)".to_string(),
        "peak RSS includes vmscope's own code pages (clean, file-backed, shared by every vmscope process); private memory (Private_Dirty) does not".into(),
    ];
    let mut cgroup_dirs = vec![];
    let mut no_cgroup = false;
    for (workload, short) in &workloads {
        for mem in [64u64, 1024] {
            let mem_s = mem.to_string();
            let args =
                ["unikernel", "--ring", &ring, "--mem", &mem_s, "--workload", workload, "--timeout", "60"];
            let (mut overhead, mut private, mut touched) = (vec![], vec![], vec![]);
            for _ in 0..runs {
                let r = run_guest(&opts.bin, &args)?.ok(&args)?;
                overhead.extend(r.stat("vmm_overhead_bytes").map(|b| b / MIB));
                private.extend(r.stat("vmm_private_overhead_bytes").map(|b| b / MIB));
                touched.extend(r.stat("guest_resident_bytes").map(|b| b / MIB));
                bar.inc(1);
            }
            let tag = format!("unikernel {short}, --mem {mem}");
            metrics.extend(Summary::of(&format!("VMM peak RSS - guest touched, {tag}"), "MiB", &overhead));
            metrics.extend(Summary::of(
                &format!("VMM private memory - guest touched, {tag}"),
                "MiB",
                &private,
            ));
            metrics.extend(Summary::of(&format!("guest memory touched, {tag}"), "MiB", &touched));
        }
        let words: Vec<String> = workload.split_whitespace().map(String::from).collect();
        let mut native = vec![];
        for _ in 0..runs {
            let out = Command::new(&native_bin)
                .args(&words)
                .env("VMSCOPE_REPORT_PEAK_RSS", "1")
                .stdout(Stdio::null())
                .output()
                .map_err(|source| MeasureError::Spawn { bin: native_bin.clone(), source })?;
            native.extend(workload_vmhwm(&String::from_utf8_lossy(&out.stderr)).map(|b| b as f64 / MIB));
        }
        metrics.extend(Summary::of(&format!("native process peak RSS, {short}"), "MiB", &native));
        bar.inc(1);
        let Some(runc) = &runc else {
            bar.inc(1);
            continue;
        };
        let (mut peak, mut hwm) = (vec![], vec![]);
        for _ in 0..runs {
            match container_peak(runc, &words)? {
                ContainerMemory::CgroupPeak(bytes, dir) => {
                    peak.push(bytes as f64 / MIB);
                    cgroup_dirs.push(dir);
                }
                ContainerMemory::PolledVmHwm(bytes) => {
                    no_cgroup = true;
                    hwm.extend(bytes.map(|b| b as f64 / MIB));
                }
            }
        }
        bar.inc(1);
        metrics.extend(Summary::of(&format!("container memory-cgroup peak, {short}"), "MiB", &peak));
        metrics.extend(Summary::of(&format!("container workload VmHWM (polled), {short}"), "MiB", &hwm));
    }
    for (workload, hi) in [("hello".to_string(), 64), (format!("compute {n}"), 64)] {
        match smallest_mem(opts, &workload, hi)? {
            Some(mib) => {
                let short = workload.split(' ').next().unwrap_or_default();
                metrics.extend(Summary::of(
                    &format!("smallest --mem for unikernel {short}"),
                    "MiB",
                    &[mib as f64],
                ));
                if mib == MIN_MEM_MIB {
                    notes.push(format!("unikernel {workload} runs in {MIN_MEM_MIB} MiB, the least vmscope accepts: it needs less (see guest memory touched)"));
                }
            }
            None => notes.push(format!("unikernel {workload} did not run even with --mem {hi}")),
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let _ = std::fs::remove_file(&native_bin);
    notes.push(format!("native process peak RSS = the workload's own VmHWM at its exit (it counts its binary's file pages, which a memory cgroup does not charge when they are already in the page cache); workloads: hello and compute {n} (a {} KiB sieve bitmap)", n.div_ceil(8) / 1024));
    match (&runc, cgroup_dirs.first(), no_cgroup) {
        (None, _, _) => notes.push("runc is not installed: no container figures".into()),
        (Some(_), Some(dir), false) => notes.push(format!(
            "container peak = the memory cgroup runc made for the container ({}, e.g. {}): runc init and the workload, read from the stopped container before `runc delete`",
            if dir.starts_with("/sys/fs/cgroup/memory") { "memory.max_usage_in_bytes, cgroup v1" } else { "memory.peak, cgroup v2" },
            dir.display()
        )),
        _ => notes.push("runc made no memory cgroup for the container on this host (no memory.max_usage_in_bytes / memory.peak to read): the container figure is instead the workload process's VmHWM from /proc/PID/status, polled every 2 ms while it ran (a lower bound)".into()),
    }
    Ok(Report { suite: "memory".into(), environment: env, quick: opts.quick, metrics, notes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_workloads_peak_rss() {
        assert_eq!(workload_vmhwm("other\nworkload: VmHWM:\t    1234 kB\n"), Some(1234 * 1024));
        assert_eq!(workload_vmhwm("workload: VmHWM: lots kB"), None);
        assert_eq!(workload_vmhwm("workload: VmHWM: 12 pages"), None);
        assert_eq!(workload_vmhwm(""), None);
    }
}
