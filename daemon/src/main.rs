//! `colinux-daemon`: reads the classic configuration words and `@file`s, then
//! boots the VM (or, with an inspection option, prints what it parsed).

use std::process::ExitCode;

use colinux_conf::Config;
use colinux_daemon::cli::{self, Cli, RunOptions};
use colinux_daemon::unhonoured;

/// Exit status for configuration and usage errors.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse_with_passthrough(std::env::args_os());
    let options = cli.run_options();
    cli::init_logging(options.verbosity);

    if cli.capabilities {
        return emit(format!(
            "{}\n",
            serde_json::json!(colinux_daemon::CAPABILITIES)
        ));
    }
    if let Some(problem) = cli.usage_problem() {
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
    boot(&config, &options)
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

/// Runs the VM and maps the outcome to the exit status.
fn boot(config: &Config, options: &RunOptions) -> ExitCode {
    let result = colinux_daemon::vmm::run(config, options).map(|_| ());
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("colinux-daemon: {e:#}");
            ExitCode::FAILURE
        }
    }
}
