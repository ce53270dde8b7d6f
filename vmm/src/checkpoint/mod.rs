//! Checkpoints of a live guest, kept in memory, and rewinding to them: the debugger's
//! `checkpoint [NAME]`, `checkpoints`, `rewind N` and `checkpoint delete N` (gdb's
//! `checkpoint`/`restart N`, rr's checkpoints). A checkpoint holds every vCPU's whole
//! state, the VM's clock and interrupt controllers, the devices' registers and queues
//! ([`machine_state`]), and RAM as a delta: the first checkpoint keeps the pages that are
//! not zero, each later one only the pages that changed since the checkpoint the guest
//! came from ([`pages`] finds them by hash; [`history`] keeps the tree). Rewinding writes
//! back only the pages that differ, then the state; the checkpoints taken after the
//! target are kept, so the guest can go forward to them again.
//!
//! The store lives in the [`Machine`], so every frontend's debugger (the script session,
//! the TUI, gdb's `monitor`, each of which builds its own) sees the same checkpoints. The
//! copies are bounded ([`DEFAULT_LIMIT`], at most [`MAX_CHECKPOINTS`]): a checkpoint that
//! would go past the bound is refused, naming the sizes. Disk images are not rewound.
//!
//! ```no_run
//! # fn f(machine: &vmm::machine::Machine) -> Result<(), vmm::checkpoint::CheckpointError> {
//! let first = vmm::checkpoint::take(machine, Some("before-the-bug"))?;
//! // … the guest runs on …
//! let back = vmm::checkpoint::rewind(machine, first.checkpoint.number.into())?;
//! println!("{} pages written back", back.pages_written);
//! # Ok(()) }
//! ```

pub mod history;
pub mod machine_state;
pub mod pages;

use crate::machine::{Machine, MachineError};
use crate::snapshot::{Hold, SnapshotError};
use crate::vstate::vcpu::VcpuError;
use history::History;
use machine_state::MachineState;
use pages::{PageHashes, PAGE};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

/// The most bytes all checkpoints of a machine keep by default (page copies and state):
/// 1 GiB, about 6% of the development machines' 24 GiB.
pub const DEFAULT_LIMIT: u64 = 1 << 30;

/// The most checkpoints a machine keeps at once.
pub const MAX_CHECKPOINTS: usize = 64;

/// The longest checkpoint name.
pub const MAX_NAME: usize = 64;

/// Errors of the checkpoint commands.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// No checkpoint with that number.
    #[error("no checkpoint {number} ({})", if .have.is_empty() { "none taken yet: `checkpoint` takes one".to_string() } else { format!("the checkpoints are {}", .have) })]
    NoSuchCheckpoint {
        /// The number asked for.
        number: u64,
        /// The numbers there are, comma-separated.
        have: String,
    },
    /// Keeping it would pass the memory bound.
    #[error("checkpoint refused: would keep {would_mib:.1} MiB, the limit is {limit_mib} MiB (`checkpoint delete N` frees one)")]
    TooBig {
        /// All checkpoints with this one, in MiB.
        would_mib: f64,
        /// The bound in MiB.
        limit_mib: u64,
    },
    /// Too many checkpoints.
    #[error(
        "checkpoint refused: {MAX_CHECKPOINTS} checkpoints are kept, the limit (`checkpoint delete N` first)"
    )]
    TooMany,
    /// A name that is not one word of at most [`MAX_NAME`] printable characters.
    #[error("checkpoint name {0:?}: give one word of at most {MAX_NAME} printable characters")]
    BadName(String),
    /// A device would not take its checkpointed state back.
    #[error("{device} refused its checkpointed state: {detail}")]
    Device {
        /// The device.
        device: String,
        /// What the device said of the state.
        detail: String,
    },
    /// Guest memory could not be written back.
    #[error("cannot write page {pfn:#x} of guest memory back")]
    Memory {
        /// The page number.
        pfn: u64,
    },
    /// A vCPU would not give or take its state.
    #[error(transparent)]
    Vcpu(#[from] VcpuError),
    /// The machine refused (no such vCPU).
    #[error(transparent)]
    Machine(#[from] MachineError),
    /// The snapshot pieces failed (a disk whose image cannot be looked at, a VM ioctl).
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

/// What a checkpoint keeps besides its pages.
struct Kept {
    name: String,
    state: MachineState,
    /// kvmclock at the checkpoint, in ns (`None`: the host would not say).
    clock_ns: Option<u64>,
    /// VM exits counted by the VMM until the checkpoint.
    exits: u64,
}

struct Inner {
    history: History<Kept>,
    /// Page hashes of the base checkpoint; made with the first checkpoint.
    hashes: Option<PageHashes>,
    limit: u64,
}

/// A machine's checkpoints (one per [`Machine`]).
pub struct Store(Mutex<Inner>);

impl Default for Store {
    fn default() -> Self {
        Self(Mutex::new(Inner { history: History::default(), hashes: None, limit: DEFAULT_LIMIT }))
    }
}

/// One checkpoint, as `checkpoints` lists it.
#[derive(Clone, Debug, Serialize)]
pub struct CheckpointInfo {
    /// Its number (never reused).
    pub number: u32,
    /// Its name ("" if none was given).
    pub name: String,
    /// Each vCPU's RIP at the checkpoint.
    pub rips: Vec<u64>,
    /// The checkpoint it was taken after (the nearest one still kept).
    pub parent: Option<u32>,
    /// The guest's memory comes from it: it is the last one taken or rewound to.
    pub current: bool,
    /// Guest time (kvmclock) from the checkpoint to now, in ns; negative for a checkpoint
    /// the guest was rewound from.
    pub guest_ns_since: Option<i64>,
    /// VM exits since it was taken (the VMM's count, which a rewind does not turn back).
    pub exits_since: u64,
    /// Pages it keeps itself.
    pub pages: u64,
    /// Bytes it keeps itself: its page copies and its vCPU and device state.
    pub bytes: u64,
}

/// `checkpoints`.
#[derive(Clone, Debug, Serialize)]
pub struct Listing {
    /// In order of number.
    pub checkpoints: Vec<CheckpointInfo>,
    /// Bytes all of them keep (each page copy counted once), with the page-hash index.
    pub kept_bytes: u64,
    /// The bound on `kept_bytes`.
    pub limit_bytes: u64,
}

/// A checkpoint taken.
#[derive(Clone, Debug, Serialize)]
pub struct Taken {
    /// It.
    pub checkpoint: CheckpointInfo,
    /// Pages of RAM compared.
    pub scanned_pages: u64,
    /// Bytes all checkpoints keep now.
    pub kept_bytes: u64,
    /// The bound.
    pub limit_bytes: u64,
    /// How long it took, in microseconds (the vCPUs were held that long).
    pub elapsed_us: u64,
}

/// A rewind done.
#[derive(Clone, Debug, Serialize)]
pub struct Rewound {
    /// The checkpoint the guest is back at.
    pub number: u32,
    /// Each vCPU's RIP now.
    pub rips: Vec<u64>,
    /// Pages of RAM written back.
    pub pages_written: u64,
    /// What was not rewound or not taken back (a disk image, an MSR, a breakpoint), one
    /// line each.
    pub notes: Vec<String>,
    /// How long it took, in microseconds.
    pub elapsed_us: u64,
}

/// A checkpoint deleted.
#[derive(Clone, Debug, Serialize)]
pub struct Deleted {
    /// Its number.
    pub number: u32,
    /// Bytes all checkpoints keep now.
    pub kept_bytes: u64,
}

impl Inner {
    fn kept_bytes(&self) -> u64 {
        self.history.kept_page_bytes()
            + self.history.states().map(|k| k.state.bytes).sum::<u64>()
            + self.hashes.as_ref().map_or(0, PageHashes::bytes)
    }

    fn no_such(&self, number: u64) -> CheckpointError {
        let have: Vec<String> = self.history.live().map(|(n, _)| n.to_string()).collect();
        CheckpointError::NoSuchCheckpoint { number, have: have.join(", ") }
    }

    fn info(&self, n: u32, now: &Now) -> Option<CheckpointInfo> {
        let node = self.history.get(n)?;
        let k = &node.state;
        let guest_ns_since = match (now.clock_ns, k.clock_ns) {
            (Some(a), Some(b)) => Some(a as i64 - b as i64),
            _ => None,
        };
        Some(CheckpointInfo {
            number: n,
            name: k.name.clone(),
            rips: k.state.rips(),
            parent: self.history.live_parent(n),
            current: self.history.base() == Some(n),
            guest_ns_since,
            exits_since: now.exits.saturating_sub(k.exits),
            pages: node.page_count(),
            bytes: node.page_bytes() + k.state.bytes,
        })
    }
}

/// The guest's clock and exit count now.
struct Now {
    clock_ns: Option<u64>,
    exits: u64,
}

impl Now {
    fn of(machine: &Machine) -> Self {
        Self {
            clock_ns: machine.vm().fd().get_clock().ok().map(|c| c.clock),
            exits: machine.exit_stats().total(),
        }
    }
}

fn lock(machine: &Machine) -> std::sync::MutexGuard<'_, Inner> {
    machine.checkpoint_store().0.lock().unwrap_or_else(PoisonError::into_inner)
}

fn check_name(name: &str) -> Result<(), CheckpointError> {
    let ok = name.len() <= MAX_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_graphic() || (!c.is_ascii() && !c.is_control() && !c.is_whitespace()));
    if ok {
        Ok(())
    } else {
        Err(CheckpointError::BadName(name.chars().take(MAX_NAME + 1).collect()))
    }
}

/// A seed for the page hashes that a guest cannot know in advance.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new().build_hasher().finish()
}

/// Takes a checkpoint of `machine`: its vCPUs are held meanwhile (a running guest goes on
/// afterwards). Refused, with nothing kept, if it would pass the bound.
pub fn take(machine: &Machine, name: Option<&str>) -> Result<Taken, CheckpointError> {
    let started = Instant::now();
    let name = name.unwrap_or_default();
    check_name(name)?;
    let mut inner = lock(machine);
    if inner.history.live_count() >= MAX_CHECKPOINTS {
        return Err(CheckpointError::TooMany);
    }
    crate::snapshot::check_supported(machine)?;
    let _hold = Hold::new(machine)?;
    let first = inner.history.states().next().is_none();
    let mut hashes = match inner.hashes.take() {
        Some(h) if !first => h,
        _ => PageHashes::zeroed(machine.memory(), random_seed()),
    };
    let taken = take_held(machine, &mut inner, &mut hashes, name);
    // The index stays only if it describes a checkpoint kept (a refused first one leaves none).
    if taken.is_ok() || !first {
        inner.hashes = Some(hashes);
    }
    let mut taken = taken?;
    taken.kept_bytes = inner.kept_bytes();
    taken.elapsed_us = started.elapsed().as_micros() as u64;
    Ok(taken)
}

/// The checkpoint itself, with the vCPUs held and the base's page index out of `inner`.
fn take_held(
    machine: &Machine,
    inner: &mut Inner,
    hashes: &mut PageHashes,
    name: &str,
) -> Result<Taken, CheckpointError> {
    let mem = machine.memory();
    let changed = hashes.changed(mem, machine.breakpoints());
    let state = machine_state::capture(machine)?;
    let new_bytes =
        changed.iter().filter_map(|c| c.page.as_ref()).map(|p| p.len() as u64).sum::<u64>() + state.bytes;
    let would = inner.kept_bytes() + hashes.bytes() + new_bytes;
    if would > inner.limit {
        return Err(CheckpointError::TooBig {
            would_mib: would as f64 / (1 << 20) as f64,
            limit_mib: inner.limit >> 20,
        });
    }
    let now = Now::of(machine);
    let mut pages = BTreeMap::new();
    for c in changed {
        hashes.commit(c.pfn, c.hash);
        pages.insert(c.pfn, c.page);
    }
    let kept = Kept { name: name.to_string(), state, clock_ns: now.clock_ns, exits: now.exits };
    let number = inner.history.add(pages, kept);
    let checkpoint = inner.info(number, &now).ok_or_else(|| inner.no_such(number.into()))?;
    Ok(Taken {
        checkpoint,
        scanned_pages: crate::vstate::memory::mem_size(mem) / PAGE as u64,
        kept_bytes: 0,
        limit_bytes: inner.limit,
        elapsed_us: 0,
    })
}

/// The checkpoints of `machine`.
pub fn list(machine: &Machine) -> Listing {
    let now = Now::of(machine);
    let inner = lock(machine);
    let numbers: Vec<u32> = inner.history.live().map(|(n, _)| n).collect();
    Listing {
        checkpoints: numbers.into_iter().filter_map(|n| inner.info(n, &now)).collect(),
        kept_bytes: inner.kept_bytes(),
        limit_bytes: inner.limit,
    }
}

/// Puts `machine` back as it was at checkpoint `number`: RAM (only the pages that
/// differ), every vCPU, the VM's clock and interrupt controllers, the devices. Software
/// breakpoints stay where they are (their `int3` is written again over rewound code);
/// hardware ones are programmed again. Disk images are not rewound (a note says so).
pub fn rewind(machine: &Machine, number: u64) -> Result<Rewound, CheckpointError> {
    let started = Instant::now();
    let mut inner = lock(machine);
    let target = u32::try_from(number)
        .ok()
        .filter(|&n| inner.history.get(n).is_some())
        .ok_or_else(|| inner.no_such(number))?;
    let _hold = Hold::new(machine)?;
    let mem = machine.memory();
    let Inner { history, hashes, .. } = &mut *inner;
    let Some(hashes) = hashes.as_mut() else {
        return Err(CheckpointError::NoSuchCheckpoint { number, have: String::new() });
    };
    let mut to_write = history.differing_pages(target);
    to_write.extend(hashes.changed(mem, machine.breakpoints()).into_iter().map(|c| c.pfn));
    for &pfn in &to_write {
        if !hashes.write(mem, pfn, &history.page_at(target, pfn)) {
            return Err(CheckpointError::Memory { pfn });
        }
    }
    machine.breakpoints().rewritten(|gpa| to_write.contains(&(gpa.0 / PAGE as u64)));
    // RAM is the target's from here on, whatever happens to the rest.
    history.set_base(target);
    let Some(node) = history.get(target) else {
        return Err(CheckpointError::NoSuchCheckpoint { number, have: String::new() });
    };
    let mut notes = machine_state::restore(machine, &node.state.state)?;
    for d in node.state.state.devices.virtio.iter().filter_map(|v| v.disk.as_ref()) {
        notes.push(format!(
            "the disk image {} is not rewound: what the guest wrote to it since checkpoint {target} stays written",
            d.path.display()
        ));
    }
    Ok(Rewound {
        number: target,
        rips: node.state.state.rips(),
        pages_written: to_write.len() as u64,
        notes,
        elapsed_us: started.elapsed().as_micros() as u64,
    })
}

/// Deletes checkpoint `number`, freeing what only it kept.
pub fn delete(machine: &Machine, number: u64) -> Result<Deleted, CheckpointError> {
    let mut inner = lock(machine);
    let n = u32::try_from(number)
        .ok()
        .filter(|&n| inner.history.delete(n))
        .ok_or_else(|| inner.no_such(number))?;
    Ok(Deleted { number: n, kept_bytes: inner.kept_bytes() })
}
