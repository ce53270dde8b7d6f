//! The runtime side of the processes and kernel log panes: a Linux guest's task list and
//! printk ring read from its memory with the structure offsets of its vmlinux
//! (`inspect::linux`), the way `ps` and `dmesg` in a session read them. The vmlinux's DWARF takes a second or more to read, so a thread reads it while
//! the pane says so; the list itself is read on the UI thread, bounded
//! ([`MAX_SHOWN_TASKS`]) and at most every [`READ_EVERY`] while the guest runs — never while
//! it is paused unless asked (`r`), since nothing changes then. The log is read the same
//! way, with its own clock, on a thread of its own ([`TaskReader::refresh_log`]).

use crate::kernel_log::KernelLog;
use crate::processes::{ProcessRow, Processes};
use inspect::linux::{commands, dmesg, tasks, Kernel, KernelMemory};
use inspect::mem::GuestPhysMemory;
use inspect::paging::PagingContext;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vmm::vstate::memory::{GuestMemory, PhysView};

/// How often the list is read while the guest runs.
pub const READ_EVERY: Duration = Duration::from_secs(1);
/// The most tasks one read visits: far more than a pane shows, and a garbage or looping
/// list costs at most this many reads of guest memory before the pane says why it stopped.
pub const MAX_SHOWN_TASKS: usize = 4096;
/// A kernel-log read that took `t` waits `t * LOG_BACKOFF` (at least [`READ_EVERY`]) before
/// the next.
pub const LOG_BACKOFF: u32 = 10;

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
    /// When the kernel log was last read, and how long that took.
    last_log_read: Option<(Instant, Duration)>,
    /// The kernel log read in progress (on its thread): the records or why not, and the
    /// read's duration.
    log_read: Option<Receiver<LogRead>>,
}

/// What a kernel-log read answers: the records (or why not) and how long it took.
type LogRead = (Result<Vec<dmesg::Record>, String>, Duration);

/// Puts a finished read into the pane.
fn apply_log_read(log: &mut KernelLog, read: Result<Vec<dmesg::Record>, String>, took: Duration) {
    log.read_time = Some(took);
    log.note = match read {
        Ok(records) => {
            log.push_records(&records);
            None
        }
        Err(e) if log.lines.is_empty() => {
            log.reads += 1;
            Some(format!("no kernel log yet (the kernel may still be booting): {e}"))
        }
        Err(e) => {
            log.reads += 1;
            Some(format!("{e}; showing the lines read before"))
        }
    };
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
        Self { kernel, last_read: None, last_log_read: None, log_read: None }
    }

    /// The kernel once it is read; `Err` with the reason when it cannot be.
    /// The kernel's offsets, or `None` with `note` saying why not yet (`missing` heads the
    /// reason when the vmlinux could not be read).
    fn kernel_or_note(&mut self, note: &mut Option<String>, missing: &str) -> Option<Arc<Kernel>> {
        match self.kernel() {
            Ok(Some(k)) => Some(k),
            Ok(None) => {
                *note = Some("reading the vmlinux's DWARF (structure offsets)…".into());
                None
            }
            Err(e) => {
                *note = Some(format!("{missing}: {e}"));
                None
            }
        }
    }

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
        let Some(kernel) = self.kernel_or_note(&mut p.note, "no task list") else { return };
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

    /// Reads the printk ring into the log pane `log` when it is due, as [`Self::refresh`]
    /// does for the task list, but on a thread of its own (`kernel-log`, one read at a
    /// time): a ring is up to `1 << 24` descriptors and 1 GiB of text before the reader calls
    /// it corrupt, and a hostile one must not freeze the screen. The next read starts
    /// [`READ_EVERY`] after the last one began, and never sooner than [`LOG_BACKOFF`] times
    /// its duration. A corrupt ring keeps the lines read before it and says why.
    pub fn refresh_log(
        &mut self,
        log: &mut KernelLog,
        mem: &GuestMemory,
        ctx: Option<PagingContext>,
        running: bool,
        asked: bool,
    ) {
        if let Some(rx) = &self.log_read {
            match rx.try_recv() {
                Ok((read, took)) => {
                    self.log_read = None;
                    if let Some((_, last)) = &mut self.last_log_read {
                        *last = took;
                    }
                    apply_log_read(log, read, took);
                }
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => {
                    self.log_read = None;
                    log.note = Some("the kernel log reader ended without an answer".into());
                }
            }
        }
        let Some(kernel) = self.kernel_or_note(&mut log.note, "no kernel log") else { return };
        let due = asked
            || running
                && self
                    .last_log_read
                    .is_none_or(|(at, took)| at.elapsed() >= READ_EVERY.max(took * LOG_BACKOFF));
        if !due {
            if !running && log.reads > 0 && log.note.is_none() {
                log.note = Some("not running: the log as of the last read (r reads it now)".into());
            }
            return;
        }
        let (tx, rx) = mpsc::channel();
        let mem = mem.clone();
        let spawned = std::thread::Builder::new().name("kernel-log".into()).spawn(move || {
            let started = Instant::now();
            let view = PhysView(&mem);
            let k = match ctx {
                Some(c) => KernelMemory::with_paging(&view, &kernel, &c),
                None => KernelMemory::new(&view, &kernel, 0),
            };
            let read = dmesg::records(&k).map_err(|e| chain(&e));
            let _ = tx.send((read, started.elapsed()));
        });
        self.last_log_read = Some((Instant::now(), self.last_log_read.map_or(Duration::ZERO, |(_, t)| t)));
        match spawned {
            Ok(_) => self.log_read = Some(rx),
            Err(e) => log.note = Some(format!("cannot start the thread that reads the kernel log: {e}")),
        }
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
