//! COM1: a 16550 UART (vm-superio's `Serial` state machine) whose output goes to the
//! console sink and whose interrupt, when the VM has an in-kernel irqchip, is an eventfd
//! bound to IRQ 4.

use crate::devices::console::Console;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

/// COM1's first port.
pub const COM1_BASE: u16 = 0x3f8;
/// COM1's number of ports.
pub const COM1_LEN: u16 = 8;
/// COM1's ISA interrupt line.
pub const COM1_IRQ: u32 = 4;

/// The serial interrupt: an irqfd, or nothing when the VM has no irqchip.
#[derive(Debug)]
pub struct SerialIrq(Option<Arc<EventFd>>);

impl Trigger for SerialIrq {
    type E = std::io::Error;
    fn trigger(&self) -> std::io::Result<()> {
        match &self.0 {
            Some(fd) => fd.write(1),
            None => Ok(()),
        }
    }
}

/// Writes serial output to the console.
pub struct ConsoleWriter(Console);

impl std::io::Write for ConsoleWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// COM1.
pub struct SerialPort {
    uart: Serial<SerialIrq, vm_superio::serial::NoEvents, ConsoleWriter>,
    bytes_out: u64,
}

impl SerialPort {
    /// A UART writing to `console`, raising `irq` (if any) on interrupts.
    pub fn new(console: Console, irq: Option<EventFd>) -> Self {
        Self { uart: Serial::new(SerialIrq(irq.map(Arc::new)), ConsoleWriter(console)), bytes_out: 0 }
    }

    /// A guest `in` from register `offset`.
    pub fn read(&mut self, offset: u8) -> u8 {
        self.uart.read(offset)
    }

    /// A guest `out` to register `offset`. A failing interrupt trigger is not the guest's
    /// fault and does not stop it.
    pub fn write(&mut self, offset: u8, value: u8) {
        if offset == 0 {
            self.bytes_out += 1;
        }
        if let Err(e) = self.uart.write(offset, value) {
            tracing::debug!("serial write to offset {offset} failed: {e:?}");
        }
    }

    /// Queues host input for the guest to read; returns how many bytes fit in the FIFO.
    pub fn enqueue_input(&mut self, bytes: &[u8]) -> usize {
        self.uart.enqueue_raw_bytes(bytes).unwrap_or(0)
    }

    /// The UART's registers and receive FIFO, and the transmit count (for a snapshot).
    pub fn state(&self) -> (vm_superio::SerialState, u64) {
        (self.uart.state(), self.bytes_out)
    }

    /// A UART in `state` (from [`SerialPort::state`]) writing to `console`. A receive FIFO
    /// longer than the 16550's 64 bytes is refused.
    pub fn from_state(
        console: Console,
        irq: Option<EventFd>,
        state: &vm_superio::SerialState,
        bytes_out: u64,
    ) -> Result<Self, String> {
        Self::with_state(console, SerialIrq(irq.map(Arc::new)), state, bytes_out)
    }

    fn with_state(
        console: Console,
        irq: SerialIrq,
        state: &vm_superio::SerialState,
        bytes_out: u64,
    ) -> Result<Self, String> {
        let uart = Serial::from_state(state, irq, vm_superio::serial::NoEvents, ConsoleWriter(console))
            .map_err(|e| e.to_string())?;
        Ok(Self { uart, bytes_out })
    }

    /// Puts the UART back in `state` (a checkpoint's rewind), keeping its console and its
    /// interrupt line. A receive FIFO longer than the 16550's 64 bytes is refused.
    pub fn restore(&mut self, state: &vm_superio::SerialState, bytes_out: u64) -> Result<(), String> {
        let irq = SerialIrq(self.uart.interrupt_evt().0.clone());
        let console = self.uart.writer().0.clone();
        *self = Self::with_state(console, irq, state, bytes_out)?;
        Ok(())
    }

    /// Bytes written to the transmit register so far (including divisor-latch writes).
    pub fn bytes_out(&self) -> u64 {
        self.bytes_out
    }
}

/// Types into COM1's receive FIFO from any thread: what a frontend holds instead of the
/// port itself (the TUI's console pane, `run linux --shell`'s standard input).
#[derive(Clone)]
pub struct SerialInput(Arc<Mutex<SerialPort>>);

impl SerialInput {
    /// The input side of `port`.
    pub fn new(port: Arc<Mutex<SerialPort>>) -> Self {
        Self(port)
    }

    /// Queues as many of `bytes` as the 64-byte FIFO takes now; returns how many.
    pub fn send(&self, bytes: &[u8]) -> usize {
        self.0.lock().map(|mut s| s.enqueue_input(bytes)).unwrap_or(0)
    }

    /// Queues all of `bytes`, waiting while the guest has not read the FIFO empty enough.
    /// Gives up (returning how many went in) once `patience` passes without progress, so a
    /// guest that stopped reading cannot hold the caller forever.
    pub fn send_all(&self, bytes: &[u8], patience: Duration) -> usize {
        const POLL: Duration = Duration::from_millis(5);
        let mut sent = 0;
        let mut waited = Duration::ZERO;
        while sent < bytes.len() {
            let taken = self.send(&bytes[sent..]);
            sent += taken;
            if taken > 0 {
                waited = Duration::ZERO;
            } else if waited >= patience {
                break;
            } else {
                std::thread::sleep(POLL);
                waited += POLL;
            }
        }
        sent
    }
}
