//! A unix socket file that vmscope listens on (the gdb stub, the QMP control socket,
//! `run --incoming`): private to its user from its first instant, never put where another
//! file stands, and removed when the listener goes — but only if it is still the socket
//! this listener made.

use std::io::{Error, ErrorKind};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// A listening unix socket bound at a path, mode 0600; the file goes with it.
#[derive(Debug)]
pub struct SocketFile {
    listener: UnixListener,
    path: PathBuf,
    /// Device and inode of the socket file as bound: what `Drop` removes, not whatever a
    /// process put at the path since.
    identity: (u64, u64),
}

impl SocketFile {
    /// Binds a unix socket at `path` with mode 0600. A stale socket (one nobody listens on)
    /// is removed first; a live one, or any other kind of file, is an error that names it.
    pub fn bind(path: &Path) -> std::io::Result<Self> {
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_socket() => {
                if UnixStream::connect(path).is_ok() {
                    return Err(Error::new(
                        ErrorKind::AddrInUse,
                        format!("{} is a socket another process is listening on", path.display()),
                    ));
                }
                std::fs::remove_file(path)?;
            }
            Ok(_) => {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!("{} exists and is not a socket; vmscope will not replace it", path.display()),
                ))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        // The umask decides the socket's mode at creation: 0177 leaves 0600, so no other
        // user can connect even for an instant. (It is process-wide for the moment of the
        // bind; a file another thread creates then is at most more private than it asked.)
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
        let bound = UnixListener::bind(path);
        nix::sys::stat::umask(old);
        let listener = bound?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        Ok(Self { listener, path: path.to_path_buf(), identity: identity(path)? })
    }

    /// The listening socket.
    pub fn listener(&self) -> &UnixListener {
        &self.listener
    }

    /// Where it is bound.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if identity(&self.path).is_ok_and(|now| now == self.identity) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The device and inode of the file at `p` (not following a symlink).
fn identity(p: &Path) -> std::io::Result<(u64, u64)> {
    let m = std::fs::symlink_metadata(p)?;
    Ok((m.dev(), m.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_is_private_and_goes_with_the_listener() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        let s = SocketFile::bind(&p).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        // A live socket is not taken over.
        let err = SocketFile::bind(&p).unwrap_err().to_string();
        assert!(err.contains("another process is listening"), "{err}");
        drop(s);
        assert!(!p.exists());
    }

    #[test]
    fn other_files_are_never_replaced_and_a_stale_socket_is() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"keep").unwrap();
        let err = SocketFile::bind(&p).unwrap_err().to_string();
        assert!(err.contains("is not a socket"), "{err}");
        assert_eq!(std::fs::read(&p).unwrap(), b"keep");
        let stale = dir.path().join("stale");
        drop(UnixListener::bind(&stale).unwrap());
        assert!(SocketFile::bind(&stale).is_ok());
    }

    #[test]
    fn a_file_that_replaced_the_socket_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        let s = SocketFile::bind(&p).unwrap();
        std::fs::remove_file(&p).unwrap();
        std::fs::write(&p, b"someone else's").unwrap();
        drop(s);
        assert_eq!(std::fs::read(&p).unwrap(), b"someone else's");
    }
}
