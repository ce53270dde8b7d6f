//! Just enough of the i8042 keyboard controller for a guest to reset the machine: Linux's
//! `reboot` (`reboot=k`, and the fallback of every other reboot method) waits for the
//! controller's input buffer to drain, then writes the "pulse reset line" command 0xfe to
//! the command port. vmscope ends the VM there instead of rebooting it, as Firecracker does.
//!
//! The status register always reads "input buffer empty, output buffer full": the reset
//! path's wait ends at once, and Linux's i8042 driver, which first flushes the output
//! buffer, reads 16 bytes of 0xff, finds the buffer never empties and decides there is no
//! controller ("i8042: No controller found") — instead of polling 10,000 times, each an exit
//! (emulated at CPL0 on PVM), for a command response that never comes.

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

/// Status register: output buffer full (OBF).
pub const STATUS_OBF: u8 = 1 << 0;
/// Status register: input buffer full (IBF).
pub const STATUS_IBF: u8 = 1 << 1;

/// A read: status "output full, input empty"; data all ones.
pub fn read(port: u16) -> u8 {
    if port == I8042_COMMAND {
        STATUS_OBF
    } else {
        0xff
    }
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
        assert_eq!(read(I8042_COMMAND) & STATUS_IBF, 0, "the reset path's wait ends at once");
        assert_ne!(read(I8042_COMMAND) & STATUS_OBF, 0, "Linux's flush finds no controller");
        assert_eq!(read(I8042_DATA), 0xff);
        assert!(owns(0x60) && owns(0x64) && !owns(0x61));
    }
}
