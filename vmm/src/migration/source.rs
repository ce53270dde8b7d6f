//! The sending side: pre-copy rounds under the dirty-page log, then stop-and-copy.

use super::dirty_log::DirtyLog;
use super::uri::{Stream, Uri};
use super::wire::{self, Tag, MAX_PAGES_PER_FRAME, PAGE};
use super::MigrationError;
use crate::machine::Machine;
use crate::snapshot::{capture, check_supported, Hold};
use crate::vstate::memory::mem_size;
use inspect::Gpa;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vm_memory::{Bytes, GuestAddress};

/// How to migrate.
#[derive(Clone, Debug)]
pub struct MigrateOptions {
    /// Stop iterating once the pages left would take at most this long to send at the rate
    /// measured so far (QEMU's `downtime-limit`; its default is 300 ms).
    pub downtime: Duration,
    /// Stop iterating after this many rounds after the first full pass even if the guest
    /// dirties memory faster than it can be sent; the rest goes while the guest is held.
    pub max_rounds: u32,
    /// How long to wait for the target to connect, take a frame or answer.
    pub timeout: Duration,
    /// Set by another thread to give up (QMP's `migrate_cancel`): looked at after every
    /// frame of pages and before the guest is handed over; the guest then runs on here.
    pub cancel: Option<Arc<AtomicBool>>,
}

impl Default for MigrateOptions {
    fn default() -> Self {
        Self {
            downtime: Duration::from_millis(20),
            max_rounds: 30,
            timeout: Duration::from_secs(30),
            cancel: None,
        }
    }
}

/// One pass over memory.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Round {
    /// Pages sent.
    pub pages: u64,
    /// Bytes put on the stream.
    pub bytes: u64,
    /// How long it took, in microseconds.
    pub us: u64,
}

/// What a migration did (the source's report).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    /// Where the guest went.
    pub uri: String,
    /// The host kind of the source.
    pub host_kind: String,
    /// Guest RAM in bytes.
    pub mem_bytes: u64,
    /// From connecting to the target's go-ahead, in microseconds.
    pub total_us: u64,
    /// From holding the vCPUs here to the guest being let run there, in microseconds.
    pub downtime_us: u64,
    /// Of which the target's restore (building the paused machine), in microseconds.
    pub target_restore_us: u64,
    /// Round 0 (every non-zero page), the dirty-page rounds, then the stop-and-copy round.
    pub rounds: Vec<Round>,
    /// Bytes put on the stream in all.
    pub bytes: u64,
    /// Whether the pages left fit the downtime budget before the round limit.
    pub converged: bool,
    /// The downtime budget in milliseconds and the round limit.
    pub downtime_budget_ms: u64,
    /// The round limit.
    pub max_rounds: u32,
    /// Why iterating stopped, in words.
    pub why_stopped: String,
    /// State the source host refused to give.
    pub refused: Vec<String>,
}

/// Progress, reported after every frame of pages.
#[derive(Clone, Copy, Debug, Default)]
pub struct Progress {
    /// The round (0: the full pass).
    pub round: u32,
    /// Bytes sent so far.
    pub bytes: u64,
    /// Pages left in this round.
    pub pages_left: u64,
    /// Pages in this round.
    pub pages_in_round: u64,
    /// The guest is held (stop-and-copy).
    pub stopped: bool,
}

/// A finished migration: the guest runs on the target. The vCPUs here stay held for as
/// long as this lives; the caller ends the process (the guest must never run twice).
pub struct Migrated<'a> {
    /// The report.
    pub summary: Summary,
    _hold: Hold<'a>,
}

/// What the target said once it had built the machine.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct Loaded {
    pub restore_us: u64,
    pub notes: Vec<String>,
}

/// What the source announces.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Hello {
    pub vmscope_version: String,
    pub host_kind: String,
    pub guest_name: String,
    pub mem_bytes: u64,
    pub vcpus: usize,
}

struct Sender<'m, 'p> {
    machine: &'m Machine,
    stream: Stream,
    uri: Uri,
    buf: Vec<u8>,
    batch: Vec<(u64, Vec<u8>)>,
    bytes: u64,
    progress: &'p mut dyn FnMut(&Progress),
    now: Progress,
    cancel: Option<Arc<AtomicBool>>,
}

impl Sender<'_, '_> {
    /// `Cancelled` once someone asked to give up.
    fn check_cancel(&self) -> Result<(), MigrationError> {
        match &self.cancel {
            Some(c) if c.load(Ordering::Acquire) => {
                Err(MigrationError::Cancelled { uri: self.uri.to_string() })
            }
            _ => Ok(()),
        }
    }

    fn frame(&mut self, tag: Tag, payload: &[u8]) -> Result<(), MigrationError> {
        wire::write_frame(&mut self.stream, tag, payload)
            .map_err(MigrationError::io("the migration target stopped taking data at", &self.uri))?;
        self.bytes += 8 + payload.len() as u64;
        Ok(())
    }

    /// Queues one page (read now, with vmscope's int3 bytes replaced by the guest's own).
    fn page(&mut self, n: u64, bytes: &[u8]) -> Result<(), MigrationError> {
        let mut p = bytes.to_vec();
        self.machine.breakpoints().hide_in(Gpa(n * PAGE as u64), &mut p);
        self.batch.push((n, p));
        if self.batch.len() == MAX_PAGES_PER_FRAME {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), MigrationError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let refs: Vec<(u64, &[u8])> = self.batch.iter().map(|(n, b)| (*n, b.as_slice())).collect();
        let mut buf = std::mem::take(&mut self.buf);
        wire::encode_pages(&mut buf, &refs);
        let r = self.frame(Tag::Pages, &buf);
        self.buf = buf;
        r?;
        self.now.pages_left = self.now.pages_left.saturating_sub(self.batch.len() as u64);
        self.now.bytes = self.bytes;
        (self.progress)(&self.now);
        self.batch.clear();
        self.check_cancel()
    }

    /// Round 0: every page that is not zero (the target's RAM starts zeroed).
    fn all_nonzero(&mut self) -> Result<u64, MigrationError> {
        const CHUNK: u64 = 1 << 20;
        let size = mem_size(self.machine.memory());
        self.now.pages_in_round = size / PAGE as u64;
        self.now.pages_left = self.now.pages_in_round;
        let mut chunk = vec![0u8; CHUNK as usize];
        let mut sent = 0;
        let mut at = 0;
        while at < size {
            let n = (size - at).min(CHUNK) as usize;
            if self.machine.memory().read_slice(&mut chunk[..n], GuestAddress(at)).is_err() {
                chunk[..n].fill(0);
            }
            for (i, page) in chunk[..n].chunks_exact(PAGE).enumerate() {
                if !is_zero(page) {
                    self.page(at / PAGE as u64 + i as u64, page)?;
                    sent += 1;
                } else {
                    self.now.pages_left = self.now.pages_left.saturating_sub(1);
                }
            }
            at += n as u64;
        }
        self.flush()?;
        Ok(sent)
    }

    /// A dirty round: these pages, as they are now.
    fn pages(&mut self, pages: &[u64]) -> Result<(), MigrationError> {
        self.now.pages_in_round = pages.len() as u64;
        self.now.pages_left = pages.len() as u64;
        let mut page = vec![0u8; PAGE];
        for &n in pages {
            if self.machine.memory().read_slice(&mut page, GuestAddress(n * PAGE as u64)).is_err() {
                continue;
            }
            let p = std::mem::take(&mut page);
            self.page(n, &p)?;
            page = p;
        }
        self.flush()
    }

    fn reply(&mut self) -> Result<(Tag, Vec<u8>), MigrationError> {
        let mut buf = Vec::new();
        let tag = wire::read_frame(&mut self.stream, &mut buf).map_err(|e| match e {
            wire::WireError::Io(source) => MigrationError::Io {
                what: "no answer from the migration target at",
                uri: self.uri.to_string(),
                source,
            },
            wire::WireError::Malformed(d) => MigrationError::protocol(&self.uri, d),
        })?;
        Ok((tag, buf))
    }
}

fn is_zero(page: &[u8]) -> bool {
    page.chunks_exact(8).all(|w| u64::from_ne_bytes(w.try_into().unwrap_or([1; 8])) == 0)
}

/// Moves the running guest of `machine` to the target listening at `uri`. On success the
/// guest runs there and stays held here (see [`Migrated`]); on any error it runs on here as
/// before and the error says what happened.
pub fn migrate<'a>(
    machine: &'a Machine,
    uri: &Uri,
    opts: &MigrateOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Migrated<'a>, MigrationError> {
    check_supported(machine)?;
    let started = Instant::now();
    let stream = uri.connect(opts.timeout)?;
    stream.set_read_timeout(Some(opts.timeout));
    stream.set_write_timeout(Some(opts.timeout));
    let mut s = Sender {
        machine,
        stream,
        uri: uri.clone(),
        buf: Vec::new(),
        batch: Vec::new(),
        bytes: 0,
        progress,
        now: Progress::default(),
        cancel: opts.cancel.clone(),
    };
    wire::write_preamble(&mut s.stream)
        .map_err(MigrationError::io("cannot write to the migration target at", uri))?;
    let hello = Hello {
        vmscope_version: env!("CARGO_PKG_VERSION").into(),
        host_kind: machine.host().to_string(),
        guest_name: machine.name().to_string(),
        mem_bytes: mem_size(machine.memory()),
        vcpus: machine.vcpu_count(),
    };
    s.frame(Tag::Hello, &serde_json::to_vec(&hello).unwrap_or_default())?;
    match s.reply()? {
        (Tag::Ready, _) => {}
        (Tag::Refuse, why) => {
            return Err(MigrationError::Refused {
                uri: uri.to_string(),
                reason: String::from_utf8_lossy(&why).into(),
            })
        }
        (t, _) => return Err(MigrationError::protocol(uri, format!("it answered the greeting with {t:?}"))),
    }

    let log = DirtyLog::start(machine.vm().fd(), machine.memory())?;
    let mut rounds = Vec::new();
    let t = Instant::now();
    let before = s.bytes;
    let sent = s.all_nonzero()?;
    rounds.push(Round { pages: sent, bytes: s.bytes - before, us: t.elapsed().as_micros() as u64 });
    // Bytes per second measured so far; the budget is compared with what is left at this rate.
    let rate = |rounds: &[Round]| {
        let (b, us) = rounds.iter().fold((0u64, 0u64), |(b, us), r| (b + r.bytes, us + r.us));
        if us == 0 {
            f64::INFINITY
        } else {
            b as f64 * 1e6 / us as f64
        }
    };
    let budget = opts.downtime.as_secs_f64();
    let (mut left, converged, why_stopped) = loop {
        let dirty = log.fetch()?;
        let need = (dirty.len() * (PAGE + 8)) as f64 / rate(&rounds);
        if need <= budget {
            break (
                dirty,
                true,
                format!(
                    "the pages left would take {:.2} ms, within the {} ms budget",
                    need * 1e3,
                    opts.downtime.as_millis()
                ),
            );
        }
        if rounds.len() > opts.max_rounds as usize {
            let why = format!(
                "round limit {} reached with {} pages still dirty ({:.1} ms at {:.0} MiB/s, budget {} ms): the guest writes memory faster than it can be sent; the rest went while it was held",
                opts.max_rounds,
                dirty.len(),
                need * 1e3,
                rate(&rounds) / (1 << 20) as f64,
                opts.downtime.as_millis()
            );
            break (dirty, false, why);
        }
        s.check_cancel()?;
        s.now.round = rounds.len() as u32;
        s.frame(Tag::Round, &s.now.round.to_le_bytes())?;
        let (t, before) = (Instant::now(), s.bytes);
        s.pages(&dirty)?;
        rounds.push(Round {
            pages: dirty.len() as u64,
            bytes: s.bytes - before,
            us: t.elapsed().as_micros() as u64,
        });
    };

    // Stop and copy: from here until the target answers, the guest runs nowhere.
    let held_at = Instant::now();
    let hold = Hold::new(machine).map_err(crate::snapshot::SnapshotError::from)?;
    left.extend(log.fetch()?);
    left.sort_unstable();
    left.dedup();
    s.now.round = rounds.len() as u32;
    s.now.stopped = true;
    s.frame(Tag::Round, &s.now.round.to_le_bytes())?;
    let before = s.bytes;
    s.pages(&left)?;
    let captured = capture(machine)?;
    let mut meta = captured.meta;
    meta.nonzero_bytes = rounds.first().map_or(0, |r| r.pages * PAGE as u64);
    s.frame(Tag::State, &wire::encode_state("meta", &serde_json::to_vec(&meta).unwrap_or_default()))?;
    for (name, bytes) in &captured.sections {
        s.frame(Tag::State, &wire::encode_state(name, bytes))?;
    }
    s.frame(Tag::Done, &[])?;
    rounds.push(Round {
        pages: left.len() as u64,
        bytes: s.bytes - before,
        us: held_at.elapsed().as_micros() as u64,
    });
    let loaded: Loaded = match s.reply()? {
        (Tag::Loaded, body) => serde_json::from_slice(&body).unwrap_or_default(),
        (Tag::Failed, why) => {
            return Err(MigrationError::Refused {
                uri: uri.to_string(),
                reason: String::from_utf8_lossy(&why).into(),
            })
        }
        (t, _) => return Err(MigrationError::protocol(uri, format!("it answered the guest with {t:?}"))),
    };
    // The last moment to change one's mind: the target's paused copy is dropped when the
    // stream closes without GO.
    s.check_cancel()?;
    // From this frame on the guest belongs to the target.
    s.frame(Tag::Go, &[])?;
    let _ = s.stream.flush();
    drop(log);
    let summary = Summary {
        uri: uri.to_string(),
        host_kind: machine.host().to_string(),
        mem_bytes: hello.mem_bytes,
        total_us: started.elapsed().as_micros() as u64,
        downtime_us: held_at.elapsed().as_micros() as u64,
        target_restore_us: loaded.restore_us,
        bytes: s.bytes,
        rounds,
        converged,
        downtime_budget_ms: opts.downtime.as_millis() as u64,
        max_rounds: opts.max_rounds,
        why_stopped,
        refused: captured.refused,
    };
    Ok(Migrated { summary, _hold: hold })
}
