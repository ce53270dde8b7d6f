//! `migration`: live migration of the unikernel over a unix socket on this machine —
//! downtime (vCPUs held on the source until the target may run them), total time, rounds
//! and bytes, at 64 and 512 MiB, idle (`dirty 0`: the guest sleeps) and dirtying memory at
//! several rates (`dirty R`); the Linux guest at its shell, idle, moved along a chain of
//! targets (one boot for all its runs); and the time from `vmscope run --restore FILE` to the
//! guest running, for 64 MiB.

use super::{progress, Environment, MeasureError, Options, Report, Summary};
use std::io::{BufRead, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

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

/// How long a Linux guest may take to reach its shell or to answer: it boots in KVM's
/// instruction emulator on PVM (about two minutes with the cached kernel, more on a busy host).
/// Only a hung run is ended by it.
const LINUX_BOUND: Duration = Duration::from_secs(1200);

/// A child whose standard output and error lines arrive on channels as they are printed.
struct Piped {
    child: Child,
    out: Receiver<String>,
    err: Receiver<String>,
}

impl Piped {
    fn spawn(bin: &Path, args: &[&str]) -> Result<Self, MeasureError> {
        let mut child = Command::new(bin)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| MeasureError::Spawn { bin: bin.into(), source })?;
        let lines = |r: Box<dyn std::io::Read + Send>| {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(r).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
            rx
        };
        let out = child.stdout.take().map(|o| lines(Box::new(o)));
        let err = child.stderr.take().map(|e| lines(Box::new(e)));
        let (Some(out), Some(err)) = (out, err) else {
            return Err(failed(&args.join(" "), "its output is not piped"));
        };
        Ok(Self { child, out, err })
    }

    /// Waits for a line of `which` that contains `what`, for at most `bound`.
    fn wait(which: &Receiver<String>, what: &str, bound: Duration, seen: &mut String) -> bool {
        let deadline = Instant::now() + bound;
        while let Ok(line) = which.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains(what) {
                return true;
            }
        }
        false
    }

    fn type_line(&mut self, text: &str) {
        if let Some(stdin) = self.child.stdin.as_mut() {
            let _ = stdin.write_all(format!("{text}\n").as_bytes());
            let _ = stdin.flush();
        }
    }

    /// Types `text` until `want` comes on the guest's console (stderr when `on_err`), at most
    /// `tries` times, 20 s each: a line typed before the shell reads its terminal is lost.
    fn type_until(&mut self, text: &str, want: &str, on_err: bool, tries: usize, seen: &mut String) -> bool {
        (0..tries).any(|_| {
            self.type_line(text);
            let console = if on_err { &self.err } else { &self.out };
            Self::wait(console, want, Duration::from_secs(20), seen)
        })
    }
}

impl Drop for Piped {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `vmscope run --incoming unix:…` listening (its `waiting for a guest` line seen).
fn listening(bin: &Path, args: &[&str]) -> Result<Piped, MeasureError> {
    let p = Piped::spawn(bin, args)?;
    let mut seen = String::new();
    if !Piped::wait(&p.err, "waiting for a guest", Duration::from_secs(60), &mut seen) {
        return Err(failed(&args.join(" "), format!("it never listened: {seen}")));
    }
    Ok(p)
}

/// The migration summary in a `--json` session's standard output, once the process ended.
fn summary_of(p: &mut Piped, what: &str) -> Result<serde_json::Value, MeasureError> {
    let mut seen = String::new();
    let deadline = Instant::now() + LINUX_BOUND;
    while let Ok(line) = p.out.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
            if let Some(r) = v.get("result").filter(|r| r.get("downtime_us").is_some()) {
                return Ok(r.clone());
            }
            if let Some(e) = v.get("error") {
                return Err(failed(what, e.to_string()));
            }
        }
        seen.push_str(&line);
        seen.push('\n');
    }
    Err(failed(what, format!("no migration summary: {seen}")))
}

/// The Linux guest at its shell, idle, moved `hops` times over unix sockets: booted once
/// (`run linux --shell`, stopped by typing `sync` at its prompt, whose script then moves
/// it), then each target (`run --incoming … --script`) moves it on as soon as it has it, and
/// the last one is asked `echo` at the shell to show the guest arrived whole. Returns each
/// hop's summary.
fn linux_chain(
    bin: &Path,
    kernel: &Path,
    dir: &Path,
    hops: usize,
) -> Result<Vec<serde_json::Value>, MeasureError> {
    let uri = |i: usize| format!("unix:{}", dir.join(format!("linux{i}.sock")).display());
    let script = |i: usize, text: String| -> Result<String, MeasureError> {
        let path = dir.join(format!("linux{i}.script"));
        std::fs::write(&path, text).map_err(|source| MeasureError::Write { path: path.clone(), source })?;
        Ok(path.to_string_lossy().into_owned())
    };
    for i in 1..=hops {
        let _ = std::fs::remove_file(dir.join(format!("linux{i}.sock")));
    }
    // The last target first, then the ones that pass the guest on, then the source.
    let last_uri = uri(hops);
    let mut last = listening(bin, &["run", "--incoming", &last_uri, "--timeout", "1800"])?;
    let mut middle = vec![];
    for i in (1..hops).rev() {
        let s = script(i, format!("migrate {}\n", uri(i + 1)))?;
        let at = uri(i);
        middle.push(listening(
            bin,
            &["run", "--incoming", &at, "--json", "--timeout", "1800", "--script", &s],
        )?);
    }
    middle.reverse();
    let s = script(0, format!("delete __x64_sys_sync\nmigrate {}\n", uri(1)))?;
    let what = "run linux --shell (migrated at its prompt)";
    let kernel = kernel.to_string_lossy();
    let mut source = Piped::spawn(
        bin,
        &[
            "run",
            "linux",
            "--kernel",
            &kernel,
            "--shell",
            "--json",
            "--break",
            "__x64_sys_sync",
            "--timeout",
            "1800",
            "--script",
            &s,
        ],
    )?;
    // With --json the console is on standard error. Typing before the shell has opened its
    // terminal is lost: ask until it answers.
    let mut seen = String::new();
    if !Piped::wait(&source.err, "built-in shell", LINUX_BOUND, &mut seen) {
        return Err(failed(what, format!("no shell: {seen}")));
    }
    if !source.type_until("echo ready-$((40+2))", "ready-42", true, 60, &mut seen) {
        return Err(failed(what, format!("the shell never answered: {seen}")));
    }
    source.type_line("sync");
    let mut summaries = vec![summary_of(&mut source, what)?];
    for (i, m) in middle.iter_mut().enumerate() {
        summaries.push(summary_of(m, &format!("run --incoming {} (passing the guest on)", uri(i + 1)))?);
    }
    let mut seen = String::new();
    if !last.type_until("echo moved-$((6*7))", "moved-42", false, 30, &mut seen) {
        return Err(failed("the moved Linux shell", format!("it did not answer at {last_uri}: {seen}")));
    }
    Ok(summaries)
}

/// The cached kernel to boot: the one built for the current inputs, else the newest one in
/// the cache (a kernel being rebuilt should not blank the row), named in a note. The suite
/// never builds one.
fn linux_kernel() -> Option<(std::path::PathBuf, Option<String>)> {
    if let Some(k) = super::compute::cached_linux_kernel() {
        return Some((k, None));
    }
    let modified = |a: &guests::linux::LinuxArtifacts| {
        std::fs::metadata(&a.vmlinux_stripped).and_then(|m| m.modified()).ok()
    };
    let newest = guests::linux::list_cached().into_iter().max_by_key(modified)?;
    let note = format!(
        "Linux at its shell: no kernel is cached for the current build inputs, so the newest cached one ({}) was booted",
        newest.key
    );
    Some((newest.vmlinux_stripped, Some(note)))
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
    // The Linux row boots a kernel once for all its runs (on PVM in KVM's instruction
    // emulator: about a minute and a half of the suite's two with --quick).
    let kernel = if opts.linux { linux_kernel() } else { None };
    let linux = kernel.is_some();
    let bar = progress(opts, (runs * (configs.len() + 1 + usize::from(linux))) as u64, "migration");
    let mut metrics = vec![];
    let mut notes = vec![
        "unix socket on one host; downtime = vCPUs held on the source until the target is told to run them (includes the target's restore)".to_string(),
        "dirty R: the unikernel writes one word in each of R×256 pages per second, cycling over its free memory, and checks every page at its end (every run here passed)".to_string(),
    ];
    if kernel.is_none() {
        notes.push(if opts.linux {
            "Linux at its shell: skipped, no kernel is built (`vmscope guests build linux` builds it; the suite never does)".into()
        } else {
            "Linux at its shell: skipped (--no-linux)".into()
        });
    }
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
        if let Some((kernel, which)) = &kernel {
            notes.extend(which.clone());
            let chain = linux_chain(&opts.bin, kernel, &dir, runs)?;
            bar.inc(runs as u64);
            let mib =
                chain.first().and_then(|s| s.get("mem_bytes")).and_then(|m| m.as_u64()).unwrap_or(0) >> 20;
            let f = |s: &serde_json::Value, k: &str| s.get(k).and_then(|v| v.as_f64()).unwrap_or(f64::NAN);
            let of = |k: &str, scale: f64| chain.iter().map(|s| f(s, k) / scale).collect::<Vec<_>>();
            let rounds: Vec<f64> = chain
                .iter()
                .map(|s| s.get("rounds").and_then(|r| r.as_array()).map_or(0, |r| r.len()) as f64)
                .collect();
            let tag = format!("Linux {mib} MiB at its shell, idle");
            metrics.extend(Summary::of(&format!("downtime, {tag}"), "ms", &of("downtime_us", 1e3)));
            metrics.extend(Summary::of(&format!("total time, {tag}"), "ms", &of("total_us", 1e3)));
            metrics.extend(Summary::of(&format!("rounds, {tag}"), "rounds", &rounds));
            metrics.extend(Summary::of(&format!("sent, {tag}"), "MiB", &of("bytes", (1 << 20) as f64)));
            let conv =
                chain.iter().filter(|s| s.get("converged").and_then(|c| c.as_bool()) == Some(true)).count();
            notes.push(format!(
                "{tag}: one boot, then moved {runs} times along a chain of `run --incoming` targets (each moves it on as soon as it has it); the last one's shell answered; converged within the 20 ms budget in {conv} of {runs} moves"
            ));
        }
        Ok(())
    })();
    bar.finish_and_clear();
    let _ = std::fs::remove_dir_all(&dir);
    result?;
    Ok(Report { suite: "migration".into(), environment: env, quick: opts.quick, metrics, notes })
}
