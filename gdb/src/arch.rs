//! The register layout vmscope presents to gdb: the amd64 core and SSE sets, plus the
//! segment bases and the system registers QEMU also exposes (`fs_base`, `gs_base`,
//! `k_gs_base`, `cr0`, `cr2`, `cr3`, `cr4`, `cr8`, `efer`), so `info registers cr3` works.
//! The layout is fixed for a session; outside long mode values are zero-extended.

use gdbstub::arch::{Arch, RegId, Registers};
use std::num::NonZeroUsize;

/// The architecture marker.
pub enum VmscopeX86_64 {}

/// Every register in `g`-packet order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VmRegs {
    /// rax, rbx, rcx, rdx, rsi, rdi, rbp, rsp, r8-r15 (gdb's order).
    pub gpr: [u64; 16],
    /// RIP.
    pub rip: u64,
    /// RFLAGS (low 32 bits).
    pub eflags: u32,
    /// cs, ss, ds, es, fs, gs selectors.
    pub segments: [u32; 6],
    /// fctrl, fstat, ftag, fiseg, fioff, foseg, fooff, fop.
    pub x87_control: [u32; 8],
    /// MXCSR.
    pub mxcsr: u32,
    /// fs_base, gs_base, k_gs_base, cr0, cr2, cr3, cr4, cr8, efer.
    pub system: [u64; 9],
}

const ST_BYTES: usize = 10;
const XMM_BYTES: usize = 16;

impl Registers for VmRegs {
    type ProgramCounter = u64;

    fn pc(&self) -> u64 {
        self.rip
    }

    fn gdb_serialize(&self, mut write_byte: impl FnMut(Option<u8>)) {
        let mut put = |bytes: &[u8]| bytes.iter().for_each(|b| write_byte(Some(*b)));
        self.gpr.iter().for_each(|r| put(&r.to_le_bytes()));
        put(&self.rip.to_le_bytes());
        put(&self.eflags.to_le_bytes());
        self.segments.iter().for_each(|s| put(&s.to_le_bytes()));
        // st0-st7: x87 data registers are not exposed; they read as zero.
        put(&[0; ST_BYTES * 8]);
        self.x87_control.iter().for_each(|c| put(&c.to_le_bytes()));
        // xmm0-xmm15: read as zero (not exposed).
        put(&[0; XMM_BYTES * 16]);
        put(&self.mxcsr.to_le_bytes());
        self.system.iter().for_each(|s| put(&s.to_le_bytes()));
    }

    fn gdb_deserialize(&mut self, bytes: &[u8]) -> Result<(), ()> {
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<&[u8], ()> {
            let s = bytes.get(at..at + n).ok_or(())?;
            at += n;
            Ok(s)
        };
        let u64_of = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
        let u32_of = |b: &[u8]| u32::from_le_bytes(b.try_into().expect("4 bytes"));
        for r in &mut self.gpr {
            *r = u64_of(take(8)?);
        }
        self.rip = u64_of(take(8)?);
        self.eflags = u32_of(take(4)?);
        for s in &mut self.segments {
            *s = u32_of(take(4)?);
        }
        take(ST_BYTES * 8)?;
        for c in &mut self.x87_control {
            *c = u32_of(take(4)?);
        }
        take(XMM_BYTES * 16)?;
        self.mxcsr = u32_of(take(4)?);
        for s in &mut self.system {
            *s = u64_of(take(8)?);
        }
        Ok(())
    }
}

/// Single registers are not offered; gdb uses the `g`/`G` packets.
#[derive(Debug)]
pub enum VmRegId {}

impl RegId for VmRegId {
    fn from_raw_id(_id: usize) -> Option<(Self, Option<NonZeroUsize>)> {
        None
    }
}

impl Arch for VmscopeX86_64 {
    type Usize = u64;
    type Registers = VmRegs;
    type BreakpointKind = usize;
    type RegId = VmRegId;

    fn target_description_xml() -> Option<&'static str> {
        Some(TARGET_XML)
    }
}

/// The target description: gdb's standard amd64 feature names, so gdb treats it as amd64,
/// plus a vmscope feature with the system registers.
pub const TARGET_XML: &str = r#"<?xml version="1.0"?>
<!DOCTYPE target SYSTEM "gdb-target.dtd">
<target version="1.0">
  <architecture>i386:x86-64</architecture>
  <feature name="org.gnu.gdb.i386.core">
    <flags id="i386_eflags" size="4">
      <field name="CF" start="0" end="0"/>
      <field name="PF" start="2" end="2"/>
      <field name="AF" start="4" end="4"/>
      <field name="ZF" start="6" end="6"/>
      <field name="SF" start="7" end="7"/>
      <field name="TF" start="8" end="8"/>
      <field name="IF" start="9" end="9"/>
      <field name="DF" start="10" end="10"/>
      <field name="OF" start="11" end="11"/>
      <field name="NT" start="14" end="14"/>
      <field name="RF" start="16" end="16"/>
      <field name="VM" start="17" end="17"/>
      <field name="AC" start="18" end="18"/>
      <field name="VIF" start="19" end="19"/>
      <field name="VIP" start="20" end="20"/>
      <field name="ID" start="21" end="21"/>
    </flags>
    <reg name="rax" bitsize="64" type="int64" regnum="0"/>
    <reg name="rbx" bitsize="64" type="int64"/>
    <reg name="rcx" bitsize="64" type="int64"/>
    <reg name="rdx" bitsize="64" type="int64"/>
    <reg name="rsi" bitsize="64" type="int64"/>
    <reg name="rdi" bitsize="64" type="int64"/>
    <reg name="rbp" bitsize="64" type="data_ptr"/>
    <reg name="rsp" bitsize="64" type="data_ptr"/>
    <reg name="r8" bitsize="64" type="int64"/>
    <reg name="r9" bitsize="64" type="int64"/>
    <reg name="r10" bitsize="64" type="int64"/>
    <reg name="r11" bitsize="64" type="int64"/>
    <reg name="r12" bitsize="64" type="int64"/>
    <reg name="r13" bitsize="64" type="int64"/>
    <reg name="r14" bitsize="64" type="int64"/>
    <reg name="r15" bitsize="64" type="int64"/>
    <reg name="rip" bitsize="64" type="code_ptr"/>
    <reg name="eflags" bitsize="32" type="i386_eflags"/>
    <reg name="cs" bitsize="32" type="int32"/>
    <reg name="ss" bitsize="32" type="int32"/>
    <reg name="ds" bitsize="32" type="int32"/>
    <reg name="es" bitsize="32" type="int32"/>
    <reg name="fs" bitsize="32" type="int32"/>
    <reg name="gs" bitsize="32" type="int32"/>
    <reg name="st0" bitsize="80" type="i387_ext"/>
    <reg name="st1" bitsize="80" type="i387_ext"/>
    <reg name="st2" bitsize="80" type="i387_ext"/>
    <reg name="st3" bitsize="80" type="i387_ext"/>
    <reg name="st4" bitsize="80" type="i387_ext"/>
    <reg name="st5" bitsize="80" type="i387_ext"/>
    <reg name="st6" bitsize="80" type="i387_ext"/>
    <reg name="st7" bitsize="80" type="i387_ext"/>
    <reg name="fctrl" bitsize="32" type="int" group="float"/>
    <reg name="fstat" bitsize="32" type="int" group="float"/>
    <reg name="ftag" bitsize="32" type="int" group="float"/>
    <reg name="fiseg" bitsize="32" type="int" group="float"/>
    <reg name="fioff" bitsize="32" type="int" group="float"/>
    <reg name="foseg" bitsize="32" type="int" group="float"/>
    <reg name="fooff" bitsize="32" type="int" group="float"/>
    <reg name="fop" bitsize="32" type="int" group="float"/>
  </feature>
  <feature name="org.gnu.gdb.i386.sse">
    <vector id="v4f" type="ieee_single" count="4"/>
    <vector id="v2d" type="ieee_double" count="2"/>
    <vector id="v16i8" type="int8" count="16"/>
    <vector id="v8i16" type="int16" count="8"/>
    <vector id="v4i32" type="int32" count="4"/>
    <vector id="v2i64" type="int64" count="2"/>
    <union id="vec128">
      <field name="v4_float" type="v4f"/>
      <field name="v2_double" type="v2d"/>
      <field name="v16_int8" type="v16i8"/>
      <field name="v8_int16" type="v8i16"/>
      <field name="v4_int32" type="v4i32"/>
      <field name="v2_int64" type="v2i64"/>
      <field name="uint128" type="uint128"/>
    </union>
    <flags id="i386_mxcsr" size="4">
      <field name="IE" start="0" end="0"/>
      <field name="DE" start="1" end="1"/>
      <field name="ZE" start="2" end="2"/>
      <field name="OE" start="3" end="3"/>
      <field name="UE" start="4" end="4"/>
      <field name="PE" start="5" end="5"/>
      <field name="DAZ" start="6" end="6"/>
      <field name="IM" start="7" end="7"/>
      <field name="DM" start="8" end="8"/>
      <field name="ZM" start="9" end="9"/>
      <field name="OM" start="10" end="10"/>
      <field name="UM" start="11" end="11"/>
      <field name="PM" start="12" end="12"/>
      <field name="FZ" start="15" end="15"/>
    </flags>
    <reg name="xmm0" bitsize="128" type="vec128" regnum="40"/>
    <reg name="xmm1" bitsize="128" type="vec128"/>
    <reg name="xmm2" bitsize="128" type="vec128"/>
    <reg name="xmm3" bitsize="128" type="vec128"/>
    <reg name="xmm4" bitsize="128" type="vec128"/>
    <reg name="xmm5" bitsize="128" type="vec128"/>
    <reg name="xmm6" bitsize="128" type="vec128"/>
    <reg name="xmm7" bitsize="128" type="vec128"/>
    <reg name="xmm8" bitsize="128" type="vec128"/>
    <reg name="xmm9" bitsize="128" type="vec128"/>
    <reg name="xmm10" bitsize="128" type="vec128"/>
    <reg name="xmm11" bitsize="128" type="vec128"/>
    <reg name="xmm12" bitsize="128" type="vec128"/>
    <reg name="xmm13" bitsize="128" type="vec128"/>
    <reg name="xmm14" bitsize="128" type="vec128"/>
    <reg name="xmm15" bitsize="128" type="vec128"/>
    <reg name="mxcsr" bitsize="32" type="i386_mxcsr" group="vector"/>
  </feature>
  <feature name="org.gnu.gdb.i386.segments">
    <reg name="fs_base" bitsize="64" type="int64" regnum="57"/>
    <reg name="gs_base" bitsize="64" type="int64"/>
  </feature>
  <feature name="org.vmscope.gdb.x86.sys">
    <reg name="k_gs_base" bitsize="64" type="int64" group="system"/>
    <reg name="cr0" bitsize="64" type="int64" group="system"/>
    <reg name="cr2" bitsize="64" type="int64" group="system"/>
    <reg name="cr3" bitsize="64" type="int64" group="system"/>
    <reg name="cr4" bitsize="64" type="int64" group="system"/>
    <reg name="cr8" bitsize="64" type="int64" group="system"/>
    <reg name="efer" bitsize="64" type="int64" group="system"/>
  </feature>
</target>
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialize_round_trip_and_size() {
        let regs = VmRegs {
            gpr: core::array::from_fn(|i| i as u64 * 0x1111),
            rip: 0x10_0000,
            eflags: 0x246,
            segments: [8, 16, 16, 16, 16, 16],
            x87_control: [0x37f, 0, 0xffff, 0, 0, 0, 0, 0],
            mxcsr: 0x1f80,
            system: [1, 2, 3, 0x8001_0033, 0, 0x9000, 0x620, 0, 0x500],
        };
        let mut bytes = vec![];
        regs.gdb_serialize(|b| bytes.push(b.unwrap()));
        // 16*8 + 8 + 4 + 6*4 + 8*10 + 8*4 + 16*16 + 4 + 9*8
        assert_eq!(bytes.len(), 128 + 8 + 4 + 24 + 80 + 32 + 256 + 4 + 72);
        let mut back = VmRegs::default();
        back.gdb_deserialize(&bytes).unwrap();
        assert_eq!(back, regs);
        assert!(back.gdb_deserialize(&bytes[..100]).is_err());
        // cr3 sits where the XML says: after mxcsr, fs_base, gs_base, k_gs_base, cr0, cr2.
        let cr3_at = 128 + 8 + 4 + 24 + 80 + 32 + 256 + 4 + 5 * 8;
        assert_eq!(u64::from_le_bytes(bytes[cr3_at..cr3_at + 8].try_into().unwrap()), 0x9000);
        assert_eq!(TARGET_XML.matches("<reg ").count(), 16 + 1 + 1 + 6 + 8 + 8 + 16 + 1 + 9);
    }
}
