//! `io-batching`: the same bytes moved with one exit (unikernel) or one system call
//! (container) per batch, for batch sizes 1…256, the UART's one exit per byte as the
//! floor, and a shared ring between the unikernel and a VMM thread where the guest kicks
//! (an ioeventfd doorbell) only when that thread sleeps — what batching buys at each layer.

use super::{progress, run_guest, timed, Environment, MeasureError, Options, Report, Summary};
use std::process::Command;

const BATCHES: [u64; 5] = [1, 4, 16, 64, 256];

pub(super) fn run(opts: &Options) -> Result<Report, MeasureError> {
    let runs = opts.runs.unwrap_or(if opts.quick { 3 } else { 5 });
    let bytes: u64 = if opts.quick { 4096 } else { 65536 };
    let env = Environment::here();
    let bar = progress(opts, (runs * (BATCHES.len() * 3 + 1)) as u64, "io-batching");
    let ring = env.host_kind.native_ring().to_string();
    let mut metrics = vec![];
    let mut ring_notes = vec![];
    let bytes_s = bytes.to_string();
    // The floor: the UART, one exit per byte.
    let mut uart = vec![];
    for _ in 0..runs {
        let a = ["unikernel", "--ring", &ring, "--workload", "uart", &bytes_s, "--timeout", "600"];
        let r = run_guest(&opts.bin, &a)?.ok(&a)?;
        let exits = r.exits_named("io-out port 0x3f8").max(1);
        uart.push(r.exit_s * 1e6 / exits as f64);
        bar.inc(1);
    }
    metrics.extend(Summary::of(
        &format!("unikernel UART, 1 byte per exit ({bytes} B), per exit"),
        "us",
        &uart,
    ));
    for batch in BATCHES {
        let workload = format!("io {bytes} --batch {batch}");
        let (mut uk, mut ct, mut shared, mut kicks) = (vec![], vec![], vec![], vec![]);
        let mut exits = 0;
        for _ in 0..runs {
            let a = ["unikernel", "--ring", &ring, "--workload", &workload, "--timeout", "600"];
            let r = run_guest(&opts.bin, &a)?.ok(&a)?;
            exits = r.exits_named("io-out port 0x500");
            uk.push(r.exit_s * 1e3);
            bar.inc(1);
            // The default runtime: vmscope's embedded one (nothing to install).
            ct.push(timed(
                Command::new(&opts.bin).args(["run", "container", "--workload", &workload]),
                &workload,
            )?);
            bar.inc(1);
            let ring_workload = format!("{workload} --ring");
            let a = ["unikernel", "--ring", &ring, "--workload", &ring_workload, "--timeout", "600"];
            let r = run_guest(&opts.bin, &a)?.ok(&a)?;
            shared.push(r.exit_s * 1e3);
            if let Some(k) = ring_kicks(&r.stdout) {
                kicks.push(k as f64);
            }
            bar.inc(1);
        }
        metrics.extend(Summary::of(
            &format!("unikernel, batch {batch} ({exits} exits), whole run"),
            "ms",
            &uk,
        ));
        metrics.extend(Summary::of(
            &format!("container, batch {batch} ({} write syscalls), whole run", bytes.div_ceil(batch)),
            "ms",
            &ct,
        ));
        metrics.extend(Summary::of(
            &format!("unikernel shared ring, batch {batch}, whole run"),
            "ms",
            &shared,
        ));
        // Kicks are often zero (a consumer that never slept needs none), so they are a note.
        ring_notes.push(format!(
            "shared ring, batch {batch}: {} batches, kicks per run {:?}",
            bytes.div_ceil(batch),
            kicks.iter().map(|k| *k as u64).collect::<Vec<_>>()
        ));
    }
    bar.finish_and_clear();
    let mut notes = vec![
            format!("{bytes} bytes per run; the unikernel runs at CPL{ring} (native on this host); whole-run times include start-up"),
            "unikernel: each batch is one console-write hypercall (a VM exit to the VMM); container (vmscope's embedded runtime): each batch is one write(2) to /dev/null".into(),
            "shared ring: the unikernel copies each batch into a 64 KiB ring in its memory that a VMM thread drains to the console; it kicks (an ioeventfd doorbell: no exit to the VMM) only when that thread has said it sleeps, so it kicks at most once per batch, and fewer times the better that thread keeps up (how many depends on the host's scheduling; with `run --ring-consumer poll` the thread never sleeps and the guest never kicks)".into(),
    ];
    notes.extend(ring_notes);
    Ok(Report { suite: "io-batching".into(), environment: env, quick: opts.quick, metrics, notes })
}
/// The kick count from the ring workload's summary line (`…, K kicks, in T ns`).
fn ring_kicks(stdout: &[u8]) -> Option<u64> {
    let text = String::from_utf8_lossy(stdout);
    let line = text.lines().find(|l| l.contains("through the shared ring"))?;
    let before = line.split(" kicks").next()?;
    before.rsplit(' ').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::ring_kicks;

    #[test]
    fn reads_the_kick_count() {
        let out = b"....\nio: 65536 bytes in 256 batches of up to 256 through the shared ring, 10 kicks, in 244375 ns\n";
        assert_eq!(ring_kicks(out), Some(10));
        assert_eq!(ring_kicks(b"io: 1 bytes in 1 writes of up to 1\n"), None);
    }
}
