//! `:migrate URI [--downtime-ms N] [--max-rounds N]` from the TUI: the focused guest moves to
//! a `vmscope run --incoming URI` while the screen goes on. `vmm::migration::migrate` blocks
//! for the whole move (rounds of pages, then the hold and the hand-over), so it runs on a
//! thread of its own that owns the [`Machine`] meanwhile and sends back its progress and, at
//! the end, the machine with the outcome. The runtime polls [`Moving`] every frame.
//!
//! On success the guest runs on the target and the machine here stays held for good (its
//! `Migrated` is forgotten, as `vmscope run`'s session does before it ends the process): the
//! guest must never run twice. On failure the guest runs on here, as before.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use vmm::machine::Machine;
use vmm::migration::{MigrateOptions, Progress, Summary, Uri};

/// The TUI's own word for giving up a move in progress (QEMU's monitor spells it so too).
pub const CANCEL_COMMAND: &str = "migrate_cancel";

/// What the migration thread reports.
enum Update {
    Progress(Progress),
    Done(Box<Machine>, Result<Summary, String>),
}

/// How a move ended: the machine comes back either way.
pub enum Finished {
    /// The guest runs on the target; the machine here is held for good.
    Moved {
        /// The held machine (dropped when the TUI ends).
        machine: Box<Machine>,
        /// The source's report.
        summary: Box<Summary>,
    },
    /// The guest runs on here.
    Failed {
        /// The machine, running.
        machine: Box<Machine>,
        /// Why, with its causes.
        reason: String,
    },
}

/// A move in progress.
pub struct Moving {
    /// Where to (as the person typed it, normalized).
    pub uri: String,
    /// The latest progress report.
    pub progress: Option<Progress>,
    /// A report came since [`Moving::take_fresh`] was last asked.
    fresh: bool,
    cancel: Arc<AtomicBool>,
    updates: Receiver<Update>,
    thread: Option<JoinHandle<()>>,
}

/// Starts moving `machine`'s guest to `uri` on a thread of its own. The guest is resumed
/// first if it was stopped: the target will run it.
pub fn start(machine: Machine, uri: Uri, mut opts: MigrateOptions) -> Result<Moving, (Box<Machine>, String)> {
    let cancel = Arc::new(AtomicBool::new(false));
    opts.cancel = Some(cancel.clone());
    if let Err(e) = machine.resume_all() {
        return Err((Box::new(machine), format!("cannot resume the guest before the move: {e}")));
    }
    let (tx, updates) = mpsc::channel();
    // The machine goes to the thread once it runs, so a thread that cannot start leaves it here.
    let (give, take) = mpsc::channel::<(Machine, Uri, MigrateOptions)>();
    let spawned = std::thread::Builder::new().name("tui-migrate".into()).spawn(move || {
        let Ok((machine, uri, opts)) = take.recv() else { return };
        let result = {
            let progress = tx.clone();
            match vmm::migration::migrate(&machine, &uri, &opts, &mut |p| {
                let _ = progress.send(Update::Progress(*p));
            }) {
                Ok(done) => {
                    let summary = done.summary.clone();
                    // The vCPUs stay held for as long as this process lives.
                    std::mem::forget(done);
                    Ok(summary)
                }
                Err(e) => Err(crate::guest_tasks::chain(&e)),
            }
        };
        let _ = tx.send(Update::Done(Box::new(machine), result));
    });
    let thread = match spawned {
        Ok(t) => t,
        Err(e) => return Err((Box::new(machine), format!("cannot start the migration thread: {e}"))),
    };
    let name = uri.to_string();
    if let Err(mpsc::SendError((machine, _, _))) = give.send((machine, uri, opts)) {
        return Err((Box::new(machine), "the migration thread ended before it started".into()));
    }
    Ok(Moving { uri: name, progress: None, fresh: true, cancel, updates, thread: Some(thread) })
}

impl Moving {
    /// Takes what the thread reported since the last call; `Some` once the move ended.
    pub fn poll(&mut self) -> Option<Finished> {
        loop {
            match self.updates.try_recv() {
                Ok(Update::Progress(p)) => {
                    self.progress = Some(p);
                    self.fresh = true;
                }
                Ok(Update::Done(machine, result)) => {
                    if let Some(t) = self.thread.take() {
                        let _ = t.join();
                    }
                    return Some(match result {
                        Ok(summary) => Finished::Moved { machine, summary: Box::new(summary) },
                        Err(reason) => Finished::Failed { machine, reason },
                    });
                }
                Err(TryRecvError::Empty) => return None,
                Err(TryRecvError::Disconnected) => {
                    // The thread ended without an answer (it panicked): the machine went with it.
                    self.thread.take();
                    return None;
                }
            }
        }
    }

    /// Asks the move to give up (looked at after every frame of pages and before the
    /// hand-over); the guest then runs on here.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Release);
    }

    /// Whether a progress report came since the last call.
    pub fn take_fresh(&mut self) -> bool {
        std::mem::take(&mut self.fresh)
    }

    /// Whether the thread ended without handing the machine back (it panicked).
    pub fn lost(&self) -> bool {
        self.thread.is_none()
    }

    /// One line for the status bar.
    pub fn status_line(&self, guest: &str) -> String {
        status_line(guest, &self.uri, self.progress.as_ref())
    }
}

impl Drop for Moving {
    /// The TUI is ending with a move in progress: give up and wait for the thread, so the
    /// guest is never left half-handed-over (bounded by the migration's own timeouts).
    fn drop(&mut self) {
        self.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `unikernel → unix:/tmp/m.sock: round 1 (pre-copy), 120/300 pages, 3 MiB sent`.
pub fn status_line(guest: &str, uri: &str, p: Option<&Progress>) -> String {
    let Some(p) = p else {
        return format!("{guest} → {uri}: connecting ({CANCEL_COMMAND} gives up)");
    };
    let what = if p.stopped { "stop-and-copy, guest held" } else { "pre-copy, guest running" };
    format!(
        "{guest} → {uri}: round {} ({what}), {}/{} pages, {} MiB sent ({CANCEL_COMMAND} gives up)",
        p.round,
        p.pages_in_round.saturating_sub(p.pages_left),
        p.pages_in_round,
        p.bytes >> 20
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_says_where_and_how_far() {
        assert_eq!(
            status_line("unikernel", "unix:/tmp/m.sock", None),
            "unikernel → unix:/tmp/m.sock: connecting (migrate_cancel gives up)"
        );
        let p = Progress { round: 1, bytes: 3 << 20, pages_left: 180, pages_in_round: 300, stopped: false };
        assert_eq!(
            status_line("linux", "tcp:127.0.0.1:4444", Some(&p)),
            "linux → tcp:127.0.0.1:4444: round 1 (pre-copy, guest running), 120/300 pages, 3 MiB sent (migrate_cancel gives up)"
        );
        let held = Progress { stopped: true, ..p };
        assert!(status_line("linux", "unix:/x", Some(&held)).contains("stop-and-copy, guest held"));
    }
}
