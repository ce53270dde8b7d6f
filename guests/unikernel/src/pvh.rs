//! The Xen PVH entry, so that other VMMs (QEMU `-M microvm -kernel`, Firecracker, Cloud
//! Hypervisor) boot this very file: the `XEN_ELFNOTE_PHYS32_ENTRY` ELF note names
//! `pvh_start32`, which the VMM (or its firmware) enters in 32-bit protected mode with
//! paging off and `EBX` = the GPA of `hvm_start_info`. It builds its own page tables
//! (4 GiB identity-mapped with 2 MiB pages) and GDT, switches to long mode, and calls
//! [`pvh_main`], which runs the workload with the console on the 16550 UART (COM1) and
//! exits through `isa-debug-exit`, ACPI S5, the i8042 reset and a triple fault, in that order.
//! vmscope's own direct 64-bit entry (`_start`, the ELF entry point) is unchanged.

use crate::{console, hypercall, workloads};
use vmscope_abi::{BootInfo, BOOT_MAGIC};

/// `hvm_start_info.magic` ("xEn3" with the high bit set).
const XEN_HVM_START_MAGIC: u32 = 0x336e_c578;
/// E820 type of usable RAM.
const E820_RAM: u32 = 1;
/// The boot page tables map this much (4 GiB).
const MAPPED: u64 = 4 << 30;
/// Longest command line read from `hvm_start_info`.
const CMDLINE_MAX: u64 = 4096;
/// At most this many memory-map entries are read.
const MEMMAP_MAX: u32 = 128;

core::arch::global_asm!(
    r#"
    .section .note.Xen, "a", @note
    .balign 4
    .long 4                 /* namesz: "Xen\0" */
    .long 4                 /* descsz */
    .long 18                /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .balign 4
    .long pvh_start32
    .balign 4

    /* vmscope's own note: this file also follows vmscope's direct-entry contract (long
       mode, hypercalls), so `vmscope run --elf` enters it there rather than at the PVH
       entry it takes for other PVH ELFs (vmm::loader::entry_kind). */
    .section .note.vmscope, "a", @note
    .balign 4
    .long 8                 /* namesz: "vmscope\0" */
    .long 4                 /* descsz */
    .long 1                 /* vmscope_abi::NOTE_DIRECT_ENTRY */
    .asciz "vmscope"
    .balign 4
    .long 1                 /* the contract's version */
    .balign 4

    .section .bss.pvh, "aw", @nobits
    .balign 4096
pvh_tables:                 /* PML4, PDPT, four page directories */
    .skip 0x6000
pvh_stack:
    .skip 0x10000
pvh_stack_top:

    .section .rodata.pvh, "a"
    .balign 8
pvh_gdt:
    .quad 0
    .quad 0x00af9a000000ffff    /* 0x08: 64-bit code, DPL0 */
    .quad 0x00cf92000000ffff    /* 0x10: data, DPL0 */
pvh_gdt_end:
pvh_gdt_desc:
    .word pvh_gdt_end - pvh_gdt - 1
    .long pvh_gdt

    .section .text.pvh, "ax"
    .code32
    .global pvh_start32
pvh_start32:
    cli
    cld
    mov %ebx, %esi                      /* hvm_start_info, kept for pvh_main */
    mov $pvh_tables, %edi               /* zero the six tables */
    xor %eax, %eax
    mov $(0x6000 / 4), %ecx
    rep stosl
    mov $(pvh_tables + 0x1003), %eax    /* PML4[0] -> PDPT, present + writable */
    mov %eax, pvh_tables
    mov $(pvh_tables + 0x2003), %eax    /* PDPT[0..4] -> the page directories */
    mov %eax, pvh_tables + 0x1000
    add $0x1000, %eax
    mov %eax, pvh_tables + 0x1008
    add $0x1000, %eax
    mov %eax, pvh_tables + 0x1010
    add $0x1000, %eax
    mov %eax, pvh_tables + 0x1018
    mov $(pvh_tables + 0x2000), %edi    /* 2048 2 MiB pages: P | RW | PS */
    mov $0x83, %eax
    xor %edx, %edx
    mov $2048, %ecx
1:
    mov %eax, (%edi)
    mov %edx, 4(%edi)
    add $0x200000, %eax
    adc $0, %edx
    add $8, %edi
    dec %ecx
    jnz 1b
    mov $pvh_tables, %eax
    mov %eax, %cr3
    mov %cr4, %eax
    or $0x20, %eax                      /* CR4.PAE */
    mov %eax, %cr4
    mov $0xc0000080, %ecx               /* IA32_EFER.LME */
    rdmsr
    or $0x100, %eax
    wrmsr
    lgdt pvh_gdt_desc
    mov %cr0, %eax
    or $0x80000001, %eax                /* CR0.PG | CR0.PE */
    mov %eax, %cr0
    ljmp $0x08, $pvh_start64

    .code64
pvh_start64:
    mov $0x10, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    mov %eax, %fs
    mov %eax, %gs
    mov $pvh_stack_top, %rsp
    mov %esi, %edi                      /* zero-extended: hvm_start_info */
    call pvh_main
    ud2
    "#,
    options(att_syntax)
);

/// `hvm_start_info` (the fields this guest reads).
#[repr(C)]
struct StartInfo {
    magic: u32,
    version: u32,
    flags: u32,
    nr_modules: u32,
    modlist_paddr: u64,
    cmdline_paddr: u64,
    rsdp_paddr: u64,
    memmap_paddr: u64,
    memmap_entries: u32,
    reserved: u32,
}

/// `hvm_memmap_table_entry`.
#[repr(C)]
struct MemmapEntry {
    addr: u64,
    size: u64,
    type_: u32,
    reserved: u32,
}

extern "C" {
    /// End of the loaded image (the linker script's `_end`).
    static _end: u8;
}

/// The boot information built from `hvm_start_info` (the workloads read a `BootInfo`).
static mut BOOT: BootInfo = BootInfo {
    magic: 0,
    mem_size: 0,
    cmdline_gpa: 0,
    cmdline_len: 0,
    free_start: 0,
    free_end: 0,
    ring: 0,
    nr_vcpus: 1,
};

/// Long-mode half of the PVH entry: checks the start info, builds a `BootInfo` from it
/// (memory from the E820 map, bounded by what the boot page tables map; the command line
/// bounded to 4 KiB) and runs the workload with the serial console.
///
/// # Safety
/// Called once by `pvh_start32` with `start_info` = the GPA the VMM passed in `EBX`.
#[no_mangle]
unsafe extern "C" fn pvh_main(start_info: u64) -> ! {
    console::use_serial();
    if start_info == 0 || start_info >= MAPPED {
        console::write(b"unikernel: PVH entry without a start info in EBX\n");
        hypercall::exit(3);
    }
    // SAFETY: the VMM put hvm_start_info at this identity-mapped GPA (checked above).
    let info = unsafe { core::ptr::read_volatile(start_info as *const StartInfo) };
    if info.magic != XEN_HVM_START_MAGIC {
        console::write(b"unikernel: PVH start info has the wrong magic\n");
        hypercall::exit(3);
    }
    // `_end` is a linker symbol; only its address is taken.
    let image_end = core::ptr::addr_of!(_end) as u64;
    let free_start = (image_end + 0xfff) & !0xfff;
    let mut free_end = free_start;
    let mut mem_size = 0u64;
    if info.version >= 1 && info.memmap_paddr != 0 && info.memmap_paddr < MAPPED {
        for i in 0..info.memmap_entries.min(MEMMAP_MAX) {
            let at = info.memmap_paddr + u64::from(i) * core::mem::size_of::<MemmapEntry>() as u64;
            if at + core::mem::size_of::<MemmapEntry>() as u64 > MAPPED {
                break;
            }
            // SAFETY: inside the identity-mapped 4 GiB; the VMM wrote the map there.
            let e = unsafe { core::ptr::read_volatile(at as *const MemmapEntry) };
            if e.type_ != E820_RAM {
                continue;
            }
            let end = e.addr.saturating_add(e.size).min(MAPPED);
            mem_size = mem_size.max(end);
            if e.addr <= free_start && free_start < end {
                free_end = end;
            }
        }
    }
    let (cmdline_gpa, cmdline_len) = cmdline(info.cmdline_paddr);
    // SAFETY: single-threaded; BOOT is written once here before any reader.
    let boot = unsafe {
        let b = &mut *core::ptr::addr_of_mut!(BOOT);
        b.magic = BOOT_MAGIC;
        b.mem_size = mem_size;
        b.cmdline_gpa = cmdline_gpa;
        b.cmdline_len = cmdline_len;
        b.free_start = free_start;
        b.free_end = free_end;
        &*b
    };
    // SAFETY: the command line lies in identity-mapped memory (bounded by `cmdline`).
    let cmdline = unsafe { core::slice::from_raw_parts(cmdline_gpa as *const u8, cmdline_len as usize) };
    let code = workloads::run(boot, cmdline);
    hypercall::exit(code)
}

/// The command line's GPA and length (up to its NUL, at most [`CMDLINE_MAX`] bytes,
/// never past the mapped 4 GiB); an absent one is empty.
fn cmdline(gpa: u64) -> (u64, u64) {
    if gpa == 0 || gpa >= MAPPED {
        return (0, 0);
    }
    let max = CMDLINE_MAX.min(MAPPED - gpa);
    let mut len = 0;
    // SAFETY: every byte read lies in identity-mapped memory below MAPPED.
    while len < max && unsafe { core::ptr::read_volatile((gpa + len) as *const u8) } != 0 {
        len += 1;
    }
    (gpa, len)
}
