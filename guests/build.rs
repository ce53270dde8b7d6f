//! Builds the freestanding guests with a nested cargo, each in its own target directory
//! under OUT_DIR, so their flags (no SSE, static, no start files, a linker script) never
//! reach host crates and the outer build's lock is never contended.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let unikernel = build_unikernel(&manifest_dir, &out_dir);
    println!("cargo:rustc-env=VMSCOPE_UNIKERNEL_ELF={}", unikernel.display());
    let workload = build_workload(&manifest_dir, &out_dir);
    println!("cargo:rustc-env=VMSCOPE_WORKLOAD_ELF={}", workload.display());
}

/// The workload as a static Linux program (for the Linux guest and the container).
fn build_workload(manifest_dir: &Path, out_dir: &Path) -> PathBuf {
    let src = manifest_dir.join("workload");
    for p in ["src", "Cargo.toml"] {
        rerun_if_changed(&src.join(p));
    }
    let target_dir = out_dir.join("workload-target");
    nested_cargo(&src, &target_dir, "-C\x1ftarget-feature=+crt-static")
}

fn rerun_if_changed(dir: &Path) {
    println!("cargo:rerun-if-changed={}", dir.display());
}

fn build_unikernel(manifest_dir: &Path, out_dir: &Path) -> PathBuf {
    let src = manifest_dir.join("unikernel");
    for p in ["src", "Cargo.toml", "linker.ld"] {
        rerun_if_changed(&src.join(p));
    }
    rerun_if_changed(&manifest_dir.join("abi/src"));
    let linker_script = src.join("linker.ld");
    let flags = [
        "-C",
        "relocation-model=static",
        "-C",
        "no-redzone=yes",
        // Integer-only: at CPL0 on PVM, KVM's emulator runs this code and has no SSE.
        "-C",
        "target-feature=-sse,-sse2",
        "-C",
        "link-arg=-nostartfiles",
        "-C",
        "link-arg=-nostdlib",
        "-C",
        "link-arg=-static",
        "-C",
        "link-arg=-no-pie",
        "-C",
        "link-arg=-Wl,--build-id=none",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(["-C".into(), format!("link-arg=-Wl,-T{}", linker_script.display())])
    .collect::<Vec<_>>()
    .join("\x1f");
    let target_dir = out_dir.join("unikernel-target");
    nested_cargo(&src, &target_dir, &flags)
}

/// Runs `cargo build --release` for the package at `dir` with `rustflags`, with none of the
/// outer build's configuration leaking in, and returns the path of the program it built
/// (named after the directory).
///
/// The guests run on x86_64 whatever the host, and the target is named explicitly: the
/// repository's `.cargo/config.toml`, which the nested cargo also reads, names one too, and
/// only an explicit target keeps `rustflags` off the build scripts cargo runs on the host.
fn nested_cargo(dir: &Path, target_dir: &Path, rustflags: &str) -> PathBuf {
    const TARGET: &str = "x86_64-unknown-linux-gnu";
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(dir)
        .args(["build", "--release", "--target", TARGET, "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir)
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags);
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let leaks = key == "RUSTFLAGS"
            || key == "RUSTC_WRAPPER"
            || key == "RUSTC_WORKSPACE_WRAPPER"
            || key == "CARGO_TARGET_DIR"
            || key == "CARGO_BUILD_TARGET"
            || key == "CARGO_MAKEFLAGS"
            || key.starts_with("CARGO_PROFILE_")
            || key.starts_with("CARGO_CFG_")
            || key.starts_with("CARGO_FEATURE_")
            || key.starts_with("CARGO_ENCODED_RUSTFLAGS") && key != "CARGO_ENCODED_RUSTFLAGS";
        if leaks {
            cmd.env_remove(key.as_ref());
        }
    }
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run cargo to build {}: {e}", dir.display()));
    if !out.status.success() {
        panic!("building the guest at {} failed:\n{}", dir.display(), String::from_utf8_lossy(&out.stderr));
    }
    let name = dir.file_name().expect("a guest's directory has a name");
    target_dir.join(TARGET).join("release").join(name)
}
