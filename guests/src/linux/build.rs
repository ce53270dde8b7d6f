//! Building the kernel once per set of inputs: extract, patch, `make tinyconfig`, merge the
//! fragment, `make olddefconfig`, check the fragment survived, `make vmlinux bzImage`,
//! strip; all in `<cache>/linux/<key>.partial`, renamed to `<key>` only when complete.
//!
//! Several processes may ask for the same kernel at once (the test binaries, a `tui` beside a
//! `run`): the build runs under the entry's lock ([`cache::lock`]), a waiter says whom it
//! waits for and then takes the finished entry, and a build whose process died leaves only a
//! `.partial` directory that the next lock holder clears. The key covers every input that
//! changes the output: the builder's procedure, the source package's version (or the
//! tarball's digest), the fragment, the patches, and the compiler and linker versions.

use super::{config, LinuxError};
use crate::cache;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// Bumped whenever the build procedure changes, so old cache entries are not reused.
const BUILDER_VERSION: &str = "3";
/// Debian's kernel source tarball.
pub const SOURCE_TARBALL: &str = "/usr/src/linux-source-6.1.tar.xz";
/// The fragment, kept in the repository.
pub const FRAGMENT: &str = include_str!("../../linux/config-fragment");
/// The patches, in order.
pub const PATCHES: &[(&str, &str)] = &[
    (
        "0001-x86-fault-complete-syscall-delivered-without-cpl-switch.patch",
        include_str!(
            "../../linux/patches/0001-x86-fault-complete-syscall-delivered-without-cpl-switch.patch"
        ),
    ),
    (
        "0002-pid-numbers-one-element-for-crash.patch",
        include_str!("../../linux/patches/0002-pid-numbers-one-element-for-crash.patch"),
    ),
    (
        "0003-x86-ist-entries-only-for-handled-exceptions.patch",
        include_str!("../../linux/patches/0003-x86-ist-entries-only-for-handled-exceptions.patch"),
    ),
];
/// About how many objects the build compiles (for the progress bar).
const EXPECTED_CC: u64 = 1100;

/// How to build.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// Parallel jobs for make.
    pub jobs: usize,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self { jobs: std::thread::available_parallelism().map_or(2, |n| n.get()), progress: true }
    }
}

/// A built kernel in the cache.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LinuxArtifacts {
    /// The cache key.
    pub key: String,
    /// The entry's directory.
    pub dir: PathBuf,
    /// `vmlinux` with DWARF, for gdb.
    pub vmlinux: PathBuf,
    /// `vmlinux` without debug info, to boot.
    pub vmlinux_stripped: PathBuf,
    /// The compressed kernel.
    pub bzimage: PathBuf,
    /// `System.map`.
    pub system_map: PathBuf,
    /// The kernel source tree (for gdb's `list`).
    pub source_dir: PathBuf,
    /// The kernel's gdb helpers (`lx-ps`, `lx-dmesg`, ...) beside `vmlinux`, where gdb
    /// auto-loads them (`make scripts_gdb`); empty for entries built before they were.
    #[serde(default)]
    pub vmlinux_gdb: PathBuf,
    /// Seconds the build took.
    pub build_seconds: f64,
    /// Fragment options Kconfig did not keep: (name, wanted, got).
    pub dropped_options: Vec<(String, Option<String>, Option<String>)>,
    /// Sizes in bytes: (vmlinux, stripped, bzImage).
    pub sizes: (u64, u64, u64),
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> LinuxError + 'a {
    move |source| LinuxError::Io { what, path: path.into(), source }
}

/// The key of the current inputs.
pub fn current_key() -> String {
    let version = source_version();
    let gcc = tool_version("gcc");
    let ld = tool_version("ld");
    let settings = fragment_settings(FRAGMENT);
    let mut inputs: Vec<(&str, &[u8])> = vec![
        ("builder", BUILDER_VERSION.as_bytes()),
        ("source", version.as_bytes()),
        ("fragment", settings.as_bytes()),
        ("gcc", gcc.as_bytes()),
        ("ld", ld.as_bytes()),
    ];
    for (name, text) in PATCHES {
        inputs.push((name, text.as_bytes()));
    }
    cache::key(inputs)
}

/// What the build takes from a fragment: its options as parsed, one per line in name order.
/// Comments and blank lines do not change the kernel, so they do not change the key (the
/// fragment explains itself at length, and a better sentence must not cost a rebuild).
fn fragment_settings(fragment: &str) -> String {
    super::config::parse(fragment)
        .iter()
        .map(|(name, value)| match value {
            Some(v) => format!("{name}={v}\n"),
            None => format!("# {name} is not set\n"),
        })
        .collect()
}

/// The installed source package's version; where dpkg cannot say, the tarball's SHA-256
/// (never something as weak as its size); where there is no tarball, "missing".
fn source_version() -> String {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status} ${Version}", "linux-source-6.1"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .and_then(|s| s.strip_prefix("install ok installed ").map(|v| format!("deb {v}")))
        .or_else(|| cache::file_digest(Path::new(SOURCE_TARBALL)).ok().map(|d| format!("sha256 {d}")))
        .unwrap_or_else(|| "missing".into())
}

/// The first line of `TOOL --version` (the compiler and linker shape the kernel's code), or
/// "missing".
fn tool_version(tool: &str) -> String {
    Command::new(tool)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8_lossy(&o.stdout).lines().next().map(str::to_string))
        .unwrap_or_else(|| "missing".into())
}

fn linux_cache() -> PathBuf {
    cache::root().join("linux")
}

/// Cached kernels.
pub fn list_cached() -> Vec<LinuxArtifacts> {
    let Ok(dir) = std::fs::read_dir(linux_cache()) else { return vec![] };
    dir.filter_map(|e| e.ok()).filter_map(|e| complete_entry(&e.path())).collect()
}

/// The complete entry in `dir`, if there is one (its manifest is written last, and the
/// directory appears by a rename, so a manifest means a whole entry).
fn complete_entry(dir: &Path) -> Option<LinuxArtifacts> {
    let text = std::fs::read_to_string(dir.join("manifest.json")).ok()?;
    let a = serde_json::from_str::<LinuxArtifacts>(&text).ok()?.rebased(dir);
    (a.vmlinux_stripped.exists() && a.vmlinux.exists()).then_some(a)
}

impl LinuxArtifacts {
    /// The same entry with its paths under `dir`: a cache that was moved or copied (a new
    /// `$VMSCOPE_CACHE`) still finds its files and boots. The DWARF in `vmlinux` keeps the
    /// source paths of the place it was built, so gdb's `list` needs `set substitute-path`
    /// there.
    fn rebased(mut self, dir: &Path) -> Self {
        let old = std::mem::replace(&mut self.dir, dir.into());
        for p in [
            &mut self.vmlinux,
            &mut self.vmlinux_stripped,
            &mut self.bzimage,
            &mut self.system_map,
            &mut self.source_dir,
            &mut self.vmlinux_gdb,
        ] {
            if let Ok(rel) = p.strip_prefix(&old) {
                *p = dir.join(rel);
            }
        }
        self
    }
}

/// The cached kernel for the current inputs, if it is built.
pub fn cached() -> Option<LinuxArtifacts> {
    complete_entry(&linux_cache().join(current_key()))
}

/// Returns the cached kernel for the current inputs, building it first if needed. Safe to
/// call from several threads and processes at once: one builds, the others wait for it
/// (saying so on stderr) and return its entry.
pub fn ensure_built(opts: &BuildOptions) -> Result<LinuxArtifacts, LinuxError> {
    let key = current_key();
    let final_dir = linux_cache().join(&key);
    if let Some(a) = complete_entry(&final_dir) {
        return Ok(a);
    }
    let missing = crate::prereq::missing(crate::prereq::LINUX_BUILD);
    if !missing.is_empty() {
        return Err(LinuxError::MissingTools {
            names: missing.iter().map(|r| r.name).collect::<Vec<_>>().join(", "),
            command: crate::prereq::install_command(&missing),
        });
    }
    let lock = cache::lock(&final_dir, |pid| {
        let lock = cache::lock_path(&final_dir);
        let what = match pid {
            Some(p) if cache::process_exists(p) => {
                format!("another vmscope (pid {p}) is building the same Linux kernel ({key}); waiting for it to finish")
            }
            Some(p) => format!(
                "a vmscope that died (pid {p}) left build steps running for the same Linux kernel ({key}); \
                 waiting for them to end, then building it afresh"
            ),
            None => format!("another process holds the same Linux kernel's lock ({key}); waiting for it"),
        };
        eprintln!("vmscope: {what} (lock {})", lock.display());
    })
    .map_err(io("cannot lock", &final_dir))?;
    // The build this process waited for may have produced the entry.
    if let Some(a) = complete_entry(&final_dir) {
        return Ok(a);
    }
    lock.share_with_children().map_err(io("cannot share the lock of", &final_dir))?;
    build(opts, &key, &final_dir)
}

/// Removes what builds of `key` that died left behind: `<key>.partial` and `<key>.old-*`.
/// Call only while holding the entry's lock.
fn clear_leftovers(key: &str) -> Result<(), LinuxError> {
    let dir = linux_cache();
    let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(()) };
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        if name == format!("{key}.partial") || name.starts_with(&format!("{key}.old-")) {
            let p = e.path();
            std::fs::remove_dir_all(&p).map_err(io("cannot clear a dead build's", &p))?;
        }
    }
    Ok(())
}

struct Steps {
    bar: indicatif::ProgressBar,
    log: std::fs::File,
    log_path: PathBuf,
}

impl Steps {
    fn phase(&self, name: &str) {
        self.bar.set_message(name.to_string());
    }

    /// Runs a command in `dir`, logging its output; counts "  CC" lines on the bar.
    fn run(
        &mut self,
        step: &str,
        dir: &Path,
        program: &str,
        args: &[&str],
        env: &[(&str, String)],
    ) -> Result<(), LinuxError> {
        let _ = writeln!(self.log, "$ {program} {}", args.join(" "));
        let mut child = Command::new(program)
            .args(args)
            .current_dir(dir)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| LinuxError::Spawn { tool: program.into(), source })?;
        let stderr = child.stderr.take().expect("piped");
        let err_thread = std::thread::spawn(move || {
            BufReader::new(stderr).lines().map_while(Result::ok).collect::<Vec<_>>()
        });
        let mut tail: Vec<String> = vec![];
        for line in BufReader::new(child.stdout.take().expect("piped")).lines().map_while(Result::ok) {
            let _ = writeln!(self.log, "{line}");
            if line.trim_start().starts_with("CC") {
                self.bar.inc(1);
            }
            tail.push(line);
            if tail.len() > 30 {
                tail.remove(0);
            }
        }
        let err_lines = err_thread.join().unwrap_or_default();
        for l in &err_lines {
            let _ = writeln!(self.log, "{l}");
        }
        let status = child.wait().map_err(|source| LinuxError::Spawn { tool: program.into(), source })?;
        if status.success() {
            return Ok(());
        }
        tail.extend(err_lines.into_iter().rev().take(30).collect::<Vec<_>>().into_iter().rev());
        Err(LinuxError::Step { step: step.into(), log: self.log_path.clone(), tail: tail.join("\n") })
    }
}

fn build(opts: &BuildOptions, key: &str, final_dir: &Path) -> Result<LinuxArtifacts, LinuxError> {
    let tarball = Path::new(SOURCE_TARBALL);
    if !tarball.exists() {
        return Err(LinuxError::NoSource { path: tarball.into() });
    }
    let started = Instant::now();
    clear_leftovers(key)?;
    let partial = linux_cache().join(format!("{key}.partial"));
    std::fs::create_dir_all(&partial).map_err(io("cannot create", &partial))?;
    let log_path = partial.join("build.log");
    let log = std::fs::File::create(&log_path).map_err(io("cannot create", &log_path))?;
    let bar = if opts.progress {
        indicatif::ProgressBar::new(EXPECTED_CC)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("linux {msg:<12} [{bar:30}] {pos}/{len} objects, {elapsed}")
            .expect("static template")
            .progress_chars("=> "),
    );
    let mut steps = Steps { bar, log, log_path };

    steps.phase("extract");
    steps.run("extracting the kernel source", &partial, "tar", &["xJf", SOURCE_TARBALL], &[])?;
    let src_partial = partial.join("linux-source-6.1");
    let src_final = final_dir.join("linux-source-6.1");

    steps.phase("patch");
    for (name, text) in PATCHES {
        let p = partial.join(name);
        std::fs::write(&p, text).map_err(io("cannot write", &p))?;
        let arg = format!("--input={}", p.display());
        steps.run(&format!("applying {name}"), &src_partial, "patch", &["-p1", "--forward", &arg], &[])?;
    }

    steps.phase("config");
    steps.run("make tinyconfig", &src_partial, "make", &["tinyconfig"], &[])?;
    let config_path = src_partial.join(".config");
    let base = std::fs::read_to_string(&config_path).map_err(io("cannot read", &config_path))?;
    let fragment = config::parse(FRAGMENT);
    std::fs::write(&config_path, config::merge(&base, &fragment))
        .map_err(io("cannot write", &config_path))?;
    steps.run("make olddefconfig", &src_partial, "make", &["olddefconfig"], &[])?;
    let final_config = std::fs::read_to_string(&config_path).map_err(io("cannot read", &config_path))?;
    let dropped = config::dropped(&fragment, &final_config);
    for (name, want, got) in &dropped {
        let _ = writeln!(steps.log, "fragment option {name}: wanted {want:?}, Kconfig kept {got:?}");
    }

    steps.phase("compile");
    let jobs = format!("-j{}", opts.jobs.max(1));
    // DWARF names the final directory, not the .partial one, so gdb finds the sources.
    let kcflags = format!("-fdebug-prefix-map={}={}", src_partial.display(), src_final.display());
    steps.run(
        "make vmlinux bzImage",
        &src_partial,
        "make",
        &[&jobs, "vmlinux", "bzImage"],
        &[("KCFLAGS", kcflags)],
    )?;

    // The gdb helpers and their generated constants (`scripts/gdb/linux/constants.py`):
    // `make vmlinux` alone does not produce them. make links `vmlinux-gdb.py` by absolute
    // path, which would point into the `.partial` directory; a relative link survives the
    // rename and a moved cache (the script finds its modules beside the link).
    steps.phase("gdb scripts");
    steps.run("make scripts_gdb", &src_partial, "make", &[&jobs, "scripts_gdb"], &[])?;
    let gdb_link = src_partial.join("vmlinux-gdb.py");
    let _ = std::fs::remove_file(&gdb_link);
    std::os::unix::fs::symlink("scripts/gdb/vmlinux-gdb.py", &gdb_link)
        .map_err(io("cannot link", &gdb_link))?;

    steps.phase("strip");
    let vmlinux = src_partial.join("vmlinux");
    let stripped = partial.join("vmlinux.stripped");
    steps.run(
        "strip",
        &partial,
        "objcopy",
        &["--strip-debug", &vmlinux.display().to_string(), &stripped.display().to_string()],
        &[],
    )?;
    steps.bar.finish_and_clear();

    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let bz = src_partial.join("arch/x86/boot/bzImage");
    let sizes = (size(&vmlinux), size(&stripped), size(&bz));
    let artifacts = LinuxArtifacts {
        key: key.into(),
        dir: final_dir.into(),
        vmlinux: src_final.join("vmlinux"),
        vmlinux_stripped: final_dir.join("vmlinux.stripped"),
        bzimage: src_final.join("arch/x86/boot/bzImage"),
        system_map: src_final.join("System.map"),
        vmlinux_gdb: src_final.join("vmlinux-gdb.py"),
        source_dir: src_final,
        build_seconds: started.elapsed().as_secs_f64(),
        dropped_options: dropped,
        sizes,
    };
    let manifest = partial.join("manifest.json");
    std::fs::write(&manifest, serde_json::to_vec_pretty(&artifacts).expect("serializes"))
        .map_err(io("cannot write", &manifest))?;
    // An incomplete entry is moved aside (not deleted in place) so a reader never sees half
    // of one; rename(2) then puts the new one in place.
    if final_dir.exists() {
        let old = linux_cache().join(format!("{key}.old-{}", std::process::id()));
        std::fs::rename(final_dir, &old).map_err(io("cannot move aside", final_dir))?;
        std::fs::remove_dir_all(&old).map_err(io("cannot remove", &old))?;
    }
    std::fs::rename(&partial, final_dir).map_err(io("cannot move the finished build to", final_dir))?;
    Ok(artifacts)
}

#[cfg(test)]
mod tests {
    use super::fragment_settings;

    #[test]
    fn comments_do_not_change_the_key_but_options_do() {
        let a = fragment_settings("# why\nCONFIG_SMP=y\n\n# CONFIG_ACPI is not set\n");
        let b = fragment_settings("# a better why\n# on two lines\nCONFIG_SMP=y\n# CONFIG_ACPI is not set\n");
        assert_eq!(a, b);
        assert_ne!(a, fragment_settings("CONFIG_SMP=y\nCONFIG_ACPI=y\n"));
        assert_ne!(a, fragment_settings("CONFIG_SMP=y\n"));
        assert_eq!(
            fragment_settings(super::FRAGMENT).lines().count(),
            super::super::config::parse(super::FRAGMENT).len()
        );
    }
}
