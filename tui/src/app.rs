//! The application state: what is shown and what the person asked for. It knows nothing
//! about terminals or KVM: keys become intent methods, intents become [`Action`]s that the
//! runtime carries out on the machines, and the runtime feeds back [`GuestView`] updates.

use crate::kernel_log::{KernelLog, LogKey};
use crate::keys::{self, ESCAPE_KEY};
use crate::processes::{ProcessKey, Processes};
use crate::term::ConsoleTerm;
use inspect::disasm::Instruction;
use inspect::regs::{Regs, SpecialRegs};
use std::collections::VecDeque;

/// What a guest is doing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GuestState {
    /// Booting or running.
    Running,
    /// Stopped by the person or a debug event (with the reason).
    Paused(String),
    /// Exited with a code.
    Exited(u32),
    /// Ended by a fault.
    Faulted(String),
    /// Moving to `vmscope run --incoming` at this address (`:migrate`); it runs meanwhile.
    Migrating(String),
    /// Moved to the target at this address: it runs there, and this pane no longer drives it.
    Migrated(String),
    /// Could not be started on this host; the others run.
    NotStarted {
        /// Why, in one sentence.
        reason: String,
        /// The exact command (or step) that fixes it.
        fix: String,
    },
}

/// Everything shown about one guest, refreshed by the runtime.
#[derive(Debug)]
pub struct GuestView {
    /// Name for the tab bar (unikernel, linux).
    pub name: String,
    /// Running, paused, exited, faulted.
    pub state: GuestState,
    /// `pvm`, `amd-v`, …
    pub host: String,
    /// vCPUs.
    pub vcpus: usize,
    /// The console: a terminal screen with bounded scrollback.
    pub console: ConsoleTerm,
    /// vCPU 0's registers now, and at the previous stop (to highlight changes).
    pub regs: Option<(Regs, SpecialRegs)>,
    /// Registers at the previous stop.
    pub prev_regs: Option<Regs>,
    /// Disassembly around RIP (or the address chosen with `g`).
    pub disasm: Vec<(Instruction, Option<String>, bool)>,
    /// Exits per refresh interval, most recent last.
    pub exit_rate: VecDeque<u64>,
    /// The busiest exit reasons: (name, count).
    pub top_exits: Vec<(String, u64)>,
    /// KVM's instruction-emulation counter, where the host reports it.
    pub insn_emulation: Option<u64>,
    /// For a container: what the host kernel accounts to it (no vCPUs, no page tables).
    pub container: Option<ContainerInfo>,
    /// Virtio devices, one line each: queue notifications, interrupts, requests.
    pub virtio: Vec<String>,
    /// For a Linux guest whose vmlinux vmscope has: its processes, read from its memory.
    pub processes: Option<Processes>,
    /// For the same Linux guest: its kernel log (the printk ring), read from its memory.
    pub kernel_log: Option<KernelLog>,
    /// The pane under the console shows the kernel log instead of the processes (`l`).
    pub show_log: bool,
    /// Set by the runtime when the guest stops: the disassembly cursor moves to RIP, so `b`
    /// acts on the instruction the guest stopped at.
    pub cursor_to_rip: bool,
}

/// What is shown for a container instead of vCPU state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerInfo {
    /// The OCI runtime.
    pub runtime: String,
    /// cgroup memory in use, bytes.
    pub memory_bytes: Option<u64>,
    /// cgroup CPU time, nanoseconds.
    pub cpu_ns: Option<u64>,
    /// Its processes: (pid, command).
    pub processes: Vec<(u32, String)>,
}

impl GuestView {
    /// A view before the first refresh.
    pub fn new(name: &str, host: &str, vcpus: usize) -> Self {
        Self {
            name: name.into(),
            state: GuestState::Running,
            host: host.into(),
            vcpus,
            console: ConsoleTerm::default(),
            regs: None,
            prev_regs: None,
            disasm: vec![],
            exit_rate: VecDeque::new(),
            top_exits: vec![],
            insn_emulation: None,
            container: None,
            virtio: vec![],
            processes: None,
            kernel_log: None,
            show_log: false,
            cursor_to_rip: false,
        }
    }

    /// Points of exit-rate history kept.
    pub const RATE_HISTORY: usize = 120;

    /// Adds console output; returns the terminal's answers to the guest's queries (the
    /// cursor position for `ESC[6n`), to be sent back to its console input.
    pub fn push_console(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.console.process(bytes)
    }

    /// The row of the disassembly at RIP, if shown.
    pub fn rip_row(&self) -> Option<usize> {
        let rip = self.regs.as_ref()?.0.rip;
        self.disasm.iter().position(|(i, _, _)| i.address == rip)
    }

    /// A view for a guest that could not be started: its tab says why and how to fix it.
    pub fn not_started(name: &str, host: &str, reason: &str, fix: &str) -> Self {
        let mut v = Self::new(name, host, 0);
        v.state = GuestState::NotStarted { reason: reason.into(), fix: fix.into() };
        v.push_console(format!("{name} did not start: {reason}\nto fix: {fix}\n").as_bytes());
        v
    }

    /// Records exits of the last interval.
    pub fn push_rate(&mut self, n: u64) {
        self.exit_rate.push_back(n);
        if self.exit_rate.len() > Self::RATE_HISTORY {
            self.exit_rate.pop_front();
        }
    }
}

/// The panes of a guest, in Tab order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pane {
    /// Console (every key goes to the guest's serial port, as a terminal sends it, except
    /// Ctrl-] which hands the keyboard back to vmscope).
    Console,
    /// Disassembly (up/down move the cursor; `b` toggles a breakpoint there).
    Disasm,
    /// Registers.
    Registers,
    /// Exit statistics.
    Exits,
    /// A Linux guest's processes (under its console).
    Processes,
    /// A Linux guest's kernel log (in the processes pane's place, `l` toggles).
    KernelLog,
}

impl Pane {
    /// The pane's name, as its title says.
    pub fn name(self) -> &'static str {
        match self {
            Pane::Console => "console",
            Pane::Disasm => "disassembly",
            Pane::Registers => "registers",
            Pane::Exits => "exits",
            Pane::Processes => "processes",
            Pane::KernelLog => "kernel log",
        }
    }

    /// What the keys do in this pane when it has focus (shown in its title).
    pub fn focus_hint(self) -> String {
        match self {
            Pane::Console => format!("focus, {ESCAPE_KEY} leaves"),
            Pane::Disasm => "focus: ↑↓ cursor, b breakpoint, u run to, p page walk".into(),
            Pane::Registers | Pane::Exits => "focus: Tab next pane, ? help".into(),
            Pane::Processes => "focus: ↑↓ select, p page tables, k kernel threads, r read now".into(),
            Pane::KernelLog => "focus: ↑↓ PgUp/PgDn Home/End scroll, r read now".into(),
        }
    }

    /// The next pane in Tab order (the processes pane sits under the console, so it comes
    /// right after it; guests without one skip it: [`App::next_pane`]).
    fn next(self) -> Pane {
        match self {
            Pane::Console => Pane::Processes,
            Pane::Processes | Pane::KernelLog => Pane::Disasm,
            Pane::Disasm => Pane::Registers,
            Pane::Registers => Pane::Exits,
            Pane::Exits => Pane::Console,
        }
    }
}

/// Something the runtime must do to a guest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Pause every vCPU.
    Pause(usize),
    /// Resume every vCPU.
    Resume(usize),
    /// Step vCPU 0 once.
    Step(usize),
    /// Step over a call.
    Next(usize),
    /// Toggle a software breakpoint.
    ToggleBreakpoint(usize, u64),
    /// Continue to this address (a temporary breakpoint).
    RunTo(usize, u64),
    /// Show the disassembly at this address or symbol (None: follow RIP).
    Goto(usize, Option<String>),
    /// Run an inspection command; its text output goes to the output pane.
    Command(usize, String),
    /// Walk the page tables for this address (RIP when None).
    PageTable(usize, Option<u64>),
    /// Send bytes to the guest's serial port.
    SerialInput(usize, Vec<u8>),
    /// Show a Linux guest's process's page tables and mappings (`pt --pid`, `mappings --pid`).
    ProcessPageTables(usize, i64),
    /// Read a Linux guest's task list now (also while it is paused).
    ReadProcesses(usize),
    /// Read a Linux guest's kernel log now (also while it is paused).
    ReadKernelLog(usize),
    /// Leave.
    Quit,
}

/// What the bottom line is collecting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prompt {
    /// `:` command.
    Command(String),
    /// `g` go to.
    Goto(String),
}

/// The whole application.
#[derive(Debug)]
pub struct App {
    /// One view per guest.
    pub guests: Vec<GuestView>,
    /// The guest shown in full (the others are summarized side by side).
    pub selected: usize,
    /// The focused pane.
    pub focus: Pane,
    /// Cursor in the disassembly pane.
    pub disasm_cursor: usize,
    /// The `?` overlay.
    pub show_help: bool,
    /// A text overlay (page-table walk, command output), closed with Esc.
    pub overlay: Option<(String, String)>,
    /// The bottom-line prompt.
    pub prompt: Option<Prompt>,
    /// A one-line status message.
    pub status: String,
    /// Set when the person asked to leave.
    pub quit: bool,
}

/// A key, as the app understands it (the runtime maps terminal events to these).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    /// A character.
    Char(char),
    /// Enter.
    Enter,
    /// Esc.
    Esc,
    /// Backspace.
    Backspace,
    /// Tab.
    Tab,
    /// Up arrow.
    Up,
    /// Down arrow.
    Down,
    /// Left arrow.
    Left,
    /// Right arrow.
    Right,
    /// Shift-Tab.
    BackTab,
    /// Home.
    Home,
    /// End.
    End,
    /// Delete.
    Delete,
    /// Page up.
    PageUp,
    /// Page down.
    PageDown,
    /// Ctrl with a character (lower-case letter, or `]`, `[`, `\\`, `^`, `_`, `@`, space).
    Ctrl(char),
}

/// Every key binding, for the help overlay.
pub const KEYS: &[(&str, &str)] = &[
    ("space", "pause / resume the guest"),
    ("s", "step one instruction (vCPU 0)"),
    ("n", "step over a call"),
    ("c", "continue"),
    ("b", "toggle a breakpoint at the disassembly cursor"),
    ("u", "continue to the disassembly cursor"),
    ("g", "go to an address or symbol in the disassembly"),
    ("p", "page-table walk for the disassembly cursor"),
    (":", "command line (regs, pt, x/N, xp/N, dis, sym, mappings, exits, checkpoint, rewind N, …; Linux: ps, dmesg, uname, pt --pid N)"),
    (":migrate", "migrate URI [--downtime-ms N] [--max-rounds N]: move the guest to `vmscope run --incoming URI` (unix:PATH, tcp:HOST:PORT); migrate_cancel gives up"),
    ("tab", "next pane (console, processes for Linux, disassembly, registers, exits)"),
    ("processes", "a Linux guest's tasks read from its memory: ↑↓ select, Enter/p page tables and mappings, k kernel threads, r read now"),
    ("l", "a Linux guest's kernel log (its printk ring, as dmesg) in the processes pane's place, and back: ↑↓ PgUp/PgDn Home/End scroll, r read now"),
    ("console", "with the console focused every key goes to the guest, as a terminal sends it (Ctrl-C interrupts the guest's command); PgUp/PgDn scroll its history"),
    ("Ctrl-]", "leave the console: keys go to vmscope again (Tab back to it)"),
    ("left/right", "previous / next guest"),
    ("up/down", "move the disassembly cursor"),
    ("?", "this help"),
    ("esc", "close an overlay or prompt"),
    ("q", "quit (Ctrl-C too, outside the console)"),
];

impl App {
    /// An app over these guests.
    pub fn new(guests: Vec<GuestView>) -> Self {
        Self {
            guests,
            selected: 0,
            focus: Pane::Disasm,
            disasm_cursor: 0,
            show_help: false,
            overlay: None,
            prompt: None,
            status: String::new(),
            quit: false,
        }
    }

    /// The selected guest's view.
    pub fn guest(&self) -> Option<&GuestView> {
        self.guests.get(self.selected)
    }

    fn cursor_addr(&self) -> Option<u64> {
        self.guest()?.disasm.get(self.cursor()).map(|(i, _, _)| i.address)
    }

    /// The disassembly cursor's row: RIP's after a stop, until the person moves it.
    pub fn cursor(&self) -> usize {
        match self.guest() {
            Some(g) if g.cursor_to_rip => g.rip_row().unwrap_or(self.disasm_cursor),
            _ => self.disasm_cursor,
        }
    }

    /// What the status line says the keys do now.
    pub fn mode(&self) -> String {
        if self.prompt.is_some() {
            return "prompt: Enter runs, Esc cancels".into();
        }
        if self.show_help || self.overlay.is_some() {
            return "overlay: Esc closes".into();
        }
        match self.focus {
            Pane::Console => format!("console: keys go to the guest — {ESCAPE_KEY} for vmscope"),
            pane => format!("{}: vmscope keys — Tab next pane, ? help, q quit", pane.name()),
        }
    }

    /// The pane under the console for the selected guest: its processes, its kernel log
    /// (`l`), or none (not a Linux guest).
    pub fn linux_pane(&self) -> Option<Pane> {
        let g = self.guest()?;
        match (g.show_log, &g.processes, &g.kernel_log) {
            (true, _, Some(_)) => Some(Pane::KernelLog),
            (_, Some(_), _) => Some(Pane::Processes),
            (_, None, Some(_)) => Some(Pane::KernelLog),
            (_, None, None) => None,
        }
    }

    /// The pane after the focused one in Tab order, for the selected guest.
    pub fn next_pane(&self) -> Pane {
        match self.focus.next() {
            Pane::Processes => self.linux_pane().unwrap_or(Pane::Disasm),
            next => next,
        }
    }

    /// The focus stays on the pane under the console only if the selected guest shows it.
    fn keep_focus_possible(&mut self) {
        if matches!(self.focus, Pane::Processes | Pane::KernelLog) {
            self.focus = self.linux_pane().unwrap_or(Pane::Disasm);
        }
    }

    /// `l`: the kernel log in the processes pane's place, or back (the focus goes with it).
    fn toggle_log(&mut self) {
        let Some(g) = self.guests.get_mut(self.selected) else { return };
        if g.kernel_log.is_none() {
            self.status = format!("{} has no kernel log pane: not a Linux guest with a vmlinux", g.name);
            return;
        }
        g.show_log = !g.show_log;
        self.keep_focus_possible();
    }

    /// Handles one key; returns what the runtime must do.
    pub fn on_key(&mut self, key: Key) -> Vec<Action> {
        // The cursor stays where a stop put it, now as the person's own.
        self.disasm_cursor = self.cursor();
        let g = self.selected;
        if let Some(v) = self.guests.get_mut(g) {
            v.cursor_to_rip = false;
        }
        // With the console focused every key but the escape key is the guest's, Ctrl-C too.
        if self.focus == Pane::Console && self.prompt.is_none() && !self.show_help && self.overlay.is_none() {
            match key {
                Key::Ctrl(']') => {
                    self.focus = self.next_pane();
                    self.status = "keys go to vmscope (Tab until the console has focus to type again)".into();
                }
                Key::PageUp | Key::PageDown => {
                    let rows = 10 * if key == Key::PageUp { 1 } else { -1 };
                    if let Some(v) = self.guests.get_mut(g) {
                        v.console.scroll(rows);
                    }
                }
                k => {
                    if let Some(v) = self.guests.get_mut(g) {
                        v.console.scroll(isize::MIN / 2); // typing shows the live screen
                    }
                    return keys::to_terminal(k).map(|b| vec![Action::SerialInput(g, b)]).unwrap_or_default();
                }
            }
            return vec![];
        }
        if key == Key::Ctrl('c') {
            self.quit = true;
            return vec![Action::Quit];
        }
        if let Some(prompt) = &mut self.prompt {
            let text = match prompt {
                Prompt::Command(t) | Prompt::Goto(t) => t,
            };
            match key {
                Key::Char(c) => text.push(c),
                Key::Backspace => {
                    text.pop();
                }
                Key::Esc => self.prompt = None,
                Key::Enter => {
                    let g = self.selected;
                    let done = self.prompt.take();
                    return match done {
                        Some(Prompt::Command(t)) if !t.trim().is_empty() => vec![Action::Command(g, t)],
                        Some(Prompt::Goto(t)) => vec![Action::Goto(g, (!t.trim().is_empty()).then_some(t))],
                        _ => vec![],
                    };
                }
                _ => {}
            }
            return vec![];
        }
        if self.show_help || self.overlay.is_some() {
            if matches!(key, Key::Esc | Key::Char('?') | Key::Char('q') | Key::Enter) {
                self.show_help = false;
                self.overlay = None;
            }
            return vec![];
        }
        if self.focus == Pane::KernelLog {
            if let Some(l) = self.guests.get_mut(g).and_then(|v| v.kernel_log.as_mut()) {
                match l.on_key(key) {
                    LogKey::Done => return vec![],
                    LogKey::ReadNow => return vec![Action::ReadKernelLog(g)],
                    LogKey::NotMine => {}
                }
            }
        }
        if self.focus == Pane::Processes {
            if let Some(p) = self.guests.get_mut(g).and_then(|v| v.processes.as_mut()) {
                match p.on_key(key) {
                    ProcessKey::Done => return vec![],
                    ProcessKey::PageTables(pid) => return vec![Action::ProcessPageTables(g, pid)],
                    ProcessKey::ReadNow => return vec![Action::ReadProcesses(g)],
                    ProcessKey::NotMine => {}
                }
            }
        }
        match key {
            Key::Char('q') => {
                self.quit = true;
                vec![Action::Quit]
            }
            Key::Char('?') => {
                self.show_help = true;
                vec![]
            }
            Key::Char('l') => {
                self.toggle_log();
                vec![]
            }
            Key::Char(' ') => match self.guest().map(|v| &v.state) {
                Some(GuestState::Running) => vec![Action::Pause(g)],
                Some(GuestState::Paused(_)) => vec![Action::Resume(g)],
                _ => vec![],
            },
            Key::Char('s') => vec![Action::Step(g)],
            Key::Char('n') => vec![Action::Next(g)],
            Key::Char('c') => vec![Action::Resume(g)],
            Key::Char('b') => {
                self.cursor_addr().map(|a| vec![Action::ToggleBreakpoint(g, a)]).unwrap_or_default()
            }
            Key::Char('p') => vec![Action::PageTable(g, self.cursor_addr())],
            Key::Char('u') => self.cursor_addr().map(|a| vec![Action::RunTo(g, a)]).unwrap_or_default(),
            Key::Char('g') => {
                self.prompt = Some(Prompt::Goto(String::new()));
                vec![]
            }
            Key::Char(':') => {
                self.prompt = Some(Prompt::Command(String::new()));
                vec![]
            }
            Key::Tab => {
                self.focus = self.next_pane();
                self.status.clear();
                vec![]
            }
            Key::Left => {
                self.selected = (self.selected + self.guests.len().max(1) - 1) % self.guests.len().max(1);
                self.disasm_cursor = 0;
                self.keep_focus_possible();
                vec![]
            }
            Key::Right => {
                self.selected = (self.selected + 1) % self.guests.len().max(1);
                self.disasm_cursor = 0;
                self.keep_focus_possible();
                vec![]
            }
            Key::Up => {
                self.disasm_cursor = self.disasm_cursor.saturating_sub(1);
                vec![]
            }
            Key::Down => {
                let n = self.guest().map_or(0, |v| v.disasm.len());
                self.disasm_cursor = (self.disasm_cursor + 1).min(n.saturating_sub(1));
                vec![]
            }
            _ => vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> App {
        let mut a = App::new(vec![GuestView::new("unikernel", "pvm", 1), GuestView::new("linux", "pvm", 1)]);
        a.guests[0].disasm = (0..4)
            .map(|i| {
                let insn = inspect::disasm::decode_one(&[0x90], 0x1000 + i, inspect::regs::CpuMode::Long64);
                (insn, None, false)
            })
            .collect();
        a
    }

    #[test]
    fn debugger_keys_become_actions() {
        let mut a = app();
        assert_eq!(a.on_key(Key::Char(' ')), vec![Action::Pause(0)]);
        a.guests[0].state = GuestState::Paused("paused".into());
        assert_eq!(a.on_key(Key::Char(' ')), vec![Action::Resume(0)]);
        assert_eq!(a.on_key(Key::Char('s')), vec![Action::Step(0)]);
        assert_eq!(a.on_key(Key::Char('c')), vec![Action::Resume(0)]);
        a.on_key(Key::Down);
        a.on_key(Key::Down);
        assert_eq!(a.on_key(Key::Char('b')), vec![Action::ToggleBreakpoint(0, 0x1002)]);
        assert_eq!(a.on_key(Key::Char('p')), vec![Action::PageTable(0, Some(0x1002))]);
        assert_eq!(a.on_key(Key::Char('u')), vec![Action::RunTo(0, 0x1002)]);
        a.on_key(Key::Right);
        assert_eq!(a.selected, 1);
        assert_eq!(a.on_key(Key::Char('s')), vec![Action::Step(1)]);
        assert_eq!(a.on_key(Key::Char('q')), vec![Action::Quit]);
        assert!(a.quit);
    }

    #[test]
    fn prompts_collect_text() {
        let mut a = app();
        a.on_key(Key::Char(':'));
        for c in "pt $rip".chars() {
            assert!(a.on_key(Key::Char(c)).is_empty(), "typing in the prompt never acts");
        }
        assert_eq!(a.on_key(Key::Enter), vec![Action::Command(0, "pt $rip".into())]);
        a.on_key(Key::Char('g'));
        a.on_key(Key::Char('x'));
        a.on_key(Key::Backspace);
        for c in "main".chars() {
            a.on_key(Key::Char(c));
        }
        assert_eq!(a.on_key(Key::Enter), vec![Action::Goto(0, Some("main".into()))]);
        a.on_key(Key::Char(':'));
        a.on_key(Key::Esc);
        assert!(a.prompt.is_none());
    }

    #[test]
    fn overlays_and_console_focus() {
        let mut a = app();
        a.on_key(Key::Char('?'));
        assert!(a.show_help);
        assert!(a.on_key(Key::Char('s')).is_empty(), "keys do not leak through the help");
        a.on_key(Key::Esc);
        assert!(!a.show_help);
        while a.focus != Pane::Console {
            a.on_key(Key::Tab);
        }
        assert!(a.mode().contains("keys go to the guest"), "{}", a.mode());
        assert_eq!(a.on_key(Key::Char('l')), vec![Action::SerialInput(0, b"l".to_vec())]);
        assert_eq!(
            a.on_key(Key::Char('q')),
            vec![Action::SerialInput(0, b"q".to_vec())],
            "q is typed, not quit"
        );
        assert_eq!(a.on_key(Key::Backspace), vec![Action::SerialInput(0, vec![0x7f])]);
        assert_eq!(a.on_key(Key::Ctrl('c')), vec![Action::SerialInput(0, vec![3])], "Ctrl-C is the guest's");
        assert_eq!(a.on_key(Key::Tab), vec![Action::SerialInput(0, b"\t".to_vec())], "Tab completes");
        assert_eq!(a.on_key(Key::Esc), vec![Action::SerialInput(0, b"\x1b".to_vec())]);
        assert!(!a.quit);
        assert!(a.on_key(Key::Ctrl(']')).is_empty());
        assert_ne!(a.focus, Pane::Console, "Ctrl-] hands the keys back to vmscope");
        assert!(a.mode().contains("vmscope keys"), "{}", a.mode());
        assert_eq!(a.on_key(Key::Ctrl('c')), vec![Action::Quit]);
    }

    #[test]
    fn the_cursor_moves_to_rip_after_a_stop() {
        let mut a = app();
        a.on_key(Key::Down);
        a.on_key(Key::Down);
        assert_eq!(a.cursor(), 2);
        let regs = Regs { rip: 0x1001, ..Default::default() };
        a.guests[0].regs = Some((regs, SpecialRegs::default()));
        a.guests[0].cursor_to_rip = true;
        assert_eq!(a.cursor(), 1, "a stop puts the cursor on RIP");
        assert_eq!(a.on_key(Key::Char('b')), vec![Action::ToggleBreakpoint(0, 0x1001)], "b acts at RIP");
        a.on_key(Key::Down);
        assert_eq!(a.cursor(), 2, "then it is the person's cursor again");
    }

    #[test]
    fn l_shows_the_kernel_log_in_the_processes_panes_place_and_back() {
        let mut a = app();
        a.on_key(Key::Char('l'));
        assert!(a.status.contains("no kernel log pane"), "not a Linux guest: {}", a.status);
        a.on_key(Key::Right);
        a.guests[1].processes = Some(Processes::default());
        a.guests[1].kernel_log = Some(KernelLog::default());
        while a.focus != Pane::Console {
            a.on_key(Key::Tab);
        }
        a.on_key(Key::Ctrl(']'));
        assert_eq!(a.focus, Pane::Processes, "the pane under the console comes after it");
        assert_eq!(a.on_key(Key::Char('l')), vec![]);
        assert_eq!(
            (a.focus, a.linux_pane()),
            (Pane::KernelLog, Some(Pane::KernelLog)),
            "the focus goes along"
        );
        assert_eq!(a.on_key(Key::Char('r')), vec![Action::ReadKernelLog(1)]);
        assert_eq!(a.on_key(Key::Up), vec![], "arrows scroll the log");
        assert_eq!(a.on_key(Key::Char('s')), vec![Action::Step(1)], "debugger keys go on");
        assert_eq!(a.mode(), "kernel log: vmscope keys — Tab next pane, ? help, q quit");
        // Another guest has no such pane: the focus leaves it, and comes back with the guest.
        a.on_key(Key::Left);
        assert_eq!(a.focus, Pane::Disasm);
        a.on_key(Key::Right);
        while a.focus != Pane::Console {
            a.on_key(Key::Tab);
        }
        a.on_key(Key::Ctrl(']'));
        assert_eq!(a.focus, Pane::KernelLog, "the guest still shows its log");
        a.on_key(Key::Char('l'));
        assert_eq!(a.focus, Pane::Processes);
        assert_eq!(a.on_key(Key::Char('r')), vec![Action::ReadProcesses(1)]);
    }

    #[test]
    fn console_output_and_rates_are_bounded() {
        let mut v = GuestView::new("g", "pvm", 1);
        assert!(v.push_console(b"hello\nwor").is_empty());
        v.push_console(b"ld\r\n");
        assert_eq!(v.console.text(), "hello\nworld");
        assert_eq!(v.push_console(b"\x1b[6n"), b"\x1b[3;1R", "the query is answered");
        for i in 0..(GuestView::RATE_HISTORY as u64 + 10) {
            v.push_rate(i);
        }
        assert_eq!(v.exit_rate.len(), GuestView::RATE_HISTORY);
    }
}
