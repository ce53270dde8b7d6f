//! The workload as a static Linux program (built by `guests/build.rs` from
//! `guests/workload`), with the same command-line contract as the unikernel's workloads.

/// The static ELF.
pub static ELF: &[u8] = include_bytes!(env!("VMSCOPE_WORKLOAD_ELF"));

#[cfg(test)]
mod tests {
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
