//! The i8042 keyboard controller, reduced to what a kernel without a keyboard
//! uses: the status port answers "buffers empty" and command 0xFE (pulse the
//! reset line) resets the machine, which is how `reboot` ends a VM without ACPI.

use super::{PowerEvent, PowerSink};
use crate::bus::BusDevice;

/// Offset of the command/status port (0x64) from the data port (0x60).
pub const COMMAND_OFFSET: u64 = 4;
/// The command that pulses the CPU reset line.
pub const CMD_RESET_CPU: u8 = 0xfe;

/// An i8042 placed at 0x60 with a range of 5 bytes (0x60..=0x64); 0x61 belongs
/// to the in-kernel PIT's speaker port and never reaches this device.
pub struct I8042 {
    power: PowerSink,
}

impl I8042 {
    /// A controller that reports resets to `power`.
    pub fn new(power: PowerSink) -> Self {
        Self { power }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        // Status: output buffer empty, input buffer empty, system flag set.
        // Data: nothing pending.
        data.fill(0);
        if let Some(b) = data.first_mut() {
            *b = if _offset == COMMAND_OFFSET { 0x04 } else { 0 };
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset == COMMAND_OFFSET && data.first() == Some(&CMD_RESET_CPU) {
            (self.power)(PowerEvent::Reset);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn reset_command_reports_reset_only() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let mut dev = I8042::new(Arc::new(move |e| s.lock().unwrap().push(e)));
        let mut st = [0xffu8];
        dev.read(COMMAND_OFFSET, &mut st);
        assert_eq!(st[0] & 0x03, 0, "both buffers empty");
        dev.write(0, &[CMD_RESET_CPU]);
        dev.write(COMMAND_OFFSET, &[0xd1]);
        assert!(seen.lock().unwrap().is_empty());
        dev.write(COMMAND_OFFSET, &[CMD_RESET_CPU]);
        assert_eq!(*seen.lock().unwrap(), vec![PowerEvent::Reset]);
    }
}
