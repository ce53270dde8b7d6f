//! Where a migration goes: `unix:PATH` or `tcp:HOST:PORT`, and the connected stream.

use super::MigrationError;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

/// A migration address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Uri {
    /// A unix stream socket at this path.
    Unix(PathBuf),
    /// A TCP address.
    Tcp(SocketAddr),
}

impl std::str::FromStr for Uri {
    type Err = MigrationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |detail: &str| MigrationError::BadUri { uri: s.to_string(), detail: detail.into() };
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(bad("the socket path is empty"));
            }
            if path.len() > 107 {
                return Err(bad("a unix socket path holds at most 107 bytes"));
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        if let Some(hp) = s.strip_prefix("tcp:") {
            let addr = hp
                .to_socket_addrs()
                .map_err(|e| bad(&format!("cannot resolve {hp:?}: {e}")))?
                .next()
                .ok_or_else(|| bad("the host resolves to no address"))?;
            return Ok(Self::Tcp(addr));
        }
        Err(bad("unknown scheme"))
    }
}

impl std::fmt::Display for Uri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unix(p) => write!(f, "unix:{}", p.display()),
            Self::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

impl Uri {
    /// Whether only this machine can reach it (a unix socket, a loopback TCP address).
    pub fn is_local(&self) -> bool {
        match self {
            Self::Unix(_) => true,
            Self::Tcp(a) => a.ip().is_loopback(),
        }
    }

    /// Connects to a target.
    pub fn connect(&self, timeout: Duration) -> Result<Stream, MigrationError> {
        let s = match self {
            Self::Unix(p) => UnixStream::connect(p).map(Stream::Unix),
            Self::Tcp(a) => TcpStream::connect_timeout(a, timeout).map(|s| {
                let _ = s.set_nodelay(true);
                Stream::Tcp(s)
            }),
        }
        .map_err(MigrationError::io("cannot connect to the migration target at", self))?;
        Ok(s)
    }

    /// Listens for one source; a TCP address that is not loopback needs `allow_remote`
    /// (the stream carries all of the guest's memory, unencrypted).
    pub fn listen(&self, allow_remote: bool) -> Result<Listener, MigrationError> {
        if !self.is_local() && !allow_remote {
            return Err(MigrationError::BadUri {
                uri: self.to_string(),
                detail: "not a loopback address: anyone who can reach it could send a guest; give --incoming-any-address to listen there anyway".into(),
            });
        }
        match self {
            Self::Unix(p) => Ok(Listener::Unix(
                crate::socket::SocketFile::bind(p).map_err(MigrationError::io("cannot listen at", self))?,
            )),
            Self::Tcp(a) => {
                Ok(Listener::Tcp(TcpListener::bind(a).map_err(MigrationError::io("cannot listen at", self))?))
            }
        }
    }
}

/// A listening socket (a unix socket file is removed when it is dropped).
pub enum Listener {
    /// Unix (mode 0600, removed when dropped if it is still the one bound).
    Unix(crate::socket::SocketFile),
    /// TCP.
    Tcp(TcpListener),
}

impl Listener {
    /// Waits for one connection.
    pub fn accept(&self) -> std::io::Result<Stream> {
        match self {
            Self::Unix(l) => l.listener().accept().map(|(s, _)| Stream::Unix(s)),
            Self::Tcp(l) => l.accept().map(|(s, _)| {
                let _ = s.set_nodelay(true);
                Stream::Tcp(s)
            }),
        }
    }

    /// The address it listens at (the bound port for `tcp:…:0`).
    pub fn uri(&self) -> Uri {
        match self {
            Self::Unix(l) => Uri::Unix(l.path().to_path_buf()),
            Self::Tcp(l) => {
                Uri::Tcp(l.local_addr().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0))))
            }
        }
    }
}

/// A connected migration stream.
pub enum Stream {
    /// Unix.
    Unix(UnixStream),
    /// TCP.
    Tcp(TcpStream),
}

impl Stream {
    /// Bounds how long one read may wait.
    pub fn set_read_timeout(&self, t: Option<Duration>) {
        let _ = match self {
            Self::Unix(s) => s.set_read_timeout(t),
            Self::Tcp(s) => s.set_read_timeout(t),
        };
    }

    /// Bounds how long one write may wait.
    pub fn set_write_timeout(&self, t: Option<Duration>) {
        let _ = match self {
            Self::Unix(s) => s.set_write_timeout(t),
            Self::Tcp(s) => s.set_write_timeout(t),
        };
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Self::Unix(s) => s.read(buf),
            Self::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Self::Unix(s) => s.write(buf),
            Self::Tcp(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_parse_and_refuse() {
        assert_eq!("unix:/tmp/a".parse::<Uri>().unwrap(), Uri::Unix("/tmp/a".into()));
        assert!("tcp:127.0.0.1:4444".parse::<Uri>().unwrap().is_local());
        assert!(!"tcp:0.0.0.0:4444".parse::<Uri>().unwrap().is_local());
        assert!("unix:".parse::<Uri>().is_err());
        assert!("tcp:nohostport".parse::<Uri>().is_err());
        let e = "http://x".parse::<Uri>().unwrap_err().to_string();
        assert!(e.contains("http://x") && e.contains("unix:PATH"), "{e}");
        let e = "tcp:0.0.0.0:1".parse::<Uri>().unwrap().listen(false).err().unwrap().to_string();
        assert!(e.contains("--incoming-any-address"), "{e}");
    }
}
