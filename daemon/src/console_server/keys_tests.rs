//! Tests of [`super::KeyEncoder`] and [`super::alt_function_key`].

use super::*;
use proptest::prelude::*;
use rstest::rstest;

/// Everything the encoder gives for `input`, flushed at the end.
fn enc(input: &[u8]) -> Vec<u8> {
    let mut e = KeyEncoder::default();
    let mut out = e.feed(input);
    out.extend(e.flush());
    out
}

#[rstest]
#[case::lower(b"a", &[0x1e, 0x9e])]
#[case::upper(b"A", &[0x2a, 0x1e, 0x9e, 0xaa])]
#[case::digit(b"1", &[0x02, 0x82])]
#[case::bang(b"!", &[0x2a, 0x02, 0x82, 0xaa])]
#[case::space(b" ", &[0x39, 0xb9])]
#[case::tilde(b"~", &[0x2a, 0x29, 0xa9, 0xaa])]
#[case::pipe(b"|", &[0x2a, 0x2b, 0xab, 0xaa])]
#[case::quote(b"\"", &[0x2a, 0x28, 0xa8, 0xaa])]
#[case::cr(b"\r", &[0x1c, 0x9c])]
#[case::lf(b"\n", &[0x1c, 0x9c])]
#[case::tab(b"\t", &[0x0f, 0x8f])]
#[case::del(b"\x7f", &[0x0e, 0x8e])]
#[case::bs(b"\x08", &[0x0e, 0x8e])]
#[case::ctrl_c(b"\x03", &[0x1d, 0x2e, 0xae, 0x9d])]
#[case::ctrl_a(b"\x01", &[0x1d, 0x1e, 0x9e, 0x9d])]
#[case::ctrl_z(b"\x1a", &[0x1d, 0x2c, 0xac, 0x9d])]
#[case::ctrl_at(b"\x00", &[0x1d, 0x03, 0x83, 0x9d])]
#[case::ctrl_backslash(b"\x1c", &[0x1d, 0x2b, 0xab, 0x9d])]
#[case::ctrl_bracket(b"\x1d", &[0x1d, 0x1b, 0x9b, 0x9d])]
#[case::ctrl_caret(b"\x1e", &[0x1d, 0x07, 0x87, 0x9d])]
#[case::ctrl_underscore(b"\x1f", &[0x1d, 0x0c, 0x8c, 0x9d])]
#[case::lone_esc(b"\x1b", &[0x01, 0x81])]
#[case::esc_esc(b"\x1b\x1b", &[0x01, 0x81, 0x01, 0x81])]
#[case::alt_a(b"\x1ba", &[0x38, 0x1e, 0x9e, 0xb8])]
#[case::alt_shift_a(b"\x1bA", &[0x38, 0x2a, 0x1e, 0x9e, 0xaa, 0xb8])]
#[case::alt_backspace(b"\x1b\x7f", &[0x38, 0x0e, 0x8e, 0xb8])]
#[case::alt_ctrl_x(b"\x1b\x18", &[0x1d, 0x38, 0x2d, 0xad, 0xb8, 0x9d])]
#[case::alt_bracket(b"\x1b[", &[0x38, 0x1a, 0x9a, 0xb8])]
#[case::alt_shift_o(b"\x1bO", &[0x38, 0x2a, 0x18, 0x98, 0xaa, 0xb8])]
#[case::alt_bracket_then_enter(b"\x1b[\r", &[0x38, 0x1a, 0x9a, 0xb8, 0x1c, 0x9c])]
#[case::up(b"\x1b[A", &[0xe0, 0x48, 0xe0, 0xc8])]
#[case::down(b"\x1b[B", &[0xe0, 0x50, 0xe0, 0xd0])]
#[case::right(b"\x1b[C", &[0xe0, 0x4d, 0xe0, 0xcd])]
#[case::left(b"\x1b[D", &[0xe0, 0x4b, 0xe0, 0xcb])]
#[case::ss3_up(b"\x1bOA", &[0xe0, 0x48, 0xe0, 0xc8])]
#[case::ss3_left(b"\x1bOD", &[0xe0, 0x4b, 0xe0, 0xcb])]
#[case::home(b"\x1b[H", &[0xe0, 0x47, 0xe0, 0xc7])]
#[case::end(b"\x1b[F", &[0xe0, 0x4f, 0xe0, 0xcf])]
#[case::ss3_home(b"\x1bOH", &[0xe0, 0x47, 0xe0, 0xc7])]
#[case::home1(b"\x1b[1~", &[0xe0, 0x47, 0xe0, 0xc7])]
#[case::home7(b"\x1b[7~", &[0xe0, 0x47, 0xe0, 0xc7])]
#[case::end4(b"\x1b[4~", &[0xe0, 0x4f, 0xe0, 0xcf])]
#[case::end8(b"\x1b[8~", &[0xe0, 0x4f, 0xe0, 0xcf])]
#[case::insert(b"\x1b[2~", &[0xe0, 0x52, 0xe0, 0xd2])]
#[case::delete(b"\x1b[3~", &[0xe0, 0x53, 0xe0, 0xd3])]
#[case::page_up(b"\x1b[5~", &[0xe0, 0x49, 0xe0, 0xc9])]
#[case::page_down(b"\x1b[6~", &[0xe0, 0x51, 0xe0, 0xd1])]
#[case::f1(b"\x1bOP", &[0x3b, 0xbb])]
#[case::f2(b"\x1bOQ", &[0x3c, 0xbc])]
#[case::f3(b"\x1bOR", &[0x3d, 0xbd])]
#[case::f4(b"\x1bOS", &[0x3e, 0xbe])]
#[case::f1_vt(b"\x1b[11~", &[0x3b, 0xbb])]
#[case::f4_vt(b"\x1b[14~", &[0x3e, 0xbe])]
#[case::f1_linux(b"\x1b[[A", &[0x3b, 0xbb])]
#[case::f5_linux(b"\x1b[[E", &[0x3f, 0xbf])]
#[case::f5(b"\x1b[15~", &[0x3f, 0xbf])]
#[case::f6(b"\x1b[17~", &[0x40, 0xc0])]
#[case::f7(b"\x1b[18~", &[0x41, 0xc1])]
#[case::f8(b"\x1b[19~", &[0x42, 0xc2])]
#[case::f9(b"\x1b[20~", &[0x43, 0xc3])]
#[case::f10(b"\x1b[21~", &[0x44, 0xc4])]
#[case::f11(b"\x1b[23~", &[0x57, 0xd7])]
#[case::f12(b"\x1b[24~", &[0x58, 0xd8])]
#[case::alt_f1(b"\x1b[1;3P", &[0x38, 0x3b, 0xbb, 0xb8])]
#[case::alt_f1_ss3(b"\x1bO3P", &[0x38, 0x3b, 0xbb, 0xb8])]
#[case::alt_f5(b"\x1b[15;3~", &[0x38, 0x3f, 0xbf, 0xb8])]
#[case::shift_up(b"\x1b[1;2A", &[0x2a, 0xe0, 0x48, 0xe0, 0xc8, 0xaa])]
#[case::ctrl_right(b"\x1b[1;5C", &[0x1d, 0xe0, 0x4d, 0xe0, 0xcd, 0x9d])]
#[case::ctrl_shift_delete(b"\x1b[3;6~", &[0x1d, 0x2a, 0xe0, 0x53, 0xe0, 0xd3, 0xaa, 0x9d])]
#[case::ctrl_alt_shift_left(
    b"\x1b[1;8D",
    &[0x1d, 0x38, 0x2a, 0xe0, 0x4b, 0xe0, 0xcb, 0xaa, 0xb8, 0x9d]
)]
#[case::ctrl_alt_f2(b"\x1b[1;7Q", &[0x1d, 0x38, 0x3c, 0xbc, 0xb8, 0x9d])]
#[case::back_tab(b"\x1b[Z", &[0x2a, 0x0f, 0x8f, 0xaa])]
#[case::keypad_zero(b"\x1bOp", &[0x0b, 0x8b])]
#[case::keypad_enter(b"\x1bOM", &[0x1c, 0x9c])]
#[case::utf8(b"\xc3\xa9", &[])]
#[case::alt_utf8(b"\x1b\xc3\xa9", &[])]
#[case::unknown_tilde(b"\x1b[99~", &[])]
#[case::unknown_final(b"\x1b[x", &[])]
#[case::private(b"\x1b[?1A", &[])]
#[case::three_params(b"\x1b[1;2;3A", &[])]
#[case::bad_modifier(b"\x1b[1;17A", &[])]
#[case::huge_number(b"\x1b[99999999999999;5~", &[])]
#[case::focus_in(b"\x1b[I", &[])]
#[case::mouse_x10(b"\x1b[M !!a", &[0x1e, 0x9e])]
#[case::unfinished(b"\x1b[1;5", &[])]
#[case::sequence_then_text(b"\x1b[Ab", &[0xe0, 0x48, 0xe0, 0xc8, 0x30, 0xb0])]
fn encodes(#[case] input: &[u8], #[case] expected: &[u8]) {
    assert_eq!(enc(input), expected, "{:?}", String::from_utf8_lossy(input));
}

#[test]
fn lone_esc_waits_for_flush() {
    let mut e = KeyEncoder::default();
    assert_eq!(e.feed(b"\x1b"), [0u8; 0]);
    assert_eq!(e.flush(), [0x01, 0x81]);
    assert_eq!(e.flush(), [0u8; 0]);
    assert_eq!(e.feed(b"\x1b"), [0u8; 0]);
    assert_eq!(e.feed(b"[A"), [0xe0, 0x48, 0xe0, 0xc8], "split sequence");
}

#[test]
fn alt_function_keys() {
    assert_eq!(alt_function_key(1), [0x38, 0x3b, 0xbb, 0xb8]);
    assert_eq!(alt_function_key(10), [0x38, 0x44, 0xc4, 0xb8]);
    assert_eq!(alt_function_key(12), [0x38, 0x58, 0xd8, 0xb8]);
    assert_eq!(alt_function_key(0), [0u8; 0]);
    assert_eq!(alt_function_key(13), [0u8; 0]);
    for (n, code) in (1..=12).zip([11, 12, 13, 14, 15, 17, 18, 19, 20, 21, 23, 24]) {
        let seq = format!("\x1b[{code};3~");
        assert_eq!(alt_function_key(n), enc(seq.as_bytes()), "F{n}");
    }
}

/// A US keymap written independently of the encoder's: the characters of a
/// set-1 code, unshifted and shifted.
fn us_keymap(code: u8) -> Option<(char, char)> {
    let pair = match code {
        0x02..=0x0a => {
            let d = (b'1' + code - 0x02) as char;
            (d, b"!@#$%^&*("[usize::from(code - 0x02)] as char)
        }
        0x0b => ('0', ')'),
        0x0c => ('-', '_'),
        0x0d => ('=', '+'),
        0x0f => ('\t', '\t'),
        0x1a => ('[', '{'),
        0x1b => (']', '}'),
        0x1c => ('\n', '\n'),
        0x27 => (';', ':'),
        0x28 => ('\'', '"'),
        0x29 => ('`', '~'),
        0x2b => ('\\', '|'),
        0x33 => (',', '<'),
        0x34 => ('.', '>'),
        0x35 => ('/', '?'),
        0x39 => (' ', ' '),
        _ => {
            let letter = match code {
                0x10 => 'q',
                0x11 => 'w',
                0x12 => 'e',
                0x13 => 'r',
                0x14 => 't',
                0x15 => 'y',
                0x16 => 'u',
                0x17 => 'i',
                0x18 => 'o',
                0x19 => 'p',
                0x1e => 'a',
                0x1f => 's',
                0x20 => 'd',
                0x21 => 'f',
                0x22 => 'g',
                0x23 => 'h',
                0x24 => 'j',
                0x25 => 'k',
                0x26 => 'l',
                0x2c => 'z',
                0x2d => 'x',
                0x2e => 'c',
                0x2f => 'v',
                0x30 => 'b',
                0x31 => 'n',
                0x32 => 'm',
                _ => return None,
            };
            (letter, letter.to_ascii_uppercase())
        }
    };
    Some(pair)
}

/// What a US keyboard types with these set-1 bytes (tracking both Shifts).
fn type_out(set1: &[u8]) -> String {
    let mut shift = false;
    let mut text = String::new();
    let mut ext = false;
    for &b in set1 {
        if b == 0xe0 {
            ext = true;
            continue;
        }
        let (code, make) = (b & 0x7f, b & 0x80 == 0);
        match (std::mem::take(&mut ext), code) {
            (false, 0x2a | 0x36) => shift = make,
            (false, _) if make => {
                let (plain, shifted) = us_keymap(code).expect("a character key");
                text.push(if shift { shifted } else { plain });
            }
            _ => {}
        }
    }
    text
}

/// Checks that every make has its break, no key is pressed twice and none
/// is left pressed; gives the number of key presses.
fn check_presses(set1: &[u8]) -> Result<usize, String> {
    let mut pressed: Vec<(bool, u8)> = Vec::new();
    let mut presses = 0;
    let mut ext = false;
    for &b in set1 {
        if b == 0xe0 {
            if ext {
                return Err("E0 E0".into());
            }
            ext = true;
            continue;
        }
        let key = (std::mem::take(&mut ext), b & 0x7f);
        if b & 0x80 == 0 {
            if pressed.contains(&key) {
                return Err(format!("{key:?} pressed twice"));
            }
            pressed.push(key);
            presses += 1;
        } else {
            let at = pressed.iter().position(|&k| k == key);
            let at = at.ok_or_else(|| format!("{key:?} released unpressed"))?;
            pressed.remove(at);
        }
    }
    if ext {
        return Err("trailing E0".into());
    }
    if !pressed.is_empty() {
        return Err(format!("left pressed: {pressed:?}"));
    }
    Ok(presses)
}

/// Bytes a terminal might send, with escape sequence bytes made frequent.
fn terminal_bytes() -> impl Strategy<Value = Vec<u8>> {
    let frequent =
        prop::sample::select(b"\x1b\x1b\x1b[[O;;0123456789~ABCDHFPQRSZM[\r\x7f".to_vec());
    proptest::collection::vec(prop_oneof![any::<u8>(), frequent], 0..200)
}

proptest! {
    #[test]
    fn split_anywhere_gives_the_same_keys(
        bytes in terminal_bytes(),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..10),
    ) {
        let whole = enc(&bytes);
        let mut at: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
        at.sort_unstable();
        let mut e = KeyEncoder::default();
        let mut split = Vec::new();
        let mut from = 0;
        for to in at.into_iter().chain([bytes.len()]) {
            split.extend(e.feed(&bytes[from..to]));
            from = to;
        }
        split.extend(e.flush());
        prop_assert_eq!(split, whole);
    }

    #[test]
    fn every_make_has_its_break(bytes in terminal_bytes()) {
        let out = enc(&bytes);
        prop_assert!(check_presses(&out).is_ok(), "{:?}: {:?}", check_presses(&out), out);
        // Feeds without a flush leave nothing half pressed either.
        let mut e = KeyEncoder::default();
        let out = e.feed(&bytes);
        prop_assert!(check_presses(&out).is_ok(), "{:?}: {:?}", check_presses(&out), out);
    }

    #[test]
    fn printable_text_types_back(text in "[ -~\n\t]{0,80}") {
        let out = enc(text.as_bytes());
        prop_assert_eq!(type_out(&out), text);
    }
}

#[test]
fn every_printable_types_back() {
    let all: Vec<u8> = (0x20..=0x7e).chain([b'\n', b'\t']).collect();
    let out = enc(&all);
    assert_eq!(
        check_presses(&out),
        Ok(all.len() + 47),
        "one Shift per shifted char"
    );
    assert_eq!(type_out(&out).as_bytes(), all);
}
