//! The console sink: where a guest's serial output and console hypercalls go (stdout for
//! `vmscope run`, a buffer for tests and the TUI).

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

enum Sink {
    Writer(Box<dyn Write + Send>),
    Buffer(Vec<u8>),
}

/// A cloneable handle to one console sink.
#[derive(Clone)]
pub struct Console {
    sink: Arc<Mutex<Sink>>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Console")
    }
}

impl Console {
    /// A console that writes (and flushes) to `w`.
    pub fn writer(w: impl Write + Send + 'static) -> Self {
        Self {
            sink: Arc::new(Mutex::new(Sink::Writer(Box::new(w)))),
        }
    }

    /// A console that writes to standard output.
    pub fn stdout() -> Self {
        Self::writer(std::io::stdout())
    }

    /// A console that collects output in memory (read it with [`Console::take_buffer`]).
    pub fn buffer() -> Self {
        Self {
            sink: Arc::new(Mutex::new(Sink::Buffer(Vec::new()))),
        }
    }

    /// Writes guest output. A failing host writer (a closed pipe) drops the output rather
    /// than stopping the guest.
    pub fn write(&self, bytes: &[u8]) {
        let mut sink = self.sink.lock().unwrap_or_else(PoisonError::into_inner);
        match &mut *sink {
            Sink::Writer(w) => {
                let _ = w.write_all(bytes).and_then(|()| w.flush());
            }
            Sink::Buffer(b) => b.extend_from_slice(bytes),
        }
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
