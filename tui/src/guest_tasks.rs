//! The runtime side of the processes pane: a Linux guest's task list read from its memory
//! with the structure offsets of its vmlinux (`inspect::linux`), the way `ps` in a session
//! reads it. The vmlinux's DWARF takes a second or more to read, so a thread reads it while
//! the pane says so; the list itself is read on the UI thread, bounded
//! ([`MAX_SHOWN_TASKS`]) and at most every [`READ_EVERY`] while the guest runs — never while
//! it is paused unless asked (`r`), since nothing changes then.

use crate::processes::{ProcessRow, Processes};
use inspect::linux::{commands, tasks, Kernel, KernelMemory};
use inspect::mem::GuestPhysMemory;
use inspect::paging::PagingContext;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the list is read while the guest runs.
pub const READ_EVERY: Duration = Duration::from_secs(1);
/// The most tasks one read visits: far more than a pane shows, and a garbage or looping
/// list costs at most this many reads of guest memory before the pane says why it stopped.
pub const MAX_SHOWN_TASKS: usize = 4096;

/// The vmlinux, as far as it has been read.
enum KernelState {
    Loading(Receiver<Result<Arc<Kernel>, String>>),
    Ready(Arc<Kernel>),
    Failed(String),
}

/// Reads one guest's task list for its processes pane.
pub struct TaskReader {
    kernel: KernelState,
    last_read: Option<Instant>,
}

/// The text of an error and its causes, `: `-joined.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(&format!(": {c}"));
        cause = c.source();
    }
    s
}

impl TaskReader {
    /// Starts reading `vmlinux` (None: the cached build of vmscope's Linux, the kernel
    /// `vmscope tui linux` boots) on a thread of its own. `init_task` is where the guest's
    /// own symbols put it: a vmlinux that disagrees is not this guest's kernel, and is refused
    /// rather than read with the wrong offsets.
    pub fn new(vmlinux: Option<PathBuf>, init_task: Option<u64>) -> Self {
        let (tx, rx) = mpsc::channel();
        let spawned = std::thread::Builder::new().name("vmlinux-dwarf".into()).spawn(move || {
            let _ = tx.send(load(vmlinux, init_task));
        });
        let kernel = match spawned {
            Ok(_) => KernelState::Loading(rx),
            Err(e) => KernelState::Failed(format!("cannot start the thread that reads the vmlinux: {e}")),
        };
        Self { kernel, last_read: None }
    }

    /// The kernel once it is read; `Err` with the reason when it cannot be.
    fn kernel(&mut self) -> Result<Option<Arc<Kernel>>, String> {
        if let KernelState::Loading(rx) = &self.kernel {
            self.kernel = match rx.try_recv() {
                Ok(Ok(k)) => KernelState::Ready(k),
                Ok(Err(e)) => KernelState::Failed(e),
                Err(TryRecvError::Empty) => return Ok(None),
                Err(TryRecvError::Disconnected) => KernelState::Failed("the vmlinux reader ended".into()),
            };
        }
        match &self.kernel {
            KernelState::Ready(k) => Ok(Some(k.clone())),
            KernelState::Failed(e) => Err(e.clone()),
            KernelState::Loading(_) => Ok(None),
        }
    }

    /// Reads the list into `p` when it is due: `asked` (the `r` key), or the guest is
    /// `running` and the last read is [`READ_EVERY`] old. `ctx` is a vCPU's paging context
    /// (its CR3 finds where the kernel was loaded; `None`: at its link address).
    pub fn refresh(
        &mut self,
        p: &mut Processes,
        mem: &dyn GuestPhysMemory,
        ctx: Option<PagingContext>,
        running: bool,
        asked: bool,
    ) {
        let kernel = match self.kernel() {
            Ok(Some(k)) => k,
            Ok(None) => {
                p.note = Some("reading the vmlinux's DWARF (structure offsets)…".into());
                return;
            }
            Err(e) => {
                p.note = Some(format!("no task list: {e}"));
                return;
            }
        };
        let due = asked || running && self.last_read.is_none_or(|t| t.elapsed() >= READ_EVERY);
        if !due {
            if !running && p.reads > 0 && p.note.is_none() {
                p.note = Some("not running: the list as of the last read (r reads it now)".into());
            }
            return;
        }
        let started = Instant::now();
        self.last_read = Some(started);
        let k = match ctx {
            Some(c) => KernelMemory::with_paging(mem, &kernel, &c),
            None => KernelMemory::new(mem, &kernel, 0),
        };
        let w = tasks::walk(&k, MAX_SHOWN_TASKS);
        let note = w.error.map(|e| {
            if w.tasks.len() <= 1 {
                format!("no task list yet (the kernel may still be booting): {e}")
            } else {
                format!("{e}; showing the {} tasks read before it", w.tasks.len())
            }
        });
        p.set_rows(w.tasks.iter().map(ProcessRow::from).collect(), note);
        p.read_time = Some(started.elapsed());
    }

    /// Runs `line` if it is a Linux command (`ps`, `dmesg`, `uname`, `pt --pid`,
    /// `mappings --pid`): `None` if it is not one. Never waits for the vmlinux: while it is
    /// being read, the answer says so.
    pub fn command(
        &mut self,
        line: &str,
        mem: &dyn GuestPhysMemory,
        ctx: PagingContext,
    ) -> Option<Result<String, String>> {
        let cmd = match commands::parse(line)? {
            Ok(c) => c,
            Err(e) => return Some(Err(e.to_string())),
        };
        Some(match self.kernel() {
            Ok(Some(k)) => commands::execute(&cmd, &KernelMemory::with_paging(mem, &k, &ctx), &ctx)
                .map(|r| r.text)
                .map_err(|e| e.to_string()),
            Ok(None) => Err("still reading the vmlinux's DWARF: try again in a moment".into()),
            Err(e) => Err(e),
        })
    }
}

/// Reads the vmlinux (on the reader's thread).
fn load(vmlinux: Option<PathBuf>, init_task: Option<u64>) -> Result<Arc<Kernel>, String> {
    let path = match vmlinux {
        Some(p) => p,
        None => guests::linux::cached().map(|a| a.vmlinux).ok_or_else(|| {
            "no vmlinux with DWARF for this guest (vmscope's Linux is not built: vmscope guests build linux)"
                .to_string()
        })?,
    };
    let k = Kernel::load_cached(&path).map_err(|e| chain(&e))?;
    match init_task {
        Some(want) if want != k.globals.init_task => Err(format!(
            "{} is not this guest's kernel: its init_task is at {:#x}, the guest's symbols say {want:#x}",
            path.display(),
            k.globals.init_task
        )),
        _ => Ok(k),
    }
}
