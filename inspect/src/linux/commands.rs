//! The Linux commands of the inspection language (`ps`, `dmesg`, `uname`, `pt --pid N
//! [ADDR]`, `mappings --pid N`), executed on guest-physical memory: the session, the gdb
//! stub's `monitor` and the TUI pass each line here first ([`execute_line`]); a line that
//! is not one of these is theirs. The result is text and JSON, rendered by the frontend.

use super::{dmesg, tasks, uname, Kernel, KernelMemory, LinuxError};
use crate::addr::Gva;
use crate::mem::GuestPhysMemory;
use crate::paging::{self, PagingContext};
use serde_json::json;
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The commands this module answers, for `help`.
pub const HELP: &str = "\
ps                  the Linux guest's processes from its task list: pid, state, name, page-table root
dmesg [N]           the Linux guest's kernel log (the last N records) from its printk ring buffer
uname               the Linux guest's uname -a, from init_uts_ns
pt --pid N [ADDR]   process N's page-table root, or the walk of ADDR through its page tables
mappings --pid N    every mapping of process N's address space (its mm->pgd)
";

/// At most this many ranges are listed by `mappings --pid` (as by `mappings`).
pub const MAX_LISTED_MAPPINGS: usize = 512;

/// A command's result.
#[derive(Clone, Debug)]
pub struct Reply {
    /// For people.
    pub text: String,
    /// For programs.
    pub json: serde_json::Value,
}

/// One parsed Linux command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinuxCommand {
    /// `ps`.
    Ps,
    /// `dmesg [N]`.
    Dmesg(Option<usize>),
    /// `uname`.
    Uname,
    /// `pt --pid N [ADDR]`.
    Pt {
        /// The process.
        pid: i64,
        /// The address to walk.
        addr: Option<u64>,
    },
    /// `mappings --pid N`.
    Mappings(i64),
}

fn number(what: &str, s: &str) -> Result<u64, LinuxError> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(&h.replace('_', ""), 16),
        None => s.parse(),
    };
    r.map_err(|_| LinuxError::Usage(format!("{what}: `{s}` is not a number")))
}

/// Parses `line` if it is a Linux command; `None` if it is not one (`pt ADDR` and
/// `mappings` without `--pid` are the session's own).
pub fn parse(line: &str) -> Option<Result<LinuxCommand, LinuxError>> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let (&word, rest) = words.split_first()?;
    let pid_of = |rest: &[&str]| -> Result<(i64, Vec<String>), LinuxError> {
        let i = rest.iter().position(|w| *w == "--pid").expect("checked");
        let pid = rest
            .get(i + 1)
            .ok_or_else(|| LinuxError::Usage(format!("{word} --pid needs a process id")))
            .and_then(|p| {
                p.parse::<i64>()
                    .map_err(|_| LinuxError::Usage(format!("{word} --pid: `{p}` is not a process id")))
            })?;
        let others = rest
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i && *j != i + 1)
            .map(|(_, w)| w.to_string())
            .collect();
        Ok((pid, others))
    };
    Some(match word {
        "ps" | "uname" if !rest.is_empty() => Err(LinuxError::Usage(format!("{word} takes no arguments"))),
        "ps" => Ok(LinuxCommand::Ps),
        "uname" => Ok(LinuxCommand::Uname),
        "dmesg" => match rest {
            [] => Ok(LinuxCommand::Dmesg(None)),
            [n] => number("dmesg N", n).map(|n| LinuxCommand::Dmesg(Some(n as usize))),
            _ => Err(LinuxError::Usage("usage: dmesg [N]".into())),
        },
        "pt" if rest.contains(&"--pid") => pid_of(rest).and_then(|(pid, others)| match others.as_slice() {
            [] => Ok(LinuxCommand::Pt { pid, addr: None }),
            [a] => number("pt ADDR", a).map(|a| LinuxCommand::Pt { pid, addr: Some(a) }),
            _ => Err(LinuxError::Usage("usage: pt --pid N [ADDR]".into())),
        }),
        "mappings" if rest.contains(&"--pid") => pid_of(rest).and_then(|(pid, others)| {
            if others.is_empty() {
                Ok(LinuxCommand::Mappings(pid))
            } else {
                Err(LinuxError::Usage("usage: mappings --pid N".into()))
            }
        }),
        _ => return None,
    })
}

/// The vmlinux (with DWARF) of the guest this process runs, for [`execute_line`]: set once
/// by the frontend that booted it (`vmscope run linux` knows which kernel it loaded), read
/// by every command frontend (session, gdb `monitor`, TUI) without threading a path through
/// each of them.
pub fn set_vmlinux(path: &Path) {
    let _ = VMLINUX.set(path.to_path_buf());
}

/// The vmlinux set by [`set_vmlinux`].
pub fn vmlinux() -> Option<&'static Path> {
    VMLINUX.get().map(PathBuf::as_path)
}

static VMLINUX: OnceLock<PathBuf> = OnceLock::new();

/// Runs `line` if it is a Linux command (`None` if it is not one), reading `mem` with the
/// structure offsets of `vmlinux` (loaded once per process); `ctx` gives a vCPU's paging
/// context (its mode and flags serve a process's walk; its CR3 finds where the kernel was
/// loaded), asked for only when the line is a Linux command.
pub fn execute_line(
    line: &str,
    mem: &dyn GuestPhysMemory,
    ctx: impl FnOnce() -> PagingContext,
    vmlinux: Option<&Path>,
) -> Option<Result<Reply, LinuxError>> {
    let cmd = match parse(line)? {
        Ok(c) => c,
        Err(e) => return Some(Err(e)),
    };
    let kernel = vmlinux
        .ok_or_else(|| {
            LinuxError::Usage(format!(
                "`{}` reads a Linux guest's structures and needs its vmlinux with DWARF (`vmscope run linux` has it; with --kernel, give a vmlinux built with debug info)",
                line.trim()
            ))
        })
        .and_then(Kernel::load_cached);
    Some(kernel.and_then(|k| {
        let ctx = ctx();
        execute(&cmd, &KernelMemory::with_paging(mem, &k, &ctx), &ctx)
    }))
}

/// Runs one command.
pub fn execute(cmd: &LinuxCommand, k: &KernelMemory<'_>, ctx: &PagingContext) -> Result<Reply, LinuxError> {
    match cmd {
        LinuxCommand::Ps => {
            let list = tasks::list(k)?;
            let mut text = format!("{:>6} {:>6} S {:<16} {:<18} {}\n", "PID", "TGID", "COMM", "TASK", "PGD");
            for t in &list {
                let pgd = t.pgd.map_or("-".to_string(), |p| format!("{p:#x}"));
                let _ = writeln!(
                    text,
                    "{:>6} {:>6} {} {:<16} {:<#18x} {pgd}",
                    t.pid, t.tgid, t.state, t.comm, t.task
                );
            }
            Ok(Reply { text, json: json!({ "tasks": list }) })
        }
        LinuxCommand::Dmesg(last) => {
            let mut recs = dmesg::records(k)?;
            if let Some(n) = last {
                let skip = recs.len().saturating_sub(*n);
                recs.drain(..skip);
            }
            let mut text = String::new();
            for r in &recs {
                let _ = writeln!(text, "{r}");
            }
            Ok(Reply { text, json: json!({ "records": recs }) })
        }
        LinuxCommand::Uname => {
            let u = uname::read(k)?;
            Ok(Reply { text: format!("{u}\n"), json: json!({ "uname": u }) })
        }
        LinuxCommand::Pt { pid, addr } => {
            let (t, pctx) = process_context(k, ctx, *pid)?;
            let head = format!(
                "pid {} ({}): mm {:#x}, page-table root (mm->pgd) {:#x}\n",
                t.pid,
                t.comm,
                t.mm.unwrap_or(0),
                pctx.cr3
            );
            match addr {
                None => {
                    Ok(Reply { text: head, json: json!({ "task": t, "cr3": pctx.cr3, "mode": pctx.mode }) })
                }
                Some(a) => match paging::translate(k.phys(), &pctx, Gva(*a)) {
                    Ok(mut tr) => {
                        tr.host = None;
                        Ok(Reply {
                            text: format!("{head}{tr}\n"),
                            json: json!({ "task": t, "translation": tr, "mode": pctx.mode }),
                        })
                    }
                    Err(e) => Ok(Reply {
                        text: format!("{head}{e}\n"),
                        json: json!({ "task": t, "error": e.to_string(), "walk_error": e, "mode": pctx.mode }),
                    }),
                },
            }
        }
        LinuxCommand::Mappings(pid) => {
            let (t, pctx) = process_context(k, ctx, *pid)?;
            let mut list = paging::mappings(k.phys(), &pctx);
            let total = list.mappings.len();
            list.mappings.truncate(MAX_LISTED_MAPPINGS);
            let mut text = format!("pid {} ({}): page-table root {:#x}\n{list}\n", t.pid, t.comm, pctx.cr3);
            if total > MAX_LISTED_MAPPINGS {
                let _ = writeln!(text, "(listed the first {MAX_LISTED_MAPPINGS} of {total} ranges, the limit; `pt --pid N ADDR` walks any one address)");
            }
            Ok(Reply {
                text,
                json: json!({ "task": t, "cr3": pctx.cr3, "mode": pctx.mode, "mappings": list, "ranges_total": total }),
            })
        }
    }
}

/// The task with `pid` and the paging context it runs with: `ctx` with CR3 = its `mm->pgd`.
fn process_context(
    k: &KernelMemory<'_>,
    ctx: &PagingContext,
    pid: i64,
) -> Result<(tasks::Task, PagingContext), LinuxError> {
    let t = tasks::find(k, pid)?;
    let Some(pgd) = t.pgd else {
        return Err(LinuxError::KernelThread { pid: t.pid, comm: t.comm });
    };
    let mut pctx = *ctx;
    if !matches!(pctx.mode, paging::PagingMode::Level4 | paging::PagingMode::Level5) {
        pctx = PagingContext::long_mode(pgd, false);
    }
    pctx.cr3 = pgd;
    Ok((t, pctx))
}
