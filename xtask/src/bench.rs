//! `cargo xtask bench boot|cobd|net`: the same workload under qemu and colinux
//! in the same host VM, with ratios.

use anyhow::Result;
use clap::Subcommand;
use colinux_harness::runner::{self, Monitor, RunContext, Verdict};
use colinux_harness::{paths, scenario};

/// What to measure.
#[derive(Subcommand)]
pub enum BenchCmd {
    /// Boot-to-init time (start of the monitor to the agent's READY line, host VM clock).
    Boot {
        /// Boots per monitor.
        #[arg(long, default_value_t = 3)]
        runs: u32,
    },
    /// cobd sequential MiB/s and 4 KiB IOPS (guest O_DIRECT), see bench_io.rs.
    Cobd {
        /// Rounds (one boot per monitor each).
        #[arg(long, default_value_t = 2)]
        rounds: u32,
    },
    /// TCP throughput both ways over TAP and slirp (busybox nc), see bench_io.rs.
    Net {
        /// Rounds (one boot per monitor each).
        #[arg(long, default_value_t = 2)]
        rounds: u32,
    },
}

fn stats(v: &[f64]) -> Option<(f64, f64, f64)> {
    if v.is_empty() {
        return None;
    }
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let min = v.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = v.iter().cloned().fold(0.0, f64::max);
    Some((mean, min, max))
}

/// Run a benchmark.
pub fn bench(what: BenchCmd) -> Result<i32> {
    let runs = match what {
        BenchCmd::Boot { runs } => runs.max(1),
        BenchCmd::Cobd { rounds } => {
            return crate::bench_io::run(crate::bench_io::IoBench::Cobd, rounds)
        }
        BenchCmd::Net { rounds } => {
            return crate::bench_io::run(crate::bench_io::IoBench::Net, rounds)
        }
    };
    let (imgs, choice) = crate::ci_boot::prepare()?;
    let caps = crate::ci_boot::capabilities(&imgs);
    let mut s = scenario::load(&paths::scenarios_dir().join("boot.toml"))?;
    s.name = "bench-boot".into();
    s.boots = runs;
    s.timeout_secs += 90 * u64::from(runs);
    let ctx = RunContext {
        images: &imgs,
        accel: choice.accel,
        capabilities: caps,
        verbose: false,
    };
    let mut means = Vec::new();
    println!("bench boot: {runs} boots per monitor, boot-to-init in seconds (host VM clock)");
    for m in [Monitor::Qemu, Monitor::Colinux] {
        let o = runner::run_scenario(&s, m, &ctx);
        let times: Vec<f64> = o.boots.iter().filter_map(|b| b.boot_to_init()).collect();
        match (o.result, stats(&times)) {
            (Verdict::Unsupported, _) => {
                println!("{:<8} unsupported ({})", m.name(), o.reasons.join("; "));
                means.push(None);
            }
            (_, Some((mean, min, max))) => {
                println!(
                    "{:<8} mean {mean:.2}  min {min:.2}  max {max:.2}  ({} boots, {:?}, log {})",
                    m.name(),
                    times.len(),
                    o.result,
                    o.log.display()
                );
                means.push(Some(mean));
            }
            (_, None) => {
                println!(
                    "{:<8} no READY marks ({:?}; log {})",
                    m.name(),
                    o.result,
                    o.log.display()
                );
                means.push(None);
            }
        }
    }
    match (means[0], means[1]) {
        (Some(q), Some(c)) => println!("ratio colinux/qemu: {:.2}", c / q),
        _ => println!("ratio colinux/qemu: n/a"),
    }
    Ok(0)
}
