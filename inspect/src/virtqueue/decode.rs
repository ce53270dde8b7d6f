//! Reading a split queue out of guest memory.

use super::*;
use crate::mem::GuestPhysMemory;

/// Where a queue lives and what was negotiated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct QueueLayout {
    /// Queue size (entries).
    pub size: u16,
    /// Descriptor table GPA (16-byte aligned).
    pub desc_table: Gpa,
    /// Available ring GPA (2-byte aligned).
    pub avail_ring: Gpa,
    /// Used ring GPA (4-byte aligned).
    pub used_ring: Gpa,
    /// VIRTIO_F_EVENT_IDX was negotiated.
    pub event_idx: bool,
}

fn check_ring(
    mem: &dyn GuestPhysMemory,
    ring: &'static str,
    gpa: Gpa,
    align: u64,
    len: u64,
) -> Result<(), QueueError> {
    if !gpa.0.is_multiple_of(align) {
        return Err(QueueError::Misaligned { ring, gpa, align });
    }
    // Probe in pages: no buffer sized by the driver's queue size.
    let mut probe = [0u8; 4096];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(probe.len() as u64) as usize;
        let readable = gpa.0.checked_add(done).is_some_and(|at| mem.read_phys(Gpa(at), &mut probe[..n]) == n);
        if !readable {
            return Err(QueueError::OutsideMemory { ring, gpa, len });
        }
        done += n as u64;
    }
    Ok(())
}

fn read_desc(
    mem: &dyn GuestPhysMemory,
    table: Gpa,
    index: u16,
    indirect: bool,
) -> Result<Descriptor, ChainError> {
    // An indirect table's address is the driver's: one that ends at the top of the address
    // space must not wrap around to GPA 0.
    let Some(at) = table.0.checked_add(u64::from(index) * 16).map(Gpa) else {
        return Err(ChainError::Unreadable(table));
    };
    let mut b = [0u8; 16];
    if mem.read_phys(at, &mut b) != 16 {
        return Err(ChainError::Unreadable(at));
    }
    Ok(Descriptor {
        index,
        addr: Gpa(u64::from_le_bytes(b[0..8].try_into().expect("8 bytes"))),
        len: u32::from_le_bytes(b[8..12].try_into().expect("4 bytes")),
        flags: u16::from_le_bytes([b[12], b[13]]),
        next: u16::from_le_bytes([b[14], b[15]]),
        indirect,
    })
}

/// The descriptor indices met so far in one table: a chain that meets one again loops. A
/// bit per possible `u16` index, so no index can fall outside it.
struct Seen([u64; 1024]);

impl Seen {
    fn new() -> Self {
        Self([0; 1024])
    }

    fn clear(&mut self) {
        self.0.fill(0);
    }

    /// Marks `index`; false if it was marked already.
    fn mark(&mut self, index: u16) -> bool {
        let (word, bit) = (&mut self.0[usize::from(index / 64)], 1u64 << (index % 64));
        let new = *word & bit == 0;
        *word |= bit;
        new
    }
}

/// Whether one more descriptor may be followed: the queue's budget and the chain's own
/// bound. Every descriptor kept is paid for from `budget`.
fn room(budget: usize, chain: &[Descriptor]) -> Result<(), ChainError> {
    if budget == 0 {
        return Err(ChainError::TooManyDescriptors(MAX_DECODED_DESCRIPTORS));
    }
    if chain.len() >= MAX_CHAIN_DESCRIPTORS {
        return Err(ChainError::TooLong(MAX_CHAIN_DESCRIPTORS));
    }
    Ok(())
}

/// Follows the chain at `head`, expanding an indirect table, until it ends, loops, breaks a
/// rule, or reaches [`MAX_CHAIN_DESCRIPTORS`] or the end of `budget` (the descriptors left
/// for the whole queue).
fn chain(
    mem: &dyn GuestPhysMemory,
    layout: &QueueLayout,
    head: u16,
    budget: &mut usize,
    seen: &mut Seen,
) -> DescriptorChain {
    let mut out = DescriptorChain { head, descriptors: vec![], error: None };
    out.error = follow(mem, layout, head, budget, seen, &mut out.descriptors).err();
    out
}

fn follow(
    mem: &dyn GuestPhysMemory,
    layout: &QueueLayout,
    head: u16,
    budget: &mut usize,
    seen: &mut Seen,
    out: &mut Vec<Descriptor>,
) -> Result<(), ChainError> {
    seen.clear();
    let mut index = head;
    loop {
        if index >= layout.size {
            return Err(ChainError::IndexOutOfRange { index, size: layout.size });
        }
        if !seen.mark(index) {
            return Err(ChainError::Loop { index, indirect: false });
        }
        room(*budget, out)?;
        let d = read_desc(mem, layout.desc_table, index, false)?;
        if d.flags & VIRTQ_DESC_F_INDIRECT != 0 {
            if d.flags & VIRTQ_DESC_F_NEXT != 0 {
                return Err(ChainError::IndirectWithNext(index));
            }
            if d.len == 0 || !d.len.is_multiple_of(16) {
                return Err(ChainError::BadIndirectLength { gpa: d.addr, len: d.len });
            }
            let count = (d.len / 16).min(u32::from(MAX_QUEUE_SIZE)) as u16;
            return indirect(mem, d.addr, count, budget, seen, out);
        }
        *budget -= 1;
        out.push(d);
        if d.flags & VIRTQ_DESC_F_NEXT == 0 {
            return Ok(());
        }
        index = d.next;
    }
}

fn indirect(
    mem: &dyn GuestPhysMemory,
    table: Gpa,
    count: u16,
    budget: &mut usize,
    seen: &mut Seen,
    out: &mut Vec<Descriptor>,
) -> Result<(), ChainError> {
    seen.clear();
    let mut index = 0u16;
    loop {
        if !seen.mark(index) {
            return Err(ChainError::Loop { index, indirect: true });
        }
        room(*budget, out)?;
        let d = read_desc(mem, table, index, true)?;
        if d.flags & VIRTQ_DESC_F_INDIRECT != 0 {
            return Err(ChainError::NestedIndirect(index));
        }
        *budget -= 1;
        out.push(d);
        if d.flags & VIRTQ_DESC_F_NEXT == 0 {
            return Ok(());
        }
        if d.next >= count {
            return Err(ChainError::IndexOutOfRange { index: d.next, size: count });
        }
        index = d.next;
    }
}

/// Decodes the queue `layout` describes.
pub fn decode(mem: &dyn GuestPhysMemory, layout: &QueueLayout) -> Result<QueueSnapshot, QueueError> {
    let n = layout.size;
    if n == 0 || !n.is_power_of_two() || n > MAX_QUEUE_SIZE {
        return Err(QueueError::BadSize(n));
    }
    let n64 = u64::from(n);
    check_ring(mem, "descriptor table", layout.desc_table, 16, 16 * n64)?;
    check_ring(mem, "available ring", layout.avail_ring, 2, 6 + 2 * n64)?;
    check_ring(mem, "used ring", layout.used_ring, 4, 6 + 8 * n64)?;
    let r16 = |gpa: u64| mem.read_u16(Gpa(gpa)).unwrap_or(0);
    let r32 = |gpa: u64| mem.read_u32(Gpa(gpa)).unwrap_or(0);
    let a = layout.avail_ring.0;
    let u = layout.used_ring.0;
    let avail = AvailRing {
        flags: r16(a),
        idx: r16(a + 2),
        ring: (0..n64).map(|i| r16(a + 4 + 2 * i)).collect(),
        used_event: layout.event_idx.then(|| r16(a + 4 + 2 * n64)),
    };
    let used = UsedRing {
        flags: r16(u),
        idx: r16(u + 2),
        ring: (0..n64).map(|i| UsedElem { id: r32(u + 4 + 8 * i), len: r32(u + 8 + 8 * i) }).collect(),
        avail_event: layout.event_idx.then(|| r16(u + 4 + 8 * n64)),
    };
    // In flight: entries the driver published that the device has not returned. A
    // hostile driver can claim more than the queue holds; never look at more than n.
    let pending = avail.idx.wrapping_sub(used.idx).min(n);
    // Chains may share descriptors (a hostile driver's): the whole queue gets one budget,
    // and only the first MAX_DECODED_CHAINS chains are followed.
    let decoded = pending.min(MAX_DECODED_CHAINS as u16);
    let mut budget = MAX_DECODED_DESCRIPTORS;
    let mut seen = Seen::new();
    let in_flight = (0..decoded)
        .map(|k| {
            let slot = used.idx.wrapping_add(k) % n;
            chain(mem, layout, avail.ring[usize::from(slot)], &mut budget, &mut seen)
        })
        .collect();
    let interrupts_suppressed = match avail.used_event {
        // With EVENT_IDX the device interrupts when used.idx moves past used_event
        // (vring_need_event): the next used entry (used.idx -> used.idx + 1) interrupts
        // only if used_event == used.idx.
        Some(ev) => ev != used.idx,
        None => avail.flags & VIRTQ_AVAIL_F_NO_INTERRUPT != 0,
    };
    let notifications_suppressed = used.flags & VIRTQ_USED_F_NO_NOTIFY != 0;
    Ok(QueueSnapshot {
        size: n,
        avail,
        used,
        in_flight,
        chains_not_decoded: pending - decoded,
        interrupts_suppressed,
        notifications_suppressed,
    })
}
