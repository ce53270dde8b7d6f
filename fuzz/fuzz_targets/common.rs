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
