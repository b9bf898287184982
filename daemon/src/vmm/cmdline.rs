//! The guest kernel command line, by the classic rules: the configuration's
//! leftover words in order, plus what the daemon's machine needs (the
//! consoles, the screen's colours and cursor) unless the user already said it.

/// The names the guest's initramfs gives devices: cobd aliases and NICs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceNames {
    /// `(alias, N)`: `/dev/<alias>` names cobdN (from `hda1=:cobd0`).
    pub aliases: Vec<(String, u32)>,
    /// `(N, MAC)`: the NIC with this MAC is `ethN` (from `ethN=`).
    pub nics: Vec<(u32, String)>,
}

/// Builds the command line from the configuration words.
///
/// - `console=tty0 console=ttyS0` is added unless the words already contain
///   a `console=`: kernel messages go to the screen (the virtual terminals)
///   and to the serial line, which is `/dev/console` (the last one named), so
///   init's output and the daemon's terminal, log and harness keep it;
/// - `screen` words (`vt.color=`, `vt.cur_default=` from `color=`/`cursor=`)
///   come before the user's, so a user's own `vt.` word wins;
/// - `-k` (`quiet`) keeps kernel messages off the console: `quiet loglevel=0`
///   unless the user set `loglevel=` themselves;
/// - `reboot=k` is not needed: the daemon serves both the ACPI reset register and
///   the i8042 reset line;
/// - cobd aliases (`hda1=:cobd0`) reach the guest init as
///   `colinux.alias=hda1:cobd0,...`, after the user's kernel words;
/// - each NIC's conf name and MAC reach it as `colinux.eth=eth0@MAC,...`, so
///   the guest's initramfs names the interface of `ethN=` `ethN` whatever the
///   PCI order or the distribution's naming policy.
pub fn build(
    words: &str,
    suppress_kernel_messages: bool,
    names: &DeviceNames,
    screen: &[String],
) -> String {
    let mut parts: Vec<String> = Vec::new();
    let user: Vec<&str> = words.split_whitespace().collect();
    // Everything after a standalone `--` goes to init; daemon words go before it.
    let split = user.iter().position(|w| *w == "--").unwrap_or(user.len());
    let (kernel_words, init_words) = user.split_at(split);
    let has = |prefix: &str| kernel_words.iter().any(|w| w.starts_with(prefix));
    if !has("console=") {
        parts.push("console=tty0".into());
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
    parts.extend(screen.iter().cloned());
    parts.extend(kernel_words.iter().map(|s| s.to_string()));
    if !names.aliases.is_empty() {
        let list: Vec<String> = names
            .aliases
            .iter()
            .map(|(n, i)| format!("{n}:cobd{i}"))
            .collect();
        parts.push(format!("colinux.alias={}", list.join(",")));
    }
    if !names.nics.is_empty() {
        let list: Vec<String> = names
            .nics
            .iter()
            .map(|(i, mac)| format!("eth{i}@{mac}"))
            .collect();
        parts.push(format!("colinux.eth={}", list.join(",")));
    }
    parts.extend(init_words.iter().map(|s| s.to_string()));
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(
        "root=/dev/cobd0 ro",
        false,
        "console=tty0 console=ttyS0 root=/dev/cobd0 ro"
    )]
    #[case("console=tty0 ro", false, "console=tty0 ro")]
    #[case("ro", true, "console=tty0 console=ttyS0 quiet loglevel=0 ro")]
    #[case(
        "ro loglevel=4",
        true,
        "console=tty0 console=ttyS0 quiet ro loglevel=4"
    )]
    #[case("ro -- single", false, "console=tty0 console=ttyS0 ro -- single")]
    #[case("ro -- console=x", false, "console=tty0 console=ttyS0 ro -- console=x")]
    #[case("", false, "console=tty0 console=ttyS0")]
    fn classic_rules(#[case] words: &str, #[case] k: bool, #[case] want: &str) {
        assert_eq!(build(words, k, &DeviceNames::default(), &[]), want);
    }

    #[test]
    fn screen_words_come_before_the_users() {
        let screen = ["vt.color=0x1f".to_string()];
        assert_eq!(
            build(
                "console=ttyS0 vt.color=0x07",
                false,
                &DeviceNames::default(),
                &screen
            ),
            "vt.color=0x1f console=ttyS0 vt.color=0x07"
        );
    }

    #[test]
    fn aliases_go_before_init_words() {
        let names = DeviceNames {
            aliases: vec![("hda1".to_string(), 0), ("sdb".to_string(), 1)],
            nics: vec![(1, "00:ff:c0:11:00:01".to_string())],
        };
        assert_eq!(
            build("ro -- single", false, &names, &[]),
            "console=tty0 console=ttyS0 ro colinux.alias=hda1:cobd0,sdb:cobd1 \
             colinux.eth=eth1@00:ff:c0:11:00:01 -- single"
        );
    }
}
