//! virtio-blk (virtio 1.2, 5.2) over a host file: one request queue; `IN`, `OUT`, `FLUSH`
//! and `GET_ID` requests; everything else is answered `UNSUPP`.

use super::{QueueOutcome, VirtioDevice, VIRTIO_F_VERSION_1, VIRTIO_ID_BLOCK};
use crate::vstate::memory::GuestMemory;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};

/// Bytes per sector: the unit of `sector` and `capacity`.
pub const SECTOR_SIZE: u64 = 512;
/// Entries in the request queue.
pub const QUEUE_SIZE: u16 = 256;
/// Bytes of the ID string `GET_ID` returns.
pub const ID_BYTES: usize = virtio_bindings::virtio_blk::VIRTIO_BLK_ID_BYTES as usize;

pub use virtio_bindings::virtio_blk::{VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO};

/// Request types (5.2.6).
mod request {
    pub use virtio_bindings::virtio_blk::{
        VIRTIO_BLK_T_FLUSH as FLUSH, VIRTIO_BLK_T_GET_ID as GET_ID, VIRTIO_BLK_T_IN as IN,
        VIRTIO_BLK_T_OUT as OUT,
    };
}

/// Status the device writes into a request's last byte (5.2.6).
mod reply {
    use virtio_bindings::virtio_blk as blk;

    pub const OK: u8 = blk::VIRTIO_BLK_S_OK as u8;
    pub const IOERR: u8 = blk::VIRTIO_BLK_S_IOERR as u8;
    pub const UNSUPP: u8 = blk::VIRTIO_BLK_S_UNSUPP as u8;
}

/// Size of `struct virtio_blk_req`'s header: type, reserved, sector.
const HEADER_BYTES: usize = 16;
/// Data moves between the file and guest memory in pieces of this size.
const CHUNK: usize = 64 << 10;

/// Errors from opening a disk image.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// The image could not be opened.
    #[error("cannot open disk image {path}")]
    Open {
        /// The image.
        path: PathBuf,
        /// The operating system's error (errno), shown as the cause.
        #[source]
        source: std::io::Error,
    },
    /// Another process holds a lock on the image that conflicts with this one: an exclusive
    /// lock for a writable disk, a shared one for `,ro` (several readers may share an image).
    #[error("disk image {path} is in use by another process, or attached twice ({held}): stop the other user first{hint}")]
    Locked {
        /// The image.
        path: PathBuf,
        /// Which lock is held, in words.
        held: &'static str,
        /// What else the user can do.
        hint: &'static str,
    },
    /// The image is not a whole number of sectors.
    #[error("disk image {path} is {len} bytes: a disk must be a non-empty multiple of 512 bytes")]
    BadSize {
        /// The image.
        path: PathBuf,
        /// Its length.
        len: u64,
    },
}

/// A disk image as a snapshot remembers it: where it is, and what tells a changed or
/// replaced image apart (its size, the file it is — device and inode — and when its data
/// last changed). A guest's file system cache and the image must match, or the file system
/// is corrupted: a restore checks all of these before anything runs.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DiskIdentity {
    /// The image (absolute).
    pub path: PathBuf,
    /// Attached read-only.
    pub read_only: bool,
    /// Length in bytes.
    pub size: u64,
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
    /// `st_mtime` in nanoseconds since the epoch.
    pub mtime_ns: i128,
}

impl DiskIdentity {
    /// The first way `now` differs from `self`, in words; `None` if it is the same image.
    pub fn difference(&self, now: &DiskIdentity) -> Option<String> {
        if self.size != now.size {
            return Some(format!("its size is {} bytes, it was {} bytes", now.size, self.size));
        }
        if (self.dev, self.ino) != (now.dev, now.ino) {
            return Some(format!(
                "it is another file (device {:#x} inode {}, it was device {:#x} inode {})",
                now.dev, now.ino, self.dev, self.ino
            ));
        }
        if self.mtime_ns != now.mtime_ns {
            return Some("it was modified after the snapshot (its modification time changed)".into());
        }
        None
    }
}

/// Request counters.
#[derive(Clone, Copy, Debug, Default)]
struct Counters {
    reads: u64,
    writes: u64,
    flushes: u64,
    bytes_read: u64,
    bytes_written: u64,
    errors: u64,
    unsupported: u64,
}

/// A virtio block device backed by a file.
pub struct Block {
    file: File,
    path: PathBuf,
    read_only: bool,
    capacity_sectors: u64,
    id: [u8; ID_BYTES],
    counters: Counters,
}

impl Block {
    /// Opens `path` as a disk (read-only if `read_only`).
    pub fn open(path: &Path, read_only: bool) -> Result<Self, BlockError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)
            .map_err(|source| BlockError::Open { path: path.into(), source })?;
        // Like QEMU's image locking: a writer excludes every other user of the image, readers
        // share it. flock(2) locks go with the open file, so they last as long as the device.
        let locked = if read_only { file.try_lock_shared() } else { file.try_lock() };
        match locked {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(BlockError::Locked {
                    path: path.into(),
                    held: if read_only { "it is attached writable" } else { "it is attached" },
                    hint: if read_only { "" } else { ", or attach it read-only (,ro) if both only read" },
                })
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(BlockError::Open { path: path.into(), source })
            }
        }
        let len = file.metadata().map_err(|source| BlockError::Open { path: path.into(), source })?.len();
        if len == 0 || !len.is_multiple_of(SECTOR_SIZE) {
            return Err(BlockError::BadSize { path: path.into(), len });
        }
        let mut id = [0u8; ID_BYTES];
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let serial = format!("vmscope-{name}");
        let n = serial.len().min(ID_BYTES);
        id[..n].copy_from_slice(&serial.as_bytes()[..n]);
        // The absolute path, so a snapshot restored from another directory finds the image.
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        Ok(Self {
            file,
            path,
            read_only,
            capacity_sectors: len / SECTOR_SIZE,
            id,
            counters: Counters::default(),
        })
    }

    /// What identifies the image now (for a snapshot, which refuses to go on with another).
    pub fn identity(&self) -> std::io::Result<DiskIdentity> {
        use std::os::unix::fs::MetadataExt;
        let m = self.file.metadata()?;
        Ok(DiskIdentity {
            path: self.path.clone(),
            read_only: self.read_only,
            size: m.len(),
            dev: m.dev(),
            ino: m.ino(),
            mtime_ns: m.mtime() as i128 * 1_000_000_000 + i128::from(m.mtime_nsec()),
        })
    }

    /// The disk's size in sectors.
    pub fn capacity_sectors(&self) -> u64 {
        self.capacity_sectors
    }

    /// Handles one request chain; returns the bytes written into the chain's writable part.
    fn handle(&mut self, chain: &DescriptorChain<&GuestMemory>, mem: &GuestMemory) -> Result<u32, ()> {
        let mut reader = chain.clone().reader(mem).map_err(|_| ())?;
        let mut writer = chain.clone().writer(mem).map_err(|_| ())?;
        // The status byte is the last writable byte; everything before it is data (IN).
        let writable = writer.available_bytes();
        if writable == 0 {
            return Err(());
        }
        let mut status_writer = writer.split_at(writable - 1).map_err(|_| ())?;
        let mut header = [0u8; HEADER_BYTES];
        if reader.read_exact(&mut header).is_err() {
            return Err(());
        }
        let kind = u32::from_le_bytes(header[0..4].try_into().unwrap_or_default());
        let sector = u64::from_le_bytes(header[8..16].try_into().unwrap_or_default());
        let (status, data_written) = match kind {
            request::IN => self.read_sectors(sector, &mut writer),
            request::OUT => (self.write_sectors(sector, &mut reader), 0),
            request::FLUSH => (self.flush(), 0),
            request::GET_ID => {
                let n = writer.available_bytes().min(ID_BYTES);
                match writer.write_all(&self.id[..n]) {
                    Ok(()) => (reply::OK, n),
                    Err(_) => (reply::IOERR, 0),
                }
            }
            _ => {
                self.counters.unsupported += 1;
                (reply::UNSUPP, 0)
            }
        };
        if status == reply::IOERR {
            self.counters.errors += 1;
        }
        status_writer.write_all(&[status]).map_err(|_| ())?;
        Ok(u32::try_from(data_written + 1).unwrap_or(u32::MAX))
    }

    /// The byte range `[sector * 512, + len)` if it lies inside the disk.
    fn range(&self, sector: u64, len: usize) -> Option<u64> {
        let len = len as u64;
        if !len.is_multiple_of(SECTOR_SIZE) {
            return None;
        }
        let end = sector.checked_add(len / SECTOR_SIZE)?;
        (end <= self.capacity_sectors).then(|| sector * SECTOR_SIZE)
    }

    fn read_sectors(&mut self, sector: u64, writer: &mut virtio_queue::Writer<'_, ()>) -> (u8, usize) {
        let len = writer.available_bytes();
        let Some(mut offset) = self.range(sector, len) else {
            return (reply::IOERR, 0);
        };
        let mut buf = vec![0u8; len.min(CHUNK)];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(CHUNK);
            if self.file.read_exact_at(&mut buf[..n], offset).is_err() || writer.write_all(&buf[..n]).is_err()
            {
                return (reply::IOERR, done);
            }
            done += n;
            offset += n as u64;
        }
        self.counters.reads += 1;
        self.counters.bytes_read += len as u64;
        (reply::OK, done)
    }

    fn write_sectors(&mut self, sector: u64, reader: &mut virtio_queue::Reader<'_, ()>) -> u8 {
        if self.read_only {
            return reply::IOERR;
        }
        let len = reader.available_bytes();
        let Some(mut offset) = self.range(sector, len) else {
            return reply::IOERR;
        };
        let mut buf = vec![0u8; len.min(CHUNK)];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(CHUNK);
            if reader.read_exact(&mut buf[..n]).is_err() || self.file.write_all_at(&buf[..n], offset).is_err()
            {
                return reply::IOERR;
            }
            done += n;
            offset += n as u64;
        }
        self.counters.writes += 1;
        self.counters.bytes_written += len as u64;
        reply::OK
    }

    fn flush(&mut self) -> u8 {
        self.counters.flushes += 1;
        if self.read_only {
            return reply::OK;
        }
        match self.file.sync_data() {
            Ok(()) => reply::OK,
            Err(_) => reply::IOERR,
        }
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_BLOCK
    }

    fn name(&self) -> &str {
        "blk"
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn disk_identity(&self) -> Option<std::io::Result<DiskIdentity>> {
        Some(self.identity())
    }

    fn features(&self) -> u64 {
        let mut f = (1u64 << VIRTIO_F_VERSION_1) | (1 << VIRTIO_BLK_F_FLUSH);
        if self.read_only {
            f |= 1 << VIRTIO_BLK_F_RO;
        }
        f
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // struct virtio_blk_config starts with `le64 capacity`; the rest stays zero because
        // no feature that would give it meaning is offered.
        let mut config = [0u8; 8];
        config.copy_from_slice(&self.capacity_sectors.to_le_bytes());
        for (i, b) in data.iter_mut().enumerate() {
            *b = usize::try_from(offset).ok().and_then(|o| config.get(o + i)).copied().unwrap_or(0);
        }
    }

    fn write_config(&mut self, _offset: u64, _data: &[u8]) -> bool {
        // Every field offered (capacity) is read-only.
        false
    }

    fn process_queue(&mut self, _index: usize, queue: &mut Queue, mem: &GuestMemory) -> QueueOutcome {
        let mut outcome = QueueOutcome::default();
        if !queue.is_valid(mem) {
            outcome.broken = true;
            return outcome;
        }
        loop {
            let chain = match queue.iter(mem) {
                Ok(mut it) => it.next(),
                Err(e) => {
                    tracing::warn!("virtio-blk: bad available ring: {e}");
                    outcome.broken = true;
                    break;
                }
            };
            let Some(chain) = chain else { break };
            let head = chain.head_index();
            let len = match self.handle(&chain, mem) {
                Ok(len) => len,
                Err(()) => {
                    // A chain without a header or status byte cannot be answered; give it
                    // back unused so the driver sees it completed.
                    self.counters.errors += 1;
                    0
                }
            };
            if queue.add_used(mem, head, len).is_err() {
                outcome.broken = true;
                break;
            }
            outcome.used += 1;
        }
        outcome.notify = outcome.used > 0 && queue.needs_notification(mem).unwrap_or(true);
        outcome
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let c = self.counters;
        vec![
            ("reads", c.reads),
            ("writes", c.writes),
            ("flushes", c.flushes),
            ("bytes read", c.bytes_read),
            ("bytes written", c.bytes_written),
            ("errors", c.errors),
            ("unsupported", c.unsupported),
        ]
    }
}

#[cfg(test)]
mod tests;
