//! The hostile-guest suite: each case boots the unikernel with `--workload 'hostile CASE'`,
//! a guest that does one bad thing to the VMM, and asserts exactly how vmscope answers.
//! Every case also asserts that the VMM did not panic (and, by finishing, did not hang).
//!
//! | case | the guest | vmscope's answer asserted |
//! |---|---|---|
//! | port-storm | `out` to 300 ports where nothing is | exit 0; 255 keyed port rows + one `io-out (other addresses)` row of 47 (45 storm ports, the console write, the exit): 302 in all |
//! | port-read-storm | `in` from 300 such ports | every read is 0xff; ≤ 256 keyed rows, `io-in` exits total 300 |
//! | mmio-storm | a store to each of 512 fresh MMIO pages | ≤ 256 keyed rows; `mmio-write` total 512, the rest in `(other addresses)` |
//! | mmio-read-storm | a load from 300 fresh pages | each reads all ones; `mmio-read` total 300 |
//! | console-flood | 1 MiB of console text without a newline, then a write of 1 MiB + 1 | the MiB arrives intact; the oversized write is refused (`u64::MAX`) |
//! | uart-flood | 4096 bytes to COM1, no newline | all 4096 printed; 4096 exits on port 0x3f8 |
//! | hypercall-straddle / -wrap / -huge-len / -too-long | console writes with a buffer across the end of RAM, wrapping past 2^64, of length 2^64-1, of 1 MiB + 1 | each refused with `u64::MAX` |
//! | hypercall-arg-outside | hypercall argument structs outside RAM | ignored and counted (`hypercalls.argument_outside_ram` in `--stats-json`); the guest carries on |
//! | hypercall-arg-straddle | an argument struct across the end of RAM | ignored and counted; its first field is untouched |
//! | exit-code-wide | exit code 0x12345 | status 0x45 and a message saying so |
//! | ud2 at CPL0 and CPL3 | `ud2`, no IDT | exit 125, "triple fault", mode and CPL, `ud2` at RIP |
//! | compat-ud2 at CPL0 and CPL3 | far return to a 32-bit code segment, `ud2` there | exit 125, triple fault with the 32-bit CS |
//! | protected-ud2 | compatibility mode, paging off (long mode left), `ud2` | exit 125, triple fault in 32-bit protected mode, EFER.LMA clear |
//! | real-ud2 | on down to real mode (16-bit segment, CR0.PE off, far jump to 0xffff:…), `ud2` | exit 125 in real mode at `ud2`: an emulation failure on PVM, a triple fault on hardware KVM; at CPL3 the case refuses to start |
//! | int3 at CPL0 / CPL3 | `int3`, no IDT | exit 125: an emulation failure naming `int3` (CPL0 on PVM), a triple fault otherwise |
//! | hlt at CPL0 | `cli; hlt` | exit 125, "halted with no interrupt to wake it" |
//! | hlt at CPL3 | `cli; hlt` in user mode | exit 125, triple fault (#GP) |
//! | wrmsr | an MSR that does not exist | exit 125, triple fault (#GP) at `wrmsr` |
//! | cr3-outside | CR3 pointed outside RAM | exit 125, a fault report showing that CR3 |
//! | pt-outside-ram | maps a page of the hole (no RAM, no device) and touches it | reads all ones; one MMIO read and one write counted there |
//! | pd-outside-ram | a PDPT entry pointing at a page directory outside RAM | exit 125, a fault report (a page fault at that address on PVM) |
//! | spin at CPL3 / CPL0 | never stops | `--timeout 1` ends it: exit 124, "still running after the --timeout" |
//! | ring-garbage | the shared byte ring's head a terabyte ahead, then behind the tail | the consumer counts 2 errors and copies nothing |
//! | unknown case | `hostile nope` | exit 2 and the list of cases |
//! | 34 virtio cases | see [`VIRTIO_CASES`] | the guest's view (status register, used ring, request status) and the device's counters |
//! | queue-of-loops | a full queue (256) of chains that all run round one loop through the table, all in flight, not notified | `vq 0 0` in a session stopped at `hostile_queue_posted` prints 256 chains, the loop named at its descriptor, cut at 1024 descriptors in all with a line per cut chain; the guest goes on |

mod common;
use common::{host_is_pvm, stderr, stdout, vmscope};
use serde_json::Value;

/// What one run gave.
struct Run {
    code: Option<i32>,
    out: String,
    err: String,
    stats: Value,
}

/// Runs `hostile CASE` with `args`, `--stats-json` and a 60 s bound, and checks the VMM did
/// not panic.
fn hostile(case: &str, args: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("stats.json");
    let workload = format!("hostile {case}");
    let mut all = vec!["run", "unikernel", "--workload", &workload, "--stats-json", json.to_str().unwrap()];
    all.extend_from_slice(args);
    if !args.contains(&"--timeout") {
        all.extend_from_slice(&["--timeout", "60"]);
    }
    let o = vmscope(&all);
    let run = Run {
        code: o.status.code(),
        out: stdout(&o),
        err: stderr(&o),
        stats: std::fs::read(&json).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or(Value::Null),
    };
    assert!(!run.err.contains("panicked"), "{case}: the VMM panicked:\n{}", run.err);
    run
}

/// The line `hostile CASE: …` the guest printed, without the prefix.
fn said(run: &Run, case: &str) -> String {
    let prefix = format!("hostile {case}: ");
    run.out
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("{case}: no result line in {:?}\n{}", run.out, run.err))
        .to_string()
}

/// A survivable case: exit 0 and exactly this line.
fn survives(case: &str, args: &[&str], line: &str) -> Run {
    let run = hostile(case, args);
    assert_eq!(run.code, Some(0), "{case}: {}\n{}", run.out, run.err);
    assert_eq!(said(&run, case), line, "{case}");
    run
}

/// Exit rows of the statistics.
fn rows(stats: &Value) -> &Vec<Value> {
    stats["exits"]["per_key"].as_array().expect("exit rows in --stats-json")
}

/// Exits of `kind`: (in rows with an address, in the kind's "(other addresses)" row).
fn exits_of(stats: &Value, kind: &str) -> (u64, u64) {
    let mut keyed = 0;
    let mut other = 0;
    for r in rows(stats).iter().filter(|r| r["kind"] == kind) {
        let n = r["count"].as_u64().unwrap();
        if r["addr"].is_u64() {
            keyed += n;
        } else if r["detail"] == "(other addresses)" {
            other += n;
        }
    }
    (keyed, other)
}

/// Rows that carry an address: capped at 256 (inspect::exits::MAX_KEYS) less the overflow
/// rows that share the cap.
fn keyed_rows(stats: &Value) -> usize {
    rows(stats).iter().filter(|r| r["addr"].is_u64()).count()
}

/// Exits of `kind` at exactly `addr`.
fn exits_at(stats: &Value, kind: &str, addr: u64) -> u64 {
    rows(stats)
        .iter()
        .filter(|r| r["kind"] == kind && r["addr"].as_u64() == Some(addr))
        .map(|r| r["count"].as_u64().unwrap())
        .sum()
}

#[test]
fn port_storm_is_capped_with_an_other_addresses_row() {
    let run = survives("port-storm", &[], "300 ports written");
    assert_eq!(rows(&run.stats).len(), 256, "{}", run.stats);
    assert_eq!(keyed_rows(&run.stats), 255, "255 keyed rows + the overflow row fill the 256 keys");
    // 45 storm ports, then the console write and the exit port, all new keys.
    assert_eq!(exits_of(&run.stats, "io-out"), (255, 47));
    let verbose = hostile("port-storm", &["--verbose"]);
    assert!(verbose.err.contains("io-out (other addresses)               47"), "{}", verbose.err);
    assert!(verbose.err.contains("past 256 distinct ports/pages"), "{}", verbose.err);
}

#[test]
fn port_read_storm_reads_all_ones_and_is_capped() {
    let run = survives("port-read-storm", &[], "300 of 300 reads were 0xff");
    assert!(keyed_rows(&run.stats) <= 256);
    let (keyed, other) = exits_of(&run.stats, "io-in");
    assert_eq!(keyed + other, 300);
    assert!(other >= 300 - 256, "{}", run.stats);
}

#[test]
fn mmio_storm_over_fresh_pages_is_capped() {
    let run = survives("mmio-storm", &[], "512 pages written");
    assert!(keyed_rows(&run.stats) <= 256);
    let (keyed, other) = exits_of(&run.stats, "mmio-write");
    assert_eq!(keyed + other, 512);
    assert!(other >= 512 - 256, "{}", run.stats);
}

#[test]
fn mmio_read_storm_reads_all_ones_and_is_capped() {
    let run = survives("mmio-read-storm", &[], "300 of 300 reads were 0xffffffff");
    assert!(keyed_rows(&run.stats) <= 256);
    let (keyed, other) = exits_of(&run.stats, "mmio-read");
    assert_eq!(keyed + other, 300);
    assert!(other >= 300 - 256, "{}", run.stats);
}

#[test]
fn console_flood_without_newline_arrives_whole_and_oversized_writes_are_refused() {
    let run = hostile("console-flood", &[]);
    assert_eq!(run.code, Some(0), "{}", run.err);
    let mib = 1 << 20;
    assert!(run.out.len() > mib && run.out.as_bytes()[..mib].iter().all(|&b| b == b'x'), "the MiB is intact");
    assert_eq!(said(&run, "console-flood"), "1048576 bytes written, 1 MiB + 1 answered 0xffffffffffffffff");
    assert_eq!(exits_at(&run.stats, "io-out", 0x500), 18, "16 pieces, the refused one, the summary");
}

#[test]
fn uart_flood_without_newline_is_one_exit_per_byte() {
    let run = hostile("uart-flood", &[]);
    assert_eq!(run.code, Some(0), "{}", run.err);
    assert!(run.out.starts_with(&"u".repeat(4096)), "{}", &run.out[..64.min(run.out.len())]);
    assert!(run.out.contains("\nhostile uart-flood: 4096 bytes without a newline\n"));
    assert_eq!(exits_at(&run.stats, "io-out", 0x3f8), 4096);
}

#[test]
fn console_writes_with_bad_buffers_are_refused() {
    // The unikernel's default memory is 64 MiB; its image ends before 0x10f000 (free_start).
    survives("hypercall-straddle", &[], "buffer 0x3fffff8 length 0x10 answered 0xffffffffffffffff");
    survives("hypercall-wrap", &[], "buffer 0xfffffffffffffffb length 0x10 answered 0xffffffffffffffff");
    let run = hostile("hypercall-huge-len", &[]);
    assert_eq!(run.code, Some(0), "{}", run.err);
    assert!(
        said(&run, "hypercall-huge-len").ends_with("length 0xffffffffffffffff answered 0xffffffffffffffff")
    );
    let run = hostile("hypercall-too-long", &[]);
    assert_eq!(run.code, Some(0), "{}", run.err);
    assert!(said(&run, "hypercall-too-long").ends_with("length 0x100001 answered 0xffffffffffffffff"));
    // The VMM counts the refusal too (the guest's own console writes are not refused).
    assert_eq!(refusals(&run), (0, 1), "{}", run.stats["hypercalls"]);
}

/// `(argument structs outside RAM, console buffers refused)` from `--stats-json`.
fn refusals(run: &Run) -> (u64, u64) {
    let h = &run.stats["hypercalls"];
    (h["argument_outside_ram"].as_u64().unwrap(), h["console_buffer_refused"].as_u64().unwrap())
}

#[test]
fn hypercall_arguments_outside_memory_are_ignored() {
    let run = survives("hypercall-arg-outside", &[], "3 hypercalls with arguments outside memory ignored");
    assert_eq!(refusals(&run), (3, 0), "every one is counted: {}", run.stats["hypercalls"]);
    let run = hostile("hypercall-arg-straddle", &[]);
    assert_eq!(run.code, Some(0), "{}\n{}", run.out, run.err);
    assert_eq!(refusals(&run), (1, 0), "{}", run.stats["hypercalls"]);
    assert!(said(&run, "hypercall-arg-straddle")
        .starts_with("argument at 0x3fffff8 ignored, first field still 0x"));
    assert!(!run.out.contains("must not appear"));
}

#[test]
fn an_exit_code_wider_than_a_byte_is_cut_with_a_message() {
    let run = hostile("exit-code-wide", &[]);
    assert_eq!(run.code, Some(0x45));
    assert!(
        run.err.contains("guest exit code 74565 does not fit in a process exit status; exiting with 69"),
        "{}",
        run.err
    );
}

/// A case that ends in a fault report: exit 125 and "stopped: <reason>".
fn stops(case: &str, ring: &str, reason: &str) -> Run {
    let run = hostile(case, &["--ring", ring]);
    assert_eq!(run.code, Some(125), "{case} at ring {ring}: {}\n{}", run.out, run.err);
    assert!(run.err.contains(&format!("stopped: {reason}")), "{case} at ring {ring}: {}", run.err);
    run
}

const TRIPLE_FAULT: &str = "triple fault (KVM_EXIT_SHUTDOWN)";

#[test]
fn triple_fault_in_long_mode_at_cpl0() {
    let run = stops("ud2", "0", TRIPLE_FAULT);
    assert!(run.err.contains("mode: Long64, CPL 0"), "{}", run.err);
    assert!(run.err.contains("instruction at rip: ud2"), "{}", run.err);
}

#[test]
fn triple_fault_in_long_mode_at_cpl3() {
    let run = stops("ud2", "3", TRIPLE_FAULT);
    assert!(run.err.contains("mode: Long64, CPL 3"), "{}", run.err);
    assert!(run.err.contains("instruction at rip: ud2"), "{}", run.err);
}

#[test]
fn triple_fault_in_compatibility_mode_at_cpl0() {
    let run = stops("compat-ud2", "0", TRIPLE_FAULT);
    assert!(run.err.contains("CPL 0") && run.err.contains("cs=0018"), "{}", run.err);
    assert!(
        run.err.contains("mode: Compatibility32, CPL 0"),
        "the report names the 32-bit mode: {}",
        run.err
    );
    assert!(run.err.contains("instruction at rip: ud2"), "{}", run.err);
}

#[test]
fn triple_fault_in_compatibility_mode_at_cpl3() {
    let run = stops("compat-ud2", "3", TRIPLE_FAULT);
    assert!(run.err.contains("CPL 3") && run.err.contains("cs=000b"), "{}", run.err);
    assert!(run.err.contains("mode: Compatibility32, CPL 3"), "{}", run.err);
}

#[test]
fn triple_fault_in_protected_mode_without_paging() {
    let run = stops("protected-ud2", "0", TRIPLE_FAULT);
    assert!(run.err.contains("mode: Protected32, CPL 0"), "{}", run.err);
    assert!(run.err.contains("efer=100"), "paging off cleared EFER.LMA: {}", run.err);
    assert!(run.err.contains("instruction at rip: ud2"), "{}", run.err);
}

#[test]
fn ud2_in_real_mode_is_reported() {
    let run = hostile("real-ud2", &["--ring", "0"]);
    assert_eq!(run.code, Some(125), "{}\n{}", run.out, run.err);
    assert!(run.err.contains("mode: Real, CPL 0"), "{}", run.err);
    assert!(run.err.contains("cs=ffff"), "{}", run.err);
    assert!(run.err.contains("instruction at rip: ud2"), "{}", run.err);
    if host_is_pvm() {
        // PVM's emulator, which runs real-mode code here, fails on ud2 instead of raising
        // #UD; hardware KVM raises it, and with no interrupt vector table that is a triple
        // fault.
        assert!(run.err.contains("stopped: KVM's instruction emulator could not run"), "{}", run.err);
    } else {
        assert!(run.err.contains(TRIPLE_FAULT), "{}", run.err);
    }
    let run = hostile("real-ud2", &["--ring", "3"]);
    assert_eq!(run.code, Some(3));
    assert_eq!(said(&run, "real-ud2"), "needs --ring 0 (CR0 is privileged)");
}

#[test]
fn int3_without_an_idt_at_cpl0() {
    if host_is_pvm() {
        // PVM's instruction emulator, which runs CPL0 code here, has no int3.
        let run = stops("int3", "0", "KVM's instruction emulator could not run an instruction");
        assert!(run.err.contains("instruction at rip: int3"), "{}", run.err);
        assert!(run.err.contains("Try --ring 3"), "{}", run.err);
    } else {
        stops("int3", "0", TRIPLE_FAULT);
    }
}

#[test]
fn int3_without_an_idt_at_cpl3() {
    stops("int3", "3", TRIPLE_FAULT);
}

#[test]
fn hlt_with_interrupts_off_stops_with_a_named_reason() {
    stops("hlt", "0", "the guest halted with no interrupt to wake it (KVM_EXIT_HLT)");
}

#[test]
fn hlt_in_user_mode_is_a_general_protection_triple_fault() {
    stops("hlt", "3", TRIPLE_FAULT);
}

#[test]
fn wrmsr_to_a_missing_msr_is_a_triple_fault() {
    let run = stops("wrmsr", "0", TRIPLE_FAULT);
    assert!(run.err.contains("instruction at rip: wrmsr"), "{}", run.err);
    assert!(run.err.contains("rcx=00000000deadbeef"), "{}", run.err);
}

#[test]
fn cr3_outside_memory_is_reported() {
    let run = hostile("cr3-outside", &["--ring", "0"]);
    assert_eq!(run.code, Some(125), "{}", run.err);
    assert!(run.err.contains("cr3=0000000040000000"), "{}", run.err);
    if host_is_pvm() {
        assert!(run.err.contains(TRIPLE_FAULT), "{}", run.err);
        assert!(run.err.contains("instruction at rip: (not readable)"), "{}", run.err);
    }
}

#[test]
fn a_page_mapped_outside_memory_is_mmio_that_reads_all_ones() {
    let run = survives("pt-outside-ram", &[], "read 0xffffffff at 0xe0000000");
    assert_eq!(exits_at(&run.stats, "mmio-read", 0xe000_0000), 1, "{}", run.stats);
    assert_eq!(exits_at(&run.stats, "mmio-write", 0xe000_0000), 1, "{}", run.stats);
}

#[test]
fn a_page_directory_outside_memory_is_reported() {
    let run = hostile("pd-outside-ram", &[]);
    assert_eq!(run.code, Some(125), "{}\n{}", run.out, run.err);
    assert!(run.err.contains("stopped: "), "{}", run.err);
    if host_is_pvm() {
        // PVM's shadow MMU cannot read the guest's page directory and injects a page fault
        // (no IDT: a triple fault); hardware KVM may report the walk as an internal error.
        assert!(run.err.contains(TRIPLE_FAULT), "{}", run.err);
        assert!(run.err.contains("cr2=0000000040000000"), "{}", run.err);
    }
}

#[test]
fn a_guest_that_never_stops_is_ended_by_the_timeout() {
    for ring in ["3", "0"] {
        let run = hostile("spin", &["--ring", ring, "--timeout", "1"]);
        assert_eq!(run.code, Some(124), "ring {ring}: {}", run.err);
        assert!(run.err.contains("still running after the --timeout of 1.0 s; stopped it"), "{}", run.err);
        assert!(run.err.contains("where it was: paused"), "{}", run.err);
        assert_eq!(run.stats["outcome"], "timed-out");
    }
}

#[test]
fn a_garbage_shared_ring_is_counted_not_copied() {
    let run = survives("ring-garbage", &[], "the consumer skipped to head twice");
    assert_eq!(run.stats["shared_ring"]["errors"], 2, "{}", run.stats);
    assert_eq!(run.stats["shared_ring"]["bytes"], 0, "{}", run.stats);
}

#[test]
fn an_unknown_case_lists_the_cases() {
    let run = hostile("nope", &[]);
    assert_eq!(run.code, Some(2));
    assert!(run.out.contains("unknown hostile case 'nope'; the cases: port-storm"), "{}", run.out);
    assert!(run.out.contains("and with --disk: mmio-unaligned"), "{}", run.out);
}

/// A virtio case: name, what the guest says afterwards, then the device's refused register
/// accesses, status register, `errors` and `reads` counters (from `--stats-json`).
///
/// The guest's line: `status` is the device status (0xf = ACKNOWLEDGE | DRIVER |
/// FEATURES_OK | DRIVER_OK; 0x40 = DEVICE_NEEDS_RESET), `used` the used ring's index, `len`
/// its first element's length, `blk` the request's status byte (0 OK, 1 IOERR, 2 UNSUPP,
/// 0xff untouched). The disk is 32 sectors of 0xab.
const VIRTIO_CASES: &[(&str, &str, u64, u64, u64, u64)] = &[
    // A 32-bit read at offset 2: refused, reads 0.
    ("mmio-unaligned", "read 0x0", 1, 0x0, 0, 0),
    // An 8-byte read: registers are 32 bits.
    ("mmio-wide", "read 0x0", 1, 0x0, 0, 0),
    // 1- and 2-byte writes to Status: both refused.
    ("mmio-byte", "status 0x0", 2, 0x0, 0, 0),
    // Writes to six read-only registers: all refused, values unchanged.
    ("ro-registers", "magic 0x74726976 version 2 id 2 max 256", 6, 0x0, 0, 0),
    // Reads of four write-only registers.
    ("write-only-read", "sum 0x0", 4, 0x0, 0, 0),
    // The window after the device: no device, all ones (an ordinary MMIO exit).
    ("window-past-device", "read 0xffffffff", 0, 0x0, 0, 0),
    // A write to the read-only capacity is refused (counted); past its end reads 0.
    ("config-write", "capacity 32 then 32 far 0x0", 1, 0x3, 0, 0),
    // Every feature bit accepted (and a bad select): FEATURES_OK does not stick.
    ("features-garbage", "status 0x3", 1, 0x3, 0, 0),
    // No VIRTIO_F_VERSION_1: FEATURES_OK does not stick.
    ("no-version-1", "status 0x3", 0, 0x3, 0, 0),
    // Bad queue sizes are refused (counted); the queue keeps its maximum.
    ("queue-size-not-pow2", "status 0xf used 1 len 513 blk 0x0", 1, 0xf, 0, 1),
    ("queue-size-too-big", "status 0xf used 1 len 513 blk 0x0", 1, 0xf, 0, 1),
    ("queue-size-truncated", "status 0xf used 1 len 513 blk 0x0", 1, 0xf, 0, 1),
    ("queue-size-zero", "status 0xf used 1 len 513 blk 0x0", 1, 0xf, 0, 1),
    // Moving the descriptor table after DRIVER_OK is refused; the old one keeps working.
    ("setup-after-driver-ok", "status 0xf used 1 len 513 blk 0x0", 1, 0xf, 0, 1),
    // A notification before set-up does nothing (refused).
    ("notify-before-setup", "status 0x0 used 0 len 0 blk 0xff", 1, 0x0, 0, 0),
    // Notifications for queues 1, 0xffff, 0xffffffff: refused.
    ("notify-missing-queue", "status 0xf used 0 len 0 blk 0x0", 3, 0xf, 0, 0),
    // A notification for a queue never made ready: refused.
    ("notify-not-ready", "status 0xf used 0 len 0 blk 0xff", 1, 0xf, 0, 0),
    // A descriptor loop: followed at most queue-size times, then answered as one chain
    // whose last writable byte (in the data buffer) gets IOERR.
    ("desc-loop", "status 0xf used 1 len 1 blk 0xff", 0, 0xf, 1, 0),
    // The available index 200 ahead of a queue of 8: DEVICE_NEEDS_RESET, nothing used.
    ("indices-far-ahead", "status 0x4f used 0 len 0 blk 0xff", 0, 0x4f, 0, 0),
    // A `next` past the table: the chain ends there, IOERR into its last writable byte.
    ("next-out-of-range", "status 0xf used 1 len 1 blk 0xff", 0, 0xf, 1, 0),
    // Data buffers outside / across the end of RAM: the chain is given back unused.
    ("buffer-outside-ram", "status 0xf used 1 len 0 blk 0xff", 0, 0xf, 1, 0),
    ("buffer-straddles-ram", "status 0xf used 1 len 0 blk 0xff", 0, 0xf, 1, 0),
    // The status descriptor not writable: the data buffer's last byte takes the IOERR.
    ("status-read-only", "status 0xf used 1 len 1 blk 0xff", 0, 0xf, 1, 0),
    // The header in a device-writable descriptor, or 8 bytes short: given back unused.
    ("header-writable", "status 0xf used 1 len 0 blk 0xff", 0, 0xf, 1, 0),
    ("header-short", "status 0xf used 1 len 0 blk 0xff", 0, 0xf, 1, 0),
    // The used ring outside RAM, the available ring across its end: DEVICE_NEEDS_RESET at
    // DRIVER_OK, the notification refused.
    ("rings-outside-ram", "status 0x4f used 0 len 0 blk 0xff", 1, 0x4f, 0, 0),
    ("ring-straddles-ram", "status 0x4f used 0 len 0 blk 0xff", 1, 0x4f, 0, 0),
    // A reset between posting and notifying: the notification is refused; after a new
    // bring-up the same request works.
    (
        "reset-mid-request",
        "after reset status 0x0 used 0 len 0 blk 0xff; again status 0xf used 1 len 513 blk 0x0",
        1,
        0xf,
        0,
        1,
    ),
    // Sector at the capacity, sector 2^64 - 1: IOERR.
    ("sector-out-of-range", "status 0xf used 1 len 1 blk 0x1", 0, 0xf, 1, 0),
    ("sector-overflow", "status 0xf used 1 len 1 blk 0x1", 0, 0xf, 1, 0),
    // A write to a read-only disk (attached `,ro`): IOERR.
    ("write-read-only", "status 0xf used 1 len 1 blk 0x1", 0, 0xf, 1, 0),
    // Request type 0xdead: UNSUPP.
    ("unsupported-type", "status 0xf used 1 len 1 blk 0x2", 0, 0xf, 0, 0),
    // A read into the queue's own descriptor table and available ring: the device finishes
    // the request it had read, then sees the available index 0xabab and needs a reset.
    ("chain-overwrites-itself", "status 0x4f used 1 len 8193 blk 0x0", 0, 0x4f, 0, 1),
    // The available index moved backwards after a request: DEVICE_NEEDS_RESET.
    ("avail-idx-backwards", "status 0x4f used 1 len 513 blk 0x0", 0, 0x4f, 0, 1),
];

/// Runs the virtio cases whose index is `i % parts == part` (the cases are spread over a
/// few tests so that the harness runs them side by side).
fn virtio_cases(part: usize, parts: usize) {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    std::fs::write(&disk, vec![0xabu8; 32 * 512]).unwrap();
    let rw = disk.to_str().unwrap().to_string();
    let ro = format!("{rw},ro");
    for (i, &(case, line, refused, status, errors, reads)) in VIRTIO_CASES.iter().enumerate() {
        if i % parts != part {
            continue;
        }
        let d = if case == "write-read-only" { &ro } else { &rw };
        let run = survives(case, &["--disk", d], line);
        let dev = &run.stats["virtio"][0];
        let counter = |name: &str| {
            dev["counters"].as_array().unwrap().iter().find(|c| c[0] == name).unwrap()[1].as_u64().unwrap()
        };
        assert_eq!(dev["bad_accesses"].as_u64(), Some(refused), "{case}: refused accesses: {dev}");
        assert_eq!(dev["status"].as_u64(), Some(status), "{case}: status: {dev}");
        assert_eq!(counter("errors"), errors, "{case}: errors: {dev}");
        assert_eq!(counter("reads"), reads, "{case}: reads: {dev}");
        assert_eq!(counter("unsupported"), u64::from(case == "unsupported-type"), "{case}: {dev}");
        if case == "window-past-device" {
            assert_eq!(exits_at(&run.stats, "mmio-read", 0xd000_1000), 1, "{}", run.stats);
            assert_eq!(exits_at(&run.stats, "mmio-write", 0xd000_1000), 1, "{}", run.stats);
        }
    }
}

#[test]
fn virtio_cases_part_1() {
    virtio_cases(0, 3);
}

#[test]
fn virtio_cases_part_2() {
    virtio_cases(1, 3);
}

#[test]
fn virtio_cases_part_3() {
    virtio_cases(2, 3);
}

#[test]
fn virtio_cases_without_a_disk_say_so() {
    let run = hostile("desc-loop", &[]);
    assert_eq!(run.code, Some(3));
    assert_eq!(said(&run, "desc-loop"), "no virtio-mmio device at 0xd0000000 (run with --disk IMAGE)");
}

/// A full queue of chains that all run round one loop through the descriptor table (every
/// descriptor says NEXT), all in flight: the session's `vq` decodes and prints a bounded
/// amount (inspect::virtqueue's MAX_CHAIN_DESCRIPTORS, MAX_DECODED_DESCRIPTORS), names the
/// loop at the descriptor it comes back to, and says where it cut.
#[test]
fn a_queue_of_looping_chains_prints_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    std::fs::write(&disk, vec![0xabu8; 32 * 512]).unwrap();
    let script = dir.path().join("s");
    std::fs::write(&script, "vq 0 0\ncont\n").unwrap();
    let o = vmscope(&[
        "run",
        "unikernel",
        "--ring",
        "0",
        "--disk",
        disk.to_str().unwrap(),
        "--workload",
        "hostile queue-of-loops",
        "--break",
        "hostile_queue_posted",
        "--script",
        script.to_str().unwrap(),
        "--timeout",
        "120",
    ]);
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    assert!(out.contains("virtio-blk queue 0: size 256  avail.idx 256  used.idx 0  in flight 256"), "{out}");
    let chains: Vec<&str> = out.lines().filter(|l| l.starts_with("chain ")).collect();
    assert_eq!(chains.len(), 256, "{out}");
    // Chain k runs k, k+1, …, 255, 0, …, k-1 and meets k again: 256 descriptors, the most
    // one chain is followed for, and then the loop. Four such chains spend the queue's 1024.
    for (k, chain) in chains.iter().enumerate().take(4) {
        assert_eq!(chain.matches(" [").count(), 256, "{chain}");
        assert!(
            chain
                .ends_with(&format!("ERROR: the chain loops at descriptor {k}: it was already in the chain")),
            "{chain}"
        );
    }
    for chain in &chains[4..] {
        assert!(
            chain.ends_with("ERROR: truncated: the chains in flight hold more than 1024 descriptors in all, the most decoded"),
            "{chain}"
        );
    }
    assert!(out.contains("hostile queue-of-loops: 256 chains posted, status 0xf used 0"), "{out}");
}
