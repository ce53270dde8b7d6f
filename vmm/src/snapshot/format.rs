//! The snapshot container: a header, a table of named sections with a CRC-32 each, and the
//! sections. Written to a temporary file in the target's directory, synced, renamed over
//! the target and the directory synced, so a reader sees the old file or the whole new one.
//! Read back with every bound checked before anything is allocated or trusted.
//!
//! ```text
//! offset 0   magic "VMSCSNAP" (8) · version u32 · section count u32 · table CRC u32 ·
//!            header CRC u32 (of the 20 bytes before it) · 8 reserved bytes
//! offset 32  section table: count × { name [u8; 8] (NUL padded) · offset u64 · length u64 ·
//!            CRC u32 · flags u32 }
//! then       the sections; the one flagged PAGE_ALIGNED starts on a 4 KiB boundary
//! ```
//! All integers are little-endian. A section's CRC covers its bytes, except that of the
//! `memory` section, which covers only the pages the `pagemap` lists (the others are holes
//! in the file and read as zero), so checking it reads what was written and nothing else.

use crc32fast::Hasher;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The first 8 bytes of every snapshot.
pub const MAGIC: [u8; 8] = *b"VMSCSNAP";
/// The format version this vmscope writes. Version 2 added Linux guests (the PIC, IOAPIC
/// and PIT records of `vm`, virtio devices and disks in `devices`, the `linux` guest kind);
/// version 1 files (unikernel and `--elf` guests) are a subset and are still read.
pub const VERSION: u32 = 2;
/// The oldest format version this vmscope reads.
pub const OLDEST_VERSION: u32 = 1;
/// Bytes before the section table.
pub const HEADER_LEN: u64 = 32;
/// Bytes per section-table entry.
pub const ENTRY_LEN: u64 = 32;
/// The most sections a snapshot may have (metadata, devices, debug state, VM, page map,
/// memory, and one per vCPU up to 32, with room to grow).
pub const MAX_SECTIONS: u32 = 64;
/// The largest section other than memory that a reader loads (the biggest is a vCPU's, a
/// few KiB with XSAVE and the MSRs).
pub const MAX_SMALL_SECTION: u64 = 16 << 20;
/// Section flag: the section starts on a page boundary and can be mapped.
pub const PAGE_ALIGNED: u32 = 1;
/// The page size of the memory section.
pub const PAGE: u64 = 4096;

/// Errors reading or writing the container.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The file could not be read, written, synced or renamed.
    #[error("{path}: cannot {what}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// Not a vmscope snapshot.
    #[error("{path} is not a vmscope snapshot (its first bytes are {found:02x?}, not \"VMSCSNAP\")")]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// What it starts with.
        found: Vec<u8>,
    },
    /// Written by a vmscope with another format version.
    #[error("{path} is snapshot format version {found}; this vmscope reads versions {OLDEST_VERSION} to {VERSION}{}", if *found > VERSION { " (it was written by a newer vmscope)" } else { "" })]
    BadVersion {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: u32,
    },
    /// The header or table is damaged, or a section lies outside the file.
    #[error("{path} is damaged: {detail}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What does not hold.
        detail: String,
    },
    /// A section's bytes do not match its CRC.
    #[error(
        "{path}: section {section:?} is corrupted (CRC-32 {found:#010x}, the table says {expected:#010x})"
    )]
    BadChecksum {
        /// The file.
        path: PathBuf,
        /// The section.
        section: String,
        /// The CRC of what is there.
        found: u32,
        /// The CRC that was written.
        expected: u32,
    },
}

/// One entry of the section table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SectionEntry {
    /// Its name (up to 8 ASCII bytes).
    pub name: String,
    /// Byte offset in the file.
    pub offset: u64,
    /// Length in bytes.
    pub length: u64,
    /// CRC-32 (IEEE) of the section (see the module doc for `memory`).
    pub crc: u32,
    /// [`PAGE_ALIGNED`] or 0.
    pub flags: u32,
}

fn io<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(std::io::Error) -> FormatError + 'a {
    move |source| FormatError::Io { path: path.to_path_buf(), what, source }
}

/// CRC-32 of `bytes`.
pub fn crc(bytes: &[u8]) -> u32 {
    let mut h = Hasher::new();
    h.update(bytes);
    h.finalize()
}

/// A snapshot being written: sections go to a temporary file next to the target, in order.
pub struct Writer {
    target: PathBuf,
    temp: PathBuf,
    file: File,
    pos: u64,
    entries: Vec<SectionEntry>,
    reserved: u32,
    sparse: Option<(String, Hasher)>,
}

impl Writer {
    /// Starts `target` with room for `sections` table entries. The temporary file is
    /// `.NAME.PID.tmp` in the same directory, created exclusively with mode 0600 (a snapshot
    /// holds all of guest memory).
    pub fn create(target: &Path, sections: u32) -> Result<Self, FormatError> {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = target.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let name = target.file_name().ok_or_else(|| FormatError::Damaged {
            path: target.to_path_buf(),
            detail: "a snapshot path must name a file".into(),
        })?;
        let temp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .map_err(io(&temp, "create the temporary file"))?;
        let sections = sections.min(MAX_SECTIONS);
        let pos = HEADER_LEN + ENTRY_LEN * u64::from(sections);
        Ok(Self {
            target: target.to_path_buf(),
            temp,
            file,
            pos,
            entries: Vec::new(),
            reserved: sections,
            sparse: None,
        })
    }

    /// Appends a section whose CRC covers all of `bytes`.
    pub fn section(&mut self, name: &str, bytes: &[u8]) -> Result<(), FormatError> {
        self.check_room(name)?;
        self.file.seek(SeekFrom::Start(self.pos)).map_err(io(&self.temp, "seek in"))?;
        self.file.write_all(bytes).map_err(io(&self.temp, "write"))?;
        self.finish(name, bytes.len() as u64, crc(bytes), 0);
        Ok(())
    }

    /// Starts a page-aligned section whose bytes are written piecewise with
    /// [`Writer::sparse_write`]; what is never written stays a hole (reads as zero).
    pub fn start_sparse(&mut self, name: &str) -> Result<(), FormatError> {
        self.check_room(name)?;
        self.pos = self.pos.div_ceil(PAGE) * PAGE;
        self.sparse = Some((name.to_string(), Hasher::new()));
        Ok(())
    }

    /// Writes `bytes` at `offset` in the open sparse section; the CRC covers the writes in
    /// order.
    pub fn sparse_write(&mut self, offset: u64, bytes: &[u8]) -> Result<(), FormatError> {
        self.file.seek(SeekFrom::Start(self.pos + offset)).map_err(io(&self.temp, "seek in"))?;
        self.file.write_all(bytes).map_err(io(&self.temp, "write"))?;
        if let Some((_, h)) = &mut self.sparse {
            h.update(bytes);
        }
        Ok(())
    }

    /// Ends the sparse section at `length` bytes.
    pub fn end_sparse(&mut self, length: u64) {
        if let Some((name, h)) = self.sparse.take() {
            self.finish(&name, length, h.finalize(), PAGE_ALIGNED);
        }
    }

    fn check_room(&self, name: &str) -> Result<(), FormatError> {
        if self.entries.len() as u32 >= self.reserved || name.len() > 8 {
            return Err(FormatError::Damaged {
                path: self.temp.clone(),
                detail: format!("section {name:?} does not fit the table of {}", self.reserved),
            });
        }
        Ok(())
    }

    fn finish(&mut self, name: &str, length: u64, crc: u32, flags: u32) {
        self.entries.push(SectionEntry { name: name.into(), offset: self.pos, length, crc, flags });
        self.pos += length;
    }

    /// Writes the header and table, extends the file over trailing holes, syncs it, renames
    /// it over the target and syncs the directory. Returns the table.
    pub fn commit(mut self) -> Result<Vec<SectionEntry>, FormatError> {
        let table = encode_table(&self.entries, self.reserved);
        let mut header = Vec::with_capacity(HEADER_LEN as usize);
        header.extend_from_slice(&MAGIC);
        header.extend_from_slice(&VERSION.to_le_bytes());
        header.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        header.extend_from_slice(&crc(&table).to_le_bytes());
        let hcrc = crc(&header);
        header.extend_from_slice(&hcrc.to_le_bytes());
        header.extend_from_slice(&[0u8; 8]);
        self.file.seek(SeekFrom::Start(0)).map_err(io(&self.temp, "seek in"))?;
        self.file.write_all(&header).map_err(io(&self.temp, "write"))?;
        self.file.write_all(&table).map_err(io(&self.temp, "write"))?;
        self.file.set_len(self.pos).map_err(io(&self.temp, "extend"))?;
        self.file.sync_all().map_err(io(&self.temp, "sync"))?;
        std::fs::rename(&self.temp, &self.target)
            .map_err(io(&self.target, "rename the temporary file to"))?;
        let dir = self.target.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir, "sync the directory"))?;
        Ok(std::mem::take(&mut self.entries))
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // After a failed write the temporary file goes; after commit it has been renamed.
        let _ = std::fs::remove_file(&self.temp);
    }
}

/// The table as written: `reserved` entries, unused ones zero (the table CRC covers only the
/// used ones, which the header counts).
fn encode_table(entries: &[SectionEntry], reserved: u32) -> Vec<u8> {
    let mut t = Vec::with_capacity((ENTRY_LEN * u64::from(reserved)) as usize);
    for e in entries {
        let mut name = [0u8; 8];
        name[..e.name.len().min(8)].copy_from_slice(&e.name.as_bytes()[..e.name.len().min(8)]);
        t.extend_from_slice(&name);
        t.extend_from_slice(&e.offset.to_le_bytes());
        t.extend_from_slice(&e.length.to_le_bytes());
        t.extend_from_slice(&e.crc.to_le_bytes());
        t.extend_from_slice(&e.flags.to_le_bytes());
    }
    t
}

/// An opened snapshot: the file and its checked table.
#[derive(Debug)]
pub struct Reader {
    /// The file's path.
    pub path: PathBuf,
    /// The open file.
    pub file: File,
    /// Its length.
    pub len: u64,
    /// The format version.
    pub version: u32,
    /// The sections.
    pub entries: Vec<SectionEntry>,
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or_default())
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or_default())
}

impl Reader {
    /// Opens `path` and checks magic, version, the header and table CRCs, and that every
    /// section lies inside the file without overlapping the header.
    pub fn open(path: &Path) -> Result<Self, FormatError> {
        let mut file = File::open(path).map_err(io(path, "open"))?;
        let len = file.metadata().map_err(io(path, "read the size of"))?.len();
        let damaged = |detail: String| FormatError::Damaged { path: path.to_path_buf(), detail };
        let mut header = [0u8; HEADER_LEN as usize];
        let got = read_up_to(&mut file, &mut header).map_err(io(path, "read"))?;
        if got < MAGIC.len() || header[..8] != MAGIC {
            return Err(FormatError::BadMagic {
                path: path.to_path_buf(),
                found: header[..got.min(8)].to_vec(),
            });
        }
        if got < HEADER_LEN as usize {
            return Err(damaged(format!(
                "the file ends after {got} bytes, inside the {HEADER_LEN}-byte header"
            )));
        }
        let version = le32(&header, 8);
        let hcrc = crc(&header[..20]);
        if hcrc != le32(&header, 20) {
            return Err(damaged(format!(
                "the header's CRC-32 is {:#010x}, its bytes give {hcrc:#010x}",
                le32(&header, 20)
            )));
        }
        if !(OLDEST_VERSION..=VERSION).contains(&version) {
            return Err(FormatError::BadVersion { path: path.to_path_buf(), found: version });
        }
        let count = le32(&header, 12);
        if count == 0 || count > MAX_SECTIONS {
            return Err(damaged(format!("{count} sections (a snapshot has 1 to {MAX_SECTIONS})")));
        }
        let table_len = ENTRY_LEN * u64::from(count);
        if HEADER_LEN + table_len > len {
            return Err(damaged(format!("the file ends at byte {len}, inside the section table")));
        }
        let mut table = vec![0u8; table_len as usize];
        file.read_exact(&mut table).map_err(io(path, "read"))?;
        let tcrc = crc(&table);
        if tcrc != le32(&header, 16) {
            return Err(damaged(format!(
                "the section table's CRC-32 is {:#010x}, its bytes give {tcrc:#010x}",
                le32(&header, 16)
            )));
        }
        let mut entries = Vec::with_capacity(count as usize);
        for chunk in table.chunks_exact(ENTRY_LEN as usize) {
            let raw_name = &chunk[..8];
            let name_len = raw_name.iter().position(|&b| b == 0).unwrap_or(8);
            let name = std::str::from_utf8(&raw_name[..name_len])
                .map_err(|_| damaged(format!("a section name is not ASCII: {raw_name:02x?}")))?
                .to_string();
            let e = SectionEntry {
                name,
                offset: le64(chunk, 8),
                length: le64(chunk, 16),
                crc: le32(chunk, 24),
                flags: le32(chunk, 28),
            };
            let end = e.offset.checked_add(e.length);
            if e.offset < HEADER_LEN + table_len || end.is_none_or(|end| end > len) {
                return Err(damaged(format!(
                    "section {:?} claims bytes {}..{} of a {len}-byte file (truncated?)",
                    e.name,
                    e.offset,
                    e.offset.saturating_add(e.length)
                )));
            }
            if e.flags & PAGE_ALIGNED != 0 && !e.offset.is_multiple_of(PAGE) {
                return Err(damaged(format!(
                    "section {:?} should start on a page but is at {}",
                    e.name, e.offset
                )));
            }
            entries.push(e);
        }
        Ok(Self { path: path.to_path_buf(), file, len, version, entries })
    }

    /// The entry named `name`.
    pub fn entry(&self, name: &str) -> Result<&SectionEntry, FormatError> {
        self.entries.iter().find(|e| e.name == name).ok_or_else(|| FormatError::Damaged {
            path: self.path.clone(),
            detail: format!("it has no {name:?} section"),
        })
    }

    /// Reads section `name` and checks its CRC.
    pub fn read(&mut self, name: &str) -> Result<Vec<u8>, FormatError> {
        let e = self.entry(name)?.clone();
        if e.length > MAX_SMALL_SECTION {
            return Err(FormatError::Damaged {
                path: self.path.clone(),
                detail: format!(
                    "section {name:?} is {} bytes, over the {MAX_SMALL_SECTION} a reader loads",
                    e.length
                ),
            });
        }
        let mut buf = vec![0u8; e.length as usize];
        self.file.seek(SeekFrom::Start(e.offset)).map_err(io(&self.path, "seek in"))?;
        self.file.read_exact(&mut buf).map_err(io(&self.path, "read"))?;
        let found = crc(&buf);
        if found != e.crc {
            return Err(FormatError::BadChecksum {
                path: self.path.clone(),
                section: name.into(),
                found,
                expected: e.crc,
            });
        }
        Ok(buf)
    }
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read(&mut buf[done..])? {
            0 => break,
            n => done += n,
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_sample(path: &Path) {
        let mut w = Writer::create(path, 4).unwrap();
        w.section("meta", b"{\"a\":1}").unwrap();
        let page = vec![7u8; PAGE as usize];
        w.start_sparse("memory").unwrap();
        w.sparse_write(PAGE, &page).unwrap();
        w.end_sparse(4 * PAGE);
        w.commit().unwrap();
    }

    #[test]
    fn round_trip_with_holes_and_checks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.vmsnap");
        write_sample(&path);
        let mut r = Reader::open(&path).unwrap();
        assert_eq!(r.read("meta").unwrap(), b"{\"a\":1}");
        let mem = r.entry("memory").unwrap().clone();
        assert_eq!(mem.offset % PAGE, 0);
        assert_eq!(mem.length, 4 * PAGE);
        assert_eq!(mem.flags, PAGE_ALIGNED);
        assert_eq!(mem.crc, crc(&vec![7u8; PAGE as usize]));
        assert_eq!(r.len, mem.offset + 4 * PAGE);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn damage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.vmsnap");
        write_sample(&path);
        let good = std::fs::read(&path).unwrap();
        let meta_at = Reader::open(&path).unwrap().entry("meta").unwrap().offset as usize;

        let mut bad = good.clone();
        bad[meta_at] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        let e = Reader::open(&path).unwrap().read("meta").unwrap_err();
        assert!(matches!(e, FormatError::BadChecksum { ref section, .. } if section == "meta"), "{e}");

        std::fs::write(&path, &good[..good.len() - 10]).unwrap();
        let e = Reader::open(&path).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");

        let mut newer = good.clone();
        newer[8] = 3;
        let h = crc(&newer[..20]);
        newer[20..24].copy_from_slice(&h.to_le_bytes());
        std::fs::write(&path, &newer).unwrap();
        let e = Reader::open(&path).unwrap_err();
        assert!(matches!(e, FormatError::BadVersion { found: 3, .. }));
        assert!(e.to_string().contains("reads versions 1 to 2 (it was written by a newer vmscope)"), "{e}");
        let mut old = good.clone();
        old[8] = 1;
        let h = crc(&old[..20]);
        old[20..24].copy_from_slice(&h.to_le_bytes());
        std::fs::write(&path, &old).unwrap();
        assert_eq!(Reader::open(&path).unwrap().version, 1, "version 1 files are still read");
        let mut zero = good.clone();
        zero[8] = 0;
        let h = crc(&zero[..20]);
        zero[20..24].copy_from_slice(&h.to_le_bytes());
        std::fs::write(&path, &zero).unwrap();
        assert!(!Reader::open(&path).unwrap_err().to_string().contains("newer"));

        std::fs::write(&path, b"hello").unwrap();
        assert!(matches!(Reader::open(&path).unwrap_err(), FormatError::BadMagic { .. }));

        let mut t = good.clone();
        t[HEADER_LEN as usize + 9] ^= 0x40;
        std::fs::write(&path, &t).unwrap();
        assert!(Reader::open(&path).unwrap_err().to_string().contains("section table"));
    }
}
