//! `vmscope doctor`: what this host has for each guest and feature, what it lacks, and the
//! one command that adds each missing piece (`--json` too).

use clap::Args;
use guests::prereq::{self, Requirement};
use serde::Serialize;
use std::process::ExitCode;
use vmm::vstate::kvm::KvmSystem;

/// Arguments of `vmscope doctor`.
#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    /// Present and usable.
    Ok,
    /// Missing: the feature does not work until it is added.
    Missing,
    /// Missing, but only an alternative or an extra needs it.
    Optional,
}

/// One line of the report.
#[derive(Debug, Serialize)]
struct Check {
    /// The guest kind or feature it belongs to.
    feature: &'static str,
    /// What was checked.
    name: String,
    status: Status,
    /// What was found (a path, a version) or what is wrong.
    detail: String,
    /// The command that fixes it, when it is not ok.
    fix: Option<String>,
    /// The Debian package that provides it, when there is one.
    package: Option<&'static str>,
}

fn requirement(feature: &'static str, r: &Requirement, missing_status: Status) -> Check {
    let found = r.found();
    Check {
        feature,
        name: r.name.into(),
        status: if found.is_some() { Status::Ok } else { missing_status },
        detail: found.map_or_else(|| "not found".into(), |p| p.display().to_string()),
        fix: r.found().is_none().then(|| prereq::install_command(std::slice::from_ref(r))),
        package: Some(r.package),
    }
}

fn kvm_checks(out: &mut Vec<Check>) {
    let kind = vmm::host_kind();
    out.push(Check {
        feature: "kvm",
        name: "host kind".into(),
        status: Status::Ok,
        detail: format!("{kind} — {}", kind.describe()),
        fix: None,
        package: None,
    });
    match KvmSystem::open() {
        Ok(k) => {
            out.push(Check {
                feature: "kvm",
                name: "/dev/kvm".into(),
                status: Status::Ok,
                detail: format!("{} (API 12)", k.path().display()),
                fix: None,
                package: None,
            });
            for (name, present) in k.capability_report() {
                out.push(Check {
                    feature: "kvm",
                    name: name.into(),
                    status: if present { Status::Ok } else { Status::Optional },
                    detail: if present { "offered".into() } else { "not offered: the features that use it are off".into() },
                    fix: (!present).then(|| "a newer host kernel (this one cannot offer it)".into()),
                    package: None,
                });
            }
        }
        Err(e) => out.push(Check {
            feature: "kvm",
            name: "/dev/kvm".into(),
            status: Status::Missing,
            detail: super::chain(&e.into()),
            fix: Some(
                "modprobe kvm_intel (or kvm_amd), and give this user access to /dev/kvm (usermod -aG kvm USER)"
                    .into(),
            ),
            package: None,
        }),
    }
}

/// Whether the VMM's threads get their filters, and which threads those are.
fn seccomp_checks(out: &mut Vec<Check>) {
    use vmm::seccomp::Policy;
    let r = vmm::seccomp::report();
    let (status, detail, fix) = match (r.policy, &r.kernel_problem) {
        (Policy::On, None) => (
            Status::Ok,
            format!("on: a denied system call ends vmscope with status {}", r.exit_status_when_denied),
            None,
        ),
        (Policy::On, Some(problem)) => (
            Status::Missing,
            problem.clone(),
            Some("a kernel with CONFIG_SECCOMP_FILTER, or run vmscope with --no-seccomp".to_string()),
        ),
        (Policy::Off, _) => (
            Status::Optional,
            "off (--no-seccomp): the VMM's threads run without filters".into(),
            Some("leave out --no-seccomp".to_string()),
        ),
    };
    out.push(Check { feature: "seccomp", name: "filters".into(), status, detail, fix, package: None });
    for t in &r.threads {
        out.push(Check {
            feature: "seccomp",
            name: format!("{} thread", t.thread.name()),
            status: Status::Ok,
            detail: format!("{} system calls allowed, installed {}", t.allowed, t.installed),
            fix: None,
            package: None,
        });
    }
}

fn linux_checks(out: &mut Vec<Check>) {
    for r in prereq::LINUX_BUILD {
        out.push(requirement("linux", r, Status::Missing));
    }
    out.push(requirement("linux", &prereq::BUSYBOX, Status::Missing));
    let built = guests::linux::cached();
    out.push(Check {
        feature: "linux",
        name: "kernel".into(),
        status: if built.is_some() { Status::Ok } else { Status::Missing },
        detail: built.map_or_else(
            || format!("not built for the current inputs ({})", guests::linux::build_key()),
            |a| format!("built: {}", a.dir.display()),
        ),
        fix: guests::linux::cached().is_none().then(|| {
            if prereq::missing(prereq::LINUX_BUILD).is_empty() {
                "vmscope guests build linux".into()
            } else {
                "vmscope guests build linux --install-deps".into()
            }
        }),
        package: None,
    });
}

fn container_checks(out: &mut Vec<Check>) {
    let root = prereq::is_root();
    out.push(Check {
        feature: "container",
        name: "root (embedded runtime)".into(),
        status: if root { Status::Ok } else { Status::Missing },
        detail: if root {
            "running as root".into()
        } else {
            "the embedded runtime makes rootful containers".into()
        },
        fix: (!root).then(|| "run vmscope as root (sudo)".into()),
        package: None,
    });
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| guests::container::cgroup::parse_mountinfo(&t))
        .unwrap_or_default();
    let v1: Vec<&str> = mounts.iter().flat_map(|m| m.controllers.iter().map(String::as_str)).collect();
    let v2 = mounts.iter().find(|m| m.unified).and_then(|m| {
        std::fs::read_to_string(m.mount_point.join("cgroup.controllers")).ok().map(|c| c.trim().to_string())
    });
    for controller in ["memory", "cpu", "pids"] {
        let in_v2 = v2.as_deref().is_some_and(|c| c.split_whitespace().any(|x| x == controller));
        let present = v1.contains(&controller) || in_v2;
        out.push(Check {
            feature: "container",
            name: format!("cgroup {controller} controller"),
            status: if present { Status::Ok } else { Status::Missing },
            detail: if in_v2 {
                "cgroup v2".into()
            } else if present {
                "cgroup v1".into()
            } else {
                "not mounted: no limits or accounting".into()
            },
            fix: (!present)
                .then(|| format!("mount the {controller} controller (cgroup v1) or enable it in cgroup v2")),
            package: None,
        });
    }
    if let Some(runc) = prereq::CLIENTS.iter().find(|r| r.name == "runc") {
        out.push(requirement("container", runc, Status::Optional));
    }
}

fn client_checks(out: &mut Vec<Check>) {
    for r in prereq::CLIENTS.iter().filter(|r| r.name != "runc") {
        let feature = match r.name {
            "gdb" => "debugging",
            "tmux" | "strace" | "mke2fs" => "tests",
            "qemu-system-x86_64" | "GNU time" => "measure",
            _ => "tools",
        };
        out.push(requirement(feature, r, Status::Optional));
    }
}

/// Runs `vmscope doctor`: exit 0 when nothing required is missing, 1 otherwise.
pub fn run(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let mut checks = vec![];
    kvm_checks(&mut checks);
    checks.push(Check {
        feature: "unikernel",
        name: "unikernel ELF".into(),
        status: Status::Ok,
        detail: format!("built into vmscope ({} bytes); needs only KVM", guests::unikernel::ELF.len()),
        fix: None,
        package: None,
    });
    seccomp_checks(&mut checks);
    linux_checks(&mut checks);
    container_checks(&mut checks);
    client_checks(&mut checks);
    let not_ok: Vec<&Check> = checks.iter().filter(|c| c.status != Status::Ok).collect();
    let mut packages: Vec<&str> = vec![];
    for p in not_ok.iter().filter_map(|c| c.package) {
        if !packages.contains(&p) {
            packages.push(p);
        }
    }
    let sudo = if prereq::is_root() { "" } else { "sudo " };
    let install = (!packages.is_empty()).then(|| format!("{sudo}apt-get install -y {}", packages.join(" ")));
    let missing = checks.iter().filter(|c| c.status == Status::Missing).count();
    if args.json {
        let v = serde_json::json!({
            "host_kind": vmm::host_kind(),
            "checks": checks,
            "missing": missing,
            "packages_to_install": packages,
            "install_command": install,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let mut feature = "";
        for c in &checks {
            if c.feature != feature {
                feature = c.feature;
                println!("{feature}");
            }
            let status = match c.status {
                Status::Ok => "ok",
                Status::Missing => "MISSING",
                Status::Optional => "optional",
            };
            println!("  {status:<9} {:<34} {}", c.name, c.detail);
            if let Some(fix) = &c.fix {
                println!("  {:<9} {:<34} fix: {fix}", "", "");
            }
        }
        println!();
        if not_ok.is_empty() {
            println!("everything vmscope uses is here");
        } else {
            println!("{missing} required and {} optional pieces are missing", not_ok.len() - missing);
            if let Some(cmd) = &install {
                println!("install every missing package at once: {cmd}");
            }
        }
    }
    Ok(if missing == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
