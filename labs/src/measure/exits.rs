//! `exits`: what one exit costs, by kind — a console hypercall (port I/O to userspace with
//! an argument struct) and a UART byte (port I/O) — at each privilege level, measured as
//! (time with N exits − time with 0) / N, and the VMM's own share from its exit counters.

use super::{progress, run_guest, Environment, MeasureError, Options, Report, Summary};

pub(super) fn run(opts: &Options) -> Result<Report, MeasureError> {
    let runs = opts.runs.unwrap_or(if opts.quick { 3 } else { 10 });
    let n: u64 = if opts.quick { 2_000 } else { 20_000 };
    let env = Environment::here();
    let kinds = [
        ("hypercalls", "io-out port 0x500", "console hypercall"),
        ("uart", "io-out port 0x3f8", "UART byte"),
    ];
    let bar = progress(opts, (runs * 2 * kinds.len() * 2) as u64, "exits");
    let mut metrics = vec![];
    let n_s = n.to_string();
    for ring in [3u8, 0] {
        let ring_s = ring.to_string();
        for (workload, key, label) in kinds {
            let (mut per_exit_us, mut vmm_ns) = (vec![], vec![]);
            for _ in 0..runs {
                let zero = ["unikernel", "--ring", &ring_s, "--workload", workload, "0", "--timeout", "300"];
                let many = ["unikernel", "--ring", &ring_s, "--workload", workload, &n_s, "--timeout", "300"];
                let t0 = run_guest(&opts.bin, &zero)?.ok(&zero)?;
                bar.inc(1);
                let t1 = run_guest(&opts.bin, &many)?.ok(&many)?;
                bar.inc(1);
                let exits = t1.exits_named(key).saturating_sub(t0.exits_named(key));
                if exits > 0 {
                    per_exit_us.push((t1.exit_s - t0.exit_s).max(0.0) * 1e6 / exits as f64);
                }
                if let Ok(stats) =
                    serde_json::from_value::<inspect::exits::ExitStats>(t1.stats["exits"].clone())
                {
                    if let Some((_, c)) = stats.per_key.iter().find(|(k, _)| k.to_string() == key) {
                        vmm_ns.push(c.total_ns as f64 / c.count.max(1) as f64);
                    }
                }
            }
            metrics.extend(Summary::of(&format!("{label} exit, CPL{ring} (round trip)"), "us", &per_exit_us));
            metrics.extend(Summary::of(&format!("{label} exit, CPL{ring} (in the VMM)"), "ns", &vmm_ns));
        }
    }
    bar.finish_and_clear();
    Ok(Report {
        suite: "exits".into(),
        environment: env,
        quick: opts.quick,
        metrics,
        notes: vec![
            format!("round trip = (wall time of {n} exits - wall time of 0) / {n}: guest instruction, KVM exit, VMM handler, re-entry"),
            "in the VMM = from KVM_RUN returning to the handler finishing; console output goes to a pipe".into(),
        ],
    })
}
