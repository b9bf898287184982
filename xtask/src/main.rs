//! Project automation: `cargo xtask images | run | ci-boot | soak | bench | ci`.

#![forbid(unsafe_code)]

mod bench;
mod bench_host;
mod bench_report;
mod ci;
mod ci_boot;
mod deps;
mod fuzz;
mod run;
mod soak;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use colinux_harness::runner::Monitor;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "xtask", about = "coLinux-rs automation")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// Which inner monitor boots the guest.
#[derive(Clone, Copy, ValueEnum, Debug)]
enum MonitorArg {
    Qemu,
    Colinux,
}

impl From<MonitorArg> for Monitor {
    fn from(m: MonitorArg) -> Self {
        match m {
            MonitorArg::Qemu => Monitor::Qemu,
            MonitorArg::Colinux => Monitor::Colinux,
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Build (or reuse) kernel, guest initramfs, rootfs.ext4 and host initramfs.
    Images,
    /// Run the boot scenarios in nested VMs and report.
    CiBoot {
        /// Run only these scenarios (comma-separated names).
        #[arg(long)]
        only: Option<String>,
        /// Inner monitor (default: qemu).
        #[arg(long, value_enum, default_value = "qemu")]
        monitor: MonitorArg,
        /// Also write the JSON report here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Print every console line while running.
        #[arg(long, short)]
        verbose: bool,
        /// Scenarios run at the same time, each in its own host VM.
        #[arg(long, short, default_value_t = 2)]
        jobs: usize,
        /// Count `unsupported` scenarios as failures (what `cargo xtask ci` does).
        #[arg(long)]
        strict: bool,
    },
    /// Boot a guest (default vm-images/default.conf) with its console on this terminal.
    Run {
        /// A colinux.conf (paths inside the host VM; cobd files on this machine are copied in).
        conf: Option<PathBuf>,
        /// Force the inner monitor.
        #[arg(long, value_enum)]
        monitor: Option<MonitorArg>,
    },
    /// Compare colinux with qemu on the same workload in the same host VM.
    Bench {
        #[command(subcommand)]
        what: bench::BenchCmd,
    },
    /// Everything CI runs: fmt, clippy, nextest, images, ci-boot with qemu and with colinux.
    Ci,
    /// Install what the project needs (Debian packages, cargo-nextest) if missing.
    Deps,
    /// Run the whole ci-boot N times in a row; a table of pass/fail/retried per scenario.
    Soak {
        /// Consecutive full runs.
        #[arg(long, default_value_t = 20)]
        runs: u32,
        /// Inner monitor(s) (default: both, qemu then colinux in each run).
        #[arg(long, value_enum)]
        monitor: Option<MonitorArg>,
        /// Only these scenarios (comma-separated names).
        #[arg(long)]
        only: Option<String>,
        /// Scenarios run at the same time, each in its own host VM.
        #[arg(long, short, default_value_t = 2)]
        jobs: usize,
        /// Print every console line while running.
        #[arg(long, short)]
        verbose: bool,
    },
    /// Coverage-guided fuzzing of virtio-blk, virtio-net and PCI config space
    /// (cargo fuzz, libFuzzer, stable toolchain); non-zero on a crash.
    Fuzz {
        /// Minutes per target.
        #[arg(long, default_value_t = 2.0)]
        minutes: f64,
        /// Executions per target instead of a time (e.g. 10000000).
        #[arg(long, conflicts_with = "minutes")]
        runs: Option<u64>,
        /// Only this target (virtio_blk, virtio_net, pci_config).
        #[arg(long)]
        target: Option<String>,
    },
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    colinux_harness::guard::install_signal_handlers();
    let cli = Cli::parse();
    // Every command but `deps` itself needs the packages; `ci` also nextest.
    let needs_nextest = matches!(cli.cmd, Cmd::Ci | Cmd::Deps);
    if let Err(e) = deps::ensure(needs_nextest) {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(2);
    }
    let r: Result<i32> = match cli.cmd {
        Cmd::Images => ci_boot::images().map(|_| 0),
        Cmd::CiBoot {
            only,
            monitor,
            json,
            verbose,
            jobs,
            strict,
        } => ci_boot::ci_boot(
            only.as_deref(),
            monitor.into(),
            json.as_deref(),
            verbose,
            jobs,
            strict,
        ),
        Cmd::Run { conf, monitor } => run::run(conf.as_deref(), monitor.map(Into::into)),
        Cmd::Bench { what } => bench::bench(what),
        Cmd::Ci => ci::ci(),
        Cmd::Deps => Ok(0),
        Cmd::Soak {
            runs,
            monitor,
            only,
            jobs,
            verbose,
        } => {
            let monitors = match monitor {
                Some(m) => vec![m.into()],
                None => vec![Monitor::Qemu, Monitor::Colinux],
            };
            soak::soak(runs, &monitors, only.as_deref(), jobs, verbose)
        }
        Cmd::Fuzz {
            minutes,
            runs,
            target,
        } => fuzz::fuzz(minutes, runs, target.as_deref()),
    };
    match r {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            std::process::exit(2);
        }
    }
}
