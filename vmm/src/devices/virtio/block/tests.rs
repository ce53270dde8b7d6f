use super::*;
use crate::devices::virtio::mmio::MmioTransport;
use crate::devices::virtio::test_driver::*;
use crate::devices::virtio::{status, VirtioDevice};
use vm_memory::{Bytes, GuestAddress};

const HEADER: u64 = BUFFERS;
const DATA: u64 = BUFFERS + 0x1000;
const STATUS: u64 = BUFFERS + 0x3000;

/// A disk image of `sectors` sectors where sector n is filled with byte n.
fn image(sectors: u64) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    for s in 0..sectors {
        f.write_all(&[s as u8; SECTOR_SIZE as usize]).unwrap();
    }
    f
}

fn driver(img: &tempfile::NamedTempFile, ro: bool) -> Driver {
    let mut d = Driver::new(Box::new(Block::open(img.path(), ro).unwrap()));
    d.setup();
    d
}

fn header(d: &Driver, kind: u32, sector: u64) {
    d.mem.write_obj(kind, GuestAddress(HEADER)).unwrap();
    d.mem.write_obj(0u32, GuestAddress(HEADER + 4)).unwrap();
    d.mem.write_obj(sector, GuestAddress(HEADER + 8)).unwrap();
    d.mem.write_obj(0xffu8, GuestAddress(STATUS)).unwrap();
}

fn status_byte(d: &Driver) -> u8 {
    d.mem.read_obj(GuestAddress(STATUS)).unwrap()
}

#[test]
fn open_checks_the_image() {
    assert!(matches!(Block::open(Path::new("/nonexistent/disk.img"), true), Err(BlockError::Open { .. })));
    let mut odd = tempfile::NamedTempFile::new().unwrap();
    odd.write_all(&[0; 100]).unwrap();
    let e = Block::open(odd.path(), true).err().unwrap();
    assert!(e.to_string().contains("multiple of 512"), "{e}");
    let b = Block::open(image(8).path(), true).unwrap();
    assert_eq!(b.capacity_sectors(), 8);
    assert_ne!(b.features() & (1 << VIRTIO_BLK_F_RO), 0);
    let mut cap = [0u8; 8];
    b.read_config(0, &mut cap);
    assert_eq!(u64::from_le_bytes(cap), 8);
}

#[test]
fn a_writable_image_is_locked_against_every_other_user() {
    let img = image(8);
    let locked = |r: Result<Block, BlockError>| matches!(r, Err(BlockError::Locked { .. }));
    let writer = Block::open(img.path(), false).unwrap();
    let e = Block::open(img.path(), false).err().unwrap();
    assert!(e.to_string().contains("is in use by another process"), "{e}");
    assert!(e.to_string().contains(&img.path().display().to_string()), "the error names the image: {e}");
    assert!(locked(Block::open(img.path(), true)), "no reader beside a writer");
    drop(writer);
    // Readers share the image; a writer waits until they are gone.
    let r1 = Block::open(img.path(), true).unwrap();
    let r2 = Block::open(img.path(), true).unwrap();
    assert!(locked(Block::open(img.path(), false)), "no writer beside readers");
    drop((r1, r2));
    assert!(Block::open(img.path(), false).is_ok(), "the locks go with the devices");
}

#[test]
fn reads_sectors() {
    let img = image(8);
    let mut d = driver(&img, true);
    header(&d, request::IN, 2);
    d.submit(&[(HEADER, 16, false), (DATA, 1024, true), (STATUS, 1, true)]);
    assert_eq!(status_byte(&d), reply::OK);
    assert_eq!(d.used_elem(0).1, 1025);
    let mut buf = [0u8; 1024];
    d.mem.read_slice(&mut buf, GuestAddress(DATA)).unwrap();
    assert!(buf[..512].iter().all(|&b| b == 2) && buf[512..].iter().all(|&b| b == 3));
}

#[test]
fn writes_then_reads_back_and_flushes() {
    let img = image(4);
    let mut d = driver(&img, false);
    d.mem.write_slice(&[0x5a; 512], GuestAddress(DATA)).unwrap();
    header(&d, request::OUT, 3);
    d.submit(&[(HEADER, 16, false), (DATA, 512, false), (STATUS, 1, true)]);
    assert_eq!(status_byte(&d), reply::OK);
    assert_eq!(d.used_elem(0).1, 1);
    let on_disk = std::fs::read(img.path()).unwrap();
    assert!(on_disk[3 * 512..].iter().all(|&b| b == 0x5a));
    header(&d, request::FLUSH, 0);
    d.submit(&[(HEADER, 16, false), (STATUS, 1, true)]);
    assert_eq!(status_byte(&d), reply::OK);
    let counters = d.transport.device().counters();
    assert!(counters.contains(&("writes", 1)) && counters.contains(&("flushes", 1)));
}

#[test]
fn refuses_bad_requests() {
    let img = image(4);
    let mut d = driver(&img, true);
    header(&d, request::OUT, 0);
    d.submit(&[(HEADER, 16, false), (DATA, 512, false), (STATUS, 1, true)]);
    assert_eq!(status_byte(&d), reply::IOERR, "write to a read-only disk");
    header(&d, request::IN, 3);
    d.submit(&[(HEADER, 16, false), (DATA, 1024, true), (STATUS, 1, true)]);
    assert_eq!(status_byte(&d), reply::IOERR, "read past the end");
    header(&d, request::IN, u64::MAX);
    d.submit(&[(HEADER, 16, false), (DATA, 512, true), (STATUS, 1, true)]);
    assert_eq!(status_byte(&d), reply::IOERR, "sector overflow");
    header(&d, request::IN, 0);
    d.submit(&[(HEADER, 16, false), (DATA, 100, true), (STATUS, 1, true)]);
    assert_eq!(status_byte(&d), reply::IOERR, "not whole sectors");
    header(&d, 99, 0);
    d.submit(&[(HEADER, 16, false), (STATUS, 1, true)]);
    assert_eq!(status_byte(&d), reply::UNSUPP);
    header(&d, request::GET_ID, 0);
    d.submit(&[(HEADER, 16, false), (DATA, 20, true), (STATUS, 1, true)]);
    assert_eq!(status_byte(&d), reply::OK);
    let mut id = [0u8; 8];
    d.mem.read_slice(&mut id, GuestAddress(DATA)).unwrap();
    assert_eq!(&id, b"vmscope-");
    assert_eq!(d.used_idx(), 6);
}

#[test]
fn survives_hostile_chains() {
    let img = image(4);
    let mut d = driver(&img, false);
    // No status byte: used with length 0.
    header(&d, request::IN, 0);
    d.submit(&[(HEADER, 16, false)]);
    assert_eq!(d.used_elem(0).1, 0);
    // A short header.
    d.submit(&[(HEADER, 8, false), (STATUS, 1, true)]);
    assert_eq!(d.used_elem(1).1, 0);
    // A buffer outside guest memory.
    d.submit(&[(HEADER, 16, false), (0xffff_0000_0000, 512, true), (STATUS, 1, true)]);
    // A chain that loops on itself.
    d.write_desc(10, HEADER, 16, NEXT, 11);
    d.write_desc(11, DATA, 512, NEXT | WRITE, 10);
    d.make_available(10);
    d.notify();
    assert_eq!(d.read32(0x70) & status::DEVICE_NEEDS_RESET, 0, "bad chains are not a broken queue");
    let errors = d.transport.device().counters().into_iter().find(|(n, _)| *n == "errors").unwrap().1;
    assert!(errors >= 3, "{errors}");
}

#[test]
fn a_head_beyond_the_queue_breaks_it() {
    let img = image(4);
    let mut d = driver(&img, false);
    d.make_available(DRIVER_QUEUE_SIZE + 3);
    d.notify();
    assert_ne!(d.read32(0x70) & status::DEVICE_NEEDS_RESET, 0, "no used entry can name that head");
}

#[test]
fn a_runaway_avail_index_breaks_the_queue() {
    let img = image(4);
    let mut d = driver(&img, false);
    d.mem.write_obj(1000u16, GuestAddress(AVAIL_RING + 2)).unwrap();
    d.notify();
    assert_ne!(d.read32(0x70) & status::DEVICE_NEEDS_RESET, 0);
}

#[test]
fn transport_reports_the_layout() {
    let img = image(4);
    let d = driver(&img, false);
    let t: &MmioTransport = &d.transport;
    let l = t.queue_layout(0).unwrap();
    assert_eq!(
        (l.size, l.desc_table.0, l.avail_ring.0, l.used_ring.0),
        (DRIVER_QUEUE_SIZE, DESC_TABLE, AVAIL_RING, USED_RING)
    );
}

#[test]
fn flush_is_offered_and_a_failed_write_or_flush_is_an_ioerr() {
    let img = image(4);
    let mut block = Block::open(img.path(), false).unwrap();
    assert_ne!(block.features() & (1 << VIRTIO_BLK_F_FLUSH), 0, "VIRTIO_BLK_F_FLUSH is offered");
    // The host refuses the write (the image's descriptor is read-only under the device):
    // the driver must see IOERR, never OK, and the file must be unchanged.
    block.file = std::fs::File::open(img.path()).unwrap();
    let mut d = Driver::new(Box::new(block));
    d.setup();
    d.mem.write_slice(&[0x5a; 512], GuestAddress(DATA)).unwrap();
    header(&d, request::OUT, 1);
    d.submit(&[(HEADER, 16, false), (DATA, 512, false), (STATUS, 1, true)]);
    assert_eq!(status_byte(&d), reply::IOERR, "a failed pwrite");
    assert!(std::fs::read(img.path()).unwrap()[512..1024].iter().all(|&b| b == 1));

    // fdatasync fails (a pipe cannot be synced): FLUSH completes with IOERR.
    let mut block = Block::open(image(4).path(), false).unwrap();
    let (reader, _writer) = std::io::pipe().unwrap();
    block.file = std::fs::File::from(std::os::fd::OwnedFd::from(reader));
    let mut d = Driver::new(Box::new(block));
    d.setup();
    header(&d, request::FLUSH, 0);
    d.submit(&[(HEADER, 16, false), (STATUS, 1, true)]);
    assert_eq!(status_byte(&d), reply::IOERR, "a failed fdatasync");
    assert!(d.transport.device().counters().contains(&("errors", 1)));
}

/// A driver on another vCPU rewriting descriptors (and the available ring) while the device
/// walks them: whatever the interleaving, the device stays within the queue and the disk,
/// never completes more requests than were offered, and never panics.
#[test]
fn a_chain_rewritten_while_the_device_reads_it_stays_bounded() {
    use std::sync::atomic::{AtomicBool, Ordering};
    const SECTORS: u64 = 4;
    const ROUNDS: u16 = 2000;
    let img = image(SECTORS);
    let mut d = driver(&img, false);
    let (mem, stop) = (d.mem.clone(), std::sync::Arc::new(AtomicBool::new(false)));
    let racer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
            let mut rewrites = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // xorshift64: cheap, deterministic per step.
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let index = x % u64::from(DRIVER_QUEUE_SIZE);
                let at = DESC_TABLE + index * 16;
                let addr = [HEADER, DATA, STATUS, (4 << 20) - 8, x >> 8][(x >> 60) as usize % 5];
                let len = [16u32, 512, 1, u32::MAX, (x >> 32) as u32][(x >> 56) as usize % 5];
                let flags = (x >> 40) as u16 & 0x7; // NEXT, WRITE, INDIRECT in any mix
                let next = (x >> 48) as u16 % (2 * DRIVER_QUEUE_SIZE);
                let _ = mem.write_obj(addr, GuestAddress(at));
                let _ = mem.write_obj(len, GuestAddress(at + 8));
                let _ = mem.write_obj(flags, GuestAddress(at + 12));
                let _ = mem.write_obj(next, GuestAddress(at + 14));
                if x & 0xf == 0 {
                    // An available-ring slot too (never the index: that is the driver's).
                    let slot = (x >> 4) % u64::from(DRIVER_QUEUE_SIZE);
                    let _ = mem.write_obj((x >> 20) as u16, GuestAddress(AVAIL_RING + 4 + slot * 2));
                }
                rewrites += 1;
            }
            rewrites
        })
    };
    let start = d.used_idx();
    for round in 0..ROUNDS {
        let kind = if round % 2 == 0 { request::OUT } else { request::IN };
        header(&d, kind, u64::from(round) % SECTORS);
        d.submit(&[(HEADER, 16, false), (DATA, 512, kind == request::IN), (STATUS, 1, true)]);
    }
    stop.store(true, Ordering::Relaxed);
    let rewrites = racer.join().expect("the racing driver thread");
    assert!(rewrites > 0);
    // Never more completions than offers (a broken queue completes fewer).
    let done = d.used_idx().wrapping_sub(start);
    assert!(done <= ROUNDS, "{done} completions for {ROUNDS} requests");
    // Every completion's length is within what one request can write (data + status).
    for slot in 0..DRIVER_QUEUE_SIZE.min(done) {
        let (id, len) = d.used_elem(slot);
        assert!(id < u32::from(DRIVER_QUEUE_SIZE), "used id {id} outside the queue");
        assert!(u64::from(len) <= SECTORS * SECTOR_SIZE + 1, "used length {len}");
    }
    // Nothing was written outside the disk.
    assert_eq!(std::fs::metadata(img.path()).unwrap().len(), SECTORS * SECTOR_SIZE);
}
