//! Where vmscope keeps what it builds or fetches: outside the checkout, keyed by inputs.
//! `$VMSCOPE_CACHE`, else `$XDG_CACHE_HOME/vmscope`, else `~/.cache/vmscope`.
//!
//! Every entry is safe to prepare from several processes at once:
//! - an entry that takes long to make (a kernel) is made under an advisory lock, `<entry>.lock`
//!   ([`lock`]), held for the whole build; the lock file holds the builder's pid so a waiter
//!   can say whom it waits for, and the kernel releases the lock when the builder dies;
//! - an entry appears in one `rename(2)` ([`write_atomic`], or a directory built beside it and
//!   renamed), so a reader sees the whole entry or none of it.

use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// The cache root.
pub fn root() -> PathBuf {
    if let Some(dir) = std::env::var_os("VMSCOPE_CACHE") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("vmscope");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/tmp"));
    home.join(".cache/vmscope")
}

/// A cache key: the first 16 hex digits of SHA-256 over named inputs. Each input is
/// length-prefixed, so moving bytes between inputs changes the key.
pub fn key<'a>(inputs: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> String {
    let mut h = Sha256::new();
    for (name, bytes) in inputs {
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    }
    h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of a file's contents, in hex (for inputs known only as a file).
pub fn file_digest(path: &Path) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// An exclusive advisory lock (`flock(2)`) on `<entry>.lock`, held until dropped.
#[derive(Debug)]
pub struct EntryLock {
    file: File,
}

impl EntryLock {
    /// Lets child processes started from now on inherit the lock (it is released only when
    /// the last holder closes it). A build whose vmscope is killed then keeps its entry
    /// locked until its orphaned steps (`make`, the compilers) have exited too, so the next
    /// builder never clears a directory they are still writing.
    pub fn share_with_children(&self) -> std::io::Result<()> {
        use nix::fcntl::{fcntl, FcntlArg, FdFlag};
        use std::os::fd::AsRawFd;
        fcntl(self.file.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::empty()))
            .map(drop)
            .map_err(std::io::Error::from)
    }
}

/// Whether process `pid` still exists.
pub fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The lock file of a cache entry.
pub fn lock_path(entry: &Path) -> PathBuf {
    let mut name = entry.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    entry.with_file_name(name)
}

/// Takes the lock of cache entry `entry`. When another process holds it, calls
/// `waiting(pid)` once (`pid` is the holder's, when it wrote one) and blocks until it is
/// released: by the holder, or by the death of the holder and of every child it shared the
/// lock with ([`EntryLock::share_with_children`]).
pub fn lock(entry: &Path, waiting: impl FnOnce(Option<u32>)) -> std::io::Result<EntryLock> {
    let path = lock_path(entry);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            waiting(text.trim().parse().ok());
            file.lock()?;
        }
        Err(TryLockError::Error(e)) => return Err(e),
    }
    file.set_len(0)?;
    file.rewind()?;
    write!(file, "{}", std::process::id())?;
    Ok(EntryLock { file })
}

/// A name beside `path` that no other process or thread uses: `.NAME.tmp-PID-SEQ`.
pub fn scratch_path(path: &Path) -> PathBuf {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(".{name}.tmp-{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed)))
}

/// Writes `bytes` to `path` so that readers see the old file or the whole new one: a scratch
/// file beside it, flushed, then renamed over it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = scratch_path(path);
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The path of a content-addressed file `<root>/<dir>/<stem>-<key>.<ext>` holding `bytes`,
/// written (atomically) if it is missing or is not exactly `bytes` long.
pub fn content_file(dir: &str, stem: &str, ext: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
    let k = key([(stem, bytes)]);
    let path = root().join(dir).join(format!("{stem}-{k}.{ext}"));
    if std::fs::metadata(&path).map(|m| m.len()).ok() != Some(bytes.len() as u64) {
        write_atomic(&path, bytes)?;
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_and_sensitive() {
        let a = key([("config", b"A=y".as_slice()), ("patch", b"".as_slice())]);
        assert_eq!(a, key([("config", b"A=y".as_slice()), ("patch", b"".as_slice())]));
        assert_eq!(a.len(), 16);
        assert_ne!(a, key([("config", b"A=n".as_slice()), ("patch", b"".as_slice())]));
        // Moving a byte from one input to the next changes the key.
        assert_ne!(
            key([("a", b"xy".as_slice()), ("b", b"".as_slice())]),
            key([("a", b"x".as_slice()), ("b", b"y".as_slice())])
        );
    }

    #[test]
    fn a_second_locker_waits_and_learns_the_holders_pid() {
        let dir = std::env::temp_dir().join(format!("vmscope-lock-test-{}", std::process::id()));
        let entry = dir.join("entry");
        let held = lock(&entry, |_| panic!("the first locker never waits")).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = {
            let entry = entry.clone();
            std::thread::spawn(move || {
                let _l = lock(&entry, |pid| tx.send(pid).unwrap()).unwrap();
            })
        };
        // flock locks belong to the open file description, so a second open in this process
        // contends like another process would.
        assert_eq!(rx.recv().unwrap(), Some(std::process::id()), "the waiter names the holder");
        drop(held);
        waiter.join().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn atomic_writes_replace_whole_files() {
        let dir = std::env::temp_dir().join(format!("vmscope-atomic-test-{}", std::process::id()));
        let path = dir.join("f");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two!").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two!");
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["f"], "no scratch file is left behind");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
