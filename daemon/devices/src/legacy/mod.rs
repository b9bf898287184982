//! Legacy PC devices a stock kernel expects on port I/O: the 8250 serial console,
//! the i8042 controller with its PS/2 keyboard, the VGA text screen, and the
//! ACPI power ports (sleep control, sleep status, reset register) named in the
//! FADT.

pub mod i8042;
pub mod power;
pub mod ps2_keyboard;
pub mod scancode;
pub mod serial;
pub mod vga;

use std::sync::Arc;

/// What the guest asked the machine to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerEvent {
    /// Reset (i8042 pulse, ACPI reset register).
    Reset,
    /// Power off (ACPI S5 through the sleep-control register).
    Poweroff,
}

/// Receives power events from devices (the VMM stops the vCPUs on them).
pub type PowerSink = Arc<dyn Fn(PowerEvent) + Send + Sync>;
