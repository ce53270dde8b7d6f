//! `surface`: how much of the host kernel each form uses for the same workload — the
//! system calls (distinct names and total calls, counted by `strace -f -c`) of a native
//! process, of the runc container (runc, runc init and the workload), and of the vmscope
//! VMM process running the unikernel — and, on the guest side, the distinct exits (ports,
//! MMIO pages) through which the unikernel reaches its VMM. For the VMM's own threads it puts
//! each seccomp allow-list's size beside the distinct calls that thread made under it
//! (`strace -f` of a run that starts a vCPU, a doorbell and the main thread's filter).

use super::{progress, Environment, MeasureError, Options, Report, Summary};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// One `strace -c` summary.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct SyscallCounts {
    /// (name, calls), in the table's order.
    pub per_name: Vec<(String, u64)>,
    /// The `total` row's calls.
    pub total: u64,
}

/// Parses the table `strace -c` writes:
/// `% time  seconds  usecs/call  calls  [errors]  syscall`, dashes, rows, dashes, `total`.
pub(super) fn parse_strace_c(text: &str) -> Option<SyscallCounts> {
    let mut counts = SyscallCounts::default();
    let mut saw_total = false;
    for line in text.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        // Rows start with the time percentage; the header and the dashes do not parse.
        if cols.len() < 5 || cols[0].parse::<f64>().is_err() {
            continue;
        }
        let name = *cols.last()?;
        let calls: u64 = cols[3].parse().ok()?;
        if name == "total" {
            counts.total = calls;
            saw_total = true;
        } else {
            counts.per_name.push((name.to_string(), calls));
        }
    }
    saw_total.then_some(counts)
}

/// Runs `cmd` under `strace -f -c` and returns its counts.
fn strace(cmd: &[&std::ffi::OsStr], what: &str, out: &Path) -> Result<SyscallCounts, MeasureError> {
    let text = run_strace(&["-f", "-c"], cmd, what, out)?;
    parse_strace_c(&text).ok_or_else(|| MeasureError::GuestFailed {
        args: format!("strace -f -c {what}"),
        detail: format!("no summary table in its output: {text}"),
    })
}

/// Runs `strace FLAGS -o OUT CMD…` and returns what it wrote to OUT (removed after).
/// A missing strace is named with the package to install; a failed run with its stderr.
fn run_strace(
    flags: &[&str],
    cmd: &[&std::ffi::OsStr],
    what: &str,
    out: &Path,
) -> Result<String, MeasureError> {
    let status = Command::new("strace")
        .args(flags)
        .arg("-o")
        .arg(out)
        .args(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => {
                MeasureError::MissingTool { tool: "strace".into(), hint: "apt-get install strace".into() }
            }
            _ => MeasureError::Spawn { bin: "strace".into(), source },
        })?;
    let text = std::fs::read_to_string(out).unwrap_or_default();
    let _ = std::fs::remove_file(out);
    if !status.status.success() {
        return Err(MeasureError::GuestFailed {
            args: format!("strace {} {what}", flags.join(" ")),
            detail: String::from_utf8_lossy(&status.stderr).trim().to_string(),
        });
    }
    Ok(text)
}

/// The system calls each VMM thread made under its seccomp filter, by thread kind
/// (`vcpu`, `doorbell`, `main`), from the output of `strace -f` (not `-c`): a thread's
/// calls count from its `seccomp(SECCOMP_SET_MODE_FILTER, …)` on; its kind comes from the
/// name it gave itself (`prctl(PR_SET_NAME, "vcpu0")`), and the first process traced is the
/// main thread. A call strace splits (`<unfinished ...>` / `<... resumed>`) counts once.
pub(super) fn calls_under_filter(trace: &str) -> BTreeMap<&'static str, BTreeSet<String>> {
    let mut kind_of: BTreeMap<&str, &'static str> = BTreeMap::new();
    let mut filtered: BTreeSet<&str> = BTreeSet::new();
    let mut made: BTreeMap<&'static str, BTreeSet<String>> = BTreeMap::new();
    let mut main = None;
    for line in trace.lines() {
        let Some((pid, rest)) = line.split_once(char::is_whitespace) else { continue };
        let rest = rest.trim_start();
        let main_pid = *main.get_or_insert(pid);
        let Some((name, args)) = rest.split_once('(') else { continue };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            continue; // `<... resumed>`, `--- SIG… ---`, `+++ exited +++`
        }
        if name == "prctl" && args.starts_with("PR_SET_NAME") {
            let thread = args.split('"').nth(1).unwrap_or_default();
            let kind = if thread.starts_with("vcpu") {
                "vcpu"
            } else if thread.starts_with("doorbell") {
                "doorbell"
            } else {
                "other"
            };
            kind_of.insert(pid, kind);
            continue;
        }
        if name == "seccomp" && args.starts_with("SECCOMP_SET_MODE_FILTER") {
            filtered.insert(pid);
            continue;
        }
        if filtered.contains(pid) {
            let kind = kind_of.get(pid).copied().unwrap_or(if pid == main_pid { "main" } else { "other" });
            made.entry(kind).or_default().insert(name.to_string());
        }
    }
    made
}

/// Runs `cmd` under `strace -f` (every call, not a summary) and returns the trace.
fn strace_full(cmd: &[&std::ffi::OsStr], what: &str, out: &Path) -> Result<String, MeasureError> {
    run_strace(&["-f", "-qq"], cmd, what, out)
}

/// Samples for one form.
#[derive(Default)]
struct Form {
    distinct: Vec<f64>,
    total: Vec<f64>,
    names: BTreeSet<String>,
}

impl Form {
    fn add(&mut self, c: &SyscallCounts) {
        self.distinct.push(c.per_name.len() as f64);
        self.total.push(c.total as f64);
        self.names.extend(c.per_name.iter().map(|(n, _)| n.clone()));
    }
}

pub(super) fn run(opts: &Options) -> Result<Report, MeasureError> {
    let runs = opts.runs.unwrap_or(if opts.quick { 3 } else { 5 });
    let workload = ["compute", "100000"];
    let env = Environment::here();
    let tmp = std::env::temp_dir();
    let trace = |form: &str| tmp.join(format!("vmscope-surface-{}-{form}.txt", std::process::id()));
    let native_bin = super::compute::write_native_workload()?;
    let runc = guests::container::runtime_path("runc");
    let bar = progress(opts, (runs * 3) as u64, "surface");
    let (mut native, mut container, mut vmm) = (Form::default(), Form::default(), Form::default());
    let (mut exit_keys, mut exits_total, mut exit_names) = (vec![], vec![], BTreeSet::new());
    let mut threads: BTreeMap<&'static str, Form> = BTreeMap::new();
    let ring = env.host_kind.native_ring().to_string();
    for _ in 0..runs {
        let mut cmd: Vec<&std::ffi::OsStr> = vec![native_bin.as_os_str()];
        cmd.extend(workload.iter().map(std::ffi::OsStr::new));
        native.add(&strace(&cmd, "native workload", &trace("native"))?);
        bar.inc(1);
        if let Some(runc) = &runc {
            let words: Vec<String> = workload.iter().map(|s| s.to_string()).collect();
            let bundle = guests::container::prepare_bundle(&words, Some(256 << 20)).map_err(|e| {
                MeasureError::GuestFailed { args: "container bundle".into(), detail: e.to_string() }
            })?;
            let id = bundle.dir.file_name().unwrap_or_default().to_os_string();
            let cmd = [runc.as_os_str(), "run".as_ref(), "--bundle".as_ref(), bundle.dir.as_os_str(), &id];
            container.add(&strace(&cmd, "runc run", &trace("container"))?);
        }
        bar.inc(1);
        let stats: PathBuf = trace("stats");
        let cmd: Vec<&std::ffi::OsStr> = [
            opts.bin.as_os_str(),
            "run".as_ref(),
            "unikernel".as_ref(),
            "--ring".as_ref(),
            ring.as_ref(),
            "--workload".as_ref(),
            workload[0].as_ref(),
            workload[1].as_ref(),
            "--stats-json".as_ref(),
            stats.as_os_str(),
        ]
        .to_vec();
        vmm.add(&strace(&cmd, "vmscope run unikernel", &trace("vmm"))?);
        let json: serde_json::Value = std::fs::read(&stats)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| MeasureError::GuestFailed {
                args: "vmscope run unikernel under strace".into(),
                detail: "no statistics were written".into(),
            })?;
        let _ = std::fs::remove_file(&stats);
        let per_key: inspect::exits::ExitStats =
            serde_json::from_value(json["exits"].clone()).unwrap_or_default();
        exit_keys.push(per_key.per_key.len() as f64);
        exits_total.push(per_key.total() as f64);
        exit_names.extend(per_key.per_key.keys().map(|k| k.to_string()));
        // Per thread, under its filter: a workload that also starts the doorbell thread.
        let cmd: Vec<&std::ffi::OsStr> = [
            opts.bin.as_os_str(),
            "run".as_ref(),
            "unikernel".as_ref(),
            "--ring".as_ref(),
            ring.as_ref(),
            "--workload".as_ref(),
            FILTERED_WORKLOAD.as_ref(),
        ]
        .to_vec();
        let trace = strace_full(&cmd, "vmscope run unikernel", &trace("threads"))?;
        for (kind, names) in calls_under_filter(&trace) {
            let t = threads.entry(kind).or_default();
            t.distinct.push(names.len() as f64);
            t.names.extend(names);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let _ = std::fs::remove_file(&native_bin);
    let w = workload.join(" ");
    let mut metrics = vec![];
    for (form, f) in
        [("native process", &native), ("container (runc)", &container), ("VMM + unikernel", &vmm)]
    {
        metrics.extend(Summary::of(&format!("distinct host syscalls, {form}"), "syscalls", &f.distinct));
        metrics.extend(Summary::of(&format!("host syscalls made, {form}"), "calls", &f.total));
    }
    metrics.extend(Summary::of(
        "distinct exits to the VMM (kind + port), unikernel",
        "exit keys",
        &exit_keys,
    ));
    metrics.extend(Summary::of("exits to the VMM, unikernel", "exits", &exits_total));
    let mut notes = vec![];
    seccomp_figures(&threads, &mut metrics, &mut notes);
    // What each layer's workload could reach, not only what this workload used.
    match std::fs::read_to_string("/proc/kallsyms") {
        Ok(text) => {
            // "address type name [module]"; type W/w is a weak symbol.
            let n = syscall_entry_points(text.lines().filter_map(|l| {
                let mut w = l.split_whitespace().skip(1);
                let weak = matches!(w.next()?, "W" | "w");
                Some((w.next()?, weak))
            }));
            metrics.extend(Summary::of(
                "system calls offered, host kernel (container)",
                "syscalls",
                &[n as f64],
            ));
        }
        Err(e) => notes.push(format!("cannot read /proc/kallsyms for the host kernel's system calls: {e}")),
    }
    match super::compute::cached_linux_kernel().map(|p| linux_syscalls(&p)) {
        Some(Ok(n)) => {
            metrics.extend(Summary::of("system calls offered, Linux guest kernel", "syscalls", &[n as f64]));
        }
        Some(Err(e)) => notes.push(format!("cannot read the Linux guest kernel's symbols: {e}")),
        None => notes.push("Linux guest: its kernel is not built, so its system calls are not counted (`vmscope guests build linux`)".into()),
    }
    // The unikernel's whole interface to its VMM: the hypercall ports of vmscope-abi and
    // COM1's eight registers; everything else is refused or counted as unknown.
    let ports = [
        vmscope_abi::PORT_CONSOLE_WRITE,
        vmscope_abi::PORT_WALL_TIME,
        vmscope_abi::PORT_EXIT,
        vmscope_abi::PORT_DOORBELL,
    ];
    metrics.extend(Summary::of(
        "hypercall ports + UART registers offered, unikernel",
        "ports",
        &[(ports.len() + 8) as f64],
    ));
    let list = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(" ");
    notes.extend([
        format!("workload: {w}; system calls counted with strace -f -c (every thread and child process, start-up included)"),
        format!("native process uses: {}", list(&native.names)),
        "offered = distinct __x64_sys_* entry points in the kernel's symbols (/proc/kallsyms for the host, the vmlinux for the guest), sys_ni_syscall left out".into(),
    ]);
    if runc.is_some() {
        notes.push("container = runc run (runc, runc init and the workload, all traced)".into());
        notes.push(format!("container uses: {}", list(&container.names)));
    } else {
        notes.push("runc is not installed: no container figures".into());
    }
    notes.push(format!("VMM uses: {}", list(&vmm.names)));
    let only_vmm: Vec<_> = vmm.names.difference(&native.names).cloned().collect();
    notes.push(format!("VMM uses and the native process does not: {}", only_vmm.join(" ")));
    notes.push(format!("the unikernel reaches its VMM through: {} (every other guest instruction stays on the CPU or in KVM)", list(&exit_names)));
    Ok(Report { suite: "surface".into(), environment: env, quick: opts.quick, metrics, notes })
}

/// The unikernel workload traced per thread: it starts the doorbell thread too.
const FILTERED_WORKLOAD: &str = "io 20000 --ring";

/// Each VMM thread's allow-list size beside the distinct calls it made under it.
fn seccomp_figures(
    threads: &BTreeMap<&'static str, Form>,
    metrics: &mut Vec<Summary>,
    notes: &mut Vec<String>,
) {
    use vmm::seccomp::{policy, Policy, Thread};
    if policy() == Policy::Off {
        notes.push("seccomp: measured with --no-seccomp, so no thread ran under a filter".into());
    }
    for thread in Thread::ALL {
        let allowed = thread.allow_list();
        let name = thread.name();
        metrics.extend(Summary::of(
            &format!("system calls offered, VMM {name} thread (seccomp allow-list)"),
            "syscalls",
            &[allowed.len() as f64],
        ));
        let Some(made) = threads.get(name) else {
            notes.push(format!("seccomp: no {name} thread ran under its filter in `run unikernel --workload {FILTERED_WORKLOAD}`"));
            continue;
        };
        metrics.extend(Summary::of(
            &format!("distinct host syscalls under the filter, VMM {name} thread"),
            "syscalls",
            &made.distinct,
        ));
        let unused: Vec<&str> =
            allowed.iter().map(|a| a.syscall).filter(|s| !made.names.contains(*s)).collect();
        let held: Vec<String> = allowed
            .iter()
            .filter_map(|a| {
                a.only.as_ref().map(|(arg, v)| format!("{} (argument {arg}: {})", a.syscall, v.join(", ")))
            })
            .collect();
        notes.push(format!(
            "seccomp, {name} thread: made {}; allowed and not made in this run: {}{}",
            made.names.iter().cloned().collect::<Vec<_>>().join(" "),
            if unused.is_empty() { "none".into() } else { unused.join(" ") },
            if held.is_empty() { String::new() } else { format!("; held to: {}", held.join("; ")) },
        ));
    }
    if let Some(other) = threads.get("other") {
        notes.push(format!(
            "seccomp: threads that inherited a filter made: {}",
            other.names.iter().cloned().collect::<Vec<_>>().join(" ")
        ));
    }
}

/// System calls a kernel implements: its distinct `__x64_sys_*` entry points (the targets
/// of its system-call table) from (name, is weak) pairs, without `sys_ni_syscall`, the
/// "not implemented" stub, and without the weak stand-ins `COND_SYSCALL` defines for the
/// calls of features the kernel was configured without.
pub(super) fn syscall_entry_points<'a>(symbols: impl Iterator<Item = (&'a str, bool)>) -> usize {
    symbols
        .filter(|(n, weak)| n.starts_with("__x64_sys_") && *n != "__x64_sys_ni_syscall" && !weak)
        .map(|(n, _)| n)
        .collect::<BTreeSet<_>>()
        .len()
}

/// The system calls of the vmlinux at `path`.
fn linux_syscalls(path: &Path) -> Result<usize, String> {
    use object::{Object, ObjectSymbol};
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file = object::File::parse(&*bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    let names: Vec<(String, bool)> =
        file.symbols().filter_map(|s| Some((s.name().ok()?.to_string(), s.is_weak()))).collect();
    Ok(syscall_entry_points(names.iter().map(|(n, w)| (n.as_str(), *w))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_syscall_entry_points() {
        let symbols = [
            ("__x64_sys_read", false),
            ("__x64_sys_write", false),
            ("__x64_sys_read", false),
            ("__x64_sys_ni_syscall", false),
            ("__x64_sys_io_setup", true),
            ("__ia32_sys_read", false),
            ("sys_read", false),
        ];
        assert_eq!(syscall_entry_points(symbols.into_iter()), 2);
    }

    const SAMPLE: &str = "\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 40.00    0.000040          20         2           mmap
 30.00    0.000030          10         3         1 openat
 30.00    0.000030          30         1           ioctl
------ ----------- ----------- --------- --------- ----------------
100.00    0.000100          16         6         1 total
";

    const FULL: &str = r#"100  execve("/usr/bin/vmscope", ["vmscope"], 0x7ffd /* 20 vars */) = 0
100  openat(AT_FDCWD, "/dev/kvm", O_RDWR|O_CLOEXEC) = 3
101  prctl(PR_SET_NAME, "vcpu0" <unfinished ...>
100  clone3({flags=CLONE_VM}, 88 <unfinished ...>
101  <... prctl resumed>)              = 0
101  ioctl(9, KVM_GET_REGS, 0x7f) = 0
101  seccomp(SECCOMP_SET_MODE_FILTER, 0, {len=64, filter=0x55}) = 0
101  ioctl(9, KVM_RUN, 0 <unfinished ...>
102  prctl(PR_SET_NAME, "doorbell-0x503") = 0
102  seccomp(SECCOMP_SET_MODE_FILTER, 0, {len=40, filter=0x56}) = 0
102  epoll_wait(7, [], 2, -1)          = 0
101  <... ioctl resumed>)              = 0
101  --- SIGRT_2 {si_signo=SIGRT_2, si_code=SI_TKILL} ---
101  rt_sigreturn({mask=[]})           = 0
100  seccomp(SECCOMP_SET_MODE_FILTER, 0, {len=90, filter=0x57}) = 0
100  futex(0x55, FUTEX_WAIT_BITSET_PRIVATE, 0, NULL) = 0
101  exit(0)                           = ?
101  +++ exited with 0 +++
100  exit_group(0)                     = ?
"#;

    #[test]
    fn counts_each_threads_calls_from_its_filter_on() {
        let made = calls_under_filter(FULL);
        let names = |k: &str| made[k].iter().cloned().collect::<Vec<_>>().join(" ");
        assert_eq!(names("vcpu"), "exit ioctl rt_sigreturn");
        assert_eq!(names("doorbell"), "epoll_wait");
        assert_eq!(names("main"), "exit_group futex");
        assert_eq!(made.len(), 3);
        assert!(calls_under_filter("").is_empty());
    }

    #[test]
    fn parses_the_summary_table() {
        let c = parse_strace_c(SAMPLE).unwrap();
        assert_eq!(c.total, 6);
        assert_eq!(
            c.per_name,
            vec![("mmap".to_string(), 2), ("openat".to_string(), 3), ("ioctl".to_string(), 1)]
        );
    }

    #[test]
    fn refuses_what_is_not_a_summary() {
        assert_eq!(parse_strace_c(""), None);
        assert_eq!(parse_strace_c("strace: exec: No such file or directory\n"), None);
        // Rows without a total row: a truncated file.
        assert_eq!(parse_strace_c(&SAMPLE.lines().take(4).collect::<Vec<_>>().join("\n")), None);
    }
}
