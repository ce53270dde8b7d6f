//! End to end: `vmscope run --elf FILE` refuses an ELF whose segments do not fit the guest
//! with a message that names the file, the segment and the rule it breaks.

mod common;
use common::{stderr, vmscope};
use vmm::test_utils::tiny_elf;

/// Where `tiny_elf`'s one program header keeps `p_memsz`.
const P_MEMSZ: usize = 0x40 + 40;
const EM_X86_64: u16 = 62;

/// Writes `elf` to a file named `name` and runs `vmscope run --elf FILE ARGS…`; returns the
/// file's path and vmscope's standard error.
fn run_elf(name: &str, elf: &[u8], args: &[&str]) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, elf).unwrap();
    let path = path.display().to_string();
    let mut all = vec!["run", "--elf", &path];
    all.extend_from_slice(args);
    let o = vmscope(&all);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    (path, stderr(&o))
}

#[test]
fn a_segment_below_1_mib_names_the_rule_not_the_memory_size() {
    let (path, err) = run_elf("low.elf", &tiny_elf(0x1000, &[0xf4], EM_X86_64), &[]);
    assert!(
        err.contains(&format!("{path}: segment 0 at gpa:0x1000..0x1001 starts below gpa:0x100000")),
        "{err}"
    );
    assert!(err.contains("loadable segments must start at or above 1 MiB"), "{err}");
    assert!(!err.contains("does not fit") && !err.contains("--mem"), "{err}");
}

#[test]
fn a_segment_that_wraps_past_the_top_of_the_address_space_is_an_error() {
    let mut elf = tiny_elf(0xffff_ffff_ffff_f000, &[0xf4], EM_X86_64);
    elf[P_MEMSZ..P_MEMSZ + 8].copy_from_slice(&0x2000u64.to_le_bytes());
    let (path, err) = run_elf("wraps.elf", &elf, &[]);
    assert!(
        err.contains(&format!(
            "{path}: segment 0 at gpa:0xfffffffffffff000 with p_memsz 0x2000 runs past the end of the 64-bit address space"
        )),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_segment_beyond_guest_memory_asks_for_more_memory() {
    // 4 MiB of memory, less the 256 KiB stack at its top: loadable up to 0x3c0000.
    let (path, err) = run_elf("high.elf", &tiny_elf(0x50_0000, &[0xf4], EM_X86_64), &["--mem", "4"]);
    assert!(
        err.contains(&format!(
            "{path}: segment 0 at gpa:0x500000..0x500001 does not fit in guest memory (loadable area gpa:0x100000..0x3c0000; try a larger --mem)"
        )),
        "{err}"
    );
}
