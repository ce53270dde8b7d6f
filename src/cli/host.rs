//! `vmscope host`: the host kind and the KVM capabilities vmscope uses.

use clap::Args;
use std::process::ExitCode;
use vmm::vstate::kvm::KvmSystem;

/// Arguments of `vmscope host`.
#[derive(Args, Debug)]
pub struct HostArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `vmscope host`.
pub fn run(args: HostArgs) -> anyhow::Result<ExitCode> {
    let kind = vmm::host_kind();
    let kvm = KvmSystem::open();
    let caps = kvm.as_ref().map(|k| k.capability_report()).unwrap_or_default();
    if args.json {
        let v = serde_json::json!({
            "host_kind": kind,
            "description": kind.describe(),
            "cpu_model": vmm::host::cpu_model(),
            "default_ring": kind.native_ring(),
            // The device's path, or why it is unusable: plain JSON, not Rust's Result.
            "kvm": match &kvm {
                Ok(k) => serde_json::json!(k.path().display().to_string()),
                Err(e) => serde_json::json!({ "error": e.to_string() }),
            },
            "capabilities": caps.iter().map(|(n, p)| (n.to_string(), *p)).collect::<std::collections::BTreeMap<_, _>>(),
            "seccomp": vmm::seccomp::report(),
            "snapshot_state": kvm.as_ref().ok().map(vmm::snapshot::probe::probe),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("host kind:    {} — {}", kind, kind.describe());
        println!("cpu:          {}", vmm::host::cpu_model());
        println!("default ring: CPL{} (the one that runs natively here)", kind.native_ring());
        match &kvm {
            Ok(k) => {
                println!("kvm:          {} (API 12)", k.path().display());
                for (name, present) in &caps {
                    println!("  {:<36} {}", name, if *present { "yes" } else { "no" });
                }
            }
            Err(e) => println!("kvm:          unusable: {e}"),
        }
        print_seccomp(&vmm::seccomp::report());
        if let Ok(k) = &kvm {
            super::snapshot::print_probe(k);
        }
    }
    Ok(if kvm.is_ok() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// The seccomp lines of `vmscope host`.
fn print_seccomp(r: &vmm::seccomp::Report) {
    use vmm::seccomp::Policy;
    match (r.policy, &r.kernel_problem) {
        (Policy::Off, _) => println!("seccomp:      off (--no-seccomp): no thread gets a filter"),
        (Policy::On, Some(problem)) => {
            println!("seccomp:      on, but {problem}: vmscope run fails to start its threads; use --no-seccomp")
        }
        (Policy::On, None) => println!(
            "seccomp:      on: each thread below allows only its list; a denied call ends vmscope with status {} (--no-seccomp turns filters off)",
            r.exit_status_when_denied
        ),
    }
    for t in &r.threads {
        println!("  {:<9} {:>3} system calls, installed {}", t.thread.name(), t.allowed, t.installed);
    }
}
