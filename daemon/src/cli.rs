//! The `colinux-daemon` command line: the classic options (`-d -k -p -t -v`,
//! `@file`, configuration words) plus the new inspection options
//! (`--dump-config`, `--dump-conf`, `--check`, `--capabilities`,
//! `--opened-libraries`).

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::Parser;
use colinux_conf::{ConfError, Config};

/// Text shown after the option list in `--help`.
const AFTER_HELP: &str = "\
Configuration words (classic coLinux 0.7/0.8), in any order, mixed with @file:
  kernel=FILE  initrd=FILE  mem=MiB  setcobd=async|sync
  cobdN=FILE (N 0..31)   hdXN=:cobdN | hdXN=FILE   sdXN=...   cofsN=DIR[,ro]
  ethN=slirp[,MAC[,tcp:HOST:GUEST[:COUNT]/...]]   ethN=tuntap[,\"NAME\"[,MAC]]
  ethN=pcap-bridge,\"NAME\"[,MAC[,promisc|nopromisc]]   ethN=ndis-bridge,...
  ttysN=/dev/TTY|pty (N 0..2: guest ttyS1..ttyS3)  execN=PROGRAM[,\"ARGS\"]
  cocon=COLSxROWS[xSCROLL]  cursor=0..100  color=FG,BG
Every other word (root=/dev/cobd0 ro init=... --) goes to the guest kernel.
cofsN shares DIR as virtio-fs tag cofsN (guest: mount -t virtiofs cofs0 /mnt/c).
cocon sizes the guest's VGA text screen (colinux-console -a PID --vt shows it);
color and cursor become the guest kernel's vt.color and vt.cur_default.
Accepted but not honoured (warned at start, listed by --check): setcobd=async,
ttysN line parameters, a cocon larger than VGA text mode.

Exit status: 0 success, 1 run-time failure, 2 configuration or usage error.";

/// Parsed `colinux-daemon` command line.
#[derive(Debug, Parser)]
#[command(
    name = "colinux-daemon",
    version,
    about = "Cooperative Linux daemon: boots a Linux guest described by classic colinux.conf words",
    override_usage = "colinux-daemon [-d] [-h] [-k] [-p pidfile] [-t console] [-v level] [words...] [@file]",
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// Run in the background: fork, stdio to /dev/null, log to
    /// `<runtime dir>/<pid>.log`; the console is on the socket (colinux-console).
    #[arg(short = 'd')]
    pub detach: bool,
    /// For service managers: no fork, no console on stdin, logs on stderr
    /// (the console is on the socket).
    #[arg(long)]
    pub foreground: bool,
    /// A name consoles attach by (`colinux-console -a NAME`).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Log file of a `-d` daemon (default `<runtime dir>/<pid>.log`).
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
    /// Suppress the guest kernel's messages on the console.
    #[arg(short = 'k')]
    pub suppress_kernel_messages: bool,
    /// Write the daemon's pid (the VM id consoles attach to) to this file.
    #[arg(short = 'p', value_name = "PIDFILE")]
    pub pidfile: Option<PathBuf>,
    /// Console to start: `nt` (text) or `fltk` (GUI) in the original.
    #[arg(short = 't', value_name = "CONSOLE")]
    pub console_type: Option<String>,
    /// Verbosity 0 (errors only) .. 4 (trace); default 2 (info).
    #[arg(short = 'v', value_name = "LEVEL", value_parser = clap::value_parser!(u8).range(0..=4))]
    pub verbosity: Option<u8>,
    /// Obsolete coLinux 0.6 XML configuration (refused with advice).
    #[arg(short = 'c', value_name = "XMLFILE", hide = true)]
    pub xml_config: Option<PathBuf>,
    /// Print the parsed configuration as pretty JSON on stdout and exit.
    #[arg(long)]
    pub dump_config: bool,
    /// Print the parsed configuration back as classic colinux.conf text and exit.
    #[arg(long)]
    pub dump_conf: bool,
    /// Check the configuration and that the files it names exist, then exit.
    #[arg(long)]
    pub check: bool,
    /// Print the JSON list of scenario capabilities this build implements and exit.
    #[arg(long)]
    pub capabilities: bool,
    /// Print the shared libraries this build opens at run time (so `ldd` does
    /// not name them), one soname a line, and exit: what a package or an
    /// image must ship besides `ldd`'s list.
    #[arg(long)]
    pub opened_libraries: bool,
    /// Number of virtual CPUs the guest gets (new; classic coLinux had one).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=254))]
    pub cpus: u32,
    /// Host address slirp port redirections (`tcp:HOST:GUEST`) listen on. The
    /// default, 127.0.0.1, keeps them private to this machine; 0.0.0.0 opens
    /// them to the LAN, like coLinux's slirp did.
    #[arg(long, value_name = "ADDR", default_value_t = std::net::Ipv4Addr::LOCALHOST)]
    pub slirp_bind: std::net::Ipv4Addr,
    /// What a guest `reboot` does: `restart` boots the guest again in this
    /// daemon (classic coLinux; 5 reboots within 60 s stop it with status 1),
    /// `exit` ends the daemon with status 0.
    #[arg(long, value_name = "WHAT", value_enum, default_value_t = OnReboot::Restart)]
    pub on_reboot: OnReboot,
    /// When each vCPU stops, print its exits by port and MMIO page (count,
    /// handling time) and per 250 ms of run time: where a slow boot went.
    #[arg(long)]
    pub exit_stats: bool,
    /// Windows-only service options of the original (not available here).
    #[arg(long = "install-service", hide = true, value_name = "NAME", num_args = 0..=1)]
    pub install_service: Option<Option<String>>,
    /// Windows-only (not available here).
    #[arg(long = "remove-service", hide = true, value_name = "NAME", num_args = 0..=1)]
    pub remove_service: Option<Option<String>>,
    /// Windows-only (not available here).
    #[arg(long = "remove-driver", hide = true)]
    pub remove_driver: bool,
    /// Configuration words and @file names (a `--` and what follows it go to
    /// the guest kernel untouched).
    #[arg(value_name = "WORDS", allow_hyphen_values = false)]
    pub words: Vec<OsString>,
}

/// How the daemon should run the VM (everything on the command line that is
/// not part of the VM configuration itself).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// `-d`: no console.
    pub detach: bool,
    /// `-k`: do not show the guest kernel's messages.
    pub suppress_kernel_messages: bool,
    /// `-p`: where to write the pid.
    pub pidfile: Option<PathBuf>,
    /// `-t`: which console to start.
    pub console_type: Option<String>,
    /// `-v`: 0 errors .. 4 trace.
    pub verbosity: u8,
    /// `--cpus`: number of vCPUs (0 is taken as 1).
    pub cpus: u32,
    /// `--slirp-bind`: host address of slirp redirections (unspecified = loopback).
    pub slirp_bind: Option<std::net::Ipv4Addr>,
    /// `--on-reboot`: boot again in place (default) or exit.
    pub on_reboot: OnReboot,
    /// `--exit-stats`: print where each vCPU's exits went when it stops.
    pub exit_stats: bool,
}

/// What the daemon does when the guest reboots (`--on-reboot`): `Restart`
/// boots the guest again in the same daemon (classic coLinux), `Exit` ends
/// the daemon with status 0. (No doc comments on the variants: clap would
/// switch `--help` to its long layout.)
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
#[allow(missing_docs)]
pub enum OnReboot {
    #[default]
    Restart,
    Exit,
}

/// Default verbosity (info).
pub const DEFAULT_VERBOSITY: u8 = 2;

impl Cli {
    /// Parses arguments (program name first). The first `--` and everything
    /// after it bypass option parsing and reach the configuration words as
    /// they are, so `colinux-daemon @x.conf -- single` gives the guest
    /// `-- single`. Exits (status 2, or 0 for `--help`) on a usage error.
    pub fn parse_with_passthrough<I, T>(args: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString>,
    {
        match Self::try_parse_with_passthrough(args) {
            Ok(c) => c,
            Err(e) => e.exit(),
        }
    }

    /// Like [`Cli::parse_with_passthrough`] but returns clap's error.
    pub fn try_parse_with_passthrough<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString>,
    {
        let mut args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let tail = match args.iter().skip(1).position(|a| a == "--") {
            Some(i) => args.split_off(i + 1),
            None => Vec::new(),
        };
        let mut cli = Self::try_parse_from(args)?;
        cli.words.extend(tail);
        Ok(cli)
    }

    /// The run options for the boot path.
    pub fn run_options(&self) -> RunOptions {
        RunOptions {
            detach: self.detach,
            suppress_kernel_messages: self.suppress_kernel_messages,
            pidfile: self.pidfile.clone(),
            console_type: self.console_type.clone(),
            verbosity: self.verbosity.unwrap_or(DEFAULT_VERBOSITY),
            cpus: self.cpus,
            slirp_bind: Some(self.slirp_bind),
            on_reboot: self.on_reboot,
            exit_stats: self.exit_stats,
        }
    }

    /// A usage problem that is not a configuration word problem (obsolete or
    /// Windows-only options), as the message to print.
    pub fn usage_problem(&self) -> Option<String> {
        if let Some(xml) = &self.xml_config {
            return Some(format!(
                "`-c {}`: the XML configuration of coLinux 0.6 is obsolete; write the settings \
                 as words (kernel=vmlinux cobd0=root.fs mem=256 eth0=slirp root=/dev/cobd0 ...) \
                 in a file and run `colinux-daemon @file.conf`",
                xml.display()
            ));
        }
        if self.install_service.is_some() || self.remove_service.is_some() || self.remove_driver {
            return Some(
                "--install-service, --remove-service and --remove-driver are Windows-only; \
                 on Linux run colinux-daemon from a systemd unit instead"
                    .to_string(),
            );
        }
        None
    }

    /// Parses the configuration words (and `@file`s) relative to the current
    /// directory.
    pub fn load_config(&self) -> Result<Config, ConfError> {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        colinux_conf::parse_args(&self.words, &cwd)
    }
}

/// Lists the files the configuration names that are not there (kernel,
/// initrd, cobd backing files), one message each. (`execN` programs and
/// `cofsN` directories are checked by [`crate::unhonoured::host_errors`].)
pub fn missing_files(config: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let mut need = |what: String, p: &Path| match std::fs::metadata(p) {
        Ok(m) if m.is_dir() => out.push(format!("{what}: `{}` is a directory", p.display())),
        Ok(_) => {}
        Err(e) => out.push(format!("{what}: `{}`: {e}", p.display())),
    };
    need("kernel".into(), &config.kernel.resolve());
    if let Some(i) = &config.initrd {
        need("initrd".into(), &i.resolve());
    }
    for d in &config.block_devices {
        need(format!("cobd{}", d.index), &d.path.resolve());
    }
    out
}

/// Writes `text` to stdout; a closed pipe (`colinux-daemon --dump-config |
/// head`) is not an error worth a panic, so it is ignored.
pub fn write_stdout(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Sets up logging on stderr: `RUST_LOG` if set, else the `-v` level.
///
/// `RUST_LOG` takes `level` and `target=level` directives, comma-separated
/// (tracing-subscriber's `Targets`): the daemon leaves out the regex-based
/// `EnvFilter`, whose span and field filters nobody needs here and whose
/// regex engine was ~10 % of the binary's text. A value it cannot read is
/// named in a warning, and the `-v` level applies.
pub fn init_logging(verbosity: u8) {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::prelude::*;
    let level = match verbosity {
        0 => "error",
        1 => "warn",
        2 => "info",
        3 => "debug",
        _ => "trace",
    };
    let default: Targets = level.parse().expect("a plain level is a valid directive");
    let (filter, bad) = log_filter(std::env::var("RUST_LOG").ok().as_deref(), default);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && !crate::console_server::plain_logs())
        .with_target(false)
        .without_time();
    let _ = tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .try_init();
    if let Some(why) = bad {
        tracing::warn!("{why}");
    }
}

/// The log filter from `RUST_LOG`'s value, or `default` with a warning's text
/// when the value is not a list of `level`/`target=level` directives.
fn log_filter(
    rust_log: Option<&str>,
    default: tracing_subscriber::filter::Targets,
) -> (tracing_subscriber::filter::Targets, Option<String>) {
    match rust_log.map(str::trim).filter(|v| !v.is_empty()) {
        None => (default, None),
        Some(v) => match v.parse() {
            Ok(t) => (t, None),
            Err(e) => (
                default,
                Some(format!(
                    "RUST_LOG={v:?} ignored ({e}): it takes `level` or `target=level` directives, comma-separated"
                )),
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_log_takes_targets_and_names_what_it_cannot_read() {
        use tracing::Level;
        let default: tracing_subscriber::filter::Targets = "error".parse().unwrap();
        let (f, bad) = log_filter(Some("colinux_net=debug,info"), default.clone());
        assert!(bad.is_none());
        assert!(f.would_enable("colinux_net::slirp", &Level::DEBUG));
        assert!(f.would_enable("colinux_devices", &Level::INFO));
        assert!(!f.would_enable("colinux_devices", &Level::DEBUG));
        let (f, bad) = log_filter(Some("[span{x=1}]=debug"), default.clone());
        assert!(bad.unwrap().contains("[span{x=1}]"));
        assert!(
            !f.would_enable("colinux_devices", &Level::WARN),
            "the -v level applies"
        );
        let (f, bad) = log_filter(None, default);
        assert!(bad.is_none() && f.would_enable("x", &Level::ERROR));
    }

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_with_passthrough(
            std::iter::once("colinux-daemon").chain(args.iter().copied()),
        )
        .unwrap()
    }

    #[test]
    fn classic_options_and_words() {
        let c = parse(&[
            "-d",
            "-k",
            "-p",
            "/run/co.pid",
            "-t",
            "nt",
            "-v",
            "3",
            "@a.conf",
            "root=/dev/cobd0",
            "ro",
        ]);
        let o = c.run_options();
        assert!(o.detach && o.suppress_kernel_messages);
        assert_eq!(o.pidfile.as_deref(), Some(Path::new("/run/co.pid")));
        assert_eq!(o.console_type.as_deref(), Some("nt"));
        assert_eq!(o.verbosity, 3);
        assert_eq!(o.slirp_bind, Some(std::net::Ipv4Addr::LOCALHOST));
        let b = parse(&["--slirp-bind", "0.0.0.0"]).run_options();
        assert_eq!(b.slirp_bind, Some(std::net::Ipv4Addr::UNSPECIFIED));
        assert_eq!(o.on_reboot, OnReboot::Restart);
        let e = parse(&["--on-reboot=exit"]).run_options();
        assert_eq!(e.on_reboot, OnReboot::Exit);
        assert!(Cli::try_parse_with_passthrough(["colinux-daemon", "--on-reboot=halt"]).is_err());
        assert!(
            Cli::try_parse_with_passthrough(["colinux-daemon", "--slirp-bind", "lan"]).is_err()
        );
        assert_eq!(c.words, vec!["@a.conf", "root=/dev/cobd0", "ro"]);
    }

    #[test]
    fn options_after_words_and_double_dash_passthrough() {
        let c = parse(&["@a.conf", "-d", "ro", "--", "single", "-x", "--dump-config"]);
        assert!(c.detach);
        assert!(!c.dump_config);
        assert_eq!(
            c.words,
            vec!["@a.conf", "ro", "--", "single", "-x", "--dump-config"]
        );
    }

    #[test]
    fn verbosity_range_is_checked() {
        assert!(Cli::try_parse_with_passthrough(["colinux-daemon", "-v", "9"]).is_err());
        assert_eq!(parse(&[]).run_options().verbosity, DEFAULT_VERBOSITY);
    }

    #[test]
    fn xml_option_is_a_usage_problem() {
        let msg = parse(&["-c", "default.colinux.xml"])
            .usage_problem()
            .unwrap();
        assert!(
            msg.contains("obsolete") && msg.contains("@file.conf"),
            "{msg}"
        );
    }

    #[test]
    fn missing_files_are_listed() {
        let c = colinux_conf::parse_str(
            "kernel=/nonexistent/vmlinux cobd0=/nonexistent/root.fs cofs0=/",
            Path::new("t.conf"),
            Path::new("/"),
        )
        .unwrap();
        let m = missing_files(&c);
        assert_eq!(m.len(), 2, "{m:?}");
        assert!(m[0].starts_with("kernel: `/nonexistent/vmlinux`"), "{m:?}");
        assert!(m[1].starts_with("cobd0:"), "{m:?}");
    }
}
