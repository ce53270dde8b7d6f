//! The receiving side (`vmscope run --incoming URI`): one source, pages into fresh RAM, the
//! state sections, a paused machine, and the guest runs once the source lets go.

use super::source::{Hello, Loaded};
use super::uri::{Listener, Stream, Uri};
use super::wire::{self, Tag, WireError, PAGE};
use super::MigrationError;
use crate::devices::console::Console;
use crate::snapshot::{restore_state, RestoreOptions, Restored, SnapshotError, State};
use crate::vstate::memory::create_guest_memory;
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};
use vm_memory::{Bytes, GuestAddress};

/// Sections a stream may carry at most (meta, devices, debug, vm and 32 vCPUs, and room).
const MAX_SECTIONS: usize = 48;
/// Bytes of state sections a stream may carry at most.
const MAX_STATE_BYTES: usize = 64 << 20;

/// What the target received.
#[derive(Clone, Debug, Serialize)]
pub struct IncomingSummary {
    /// The source's address as seen here (the listening URI).
    pub via: String,
    /// The source's host kind.
    pub source_host: String,
    /// The guest's name.
    pub guest_name: String,
    /// Guest RAM in bytes.
    pub mem_bytes: u64,
    /// Pre-copy rounds announced (the stop-and-copy one included).
    pub rounds: u32,
    /// Pages received (a page sent in several rounds counts each time).
    pub pages: u64,
    /// Bytes received.
    pub bytes: u64,
    /// From the last frame to the paused machine, in microseconds.
    pub restore_us: u64,
    /// From the connection to the guest running, in microseconds.
    pub total_us: u64,
}

/// A guest received and running.
pub struct Received {
    /// The machine.
    pub restored: Restored,
    /// The report.
    pub summary: IncomingSummary,
}

struct Conn<'u> {
    stream: Stream,
    uri: &'u Uri,
    buf: Vec<u8>,
    bytes: u64,
}

impl Conn<'_> {
    fn read(&mut self) -> Result<Tag, MigrationError> {
        let tag = wire::read_frame(&mut self.stream, &mut self.buf).map_err(|e| self.wire_error(e))?;
        self.bytes += 8 + self.buf.len() as u64;
        Ok(tag)
    }

    fn wire_error(&self, e: WireError) -> MigrationError {
        match e {
            WireError::Io(source) => MigrationError::Io {
                what: "the migration source went away; nothing runs here. Stream at",
                uri: self.uri.to_string(),
                source,
            },
            WireError::Malformed(d) => MigrationError::protocol(self.uri, d),
        }
    }

    fn send(&mut self, tag: Tag, payload: &[u8]) -> Result<(), MigrationError> {
        wire::write_frame(&mut self.stream, tag, payload)
            .map_err(MigrationError::io("cannot answer the migration source at", self.uri))
    }

    /// Tells the source why, and returns the error.
    fn refuse(&mut self, tag: Tag, e: MigrationError) -> MigrationError {
        let mut text = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            text.push_str(": ");
            text.push_str(&s.to_string());
            src = s.source();
        }
        text.truncate(wire::MAX_SMALL - 8);
        let _ = self.send(tag, text.as_bytes());
        e
    }
}

/// Waits at `listener` for one source.
pub fn accept(listener: &Listener) -> Result<Stream, MigrationError> {
    listener.accept().map_err(MigrationError::io("cannot accept a migration source at", &listener.uri()))
}

/// Receives the guest a source sends on `stream` (accepted at `uri`). Every length, count
/// and page number from the stream is checked; any failure before the source lets go leaves
/// nothing running here (the source keeps the guest). `timeout` bounds each wait for a frame.
pub fn receive(
    stream: Stream,
    uri: &Uri,
    console: Console,
    opts: RestoreOptions,
    timeout: Duration,
) -> Result<Received, MigrationError> {
    let uri = uri.clone();
    let started = Instant::now();
    stream.set_read_timeout(Some(timeout));
    stream.set_write_timeout(Some(timeout));
    let mut c = Conn { stream, uri: &uri, buf: Vec::new(), bytes: 0 };
    let version = wire::read_preamble(&mut c.stream).map_err(|e| c.wire_error(e))?;
    if version != wire::VERSION {
        let e = MigrationError::protocol(
            &uri,
            format!("the source speaks migration version {version}, this vmscope speaks {}", wire::VERSION),
        );
        return Err(c.refuse(Tag::Refuse, e));
    }
    if c.read()? != Tag::Hello {
        return Err(c.refuse(Tag::Refuse, MigrationError::protocol(&uri, "it did not start with HELLO")));
    }
    let hello: Hello = match serde_json::from_slice(&c.buf) {
        Ok(h) => h,
        Err(e) => {
            return Err(c.refuse(Tag::Refuse, MigrationError::protocol(&uri, format!("its HELLO: {e}"))))
        }
    };
    if !(1..=32).contains(&hello.vcpus) {
        let e = MigrationError::protocol(&uri, format!("{} vCPUs (1 to 32 can be received)", hello.vcpus));
        return Err(c.refuse(Tag::Refuse, e));
    }
    let mem = match create_guest_memory(hello.mem_bytes) {
        Ok(m) => m,
        Err(e) => {
            let e = MigrationError::Snapshot(SnapshotError::Machine(crate::machine::MachineError::Memory(e)));
            return Err(c.refuse(Tag::Refuse, e));
        }
    };
    c.send(Tag::Ready, &[])?;

    let pages_total = hello.mem_bytes / PAGE as u64;
    let (mut pages, mut rounds) = (0u64, 0u32);
    let mut sections: HashMap<String, Vec<u8>> = HashMap::new();
    let mut state_bytes = 0usize;
    loop {
        match c.read()? {
            Tag::Pages => {
                let list = wire::decode_pages(&c.buf, pages_total).map_err(|e| c.wire_error(e))?;
                for (n, bytes) in &list {
                    // In range: decode_pages checked n against the RAM's pages.
                    let _ = mem.write_slice(bytes, GuestAddress(n * PAGE as u64));
                }
                pages += list.len() as u64;
            }
            Tag::Round => rounds += 1,
            Tag::State => {
                let (name, bytes) = wire::decode_state(&c.buf).map_err(|e| c.wire_error(e))?;
                state_bytes += bytes.len();
                if sections.len() >= MAX_SECTIONS
                    || state_bytes > MAX_STATE_BYTES
                    || sections.contains_key(&name)
                {
                    let e = MigrationError::protocol(
                        &uri,
                        format!("section {name:?} is repeated or past {MAX_SECTIONS} sections / {MAX_STATE_BYTES} bytes"),
                    );
                    return Err(c.refuse(Tag::Failed, e));
                }
                sections.insert(name, bytes.to_vec());
            }
            Tag::Done => break,
            other => {
                let e =
                    MigrationError::protocol(&uri, format!("a {other:?} frame in the middle of the guest"));
                return Err(c.refuse(Tag::Failed, e));
            }
        }
    }

    let restoring = Instant::now();
    let state = State::decode(|name| {
        sections.remove(name).ok_or_else(|| SnapshotError::BadSection {
            section: name.into(),
            detail: "the source did not send it".into(),
        })
    });
    let paused = RestoreOptions { start_paused: true, ..opts };
    let origin = uri.to_string();
    let restored =
        match state.and_then(|s| restore_state(s, mem, Path::new(&origin), paused, console, restoring)) {
            Ok(r) => r,
            Err(e) => return Err(c.refuse(Tag::Failed, e.into())),
        };
    let restore_us = restoring.elapsed().as_micros() as u64;
    let loaded = Loaded { restore_us, notes: restored.notes.clone() };
    c.send(Tag::Loaded, &serde_json::to_vec(&loaded).unwrap_or_default())?;
    match c.read() {
        Ok(Tag::Go) => {}
        Ok(t) => {
            return Err(MigrationError::protocol(
                &uri,
                format!("it answered LOADED with {t:?}; the guest stays with the source"),
            ))
        }
        Err(e) => return Err(e),
    }
    if !opts.start_paused {
        restored.machine.resume_all().map_err(SnapshotError::from)?;
    }
    let summary = IncomingSummary {
        via: uri.to_string(),
        source_host: hello.host_kind,
        guest_name: hello.guest_name,
        mem_bytes: hello.mem_bytes,
        rounds,
        pages,
        bytes: c.bytes,
        restore_us,
        total_us: started.elapsed().as_micros() as u64,
    };
    Ok(Received { restored, summary })
}
