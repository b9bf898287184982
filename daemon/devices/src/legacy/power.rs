//! The hardware-reduced ACPI power ports: the FADT's sleep-control, sleep-status
//! and reset registers. `poweroff` in a stock kernel writes `SLP_TYP(S5) | SLP_EN`
//! to sleep control; `reboot` writes the reset value to the reset register.

use super::{PowerEvent, PowerSink};
use crate::bus::BusDevice;

/// Sleep-control SLP_EN.
pub const SLP_EN: u8 = 1 << 5;

/// The three byte-wide registers at consecutive ports: +0 sleep control,
/// +1 sleep status, +2 reset.
pub struct AcpiPower {
    s5_type: u8,
    reset_value: u8,
    power: PowerSink,
}

impl AcpiPower {
    /// Ports whose S5 sleep type is `s5_type` (from the DSDT's `_S5_`) and whose
    /// reset register expects `reset_value` (from the FADT).
    pub fn new(s5_type: u8, reset_value: u8, power: PowerSink) -> Self {
        Self {
            s5_type,
            reset_value,
            power,
        }
    }
}

impl BusDevice for AcpiPower {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        // Sleep status: wake status clear; nothing else to report.
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&v) = data.first() else { return };
        match offset {
            0 if v & SLP_EN != 0 && (v >> 2) & 0x7 == self.s5_type => {
                (self.power)(PowerEvent::Poweroff)
            }
            2 if v == self.reset_value => (self.power)(PowerEvent::Reset),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn s5_and_reset() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let mut dev = AcpiPower::new(5, 1, Arc::new(move |e| s.lock().unwrap().push(e)));
        dev.write(0, &[5 << 2]); // no SLP_EN
        dev.write(0, &[(3 << 2) | SLP_EN]); // S3: not power off
        dev.write(1, &[0x80]); // clearing wake status
        dev.write(2, &[0]);
        assert!(seen.lock().unwrap().is_empty());
        dev.write(0, &[(5 << 2) | SLP_EN]);
        dev.write(2, &[1]);
        assert_eq!(
            *seen.lock().unwrap(),
            vec![PowerEvent::Poweroff, PowerEvent::Reset]
        );
    }
}
