//! The migration stream: a preamble (`"VMSCMIGR"`, version u32), then frames `tag u32 ·
//! length u32 · payload` (little-endian). Every length is checked against the frame's
//! kind before anything is allocated, so a hostile peer cannot make either side grow.
//!
//! ```text
//! source                                   target
//! preamble, HELLO {json}          ───►      checks version, RAM size, vCPUs
//!                                 ◄───      READY | REFUSE text
//! PAGES (round 0: non-zero pages) ───►      written into fresh RAM
//! ROUND n, PAGES (dirty pages)    ───►      …
//! (vCPUs held) PAGES, STATE × k   ───►
//! DONE                            ───►      restore_state (paused)
//!                                 ◄───      LOADED {json} | FAILED text
//! GO                              ───►      resume; the source never runs the guest again
//! ```

use std::io::{Read, Write};

/// The preamble's magic.
pub const MAGIC: [u8; 8] = *b"VMSCMIGR";
/// The protocol version this build speaks.
pub const VERSION: u32 = 1;
/// Bytes in a guest page.
pub const PAGE: usize = 4096;
/// Pages in one PAGES frame at most.
pub const MAX_PAGES_PER_FRAME: usize = 256;
/// The largest frame: a state section (the snapshot format's own bound) or a PAGES frame.
pub const MAX_FRAME: usize = 16 << 20;
/// The largest HELLO, READY/LOADED, REFUSE/FAILED payload.
pub const MAX_SMALL: usize = 64 << 10;

/// A frame's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Tag {
    /// Source → target: what is coming (JSON).
    Hello = 1,
    /// Target → source: send it.
    Ready = 2,
    /// Target → source: will not take it (text).
    Refuse = 3,
    /// Source → target: `count u32`, then `count` × (page number u64, 4096 bytes).
    Pages = 4,
    /// Source → target: a pre-copy round starts (`round u32`).
    Round = 5,
    /// Source → target: `name length u8 · name · bytes`, one snapshot section.
    State = 6,
    /// Source → target: everything was sent.
    Done = 7,
    /// Target → source: the machine is built and paused (JSON).
    Loaded = 8,
    /// Target → source: it could not be built (text).
    Failed = 9,
    /// Source → target: run it; the source has let go.
    Go = 10,
}

impl Tag {
    fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            1 => Self::Hello,
            2 => Self::Ready,
            3 => Self::Refuse,
            4 => Self::Pages,
            5 => Self::Round,
            6 => Self::State,
            7 => Self::Done,
            8 => Self::Loaded,
            9 => Self::Failed,
            10 => Self::Go,
            _ => return None,
        })
    }

    /// The largest payload a frame of this kind may have.
    pub fn max_len(self) -> usize {
        match self {
            Self::Pages => 4 + MAX_PAGES_PER_FRAME * (8 + PAGE),
            Self::State => MAX_FRAME,
            Self::Round => 4,
            Self::Ready | Self::Done | Self::Go => 0,
            Self::Hello | Self::Refuse | Self::Loaded | Self::Failed => MAX_SMALL,
        }
    }
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The socket failed or closed.
    #[error("the connection failed")]
    Io(#[from] std::io::Error),
    /// The bytes break the protocol.
    #[error("{0}")]
    Malformed(String),
}

/// Writes the preamble.
pub fn write_preamble(w: &mut impl Write) -> std::io::Result<()> {
    let mut b = MAGIC.to_vec();
    b.extend_from_slice(&VERSION.to_le_bytes());
    w.write_all(&b)
}

/// Reads the preamble; returns the peer's version (the caller refuses another one).
pub fn read_preamble(r: &mut impl Read) -> Result<u32, WireError> {
    let mut b = [0u8; 12];
    r.read_exact(&mut b)?;
    if b[..8] != MAGIC {
        return Err(WireError::Malformed(format!(
            "it does not start with {:?} (got {:02x?})",
            "VMSCMIGR",
            &b[..8]
        )));
    }
    Ok(u32::from_le_bytes([b[8], b[9], b[10], b[11]]))
}

/// Writes one frame.
pub fn write_frame(w: &mut impl Write, tag: Tag, payload: &[u8]) -> std::io::Result<()> {
    let mut h = [0u8; 8];
    h[..4].copy_from_slice(&(tag as u32).to_le_bytes());
    h[4..].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    w.write_all(&h)?;
    w.write_all(payload)
}

/// Reads one frame into `buf` (reused between frames); checks its tag and its length
/// against the tag's bound before reading the payload.
pub fn read_frame(r: &mut impl Read, buf: &mut Vec<u8>) -> Result<Tag, WireError> {
    let mut h = [0u8; 8];
    r.read_exact(&mut h)?;
    let raw = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize;
    let tag = Tag::from_u32(raw).ok_or_else(|| WireError::Malformed(format!("unknown frame type {raw}")))?;
    if len > tag.max_len() {
        return Err(WireError::Malformed(format!(
            "a {tag:?} frame of {len} bytes (at most {} allowed)",
            tag.max_len()
        )));
    }
    buf.clear();
    buf.resize(len, 0);
    r.read_exact(buf)?;
    Ok(tag)
}

/// Encodes a PAGES payload from (page number, page bytes) pairs.
pub fn encode_pages(out: &mut Vec<u8>, pages: &[(u64, &[u8])]) {
    out.clear();
    out.extend_from_slice(&(pages.len() as u32).to_le_bytes());
    for (n, bytes) in pages {
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(bytes);
    }
}

/// Splits a PAGES payload into (page number, page bytes), checking its count, its length
/// and that every page lies below `pages` (the guest's RAM).
pub fn decode_pages(payload: &[u8], pages: u64) -> Result<Vec<(u64, &[u8])>, WireError> {
    let bad = |d: String| WireError::Malformed(d);
    let count = payload.get(..4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize);
    let count = count.ok_or_else(|| bad("a PAGES frame without a count".into()))?;
    if count > MAX_PAGES_PER_FRAME || payload.len() != 4 + count * (8 + PAGE) {
        return Err(bad(format!("a PAGES frame of {} bytes says it holds {count} pages", payload.len())));
    }
    let mut out = Vec::with_capacity(count);
    for rec in payload[4..].chunks_exact(8 + PAGE) {
        let n = u64::from_le_bytes(rec[..8].try_into().unwrap_or_default());
        if n >= pages {
            return Err(bad(format!("page {n} lies past the guest's {pages} pages of RAM")));
        }
        out.push((n, &rec[8..]));
    }
    Ok(out)
}

/// Encodes a STATE payload.
pub fn encode_state(name: &str, bytes: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(1 + name.len() + bytes.len());
    p.push(name.len() as u8);
    p.extend_from_slice(name.as_bytes());
    p.extend_from_slice(bytes);
    p
}

/// Splits a STATE payload into its section name (1-8 ASCII letters and digits) and bytes.
pub fn decode_state(payload: &[u8]) -> Result<(String, &[u8]), WireError> {
    let n = *payload.first().ok_or_else(|| WireError::Malformed("an empty STATE frame".into()))? as usize;
    let name =
        payload.get(1..1 + n).filter(|s| (1..=8).contains(&n) && s.iter().all(u8::is_ascii_alphanumeric));
    let name =
        name.ok_or_else(|| WireError::Malformed(format!("a STATE frame with a bad name of {n} bytes")))?;
    Ok((String::from_utf8_lossy(name).into_owned(), &payload[1 + n..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_lengths_are_bounded() {
        let mut wire = Vec::new();
        write_frame(&mut wire, Tag::Round, &7u32.to_le_bytes()).unwrap();
        let mut buf = Vec::new();
        assert_eq!(read_frame(&mut wire.as_slice(), &mut buf).unwrap(), Tag::Round);
        assert_eq!(buf, 7u32.to_le_bytes());
        // A READY frame claiming 1 GiB is refused before anything is read or allocated.
        let mut hostile = (Tag::Ready as u32).to_le_bytes().to_vec();
        hostile.extend_from_slice(&(1u32 << 30).to_le_bytes());
        let e = read_frame(&mut hostile.as_slice(), &mut buf).unwrap_err().to_string();
        assert!(e.contains("Ready") && e.contains("1073741824"), "{e}");
        let mut unknown = 99u32.to_le_bytes().to_vec();
        unknown.extend_from_slice(&0u32.to_le_bytes());
        assert!(read_frame(&mut unknown.as_slice(), &mut buf).unwrap_err().to_string().contains("99"));
    }

    #[test]
    fn pages_are_checked() {
        let page = [5u8; PAGE];
        let mut p = Vec::new();
        encode_pages(&mut p, &[(3, &page), (9, &page)]);
        let got = decode_pages(&p, 10).unwrap();
        assert_eq!(got.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [3, 9]);
        assert!(decode_pages(&p, 9).unwrap_err().to_string().contains("page 9"));
        assert!(decode_pages(&p[..p.len() - 1], 10).is_err(), "truncated");
        let mut lying = p.clone();
        lying[..4].copy_from_slice(&3u32.to_le_bytes());
        assert!(decode_pages(&lying, 10).is_err(), "count does not match the length");
        assert!(decode_pages(&[], 10).is_err());
    }

    #[test]
    fn state_names_are_checked() {
        let p = encode_state("vcpu0", b"abc");
        assert_eq!(decode_state(&p).unwrap(), ("vcpu0".to_string(), &b"abc"[..]));
        assert!(decode_state(&[9, b'a']).is_err());
        assert!(decode_state(&encode_state("../x", b"")).is_err());
        assert!(decode_state(&[]).is_err());
    }

    #[test]
    fn preamble_is_checked() {
        let mut w = Vec::new();
        write_preamble(&mut w).unwrap();
        assert_eq!(read_preamble(&mut w.as_slice()).unwrap(), VERSION);
        assert!(read_preamble(&mut &b"GET / HTTP/1.1\r\n"[..]).unwrap_err().to_string().contains("VMSCMIGR"));
    }
}
