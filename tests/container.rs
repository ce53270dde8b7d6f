//! End to end: the container guest, a real OCI bundle run by runc.

mod common;
use common::{stderr, stdout, vmscope};

#[test]
fn every_workload_runs_in_a_container() {
    for (workload, expect) in [
        (&["hello"][..], "Hello from the vmscope workload (pid 1"),
        (&["compute", "1000000"][..], "compute: N=1000000 primes=78498 checksum=0x8be2da9e7"),
        (&["syscalls", "1000"][..], "syscalls: 1000 getppid calls"),
        (&["io 65536 --batch 4096"][..], "io: 65536 bytes in 16 writes"),
    ] {
        let mut args = vec!["run", "container", "--workload"];
        args.extend_from_slice(workload);
        let o = vmscope(&args);
        assert_eq!(o.status.code(), Some(0), "{workload:?}: {}", stderr(&o));
        assert!(stdout(&o).contains(expect), "{workload:?}: {}", stdout(&o));
    }
}

#[test]
fn the_memory_limit_is_enforced() {
    let o = vmscope(&["run", "container", "--mem", "8", "--workload", "compute", "400000000"]);
    assert_eq!(o.status.code(), Some(137), "{}", stderr(&o));
    assert!(stderr(&o).contains("memory limit of 8 MiB"), "{}", stderr(&o));
}

#[test]
fn a_missing_runtime_is_named() {
    let o = vmscope(&["run", "container", "--runtime", "no-such-oci-runtime"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("\"no-such-oci-runtime\" is not on PATH"), "{}", stderr(&o));
}
