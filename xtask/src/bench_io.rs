//! `cargo xtask bench cobd` and `cargo xtask bench net`: one host VM runs the
//! same guest workload under qemu and colinux-daemon alternately (the host
//! scripts vm-images/host/scenarios/bench-{cobd,net}.sh do the runs; the
//! scenarios are harness/benches/bench-*.toml, outside ci-boot: benchmarks are
//! never tests). The host VM prints
//! `COLINUX-BENCH monitor=M round=R key=value...` lines; this module averages
//! them per monitor and prints a table with colinux/qemu ratios, plus JSON.

use anyhow::{Context, Result};
use colinux_harness::runner::{self, Monitor, RunContext, Verdict};
use colinux_harness::{paths, scenario};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Which I/O benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoBench {
    /// cobd throughput and IOPS.
    Cobd,
    /// TCP throughput over TAP and slirp.
    Net,
}

impl IoBench {
    fn name(self) -> &'static str {
        match self {
            IoBench::Cobd => "cobd",
            IoBench::Net => "net",
        }
    }
}

/// One `COLINUX-BENCH` line: its monitor and its key=value fields.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchLine {
    /// qemu | colinux.
    pub monitor: String,
    /// Fields after `monitor=`, including `round`.
    pub fields: BTreeMap<String, String>,
    /// Words that are not key=value (e.g. "unsupported ...").
    pub words: Vec<String>,
}

/// Parse a console line holding `COLINUX-BENCH monitor=M ...`.
pub fn parse_line(line: &str) -> Option<BenchLine> {
    let at = line.find("COLINUX-BENCH ")?;
    let mut monitor = None;
    let mut fields = BTreeMap::new();
    let mut words = Vec::new();
    for w in line[at + "COLINUX-BENCH ".len()..].split_whitespace() {
        match w.split_once('=') {
            Some(("monitor", m)) => monitor = Some(m.to_string()),
            Some((k, v)) if monitor.is_some() => {
                fields.insert(k.to_string(), v.to_string());
            }
            _ => words.push(w.to_string()),
        }
    }
    Some(BenchLine {
        monitor: monitor?,
        fields,
        words,
    })
}

/// A measured value for a table row: (row label, unit, value).
fn sample(what: IoBench, l: &BenchLine) -> Option<(String, &'static str, f64)> {
    let num = |k: &str| l.fields.get(k).and_then(|v| v.parse::<f64>().ok());
    match what {
        IoBench::Cobd => {
            let mode = l.fields.get("mode")?;
            if mode.starts_with("seq-") {
                Some((format!("{mode} 1M"), "MiB/s", num("mibps")?))
            } else {
                Some((format!("{mode} 4k QD1"), "IOPS", num("iops")?))
            }
        }
        IoBench::Net => {
            let test = l.fields.get("test")?;
            let side = l.fields.get("side")?;
            let (bytes, secs) = (num("bytes")?, num("secs")?);
            (secs > 0.0).then(|| {
                (
                    format!("{test} ({side} side)"),
                    "MiB/s",
                    bytes / 1_048_576.0 / secs,
                )
            })
        }
    }
}

/// Per row: unit and the samples of each monitor.
type Rows = BTreeMap<String, (&'static str, BTreeMap<String, Vec<f64>>)>;

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Collect the rows from the console lines; also the "unsupported" reasons.
pub fn collect(what: IoBench, lines: &[BenchLine]) -> (Rows, BTreeMap<String, String>) {
    let mut rows: Rows = BTreeMap::new();
    let mut unsupported = BTreeMap::new();
    for l in lines {
        if l.words.first().is_some_and(|w| w == "unsupported") {
            unsupported.insert(l.monitor.clone(), l.words[1..].join(" "));
            continue;
        }
        if let Some((row, unit, v)) = sample(what, l) {
            rows.entry(row)
                .or_insert((unit, BTreeMap::new()))
                .1
                .entry(l.monitor.clone())
                .or_default()
                .push(v);
        }
    }
    (rows, unsupported)
}

/// The side-by-side table with ratios.
pub fn table(rows: &Rows, unsupported: &BTreeMap<String, String>) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<26} {:>6} {:>12} {:>12} {:>13}",
        "test", "unit", "qemu", "colinux", "colinux/qemu"
    );
    let cell = |m: &BTreeMap<String, Vec<f64>>, mon: &str| match (m.get(mon), unsupported.get(mon))
    {
        (Some(v), _) => mean(v).map_or("-".into(), |x| format!("{x:.1}")),
        (None, Some(_)) => "unsupported".into(),
        (None, None) => "failed".into(),
    };
    for (row, (unit, m)) in rows {
        let ratio = match (
            m.get("qemu").and_then(|v| mean(v)),
            m.get("colinux").and_then(|v| mean(v)),
        ) {
            (Some(q), Some(c)) if q > 0.0 => format!("{:.2}", c / q),
            _ => "n/a".into(),
        };
        let _ = writeln!(
            s,
            "{row:<26} {unit:>6} {:>12} {:>12} {ratio:>13}",
            cell(m, "qemu"),
            cell(m, "colinux")
        );
    }
    for (m, why) in unsupported {
        let _ = writeln!(s, "{m}: unsupported: {why}");
    }
    s
}

/// The JSON report.
pub fn json(rows: &Rows, unsupported: &BTreeMap<String, String>) -> serde_json::Value {
    let rows: Vec<serde_json::Value> = rows
        .iter()
        .map(|(row, (unit, m))| {
            let q = m.get("qemu").and_then(|v| mean(v));
            let c = m.get("colinux").and_then(|v| mean(v));
            serde_json::json!({
                "test": row,
                "unit": unit,
                "qemu": { "mean": q, "samples": m.get("qemu") },
                "colinux": { "mean": c, "samples": m.get("colinux") },
                "ratio_colinux_qemu": match (q, c) { (Some(q), Some(c)) if q > 0.0 => Some(c / q), _ => None },
            })
        })
        .collect();
    serde_json::json!({ "rows": rows, "unsupported": unsupported })
}

/// Run `bench cobd|net` with `rounds` boots per monitor; prints the table.
///
/// Each round is its own host VM running qemu then colinux, so the two
/// monitors of a round share a host VM, and a host VM that breaks down (see
/// colinux_harness::infra) costs one round, not the whole benchmark.
pub fn run(what: IoBench, rounds: u32) -> Result<i32> {
    let (imgs, choice) = crate::ci_boot::prepare()?;
    let path = paths::workspace_root()
        .join("harness/benches")
        .join(format!("bench-{}.toml", what.name()));
    let base = scenario::load(&path)?;
    let rounds = rounds.max(1);
    let ctx = RunContext {
        images: &imgs,
        accel: choice.accel,
        capabilities: crate::ci_boot::capabilities(&imgs),
        verbose: std::env::var_os("BENCH_VERBOSE").is_some(),
    };
    eprintln!(
        "bench {}: {rounds} round(s), each a host VM running qemu then colinux ...",
        what.name()
    );
    let mut lines: Vec<BenchLine> = Vec::new();
    let mut logs = Vec::new();
    let mut failures = Vec::new();
    for r in 1..=rounds {
        let mut s = base.clone();
        s.name = format!("{}-r{r}", base.name);
        s.conf = s.conf.replace("colinux.rounds=2", "colinux.rounds=1");
        s.timeout_secs = s.timeout_secs / 2 + 300;
        // The host VM runs both monitors; the runner's monitor only names the log dir.
        let o = runner::run_scenario(&s, Monitor::Qemu, &ctx);
        let dir = o.log.parent().context("log without a directory")?;
        let console = std::fs::read_to_string(dir.join("host-console.log")).unwrap_or_default();
        lines.extend(console.lines().filter_map(parse_line).map(|mut l| {
            l.fields.insert("round".into(), r.to_string());
            l
        }));
        eprintln!(
            "bench {}: round {r} {:?} ({})",
            what.name(),
            o.result,
            o.log.display()
        );
        if o.result != Verdict::Pass {
            failures.push(format!(
                "round {r} {:?}: {}",
                o.result,
                o.reasons.join("; ")
            ));
        }
        logs.push(o.log.display().to_string());
    }
    let (rows, unsupported) = collect(what, &lines);
    println!(
        "bench {}: {rounds} round(s) per monitor, each round one host VM (means; figures are indicative on a loaded machine)",
        what.name()
    );
    print!("{}", table(&rows, &unsupported));
    for f in &failures {
        println!("{f}");
    }
    let out = paths::ci_boot_dir().join(format!("bench-{}.json", what.name()));
    let mut j = json(&rows, &unsupported);
    j["logs"] = serde_json::json!(logs);
    j["rounds"] = serde_json::json!(rounds);
    j["failed_rounds"] = serde_json::json!(failures);
    std::fs::write(&out, serde_json::to_string_pretty(&j)? + "\n")?;
    println!("logs {}\njson {}", logs.join(" "), out.display());
    Ok(if rows.is_empty() { 1 } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<BenchLine> {
        text.lines().filter_map(parse_line).collect()
    }

    #[test]
    fn cobd_rows_means_and_ratio() {
        let l = lines(
            "x COLINUX-BENCH monitor=qemu round=1 mode=seq-read bytes=1 ops=1 secs=1 mibps=100.0 iops=100\r\n\
             COLINUX-BENCH monitor=qemu round=2 mode=seq-read bytes=1 ops=1 secs=1 mibps=300.0 iops=300\n\
             COLINUX-BENCH monitor=colinux round=1 mode=seq-read bytes=1 ops=1 secs=1 mibps=100.0 iops=1\n\
             COLINUX-BENCH monitor=colinux round=1 mode=rand-read bytes=1 ops=1 secs=1 mibps=1 iops=500\n\
             COLINUX-BENCH mode=seq-read mibps=5\n",
        );
        let (rows, un) = collect(IoBench::Cobd, &l);
        assert!(un.is_empty());
        let t = table(&rows, &un);
        assert!(t.contains("seq-read 1M"), "{t}");
        assert!(t.contains("200.0"), "{t}");
        assert!(t.contains("0.50"), "{t}");
        assert!(
            t.lines()
                .any(|r| r.starts_with("rand-read 4k QD1") && r.contains("failed")),
            "{t}"
        );
    }

    #[test]
    fn bench_scenarios_load_and_have_their_scripts() {
        for what in [IoBench::Cobd, IoBench::Net] {
            let name = format!("bench-{}", what.name());
            let root = paths::workspace_root();
            let s = scenario::load(&root.join(format!("harness/benches/{name}.toml"))).unwrap();
            assert_eq!(s.boots, 0, "{name}: the host script runs the monitors");
            assert!(s.host_script);
            assert!(
                s.conf.contains("colinux.rounds=2"),
                "{name}: --rounds edits it"
            );
            assert!(root
                .join(format!("vm-images/host/scenarios/{name}.sh"))
                .exists());
            assert!(root
                .join(format!("vm-images/guest/checks/{name}.sh"))
                .exists());
        }
    }

    #[test]
    fn net_rows_and_unsupported() {
        let l = lines(
            "COLINUX-BENCH monitor=colinux unsupported lacks net-slirp\n\
             COLINUX-BENCH monitor=qemu round=1 test=tap-g2h side=recv bytes=104857600 secs=2.00\n\
             COLINUX-BENCH monitor=qemu round=1 test=tap-g2h side=send error=x\n",
        );
        let (rows, un) = collect(IoBench::Net, &l);
        assert_eq!(un["colinux"], "lacks net-slirp");
        let t = table(&rows, &un);
        assert!(t.contains("tap-g2h (recv side)"), "{t}");
        assert!(t.contains("50.0"), "{t}");
        assert!(t.contains("unsupported"), "{t}");
        assert_eq!(rows.len(), 1);
        let j = json(&rows, &un);
        assert_eq!(j["rows"][0]["qemu"]["mean"], 50.0);
        assert!(j["rows"][0]["ratio_colinux_qemu"].is_null());
    }
}
