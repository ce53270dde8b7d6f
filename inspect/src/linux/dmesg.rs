//! The kernel log from the lockless printk ring buffer (`kernel/printk/printk_ringbuffer.h`,
//! Linux 5.10+): a ring of descriptors (`prb_desc`: a state word and the logical positions
//! of its text) beside a ring of `printk_info` (sequence, timestamp, text length), and a
//! data ring holding each record's text after its descriptor id. The walk goes from the
//! tail id to the head id, at most one lap of the descriptor ring, and takes only records
//! in the committed or finalized state whose id matches the slot (the others are being
//! written or were reused), as `dmesg` would see them.

use super::{KernelMemory, Layout, LinuxError};
use serde::Serialize;
use std::collections::HashMap;

/// The descriptor ring's size is `1 << count_bits`; beyond this, the header is corrupt.
pub const MAX_COUNT_BITS: u32 = 24;
/// The data ring's size is `1 << size_bits`; beyond this (1 GiB), the header is corrupt.
pub const MAX_SIZE_BITS: u32 = 30;

/// The ring buffer's layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrbOffsets {
    /// `printk_ringbuffer.desc_ring`.
    pub desc_ring: u64,
    /// `printk_ringbuffer.text_data_ring`.
    pub text_data_ring: u64,
    /// `prb_desc_ring.count_bits`.
    pub count_bits: u64,
    /// `prb_desc_ring.descs`.
    pub descs: u64,
    /// `prb_desc_ring.infos`.
    pub infos: u64,
    /// `prb_desc_ring.head_id`.
    pub head_id: u64,
    /// `prb_desc_ring.tail_id`.
    pub tail_id: u64,
    /// `sizeof(struct prb_desc)`.
    pub desc_size: u64,
    /// `prb_desc.state_var`.
    pub state_var: u64,
    /// `prb_desc.text_blk_lpos` + `prb_data_blk_lpos.begin`.
    pub lpos_begin: u64,
    /// `prb_desc.text_blk_lpos` + `prb_data_blk_lpos.next`.
    pub lpos_next: u64,
    /// `prb_data_ring.size_bits`.
    pub size_bits: u64,
    /// `prb_data_ring.data`.
    pub data: u64,
    /// `sizeof(struct printk_info)`.
    pub info_size: u64,
    /// `printk_info.seq`.
    pub seq: u64,
    /// `printk_info.ts_nsec`.
    pub ts_nsec: u64,
    /// `printk_info.text_len`.
    pub text_len: u64,
}

impl PrbOffsets {
    /// The layout, or `None` when the kernel has no lockless ring buffer (before 5.10).
    pub fn from_layouts(l: &HashMap<String, Layout>) -> Option<Self> {
        let m = |s: &str, f: &str| l.get(s).and_then(|l| l.members.get(f)).map(|(o, _)| *o);
        let text_blk = m("prb_desc", "text_blk_lpos")?;
        Some(Self {
            desc_ring: m("printk_ringbuffer", "desc_ring")?,
            text_data_ring: m("printk_ringbuffer", "text_data_ring")?,
            count_bits: m("prb_desc_ring", "count_bits")?,
            descs: m("prb_desc_ring", "descs")?,
            infos: m("prb_desc_ring", "infos")?,
            head_id: m("prb_desc_ring", "head_id")?,
            tail_id: m("prb_desc_ring", "tail_id")?,
            desc_size: l.get("prb_desc").map(|l| l.size).filter(|&s| s > 0)?,
            state_var: m("prb_desc", "state_var")?,
            lpos_begin: text_blk + m("prb_data_blk_lpos", "begin")?,
            lpos_next: text_blk + m("prb_data_blk_lpos", "next")?,
            size_bits: m("prb_data_ring", "size_bits")?,
            data: m("prb_data_ring", "data")?,
            info_size: l.get("printk_info").map(|l| l.size).filter(|&s| s > 0)?,
            seq: m("printk_info", "seq")?,
            ts_nsec: m("printk_info", "ts_nsec")?,
            text_len: m("printk_info", "text_len")?,
        })
    }
}

/// One log record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Record {
    /// Its sequence number.
    pub seq: u64,
    /// Nanoseconds since boot.
    pub ts_nsec: u64,
    /// Its text (without the trailing newline).
    pub text: String,
}

impl std::fmt::Display for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (s, ns) = (self.ts_nsec / 1_000_000_000, self.ts_nsec % 1_000_000_000);
        write!(f, "[{s:5}.{:06}] {}", ns / 1000, self.text)
    }
}

/// Descriptor states (`enum desc_state`), in the top two bits of `state_var`.
const DESC_COMMITTED: u64 = 1;
const DESC_FINALIZED: u64 = 2;
const DESC_FLAGS_SHIFT: u32 = 62;
const DESC_ID_MASK: u64 = !(3 << DESC_FLAGS_SHIFT);

/// Every readable record, oldest first.
pub fn records(k: &KernelMemory<'_>) -> Result<Vec<Record>, LinuxError> {
    let kernel = k.kernel();
    let Some(o) = &kernel.offsets.prb else {
        return Err(LinuxError::MissingMember {
            path: kernel.path.clone(),
            member: "printk_ringbuffer (the lockless ring buffer of Linux 5.10+)".into(),
        });
    };
    let Some(prb_sym) = kernel.globals.prb else {
        return Err(LinuxError::MissingSymbol { path: kernel.path.clone(), name: "prb".into() });
    };
    let rb = k.read_u64("prb", prb_sym)?;
    let corrupt = |reason: String| LinuxError::RingCorrupt { at: rb, reason };
    let desc_ring = rb + o.desc_ring;
    let data_ring = rb + o.text_data_ring;
    let count_bits = k.read_u32("prb_desc_ring.count_bits", desc_ring + o.count_bits)?;
    let size_bits = k.read_u32("prb_data_ring.size_bits", data_ring + o.size_bits)?;
    if count_bits > MAX_COUNT_BITS {
        return Err(corrupt(format!("count_bits {count_bits} is over {MAX_COUNT_BITS}")));
    }
    if !(3..=MAX_SIZE_BITS).contains(&size_bits) {
        return Err(corrupt(format!("size_bits {size_bits} is not within 3..={MAX_SIZE_BITS}")));
    }
    let count = 1u64 << count_bits;
    let data_size = 1u64 << size_bits;
    let descs = k.read_u64("prb_desc_ring.descs", desc_ring + o.descs)?;
    let infos = k.read_u64("prb_desc_ring.infos", desc_ring + o.infos)?;
    let data = k.read_u64("prb_data_ring.data", data_ring + o.data)?;
    let head = k.read_u64("prb_desc_ring.head_id", desc_ring + o.head_id)? & DESC_ID_MASK;
    let tail = k.read_u64("prb_desc_ring.tail_id", desc_ring + o.tail_id)? & DESC_ID_MASK;
    // The whole text ring in one read: records then index it without further reads.
    let mut text = vec![0u8; data_size as usize];
    k.read("prb_data_ring.data", data, &mut text)?;
    let mut out = vec![];
    let mut id = tail;
    // At most one lap: a head the tail never reaches is a corrupt header, not a reason to spin.
    for _ in 0..count {
        let slot = id % count;
        let desc = descs + slot * o.desc_size;
        let sv = k.read_u64("prb_desc.state_var", desc + o.state_var)?;
        let state = sv >> DESC_FLAGS_SHIFT;
        if (state == DESC_COMMITTED || state == DESC_FINALIZED) && sv & DESC_ID_MASK == id {
            let info = infos + slot * o.info_size;
            let begin = k.read_u64("prb_desc.text_blk_lpos.begin", desc + o.lpos_begin)?;
            let next = k.read_u64("prb_desc.text_blk_lpos.next", desc + o.lpos_next)?;
            let text_len = u64::from(k.read_u16("printk_info.text_len", info + o.text_len)?);
            let seq = k.read_u64("printk_info.seq", info + o.seq)?;
            let ts_nsec = k.read_u64("printk_info.ts_nsec", info + o.ts_nsec)?;
            out.push(Record { seq, ts_nsec, text: record_text(&text, begin, next, text_len) });
        }
        if id == head {
            return Ok(out);
        }
        id = (id + 1) & DESC_ID_MASK;
    }
    Err(corrupt(format!("head id {head:#x} not reached from tail id {tail:#x} within {count} descriptors")))
}

/// A record's text from the data ring (the kernel's `get_data()`): a block starts with the
/// descriptor id (one `long`); a block whose logical positions lie in one lap is stored
/// where `begin` says, one that would reach the end of a lap is stored whole at the ring's
/// start (`next` then lies one lap later), and a data-less block has bit 0 set.
fn record_text(ring: &[u8], begin: u64, next: u64, text_len: u64) -> String {
    if begin & 1 != 0 || next & 1 != 0 {
        return String::new();
    }
    let size = ring.len() as u64;
    let lap = |lpos: u64| lpos / size;
    let (start, block) = if lap(begin) == lap(next) && begin < next {
        (begin % size, next - begin)
    } else if lap(begin.wrapping_add(size)) == lap(next) {
        (0, next % size)
    } else {
        return String::new();
    };
    let Some(room) = block.checked_sub(8) else { return String::new() };
    let (start, len) = ((start + 8) as usize, text_len.min(room) as usize);
    ring.get(start..start.saturating_add(len))
        .map(|t| String::from_utf8_lossy(t).trim_end_matches('\n').to_string())
        .unwrap_or_default()
}
