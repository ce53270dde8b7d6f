//! Disassembler tests: known encodings, and iced-x86 against capstone on real code.

use super::*;
use crate::regs::CpuMode;

fn one(bytes: &[u8]) -> Instruction {
    decode_one(bytes, 0x1000, CpuMode::Long64)
}

#[test]
fn privileged_and_system_instructions() {
    let cases: &[(&[u8], &str)] = &[
        (&[0x0f, 0x22, 0xd8], "mov"),
        (&[0x0f, 0x30], "wrmsr"),
        (&[0xf4], "hlt"),
        (&[0xef], "out"),
        (&[0x48, 0xcf], "iretq"),
        (&[0x0f, 0x01, 0x10], "lgdt"),
        (&[0x0f, 0x05], "syscall"),
        (&[0xcc], "int3"),
        (&[0x0f, 0x0b], "ud2"),
        (&[0x66, 0x0f, 0x6e, 0xc0], "movd"),
    ];
    for (bytes, mnemonic) in cases {
        let i = one(bytes);
        assert_eq!(i.mnemonic, *mnemonic, "{bytes:x?}: {}", i.text);
        assert_eq!(i.len(), bytes.len());
        let c = &disassemble(
            bytes,
            0x1000,
            CpuMode::Long64,
            1,
            Options { decoder: Decoder::Capstone, ..Default::default() },
            &(),
        )[0];
        assert_eq!(c.len(), bytes.len(), "capstone {bytes:x?}: {}", c.text);
    }
    assert_eq!(one(&[0xef]).text, "out     dx,eax");
}

#[test]
fn calls_and_step_over() {
    // call rel32 (+0x10) at 0x1000 -> target 0x1015, next 0x1005.
    let call = [0xe8, 0x10, 0, 0, 0];
    let i = one(&call);
    assert!(i.is_call);
    assert_eq!(i.branch_target, Some(0x1015));
    assert_eq!(step_over_target(&call, 0x1000, CpuMode::Long64), Some(0x1005));
    assert_eq!(step_over_target(&[0x90], 0x1000, CpuMode::Long64), None);
    struct Syms;
    impl Symbolize for Syms {
        fn symbolize(&self, a: u64) -> Option<String> {
            (a == 0x1015).then(|| "workload_hello".to_string())
        }
    }
    let s = disassemble(&call, 0x1000, CpuMode::Long64, 1, Options::default(), &Syms);
    assert!(s[0].text.contains("workload_hello"), "{}", s[0].text);
}

#[test]
fn bad_bytes_and_modes() {
    let i = one(&[0x0f, 0xff]);
    assert!(!i.is_empty());
    assert!(one(&[]).invalid);
    // 0x06 is `push es` in 16/32-bit mode and invalid in 64-bit mode.
    assert!(one(&[0x06]).invalid);
    assert_eq!(decode_one(&[0x06], 0, CpuMode::Protected32).mnemonic, "push");
    // b8 imm: 3 bytes in 16-bit mode, 5 in 32-bit.
    assert_eq!(decode_one(&[0xb8, 1, 2, 3, 4], 0, CpuMode::Real).len(), 3);
    assert_eq!(decode_one(&[0xb8, 1, 2, 3, 4], 0, CpuMode::Protected32).len(), 5);
    let many = disassemble(&[0x90, 0x06, 0x90], 0, CpuMode::Long64, 10, Options::default(), &());
    assert_eq!(many.iter().map(|i| i.mnemonic.as_str()).collect::<Vec<_>>(), ["nop", "(bad)", "nop"]);
}

/// Normalizes mnemonic spellings that differ between the two decoders.
fn norm(m: &str) -> String {
    let m = m.trim().to_lowercase();
    let m = m.split_whitespace().last().unwrap_or("").to_string();
    match m.as_str() {
        "movabs" => "mov".into(),
        "ret" | "retq" => "ret".into(),
        other => other.to_string(),
    }
}

#[test]
fn iced_and_capstone_agree_on_real_code() {
    use object::{Object, ObjectSection};
    let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    let file = object::File::parse(&*exe).unwrap();
    let text = file.section_by_name(".text").unwrap();
    let code = text.data().unwrap();
    let code = &code[..code.len().min(64 << 10)];
    let iced = disassemble(code, text.address(), CpuMode::Long64, 20_000, Options::default(), &());
    let cs = disassemble(
        code,
        text.address(),
        CpuMode::Long64,
        20_000,
        Options { decoder: Decoder::Capstone, ..Default::default() },
        &(),
    );
    let cs_by_addr: std::collections::HashMap<u64, &Instruction> =
        cs.iter().map(|i| (i.address, i)).collect();
    let (mut compared, mut same_len, mut same_mnemonic) = (0, 0, 0);
    for i in iced.iter().filter(|i| !i.invalid) {
        if let Some(c) = cs_by_addr.get(&i.address).filter(|c| !c.invalid) {
            compared += 1;
            same_len += usize::from(c.len() == i.len());
            same_mnemonic += usize::from(norm(&c.mnemonic) == norm(&i.mnemonic));
        }
    }
    assert!(compared > 5_000, "only {compared} instructions compared");
    assert_eq!(same_len, compared, "instruction lengths differ");
    assert!(same_mnemonic * 100 >= compared * 97, "{same_mnemonic}/{compared} mnemonics agree");
}
