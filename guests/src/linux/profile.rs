//! The kernel command line vmscope gives its Linux guest, and the PVM profile: what the
//! command line must hide from a kernel whose CPL0 code runs in KVM's instruction emulator.
//! Each item is explained in guests/linux/README.md.

/// Always: the console, no reboot on the way out, no KASLR.
pub const BASE: &[&str] = &["console=ttyS0", "reboot=k", "panic=-1", "nokaslr", "quiet"];

/// On PVM hosts only.
pub const PVM: &[&str] = &[
    // xsave/xrstor are not emulated; fall back to fxsave.
    "noxsave",
    // One comma list (a second clearcpuid= is ignored; ~128 characters at most).
    "clearcpuid=popcnt,smap,cx16,rdrand,rdseed,fsgsbase",
    // Legacy PTY set-up took about a minute under emulation.
    "pty.legacy_count=0",
    // Poisoning/marking memory with rep stos, emulated one iteration at a time.
    "rodata=off",
    // Freeing the initrd copies and poisons it.
    "retain_initrd",
];

/// The full command line: base, the PVM profile when `pvm`, then vmscope's own items.
pub fn cmdline(pvm: bool, extra: &[String]) -> String {
    let mut parts: Vec<String> = BASE.iter().map(|s| s.to_string()).collect();
    if pvm {
        parts.extend(PVM.iter().map(|s| s.to_string()));
    }
    parts.extend(extra.iter().cloned());
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pvm_profile_only_on_pvm() {
        let hw = cmdline(false, &["vmscope.workload=hello".into()]);
        assert!(!hw.contains("clearcpuid") && hw.ends_with("vmscope.workload=hello"));
        let pvm = cmdline(true, &[]);
        assert_eq!(pvm.matches("clearcpuid=").count(), 1);
        assert!(pvm.contains("noxsave"));
        assert!(pvm.len() < 2048);
    }
}
