//! `compute`: the same CPU-bound workload (`compute N`, a sieve) as a native process, in a
//! container (vmscope's embedded runtime, and runc where it is installed), in the unikernel
//! at each privilege level, and in the minimal Linux guest when its kernel is already built
//! — process start to exit, so each form's start-up cost is included, as a user would pay
//! it.

use super::{progress, run_guest, timed, Environment, MeasureError, Options, Report, Summary};
use std::process::Command;

/// Writes the static workload binary (the one the container and the Linux guest run) to a
/// temporary file, executable, for running it as a native process.
pub(super) fn write_native_workload() -> Result<std::path::PathBuf, MeasureError> {
    let native_bin = std::env::temp_dir().join(format!("vmscope-workload-{}", std::process::id()));
    let io = |source| MeasureError::Write { path: native_bin.clone(), source };
    std::fs::write(&native_bin, guests::workload::ELF).map_err(io)?;
    let mut perm = std::fs::metadata(&native_bin).map_err(io)?.permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&native_bin, perm).map_err(io)?;
    Ok(native_bin)
}

/// The guest's uptime in seconds on the line of `/init` that starts with `marker`
/// (`vmscope: ready (uptime 38.51 s)`).
pub(super) fn uptime_at(console: &str, marker: &str) -> Option<f64> {
    let line = console.lines().find(|l| l.starts_with(marker))?;
    let rest = &line[line.find("(uptime ")? + "(uptime ".len()..];
    rest.split_whitespace().next()?.parse().ok()
}

/// The cached minimal-Linux kernel for the current build inputs, if it is built.
pub(super) fn cached_linux_kernel() -> Option<std::path::PathBuf> {
    let key = guests::linux::build_key();
    guests::linux::list_cached()
        .into_iter()
        .find(|a| a.key == key && a.vmlinux_stripped.exists())
        .map(|a| a.vmlinux_stripped)
}

pub(super) fn run(opts: &Options) -> Result<Report, MeasureError> {
    let runs = opts.runs.unwrap_or(if opts.quick { 3 } else { 10 });
    let n: u64 = if opts.quick { 1_000_000 } else { 20_000_000 };
    let n_s = n.to_string();
    let env = Environment::here();
    let native_bin = write_native_workload()?;
    let container = guests::container::runtime_path("runc").is_some();
    let bar = progress(opts, (runs * 5) as u64, "compute");
    let (mut native, mut embedded, mut contained, mut uk3, mut uk0) =
        (vec![], vec![], vec![], vec![], vec![]);
    let in_container = |runtime: &str| {
        timed(
            Command::new(&opts.bin).args([
                "run",
                "container",
                "--runtime",
                runtime,
                "--mem",
                "256",
                "--workload",
                "compute",
                &n_s,
            ]),
            "container",
        )
    };
    for _ in 0..runs {
        native.push(timed(Command::new(&native_bin).args(["compute", &n_s]), "native workload")?);
        bar.inc(1);
        embedded.push(in_container("embedded")?);
        bar.inc(1);
        if container {
            contained.push(in_container("runc")?);
        }
        bar.inc(1);
        let a =
            ["unikernel", "--ring", "3", "--mem", "128", "--workload", "compute", &n_s, "--timeout", "600"];
        uk3.push(run_guest(&opts.bin, &a)?.ok(&a)?.exit_s * 1e3);
        bar.inc(1);
        // CPL0 is emulated on PVM: a smaller N keeps it to seconds there.
        let n0 = if env.host_kind.is_hardware() { n_s.clone() } else { (n / 100).to_string() };
        let b =
            ["unikernel", "--ring", "0", "--mem", "128", "--workload", "compute", &n0, "--timeout", "600"];
        uk0.push(run_guest(&opts.bin, &b)?.ok(&b)?.exit_s * 1e3);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let _ = std::fs::remove_file(&native_bin);
    let mut metrics = vec![];
    metrics.extend(Summary::of(&format!("native process, compute {n}"), "ms", &native));
    metrics.extend(Summary::of(&format!("container (embedded runtime), compute {n}"), "ms", &embedded));
    metrics.extend(Summary::of(&format!("container (runc), compute {n}"), "ms", &contained));
    metrics.extend(Summary::of(&format!("unikernel CPL3, compute {n}"), "ms", &uk3));
    let n0 = if env.host_kind.is_hardware() { n } else { n / 100 };
    metrics.extend(Summary::of(&format!("unikernel CPL0, compute {n0}"), "ms", &uk0));
    let mut notes = vec!["each figure is process start to exit, start-up included".to_string()];
    if !env.host_kind.is_hardware() {
        notes.push(format!("CPL0 runs in KVM's instruction emulator on this host: it computes N/100 = {n0}"));
    }
    if !container {
        notes.push("runc is not installed: no container figure".into());
    }
    linux_rows(opts, n, &env, &mut metrics, &mut notes)?;
    Ok(Report { suite: "compute".into(), environment: env, quick: opts.quick, metrics, notes })
}

/// The Linux guest's row: only with a kernel already in the cache (the suite never builds
/// one), and few runs, since it boots in about a minute on PVM.
fn linux_rows(
    opts: &Options,
    n: u64,
    env: &Environment,
    metrics: &mut Vec<Summary>,
    notes: &mut Vec<String>,
) -> Result<(), MeasureError> {
    if !opts.linux {
        notes.push("Linux guest: skipped (--no-linux)".into());
        return Ok(());
    }
    let Some(kernel) = cached_linux_kernel() else {
        notes.push("Linux guest: skipped, its kernel is not built (`vmscope guests build linux` builds it; the suite never does)".into());
        return Ok(());
    };
    let runs = if opts.quick { 1 } else { opts.runs.unwrap_or(3).min(3) };
    let bar = progress(opts, runs as u64, "compute: Linux guest");
    let workload = format!("compute {n}");
    let kernel_s = kernel.to_string_lossy().into_owned();
    let args = ["linux", "--kernel", &kernel_s, "--workload", &workload, "--timeout", "900"];
    let (mut total, mut inside) = (vec![], vec![]);
    for _ in 0..runs {
        let r = run_guest(&opts.bin, &args)?.ok(&args)?;
        total.push(r.exit_s * 1e3);
        let console = String::from_utf8_lossy(&r.stdout);
        if let (Some(a), Some(b)) =
            (uptime_at(&console, "vmscope: ready"), uptime_at(&console, "vmscope: done"))
        {
            inside.push((b - a) * 1e3);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    metrics.extend(Summary::of(
        &format!("Linux guest, compute {n}, process total (boot included)"),
        "ms",
        &total,
    ));
    match Summary::of(&format!("Linux guest, compute {n}, inside the guest"), "ms", &inside) {
        Some(s) if s.min > 0.0 => metrics.push(s),
        _ => notes.push(format!("Linux guest: the workload's time inside the guest was below the 10 ms resolution of /proc/uptime ({inside:?} ms)")),
    }
    notes.push(format!(
        "Linux guest: kernel {}; inside the guest = guest uptime at `/init`'s done line - at its ready line (10 ms resolution; includes exec of the workload){}",
        kernel.display(),
        if env.host_kind.is_hardware() { "" } else { "; on PVM the kernel runs in KVM's emulator, so boot and every page fault are slow, while the workload's own instructions run at CPL3 natively" }
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_guest_uptime_markers() {
        let console = "[ boot ]\nvmscope: ready (uptime 38.51 s)\ncompute: N=10 primes=4 checksum=0x11\nvmscope: workload 'compute 10' exited with status 0\nvmscope: done with status 0 (uptime 38.60 s)\n";
        assert_eq!(uptime_at(console, "vmscope: ready"), Some(38.51));
        assert_eq!(uptime_at(console, "vmscope: done"), Some(38.60));
        assert_eq!(uptime_at(console, "vmscope: gone"), None);
        assert_eq!(uptime_at("vmscope: ready (uptime soon s)", "vmscope: ready"), None);
    }
}
