use super::*;

#[test]
fn elf_round_trip_on_this_binary() {
    let exe = std::env::current_exe().unwrap();
    let table = SymbolTable::from_elf_file(&exe).unwrap();
    // The C `main` every Rust test binary has.
    let addr = table.resolve("main").expect("main symbol");
    let sym = table.get("main").unwrap();
    assert_eq!(sym.kind, Kind::Function);
    assert_eq!(table.locate(addr).unwrap().to_string(), "main");
    assert_eq!(table.locate(addr + 1).unwrap().to_string(), "main+0x1");
    assert_eq!(table.symbolize(addr + 2), Some("main+0x2".into()));
    assert!(table.len() > 100);
    // DWARF loads (line tables of this binary).
    assert!(SourceLines::load(&exe).is_ok());
}

#[test]
fn malformed_elf_is_an_error_naming_the_file() {
    let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    let e = SymbolTable::from_elf("cut.elf", &exe[..40]).unwrap_err();
    assert!(e.to_string().starts_with("cut.elf is not a valid ELF file"), "{e}");
    assert!(SymbolTable::from_elf_file(std::path::Path::new("/nonexistent.elf")).is_err());
}

#[test]
fn kallsyms() {
    let text = "ffffffff81000000 T _stext\nffffffff81000100 T start_kernel\nffffffff82000000 D jiffies\nffffffffc0000000 t helper\t[mod]\n";
    let t = SymbolTable::from_kallsyms("kallsyms", text).unwrap();
    assert_eq!(t.len(), 4);
    assert_eq!(t.resolve("start_kernel"), Some(0xffff_ffff_8100_0100));
    assert_eq!(t.locate(0xffff_ffff_8100_0123).unwrap().to_string(), "start_kernel+0x23");
    assert_eq!(t.get("jiffies").unwrap().kind, Kind::Object);
    assert!(t.locate(0x1000).is_none());
    let e = SymbolTable::from_kallsyms("bad", "zzz T x\n").unwrap_err();
    assert!(e.to_string().contains("bad line 1"), "{e}");
}

#[test]
fn sized_symbols_do_not_cover_gaps() {
    let t = SymbolTable::new(vec![
        Symbol { name: "a".into(), addr: 0x1000, size: 0x10, kind: Kind::Function },
        Symbol { name: "b".into(), addr: 0x2000, size: 0, kind: Kind::Function },
    ]);
    assert_eq!(t.locate(0x100f).unwrap().to_string(), "a+0xf");
    assert!(t.locate(0x1010).is_none());
    assert_eq!(t.locate(0x2004).unwrap().to_string(), "b+0x4");
}
