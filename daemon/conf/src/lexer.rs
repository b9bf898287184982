//! Splitting configuration text into words, and taking values apart.
//!
//! Rules (classic coLinux, tightened): spaces, tabs, CR and LF separate words;
//! `"` keeps spaces (and `#`, `,`) inside a word; `#` outside quotes starts a
//! comment to the end of the line. Words keep their quotes here; the meaning of
//! quotes depends on the key and is applied by [`unquote`] and [`split_fields`].
//! Inside quotes `""` stands for one literal `"`.

use crate::error::ErrorKind;

/// One word of configuration text with its 1-based line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawWord {
    /// The word exactly as written (quotes kept).
    pub text: String,
    /// The line the word starts on.
    pub line: usize,
}

/// The byte-order mark Windows editors put at the start of UTF-8 files.
const BOM: char = '\u{feff}';

fn is_separator(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn check_char(c: char) -> Result<(), ErrorKind> {
    if (c.is_control() && !is_separator(c)) || c == BOM {
        return Err(ErrorKind::ControlCharacter { code: c as u32 });
    }
    Ok(())
}

/// Decodes file bytes as UTF-8; on failure returns the 1-based line of the
/// first bad byte.
pub fn decode(bytes: &[u8]) -> Result<&str, usize> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(s),
        Err(e) => {
            let good = &bytes[..e.valid_up_to()];
            Err(1 + good.iter().filter(|&&b| b == b'\n').count())
        }
    }
}

/// Splits file text into words. Errors carry the 1-based line at fault.
pub fn lex(text: &str) -> Result<Vec<RawWord>, (usize, ErrorKind)> {
    let text = text.strip_prefix(BOM).unwrap_or(text);
    let mut words = Vec::new();
    let mut line = 1usize;
    let mut cur = String::new();
    let mut cur_line = 1usize;
    let mut in_quotes = false;
    let mut in_comment = false;
    for c in text.chars() {
        if in_comment {
            if c == '\n' {
                in_comment = false;
                line += 1;
            }
            continue;
        }
        if in_quotes {
            if c == '\n' || c == '\r' {
                return Err((cur_line, ErrorKind::UnterminatedQuote { word: cur }));
            }
            check_char(c).map_err(|k| (line, k))?;
            if c == '"' {
                in_quotes = false;
            }
            cur.push(c);
            continue;
        }
        if is_separator(c) {
            if !cur.is_empty() {
                words.push(RawWord {
                    text: std::mem::take(&mut cur),
                    line: cur_line,
                });
            }
            if c == '\n' {
                line += 1;
            }
            continue;
        }
        if c == '#' {
            if !cur.is_empty() {
                words.push(RawWord {
                    text: std::mem::take(&mut cur),
                    line: cur_line,
                });
            }
            in_comment = true;
            continue;
        }
        check_char(c).map_err(|k| (line, k))?;
        if cur.is_empty() {
            cur_line = line;
        }
        if c == '"' {
            in_quotes = true;
        }
        cur.push(c);
    }
    if in_quotes {
        return Err((cur_line, ErrorKind::UnterminatedQuote { word: cur }));
    }
    if !cur.is_empty() {
        words.push(RawWord {
            text: cur,
            line: cur_line,
        });
    }
    Ok(words)
}

/// Checks a word given as one command-line argument: balanced quotes and no
/// control characters (separators are allowed inside an argument).
pub fn check_word(word: &str) -> Result<(), ErrorKind> {
    let mut in_quotes = false;
    for c in word.chars() {
        if !matches!(c, ' ' | '\t') {
            check_char(c)?;
            if matches!(c, '\r' | '\n') {
                return Err(ErrorKind::ControlCharacter { code: c as u32 });
            }
        }
        if c == '"' {
            in_quotes = !in_quotes;
        }
    }
    if in_quotes {
        return Err(ErrorKind::UnterminatedQuote {
            word: word.to_string(),
        });
    }
    Ok(())
}

/// Removes the quoting from one value or field: text inside `"..."` is kept as
/// is, the quotes go, and `""` inside quotes is a literal `"`.
pub fn unquote(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars().peekable();
    let mut in_quotes = false;
    while let Some(c) = chars.next() {
        if c == '"' {
            if in_quotes && chars.peek() == Some(&'"') {
                chars.next();
                out.push('"');
            } else {
                in_quotes = !in_quotes;
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Splits a comma list (`tuntap,"My TAP",00:11:22:33:44:55`) into fields,
/// each unquoted; a comma inside quotes belongs to its field.
pub fn split_fields(value: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    for (i, c) in value.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            ',' if !in_quotes => {
                fields.push(unquote(&value[start..i]));
                start = i + 1;
            }
            _ => {}
        }
    }
    fields.push(unquote(&value[start..]));
    fields
}

/// Splits `key=value` at the first `=` outside quotes; `None` if there is none.
/// The key is returned unquoted.
pub fn split_key_value(word: &str) -> Option<(String, &str)> {
    let mut in_quotes = false;
    for (i, c) in word.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            '=' if !in_quotes => return Some((unquote(&word[..i]), &word[i + 1..])),
            _ => {}
        }
    }
    None
}

/// Characters that force quoting of a value when writing configuration text.
fn needs_quotes(s: &str, in_list: bool) -> bool {
    s.is_empty()
        || s.chars()
            .any(|c| is_separator(c) || c == '"' || c == '#' || (in_list && c == ','))
}

/// Quotes a value for writing so that [`lex`] + [`unquote`] give it back.
pub fn quote(s: &str) -> String {
    quote_as(s, false)
}

/// Quotes a comma-list field so that [`split_fields`] gives it back.
pub fn quote_field(s: &str) -> String {
    quote_as(s, true)
}

fn quote_as(s: &str, in_list: bool) -> String {
    if needs_quotes(s, in_list) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(s: &str) -> Vec<(String, usize)> {
        lex(s)
            .unwrap()
            .into_iter()
            .map(|w| (w.text, w.line))
            .collect()
    }

    #[test]
    fn words_lines_comments_and_crlf() {
        let got =
            texts("kernel=vmlinux # the kernel\r\n\r\n  mem=64\tro\r\n#x=1\ncobd0=\"a b\"#c\n");
        assert_eq!(
            got,
            vec![
                ("kernel=vmlinux".into(), 1),
                ("mem=64".into(), 3),
                ("ro".into(), 3),
                ("cobd0=\"a b\"".into(), 5),
            ]
        );
    }

    #[test]
    fn hash_inside_quotes_is_literal() {
        assert_eq!(
            texts("a=\"x#y\" b"),
            vec![("a=\"x#y\"".into(), 1), ("b".into(), 1)]
        );
    }

    #[test]
    fn unterminated_quote_names_its_line() {
        let err = lex("a=1\nb=\"open\nc=2").unwrap_err();
        assert_eq!(err.0, 2);
        assert!(matches!(err.1, ErrorKind::UnterminatedQuote { .. }));
    }

    #[test]
    fn bad_utf8_line() {
        assert_eq!(decode(b"a\nb\n\xffc"), Err(3));
    }

    #[test]
    fn unquote_and_fields() {
        assert_eq!(
            unquote("\"C:\\My Files\\root.fs\""),
            "C:\\My Files\\root.fs"
        );
        assert_eq!(unquote("\"say \"\"hi\"\"\""), "say \"hi\"");
        assert_eq!(
            split_fields("tuntap,\"TAP, one\",00:11:22:33:44:55"),
            vec!["tuntap", "TAP, one", "00:11:22:33:44:55"]
        );
        assert_eq!(split_fields("slirp,,tcp:1:2"), vec!["slirp", "", "tcp:1:2"]);
    }

    #[test]
    fn quote_round_trips() {
        for s in ["plain", "with space", "q\"uote", "", "a,b", "#x", "\"\""] {
            assert_eq!(unquote(&quote(s)), s);
            assert_eq!(split_fields(&quote_field(s)), vec![s.to_string()]);
        }
    }
}
