//! The workload as a static Linux program (built by `guests/build.rs` from
//! `guests/workload`), with the same command-line contract as the unikernel's workloads.

/// The static ELF.
pub static ELF: &[u8] = include_bytes!(env!("VMSCOPE_WORKLOAD_ELF"));

#[cfg(test)]
mod tests {
    /// The workload written to a temporary executable file.
    fn installed(tag: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("vmscope-workload-{tag}-{}", std::process::id()));
        std::fs::write(&path, super::ELF).unwrap();
        let mut perm = std::fs::metadata(&path).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
        std::fs::set_permissions(&path, perm).unwrap();
        path
    }

    #[test]
    fn ticks_print_numbered_lines_and_exit_with_n() {
        let path = installed("ticks");
        let out = std::process::Command::new(&path).args(["ticks", "2", "--every", "1"]).output().unwrap();
        std::fs::remove_file(&path).ok();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "tick 1\ntick 2\nticks: done 2\n");
        assert_eq!(out.status.code(), Some(2));
    }

    #[test]
    fn sigdfl_runs_a_program_with_sigint_and_sigquit_at_their_default() {
        let path = installed("sigdfl");
        // A shell that ignores both, as a background command starts.
        let script =
            format!("trap '' INT QUIT; exec {} sigdfl grep SigIgn /proc/self/status", path.display());
        let out = std::process::Command::new("sh").args(["-c", &script]).output().unwrap();
        std::fs::remove_file(&path).ok();
        let text = String::from_utf8_lossy(&out.stdout);
        let mask = text.trim().strip_prefix("SigIgn:").map(|h| u64::from_str_radix(h.trim(), 16).unwrap());
        assert_eq!(
            mask.map(|m| m & 0b110),
            Some(0),
            "SIGINT (bit 1) and SIGQUIT (bit 2) not ignored: {text}"
        );
    }

    #[test]
    fn runs_on_the_host_with_the_same_output() {
        let path = std::env::temp_dir().join(format!("vmscope-workload-test-{}", std::process::id()));
        std::fs::write(&path, super::ELF).unwrap();
        let mut perm = std::fs::metadata(&path).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
        std::fs::set_permissions(&path, perm).unwrap();
        let out = std::process::Command::new(&path).args(["compute", "1000000"]).output().unwrap();
        std::fs::remove_file(&path).ok();
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout)
            .starts_with("compute: N=1000000 primes=78498 checksum=0x8be2da9e7"));
    }
}
