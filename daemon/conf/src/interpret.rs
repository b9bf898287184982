//! Giving words their meaning: builds a [`Config`] from the ordered words,
//! applying the classic rules (later plain keys win with a warning, indexed
//! keys may be defined once, aliases allocate cobd devices after all explicit
//! `cobdN=` words, every other word goes to the kernel command line).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use crate::error::{ConfError, ErrorKind, Location};
use crate::keys::{self, Family, Key, PlainKey};
use crate::lexer::{split_fields, split_key_value, unquote};
use crate::model::{
    BlockDeviceConf, CobdMode, CofsShare, ConfPath, Config, ConsoleColors, ConsoleGeometry,
    ExecProgram, SerialPortConf, MAX_COBD,
};
use crate::net::{self, NetDeviceConf};
use crate::source::Word;

/// Longest kernel command line accepted (x86 `COMMAND_LINE_SIZE` minus NUL).
pub const MAX_KERNEL_CMDLINE: usize = 2047;

struct Pending {
    name: String,
    value: String,
    location: Location,
    base_dir: Arc<PathBuf>,
}

#[derive(Default)]
struct Builder {
    config: Config,
    plain_seen: HashMap<PlainKey, Location>,
    defined: HashMap<(Family, u32), Location>,
    cobd: BTreeMap<u32, BlockDeviceConf>,
    cofs: BTreeMap<u32, CofsShare>,
    eth: BTreeMap<u32, NetDeviceConf>,
    ttys: BTreeMap<u32, SerialPortConf>,
    exec: BTreeMap<u32, ExecProgram>,
    aliases: Vec<Pending>,
    alias_seen: HashMap<String, Location>,
    kernel_words: Vec<String>,
    kernel_given: bool,
}

/// Builds the configuration from words in order. `default_dir` is where the
/// default kernel (`vmlinux`) is looked for when `kernel=` is not given.
pub fn build(words: Vec<Word>, default_dir: Option<Arc<PathBuf>>) -> Result<Config, ConfError> {
    let mut b = Builder::default();
    let mut last_location = Location::command_line(0);
    for w in words {
        last_location = w.location.clone();
        b.word(w)?;
    }
    b.finish(default_dir, last_location)
}

fn bad(w: &Word, key: &str, value: &str, expected: impl Into<String>) -> ConfError {
    ConfError::new(
        w.location.clone(),
        ErrorKind::BadValue {
            key: key.to_string(),
            value: value.to_string(),
            expected: expected.into(),
        },
    )
}

fn empty(w: &Word, key: &str, expected: &str) -> ConfError {
    ConfError::new(
        w.location.clone(),
        ErrorKind::EmptyValue {
            key: key.to_string(),
            expected: expected.to_string(),
        },
    )
}

/// What each key accepts (used in error messages).
fn expected_for(key: &Key) -> &'static str {
    match key {
        Key::Plain(PlainKey::Kernel) => "the guest kernel file (vmlinux or bzImage)",
        Key::Plain(PlainKey::Initrd) => "an initial ramdisk file",
        Key::Plain(PlainKey::Mem) => "guest RAM in MiB, a whole number 1..1048576",
        Key::Plain(PlainKey::Setcobd) => "`async` or `sync`",
        Key::Plain(PlainKey::Cocon) => "COLSxROWS[xSCROLL], e.g. 80x25x500",
        Key::Plain(PlainKey::Cursor) => "a cursor size 0..100",
        Key::Plain(PlainKey::Color) => "FG,BG as VGA colour names, e.g. lightgray,black",
        Key::Indexed(Family::Cobd, _) => "a host file or device backing the block device",
        Key::Indexed(Family::Cofs, _) => "DIR[,ro]: a host directory to share (`ro`: read-only)",
        Key::Indexed(Family::Eth, _) => net::ETH_EXPECTED,
        Key::Indexed(Family::Ttys, _) => "PORT[,\"PARAMS\"], e.g. COM1 or /dev/ttyS0",
        Key::Indexed(Family::Exec, _) => "PROGRAM[,\"ARGS\"]",
        Key::Alias(_) => "`:cobdN` (name an existing cobd) or a host file",
        _ => "a value",
    }
}

impl Builder {
    fn word(&mut self, w: Word) -> Result<(), ConfError> {
        let Some((key_text, raw_value)) = split_key_value(&w.text) else {
            self.kernel_words.push(w.text);
            return Ok(());
        };
        let key = keys::classify(&key_text);
        match &key {
            Key::Kernel => {
                self.kernel_words.push(w.text);
                return Ok(());
            }
            Key::MissingIndex(_) => {
                return Err(ConfError::new(
                    w.location.clone(),
                    ErrorKind::MissingIndex { key: key_text },
                ))
            }
            Key::Unsupported(name) => {
                return Err(ConfError::new(
                    w.location.clone(),
                    ErrorKind::Unsupported {
                        key: key_text.clone(),
                        why: match *name {
                            "scsi" => "use cobdN= for disks".to_string(),
                            _ => "the guest has no such device".to_string(),
                        },
                    },
                ))
            }
            _ => {}
        }
        let expected = expected_for(&key);
        let unquoted = unquote(raw_value);
        if raw_value.is_empty() || unquoted.is_empty() {
            return Err(empty(&w, &key_text, expected));
        }
        match key {
            Key::Plain(p) => self.plain(&w, p, &key_text, raw_value, unquoted, expected),
            Key::Indexed(fam, idx) => {
                let index = keys::parse_index(fam, &idx).ok_or_else(|| {
                    ConfError::new(
                        w.location.clone(),
                        ErrorKind::IndexOutOfRange {
                            key: key_text.clone(),
                            prefix: fam.prefix().to_string(),
                            index: idx.clone(),
                            max: fam.max(),
                        },
                    )
                })?;
                if let Some(first) = self.defined.get(&(fam, index)) {
                    return Err(ConfError::new(
                        w.location.clone(),
                        ErrorKind::DoubleDefined {
                            key: key_text,
                            first: Box::new(first.clone()),
                        },
                    ));
                }
                self.indexed(&w, fam, index, &key_text, raw_value, unquoted, expected)?;
                self.defined.insert((fam, index), w.location.clone());
                Ok(())
            }
            Key::Alias(name) => {
                if let Some(first) = self.alias_seen.get(&name) {
                    return Err(ConfError::new(
                        w.location.clone(),
                        ErrorKind::DoubleDefined {
                            key: name,
                            first: Box::new(first.clone()),
                        },
                    ));
                }
                self.alias_seen.insert(name.clone(), w.location.clone());
                self.aliases.push(Pending {
                    name,
                    value: raw_value.to_string(),
                    location: w.location.clone(),
                    base_dir: w.base_dir.clone(),
                });
                Ok(())
            }
            Key::Kernel | Key::MissingIndex(_) | Key::Unsupported(_) => {
                unreachable!("handled above")
            }
        }
    }

    fn plain(
        &mut self,
        w: &Word,
        p: PlainKey,
        key: &str,
        raw: &str,
        v: String,
        expected: &str,
    ) -> Result<(), ConfError> {
        let path = |v: String| ConfPath::new(v, Some(w.base_dir.clone()));
        let c = &mut self.config;
        match p {
            PlainKey::Kernel => {
                c.kernel = path(v);
                self.kernel_given = true;
            }
            PlainKey::Initrd => c.initrd = Some(path(v)),
            PlainKey::Mem => {
                c.mem_mib = Some(keys::parse_mem(&v).ok_or_else(|| bad(w, key, raw, expected))?)
            }
            PlainKey::Setcobd => {
                c.setcobd = match v.as_str() {
                    "async" => CobdMode::Async,
                    "sync" => CobdMode::Sync,
                    _ => return Err(bad(w, key, raw, expected)),
                }
            }
            PlainKey::Cocon => {
                ConsoleGeometry::parse(&v).ok_or_else(|| bad(w, key, raw, expected))?;
                c.console = Some(v);
            }
            PlainKey::Cursor => {
                c.cursor = Some(keys::parse_cursor(&v).ok_or_else(|| bad(w, key, raw, expected))?)
            }
            PlainKey::Color => {
                let f = split_fields(raw);
                let (Some(fg), Some(bg), 2) = (
                    f.first().and_then(|s| keys::parse_color(s)),
                    f.get(1).and_then(|s| keys::parse_color(s)),
                    f.len(),
                ) else {
                    return Err(bad(w, key, raw, expected));
                };
                c.color = Some(ConsoleColors {
                    foreground: fg,
                    background: bg,
                });
            }
        }
        if let Some(first) = self.plain_seen.insert(p, w.location.clone()) {
            tracing::warn!(
                "{}: `{key}` given again (first at {first}); the later value `{raw}` wins",
                w.location
            );
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn indexed(
        &mut self,
        w: &Word,
        fam: Family,
        index: u32,
        key: &str,
        raw: &str,
        v: String,
        expected: &str,
    ) -> Result<(), ConfError> {
        let path = |v: String| ConfPath::new(v, Some(w.base_dir.clone()));
        let two_fields = |what: &str| -> Result<(String, Option<String>), ConfError> {
            let mut f = split_fields(raw);
            if f.len() > 2 {
                return Err(bad(
                    w,
                    key,
                    raw,
                    format!("{expected} (quote {what} containing commas)"),
                ));
            }
            // split_fields always yields at least one field.
            let first = f.remove(0);
            let second = f.pop().filter(|s| !s.is_empty());
            if first.is_empty() {
                return Err(bad(w, key, raw, expected));
            }
            Ok((first, second))
        };
        match fam {
            Family::Cobd => {
                self.cobd.insert(
                    index,
                    BlockDeviceConf {
                        index,
                        path: path(v),
                        aliases: Vec::new(),
                    },
                );
            }
            Family::Cofs => {
                let (dir, flag) = two_fields("a directory")?;
                let read_only = match flag.as_deref() {
                    None | Some("rw") => false,
                    Some("ro") => true,
                    Some(_) => return Err(bad(w, key, raw, expected)),
                };
                self.cofs.insert(
                    index,
                    CofsShare {
                        index,
                        path: path(dir),
                        read_only,
                    },
                );
            }
            Family::Eth => {
                let dev =
                    net::parse_eth(index, &split_fields(raw)).map_err(|e| bad(w, key, raw, e))?;
                self.eth.insert(index, dev);
            }
            Family::Ttys => {
                let (device, options) = two_fields("parameters")?;
                self.ttys.insert(
                    index,
                    SerialPortConf {
                        index,
                        device,
                        options,
                    },
                );
            }
            Family::Exec => {
                let (program, arguments) = two_fields("arguments")?;
                self.exec.insert(
                    index,
                    ExecProgram {
                        index,
                        program: path(program),
                        arguments,
                    },
                );
            }
        }
        Ok(())
    }

    fn resolve_aliases(&mut self) -> Result<(), ConfError> {
        for a in std::mem::take(&mut self.aliases) {
            let target = a
                .value
                .strip_prefix(":cobd")
                .map(|n| (n, keys::parse_index(Family::Cobd, n)));
            let index = match target {
                Some((_, Some(i))) if self.cobd.contains_key(&i) => i,
                Some((n, _)) => {
                    return Err(ConfError::new(
                        a.location,
                        ErrorKind::BadValue {
                            key: a.name,
                            value: a.value.clone(),
                            expected: format!(
                                "`:cobdN` naming a defined block device; cobd{n} is not defined"
                            ),
                        },
                    ))
                }
                None => {
                    let free = (0..=MAX_COBD)
                        .find(|i| !self.cobd.contains_key(i))
                        .ok_or_else(|| {
                            ConfError::new(
                                a.location.clone(),
                                ErrorKind::BadValue {
                                    key: a.name.clone(),
                                    value: a.value.clone(),
                                    expected: "a free cobd index, but cobd0..cobd31 are all in use"
                                        .to_string(),
                                },
                            )
                        })?;
                    self.cobd.insert(
                        free,
                        BlockDeviceConf {
                            index: free,
                            path: ConfPath::new(unquote(&a.value), Some(a.base_dir.clone())),
                            aliases: Vec::new(),
                        },
                    );
                    self.defined
                        .insert((Family::Cobd, free), a.location.clone());
                    free
                }
            };
            if let Some(dev) = self.cobd.get_mut(&index) {
                dev.aliases.push(a.name);
            }
        }
        Ok(())
    }

    fn finish(
        mut self,
        default_dir: Option<Arc<PathBuf>>,
        last: Location,
    ) -> Result<Config, ConfError> {
        self.resolve_aliases()?;
        let mut c = self.config;
        if !self.kernel_given {
            c.kernel = ConfPath::new(crate::DEFAULT_KERNEL, default_dir);
        }
        c.block_devices = self.cobd.into_values().collect();
        c.cofs = self.cofs.into_values().collect();
        c.network = self.eth.into_values().collect();
        c.serial = self.ttys.into_values().collect();
        c.exec = self.exec.into_values().collect();
        c.kernel_cmdline = self.kernel_words.join(" ");
        if c.kernel_cmdline.len() > MAX_KERNEL_CMDLINE {
            return Err(ConfError::new(
                last,
                ErrorKind::Missing {
                    what: format!(
                        "the guest kernel command line is {} bytes; the limit is {MAX_KERNEL_CMDLINE}",
                        c.kernel_cmdline.len()
                    ),
                },
            ));
        }
        Ok(c)
    }
}
