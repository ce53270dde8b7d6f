//! End to end: `vmscope run unikernel` boots the built-in unikernel under the real KVM.

mod common;
use common::{host_is_pvm, stderr, stdout, vmscope};

#[test]
fn hello_at_both_rings() {
    for ring in ["0", "3"] {
        let o = vmscope(&["run", "unikernel", "--ring", ring, "--timeout", "60"]);
        let out = stdout(&o);
        assert_eq!(o.status.code(), Some(0), "ring {ring}: {out}\n{}", stderr(&o));
        assert!(
            out.contains(&format!("Hello from the vmscope unikernel (ring {ring})")),
            "ring {ring}: {out}"
        );
    }
}

#[test]
fn default_ring_is_the_native_one() {
    let o = vmscope(&["run", "unikernel", "--verbose", "--timeout", "60"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let expected = if host_is_pvm() { "ring 3" } else { "ring 0" };
    assert!(stdout(&o).contains(expected), "{}", stdout(&o));
    assert!(stderr(&o).contains(if host_is_pvm() { "host pvm" } else { "host " }), "{}", stderr(&o));
}

#[test]
fn compute_gives_the_known_prime_count() {
    // 78498 primes below one million; at CPL3 this runs natively even on PVM.
    let o =
        vmscope(&["run", "unikernel", "--ring", "3", "--workload", "compute", "1000000", "--timeout", "120"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("compute: N=1000000 primes=78498"), "{}", stdout(&o));
    // A small one at CPL0, which PVM emulates instruction by instruction.
    let o =
        vmscope(&["run", "unikernel", "--ring", "0", "--workload", "compute", "1000", "--timeout", "300"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("compute: N=1000 primes=168"), "{}", stdout(&o));
}

/// The count in the `--verbose` exit table's row for `key` (e.g. "io-out port 0x500").
fn exit_count(verbose_stderr: &str, key: &str) -> u64 {
    let row = verbose_stderr
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("no {key} row: {verbose_stderr}"));
    row[key.len()..].split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn hypercalls_make_one_exit_each() {
    let o =
        vmscope(&["run", "unikernel", "--workload", "hypercalls", "500", "--verbose", "--timeout", "120"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // The exit table row for the console-write port: 500 calls plus the summary line.
    let count = exit_count(&stderr(&o), "io-out port 0x500");
    assert!((500..=502).contains(&count), "{count}");
}

#[test]
fn uart_bytes_are_one_exit_each() {
    let o = vmscope(&["run", "unikernel", "--workload", "uart", "300", "--verbose", "--timeout", "120"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(exit_count(&stderr(&o), "io-out port 0x3f8") >= 300);
}

#[test]
fn exit_code_is_the_guests() {
    let o = vmscope(&["run", "unikernel", "--workload", "exit", "42", "--timeout", "60"]);
    assert_eq!(o.status.code(), Some(42), "{}", stderr(&o));
}

#[test]
fn triple_fault_is_reported_with_registers_and_instruction() {
    let o = vmscope(&["run", "unikernel", "--workload", "triple-fault", "--timeout", "60"]);
    assert_eq!(o.status.code(), Some(125));
    let err = stderr(&o);
    assert!(err.contains("triple fault"), "{err}");
    assert!(err.contains("rip="), "{err}");
    assert!(err.contains("instruction at rip: ud2"), "{err}");
}

#[test]
fn a_spinning_guest_is_stopped_at_the_timeout() {
    let o = vmscope(&["run", "unikernel", "--workload", "spin", "--timeout", "1"]);
    assert_eq!(o.status.code(), Some(124));
    let err = stderr(&o);
    assert!(err.contains("still running after the --timeout of 1.0 s"), "{err}");
    assert!(err.contains("rip="), "{err}");
}

#[test]
fn sse_at_cpl0_on_pvm_is_an_emulation_failure() {
    let o = vmscope(&["run", "unikernel", "--ring", "0", "--workload", "sse", "--timeout", "60"]);
    if host_is_pvm() {
        assert_eq!(o.status.code(), Some(125));
        let err = stderr(&o);
        assert!(err.contains("instruction emulator could not run"), "{err}");
        assert!(err.contains("instruction at rip: movd"), "{err}");
        assert!(err.contains("Try --ring 3"), "{err}");
    } else {
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
}

#[test]
fn bad_hypercall_is_refused_not_fatal() {
    let o = vmscope(&["run", "unikernel", "--workload", "bad-hypercall", "--timeout", "60"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn bad_inputs_get_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not an elf").unwrap();
    let o = vmscope(&["run", "--elf", text.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("notes.txt is not a valid ELF file"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    let o = vmscope(&["run", "--elf", "/nonexistent/guest.elf"]);
    assert!(stderr(&o).contains("cannot read /nonexistent/guest.elf"), "{}", stderr(&o));

    // The unikernel does not fit in 4 MiB minus its stack? It does; 2 MiB is refused.
    let o = vmscope(&["run", "unikernel", "--mem", "2"]);
    assert!(stderr(&o).contains("guest memory of 2 MiB is not supported"), "{}", stderr(&o));

    let o = vmscope(&["run", "unikernel", "--ring", "1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("ring must be 0 or 3"), "{}", stderr(&o));
}

#[test]
fn a_missing_kvm_device_is_named() {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_vmscope"))
        .args(["run", "unikernel"])
        .env("VMSCOPE_KVM_DEVICE", "/nonexistent/kvm")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("/nonexistent/kvm does not exist"), "{}", stderr(&o));
}

#[test]
fn host_reports_its_kind() {
    let o = vmscope(&["host", "--json"]);
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let kind = v["host_kind"].as_str().unwrap();
    assert_eq!(kind == "pvm", host_is_pvm(), "{v}");
}

#[test]
fn io_batches_make_one_exit_per_batch() {
    let o = vmscope(&["run", "unikernel", "--workload", "io 100 --batch 16", "--verbose", "--timeout", "60"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("io: 100 bytes in 7 writes of up to 16"), "{}", stdout(&o));
    // Seven batches plus the summary line.
    assert_eq!(exit_count(&stderr(&o), "io-out port 0x500"), 8);
    let o = vmscope(&["run", "unikernel", "--workload", "io 100 --batch 0"]);
    assert_eq!(o.status.code(), Some(2));
}

/// Runs the unikernel with `--stats-json` and returns its output and the statistics.
fn run_with_stats(args: &[&str]) -> (String, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("stats.json");
    let mut all = vec!["run", "unikernel", "--timeout", "120", "--stats-json", json.to_str().unwrap()];
    all.extend_from_slice(args);
    let o = vmscope(&all);
    assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
    (stdout(&o), serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap())
}

/// Exits the VMM counted for one exit kind at one address (a port or an MMIO page).
fn vmm_exits(stats: &serde_json::Value, kind: &str, addr: u64) -> u64 {
    stats["exits"]["per_key"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["kind"] == kind && k["addr"].as_u64() == Some(addr))
        .map(|k| k["count"].as_u64().unwrap())
        .sum()
}

#[test]
fn doorbell_writes_stay_in_the_kernel() {
    for ring in ["3", "0"] {
        let (out, stats) = run_with_stats(&["--ring", ring, "--workload", "doorbell", "300"]);
        assert!(out.contains("doorbell: 300 doorbell writes in "), "{out}");
        assert_eq!(stats["doorbell_rings"].as_u64(), Some(300), "ring {ring}: {stats}");
        // The first write exits once: the VMM registers the ioeventfd then (lazily, so a
        // guest that never rings pays no ioeventfd clean-up when it ends).
        assert_eq!(vmm_exits(&stats, "io-out", 0x503), 1, "ring {ring}: {stats}");
    }
}

#[test]
fn mmio_stores_exit_to_the_vmm_and_cpuid_does_not() {
    let (out, stats) = run_with_stats(&["--workload", "mmio", "250"]);
    assert!(out.contains("mmio: 250 stores to the MMIO probe in "), "{out}");
    assert_eq!(vmm_exits(&stats, "mmio-write", 0xfe00_0000), 250, "{stats}");
    assert!(stats["kvm_stats"]["mmio_exits"].as_u64().unwrap_or(250) >= 250, "{stats}");
    let (out, stats) = run_with_stats(&["--workload", "cpuid", "1000"]);
    assert!(out.contains("cpuid: 1000 cpuid instructions in "), "{out}");
    let to_vmm: u64 =
        stats["exits"]["per_key"].as_array().unwrap().iter().map(|k| k["count"].as_u64().unwrap()).sum();
    assert!(to_vmm < 10, "only the console and clock hypercalls and the exit reach the VMM: {stats}");
    let bad = vmscope(&["run", "unikernel", "--workload", "mmio", "x"]);
    assert_eq!(bad.status.code(), Some(2), "a bad number is refused");
}

/// `vmscope_abi::PORT_DOORBELL`, the port the guest kicks.
const PORT_DOORBELL: u64 = 0x503;

/// The shared-ring workloads the ring tests run: the figures of the README and of
/// `vmscope measure io-batching` (the stream fills the 64 KiB ring exactly once), and a
/// longer stream in batches that do not divide 64 (so a lost, repeated or reordered batch
/// shifts the newlines) that wraps around the ring three times and so also waits for room.
const RING_WORKLOADS: [(u64, u64); 2] = [(65536, 256), (200_000, 100)];

/// The byte stream `io BYTES --ring` puts through the shared ring, exactly as the
/// unikernel's `workload_io_ring` writes it: byte `i` of the stream (counted from the
/// ring's index 0, where a fresh VM's ring starts) is a newline when `i % 64 == 63`, else
/// a dot.
fn ring_stream(bytes: u64) -> String {
    (0..bytes).map(|i| if i % 64 == 63 { '\n' } else { '.' }).collect()
}

/// Runs `io BYTES --batch BATCH --ring` (with `--ring-consumer MODE` if given) and checks
/// what the ring protocol guarantees whatever the scheduling: every byte arrives once and
/// in order before the guest's summary, at most one kick per batch, every kick a doorbell
/// write that stays in the kernel, no broken-ring event. Returns the kicks and the
/// statistics.
fn io_through_the_ring(bytes: u64, batch: u64, mode: Option<&str>) -> (u64, serde_json::Value) {
    let workload = format!("io {bytes} --batch {batch} --ring");
    let mut args = vec!["--workload", workload.as_str()];
    if let Some(mode) = mode {
        args.extend(["--ring-consumer", mode]);
    }
    let (out, stats) = run_with_stats(&args);
    // The guest prints its summary only once the consumer has taken everything (tail ==
    // head), and the consumer writes a chunk to the console before it advances the tail:
    // so the console holds the whole stream, then the summary, and nothing else.
    let stream = ring_stream(bytes);
    let near =
        |at: usize| String::from_utf8_lossy(&out.as_bytes()[at.saturating_sub(70)..(at + 70).min(out.len())]);
    if let Some(at) = out.bytes().zip(stream.bytes()).position(|(a, b)| a != b) {
        panic!("{workload}: the console differs from the stream at byte {at}: {:?}", near(at));
    }
    let rest = out.get(stream.len()..).unwrap_or_else(|| {
        panic!("{workload}: the console ends after {} bytes: {:?}", out.len(), near(out.len()))
    });
    let batches = bytes.div_ceil(batch);
    let summary =
        format!("\nio: {bytes} bytes in {batches} batches of up to {batch} through the shared ring, ");
    let kicks_ns = rest.strip_prefix(&summary).unwrap_or_else(|| panic!("{workload}: {rest:?}"));
    let (kicks, ns) = kicks_ns
        .strip_suffix(" ns\n")
        .and_then(|r| r.split_once(" kicks, in "))
        .unwrap_or_else(|| panic!("{workload}: {rest:?}"));
    let kicks: u64 = kicks.parse().unwrap_or_else(|_| panic!("{workload}: {rest:?}"));
    assert!(ns.parse::<u64>().is_ok(), "{workload}: {rest:?}");
    // A kick follows a batch only when the consumer said it sleeps: at most one per batch.
    assert!(kicks <= batches, "{workload}: {kicks} kicks for {batches} batches");
    // Each kick is one doorbell write, counted by the VMM's eventfd; only the first exits
    // (the VMM registers the ioeventfd then), the others stay in the kernel.
    assert_eq!(stats["doorbell_rings"].as_u64(), Some(kicks), "{workload}: {stats}");
    let exits_at_the_doorbell = vmm_exits(&stats, "io-out", PORT_DOORBELL);
    assert_eq!(exits_at_the_doorbell, kicks.min(1), "{workload}: {kicks} kicks: {stats}");
    let ring = &stats["shared_ring"];
    assert_eq!(ring["bytes"].as_u64(), Some(bytes), "{workload}: {stats}");
    assert_eq!(ring["errors"].as_u64(), Some(0), "{workload}: {stats}");
    assert_eq!(ring["consumer"].as_str(), Some(mode.unwrap_or("sleep")), "{workload}: {stats}");
    (kicks, stats)
}

#[test]
fn io_through_the_shared_ring_delivers_every_byte_in_order() {
    // The default consumer sleeps once the ring is empty. How many batches find it asleep
    // is the host scheduler's business (from none to all of them: `vmscope measure
    // io-batching` reports the figure), so only the bounds above are checked.
    for (bytes, batch) in RING_WORKLOADS {
        io_through_the_ring(bytes, batch, None);
    }
}

#[test]
fn a_consumer_kept_awake_gets_no_kicks() {
    for (bytes, batch) in RING_WORKLOADS {
        let (kicks, stats) = io_through_the_ring(bytes, batch, Some("poll"));
        // Exactly none, not "few", and no kick at start either: the guest kicks only
        // after it read consumer_sleeping != 0; the flag is 0 in fresh guest memory
        // (before the consumer thread first runs, whichever of it and the vCPU goes first)
        // and a polling consumer never sets it. Whatever the guest produced before the
        // consumer's first look is taken by that look, without a kick.
        assert_eq!(kicks, 0, "{stats}");
        assert_eq!(stats["shared_ring"]["consumer_sleeps"].as_u64(), Some(0), "{stats}");
    }
}
