//! Debug-register pieces: a watched range as the 1-, 2-, 4- or 8-byte naturally aligned
//! pieces DR0-DR3 can watch, with every range a client can ask for bounded first.

/// The debug registers a watchpoint's pieces are taken from (DR0-DR3), on every host: the
/// emulated watchpoints of PVM take their slots too.
pub const DR_SLOTS: usize = 4;

/// The longest watchpoint the stub accepts: four debug registers of 8 aligned bytes. gdb
/// watches longer ranges with its own software watchpoints (single steps, no `Z` packet),
/// so nothing a gdb sends through `Z2`-`Z4` is ever longer; a packet that is gets an error.
pub const MAX_WATCH_LEN: u64 = 8 * DR_SLOTS as u64;

/// Why a watchpoint cannot be set (the text vmscope prints; gdb gets an error reply).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WatchError {
    /// Zero bytes.
    #[error("a watchpoint of 0 bytes watches nothing")]
    Empty,
    /// Longer than [`MAX_WATCH_LEN`].
    #[error("{len} bytes is over the limit of {MAX_WATCH_LEN} (four 8-byte debug registers)")]
    TooLong {
        /// Asked for.
        len: u64,
    },
    /// `addr + len` passes the end of the address space.
    #[error("{len} bytes from {addr:#x} run past the end of the address space")]
    Wraps {
        /// Where.
        addr: u64,
        /// How long.
        len: u64,
    },
    /// More aligned pieces than there are debug registers.
    #[error("{len} bytes at {addr:#x} need {pieces} aligned debug-register pieces; there are {DR_SLOTS} registers")]
    TooManyPieces {
        /// Where.
        addr: u64,
        /// How long.
        len: u64,
        /// How many pieces it would take.
        pieces: usize,
    },
}

/// The debug-register pieces covering `[addr, addr + len)`: a debug register watches 1,
/// 2, 4 or 8 naturally aligned bytes, so a longer or unaligned range takes several. A range
/// that is empty, longer than [`MAX_WATCH_LEN`], runs past the end of the address space or
/// takes more than [`DR_SLOTS`] pieces is refused before anything is built (the loop runs
/// at most `MAX_WATCH_LEN` times, whatever a client asks for).
pub fn dr_pieces(addr: u64, len: u64) -> Result<Vec<(u64, u64)>, WatchError> {
    if len == 0 {
        return Err(WatchError::Empty);
    }
    if len > MAX_WATCH_LEN {
        return Err(WatchError::TooLong { len });
    }
    // The last byte may be the address space's last byte: the end is computed in u128.
    let end = u128::from(addr) + u128::from(len);
    if end > 1u128 << 64 {
        return Err(WatchError::Wraps { addr, len });
    }
    let mut pieces = Vec::with_capacity(DR_SLOTS);
    let mut at = u128::from(addr);
    while at < end {
        let size = [8u64, 4, 2, 1]
            .into_iter()
            .find(|&s| at % u128::from(s) == 0 && at + u128::from(s) <= end)
            .unwrap_or(1);
        // `at < end <= 2^64`: it fits.
        pieces.push((at as u64, size));
        at += u128::from(size);
    }
    if pieces.len() > DR_SLOTS {
        return Err(WatchError::TooManyPieces { addr, len, pieces: pieces.len() });
    }
    Ok(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_register_pieces() {
        assert_eq!(dr_pieces(0x1000, 8).unwrap(), [(0x1000, 8)]);
        assert_eq!(dr_pieces(0x1000, 16).unwrap(), [(0x1000, 8), (0x1008, 8)]);
        assert_eq!(dr_pieces(0x1003, 4).unwrap(), [(0x1003, 1), (0x1004, 2), (0x1006, 1)]);
        assert_eq!(dr_pieces(0x1004, 4).unwrap(), [(0x1004, 4)]);
        assert_eq!(dr_pieces(0x1000, 32).unwrap().len(), 4);
        // The last 8 bytes of the address space are a valid watchpoint.
        assert_eq!(dr_pieces(u64::MAX - 7, 8).unwrap(), [(u64::MAX - 7, 8)]);
        assert_eq!(dr_pieces(u64::MAX, 1).unwrap(), [(u64::MAX, 1)]);
    }

    /// What a hostile `Z2`-`Z4` packet can ask for: each is refused at once (before the fix,
    /// a range that wrapped made `dr_pieces` loop over the whole address space, growing its
    /// list until the allocator aborted).
    #[test]
    fn hostile_watchpoint_ranges_are_refused() {
        assert_eq!(dr_pieces(0x1000, 0), Err(WatchError::Empty));
        assert_eq!(dr_pieces(u64::MAX - 7, 16), Err(WatchError::Wraps { addr: u64::MAX - 7, len: 16 }));
        assert_eq!(dr_pieces(u64::MAX - 7, 9), Err(WatchError::Wraps { addr: u64::MAX - 7, len: 9 }));
        assert_eq!(dr_pieces(u64::MAX, 2), Err(WatchError::Wraps { addr: u64::MAX, len: 2 }));
        assert_eq!(dr_pieces(0, u64::MAX), Err(WatchError::TooLong { len: u64::MAX }));
        assert_eq!(dr_pieces(0x1000, MAX_WATCH_LEN + 1), Err(WatchError::TooLong { len: MAX_WATCH_LEN + 1 }));
        // 31 unaligned bytes take six pieces (1, 2, 4, 8, 8, 8): more than there are registers.
        assert_eq!(
            dr_pieces(0x1001, 31),
            Err(WatchError::TooManyPieces { addr: 0x1001, len: 31, pieces: 6 })
        );
    }
}
