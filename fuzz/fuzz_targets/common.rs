#![allow(dead_code)] // each target uses some of the readers
//! Small helpers shared by the targets: little-endian fields read from the front of the
//! fuzz input, so hand-made seeds are easy to write (see fuzz/README.md for each layout).

/// Reads fields off the front of `data`; missing bytes read as zero.
pub struct Fields<'a> {
    pub data: &'a [u8],
}

impl<'a> Fields<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }

    fn le(&mut self, n: usize) -> u64 {
        let mut b = [0u8; 8];
        let head = self.bytes(n);
        b[..head.len()].copy_from_slice(head);
        u64::from_le_bytes(b)
    }

    pub fn u8(&mut self) -> u8 {
        self.le(1) as u8
    }

    pub fn u16(&mut self) -> u16 {
        self.le(2) as u16
    }

    pub fn u32(&mut self) -> u32 {
        self.le(4) as u32
    }

    pub fn u64(&mut self) -> u64 {
        self.le(8)
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// A `fmt::Write` that counts what is written and keeps none of it.
struct Counter(usize);

impl std::fmt::Write for Counter {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0 += s.len();
        Ok(())
    }
}

/// Runs `value`'s `Display` to the end, as `to_string` would, and returns the length of the
/// text. The text is not kept: growing a `String` under AddressSanitizer costs the targets
/// more than what they test.
pub fn display_len(value: &impl std::fmt::Display) -> usize {
    let mut c = Counter(0);
    std::fmt::write(&mut c, format_args!("{value}")).expect("Display implementations do not fail");
    c.0
}

/// Checks a decoded queue against the decoder's bounds (chains, descriptors per chain and in
/// all, bytes of text: `inspect::virtqueue::MAX_*`, the bound every frontend's `vq`
/// printout shares), prints it as the `vq` command does, and returns the length of the text.
pub fn check_queue(snapshot: &inspect::virtqueue::QueueSnapshot) -> usize {
    use inspect::virtqueue::{
        MAX_CHAIN_DESCRIPTORS, MAX_DECODED_CHAINS, MAX_DECODED_DESCRIPTORS, MAX_TEXT_BYTES,
    };
    assert!(snapshot.in_flight.len() <= MAX_DECODED_CHAINS);
    let mut total = 0;
    for chain in &snapshot.in_flight {
        assert!(chain.descriptors.len() <= MAX_CHAIN_DESCRIPTORS);
        total += chain.descriptors.len();
        let _ = (chain.readable_len(), chain.writable_len());
    }
    assert!(total <= MAX_DECODED_DESCRIPTORS);
    let len = display_len(snapshot);
    assert!(len <= MAX_TEXT_BYTES, "the printout has {len} bytes, more than {MAX_TEXT_BYTES}");
    len
}
