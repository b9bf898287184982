//! PC keyboard scan codes: set 1 (what the guest's `atkbd` reads through a
//! translating i8042) and set 2 (what a PS/2 keyboard sends by default), and
//! the i8042's translation between them.
//!
//! Set 1 gives a key's make code and its break as the same code with bit 7
//! set; set 2 gives the make code and its break as 0xF0 followed by the make
//! code. Both put 0xE0 (or 0xE1 for Pause) before the codes of the extended
//! keys. An i8042 whose command byte has the XLATE bit set turns the keyboard's
//! set-2 stream into set 1 with a fixed table ([`Translator`]);
//! [`set1_to_set2`] is the keyboard's side, so that keys made up in set 1 reach
//! the guest unchanged after the controller's translation.

/// The i8042's translation of the set-2 bytes 0x00..=0x7F into set 1, indexed
/// by the set-2 byte; the comments name the keys of the set-2 codes. Bytes
/// 0x80 and up are in [`xlate`].
const XLATE: [u8; 128] = [
    // 00 (overrun -> FF), F9, (old F7), F5, F3, F1, F2, F12
    0xff, 0x43, 0x41, 0x3f, 0x3d, 0x3b, 0x3c, 0x58, //
    // 08 -, F10, F8, F6, F4, Tab, `, -
    0x64, 0x44, 0x42, 0x40, 0x3e, 0x0f, 0x29, 0x59, //
    // 10 -, LAlt, LShift, -, LCtrl, Q, 1, -
    0x65, 0x38, 0x2a, 0x70, 0x1d, 0x10, 0x02, 0x5a, //
    // 18 -, -, Z, S, A, W, 2, -
    0x66, 0x71, 0x2c, 0x1f, 0x1e, 0x11, 0x03, 0x5b, //
    // 20 -, C, X, D, E, 4, 3, -
    0x67, 0x2e, 0x2d, 0x20, 0x12, 0x05, 0x04, 0x5c, //
    // 28 -, Space, V, F, T, R, 5, -
    0x68, 0x39, 0x2f, 0x21, 0x14, 0x13, 0x06, 0x5d, //
    // 30 -, N, B, H, G, Y, 6, -
    0x69, 0x31, 0x30, 0x23, 0x22, 0x15, 0x07, 0x5e, //
    // 38 -, -, M, J, U, 7, 8, -
    0x6a, 0x72, 0x32, 0x24, 0x16, 0x08, 0x09, 0x5f, //
    // 40 -, comma, K, I, O, 0, 9, -
    0x6b, 0x33, 0x25, 0x17, 0x18, 0x0b, 0x0a, 0x60, //
    // 48 -, period, slash, L, semicolon, P, minus, -
    0x6c, 0x34, 0x35, 0x26, 0x27, 0x19, 0x0c, 0x61, //
    // 50 -, -, quote, -, [, =, -, -
    0x6d, 0x73, 0x28, 0x74, 0x1a, 0x0d, 0x62, 0x6e, //
    // 58 CapsLock, RShift, Enter, ], -, backslash, -, -
    0x3a, 0x36, 0x1c, 0x1b, 0x75, 0x2b, 0x63, 0x76, //
    // 60 -, 102nd key, -, -, -, -, Backspace, -
    0x55, 0x56, 0x77, 0x78, 0x79, 0x7a, 0x0e, 0x7b, //
    // 68 -, KP1, -, KP4, KP7, -, -, -
    0x7c, 0x4f, 0x7d, 0x4b, 0x47, 0x7e, 0x7f, 0x6f, //
    // 70 KP0, KP., KP2, KP5, KP6, KP8, Esc, NumLock
    0x52, 0x53, 0x50, 0x4c, 0x4d, 0x48, 0x01, 0x45, //
    // 78 F11, KP+, KP3, KP-, KP*, KP9, ScrollLock, -
    0x57, 0x4e, 0x51, 0x4a, 0x37, 0x49, 0x46, 0x54, //
];

/// Set-2 code of F7 (the one key code above 0x7F a keyboard sends).
const SET2_F7: u8 = 0x83;
/// Set-2 code of Alt+PrintScreen (SysRq).
const SET2_SYSRQ: u8 = 0x84;

/// What the i8042 makes of one set-2 byte (without the break bit).
const fn xlate(set2: u8) -> u8 {
    match set2 {
        0x00..=0x7f => XLATE[set2 as usize],
        SET2_F7 => 0x41,
        SET2_SYSRQ => 0x54,
        _ => set2,
    }
}

/// Set-1 code (0x00..=0x7F) -> the set-2 code a keyboard sends for that key:
/// the inverse of [`XLATE`], except F7 and SysRq which keyboards send as
/// 0x83 and 0x84 (the table's 0x02 and 0x7F are not sent by real keyboards).
const UNXLATE: [u8; 128] = {
    let mut inv = [0u8; 128];
    let mut set2 = 0;
    while set2 < 128 {
        let set1 = XLATE[set2];
        if set1 < 0x80 {
            inv[set1 as usize] = set2 as u8;
        }
        set2 += 1;
    }
    inv[0x41] = SET2_F7;
    inv[0x54] = SET2_SYSRQ;
    inv
};

/// Converts a stream of scan code set 1 bytes (make codes, breaks with bit 7,
/// 0xE0/0xE1 prefixes) to set 2 (0xF0 before the code of a break, prefixes
/// kept). The mapping is byte-wise, so Pause (`E1 1D 45 E1 9D C5`) and
/// PrintScreen (`E0 2A E0 37`) come out as a keyboard sends them in set 2.
pub fn set1_to_set2(set1: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(set1.len() * 2);
    for &b in set1 {
        match b {
            0xe0 | 0xe1 => out.push(b),
            _ => {
                if b & 0x80 != 0 {
                    out.push(0xf0);
                }
                out.push(UNXLATE[usize::from(b & 0x7f)]);
            }
        }
    }
    out
}

/// The i8042 controller's set-2 → set-1 translation (what a real 8042 does
/// with the XLATE bit of its command byte): stateful because 0xF0 sets the
/// break bit of the next byte. Every byte from the keyboard goes through it,
/// replies included: 0xFA, 0xAA, 0xEE, 0xFE pass unchanged, but the second
/// byte of the keyboard ID (0xAB 0x83) becomes 0x41 and "scan code set 2"
/// (0x02) becomes 0x41, as on real hardware (Linux expects both).
#[derive(Debug, Default, Clone)]
pub struct Translator {
    /// A 0xF0 came: the next byte is a break.
    brk: bool,
}

impl Translator {
    /// Feeds one byte from the keyboard; gives the translated byte, or None
    /// for a 0xF0 prefix (absorbed; a second 0xF0 in a row is absorbed too).
    pub fn feed(&mut self, set2: u8) -> Option<u8> {
        if set2 == 0xf0 {
            self.brk = true;
            return None;
        }
        let set1 = xlate(set2);
        if std::mem::take(&mut self.brk) {
            Some(set1 | 0x80)
        } else {
            Some(set1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn translate(set2: &[u8]) -> Vec<u8> {
        let mut t = Translator::default();
        set2.iter().filter_map(|&b| t.feed(b)).collect()
    }

    /// Set-1 make codes of a 102-key keyboard (plus the Windows keys): plain
    /// keys as one byte, extended keys with their 0xE0 (105 keys).
    fn key_set() -> Vec<Vec<u8>> {
        let plain = (0x01..=0x54u8).chain([0x56, 0x57, 0x58]).map(|c| vec![c]);
        let ext = [
            0x1c, 0x1d, 0x35, 0x37, 0x38, 0x47, 0x48, 0x49, 0x4b, 0x4d, 0x4f, 0x50, 0x51, 0x52,
            0x53, 0x5b, 0x5c, 0x5d,
        ]
        .into_iter()
        .map(|c| vec![0xe0, c]);
        plain.chain(ext).collect()
    }

    fn break_of(make: &[u8]) -> Vec<u8> {
        let (last, prefix) = make.split_last().unwrap();
        let mut b = prefix.to_vec();
        b.push(last | 0x80);
        b
    }

    #[test]
    fn known_keys() {
        // (name, set 1 make, set 2 make)
        let cases: &[(&str, &[u8], &[u8])] = &[
            ("A", &[0x1e], &[0x1c]),
            ("Enter", &[0x1c], &[0x5a]),
            ("Up", &[0xe0, 0x48], &[0xe0, 0x75]),
            ("F1", &[0x3b], &[0x05]),
            ("Esc", &[0x01], &[0x76]),
            ("LShift", &[0x2a], &[0x12]),
            ("LAlt", &[0x38], &[0x11]),
            ("RCtrl", &[0xe0, 0x1d], &[0xe0, 0x14]),
            ("F7", &[0x41], &[0x83]),
            ("F11", &[0x57], &[0x78]),
            ("F12", &[0x58], &[0x07]),
            ("Delete", &[0xe0, 0x53], &[0xe0, 0x71]),
            ("SysRq", &[0x54], &[0x84]),
        ];
        for (name, s1, s2) in cases {
            assert_eq!(set1_to_set2(s1), *s2, "{name} make to set 2");
            assert_eq!(translate(s2), *s1, "{name} make to set 1");
            let mut s2_break = s2.to_vec();
            s2_break.insert(s2.len() - 1, 0xf0);
            assert_eq!(
                set1_to_set2(&break_of(s1)),
                s2_break,
                "{name} break to set 2"
            );
            assert_eq!(translate(&s2_break), break_of(s1), "{name} break to set 1");
        }
    }

    #[test]
    fn pause_and_print_screen() {
        let pause1 = [0xe1, 0x1d, 0x45, 0xe1, 0x9d, 0xc5];
        let pause2 = [0xe1, 0x14, 0x77, 0xe1, 0xf0, 0x14, 0xf0, 0x77];
        assert_eq!(set1_to_set2(&pause1), pause2);
        assert_eq!(translate(&pause2), pause1);
        let prtsc1 = [0xe0, 0x2a, 0xe0, 0x37, 0xe0, 0xb7, 0xe0, 0xaa];
        let prtsc2 = [0xe0, 0x12, 0xe0, 0x7c, 0xe0, 0xf0, 0x7c, 0xe0, 0xf0, 0x12];
        assert_eq!(set1_to_set2(&prtsc1), prtsc2);
        assert_eq!(translate(&prtsc2), prtsc1);
    }

    #[test]
    fn table_is_one_to_one_on_seven_bits() {
        let mut seen = [false; 256];
        for (set2, &set1) in XLATE.iter().enumerate().skip(1) {
            assert!(set1 < 0x80, "set 2 {set2:#04x}");
            assert!(!seen[usize::from(set1)], "set 1 {set1:#04x} twice");
            seen[usize::from(set1)] = true;
        }
        assert_eq!(XLATE[0], 0xff, "keyboard overrun");
    }

    #[test]
    fn every_code_round_trips() {
        for code in 0x01..=0x7fu8 {
            let set1 = [code, code | 0x80, 0xe0, code, 0xe0, code | 0x80];
            assert_eq!(translate(&set1_to_set2(&set1)), set1, "{code:#04x}");
        }
    }

    #[test]
    fn replies_and_prefixes() {
        let mut t = Translator::default();
        for b in [0xfa, 0xaa, 0xee, 0xfe, 0xe0, 0xe1, 0xab] {
            assert_eq!(t.feed(b), Some(b));
        }
        assert_eq!(t.feed(0x83), Some(0x41), "MF2 keyboard ID byte");
        assert_eq!(t.feed(0xf0), None);
        assert_eq!(t.feed(0xf0), None);
        assert_eq!(t.feed(0x1c), Some(0x9e), "break of A");
        assert_eq!(t.feed(0x1c), Some(0x1e), "break bit used once");
    }

    proptest! {
        #[test]
        fn set1_round_trips_through_the_controller(
            keys in proptest::collection::vec((any::<prop::sample::Index>(), any::<bool>()), 0..40)
        ) {
            let set = key_set();
            let mut set1 = Vec::new();
            for (i, brk) in keys {
                let make = i.get(&set);
                set1.extend(make);
                if brk {
                    set1.extend(break_of(make));
                }
            }
            let set2 = set1_to_set2(&set1);
            prop_assert_eq!(translate(&set2), set1);
        }

        #[test]
        fn translator_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let out = translate(&bytes);
            prop_assert_eq!(out.len(), bytes.iter().filter(|&&b| b != 0xf0).count());
        }
    }
}
