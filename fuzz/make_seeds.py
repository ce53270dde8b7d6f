#!/usr/bin/env python3
"""Writes the hand-made seeds of fuzz/corpus/ (the input layouts are in fuzz/README.md).

The seeds taken from real inputs (the unikernel ELF, a cpio archive written by
guests::cpio::CpioWriter, the lab texts) are copied in by hand; see the README.
Run from anywhere: python3 fuzz/make_seeds.py
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def put(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


class Mem:
    def __init__(self, size):
        self.b = bytearray(size)

    def w(self, at, data):
        self.b[at:at + len(data)] = data

    def u16(self, at, v):
        self.w(at, struct.pack("<H", v))

    def u32(self, at, v):
        self.w(at, struct.pack("<I", v))

    def u64(self, at, v):
        self.w(at, struct.pack("<Q", v))


# ---- virtqueue: base u64 | size u16 | desc u64 | avail u64 | used u64 | flags u8 | memory
NEXT, WRITE, INDIRECT = 1, 2, 4


def desc(m, table, i, addr, length, flags, nxt):
    m.w(table + 16 * i, struct.pack("<QIHH", addr, length, flags, nxt))


def vq(name, size, event_idx, build):
    m = Mem(0x600)
    build(m)
    head = struct.pack("<QHQQQB", 0, size, 0x000, 0x100, 0x200, 1 if event_idx else 0)
    put("virtqueue", name, head + bytes(m.b))


def vq_chains(m):
    desc(m, 0, 0, 0x300, 16, NEXT, 1)
    desc(m, 0, 1, 0x310, 0x100, NEXT | WRITE, 2)
    desc(m, 0, 2, 0x410, 1, WRITE, 0)
    desc(m, 0, 3, 0x500, 48, INDIRECT, 0)
    desc(m, 0x500, 0, 0x300, 16, NEXT, 1)
    desc(m, 0x500, 1, 0x310, 0x100, NEXT | WRITE, 2)
    desc(m, 0x500, 2, 0x410, 1, WRITE, 0)
    m.u16(0x102, 2)  # avail.idx
    m.u16(0x104, 0)
    m.u16(0x106, 3)


def vq_event(m):
    vq_chains(m)
    m.u16(0x202, 1)  # used.idx: the first chain is done
    m.u32(0x204, 0)
    m.u32(0x208, 0x101)
    m.u16(0x104 + 2 * 8, 1)  # used_event
    m.u16(0x204 + 8 * 8, 2)  # avail_event


def vq_loop(m):
    desc(m, 0, 0, 0x300, 16, NEXT, 1)
    desc(m, 0, 1, 0x310, 16, NEXT, 0)
    desc(m, 0, 4, 0x500, 32, INDIRECT | NEXT, 0)
    m.u16(0x102, 0xfff0)  # far ahead of used.idx
    m.u16(0x104, 0)
    m.u16(0x106, 4)
    m.u16(0x108, 9)


vq("chains", 8, False, vq_chains)
vq("event-idx", 8, True, vq_event)
vq("loop-and-bad-indices", 8, False, vq_loop)

# ---- paging: base u64 | cr0 cr3 cr4 efer u64 | maxphyaddr u8 | 4 x gva u64 | memory
PG_PE = 0x8000_0001
PAE, PSE, LA57 = 0x20, 0x10, 0x1000
LME_LMA_NXE = 0x100 | 0x400 | 0x800


def paging(name, cr0, cr3, cr4, efer, gvas, m, maxphy=0):
    head = struct.pack("<QQQQQB4Q", 0, cr0, cr3, cr4, efer, maxphy, *gvas)
    put("paging", name, head + bytes(m.b))


def long_tables(m):
    m.u64(0x1000, 0x2000 | 7)
    m.u64(0x2000, 0x3000 | 7)
    m.u64(0x2008, 0x4000_0000 | 0x83)  # 1 GiB page
    m.u64(0x3000, 0x4000 | 3)
    m.u64(0x3008, 0x20_0000 | 0x83)  # 2 MiB page
    for i in range(4):
        m.u64(0x4000 + 8 * i, (i * 0x1000) | 3)
    m.u64(0x4000 + 8 * 5, 0x5000 | 1 | (1 << 63))
    m.u64(0x4000 + 8 * 6, 0x6000 | 1 | (1 << 51))  # reserved bit


gvas64 = [0x1234, 0x20_1000, 0x4000_0000, 0xffff_8000_0000_0000]
m = Mem(0x6000)
long_tables(m)
paging("long4", PG_PE, 0x1000, PAE, LME_LMA_NXE, gvas64, m)
m5 = Mem(0x6000)
long_tables(m5)
m5.u64(0x5000, 0x1000 | 7)
paging("long5", PG_PE, 0x5000, PAE | LA57, LME_LMA_NXE, [0x1234, 0x5000, 0x0100_0000_0000_0000, 1 << 56], m5, 46)
loop = Mem(0x2000)
loop.u64(0x1000, 0x1000 | 7)
loop.u64(0x1008, 0x1000 | 7)
loop.u64(0x1ff8, 0x9000_0000 | 7)  # a table outside memory
paging("long4-loop", PG_PE, 0x1000, PAE, LME_LMA_NXE, [0, 0x80_0000_0000, 0x7f80_0000_0000, 0x1000], loop)
pae = Mem(0x4000)
pae.u64(0x1000, 0x2000 | 1)
pae.u64(0x2000, 0x3000 | 3)
pae.u64(0x2008, 0x20_0000 | 0x83)
pae.u64(0x3000, 0x1000 | 3)
pae.u64(0x3008, 0x2000 | 1 | (1 << 63))
paging("pae", PG_PE, 0x1000, PAE, 0x800, [0x0, 0x1008, 0x20_0000, 0x1_0000_0000], pae)
b32 = Mem(0x3000)
b32.u32(0x1000, 0x2000 | 3)
b32.u32(0x1004, 0x40_0000 | 0x83 | (0x12 << 13))  # 4 MiB page, PSE-36 bits
b32.u32(0x2000, 0x1000 | 7)
paging("bits32", PG_PE, 0x1000, PSE, 0, [0x10, 0x40_1234, 0xffff_ffff, 0x1_0000_0000], b32)
paging("paging-off", 0x1, 0, 0, 0, [0x1234, 0, 0, 0], Mem(0x100))

# ---- loaders: flags u8 | initrd length u16 | initrd | kernel
# flags bits 0-1: 0 check_elf, 1 elf_guest::setup, 2/3 linux::setup; bits 2-3 BootChoice
# (linux) or ring 3 (bit 2, elf_guest); bit 4: with the initrd.


def elf(entry, segments, sections=(), machine=62):
    """A little ELF64: segments are (p_type, p_flags, paddr, data, memsz)."""
    phoff, ph = 64, 56
    off = phoff + ph * len(segments)
    phdrs, blobs = b"", b""
    for (ptype, pflags, paddr, data, memsz) in segments:
        phdrs += struct.pack("<IIQQQQQQ", ptype, pflags, off + len(blobs), paddr, paddr, len(data), memsz, 8)
        blobs += data + b"\0" * (-len(data) % 8)
    body = phdrs + blobs
    shoff = shnum = shstrndx = 0
    shdrs = b""
    if sections:
        names = b"\0" + b"".join(n.encode() + b"\0" for n in sections) + b".shstrtab\0"
        strtab_off = 64 + len(body)
        body += names + b"\0" * (-len(names) % 8)
        shoff = 64 + len(body)
        shdrs = b"\0" * 64
        pos = 1
        for n in sections:
            shdrs += struct.pack("<IIQQQQIIQQ", pos, 1, 6, 0, 0, 0, 0, 0, 1, 0)
            pos += len(n) + 1
        shdrs += struct.pack("<IIQQQQIIQQ", pos, 3, 0, 0, strtab_off, len(names), 0, 0, 1, 0)
        shnum, shstrndx = len(sections) + 2, len(sections) + 1
    ident = b"\x7fELF\x02\x01\x01" + b"\0" * 9
    hdr = ident + struct.pack("<HHIQQQIHHHHHH", 2, machine, 1, entry, phoff if segments else 0, shoff, 0, 64,
                              ph, len(segments), 64, shnum, shstrndx)
    return hdr + body + shdrs


PT_LOAD, PT_NOTE = 1, 4
code = b"\xf4" * 16
pvh_note = struct.pack("<III", 4, 4, 18) + b"Xen\0" + struct.pack("<I", 0x10_0000)
cpio_path = os.path.join(HERE, "corpus", "cpio", "initramfs-cpiowriter.cpio")
initrd = open(cpio_path, "rb").read() if os.path.exists(cpio_path) else b"070701" + b"0" * 104


def loader(name, flags, kernel, rd=b""):
    put("loaders", name, struct.pack("<BH", flags, len(rd)) + rd + kernel)


tiny = elf(0x10_0000, [(PT_LOAD, 5, 0x10_0000, code, 0x2000)])
loader("tiny-elf-check", 0, tiny)
loader("tiny-elf-guest-ring3", 1 | 4, tiny)
pvh = elf(0x10_0000, [(PT_LOAD, 5, 0x10_0000, code, 0x1000), (PT_NOTE, 4, 0, pvh_note, len(pvh_note))])
loader("vmlinux-pvh-initrd", 2 | 0x10, pvh, initrd)
loader("vmlinux-pvh-linux64", 2 | (2 << 2), pvh)
vml = elf(0x100_0000, [(PT_LOAD, 5, 0x100_0000, code, 0x1000)], [".text", ".init.text", ".altinstructions"])
loader("vmlinux-sections", 2, vml)
loader("vmlinux-sections-pvh-only", 2 | (1 << 2), vml)
bz = bytearray(0x1400)
bz[0x1f1] = 1  # setup_sects
bz[0x1fe:0x200] = b"\x55\xaa"
bz[0x202:0x206] = b"HdrS"
struct.pack_into("<H", bz, 0x206, 0x020f)  # protocol version
bz[0x211] = 1  # loadflags: LOADED_HIGH
struct.pack_into("<I", bz, 0x214, 0x10_0000)  # code32_start
struct.pack_into("<I", bz, 0x22c, 0x7fff_ffff)  # initrd_addr_max
bz[0x400:0x410] = code
loader("bzimage", 2, bytes(bz))
loader("bzimage-initrd", 3 | 0x10, bytes(bz), initrd)

# ---- virtio_blk: flags u8 (bit 0 set up, bit 1 read-only) | operations (see the target)


def req(type_, sector, data_len):
    return struct.pack("<BBHH", 7, type_, sector, data_len)


def vdesc(index, off, length, flags, nxt):  # addr selector 0: BUFFERS + off
    return struct.pack("<BHBHIHH", 4, index, 0, off, length, flags, nxt)


put("virtio_blk", "requests", b"\x01" + req(0, 0, 512) + req(1, 1, 512) + req(4, 0, 0) + req(8, 0, 20)
    + req(3, 0, 16) + req(0, 200, 512) + req(0, 0, 0xffff))
put("virtio_blk", "read-only-write", b"\x03" + req(1, 0, 512) + req(0, 0, 512))
put("virtio_blk", "loop", b"\x01" + vdesc(0, 0, 16, NEXT, 1) + vdesc(1, 0x10, 16, NEXT, 0)
    + struct.pack("<BH", 5, 0) + struct.pack("<BB", 6, 0) + struct.pack("<BB", 6, 7))
put("virtio_blk", "indirect", b"\x01" + vdesc(0, 0x800, 48, INDIRECT, 0) + struct.pack("<BBIB", 3, 0, 0x800, 48)
    + struct.pack("<QIHH", 0x20000, 16, NEXT, 1) + struct.pack("<QIHH", 0x21000, 512, NEXT | WRITE, 2)
    + struct.pack("<QIHH", 0x20100, 1, WRITE, 0) + struct.pack("<BH", 5, 0) + struct.pack("<BB", 6, 0))
regs = b"\x00"
for off in list(range(0, 0x100, 4)) + [0x100, 0x108, 0x10c, 0x1ff]:
    regs += struct.pack("<BHB", 1, off, 4)
for st in (1, 3, 0xb):
    regs += struct.pack("<BHI", 0, 0x70, st)
regs += struct.pack("<BHI", 0, 0x24, 1) + struct.pack("<BHI", 0, 0x20, 1)
regs += struct.pack("<BHI", 0, 0x38, 16) + struct.pack("<BHI", 0, 0x80, 0x10000)
regs += struct.pack("<BHI", 0, 0x44, 1) + struct.pack("<BHI", 0, 0x70, 0xf)
regs += struct.pack("<BHB", 2, 0x70, 1) + b"\x0f" + struct.pack("<BHB", 2, 0x100, 8) + b"\xff" * 8
regs += struct.pack("<BHB", 1, 0x101, 2) + struct.pack("<BB", 9, 0) + struct.pack("<BB", 6, 0)
put("virtio_blk", "registers", regs)
