//! The guest kernel command line, by the classic rules: the configuration's
//! leftover words in order, plus what the daemon's machine needs (the serial
//! console) unless the user already said it.

/// Builds the command line from the configuration words.
///
/// - `console=ttyS0` (and `earlyprintk=serial` only when nothing else is said)
///   is added unless the words already contain a `console=`;
/// - `-k` (`quiet`) keeps kernel messages off the console: `quiet loglevel=0`
///   unless the user set `loglevel=` themselves;
/// - `reboot=k` is not needed: the daemon serves both the ACPI reset register and
///   the i8042 reset line;
/// - cobd aliases (`hda1=:cobd0`) reach the guest init as
///   `colinux.alias=hda1:cobd0,...`, after the user's kernel words.
pub fn build(words: &str, suppress_kernel_messages: bool, aliases: &[(String, u32)]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let user: Vec<&str> = words.split_whitespace().collect();
    // Everything after a standalone `--` goes to init; daemon words go before it.
    let split = user.iter().position(|w| *w == "--").unwrap_or(user.len());
    let (kernel_words, init_words) = user.split_at(split);
    let has = |prefix: &str| kernel_words.iter().any(|w| w.starts_with(prefix));
    if !has("console=") {
        parts.push("console=ttyS0".into());
    }
    if suppress_kernel_messages {
        if !kernel_words.contains(&"quiet") {
            parts.push("quiet".into());
        }
        if !has("loglevel=") {
            parts.push("loglevel=0".into());
        }
    }
    parts.extend(kernel_words.iter().map(|s| s.to_string()));
    if !aliases.is_empty() {
        let list: Vec<String> = aliases
            .iter()
            .map(|(n, i)| format!("{n}:cobd{i}"))
            .collect();
        parts.push(format!("colinux.alias={}", list.join(",")));
    }
    parts.extend(init_words.iter().map(|s| s.to_string()));
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("root=/dev/cobd0 ro", false, "console=ttyS0 root=/dev/cobd0 ro")]
    #[case("console=tty0 ro", false, "console=tty0 ro")]
    #[case("ro", true, "console=ttyS0 quiet loglevel=0 ro")]
    #[case("ro loglevel=4", true, "console=ttyS0 quiet ro loglevel=4")]
    #[case("ro -- single", false, "console=ttyS0 ro -- single")]
    #[case("ro -- console=x", false, "console=ttyS0 ro -- console=x")]
    #[case("", false, "console=ttyS0")]
    fn classic_rules(#[case] words: &str, #[case] k: bool, #[case] want: &str) {
        assert_eq!(build(words, k, &[]), want);
    }

    #[test]
    fn aliases_go_before_init_words() {
        let a = vec![("hda1".to_string(), 0), ("sdb".to_string(), 1)];
        assert_eq!(
            build("ro -- single", false, &a),
            "console=ttyS0 ro colinux.alias=hda1:cobd0,sdb:cobd1 -- single"
        );
    }
}
