//! The console's escape key, `Ctrl-]`, and the commands after it:
//!
//! | typed            | does                                              |
//! |------------------|---------------------------------------------------|
//! | `Ctrl-]` `d`     | detach (the guest keeps running)                  |
//! | `Ctrl-]` `s`     | switch between the VT screen and the serial log   |
//! | `Ctrl-]` `1`..`6`| Alt-F1..F6 to the guest: switch to tty1..tty6     |
//! | `Ctrl-]` `Ctrl-]`| one `Ctrl-]` to the guest                         |
//! | `Ctrl-]` other   | both keys to the guest                            |

/// `Ctrl-]`, the escape key.
pub const ESCAPE: u8 = 0x1d;

/// The escape hint printed on attach.
pub const HINT: &str = "Ctrl-] then d detaches, s switches screen/serial, 1-6 picks tty1-6";

/// A piece of what was typed, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Bytes for the guest.
    Bytes(Vec<u8>),
    /// `Ctrl-] d`: detach (what follows is dropped).
    Detach,
    /// `Ctrl-] s`: switch between the screen and the serial log.
    Toggle,
    /// `Ctrl-] N`: Alt-F`N` to the guest.
    Terminal(u8),
}

/// Splits typed bytes into bytes for the guest and escape commands; an
/// escape split across reads is kept until the next one.
#[derive(Debug, Default)]
pub struct Escape {
    pending: bool,
}

impl Escape {
    /// Feeds typed bytes; the pieces in the order typed (nothing after
    /// [`Piece::Detach`]).
    pub fn feed(&mut self, input: &[u8]) -> Vec<Piece> {
        let mut pieces = Vec::new();
        let mut bytes = Vec::with_capacity(input.len());
        let command = |bytes: &mut Vec<u8>, pieces: &mut Vec<Piece>, p: Piece| {
            if !bytes.is_empty() {
                pieces.push(Piece::Bytes(std::mem::take(bytes)));
            }
            pieces.push(p);
        };
        for &b in input {
            if self.pending {
                self.pending = false;
                match b {
                    b'd' | b'D' => {
                        command(&mut bytes, &mut pieces, Piece::Detach);
                        return pieces;
                    }
                    b's' | b'S' => command(&mut bytes, &mut pieces, Piece::Toggle),
                    b'1'..=b'6' => command(&mut bytes, &mut pieces, Piece::Terminal(b - b'0')),
                    ESCAPE => bytes.push(ESCAPE),
                    other => bytes.extend([ESCAPE, other]),
                }
            } else if b == ESCAPE {
                self.pending = true;
            } else {
                bytes.push(b);
            }
        }
        if !bytes.is_empty() {
            pieces.push(Piece::Bytes(bytes));
        }
        pieces
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &[u8]) -> Piece {
        Piece::Bytes(s.to_vec())
    }

    #[test]
    fn escape_sequences() {
        let mut e = Escape::default();
        assert_eq!(e.feed(b"ls\r"), [b(b"ls\r")]);
        assert_eq!(e.feed(&[ESCAPE, ESCAPE, b'x']), [b(&[ESCAPE, b'x'])]);
        assert_eq!(e.feed(&[ESCAPE, b'q']), [b(&[ESCAPE, b'q'])]);
        assert_eq!(
            e.feed(b"root\n\x1d2echo\x1dsx"),
            [
                b(b"root\n"),
                Piece::Terminal(2),
                b(b"echo"),
                Piece::Toggle,
                b(b"x")
            ]
        );
        // Split across reads; nothing after a detach.
        assert_eq!(e.feed(b"a\x1d"), [b(b"a")]);
        assert_eq!(e.feed(b"dzz"), [Piece::Detach]);
        assert_eq!(e.feed(b"\x1d7"), [b(b"\x1d7")], "only 1-6 pick a terminal");
    }
}
