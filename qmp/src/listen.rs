//! The listening socket and its connections. A unix socket is created with mode 0600 and
//! only ever replaces a stale socket (never a file, a directory or a socket someone still
//! listens on); it is removed when the listener ends, if it is still the one bound. A
//! unix connection receives descriptors (SCM_RIGHTS) with its bytes, for `getfd`.

use std::fs::File;
use std::io::{Error, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use vmm_sys_util::sock_ctrl_msg::ScmSocket;

use crate::QmpAddr;

/// A bound QMP listener (non-blocking).
pub enum Listener {
    /// TCP.
    Tcp(TcpListener),
    /// A unix socket (mode 0600, removed when dropped if it is still the one bound).
    Unix(vmm::socket::SocketFile),
}

/// One client connection (non-blocking).
pub enum Stream {
    /// TCP.
    Tcp(TcpStream),
    /// A unix socket: may carry descriptors.
    Unix(UnixStream),
}

impl Listener {
    /// Binds `addr`; a TCP address that is not loopback needs `allow_remote`.
    pub fn bind(addr: &QmpAddr, allow_remote: bool) -> std::io::Result<Self> {
        let l = match addr {
            QmpAddr::Tcp(a) if !a.ip().is_loopback() && !allow_remote => {
                return Err(Error::new(
                    ErrorKind::PermissionDenied,
                    format!("{a} is not a loopback address: whoever reaches it controls the guest (confirm with --qmp-any-address)"),
                ))
            }
            QmpAddr::Tcp(a) => Listener::Tcp(TcpListener::bind(a)?),
            QmpAddr::Unix(p) => Listener::Unix(vmm::socket::SocketFile::bind(p)?),
        };
        match &l {
            Listener::Tcp(t) => t.set_nonblocking(true)?,
            Listener::Unix(u) => u.listener().set_nonblocking(true)?,
        }
        Ok(l)
    }

    /// The bound address (with the real port when 0 was asked).
    pub fn local_addr(&self) -> String {
        match self {
            Listener::Tcp(t) => t.local_addr().map(|a| format!("tcp:{a}")).unwrap_or_default(),
            Listener::Unix(u) => format!("unix:{}", u.path().display()),
        }
    }

    /// A waiting connection, if any.
    pub fn try_accept(&self) -> std::io::Result<Option<Stream>> {
        let r = match self {
            Listener::Tcp(t) => t.accept().map(|(s, _)| Stream::Tcp(s)),
            Listener::Unix(u) => u.listener().accept().map(|(s, _)| Stream::Unix(s)),
        };
        match r {
            Ok(s) => {
                match &s {
                    Stream::Tcp(t) => {
                        t.set_nonblocking(true)?;
                        let _ = t.set_nodelay(true);
                    }
                    Stream::Unix(u) => u.set_nonblocking(true)?,
                }
                Ok(Some(s))
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl Stream {
    /// Reads what is there; on a unix socket also the descriptor sent with the bytes, if
    /// any. `Ok((0, None))` is the end of the stream; `WouldBlock` means nothing yet.
    pub fn read_with_fd(&mut self, buf: &mut [u8]) -> std::io::Result<(usize, Option<File>)> {
        match self {
            Stream::Tcp(t) => t.read(buf).map(|n| (n, None)),
            Stream::Unix(u) => u.recv_with_fd(buf).map_err(|e| Error::from_raw_os_error(e.errno())),
        }
    }

    /// Writes what the socket takes now.
    pub fn write_some(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(t) => t.write(buf),
            Stream::Unix(u) => u.write(buf),
        }
    }

    /// Whether descriptors can be passed (`getfd` needs a unix socket).
    pub fn is_unix(&self) -> bool {
        matches!(self, Stream::Unix(_))
    }
}
