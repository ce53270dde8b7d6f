//! The `vm` section: state that belongs to the VM rather than to a vCPU or a device model
//! of vmscope's — the guest's clock (KVM_GET_CLOCK) and, with an in-kernel irqchip, the two
//! 8259 PICs and the IOAPIC (KVM_GET_IRQCHIP) and the 8254 PIT (KVM_GET_PIT2). Tagged
//! records like a vCPU section: `tag u32 · length u32 · KVM's struct as KVM filled it`.

use super::SnapshotError;
use crate::vstate::vm::Vm;
use kvm_bindings::{
    kvm_clock_data, kvm_irqchip, kvm_pit_state2, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER,
    KVM_IRQCHIP_PIC_SLAVE,
};
use zerocopy::{FromBytes, IntoBytes};

const CLOCK: u32 = 1;
const PIC_MASTER: u32 = 2;
const PIC_SLAVE: u32 = 3;
const IOAPIC: u32 = 4;
const PIT2: u32 = 5;

/// The VM's own state. `None` parts were refused by the host or do not exist (no irqchip).
#[derive(Clone, Default)]
pub struct VmState {
    /// kvmclock's base (KVM_GET_CLOCK): restored, the guest's clock goes on from it.
    pub clock: Option<kvm_clock_data>,
    /// The master 8259 PIC, the slave one and the IOAPIC (KVM_GET_IRQCHIP).
    pub pic_master: Option<kvm_irqchip>,
    /// See `pic_master`.
    pub pic_slave: Option<kvm_irqchip>,
    /// See `pic_master`.
    pub ioapic: Option<kvm_irqchip>,
    /// The 8254 PIT's channels (KVM_GET_PIT2).
    pub pit: Option<kvm_pit_state2>,
}

impl std::fmt::Debug for VmState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VmState")
            .field("clock", &self.clock.map(|c| c.clock))
            .field("irqchip", &self.ioapic.is_some())
            .field("pit", &self.pit.is_some())
            .finish()
    }
}

impl VmState {
    /// Whether the in-kernel interrupt controllers and PIT are all here.
    pub fn has_irqchip(&self) -> bool {
        self.pic_master.is_some() && self.pic_slave.is_some() && self.ioapic.is_some() && self.pit.is_some()
    }
}

fn chip(id: u32) -> kvm_irqchip {
    kvm_irqchip { chip_id: id, ..Default::default() }
}

/// Reads the VM's state; a part the host refuses is named in `refused`.
pub fn capture(vm: &Vm, refused: &mut Vec<String>) -> VmState {
    let fd = vm.fd();
    let mut s = VmState::default();
    match fd.get_clock() {
        Ok(c) => s.clock = Some(c),
        Err(e) => refused.push(format!("VM: KVM_GET_CLOCK: {e}")),
    }
    if !vm.has_irqchip() {
        return s;
    }
    for (id, slot, name) in [
        (KVM_IRQCHIP_PIC_MASTER, &mut s.pic_master, "PIC master"),
        (KVM_IRQCHIP_PIC_SLAVE, &mut s.pic_slave, "PIC slave"),
        (KVM_IRQCHIP_IOAPIC, &mut s.ioapic, "IOAPIC"),
    ] {
        let mut c = chip(id);
        match fd.get_irqchip(&mut c) {
            Ok(()) => *slot = Some(c),
            Err(e) => refused.push(format!("VM: KVM_GET_IRQCHIP ({name}): {e}")),
        }
    }
    match fd.get_pit2() {
        Ok(p) => s.pit = Some(p),
        Err(e) => refused.push(format!("VM: KVM_GET_PIT2: {e}")),
    }
    s
}

/// Writes `s` into a new VM (made with an irqchip if `s` has one), before any vCPU runs:
/// the PIT, the interrupt controllers, then the clock. A clock KVM will not set is a note
/// (the guest's clock then restarts); anything else refused is an error.
pub fn restore(vm: &Vm, s: &VmState, notes: &mut Vec<String>) -> Result<(), SnapshotError> {
    let fd = vm.fd();
    let ioctl = |op, source| SnapshotError::VmIoctl { op, source };
    if let Some(p) = &s.pit {
        fd.set_pit2(p).map_err(|e| ioctl("KVM_SET_PIT2", e))?;
    }
    for c in [&s.pic_master, &s.pic_slave, &s.ioapic].into_iter().flatten() {
        fd.set_irqchip(c).map_err(|e| ioctl("KVM_SET_IRQCHIP", e))?;
    }
    if let Some(mut clock) = s.clock {
        // KVM refuses flags it reports but does not take (KVM_CLOCK_TSC_STABLE).
        clock.flags = 0;
        if let Err(e) = fd.set_clock(&clock) {
            notes.push(format!("KVM_SET_CLOCK: {e}; the guest's kvmclock restarts"));
        }
    }
    Ok(())
}

fn record(out: &mut Vec<u8>, tag: u32, bytes: &[u8]) {
    out.extend_from_slice(&tag.to_le_bytes());
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// The section's bytes.
pub fn encode(s: &VmState) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(c) = &s.clock {
        record(&mut out, CLOCK, c.as_bytes());
    }
    for (tag, c) in [(PIC_MASTER, &s.pic_master), (PIC_SLAVE, &s.pic_slave), (IOAPIC, &s.ioapic)] {
        if let Some(c) = c {
            record(&mut out, tag, c.as_bytes());
        }
    }
    if let Some(p) = &s.pit {
        record(&mut out, PIT2, p.as_bytes());
    }
    out
}

fn one<T: FromBytes>(body: &[u8], what: &str) -> Result<T, SnapshotError> {
    T::read_from_bytes(body).map_err(|_| SnapshotError::BadSection {
        section: "vm".into(),
        detail: format!("its {what} record is {} bytes, not {}", body.len(), std::mem::size_of::<T>()),
    })
}

/// Decodes the section: every record's length must equal its structure's, and an irqchip
/// record must name the chip it is filed under.
pub fn decode(bytes: &[u8]) -> Result<VmState, SnapshotError> {
    let bad = |detail: String| SnapshotError::BadSection { section: "vm".into(), detail };
    let mut s = VmState::default();
    let mut rest = bytes;
    while !rest.is_empty() {
        if rest.len() < 8 {
            return Err(bad(format!("{} stray bytes at its end", rest.len())));
        }
        let tag = u32::from_le_bytes(rest[..4].try_into().unwrap_or_default());
        let len = u32::from_le_bytes(rest[4..8].try_into().unwrap_or_default()) as usize;
        let body = rest.get(8..8 + len).ok_or_else(|| bad(format!("record {tag} runs past the section")))?;
        rest = &rest[8 + len..];
        let irqchip = |want: u32, name: &str| -> Result<Option<kvm_irqchip>, SnapshotError> {
            let c: kvm_irqchip = one(body, name)?;
            if c.chip_id != want {
                return Err(bad(format!("its {name} record is chip {}, not {want}", c.chip_id)));
            }
            Ok(Some(c))
        };
        match tag {
            CLOCK => s.clock = Some(one(body, "clock")?),
            PIC_MASTER => s.pic_master = irqchip(KVM_IRQCHIP_PIC_MASTER, "PIC master")?,
            PIC_SLAVE => s.pic_slave = irqchip(KVM_IRQCHIP_PIC_SLAVE, "PIC slave")?,
            IOAPIC => s.ioapic = irqchip(KVM_IRQCHIP_IOAPIC, "IOAPIC")?,
            PIT2 => s.pit = Some(one(body, "PIT")?),
            other => return Err(bad(format!("it has a record of unknown type {other}"))),
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_are_checked() {
        let s = VmState {
            clock: Some(kvm_clock_data { clock: 123_456, ..Default::default() }),
            pic_master: Some(chip(KVM_IRQCHIP_PIC_MASTER)),
            pic_slave: Some(chip(KVM_IRQCHIP_PIC_SLAVE)),
            ioapic: Some(chip(KVM_IRQCHIP_IOAPIC)),
            pit: Some(kvm_pit_state2 { flags: 1, ..Default::default() }),
        };
        let bytes = encode(&s);
        let d = decode(&bytes).unwrap();
        assert_eq!(d.clock.unwrap().clock, 123_456);
        assert!(d.has_irqchip());
        assert_eq!(d.pit.unwrap().flags, 1);
        assert!(decode(&[]).unwrap().clock.is_none(), "an empty section is a VM without state");
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        // The master PIC's record filed as the IOAPIC's.
        let mut swapped = Vec::new();
        record(&mut swapped, IOAPIC, chip(KVM_IRQCHIP_PIC_MASTER).as_bytes());
        assert!(decode(&swapped).unwrap_err().to_string().contains("chip 0, not 2"));
        let mut unknown = Vec::new();
        record(&mut unknown, 99, &[]);
        assert!(decode(&unknown).unwrap_err().to_string().contains("unknown type 99"));
    }
}
