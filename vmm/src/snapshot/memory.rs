//! Guest RAM in a snapshot: the `memory` section is an image of RAM in which only pages that
//! are not zero are written (the others are holes in a sparse file), and the `pagemap`
//! section lists those pages as runs. Restore maps the image copy-on-write and checks the
//! CRC over the listed pages only.

use super::format::{FormatError, Writer, PAGE};
use super::SnapshotError;
use crate::breakpoints::Breakpoints;
use crate::vstate::memory::{mem_size, GuestMemory};
use inspect::Gpa;
use vm_memory::{Bytes, GuestAddress};

/// Bytes read from guest memory at a time while scanning.
const CHUNK: usize = 1 << 20;

/// One run of non-zero pages: first page number, number of pages.
pub type Run = (u64, u64);

/// Writes the `memory` section: every non-zero page of `mem`, with our `int3` bytes
/// replaced by the guest's own (the breakpoints are in the `debug` section). Returns the runs.
pub fn write(w: &mut Writer, mem: &GuestMemory, breakpoints: &Breakpoints) -> Result<Vec<Run>, FormatError> {
    let size = mem_size(mem);
    let mut runs: Vec<Run> = Vec::new();
    let mut buf = vec![0u8; CHUNK];
    w.start_sparse("memory")?;
    let mut at = 0u64;
    while at < size {
        let n = (size - at).min(CHUNK as u64) as usize;
        let chunk = &mut buf[..n];
        if mem.read_slice(chunk, GuestAddress(at)).is_err() {
            chunk.fill(0);
        }
        breakpoints.hide_in(Gpa(at), chunk);
        // Write consecutive non-zero pages of this chunk in one piece.
        let pages = n / PAGE as usize;
        let mut p = 0;
        while p < pages {
            if is_zero(&chunk[p * PAGE as usize..(p + 1) * PAGE as usize]) {
                p += 1;
                continue;
            }
            let start = p;
            while p < pages && !is_zero(&chunk[p * PAGE as usize..(p + 1) * PAGE as usize]) {
                p += 1;
            }
            let first = at / PAGE + start as u64;
            w.sparse_write(first * PAGE, &chunk[start * PAGE as usize..p * PAGE as usize])?;
            match runs.last_mut() {
                Some((f, c)) if *f + *c == first => *c += (p - start) as u64,
                _ => runs.push((first, (p - start) as u64)),
            }
        }
        at += n as u64;
    }
    w.end_sparse(size);
    Ok(runs)
}

fn is_zero(page: &[u8]) -> bool {
    page.chunks_exact(8).all(|w| u64::from_ne_bytes(w.try_into().unwrap_or([1; 8])) == 0)
}

/// The `pagemap` section's bytes.
pub fn encode_runs(runs: &[Run]) -> Vec<u8> {
    runs.iter().flat_map(|(f, c)| f.to_le_bytes().into_iter().chain(c.to_le_bytes())).collect()
}

/// Decodes `pagemap` and checks that the runs are in order, do not overlap and lie in
/// `mem_bytes` of RAM.
pub fn decode_runs(bytes: &[u8], mem_bytes: u64) -> Result<Vec<Run>, SnapshotError> {
    let bad = |detail: String| SnapshotError::BadSection { section: "pagemap".into(), detail };
    if !bytes.len().is_multiple_of(16) {
        return Err(bad(format!("{} bytes is not a whole number of runs", bytes.len())));
    }
    let pages = mem_bytes / PAGE;
    let mut next = 0u64;
    let mut runs = Vec::with_capacity(bytes.len() / 16);
    for c in bytes.chunks_exact(16) {
        let first = u64::from_le_bytes(c[..8].try_into().unwrap_or_default());
        let count = u64::from_le_bytes(c[8..].try_into().unwrap_or_default());
        let end = first.checked_add(count).filter(|&e| e <= pages && count > 0 && first >= next);
        let Some(end) = end else {
            return Err(bad(format!(
                "run of {count} pages at page {first} is out of order or past {pages} pages"
            )));
        };
        next = end;
        runs.push((first, count));
    }
    Ok(runs)
}

/// Bytes of RAM the runs cover.
pub fn run_bytes(runs: &[Run]) -> u64 {
    runs.iter().map(|(_, c)| c * PAGE).sum()
}

/// CRC-32 of the pages the runs list, read from `mem` (the mapped image).
pub fn crc_of_runs(mem: &GuestMemory, runs: &[Run]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    let mut buf = vec![0u8; CHUNK];
    for &(first, count) in runs {
        let mut at = first * PAGE;
        let end = (first + count) * PAGE;
        while at < end {
            let n = (end - at).min(CHUNK as u64) as usize;
            if mem.read_slice(&mut buf[..n], GuestAddress(at)).is_err() {
                buf[..n].fill(0);
            }
            h.update(&buf[..n]);
            at += n as u64;
        }
    }
    h.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_checked() {
        let runs = vec![(0, 2), (5, 1)];
        assert_eq!(decode_runs(&encode_runs(&runs), 8 * PAGE).unwrap(), runs);
        assert!(decode_runs(&encode_runs(&[(5, 1), (0, 2)]), 8 * PAGE).is_err(), "out of order");
        assert!(decode_runs(&encode_runs(&[(7, 2)]), 8 * PAGE).is_err(), "past the end");
        assert!(decode_runs(&encode_runs(&[(u64::MAX, 2)]), 8 * PAGE).is_err(), "wraps");
        assert!(decode_runs(&[0; 15], 8 * PAGE).is_err());
        assert_eq!(run_bytes(&runs), 3 * PAGE);
    }
}
