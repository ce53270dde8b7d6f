//! Decoder tests on rings built in a buffer by a small mock driver.

use super::*;
use crate::mem::{BufferMemory, GuestPhysMemory};

/// A driver-side split queue in a byte buffer (like virtio-queue's MockSplitQueue).
struct MockDriver {
    mem: BufferMemory,
    layout: QueueLayout,
    next_free: u16,
}

impl MockDriver {
    fn new(size: u16, event_idx: bool) -> Self {
        Self {
            mem: BufferMemory::zeroed(0x10_0000),
            layout: QueueLayout {
                size,
                desc_table: Gpa(0x1000),
                avail_ring: Gpa(0x4000),
                used_ring: Gpa(0x5000),
                event_idx,
            },
            next_free: 0,
        }
    }

    fn set_desc(&mut self, table: Gpa, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let at = Gpa(table.0 + u64::from(index) * 16);
        self.mem.write_u64(at, addr);
        self.mem.write(Gpa(at.0 + 8), &len.to_le_bytes());
        self.mem.write(Gpa(at.0 + 12), &flags.to_le_bytes());
        self.mem.write(Gpa(at.0 + 14), &next.to_le_bytes());
    }

    /// Adds a chain of (len, write) buffers; returns its head.
    fn add_chain(&mut self, bufs: &[(u32, bool)]) -> u16 {
        let head = self.next_free;
        for (i, (len, write)) in bufs.iter().enumerate() {
            let index = self.next_free;
            let last = i + 1 == bufs.len();
            let flags =
                if last { 0 } else { VIRTQ_DESC_F_NEXT } | if *write { VIRTQ_DESC_F_WRITE } else { 0 };
            self.set_desc(
                self.layout.desc_table,
                index,
                0x8000 + u64::from(index) * 0x100,
                *len,
                flags,
                index + 1,
            );
            self.next_free += 1;
        }
        head
    }

    fn avail_idx(&self) -> u16 {
        self.mem.read_u16(Gpa(self.layout.avail_ring.0 + 2)).unwrap()
    }

    /// Publishes `head` in the available ring.
    fn publish(&mut self, head: u16) {
        let idx = self.avail_idx();
        let slot = u64::from(idx % self.layout.size);
        self.mem.write(Gpa(self.layout.avail_ring.0 + 4 + 2 * slot), &head.to_le_bytes());
        self.mem.write(Gpa(self.layout.avail_ring.0 + 2), &idx.wrapping_add(1).to_le_bytes());
    }

    /// The device returns `head` having written `len` bytes.
    fn mark_used(&mut self, head: u16, len: u32) {
        let u = self.layout.used_ring.0;
        let idx = self.mem.read_u16(Gpa(u + 2)).unwrap();
        let slot = u64::from(idx % self.layout.size);
        self.mem.write(Gpa(u + 4 + 8 * slot), &u32::from(head).to_le_bytes());
        self.mem.write(Gpa(u + 8 + 8 * slot), &len.to_le_bytes());
        self.mem.write(Gpa(u + 2), &idx.wrapping_add(1).to_le_bytes());
    }

    fn decode(&self) -> Result<QueueSnapshot, QueueError> {
        decode(&self.mem, &self.layout)
    }
}

#[test]
fn chains_in_flight_and_used() {
    let mut q = MockDriver::new(8, false);
    let a = q.add_chain(&[(16, false), (512, false), (1, true)]); // a virtio-blk request
    let b = q.add_chain(&[(64, true)]);
    q.publish(a);
    q.publish(b);
    q.mark_used(a, 513);
    let s = q.decode().unwrap();
    assert_eq!((s.avail.idx, s.used.idx), (2, 1));
    assert_eq!(s.used.ring[0], UsedElem { id: u32::from(a), len: 513 });
    assert_eq!(s.in_flight.len(), 1);
    let c = &s.in_flight[0];
    assert_eq!((c.head, c.descriptors.len(), c.error.clone()), (b, 1, None));
    assert_eq!(c.writable_len(), 64);
    // Chain a, decoded directly, has NEXT links and a device-writable status byte.
    let chain_a = super::decode::decode(&q.mem, &q.layout).unwrap();
    assert!(chain_a.to_string().contains("in flight 1"));
    assert!(!s.interrupts_suppressed && !s.notifications_suppressed);
}

#[test]
fn indices_wrap_around_at_2_16() {
    let mut q = MockDriver::new(4, false);
    let h = q.add_chain(&[(8, false)]);
    // Start both indices just below the wrap.
    q.mem.write(Gpa(q.layout.avail_ring.0 + 2), &0xfffeu16.to_le_bytes());
    q.mem.write(Gpa(q.layout.used_ring.0 + 2), &0xfffeu16.to_le_bytes());
    q.publish(h);
    q.publish(h);
    q.publish(h);
    let s = q.decode().unwrap();
    assert_eq!(s.avail.idx, 1);
    assert_eq!(s.in_flight.len(), 3);
}

#[test]
fn indirect_tables() {
    let mut q = MockDriver::new(4, false);
    let table = Gpa(0x9000);
    q.set_desc(table, 0, 0xa000, 16, VIRTQ_DESC_F_NEXT, 1);
    q.set_desc(table, 1, 0xb000, 100, VIRTQ_DESC_F_WRITE, 0);
    q.set_desc(q.layout.desc_table, 0, table.0, 32, VIRTQ_DESC_F_INDIRECT, 0);
    q.publish(0);
    let s = q.decode().unwrap();
    let c = &s.in_flight[0];
    assert_eq!(c.error, None);
    assert_eq!(c.descriptors.len(), 2);
    assert!(c.descriptors.iter().all(|d| d.indirect));
    assert_eq!((c.readable_len(), c.writable_len()), (16, 100));
}

#[test]
fn hostile_chains_are_reported_not_followed() {
    let mut q = MockDriver::new(4, false);
    let dt = q.layout.desc_table;
    // 0 -> 1 -> 0: a loop.
    q.set_desc(dt, 0, 0x8000, 1, VIRTQ_DESC_F_NEXT, 1);
    q.set_desc(dt, 1, 0x8000, 1, VIRTQ_DESC_F_NEXT, 0);
    // 2 -> 9: next out of range.
    q.set_desc(dt, 2, 0x8000, 1, VIRTQ_DESC_F_NEXT, 9);
    // 3: indirect table containing an indirect descriptor.
    let table = Gpa(0x9000);
    q.set_desc(table, 0, 0x9100, 16, VIRTQ_DESC_F_INDIRECT, 0);
    q.set_desc(dt, 3, table.0, 16, VIRTQ_DESC_F_INDIRECT, 0);
    for head in [0, 2, 3, 7] {
        q.publish(head);
    }
    let s = q.decode().unwrap();
    let errors: Vec<Option<ChainError>> = s.in_flight.iter().map(|c| c.error.clone()).collect();
    assert_eq!(
        errors,
        vec![
            Some(ChainError::Loop { index: 0, indirect: false }),
            Some(ChainError::IndexOutOfRange { index: 9, size: 4 }),
            Some(ChainError::NestedIndirect(0)),
            Some(ChainError::IndexOutOfRange { index: 7, size: 4 }),
        ]
    );
    assert!(s.to_string().contains("ERROR: the chain loops at descriptor 0"), "{s}");
    // A driver claiming more in flight than the queue holds is capped at the queue size.
    q.mem.write(Gpa(q.layout.avail_ring.0 + 2), &1000u16.to_le_bytes());
    assert_eq!(q.decode().unwrap().in_flight.len(), 4);
    // Indirect with a bad length, and with NEXT.
    q.set_desc(dt, 0, table.0, 20, VIRTQ_DESC_F_INDIRECT, 0);
    q.set_desc(dt, 1, table.0, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 0);
    let s = q.decode().unwrap();
    assert!(matches!(s.in_flight[0].error, Some(ChainError::BadIndirectLength { len: 20, .. })));
}

#[test]
fn bad_layouts_are_errors() {
    let mut q = MockDriver::new(6, false);
    assert_eq!(q.decode(), Err(QueueError::BadSize(6)));
    q.layout.size = 8;
    q.layout.used_ring = Gpa(0x5002);
    assert!(matches!(q.decode(), Err(QueueError::Misaligned { ring: "used ring", .. })));
    q.layout.used_ring = Gpa(0xf_fff0);
    assert!(matches!(q.decode(), Err(QueueError::OutsideMemory { ring: "used ring", .. })));
    q.layout.size = 0;
    assert_eq!(q.decode(), Err(QueueError::BadSize(0)));
}

#[test]
fn suppression_flags_and_event_idx() {
    let mut q = MockDriver::new(4, true);
    q.mem.write(Gpa(q.layout.used_ring.0), &VIRTQ_USED_F_NO_NOTIFY.to_le_bytes());
    // used_event sits after the avail ring: 4 + 2 * size.
    q.mem.write(Gpa(q.layout.avail_ring.0 + 4 + 8), &5u16.to_le_bytes());
    q.mem.write(Gpa(q.layout.used_ring.0 + 4 + 32), &3u16.to_le_bytes());
    let s = q.decode().unwrap();
    assert_eq!((s.avail.used_event, s.used.avail_event), (Some(5), Some(3)));
    assert!(s.notifications_suppressed);
    assert!(s.interrupts_suppressed, "used_event 5 is ahead of used.idx 0");
    q.mem.write(Gpa(q.layout.avail_ring.0 + 4 + 8), &0u16.to_le_bytes());
    assert!(!q.decode().unwrap().interrupts_suppressed);
    assert!(q.decode().unwrap().to_string().contains("EVENT_IDX"));
}

/// Found by fuzzing (fuzz/regressions/virtqueue/): rings and an indirect table at the very
/// top of the address space are reported, never followed past 2^64 - 1 (an overflow panic,
/// or a wrap to GPA 0 in a release build).
#[test]
fn nothing_wraps_at_the_top_of_the_address_space() {
    // Memory that would run past 2^64 - 1: the used ring does not fit.
    let top = u64::MAX - 0x1f;
    let mem = BufferMemory { base: Gpa(top), bytes: vec![0; 0x100] };
    let layout = QueueLayout {
        size: 1,
        desc_table: Gpa(top),
        avail_ring: Gpa(top + 0x10),
        used_ring: Gpa(top + 0x18),
        event_idx: true,
    };
    assert!(matches!(decode(&mem, &layout), Err(QueueError::OutsideMemory { ring: "used ring", .. })));

    // An indirect table in the last 32 bytes whose second entry says NEXT: the third would
    // be at 2^64.
    let base = u64::MAX - 0x2ff;
    let mut mem = BufferMemory { base: Gpa(base), bytes: vec![0; 0x300] };
    let desc = |addr: u64, len: u32, flags: u16, next: u16| {
        [&addr.to_le_bytes()[..], &len.to_le_bytes(), &flags.to_le_bytes(), &next.to_le_bytes()].concat()
    };
    mem.write(Gpa(base), &desc(u64::MAX - 0x1f, 48, VIRTQ_DESC_F_INDIRECT, 0));
    mem.write(Gpa(u64::MAX - 0x1f), &desc(0x1000, 1, VIRTQ_DESC_F_NEXT, 1));
    mem.write(Gpa(u64::MAX - 0xf), &desc(0x1000, 1, VIRTQ_DESC_F_NEXT, 2));
    mem.write(Gpa(base + 0x102), &1u16.to_le_bytes());
    let layout = QueueLayout {
        size: 4,
        desc_table: Gpa(base),
        avail_ring: Gpa(base + 0x100),
        used_ring: Gpa(base + 0x180),
        event_idx: false,
    };
    let s = decode(&mem, &layout).unwrap();
    assert_eq!(s.in_flight.len(), 1);
    assert_eq!(s.in_flight[0].descriptors.len(), 2);
    assert_eq!(s.in_flight[0].error, Some(ChainError::Unreadable(Gpa(u64::MAX - 0x1f))));
}

/// Found by the virtqueue fuzz target's out-of-memory check
/// (fuzz/regressions/virtqueue/chains-sharing-one-long-tail): every avail entry pointing at
/// the head of one long chain made the decoder build size x size descriptors (2 GB at size
/// 8192, 34 GB at 32768). Chains, descriptors per chain and descriptors in all are bounded.
#[test]
fn chains_sharing_one_long_tail_are_bounded() {
    let n: u16 = 8192;
    let mut mem = BufferMemory::zeroed(16 * usize::from(n) + 6 + 2 * usize::from(n));
    for i in 0..n {
        let (flags, next) = if i + 1 < n { (VIRTQ_DESC_F_NEXT, i + 1) } else { (0, 0) };
        mem.write(Gpa(16 * u64::from(i)), &raw_desc(0, 1, flags, next));
    }
    let avail = 16 * u64::from(n);
    mem.write(Gpa(avail + 2), &n.to_le_bytes());
    // The used ring overlaps the table; its idx (descriptor 0's address bytes) reads 0.
    let layout = QueueLayout {
        size: n,
        desc_table: Gpa(0),
        avail_ring: Gpa(avail),
        used_ring: Gpa(0),
        event_idx: false,
    };
    let s = decode(&mem, &layout).unwrap();
    assert_eq!(s.in_flight.len(), MAX_DECODED_CHAINS);
    assert_eq!(usize::from(s.chains_not_decoded), usize::from(n) - MAX_DECODED_CHAINS);
    let total: usize = s.in_flight.iter().map(|c| c.descriptors.len()).sum();
    assert_eq!(total, MAX_DECODED_DESCRIPTORS);
    assert_eq!(s.in_flight[0].descriptors.len(), MAX_CHAIN_DESCRIPTORS);
    assert_eq!(s.in_flight[0].error, Some(ChainError::TooLong(MAX_CHAIN_DESCRIPTORS)));
    let last = s.in_flight.last().unwrap();
    assert!(last.descriptors.is_empty());
    assert_eq!(last.error, Some(ChainError::TooManyDescriptors(MAX_DECODED_DESCRIPTORS)));
    let text = s.to_string();
    assert!(text.contains("more than 1024 descriptors in all"), "{text}");
    assert!(text.contains("truncated: the chain goes on past 256 descriptors"), "{text}");
    assert!(text.ends_with("... 7936 more chains in flight, not decoded (the first 256 are shown)\n"));
}

fn raw_desc(addr: u64, len: u32, flags: u16, next: u16) -> Vec<u8> {
    [&addr.to_le_bytes()[..], &len.to_le_bytes(), &flags.to_le_bytes(), &next.to_le_bytes()].concat()
}

/// A 32768-entry queue (the largest the spec allows) whose every descriptor says NEXT and
/// whose chains all loop, all in flight: the work and the printout are bounded by
/// construction, each loop named at the descriptor it comes back to.
#[test]
fn a_full_ring_of_looping_chains_is_bounded() {
    let n = MAX_QUEUE_SIZE;
    let (desc, avail, used) = (0u64, 16 * u64::from(n), 16 * u64::from(n) + 0x1_1000);
    let mut mem = BufferMemory::zeroed(usize::try_from(used + 8 * u64::from(n) + 8).unwrap());
    // Pairs 2k <-> 2k+1 loop: every chain is two descriptors and then a loop.
    for i in 0..n {
        mem.write(Gpa(desc + 16 * u64::from(i)), &raw_desc(0x1000, 512, VIRTQ_DESC_F_NEXT, i ^ 1));
        mem.write(Gpa(avail + 4 + 2 * u64::from(i)), &i.to_le_bytes());
    }
    mem.write(Gpa(avail + 2), &n.to_le_bytes());
    let layout = QueueLayout {
        size: n,
        desc_table: Gpa(desc),
        avail_ring: Gpa(avail),
        used_ring: Gpa(used),
        event_idx: false,
    };
    let s = decode(&mem, &layout).unwrap();
    assert_eq!(s.in_flight.len(), MAX_DECODED_CHAINS);
    assert_eq!(s.chains_not_decoded, n - MAX_DECODED_CHAINS as u16);
    for (k, c) in s.in_flight.iter().enumerate() {
        assert_eq!(c.head, k as u16);
        assert_eq!(c.descriptors.len(), 2);
        assert_eq!(c.error, Some(ChainError::Loop { index: k as u16, indirect: false }));
    }
    let text = s.to_string();
    assert!(text
        .contains("chain 5: [5 gpa:0x1000+512] [4 gpa:0x1000+512]  ERROR: the chain loops at descriptor 5"));
    assert!(text.contains("... 32512 more chains in flight"));
    assert!(text.len() <= MAX_TEXT_BYTES);

    // One chain through the whole table and back to its start: cut at the chain bound,
    // before the loop is reached.
    for i in 0..n {
        mem.write(Gpa(desc + 16 * u64::from(i)), &raw_desc(0x1000, 512, VIRTQ_DESC_F_NEXT, (i + 1) % n));
    }
    mem.write(Gpa(avail + 2), &1u16.to_le_bytes());
    let s = decode(&mem, &layout).unwrap();
    assert_eq!(s.in_flight[0].descriptors.len(), MAX_CHAIN_DESCRIPTORS);
    assert_eq!(s.in_flight[0].error, Some(ChainError::TooLong(MAX_CHAIN_DESCRIPTORS)));
}

/// A loop inside an indirect table is named by its index there.
#[test]
fn a_loop_in_an_indirect_table_is_named() {
    let mut q = MockDriver::new(4, false);
    let table = Gpa(0x9000);
    q.set_desc(table, 0, 0xa000, 16, VIRTQ_DESC_F_NEXT, 1);
    q.set_desc(table, 1, 0xb000, 16, VIRTQ_DESC_F_NEXT, 2);
    q.set_desc(table, 2, 0xb000, 16, VIRTQ_DESC_F_NEXT, 1);
    q.set_desc(q.layout.desc_table, 0, table.0, 48, VIRTQ_DESC_F_INDIRECT, 0);
    q.publish(0);
    let s = q.decode().unwrap();
    assert_eq!(s.in_flight[0].descriptors.len(), 3);
    assert_eq!(s.in_flight[0].error, Some(ChainError::Loop { index: 1, indirect: true }));
    assert!(s.to_string().contains("the chain loops at indirect descriptor 1"));
}

/// The longest text a snapshot can print, near enough: numbers at their widest, chains cut
/// by both bounds with the longest errors, every descriptor device-writable with the
/// largest address and length. It stays under MAX_TEXT_BYTES, the bound the module
/// promises.
#[test]
fn the_widest_printout_is_within_max_text_bytes() {
    let n = MAX_QUEUE_SIZE;
    let (desc, avail, used) = (0u64, 16 * u64::from(n), 16 * u64::from(n) + 0x1_1000);
    let mut mem = BufferMemory::zeroed(usize::try_from(used + 8 * u64::from(n) + 8).unwrap());
    // Heads 30000.. (five digits), each the start of a long chain through the table.
    let head = 30000u16;
    for i in head..n {
        let d = raw_desc(u64::MAX, u32::MAX, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, i.wrapping_add(1) % n);
        mem.write(Gpa(desc + 16 * u64::from(i)), &d);
    }
    for k in 0..MAX_DECODED_CHAINS as u16 {
        mem.write(Gpa(avail + 4 + 2 * u64::from(k)), &(head + k).to_le_bytes());
    }
    mem.write(Gpa(avail), &u16::MAX.to_le_bytes());
    mem.write(Gpa(avail + 2), &u16::MAX.to_le_bytes());
    mem.write(Gpa(used), &u16::MAX.to_le_bytes());
    let layout = QueueLayout {
        size: n,
        desc_table: Gpa(desc),
        avail_ring: Gpa(avail),
        used_ring: Gpa(used),
        event_idx: true,
    };
    let s = decode(&mem, &layout).unwrap();
    let total: usize = s.in_flight.iter().map(|c| c.descriptors.len()).sum();
    assert_eq!(total, MAX_DECODED_DESCRIPTORS);
    let text = s.to_string();
    assert!(text.contains("chain 30000: [30000 gpa:0xffffffffffffffff+4294967295 W]"), "{}", &text[..400]);
    assert!(text.len() <= MAX_TEXT_BYTES, "{} > {MAX_TEXT_BYTES}", text.len());
    assert!(text.len() > MAX_TEXT_BYTES / 2, "{}", text.len());
}
