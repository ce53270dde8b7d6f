//! Just enough of the i8042 keyboard controller for a guest to reset the machine: Linux's
//! `reboot` (`reboot=k`, and the fallback of every other reboot method) waits for the
//! controller's input buffer to drain, then writes the "pulse reset line" command 0xfe to
//! the command port. vmscope ends the VM there instead of rebooting it, as Firecracker does.

/// The data port.
pub const I8042_DATA: u16 = 0x60;
/// The status (read) and command (write) port.
pub const I8042_COMMAND: u16 = 0x64;
/// Command: pulse the CPU reset line.
pub const CMD_RESET_CPU: u8 = 0xfe;

/// Whether `port` belongs to the controller.
pub fn owns(port: u16) -> bool {
    port == I8042_DATA || port == I8042_COMMAND
}

/// A read: the status register says "no data, input buffer empty"; there is never data.
pub fn read(_port: u16) -> u8 {
    0
}

/// A write: true if it asks for a reset.
pub fn write(port: u16, value: u8) -> bool {
    port == I8042_COMMAND && value == CMD_RESET_CPU
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_reset_command_resets() {
        assert!(write(I8042_COMMAND, CMD_RESET_CPU));
        assert!(!write(I8042_DATA, CMD_RESET_CPU));
        assert!(!write(I8042_COMMAND, 0xd1));
        assert_eq!(read(I8042_COMMAND) & 0x3, 0, "no output, input buffer empty");
        assert!(owns(0x60) && owns(0x64) && !owns(0x61));
    }
}
