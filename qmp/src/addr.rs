//! Where the QMP socket listens, spelled as QEMU's `-qmp` spells it: `unix:PATH` or
//! `tcp:HOST:PORT` (loopback unless [`QmpAddr::allow_remote`] was asked for).

use std::net::SocketAddr;
use std::path::PathBuf;

/// A place to listen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QmpAddr {
    /// A unix socket path.
    Unix(PathBuf),
    /// A TCP address.
    Tcp(SocketAddr),
}

impl std::fmt::Display for QmpAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QmpAddr::Unix(p) => write!(f, "unix:{}", p.display()),
            QmpAddr::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

impl std::str::FromStr for QmpAddr {
    type Err = String;

    /// `unix:PATH`, `tcp:HOST:PORT` or `tcp:PORT` (127.0.0.1). QEMU's `,server,nowait`
    /// suffixes are accepted and ignored (vmscope always listens and never waits).
    fn from_str(s: &str) -> Result<Self, String> {
        let main =
            s.strip_suffix(",server=on,wait=off").or_else(|| s.strip_suffix(",server,nowait")).unwrap_or(s);
        if let Some(path) = main.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("--qmp unix: needs a path".into());
            }
            return Ok(QmpAddr::Unix(PathBuf::from(path)));
        }
        if let Some(rest) = main.strip_prefix("tcp:") {
            if let Ok(port) = rest.trim_start_matches(':').parse::<u16>() {
                return Ok(QmpAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], port))));
            }
            let rest = rest.strip_prefix("localhost:").map(|p| format!("127.0.0.1:{p}"));
            let rest = rest.as_deref().unwrap_or(&main[4..]);
            return rest
                .parse::<SocketAddr>()
                .map(QmpAddr::Tcp)
                .map_err(|_| format!("--qmp {s:?}: tcp: needs HOST:PORT or PORT"));
        }
        Err(format!("--qmp {s:?}: give unix:PATH or tcp:HOST:PORT"))
    }
}

impl QmpAddr {
    /// Whether only this machine can connect: a unix socket or a loopback TCP address.
    pub fn is_local(&self) -> bool {
        match self {
            QmpAddr::Unix(_) => true,
            QmpAddr::Tcp(a) => a.ip().is_loopback(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_as_qemu_spells_them() {
        assert_eq!("unix:/tmp/q".parse(), Ok(QmpAddr::Unix("/tmp/q".into())));
        assert_eq!("unix:/tmp/q,server,nowait".parse(), Ok(QmpAddr::Unix("/tmp/q".into())));
        assert_eq!("tcp:127.0.0.1:4444".parse(), Ok(QmpAddr::Tcp("127.0.0.1:4444".parse().unwrap())));
        assert_eq!("tcp:localhost:4444".parse(), Ok(QmpAddr::Tcp("127.0.0.1:4444".parse().unwrap())));
        assert_eq!("tcp:4444".parse(), Ok(QmpAddr::Tcp("127.0.0.1:4444".parse().unwrap())));
        assert!("tcp:0.0.0.0:4444".parse::<QmpAddr>().is_ok_and(|a| !a.is_local()));
        assert!("4444".parse::<QmpAddr>().is_err());
        assert!("unix:".parse::<QmpAddr>().is_err());
        assert!("tcp:nowhere".parse::<QmpAddr>().is_err());
    }
}
