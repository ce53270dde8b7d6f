//! The loop: one thread selects over key events (with a timeout), VM events and a refresh
//! tick. It owns the terminal (restored on exit, on error and on panic) and the machines,
//! carries out the app's actions, and refreshes the app's views. Nothing here waits for a
//! guest: a slow guest (CPL0 on PVM) never freezes the screen.

use crate::app::{Action, App, GuestState, GuestView};
use crossterm::event::{self, Event, KeyEventKind};
use crossterm::terminal::{enable_raw_mode, EnterAlternateScreen};
use crossterm::{cursor, execute};
use debugger::{render, Debugger, Go};
use inspect::command::{parse, Command};
use inspect::disasm::{self, Options};
use inspect::exits::ExitStats;
use inspect::symbols::SymbolTable;
use inspect::Gva;
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;
use std::io::{Read, Stdout};
use std::time::{Duration, Instant};
use vmm::devices::console::Console;
use vmm::devices::legacy::serial::SerialInput;
use vmm::machine::{Machine, Outcome};
use vmm::vstate::vcpu::StopReason;

/// Errors of the TUI.
#[derive(Debug, thiserror::Error)]
pub enum TuiError {
    /// The terminal.
    #[error("terminal error")]
    Terminal(#[from] std::io::Error),
    /// A signal ended the session (guests stopped, terminal restored).
    #[error("interrupted by signal {0}")]
    Interrupted(i32),
}

/// A guest the TUI drives.
pub struct LiveGuest {
    /// The machine, or where it went (`:migrate`).
    place: Place,
    /// Its serial input (typing reaches the guest while it moves, too).
    serial: SerialInput,
    /// Its console (a buffer the TUI drains).
    pub console: Console,
    /// Its symbols.
    pub symbols: SymbolTable,
    /// Name for the tab bar.
    pub name: String,
    last_exits: ExitStats,
    goto: Option<u64>,
    /// The run a `g`, `s`, `n` or run-to started, until its stop (or a pause) comes.
    run: Option<debugger::Run>,
    dirty: bool,
    /// A Linux guest's vmlinux (with DWARF) and the reader of its task list, for the
    /// processes pane (`guest_tasks`).
    linux: Option<LinuxTasks>,
}

/// Where a guest's machine is.
enum Place {
    /// Here: the TUI drives it.
    Here(Box<Machine>),
    /// On its way to a target: the migration thread has it (`crate::migration`).
    Moving(crate::migration::Moving),
    /// Moved to the target at `to`, where it runs; the machine here is held for good.
    Moved {
        /// The target's address.
        to: String,
        /// Kept (held) until the TUI ends.
        _held: Box<Machine>,
    },
    /// The migration thread ended without handing the machine back (it panicked).
    Lost,
}

/// Where a Linux guest's task list comes from.
struct LinuxTasks {
    /// Its vmlinux, when the frontend named it (else the reader finds it).
    vmlinux: Option<std::path::PathBuf>,
    /// Started at the first refresh (reading the DWARF takes a thread a second or more).
    reader: Option<crate::guest_tasks::TaskReader>,
    /// `r` asked for a read of the task list.
    asked: bool,
    /// `r` in the log pane asked for a read of the kernel log.
    log_asked: bool,
}

impl LiveGuest {
    /// Wraps a booted machine whose console is `console`.
    pub fn new(name: &str, machine: Machine, console: Console, symbols: SymbolTable) -> Self {
        let linux_kernel = symbols.resolve("init_task").is_some();
        Self {
            serial: machine.serial_input(),
            place: Place::Here(Box::new(machine)),
            console,
            symbols,
            name: name.into(),
            last_exits: ExitStats::default(),
            goto: None,
            run: None,
            dirty: true,
            // A Linux kernel's symbols: its processes pane reads the vmlinux `run linux`
            // registered in this process, or the cached build (checked once read).
            linux: linux_kernel.then(|| LinuxTasks {
                vmlinux: inspect::linux::commands::vmlinux().map(std::path::Path::to_path_buf),
                reader: None,
                asked: false,
                log_asked: false,
            }),
        }
    }

    /// Names the guest's vmlinux with DWARF: its processes pane and `:ps`, `:dmesg`,
    /// `:pt --pid N` read the guest's structures with its offsets.
    pub fn with_vmlinux(mut self, vmlinux: &std::path::Path) -> Self {
        self.linux = Some(LinuxTasks {
            vmlinux: Some(vmlinux.to_path_buf()),
            reader: None,
            asked: false,
            log_asked: false,
        });
        self
    }

    /// The machine, while it is here.
    fn machine(&self) -> Option<&Machine> {
        match &self.place {
            Place::Here(m) => Some(m),
            _ => None,
        }
    }

    /// Why nothing here can act on the guest now (its machine is not here).
    fn away(&self) -> String {
        match &self.place {
            Place::Here(_) => String::new(),
            // The point first: the status line is cut at the terminal's width.
            Place::Moving(mv) => format!(
                "wait: {} is moving to {} ({} gives up)",
                self.name,
                mv.uri,
                crate::migration::CANCEL_COMMAND
            ),
            Place::Moved { to, .. } => format!(
                "nothing here drives {}: it migrated to {to} and runs in that `vmscope run --incoming`",
                self.name
            ),
            Place::Lost => format!("{}'s migration thread failed; the guest cannot be driven", self.name),
        }
    }
}

/// A Linux guest's task-list reader, started on first use (`symbols` are the guest's: where
/// they put `init_task` checks the vmlinux).
fn reader<'a>(
    linux: &'a mut Option<LinuxTasks>,
    symbols: &SymbolTable,
) -> Option<&'a mut crate::guest_tasks::TaskReader> {
    let l = linux.as_mut()?;
    let init_task = symbols.resolve("init_task");
    Some(l.reader.get_or_insert_with(|| crate::guest_tasks::TaskReader::new(l.vmlinux.clone(), init_task)))
}

/// A container the TUI shows beside the VMs: the runtime's process, the workload's output, and
/// its cgroup's accounting. It has no vCPUs, so debugger actions explain that instead.
pub struct LiveContainer {
    /// Name for the tab bar.
    pub name: String,
    runtime: String,
    process: guests::container::ContainerProcess,
    output: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    // Kept so the bundle is removed when the TUI ends.
    _bundle: guests::container::Bundle,
}

impl LiveContainer {
    /// Starts `/bin/workload ARGS…` in a container run by `runtime`.
    pub fn start(
        name: &str,
        runtime: &str,
        args: &[String],
    ) -> Result<Self, guests::container::ContainerError> {
        let bundle = guests::container::prepare_bundle(args, Some(256 << 20))?;
        let mut process = guests::container::spawn(&bundle, runtime)?;
        let output = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        // The workload's output and the runtime's own messages (why it failed to start,
        // say) both go to the console pane.
        let stdout = process.child.stdout.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
        let stderr = process.child.stderr.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
        for mut pipe in [stdout, stderr].into_iter().flatten() {
            let sink = output.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut o) = sink.lock() {
                        o.extend_from_slice(&buf[..n]);
                    }
                }
            });
        }
        Ok(Self { name: name.into(), runtime: runtime.into(), process, output, _bundle: bundle })
    }

    fn refresh(&mut self, view: &mut GuestView) {
        let bytes = self.output.lock().map(|mut o| std::mem::take(&mut *o)).unwrap_or_default();
        let _ = view.push_console(&bytes); // a pipe, not a tty: nothing to answer
        if view.state == GuestState::Running {
            if let Ok(Some(status)) = self.process.child.try_wait() {
                view.state = match status.code() {
                    Some(c) => GuestState::Exited(c as u32),
                    None => GuestState::Faulted("killed by a signal".into()),
                };
            }
        }
        let stats = self.process.cgroup_stats();
        view.container = Some(crate::app::ContainerInfo {
            runtime: self.runtime.clone(),
            memory_bytes: stats.memory_bytes,
            cpu_ns: stats.cpu_ns,
            processes: stats.processes,
        });
    }
}

impl Drop for LiveContainer {
    fn drop(&mut self) {
        self.process.stop(Duration::from_secs(2));
    }
}

/// A guest that could not be started: shown as a tab that says why and how to fix it, so
/// one missing piece never takes the other guests down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unavailable {
    /// Name for the tab bar.
    pub name: String,
    /// Why it could not start.
    pub reason: String,
    /// The exact command (or step) that fixes it.
    pub fix: String,
}

/// Puts the terminal back however the TUI ends.
struct TerminalGuard(Terminal<CrosstermBackend<Stdout>>);

fn restore_terminal() {
    crate::signals::restore();
}

impl TerminalGuard {
    fn new() -> Result<Self, TuiError> {
        enable_raw_mode()?;
        execute!(std::io::stdout(), EnterAlternateScreen, cursor::Hide)?;
        crate::signals::hold(crate::signals::Hold::Screen);
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal();
            previous(info);
        }));
        Ok(Self(Terminal::new(CrosstermBackend::new(std::io::stdout()))?))
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// How often views refresh.
const TICK: Duration = Duration::from_millis(50);
/// How often a running guest's registers and exit counters are sampled.
const SAMPLE: Duration = Duration::from_millis(250);
/// Instructions shown in the disassembly pane.
const DISASM_LINES: usize = 16;

/// Runs the TUI over VM `guests`, `containers` and the guests that could not start
/// (`unavailable`, shown last) until the person quits.
pub fn run(
    mut guests: Vec<LiveGuest>,
    mut containers: Vec<LiveContainer>,
    unavailable: Vec<Unavailable>,
) -> Result<(), TuiError> {
    let host = vmm::host_kind();
    let views = guests
        .iter()
        .map(|g| {
            let (host, vcpus) = g.machine().map_or((host, 0), |m| (m.host(), m.vcpu_count()));
            let mut v = GuestView::new(&g.name, host.as_str(), vcpus);
            v.processes = g.linux.as_ref().map(|_| Default::default());
            v.kernel_log = g.linux.as_ref().map(|_| Default::default());
            v
        })
        .chain(containers.iter().map(|c| GuestView::new(&c.name, host.as_str(), 0)))
        .chain(unavailable.iter().map(|u| GuestView::not_started(&u.name, host.as_str(), &u.reason, &u.fix)))
        .collect();
    let mut app = App::new(views);
    let mut term = TerminalGuard::new()?;
    let graceful = crate::signals::Graceful::begin();
    let mut last_sample = Instant::now() - SAMPLE;
    loop {
        term.0.draw(|f| {
            app.fit_consoles(f.area());
            f.render_widget(&app, f.area())
        })?;
        // Wait for input here, not in crossterm's poll: crossterm 0.29 reads a terminal that
        // hung up (its tmux or ssh gone) for ever, as EOF after EOF, and never returns.
        wait_for_input(TICK);
        if terminal_hung_up() {
            drop((term, containers, guests)); // containers stopped
            return Err(TuiError::Interrupted(signal_hook::consts::SIGHUP));
        }
        while event::poll(Duration::ZERO)? {
            match event::read()? {
                Event::Key(k) if k.kind == KeyEventKind::Press => {
                    if let Some(key) = crate::keys::from_crossterm(k) {
                        for action in app.on_key(key) {
                            if let Some(g) = action_guest(&action).filter(|&g| g >= guests.len()) {
                                app.status = match app.guests.get(g).map(|v| &v.state) {
                                    Some(GuestState::NotStarted { fix, .. }) => {
                                        format!("{} did not start; to fix: {fix}", app.guests[g].name)
                                    }
                                    _ => "a container has no vCPUs to pause, step or break: its workload is a process on the host kernel".into(),
                                };
                                continue;
                            }
                            apply(&mut app, &mut guests, action);
                        }
                    }
                }
                Event::Resize(..) => term.0.autoresize()?,
                _ => {}
            }
        }
        if let Some(signal) = graceful.signal() {
            drop((term, containers, guests)); // the screen back, containers stopped
            return Err(TuiError::Interrupted(signal));
        }
        if app.quit {
            break;
        }
        let sample = last_sample.elapsed() >= SAMPLE;
        if sample {
            last_sample = Instant::now();
        }
        for (i, g) in guests.iter_mut().enumerate() {
            let shown = Shown { status: &mut app.status, overlay: &mut app.overlay };
            refresh(&mut app.guests[i], g, sample, shown);
        }
        if sample {
            let offset = guests.len();
            for (i, c) in containers.iter_mut().enumerate() {
                c.refresh(&mut app.guests[offset + i]);
            }
        }
    }
    Ok(())
}

/// The guest an action is for.
fn action_guest(action: &Action) -> Option<usize> {
    match action {
        Action::Pause(g) | Action::Resume(g) | Action::Step(g) | Action::Next(g) => Some(*g),
        Action::ToggleBreakpoint(g, _) | Action::RunTo(g, _) | Action::Goto(g, _) | Action::Command(g, _) => {
            Some(*g)
        }
        Action::PageTable(g, _) | Action::SerialInput(g, _) => Some(*g),
        Action::ProcessPageTables(g, _) | Action::ReadProcesses(g) | Action::ReadKernelLog(g) => Some(*g),
        Action::Quit => None,
    }
}

/// Carries out one action.
pub fn apply(app: &mut App, guests: &mut [LiveGuest], action: Action) {
    let Some(g_index) = action_guest(&action) else { return };
    let Some(g) = guests.get_mut(g_index) else { return };
    g.dirty = true;
    let result = match action {
        Action::SerialInput(_, bytes) if !matches!(g.place, Place::Moved { .. }) => {
            // The guest runs while it moves: a Linux shell takes typing until it is held.
            let taken = g.serial.send(&bytes);
            if taken == bytes.len() {
                Ok(String::new())
            } else {
                Err("the guest's serial input is full".into())
            }
        }
        Action::Command(_, line) if line.trim() == crate::migration::CANCEL_COMMAND => match &g.place {
            Place::Moving(mv) => {
                mv.cancel();
                Ok(format!("giving up the move to {}; the guest runs on here", mv.uri))
            }
            _ => Err("no migration is in progress".into()),
        },
        Action::Command(_, line) if vmm::migration::command::parse_line(&line).is_some() => {
            start_migration(app, g, g_index, &line)
        }
        _ if g.machine().is_none() => Err(g.away()),
        action => apply_here(app, g, g_index, action),
    };
    let status = &mut app.status;
    match result {
        Ok(s) if !s.is_empty() => *status = s,
        Ok(_) => {}
        Err(e) => *status = format!("error: {e}"),
    }
}

/// `:migrate URI …`: the guest moves on a thread of its own (`crate::migration`) while the
/// screen goes on; `refresh` shows its progress and its end.
fn start_migration(app: &mut App, g: &mut LiveGuest, index: usize, line: &str) -> Result<String, String> {
    if g.machine().is_none() {
        return Err(g.away());
    }
    let (uri, opts) = match vmm::migration::command::parse_line(line) {
        Some(Ok(parsed)) => parsed,
        Some(Err(e)) => return Err(crate::guest_tasks::chain(&e)),
        None => return Err(format!("{line:?} is not a migrate command")),
    };
    // A step-over's temporary breakpoint must not travel with the guest. (Giving it up
    // pauses the guest: if the move fails, the guest is back here paused, as the view says.)
    if let (Place::Here(m), Some(run)) = (&g.place, g.run.take()) {
        Debugger::new(m, &g.symbols, Duration::ZERO).cancel(Some(run));
    }
    let Place::Here(machine) = std::mem::replace(&mut g.place, Place::Lost) else {
        return Err(g.away());
    };
    match crate::migration::start(*machine, uri, opts) {
        Ok(moving) => {
            let view = &mut app.guests[index];
            view.state = GuestState::Migrating(moving.uri.clone());
            let line = moving.status_line(&g.name);
            g.place = Place::Moving(moving);
            Ok(line)
        }
        Err((machine, why)) => {
            g.place = Place::Here(machine);
            Err(why)
        }
    }
}

/// Carries out one action on a guest whose machine is here.
fn apply_here(app: &mut App, g: &mut LiveGuest, g_index: usize, action: Action) -> Result<String, String> {
    let Place::Here(m) = &g.place else { return Err(g.away()) };
    match action {
        Action::Pause(_) => {
            Debugger::new(m, &g.symbols, Duration::ZERO).cancel(g.run.take());
            Ok("pausing".into())
        }
        Action::Resume(_) => start(g, Go::Cont).map(|_| "running".into()),
        Action::Step(_) => start(g, Go::Step).map(|_| "step".into()),
        Action::Next(_) => {
            start(g, Go::Next).map(|resumed| if resumed { "stepping over the call" } else { "step" }.into())
        }
        Action::ToggleBreakpoint(_, addr) => {
            let r = if m.breakpoints().contains(addr) {
                m.remove_sw_breakpoint(Gva(addr)).map(|()| format!("breakpoint at {addr:#x} removed"))
            } else {
                m.insert_sw_breakpoint(Gva(addr)).map(|()| format!("breakpoint at {addr:#x}"))
            };
            r.map_err(|e| e.to_string())
        }
        Action::RunTo(_, addr) => start(g, Go::RunTo(addr)).map(|_| format!("running to {addr:#x}")),
        Action::Goto(_, None) => {
            g.goto = None;
            Ok("following RIP".into())
        }
        Action::Goto(_, Some(target)) => {
            let addr =
                g.symbols.resolve(target.trim()).or_else(|| inspect::command::parse_number(target.trim()));
            match addr {
                Some(a) => {
                    g.goto = Some(a);
                    Ok(format!("showing {a:#x}"))
                }
                None => Err(format!("no symbol or address {target:?}")),
            }
        }
        Action::Command(_, line) if inspect::linux::commands::parse(&line).is_some() => {
            // ps, dmesg, uname, pt/mappings --pid: read from the Linux guest's memory.
            match linux_command(g, &line) {
                Ok(text) => {
                    app.overlay = Some((line.clone(), text));
                    Ok(line)
                }
                Err(e) => Err(e),
            }
        }
        Action::Command(_, line) => match parse(&line) {
            Ok(Command::Step(n)) => m.step(0, n).map(|()| "stepping".into()).map_err(|e| e.to_string()),
            Ok(Command::Cont) => start(g, Go::Cont).map(|_| "running".into()),
            Ok(Command::Next) => start(g, Go::Next)
                .map(|resumed| if resumed { "stepping over the call" } else { "step" }.into()),
            Ok(Command::Quit) => {
                app.quit = true;
                Ok(String::new())
            }
            Ok(cmd) => {
                let session = Debugger::new(m, &g.symbols, Duration::from_secs(5));
                match session.execute(&cmd) {
                    Ok(reply) => {
                        let text = render::text(&reply);
                        if matches!(cmd, Command::Rewind { .. }) {
                            // The console pane cannot be rewound: say where the guest's
                            // output starts again.
                            let first = text.lines().next().unwrap_or_default();
                            let note = format!(
                                "\r\n\x1b[7m[vmscope] {first}: the output below follows it\x1b[0m\r\n"
                            );
                            let _ = app.guests[g_index].push_console(note.as_bytes());
                        }
                        app.overlay = Some((line.clone(), text));
                        Ok(line)
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
            Err(e) => Err(e.to_string()),
        },
        Action::PageTable(_, addr) => {
            let target = addr
                .map_or(inspect::command::Addr::Register("rip".into(), 0), inspect::command::Addr::Number);
            let session = Debugger::new(m, &g.symbols, Duration::from_secs(5));
            match session.execute(&Command::Pt { addr: target, host: false }) {
                Ok(reply) => {
                    app.overlay = Some(("page-table walk (esc closes)".into(), render::text(&reply)));
                    Ok("page tables".into())
                }
                Err(e) => Err(e.to_string()),
            }
        }
        Action::ProcessPageTables(_, pid) => {
            let pt = linux_command(g, &format!("pt --pid {pid}"));
            match pt.and_then(|root| Ok(root + &linux_command(g, &format!("mappings --pid {pid}"))?)) {
                Ok(text) => {
                    app.overlay = Some((format!("pid {pid}: page tables (esc closes)"), text));
                    Ok(format!("page tables of pid {pid}"))
                }
                Err(e) => Err(e),
            }
        }
        Action::ReadProcesses(_) => {
            if let Some(l) = &mut g.linux {
                l.asked = true;
            }
            Ok("reading the task list".into())
        }
        Action::ReadKernelLog(_) => {
            if let Some(l) = &mut g.linux {
                l.log_asked = true;
            }
            Ok("reading the kernel log".into())
        }
        Action::SerialInput(..) => Err(g.away()),
        Action::Quit => Ok(String::new()),
    }
}

/// Runs a Linux command line on guest `g`: with its vmlinux when it has one, else the
/// answer says what is missing.
fn linux_command(g: &mut LiveGuest, line: &str) -> Result<String, String> {
    let Place::Here(machine) = &g.place else { return Err(g.away()) };
    let ctx = machine.paging_context(0).unwrap_or(inspect::paging::PagingContext::long_mode(0, false));
    let mem = vmm::vstate::memory::PhysView(machine.memory());
    let answer = match reader(&mut g.linux, &g.symbols) {
        Some(reader) => reader.command(line, &mem, ctx),
        None => inspect::linux::commands::execute_line(line, &mem, || ctx, None)
            .map(|r| r.map(|r| r.text).map_err(|e| e.to_string())),
    };
    answer.unwrap_or_else(|| Err(format!("{line:?} is not a Linux command")))
}

/// Reads a Linux guest's task list and kernel log into its panes when they are due.
fn refresh_processes(view: &mut GuestView, g: &mut LiveGuest) {
    let Place::Here(machine) = &g.place else { return };
    let running = view.state == GuestState::Running;
    let ctx = view.regs.as_ref().map(|(_, s)| inspect::paging::PagingContext::from_sregs(s));
    let asked = g.linux.as_mut().is_some_and(|l| std::mem::take(&mut l.asked));
    let log_asked = g.linux.as_mut().is_some_and(|l| std::mem::take(&mut l.log_asked));
    let mem = vmm::vstate::memory::PhysView(machine.memory());
    let Some(r) = reader(&mut g.linux, &g.symbols) else { return };
    if let Some(p) = view.processes.as_mut() {
        r.refresh(p, &mem, ctx, running, asked);
    }
    if let Some(l) = view.kernel_log.as_mut() {
        r.refresh_log(l, machine.memory(), ctx, running, log_asked);
    }
}

/// Starts a run through the debugger core, which does not block: its stop comes through
/// `refresh`. Whether every vCPU runs (not just one step).
fn start(g: &mut LiveGuest, go: Go) -> Result<bool, String> {
    let Place::Here(m) = &g.place else { return Err(g.away()) };
    let run = Debugger::new(m, &g.symbols, Duration::ZERO).start(go).map_err(|e| e.to_string())?;
    let resumed = run.resumed;
    g.run = Some(run);
    Ok(resumed)
}

/// Follows a move in progress (`:migrate`): its progress in the status line, and its end —
/// the guest gone to the target (the pane says where), or back here running (the pane
/// says why). Whether the machine is here to refresh the view from.
fn follow_move(
    view: &mut GuestView,
    g: &mut LiveGuest,
    status: &mut String,
    overlay: &mut Option<(String, String)>,
) -> bool {
    let Place::Moving(mv) = &mut g.place else {
        return matches!(g.place, Place::Here(_));
    };
    let uri = mv.uri.clone();
    let finished = match mv.poll() {
        Some(f) => f,
        None if mv.lost() => {
            g.place = Place::Lost;
            *status = format!("error: {}", g.away());
            view.state = GuestState::Faulted("the migration thread failed".into());
            return false;
        }
        None => {
            if mv.take_fresh() {
                *status = mv.status_line(&view.name);
            }
            return false;
        }
    };
    // What the guest printed before it was held comes before the note.
    let _ = view.push_console(&g.console.take_buffer());
    g.dirty = true;
    match finished {
        crate::migration::Finished::Moved { machine, summary } => {
            let note = format!(
                "\r\n\x1b[7m[vmscope] migrated to {uri}: it runs there now; this pane no longer drives it\x1b[0m\r\n"
            );
            let _ = view.push_console(note.as_bytes());
            *overlay = Some((
                format!("{}: migrated (esc closes)", view.name),
                format!("{summary}\n\nThe guest runs in the `vmscope run --incoming` at {uri} now;\nits vCPUs here stay held until this TUI ends."),
            ));
            *status = format!(
                "{}: migrated to {uri}: downtime {:.2} ms, total {:.1} ms, {} rounds, {:.1} MiB sent",
                view.name,
                summary.downtime_us as f64 / 1e3,
                summary.total_us as f64 / 1e3,
                summary.rounds.len(),
                summary.bytes as f64 / (1 << 20) as f64
            );
            view.state = GuestState::Migrated(uri.clone());
            g.place = Place::Moved { to: uri, _held: machine };
            false
        }
        crate::migration::Finished::Failed { machine, reason } => {
            let why = format!("migration to {uri} failed; the guest runs on here: {reason}");
            let _ = view.push_console(format!("\r\n\x1b[7m[vmscope] {why}\x1b[0m\r\n").as_bytes());
            // One cause a line: the overlay does not wrap.
            *overlay = Some((
                format!("{}: migration failed (esc closes)", view.name),
                format!(
                    "migration to {uri} failed; the guest runs on here:\n  {}",
                    reason.replace(": ", ":\n  ")
                ),
            ));
            *status = format!("error: {why}");
            // It was resumed for the move; a stop since then comes through its events.
            view.state = GuestState::Running;
            g.place = Place::Here(machine);
            true
        }
    }
}

/// The app's lines that any guest's refresh may write: the status line and the overlay.
pub struct Shown<'a> {
    /// The one-line status.
    pub status: &'a mut String,
    /// The text overlay.
    pub overlay: &'a mut Option<(String, String)>,
}

/// Updates a view from its machine.
pub fn refresh(view: &mut GuestView, g: &mut LiveGuest, sample: bool, shown: Shown<'_>) {
    let Shown { status, overlay } = shown;
    let answer = view.push_console(&g.console.take_buffer());
    if !answer.is_empty() && !matches!(g.place, Place::Moved { .. }) {
        let _ = g.serial.send(&answer);
    }
    if !follow_move(view, g, status, overlay) {
        return;
    }
    refresh_processes(view, g);
    let Place::Here(m) = &g.place else { return };
    let dbg = Debugger::new(m, &g.symbols, Duration::ZERO);
    while let Some(ev) = dbg.poll(&mut g.run, Duration::ZERO) {
        let reason = ev.reason;
        g.dirty = true;
        // A stop shows where the guest is: the disassembly follows RIP again, cursor on it.
        g.goto = None;
        view.cursor_to_rip = true;
        view.state = match (ev.ended, &reason) {
            (Some(Outcome::Exited { code }), _) => GuestState::Exited(code),
            (Some(_), r) => GuestState::Faulted(vmm::report::describe(r)),
            (None, r) => {
                // The other vCPUs stop too (all-stop).
                if ev.vcpu == 0 {
                    m.pause_all();
                }
                GuestState::Paused(short_reason(r))
            }
        };
        if ev.vcpu == 0 || !matches!(reason, StopReason::Paused) {
            *status = format!("{}: {}", view.name, vmm::report::describe(&reason));
        }
    }
    let running = view.state == GuestState::Running;
    if !(g.dirty || running && sample) {
        return;
    }
    if let Some(action_resumed) = resumed_since(view, m) {
        view.state = action_resumed;
    }
    g.dirty = false;
    if let Ok(s) = m.snapshot(0) {
        if let Some((old, _)) = view.regs {
            if old != s.regs {
                view.prev_regs = Some(old);
            }
        }
        view.regs = Some((s.regs, s.sregs));
        let at = g.goto.unwrap_or(s.regs.rip);
        if let Ok(code) = m.read_virt(0, Gva(at), DISASM_LINES * 15) {
            view.disasm = disasm::disassemble(
                &code,
                at,
                s.sregs.cpu_mode(),
                DISASM_LINES,
                Options::default(),
                &g.symbols,
            )
            .into_iter()
            .map(|i| {
                let sym = g.symbols.locate(i.address).map(|l| l.to_string());
                let bp = m.breakpoints().contains(i.address);
                (i, sym, bp)
            })
            .collect();
        }
    }
    if sample || !running {
        let stats = m.exit_stats();
        view.push_rate(stats.delta(&g.last_exits).total());
        view.top_exits = stats.rows().into_iter().take(4).map(|(k, c)| (k.to_string(), c.count)).collect();
        g.last_exits = stats;
        view.insn_emulation = m.kvm_stats().into_iter().find(|(n, _)| n == "insn_emulation").map(|(_, v)| v);
        view.virtio = m.virtio_devices().iter().map(virtio_line).collect();
    }
}

/// One device's activity: `virtio-blk@0xd0000000 irq 5: 12 notifies, 12 irqs, reads 10, writes 0`.
fn virtio_line(d: &vmm::devices::MmioDeviceInfo) -> String {
    let notes: u64 = d.notifications.iter().sum();
    let counters: Vec<String> =
        d.counters.iter().filter(|(n, _)| !n.starts_with("bytes")).map(|(n, v)| format!("{n} {v}")).collect();
    format!(
        "virtio-{}@{:#x} irq {}: {notes} notifies, {} irqs, {}",
        d.name,
        d.base,
        d.irq,
        d.interrupts,
        counters.join(", ")
    )
}

/// After `resume`/`step` actions the machine runs again: reflect it in the view.
fn resumed_since(view: &GuestView, m: &Machine) -> Option<GuestState> {
    if !matches!(view.state, GuestState::Paused(_)) {
        return None;
    }
    let s = m.snapshot(0).ok()?;
    (s.state == vmm::vstate::vcpu::RunState::Running).then_some(GuestState::Running)
}

fn short_reason(r: &StopReason) -> String {
    match r {
        StopReason::Paused => "paused".into(),
        StopReason::Step => "step".into(),
        StopReason::Breakpoint { addr } => format!("breakpoint {addr:#x}"),
        StopReason::HwBreakpoint { index, .. } => format!("DR{index}"),
        other => vmm::report::describe(other),
    }
}

/// Waits up to `limit` for the terminal to have input (or to hang up, or for a signal).
fn wait_for_input(limit: Duration) {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let stdin = std::io::stdin();
    let mut fds = [PollFd::new(&stdin, PollFlags::IN)];
    let timeout = Timespec::try_from(limit).unwrap_or(Timespec { tv_sec: 0, tv_nsec: 50_000_000 });
    let _ = poll(&mut fds, Some(&timeout));
}

/// Whether the terminal the TUI draws on is gone: after a hang-up every ioctl on it fails
/// (EIO), so it no longer reads as a terminal. (crossterm's `size()` would not say: it falls
/// back to `tput`.)
fn terminal_hung_up() -> bool {
    use std::io::IsTerminal;
    !std::io::stdout().is_terminal()
}
