//! The task list: `init_task.tasks` is the head of a circular list of every thread-group
//! leader (what `ps` and `/proc` show); the walk follows `next` pointers from the head until
//! it comes back, and stops with [`LinuxError::TaskListCorrupt`] on anything a real list
//! cannot hold: an entry seen twice (a cycle that does not pass through `init_task`), a
//! pointer outside the kernel's direct map, unreadable memory, or more than [`MAX_TASKS`]
//! entries. [`walk`] keeps the tasks read before such a stop, for a view that shows what it
//! could read beside the reason it stopped (the TUI's processes pane).

use super::{KernelMemory, LinuxError};
use serde::Serialize;
use std::collections::HashSet;

/// The most tasks a walk visits (the kernel's default `pid_max` is 32768; a list longer
/// than twice that is taken as corrupt rather than read for ever).
pub const MAX_TASKS: usize = 65_536;
/// `TASK_COMM_LEN`.
pub const COMM_LEN: usize = 16;

/// One task, as `ps` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Task {
    /// Its pid (a thread id; equal to `tgid` for the leaders listed here).
    pub pid: i64,
    /// Its thread-group id (the process id user space sees).
    pub tgid: i64,
    /// Its parent's process id (`real_parent->tgid`, as `/proc/PID/stat` gives it); 0 for
    /// the idle task and for kernel threads started by it (kthreadd, pid 1).
    pub ppid: i64,
    /// Its name (`comm`, at most 15 characters).
    pub comm: String,
    /// Its state as `ps` prints it: R, S, D, T, t, X, Z, I, P.
    pub state: char,
    /// The raw `__state | exit_state`.
    pub state_raw: u64,
    /// The `task_struct`'s kernel-virtual address.
    pub task: u64,
    /// Its `mm_struct`, or `None` for a kernel thread.
    pub mm: Option<u64>,
    /// The guest-physical address of its top-level page table (`mm->pgd`), the CR3 it runs
    /// with (`None` for a kernel thread).
    pub pgd: Option<u64>,
}

/// `ps`'s letter for a task state (`fs/proc/array.c`'s `task_state_array`, plus `I` for
/// idle kernel threads: `TASK_UNINTERRUPTIBLE | TASK_NOLOAD`).
pub fn state_letter(state: u64, exit_state: u64) -> char {
    const TASK_NOLOAD: u64 = 0x400;
    let s = (state | exit_state) & 0x7f;
    if state & TASK_NOLOAD != 0 && state & 0x2 != 0 {
        return 'I';
    }
    match s {
        0 => 'R',
        s if s & 0x01 != 0 => 'S',
        s if s & 0x02 != 0 => 'D',
        s if s & 0x04 != 0 => 'T',
        s if s & 0x08 != 0 => 't',
        s if s & 0x10 != 0 => 'X',
        s if s & 0x20 != 0 => 'Z',
        _ => 'P',
    }
}

/// Reads the task at kernel-virtual `task`.
fn read_task(k: &KernelMemory<'_>, task: u64) -> Result<Task, LinuxError> {
    let o = &k.kernel().offsets;
    let pid = k.read_u32("task_struct.pid", task + o.task_pid)? as i32;
    let tgid = k.read_u32("task_struct.tgid", task + o.task_tgid)? as i32;
    let comm = k.read_cstr("task_struct.comm", task + o.task_comm, COMM_LEN)?;
    let parent = k.read_u64("task_struct.real_parent", task + o.task_real_parent)?;
    let ppid = k.read_u32("real_parent->tgid", parent.wrapping_add(o.task_tgid))? as i32;
    let state = if o.task_state_size == 8 {
        k.read_u64("task_struct.state", task + o.task_state)?
    } else {
        u64::from(k.read_u32("task_struct.__state", task + o.task_state)?)
    };
    let exit_state = u64::from(k.read_u32("task_struct.exit_state", task + o.task_exit_state)?);
    let mm = k.read_u64("task_struct.mm", task + o.task_mm)?;
    let (mm, pgd) = if mm == 0 {
        (None, None)
    } else {
        let pgd = k.read_u64("mm_struct.pgd", mm + o.mm_pgd)?;
        (Some(mm), Some(k.to_gpa("mm->pgd", pgd)?))
    };
    Ok(Task {
        pid: pid.into(),
        tgid: tgid.into(),
        ppid: ppid.into(),
        comm,
        state: state_letter(state, exit_state),
        state_raw: state | exit_state,
        task,
        mm,
        pgd,
    })
}

/// Every task on the list, `init_task` (pid 0, the idle task) first.
pub fn list(k: &KernelMemory<'_>) -> Result<Vec<Task>, LinuxError> {
    list_capped(k, MAX_TASKS)
}

/// [`list`] with a smaller cap.
pub fn list_capped(k: &KernelMemory<'_>, cap: usize) -> Result<Vec<Task>, LinuxError> {
    let w = walk(k, cap);
    match w.error {
        Some(e) => Err(e),
        None => Ok(w.tasks),
    }
}

/// What a walk read: the tasks in list order, and why it stopped early if it did.
#[derive(Debug)]
pub struct Walk {
    /// Every task read before the walk ended (`init_task` first, unless it was unreadable).
    pub tasks: Vec<Task>,
    /// Why the walk stopped before coming back to `init_task`: a corrupt entry, or more
    /// than `cap` entries. The tasks before it are in `tasks`.
    pub error: Option<LinuxError>,
}

/// Walks the list from `init_task`, visiting at most `cap` tasks; never fails, never
/// loops: a bad list ends the walk with the reason in [`Walk::error`].
pub fn walk(k: &KernelMemory<'_>, cap: usize) -> Walk {
    let off = k.kernel().offsets.task_tasks;
    let init = k.kernel().globals.init_task;
    let head = init + off;
    let corrupt = |at: u64, reason: String| LinuxError::TaskListCorrupt { at, reason };
    let mut tasks = vec![];
    let stop = |tasks: Vec<Task>, e: LinuxError| Walk { tasks, error: Some(e) };
    match read_task(k, init) {
        Ok(t) => tasks.push(t),
        Err(e) => return stop(tasks, corrupt(head, format!("init_task unreadable: {e}"))),
    }
    let mut seen = HashSet::new();
    let mut at = head;
    loop {
        let next = match k.read_u64("list_head.next", at) {
            Ok(n) => n,
            Err(e) => return stop(tasks, corrupt(at, e.to_string())),
        };
        if next == head {
            return Walk { tasks, error: None };
        }
        if !k.in_direct_map(next) {
            let why = format!("next pointer {next:#x} is outside the kernel's direct map");
            return stop(tasks, corrupt(at, why));
        }
        if next % 8 != 0 {
            return stop(tasks, corrupt(at, format!("next pointer {next:#x} is not 8-byte aligned")));
        }
        if !seen.insert(next) {
            let why = format!(
                "a cycle that does not pass through init_task (entry seen before, after {} tasks)",
                tasks.len()
            );
            return stop(tasks, corrupt(next, why));
        }
        if tasks.len() >= cap {
            return stop(tasks, corrupt(next, format!("more than {cap} entries (the limit)")));
        }
        let Some(task) = next.checked_sub(off) else {
            return stop(tasks, corrupt(next, "entry below its own offset".into()));
        };
        match read_task(k, task) {
            Ok(t) => tasks.push(t),
            Err(e) => return stop(tasks, corrupt(next, e.to_string())),
        }
        at = next;
    }
}

/// The task with pid (or tgid) `pid`.
pub fn find(k: &KernelMemory<'_>, pid: i64) -> Result<Task, LinuxError> {
    list(k)?.into_iter().find(|t| t.pid == pid || t.tgid == pid).ok_or(LinuxError::NoSuchPid(pid))
}
