//! What a vCPU needs from the devices: somewhere to send its port I/O and MMIO exits. The
//! device side (`devices::PortIoBus`) implements [`GuestBus`], so the vCPU code depends on
//! this trait and never on a device model.

/// What a port access asks of the vCPU loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PioOutcome {
    /// A device handled it; the guest continues.
    Handled,
    /// No device sits at this port (reads return all ones, writes are dropped).
    Unhandled,
    /// The guest asked to stop the VM with this exit code.
    Exit(u32),
    /// The guest pulsed the reset line (i8042 command 0xfe): the VM ends.
    Reset,
    /// The guest asked to sleep this long before it runs again (`vmscope_abi::PORT_SLEEP`).
    Sleep(std::time::Duration),
}

/// The VM's buses as a vCPU sees them. Shared by all vCPUs, so `&self` and thread-safe.
pub trait GuestBus: Send + Sync {
    /// An `in` from `port`: fills `data` (all ones where no device answers).
    fn pio_read(&self, port: u16, data: &mut [u8]) -> PioOutcome;
    /// An `out` of `data` to `port`.
    fn pio_write(&self, port: u16, data: &[u8]) -> PioOutcome;
    /// An MMIO load from `addr`: fills `data`; false when no device is mapped there.
    fn mmio_read(&self, addr: u64, data: &mut [u8]) -> bool;
    /// An MMIO store to `addr`; false when no device is mapped there.
    fn mmio_write(&self, addr: u64, data: &[u8]) -> bool;
    /// Writes out guest output the devices hold back to batch it (see
    /// `devices::console`). The vCPU calls it when the guest ends a batch: before a device
    /// read, a sleep, a stop.
    fn flush_output(&self) {}
}
