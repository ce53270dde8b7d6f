//! Enforcing an OCI seccomp profile without libseccomp, for the embedded runtime: the
//! profile in config.json is compiled with seccompiler (the rust-vmm filter compiler the
//! VMM's own filters use) into BPF programs that the runtime's executor installs in the
//! container's init just before `execve`.
//!
//! seccompiler gives one program a single action on match and one on mismatch, while an
//! OCI profile names an action per rule. So a profile becomes a stack of programs, as the
//! kernel evaluates them (every installed program runs; the most restrictive answer wins,
//! and of equally restrictive answers the most recently installed program's data):
//!
//! 1. the *base* program: every rule's calls (with the rule's argument conditions) are
//!    allowed, everything else gets the profile's default action;
//! 2. one program per other action (for Docker's profile, `clone3` → `ENOSYS`): that
//!    action's calls get it, everything else is allowed.
//!
//! A call named in an `ERRNO(ENOSYS)` rule is allowed by (1) and answered by (2); a call in
//! no rule gets the default from (1). Names the x86_64 table lacks (the 32-bit-only
//! `chown32`, `fcntl64`, …) are left out and listed in [`Compiled::skipped`]. seccompiler
//! filters one architecture: a 32-bit (`int 0x80`) call from the container kills it
//! rather than being filtered by the profile's x86 rules.

use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompOperator};
use seccompiler::{BpfProgram, TargetArch};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Errors compiling or installing a profile.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    /// The profile uses an action seccompiler has no equivalent for.
    #[error(
        "seccomp profile: action {0} is not supported by the embedded runtime (no user-space notification)"
    )]
    Action(LinuxSeccompAction),
    /// A condition names an argument past the sixth.
    #[error("seccomp profile: rule for {name} tests argument {index}, but a system call has 6")]
    ArgIndex {
        /// The system call.
        name: String,
        /// The argument index given.
        index: usize,
    },
    /// The profile does not cover x86_64.
    #[error("seccomp profile: its architectures {0:?} do not include x86_64")]
    Architecture(Vec<String>),
    /// seccompiler refused the filter it was given.
    #[error("seccomp profile: seccompiler cannot compile it: {0}")]
    Compile(String),
    /// The kernel refused to install a program.
    #[error("cannot install seccomp program {index} of {count}: {reason}")]
    Install {
        /// Which program (1-based).
        index: usize,
        /// How many there are.
        count: usize,
        /// seccompiler's account of the failed prctl/seccomp call.
        reason: String,
    },
}

/// A profile compiled to BPF, in the order to install.
#[derive(Debug, Clone, Default)]
pub struct Compiled {
    /// The programs: the base one first.
    pub programs: Vec<BpfProgram>,
    /// Names the x86_64 system call table does not have (left out).
    pub skipped: Vec<String>,
}

/// seccompiler's JSON for an OCI action.
fn action(a: LinuxSeccompAction, errno: Option<u32>, default_errno: u32) -> Result<Value, BpfError> {
    use LinuxSeccompAction as A;
    Ok(match a {
        A::ScmpActAllow => json!("allow"),
        A::ScmpActErrno => json!({ "errno": errno.unwrap_or(default_errno) }),
        A::ScmpActKill | A::ScmpActKillThread => json!("kill_thread"),
        A::ScmpActKillProcess => json!("kill_process"),
        A::ScmpActTrap => json!("trap"),
        A::ScmpActLog => json!("log"),
        A::ScmpActTrace => json!({ "trace": errno.unwrap_or(default_errno) }),
        A::ScmpActNotify => return Err(BpfError::Action(a)),
    })
}

/// seccompiler's JSON for one OCI argument condition, or `None` when it can never hold
/// (a masked compare whose expected value has bits outside the mask).
fn condition(name: &str, arg: &LinuxSeccompArg) -> Result<Option<Value>, BpfError> {
    use LinuxSeccompOperator as Op;
    if arg.index() > 5 {
        return Err(BpfError::ArgIndex { name: name.into(), index: arg.index() });
    }
    let (op, val) = match arg.op() {
        Op::ScmpCmpEq => (json!("eq"), arg.value()),
        Op::ScmpCmpNe => (json!("ne"), arg.value()),
        Op::ScmpCmpLt => (json!("lt"), arg.value()),
        Op::ScmpCmpLe => (json!("le"), arg.value()),
        Op::ScmpCmpGt => (json!("gt"), arg.value()),
        Op::ScmpCmpGe => (json!("ge"), arg.value()),
        // OCI: (arg & value) == valueTwo. seccompiler: (arg & mask) == (val & mask).
        Op::ScmpCmpMaskedEq => {
            let (mask, expected) = (arg.value(), arg.value_two().unwrap_or(0));
            if expected & !mask != 0 {
                return Ok(None);
            }
            (json!({ "masked_eq": mask }), expected)
        }
    };
    Ok(Some(json!({ "index": arg.index(), "type": "qword", "op": op, "val": val })))
}

/// Whether seccompiler's x86_64 table knows `name` (a one-call program compiles; its two
/// actions must differ).
fn known(name: &str) -> bool {
    let probe = json!({ "p": { "mismatch_action": "trap", "match_action": "allow", "filter": [{ "syscall": name }] } });
    seccompiler::compile_from_json(probe.to_string().as_bytes(), TargetArch::x86_64).is_ok()
}

/// Calls and their conditions: `None` is unconditional (and absorbs conditional rules for
/// the same call, which it already covers).
type Calls = BTreeMap<String, Option<Vec<Vec<Value>>>>;

fn add(calls: &mut Calls, name: &str, conditions: Option<Vec<Value>>) {
    match (calls.entry(name.into()).or_insert_with(|| Some(Vec::new())), conditions) {
        (slot @ Some(_), None) => *slot = None,
        (Some(list), Some(c)) => list.push(c),
        (None, _) => {}
    }
}

fn filter(calls: &Calls) -> Vec<Value> {
    let mut out = Vec::new();
    for (name, conditions) in calls {
        match conditions {
            None => out.push(json!({ "syscall": name })),
            Some(list) => out.extend(list.iter().map(|c| json!({ "syscall": name, "args": c }))),
        }
    }
    out
}

fn compile_one(mismatch: Value, matched: Value, calls: &Calls) -> Result<BpfProgram, BpfError> {
    let text =
        json!({ "f": { "mismatch_action": mismatch, "match_action": matched, "filter": filter(calls) } });
    let mut map = seccompiler::compile_from_json(text.to_string().as_bytes(), TargetArch::x86_64)
        .map_err(|e| BpfError::Compile(e.to_string()))?;
    map.remove("f").ok_or_else(|| BpfError::Compile("no program came out".into()))
}

/// Compiles `profile` for x86_64.
pub fn compile(profile: &LinuxSeccomp) -> Result<Compiled, BpfError> {
    if let Some(archs) = profile.architectures() {
        let names: Vec<String> = archs.iter().map(|a| format!("{a:?}")).collect();
        if !archs.is_empty() && !archs.contains(&oci_spec::runtime::Arch::ScmpArchX86_64) {
            return Err(BpfError::Architecture(names));
        }
    }
    let default_errno = profile.default_errno_ret().unwrap_or(super::seccomp::EPERM);
    let default = action(profile.default_action(), profile.default_errno_ret(), default_errno)?;
    let mut skipped = Vec::new();
    let mut base = Calls::new();
    // Per non-allow action (its JSON text as the key, so equal actions share a program).
    let mut others: BTreeMap<String, (Value, Calls)> = BTreeMap::new();
    for rule in profile.syscalls().iter().flatten() {
        let act = action(rule.action(), rule.errno_ret(), default_errno)?;
        for name in rule.names() {
            if !known(name) {
                skipped.push(name.clone());
                continue;
            }
            let mut conds = Vec::new();
            let mut possible = true;
            for arg in rule.args().iter().flatten() {
                match condition(name, arg)? {
                    Some(c) => conds.push(c),
                    None => possible = false,
                }
            }
            if !possible {
                continue;
            }
            let conds = (!conds.is_empty()).then_some(conds);
            add(&mut base, name, conds.clone());
            if act != json!("allow") {
                let entry = others.entry(act.to_string()).or_insert_with(|| (act.clone(), Calls::new()));
                add(&mut entry.1, name, conds);
            }
        }
    }
    skipped.sort();
    skipped.dedup();
    // A profile whose default is to allow needs no base program (and seccompiler refuses
    // one whose two actions are equal).
    let mut programs = Vec::new();
    if default != json!("allow") {
        programs.push(compile_one(default, json!("allow"), &base)?);
    }
    for (act, calls) in others.values() {
        programs.push(compile_one(json!("allow"), act.clone(), calls)?);
    }
    Ok(Compiled { programs, skipped })
}

/// Installs the programs on the calling thread, in order (seccompiler sets
/// `PR_SET_NO_NEW_PRIVS` first, so no capability is needed). Later programs need the
/// earlier ones to allow `seccomp(2)`; Docker's profile does.
pub fn install(compiled: &Compiled) -> Result<(), BpfError> {
    let count = compiled.programs.len();
    for (i, program) in compiled.programs.iter().enumerate() {
        seccompiler::apply_filter(program).map_err(|e| BpfError::Install {
            index: i + 1,
            count,
            reason: e.to_string(),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockers_profile_compiles_to_a_base_program_and_an_enosys_one() {
        let c = compile(&super::super::seccomp::default_profile().unwrap()).unwrap();
        assert_eq!(c.programs.len(), 2, "base + clone3's ENOSYS");
        assert!(c.programs.iter().all(|p| !p.is_empty()));
        // The 32-bit-only names are the ones left out, and nothing the workload needs.
        assert!(c.skipped.iter().any(|n| n == "chown32"), "{:?}", c.skipped);
        for needed in ["read", "write", "execve", "exit_group", "seccomp", "prctl", "personality", "clone"] {
            assert!(!c.skipped.iter().any(|n| n == needed), "{needed} skipped");
        }
    }

    #[test]
    fn unsupported_profiles_are_refused_with_the_reason() {
        use oci_spec::runtime::{Arch, LinuxSeccompArgBuilder, LinuxSeccompBuilder, LinuxSyscallBuilder};
        let notify =
            LinuxSeccompBuilder::default().default_action(LinuxSeccompAction::ScmpActNotify).build().unwrap();
        assert!(compile(&notify).unwrap_err().to_string().contains("SCMP_ACT_NOTIFY"));
        let arm = LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActAllow)
            .architectures(vec![Arch::ScmpArchAarch64])
            .build()
            .unwrap();
        assert!(compile(&arm).unwrap_err().to_string().contains("x86_64"));
        let arg =
            LinuxSeccompArgBuilder::default().index(7usize).value(1u64).op(LinuxSeccompOperator::ScmpCmpEq);
        let rule = LinuxSyscallBuilder::default()
            .names(vec!["read".to_string()])
            .action(LinuxSeccompAction::ScmpActAllow)
            .args(vec![arg.build().unwrap()])
            .build()
            .unwrap();
        let seventh = LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActErrno)
            .syscalls(vec![rule])
            .build()
            .unwrap();
        assert!(compile(&seventh).unwrap_err().to_string().contains("argument 7"));
    }

    #[test]
    fn a_deny_list_profile_needs_only_its_deny_program() {
        use oci_spec::runtime::{LinuxSeccompBuilder, LinuxSyscallBuilder};
        let rule = LinuxSyscallBuilder::default()
            .names(vec!["personality".to_string()])
            .action(LinuxSeccompAction::ScmpActErrno)
            .errno_ret(1u32)
            .build()
            .unwrap();
        let p = LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActAllow)
            .syscalls(vec![rule])
            .build()
            .unwrap();
        assert_eq!(compile(&p).unwrap().programs.len(), 1);
    }

    #[test]
    fn an_unconditional_rule_absorbs_conditional_ones_for_the_same_call() {
        let mut calls = Calls::new();
        add(&mut calls, "personality", Some(vec![json!(1)]));
        add(&mut calls, "personality", None);
        add(&mut calls, "personality", Some(vec![json!(2)]));
        assert_eq!(calls["personality"], None);
        assert_eq!(filter(&calls), vec![json!({ "syscall": "personality" })]);
    }
}
