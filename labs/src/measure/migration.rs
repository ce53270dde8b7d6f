//! `migration`: live migration of the unikernel over a unix socket on this machine —
//! downtime (vCPUs held on the source until the target may run them), total time, rounds
//! and bytes, at 64 and 512 MiB, idle (`dirty 0`: the guest sleeps) and dirtying memory at
//! several rates (`dirty R`); and the time from `vmscope run --restore FILE` to the guest
//! running, for 64 MiB.

use super::{progress, Environment, MeasureError, Options, Report, Summary};
use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};

fn failed(what: &str, detail: impl Into<String>) -> MeasureError {
    MeasureError::GuestFailed { args: what.into(), detail: detail.into() }
}

fn spawn(bin: &Path, args: &[&str]) -> Result<std::process::Child, MeasureError> {
    Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| MeasureError::Spawn { bin: bin.into(), source })
}

/// One migration of `dirty RATE SECONDS` in `mem` MiB; returns the source's summary (JSON).
fn migrate_once(bin: &Path, dir: &Path, mem: u64, rate: u64) -> Result<serde_json::Value, MeasureError> {
    let sock = dir.join("m.sock");
    let _ = std::fs::remove_file(&sock);
    let uri = format!("unix:{}", sock.display());
    let mut target = spawn(bin, &["run", "--incoming", &uri, "--timeout", "600"])?;
    // The target announces itself on stderr once it listens.
    let mut err = std::io::BufReader::new(target.stderr.take().expect("piped"));
    let mut line = String::new();
    while !line.contains("waiting for a guest") {
        line.clear();
        if err.read_line(&mut line).unwrap_or(0) == 0 {
            let _ = target.kill();
            return Err(failed("vmscope run --incoming", "it ended before listening"));
        }
    }
    let script = dir.join("migrate.script");
    std::fs::write(&script, format!("migrate {uri}\n"))
        .map_err(|source| MeasureError::Write { path: script.clone(), source })?;
    let (mem_s, rate_s) = (mem.to_string(), rate.to_string());
    let args = [
        "run",
        "unikernel",
        "--ring",
        "3",
        "--mem",
        &mem_s,
        "--workload",
        "dirty",
        &rate_s,
        "2",
        "--json",
        "--script",
    ];
    let out = Command::new(bin)
        .args(args)
        .arg(&script)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| MeasureError::Spawn { bin: bin.into(), source })?;
    let drained = std::thread::spawn(move || std::io::Read::read_to_end(&mut err, &mut Vec::new()));
    let t = target.wait_with_output().map_err(|source| MeasureError::Spawn { bin: bin.into(), source })?;
    let _ = drained.join();
    let summary = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| v.get("result").filter(|r| r.get("downtime_us").is_some()).cloned());
    let summary = summary.ok_or_else(|| {
        failed(
            &format!("migrate ({mem} MiB, dirty {rate})"),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    })?;
    if !String::from_utf8_lossy(&t.stdout).contains("dirty: verified") {
        return Err(failed("the migrated guest's check", String::from_utf8_lossy(&t.stdout).into_owned()));
    }
    Ok(summary)
}

/// Process start to guest running for `run --restore` of a 64 MiB unikernel (its `-v` line).
fn restore_once(bin: &Path, dir: &Path) -> Result<f64, MeasureError> {
    let snap = dir.join("m.vmsnap");
    let script = dir.join("snap.script");
    std::fs::write(&script, format!("snapshot {}\nquit\n", snap.display()))
        .map_err(|source| MeasureError::Write { path: script.clone(), source })?;
    let s = script.to_string_lossy().into_owned();
    let take = Command::new(bin)
        .args(["run", "unikernel", "--ring", "3", "--workload", "ticks", "3", "--script", &s])
        .output()
        .map_err(|source| MeasureError::Spawn { bin: bin.into(), source })?;
    if !take.status.success() {
        return Err(failed("snapshot", String::from_utf8_lossy(&take.stderr).into_owned()));
    }
    let o = Command::new(bin)
        .args(["run", "--restore", &snap.to_string_lossy(), "-v", "--timeout", "60"])
        .output()
        .map_err(|source| MeasureError::Spawn { bin: bin.into(), source })?;
    let err = String::from_utf8_lossy(&o.stderr);
    let ms = err
        .lines()
        .find_map(|l| l.split("process start to guest running: ").nth(1))
        .and_then(|r| r.trim_end_matches(" ms").trim().parse::<f64>().ok());
    ms.ok_or_else(|| failed("run --restore -v", err.into_owned()))
}

pub(super) fn run(opts: &Options) -> Result<Report, MeasureError> {
    let runs = opts.runs.unwrap_or(if opts.quick { 2 } else { 5 });
    let env = Environment::here();
    let dir = std::env::temp_dir().join(format!("vmscope-measure-migration-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|source| MeasureError::Write { path: dir.clone(), source })?;
    let configs: Vec<(u64, u64)> = if opts.quick {
        vec![(64, 0), (64, 64), (512, 0)]
    } else {
        vec![(64, 0), (64, 16), (64, 64), (64, 256), (512, 0), (512, 64), (512, 256)]
    };
    let bar = progress(opts, (runs * (configs.len() + 1)) as u64, "migration");
    let mut metrics = vec![];
    let mut notes = vec![
        "unix socket on one host; downtime = vCPUs held on the source until the target is told to run them (includes the target's restore)".to_string(),
        "dirty R: the unikernel writes one word in each of R×256 pages per second, cycling over its free memory, and checks every page at its end (every run here passed)".to_string(),
    ];
    let result = (|| {
        for &(mem, rate) in &configs {
            let (mut down, mut total, mut rounds, mut mib, mut conv) = (vec![], vec![], vec![], vec![], 0);
            for _ in 0..runs {
                let s = migrate_once(&opts.bin, &dir, mem, rate)?;
                let f = |k: &str| s.get(k).and_then(|v| v.as_f64()).unwrap_or(f64::NAN);
                down.push(f("downtime_us") / 1e3);
                total.push(f("total_us") / 1e3);
                rounds.push(s.get("rounds").and_then(|r| r.as_array()).map_or(0, |r| r.len()) as f64);
                mib.push(f("bytes") / (1 << 20) as f64);
                conv += usize::from(s.get("converged").and_then(|c| c.as_bool()).unwrap_or(false));
                bar.inc(1);
            }
            let tag =
                if rate == 0 { format!("{mem} MiB idle") } else { format!("{mem} MiB dirty {rate} MiB/s") };
            metrics.extend(Summary::of(&format!("downtime, {tag}"), "ms", &down));
            metrics.extend(Summary::of(&format!("total time, {tag}"), "ms", &total));
            metrics.extend(Summary::of(&format!("rounds, {tag}"), "rounds", &rounds));
            metrics.extend(Summary::of(&format!("sent, {tag}"), "MiB", &mib));
            notes.push(format!("{tag}: converged within the 20 ms budget in {conv} of {runs} runs"));
        }
        let mut restore = vec![];
        for _ in 0..runs {
            restore.push(restore_once(&opts.bin, &dir)?);
            bar.inc(1);
        }
        metrics.extend(Summary::of("run --restore: process start -> guest running, 64 MiB", "ms", &restore));
        Ok(())
    })();
    bar.finish_and_clear();
    let _ = std::fs::remove_dir_all(&dir);
    result?;
    Ok(Report { suite: "migration".into(), environment: env, quick: opts.quick, metrics, notes })
}
