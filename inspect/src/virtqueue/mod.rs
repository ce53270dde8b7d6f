//! Virtio 1.x split virtqueues (virtio spec 2.7): decoding the descriptor table, the
//! available ring and the used ring from guest memory, following descriptor chains
//! (`NEXT`, `WRITE`, `INDIRECT`) and reporting what is in flight. The guest writes these
//! structures, so every index and address is checked: a loop, an index out of range, a
//! nested indirect table or a ring outside memory is reported, never followed blindly, and
//! one broken chain does not hide the others.

mod decode;

pub use decode::{decode, QueueLayout};

use crate::addr::Gpa;
use serde::Serialize;
use std::fmt;

use virtio_bindings::virtio_ring as ring;

/// `VIRTQ_DESC_F_NEXT` (virtio 1.2, 2.7.5): the chain goes on in `next`.
pub const VIRTQ_DESC_F_NEXT: u16 = ring::VRING_DESC_F_NEXT as u16;
/// `VIRTQ_DESC_F_WRITE`: the device writes this buffer.
pub const VIRTQ_DESC_F_WRITE: u16 = ring::VRING_DESC_F_WRITE as u16;
/// `VIRTQ_DESC_F_INDIRECT`: the buffer is a table of descriptors (2.7.5.3).
pub const VIRTQ_DESC_F_INDIRECT: u16 = ring::VRING_DESC_F_INDIRECT as u16;
/// `VIRTQ_AVAIL_F_NO_INTERRUPT`: the driver asks for no interrupt (2.7.7).
pub const VIRTQ_AVAIL_F_NO_INTERRUPT: u16 = ring::VRING_AVAIL_F_NO_INTERRUPT as u16;
/// `VIRTQ_USED_F_NO_NOTIFY`: the device asks for no notification (2.7.7).
pub const VIRTQ_USED_F_NO_NOTIFY: u16 = ring::VRING_USED_F_NO_NOTIFY as u16;
/// The largest queue size the spec allows.
pub const MAX_QUEUE_SIZE: u16 = 32768;

// How much of a queue one [`decode`] follows. The decoded snapshot is what every frontend
// prints (the session's and gdb's `vq`, the TUI, `--json`), so these bound the printout too:
// a hostile driver's 32768-entry ring of looping or shared chains costs a bounded decode and
// at most [`MAX_TEXT_BYTES`] of text, each cut said in a line of its own.

/// The most in-flight chains decoded; the rest are counted in
/// [`QueueSnapshot::chains_not_decoded`] and shown as "... N more chains".
pub const MAX_DECODED_CHAINS: usize = 256;
/// The most descriptors one chain is followed for (indirect entries included); a longer
/// chain ends in [`ChainError::TooLong`]. virtio-blk's largest requests (seg_max + 2) and
/// virtio-net's (MAX_SKB_FRAGS + 2) fit.
pub const MAX_CHAIN_DESCRIPTORS: usize = 256;
/// The most descriptors followed over all chains; the chains past it end in
/// [`ChainError::TooManyDescriptors`]. A hostile driver can make every ring entry point into
/// one long chain; a full 256-chain virtio-blk queue holds 768.
pub const MAX_DECODED_DESCRIPTORS: usize = 1024;
/// The most bytes a [`QueueSnapshot`]'s `Display` writes: the first line and the EVENT_IDX
/// line (under 200 bytes), one line per decoded chain with its error (under 160 bytes),
/// one item per decoded descriptor (under 48) and the "more chains" line.
pub const MAX_TEXT_BYTES: usize = 400 + MAX_DECODED_CHAINS * 160 + MAX_DECODED_DESCRIPTORS * 48;

/// A queue that cannot be decoded at all.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize)]
pub enum QueueError {
    /// Size zero, not a power of two, or above 32768.
    #[error("queue size {0} is invalid: it must be a power of two from 1 to 32768")]
    BadSize(u16),
    /// A ring is not aligned as the spec requires.
    #[error("the {ring} at {gpa} is not {align}-byte aligned")]
    Misaligned {
        /// Which ring.
        ring: &'static str,
        /// Where.
        gpa: Gpa,
        /// Required alignment.
        align: u64,
    },
    /// A ring lies (partly) outside guest memory.
    #[error("the {ring} at {gpa} ({len} bytes) is outside guest memory")]
    OutsideMemory {
        /// Which ring.
        ring: &'static str,
        /// Where.
        gpa: Gpa,
        /// Its size.
        len: u64,
    },
}

/// What is wrong with one chain.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize)]
pub enum ChainError {
    /// A descriptor index at or beyond the table size.
    #[error("descriptor index {index} is out of range (table of {size})")]
    IndexOutOfRange {
        /// The index.
        index: u16,
        /// The table size.
        size: u16,
    },
    /// A descriptor comes round again: the chain loops back to it.
    #[error("the chain loops at {}descriptor {index}: it was already in the chain", if *.indirect { "indirect " } else { "" })]
    Loop {
        /// The descriptor met twice (an index into the queue's table, or into the
        /// indirect table when `indirect`).
        index: u16,
        /// The loop is inside an indirect table.
        indirect: bool,
    },
    /// The chain goes on past [`MAX_CHAIN_DESCRIPTORS`] descriptors (without a loop so
    /// far); the rest is not decoded.
    #[error("truncated: the chain goes on past {0} descriptors, the most decoded per chain")]
    TooLong(usize),
    /// An indirect descriptor inside an indirect table (forbidden by the spec).
    #[error("nested indirect descriptor at index {0}")]
    NestedIndirect(u16),
    /// INDIRECT together with NEXT (forbidden by the spec).
    #[error("descriptor {0} has both INDIRECT and NEXT")]
    IndirectWithNext(u16),
    /// An indirect table whose length is not a multiple of 16 or is empty.
    #[error("indirect table at {gpa} has length {len}, not a non-zero multiple of 16")]
    BadIndirectLength {
        /// Where.
        gpa: Gpa,
        /// Its length.
        len: u32,
    },
    /// A descriptor (table entry) that cannot be read.
    #[error("descriptor at {0} is outside guest memory")]
    Unreadable(Gpa),
    /// The queue's chains hold more descriptors in all than the decoder follows
    /// ([`MAX_DECODED_DESCRIPTORS`]); this chain and the ones after it are cut short.
    #[error("truncated: the chains in flight hold more than {0} descriptors in all, the most decoded")]
    TooManyDescriptors(usize),
}

/// One descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Descriptor {
    /// Its index in its table.
    pub index: u16,
    /// Buffer address.
    pub addr: Gpa,
    /// Buffer length.
    pub len: u32,
    /// Flags.
    pub flags: u16,
    /// Next index (meaningful with NEXT).
    pub next: u16,
    /// Whether it came from an indirect table.
    pub indirect: bool,
}

impl Descriptor {
    /// The device writes this buffer.
    pub fn is_write(&self) -> bool {
        self.flags & VIRTQ_DESC_F_WRITE != 0
    }
}

/// A chain of descriptors, starting at a head index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DescriptorChain {
    /// The head.
    pub head: u16,
    /// The descriptors, in order (indirect tables expanded).
    pub descriptors: Vec<Descriptor>,
    /// Why decoding stopped early, if it did.
    pub error: Option<ChainError>,
}

impl DescriptorChain {
    /// Bytes the driver offers to the device (readable buffers).
    pub fn readable_len(&self) -> u64 {
        self.descriptors.iter().filter(|d| !d.is_write()).map(|d| u64::from(d.len)).sum()
    }

    /// Bytes the device may write.
    pub fn writable_len(&self) -> u64 {
        self.descriptors.iter().filter(|d| d.is_write()).map(|d| u64::from(d.len)).sum()
    }
}

/// An element of the used ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct UsedElem {
    /// Head of the chain the device used.
    pub id: u32,
    /// Bytes it wrote.
    pub len: u32,
}

/// The available ring (driver → device).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AvailRing {
    /// Flags (`VIRTQ_AVAIL_F_NO_INTERRUPT`).
    pub flags: u16,
    /// Where the driver will put the next entry (free-running, wraps at 2^16).
    pub idx: u16,
    /// The ring entries (heads).
    pub ring: Vec<u16>,
    /// `used_event` (with VIRTIO_F_EVENT_IDX).
    pub used_event: Option<u16>,
}

/// The used ring (device → driver).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UsedRing {
    /// Flags (`VIRTQ_USED_F_NO_NOTIFY`).
    pub flags: u16,
    /// Where the device will put the next entry.
    pub idx: u16,
    /// The ring entries.
    pub ring: Vec<UsedElem>,
    /// `avail_event` (with VIRTIO_F_EVENT_IDX).
    pub avail_event: Option<u16>,
}

/// A decoded queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QueueSnapshot {
    /// Queue size.
    pub size: u16,
    /// The available ring.
    pub avail: AvailRing,
    /// The used ring.
    pub used: UsedRing,
    /// Chains the driver made available and the device has not used yet: avail ring
    /// entries from `used.idx` to `avail.idx`, the first [`MAX_DECODED_CHAINS`] of them.
    pub in_flight: Vec<DescriptorChain>,
    /// In-flight chains after those, not decoded.
    pub chains_not_decoded: u16,
    /// The driver does not want interrupts (flag, or the used_event threshold).
    pub interrupts_suppressed: bool,
    /// The device does not want notifications (flag).
    pub notifications_suppressed: bool,
}

impl fmt::Display for QueueSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "size {}  avail.idx {}  used.idx {}  in flight {}  avail.flags {:#x}{}  used.flags {:#x}{}",
            self.size,
            self.avail.idx,
            self.used.idx,
            self.avail.idx.wrapping_sub(self.used.idx),
            self.avail.flags,
            if self.interrupts_suppressed { " (no interrupts)" } else { "" },
            self.used.flags,
            if self.notifications_suppressed { " (no notifications)" } else { "" },
        )?;
        if let (Some(u), Some(a)) = (self.avail.used_event, self.used.avail_event) {
            writeln!(f, "EVENT_IDX: used_event {u}  avail_event {a}")?;
        }
        for c in &self.in_flight {
            write!(f, "chain {}:", c.head)?;
            for d in &c.descriptors {
                write!(
                    f,
                    " [{}{} {}+{}{}]",
                    if d.indirect { "i" } else { "" },
                    d.index,
                    d.addr,
                    d.len,
                    if d.is_write() { " W" } else { "" }
                )?;
            }
            match &c.error {
                Some(e) => writeln!(f, "  ERROR: {e}")?,
                None => writeln!(f)?,
            }
        }
        if self.chains_not_decoded > 0 {
            writeln!(
                f,
                "... {} more chains in flight, not decoded (the first {MAX_DECODED_CHAINS} are shown)",
                self.chains_not_decoded
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
