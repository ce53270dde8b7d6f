//! KVM's binary statistics (`KVM_GET_STATS_FD`, Documentation/virt/kvm/api.rst): a header,
//! descriptors (type, unit, base/exponent, size, offset, name) and a data block. The VMM
//! reads the fd; this module only parses bytes, so hostile or truncated blobs are errors.

use serde::Serialize;

/// A malformed blob.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StatsError {
    /// Shorter than its header or its descriptors say.
    #[error("the KVM statistics blob is truncated: {0}")]
    Truncated(&'static str),
    /// A descriptor's data lies outside the blob.
    #[error("statistic {name:?} points outside the data block (offset {offset}, {size} values)")]
    OutOfRange {
        /// The statistic.
        name: String,
        /// Its offset.
        offset: u32,
        /// Its size.
        size: u16,
    },
}

/// How a statistic accumulates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StatKind {
    /// Only grows (deltas are meaningful).
    Cumulative,
    /// A current value.
    Instant,
    /// A high-water mark.
    Peak,
    /// A linear histogram.
    LinearHistogram,
    /// A logarithmic histogram.
    LogHistogram,
    /// A type this parser does not know.
    Unknown(u32),
}

/// One statistic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Stat {
    /// Its name (`exits`, `insn_emulation`, `halt_poll_success_ns`…).
    pub name: String,
    /// How it accumulates.
    pub kind: StatKind,
    /// Unit: `none`, `bytes`, `seconds`, `cycles`, `boolean`.
    pub unit: &'static str,
    /// Scale exponent (value × base^exponent, base 10 or 2).
    pub exponent: i16,
    /// The values (one, or the histogram's buckets).
    pub values: Vec<u64>,
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    b.get(off..off + 4).map(|s| u32::from_le_bytes(s.try_into().expect("4 bytes")))
}

/// Parses a statistics blob.
pub fn parse(blob: &[u8]) -> Result<Vec<Stat>, StatsError> {
    let field = |i: usize| u32_at(blob, i * 4).ok_or(StatsError::Truncated("header"));
    let (name_size, num_desc, desc_offset, data_offset) =
        (field(1)? as usize, field(2)? as usize, field(4)? as usize, field(5)? as usize);
    let desc_len = 16usize.checked_add(name_size).ok_or(StatsError::Truncated("descriptor size"))?;
    let mut out = Vec::with_capacity(num_desc.min(4096));
    for i in 0..num_desc {
        let at = i
            .checked_mul(desc_len)
            .and_then(|o| o.checked_add(desc_offset))
            .ok_or(StatsError::Truncated("descriptors"))?;
        let d = blob.get(at..at + desc_len).ok_or(StatsError::Truncated("descriptors"))?;
        let flags = u32_at(d, 0).expect("in range");
        let exponent = i16::from_le_bytes([d[4], d[5]]);
        let size = u16::from_le_bytes([d[6], d[7]]);
        let offset = u32_at(d, 8).expect("in range");
        let raw_name = &d[16..];
        let name = String::from_utf8_lossy(
            &raw_name[..raw_name.iter().position(|&c| c == 0).unwrap_or(raw_name.len())],
        )
        .into_owned();
        let kind = match flags & 0xf {
            0 => StatKind::Cumulative,
            1 => StatKind::Instant,
            2 => StatKind::Peak,
            3 => StatKind::LinearHistogram,
            4 => StatKind::LogHistogram,
            other => StatKind::Unknown(other),
        };
        let unit = match (flags >> 4) & 0xf {
            0 => "none",
            1 => "bytes",
            2 => "seconds",
            3 => "cycles",
            4 => "boolean",
            _ => "unknown",
        };
        let start = data_offset.checked_add(offset as usize);
        let end = start.and_then(|s| s.checked_add(size as usize * 8));
        let data = start
            .zip(end)
            .and_then(|(s, e)| blob.get(s..e))
            .ok_or_else(|| StatsError::OutOfRange { name: name.clone(), offset, size })?;
        let values =
            data.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect();
        out.push(Stat { name, kind, unit, exponent, values });
    }
    Ok(out)
}

/// `after − before` for cumulative statistics (by name); others as they are in `after`.
pub fn delta(before: &[Stat], after: &[Stat]) -> Vec<Stat> {
    after
        .iter()
        .map(|a| match (a.kind, before.iter().find(|b| b.name == a.name)) {
            (StatKind::Cumulative, Some(b)) => Stat {
                values: a
                    .values
                    .iter()
                    .zip(b.values.iter().chain(std::iter::repeat(&0)))
                    .map(|(x, y)| x.saturating_sub(*y))
                    .collect(),
                ..a.clone()
            },
            _ => a.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A blob with the given (flags, name, values) statistics.
    fn blob(stats: &[(u32, &str, &[u64])]) -> Vec<u8> {
        let name_size = 48usize;
        let desc_offset = 24 + 16; // header, then an id string
        let desc_len = 16 + name_size;
        let data_offset = desc_offset + desc_len * stats.len();
        let mut b = vec![0u8; data_offset];
        for (i, v) in [0u32, name_size as u32, stats.len() as u32, 24, desc_offset as u32, data_offset as u32]
            .iter()
            .enumerate()
        {
            b[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
        }
        let mut data_off = 0u32;
        for (i, (flags, name, values)) in stats.iter().enumerate() {
            let at = desc_offset + i * desc_len;
            b[at..at + 4].copy_from_slice(&flags.to_le_bytes());
            b[at + 6..at + 8].copy_from_slice(&(values.len() as u16).to_le_bytes());
            b[at + 8..at + 12].copy_from_slice(&data_off.to_le_bytes());
            b[at + 16..at + 16 + name.len()].copy_from_slice(name.as_bytes());
            data_off += values.len() as u32 * 8;
        }
        for (_, _, values) in stats {
            for v in values.iter() {
                b.extend_from_slice(&v.to_le_bytes());
            }
        }
        b
    }

    #[test]
    fn parses_and_deltas() {
        let before =
            parse(&blob(&[(0, "exits", &[10]), (0, "insn_emulation", &[5]), (1 | (1 << 4), "pages", &[7])]))
                .unwrap();
        assert_eq!(before.len(), 3);
        assert_eq!(before[0].name, "exits");
        assert_eq!(before[2].kind, StatKind::Instant);
        assert_eq!(before[2].unit, "bytes");
        let after =
            parse(&blob(&[(0, "exits", &[25]), (0, "insn_emulation", &[5]), (1 | (1 << 4), "pages", &[3])]))
                .unwrap();
        let d = delta(&before, &after);
        assert_eq!(d[0].values, vec![15]);
        assert_eq!(d[1].values, vec![0]);
        assert_eq!(d[2].values, vec![3], "instant values are not subtracted");
        let hist = parse(&blob(&[(4, "halt_wait_hist", &[1, 2, 3])])).unwrap();
        assert_eq!((hist[0].kind, hist[0].values.len()), (StatKind::LogHistogram, 3));
    }

    #[test]
    fn hostile_blobs_are_errors() {
        assert_eq!(parse(&[0; 10]), Err(StatsError::Truncated("header")));
        let mut b = blob(&[(0, "exits", &[1])]);
        b.truncate(b.len() - 4);
        assert!(matches!(parse(&b), Err(StatsError::OutOfRange { .. })));
        let mut b = blob(&[(0, "exits", &[1])]);
        b[8..12].copy_from_slice(&u32::MAX.to_le_bytes()); // num_desc
        assert_eq!(parse(&b), Err(StatsError::Truncated("descriptors")));
        let mut b = blob(&[(0, "exits", &[1])]);
        b[4..8].copy_from_slice(&u32::MAX.to_le_bytes()); // name_size
        assert!(parse(&b).is_err());
    }
}
