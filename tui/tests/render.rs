//! Rendering of each pane with ratatui's TestBackend, against insta snapshots. The views
//! are built from fixed data, so nothing volatile reaches the snapshots.

use inspect::disasm::{disassemble, Options};
use inspect::regs::{CpuMode, Regs, SpecialRegs};
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use tui::app::{App, GuestState, GuestView, Key};

fn view(name: &str, state: GuestState) -> GuestView {
    let mut v = GuestView::new(name, "pvm", 1);
    v.state = state;
    v.push_console(b"Hello from the vmscope unikernel (ring 0)\ncompute: N=100 primes=25 checksum=0x424\n");
    let regs = Regs { rip: 0x100a10, rsp: 0x3fffec8, rax: 100, rflags: 0x46, ..Default::default() };
    let mut sregs =
        SpecialRegs { cr0: 0x8001_0033, cr3: 0x9000, cr4: 0x620, efer: 0x500, ..Default::default() };
    sregs.cs.long = true;
    sregs.cs.db = false;
    v.regs = Some((regs, sregs));
    v.prev_regs = Some(Regs { rax: 99, ..regs });
    // push rbp; push r15; push r14; mov rbx, rsi; call rel32
    let code = [0x55, 0x41, 0x57, 0x41, 0x56, 0x48, 0x89, 0xf3, 0xe8, 0x10, 0, 0, 0];
    v.disasm = disassemble(&code, 0x100a10, CpuMode::Long64, 5, Options::default(), &())
        .into_iter()
        .enumerate()
        .map(|(i, insn)| (insn, Some(format!("workload_compute+{:#x}", i)), i == 2))
        .collect();
    for r in [3, 5, 8, 2, 0, 9] {
        v.push_rate(r);
    }
    v.top_exits = vec![("io-out port 0x500".into(), 12), ("intr".into(), 3)];
    v.insn_emulation = Some(12345);
    v
}

fn render(app: &mut App, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| {
        app.fit_consoles(f.area());
        f.render_widget(&*app, f.area())
    })
    .unwrap();
    let buf = t.backend().buffer().clone();
    (0..h)
        .map(|y| (0..w).map(|x| buf[(x, y)].symbol().to_string()).collect::<String>().trim_end().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn paused_guest_at_80x24() {
    let mut app = App::new(vec![view("unikernel", GuestState::Paused("breakpoint 0x100a10".into()))]);
    insta::assert_snapshot!(render(&mut app, 80, 24));
}

#[test]
fn two_guests_side_by_side_at_160x40() {
    let mut app =
        App::new(vec![view("unikernel", GuestState::Running), view("linux", GuestState::Exited(0))]);
    app.on_key(Key::Right);
    insta::assert_snapshot!(render(&mut app, 160, 40));
}

#[test]
fn help_overlay_and_command_prompt() {
    let mut app = App::new(vec![view("unikernel", GuestState::Faulted("triple fault".into()))]);
    app.on_key(Key::Char('?'));
    insta::assert_snapshot!("help", render(&mut app, 80, 24));
    app.on_key(Key::Esc);
    app.on_key(Key::Char(':'));
    for c in "pt $rip".chars() {
        app.on_key(Key::Char(c));
    }
    let screen = render(&mut app, 80, 24);
    assert!(screen.lines().last().unwrap().starts_with(":pt $rip"), "{screen}");
}

#[test]
fn virtio_activity_shows_under_the_exits() {
    let mut v = view("linux", GuestState::Running);
    v.virtio = vec!["virtio-blk@0xd0000000 irq 5: 12 notifies, 12 irqs, reads 10, writes 0".into()];
    let screen = render(&mut App::new(vec![v]), 120, 30);
    let lines: Vec<&str> = screen.lines().collect();
    let exits = lines.iter().position(|l| l.contains("exits/refresh")).unwrap_or_else(|| panic!("{screen}"));
    assert!(lines[exits + 1].contains("io-out port 0x500: 12"), "{screen}");
    assert!(lines[exits + 2].contains("virtio-blk@0xd0000000 irq 5: 12 notifies"), "{screen}");
}

#[test]
fn tiny_and_odd_sizes_do_not_panic() {
    let mut app = App::new(vec![view("unikernel", GuestState::Running), view("linux", GuestState::Running)]);
    for (w, h) in [(1, 1), (10, 5), (80, 24), (81, 25), (200, 60), (30, 100)] {
        render(&mut app, w, h);
    }
    render(&mut App::new(vec![]), 80, 24);
}

#[test]
fn a_container_says_why_it_has_no_vcpus() {
    let mut c = GuestView::new("container", "pvm", 0);
    c.push_console(b"syscalls: 1000 getppid calls in 0.052 ms\n");
    c.container = Some(tui::app::ContainerInfo {
        runtime: "runc".into(),
        memory_bytes: Some(3 << 20),
        cpu_ns: Some(1_250_000_000),
        processes: vec![(4242, "workload".into())],
    });
    let mut app = App::new(vec![view("unikernel", GuestState::Running), c]);
    app.on_key(Key::Right);
    insta::assert_snapshot!(render(&mut app, 100, 30));
    // Debugger keys on a container produce actions the runtime answers with an explanation.
    assert_eq!(app.on_key(Key::Char('s')), vec![tui::app::Action::Step(1)]);
}

#[test]
fn a_guest_that_did_not_start_says_why_and_how_to_fix_it() {
    let missing = GuestView::not_started(
        "linux",
        "pvm",
        "its kernel is not built yet (a one-time build of about 8 minutes, then cached)",
        "vmscope guests build linux",
    );
    let mut app = App::new(vec![view("unikernel", GuestState::Running), missing]);
    app.on_key(Key::Right);
    insta::assert_snapshot!(render(&mut app, 100, 30));
}

#[test]
fn the_focused_console_says_keys_go_to_the_guest() {
    let mut v = view("linux", GuestState::Running);
    // A shell prompt with its cursor query and colours, as busybox sends them.
    let answer = v.push_console(b"\x1b[1;32m/ #\x1b[0m \x1b[6n");
    assert_eq!(answer, b"\x1b[3;5R", "answered with the cursor after the prompt");
    let mut app = App::new(vec![v]);
    while app.focus != tui::app::Pane::Console {
        app.on_key(Key::Tab);
    }
    let screen = render(&mut app, 100, 30);
    assert!(!screen.contains("[6n"), "the query is not shown:\n{screen}");
    assert!(screen.contains("/ #"), "{screen}");
    assert!(screen.contains("console [focus, Ctrl-] leaves]"), "{screen}");
    assert!(screen.contains("console: keys go to the guest — Ctrl-] for vmscope"), "{screen}");
    app.on_key(Key::Ctrl(']'));
    let screen = render(&mut app, 100, 30);
    assert!(screen.contains("disassembly: vmscope keys"), "{screen}");
}

/// A Linux guest's pane under the console: its processes, and with `l` its kernel log,
/// newest lines at the bottom, a corrupt ring's reason under the lines read before it.
#[test]
fn a_linux_guests_processes_and_kernel_log() {
    use inspect::linux::dmesg::Record;
    use tui::kernel_log::KernelLog;
    use tui::processes::{ProcessRow, Processes};
    let mut v = view("linux", GuestState::Running);
    let mut p = Processes::default();
    let row = |pid, ppid, comm: &str, pgd| ProcessRow { pid, ppid, state: 'S', comm: comm.into(), pgd };
    p.set_rows(
        vec![
            row(1, 0, "init", Some(0x1a2000)),
            row(2, 0, "kthreadd", None),
            row(57, 1, "sh", Some(0x1b4000)),
        ],
        None,
    );
    v.processes = Some(p);
    let mut log = KernelLog::default();
    let texts = [
        "Linux version 6.1.0 (vmscope)",
        "Command line: console=ttyS0",
        "smp: Brought up 1 node, 1 CPU",
        "Run /init as init process",
        "vmscope-tui-log-test",
    ];
    let records: Vec<Record> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| Record { seq: i as u64, ts_nsec: i as u64 * 1_250_000_000, text: t.to_string() })
        .collect();
    log.push_records(&records);
    log.note = Some("printk ring buffer corrupt at 0xffffffff82000000: head id 0x5 not reached; showing the lines read before".into());
    v.kernel_log = Some(log);
    let mut app = App::new(vec![v]);
    let screen = render(&mut app, 100, 30);
    assert!(screen.contains("processes, l: log (3 tasks, 1 kernel t"), "{screen}");
    assert!(screen.contains("   57     1 S sh"), "{screen}");
    app.on_key(Key::Char('l'));
    insta::assert_snapshot!(render(&mut app, 100, 30));
}
