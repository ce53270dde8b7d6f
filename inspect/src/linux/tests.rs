use super::commands::{self, LinuxCommand};
use super::test_utils::{self, direct, Image, INIT_TASK_GPA, PRB_GPA, PRB_PTR_GPA};
use super::*;
use crate::addr::Gpa;
use crate::paging::PagingContext;

fn kmem<'a>(img: &'a Image, k: &'a Kernel) -> KernelMemory<'a> {
    KernelMemory::new(&img.mem, k, 0)
}

#[test]
fn the_list_is_walked_from_init_task_back_to_it() {
    let (img, gpas) = Image::with_tasks(3);
    let k = test_utils::kernel();
    let list = tasks::list(&kmem(&img, &k)).unwrap();
    let names: Vec<_> = list.iter().map(|t| (t.pid, t.comm.as_str(), t.state)).collect();
    assert_eq!(names, [(0, "swapper/0", 'R'), (1, "task-1", 'S'), (2, "task-2", 'S'), (3, "task-3", 'S')]);
    assert_eq!(list[0].mm, None);
    assert_eq!(list[1].task, direct(gpas[0]));
    assert_eq!(list[1].pgd, Some(gpas[0] + 0x800));
}

#[test]
fn a_cycle_that_misses_init_task_is_reported_where_it_closes() {
    let (mut img, gpas) = Image::with_tasks(4);
    // task-4 points back at task-2: the walk would go round 2, 3, 4 for ever.
    img.set_next(gpas[3], Image::entry(gpas[1]));
    let k = test_utils::kernel();
    let e = tasks::list(&kmem(&img, &k)).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, LinuxError::TaskListCorrupt { at, .. } if at == Image::entry(gpas[1])), "{msg}");
    assert!(msg.starts_with(&format!("task list corrupt at {:#x}: a cycle", Image::entry(gpas[1]))), "{msg}");
}

#[test]
fn an_entry_pointing_at_itself_is_a_cycle() {
    let (mut img, gpas) = Image::with_tasks(2);
    img.set_next(gpas[0], Image::entry(gpas[0]));
    let k = test_utils::kernel();
    let msg = tasks::list(&kmem(&img, &k)).unwrap_err().to_string();
    assert!(msg.contains("cycle that does not pass through init_task"), "{msg}");
}

#[test]
fn a_pointer_outside_the_direct_map_ends_the_walk_with_its_value() {
    let (mut img, gpas) = Image::with_tasks(2);
    img.set_next(gpas[1], 0x4141_4141_4141_4141);
    let k = test_utils::kernel();
    let msg = tasks::list(&kmem(&img, &k)).unwrap_err().to_string();
    assert_eq!(
        msg,
        format!(
            "task list corrupt at {:#x}: next pointer 0x4141414141414141 is outside the kernel's direct map",
            Image::entry(gpas[1])
        )
    );
}

#[test]
fn a_pointer_into_the_direct_map_past_ram_is_unreadable() {
    let (mut img, gpas) = Image::with_tasks(1);
    img.set_next(gpas[0], direct(0x4000_0000));
    let k = test_utils::kernel();
    let msg = tasks::list(&kmem(&img, &k)).unwrap_err().to_string();
    assert!(
        msg.starts_with(&format!("task list corrupt at {:#x}: cannot read", direct(0x4000_0000))),
        "{msg}"
    );
}

#[test]
fn a_list_longer_than_the_cap_is_refused() {
    let (img, _) = Image::with_tasks(10);
    let k = test_utils::kernel();
    let msg = tasks::list_capped(&kmem(&img, &k), 5).unwrap_err().to_string();
    assert!(msg.contains("more than 5 entries (the limit)"), "{msg}");
    assert_eq!(tasks::list_capped(&kmem(&img, &k), 11).unwrap().len(), 11);
}

#[test]
fn a_walk_keeps_the_tasks_before_a_corrupt_entry() {
    let (mut img, gpas) = Image::with_tasks(4);
    // task-3 points into nowhere: tasks 0..=3 were read, the reason names task-3's entry.
    img.set_next(gpas[2], 0x4141_4141_4141_4141);
    let k = test_utils::kernel();
    let w = tasks::walk(&kmem(&img, &k), MAX_TASKS);
    let pids: Vec<i64> = w.tasks.iter().map(|t| t.pid).collect();
    assert_eq!(pids, [0, 1, 2, 3]);
    let e = w.error.expect("the walk stopped early").to_string();
    assert!(
        e.starts_with(&format!("task list corrupt at {:#x}: next pointer", Image::entry(gpas[2]))),
        "{e}"
    );

    // A cycle and the cap stop it too, with what was read so far; a good list has no error.
    img.set_next(gpas[2], Image::entry(gpas[0]));
    let w = tasks::walk(&kmem(&img, &k), MAX_TASKS);
    assert_eq!(w.tasks.len(), 4);
    assert!(w.error.unwrap().to_string().contains("a cycle"));
    let (img, _) = Image::with_tasks(10);
    let w = tasks::walk(&kmem(&img, &k), 3);
    assert_eq!(w.tasks.len(), 3);
    assert!(w.error.unwrap().to_string().contains("more than 3 entries"));
    assert!(tasks::walk(&kmem(&img, &k), MAX_TASKS).error.is_none());
}

#[test]
fn the_parent_is_real_parent_s_process_id() {
    let (mut img, gpas) = Image::with_tasks(3);
    img.set_parent(gpas[2], gpas[0]);
    let k = test_utils::kernel();
    let list = tasks::list(&kmem(&img, &k)).unwrap();
    let ppids: Vec<(i64, i64)> = list.iter().map(|t| (t.pid, t.ppid)).collect();
    assert_eq!(ppids, [(0, 0), (1, 0), (2, 0), (3, 1)]);
    // A parent pointer outside kernel memory is a corrupt entry, named.
    img.mem.write_u64(Gpa(gpas[1] + test_utils::offsets().task_real_parent), 0x10);
    let msg = tasks::list(&kmem(&img, &k)).unwrap_err().to_string();
    assert!(msg.contains("task_struct.real_parent") || msg.contains("real_parent->tgid"), "{msg}");
}

#[test]
fn a_wild_mm_pointer_is_named() {
    let (mut img, gpas) = Image::with_tasks(1);
    img.mem.write_u64(Gpa(gpas[0] + test_utils::offsets().task_mm), 0x1234);
    let k = test_utils::kernel();
    let msg = tasks::list(&kmem(&img, &k)).unwrap_err().to_string();
    assert!(msg.contains("task_struct.mm") || msg.contains("mm_struct.pgd"), "{msg}");
}

#[test]
fn state_letters_follow_proc() {
    assert_eq!(tasks::state_letter(0, 0), 'R');
    assert_eq!(tasks::state_letter(1, 0), 'S');
    assert_eq!(tasks::state_letter(2, 0), 'D');
    assert_eq!(tasks::state_letter(0x402, 0), 'I');
    assert_eq!(tasks::state_letter(4, 0), 'T');
    assert_eq!(tasks::state_letter(0, 0x20), 'Z');
}

#[test]
fn uname_reads_init_uts_ns() {
    let mut img = Image::new(0x10000);
    img.write_uts(["Linux", "(none)", "6.1.158", "#1 SMP", "x86_64"]);
    let k = test_utils::kernel();
    let u = uname::read(&kmem(&img, &k)).unwrap();
    assert_eq!(u.to_string(), "Linux (none) 6.1.158 #1 SMP x86_64");
}

/// A ring of 4 descriptors and 128 bytes of text: records 0..=3 then 4 and 5, which reuse
/// slots 0 and 1; record 5's block would wrap, so it sits at the ring's start.
fn ring_image(head: u64) -> Image {
    let mut img = Image::new(0x10000);
    let o = test_utils::offsets().prb.unwrap();
    let (descs, infos, data) = (0x5000u64, 0x5100u64, 0x5200u64);
    img.mem.write_u64(Gpa(PRB_PTR_GPA), START_KERNEL_MAP + PRB_GPA);
    img.mem.write(Gpa(PRB_GPA + o.desc_ring + o.count_bits), &2u32.to_le_bytes());
    img.mem.write_u64(Gpa(PRB_GPA + o.desc_ring + o.descs), direct(descs));
    img.mem.write_u64(Gpa(PRB_GPA + o.desc_ring + o.infos), direct(infos));
    img.mem.write_u64(Gpa(PRB_GPA + o.desc_ring + o.head_id), head);
    img.mem.write_u64(Gpa(PRB_GPA + o.desc_ring + o.tail_id), 2);
    img.mem.write(Gpa(PRB_GPA + o.text_data_ring + o.size_bits), &7u32.to_le_bytes());
    img.mem.write_u64(Gpa(PRB_GPA + o.text_data_ring + o.data), direct(data));
    let mut lpos = 0u64;
    let texts =
        ["zero", "one", "Linux version 6.1.158 (gcc)", "three is being written", "four", "five wraps round"];
    for (id, text) in texts.iter().enumerate() {
        let id = id as u64;
        let block = (8 + text.len() as u64).next_multiple_of(8);
        let begin = lpos;
        let mut at = begin % 128;
        if at + block >= 128 {
            // The kernel leaves the end of the lap unused and stores the block at offset 0.
            at = 0;
            lpos = lpos.next_multiple_of(128);
        }
        let next = lpos + block;
        if id == 5 {
            assert_eq!((at, begin % 128), (0, 120), "record 5 wraps");
        }
        img.mem.write_u64(Gpa(data + at), id);
        img.mem.write(Gpa(data + at + 8), text.as_bytes());
        let slot = id % 4;
        let state: u64 = if id == 3 { 0 } else { 2 };
        img.mem.write_u64(Gpa(descs + slot * o.desc_size + o.state_var), state << 62 | id);
        img.mem.write_u64(Gpa(descs + slot * o.desc_size + o.lpos_begin), begin);
        img.mem.write_u64(Gpa(descs + slot * o.desc_size + o.lpos_next), next);
        img.mem.write_u64(Gpa(infos + slot * o.info_size + o.seq), id);
        img.mem.write_u64(Gpa(infos + slot * o.info_size + o.ts_nsec), id * 1_500_000_000);
        img.mem.write(Gpa(infos + slot * o.info_size + o.text_len), &(text.len() as u16).to_le_bytes());
        lpos = next;
    }
    img
}

#[test]
fn dmesg_reads_finalized_records_from_tail_to_head() {
    let img = ring_image(5);
    let k = test_utils::kernel();
    let recs = dmesg::records(&kmem(&img, &k)).unwrap();
    let texts: Vec<_> = recs.iter().map(|r| (r.seq, r.text.as_str())).collect();
    // 3 is still reserved (skipped); 0 and 1 were overwritten by 4 and 5.
    assert_eq!(texts, [(2, "Linux version 6.1.158 (gcc)"), (4, "four"), (5, "five wraps round")]);
    assert_eq!(recs[0].to_string(), "[    3.000000] Linux version 6.1.158 (gcc)");
}

#[test]
fn a_head_the_tail_never_reaches_is_a_corrupt_ring() {
    let img = ring_image(1000);
    let k = test_utils::kernel();
    let msg = dmesg::records(&kmem(&img, &k)).unwrap_err().to_string();
    assert!(msg.starts_with("printk ring buffer corrupt at"), "{msg}");
    assert!(msg.contains("not reached from tail id 0x2 within 4 descriptors"), "{msg}");
}

#[test]
fn a_huge_ring_header_is_refused_before_any_allocation() {
    let mut img = ring_image(5);
    let o = test_utils::offsets().prb.unwrap();
    img.mem.write(Gpa(PRB_GPA + o.text_data_ring + o.size_bits), &63u32.to_le_bytes());
    let k = test_utils::kernel();
    let msg = dmesg::records(&kmem(&img, &k)).unwrap_err().to_string();
    assert!(msg.contains("size_bits 63 is not within 3..=30"), "{msg}");
}

#[test]
fn commands_parse_and_leave_other_lines_alone() {
    assert_eq!(commands::parse("ps").unwrap().unwrap(), LinuxCommand::Ps);
    assert_eq!(commands::parse("dmesg 5").unwrap().unwrap(), LinuxCommand::Dmesg(Some(5)));
    assert_eq!(commands::parse("pt --pid 1").unwrap().unwrap(), LinuxCommand::Pt { pid: 1, addr: None });
    assert_eq!(
        commands::parse("pt --pid 7 0x400000").unwrap().unwrap(),
        LinuxCommand::Pt { pid: 7, addr: Some(0x40_0000) }
    );
    assert_eq!(commands::parse("mappings --pid 3").unwrap().unwrap(), LinuxCommand::Mappings(3));
    assert!(commands::parse("pt 0x1000").is_none());
    assert!(commands::parse("mappings").is_none());
    assert!(commands::parse("regs").is_none());
    assert_eq!(
        commands::parse("pt --pid x").unwrap().unwrap_err().to_string(),
        "pt --pid: `x` is not a process id"
    );
    assert_eq!(commands::parse("ps 3").unwrap().unwrap_err().to_string(), "ps takes no arguments");
}

#[test]
fn ps_and_pt_for_a_process_run_on_the_image() {
    let (img, gpas) = Image::with_tasks(2);
    let k = test_utils::kernel();
    let ctx = PagingContext::long_mode(0, false);
    let m = kmem(&img, &k);
    let ps = commands::execute(&LinuxCommand::Ps, &m, &ctx).unwrap();
    assert!(ps.text.lines().nth(2).unwrap().contains(" 1 S task-1"), "{}", ps.text);
    assert_eq!(ps.json["tasks"].as_array().unwrap().len(), 3);
    let pt = commands::execute(&LinuxCommand::Pt { pid: 2, addr: None }, &m, &ctx).unwrap();
    assert!(pt.text.contains(&format!("page-table root (mm->pgd) {:#x}", gpas[1] + 0x800)), "{}", pt.text);
    let e = commands::execute(&LinuxCommand::Mappings(0), &m, &ctx).unwrap_err();
    assert_eq!(
        e.to_string(),
        "pid 0 (swapper/0) is a kernel thread: it has no mm, so no address space of its own"
    );
    let e = commands::execute(&LinuxCommand::Pt { pid: 9, addr: None }, &m, &ctx).unwrap_err();
    assert_eq!(e.to_string(), "no task with pid 9 (`ps` lists them)");
    let _ = INIT_TASK_GPA;
}

#[test]
fn a_missing_vmlinux_is_named() {
    let mem = crate::mem::BufferMemory::zeroed(0x1000);
    let ctx = PagingContext::long_mode(0, false);
    let e = commands::execute_line("ps", &mem, || ctx, Some(std::path::Path::new("/nonexistent/vmlinux")))
        .unwrap()
        .unwrap_err();
    assert!(e.to_string().starts_with("cannot read the vmlinux /nonexistent/vmlinux"), "{e}");
    assert!(commands::execute_line("regs", &mem, || ctx, None).is_none());
}
