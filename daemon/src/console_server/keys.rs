//! Terminal input as PC key presses, for the guest's PS/2 keyboard.
//!
//! `colinux-console` reads what the user's terminal sends: bytes of a US
//! keyboard layout, control characters and ANSI/xterm escape sequences.
//! [`KeyEncoder`] turns them into scan code set 1 bytes (the daemon converts
//! them to set 2 for the keyboard, and the guest's i8042 translates them
//! back), each key pressed and released, with Shift, Ctrl or Alt pressed
//! around it when the character or the sequence needs them.
//!
//! Choices:
//! - layout: US; the shifted symbols use Left Shift, Ctrl is Left Ctrl, Alt is
//!   Left Alt; bytes 0x80 and up (UTF-8) have no US key and are dropped;
//! - `\r` and `\n` are both Enter (a CR LF pair is two Enters), 0x08 and 0x7F
//!   are Backspace, 0x1B is Esc (or starts a sequence), 0x00 is Ctrl+2, 0x1E
//!   Ctrl+6 and 0x1F Ctrl+minus (the keys a Linux console maps to NUL, `^^` and
//!   `^_`; it has no Ctrl+Shift mapping for them);
//! - ESC followed by a character is Alt with that character's key; ESC ESC is
//!   Esc, the second ESC starting anew;
//! - ESC `[` or ESC `O` followed by a control byte is Alt+`[` or Alt+Shift+O
//!   and then that byte's key; a complete CSI/SS3 sequence that names no key
//!   is dropped, as are X10 mouse reports (`ESC [ M` and three bytes);
//! - SS3 keypad sequences (application keypad mode) type the main keyboard's
//!   digits and symbols, so the guest's NumLock does not matter.
//!
//! A lone ESC stays pending until the next byte or [`KeyEncoder::flush`]: the
//! caller flushes when its input has been quiet for a moment (a terminal
//! sends a whole sequence in one write), so an Esc key press is not delayed
//! beyond that.

/// Left Shift, Ctrl and Alt, as the bits of xterm's modifier parameter minus
/// one.
type Mods = u8;
const SHIFT: Mods = 1;
const ALT: Mods = 2;
const CTRL: Mods = 4;

/// The prefix of the extended keys' codes.
const E0: u8 = 0xe0;

/// A key by its set-1 make code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    code: u8,
    /// Sent with the 0xE0 prefix.
    ext: bool,
}

const fn key(code: u8) -> Key {
    Key { code, ext: false }
}

const fn ext(code: u8) -> Key {
    Key { code, ext: true }
}

const ESC: Key = key(0x01);
const BACKSPACE: Key = key(0x0e);
const TAB: Key = key(0x0f);
const ENTER: Key = key(0x1c);
const LEFT_CTRL: Key = key(0x1d);
const LEFT_SHIFT: Key = key(0x2a);
const LEFT_ALT: Key = key(0x38);
const HOME: Key = ext(0x47);
const UP: Key = ext(0x48);
const PAGE_UP: Key = ext(0x49);
const LEFT: Key = ext(0x4b);
const RIGHT: Key = ext(0x4d);
const END: Key = ext(0x4f);
const DOWN: Key = ext(0x50);
const PAGE_DOWN: Key = ext(0x51);
const INSERT: Key = ext(0x52);
const DELETE: Key = ext(0x53);

/// The US layout: runs of consecutive set-1 codes, from `first`, with the
/// characters of each key unshifted and shifted.
const LAYOUT: [(u8, &[u8], &[u8]); 5] = [
    (0x02, b"1234567890-=", b"!@#$%^&*()_+"),
    (0x10, b"qwertyuiop[]", b"QWERTYUIOP{}"),
    (0x1e, b"asdfghjkl;'`", b"ASDFGHJKL:\"~"),
    (0x2b, b"\\zxcvbnm,./", b"|ZXCVBNM<>?"),
    (0x39, b" ", b" "),
];

/// The key that types printable ASCII `c`, and whether it needs Shift.
fn char_key(c: u8) -> Option<(Key, Mods)> {
    LAYOUT.iter().find_map(|&(first, plain, shifted)| {
        let at = |row: &[u8]| row.iter().position(|&x| x == c);
        // Space is in both rows: unshifted wins.
        at(plain)
            .map(|i| (i, 0))
            .or_else(|| at(shifted).map(|i| (i, SHIFT)))
            .map(|(i, m)| (key(first + i as u8), m))
    })
}

/// The key and modifiers for one byte below 0x80 outside a sequence.
fn byte_key(b: u8) -> Option<(Key, Mods)> {
    let ctrl = |c: u8| char_key(c).map(|(k, _)| (k, CTRL));
    match b {
        b'\r' | b'\n' => Some((ENTER, 0)),
        b'\t' => Some((TAB, 0)),
        0x08 | 0x7f => Some((BACKSPACE, 0)),
        0x1b => Some((ESC, 0)),
        0x00 => ctrl(b'2'),
        0x01..=0x1a => ctrl(b + 0x60),
        0x1c => ctrl(b'\\'),
        0x1d => ctrl(b']'),
        0x1e => ctrl(b'6'),
        0x1f => ctrl(b'-'),
        0x20..=0x7e => char_key(b),
        _ => None,
    }
}

/// F1..=F12.
fn function_key(n: u16) -> Option<Key> {
    match n {
        1..=10 => Some(key(0x3a + n as u8)),
        11 => Some(key(0x57)),
        12 => Some(key(0x58)),
        _ => None,
    }
}

/// Appends `key` pressed and released, with `mods` pressed before it and
/// released after it (in the reverse order).
fn press(out: &mut Vec<u8>, k: Key, mods: Mods) {
    let held: Vec<Key> = [(CTRL, LEFT_CTRL), (ALT, LEFT_ALT), (SHIFT, LEFT_SHIFT)]
        .into_iter()
        .filter(|&(bit, _)| mods & bit != 0)
        .map(|(_, m)| m)
        .collect();
    for m in &held {
        push_code(out, *m, false);
    }
    push_code(out, k, false);
    push_code(out, k, true);
    for m in held.iter().rev() {
        push_code(out, *m, true);
    }
}

fn push_code(out: &mut Vec<u8>, k: Key, brk: bool) {
    if k.ext {
        out.push(E0);
    }
    out.push(if brk { k.code | 0x80 } else { k.code });
}

/// Alt+F<n> pressed and released (n in 1..=12; the Linux console switches to
/// tty<n> on Alt-F<n>), as set-1 bytes; nothing for any other `n`.
pub fn alt_function_key(n: u8) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(k) = function_key(u16::from(n)) {
        press(&mut out, k, ALT);
    }
    out
}

/// Most numeric parameters a key sequence has (`ESC [ 15 ; 5 ~`); more make
/// the sequence unknown.
const MAX_PARAMS: usize = 2;

/// A CSI (`ESC [`) or SS3 (`ESC O`) sequence being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seq {
    ss3: bool,
    params: [u16; MAX_PARAMS],
    /// Index of the parameter being read.
    at: usize,
    /// Some byte came after the introducer.
    any: bool,
    /// A byte no key sequence has (private marker, intermediate, a third
    /// parameter): the sequence is dropped at its final byte.
    bad: bool,
}

impl Seq {
    fn new(ss3: bool) -> Self {
        Seq {
            ss3,
            params: [0; MAX_PARAMS],
            at: 0,
            any: false,
            bad: false,
        }
    }

    /// The Alt+key of the introducer alone (`ESC [` or `ESC O`).
    fn alt_introducer(&self) -> Option<(Key, Mods)> {
        let (k, m) = char_key(if self.ss3 { b'O' } else { b'[' })?;
        Some((k, m | ALT))
    }

    /// The parameter count: 0 for none, else the parameters read.
    fn count(&self) -> usize {
        if self.any {
            self.at + 1
        } else {
            0
        }
    }

    /// The modifiers of xterm's `;m` parameter (`m` = 1 + bitmask), None
    /// for a value no modifier set gives.
    fn modifiers(m: u16) -> Option<Mods> {
        match m {
            0 | 1 => Some(0),
            // Bit 8 (Meta) has no key here.
            2..=16 => Some((m - 1) as u8 & (SHIFT | ALT | CTRL)),
            _ => None,
        }
    }

    /// The key a complete sequence ending in `fin` names.
    fn key(&self, fin: u8) -> Option<(Key, Mods)> {
        if self.bad {
            return None;
        }
        let [p0, p1] = self.params;
        let count = self.count();
        if fin == b'~' {
            if self.ss3 || count == 0 {
                return None;
            }
            let k = tilde_key(p0)?;
            let mods = if count == 2 { Self::modifiers(p1)? } else { 0 };
            return Some((k, mods));
        }
        // Letter finals: `ESC [ 1 ; m A`, and for SS3 also `ESC O m A`.
        let mods = match (count, self.ss3) {
            (2, _) => Self::modifiers(p1)?,
            (1, true) => Self::modifiers(p0)?,
            _ => 0,
        };
        let (k, m) = letter_key(fin, self.ss3)?;
        Some((k, m | mods))
    }
}

/// The key of `ESC [ n ~`.
fn tilde_key(n: u16) -> Option<Key> {
    match n {
        1 | 7 => Some(HOME),
        2 => Some(INSERT),
        3 => Some(DELETE),
        4 | 8 => Some(END),
        5 => Some(PAGE_UP),
        6 => Some(PAGE_DOWN),
        11..=15 => function_key(n - 10),
        17..=21 => function_key(n - 11),
        23 | 24 => function_key(n - 12),
        _ => None,
    }
}

/// The key of a CSI or SS3 sequence ending in a letter.
fn letter_key(fin: u8, ss3: bool) -> Option<(Key, Mods)> {
    let plain = |k: Key| Some((k, 0));
    match fin {
        b'A' => plain(UP),
        b'B' => plain(DOWN),
        b'C' => plain(RIGHT),
        b'D' => plain(LEFT),
        b'H' => plain(HOME),
        b'F' => plain(END),
        b'P'..=b'S' => plain(function_key(u16::from(fin - b'P') + 1)?),
        b'Z' if !ss3 => Some((TAB, SHIFT)),
        // Application keypad: the same characters from the main keyboard.
        b'M' if ss3 => plain(ENTER),
        b'j' | b'k' | b'l' | b'm' | b'n' | b'o' | b'p'..=b'y' | b'X' if ss3 => {
            char_key(keypad_char(fin))
        }
        _ => None,
    }
}

/// The character of an SS3 keypad final (`ESC O p` is keypad 0).
fn keypad_char(fin: u8) -> u8 {
    match fin {
        b'X' => b'=',
        b'j' => b'*',
        b'k' => b'+',
        b'l' => b',',
        b'm' => b'-',
        b'n' => b'.',
        b'o' => b'/',
        _ => fin - b'p' + b'0',
    }
}

/// Where the decoder is between bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    #[default]
    Ground,
    /// After ESC.
    Esc,
    /// Inside `ESC [` or `ESC O`.
    Seq(Seq),
    /// After `ESC [ [` (the Linux console's F1..F5 are `ESC [ [ A..E`).
    LinuxFn,
    /// Raw bytes of an X10 mouse report still to skip.
    Skip(u8),
}

/// Turns what a terminal sends (bytes of a US-layout keyboard, ANSI/xterm
/// escape sequences) into PC key presses: a stream of scan code set 1 bytes,
/// each key as make then break, modifiers pressed around it and released
/// after. Stateful: an escape sequence may be split across feeds.
#[derive(Debug, Default)]
pub struct KeyEncoder {
    state: State,
}

impl KeyEncoder {
    /// Encodes `bytes`; a sequence left incomplete at the end waits for the
    /// next feed (or [`KeyEncoder::flush`]). Never panics; bytes that name no
    /// key are dropped.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(bytes.len() * 4);
        for &b in bytes {
            self.byte(b, &mut out);
        }
        out
    }

    /// Ends a pending sequence (a lone ESC at the end of the input becomes
    /// the Esc key; `ESC [` and `ESC O` become Alt+`[` and Alt+Shift+O; an
    /// unfinished longer sequence is dropped).
    pub fn flush(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        match std::mem::take(&mut self.state) {
            State::Esc => press(&mut out, ESC, 0),
            State::Seq(seq) if !seq.any => {
                if let Some((k, m)) = seq.alt_introducer() {
                    press(&mut out, k, m);
                }
            }
            _ => {}
        }
        out
    }

    fn byte(&mut self, b: u8, out: &mut Vec<u8>) {
        let mut emit = |km: Option<(Key, Mods)>| {
            if let Some((k, m)) = km {
                press(out, k, m);
            }
        };
        match self.state {
            State::Ground => match b {
                0x1b => self.state = State::Esc,
                _ => emit(byte_key(b)),
            },
            State::Esc => match b {
                b'[' => self.state = State::Seq(Seq::new(false)),
                b'O' => self.state = State::Seq(Seq::new(true)),
                // Esc, and this ESC starts anew.
                0x1b => emit(Some((ESC, 0))),
                _ => {
                    // Alt with the byte's key; bytes 0x80 and up have none.
                    emit(byte_key(b).map(|(k, m)| (k, m | ALT)));
                    self.state = State::Ground;
                }
            },
            State::Seq(mut seq) => match b {
                b'0'..=b'9' => {
                    let p = &mut seq.params[seq.at];
                    *p = p.saturating_mul(10).saturating_add(u16::from(b - b'0'));
                    seq.any = true;
                    self.state = State::Seq(seq);
                }
                b';' => {
                    if seq.any && seq.at + 1 < MAX_PARAMS {
                        seq.at += 1;
                    } else if seq.any {
                        seq.bad = true;
                    } else {
                        // `ESC [ ; m A`: an empty first parameter.
                        seq.at = 1;
                    }
                    seq.any = true;
                    self.state = State::Seq(seq);
                }
                // Private markers and intermediates: no key sequence has them.
                0x20..=0x2f | b':' | b'<'..=b'?' => {
                    seq.bad = true;
                    seq.any = true;
                    self.state = State::Seq(seq);
                }
                0x40..=0x7e => {
                    self.state = State::Ground;
                    if !seq.ss3 && !seq.any && b == b'[' {
                        self.state = State::LinuxFn;
                    } else if !seq.ss3 && !seq.any && b == b'M' {
                        self.state = State::Skip(3);
                    } else {
                        emit(seq.key(b));
                    }
                }
                // A control byte or a byte 0x80 and up ends the sequence.
                _ => {
                    if !seq.any {
                        emit(seq.alt_introducer());
                    }
                    self.state = State::Ground;
                    self.byte(b, out);
                }
            },
            State::LinuxFn => {
                self.state = State::Ground;
                if let b'A'..=b'E' = b {
                    emit(function_key(u16::from(b - b'A') + 1).map(|k| (k, 0)));
                }
            }
            State::Skip(n) => {
                self.state = if n > 1 {
                    State::Skip(n - 1)
                } else {
                    State::Ground
                };
            }
        }
    }
}

#[cfg(test)]
#[path = "keys_tests.rs"]
mod tests;
