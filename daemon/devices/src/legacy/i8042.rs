//! The i8042 keyboard controller with a PS/2 keyboard behind it
//! ([`super::ps2_keyboard`]), so the guest's virtual terminals take keys.
//!
//! - Ports: data `0x60`, status/command `0x64` (the range `0x60..=0x64`;
//!   `0x61` belongs to the in-kernel PIT's speaker port and never comes here).
//! - The controller answers what the Linux `i8042` driver asks at probe
//!   (self-test, command byte, keyboard port test, enable/disable), keeps the
//!   translation bit of its command byte and, when it is set, translates the
//!   keyboard's set 2 into set 1 as a real 8042 does
//!   ([`super::scancode::Translator`]).
//! - One byte at a time sits in the output register; it raises IRQ 1 (an
//!   edge, as the serial port's) when the command byte enables the keyboard
//!   interrupt. Reading the data port takes the byte and moves up the next.
//! - Pulsing output line 0 (command `0xFE`), or clearing it through the
//!   output port, resets the machine — how `reboot` ends a VM without ACPI.
//! - There is no PS/2 mouse: the DSDT names only the keyboard (`PNP0303`), so
//!   Linux does not probe an AUX port; bytes sent to one are dropped.

use std::collections::VecDeque;

use vm_superio::Trigger;

use super::ps2_keyboard::Ps2Keyboard;
use super::scancode::Translator;
use super::serial::IrqEdge;
use super::{PowerEvent, PowerSink};
use crate::bus::BusDevice;

/// Offset of the command/status port (0x64) from the data port (0x60).
pub const COMMAND_OFFSET: u64 = 4;
/// The command that pulses the CPU reset line.
pub const CMD_RESET_CPU: u8 = 0xfe;
/// The keyboard's ISA interrupt.
pub const KEYBOARD_IRQ: u32 = 1;

// Status register bits.
const STATUS_OBF: u8 = 0x01;
const STATUS_SYS: u8 = 0x04;
const STATUS_CMD: u8 = 0x08;
const STATUS_UNLOCKED: u8 = 0x10;

// Command byte bits.
const CTR_KBD_INT: u8 = 0x01;
const CTR_SYS: u8 = 0x04;
const CTR_KBD_DISABLED: u8 = 0x10;
const CTR_AUX_DISABLED: u8 = 0x20;
const CTR_XLATE: u8 = 0x40;

/// A controller command waiting for its data byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    CommandByte,
    OutputPort,
    KeyboardOutput,
    Discard,
}

/// The i8042 and its keyboard.
pub struct I8042 {
    power: PowerSink,
    irq: Option<IrqEdge>,
    ctr: u8,
    output_port: u8,
    status_cmd: bool,
    awaiting: Option<Awaiting>,
    /// The output register.
    out: Option<u8>,
    /// Controller answers, ahead of keyboard bytes.
    answers: VecDeque<u8>,
    keyboard: Ps2Keyboard,
    translator: Translator,
}

impl I8042 {
    /// A controller that reports resets to `power` and raises the keyboard
    /// interrupt through `irq` (`None`: polled only, as in tests).
    pub fn new(power: PowerSink, irq: Option<IrqEdge>) -> Self {
        Self {
            power,
            irq,
            ctr: CTR_KBD_INT | CTR_SYS | CTR_AUX_DISABLED | CTR_XLATE,
            output_port: 0x03,
            status_cmd: false,
            awaiting: None,
            out: None,
            answers: VecDeque::new(),
            keyboard: Ps2Keyboard::new(),
            translator: Translator::default(),
        }
    }

    /// Host key presses in scan code set 1; returns how many bytes were
    /// taken (the rest waits for room in the keyboard's buffer).
    pub fn send_keys(&mut self, set1: &[u8]) -> usize {
        let n = self.keyboard.keys(set1);
        self.refill();
        n
    }

    /// The keyboard LEDs the guest lit (Scroll 1, Num 2, Caps 4).
    pub fn leds(&self) -> u8 {
        self.keyboard.leds()
    }

    /// The next keyboard byte as the guest sees it (translated when the
    /// command byte says so; a translated break prefix is absorbed).
    fn next_keyboard_byte(&mut self) -> Option<u8> {
        while let Some(b) = self.keyboard.pop() {
            if self.ctr & CTR_XLATE == 0 {
                return Some(b);
            }
            if let Some(t) = self.translator.feed(b) {
                return Some(t);
            }
        }
        None
    }

    /// Fills the output register if it is empty, raising the interrupt.
    fn refill(&mut self) {
        if self.out.is_some() {
            return;
        }
        let next = match self.answers.pop_front() {
            Some(b) => Some(b),
            None if self.ctr & CTR_KBD_DISABLED == 0 => self.next_keyboard_byte(),
            None => None,
        };
        if let Some(b) = next {
            self.out = Some(b);
            if self.ctr & CTR_KBD_INT != 0 {
                if let Some(irq) = &self.irq {
                    if let Err(e) = irq.trigger() {
                        crate::guest_log!(debug, "i8042 interrupt: {e}");
                    }
                }
            }
        }
    }

    fn answer(&mut self, b: u8) {
        self.answers.push_back(b);
    }

    fn status(&self) -> u8 {
        let mut s = STATUS_UNLOCKED;
        if self.out.is_some() {
            s |= STATUS_OBF;
        }
        if self.ctr & CTR_SYS != 0 {
            s |= STATUS_SYS;
        }
        if self.status_cmd {
            s |= STATUS_CMD;
        }
        s
    }

    fn controller_command(&mut self, cmd: u8) {
        self.awaiting = None;
        match cmd {
            0x20 => self.answer(self.ctr),
            0x21..=0x3f => self.answer(0),
            0x60 => self.awaiting = Some(Awaiting::CommandByte),
            0x61..=0x7f => self.awaiting = Some(Awaiting::Discard),
            0xa7 => self.ctr |= CTR_AUX_DISABLED,
            0xa8 => self.ctr &= !CTR_AUX_DISABLED,
            // AUX interface test: "clock line stuck high", i.e. no mouse port.
            0xa9 => self.answer(0x02),
            0xaa => self.answer(0x55),
            0xab => self.answer(0x00),
            0xad => self.ctr |= CTR_KBD_DISABLED,
            0xae => self.ctr &= !CTR_KBD_DISABLED,
            0xc0 => self.answer(0x80),
            0xd0 => self.answer(self.output_port),
            0xd1 => self.awaiting = Some(Awaiting::OutputPort),
            0xd2 => self.awaiting = Some(Awaiting::KeyboardOutput),
            0xd3 | 0xd4 => self.awaiting = Some(Awaiting::Discard),
            // Pulse output lines: line 0 low resets the CPU.
            0xf0..=0xff if cmd & 0x01 == 0 => (self.power)(PowerEvent::Reset),
            _ => {}
        }
    }

    fn data(&mut self, b: u8) {
        match self.awaiting.take() {
            Some(Awaiting::CommandByte) => self.ctr = b,
            Some(Awaiting::OutputPort) => {
                self.output_port = b;
                if b & 0x01 == 0 {
                    (self.power)(PowerEvent::Reset);
                }
            }
            Some(Awaiting::KeyboardOutput) => self.answer(b),
            Some(Awaiting::Discard) => {}
            None => {
                // Writing to the keyboard enables its interface.
                self.ctr &= !CTR_KBD_DISABLED;
                self.keyboard.command(b);
            }
        }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let Some(first) = data.first_mut() else {
            return;
        };
        if offset == COMMAND_OFFSET {
            *first = self.status();
        } else if offset == 0 {
            *first = self.out.take().unwrap_or(0);
            self.refill();
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&b) = data.first() else { return };
        if offset == COMMAND_OFFSET {
            self.status_cmd = true;
            self.controller_command(b);
        } else if offset == 0 {
            self.status_cmd = false;
            self.data(b);
        }
        self.refill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn controller() -> (I8042, Arc<Mutex<Vec<PowerEvent>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        (
            I8042::new(Arc::new(move |e| s.lock().unwrap().push(e)), None),
            seen,
        )
    }

    fn read_data(c: &mut I8042) -> Option<u8> {
        let mut st = [0u8];
        c.read(COMMAND_OFFSET, &mut st);
        if st[0] & STATUS_OBF == 0 {
            return None;
        }
        let mut b = [0u8];
        c.read(0, &mut b);
        Some(b[0])
    }

    fn drain(c: &mut I8042) -> Vec<u8> {
        std::iter::from_fn(|| read_data(c)).collect()
    }

    #[test]
    fn reset_command_reports_reset_only() {
        let (mut dev, seen) = controller();
        let mut st = [0xffu8];
        dev.read(COMMAND_OFFSET, &mut st);
        assert_eq!(st[0] & 0x03, 0, "both buffers empty");
        dev.write(0, &[CMD_RESET_CPU]); // to the keyboard: not a reset
        dev.write(COMMAND_OFFSET, &[0xd1]);
        dev.write(0, &[0x03]); // output port with the reset line high
        assert!(seen.lock().unwrap().is_empty());
        dev.write(COMMAND_OFFSET, &[CMD_RESET_CPU]);
        assert_eq!(*seen.lock().unwrap(), vec![PowerEvent::Reset]);
    }

    #[test]
    fn the_linux_probe_sequence_is_answered() {
        let (mut c, _) = controller();
        c.write(COMMAND_OFFSET, &[0xaa]);
        assert_eq!(drain(&mut c), [0x55], "self-test");
        c.write(COMMAND_OFFSET, &[0x20]);
        let ctr = drain(&mut c);
        assert_eq!(ctr.len(), 1);
        assert_ne!(ctr[0] & CTR_XLATE, 0, "translation on, as a BIOS leaves it");
        c.write(COMMAND_OFFSET, &[0x60]);
        c.write(0, &[ctr[0] & !CTR_KBD_INT]);
        c.write(COMMAND_OFFSET, &[0x20]);
        assert_eq!(drain(&mut c), [ctr[0] & !CTR_KBD_INT]);
        c.write(COMMAND_OFFSET, &[0xab]);
        assert_eq!(drain(&mut c), [0x00], "keyboard port test");
        // atkbd: reset, then identify (translated: AB 41).
        c.write(0, &[0xff]);
        assert_eq!(drain(&mut c), [0xfa, 0xaa]);
        c.write(0, &[0xf2]);
        assert_eq!(drain(&mut c), [0xfa, 0xab, 0x41]);
        c.write(0, &[0xed]);
        c.write(0, &[0x02]);
        assert_eq!(drain(&mut c), [0xfa, 0xfa]);
        assert_eq!(c.leds(), 0x02);
    }

    #[test]
    fn keys_arrive_in_set_1_when_translating_and_set_2_when_not() {
        let (mut c, _) = controller();
        // 'a' then Up, pressed and released.
        let keys = [0x1e, 0x9e, 0xe0, 0x48, 0xe0, 0xc8];
        assert_eq!(c.send_keys(&keys), keys.len());
        assert_eq!(drain(&mut c), keys);
        c.write(COMMAND_OFFSET, &[0x60]);
        c.write(0, &[CTR_KBD_INT | CTR_SYS]);
        c.send_keys(&keys);
        assert_eq!(
            drain(&mut c),
            [0x1c, 0xf0, 0x1c, 0xe0, 0x75, 0xe0, 0xf0, 0x75]
        );
    }

    #[test]
    fn a_disabled_keyboard_port_holds_keys_until_enabled() {
        let (mut c, _) = controller();
        c.write(COMMAND_OFFSET, &[0xad]);
        c.send_keys(&[0x1e, 0x9e]);
        assert_eq!(drain(&mut c), [0u8; 0]);
        c.write(COMMAND_OFFSET, &[0xae]);
        assert_eq!(drain(&mut c), [0x1e, 0x9e]);
    }

    #[test]
    fn each_byte_raises_the_keyboard_interrupt_when_enabled() {
        let lines = Arc::new(crate::interrupt::RecordedLines::default());
        let mut c = I8042::new(
            Arc::new(|_| {}),
            Some(IrqEdge::new(lines.clone(), KEYBOARD_IRQ)),
        );
        c.send_keys(&[0x1e, 0x9e]);
        let mut b = [0u8];
        c.read(0, &mut b);
        c.read(0, &mut b);
        let rises = lines
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|&&(irq, level)| irq == KEYBOARD_IRQ && level)
            .count();
        assert_eq!(rises, 2, "one edge per byte");
    }
}
