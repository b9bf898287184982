//! A PS/2 keyboard as the i8042 sees it: it answers the commands the Linux
//! `atkbd` driver sends (reset, identify, LEDs, typematic rate, scan code set,
//! enable/disable scanning) and turns host key presses into scan codes of the
//! set the guest selected. What it sends goes to the controller's output
//! queue (see [`super::i8042`]).

use std::collections::VecDeque;

use super::scancode;

/// Acknowledge.
pub const ACK: u8 = 0xfa;
/// Resend (the answer to a command the keyboard does not know).
pub const RESEND: u8 = 0xfe;
/// Basic assurance test passed (after a reset).
pub const BAT_OK: u8 = 0xaa;
/// The identity of an MF2 keyboard (before the controller's translation).
pub const ID: [u8; 2] = [0xab, 0x83];

/// Bytes of key scan codes the keyboard holds for the guest; more waits on
/// the host side (the console offers it again).
pub const KEY_BUFFER: usize = 64;

/// The LED bits of the set-LEDs command: Scroll, Num and Caps Lock.
pub const LED_MASK: u8 = 0x07;

/// The keyboard's state.
#[derive(Debug, Clone)]
pub struct Ps2Keyboard {
    /// Bytes waiting for the controller (answers and key scan codes).
    out: VecDeque<u8>,
    /// A command waiting for its parameter byte.
    pending: Option<u8>,
    /// Scanning enabled (keys reported).
    scanning: bool,
    /// Scan code set 1, 2 or 3 (3 is served as 2).
    set: u8,
    /// Lit LEDs (Scroll 1, Num 2, Caps 4).
    leds: u8,
    /// The last byte sent (for RESEND).
    last: u8,
}

impl Default for Ps2Keyboard {
    fn default() -> Self {
        Self {
            out: VecDeque::new(),
            pending: None,
            scanning: true,
            set: 2,
            leds: 0,
            last: ACK,
        }
    }
}

impl Ps2Keyboard {
    /// A keyboard after power-on (set 2, scanning).
    pub fn new() -> Self {
        Self::default()
    }

    fn send(&mut self, b: u8) {
        self.last = b;
        self.out.push_back(b);
    }

    /// Takes the next byte for the controller.
    pub fn pop(&mut self) -> Option<u8> {
        self.out.pop_front()
    }

    /// Whether a byte waits for the controller.
    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// The LEDs the guest lit (Scroll 1, Num 2, Caps 4).
    pub fn leds(&self) -> u8 {
        self.leds
    }

    /// The scan code set the guest selected.
    pub fn scan_set(&self) -> u8 {
        self.set
    }

    /// A byte the guest wrote to the keyboard (data port, no controller
    /// command pending).
    pub fn command(&mut self, b: u8) {
        if let Some(cmd) = self.pending.take() {
            self.parameter(cmd, b);
            return;
        }
        match b {
            // Set LEDs, typematic rate, scan code set: a parameter follows.
            0xed | 0xf3 | 0xf0 => {
                self.pending = Some(b);
                self.send(ACK);
            }
            0xee => self.send(0xee), // echo
            0xf2 => {
                self.send(ACK);
                for b in ID {
                    self.send(b);
                }
            }
            0xf4 => {
                self.scanning = true;
                self.send(ACK);
            }
            0xf5 => {
                self.defaults();
                self.scanning = false;
                self.send(ACK);
            }
            0xf6 => {
                self.defaults();
                self.send(ACK);
            }
            0xfe => {
                let last = self.last;
                self.out.push_back(last);
            }
            0xff => {
                self.defaults();
                self.scanning = true;
                self.out.clear();
                self.send(ACK);
                self.send(BAT_OK);
            }
            // Set-3 key type commands: acknowledged, no effect.
            0xf7..=0xfd => self.send(ACK),
            _ => self.send(RESEND),
        }
    }

    fn parameter(&mut self, cmd: u8, b: u8) {
        match cmd {
            0xed => {
                self.leds = b & LED_MASK;
                self.send(ACK);
            }
            0xf0 => {
                self.send(ACK);
                match b {
                    0 => {
                        let set = self.set;
                        self.send(set);
                    }
                    1..=3 => self.set = b,
                    _ => {}
                }
            }
            _ => self.send(ACK), // typematic rate: accepted
        }
    }

    fn defaults(&mut self) {
        self.pending = None;
        self.set = 2;
        self.leds = 0;
    }

    /// Queues key presses given in scan code set 1 (the host's form), in the
    /// set the guest selected; returns how many bytes of `set1` were taken
    /// (none while scanning is off: the keys are dropped, as a disabled
    /// keyboard drops them; all of them then).
    pub fn keys(&mut self, set1: &[u8]) -> usize {
        if !self.scanning {
            return set1.len();
        }
        let room = KEY_BUFFER.saturating_sub(self.out.len());
        // Whole keys only: do not split an 0xE0 prefix from its code.
        let mut take = set1.len().min(room / 2);
        if take > 0 && take < set1.len() && set1[take - 1] == 0xe0 {
            take -= 1;
        }
        let part = &set1[..take];
        if self.set == 1 {
            self.out.extend(part);
        } else {
            self.out.extend(scancode::set1_to_set2(part));
        }
        take
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(k: &mut Ps2Keyboard) -> Vec<u8> {
        std::iter::from_fn(|| k.pop()).collect()
    }

    #[test]
    fn answers_what_atkbd_asks() {
        let mut k = Ps2Keyboard::new();
        k.command(0xff);
        assert_eq!(drain(&mut k), [ACK, BAT_OK]);
        k.command(0xf2);
        assert_eq!(drain(&mut k), [ACK, 0xab, 0x83]);
        k.command(0xed);
        k.command(0x06);
        assert_eq!(drain(&mut k), [ACK, ACK]);
        assert_eq!(k.leds(), 0x06);
        k.command(0xf0);
        k.command(0x00);
        assert_eq!(drain(&mut k), [ACK, ACK, 2]);
        k.command(0xee);
        assert_eq!(drain(&mut k), [0xee]);
        k.command(0x42);
        assert_eq!(drain(&mut k), [RESEND]);
    }

    #[test]
    fn keys_follow_the_selected_set_and_scanning() {
        let mut k = Ps2Keyboard::new();
        // 'a' pressed and released, in set 2.
        assert_eq!(k.keys(&[0x1e, 0x9e]), 2);
        assert_eq!(drain(&mut k), [0x1c, 0xf0, 0x1c]);
        k.command(0xf0);
        k.command(0x01);
        drain(&mut k);
        k.keys(&[0x1e, 0x9e]);
        assert_eq!(drain(&mut k), [0x1e, 0x9e]);
        k.command(0xf5);
        drain(&mut k);
        assert_eq!(k.keys(&[0x1e, 0x9e]), 2);
        assert!(!k.has_output(), "a disabled keyboard drops keys");
    }

    #[test]
    fn a_full_buffer_takes_part_and_never_splits_a_prefix() {
        let mut k = Ps2Keyboard::new();
        let many: Vec<u8> = [0xe0, 0x48].repeat(100);
        let took = k.keys(&many);
        assert!(
            took > 0 && took < many.len() && took.is_multiple_of(2),
            "{took}"
        );
        let mut rounds = 0;
        while k.keys(&many[took..]) > 0 {
            rounds += 1;
            assert!(rounds < 100, "the buffer never fills");
        }
        assert!(k.out.len() <= KEY_BUFFER, "{}", k.out.len());
        assert!(
            k.out.len().is_multiple_of(2),
            "whole E0-prefixed codes only"
        );
    }
}
