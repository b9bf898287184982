//! `cargo xtask bench boot|cobd|cofs|net|all`: the same workload under qemu and colinux
//! in the same host VM (one host VM per round), with ratios; see bench_host.rs.

use anyhow::Result;
use clap::Subcommand;

/// What to measure.
#[derive(Subcommand)]
pub enum BenchCmd {
    /// Boot-to-init time (start of the monitor to the agent's READY line, host
    /// VM clock) and the monitor's resident memory at that moment.
    Boot {
        /// Rounds, as every other benchmark says (one host VM per round, one
        /// boot per monitor in it); `--runs` is its older name.
        #[arg(long, alias = "runs", default_value_t = 3)]
        rounds: u32,
    },
    /// cobd sequential MiB/s and 4 KiB IOPS (guest O_DIRECT), see bench_host.rs.
    Cobd {
        /// Rounds (one boot per monitor each).
        #[arg(long, default_value_t = 2)]
        rounds: u32,
    },
    /// cofs (virtio-fs) sequential MiB/s and create/stat/unlink per second,
    /// qemu+virtiofsd vs colinux, see bench_host.rs.
    Cofs {
        /// Rounds (one boot per monitor each).
        #[arg(long, default_value_t = 2)]
        rounds: u32,
    },
    /// Every benchmark, then one report of all figures with colinux/qemu
    /// ratios against the goals: Markdown, target/bench/report.json and a
    /// chart, target/bench/report.svg.
    All {
        /// Rounds of each benchmark (one host VM per round, both monitors in it).
        #[arg(long, default_value_t = 2)]
        rounds: u32,
    },
    /// TCP throughput both ways over TAP and slirp (busybox nc), see bench_host.rs.
    Net {
        /// Rounds (one boot per monitor each).
        #[arg(long, default_value_t = 2)]
        rounds: u32,
    },
}

/// Run a benchmark.
pub fn bench(what: BenchCmd) -> Result<i32> {
    use crate::bench_host::{run, HostBench};
    match what {
        BenchCmd::Boot { rounds } => run(HostBench::Boot, rounds),
        BenchCmd::Cobd { rounds } => run(HostBench::Cobd, rounds),
        BenchCmd::Cofs { rounds } => run(HostBench::Cofs, rounds),
        BenchCmd::Net { rounds } => run(HostBench::Net, rounds),
        BenchCmd::All { rounds } => crate::bench_host::all(rounds),
    }
}
