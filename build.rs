//! How the `vmscope` binary is linked, so that a `vmscope run` process keeps few pages
//! resident (issue 15; vmm/DESIGN.md, "What one vmscope run process costs"):
//!
//! - Packed relative relocations (`-z pack-relative-relocs`, DT_RELR) where the C library
//!   can apply them (glibc 2.36 and later name the `GLIBC_ABI_DT_RELR` version). vmscope is
//!   position-independent (static-pie, see `.cargo/config.toml`), so it relocates every
//!   pointer in its read-only data before `main`: one 24-byte `.rela.dyn` entry each
//!   without RELR (0.8 MiB for the headless `run` path), a bitmap of a few KiB with it.
//! - With LLD (rustc's own linker since 1.90), the functions a `run` executes, listed in
//!   `src/run-path.order`, are placed together at the start of the code ([`run_path_script`]).

use std::path::Path;
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
        let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
        let list = Path::new(&dir).join(RUN_PATH_ORDER);
        let order = std::fs::read_to_string(&list).unwrap_or_default();
        let script = Path::new(&out).join("run-path.ld");
        std::fs::write(&script, run_path_script(&order)).expect("OUT_DIR is writable");
        println!("cargo:rustc-link-arg-bins=-Wl,-T,{}", script.display());
        // By exact name too: C functions (the static C library's, capstone's) have no
        // section of their own to match, and the names an identical function was merged
        // under find it in the build the list was made from.
        println!("cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}", list.display());
        // Names that are not in this build (code changed since the list was made) are skipped.
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}

/// The functions a `vmscope run` executes (unikernel `exit 0`, `hello`, `uart`, `--elf`),
/// listed by `src/run-path.sh` from callgrind and perf. They are placed together at the
/// start of the code: the kernel maps code 64 KiB around each page fault, so the ~480 KiB
/// that run were scattered over ~50 such windows (3.1 MiB resident) and now sit in a few.
/// See vmm/DESIGN.md, "What one vmscope run process costs".
const RUN_PATH_ORDER: &str = "src/run-path.order";

/// Whether a symbol is a Rust one (v0 or legacy mangling).
fn is_rust_name(name: &str) -> bool {
    name.starts_with("_R") || name.starts_with("_ZN")
}

/// A linker script that puts the listed Rust functions into `.text.run_path`, just before
/// `.text`, in the list's order. Each function has its own input section
/// (`.text.<symbol>`, or `.text.unlikely.<symbol>`), matched by a pattern in which what
/// changes from build to build is a wildcard: the crate disambiguators of v0 names (`Cs<hash>_`, which depend on the flags and
/// the dependency graph) and the `.llvm.<hash>` suffix LLVM gives a promoted local (which
/// changes with any code in its codegen unit). v0 names spell out every generic argument,
/// so a pattern matches the one instance that ran, not every instance of the function.
/// `INSERT BEFORE` keeps the rest of LLD's default layout.
fn run_path_script(order: &str) -> String {
    let mut script = String::from("SECTIONS {\n  .text.run_path : {\n");
    for name in order.lines().map(str::trim).filter(|n| is_rust_name(n)) {
        let name = name.split(".llvm.").next().unwrap_or(name);
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b == b'.') {
            continue; // Not a name a linker script can spell; left where it is.
        }
        let pattern = if name.starts_with("_R") { wildcard_disambiguators(name) } else { name.to_string() };
        // LLVM puts a function it thinks cold (one that panics, a slow path) in
        // `.text.unlikely.<symbol>`.
        script.push_str(&format!(
            "    *(.text.{pattern} .text.{pattern}.llvm.* .text.unlikely.{pattern} .text.unlikely.{pattern}.llvm.*)\n"
        ));
    }
    script.push_str("  }\n}\nINSERT BEFORE .text;\n");
    script
}

/// `name` (v0-mangled) with every crate root's disambiguator, `Cs<base-62>_` before the
/// crate's name, as `Cs*_`.
fn wildcard_disambiguators(name: &str) -> String {
    let bytes = name.as_bytes();
    let mut out = String::with_capacity(name.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(b"Cs") {
            let digits = bytes[i + 2..].iter().take_while(|b| b.is_ascii_alphanumeric()).count();
            let end = i + 2 + digits;
            // The disambiguator ends with `_` and the crate's name (its length, or `u` for
            // a Punycode one) follows.
            if digits > 0
                && bytes.get(end) == Some(&b'_')
                && bytes.get(end + 1).is_some_and(|b| b.is_ascii_digit() || *b == b'u')
            {
                out.push_str("Cs*_");
                i = end + 1;
                continue;
            }
        }
        out.push(bytes[i] as char);
        i += 1;
    }
    out
}

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
