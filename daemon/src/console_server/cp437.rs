//! Code page 437, the character set of a VGA text screen, as Unicode: what
//! `colinux-console` prints for each cell (the Linux console writes box
//! drawing, blocks and accented letters in these codes).

/// The Unicode character shown for CP437 code `b`. Control codes 0x01..0x1F
/// and 0x7F are the VGA font's pictures (smileys, arrows); 0 is a space.
pub fn to_char(b: u8) -> char {
    match b {
        0 => ' ',
        0x20..=0x7e => b as char,
        0x01..=0x1f => LOW[usize::from(b) - 1],
        0x7f => '⌂',
        _ => HIGH[usize::from(b) - 0x80],
    }
}

const LOW: [char; 31] = [
    '☺', '☻', '♥', '♦', '♣', '♠', '•', '◘', '○', '◙', '♂', '♀', '♪', '♫', '☼', '►', '◄', '↕', '‼',
    '¶', '§', '▬', '↨', '↑', '↓', '→', '←', '∟', '↔', '▲', '▼',
];

const HIGH: [char; 128] = [
    'Ç', 'ü', 'é', 'â', 'ä', 'à', 'å', 'ç', 'ê', 'ë', 'è', 'ï', 'î', 'ì', 'Ä', 'Å', //
    'É', 'æ', 'Æ', 'ô', 'ö', 'ò', 'û', 'ù', 'ÿ', 'Ö', 'Ü', '¢', '£', '¥', '₧', 'ƒ', //
    'á', 'í', 'ó', 'ú', 'ñ', 'Ñ', 'ª', 'º', '¿', '⌐', '¬', '½', '¼', '¡', '«', '»', //
    '░', '▒', '▓', '│', '┤', '╡', '╢', '╖', '╕', '╣', '║', '╗', '╝', '╜', '╛', '┐', //
    '└', '┴', '┬', '├', '─', '┼', '╞', '╟', '╚', '╔', '╩', '╦', '╠', '═', '╬', '╧', //
    '╨', '╤', '╥', '╙', '╘', '╒', '╓', '╫', '╪', '┘', '┌', '█', '▄', '▌', '▐', '▀', //
    'α', 'ß', 'Γ', 'π', 'Σ', 'σ', 'µ', 'τ', 'Φ', 'Θ', 'Ω', 'δ', '∞', 'φ', 'ε', '∩', //
    '≡', '±', '≥', '≤', '⌠', '⌡', '÷', '≈', '°', '∙', '·', '√', 'ⁿ', '²', '■', '\u{a0}',
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_codes() {
        assert_eq!(to_char(b'A'), 'A');
        assert_eq!(to_char(0xc9), '╔');
        assert_eq!(to_char(0xcd), '═');
        assert_eq!(to_char(0xb3), '│');
        assert_eq!(to_char(0xdb), '█');
        assert_eq!(to_char(0x82), 'é');
        assert_eq!(to_char(0x01), '☺');
        assert_eq!(to_char(0), ' ');
        // Every code maps to one printable character.
        for b in 0..=255u8 {
            assert!(!to_char(b).is_control(), "{b:#x}");
        }
    }
}
