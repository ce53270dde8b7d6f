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
//!
//! Every kind is measured with the VMM's seccomp filters on and off (`--no-seccomp`), runs
//! alternating, and a note per kind compares the medians with the spread of the runs.
//!
//! The floor: the same `out` loop run by the smallest VMM possible (`vmm::vstate::raw_loop`:
//! one vCPU, `KVM_RUN`, look at the exit, run again), in this process, interleaved with the
//! port I/O kinds' runs; each of them is also shown as a ratio to it.

use super::{progress, run_guest, Environment, GuestRun, MeasureError, Options, Report, Summary};
use vmm::arch::x86_64::Ring;

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

/// How many times a pair of runs (0 and N operations) is taken when the one without
/// operations took longer.
const PAIR_ATTEMPTS: usize = 5;

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

/// The VMM's seccomp filters during a measurement: on (the default) or off (`--no-seccomp`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seccomp {
    On,
    Off,
}

impl Seccomp {
    /// The extra `vmscope run` arguments.
    fn args(self) -> &'static [&'static str] {
        match self {
            Seccomp::On => &[],
            Seccomp::Off => &["--no-seccomp"],
        }
    }

    /// What metric names say: nothing for the default, so figures compare across versions.
    fn tag(self) -> &'static str {
        match self {
            Seccomp::On => "",
            Seccomp::Off => ", seccomp off",
        }
    }
}

/// The samples of one exit kind at one privilege level under one seccomp policy.
#[derive(Default)]
struct Samples {
    per_op_us: Vec<f64>,
    vmm_ns: Vec<f64>,
    vmm_exits_per_op: Vec<f64>,
    kvm_per_op: Vec<Vec<f64>>,
    rings: Vec<f64>,
}

/// Runs `kind` with 0 and with `n` operations once and adds what it measured to `into`.
fn sample(
    opts: &Options,
    kind: &Kind,
    ring: &str,
    n: u64,
    policy: Seccomp,
    into: &mut Samples,
) -> Result<(), MeasureError> {
    let n_s = n.to_string();
    let args = |count: &str| {
        let mut a = vec!["unikernel", "--ring", ring, "--workload", kind.workload];
        a.extend([count, "--timeout", "300"]);
        a.extend(policy.args());
        a.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let (zero, many) = (args("0"), args(&n_s));
    let zero: Vec<&str> = zero.iter().map(String::as_str).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    // The figure is a difference of two process timings: on a busy host the run without
    // operations can take longer than the run with them. Such a pair says nothing; it is
    // taken again (a few times at most, then the last pair stands).
    let mut t0 = run_guest(&opts.bin, &zero)?.ok(&zero)?;
    let mut t1 = run_guest(&opts.bin, &many)?.ok(&many)?;
    for _ in 1..PAIR_ATTEMPTS {
        if kind.timed_in_guest || t1.exit_s > t0.exit_s {
            break;
        }
        t0 = run_guest(&opts.bin, &zero)?.ok(&zero)?;
        t1 = run_guest(&opts.bin, &many)?.ok(&many)?;
    }
    let mut exits = kind.vmm_key.map_or(0, |k| t1.exits_named(k).saturating_sub(t0.exits_named(k)));
    if kind.workload == "doorbell" {
        // The first write of a run exits once: the VMM registers the ioeventfd then.
        exits = exits.saturating_sub(1);
    }
    into.vmm_exits_per_op.push(exits as f64 / n as f64);
    if kind.timed_in_guest {
        let out = String::from_utf8_lossy(&t1.stdout);
        let ns = guest_timed_ns(&out, kind.workload).ok_or_else(|| MeasureError::GuestFailed {
            args: many.join(" "),
            detail: format!("no `{}: … in T ns` line in its output: {out}", kind.workload),
        })?;
        into.per_op_us.push(ns as f64 / n as f64 / 1e3);
    } else if exits > 0 {
        // A pair that stayed upside down after every attempt counts as the smallest figure
        // the clock can tell apart from zero, not as zero.
        let seconds = (t1.exit_s - t0.exit_s).max(1e-9);
        into.per_op_us.push(seconds * 1e6 / exits as f64);
    }
    if let Some(key) = kind.vmm_key.filter(|_| exits > 0) {
        if let Ok(stats) = serde_json::from_value::<inspect::exits::ExitStats>(t1.stats["exits"].clone()) {
            if let Some((_, c)) = stats.per_key.iter().find(|(k, _)| k.to_string() == key) {
                into.vmm_ns.push(c.total_ns as f64 / c.count.max(1) as f64);
            }
        }
    }
    into.kvm_per_op.resize(KVM_COUNTERS.len(), vec![]);
    for (samples, name) in into.kvm_per_op.iter_mut().zip(KVM_COUNTERS) {
        samples.extend(kvm_delta(&t0, &t1, name).map(|d| d / n as f64));
    }
    into.rings.extend(t1.stat("doorbell_rings"));
    Ok(())
}

/// µs per port I/O exit of the raw KVM loop: (its time for `n` exits − its time for 0) /
/// `n`, as the vmscope figures are taken, so neither side counts its first entry.
fn raw_sample(ring: u8, n: u64) -> Result<f64, MeasureError> {
    let args = format!("raw KVM loop, CPL{ring}, {n} exits");
    let iterations = u32::try_from(n)
        .map_err(|_| MeasureError::GuestFailed { args: args.clone(), detail: "too many exits".into() })?;
    let run = |count: u32| {
        vmm::vstate::raw_loop::run(if ring == 3 { Ring::Ring3 } else { Ring::Ring0 }, count)
            .map_err(|e| MeasureError::GuestFailed { args: args.clone(), detail: e.to_string() })
    };
    let (zero, many) = (run(0)?, run(iterations)?);
    if many.port_exits != n {
        return Err(MeasureError::GuestFailed {
            args,
            detail: format!("{} exits on the loop port", many.port_exits),
        });
    }
    Ok(many.ns.saturating_sub(zero.ns).max(1) as f64 / n as f64 / 1e3)
}

/// The raw loop's own guest code as ELF files for `vmscope run --elf`, with 0 and N
/// iterations; removed when dropped.
struct LoopElves {
    zero: std::path::PathBuf,
    many: std::path::PathBuf,
}

impl LoopElves {
    fn write(n: u64) -> Result<Self, MeasureError> {
        let iterations = u32::try_from(n).unwrap_or(u32::MAX);
        let dir = std::env::temp_dir();
        let path = |count: u32| dir.join(format!("vmscope-measure-loop-{}-{count}.elf", std::process::id()));
        let (zero, many) = (path(0), path(iterations));
        for (p, count) in [(&zero, 0), (&many, iterations)] {
            std::fs::write(p, vmm::vstate::raw_loop::loop_elf(count)).map_err(|e| {
                MeasureError::GuestFailed { args: format!("writing {}", p.display()), detail: e.to_string() }
            })?;
        }
        Ok(Self { zero, many })
    }
}

impl Drop for LoopElves {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.zero);
        let _ = std::fs::remove_file(&self.many);
    }
}

/// µs per exit of the raw loop's guest code run by `vmscope run --elf` at `ring`: (wall time
/// with `n` exits − wall time with 0) / `n`, the console to a pipe.
fn vmscope_loop_sample(opts: &Options, elves: &LoopElves, ring: u8, n: u64) -> Result<f64, MeasureError> {
    let ring_s = ring.to_string();
    let time = |elf: &std::path::Path| -> Result<f64, MeasureError> {
        let elf = elf.to_string_lossy();
        let args = ["--elf", &elf, "--ring", &ring_s, "--timeout", "300"];
        Ok(run_guest(&opts.bin, &args)?.ok(&args)?.exit_s)
    };
    let (t0, t1) = (time(&elves.zero)?, time(&elves.many)?);
    Ok((t1 - t0).max(1e-9) * 1e6 / n as f64)
}

/// `a[i] / b[i]` for the runs both have.
fn ratios(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).filter(|(_, b)| **b > 0.0).map(|(a, b)| a / b).collect()
}

/// The median of `v` (0 when empty).
fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// How the seccomp-on figures of one kind compare with seccomp off: the difference of the
/// medians beside the spread (max − min) of the off runs, which is what "noise" means here.
fn seccomp_note(tag: &str, unit: &str, on: &[f64], off: &[f64]) -> Option<String> {
    if on.is_empty() || off.is_empty() {
        return None;
    }
    let (m_on, m_off) = (median(on), median(off));
    let spread = off.iter().copied().fold(f64::NEG_INFINITY, f64::max)
        - off.iter().copied().fold(f64::INFINITY, f64::min);
    let verdict = if (m_on - m_off).abs() <= spread {
        "within the spread of the runs"
    } else {
        "outside the spread of the runs"
    };
    Some(format!(
        "{tag}: seccomp on {m_on:.3} {unit} vs off {m_off:.3} {unit} (medians; on − off = {:+.3} {unit}, off runs spread {spread:.3} {unit}): {verdict}",
        m_on - m_off
    ))
}

pub(super) fn run(opts: &Options) -> Result<Report, MeasureError> {
    let runs = opts.runs.unwrap_or(if opts.quick { 3 } else { 10 });
    let n: u64 = if opts.quick { 2_000 } else { 20_000 };
    let env = Environment::here();
    let policies = [Seccomp::On, Seccomp::Off];
    let bar = progress(opts, (runs * 2 * (KINDS.len() * policies.len() + 1) * 2) as u64, "exits");
    let mut metrics = vec![];
    let mut notes = vec![
        format!("round trip = (wall time of {n} exits - wall time of 0) / {n}: guest instruction, KVM exit, VMM handler, re-entry"),
        "in the VMM = from KVM_RUN returning to the handler finishing; console output goes to a pipe".into(),
        format!("timed in the guest = the workload's own loop of {n}, between two wall-clock hypercalls, / {n}"),
        format!("KVM counters per op = (vCPU 0's counter after {n} ops - after 0 ops) / {n}, from KVM_GET_STATS_FD"),
        "seccomp: every figure is measured with the VMM's filters on (the default) and, in the rows marked \"seccomp off\", with --no-seccomp; the runs alternate between the two".into(),
        format!("raw KVM loop = {n} `out` instructions to port 0x3f8 run by vmm::vstate::raw_loop in the measuring process (one vCPU, KVM_RUN, look at the exit, run again; no devices, statistics, threads or seccomp), (time from the first KVM_RUN to the exit with {n} - with 0) / {n}, as vmscope's figures are differences; one run after each pair of vmscope runs of a port I/O kind, a sample being the mean of a run's two"),
        format!("`out` loop = the raw loop's own guest code (vmm::vstate::raw_loop::loop_code: {n} `out`s to 0x3f8, then the exit port) run both by the raw loop and by `vmscope run --elf` (serial port, console to a pipe, seccomp on), alternating which goes first; vmscope's figure is (wall time with {n} - with 0) / {n}; the ratio is taken run by run"),
        "vmscope over the raw KVM loop = the kind's round trip (seccomp on) / the raw loop's per-exit time, run by run; the raw loop writes nothing, while vmscope also copies the byte to its console (a pipe here)".into(),
    ];
    let elves = LoopElves::write(n)?;
    for ring in [3u8, 0] {
        let ring_s = ring.to_string();
        // The floor and vmscope on the very same guest code, interleaved, the order swapped
        // every run so that neither always runs on a host the other has just warmed.
        let (mut loop_vmscope, mut loop_raw) = (vec![], vec![]);
        for run in 0..runs {
            if run % 2 == 0 {
                loop_vmscope.push(vmscope_loop_sample(opts, &elves, ring, n)?);
                loop_raw.push(raw_sample(ring, n)?);
            } else {
                loop_raw.push(raw_sample(ring, n)?);
                loop_vmscope.push(vmscope_loop_sample(opts, &elves, ring, n)?);
            }
            bar.inc(2);
        }
        metrics.extend(Summary::of(
            &format!("`out` loop, CPL{ring}: vmscope run --elf (round trip)"),
            "us",
            &loop_vmscope,
        ));
        metrics.extend(Summary::of(
            &format!("`out` loop, CPL{ring}: raw KVM loop (round trip)"),
            "us",
            &loop_raw,
        ));
        metrics.extend(Summary::of(
            &format!("`out` loop, CPL{ring}: vmscope over the raw KVM loop (same code)"),
            "x",
            &ratios(&loop_vmscope, &loop_raw),
        ));
        // Per run, the raw loop's samples beside each port I/O kind.
        let mut raw_by_run: Vec<Vec<f64>> = vec![vec![]; runs];
        for kind in &KINDS {
            let mut by_policy: [Samples; 2] = Default::default();
            let to_vmm = !kind.timed_in_guest;
            let mut raw = vec![];
            for _ in 0..runs {
                for (policy, samples) in policies.iter().zip(by_policy.iter_mut()) {
                    sample(opts, kind, &ring_s, n, *policy, samples)?;
                    bar.inc(2);
                }
                if to_vmm {
                    raw.push(raw_sample(ring, n)?);
                }
            }
            if to_vmm {
                metrics.extend(Summary::of(
                    &format!("{}, CPL{ring}: vmscope over the raw KVM loop", kind.label),
                    "x",
                    &ratios(&by_policy[0].per_op_us, &raw),
                ));
                for (run, r) in raw_by_run.iter_mut().zip(raw) {
                    run.push(r);
                }
            }
            let tag = format!("{}, CPL{ring}", kind.label);
            for (policy, s) in policies.iter().zip(&by_policy) {
                let p = policy.tag();
                if kind.timed_in_guest {
                    metrics.extend(Summary::of(
                        &format!("{tag} (timed in the guest{p})"),
                        "us",
                        &s.per_op_us,
                    ));
                } else {
                    metrics.extend(Summary::of(
                        &format!("{} exit, CPL{ring} (round trip{p})", kind.label),
                        "us",
                        &s.per_op_us,
                    ));
                    metrics.extend(Summary::of(
                        &format!("{} exit, CPL{ring} (in the VMM{p})", kind.label),
                        "ns",
                        &s.vmm_ns,
                    ));
                }
                if kind.timed_in_guest && s.vmm_exits_per_op.iter().any(|&x| x > 0.0) {
                    metrics.extend(Summary::of(&format!("{tag} (in the VMM{p})"), "ns", &s.vmm_ns));
                }
            }
            let [on, off] = &by_policy;
            notes.extend(seccomp_note(&format!("{tag} per op"), "us", &on.per_op_us, &off.per_op_us));
            notes.extend(seccomp_note(&format!("{tag} in the VMM"), "ns", &on.vmm_ns, &off.vmm_ns));
            if kind.timed_in_guest {
                if on.vmm_exits_per_op.iter().any(|&x| x > 0.0) {
                    metrics.extend(Summary::of(
                        &format!("{tag}: exits to the VMM per op"),
                        "per op",
                        &on.vmm_exits_per_op,
                    ));
                } else {
                    notes.push(format!("{tag}: no exit reached the VMM (0 per op)"));
                }
            }
            for (samples, name) in on.kvm_per_op.iter().zip(KVM_COUNTERS) {
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
                notes.push(format!("{tag}: the first write of each run exits to the VMM once, which registers the ioeventfd (lazily, so that a guest that never rings pays no ioeventfd clean-up); that exit is not counted per op"));
            }
            if kind.workload == "doorbell" {
                let rings = &on.rings;
                let min = rings.iter().copied().fold(f64::INFINITY, f64::min);
                notes.push(if rings.len() == runs && min >= n as f64 {
                    format!("{tag}: the VMM's drain thread counted all {n} rings in every run")
                } else {
                    format!("{tag}: the VMM's drain thread counted {rings:?} rings for {n} writes")
                });
            }
        }
        let raw_means: Vec<f64> = raw_by_run
            .iter()
            .filter(|r| !r.is_empty())
            .map(|r| r.iter().sum::<f64>() / r.len() as f64)
            .collect();
        metrics.extend(Summary::of(
            &format!("raw KVM loop: port I/O exit, CPL{ring} (per exit)"),
            "us",
            &raw_means,
        ));
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

    #[test]
    fn the_seccomp_note_compares_medians_with_the_spread() {
        let within =
            seccomp_note("UART byte, CPL3 per op", "us", &[10.0, 11.0, 12.0], &[9.0, 10.5, 12.0]).unwrap();
        assert!(within.contains("on 11.000 us vs off 10.500 us"), "{within}");
        assert!(within.contains("+0.500 us") && within.contains("spread 3.000 us): within"), "{within}");
        let outside = seccomp_note("x", "ns", &[200.0, 210.0], &[100.0, 101.0]).unwrap();
        assert!(outside.ends_with("outside the spread of the runs"), "{outside}");
        assert_eq!(seccomp_note("x", "ns", &[], &[1.0]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(ratios(&[4.0, 9.0, 1.0], &[2.0, 0.0]), vec![2.0]);
    }
}
