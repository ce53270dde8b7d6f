//! Where gdb connects: a TCP address (loopback unless another is given explicitly) or a
//! unix socket (`unix:/path`).

use gdbstub::conn::{Connection, ConnectionExt};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixListener;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

/// A place to listen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenAddr {
    /// TCP.
    Tcp(SocketAddr),
    /// A unix socket path.
    Unix(PathBuf),
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Tcp(a) => write!(f, "{a}"),
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl std::str::FromStr for ListenAddr {
    type Err = String;

    /// `1234` and `:1234` mean 127.0.0.1:1234; `HOST:PORT` is taken as given;
    /// `unix:/path` is a unix socket.
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            return Ok(ListenAddr::Unix(PathBuf::from(path)));
        }
        let port_only = s.strip_prefix(':').unwrap_or(s);
        if let Ok(port) = port_only.parse::<u16>() {
            return Ok(ListenAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], port))));
        }
        s.parse::<SocketAddr>()
            .map(ListenAddr::Tcp)
            .map_err(|_| format!("{s:?} is not PORT, HOST:PORT or unix:PATH"))
    }
}

/// A bound listener.
pub enum Listener {
    /// TCP.
    Tcp(TcpListener),
    /// Unix socket (removed when dropped).
    Unix(UnixListener, PathBuf),
}

/// A gdb connection.
pub type Conn = Box<dyn ConnectionExt<Error = std::io::Error>>;

/// A socket as gdbstub wants it: writes are buffered until gdbstub flushes a packet (it
/// writes byte by byte), reads are buffered (it reads byte by byte too), and `peek`
/// reads ahead without blocking, reporting a closed peer as an error (so the stub never
/// waits on a dead client).
struct Stream<S> {
    inner: S,
    /// Bytes read ahead of gdbstub's byte-by-byte reads.
    input: std::collections::VecDeque<u8>,
    out: Vec<u8>,
}

/// What `Stream` needs of a socket.
trait Socket: Read + Write {
    fn set_nonblocking(&self, on: bool) -> std::io::Result<()>;
}

impl Socket for TcpStream {
    fn set_nonblocking(&self, on: bool) -> std::io::Result<()> {
        TcpStream::set_nonblocking(self, on)
    }
}

impl Socket for UnixStream {
    fn set_nonblocking(&self, on: bool) -> std::io::Result<()> {
        UnixStream::set_nonblocking(self, on)
    }
}

impl<S: Socket> Stream<S> {
    fn new(inner: S) -> Self {
        Self { inner, input: std::collections::VecDeque::with_capacity(4096), out: Vec::with_capacity(4096) }
    }
}

impl<S: Socket> Connection for Stream<S> {
    type Error = std::io::Error;

    fn write(&mut self, byte: u8) -> std::io::Result<()> {
        self.out.push(byte);
        Ok(())
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.out.extend_from_slice(buf);
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.write_all(&self.out)?;
        self.out.clear();
        self.inner.flush()
    }
}

impl<S: Socket> Stream<S> {
    /// Reads what is available (at least one byte unless non-blocking) into `input`.
    fn fill(&mut self) -> std::io::Result<usize> {
        let mut buf = [0u8; 4096];
        let n = self.inner.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.input.extend(&buf[..n]);
        Ok(n)
    }
}

impl<S: Socket> ConnectionExt for Stream<S> {
    fn read(&mut self) -> std::io::Result<u8> {
        while self.input.is_empty() {
            self.fill()?;
        }
        Ok(self.input.pop_front().expect("not empty"))
    }

    fn peek(&mut self) -> std::io::Result<Option<u8>> {
        if let Some(b) = self.input.front() {
            return Ok(Some(*b));
        }
        self.inner.set_nonblocking(true)?;
        let r = self.fill();
        self.inner.set_nonblocking(false)?;
        match r {
            Ok(_) => Ok(self.input.front().copied()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl Listener {
    /// Binds `addr`.
    pub fn bind(addr: &ListenAddr) -> std::io::Result<Self> {
        let l = match addr {
            ListenAddr::Tcp(a) => Listener::Tcp(TcpListener::bind(a)?),
            ListenAddr::Unix(p) => {
                if p.exists() {
                    std::fs::remove_file(p)?;
                }
                Listener::Unix(UnixListener::bind(p)?, p.clone())
            }
        };
        match &l {
            Listener::Tcp(t) => t.set_nonblocking(true)?,
            Listener::Unix(u, _) => u.set_nonblocking(true)?,
        }
        Ok(l)
    }

    /// The bound address (with the real port when 0 was asked).
    pub fn local_addr(&self) -> String {
        match self {
            Listener::Tcp(t) => t.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            Listener::Unix(_, p) => format!("unix:{}", p.display()),
        }
    }

    /// What to give gdb's `target remote`: `HOST:PORT`, or the socket's path (gdb opens a
    /// unix socket given as a plain path; it has no `unix:` syntax).
    pub fn gdb_target(&self) -> String {
        match self {
            Listener::Tcp(_) => self.local_addr(),
            Listener::Unix(_, p) => p.display().to_string(),
        }
    }

    /// A connection, if one is waiting.
    pub fn try_accept(&self) -> std::io::Result<Option<Conn>> {
        let r = match self {
            Listener::Tcp(t) => t.accept().map(|(s, _)| {
                let _ = s.set_nodelay(true);
                let _ = TcpStream::set_nonblocking(&s, false);
                Box::new(Stream::new(s)) as Conn
            }),
            Listener::Unix(u, _) => u.accept().map(|(s, _)| {
                let _ = UnixStream::set_nonblocking(&s, false);
                Box::new(Stream::new(s)) as Conn
            }),
        };
        match r {
            Ok(c) => Ok(Some(c)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, p) = self {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!("1234".parse::<ListenAddr>().unwrap(), ListenAddr::Tcp("127.0.0.1:1234".parse().unwrap()));
        assert_eq!(":1234".parse::<ListenAddr>().unwrap().to_string(), "127.0.0.1:1234");
        assert_eq!("0.0.0.0:9".parse::<ListenAddr>().unwrap().to_string(), "0.0.0.0:9");
        assert_eq!("unix:/tmp/g.sock".parse::<ListenAddr>().unwrap(), ListenAddr::Unix("/tmp/g.sock".into()));
        assert!("nonsense".parse::<ListenAddr>().is_err());
    }
}
