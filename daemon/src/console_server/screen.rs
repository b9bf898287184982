//! The guest's VGA text screen on the console socket: its wire form (SCREEN
//! frames) and the two ways `colinux-console` shows it — plain text
//! (`--screen`, for scripts) and ANSI for a terminal (characters, the 16 VGA
//! colours, blink, the cursor's place and shape).
//!
//! ```text
//! SCREEN payload = cols:u16 rows:u16 font_height:u8 cursor:u8 (1 shown, 0 not)
//!                  cursor_col:u16 cursor_row:u16 shape_start:u8 shape_end:u8
//!                  then cols*rows cells of (char:u8 CP437, attr:u8)   (big endian)
//! ```

use std::fmt::Write as _;

use colinux_devices::legacy::vga::{Cell, Cursor, TextScreen, TextSize, MAX_CELLS};

use super::cp437;

const HEADER: usize = 12;
/// CP437 0xFF, a blank like the space.
const NBSP: char = '\u{a0}';

/// Encodes a screen for a SCREEN frame.
pub fn encode(s: &TextScreen) -> Vec<u8> {
    let mut b = Vec::with_capacity(HEADER + 2 * s.cells.len());
    b.extend_from_slice(&s.size.cols.to_be_bytes());
    b.extend_from_slice(&s.size.rows.to_be_bytes());
    b.push(s.font_height);
    let c = s.cursor.unwrap_or(Cursor {
        col: 0,
        row: 0,
        shape: (0, 0),
    });
    b.push(u8::from(s.cursor.is_some()));
    b.extend_from_slice(&c.col.to_be_bytes());
    b.extend_from_slice(&c.row.to_be_bytes());
    b.extend_from_slice(&[c.shape.0, c.shape.1]);
    for cell in &s.cells {
        b.extend_from_slice(&[cell.ch, cell.attr]);
    }
    b
}

/// Decodes a SCREEN payload; `None` when it is malformed.
pub fn decode(b: &[u8]) -> Option<TextScreen> {
    let head = b.get(..HEADER)?;
    let u16_at = |i: usize| u16::from_be_bytes([head[i], head[i + 1]]);
    let size = TextSize {
        cols: u16_at(0),
        rows: u16_at(2),
    };
    let n = usize::from(size.cols) * usize::from(size.rows);
    if n == 0 || n > MAX_CELLS || b.len() != HEADER + 2 * n {
        return None;
    }
    let cursor = (head[5] == 1).then(|| Cursor {
        col: u16_at(6),
        row: u16_at(8),
        shape: (head[10], head[11]),
    });
    let cells = b[HEADER..]
        .chunks_exact(2)
        .map(|c| Cell {
            ch: c[0],
            attr: c[1],
        })
        .collect();
    Some(TextScreen {
        size,
        font_height: head[4],
        cells,
        cursor,
    })
}

/// The screen as plain text: one line per row (`rows` lines), trailing
/// blanks trimmed, CP437 shown as Unicode.
pub fn to_text(s: &TextScreen) -> String {
    let mut out = String::new();
    for r in 0..s.size.rows {
        let line: String = s.row(r).iter().map(|c| cp437::to_char(c.ch)).collect();
        out.push_str(line.trim_end_matches([' ', NBSP]));
        out.push('\n');
    }
    out
}

/// VGA colour number to ANSI colour number (VGA: black, blue, green, cyan,
/// red, magenta, brown, grey; ANSI: black, red, green, yellow, blue,
/// magenta, cyan, white).
const VGA_TO_ANSI: [u8; 8] = [0, 4, 2, 6, 1, 5, 3, 7];

/// The SGR sequence for a VGA attribute (bit 7 is blink, as the attribute
/// controller is set up).
pub fn sgr(attr: u8) -> String {
    let fg = attr & 0x0f;
    let bg = (attr >> 4) & 0x07;
    let fg_code = if fg & 8 != 0 {
        90 + VGA_TO_ANSI[usize::from(fg & 7)]
    } else {
        30 + VGA_TO_ANSI[usize::from(fg)]
    };
    let blink = if attr & 0x80 != 0 { ";5" } else { "" };
    format!(
        "\x1b[0;{fg_code};{}{blink}m",
        40 + VGA_TO_ANSI[usize::from(bg)]
    )
}

/// The screen drawn for a terminal of `term` (cols, rows), from its top
/// left: colours by SGR, each row cleared to its end, then the cursor put in
/// place with its shape (DECSCUSR: underline or block) or hidden. Cells
/// beyond the terminal are cut off.
pub fn to_ansi(s: &TextScreen, term: Option<(u16, u16)>) -> String {
    let (tc, tr) = term.unwrap_or((s.size.cols, s.size.rows));
    let cols = usize::from(s.size.cols.min(tc.max(1)));
    let rows = s.size.rows.min(tr.max(1));
    let mut out = String::from("\x1b[?25l\x1b[H");
    for r in 0..rows {
        let mut attr = None;
        for c in s.row(r).iter().take(cols) {
            if attr != Some(c.attr) {
                out.push_str(&sgr(c.attr));
                attr = Some(c.attr);
            }
            out.push(cp437::to_char(c.ch));
        }
        out.push_str("\x1b[0m\x1b[K");
        if r + 1 < rows {
            out.push_str("\r\n");
        }
    }
    out.push_str("\x1b[0m\x1b[J");
    match s.cursor {
        Some(c) if c.row < rows && usize::from(c.col) < cols => {
            let _ = write!(out, "\x1b[{};{}H", c.row + 1, c.col + 1);
            // Covering more than half the cell: a block, else an underline.
            let height = c.shape.1.saturating_sub(c.shape.0) + 1;
            let style = if u16::from(height) * 2 > u16::from(s.font_height.max(1)) {
                2
            } else {
                4
            };
            let _ = write!(out, "\x1b[{style} q\x1b[?25h");
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use colinux_devices::bus::BusDevice;
    use colinux_devices::legacy::vga::{VgaText, TEXT_BUFFER};
    use proptest::prelude::*;
    use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

    /// A fixed guest program, as the kernel's vgacon would run it: a getty's
    /// banner and login on tty1, a coloured status line with box drawing, an
    /// accented word, then the cursor after the prompt.
    fn fixed_program(size: TextSize) -> TextScreen {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
        let mut vga = VgaText::new(size);
        let cols = usize::from(size.cols);
        let put = |row: usize, col: usize, text: &[u8], attr: u8| {
            for (i, &ch) in text.iter().enumerate() {
                let at = TEXT_BUFFER + 2 * (row * cols + col + i) as u64;
                mem.write_slice(&[ch, attr], GuestAddress(at)).unwrap();
            }
        };
        // vgacon clears the screen with blanks in the default colour.
        for row in 0..usize::from(size.rows) {
            put(row, 0, &vec![b' '; cols], 0x07);
        }
        put(0, 0, b"Debian GNU/Linux 12 colinux tty1", 0x07);
        put(2, 0, b"colinux login: root", 0x07);
        put(3, 0, b"root@colinux:~# echo VT-$((6*7))", 0x07);
        put(4, 0, b"VT-42", 0x07);
        put(6, 0, &[0xc9, 0xcd, 0xcd, 0xcd, 0xbb], 0x1e);
        put(7, 0, &[0xba], 0x1e);
        put(7, 1, b"OK!", 0x1a);
        put(7, 4, &[0xba], 0x1e);
        put(8, 0, &[0xc8, 0xcd, 0xcd, 0xcd, 0xbc], 0x1e);
        put(8, 6, b"caf\x82 ", 0x4f);
        put(8, 11, b"blink", 0x8c);
        put(10, 0, b"root@colinux:~# ", 0x07);
        // write_vga(14, pos): the cursor after the prompt.
        let pos = (10 * cols + 16) as u16;
        vga.write(0x14, &[0x0e, (pos >> 8) as u8]);
        vga.write(0x14, &[0x0f, pos as u8]);
        vga.snapshot(&mem)
    }

    #[test]
    fn the_screen_of_a_fixed_guest_program() {
        let s = fixed_program(TextSize::default());
        insta::assert_snapshot!("fixed_program_text", to_text(&s));
        insta::assert_snapshot!(
            "fixed_program_ansi",
            to_ansi(&s, None)
                .replace('\x1b', "<ESC>")
                .replace("\r\n", "<CRLF>\n")
        );
    }

    #[test]
    fn a_100x30_screen_is_30_lines_of_up_to_100() {
        let size = TextSize {
            cols: 100,
            rows: 30,
        };
        let s = fixed_program(size);
        let text = to_text(&s);
        assert_eq!(text.lines().count(), 30);
        assert!(text.lines().all(|l| l.chars().count() <= 100));
        assert_eq!(s.cursor.map(|c| (c.col, c.row)), Some((16, 10)));
    }

    #[test]
    fn a_small_terminal_cuts_the_screen() {
        let s = fixed_program(TextSize::default());
        let a = to_ansi(&s, Some((20, 5)));
        assert_eq!(a.matches("\r\n").count(), 4);
        assert!(
            !a.contains("\x1b[?25h"),
            "the cursor (row 10) is off this terminal"
        );
    }

    fn screens() -> impl Strategy<Value = TextScreen> {
        (1u16..=160, 1u16..=60)
            .prop_filter("fits", |(c, r)| {
                usize::from(*c) * usize::from(*r) <= MAX_CELLS
            })
            .prop_flat_map(|(cols, rows)| {
                let n = usize::from(cols) * usize::from(rows);
                (
                    Just(TextSize { cols, rows }),
                    proptest::collection::vec(any::<(u8, u8)>(), n),
                    proptest::option::of((0..cols, 0..rows, 0u8..16, 0u8..16)),
                )
            })
            .prop_map(|(size, cells, cursor)| TextScreen {
                size,
                font_height: 16,
                cells: cells
                    .into_iter()
                    .map(|(ch, attr)| Cell { ch, attr })
                    .collect(),
                cursor: cursor.map(|(col, row, a, b)| Cursor {
                    col,
                    row,
                    shape: (a, b),
                }),
            })
    }

    proptest! {
        #[test]
        fn the_wire_form_round_trips(s in screens()) {
            prop_assert_eq!(decode(&encode(&s)), Some(s));
        }

        #[test]
        fn text_has_one_line_per_row_and_every_character(s in screens()) {
            let text = to_text(&s);
            let lines: Vec<&str> = text.split('\n').collect();
            prop_assert_eq!(lines.len(), usize::from(s.size.rows) + 1);
            for (r, line) in lines.iter().take(usize::from(s.size.rows)).enumerate() {
                let want: String = s.row(r as u16).iter().map(|c| cp437::to_char(c.ch)).collect();
                prop_assert!(want.starts_with(line), "row {}", r);
                prop_assert!(want[line.len()..].chars().all(|c| c == ' ' || c == NBSP));
            }
        }

        #[test]
        fn ansi_shows_every_cell_with_its_colour(s in screens()) {
            let a = to_ansi(&s, None);
            // Strip the escape sequences: what is left is the cells, row by row.
            let mut plain = String::new();
            let mut chars = a.chars().peekable();
            while let Some(c) = chars.next() {
                if c == '\x1b' {
                    for d in chars.by_ref() {
                        if d.is_ascii_alphabetic() { break; }
                    }
                } else if c != '\r' {
                    plain.push(c);
                }
            }
            let want: Vec<String> = (0..s.size.rows)
                .map(|r| s.row(r).iter().map(|c| cp437::to_char(c.ch)).collect())
                .collect();
            prop_assert_eq!(plain, want.join("\n"));
            // Each cell's attribute is set before it is drawn at least once.
            for c in &s.cells {
                prop_assert!(a.contains(&sgr(c.attr)));
            }
            prop_assert_eq!(a.contains("\x1b[?25h"), s.cursor.is_some());
        }

        #[test]
        fn decode_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&b);
        }
    }
}
