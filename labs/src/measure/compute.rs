//! `compute`: the same CPU-bound workload (`compute N`, a sieve) as a native process, in a
//! container, and in the unikernel at each privilege level — process start to exit, so
//! each form's start-up cost is included, as a user would pay it.

use super::{progress, run_guest, Environment, MeasureError, Options, Report, Summary};
use std::process::Command;
use std::time::Instant;

fn timed(cmd: &mut Command, what: &str) -> Result<f64, MeasureError> {
    let start = Instant::now();
    let out = cmd.output().map_err(|source| MeasureError::Spawn { bin: what.into(), source })?;
    if !out.status.success() {
        return Err(MeasureError::GuestFailed {
            args: what.into(),
            detail: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(start.elapsed().as_secs_f64() * 1e3)
}

pub(super) fn run(opts: &Options) -> Result<Report, MeasureError> {
    let runs = opts.runs.unwrap_or(if opts.quick { 3 } else { 10 });
    let n: u64 = if opts.quick { 1_000_000 } else { 20_000_000 };
    let n_s = n.to_string();
    let env = Environment::here();
    let native_bin = std::env::temp_dir().join(format!("vmscope-workload-{}", std::process::id()));
    std::fs::write(&native_bin, guests::workload::ELF)
        .map_err(|source| MeasureError::Write { path: native_bin.clone(), source })?;
    let mut perm = std::fs::metadata(&native_bin)
        .map_err(|source| MeasureError::Write { path: native_bin.clone(), source })?
        .permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    let _ = std::fs::set_permissions(&native_bin, perm);
    let container = guests::container::runtime_path("runc").is_some();
    let bar = progress(opts, (runs * 4) as u64, "compute");
    let (mut native, mut contained, mut uk3, mut uk0) = (vec![], vec![], vec![], vec![]);
    for _ in 0..runs {
        native.push(timed(Command::new(&native_bin).args(["compute", &n_s]), "native workload")?);
        bar.inc(1);
        if container {
            contained.push(timed(
                Command::new(&opts.bin).args([
                    "run",
                    "container",
                    "--mem",
                    "256",
                    "--workload",
                    "compute",
                    &n_s,
                ]),
                "container",
            )?);
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
    notes.push("the Linux guest's user space runs the same binary; its boot (about a minute on PVM) is measured by `vmscope run linux --verbose`".into());
    Ok(Report { suite: "compute".into(), environment: env, quick: opts.quick, metrics, notes })
}
