//! A synthetic Linux kernel in a byte buffer: a [`Kernel`] with made-up structure offsets
//! and a memory image holding `init_task`, a task list, `init_uts_ns` and a printk ring
//! buffer, for the walkers' tests and benchmarks (and for corrupting on purpose).

use super::dmesg::PrbOffsets;
use super::{Globals, Kernel, Offsets, PAGE_OFFSET_4LEVEL, START_KERNEL_MAP};
use crate::addr::Gpa;
use crate::mem::BufferMemory;

/// Where `init_task` lies (guest-physical; in the image mapping).
pub const INIT_TASK_GPA: u64 = 0x1000;
/// Where `init_uts_ns` lies.
pub const UTS_GPA: u64 = 0x3000;
/// Where the `prb` pointer lies.
pub const PRB_PTR_GPA: u64 = 0x3800;
/// Where the ring buffer structure lies.
pub const PRB_GPA: u64 = 0x4000;
/// Where other tasks are allocated from (one per 4 KiB, in the direct map).
pub const TASKS_GPA: u64 = 0x10_0000;
/// `sizeof(task_struct)` here.
pub const TASK_SIZE: u64 = 0x200;

/// The offsets of the synthetic kernel.
pub fn offsets() -> Offsets {
    Offsets {
        task_tasks: 0x100,
        task_pid: 0x10,
        task_tgid: 0x14,
        task_comm: 0x20,
        task_real_parent: 0x48,
        task_state: 0x0,
        task_state_size: 4,
        task_exit_state: 0x8,
        task_mm: 0x40,
        mm_pgd: 0x8,
        uts_name: 0x4,
        prb: Some(PrbOffsets {
            desc_ring: 0,
            text_data_ring: 0x40,
            count_bits: 0,
            descs: 0x8,
            infos: 0x10,
            head_id: 0x18,
            tail_id: 0x20,
            desc_size: 24,
            state_var: 0,
            lpos_begin: 8,
            lpos_next: 16,
            size_bits: 0,
            data: 0x8,
            info_size: 32,
            seq: 0,
            ts_nsec: 8,
            text_len: 16,
        }),
    }
}

/// The synthetic kernel's [`Kernel`].
pub fn kernel() -> Kernel {
    Kernel {
        path: "synthetic-vmlinux".into(),
        globals: Globals {
            init_task: START_KERNEL_MAP + INIT_TASK_GPA,
            init_uts_ns: START_KERNEL_MAP + UTS_GPA,
            prb: Some(START_KERNEL_MAP + PRB_PTR_GPA),
            page_offset_base: None,
            phys_base: None,
        },
        offsets: offsets(),
    }
}

/// The direct-map address of `gpa`.
pub fn direct(gpa: u64) -> u64 {
    PAGE_OFFSET_4LEVEL + gpa
}

/// A memory image of the synthetic kernel.
pub struct Image {
    /// The memory.
    pub mem: BufferMemory,
}

impl Image {
    /// `size` bytes with `init_task` (pid 0, "swapper/0") whose list is empty.
    pub fn new(size: usize) -> Self {
        let mut img = Self { mem: BufferMemory::zeroed(size) };
        img.write_task(INIT_TASK_GPA, 0, "swapper/0", 0, None);
        let head = START_KERNEL_MAP + INIT_TASK_GPA + offsets().task_tasks;
        img.set_next(INIT_TASK_GPA, head);
        img
    }

    /// Writes a task's fields at `gpa` (its list pointer is set separately).
    pub fn write_task(&mut self, gpa: u64, pid: i32, comm: &str, state: u32, mm_gpa: Option<u64>) {
        let o = offsets();
        self.mem.write(Gpa(gpa + o.task_pid), &pid.to_le_bytes());
        self.mem.write(Gpa(gpa + o.task_tgid), &pid.to_le_bytes());
        let mut c = [0u8; 16];
        c[..comm.len().min(15)].copy_from_slice(&comm.as_bytes()[..comm.len().min(15)]);
        self.mem.write(Gpa(gpa + o.task_comm), &c);
        self.mem.write(Gpa(gpa + o.task_state), &state.to_le_bytes());
        self.mem.write_u64(Gpa(gpa + o.task_mm), mm_gpa.map_or(0, direct));
        // Every task's parent is init_task (its own parent) until a test says otherwise.
        self.set_parent(gpa, INIT_TASK_GPA);
    }

    /// Sets the `real_parent` of the task at `gpa` to the task at `parent_gpa`.
    pub fn set_parent(&mut self, gpa: u64, parent_gpa: u64) {
        let task = |g: u64| if g == INIT_TASK_GPA { START_KERNEL_MAP + g } else { direct(g) };
        self.mem.write_u64(Gpa(gpa + offsets().task_real_parent), task(parent_gpa));
    }

    /// Sets the `tasks.next` of the task at `gpa` to the kernel-virtual `next`.
    pub fn set_next(&mut self, task_gpa: u64, next: u64) {
        self.mem.write_u64(Gpa(task_gpa + offsets().task_tasks), next);
    }

    /// The kernel-virtual address of the list entry of the task at `gpa`.
    pub fn entry(task_gpa: u64) -> u64 {
        let base = if task_gpa == INIT_TASK_GPA { START_KERNEL_MAP + task_gpa } else { direct(task_gpa) };
        base + offsets().task_tasks
    }

    /// `n` user tasks (pids 1..=n, "task-N", sleeping) linked after `init_task`; returns
    /// their guest-physical addresses.
    pub fn with_tasks(n: u64) -> (Self, Vec<u64>) {
        let size = (TASKS_GPA + (n + 1) * 0x1000) as usize;
        let mut img = Self::new(size);
        let gpas: Vec<u64> = (0..n).map(|i| TASKS_GPA + i * 0x1000).collect();
        for (i, &g) in gpas.iter().enumerate() {
            // Each task's mm lives right after it, with its pgd pointing at a page of its own.
            let mm = g + TASK_SIZE;
            img.write_task(g, i as i32 + 1, &format!("task-{}", i + 1), 1, Some(mm));
            img.mem.write_u64(Gpa(mm + offsets().mm_pgd), direct(g + 0x800));
        }
        let mut prev = INIT_TASK_GPA;
        for &g in &gpas {
            img.set_next(prev, Self::entry(g));
            prev = g;
        }
        img.set_next(prev, Self::entry(INIT_TASK_GPA));
        (img, gpas)
    }

    /// Writes `init_uts_ns.name` (sysname, nodename, release, version, machine).
    pub fn write_uts(&mut self, fields: [&str; 5]) {
        for (i, f) in fields.iter().enumerate() {
            self.mem.write(Gpa(UTS_GPA + offsets().uts_name + i as u64 * 65), f.as_bytes());
        }
    }
}
