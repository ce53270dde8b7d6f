//! How long `ps` takes to walk a task list: a synthetic kernel image with N tasks
//! (`inspect::linux::test_utils`), the walk timed over many runs, the median printed per N.
//! `cargo bench -p inspect --bench linux_tasks`. The figure depends on the host (memory reads
//! are host-side copies, so hardware KVM and PVM hosts give the same order).

use inspect::linux::test_utils::{kernel, Image};
use inspect::linux::{tasks, KernelMemory};
use std::time::Instant;

fn main() {
    let k = kernel();
    println!("{:>6} {:>12} {:>12}", "tasks", "median µs", "ns/task");
    for n in [10u64, 100, 300, 1000, 5000] {
        let (img, _) = Image::with_tasks(n);
        let mem = KernelMemory::new(&img.mem, &k, 0);
        let runs = if n > 1000 { 50 } else { 300 };
        let mut times: Vec<f64> = (0..runs)
            .map(|_| {
                let t = Instant::now();
                let list = tasks::list(&mem).expect("the synthetic list is well formed");
                let dt = t.elapsed().as_secs_f64();
                assert_eq!(list.len() as u64, n + 1);
                dt
            })
            .collect();
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        println!("{n:>6} {:>12.1} {:>12.0}", median * 1e6, median * 1e9 / (n + 1) as f64);
    }
}
