//! How a run ends: the report (`--verbose`'s figures, a fault's register dump, the guest's
//! last words), `--stats-json`, and vmscope's exit status.

use super::args::ReportArgs;
use anyhow::Context;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use vmm::arch::x86_64::Ring;
use vmm::machine::{Machine, Outcome};

/// Process exit status when the guest faulted.
pub const EXIT_GUEST_FAULT: u8 = 125;
/// Process exit status when the time limit passed.
pub const EXIT_TIMEOUT: u8 = 124;

/// Reports how a guest ended (statistics, the fault report) and turns it into vmscope's
/// exit status. `console_tail` adds the guest's last output to a fault report (a kernel
/// panic message).
pub fn finish(
    args: &ReportArgs,
    machine: &Machine,
    outcome: Outcome,
    process_start: Instant,
    ring: Ring,
    hint: Option<&str>,
    console_tail: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let name = machine.name();
    let elapsed = process_start.elapsed();
    if let Some(path) = &args.stats_json {
        write_stats(path, machine, &outcome, elapsed, ring)?;
    }
    if args.verbose {
        eprintln!(
            "vmscope: {name} ran for {:.3} ms (process start to guest end)",
            elapsed.as_secs_f64() * 1e3
        );
        eprintln!("{}", machine.exit_stats());
    }
    Ok(match outcome {
        Outcome::Exited { code } => {
            if code > 255 {
                eprintln!(
                    "vmscope: guest exit code {code} does not fit in a process exit status; exiting with {}",
                    code & 0xff
                );
            }
            ExitCode::from((code & 0xff) as u8)
        }
        // A reboot the guest asked for (not a panic) ends the run cleanly.
        Outcome::Fault { reason: vmm::vstate::vcpu::StopReason::Reset, .. } if console_tail.is_none() => {
            eprintln!("vmscope: guest {name} reset the machine (a reboot); vmscope ends the VM there");
            ExitCode::SUCCESS
        }
        Outcome::Fault { reason, snapshot } => {
            if let Some(tail) = console_tail {
                eprintln!("vmscope: the guest's last words:\n{tail}");
            }
            eprint!(
                "vmscope: guest {name} stopped: {}",
                vmm::report::render(&reason, &snapshot, machine.memory())
            );
            if let Some(hint) = hint {
                eprintln!("vmscope: note: {hint}");
            }
            ExitCode::from(EXIT_GUEST_FAULT)
        }
        Outcome::TimedOut { limit, snapshot } => {
            eprintln!(
                "vmscope: guest {name} still running after the --timeout of {:.1} s; stopped it",
                limit.as_secs_f64()
            );
            if let Some(s) = snapshot {
                eprint!(
                    "vmscope: where it was: {}",
                    vmm::report::render(&vmm::vstate::vcpu::StopReason::Paused, &s, machine.memory())
                );
            }
            ExitCode::from(EXIT_TIMEOUT)
        }
    })
}

/// The figures `--stats-json` writes.
fn write_stats(
    path: &std::path::Path,
    machine: &Machine,
    outcome: &Outcome,
    elapsed: Duration,
    ring: Ring,
) -> anyhow::Result<()> {
    use vmm::vstate::rss;
    let peak = rss::peak_rss_bytes();
    let guest = rss::guest_resident_bytes(machine.memory());
    let outcome = match outcome {
        _ if crate::cli::qmp::quit_requested() => serde_json::json!("qmp-quit"),
        Outcome::Exited { code } => serde_json::json!({ "exited": code }),
        Outcome::Fault { reason, .. } => serde_json::json!({ "fault": vmm::report::describe(reason) }),
        Outcome::TimedOut { .. } => serde_json::json!("timed-out"),
    };
    let v = serde_json::json!({
        "host_kind": machine.host(),
        "guest": machine.name(),
        "ring": ring.cpl(),
        "outcome": outcome,
        "in_process_ns": elapsed.as_nanos() as u64,
        "vmm_peak_rss_bytes": peak,
        "guest_resident_bytes": guest,
        "vmm_overhead_bytes": peak.zip(guest).map(|(p, g)| p.saturating_sub(g)),
        "vmm_private_overhead_bytes": rss::private_dirty_bytes().zip(guest).map(|(p, g)| p.saturating_sub(g)),
        "exits": machine.exit_stats(),
        // KVM's own counters for vCPU 0 at the end of the run (they start at zero with the
        // vCPU): exits handled inside the kernel show here and not in "exits".
        "kvm_stats": machine.kvm_stats().into_iter().collect::<std::collections::BTreeMap<_, _>>(),
        "doorbell_rings": machine.doorbell_rings(),
        // Hypercalls refused: argument structs outside RAM, console buffers refused.
        "hypercalls": machine.hypercall_refusals(),
        // Each virtio device's registers and counters (refused accesses, errors, …).
        "virtio": machine.virtio_devices(),
        "shared_ring": machine.ring_stats().map(|(bytes, sleeps, errors)| serde_json::json!({
            "consumer": machine.ring_consumer().map(|m| m.name()),
            "bytes": bytes,
            "consumer_sleeps": sleeps,
            "errors": errors,
        })),
    });
    std::fs::write(path, serde_json::to_vec_pretty(&v)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
