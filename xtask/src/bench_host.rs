//! `cargo xtask bench boot|cobd|cofs|net`: a host VM per round runs the same
//! guest workload under qemu and colinux-daemon (the host scripts
//! vm-images/host/scenarios/bench-{boot,cobd,cofs,net}.sh do the runs; the
//! scenarios are harness/benches/bench-*.toml, outside ci-boot: benchmarks are
//! never tests). The host VM prints
//! `COLINUX-BENCH monitor=M round=R key=value...` lines; this module averages
//! them per monitor and prints a table with colinux/qemu ratios, plus JSON.

use crate::bench_report::Rows;
use anyhow::{Context, Result};
use colinux_harness::runner::{self, Monitor, RunContext, Verdict};
use colinux_harness::{paths, scenario};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Which benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostBench {
    /// Boot-to-init time and the monitor's memory at init.
    Boot,
    /// cobd throughput and IOPS.
    Cobd,
    /// cofs (virtio-fs) throughput and metadata operations per second.
    Cofs,
    /// TCP throughput over TAP and slirp.
    Net,
}

impl HostBench {
    /// Every benchmark, in the order `bench all` runs them.
    pub const ALL: [HostBench; 4] = [
        HostBench::Boot,
        HostBench::Cobd,
        HostBench::Cofs,
        HostBench::Net,
    ];

    /// The benchmark's name (`bench-NAME.toml`, `bench NAME`).
    pub fn name(self) -> &'static str {
        match self {
            HostBench::Boot => "boot",
            HostBench::Cobd => "cobd",
            HostBench::Cofs => "cofs",
            HostBench::Net => "net",
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

/// The measured values of one line, each for a table row: (row label, unit, value).
fn samples(what: HostBench, l: &BenchLine) -> Vec<(String, &'static str, f64)> {
    let num = |k: &str| l.fields.get(k).and_then(|v| v.parse::<f64>().ok());
    if let Some(after) = l.fields.get("after") {
        // The monitor's memory once the benchmark's work is done.
        return num("own_kb")
            .map(|k| {
                (
                    format!("monitor own memory after {after}"),
                    "MiB",
                    k / 1024.0,
                )
            })
            .into_iter()
            .collect();
    }
    match what {
        HostBench::Boot => [
            ("boot-to-init", "s", num("boot_s")),
            ("boot-to-login (system image)", "s", num("login_s")),
            ("RSS at init", "MiB", num("rss_kb").map(|k| k / 1024.0)),
            (
                "monitor own memory at init",
                "MiB",
                num("own_kb").map(|k| k / 1024.0),
            ),
            ("peak RSS at init", "MiB", num("hwm_kb").map(|k| k / 1024.0)),
            // The guest's own clock: its kernel starting /init, and READY.
            ("guest clock at /init", "s", num("run_init_s")),
            ("guest clock at READY", "s", num("ready_s")),
        ]
        .into_iter()
        .filter_map(|(row, unit, v)| Some((row.to_string(), unit, v?)))
        // KVM's in-kernel counters at init (kvm_counts in host-lib.sh).
        .chain(l.fields.iter().filter_map(|(k, v)| {
            let name = k.strip_prefix("kvm_")?;
            Some((format!("KVM {name} to init"), "count", v.parse().ok()?))
        }))
        .collect(),
        HostBench::Cobd => {
            let Some(mode) = l.fields.get("mode") else {
                return vec![];
            };
            let s = if mode.starts_with("seq-") {
                num("mibps").map(|v| (format!("{mode} 1M"), "MiB/s", v))
            } else {
                num("iops").map(|v| (format!("{mode} 4k QD1"), "IOPS", v))
            };
            s.into_iter().collect()
        }
        HostBench::Cofs => {
            let Some(mode) = l.fields.get("mode") else {
                return vec![];
            };
            let s = if mode.starts_with("seq-") {
                num("mibps").map(|v| (format!("cofs {mode} 1M"), "MiB/s", v))
            } else {
                num("opsps").map(|v| (format!("cofs {mode}"), "ops/s", v))
            };
            s.into_iter().collect()
        }
        HostBench::Net => {
            let (Some(test), Some(side)) = (l.fields.get("test"), l.fields.get("side")) else {
                return vec![];
            };
            let mut rows = match (num("bytes"), num("secs")) {
                (Some(bytes), Some(secs)) if secs > 0.0 => vec![(
                    format!("{test} ({side} side)"),
                    "MiB/s",
                    bytes / 1_048_576.0 / secs,
                )],
                _ => vec![],
            };
            // What KVM and the host VM's CPU did during the transfer (the
            // host side's counters_delta in host-lib.sh).
            for (key, what, unit) in [
                ("kvm_exits_per_mib", "KVM exits per MiB", "count"),
                ("kvm_io_per_mib", "KVM I/O exits per MiB", "count"),
                ("kvm_irq_per_mib", "KVM interrupts per MiB", "count"),
                ("kvm_halt_per_mib", "KVM halts per MiB", "count"),
                ("host_busy_pct", "host VM CPU busy", "%"),
                ("monitor_own_ms_per_mib", "monitor's own CPU per MiB", "ms"),
                ("guest_ms_per_mib", "guest CPU per MiB", "ms"),
            ] {
                if let Some(v) = num(key) {
                    rows.push((format!("{test} {what}"), unit, v));
                }
            }
            rows
        }
    }
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Collect the rows from the console lines; also the "unsupported" reasons.
pub fn collect(what: HostBench, lines: &[BenchLine]) -> (Rows, BTreeMap<String, String>) {
    let mut rows: Rows = BTreeMap::new();
    let mut unsupported = BTreeMap::new();
    for l in lines {
        if l.words.first().is_some_and(|w| w == "unsupported") {
            unsupported.insert(l.monitor.clone(), l.words[1..].join(" "));
            continue;
        }
        for (row, unit, v) in samples(what, l) {
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
        "{:<30} {:>6} {:>12} {:>12} {:>13}",
        "test", "unit", "qemu", "colinux", "colinux/qemu"
    );
    let cell = |m: &BTreeMap<String, Vec<f64>>, mon: &str, prec: usize| match (
        m.get(mon),
        unsupported.get(mon),
    ) {
        (Some(v), _) => mean(v).map_or("-".into(), |x| format!("{x:.prec$}")),
        (None, Some(_)) => "unsupported".into(),
        (None, None) => "failed".into(),
    };
    for (row, (unit, m)) in rows {
        let prec = if *unit == "s" { 2 } else { 1 };
        let ratio = match (
            m.get("qemu").and_then(|v| mean(v)),
            m.get("colinux").and_then(|v| mean(v)),
        ) {
            (Some(q), Some(c)) if q > 0.0 => format!("{:.2}", c / q),
            _ => "n/a".into(),
        };
        let _ = writeln!(
            s,
            "{row:<30} {unit:>6} {:>12} {:>12} {ratio:>13}",
            cell(m, "qemu", prec),
            cell(m, "colinux", prec)
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

/// What one benchmark measured over its rounds.
pub struct Measured {
    /// The table rows (samples per monitor).
    pub rows: Rows,
    /// Monitors that could not run it, and why.
    pub unsupported: BTreeMap<String, String>,
    /// Rounds that did not pass, with their reasons.
    pub failures: Vec<String>,
    /// Each round's summary log.
    pub logs: Vec<String>,
}

/// Runs `what` for `rounds` rounds and collects its figures.
///
/// Each round is its own host VM running qemu then colinux, so the two
/// monitors of a round share a host VM, and a host VM that breaks down (see
/// colinux_harness::infra) costs one round, not the whole benchmark.
pub fn measure(what: HostBench, rounds: u32, ctx: &RunContext) -> Result<Measured> {
    let path = paths::workspace_root()
        .join("harness/benches")
        .join(format!("bench-{}.toml", what.name()));
    let base = scenario::load(&path)?;
    let rounds = rounds.max(1);
    eprintln!(
        "bench {}: {rounds} round(s), each a host VM running qemu then colinux ...",
        what.name()
    );
    let mut lines: Vec<BenchLine> = Vec::new();
    let mut logs = Vec::new();
    let mut failures = Vec::new();
    for r in 1..=rounds {
        let mut s = base.clone();
        s.log_name = Some(format!("{}-r{r}", base.name));
        // The file expects round 1's assertions (`qemu-1`); this VM runs round r.
        s.expect = base
            .expect
            .iter()
            .map(|e| {
                e.strip_suffix("-1")
                    .map_or(e.clone(), |m| format!("{m}-{r}"))
            })
            .collect();
        s.conf = s.conf.replace(
            "colinux.rounds=2",
            &format!("colinux.rounds=1 colinux.first_round={r}"),
        );
        s.timeout_secs = s.timeout_secs / 2 + 300;
        // The host VM runs both monitors; the runner's monitor only names the log dir.
        let o = runner::run_scenario(&s, Monitor::Qemu, ctx);
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
                "{} round {r} {:?}: {}",
                what.name(),
                o.result,
                o.reasons.join("; ")
            ));
        }
        logs.push(o.log.display().to_string());
    }
    let (rows, unsupported) = collect(what, &lines);
    Ok(Measured {
        rows,
        unsupported,
        failures,
        logs,
    })
}

/// The run context of the benchmarks: images built, accelerator chosen.
fn context(
    imgs: &colinux_harness::images::Images,
    accel: colinux_harness::qemu::Accel,
) -> RunContext<'_> {
    RunContext {
        images: imgs,
        accel,
        capabilities: crate::ci_boot::capabilities(imgs),
        verbose: std::env::var_os("BENCH_VERBOSE").is_some(),
    }
}

/// Run `bench boot|cobd|cofs|net` with `rounds` boots per monitor; prints the table.
pub fn run(what: HostBench, rounds: u32) -> Result<i32> {
    let (imgs, choice) = crate::ci_boot::prepare()?;
    let ctx = context(&imgs, choice.accel);
    let m = measure(what, rounds, &ctx)?;
    println!(
        "bench {}: {} round(s) per monitor, each round one host VM (means; figures are indicative on a loaded machine)",
        what.name(),
        rounds.max(1)
    );
    print!("{}", table(&m.rows, &m.unsupported));
    for f in &m.failures {
        println!("{f}");
    }
    let out = paths::ci_boot_dir().join(format!("bench-{}.json", what.name()));
    let mut j = json(&m.rows, &m.unsupported);
    j["logs"] = serde_json::json!(m.logs);
    j["rounds"] = serde_json::json!(rounds.max(1));
    j["failed_rounds"] = serde_json::json!(m.failures);
    std::fs::write(&out, serde_json::to_string_pretty(&j)? + "\n")?;
    println!("logs {}\njson {}", m.logs.join(" "), out.display());
    Ok(if m.rows.is_empty() { 1 } else { 0 })
}

/// `bench all`: every benchmark with `rounds` rounds, then one report
/// (Markdown printed and written, JSON, SVG chart) under `target/bench/`.
pub fn all(rounds: u32) -> Result<i32> {
    let (imgs, choice) = crate::ci_boot::prepare()?;
    let ctx = context(&imgs, choice.accel);
    let mut rows: Rows = BTreeMap::new();
    let mut failures = Vec::new();
    let mut unsupported = Vec::new();
    for what in HostBench::ALL {
        let m = measure(what, rounds, &ctx)?;
        rows.extend(m.rows);
        failures.extend(m.failures);
        unsupported.extend(
            m.unsupported
                .into_iter()
                .map(|(mon, why)| format!("{} under {mon}: {why}", what.name())),
        );
    }
    let figures = crate::bench_report::figures(&rows);
    let dir = paths::cargo_target_dir().join("bench");
    std::fs::create_dir_all(&dir)?;
    let md = crate::bench_report::markdown(&figures);
    let mut j = crate::bench_report::json(&figures, rounds.max(1), &failures);
    j["unsupported"] = serde_json::json!(unsupported);
    std::fs::write(dir.join("report.md"), &md)?;
    std::fs::write(
        dir.join("report.json"),
        serde_json::to_string_pretty(&j)? + "\n",
    )?;
    std::fs::write(dir.join("report.svg"), crate::bench_report::svg(&figures))?;
    println!(
        "bench all: {} round(s) per benchmark and monitor, each round one host VM running both monitors\n\n{md}",
        rounds.max(1)
    );
    for f in failures.iter().chain(&unsupported) {
        println!("{f}");
    }
    println!(
        "report {}\njson   {}\nchart  {}",
        dir.join("report.md").display(),
        dir.join("report.json").display(),
        dir.join("report.svg").display()
    );
    Ok(if figures.is_empty() { 1 } else { 0 })
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
        let (rows, un) = collect(HostBench::Cobd, &l);
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
    fn cofs_rows_throughput_and_metadata_rates() {
        let l = lines(
            "COLINUX-BENCH monitor=qemu round=1 mode=seq-write bytes=1 ops=1 secs=1 mibps=200.00 opsps=200\n\
             COLINUX-BENCH monitor=colinux round=1 mode=seq-write bytes=1 ops=1 secs=1 mibps=300.00 opsps=300\n\
             COLINUX-BENCH monitor=qemu round=1 mode=create bytes=0 ops=2000 secs=1 mibps=0.00 opsps=4000\n\
             COLINUX-BENCH monitor=qemu round=2 mode=create bytes=0 ops=2000 secs=1 mibps=0.00 opsps=2000\n\
             COLINUX-BENCH monitor=colinux round=1 mode=create bytes=0 ops=2000 secs=1 mibps=0.00 opsps=1500\n\
             COLINUX-BENCH monitor=colinux round=1 mode=stat bytes=0 ops=2000 secs=1 mibps=0.00 opsps=9000\n\
             COLINUX-BENCH monitor=qemu round=1 mode=unlink error=x\n\
             COLINUX-BENCH monitor=qemu round=1 mode=mount error=no_such_device\n",
        );
        let (rows, un) = collect(HostBench::Cofs, &l);
        assert!(un.is_empty());
        // Throughput in MiB/s, metadata in operations per second.
        assert_eq!(rows["cofs seq-write 1M"].0, "MiB/s");
        assert_eq!(rows["cofs create"].0, "ops/s");
        assert_eq!(rows["cofs create"].1["qemu"], vec![4000.0, 2000.0]);
        // An error line is no sample: neither unlink nor mount has a row.
        assert_eq!(
            rows.keys().map(String::as_str).collect::<Vec<_>>(),
            ["cofs create", "cofs seq-write 1M", "cofs stat"]
        );
        let t = table(&rows, &un);
        assert!(
            t.lines().any(|r| r.starts_with("cofs seq-write 1M")
                && r.contains("MiB/s")
                && r.contains("1.50")),
            "{t}"
        );
        assert!(
            t.lines().any(|r| r.starts_with("cofs create")
                && r.contains("3000.0")
                && r.contains("1500.0")
                && r.contains("0.50")),
            "{t}"
        );
        assert!(
            t.lines().any(|r| r.starts_with("cofs stat")
                && r.contains("failed")
                && r.contains("9000.0")
                && r.contains("n/a")),
            "{t}"
        );
    }

    #[test]
    fn kvm_counters_at_init_are_rows_of_their_own() {
        let l = lines(
            "COLINUX-BENCH monitor=qemu round=1 boot_s=4.000 rss_kb=1 hwm_kb=1 own_kb=1 kvm_exits=90000 kvm_io_exits=5000\n\
             COLINUX-BENCH monitor=colinux round=1 boot_s=2.000 kvm_exits=30000 kvm_io_exits=1500\n",
        );
        let (rows, _) = collect(HostBench::Boot, &l);
        assert_eq!(rows["KVM exits to init"].1["qemu"], vec![90000.0]);
        assert_eq!(rows["KVM io_exits to init"].1["colinux"], vec![1500.0]);
        assert_eq!(rows["boot-to-init"].1["colinux"], vec![2.0]);
    }

    #[test]
    fn the_guest_clock_split_is_two_rows() {
        let l = lines(
            "COLINUX-BENCH monitor=qemu round=1 run_init_s=2.10 ready_s=3.40\n\
             COLINUX-BENCH monitor=colinux round=1 run_init_s=1.50 ready_s=2.60\n\
             COLINUX-BENCH monitor=colinux round=2 run_init_s=unknown ready_s=2.40\n",
        );
        let (rows, _) = collect(HostBench::Boot, &l);
        assert_eq!(rows["guest clock at /init"].1["qemu"], vec![2.1]);
        assert_eq!(rows["guest clock at /init"].1["colinux"], vec![1.5]);
        assert_eq!(rows["guest clock at READY"].1["colinux"], vec![2.6, 2.4]);
    }

    #[test]
    fn boot_rows_time_and_memory() {
        let l = lines(
            "COLINUX-BENCH monitor=qemu round=1 boot_s=4.000 rss_kb=204800 hwm_kb=307200\n\
             COLINUX-BENCH monitor=colinux round=1 boot_s=2.000 rss_kb=102400 hwm_kb=102400 own_kb=6144\n\
             COLINUX-BENCH monitor=colinux round=2 boot_s=3.000\n\
             COLINUX-BENCH monitor=qemu round=1 login_s=20.000\n\
             COLINUX-BENCH monitor=colinux round=1 login_s=9.000\n",
        );
        let (rows, un) = collect(HostBench::Boot, &l);
        assert!(un.is_empty());
        assert_eq!(rows["boot-to-init"].1["colinux"], vec![2.0, 3.0]);
        assert_eq!(rows["RSS at init"].1["qemu"], vec![200.0]);
        assert_eq!(rows["monitor own memory at init"].1["colinux"], vec![6.0]);
        assert!(!rows["monitor own memory at init"].1.contains_key("qemu"));
        let t = table(&rows, &un);
        assert!(
            t.lines()
                .any(|r| r.starts_with("boot-to-init") && r.contains("2.50") && r.contains("0.62")),
            "{t}"
        );
        assert!(
            t.lines()
                .any(|r| r.starts_with("peak RSS at init") && r.contains("0.33")),
            "{t}"
        );
        assert_eq!(rows["boot-to-login (system image)"].1["colinux"], vec![9.0]);
        assert!(
            t.lines()
                .any(|r| r.starts_with("boot-to-login") && r.contains("0.45")),
            "{t}"
        );
    }

    #[test]
    fn bench_scenarios_load_and_have_their_scripts() {
        for what in [
            HostBench::Boot,
            HostBench::Cobd,
            HostBench::Cofs,
            HostBench::Net,
        ] {
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
            let check = s
                .conf
                .split_whitespace()
                .find_map(|w| w.strip_prefix("colinux.check="))
                .expect("a colinux.check= word");
            assert!(
                root.join(format!("vm-images/guest/checks/{check}.sh"))
                    .exists(),
                "{name}: guest check {check}"
            );
        }
    }

    #[test]
    fn net_rows_and_unsupported() {
        let l = lines(
            "COLINUX-BENCH monitor=colinux unsupported lacks net-slirp\n\
             COLINUX-BENCH monitor=qemu round=1 test=tap-g2h side=recv bytes=104857600 secs=2.00\n\
             COLINUX-BENCH monitor=qemu round=1 test=tap-g2h side=send error=x\n",
        );
        let (rows, un) = collect(HostBench::Net, &l);
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

    #[test]
    fn net_counters_per_mib_are_rows_of_their_own() {
        let l = lines(
            "COLINUX-BENCH monitor=qemu round=1 test=slirp-g2h side=recv bytes=33554432 secs=4.00 \
             kvm_exits_per_mib=900 kvm_io_per_mib=700 kvm_halt_per_mib=10 kvm_irq_per_mib=50 host_busy_pct=97 \
             monitor_own_ms_per_mib=120.5 guest_ms_per_mib=900.0\n\
             COLINUX-BENCH monitor=colinux round=1 test=slirp-g2h side=recv bytes=33554432 secs=2.00 \
             kvm_exits_per_mib=450 kvm_io_per_mib=300 kvm_halt_per_mib=20 kvm_irq_per_mib=40 host_busy_pct=60\n",
        );
        let (rows, _) = collect(HostBench::Net, &l);
        assert_eq!(rows.len(), 8, "{rows:?}");
        assert_eq!(
            rows["slirp-g2h monitor's own CPU per MiB"].1["qemu"],
            vec![120.5]
        );
        assert_eq!(rows["slirp-g2h (recv side)"].1["colinux"], vec![16.0]);
        let (unit, m) = &rows["slirp-g2h KVM I/O exits per MiB"];
        assert_eq!(*unit, "count");
        assert_eq!((m["qemu"][0], m["colinux"][0]), (700.0, 300.0));
        assert_eq!(rows["slirp-g2h host VM CPU busy"].1["colinux"], vec![60.0]);
    }

    #[test]
    fn memory_after_the_work_is_its_own_row() {
        let l = lines(
            "COLINUX-BENCH monitor=colinux round=1 after=net rss_kb=90000 hwm_kb=91000 own_kb=6144\n\
             COLINUX-BENCH monitor=qemu round=1 after=net rss_kb=170000 hwm_kb=171000 own_kb=53248\n\
             COLINUX-BENCH monitor=qemu round=1 test=tap-g2h side=recv bytes=104857600 secs=2.00\n",
        );
        let (rows, _) = collect(HostBench::Net, &l);
        let (unit, m) = &rows["monitor own memory after net"];
        assert_eq!(*unit, "MiB");
        assert_eq!(m["colinux"], vec![6.0]);
        assert_eq!(m["qemu"], vec![52.0]);
        assert_eq!(rows.len(), 2, "{rows:?}");
    }
}
