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
    about = "Attach to a running coLinux daemon's console: its serial log or its screen \
             (Ctrl-] then d detaches)",
    after_help = "Keys after Ctrl-]: d detach, s switch between the screen and the serial log, \
                  1..6 Alt-F1..F6 (tty1..tty6), Ctrl-] a Ctrl-] for the guest.\n\
                  On the screen, typed keys go to the guest's keyboard; on the serial log, \
                  to its ttyS0.\n\
                  Sockets live in $XDG_RUNTIME_DIR/colinux/ (or /run/colinux/).\n\
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
    #[arg(long, value_name = "SECONDS", conflicts_with = "screen")]
    detach_after: Option<f64>,
    /// Print the guest's screen (its current virtual terminal) as text,
    /// one line per row, and exit.
    #[arg(long, requires = "attach", conflicts_with = "vt")]
    screen: bool,
    /// Show the guest's screen first (the classic console window) instead of
    /// its serial log; typed keys go to its keyboard.
    #[arg(long, requires = "attach")]
    vt: bool,
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
    if args.screen {
        return match client::snapshot(&socket) {
            Ok(Some(s)) => {
                print!("{}", console_server::screen::to_text(&s));
                ExitCode::SUCCESS
            }
            Ok(None) => {
                eprintln!("colinux-console: the daemon `{target}` has no screen to show");
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!(
                    "colinux-console: reading the screen of `{target}` ({}): {e}",
                    socket.display()
                );
                ExitCode::FAILURE
            }
        };
    }
    let view = if args.vt {
        client::View::Screen
    } else {
        client::View::Serial
    };
    match client::attach(&socket, &target, after, view) {
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
