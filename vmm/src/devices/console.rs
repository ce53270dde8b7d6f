//! The console sink: where a guest's serial output and console hypercalls go (stdout for
//! `vmscope run`, a buffer for tests and the TUI).

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

enum Sink {
    Writer(Box<dyn Write + Send>),
    Buffer(Vec<u8>),
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
    /// A console that writes (and flushes) to `w`.
    pub fn writer(w: impl Write + Send + 'static) -> Self {
        Self { sink: Arc::new(Mutex::new(Sink::Writer(Box::new(w)))), tail: Arc::default() }
    }

    /// A console that writes to standard output.
    pub fn stdout() -> Self {
        Self::writer(std::io::stdout())
    }

    /// A console that collects output in memory (read it with [`Console::take_buffer`]).
    pub fn buffer() -> Self {
        Self { sink: Arc::new(Mutex::new(Sink::Buffer(Vec::new()))), tail: Arc::default() }
    }

    /// Writes guest output. A failing host writer (a closed pipe) drops the output rather
    /// than stopping the guest.
    pub fn write(&self, bytes: &[u8]) {
        {
            let mut tail = self.tail.lock().unwrap_or_else(PoisonError::into_inner);
            tail.extend(bytes.iter().rev().take(TAIL_BYTES).rev());
            let excess = tail.len().saturating_sub(TAIL_BYTES);
            tail.drain(..excess);
        }
        let mut sink = self.sink.lock().unwrap_or_else(PoisonError::into_inner);
        match &mut *sink {
            Sink::Writer(w) => {
                let _ = w.write_all(bytes).and_then(|()| w.flush());
            }
            Sink::Buffer(b) => b.extend_from_slice(bytes),
        }
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
            Sink::Writer(_) => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
