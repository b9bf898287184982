//! Writing a [`Config`] back as classic `colinux.conf` text.

use std::fmt::Write;

use crate::lexer::{quote, quote_field};
use crate::model::{CobdMode, Config};

impl Config {
    /// The configuration as classic word-format text, one setting per line,
    /// the kernel command line last. Parsing the text gives back this model
    /// (paths then relative to the directory the text is read from), provided
    /// the kernel command line holds no word that is itself a configuration
    /// key (such words cannot be expressed in the classic format).
    pub fn to_conf_text(&self) -> String {
        let mut t = String::from("# colinux.conf (classic word format)\n");
        let mut line = |s: String| {
            t.push_str(&s);
            t.push('\n');
        };
        line(format!("kernel={}", quote(&self.kernel.raw)));
        if let Some(i) = &self.initrd {
            line(format!("initrd={}", quote(&i.raw)));
        }
        if let Some(m) = self.mem_mib {
            line(format!("mem={m}"));
        }
        if self.setcobd == CobdMode::Async {
            line("setcobd=async".to_string());
        }
        for d in &self.block_devices {
            line(format!("cobd{}={}", d.index, quote(&d.path.raw)));
            for a in &d.aliases {
                line(format!("{a}=:cobd{}", d.index));
            }
        }
        for s in &self.cofs {
            let ro = if s.read_only { ",ro" } else { "" };
            line(format!("cofs{}={}{ro}", s.index, quote_field(&s.path.raw)));
        }
        for n in &self.network {
            line(format!("eth{}={}", n.index, n.to_value()));
        }
        for s in &self.serial {
            let mut v = quote_field(&s.device);
            if let Some(o) = &s.options {
                let _ = write!(v, ",{}", quote_field(o));
            }
            line(format!("ttys{}={v}", s.index));
        }
        for e in &self.exec {
            let mut v = quote_field(&e.program.raw);
            if let Some(a) = &e.arguments {
                let _ = write!(v, ",{}", quote_field(a));
            }
            line(format!("exec{}={v}", e.index));
        }
        if let Some(c) = &self.console {
            line(format!("cocon={c}"));
        }
        if let Some(c) = self.cursor {
            line(format!("cursor={c}"));
        }
        if let Some(c) = &self.color {
            line(format!("color={},{}", c.foreground, c.background));
        }
        if !self.kernel_cmdline.is_empty() {
            line(self.kernel_cmdline.clone());
        }
        t
    }
}

impl Config {
    /// Checks a model built by hand (e.g. by the harness from scenario data):
    /// it must be what its own classic text parses back to. Errors name the
    /// line of [`Config::to_conf_text`] at fault, or say what cannot be
    /// expressed (a kernel command-line word that is itself a key).
    pub fn validate(&self) -> Result<(), crate::ConfError> {
        use std::path::Path;
        let text = self.to_conf_text();
        let name = Path::new("<generated colinux.conf>");
        let back = crate::parse_str(&text, name, Path::new("."))?;
        if back.to_json_pretty() != self.to_json_pretty() {
            let line = text.lines().count();
            return Err(crate::ConfError::new(
                crate::Location::file(std::sync::Arc::new(name.to_path_buf()), line),
                crate::ErrorKind::Missing {
                    what: "the model does not survive its own classic text: check indices are \
                           unique and sorted, bridge NICs have a name, and the kernel command \
                           line holds no configuration key"
                        .to_string(),
                },
            ));
        }
        Ok(())
    }
}
