//! `colinux-console`: the text console of a running colinux-daemon (the
//! classic `colinux-console-nt -a`). See `colinux_daemon::console_server::client`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use colinux_daemon::console_server::{self, client};

/// Parsed `colinux-console` command line.
#[derive(Debug, Parser)]
#[command(
    name = "colinux-console",
    version,
    about = "Attach to a running coLinux daemon's console (Ctrl-] then d detaches)",
    after_help = "Sockets live in $XDG_RUNTIME_DIR/colinux/ (or /run/colinux/).\n\
                  Exit status: 0 detached or the daemon ended, 1 no such daemon or an error, 2 usage."
)]
struct Args {
    /// The daemon to attach to: its pid or its --name.
    #[arg(
        short = 'a',
        long = "attach",
        value_name = "PID|NAME",
        required_unless_present = "list"
    )]
    attach: Option<String>,
    /// List the running daemons (pid, name, uptime, consoles, window, conf)
    /// and remove the files of dead ones.
    #[arg(long, conflicts_with = "attach")]
    list: bool,
    /// Detach this many seconds after attaching (for scripts).
    #[arg(long, value_name = "SECONDS")]
    detach_after: Option<f64>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let dir = console_server::runtime_dir();
    if args.list {
        let entries = client::list(&dir);
        print!(
            "{}",
            client::format_list(&entries, console_server::now_secs())
        );
        return ExitCode::SUCCESS;
    }
    let target = args.attach.unwrap_or_default();
    let socket = match client::resolve(&dir, &target) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("colinux-console: {e}");
            return ExitCode::FAILURE;
        }
    };
    let after = args
        .detach_after
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64);
    match client::attach(&socket, &target, after) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "colinux-console: attaching to `{target}` ({}): {e}",
                socket.display()
            );
            ExitCode::FAILURE
        }
    }
}
