//! What a debugger command returns: typed, serialisable results. Their serde form is the
//! JSON a script sees (`vmscope run --script … --json`); [`crate::render`] turns them into
//! text for people. Fields marked `skip` are what only the text shows (symbol names).

use inspect::disasm::Instruction;
use inspect::exits::ExitStats;
use inspect::paging::{MappingList, PagingMode, Translation, WalkError};
use inspect::regs::{CpuMode, Regs, SpecialRegs};
use inspect::symbols::Symbol;
use inspect::virtqueue::{QueueLayout, QueueSnapshot};
use inspect::HostKind;
use serde::{Serialize, Serializer};
use vmm::devices::MmioDeviceInfo;
use vmm::machine::Outcome;
use vmm::vstate::vcpu::StopReason;

/// `regs`: the general registers of one vCPU.
#[derive(Debug, Serialize)]
pub struct RegsReply {
    /// The vCPU.
    pub vcpu: usize,
    /// Its registers.
    pub regs: Regs,
    /// The kind of host it runs on.
    pub host: HostKind,
    /// `symbol+offset` of RIP.
    #[serde(skip)]
    pub rip_symbol: Option<String>,
}

/// `sregs`: the system registers of one vCPU and the mode they select.
#[derive(Debug, Serialize)]
pub struct SregsReply {
    /// The vCPU.
    pub vcpu: usize,
    /// Its system registers.
    pub sregs: SpecialRegs,
    /// The CPU mode CR0, CR4, EFER and CS select.
    pub mode: CpuMode,
    /// The current privilege level.
    pub cpl: u8,
    /// The kind of host.
    pub host: HostKind,
}

/// `pt ADDR` that reached a page.
#[derive(Debug, Serialize)]
pub struct TranslationReply {
    /// Every level of the walk.
    pub translation: Translation,
    /// The paging mode it used.
    pub mode: PagingMode,
}

/// `pt ADDR` that stopped at a level.
#[derive(Debug, Serialize)]
pub struct WalkFailedReply {
    /// The failure, as text.
    pub error: String,
    /// The failure, typed (which level, which entry).
    pub walk_error: WalkError,
    /// The paging mode it used.
    pub mode: PagingMode,
}

/// `mappings`: the ranges the current page tables map, cut at
/// [`crate::MAX_LISTED_MAPPINGS`].
#[derive(Debug, Serialize)]
pub struct MappingsReply {
    /// The paging mode.
    pub mode: PagingMode,
    /// The root of the walk.
    pub cr3: u64,
    /// The listed ranges.
    pub mappings: MappingList,
    /// How many ranges the walk found.
    pub ranges_total: usize,
    /// How many of them are listed.
    pub ranges_listed: usize,
}

/// `x/N ADDR`: guest-virtual memory.
#[derive(Debug, Serialize)]
pub struct VirtMemoryReply {
    /// The first address.
    pub gva: u64,
    /// How many bytes were asked for.
    pub requested: u64,
    /// The mapped prefix.
    pub bytes: Vec<u8>,
}

/// `xp/N ADDR`: guest-physical memory.
#[derive(Debug, Serialize)]
pub struct PhysMemoryReply {
    /// The first address.
    pub gpa: u64,
    /// How many bytes were asked for.
    pub requested: u64,
    /// The prefix that lies in guest memory.
    pub bytes: Vec<u8>,
}

/// What the debugger knows about one disassembled address.
#[derive(Debug, Clone, Default)]
pub struct LineNote {
    /// `symbol+offset`.
    pub symbol: Option<String>,
    /// A software breakpoint sits there.
    pub breakpoint: bool,
}

/// `dis`: instructions from an address (RIP by default).
#[derive(Debug, Serialize)]
pub struct DisassemblyReply {
    /// The vCPU's RIP, marked in the listing.
    pub rip: u64,
    /// The decoded instructions.
    pub instructions: Vec<Instruction>,
    /// One note per instruction.
    #[serde(skip)]
    pub notes: Vec<LineNote>,
}

/// `sym NAME`.
#[derive(Debug, Serialize)]
pub struct SymbolReply {
    /// The symbol.
    pub symbol: Symbol,
}

/// `sym ADDR`.
#[derive(Debug, Serialize)]
pub struct AddressReply {
    /// The address.
    pub addr: u64,
    /// `symbol+offset`, when a symbol holds it.
    pub name: Option<String>,
}

/// `break ADDR`: an `int3` went in.
#[derive(Debug, Serialize)]
pub struct BreakReply {
    /// Where.
    pub breakpoint: u64,
    /// `symbol+offset` of it.
    #[serde(skip)]
    pub symbol: Option<String>,
}

/// `hbreak ADDR`: a debug register holds it.
#[derive(Debug, Serialize)]
pub struct HbreakReply {
    /// Where.
    pub hbreak: u64,
    /// `symbol+offset` of it.
    #[serde(skip)]
    pub symbol: Option<String>,
}

/// `watch ADDR LEN`: a write watchpoint.
#[derive(Debug, Serialize)]
pub struct WatchReply {
    /// The first watched byte.
    pub watch: u64,
    /// How many bytes.
    pub len: u64,
    /// Emulated by single-stepping (PVM's emulator does not check debug registers).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub software: bool,
    /// `symbol+offset` of it.
    #[serde(skip)]
    pub symbol: Option<String>,
}

/// `delete ADDR`.
#[derive(Debug, Serialize)]
pub struct DeleteReply {
    /// The address.
    pub deleted: u64,
    /// Whether a breakpoint or watchpoint was there.
    pub found: bool,
}

/// `exits`: the VMM's exit counts and KVM's own counters of vCPU 0.
#[derive(Debug, Serialize)]
pub struct ExitsReply {
    /// The kind of host.
    pub host: HostKind,
    /// The VMM's counts.
    pub vmm: ExitStats,
    /// KVM's binary-stats counters.
    pub kvm: Vec<(String, u64)>,
}

/// `host`.
#[derive(Debug, Serialize)]
pub struct HostReply {
    /// The kind of host.
    pub host: HostKind,
    /// What that means for a guest.
    pub description: &'static str,
}

/// `devices`.
#[derive(Debug, Serialize)]
pub struct DevicesReply {
    /// The virtio-mmio devices.
    pub devices: Vec<MmioDeviceInfo>,
}

/// `vq DEV Q`: one virtqueue decoded from guest memory.
#[derive(Debug, Serialize)]
pub struct QueueReply {
    /// The device.
    pub device: MmioDeviceInfo,
    /// The queue index.
    pub queue: u64,
    /// Where the driver put its rings.
    pub layout: QueueLayout,
    /// The rings and the chains in flight.
    pub snapshot: QueueSnapshot,
}

/// One line of `help`.
#[derive(Debug, Serialize)]
pub struct HelpEntry {
    /// The command's form.
    pub command: &'static str,
    /// What it does.
    pub help: &'static str,
}

/// `help`.
#[derive(Debug, Serialize)]
pub struct HelpReply {
    /// Every command.
    pub commands: Vec<HelpEntry>,
}

/// A vCPU's stop after `step`, `next` or `cont`.
#[derive(Debug, Serialize)]
pub struct Stop {
    /// The vCPU that stopped.
    pub vcpu: usize,
    /// Why it stopped.
    #[serde(rename = "stop")]
    pub reason: StopReason,
    /// Its instruction pointer.
    pub rip: u64,
    /// `symbol+offset` of RIP.
    pub symbol: Option<String>,
    /// The instruction at RIP (empty when RIP is not mapped).
    pub instruction: String,
    /// How the guest ended, when this stop ended it.
    #[serde(skip)]
    pub ended: Option<Outcome>,
}

/// A software watchpoint saw its bytes change during `cont`.
#[derive(Debug, Serialize)]
pub struct WatchHit {
    /// The watched address.
    pub watchpoint: u64,
    /// The bytes before, as a little-endian number (a string: JSON numbers stop at 2^53).
    #[serde(serialize_with = "decimal")]
    pub old: u128,
    /// The bytes after.
    #[serde(serialize_with = "decimal")]
    pub new: u128,
    /// The stop after the instruction that wrote.
    pub stop: Stop,
    /// `symbol+offset` of the watched address.
    #[serde(skip)]
    pub symbol: Option<String>,
}

fn decimal<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&v.to_string())
}

/// `quit`.
#[derive(Debug, Serialize)]
pub struct QuitReply {
    /// Always true.
    pub quit: bool,
}

/// `checkpoint [NAME]`.
#[derive(Debug, Serialize)]
pub struct CheckpointReply {
    /// What was kept.
    #[serde(flatten)]
    pub taken: vmm::checkpoint::Taken,
    /// The session's vCPU, whose RIP is shown.
    #[serde(skip)]
    pub vcpu: usize,
    /// `symbol+offset` of its RIP.
    #[serde(skip)]
    pub symbol: Option<String>,
}

/// `checkpoints`.
#[derive(Debug, Serialize)]
pub struct CheckpointsReply {
    /// The checkpoints and the bytes they keep.
    #[serde(flatten)]
    pub listing: vmm::checkpoint::Listing,
    /// The session's vCPU, whose RIP is shown.
    #[serde(skip)]
    pub vcpu: usize,
    /// `symbol+offset` of that RIP, per checkpoint.
    #[serde(skip)]
    pub symbols: Vec<Option<String>>,
}

/// `rewind N`.
#[derive(Debug, Serialize)]
pub struct RewindReply {
    /// What was written back.
    #[serde(flatten)]
    pub rewound: vmm::checkpoint::Rewound,
    /// The session's vCPU.
    #[serde(skip)]
    pub vcpu: usize,
    /// `symbol+offset` of its RIP.
    #[serde(skip)]
    pub symbol: Option<String>,
    /// The instruction at its RIP.
    pub instruction: String,
}

/// `checkpoint delete N`.
#[derive(Debug, Serialize)]
pub struct CheckpointDeleteReply {
    /// What is left.
    #[serde(flatten)]
    pub deleted: vmm::checkpoint::Deleted,
}

/// The result of one debugger command; its serde form is the command's JSON.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Reply {
    /// `regs`.
    Regs(Box<RegsReply>),
    /// `sregs`.
    Sregs(Box<SregsReply>),
    /// `pt` reached a page.
    Translation(Box<TranslationReply>),
    /// `pt` stopped at a level.
    WalkFailed(Box<WalkFailedReply>),
    /// `mappings`.
    Mappings(MappingsReply),
    /// `x`.
    VirtMemory(VirtMemoryReply),
    /// `xp`.
    PhysMemory(PhysMemoryReply),
    /// `dis`.
    Disassembly(DisassemblyReply),
    /// `sym NAME`.
    Symbol(SymbolReply),
    /// `sym ADDR`.
    Address(AddressReply),
    /// `break`.
    Break(BreakReply),
    /// `hbreak`.
    Hbreak(HbreakReply),
    /// `watch`.
    Watch(WatchReply),
    /// `delete`.
    Delete(DeleteReply),
    /// `exits`.
    Exits(Box<ExitsReply>),
    /// `host`.
    Host(HostReply),
    /// `devices`.
    Devices(DevicesReply),
    /// `vq`.
    Queue(Box<QueueReply>),
    /// `help`.
    Help(HelpReply),
    /// `step`, `next`, `cont`.
    Stop(Box<Stop>),
    /// `cont` stopped by a software watchpoint.
    WatchHit(Box<WatchHit>),
    /// `checkpoint`.
    Checkpoint(Box<CheckpointReply>),
    /// `checkpoints`.
    Checkpoints(Box<CheckpointsReply>),
    /// `rewind`.
    Rewind(Box<RewindReply>),
    /// `checkpoint delete`.
    CheckpointDelete(CheckpointDeleteReply),
    /// `quit`.
    Quit(QuitReply),
}

impl Reply {
    /// The stop this reply reports, if it reports one.
    pub fn stop(&self) -> Option<&Stop> {
        match self {
            Reply::Stop(s) => Some(s),
            Reply::WatchHit(w) => Some(&w.stop),
            _ => None,
        }
    }

    /// How the guest ended, when this reply reports its end.
    pub fn ended(&self) -> Option<&Outcome> {
        self.stop().and_then(|s| s.ended.as_ref())
    }
}
