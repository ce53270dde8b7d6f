//! Where gdb connects: a TCP address (loopback unless another is given explicitly) or a
//! unix socket (`unix:/path`, created with mode 0600; a file at the path that is not a
//! socket is never replaced). Connections have limits: a packet once started must be
//! finished within [`PACKET_TIMEOUT`], the first packet must come within it too, a reply
//! that cannot be written within [`WRITE_TIMEOUT`] ends the session, TCP keep-alive finds a
//! peer that vanished, and an optional deadline (`--timeout`) ends any session.
//! [`serve_connection`] runs one session over any gdbstub connection (the fuzz target's).

use gdbstub::conn::{Connection, ConnectionExt};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long a client may take to finish a packet it started (from `$` to the checksum), and
/// to send its first packet after connecting. gdb writes each packet at once.
pub const PACKET_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a reply may take to be written (a client that stops reading ends its session).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// How often a blocked read wakes up to check the limits.
const TICK: Duration = Duration::from_millis(200);

/// TCP keep-alive: probes after this much silence, every `KEEPALIVE_INTERVAL`, and the peer
/// is gone after `KEEPALIVE_PROBES` unanswered ones (about a minute in all).
const KEEPALIVE_IDLE_S: u32 = 30;
const KEEPALIVE_INTERVAL_S: u32 = 10;
const KEEPALIVE_PROBES: u32 = 3;

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

impl ListenAddr {
    /// Whether only this machine can connect: a loopback TCP address or a unix socket.
    /// Anything else lets whoever reaches it read and write guest memory.
    pub fn is_local(&self) -> bool {
        match self {
            ListenAddr::Tcp(a) => a.ip().is_loopback(),
            ListenAddr::Unix(_) => true,
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
    /// Unix socket (mode 0600, removed when dropped if it is still the one bound).
    Unix(vmm::socket::SocketFile),
}

/// A gdb connection.
pub type Conn = Box<dyn ConnectionExt<Error = std::io::Error>>;

/// A socket as gdbstub wants it: writes are buffered until gdbstub flushes a packet (it
/// writes byte by byte), reads are buffered (it reads byte by byte too), and `peek`
/// reads ahead without blocking, reporting a closed peer as an error (so the stub never
/// waits on a dead client). A blocking read wakes every [`TICK`] to enforce the limits:
/// the deadline, [`PACKET_TIMEOUT`] for a started packet and for the first one.
struct Stream<S> {
    inner: S,
    /// Bytes read ahead of gdbstub's byte-by-byte reads.
    input: std::collections::VecDeque<u8>,
    out: Vec<u8>,
    /// When the session must end whatever happens (`--timeout`).
    deadline: Option<Instant>,
    /// When the packet being read started (`$` seen, checksum not yet).
    packet_started: Option<Instant>,
    /// Checksum digits still to come after `#`.
    checksum_left: u8,
    /// Bytes of the packet being read so far (from its `$`).
    packet_len: usize,
    /// Until the first whole packet: when it must have arrived.
    first_packet_by: Option<Instant>,
}

fn timed_out(why: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, why)
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
    fn new(inner: S, deadline: Option<Instant>) -> Self {
        Self {
            inner,
            input: std::collections::VecDeque::with_capacity(4096),
            out: Vec::with_capacity(4096),
            deadline,
            packet_started: None,
            checksum_left: 0,
            packet_len: 0,
            first_packet_by: Some(Instant::now() + PACKET_TIMEOUT),
        }
    }

    /// An error if a limit has passed.
    fn check_limits(&self) -> std::io::Result<()> {
        let now = Instant::now();
        if self.deadline.is_some_and(|d| now >= d) {
            return Err(timed_out("the --timeout limit passed".into()));
        }
        if self.packet_started.is_some_and(|t| now >= t + PACKET_TIMEOUT) {
            return Err(timed_out(format!("a packet stayed unfinished for {} s", PACKET_TIMEOUT.as_secs())));
        }
        if self.first_packet_by.is_some_and(|t| now >= t) {
            return Err(timed_out(format!("no packet within {} s of connecting", PACKET_TIMEOUT.as_secs())));
        }
        Ok(())
    }

    /// Follows the packet framing of the bytes gdbstub consumes. A packet longer than
    /// [`crate::PACKET_SIZE`] (from `$` to the checksum) is an error that ends the session
    /// here, before gdbstub sees the byte: its own packet buffer would grow to hold it.
    fn track(&mut self, byte: u8) -> std::io::Result<()> {
        if self.packet_started.is_some() {
            self.packet_len += 1;
            if self.packet_len > crate::PACKET_SIZE {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("a packet is longer than {} bytes", crate::PACKET_SIZE),
                ));
            }
        }
        if self.checksum_left > 0 {
            self.checksum_left -= 1;
            if self.checksum_left == 0 {
                self.packet_started = None;
                self.first_packet_by = None;
            }
        } else if self.packet_started.is_some() {
            if byte == b'#' {
                self.checksum_left = 2;
            }
        } else if byte == b'$' {
            self.packet_started = Some(Instant::now());
            self.packet_len = 1;
        }
        Ok(())
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
            self.check_limits()?;
            match self.fill() {
                Ok(_) => {}
                // The read timeout (TICK): look at the limits again.
                Err(e)
                    if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let byte = self.input.pop_front().expect("not empty");
        self.track(byte)?;
        Ok(byte)
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
    /// Binds `addr`. A unix socket is created with mode 0600 (only this user may connect);
    /// a stale socket at its path is replaced, anything else there (a file, a directory, a
    /// socket another process still listens on) is an error naming the path.
    pub fn bind(addr: &ListenAddr) -> std::io::Result<Self> {
        let l = match addr {
            ListenAddr::Tcp(a) => Listener::Tcp(TcpListener::bind(a)?),
            ListenAddr::Unix(p) => Listener::Unix(vmm::socket::SocketFile::bind(p)?),
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
            Listener::Tcp(t) => t.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            Listener::Unix(u) => format!("unix:{}", u.path().display()),
        }
    }

    /// What to give gdb's `target remote`: `HOST:PORT`, or the socket's path (gdb opens a
    /// unix socket given as a plain path; it has no `unix:` syntax).
    pub fn gdb_target(&self) -> String {
        match self {
            Listener::Tcp(_) => self.local_addr(),
            Listener::Unix(u) => u.path().display().to_string(),
        }
    }

    /// A connection, if one is waiting. Its reads and writes have the limits of this
    /// module, and end by `deadline` if one is given.
    pub fn try_accept(&self, deadline: Option<Instant>) -> std::io::Result<Option<Conn>> {
        let r = match self {
            Listener::Tcp(t) => t.accept().and_then(|(s, _)| {
                let _ = s.set_nodelay(true);
                keep_alive(&s);
                s.set_nonblocking(false)?;
                s.set_read_timeout(Some(TICK))?;
                s.set_write_timeout(Some(WRITE_TIMEOUT))?;
                Ok(Box::new(Stream::new(s, deadline)) as Conn)
            }),
            Listener::Unix(u) => u.listener().accept().and_then(|(s, _)| {
                s.set_nonblocking(false)?;
                s.set_read_timeout(Some(TICK))?;
                s.set_write_timeout(Some(WRITE_TIMEOUT))?;
                Ok(Box::new(Stream::new(s, deadline)) as Conn)
            }),
        };
        match r {
            Ok(c) => Ok(Some(c)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Turns on TCP keep-alive, so that a peer whose machine or network vanished is noticed
/// (a read then fails) instead of holding the session for ever. Best effort.
fn keep_alive(s: &TcpStream) {
    use nix::sys::socket::{setsockopt, sockopt};
    let on = setsockopt(s, sockopt::KeepAlive, &true)
        .and_then(|()| setsockopt(s, sockopt::TcpKeepIdle, &KEEPALIVE_IDLE_S))
        .and_then(|()| setsockopt(s, sockopt::TcpKeepInterval, &KEEPALIVE_INTERVAL_S))
        .and_then(|()| setsockopt(s, sockopt::TcpKeepCount, &KEEPALIVE_PROBES));
    if let Err(e) = on {
        tracing::warn!("cannot turn on TCP keep-alive for a gdb connection: {e}");
    }
}

/// How a session served by [`serve_connection`] ended.
#[derive(Debug)]
pub struct SessionEnd {
    /// gdbstub's account: gdb detached or killed the guest, or the error that ended the
    /// session (the connection failed or ended, a packet longer than
    /// [`crate::PACKET_SIZE`], a target error).
    pub reason: Result<gdbstub::stub::DisconnectReason, String>,
    /// How the guest ended meanwhile, if it did.
    pub guest: Option<vmm::machine::Outcome>,
    /// Whether the session let the guest run (it may still be running).
    pub resumed: bool,
}

/// One gdb session over any connection: every vCPU is paused (gdb expects a stopped
/// target), then gdb's packets are answered by the stub's own handlers until the session
/// ends. [`crate::serve`] does the same for each client of a [`Listener`]; this entry
/// point drives the handlers with bytes that never crossed a socket (the `gdb_packets`
/// fuzz target). Breakpoints the session set stay set
/// (`vmm::machine::Machine::clear_breakpoints`), and a guest it resumed may be running.
pub fn serve_connection<C>(
    machine: &vmm::machine::Machine,
    symbols: &inspect::symbols::SymbolTable,
    conn: C,
) -> Result<SessionEnd, crate::GdbError>
where
    C: ConnectionExt<Error = std::io::Error>,
{
    machine.pause_all();
    let mut target = crate::VmTarget::new(machine, symbols);
    // A buffer gdbstub cannot grow: a longer packet is an error that ends the session
    // (with `packet_buffer_size` alone, gdbstub extends its buffer for as long as a
    // packet lasts).
    let mut buffer = vec![0u8; crate::PACKET_SIZE];
    let stub = gdbstub::stub::GdbStub::<crate::VmTarget<'_>, C>::builder(conn)
        .with_packet_buffer(&mut buffer)
        .build()
        .map_err(|e| crate::GdbError::Setup(e.to_string()))?;
    let reason =
        stub.run_blocking::<crate::event_loop::VmEventLoop<'_, C>>(&mut target).map_err(|e| e.to_string());
    Ok(SessionEnd { reason, guest: target.end.take(), resumed: target.ever_resumed })
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

    #[test]
    fn only_loopback_and_unix_sockets_are_local() {
        assert!("1234".parse::<ListenAddr>().unwrap().is_local());
        assert!("[::1]:9".parse::<ListenAddr>().unwrap().is_local());
        assert!("unix:/tmp/g.sock".parse::<ListenAddr>().unwrap().is_local());
        assert!(!"0.0.0.0:9".parse::<ListenAddr>().unwrap().is_local());
        assert!(!"192.168.1.2:9".parse::<ListenAddr>().unwrap().is_local());
    }

    /// A client that sends `input`, then hangs up; it keeps the stub's replies.
    struct Scripted {
        input: std::collections::VecDeque<u8>,
        replies: std::rc::Rc<std::cell::RefCell<Vec<u8>>>,
    }

    impl Connection for Scripted {
        type Error = std::io::Error;
        fn write(&mut self, byte: u8) -> std::io::Result<()> {
            self.replies.borrow_mut().push(byte);
            Ok(())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl ConnectionExt for Scripted {
        fn read(&mut self) -> std::io::Result<u8> {
            self.input.pop_front().ok_or_else(|| std::io::ErrorKind::UnexpectedEof.into())
        }
        fn peek(&mut self) -> std::io::Result<Option<u8>> {
            self.input.front().map(|b| Some(*b)).ok_or_else(|| std::io::ErrorKind::UnexpectedEof.into())
        }
    }

    fn packet(body: &str) -> String {
        let sum = body.bytes().fold(0u8, |a, b| a.wrapping_add(b));
        format!("${body}#{sum:02x}")
    }

    /// A paused one-vCPU guest whose code at 0x100000 is `jmp $` (CPL0).
    fn paused_guest() -> vmm::machine::Machine {
        assert!(std::path::Path::new("/dev/kvm").exists(), "this test needs /dev/kvm (hardware KVM or PVM)");
        let cfg = vmm::machine::ElfGuestConfig {
            name: "jmp-self".into(),
            elf: vmm::test_utils::tiny_elf(0x10_0000, &[0xeb, 0xfe], 62).into(),
            cmdline: String::new(),
            mem_mib: 16,
            vcpus: 1,
            ring: vmm::arch::x86_64::Ring::Ring0,
            start_paused: true,
            doorbell: false,
            ring_consumer: Default::default(),
        };
        vmm::machine::Machine::boot_elf(&cfg, vmm::devices::console::Console::buffer()).expect("boot")
    }

    fn session(machine: &vmm::machine::Machine, input: String) -> (SessionEnd, String) {
        let symbols = inspect::symbols::SymbolTable::default();
        let replies = std::rc::Rc::default();
        let conn = Scripted { input: input.into_bytes().into(), replies: std::rc::Rc::clone(&replies) };
        let end = serve_connection(machine, &symbols, conn).expect("the stub starts");
        let replies = String::from_utf8_lossy(&replies.borrow()).into_owned();
        (end, replies)
    }

    #[test]
    fn a_session_over_any_connection_answers_packets_until_gdb_kills_the_guest() {
        let machine = paused_guest();
        let input = ["+", &packet("?"), &packet("m100000,2"), &packet("Z0,100000,1"), &packet("k")].concat();
        let (end, replies) = session(&machine, input);
        assert!(matches!(end.reason, Ok(gdbstub::stub::DisconnectReason::Kill)), "{end:?}");
        assert!(!end.resumed && end.guest.is_none(), "{end:?}");
        // The stop reply, the guest's own bytes, the breakpoint set.
        assert!(replies.contains("$T05"), "{replies}");
        assert!(replies.contains(&packet("ebfe")), "{replies}");
        assert!(replies.contains(&packet("OK")), "{replies}");
        machine.clear_breakpoints();
    }

    #[test]
    fn a_packet_over_the_packet_size_ends_the_session() {
        let machine = paused_guest();
        let huge = packet(&format!("m{}", "1".repeat(crate::PACKET_SIZE + 100)));
        let (end, replies) = session(&machine, ["+", &packet("?"), &huge, &packet("g")].concat());
        let why = end.reason.expect_err("an oversized packet ends the session");
        assert!(why.to_lowercase().contains("buffer"), "{why}");
        // Nothing after the oversized packet was answered (no g reply: 0x-digit registers).
        assert!(replies.contains("$T05") && !replies.contains("$0000"), "{replies}");
    }

    #[test]
    fn a_socket_packet_over_the_packet_size_is_an_error_before_it_is_buffered() {
        let (mut client, server) = UnixStream::pair().unwrap();
        server.set_read_timeout(Some(TICK)).unwrap();
        let mut stream = Stream::new(server, None);
        // A packet exactly PACKET_SIZE long (with `$`, `#` and the checksum) is read whole.
        let body = "m".repeat(crate::PACKET_SIZE - 4);
        Write::write_all(&mut client, packet(&body).as_bytes()).unwrap();
        for _ in 0..crate::PACKET_SIZE {
            stream.read().unwrap();
        }
        // One byte more and it is an error, however long the client goes on.
        Write::write_all(&mut client, b"$").unwrap();
        Write::write_all(&mut client, &vec![b'1'; crate::PACKET_SIZE + 10]).unwrap();
        let e = (0..=crate::PACKET_SIZE).find_map(|_| stream.read().err()).expect("an error");
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("longer than 4096 bytes"), "{e}");
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vmscope-gdb-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_unix_socket_is_private_and_never_replaces_a_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp_dir("listen");
        let path = dir.join("gdb.sock");
        // A regular file at the path: an error naming it, and the file is untouched.
        std::fs::write(&path, "precious").unwrap();
        let e = Listener::bind(&ListenAddr::Unix(path.clone())).err().expect("a file is not replaced");
        assert!(
            e.to_string().contains(&*path.to_string_lossy()) && e.to_string().contains("not a socket"),
            "{e}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
        std::fs::remove_file(&path).unwrap();
        // A fresh socket: mode 0600.
        let l = Listener::bind(&ListenAddr::Unix(path.clone())).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{mode:o}");
        // A second listener on a live socket: refused, the first keeps it.
        let e = Listener::bind(&ListenAddr::Unix(path.clone())).err().expect("a live socket is not replaced");
        assert!(e.to_string().contains("listening"), "{e}");
        drop(l);
        assert!(!path.exists(), "the listener removes its own socket");
        // A stale socket (its listener gone without removing it) is replaced.
        let stale = std::os::unix::net::UnixListener::bind(&path).unwrap();
        drop(stale);
        let l = Listener::bind(&ListenAddr::Unix(path.clone())).unwrap();
        // Something else put at the path meanwhile is not removed by the drop.
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, "another").unwrap();
        drop(l);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "another");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
