//! The task list: `init_task.tasks` is the head of a circular list of every thread-group
//! leader (what `ps` and `/proc` show); the walk follows `next` pointers from the head until
//! it comes back, and stops with [`LinuxError::TaskListCorrupt`] on anything a real list
//! cannot hold: an entry seen twice (a cycle that does not pass through `init_task`), a
//! pointer outside the kernel's direct map, unreadable memory, or more than [`MAX_TASKS`]
//! entries.

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

/// [`list`] with a smaller cap (tests).
pub fn list_capped(k: &KernelMemory<'_>, cap: usize) -> Result<Vec<Task>, LinuxError> {
    let off = k.kernel().offsets.task_tasks;
    let init = k.kernel().globals.init_task;
    let head = init + off;
    let corrupt = |at: u64, reason: String| LinuxError::TaskListCorrupt { at, reason };
    let mut tasks =
        vec![read_task(k, init).map_err(|e| corrupt(head, format!("init_task unreadable: {e}")))?];
    let mut seen = HashSet::new();
    let mut at = head;
    loop {
        let next = k.read_u64("list_head.next", at).map_err(|e| corrupt(at, e.to_string()))?;
        if next == head {
            return Ok(tasks);
        }
        if !k.in_direct_map(next) {
            return Err(corrupt(at, format!("next pointer {next:#x} is outside the kernel's direct map")));
        }
        if next % 8 != 0 {
            return Err(corrupt(at, format!("next pointer {next:#x} is not 8-byte aligned")));
        }
        if !seen.insert(next) {
            return Err(corrupt(
                next,
                format!(
                    "a cycle that does not pass through init_task (entry seen before, after {} tasks)",
                    tasks.len()
                ),
            ));
        }
        if tasks.len() >= cap {
            return Err(corrupt(next, format!("more than {cap} entries (the limit)")));
        }
        let task = next.checked_sub(off).ok_or_else(|| corrupt(next, "entry below its own offset".into()))?;
        tasks.push(read_task(k, task).map_err(|e| corrupt(next, e.to_string()))?);
        at = next;
    }
}

/// The task with pid (or tgid) `pid`.
pub fn find(k: &KernelMemory<'_>, pid: i64) -> Result<Task, LinuxError> {
    list(k)?.into_iter().find(|t| t.pid == pid || t.tgid == pid).ok_or(LinuxError::NoSuchPid(pid))
}
