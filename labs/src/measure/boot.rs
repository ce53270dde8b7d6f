//! `boot`: process start → first console byte → guest exit, and the VMM's memory overhead,
//! for the unikernel at each privilege level.

use super::{progress, run_guest, Environment, MeasureError, Options, Report, Summary};

const MIB: f64 = 1024.0 * 1024.0;

pub(super) fn run(opts: &Options) -> Result<Report, MeasureError> {
    let runs = opts.runs.unwrap_or(if opts.quick { 5 } else { 20 });
    let env = Environment::here();
    let native = env.host_kind.native_ring();
    let rings: Vec<u8> = if native == 3 { vec![3, 0] } else { vec![0, 3] };
    let bar = progress(opts, (runs * rings.len()) as u64, "boot: unikernel");
    let mut metrics = vec![];
    for ring in rings {
        let ring_s = ring.to_string();
        let args = ["unikernel", "--ring", ring_s.as_str(), "--workload", "hello", "--timeout", "60"];
        let (mut first, mut exit, mut overhead, mut touched, mut inproc) =
            (vec![], vec![], vec![], vec![], vec![]);
        let mut private = vec![];
        for _ in 0..runs {
            let r = run_guest(&opts.bin, &args)?.ok(&args)?;
            first.extend(r.first_output_s.map(|s| s * 1e3));
            exit.push(r.exit_s * 1e3);
            inproc.extend(r.stat("in_process_ns").map(|ns| ns / 1e6));
            overhead.extend(r.stat("vmm_overhead_bytes").map(|b| b / MIB));
            private.extend(r.stat("vmm_private_overhead_bytes").map(|b| b / MIB));
            touched.extend(r.stat("guest_resident_bytes").map(|b| b / MIB));
            bar.inc(1);
        }
        let tag = format!("unikernel CPL{ring}{}", if ring == native { " (native here)" } else { "" });
        metrics.extend(Summary::of(&format!("start -> first output, {tag}"), "ms", &first));
        metrics.extend(Summary::of(&format!("start -> guest exit, {tag}"), "ms", &exit));
        metrics.extend(Summary::of(&format!("boot -> exit inside VMM, {tag}"), "ms", &inproc));
        metrics.extend(Summary::of(&format!("VMM peak RSS - guest touched, {tag}"), "MiB", &overhead));
        metrics.extend(Summary::of(&format!("VMM private memory - guest touched, {tag}"), "MiB", &private));
        metrics.extend(Summary::of(&format!("guest memory touched, {tag}"), "MiB", &touched));
    }
    bar.finish_and_clear();
    Ok(Report {
        suite: "boot".into(),
        environment: env,
        quick: opts.quick,
        metrics,
        notes: vec![
            "start = spawning the vmscope process; times include exec, KVM set-up and guest memory mapping"
                .into(),
            "guest memory touched includes the boot structures and page tables the VMM wrote".into(),
            "peak RSS includes vmscope's own code pages (clean, file-backed, shared by every vmscope process); private memory (Private_Dirty) does not".into(),
        ],
    })
}
