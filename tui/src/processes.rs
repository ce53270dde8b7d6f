//! The processes pane of a Linux guest: its task list as vmscope reads it from guest memory
//! (no agent in the guest), what the person selected in it, and what its keys ask for. Pure
//! state: the runtime ([`crate::guest_tasks`]) fills it, `ui.rs` draws it.

use crate::app::Key;
use inspect::linux::Task;

/// One row: a task as `ps` would show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessRow {
    /// Process id (the thread-group leader's pid).
    pub pid: i64,
    /// Parent's process id.
    pub ppid: i64,
    /// `ps`'s state letter.
    pub state: char,
    /// `comm`.
    pub comm: String,
    /// Guest-physical address of its top-level page table (`mm->pgd`); `None` for a kernel
    /// thread, which has no address space of its own.
    pub pgd: Option<u64>,
}

impl From<&Task> for ProcessRow {
    fn from(t: &Task) -> Self {
        Self { pid: t.tgid, ppid: t.ppid, state: t.state, comm: t.comm.clone(), pgd: t.pgd }
    }
}

impl ProcessRow {
    /// A kernel thread (no `mm`): `ps` shows it as `[comm]`.
    pub fn is_kernel_thread(&self) -> bool {
        self.pgd.is_none()
    }
}

/// What a key in the processes pane asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProcessKey {
    /// Handled here (selection, filter): nothing for the runtime.
    Done,
    /// Show this process's page tables and mappings.
    PageTables(i64),
    /// Read the task list now (also while the guest is paused).
    ReadNow,
    /// Not a key of this pane.
    NotMine,
}

/// The pane's state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Processes {
    /// Every task of the last read, in task-list order.
    pub rows: Vec<ProcessRow>,
    /// Something the person should know about the list: it is being loaded, it stopped at
    /// a corrupt entry, it is as old as the pause.
    pub note: Option<String>,
    /// Kernel threads are listed too (`k` toggles; hidden at first, so the guest's own
    /// processes fit a small pane).
    pub show_kernel_threads: bool,
    /// The selected process (kept across reads while it lives).
    pub selected_pid: Option<i64>,
    /// Reads so far (0: nothing read yet).
    pub reads: u64,
    /// How long the last read took (guest memory only: no vCPU is stopped for it).
    pub read_time: Option<std::time::Duration>,
}

impl Processes {
    /// The rows shown, with the filter applied.
    pub fn visible(&self) -> Vec<&ProcessRow> {
        self.rows.iter().filter(|r| self.show_kernel_threads || !r.is_kernel_thread()).collect()
    }

    /// How many rows the filter hides.
    pub fn hidden(&self) -> usize {
        self.rows.len() - self.visible().len()
    }

    /// The selected row's index among the visible ones (the first when the selected process
    /// is gone or hidden).
    pub fn selected_row(&self) -> Option<usize> {
        let visible = self.visible();
        if visible.is_empty() {
            return None;
        }
        Some(self.selected_pid.and_then(|p| visible.iter().position(|r| r.pid == p)).unwrap_or(0))
    }

    /// Replaces the rows with a new read; the selection stays on its process if it lives.
    pub fn set_rows(&mut self, rows: Vec<ProcessRow>, note: Option<String>) {
        self.rows = rows;
        self.note = note;
        self.reads += 1;
    }

    fn select(&mut self, index: usize) {
        self.selected_pid = self.visible().get(index).map(|r| r.pid);
    }

    /// Handles a key while the pane has focus.
    pub fn on_key(&mut self, key: Key) -> ProcessKey {
        let n = self.visible().len();
        let at = self.selected_row().unwrap_or(0);
        match key {
            Key::Up => self.select(at.saturating_sub(1)),
            Key::Down => self.select((at + 1).min(n.saturating_sub(1))),
            Key::PageUp => self.select(at.saturating_sub(10)),
            Key::PageDown => self.select((at + 10).min(n.saturating_sub(1))),
            Key::Home => self.select(0),
            Key::End => self.select(n.saturating_sub(1)),
            Key::Char('k') => {
                let keep = self.selected_row().and_then(|i| self.visible().get(i).map(|r| r.pid));
                self.show_kernel_threads = !self.show_kernel_threads;
                self.selected_pid = keep;
            }
            Key::Char('r') => return ProcessKey::ReadNow,
            Key::Enter | Key::Char('p') => {
                return match self.selected_row().and_then(|i| self.visible().get(i).map(|r| r.pid)) {
                    Some(pid) => ProcessKey::PageTables(pid),
                    None => ProcessKey::Done,
                };
            }
            _ => return ProcessKey::NotMine,
        }
        ProcessKey::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pid: i64, ppid: i64, comm: &str, user: bool) -> ProcessRow {
        ProcessRow { pid, ppid, state: 'S', comm: comm.into(), pgd: user.then_some(0x1000 * pid as u64) }
    }

    fn list() -> Processes {
        let mut p = Processes::default();
        p.set_rows(
            vec![
                row(0, 0, "swapper/0", false),
                row(1, 0, "init", true),
                row(2, 0, "kthreadd", false),
                row(40, 1, "sh", true),
                row(41, 40, "sleep", true),
            ],
            None,
        );
        p
    }

    #[test]
    fn kernel_threads_are_hidden_until_asked_for() {
        let mut p = list();
        let pids: Vec<i64> = p.visible().iter().map(|r| r.pid).collect();
        assert_eq!(pids, [1, 40, 41]);
        assert_eq!(p.hidden(), 2);
        assert_eq!(p.on_key(Key::Char('k')), ProcessKey::Done);
        assert_eq!(p.visible().len(), 5);
        assert_eq!(p.hidden(), 0);
    }

    #[test]
    fn the_selection_moves_and_follows_its_process_across_reads() {
        let mut p = list();
        assert_eq!(p.on_key(Key::Enter), ProcessKey::PageTables(1), "the first row at first");
        p.on_key(Key::Down);
        p.on_key(Key::Down);
        p.on_key(Key::Down);
        assert_eq!(p.on_key(Key::Char('p')), ProcessKey::PageTables(41), "stops at the last row");
        // A new process before it: the selection stays on sleep.
        let mut rows = p.rows.clone();
        rows.insert(3, row(39, 1, "getty", true));
        p.set_rows(rows, None);
        assert_eq!(p.on_key(Key::Enter), ProcessKey::PageTables(41));
        // Showing kernel threads keeps it too; when sleep ends the first row is selected.
        p.on_key(Key::Char('k'));
        assert_eq!(p.on_key(Key::Enter), ProcessKey::PageTables(41));
        let rows: Vec<ProcessRow> = p.rows.iter().filter(|r| r.pid != 41).cloned().collect();
        p.set_rows(rows, Some("note".into()));
        assert_eq!(p.selected_row(), Some(0));
        assert_eq!(p.on_key(Key::Home), ProcessKey::Done);
        assert_eq!(p.on_key(Key::Char('r')), ProcessKey::ReadNow);
        assert_eq!(p.on_key(Key::Char('s')), ProcessKey::NotMine, "debugger keys go on");
        assert_eq!(p.reads, 3);
    }

    #[test]
    fn an_empty_list_selects_nothing() {
        let mut p = Processes::default();
        assert_eq!(p.selected_row(), None);
        assert_eq!(p.on_key(Key::Down), ProcessKey::Done);
        assert_eq!(p.on_key(Key::Enter), ProcessKey::Done);
    }
}
