//! The VMCOREINFO of a Linux guest: the "KEY=value" lines crash and drgn need to make sense
//! of a dump (the release, the page size, where the kernel's page tables are, the KASLR
//! offset, `phys_base`). A kernel built with `CONFIG_VMCORE_INFO` (`CONFIG_CRASH_CORE`
//! before 6.9) keeps them itself (`vmcoreinfo_data`, `vmcoreinfo_size`); for a kernel
//! without it they are derived from its symbols and memory. Either way a last line says
//! which: `VMSCOPE_VMCOREINFO=guest` or `VMSCOPE_VMCOREINFO=derived-from-vmlinux`.

use crate::mem::GuestPhysMemory;
use crate::symbols::SymbolTable;
use crate::Gpa;

/// Where the kernel image is mapped on x86-64 (`__START_KERNEL_map`).
pub const START_KERNEL_MAP: u64 = 0xffff_ffff_8000_0000;
/// The direct map's base without KASLR of memory regions (`__PAGE_OFFSET_BASE_L4`).
const PAGE_OFFSET_L4: u64 = 0xffff_8880_0000_0000;
/// The most VMCOREINFO bytes taken from a guest (the kernel keeps one page of it).
pub const MAX_VMCOREINFO: u64 = 4096;

/// Where a VMCOREINFO came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The guest kernel's own (`vmcoreinfo_data`).
    Guest,
    /// Derived by vmscope from the kernel's symbols and memory.
    Derived,
}

impl Source {
    /// The value of the `VMSCOPE_VMCOREINFO` line.
    pub fn name(self) -> &'static str {
        match self {
            Source::Guest => "guest",
            Source::Derived => "derived-from-vmlinux",
        }
    }
}

/// A VMCOREINFO text and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vmcoreinfo {
    /// The note's text, ending with the `VMSCOPE_VMCOREINFO=` line.
    pub text: Vec<u8>,
    /// Its origin.
    pub source: Source,
    /// The base of the kernel's direct map of physical memory (`page_offset_base`), where
    /// a dump without paging puts each RAM range's `p_vaddr`, as the kernel's own
    /// /proc/vmcore does (readers then never take a user address for a physical one).
    pub page_offset: u64,
}

/// How kernel-image and direct-map addresses become physical ones.
struct Kernel<'a> {
    mem: &'a dyn GuestPhysMemory,
    symbols: &'a SymbolTable,
    phys_base: u64,
}

impl Kernel<'_> {
    /// A kernel-image address (a symbol) as a physical one.
    fn image_phys(&self, va: u64) -> Option<Gpa> {
        va.checked_sub(START_KERNEL_MAP)?.checked_add(self.phys_base).map(Gpa)
    }

    fn read_u64(&self, name: &str) -> Option<u64> {
        self.mem.read_u64(self.image_phys(self.symbols.resolve(name)?)?)
    }

    fn page_offset(&self) -> u64 {
        self.read_u64("page_offset_base").unwrap_or(PAGE_OFFSET_L4)
    }

    /// A NUL-terminated string at a kernel-image symbol, at most `max` bytes.
    fn string(&self, name: &str, max: usize) -> Option<String> {
        let mut buf = vec![0u8; max];
        let n = self.mem.read_phys(self.image_phys(self.symbols.resolve(name)?)?, &mut buf);
        buf.truncate(n);
        let end = buf.iter().position(|&b| b == 0)?;
        String::from_utf8(buf[..end].to_vec()).ok()
    }
}

/// The VMCOREINFO of the Linux kernel `symbols` describes, running in `mem`: its own when
/// it keeps one, else derived. `None` when the symbols are not a Linux kernel's.
pub fn for_linux(mem: &dyn GuestPhysMemory, symbols: &SymbolTable) -> Option<Vmcoreinfo> {
    let pgd = symbols.resolve("init_top_pgt").or_else(|| symbols.resolve("swapper_pg_dir"))?;
    symbols.resolve("linux_banner")?;
    let mut k = Kernel { mem, symbols, phys_base: 0 };
    // phys_base lives in the kernel image; read it where an unmoved kernel has it.
    let phys_base = k.read_u64("phys_base").unwrap_or(0);
    k.phys_base = phys_base;
    if let Some(mut text) = from_guest(&k) {
        text.extend_from_slice(format!("VMSCOPE_VMCOREINFO={}\n", Source::Guest.name()).as_bytes());
        return Some(Vmcoreinfo { text, source: Source::Guest, page_offset: k.page_offset() });
    }
    let banner = k.string("linux_banner", 256).unwrap_or_default();
    let release = banner.split_whitespace().nth(2).unwrap_or("unknown");
    let mut text = format!("OSRELEASE={release}\nPAGESIZE=4096\nSYMBOL(swapper_pg_dir)={pgd:x}\n");
    for name in ["init_uts_ns", "_stext", "mem_map", "mem_section"] {
        if let Some(a) = symbols.resolve(name) {
            text.push_str(&format!("SYMBOL({name})={a:x}\n"));
        }
    }
    // vmscope loads a vmlinux at its link address: no KASLR.
    text.push_str("KERNELOFFSET=0\n");
    text.push_str(&format!("NUMBER(phys_base)={phys_base}\n"));
    let l5 = k.read_u64("__pgtable_l5_enabled").map(|v| v & 0xffff_ffff).unwrap_or(0);
    text.push_str(&format!("NUMBER(pgtable_l5_enabled)={l5}\n"));
    text.push_str(&format!("VMSCOPE_VMCOREINFO={}\n", Source::Derived.name()));
    Some(Vmcoreinfo { text: text.into_bytes(), source: Source::Derived, page_offset: k.page_offset() })
}

/// The kernel's own VMCOREINFO text, if it keeps one and it reads back whole.
fn from_guest(k: &Kernel<'_>) -> Option<Vec<u8>> {
    let size = k.read_u64("vmcoreinfo_size")?;
    let data = k.read_u64("vmcoreinfo_data")?;
    if size == 0 || size > MAX_VMCOREINFO {
        return None;
    }
    let gpa = data.checked_sub(k.page_offset())?;
    let mut buf = vec![0u8; size as usize];
    (k.mem.read_phys(Gpa(gpa), &mut buf) == buf.len()).then_some(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::BufferMemory;
    use crate::symbols::{Kind, Symbol};

    fn sym(name: &str, addr: u64) -> Symbol {
        Symbol { name: name.into(), addr, size: 8, kind: Kind::Object }
    }

    fn kernel(with_own: bool) -> (BufferMemory, SymbolTable) {
        let mut mem = BufferMemory::zeroed(0x20000);
        mem.write(Gpa(0x1000), b"Linux version 6.1.99-vmscope (root@x) #1\0");
        let mut syms = vec![
            sym("init_top_pgt", START_KERNEL_MAP + 0x2000),
            sym("linux_banner", START_KERNEL_MAP + 0x1000),
            sym("phys_base", START_KERNEL_MAP + 0x3000),
        ];
        if with_own {
            syms.push(sym("vmcoreinfo_size", START_KERNEL_MAP + 0x3008));
            syms.push(sym("vmcoreinfo_data", START_KERNEL_MAP + 0x3010));
            mem.write_u64(Gpa(0x3008), 12);
            mem.write_u64(Gpa(0x3010), PAGE_OFFSET_L4 + 0x10000);
            mem.write(Gpa(0x10000), b"PAGESIZE=42\n");
        }
        (mem, SymbolTable::new(syms))
    }

    #[test]
    fn a_kernel_that_keeps_its_own_is_copied() {
        let (mem, syms) = kernel(true);
        let v = for_linux(&mem, &syms).unwrap();
        assert_eq!(v.source, Source::Guest);
        assert_eq!(v.text, b"PAGESIZE=42\nVMSCOPE_VMCOREINFO=guest\n");
        assert_eq!(v.page_offset, PAGE_OFFSET_L4);
    }

    #[test]
    fn otherwise_it_is_derived_and_says_so() {
        let (mem, syms) = kernel(false);
        let v = for_linux(&mem, &syms).unwrap();
        assert_eq!(v.source, Source::Derived);
        let text = String::from_utf8(v.text).unwrap();
        assert!(
            text.starts_with(
                "OSRELEASE=6.1.99-vmscope\nPAGESIZE=4096\nSYMBOL(swapper_pg_dir)=ffffffff80002000\n"
            ),
            "{text}"
        );
        assert!(text.contains("KERNELOFFSET=0\nNUMBER(phys_base)=0\n"), "{text}");
        assert!(text.ends_with("VMSCOPE_VMCOREINFO=derived-from-vmlinux\n"), "{text}");
    }

    #[test]
    fn an_oversized_or_unreadable_guest_note_is_not_trusted() {
        let (mut mem, syms) = kernel(true);
        mem.write_u64(Gpa(0x3008), MAX_VMCOREINFO + 1);
        assert_eq!(for_linux(&mem, &syms).unwrap().source, Source::Derived);
        mem.write_u64(Gpa(0x3008), 12);
        mem.write_u64(Gpa(0x3010), 5);
        assert_eq!(for_linux(&mem, &syms).unwrap().source, Source::Derived);
    }

    #[test]
    fn symbols_of_something_else_give_none() {
        let mem = BufferMemory::zeroed(0x1000);
        assert!(for_linux(&mem, &SymbolTable::new(vec![sym("main", 0x1000)])).is_none());
    }
}
