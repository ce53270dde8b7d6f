//! `vmscope lab list | show | check` for every lab, against prepared learner directories
//! that pass and that fail. Nothing here boots a guest: the learner's reports are made with
//! the `labs::measure` types, so they have exactly the shape `vmscope measure` writes.

mod common;
use common::{stdout, vmscope_offline};
use labs::measure::{Environment, Report, Summary};
use std::path::Path;

const LABS: [&str; 10] = [
    "boot-memory",
    "exits",
    "io-batching",
    "rings",
    "surface",
    "page-tables",
    "request-in-flight",
    "throwaway",
    "migration",
    "looking-inside",
];

/// What `vmscope run unikernel --ring 0 --break workload_hello --script walk.script`
/// printed (lab 6), as saved by `tee walk.log`.
const WALK_LOG: &str = "breakpoint at 0x108f00 <workload_hello>
(vmscope) sregs
cr0 0x80010033 cr2 0x0 cr3 0x9000 cr4 0x620 cr8 0x0 efer 0x500
(vmscope) regs
rip 0x0000000000108f00 <workload_hello>
rsp 0x0000000003fffea8 rbp 0x0000000000000000 rflags 0x46
(vmscope) pt $rsp
PML4E  table gpa:0x9000         index   0  entry 0x000000000000a023  P RW A
PDPTE  table gpa:0xa000         index   0  entry 0x000000000000b023  P RW A
PDE    table gpa:0xb000         index  31  entry 0x0000000003e000e3  P RW A D PS
gva:0x3fffea8 -> gpa:0x3fffea8 (2048 KiB page, rwx supervisor) -> host:0x7fcc82bffea8
";

/// What lab 7's session printed (a real run on PVM, shortened).
const FLIGHT_LOG: &str = "(vmscope) vq 0 0
virtio-blk queue 0: size 256  avail.idx 1  used.idx 0  in flight 1  avail.flags 0x0  used.flags 0x0
chain 0: [0 gpa:0x2b0100+16] [1 gpa:0x2ad000+4096 W] [2 gpa:0x2b0110+1 W]
(vmscope) cont
(vmscope) vq 0 0
virtio-blk queue 0: size 256  avail.idx 2  used.idx 1  in flight 1  avail.flags 0x0  used.flags 0x0
chain 0: [0 gpa:0x2b0280+16] [1 gpa:0x1938400+1024 W] [2 gpa:0x2b0290+1 W]
(vmscope) cont
a request in flight
vmscope: workload 'cat /mnt/hello.txt' exited with status 0
";

/// What lab 9's move.sh printed (the QMP client's lines around a completed migration).
const MIGRATE_LOG: &str = "{'return': {}}
event MIGRATION {\"status\": \"setup\"}
event MIGRATION {\"status\": \"active\"}
status: completed
downtime: 41
total-time: 1730
rounds: 4
query-status: postmigrate
target ended with status 0
";

/// What lab 10's steps saved on a PVM host (a real run, kernel threads cut): the guest's own
/// `ps` with miner hidden from its /proc, vmscope's `ps` over QMP, drgn's table and stack,
/// and the container step.
const GUEST_PS_LOG: &str = "/ # ps -o pid,ppid,comm
PID   PPID  COMMAND
    1     0 init
    2     0 kthreadd
    3     2 rcu_gp
   30     1 sh
   33    30 sleep
   36    30 ps
";

const OUTSIDE_PS_LOG: &str = "   PID   TGID S COMM             TASK               PGD
     0      0 R swapper/0        0xffffffff81813600 -
     1      1 S init             0xffff88800015b000 0x29c000
     2      2 S kthreadd         0xffff888000162000 -
     3      3 I rcu_gp           0xffff888000168000 -
    30     30 S sh               0xffff8880002b0000 0x2a6000
    33     33 S sleep            0xffff8880002ae000 0x2d9000
    34     34 S miner            0xffff8880002d6000 0x2c0000
";

const DRGN_LOG: &str = "   PID   PPID S COMM
     1      0 S init
     2      0 S kthreadd
     3      2 I rcu_gp
    30      1 S sh
    33     30 S sleep
    34     30 S miner

the kernel stack of miner:
#0  context_switch (kernel/sched/core.c:5257:2)
#1  __schedule (kernel/sched/core.c:6584:8)
#2  schedule (kernel/sched/core.c:6660:3)
#3  do_nanosleep (kernel/time/hrtimer.c:2092:4)
#4  hrtimer_nanosleep (kernel/time/hrtimer.c:2140:8)
#5  common_nsleep_timens (kernel/time/posix-timers.c:1286:9)
#6  __do_sys_clock_nanosleep (kernel/time/posix-timers.c:1314:9)
";

const CONTAINER_LOG: &str = "  PID  PPID      PIDNS COMMAND         COMMAND
27121 27119 4026531836 vmscope         vmscope run container --workload ticks 30 0 --every 1000
27125 27121 4026531836 vmscope         /work/main/target/release/vmscope oci-runtime run --bundle /tmp/vmscope-bundles-0/bundle-27121-0-6eafebb2eef6f8fe bundle-27121-0-6eafebb2eef6f8fe
27129 27125 4026532179 workload        /bin/workload ticks 30 0 --every 1000
inside its PID namespace the workload is pid 1
its root file system, from the host: bin dev etc proc sys tmp 
";

fn report(suite: &str, quick: bool, metrics: &[(&str, &str, f64)]) -> Report {
    Report {
        suite: suite.into(),
        environment: Environment {
            host_kind: inspect::HostKind::Pvm,
            cpu_model: "AMD EPYC".into(),
            vmscope_version: "0.1.0".into(),
            cpus: 2,
        },
        quick,
        metrics: metrics
            .iter()
            .map(|(m, u, v)| Summary::of(m, u, &[v * 0.9, *v, v * 1.2]).unwrap())
            .collect(),
        notes: vec![],
    }
}

fn put_report(dir: &Path, file: &str, r: &Report) {
    std::fs::write(dir.join(file), serde_json::to_vec_pretty(r).unwrap()).unwrap();
}

fn put(dir: &Path, file: &str, text: &str) {
    std::fs::write(dir.join(file), text).unwrap();
}

fn exits_report(with_in_kernel_kinds: bool) -> Report {
    let mut m = vec![
        ("console hypercall exit, CPL3 (round trip)", "us", 45.0),
        ("console hypercall exit, CPL3 (in the VMM)", "ns", 5000.0),
        ("UART byte exit, CPL3 (round trip)", "us", 35.8),
        ("UART byte exit, CPL3 (in the VMM)", "ns", 3000.0),
        ("console hypercall exit, CPL0 (round trip)", "us", 27.6),
        ("UART byte exit, CPL0 (round trip)", "us", 19.1),
        ("UART byte exit, CPL0 (in the VMM)", "ns", 2500.0),
    ];
    if with_in_kernel_kinds {
        // As `vmscope measure exits` names them.
        m.push(("cpuid, CPL3 (timed in the guest)", "us", 2.0));
        m.push(("ioeventfd doorbell, CPL3 (timed in the guest)", "us", 5.0));
        m.push(("ioeventfd doorbell, CPL3: KVM exits per op", "per op", 1.0));
    }
    report("exits", false, &m)
}

fn compute_report(quick: bool) -> Report {
    report(
        "compute",
        quick,
        &[
            ("native process, compute 20000000", "ms", 50.0),
            ("container (embedded runtime), compute 20000000", "ms", 103.0),
            ("container (runc), compute 20000000", "ms", 110.0),
            ("unikernel CPL3, compute 20000000", "ms", 65.0),
            ("unikernel CPL0, compute 200000", "ms", 6000.0),
        ],
    )
}

/// A learner who did everything the lab asked, with answers their data agrees with.
fn passing_state(lab: &str, dir: &Path) {
    match lab {
        "boot-memory" => {
            put_report(
                dir,
                "boot.json",
                &report(
                    "boot",
                    false,
                    &[
                        ("start -> first output, unikernel CPL3 (native here)", "ms", 3.9),
                        ("start -> guest exit, unikernel CPL3 (native here)", "ms", 5.6),
                        ("start -> first output, unikernel CPL0", "ms", 6.1),
                    ],
                ),
            );
            put_report(
                dir,
                "compute.json",
                &report(
                    "compute",
                    true,
                    &[
                        ("native process, compute 1000000", "ms", 4.0),
                        ("container (embedded runtime), compute 1000000", "ms", 45.0),
                        ("unikernel CPL3, compute 1000000", "ms", 8.0),
                        ("unikernel CPL0, compute 10000", "ms", 300.0),
                    ],
                ),
            );
            put_report(
                dir,
                "memory.json",
                &report(
                    "memory",
                    false,
                    &[
                        ("VMM peak RSS - guest touched, unikernel hello, --mem 64", "MiB", 8.8),
                        ("VMM private memory - guest touched, unikernel hello, --mem 64", "MiB", 2.4),
                        ("guest memory touched, unikernel hello, --mem 64", "MiB", 0.06),
                        ("container memory-cgroup peak, hello", "KiB", 6144.0),
                    ],
                ),
            );
            put(dir, "linux-boot.log", "...\nvmscope: ready (uptime 52 s)\n");
            put(
                dir,
                "answers.toml",
                "unikernel_first_output_ms = 4\ndone_sooner = \"unikernel\"\nlighter = \"Unikernel\"\n\
                 verdict = \"\"\"Lighter to start (4 ms against 45 ms) and in memory (2.4 MiB against 6); Linux takes a minute here.\"\"\"\n",
            );
        }
        "exits" => {
            put_report(dir, "exits.json", &exits_report(true));
            put(
                dir,
                "answers.toml",
                "port_io_exit_us = 35\nvmm_share = 0.08\ncheapest_exit = \"cpuid\"\n\
                 where_time_goes = \"leaving the guest, KVM, and the return to user space from KVM_RUN\"\n",
            );
        }
        "io-batching" => {
            let mut m = vec![("unikernel UART, 1 byte per exit (65536 B), per exit".to_string(), "us", 35.0)];
            for (batch, uk, ct) in
                [(1, 2300.0, 48.0), (4, 580.0, 40.0), (16, 150.0, 37.0), (64, 40.0, 36.0), (256, 16.0, 35.0)]
            {
                let exits = 65536 / batch + 1;
                m.push((format!("unikernel, batch {batch} ({exits} exits), whole run"), "ms", uk));
                m.push((
                    format!("container, batch {batch} ({} write syscalls), whole run", 65536 / batch),
                    "ms",
                    ct,
                ));
                m.push((format!("unikernel shared ring, batch {batch}, whole run"), "ms", 20.0));
            }
            let m: Vec<(&str, &str, f64)> = m.iter().map(|(a, b, c)| (a.as_str(), *b, *c)).collect();
            put_report(dir, "io-batching.json", &report("io-batching", false, &m));
            put(
                dir,
                "answers.toml",
                "faster_unikernel = \"batch-256\"\nunikernel_speedup = 140\ncontainer_speedup = 1.4\n\
                 cheaper_per_packet = \"container\"\nring_or_exits = \"ring\"\nclaim = \"No: it makes one hypercall, one exit, per batch.\"\n",
            );
        }
        "rings" => {
            put(dir, "ring3.json", "{\"ring\": 3, \"outcome\": {\"exited\": 0}}");
            put(dir, "ring0.json", "{\"ring\": 0, \"outcome\": {\"exited\": 0}}");
            put_report(dir, "compute.json", &compute_report(false));
            put(
                dir,
                "answers.toml",
                "cpl0_slowdown = 9000\nclosest_to_native = \"unikernel\"\n\
                 why_cpl0_is_slow = \"KVM's instruction emulator runs every CPL0 instruction\"\n\
                 on_hardware = \"With VT-x both levels run natively; the CPL0 figure drops most.\"\n",
            );
        }
        "surface" => {
            put_report(
                dir,
                "surface.json",
                &report(
                    "surface",
                    false,
                    &[
                        ("distinct host syscalls, container (runc)", "syscalls", 93.0),
                        ("host syscalls made, container (runc)", "calls", 2824.0),
                        ("distinct host syscalls, VMM + unikernel", "syscalls", 38.0),
                        ("system calls offered, host kernel (container)", "syscalls", 445.0),
                        ("system calls offered, Linux guest kernel", "syscalls", 277.0),
                        ("hypercall ports + UART registers offered, unikernel", "ports", 12.0),
                    ],
                ),
            );
            put(
                dir,
                "answers.toml",
                "most_exposed = \"container\"\nlinux_guest_syscalls = 280\n\
                 what_it_means = \"The container shares the host kernel; the VM adds a wall of a few exits.\"\n",
            );
        }
        "page-tables" => {
            put(dir, "walk.log", WALK_LOG);
            put(
                dir,
                "answers.toml",
                "cr3 = \"0x9000\"\npd_index = 31\npde = \"0x3e000e3\"\nstack_gpa = \"0x3fffea8\"\n\
                 why_identity = \"An identity map is the simplest; Linux maps its kernel in the higher half.\"\n",
            );
        }
        "request-in-flight" => {
            put(dir, "flight.log", FLIGHT_LOG);
            put(
                dir,
                "answers.toml",
                "queue_size = 256\nheader_bytes = 16\nused_idx_after = 1\n\
                 device_writes = \"The sector data into the buffer and the status byte; used.idx says it is done.\"\n",
            );
        }
        "throwaway" => {
            put(dir, "images.log", "7e66…  a.elf\n7e66…  b.elf\nimages are identical\n");
            put(dir, "throwaway.log", "100 machines in 812 ms, per machine: 8.12 ms\n");
            put_report(
                dir,
                "boot.json",
                &report(
                    "boot",
                    true,
                    &[
                        ("start -> guest exit, unikernel CPL3 (native here)", "ms", 7.0),
                        ("boot -> exit inside VMM, unikernel CPL3 (native here)", "ms", 2.0),
                        ("start -> guest exit, unikernel CPL0", "ms", 9.5),
                        ("boot -> exit inside VMM, unikernel CPL0", "ms", 4.4),
                    ],
                ),
            );
            put(
                dir,
                "answers.toml",
                "ms_per_machine = 8.1\nguest_share = 0.3\n\
                 what_makes_it_disposable = \"A process: exec, open /dev/kvm, mmap memory; the guest runs a third.\"\n",
            );
        }
        "migration" => {
            put(dir, "migrate.log", MIGRATE_LOG);
            put(
                dir,
                "target.log",
                "vmscope: received /root/.cache/vmscope/linux/x/vmlinux.stripped (256 MiB from a pvm host: 4 rounds)\n\
                 dirty: second 4\ndirty: verified 2048 pages, 245760 writes\n",
            );
            put_report(
                dir,
                "migration.json",
                &report(
                    "migration",
                    true,
                    &[
                        ("downtime, 64 MiB idle", "ms", 8.7),
                        ("total time, 64 MiB idle", "ms", 124.0),
                        ("rounds, 64 MiB idle", "rounds", 2.0),
                        ("sent, 64 MiB idle", "MiB", 3.1),
                        ("downtime, 64 MiB dirty 64 MiB/s", "ms", 17.0),
                        ("total time, 64 MiB dirty 64 MiB/s", "ms", 190.0),
                        ("rounds, 64 MiB dirty 64 MiB/s", "rounds", 4.0),
                        ("downtime, 512 MiB idle", "ms", 19.5),
                        ("rounds, 512 MiB idle", "rounds", 2.0),
                    ],
                ),
            );
            put(
                dir,
                "answers.toml",
                "linux_downtime_ms = 41\nlinux_rounds = 4\nidle_downtime_ms = 8.5\ndirty_rounds = 4\n\
                 why_precopy_converges = \"Each round sends what was dirtied during the last; it converges when the \
                 dirty rate is below the bandwidth or the working set is small.\"\n",
            );
        }
        "looking-inside" => {
            put(dir, "intrude.log", "a miner and an empty directory: done\nan ordinary process: running\nthe miner, ticking once a second: running\nhide it: an empty directory over /proc/PID: done\nminer is hidden from the guest's /proc\n");
            put(dir, "guest-ps.log", GUEST_PS_LOG);
            put(dir, "outside-ps.log", OUTSIDE_PS_LOG);
            put(dir, "drgn.log", DRGN_LOG);
            put(dir, "container.log", CONTAINER_LOG);
            put(
                dir,
                "answers.toml",
                "sleep_pid = 33\nminer_pid = 34\nminer_pgd = \"0x2c0000\"\nminer_ppid = 30\ncontainer_host_pid = 27129\n\
                 container_inner_pid = 1\nminer_waits_in = \"clock_nanosleep\"\n\
                 why_ps_misses_it = \"ps lists /proc; an empty directory was mounted over /proc/34.\"\n\
                 what_each_needs = \"A console in the guest; the vmlinux's DWARF; DWARF and QMP.\"\n\
                 what_the_host_sees = \"Its task list in memory, unless a kernel rootkit edits it; a container's host reads /proc.\"\n",
            );
        }
        other => panic!("no fixture for lab {other}"),
    }
}

fn check(lab: &str, dir: &Path) -> (Option<i32>, String) {
    let o = vmscope_offline(&["lab", "check", lab, "--dir", dir.to_str().unwrap()]);
    (o.status.code(), stdout(&o))
}

#[test]
fn list_names_every_lab_with_its_seed_question() {
    let o = vmscope_offline(&["lab", "list"]);
    assert_eq!(o.status.code(), Some(0), "{}", common::stderr(&o));
    let text = stdout(&o);
    for lab in LABS {
        assert!(text.contains(lab), "{lab} missing from:\n{text}");
    }
    assert!(text.contains("Are unikernels lighter than containers?"), "{text}");
    assert!(text.contains("needs: container, linux"), "{text}");
}

#[test]
fn show_prints_steps_and_what_the_check_wants() {
    for (i, lab) in LABS.iter().enumerate() {
        let o = vmscope_offline(&["lab", "show", lab]);
        assert_eq!(o.status.code(), Some(0), "{}", common::stderr(&o));
        let text = stdout(&o);
        assert!(text.starts_with(&format!("Lab {}: ", i + 1)), "{text}");
        assert!(text.contains("Seed question: ") && text.contains("$ vmscope "), "{text}");
        assert!(text.contains(&format!("What `vmscope lab check {lab}` looks for:")), "{text}");
        assert!(text.contains("answers.toml `"), "{text}");
        let raw = stdout(&vmscope_offline(&["lab", "show", lab, "--raw"]));
        assert!(raw.starts_with("+++\n") && raw.contains("[[checks]]"), "{raw}");
    }
    let by_number = stdout(&vmscope_offline(&["lab", "show", "4"]));
    assert!(by_number.contains("Ring 0 vs ring 3"), "{by_number}");
    let o = vmscope_offline(&["lab", "show", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(common::stderr(&o).contains("no lab named \"nope\""), "{}", common::stderr(&o));
}

#[test]
fn every_lab_passes_for_a_learner_who_did_it() {
    for lab in LABS {
        let dir = tempfile::tempdir().unwrap();
        passing_state(lab, dir.path());
        let (code, out) = check(lab, dir.path());
        assert_eq!(code, Some(0), "{lab}:\n{out}");
        assert!(!out.contains('✘') && out.contains('✔'), "{lab}:\n{out}");
    }
}

#[test]
fn an_empty_lab_directory_fails_every_check_with_hints() {
    for lab in LABS {
        let dir = tempfile::tempdir().unwrap();
        let (code, out) = check(lab, dir.path());
        assert_eq!(code, Some(1), "{lab}:\n{out}");
        assert!(!out.contains('✔') && out.contains("hint: ") && out.contains("\n0 of "), "{lab}:\n{out}");
    }
    let o = vmscope_offline(&["lab", "check", "exits", "--dir", "/nonexistent/vmscope-lab"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(common::stderr(&o).contains("does not exist"), "{}", common::stderr(&o));
}

/// Prepares the passing state, spoils it with `spoil`, and expects exactly the failures
/// whose lines contain each of `expect`.
fn fails_with(lab: &str, spoil: impl FnOnce(&Path), expect: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    passing_state(lab, dir.path());
    spoil(dir.path());
    let (code, out) = check(lab, dir.path());
    assert_eq!(code, Some(1), "{lab}:\n{out}");
    let failed: Vec<&str> = out.lines().filter(|l| l.contains('✘')).collect();
    assert_eq!(failed.len(), expect.len(), "{lab}: expected {expect:?}, got:\n{out}");
    for e in expect {
        assert!(failed.iter().any(|l| l.contains(e)), "{lab}: no failure mentions {e:?}:\n{out}");
    }
}

#[test]
fn boot_memory_failures() {
    fails_with(
        "boot-memory",
        |d| {
            put(
                d,
                "answers.toml",
                &std::fs::read_to_string(d.join("answers.toml"))
                    .unwrap()
                    .replace("done_sooner = \"unikernel\"", "done_sooner = \"container\""),
            )
        },
        &["does not agree"],
    );
    fails_with(
        "boot-memory",
        |d| {
            let mut r: Report = serde_json::from_slice(&std::fs::read(d.join("boot.json")).unwrap()).unwrap();
            r.quick = true;
            put_report(d, "boot.json", &r);
        },
        &["--quick"],
    );
    // Before `measure memory` exists: the report and the answer that needs it fail.
    fails_with(
        "boot-memory",
        |d| std::fs::remove_file(d.join("memory.json")).unwrap(),
        &["memory.json is missing", "memory.json is missing"],
    );
    fails_with("boot-memory", |d| put(d, "linux-boot.log", "Kernel panic\n"), &["does not contain"]);
}

#[test]
fn exits_failures() {
    // A report from a vmscope without the cpuid and ioeventfd kinds cannot answer the lab's
    // question.
    fails_with(
        "exits",
        |d| put_report(d, "exits.json", &exits_report(false)),
        &["\"cpuid\", \"ioeventfd\"", "no figure for cpuid"],
    );
    fails_with(
        "exits",
        |d| {
            put(d, "answers.toml", "port_io_exit_us = 350\nvmm_share = 0.08\ncheapest_exit = \"port-io\"\nwhere_time_goes = \"somewhere\"\n")
        },
        &["outside", "does not agree", "misses the key idea"],
    );
}

/// Replaces `key = …` in the passing answers with `key = value`.
fn answer(key: &str, value: &str) -> impl FnOnce(&Path) {
    let (key, value) = (key.to_string(), value.to_string());
    move |d: &Path| {
        let text = std::fs::read_to_string(d.join("answers.toml")).unwrap();
        let line = text.lines().find(|l| l.starts_with(&format!("{key} ="))).expect("a key of the fixture");
        put(d, "answers.toml", &text.replace(line, &format!("{key} = {value}")));
    }
}

/// The plausible wrong answers a learner gives — the other CPL's row, the neighbouring
/// layer's figure, the right number in the wrong unit — each fail, naming the mistake
/// where it is one the check knows.
#[test]
fn plausible_wrong_numbers_fail() {
    let cases: &[(&str, &str, &str, &str)] = &[
        // CPL0's first output (6.1 ms) for the native CPL3 one (3.9 ms).
        ("boot-memory", "unikernel_first_output_ms", "6.1", "the first output at the other CPL"),
        ("boot-memory", "unikernel_first_output_ms", "5.6", "the time to the guest's exit"),
        ("boot-memory", "unikernel_first_output_ms", "3900", "check the unit"),
        // CPL0's UART round trip (19.1 us) for the CPL3 one (35.8 us).
        ("exits", "port_io_exit_us", "19.1", "the UART round trip at the other CPL"),
        ("exits", "port_io_exit_us", "17.2", "the UART round trip at the other CPL"),
        ("exits", "port_io_exit_us", "3", "vmscope's own share of it"),
        ("exits", "port_io_exit_us", "35800", "check the unit"),
        ("exits", "vmm_share", "0.13", "the share at the other CPL"),
        ("exits", "vmm_share", "84", "check the unit"),
        // A speedup of 90 where the data says 144.
        ("io-batching", "unikernel_speedup", "90", "outside"),
        ("io-batching", "unikernel_speedup", "1.37", "the container's speedup"),
        ("io-batching", "unikernel_speedup", "57", "the speedup from batch 1 to batch 64"),
        ("io-batching", "container_speedup", "144", "the unikernel's speedup"),
        ("io-batching", "container_speedup", "2", "outside"),
        ("rings", "cpl0_slowdown", "92", "the ratio of the two whole runs"),
        ("rings", "cpl0_slowdown", "5000", "outside"),
        ("surface", "linux_guest_syscalls", "445", "the host kernel's count"),
        ("surface", "linux_guest_syscalls", "400", "outside"),
    ];
    for (lab, key, wrong, why) in cases {
        let dir = tempfile::tempdir().unwrap();
        passing_state(lab, dir.path());
        answer(key, wrong)(dir.path());
        let (code, out) = check(lab, dir.path());
        assert_eq!(code, Some(1), "{lab}: {key} = {wrong} passed:\n{out}");
        let failed: Vec<&str> = out.lines().filter(|l| l.contains('✘')).collect();
        assert_eq!(failed.len(), 1, "{lab}: {key} = {wrong}:\n{out}");
        assert!(failed[0].contains(key), "{lab}: {key} = {wrong}:\n{out}");
        assert!(out.contains(why), "{lab}: {key} = {wrong} should say {why:?}:\n{out}");
    }
}

/// The cheapest exit is decided at the native CPL only: a CPL0 row cheaper than every
/// CPL3 one does not make its kind the answer on PVM.
#[test]
fn cheapest_exit_does_not_mix_cpls() {
    let dir = tempfile::tempdir().unwrap();
    passing_state("exits", dir.path());
    let mut r = exits_report(true);
    // At CPL0 the ioeventfd doorbell is the cheapest of all rows; at CPL3 cpuid is.
    r.metrics.push(Summary::of("ioeventfd doorbell, CPL0 (timed in the guest)", "us", &[1.0]).unwrap());
    r.metrics.push(Summary::of("cpuid, CPL0 (timed in the guest)", "us", &[1.5]).unwrap());
    put_report(dir.path(), "exits.json", &r);
    let (code, out) = check("exits", dir.path());
    assert_eq!(code, Some(0), "{out}");
    answer("cheapest_exit", "\"ioeventfd\"")(dir.path());
    let (code, out) = check("exits", dir.path());
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("does not agree"), "{out}");
}

#[test]
fn io_batching_failures() {
    fails_with(
        "io-batching",
        |d| {
            let text = std::fs::read_to_string(d.join("answers.toml")).unwrap();
            put(d, "answers.toml", &text.replace("unikernel_speedup = 140", "unikernel_speedup = 10"));
        },
        &["unikernel_speedup"],
    );
    fails_with("io-batching", |d| put(d, "io-batching.json", "{}"), &["not a vmscope measure report"; 6]);
}

#[test]
fn rings_failures() {
    fails_with(
        "rings",
        |d| put(d, "ring0.json", "{\"ring\": 0, \"outcome\": \"timed-out\"}"),
        &["has no /outcome/exited"],
    );
    fails_with(
        "rings",
        |d| {
            let text = std::fs::read_to_string(d.join("answers.toml")).unwrap();
            put(
                d,
                "answers.toml",
                &text.replace("closest_to_native = \"unikernel\"", "closest_to_native = \"container\""),
            );
        },
        &["closest_to_native"],
    );
    fails_with("rings", |d| put_report(d, "compute.json", &compute_report(true)), &["--quick"]);
}

#[test]
fn surface_failures() {
    fails_with(
        "surface",
        |d| std::fs::remove_file(d.join("surface.json")).unwrap(),
        &["surface.json is missing"; 3],
    );
    fails_with(
        "surface",
        |d| {
            put(
                d,
                "answers.toml",
                "most_exposed = \"linux\"\nlinux_guest_syscalls = 400\nwhat_it_means = \"\"\n",
            )
        },
        &["does not agree", "close to the host kernel's count", "no answer yet"],
    );
}

#[test]
fn page_tables_failures() {
    // The plausible wrong readings: the PML4's index for the PD's, the entry's bytes in
    // the order `xp` prints them, the page's base without the offset.
    fails_with("page-tables", answer("pd_index", "0"), &["pd_index"]);
    fails_with("page-tables", answer("pde", "\"0xe300e003\""), &["not what vmscope printed"]);
    fails_with("page-tables", answer("stack_gpa", "\"0x3e00000\""), &["stack_gpa"]);
    fails_with("page-tables", answer("cr3", "\"0xa000\""), &["cr3"]);
    fails_with(
        "page-tables",
        |d| std::fs::remove_file(d.join("walk.log")).unwrap(),
        &["walk.log is missing"; 5],
    );
}

#[test]
fn request_in_flight_failures() {
    let dir = tempfile::tempdir().unwrap();
    passing_state("request-in-flight", dir.path());
    let (_, out) = check("request-in-flight", dir.path());
    assert!(out.contains("— 16, as flight.log says"), "the value without the `]` after it:\n{out}");
    // used.idx before `cont`, the data buffer's length for the header's.
    fails_with("request-in-flight", answer("used_idx_after", "0"), &["used_idx_after"]);
    fails_with("request-in-flight", answer("header_bytes", "4096"), &["header_bytes"]);
    fails_with(
        "request-in-flight",
        |d| put(d, "flight.log", &FLIGHT_LOG.replace("a request in flight\n", "Kernel panic\n")),
        &["does not contain"],
    );
}

#[test]
fn throwaway_failures() {
    // The whole loop's time for one machine's; CPL0's share for the native CPL3 one.
    fails_with("throwaway", answer("ms_per_machine", "812"), &["ms_per_machine"]);
    fails_with("throwaway", answer("guest_share", "0.46"), &["the share at the other CPL"]);
    fails_with("throwaway", |d| put(d, "images.log", "a.elf: differ\n"), &["does not contain"]);
}

#[test]
fn migration_failures() {
    // The total time for the downtime; the idle guest's rounds for the dirtying one's; a
    // migration that failed; a page lost.
    fails_with("migration", answer("idle_downtime_ms", "124"), &["the total time of the same migration"]);
    fails_with("migration", answer("idle_downtime_ms", "19.5"), &["the downtime of the 512 MiB guest"]);
    fails_with("migration", answer("dirty_rounds", "2"), &["the rounds of the idle guest"]);
    fails_with("migration", answer("linux_downtime_ms", "1730"), &["linux_downtime_ms"]);
    fails_with(
        "migration",
        |d| put(d, "migrate.log", &MIGRATE_LOG.replace("status: completed", "status: failed")),
        &["does not contain"],
    );
    fails_with(
        "migration",
        |d| put(d, "target.log", "dirty: MISMATCH at page 3: found 1, wrote 2049\n"),
        &["does not contain"],
    );
}

#[test]
fn looking_inside_failures() {
    // The guest's ps: the PPID (the shell) for sleep's PID, a kernel thread's PID.
    fails_with(
        "looking-inside",
        answer("sleep_pid", "30"),
        &["30 is the PPID on the row whose COMMAND is \"sleep\""],
    );
    fails_with(
        "looking-inside",
        answer("sleep_pid", "2"),
        &["2 is the PID of the row whose COMMAND is \"kthreadd\""],
    );
    // vmscope's ps: another process's PID (sleep's, the shell's), the kernel thread's, a
    // number nobody has; another process's page-table root, the PID for the PGD.
    fails_with(
        "looking-inside",
        answer("miner_pid", "33"),
        &["33 is the PID of the row whose COMM is \"sleep\", not of \"miner\""],
    );
    fails_with(
        "looking-inside",
        answer("miner_pid", "30"),
        &["30 is the PID of the row whose COMM is \"sh\""],
    );
    fails_with(
        "looking-inside",
        answer("miner_pid", "2"),
        &["2 is the PID of the row whose COMM is \"kthreadd\""],
    );
    fails_with("looking-inside", answer("miner_pid", "35"), &["35 is not what outside-ps.log says"]);
    fails_with(
        "looking-inside",
        answer("miner_pgd", "\"0x2d9000\""),
        &["0x2d9000 is the PGD of the row whose COMM is \"sleep\""],
    );
    fails_with(
        "looking-inside",
        answer("miner_pgd", "34"),
        &["34 is the PID on the row whose COMM is \"miner\", not its PGD"],
    );
    fails_with("looking-inside", answer("miner_pgd", "\"0xffff8880002d6000\""), &["above 2^53"]);
    // drgn: miner's own PID for its parent's; init for the shell that started it.
    fails_with(
        "looking-inside",
        answer("miner_ppid", "34"),
        &["34 is the PID on the row whose COMM is \"miner\", not its PPID"],
    );
    fails_with(
        "looking-inside",
        answer("miner_ppid", "1"),
        &["1 is the PPID of the row whose COMM is \"sh\""],
    );
    // The container: its PID inside for the host's, the runtime's PID for the workload's.
    fails_with("looking-inside", answer("container_host_pid", "1"), &["1 is not what container.log says"]);
    fails_with(
        "looking-inside",
        answer("container_host_pid", "27125"),
        &["27125 is the PPID on the row whose COMMAND is \"workload\""],
    );
    fails_with("looking-inside", answer("container_inner_pid", "27129"), &["container_inner_pid"]);
    fails_with("looking-inside", answer("miner_waits_in", "\"sleep\""), &["misses the key idea"]);
    // miner not hidden; a ps from a guest whose ps died at start.
    fails_with(
        "looking-inside",
        |d| put(d, "intrude.log", "hide it: did not work in 10 tries\n"),
        &["does not contain"],
    );
    fails_with(
        "looking-inside",
        |d| put(d, "guest-ps.log", "/ # ps -o pid,ppid,comm\nSegmentation fault\n"),
        &["guest-ps.log has no first line with \"PPID\""],
    );
}
