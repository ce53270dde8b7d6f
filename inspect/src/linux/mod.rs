//! Linux awareness without an agent in the guest: the kernel's task list (`ps`), its log
//! (`dmesg`, the lockless printk ring buffer of 5.10+), its `uname`, and a process's address
//! space (`pt --pid N`, `mappings --pid N`), read from guest-physical memory with the
//! structure layouts found once in the vmlinux's DWARF.
//!
//! Everything read here comes from the guest and may be corrupt or hostile: every walk is
//! bounded ([`MAX_TASKS`], the ring's own size), every pointer must lie in the kernel's
//! image or its direct map, and a bad list ends with "task list corrupt at 0x…: …".
//!
//! ```no_run
//! use inspect::linux::{Kernel, KernelMemory};
//! # fn demo(mem: &dyn inspect::GuestPhysMemory) -> Result<(), inspect::linux::LinuxError> {
//! let kernel = Kernel::load_cached(std::path::Path::new("vmlinux"))?;
//! let kmem = KernelMemory::new(mem, &kernel, 0);
//! for t in inspect::linux::tasks::list(&kmem)? {
//!     println!("{} {}", t.pid, t.comm);
//! }
//! # Ok(()) }
//! ```

pub mod commands;
pub mod dmesg;
mod dwarf;
mod kmem;
pub mod tasks;
pub mod uname;

pub use dwarf::Layout;
pub use kmem::{KernelMemory, DIRECT_MAP_SIZE, KERNEL_IMAGE_SIZE, PAGE_OFFSET_4LEVEL, START_KERNEL_MAP};
pub use tasks::{Task, Walk, MAX_TASKS};

use crate::symbols::SymbolTable;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// Errors from reading a Linux guest.
#[derive(Debug, thiserror::Error)]
pub enum LinuxError {
    /// The vmlinux could not be read.
    #[error("cannot read the vmlinux {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's error (errno), shown as the cause.
        #[source]
        source: std::io::Error,
    },
    /// Its DWARF could not be parsed.
    #[error("cannot read the DWARF of {path}: {reason}")]
    Dwarf {
        /// The file.
        path: PathBuf,
        /// What was wrong, in words.
        reason: String,
    },
    /// A structure member the readers need is not in the DWARF.
    #[error("{path} has no DWARF for {member}: it needs a kernel built with debug info (CONFIG_DEBUG_INFO)")]
    MissingMember {
        /// The file.
        path: PathBuf,
        /// `struct.member`.
        member: String,
    },
    /// A symbol the readers need is not in the symbol table.
    #[error("{path} has no symbol {name}")]
    MissingSymbol {
        /// The file.
        path: PathBuf,
        /// The symbol.
        name: String,
    },
    /// A kernel pointer lies outside the kernel's image and direct map.
    #[error("{what} {addr:#x} is outside the kernel's image and direct map")]
    NotKernelAddress {
        /// What the pointer was.
        what: String,
        /// The pointer.
        addr: u64,
    },
    /// Guest memory behind a kernel address is not backed.
    #[error("cannot read {len} bytes of {what} at {addr:#x} (guest-physical {gpa:#x} is not RAM)")]
    Unreadable {
        /// What was read.
        what: String,
        /// The kernel-virtual address.
        addr: u64,
        /// Its guest-physical address.
        gpa: u64,
        /// How many bytes.
        len: usize,
    },
    /// The task list is corrupt: a cycle, a wild pointer, or too many entries.
    #[error("task list corrupt at {at:#x}: {reason}")]
    TaskListCorrupt {
        /// The list entry (`&task->tasks`) where the walk stopped.
        at: u64,
        /// What was wrong, in words.
        reason: String,
    },
    /// The printk ring buffer's header is not plausible.
    #[error("printk ring buffer corrupt at {at:#x}: {reason}")]
    RingCorrupt {
        /// The ring buffer structure.
        at: u64,
        /// What was wrong, in words.
        reason: String,
    },
    /// No task has this pid.
    #[error("no task with pid {0} (`ps` lists them)")]
    NoSuchPid(i64),
    /// A kernel thread has no user address space.
    #[error("pid {pid} ({comm}) is a kernel thread: it has no mm, so no address space of its own")]
    KernelThread {
        /// The pid.
        pid: i64,
        /// Its name.
        comm: String,
    },
    /// A command was typed wrong.
    #[error("{0}")]
    Usage(String),
}

/// Byte offsets the readers use, found in the DWARF once per vmlinux.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offsets {
    /// `task_struct.tasks` (a `list_head`: `next` at 0).
    pub task_tasks: u64,
    /// `task_struct.pid`.
    pub task_pid: u64,
    /// `task_struct.tgid`.
    pub task_tgid: u64,
    /// `task_struct.comm` (`TASK_COMM_LEN` = 16 bytes).
    pub task_comm: u64,
    /// `task_struct.real_parent` (the parent `ps` and `/proc/PID/stat` report; `parent`
    /// differs only under ptrace).
    pub task_real_parent: u64,
    /// `task_struct.__state` (u32, 5.14+) or `.state` (long, before).
    pub task_state: u64,
    /// Size of that field (4 or 8).
    pub task_state_size: u64,
    /// `task_struct.exit_state`.
    pub task_exit_state: u64,
    /// `task_struct.mm`.
    pub task_mm: u64,
    /// `mm_struct.pgd`.
    pub mm_pgd: u64,
    /// `uts_namespace.name` (a `new_utsname`: six 65-byte strings).
    pub uts_name: u64,
    /// The printk ring buffer's layout (absent in kernels before 5.10).
    pub prb: Option<dmesg::PrbOffsets>,
}

/// The structures whose layouts the readers use.
const STRUCTS: &[&str] = &[
    "task_struct",
    "mm_struct",
    "uts_namespace",
    "printk_ringbuffer",
    "prb_desc_ring",
    "prb_data_ring",
    "prb_desc",
    "prb_data_blk_lpos",
    "printk_info",
];

/// One member's offset, or an error naming it.
fn member(path: &Path, l: &HashMap<String, Layout>, s: &str, m: &str) -> Result<u64, LinuxError> {
    field(l, s, m)
        .map(|(o, _)| o)
        .ok_or_else(|| LinuxError::MissingMember { path: path.into(), member: format!("{s}.{m}") })
}

fn field(l: &HashMap<String, Layout>, s: &str, m: &str) -> Option<(u64, u64)> {
    l.get(s).and_then(|l| l.members.get(m)).copied()
}

impl Offsets {
    /// The offsets from structure layouts (`path` names the vmlinux in errors).
    pub fn from_layouts(path: &Path, l: &HashMap<String, Layout>) -> Result<Self, LinuxError> {
        let (task_state, task_state_size) =
            field(l, "task_struct", "__state").or_else(|| field(l, "task_struct", "state")).ok_or_else(
                || LinuxError::MissingMember { path: path.into(), member: "task_struct.__state".into() },
            )?;
        Ok(Self {
            task_tasks: member(path, l, "task_struct", "tasks")?,
            task_pid: member(path, l, "task_struct", "pid")?,
            task_tgid: member(path, l, "task_struct", "tgid")?,
            task_comm: member(path, l, "task_struct", "comm")?,
            task_real_parent: member(path, l, "task_struct", "real_parent")?,
            task_state,
            task_state_size: if task_state_size == 8 { 8 } else { 4 },
            task_exit_state: member(path, l, "task_struct", "exit_state")?,
            task_mm: member(path, l, "task_struct", "mm")?,
            mm_pgd: member(path, l, "mm_struct", "pgd")?,
            uts_name: member(path, l, "uts_namespace", "name")?,
            prb: dmesg::PrbOffsets::from_layouts(l),
        })
    }
}

/// Addresses of the kernel's globals the readers start from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Globals {
    /// `init_task`: the head of the task list (pid 0).
    pub init_task: u64,
    /// `init_uts_ns`.
    pub init_uts_ns: u64,
    /// `prb`: a pointer to the printk ring buffer in use.
    pub prb: Option<u64>,
    /// `page_offset_base`, when the layout is dynamic (KASLR or 5-level paging).
    pub page_offset_base: Option<u64>,
    /// `phys_base`.
    pub phys_base: Option<u64>,
}

impl Globals {
    /// The globals from a symbol table (`path` names the vmlinux in errors).
    pub fn from_symbols(path: &Path, syms: &SymbolTable) -> Result<Self, LinuxError> {
        let need = |n: &str| {
            syms.resolve(n).ok_or_else(|| LinuxError::MissingSymbol { path: path.into(), name: n.into() })
        };
        Ok(Self {
            init_task: need("init_task")?,
            init_uts_ns: need("init_uts_ns")?,
            prb: syms.resolve("prb"),
            page_offset_base: syms.resolve("page_offset_base"),
            phys_base: syms.resolve("phys_base"),
        })
    }
}

/// What the readers know of one vmlinux: its globals and its structure offsets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kernel {
    /// The vmlinux it came from.
    pub path: PathBuf,
    /// Globals.
    pub globals: Globals,
    /// Structure offsets.
    pub offsets: Offsets,
}

impl Kernel {
    /// Reads the vmlinux at `path` (symbols and DWARF; about a second for a small kernel).
    pub fn load(path: &Path) -> Result<Self, LinuxError> {
        let bytes = std::fs::read(path).map_err(|source| LinuxError::Read { path: path.into(), source })?;
        let name = path.display().to_string();
        let syms = SymbolTable::from_elf(&name, &bytes)
            .map_err(|e| LinuxError::Dwarf { path: path.into(), reason: e.to_string() })?;
        let globals = Globals::from_symbols(path, &syms)?;
        let layouts = dwarf::layouts(&name, &bytes, STRUCTS)?;
        let offsets = Offsets::from_layouts(path, &layouts)?;
        Ok(Self { path: path.into(), globals, offsets })
    }

    /// [`Kernel::load`] once per file for this process: the session, the gdb stub's monitor
    /// and the TUI share the result (keyed by path, size and modification time, so a rebuilt
    /// vmlinux is read again).
    pub fn load_cached(path: &Path) -> Result<Arc<Self>, LinuxError> {
        type Cache = Mutex<HashMap<(PathBuf, u64, Option<std::time::SystemTime>), Arc<Kernel>>>;
        static CACHE: OnceLock<Cache> = OnceLock::new();
        let meta =
            std::fs::metadata(path).map_err(|source| LinuxError::Read { path: path.into(), source })?;
        let key = (path.to_path_buf(), meta.len(), meta.modified().ok());
        let cache = CACHE.get_or_init(Default::default);
        if let Some(k) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(k.clone());
        }
        let k = Arc::new(Self::load(path)?);
        cache.lock().unwrap_or_else(|e| e.into_inner()).insert(key, k.clone());
        Ok(k)
    }
}

pub mod test_utils;
#[cfg(test)]
mod tests;
