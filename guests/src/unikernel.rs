//! vmscope's unikernel, built by `guests/build.rs` from `guests/unikernel` and embedded in
//! the binary, so `vmscope run unikernel` needs no download and no file.
//!
//! ```
//! assert!(guests::unikernel::ELF.starts_with(b"\x7fELF"));
//! ```

use std::path::Path;

/// The unikernel's ELF image (with symbols and DWARF, for gdb and the symbolizer).
pub static ELF: &[u8] = include_bytes!(env!("VMSCOPE_UNIKERNEL_ELF"));

/// Whether the unikernel's `workload` (its command-line words) rings the doorbell port:
/// `doorbell N`, and `io … --ring`, whose kicks are doorbell writes. The VMM registers the
/// doorbell's ioeventfd only then (see `vmm::machine::ElfGuestConfig::doorbell`).
pub fn rings_doorbell(workload: &[String]) -> bool {
    let mut words = workload.iter().flat_map(|w| w.split_whitespace());
    let first = words.next();
    match first {
        Some("doorbell") => true,
        Some("io") => words.any(|w| w == "--ring"),
        Some("hostile") => words.next() == Some("ring-garbage"),
        _ => false,
    }
}

/// Where the build left the ELF (valid on the machine that built vmscope).
pub fn built_path() -> &'static Path {
    Path::new(env!("VMSCOPE_UNIKERNEL_ELF"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_which_workloads_ring_the_doorbell() {
        let w = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(rings_doorbell(&w(&["doorbell", "1000"])));
        assert!(rings_doorbell(&w(&["io 65536 --batch 256 --ring"])));
        assert!(rings_doorbell(&w(&["io", "4096", "--ring"])));
        assert!(!rings_doorbell(&w(&["io 65536 --batch 256"])));
        assert!(!rings_doorbell(&w(&["compute", "1000"])));
        assert!(!rings_doorbell(&[]));
        assert!(rings_doorbell(&w(&["hostile", "ring-garbage"])));
        assert!(!rings_doorbell(&w(&["hostile port-storm"])));
    }
    use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol};

    #[test]
    fn entry_is_start_and_segments_are_above_1mib() {
        let file = object::File::parse(ELF).unwrap();
        let start = file.symbols().find(|s| s.name() == Ok("_start")).unwrap();
        assert_eq!(file.entry(), start.address());
        for seg in file.segments() {
            assert!(seg.address() >= vmscope_abi::KERNEL_MIN_GPA, "segment at {:#x}", seg.address());
        }
        for name in ["workload_hello", "workload_compute", "WORKLOAD_PROGRESS", "console_write"] {
            assert!(file.symbols().any(|s| s.name() == Ok(name)), "{name} missing");
        }
    }

    #[test]
    fn no_sse_outside_the_sse_workload() {
        let file = object::File::parse(ELF).unwrap();
        let text = file.section_by_name(".text").unwrap();
        let sse_fn = file.symbols().find(|s| s.name() == Ok("workload_sse")).unwrap();
        let sse_range = sse_fn.address()..sse_fn.address() + sse_fn.size().max(1);
        let mut decoder = iced_x86::Decoder::with_ip(64, text.data().unwrap(), text.address(), 0);
        let mut offenders = vec![];
        for insn in &mut decoder {
            let uses_xmm = (0..insn.op_count())
                .any(|i| insn.op_kind(i) == iced_x86::OpKind::Register && insn.op_register(i).is_xmm());
            if uses_xmm && !sse_range.contains(&insn.ip()) {
                offenders.push(insn.ip());
            }
        }
        assert!(offenders.is_empty(), "SSE instructions at {offenders:x?}");
    }
}
