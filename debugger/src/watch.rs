//! Software watchpoints: where hardware watchpoints do not fire (PVM: its instruction
//! emulator does not check the debug registers), `cont` single-steps and compares the
//! watched bytes after every instruction, as gdb does when it runs out of debug registers.
//! The bookkeeping and the comparison are pure and tested here; [`crate::run`] drives them.

use crate::DebuggerError;

/// The most software watchpoints a session keeps: 16. On PVM each one is read back after
/// every single-stepped instruction of `cont`, so a long list slows it to a crawl; real
/// hardware has four slots (DR0-DR3).
pub const MAX_SOFT_WATCHES: usize = 16;

/// The watched ranges: (guest-virtual address, length in bytes).
#[derive(Debug, Default, Clone)]
pub struct SoftWatches(Vec<(u64, u64)>);

/// A watched value that changed: where, and the old and new bytes as little-endian numbers.
#[derive(Debug, PartialEq, Eq)]
pub struct Change {
    /// The watched address.
    pub addr: u64,
    /// The value before.
    pub old: u128,
    /// The value after.
    pub new: u128,
}

impl SoftWatches {
    /// Adds a range (a range already watched is not added twice).
    pub fn add(&mut self, addr: u64, len: u64) -> Result<(), DebuggerError> {
        if self.0.contains(&(addr, len)) {
            return Ok(());
        }
        if self.0.len() >= MAX_SOFT_WATCHES {
            return Err(DebuggerError::TooManyWatches);
        }
        self.0.push((addr, len));
        Ok(())
    }

    /// Removes every range that starts at `addr`; whether there was one.
    pub fn remove(&mut self, addr: u64) -> bool {
        let before = self.0.len();
        self.0.retain(|(a, _)| *a != addr);
        self.0.len() != before
    }

    /// No ranges are watched.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The ranges, in the order they were set.
    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.0
    }

    /// The first range whose bytes differ between two reads of [`Self::ranges`].
    pub fn first_change(&self, before: &[Vec<u8>], now: &[Vec<u8>]) -> Option<Change> {
        let i = (0..now.len().min(before.len())).find(|&i| now[i] != before[i])?;
        let (addr, _) = *self.0.get(i)?;
        Some(Change { addr, old: little_endian(&before[i]), new: little_endian(&now[i]) })
    }
}

/// Bytes as a little-endian number (the watch length is at most 16 bytes on PVM, where
/// software watchpoints are used; longer ranges keep their low 16 bytes).
fn little_endian(bytes: &[u8]) -> u128 {
    bytes.iter().rev().fold(0u128, |acc, x| (acc << 8) | u128::from(*x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_is_kept_once_and_the_list_is_bounded() {
        let mut w = SoftWatches::default();
        w.add(0x1000, 8).unwrap();
        w.add(0x1000, 8).unwrap();
        assert_eq!(w.ranges(), [(0x1000, 8)]);
        for i in 1..MAX_SOFT_WATCHES as u64 {
            w.add(0x1000 + i * 8, 8).unwrap();
        }
        let err = w.add(0x9000, 4).unwrap_err().to_string();
        assert!(err.contains("16 software watchpoints are set"), "{err}");
        assert!(w.remove(0x1000));
        assert!(!w.remove(0x1000));
        assert_eq!(w.ranges().len(), MAX_SOFT_WATCHES - 1);
    }

    #[test]
    fn the_first_changed_range_is_reported_little_endian() {
        let mut w = SoftWatches::default();
        w.add(0x10, 2).unwrap();
        w.add(0x20, 4).unwrap();
        let before = vec![vec![1, 0], vec![0x78, 0x56, 0x34, 0x12]];
        assert_eq!(w.first_change(&before, &before), None);
        let now = vec![vec![1, 0], vec![0x79, 0x56, 0x34, 0x12]];
        assert_eq!(
            w.first_change(&before, &now),
            Some(Change { addr: 0x20, old: 0x1234_5678, new: 0x1234_5679 })
        );
    }
}
