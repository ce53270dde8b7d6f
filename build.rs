//! Links the `vmscope` binary with packed relative relocations (`-z pack-relative-relocs`,
//! DT_RELR) where the C library can load them (glibc 2.36 and later name the
//! `GLIBC_ABI_DT_RELR` version).
//!
//! vmscope is a position-independent executable. Without RELR, the dynamic loader reads
//! one 24-byte `.rela.dyn` entry for every pointer in the binary's read-only data before
//! `main`. That was about 0.8 MiB of relocation table for the headless `run` path. RELR
//! stores the same relocations as a bitmap of a few KiB, so each `vmscope run` process
//! starts faster and keeps ~1.5 MiB less resident (issue 15). ASLR is kept.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" && glibc_loads_relr() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo:rerun-if-changed={RUN_PATH_ORDER}");
    if links_with_lld() {
        let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
        let order = std::path::Path::new(&dir).join(RUN_PATH_ORDER);
        println!("cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}", order.display());
        // Names that no longer exist (code changed since the list was made) are skipped.
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}

/// The functions a `vmscope run` executes (unikernel `exit 0`, `hello`, `uart`, `--elf`),
/// from `valgrind --tool=callgrind --demangle=no`, in address order. LLD places them
/// together at the start of `.text`: the kernel maps code 64 KiB around each page fault, so
/// the ~480 KiB that run were scattered over ~50 such windows (3.1 MiB resident) and now sit
/// in a few. See vmm/DESIGN.md, "What one vmscope run process costs".
const RUN_PATH_ORDER: &str = "src/run-path.order";

/// Whether the binary is linked by LLD, which reads a symbol-ordering file: rustc 1.90 and
/// later link x86_64-unknown-linux-gnu with its own rust-lld unless told otherwise.
fn links_with_lld() -> bool {
    if std::env::var("TARGET").as_deref() != Ok("x86_64-unknown-linux-gnu") {
        return false;
    }
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if flags.contains("linker") || std::env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_some()
    {
        return false;
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(out) = Command::new(rustc).arg("-vV").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let minor = text
        .lines()
        .find_map(|l| l.strip_prefix("release: 1."))
        .and_then(|v| v.split('.').next()?.parse::<u32>().ok());
    minor.is_some_and(|m| m >= 90)
}

/// Whether the C library the binary links against (found as the C compiler finds it)
/// defines the `GLIBC_ABI_DT_RELR` version. An older glibc would refuse to load a RELR
/// binary, so it is then linked the usual way.
fn glibc_loads_relr() -> bool {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let Ok(out) = Command::new(cc).arg("-print-file-name=libc.so.6").output() else {
        return false;
    };
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    std::fs::read(&path)
        .map(|bytes| bytes.windows(b"GLIBC_ABI_DT_RELR".len()).any(|w| w == b"GLIBC_ABI_DT_RELR"))
        .unwrap_or(false)
}
