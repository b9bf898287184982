//! `colinux-daemon`: reads the classic configuration words and `@file`s, then
//! boots the VM (or, with an inspection option, prints what it parsed).

use std::process::ExitCode;

use colinux_conf::Config;
use colinux_daemon::cli::{self, Cli, RunOptions};
use colinux_daemon::console_server::{self, daemonize, protocol::Info, ConsoleServer};
use colinux_daemon::unhonoured;
use std::sync::Arc;

/// Exit status for configuration and usage errors.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    // Before any thread exists: std reads it at the first spawn.
    colinux_daemon::thread_stack::set_default();
    colinux_daemon::malloc_policy::apply();
    let cli = Cli::parse_with_passthrough(std::env::args_os());
    let options = cli.run_options();
    if cli.detach && !cli.foreground {
        console_server::set_plain_logs();
    }
    cli::init_logging(options.verbosity);

    if cli.capabilities {
        return emit(format!(
            "{}\n",
            serde_json::json!(colinux_daemon::CAPABILITIES)
        ));
    }
    if cli.opened_libraries {
        return emit(
            colinux_net::OPENED_LIBRARIES
                .iter()
                .map(|l| format!("{l}\n"))
                .collect(),
        );
    }
    if let Some(problem) = cli.usage_problem() {
        eprintln!("colinux-daemon: {problem}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let problem = console_server::console_type_problem(cli.console_type.as_deref()).or_else(|| {
        cli.name
            .as_deref()
            .and_then(|n| console_server::check_name(n).err())
    });
    if let Some(problem) = problem {
        eprintln!("colinux-daemon: {problem}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let config = match cli.load_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("colinux-daemon: configuration error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if cli.dump_config {
        return emit(format!("{}\n", config.to_json_pretty()));
    }
    if cli.dump_conf {
        return emit(config.to_conf_text());
    }
    let cwd = std::env::current_dir().unwrap_or_else(|_| ".".into());
    let host_errors = unhonoured::host_errors(&config, &cli.words, &cwd);
    for e in &host_errors {
        eprintln!("colinux-daemon: configuration error: {e}");
    }
    let ignored = unhonoured::list(&config);
    if cli.check {
        let missing = cli::missing_files(&config);
        for m in &missing {
            eprintln!("colinux-daemon: missing {m}");
        }
        return if missing.is_empty() && host_errors.is_empty() {
            let mut report = "configuration OK\n".to_string();
            for u in &ignored {
                report.push_str(&format!("ignored: {u}\n"));
            }
            emit(report)
        } else {
            ExitCode::from(EXIT_CONFIG)
        };
    }
    if !host_errors.is_empty() {
        return ExitCode::from(EXIT_CONFIG);
    }
    for u in &ignored {
        tracing::warn!("{u}");
    }
    boot(&cli, &config, options)
}

/// Prints an inspection result on stdout and gives the exit status.
fn emit(text: String) -> ExitCode {
    match cli::write_stdout(&text) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("colinux-daemon: cannot write to stdout: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the VM (in the background with `-d`) with its console server, and
/// maps the outcome to the exit status.
fn boot(cli: &Cli, config: &Config, mut options: RunOptions) -> ExitCode {
    let background = cli.detach && !cli.foreground;
    // Only a daemon in the foreground without --foreground reads stdin.
    options.detach = cli.detach || cli.foreground;
    let dir = console_server::ensure_runtime_dir();
    if background {
        let dir = match &dir {
            Ok(d) => d,
            Err(e) => {
                eprintln!("colinux-daemon: -d: the runtime directory: {e}");
                return ExitCode::FAILURE;
            }
        };
        match daemonize::fork_background(dir, cli.log_file.as_deref()) {
            Ok(daemonize::Forked::Parent { pid, ready, log }) => {
                let nt = cli.console_type.as_deref() == Some("nt");
                return ExitCode::from(daemonize::wait_ready(pid, ready, &log, nt));
            }
            Ok(daemonize::Forked::Child) => {}
            Err(e) => {
                eprintln!("colinux-daemon: -d: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let ident = Info {
        pid: std::process::id(),
        name: cli.name.clone(),
        conf: conf_path(cli),
        started: console_server::now_secs(),
        ..Info::default()
    };
    let server = match dir.and_then(|d| ConsoleServer::start(&d, ident)) {
        Ok(s) => {
            tracing::info!(socket = %s.socket_path().display(), "console server");
            Some(Arc::new(s))
        }
        Err(e) if background || cli.foreground || cli.name.is_some() => {
            eprintln!("colinux-daemon: the console socket: {e}");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            tracing::warn!("no console socket (colinux-console cannot attach): {e}");
            None
        }
    };
    if let Some(s) = &server {
        console_server::install(s.clone());
    }
    let result = colinux_daemon::vmm::run(config, &options).map(|_| ());
    console_server::uninstall();
    drop(server);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("colinux-daemon: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The configuration file (the first `@file` word), as an absolute path.
fn conf_path(cli: &Cli) -> Option<String> {
    let word = cli
        .words
        .iter()
        .find_map(|w| w.to_str()?.strip_prefix('@'))?;
    let p = std::path::Path::new(word);
    let abs = std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    Some(abs.display().to_string())
}
