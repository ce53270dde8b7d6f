//! Rendering: `impl Widget for &App`. Works from 80×24 up; on wide terminals the consoles
//! and exit-rate sparklines of every guest sit side by side.

use crate::app::{App, GuestState, GuestView, Pane, Prompt, KEYS};
use crate::kernel_log::KernelLog;
use crate::processes::Processes;
use inspect::regs::{cr0, cr4, efer, rflags, Regs};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Sparkline, Widget, Wrap};
use tui_term::widget::PseudoTerminal;

/// Guests whose consoles are shown side by side need this many columns each.
const COLUMN_WIDTH: u16 = 36;
/// The processes pane's least height: borders, the header and three processes.
const PROCESS_ROWS_MIN: u16 = 6;

fn state_text(s: &GuestState) -> (String, Color) {
    match s {
        GuestState::Running => ("running".into(), Color::Green),
        GuestState::Paused(why) => (format!("paused: {why}"), Color::Yellow),
        GuestState::Exited(code) => (format!("exited {code}"), Color::Blue),
        GuestState::Faulted(why) => (format!("faulted: {why}"), Color::Red),
        GuestState::NotStarted { .. } => ("not started".into(), Color::DarkGray),
        GuestState::Migrating(to) => (format!("migrating to {to}"), Color::Magenta),
        GuestState::Migrated(to) => (format!("migrated to {to}"), Color::Blue),
    }
}

fn block(title: String, focused: bool) -> Block<'static> {
    let style = if focused { Style::default().fg(Color::Cyan) } else { Style::default() };
    Block::default().borders(Borders::ALL).border_style(style).title(title)
}

/// A pane's block; the focused one says so in its title, with what the keys do there.
fn pane_block(title: String, pane: Pane, focus: Pane) -> Block<'static> {
    if pane == focus {
        let hint = Span::styled(
            format!("[{}]", pane.focus_hint()),
            Style::default().fg(Color::Cyan).add_modifier(Modifier::BOLD),
        );
        block(String::new(), true).title(Line::from(vec![Span::raw(format!("{title} ")), hint]))
    } else {
        block(title, false)
    }
}

/// Where the parts of the screen go.
struct Areas {
    tabs: Rect,
    consoles: Rect,
    /// A Linux guest's processes or kernel log, under the consoles.
    processes: Option<Rect>,
    regs: Rect,
    disasm: Rect,
    bottom: Rect,
    status: Rect,
}

fn bits(value: u64, names: &[(u64, &'static str)]) -> String {
    let set: Vec<&str> = names.iter().filter(|(b, _)| value & b != 0).map(|(_, n)| *n).collect();
    set.join(" ")
}

impl Widget for &App {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let a = self.areas(area);
        self.render_tabs(a.tabs, buf);
        let Some(guest) = self.guest() else {
            Paragraph::new("no guests").render(a.consoles.union(a.disasm), buf);
            return;
        };
        self.render_consoles(a.consoles, buf);
        match (a.processes, self.linux_pane()) {
            (Some(r), Some(Pane::KernelLog)) => {
                if let Some(l) = &guest.kernel_log {
                    self.render_log(l, r, buf);
                }
            }
            (Some(r), Some(_)) => {
                if let Some(p) = &guest.processes {
                    self.render_processes(p, r, buf);
                }
            }
            _ => {}
        }
        self.render_registers(guest, a.regs, buf);
        self.render_disasm(guest, a.disasm, buf);
        self.render_exits(guest, a.bottom, buf);
        self.render_status(a.status, buf);
        if let Some((title, text)) = &self.overlay {
            overlay(area, buf, title, text);
        }
        if self.show_help {
            let mut text: String = KEYS.iter().map(|(k, d)| format!("{k:>11}  {d}\n")).collect();
            text.push_str(&format!("\nnow: {}", self.mode()));
            overlay(area, buf, "keys (esc closes)", &text);
        }
    }
}

/// A register's name and how to read it.
type RegField = (&'static str, fn(&Regs) -> u64);

/// How many `rax 0123456789abcdef` columns fit in a pane this wide.
fn register_columns(width: u16) -> u16 {
    (width.saturating_sub(2) / 21).clamp(1, 4)
}

fn overlay(area: Rect, buf: &mut Buffer, title: &str, text: &str) {
    let w = area.width.saturating_sub(4).min(100);
    let h = area.height.saturating_sub(2).min(text.lines().count() as u16 + 2);
    let r = Rect { x: area.x + (area.width - w) / 2, y: area.y + (area.height - h) / 2, width: w, height: h };
    Clear.render(r, buf);
    Paragraph::new(text.to_string()).block(block(title.to_string(), true)).render(r, buf);
}

impl App {
    fn areas(&self, area: Rect) -> Areas {
        // The exits pane grows by a line per virtio device (up to three) and one for a note.
        let virtio_lines = self.guest().map_or(0, |g| g.virtio.len().min(3)) as u16;
        let note = u16::from(self.guest().is_some_and(|g| exits_note(g).is_some()));
        let [tabs, main, bottom, status] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Min(8),
            Constraint::Length(3 + virtio_lines + note),
            Constraint::Length(1),
        ])
        .areas(area);
        // Narrow terminals give the register and disassembly side more room.
        let left_pct = if area.width < 120 { 40 } else { 50 };
        let [consoles, right] =
            Layout::horizontal([Constraint::Percentage(left_pct), Constraint::Percentage(100 - left_pct)])
                .areas(main);
        let cols = register_columns(right.width);
        let reg_rows = 17u16.div_ceil(cols) + 3 + 2;
        let [regs, disasm] = Layout::vertical([Constraint::Max(reg_rows), Constraint::Min(6)]).areas(right);
        // The selected Linux guest's processes (or log) take the lower part of the console column.
        let (consoles, processes) = if self.linux_pane().is_some() {
            let [c, p] = Layout::vertical([Constraint::Percentage(60), Constraint::Min(PROCESS_ROWS_MIN)])
                .areas(consoles);
            (c, Some(p))
        } else {
            (consoles, None)
        };
        Areas { tabs, consoles, processes, regs, disasm, bottom, status }
    }

    /// The console panes shown in `area`: (guest, pane).
    fn console_panes(&self, area: Rect) -> Vec<(usize, Rect)> {
        // Side by side when there is room; otherwise only the selected guest.
        let shown: Vec<usize> =
            if self.guests.len() > 1 && area.width >= COLUMN_WIDTH * self.guests.len() as u16 {
                (0..self.guests.len()).collect()
            } else {
                vec![self.selected]
            };
        let cols =
            Layout::horizontal(vec![Constraint::Ratio(1, shown.len() as u32); shown.len()]).split(area);
        shown.into_iter().zip(cols.iter().copied()).collect()
    }

    /// Sizes each guest's console terminal to the pane it is drawn in on a screen of `area`
    /// (a guest that asks for the cursor position after moving far right learns the width).
    pub fn fit_consoles(&mut self, area: Rect) {
        let a = self.areas(area);
        // The log pane learns its height, so scrolling up stops with the first line on top.
        if let (Some(r), Some(l)) =
            (a.processes, self.guests.get_mut(self.selected).and_then(|g| g.kernel_log.as_mut()))
        {
            let note = note_rows(l.note.as_deref(), r.width.saturating_sub(2));
            l.fit(r.height.saturating_sub(2 + note) as usize, r.width.saturating_sub(2) as usize);
        }
        for (i, r) in self.console_panes(a.consoles) {
            if let Some(g) = self.guests.get_mut(i) {
                g.console.resize(r.height.saturating_sub(2), r.width.saturating_sub(2));
            }
        }
    }

    fn render_tabs(&self, area: Rect, buf: &mut Buffer) {
        let mut spans = vec![Span::styled(" vmscope ", Style::default().add_modifier(Modifier::BOLD))];
        for (i, g) in self.guests.iter().enumerate() {
            let (state, color) = state_text(&g.state);
            let style = if i == self.selected {
                Style::default().add_modifier(Modifier::REVERSED)
            } else {
                Style::default()
            };
            spans.push(Span::styled(format!(" {} ", g.name), style));
            spans.push(Span::styled(format!("[{state}] "), Style::default().fg(color)));
            // Only a VM has a host kind and vCPUs worth a column.
            if g.vcpus > 0 {
                spans.push(Span::raw(format!("{} {}vCPU │", g.host, g.vcpus)));
            } else {
                spans.push(Span::raw("│"));
            }
        }
        Line::from(spans).render(area, buf);
    }

    fn render_consoles(&self, area: Rect, buf: &mut Buffer) {
        let panes = self.console_panes(area);
        let several = panes.len() > 1;
        for (i, col) in panes {
            let g = &self.guests[i];
            let mut title = if several { format!("console: {}", g.name) } else { "console".to_string() };
            if g.console.scrolled() > 0 {
                title.push_str(&format!(" (history -{} rows, PgDn)", g.console.scrolled()));
            }
            let focus = if i == self.selected { self.focus } else { Pane::Disasm };
            let mut term =
                PseudoTerminal::new(g.console.screen()).block(pane_block(title, Pane::Console, focus));
            if focus != Pane::Console {
                term = term.cursor(tui_term::widget::Cursor::default().visibility(false));
            }
            term.render(col, buf);
        }
    }

    fn render_processes(&self, p: &Processes, area: Rect, buf: &mut Buffer) {
        let focused = self.focus == Pane::Processes;
        let visible = p.visible();
        let mut title = format!("processes, l: log ({} tasks", p.rows.len());
        if p.hidden() > 0 {
            title.push_str(&format!(", {} kernel threads hidden: k", p.hidden()));
        }
        if let Some(t) = p.read_time {
            title.push_str(&format!(", read in {:.1} ms", t.as_secs_f64() * 1e3));
        }
        title.push(')');
        let b = pane_block(title, Pane::Processes, self.focus);
        let inner = b.inner(area);
        b.render(area, buf);
        // The page-table root only where it fits beside the name.
        let wide = inner.width >= 44;
        let mut header = format!("{:>5} {:>5} S {:<17}", "PID", "PPID", "COMM");
        if wide {
            header.push_str("PGD");
        }
        let mut lines = vec![Line::styled(header, Style::default().add_modifier(Modifier::BOLD))];
        let note_rows = note_rows(p.note.as_deref(), inner.width);
        let rows = inner.height.saturating_sub(1 + note_rows) as usize;
        let selected = p.selected_row().unwrap_or(0);
        let first = (selected + 1).saturating_sub(rows);
        for (i, r) in visible.iter().enumerate().skip(first).take(rows) {
            let comm = if r.is_kernel_thread() { format!("[{}]", r.comm) } else { r.comm.clone() };
            let mut text = format!("{:>5} {:>5} {} {comm:<17}", r.pid, r.ppid, r.state);
            if wide {
                text.push_str(&r.pgd.map_or("-".to_string(), |g| format!("{g:#x}")));
            }
            let style = if focused && i == selected {
                Style::default().add_modifier(Modifier::REVERSED)
            } else {
                Style::default()
            };
            lines.push(Line::styled(text, style));
        }
        if visible.is_empty() && p.reads > 0 {
            lines.push(Line::raw("(no processes)"));
        }
        let [list, note] = Layout::vertical([Constraint::Min(1), Constraint::Length(note_rows)]).areas(inner);
        Paragraph::new(lines).render(list, buf);
        if let Some(n) = &p.note {
            Paragraph::new(Line::styled(n.clone(), Style::default().fg(Color::Yellow)))
                .wrap(Wrap { trim: true })
                .render(note, buf);
        }
    }

    fn render_log(&self, l: &KernelLog, area: Rect, buf: &mut Buffer) {
        // Scrolled back, that comes first: a narrow pane cuts the title's end.
        let scrolled =
            if l.scroll > 0 { format!(" -{} rows (End follows)", l.scroll) } else { String::new() };
        let mut title = format!("kernel log{scrolled}, l: processes ({} lines", l.lines.len());
        if let Some(t) = l.read_time {
            title.push_str(&format!(", read in {:.1} ms", t.as_secs_f64() * 1e3));
        }
        title.push(')');
        let b = pane_block(title, Pane::KernelLog, self.focus);
        let inner = b.inner(area);
        b.render(area, buf);
        let note_rows = note_rows(l.note.as_deref(), inner.width);
        let [text, note] = Layout::vertical([Constraint::Min(1), Constraint::Length(note_rows)]).areas(inner);
        let mut lines: Vec<Line> =
            l.window(text.height as usize).into_iter().map(|s| Line::raw(s.to_string())).collect();
        if lines.is_empty() && l.reads > 0 {
            lines.push(Line::raw("(the ring holds no record)"));
        }
        Paragraph::new(lines).render(text, buf);
        if let Some(n) = &l.note {
            Paragraph::new(Line::styled(n.clone(), Style::default().fg(Color::Yellow)))
                .wrap(Wrap { trim: true })
                .render(note, buf);
        }
    }

    fn render_registers(&self, g: &GuestView, area: Rect, buf: &mut Buffer) {
        let focused = self.focus == Pane::Registers;
        let block = |title: String, _: bool| pane_block(title, Pane::Registers, self.focus);
        if let GuestState::NotStarted { reason, fix } = &g.state {
            let text = format!("{} did not start on this host.\n\nwhy: {reason}\n\nto fix: {fix}", g.name);
            Paragraph::new(text)
                .wrap(Wrap { trim: false })
                .block(block("not started".into(), focused))
                .render(area, buf);
            return;
        }
        if let Some(c) = &g.container {
            let mib = |b: Option<u64>| {
                b.map_or("not available".into(), |b| format!("{:.1} MiB", b as f64 / (1 << 20) as f64))
            };
            let text = format!(
                "A container has no vCPUs, registers or page tables: its workload is a process tree on the host kernel, isolated by namespaces and cgroups.\n\nruntime {}\ncgroup memory {}\ncgroup CPU {}",
                c.runtime,
                mib(c.memory_bytes),
                c.cpu_ns.map_or("?".into(), |n| format!("{:.3} s", n as f64 / 1e9)),
            );
            Paragraph::new(text)
                .wrap(Wrap { trim: false })
                .block(block("container".into(), focused))
                .render(area, buf);
            return;
        }
        let Some((r, s)) = &g.regs else {
            Paragraph::new("(no registers yet)").block(block("registers".into(), focused)).render(area, buf);
            return;
        };
        let prev = g.prev_regs.unwrap_or(*r);
        let changed = Style::default().fg(Color::Yellow).add_modifier(Modifier::BOLD);
        let reg = |name: &str, v: u64, p: u64| {
            vec![
                Span::raw(format!("{name:>3} ")),
                Span::styled(format!("{v:016x} "), if v != p { changed } else { Style::default() }),
            ]
        };
        let pairs: [RegField; 17] = [
            ("rip", |r| r.rip),
            ("rsp", |r| r.rsp),
            ("rax", |r| r.rax),
            ("rbx", |r| r.rbx),
            ("rcx", |r| r.rcx),
            ("rdx", |r| r.rdx),
            ("rsi", |r| r.rsi),
            ("rdi", |r| r.rdi),
            ("rbp", |r| r.rbp),
            ("r8", |r| r.r8),
            ("r9", |r| r.r9),
            ("r10", |r| r.r10),
            ("r11", |r| r.r11),
            ("r12", |r| r.r12),
            ("r13", |r| r.r13),
            ("r14", |r| r.r14),
            ("r15", |r| r.r15),
        ];
        let mut lines = vec![];
        for chunk in pairs.chunks(usize::from(register_columns(area.width))) {
            let mut spans = vec![];
            for (name, f) in chunk {
                spans.extend(reg(name, f(r), f(&prev)));
            }
            lines.push(Line::from(spans));
        }
        lines.push(Line::raw(format!(
            "rflags {:x} [{}] CPL{} {:?}",
            r.rflags,
            bits(
                r.rflags,
                &[
                    (rflags::CF, "CF"),
                    (1 << 6, "ZF"),
                    (1 << 7, "SF"),
                    (rflags::TF, "TF"),
                    (rflags::IF, "IF"),
                    (rflags::RF, "RF")
                ]
            ),
            s.cpl(),
            s.cpu_mode()
        )));
        lines.push(Line::raw(format!(
            "cr0 {:x} [{}] cr3 {:x}",
            s.cr0,
            bits(s.cr0, &[(cr0::PE, "PE"), (cr0::WP, "WP"), (cr0::PG, "PG")]),
            s.cr3
        )));
        lines.push(Line::raw(format!(
            "cr4 {:x} [{}] efer {:x} [{}]",
            s.cr4,
            bits(
                s.cr4,
                &[(cr4::PAE, "PAE"), (cr4::LA57, "LA57"), (cr4::SMEP, "SMEP"), (cr4::OSFXSR, "OSFXSR")]
            ),
            s.efer,
            bits(s.efer, &[(efer::SCE, "SCE"), (efer::LME, "LME"), (efer::LMA, "LMA"), (efer::NXE, "NXE")])
        )));
        Paragraph::new(lines).block(block("registers (vCPU 0)".into(), focused)).render(area, buf);
    }

    fn render_disasm(&self, g: &GuestView, area: Rect, buf: &mut Buffer) {
        let focused = self.focus == Pane::Disasm;
        let block = |title: String, _: bool| pane_block(title, Pane::Disasm, self.focus);
        if matches!(g.state, GuestState::NotStarted { .. }) {
            Paragraph::new("(no vCPU: the guest did not start)")
                .block(block("disassembly".into(), focused))
                .render(area, buf);
            return;
        }
        if let Some(c) = &g.container {
            let mut lines = vec![Line::raw(format!("{:>7}  command", "pid"))];
            lines.extend(c.processes.iter().map(|(pid, comm)| Line::raw(format!("{pid:>7}  {comm}"))));
            if c.processes.is_empty() {
                lines.push(Line::raw("(no processes)"));
            }
            Paragraph::new(lines)
                .block(block("processes (its PID namespace)".into(), focused))
                .render(area, buf);
            return;
        }
        let rip = g.regs.as_ref().map(|(r, _)| r.rip);
        let lines: Vec<Line> = g
            .disasm
            .iter()
            .enumerate()
            .map(|(i, (insn, sym, bp))| {
                let here = Some(insn.address) == rip;
                let marker = format!("{}{}", if here { "=>" } else { "  " }, if *bp { "●" } else { " " });
                let name = sym.as_deref().map(|s| format!(" <{s}>")).unwrap_or_default();
                let mut style = Style::default();
                if here {
                    style = style.fg(Color::Green).add_modifier(Modifier::BOLD);
                }
                if *bp {
                    style = style.fg(Color::Red);
                }
                if focused && i == self.cursor() {
                    style = style.add_modifier(Modifier::REVERSED);
                }
                Line::styled(format!("{marker}{:x}{name:<1} {}", insn.address, insn.text), style)
            })
            .collect();
        Paragraph::new(lines).block(block("disassembly".into(), focused)).render(area, buf);
    }

    fn render_exits(&self, g: &GuestView, area: Rect, buf: &mut Buffer) {
        let focused = self.focus == Pane::Exits;
        let block = |title: String, _: bool| pane_block(title, Pane::Exits, self.focus);
        if g.container.is_some() {
            Paragraph::new("no VM exits: a container's system calls go straight to the host kernel")
                .block(block("exits".into(), focused))
                .render(area, buf);
            return;
        }
        let title = match g.insn_emulation {
            Some(n) => format!("exits/refresh (insn_emulation {n})"),
            None => "exits/refresh".to_string(),
        };
        let b = block(title, focused);
        let inner = b.inner(area);
        b.render(area, buf);
        let [spark, top] =
            Layout::horizontal([Constraint::Percentage(40), Constraint::Percentage(60)]).areas(inner);
        let data: Vec<u64> = g.exit_rate.iter().copied().collect();
        let start = data.len().saturating_sub(spark.width as usize);
        Sparkline::default()
            .data(&data[start..])
            .style(Style::default().fg(Color::Magenta))
            .render(spark, buf);
        let text: Vec<String> = g.top_exits.iter().take(4).map(|(n, c)| format!("{n}: {c}")).collect();
        let mut lines = vec![Line::from(text.join("  "))];
        // Virtio activity (`:vq DEV Q` decodes a queue).
        lines.extend(
            g.virtio.iter().map(|v| Line::from(Span::styled(v.clone(), Style::default().fg(Color::Cyan)))),
        );
        if let Some(note) = exits_note(g) {
            lines.push(Line::from(Span::styled(note, Style::default().fg(Color::DarkGray))));
        }
        Paragraph::new(lines).wrap(Wrap { trim: true }).render(top, buf);
    }

    fn render_status(&self, area: Rect, buf: &mut Buffer) {
        let line = match &self.prompt {
            Some(Prompt::Command(t)) => format!(":{t}█"),
            Some(Prompt::Goto(t)) => format!("go to (address or symbol, empty = RIP): {t}█"),
            None if self.status.is_empty() => self.mode(),
            None => format!("{} │ {}", self.mode(), self.status),
        };
        Paragraph::new(line).style(Style::default().add_modifier(Modifier::REVERSED)).render(area, buf);
    }
}

/// Rows a pane's note takes at this width: it wraps over up to three (a corrupt list's
/// reason is long).
fn note_rows(note: Option<&str>, width: u16) -> u16 {
    note.map_or(0, |n| (n.chars().count() as u16).div_ceil(width.max(1)).clamp(1, 3))
}

/// A footnote for exit rows that need one where they are shown.
fn exits_note(g: &GuestView) -> Option<String> {
    g.top_exits.iter().any(|(n, _)| n.contains("internal")).then(|| {
        "internal-error: KVM could not run an instruction (on PVM: one its emulator lacks at CPL0); see the fault".into()
    })
}
