//! `exits`: what one exit costs, by kind, at each privilege level.
//!
//! - To the VMM, through port I/O: a console hypercall and a UART byte, measured as
//!   (time with N exits − time with 0) / N, and the VMM's own share from its exit counters.
//! - Kept inside the host kernel: `cpuid` (KVM answers it; on PVM at CPL3 it does not even
//!   trap) and a doorbell write to an ioeventfd; and an MMIO store to an unbacked page,
//!   which KVM decodes and hands to the VMM. These three are timed from inside the guest.
//!
//! For every kind, KVM's own vCPU counters (`KVM_GET_STATS_FD`) with N operations minus
//! those with 0 show where each operation went: a KVM exit, an emulated instruction, or
//! neither.

use super::{progress, run_guest, Environment, GuestRun, MeasureError, Options, Report, Summary};

/// How an exit kind is measured.
struct Kind {
    /// The unikernel workload (takes a count).
    workload: &'static str,
    /// For the table.
    label: &'static str,
    /// The VMM's exit key for it, if it reaches the VMM.
    vmm_key: Option<&'static str>,
    /// Timed by the guest itself (`… in T ns`) rather than from outside.
    timed_in_guest: bool,
}

const KINDS: [Kind; 5] = [
    Kind {
        workload: "hypercalls",
        label: "console hypercall",
        vmm_key: Some("io-out port 0x500"),
        timed_in_guest: false,
    },
    Kind { workload: "uart", label: "UART byte", vmm_key: Some("io-out port 0x3f8"), timed_in_guest: false },
    Kind {
        workload: "mmio",
        label: "MMIO store",
        vmm_key: Some("mmio-write 0xfe000000"),
        timed_in_guest: true,
    },
    Kind { workload: "cpuid", label: "cpuid", vmm_key: None, timed_in_guest: true },
    Kind {
        workload: "doorbell",
        label: "ioeventfd doorbell",
        vmm_key: Some("io-out port 0x503"),
        timed_in_guest: true,
    },
];

/// KVM counters reported per operation.
const KVM_COUNTERS: [&str; 2] = ["exits", "insn_emulation"];

/// The nanoseconds a timed workload reported: `<name>: N <what> in T ns`.
pub(super) fn guest_timed_ns(stdout: &str, workload: &str) -> Option<u64> {
    let prefix = format!("{workload}: ");
    let line = stdout.lines().rev().find(|l| l.starts_with(&prefix) && l.ends_with(" ns"))?;
    line.strip_suffix(" ns")?.rsplit(' ').next()?.parse().ok()
}

/// `after − before` of one of KVM's counters, if both runs reported it.
fn kvm_delta(before: &GuestRun, after: &GuestRun, name: &str) -> Option<f64> {
    let get = |r: &GuestRun| r.stats.get("kvm_stats")?.get(name)?.as_f64();
    Some((get(after)? - get(before)?).max(0.0))
}

pub(super) fn run(opts: &Options) -> Result<Report, MeasureError> {
    let runs = opts.runs.unwrap_or(if opts.quick { 3 } else { 10 });
    let n: u64 = if opts.quick { 2_000 } else { 20_000 };
    let env = Environment::here();
    let bar = progress(opts, (runs * 2 * KINDS.len() * 2) as u64, "exits");
    let mut metrics = vec![];
    let mut notes = vec![
        format!("round trip = (wall time of {n} exits - wall time of 0) / {n}: guest instruction, KVM exit, VMM handler, re-entry"),
        "in the VMM = from KVM_RUN returning to the handler finishing; console output goes to a pipe".into(),
        format!("timed in the guest = the workload's own loop of {n}, between two wall-clock hypercalls, / {n}"),
        format!("KVM counters per op = (vCPU 0's counter after {n} ops - after 0 ops) / {n}, from KVM_GET_STATS_FD"),
    ];
    let n_s = n.to_string();
    for ring in [3u8, 0] {
        let ring_s = ring.to_string();
        for kind in &KINDS {
            let mut per_op_us = vec![];
            let mut vmm_ns = vec![];
            let mut vmm_exits_per_op = vec![];
            let mut kvm_per_op: Vec<Vec<f64>> = vec![vec![]; KVM_COUNTERS.len()];
            let mut rings = vec![];
            for _ in 0..runs {
                let zero =
                    ["unikernel", "--ring", &ring_s, "--workload", kind.workload, "0", "--timeout", "300"];
                let many =
                    ["unikernel", "--ring", &ring_s, "--workload", kind.workload, &n_s, "--timeout", "300"];
                let t0 = run_guest(&opts.bin, &zero)?.ok(&zero)?;
                bar.inc(1);
                let t1 = run_guest(&opts.bin, &many)?.ok(&many)?;
                bar.inc(1);
                let exits = kind.vmm_key.map_or(0, |k| t1.exits_named(k).saturating_sub(t0.exits_named(k)));
                vmm_exits_per_op.push(exits as f64 / n as f64);
                if kind.timed_in_guest {
                    let out = String::from_utf8_lossy(&t1.stdout);
                    let ns =
                        guest_timed_ns(&out, kind.workload).ok_or_else(|| MeasureError::GuestFailed {
                            args: many.join(" "),
                            detail: format!("no `{}: … in T ns` line in its output: {out}", kind.workload),
                        })?;
                    per_op_us.push(ns as f64 / n as f64 / 1e3);
                } else if exits > 0 {
                    per_op_us.push((t1.exit_s - t0.exit_s).max(0.0) * 1e6 / exits as f64);
                }
                if let Some(key) = kind.vmm_key.filter(|_| exits > 0) {
                    if let Ok(stats) =
                        serde_json::from_value::<inspect::exits::ExitStats>(t1.stats["exits"].clone())
                    {
                        if let Some((_, c)) = stats.per_key.iter().find(|(k, _)| k.to_string() == key) {
                            vmm_ns.push(c.total_ns as f64 / c.count.max(1) as f64);
                        }
                    }
                }
                for (samples, name) in kvm_per_op.iter_mut().zip(KVM_COUNTERS) {
                    samples.extend(kvm_delta(&t0, &t1, name).map(|d| d / n as f64));
                }
                rings.extend(t1.stat("doorbell_rings"));
            }
            let tag = format!("{}, CPL{ring}", kind.label);
            if kind.timed_in_guest {
                metrics.extend(Summary::of(&format!("{tag} (timed in the guest)"), "us", &per_op_us));
            } else {
                metrics.extend(Summary::of(
                    &format!("{} exit, CPL{ring} (round trip)", kind.label),
                    "us",
                    &per_op_us,
                ));
                metrics.extend(Summary::of(
                    &format!("{} exit, CPL{ring} (in the VMM)", kind.label),
                    "ns",
                    &vmm_ns,
                ));
            }
            if kind.timed_in_guest {
                if vmm_exits_per_op.iter().any(|&x| x > 0.0) {
                    metrics.extend(Summary::of(
                        &format!("{tag}: exits to the VMM per op"),
                        "per op",
                        &vmm_exits_per_op,
                    ));
                    metrics.extend(Summary::of(&format!("{tag} (in the VMM)"), "ns", &vmm_ns));
                } else {
                    notes.push(format!("{tag}: no exit reached the VMM (0 per op)"));
                }
            }
            for (samples, name) in kvm_per_op.iter().zip(KVM_COUNTERS) {
                // A counter the operation does not drive (timer interrupts during the loop)
                // can be zero in one run: a note, not a metric that may read 0.
                match Summary::of(&format!("{tag}: KVM {name} per op"), "per op", samples) {
                    Some(s) if s.min > 0.0 && s.median >= 0.5 => metrics.push(s),
                    Some(s) => notes.push(format!(
                        "{tag}: KVM {name} per op {:.4} (median of {:?}): fewer than one per operation, so the operation itself does not cause it",
                        s.median, s.samples
                    )),
                    None => notes.push(format!("{tag}: KVM's {name} counter is not available on this host")),
                }
            }
            if kind.workload == "doorbell" {
                let min = rings.iter().copied().fold(f64::INFINITY, f64::min);
                notes.push(if rings.len() == runs && min >= n as f64 {
                    format!("{tag}: the VMM's drain thread counted all {n} rings in every run")
                } else {
                    format!("{tag}: the VMM's drain thread counted {rings:?} rings for {n} writes")
                });
            }
        }
    }
    bar.finish_and_clear();
    if !env.host_kind.is_hardware() {
        notes.push("PVM: a CPL3 guest runs on the CPU, so instructions that do not trap (cpuid here) cost what they cost natively — on a nested host that can include the outer hypervisor's own exit; CPL0 code runs in KVM's emulator".into());
    }
    Ok(Report { suite: "exits".into(), environment: env, quick: opts.quick, metrics, notes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_guests_own_timing() {
        let out = "cpuid: hypervisor signature 'KVMKVMKVM'\ncpuid: 2000 cpuid instructions in 10345 ns\n";
        assert_eq!(guest_timed_ns(out, "cpuid"), Some(10345));
        assert_eq!(guest_timed_ns("mmio: 5 stores to the MMIO probe in 77 ns", "mmio"), Some(77));
        assert_eq!(guest_timed_ns(out, "mmio"), None);
        assert_eq!(guest_timed_ns("cpuid: 2 cpuid instructions in many ns", "cpuid"), None);
        assert_eq!(guest_timed_ns("", "cpuid"), None);
    }
}
