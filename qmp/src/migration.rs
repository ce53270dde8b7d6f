//! Live migration over QMP, spelt as QEMU spells it: `migrate {"uri": "unix:PATH" |
//! "tcp:HOST:PORT"}` starts moving the guest to a `vmscope run --incoming URI` and returns at
//! once; `query-migrate` says where it stands with QEMU's `MigrationInfo` names (`status`,
//! `total-time`, `downtime`, `ram.transferred/remaining/total`, …); `migrate_cancel` gives
//! up; each change of status is a `MIGRATION {"status": …}` event. Once it has completed the
//! guest runs on the target and this VM stays stopped in QEMU's `postmigrate` state until
//! `quit`.
//!
//! The QMP thread cannot run the migration (a `Machine` stays on its frontend's thread), so a
//! `migrate` leaves its request here and the frontend that waits for the guest
//! ([`crate::wait_for_guest_or_quit`]) takes it within [`crate::QUIT_POLL`], runs
//! `vmm::migration::migrate` and reports its progress and end back here. A frontend that does
//! not look (a gdb stub, a script session: they have their own `migrate`) leaves it untaken,
//! and the request fails after [`HANDOFF`] with a message saying so.

use crate::protocol::QmpError;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use vmm::migration::{MigrateOptions, MigrationError, Progress, Summary, Uri};

/// How long a `migrate` waits for the frontend to take it.
pub const HANDOFF: Duration = Duration::from_secs(2);

/// QEMU's `MigrationStatus` values that vmscope goes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// No migration was asked for.
    None,
    /// Asked for; the frontend has not started it yet.
    Setup,
    /// Pages are being sent.
    Active,
    /// `migrate_cancel` was asked while active.
    Cancelling,
    /// The guest runs on the target.
    Completed,
    /// It failed; the guest runs on here.
    Failed,
    /// It was cancelled; the guest runs on here.
    Cancelled,
}

impl Status {
    /// QEMU's name.
    pub fn name(self) -> &'static str {
        match self {
            Status::None => "none",
            Status::Setup => "setup",
            Status::Active => "active",
            Status::Cancelling => "cancelling",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }

    fn in_progress(self) -> bool {
        matches!(self, Status::Setup | Status::Active | Status::Cancelling)
    }
}

/// Where the migration stands (what `query-migrate` reports).
#[derive(Debug)]
struct State {
    status: Status,
    uri: String,
    /// Asked for, not yet taken by the frontend.
    pending: Option<(Uri, MigrateOptions)>,
    asked: Option<Instant>,
    started: Option<Instant>,
    /// Milliseconds from the start to the end, once it ended.
    total_ms: Option<u64>,
    downtime_ms: Option<u64>,
    transferred: u64,
    remaining: u64,
    total: u64,
    /// Rounds begun (QEMU's `dirty-sync-count`).
    rounds: u64,
    error: Option<String>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            status: Status::None,
            uri: String::new(),
            pending: None,
            asked: None,
            started: None,
            total_ms: None,
            downtime_ms: None,
            transferred: 0,
            remaining: 0,
            total: 0,
            rounds: 0,
            error: None,
        }
    }
}

/// The migration shared by the QMP thread and the frontend's thread.
#[derive(Default)]
pub struct Migration {
    state: Mutex<State>,
    cancel: Arc<AtomicBool>,
}

/// An event to send: its name and data.
pub(crate) type Event = (&'static str, Option<Value>);

/// A `MIGRATION` event.
fn event(status: Status) -> Event {
    ("MIGRATION", Some(json!({"status": status.name()})))
}

impl Migration {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The status now.
    pub fn status(&self) -> Status {
        self.lock().status
    }

    /// Where the guest went, once it completed.
    pub fn moved_to(&self) -> Option<String> {
        let s = self.lock();
        (s.status == Status::Completed).then(|| s.uri.clone())
    }

    /// `migrate`: checks `uri` and leaves the request for the frontend; `total` is the guest's
    /// RAM in bytes.
    pub(crate) fn request(&self, uri: &str, total: u64, events: &mut Vec<Event>) -> Result<(), QmpError> {
        let parsed: Uri = uri
            .parse()
            .map_err(|e: MigrationError| QmpError::generic(format!("Invalid parameter 'uri': {e}")))?;
        let mut s = self.lock();
        if s.status.in_progress() {
            return Err(QmpError::generic("There's a migration process in progress"));
        }
        if s.status == Status::Completed {
            return Err(QmpError::generic(format!(
                "the guest was already migrated to {}; this VM is in postmigrate state",
                s.uri
            )));
        }
        self.cancel.store(false, Ordering::Release);
        let opts = MigrateOptions { cancel: Some(self.cancel.clone()), ..MigrateOptions::default() };
        *s = State {
            status: Status::Setup,
            uri: parsed.to_string(),
            pending: Some((parsed, opts)),
            asked: Some(Instant::now()),
            total,
            remaining: total,
            ..State::default()
        };
        events.push(event(Status::Setup));
        Ok(())
    }

    /// `migrate_cancel`: asks a migration in progress to stop (the guest runs on here). As in
    /// QEMU, nothing to cancel is not an error.
    pub(crate) fn cancel(&self, events: &mut Vec<Event>) {
        let mut s = self.lock();
        match s.status {
            Status::Setup => {
                s.pending = None;
                s.status = Status::Cancelled;
                s.total_ms = s.asked.map(|t| t.elapsed().as_millis() as u64);
                events.push(event(Status::Cancelling));
                events.push(event(Status::Cancelled));
            }
            Status::Active => {
                self.cancel.store(true, Ordering::Release);
                s.status = Status::Cancelling;
                events.push(event(Status::Cancelling));
            }
            _ => {}
        }
    }

    /// Fails a request nobody took within [`HANDOFF`]; the event to send, if so.
    pub(crate) fn expire(&self) -> Option<Event> {
        let mut s = self.lock();
        if s.status != Status::Setup || s.asked.is_none_or(|t| t.elapsed() < HANDOFF) {
            return None;
        }
        s.pending = None;
        s.status = Status::Failed;
        s.error = Some(
            "nothing took the migration: QMP's migrate needs a guest that vmscope runs without a debugger (a --script/--break session or --gdb drives it here; use their own `migrate URI`)"
                .into(),
        );
        Some(event(Status::Failed))
    }

    /// The frontend takes the request: it is active from now on.
    pub(crate) fn take(&self) -> Option<((Uri, MigrateOptions), Event)> {
        let mut s = self.lock();
        let req = s.pending.take()?;
        s.status = Status::Active;
        s.started = Some(Instant::now());
        Some((req, event(Status::Active)))
    }

    /// Progress from the sending side.
    pub(crate) fn progress(&self, p: &Progress) {
        let mut s = self.lock();
        s.transferred = p.bytes;
        s.remaining = p.pages_left * vmm::migration::wire::PAGE as u64;
        s.rounds = u64::from(p.round) + 1;
    }

    /// The end: the events to send.
    pub(crate) fn finish(&self, result: Result<&Summary, &MigrationError>) -> Vec<Event> {
        let mut s = self.lock();
        s.pending = None;
        s.total_ms = s.started.map(|t| t.elapsed().as_millis() as u64);
        match result {
            Ok(summary) => {
                s.status = Status::Completed;
                s.total_ms = Some(summary.total_us / 1000);
                s.downtime_ms = Some(summary.downtime_us / 1000);
                s.transferred = summary.bytes;
                s.remaining = 0;
                s.rounds = summary.rounds.len() as u64;
                // QEMU's source stops its VM for the last round and stays stopped.
                vec![("STOP", None), event(Status::Completed)]
            }
            Err(MigrationError::Cancelled { .. }) => {
                s.status = Status::Cancelled;
                vec![event(Status::Cancelled)]
            }
            Err(e) => {
                s.status = Status::Failed;
                let mut text = e.to_string();
                let mut src = std::error::Error::source(e);
                while let Some(c) = src {
                    text.push_str(": ");
                    text.push_str(&c.to_string());
                    src = c.source();
                }
                s.error = Some(format!("{text}; the guest runs on here"));
                vec![event(Status::Failed)]
            }
        }
    }

    /// `query-migrate`'s answer: `{}` before any migration, as QEMU's.
    pub(crate) fn query(&self) -> Value {
        let s = self.lock();
        if s.status == Status::None {
            return json!({});
        }
        let page = vmm::migration::wire::PAGE as u64;
        let total_time = s.total_ms.or_else(|| s.asked.map(|t| t.elapsed().as_millis() as u64)).unwrap_or(0);
        let mut info = json!({"status": s.status.name(), "total-time": total_time});
        if s.status != Status::Setup {
            let mbps = if total_time > 0 {
                s.transferred as f64 * 8.0 / 1e6 / (total_time as f64 / 1e3)
            } else {
                0.0
            };
            info["ram"] = json!({
                "transferred": s.transferred,
                "remaining": s.remaining,
                "total": s.total,
                "page-size": page,
                "dirty-sync-count": s.rounds,
                "mbps": mbps,
            });
        }
        if let Some(d) = s.downtime_ms {
            info["downtime"] = json!(d);
        }
        if let Some(e) = &s.error {
            info["error-desc"] = json!(e);
        }
        info
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_goes_setup_active_cancelled_and_bad_ones_are_refused() {
        let m = Migration::default();
        assert_eq!(m.query(), json!({}));
        let mut ev = vec![];
        let e = m.request("ftp:x", 1 << 20, &mut ev).unwrap_err();
        assert!(e.desc.contains("Invalid parameter 'uri'") && e.desc.contains("ftp:x"), "{}", e.desc);
        m.request("unix:/tmp/x.sock", 1 << 20, &mut ev).unwrap();
        assert_eq!(ev, vec![event(Status::Setup)]);
        assert_eq!(m.query()["status"], "setup");
        assert!(m.request("unix:/tmp/y", 1, &mut ev).unwrap_err().desc.contains("in progress"));
        let ((uri, opts), e) = m.take().unwrap();
        assert_eq!(uri.to_string(), "unix:/tmp/x.sock");
        assert_eq!(e, event(Status::Active));
        m.progress(&Progress { round: 1, bytes: 8192, pages_left: 3, pages_in_round: 5, stopped: false });
        let q = m.query();
        assert_eq!(
            (q["ram"]["transferred"].as_u64(), q["ram"]["remaining"].as_u64()),
            (Some(8192), Some(3 * 4096))
        );
        assert_eq!(q["ram"]["total"], 1 << 20);
        let mut ev = vec![];
        m.cancel(&mut ev);
        assert_eq!(m.status(), Status::Cancelling);
        assert!(opts.cancel.unwrap().load(Ordering::Acquire), "the sender sees the cancel");
        let err = MigrationError::Cancelled { uri: "unix:/tmp/x.sock".into() };
        assert_eq!(m.finish(Err(&err)), vec![event(Status::Cancelled)]);
        assert_eq!(m.query()["status"], "cancelled");
        // A new migration may start after a cancelled one.
        m.request("tcp:127.0.0.1:4444", 1 << 20, &mut ev).unwrap();
    }

    #[test]
    fn an_untaken_request_fails_with_a_reason() {
        let m = Migration::default();
        m.request("unix:/tmp/x.sock", 4096, &mut vec![]).unwrap();
        assert!(m.expire().is_none());
        m.lock().asked = Some(Instant::now() - HANDOFF);
        assert_eq!(m.expire(), Some(event(Status::Failed)));
        let q = m.query();
        assert_eq!(q["status"], "failed");
        assert!(q["error-desc"].as_str().unwrap().contains("without a debugger"), "{q}");
        assert!(m.take().is_none());
    }
}
