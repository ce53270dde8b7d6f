//! Devices: the legacy PC ports (16550 serial, the exit port), vmscope's hypercall ports,
//! and virtio devices on MMIO. Each device model is a plain state machine; [`PortIoBus`]
//! routes a vCPU's port I/O exit to it and [`MmioBus`] its MMIO exits.

pub mod console;
pub mod doorbell;
pub mod hypercall;
pub mod legacy;
pub mod mmio_bus;
pub mod virtio;

pub use crate::vstate::bus::PioOutcome;
pub use mmio_bus::{MmioBus, MmioDeviceInfo, MMIO_BASE};

use console::Console;
use doorbell::DoorbellPort;
use hypercall::{HypercallOutcome, Hypercalls};
use legacy::serial::{SerialPort, COM1_BASE, COM1_LEN};
use std::sync::{Arc, Mutex, PoisonError};
use vmscope_abi::{PORT_CONSOLE_WRITE, PORT_EXIT, PORT_SLEEP, PORT_WALL_TIME, SLEEP_MAX_US};

/// Routes port I/O to devices, and carries the VM's [`MmioBus`]. Shared by all vCPUs.
#[derive(Clone)]
pub struct PortIoBus {
    serial: Arc<Mutex<SerialPort>>,
    hypercalls: Hypercalls,
    mmio: MmioBus,
    doorbell: Option<DoorbellPort>,
}

impl PortIoBus {
    /// A bus with COM1 at 0x3f8 and the hypercall ports.
    pub fn new(serial: Arc<Mutex<SerialPort>>, hypercalls: Hypercalls) -> Self {
        Self { serial, hypercalls, mmio: MmioBus::default(), doorbell: None }
    }

    /// The same ports, with a doorbell whose writes register its ioeventfd when they exit.
    pub fn with_doorbell(self, doorbell: DoorbellPort) -> Self {
        Self { doorbell: Some(doorbell), ..self }
    }

    /// The same ports, with `mmio` for MMIO exits.
    pub fn with_mmio(self, mmio: MmioBus) -> Self {
        Self { mmio, ..self }
    }

    /// The MMIO devices.
    pub fn mmio(&self) -> &MmioBus {
        &self.mmio
    }

    /// The console both the serial port and the console hypercall write to.
    pub fn console(&self) -> &Console {
        self.hypercalls.console()
    }

    /// Hypercalls refused so far, by reason.
    pub fn hypercall_refusals(&self) -> hypercall::HypercallRefusals {
        self.hypercalls.refusals()
    }

    /// The serial port (to feed it input).
    pub fn serial(&self) -> &Arc<Mutex<SerialPort>> {
        &self.serial
    }

    /// An `in` from `port`: fills `data`.
    pub fn read(&self, port: u16, data: &mut [u8]) -> PioOutcome {
        if let Some(offset) = com1_offset(port) {
            let mut serial = self.serial.lock().unwrap_or_else(PoisonError::into_inner);
            data.fill(0);
            if let Some(b) = data.first_mut() {
                *b = serial.read(offset);
            }
            return PioOutcome::Handled;
        }
        if legacy::i8042::owns(port) {
            data.fill(0);
            if let Some(b) = data.first_mut() {
                *b = legacy::i8042::read(port);
            }
            return PioOutcome::Handled;
        }
        data.fill(0xff);
        PioOutcome::Unhandled
    }

    /// An `out` of `data` to `port`.
    pub fn write(&self, port: u16, data: &[u8]) -> PioOutcome {
        if let Some(offset) = com1_offset(port) {
            let mut serial = self.serial.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(b) = data.first() {
                serial.write(offset, *b);
            }
            return PioOutcome::Handled;
        }
        if legacy::i8042::owns(port) {
            let reset = data.first().is_some_and(|b| legacy::i8042::write(port, *b));
            return if reset { PioOutcome::Reset } else { PioOutcome::Handled };
        }
        let value = le_value(data);
        match port {
            PORT_EXIT => PioOutcome::Exit(value),
            PORT_SLEEP => PioOutcome::Sleep(std::time::Duration::from_micros(value.min(SLEEP_MAX_US).into())),
            PORT_CONSOLE_WRITE | PORT_WALL_TIME => match self.hypercalls.handle(port, value) {
                HypercallOutcome::Done => PioOutcome::Handled,
            },
            _ if self.doorbell.as_ref().is_some_and(|d| d.port() == port) => {
                self.doorbell.as_ref().map(DoorbellPort::rang_by_exit);
                PioOutcome::Handled
            }
            _ => PioOutcome::Unhandled,
        }
    }
}

impl crate::vstate::bus::GuestBus for PortIoBus {
    fn pio_read(&self, port: u16, data: &mut [u8]) -> PioOutcome {
        self.read(port, data)
    }

    fn pio_write(&self, port: u16, data: &[u8]) -> PioOutcome {
        self.write(port, data)
    }

    fn mmio_read(&self, addr: u64, data: &mut [u8]) -> bool {
        self.mmio.read(addr, data)
    }

    fn mmio_write(&self, addr: u64, data: &[u8]) -> bool {
        self.mmio.write(addr, data)
    }

    fn flush_output(&self) {
        self.console().flush();
    }
}

fn com1_offset(port: u16) -> Option<u8> {
    (COM1_BASE..COM1_BASE + COM1_LEN).contains(&port).then(|| (port - COM1_BASE) as u8)
}

/// The value of a 1-, 2- or 4-byte port write.
fn le_value(data: &[u8]) -> u32 {
    let mut b = [0u8; 4];
    let n = data.len().min(4);
    b[..n].copy_from_slice(&data[..n]);
    u32::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vstate::memory::create_guest_memory;
    use std::time::Duration;

    fn bus() -> (PortIoBus, Console) {
        let console = Console::buffer();
        let mem = create_guest_memory(4 << 20).unwrap();
        let serial = Arc::new(Mutex::new(SerialPort::new(console.clone(), None)));
        (PortIoBus::new(serial, Hypercalls::new(mem, console.clone())), console)
    }

    #[test]
    fn routes_ports() {
        let (bus, console) = bus();
        assert_eq!(bus.write(0x3f8, b"A"), PioOutcome::Handled);
        assert_eq!(console.take_buffer(), b"A");
        assert_eq!(bus.write(PORT_EXIT, &7u32.to_le_bytes()), PioOutcome::Exit(7));
        assert_eq!(bus.write(PORT_EXIT, &[3]), PioOutcome::Exit(3));
        let mut d = [0u8; 2];
        assert_eq!(bus.read(0x1234, &mut d), PioOutcome::Unhandled);
        assert_eq!(d, [0xff, 0xff]);
        assert_eq!(bus.write(0x80, &[1]), PioOutcome::Unhandled);
        assert_eq!(bus.write(0x64, &[0xfe]), PioOutcome::Reset);
        assert_eq!(
            bus.write(PORT_SLEEP, &250u32.to_le_bytes()),
            PioOutcome::Sleep(Duration::from_micros(250))
        );
        assert_eq!(
            bus.write(PORT_SLEEP, &u32::MAX.to_le_bytes()),
            PioOutcome::Sleep(Duration::from_secs(1)),
            "a sleep is cut to a second"
        );
        assert_eq!(bus.write(0x64, &[0xd1]), PioOutcome::Handled);
        // LSR: transmitter empty.
        let mut lsr = [0u8];
        bus.read(0x3fd, &mut lsr);
        assert_ne!(lsr[0] & 0x20, 0);
    }
}
