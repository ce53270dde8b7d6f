//! A vCPU section: KVM's own structures as bytes, one tagged record each, so a part the
//! host refused is simply absent and a reader that meets an unknown tag can name it.
//!
//! ```text
//! record: tag u32 · length u32 · bytes (KVM's struct, as KVM_GET_* filled it)
//! MSRS:   count × { index u32 · 0 u32 · value u64 }
//! CPUID:  count × kvm_cpuid_entry2
//! REFUSED: UTF-8 lines
//! ```

use super::SnapshotError;
use crate::vstate::vcpu::state::VcpuState;
use kvm_bindings::{
    kvm_cpuid_entry2, kvm_debugregs, kvm_fpu, kvm_lapic_state, kvm_mp_state, kvm_regs, kvm_sregs,
    kvm_vcpu_events, kvm_xcrs, kvm_xsave,
};
use zerocopy::{FromBytes, IntoBytes};

const REGS: u32 = 1;
const SREGS: u32 = 2;
const FPU: u32 = 3;
const XSAVE: u32 = 4;
const XCRS: u32 = 5;
const DEBUGREGS: u32 = 6;
const LAPIC: u32 = 7;
const MP_STATE: u32 = 8;
const EVENTS: u32 = 9;
const MSRS: u32 = 10;
const CPUID: u32 = 11;
const REFUSED: u32 = 12;

/// The most MSRs or CPUID entries a section may hold (KVM lists a few hundred at most).
const MAX_ENTRIES: usize = 4096;

fn record(out: &mut Vec<u8>, tag: u32, bytes: &[u8]) {
    out.extend_from_slice(&tag.to_le_bytes());
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// The section bytes of `s`.
pub fn encode(s: &VcpuState) -> Vec<u8> {
    let mut out = Vec::with_capacity(8192);
    record(&mut out, REGS, s.regs.as_bytes());
    record(&mut out, SREGS, s.sregs.as_bytes());
    if let Some(v) = &s.fpu {
        record(&mut out, FPU, &fpu_bytes(v));
    }
    if let Some(v) = &s.xsave {
        record(&mut out, XSAVE, v.as_bytes());
    }
    if let Some(v) = &s.xcrs {
        record(&mut out, XCRS, v.as_bytes());
    }
    if let Some(v) = &s.debugregs {
        record(&mut out, DEBUGREGS, v.as_bytes());
    }
    if let Some(v) = &s.lapic {
        record(&mut out, LAPIC, v.as_bytes());
    }
    if let Some(v) = &s.mp_state {
        record(&mut out, MP_STATE, v.as_bytes());
    }
    if let Some(v) = &s.events {
        record(&mut out, EVENTS, v.as_bytes());
    }
    let mut msrs = Vec::with_capacity(s.msrs.len() * 16);
    for (index, value) in &s.msrs {
        msrs.extend_from_slice(&index.to_le_bytes());
        msrs.extend_from_slice(&0u32.to_le_bytes());
        msrs.extend_from_slice(&value.to_le_bytes());
    }
    record(&mut out, MSRS, &msrs);
    let cpuid: Vec<u8> = s.cpuid.iter().flat_map(|e| e.as_bytes().to_vec()).collect();
    record(&mut out, CPUID, &cpuid);
    record(&mut out, REFUSED, s.refused.join("\n").as_bytes());
    out
}

/// `kvm_fpu` has no byte view in kvm-bindings: its fields in order, little-endian.
const FPU_LEN: usize = 128 + 2 + 2 + 1 + 1 + 2 + 8 + 8 + 256 + 4 + 4;

fn fpu_bytes(f: &kvm_fpu) -> Vec<u8> {
    let mut b = Vec::with_capacity(FPU_LEN);
    f.fpr.iter().for_each(|r| b.extend_from_slice(r));
    b.extend_from_slice(&f.fcw.to_le_bytes());
    b.extend_from_slice(&f.fsw.to_le_bytes());
    b.push(f.ftwx);
    b.push(f.pad1);
    b.extend_from_slice(&f.last_opcode.to_le_bytes());
    b.extend_from_slice(&f.last_ip.to_le_bytes());
    b.extend_from_slice(&f.last_dp.to_le_bytes());
    f.xmm.iter().for_each(|r| b.extend_from_slice(r));
    b.extend_from_slice(&f.mxcsr.to_le_bytes());
    b.extend_from_slice(&f.pad2.to_le_bytes());
    b
}

fn fpu_from(b: &[u8]) -> Option<kvm_fpu> {
    if b.len() != FPU_LEN {
        return None;
    }
    let mut f = kvm_fpu::default();
    let mut at = 0;
    let mut take = |n: usize| {
        let s = &b[at..at + n];
        at += n;
        s
    };
    for r in f.fpr.iter_mut() {
        r.copy_from_slice(take(16));
    }
    f.fcw = u16::from_le_bytes(take(2).try_into().ok()?);
    f.fsw = u16::from_le_bytes(take(2).try_into().ok()?);
    f.ftwx = take(1)[0];
    f.pad1 = take(1)[0];
    f.last_opcode = u16::from_le_bytes(take(2).try_into().ok()?);
    f.last_ip = u64::from_le_bytes(take(8).try_into().ok()?);
    f.last_dp = u64::from_le_bytes(take(8).try_into().ok()?);
    for r in f.xmm.iter_mut() {
        r.copy_from_slice(take(16));
    }
    f.mxcsr = u32::from_le_bytes(take(4).try_into().ok()?);
    f.pad2 = u32::from_le_bytes(take(4).try_into().ok()?);
    Some(f)
}

fn one<T: FromBytes>(bytes: &[u8], what: &'static str, section: &str) -> Result<T, SnapshotError> {
    T::read_from_bytes(bytes).map_err(|_| SnapshotError::BadSection {
        section: section.into(),
        detail: format!("its {what} record is {} bytes, not {}", bytes.len(), std::mem::size_of::<T>()),
    })
}

/// Decodes section `name`; every record's length is checked against its structure.
pub fn decode(bytes: &[u8], name: &str) -> Result<VcpuState, SnapshotError> {
    let bad = |detail: String| SnapshotError::BadSection { section: name.into(), detail };
    let mut s = VcpuState::default();
    let (mut have_regs, mut have_sregs) = (false, false);
    let mut rest = bytes;
    while !rest.is_empty() {
        if rest.len() < 8 {
            return Err(bad(format!("{} stray bytes at its end", rest.len())));
        }
        let tag = u32::from_le_bytes(rest[..4].try_into().unwrap_or_default());
        let len = u32::from_le_bytes(rest[4..8].try_into().unwrap_or_default()) as usize;
        let body = rest.get(8..8 + len).ok_or_else(|| bad(format!("record {tag} runs past the section")))?;
        rest = &rest[8 + len..];
        match tag {
            REGS => {
                s.regs = one::<kvm_regs>(body, "REGS", name)?;
                have_regs = true;
            }
            SREGS => {
                s.sregs = one::<kvm_sregs>(body, "SREGS", name)?;
                have_sregs = true;
            }
            FPU => {
                s.fpu = Some(
                    fpu_from(body).ok_or_else(|| bad(format!("its FPU record is {} bytes", body.len())))?,
                )
            }
            XSAVE => s.xsave = Some(Box::new(one::<kvm_xsave>(body, "XSAVE", name)?)),
            XCRS => s.xcrs = Some(one::<kvm_xcrs>(body, "XCRS", name)?),
            DEBUGREGS => s.debugregs = Some(one::<kvm_debugregs>(body, "DEBUGREGS", name)?),
            LAPIC => s.lapic = Some(Box::new(one::<kvm_lapic_state>(body, "LAPIC", name)?)),
            MP_STATE => s.mp_state = Some(one::<kvm_mp_state>(body, "MP_STATE", name)?),
            EVENTS => s.events = Some(one::<kvm_vcpu_events>(body, "VCPU_EVENTS", name)?),
            MSRS => {
                if !body.len().is_multiple_of(16) || body.len() / 16 > MAX_ENTRIES {
                    return Err(bad(format!("its MSR record is {} bytes", body.len())));
                }
                s.msrs = body
                    .chunks_exact(16)
                    .map(|c| {
                        (
                            u32::from_le_bytes(c[..4].try_into().unwrap_or_default()),
                            u64::from_le_bytes(c[8..16].try_into().unwrap_or_default()),
                        )
                    })
                    .collect();
            }
            CPUID => {
                let size = std::mem::size_of::<kvm_cpuid_entry2>();
                if !body.len().is_multiple_of(size) || body.len() / size > MAX_ENTRIES {
                    return Err(bad(format!("its CPUID record is {} bytes", body.len())));
                }
                s.cpuid = body
                    .chunks_exact(size)
                    .map(|c| one::<kvm_cpuid_entry2>(c, "CPUID", name))
                    .collect::<Result<_, _>>()?;
            }
            REFUSED => {
                let text =
                    std::str::from_utf8(body).map_err(|_| bad("its refusal list is not UTF-8".into()))?;
                s.refused = text.lines().map(str::to_string).collect();
            }
            other => return Err(bad(format!("it has a record of unknown type {other}"))),
        }
    }
    if !have_regs || !have_sregs {
        return Err(bad("it lacks the general or special registers".into()));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bad_lengths() {
        let mut s = VcpuState::default();
        s.regs.rip = 0x1234;
        s.sregs.cr3 = 0x9000;
        s.fpu = Some(kvm_fpu { fcw: 0x37f, ..Default::default() });
        s.msrs = vec![(0x10, 99), (0xc000_0080, 0x500)];
        s.refused = vec!["KVM_GET_XSAVE: errno 22".into()];
        let bytes = encode(&s);
        let d = decode(&bytes, "vcpu0").unwrap();
        assert_eq!(d.regs.rip, 0x1234);
        assert_eq!(d.sregs.cr3, 0x9000);
        assert_eq!(d.fpu.unwrap().fcw, 0x37f);
        assert!(d.xsave.is_none());
        assert_eq!(d.msrs, s.msrs);
        assert_eq!(d.refused, s.refused);
        // A REGS record one byte short.
        let mut short = bytes.clone();
        short[4] -= 1;
        assert!(decode(&short, "vcpu0").is_err());
        assert!(decode(&bytes[..bytes.len() - 1], "vcpu0").is_err());
        assert!(decode(&[], "vcpu0").unwrap_err().to_string().contains("lacks"));
    }
}
