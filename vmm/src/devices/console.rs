//! The console sink: where a guest's serial output and console hypercalls go (stdout for
//! `vmscope run`, a buffer for tests and the TUI).
//!
//! A writer console batches: a guest that prints a byte per port exit (a UART) used to cost
//! one `write(2)` per exit, the only system call on the exit path besides `KVM_RUN`. Bytes
//! are kept until one of these, then written out in one call:
//! - a newline arrives (so line-oriented output appears as soon as it is complete);
//! - [`FLUSH_BYTES`] are waiting, or the oldest waiting byte is [`FLUSH_AFTER`] old when
//!   the next one comes;
//! - someone calls [`Console::flush`]: the vCPU thread before it reads a device, sleeps,
//!   halts or stops (a guest that polls a status register or waits for input has ended its
//!   batch), and `Machine::wait` on a timer while bytes are waiting, so a prompt with no
//!   newline still appears while the guest computes;
//! - the last handle is dropped (the machine is torn down, also when a panic unwinds).
//!
//! So nothing is lost on any path that runs destructors; a process killed by a signal
//! loses at most the bytes of an unfinished line younger than [`FLUSH_AFTER`].

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Bytes a writer console keeps at most before writing them out.
pub const FLUSH_BYTES: usize = 4096;
/// How long a byte may wait for its line to end while more output keeps coming.
pub const FLUSH_AFTER: Duration = Duration::from_millis(2);

enum Sink {
    Writer {
        out: Box<dyn Write + Send>,
        /// Bytes not written yet.
        pending: Vec<u8>,
        /// When the oldest pending byte came.
        since: Instant,
    },
    Buffer(Vec<u8>),
}

impl Sink {
    /// Writes the pending bytes of a writer console. A failing host writer (a closed pipe)
    /// drops the output rather than stopping the guest.
    fn flush(&mut self) {
        if let Sink::Writer { out, pending, .. } = self {
            if !pending.is_empty() {
                let _ = out.write_all(pending).and_then(|()| out.flush());
                pending.clear();
            }
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.flush();
    }
}

/// How much recent output a console remembers for reports (a kernel panic's text).
pub const TAIL_BYTES: usize = 16 << 10;

/// A cloneable handle to one console sink.
#[derive(Clone)]
pub struct Console {
    sink: Arc<Mutex<Sink>>,
    tail: Arc<Mutex<VecDeque<u8>>>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Console")
    }
}

impl Console {
    /// A console that writes to `w` in batches (see the module documentation), flushing
    /// `w` after each.
    pub fn writer(w: impl Write + Send + 'static) -> Self {
        let sink = Sink::Writer { out: Box::new(w), pending: Vec::new(), since: Instant::now() };
        Self { sink: Arc::new(Mutex::new(sink)), tail: Arc::default() }
    }

    /// A console that writes to standard output.
    pub fn stdout() -> Self {
        Self::writer(std::io::stdout())
    }

    /// A console that collects output in memory (read it with [`Console::take_buffer`]).
    pub fn buffer() -> Self {
        Self { sink: Arc::new(Mutex::new(Sink::Buffer(Vec::new()))), tail: Arc::default() }
    }

    /// Takes guest output: a buffer console keeps it, a writer console writes it out now or
    /// with the rest of its batch.
    pub fn write(&self, bytes: &[u8]) {
        {
            let mut tail = self.tail.lock().unwrap_or_else(PoisonError::into_inner);
            tail.extend(bytes.iter().rev().take(TAIL_BYTES).rev());
            let excess = tail.len().saturating_sub(TAIL_BYTES);
            tail.drain(..excess);
        }
        let mut sink = self.sink.lock().unwrap_or_else(PoisonError::into_inner);
        let due = match &mut *sink {
            Sink::Writer { pending, since, .. } => {
                if pending.is_empty() {
                    *since = Instant::now();
                }
                pending.extend_from_slice(bytes);
                bytes.contains(&b'\n') || pending.len() >= FLUSH_BYTES || since.elapsed() >= FLUSH_AFTER
            }
            Sink::Buffer(b) => {
                b.extend_from_slice(bytes);
                false
            }
        };
        if due {
            sink.flush();
        }
    }

    /// Writes out what a writer console holds (nothing to do for a buffer console, or when
    /// nothing waits: then no system call is made).
    pub fn flush(&self) {
        self.sink.lock().unwrap_or_else(PoisonError::into_inner).flush();
    }

    /// Whether a writer console holds bytes it has not written yet.
    pub fn has_pending(&self) -> bool {
        matches!(&*self.sink.lock().unwrap_or_else(PoisonError::into_inner), Sink::Writer { pending, .. } if !pending.is_empty())
    }

    /// The last [`TAIL_BYTES`] bytes the guest wrote (kept for every kind of console).
    pub fn tail(&self) -> Vec<u8> {
        self.tail.lock().unwrap_or_else(PoisonError::into_inner).iter().copied().collect()
    }

    /// Takes what a buffer console collected so far (empty for a writer console).
    pub fn take_buffer(&self) -> Vec<u8> {
        let mut sink = self.sink.lock().unwrap_or_else(PoisonError::into_inner);
        match &mut *sink {
            Sink::Buffer(b) => std::mem::take(b),
            Sink::Writer { .. } => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host writer whose bytes the test can read, with the number of write calls.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Recorder {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let mut r = self.0.lock().unwrap();
            r.0.extend_from_slice(buf);
            r.1 += 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Recorder {
        fn written(&self) -> (Vec<u8>, usize) {
            self.0.lock().unwrap().clone()
        }
    }

    #[test]
    fn a_writer_console_writes_a_line_at_once_and_bytes_of_a_line_together() {
        let out = Recorder::default();
        let c = Console::writer(out.clone());
        // Bytes as a UART delivers them, one per exit, in less than FLUSH_AFTER.
        for &b in b"hello" {
            c.write(&[b]);
        }
        let (bytes, calls) = out.written();
        assert!(bytes.is_empty() || bytes == b"hello", "{bytes:?}");
        c.write(b",\nworld");
        assert_eq!(out.written().0, b"hello,\nworld");
        assert!(!c.has_pending());
        assert!(out.written().1 <= calls + 1, "one write for the batch: {:?}", out.written());
        let calls = out.written().1;
        c.flush();
        assert_eq!(out.written().1, calls, "flushing nothing writes nothing");
    }

    #[test]
    fn a_partial_line_waits_for_a_flush_or_the_last_handle() {
        let out = Recorder::default();
        let c = Console::writer(out.clone());
        c.write(b"login: ");
        let before_flush = out.written();
        c.flush();
        assert_eq!(out.written().0, b"login: ");
        assert!(out.written().1 <= before_flush.1 + 1);
        let calls = out.written().1;
        c.flush();
        assert_eq!(out.written().1, calls, "an empty flush makes no write");
        c.write(b"no newline");
        let clone = c.clone();
        drop(c);
        drop(clone);
        assert_eq!(out.written().0, b"login: no newline", "dropping the last handle writes the rest");
        assert!(!Console::buffer().has_pending());
    }

    #[test]
    fn a_long_line_is_written_in_bounded_batches() {
        let out = Recorder::default();
        let c = Console::writer(out.clone());
        for _ in 0..3 * FLUSH_BYTES {
            c.write(b"u");
        }
        // At most FLUSH_BYTES - 1 bytes wait: the rest went out before any flush.
        let (bytes, calls) = out.written();
        assert!(bytes.len() > 2 * FLUSH_BYTES && calls >= 2, "{} bytes in {calls} writes", bytes.len());
        c.flush();
        assert_eq!(out.written().0.len(), 3 * FLUSH_BYTES);
        assert!(out.written().0.iter().all(|&b| b == b'u'));
    }

    #[test]
    fn tail_keeps_the_most_recent_bytes() {
        let c = Console::buffer();
        c.write(&vec![b'a'; TAIL_BYTES]);
        c.write(b"Kernel panic - not syncing");
        let tail = c.tail();
        assert_eq!(tail.len(), TAIL_BYTES);
        assert!(tail.ends_with(b"Kernel panic - not syncing"));
        assert_eq!(c.take_buffer().len(), TAIL_BYTES + 26);
    }
}
