//! Which pages of guest RAM changed since the base checkpoint: a 128-bit XXH3 hash of
//! every page as it was then (with a seed drawn per machine), compared with a fresh hash
//! of every page now. Comparing hashes sees every writer — the guest, and the VMM itself
//! (virtio-blk data and used rings, the doorbell ring, hypercall results), whose writes
//! KVM's dirty-page log does not record — and it costs one read of RAM (about 5 ms per
//! 64 MiB), with 16 bytes per page kept. Pages are hashed and copied as the guest wrote
//! them: vmscope's own `int3` bytes are hidden, so placing or removing a breakpoint is
//! not a change of the guest's.

use super::history::Page;
use crate::breakpoints::Breakpoints;
use crate::vstate::memory::{mem_size, GuestMemory};
use inspect::Gpa;
use std::sync::Arc;
use twox_hash::XxHash3_128;
use vm_memory::{Bytes, GuestAddress};

/// The page size the checkpoints work in.
pub const PAGE: usize = 4096;

/// RAM is read this much at a time.
const CHUNK: usize = 1 << 20;

/// The hash of every page of guest RAM as it was at the base checkpoint.
pub struct PageHashes {
    seed: u64,
    zero: u128,
    hashes: Vec<u128>,
}

/// A page whose bytes differ from the base's.
pub struct Changed {
    /// Its page number (guest-physical address / 4096).
    pub pfn: u64,
    /// Its hash now.
    pub hash: u128,
    /// Its bytes now (`None`: zeroes).
    pub page: Page,
}

fn is_zero(page: &[u8]) -> bool {
    page.iter().all(|&b| b == 0)
}

impl PageHashes {
    /// The hashes of RAM of `mem`'s size filled with zeroes (what the first checkpoint is
    /// compared with, so it keeps every page that is not zero).
    pub fn zeroed(mem: &GuestMemory, seed: u64) -> Self {
        let zero = XxHash3_128::oneshot_with_seed(seed, &[0u8; PAGE]);
        let pages = (mem_size(mem) / PAGE as u64) as usize;
        Self { seed, zero, hashes: vec![zero; pages] }
    }

    /// Bytes this index takes.
    pub fn bytes(&self) -> u64 {
        (self.hashes.len() * std::mem::size_of::<u128>()) as u64
    }

    fn hash(&self, page: &[u8]) -> u128 {
        XxHash3_128::oneshot_with_seed(self.seed, page)
    }

    /// The pages of `mem` whose bytes (with `breakpoints` hidden) differ from the index,
    /// with copies of them. The index itself is not changed ([`PageHashes::commit`]).
    pub fn changed(&self, mem: &GuestMemory, breakpoints: &Breakpoints) -> Vec<Changed> {
        let mut out = Vec::new();
        let mut chunk = vec![0u8; CHUNK];
        let size = (self.hashes.len() * PAGE) as u64;
        let mut at = 0u64;
        while at < size {
            let n = (size - at).min(CHUNK as u64) as usize;
            let buf = &mut chunk[..n];
            if mem.read_slice(buf, GuestAddress(at)).is_err() {
                buf.fill(0);
            }
            breakpoints.hide_in(Gpa(at), buf);
            for (i, bytes) in buf.chunks_exact(PAGE).enumerate() {
                let pfn = at / PAGE as u64 + i as u64;
                let hash = self.hash(bytes);
                if hash != self.hashes[pfn as usize] {
                    let page = (hash != self.zero || !is_zero(bytes)).then(|| Arc::from(bytes));
                    out.push(Changed { pfn, hash, page });
                }
            }
            at += n as u64;
        }
        out
    }

    /// Records `hash` as page `pfn`'s (a page outside RAM is ignored).
    pub fn commit(&mut self, pfn: u64, hash: u128) {
        if let Some(h) = self.hashes.get_mut(pfn as usize) {
            *h = hash;
        }
    }

    /// Writes `page` (zeroes for `None`) to page `pfn` of `mem` and records its hash;
    /// false if the page is not in guest memory.
    pub fn write(&mut self, mem: &GuestMemory, pfn: u64, page: &Page) -> bool {
        let zeroes = [0u8; PAGE];
        let bytes: &[u8] = page.as_deref().unwrap_or(&zeroes);
        let Some(gpa) = pfn.checked_mul(PAGE as u64) else { return false };
        if mem.write_slice(bytes, GuestAddress(gpa)).is_err() {
            return false;
        }
        let hash = if page.is_none() { self.zero } else { self.hash(bytes) };
        self.commit(pfn, hash);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vstate::memory::{create_guest_memory, write_phys};

    #[test]
    fn changes_by_anyone_are_seen_and_breakpoints_are_not() {
        let mem = create_guest_memory(4 << 20).unwrap();
        let bps = Breakpoints::new(mem.clone());
        let mut index = PageHashes::zeroed(&mem, 7);
        assert!(index.changed(&mem, &bps).is_empty(), "zeroed RAM is the zeroed index");
        write_phys(&mem, Gpa(0x3008), &[1, 2, 3]).unwrap();
        write_phys(&mem, Gpa(0x3f_f000), &[9]).unwrap();
        let changed = index.changed(&mem, &bps);
        assert_eq!(changed.iter().map(|c| c.pfn).collect::<Vec<_>>(), [3, 0x3ff]);
        assert_eq!(&changed[0].page.as_ref().unwrap()[8..11], &[1, 2, 3]);
        for c in &changed {
            index.commit(c.pfn, c.hash);
        }
        assert!(index.changed(&mem, &bps).is_empty());

        // An int3 placed by the debugger is not the guest's change; the guest's is.
        bps.insert(inspect::Gva(0x3008), Gpa(0x3008)).unwrap();
        assert!(index.changed(&mem, &bps).is_empty());
        write_phys(&mem, Gpa(0x3000), &[5]).unwrap();
        let changed = index.changed(&mem, &bps);
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].page.as_ref().unwrap()[8], 1, "the copy holds the guest's byte");

        // A page written back to zeroes is kept as nothing.
        write_phys(&mem, Gpa(0x3f_f000), &[0]).unwrap();
        let changed = index.changed(&mem, &bps);
        assert!(changed.iter().any(|c| c.pfn == 0x3ff && c.page.is_none()));
    }

    #[test]
    fn writing_a_page_back_records_it() {
        let mem = create_guest_memory(4 << 20).unwrap();
        let bps = Breakpoints::new(mem.clone());
        let mut index = PageHashes::zeroed(&mem, 1);
        write_phys(&mem, Gpa(0x5000), &[7; 16]).unwrap();
        let copy = index.changed(&mem, &bps).remove(0);
        index.commit(copy.pfn, copy.hash);
        write_phys(&mem, Gpa(0x5000), &[8; 16]).unwrap();
        assert!(index.write(&mem, 5, &copy.page));
        let mut back = [0u8; 16];
        mem.read_slice(&mut back, GuestAddress(0x5000)).unwrap();
        assert_eq!(back, [7; 16]);
        assert!(index.changed(&mem, &bps).is_empty());
        assert!(index.write(&mem, 5, &None));
        assert!(index.changed(&mem, &bps).is_empty(), "zeroes written, zeroes recorded");
        assert!(!index.write(&mem, 1 << 40, &None), "outside RAM");
    }
}
