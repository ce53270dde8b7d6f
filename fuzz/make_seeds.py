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


# ---- gdb_packets: grace u8 (a resumed guest gets grace % 4 polls of 5 ms) | client bytes


def pkt(body):
    if isinstance(body, str):
        body = body.encode()
    return b"$" + body + b"#%02x" % (sum(body) & 0xFF)


def rcmd(text):
    return pkt(b"qRcmd," + text.encode().hex().encode())


# The packets gdb 13.1 sent in a real session (`set debug remote 1`, "Sending packet:")
# against `vmscope run unikernel --ring 0 --gdb 127.0.0.1:23457 --gdb-wait --workload
# compute 100000`: attach, info registers, x/8xb $pc, info threads, thread 2, break, hbreak,
# stepi, set var $rax, monitor help/regs/pt/xp/dis/exits/phys/sym/mappings, x/4xg with
# phys on, delete, continue.
GDB_SESSION = """
$qSupported:multiprocess+;swbreak+;hwbreak+;qRelocInsn+;fork-events+;vfork-events+;exec-events+;vContSupported+;QThreadEvents+;no-resumed+;memory-tagging+;xmlRegisters=i386#77
$vMustReplyEmpty#3a
$QStartNoAckMode#b0
$Hgp0.0#ad
$qXfer:features:read:target.xml:0,ffb#79
$qXfer:features:read:target.xml:fdb,ffb#75
$qXfer:features:read:target.xml:1749,ffb#1e
$qTStatus#49
$?#3f
$qfThreadInfo#bb
$qsThreadInfo#c8
$qAttached:1#fa
$Hc-1#09
$qOffsets#4b
$g#67
$qfThreadInfo#bb
$qsThreadInfo#c8
$m100000,1#eb
$m100000,1#eb
$qSymbol::#5b
$m100000,1#eb
$m100001,1#ec
$m100002,1#ed
$m100003,1#ee
$m100004,1#ef
$m100005,1#f0
$m100006,1#f1
$m100007,1#f2
$qfThreadInfo#bb
$qsThreadInfo#c8
$qThreadExtraInfo,p1.1#85
$m100000,1#eb
$m100000,1#eb
$Tp1.1#54
$m100000,1#eb
$m100000,1#eb
$m100010,1#ec
$m100020,1#ed
$Z0,100010,1#35
$Z1,100020,1#37
$vCont?#49
$vCont;s:p1.1;c:p1.-1#f7
$g#67
$m100001,1#ec
$m100001,1#ec
$m100000,40#1e
$qfThreadInfo#bb
$qsThreadInfo#c8
$z0,100010,1#55
$z1,100020,1#57
$m100001,1#ec
$m100001,1#ec
$P0=3412000000000000#c7
$G3412000000000000000000000000000000000000000000000000000000000000000000000000000000300000000000000000000000000000f0ffff03000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000001001000000000000200000008000000100000001000000010000000100000001000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000007f03000000000000ffff00 [709 bytes omitted]
$g#67
$m100001,1#ec
$m100001,1#ec
$qRcmd,68656c70#fc
$qRcmd,72656773#ce
$qRcmd,707420247063#8d
$qRcmd,787020307831303030203332#e7
$qRcmd,646973202470632034#c7
$qRcmd,6578697473#41
$qRcmd,70687973206f6e#6b
$m1000,8#92
$m1008,8#9a
$m1010,8#93
$m1018,8#9b
$qRcmd,70687973206f6666#a8
$qRcmd,73796d206d61696e#04
$qRcmd,6d617070696e6773#d3
$vCont;c:p1.-1#0f
""".split()

ATTACH = [b"+"] + [pkt(p) for p in (
    "qSupported:multiprocess+;swbreak+;hwbreak+;vContSupported+;xmlRegisters=i386",
    "vMustReplyEmpty", "QStartNoAckMode", "Hgp0.0", "qXfer:features:read:target.xml:0,ffb",
    "qTStatus", "?", "qfThreadInfo", "qsThreadInfo", "qAttached:1", "Hc-1", "qOffsets", "g")]

put("gdb_packets", "gdb-session", b"\x01" + b"+" + b"".join(p.encode() for p in GDB_SESSION))
put("gdb_packets", "attach-and-read", b"\x00" + b"".join(ATTACH) + b"".join(pkt(p) for p in (
    "m100000,40", "m0,1", "mffffffffffffffff,1", "m100000,800", "m100000,801", "qSymbol::",
    "qThreadExtraInfo,p1.1", "qThreadExtraInfo,p1.2", "Tp1.2", "Hgp1.2", "g", "p10", "p0", "p57",
    "Hgp1.1", "qC", "qXfer:features:read:target.xml:fdb,ffb", "qXfer:features:read:nothing:0,10")))
put("gdb_packets", "breakpoints", b"\x00" + b"".join(ATTACH) + b"".join(pkt(p) for p in (
    "Z0,100010,1", "Z0,100010,1", "z0,100010,1", "z0,100010,1", "Z0,ffffffffdead0000,1",
    "Z1,100020,1", "Z2,200000,8", "Z3,200010,4", "Z4,200020,2", "Z4,200030,1", "Z1,100030,1",
    "Z2,ffffffffffffffff,8", "Z2,200000,21", "Z3,200001,8", "Z4,0,0", "z2,200000,8",
    "z3,200010,4", "z4,200020,2", "z1,100020,1", "z4,200030,1")))
put("gdb_packets", "step-and-continue", b"\x03" + b"".join(ATTACH) + b"".join(pkt(p) for p in (
    "Z0,100010,1", "vCont?", "vCont;s:p1.1", "g", "vCont;r100000,100040:p1.1", "g",
    "Z2,200000,8", "vCont;s:p1.1;c:p1.-1", "vCont;c:p1.-1")))
put("gdb_packets", "interrupt", b"\x03" + b"".join(ATTACH) + pkt("vCont;c:p1.-1") + b"\x03" + pkt("g")
    + pkt("c") + b"\x03" + pkt("s") + pkt("?"))
put("gdb_packets", "writes", b"\x00" + b"".join(ATTACH) + b"".join(pkt(p) for p in (
    "P0=3412000000000000", "P10=0000100000000000", "P99=00", "M200000,4:deadbeef", "M200000,4:dead",
    "Mffffffffffffffff,2:0000", "m200000,4", b"X200010,4:" + bytes([0x7d, 0x03, 0x7d, 0x04, 0x00, 0x23 ^ 0x20]),
    "X200010,0:", "G" + "00" * 16, "g")))
put("gdb_packets", "monitor", b"\x00" + b"".join(ATTACH) + b"".join(rcmd(c) for c in (
    "help", "regs", "sregs", "pt $pc", "pt 0xffffffffffffffff", "mappings", "xp 0x1000 32",
    "xp 0x1000 65537", "xp 0xffffffffffffffff 2", "x/16 $rsp", "x/99999999 $rsp", "dis $pc 4",
    "dis $pc 99999", "exits", "host", "devices", "vq 0 0", "sym _start", "sym 0x100000",
    "phys on", "phys", "phys off", "step 1000", "break _start", "cont", "quit", "", "nonsense \xff")) + pkt("m1000,8"))
put("gdb_packets", "oversized", b"\x00" + b"".join(ATTACH) + b"$m" + b"1" * 5000 + b"#00" + pkt("g"))
put("gdb_packets", "kill", b"\x00" + b"".join(ATTACH) + pkt("vKill;1") + pkt("k"))
put("gdb_packets", "detach", b"\x00" + b"".join(ATTACH) + pkt("Z0,100010,1") + pkt("D") + pkt("g"))
