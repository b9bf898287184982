//! `cargo xtask soak --runs N`: N consecutive full ci-boot runs (both
//! monitors unless told), then a table of pass / fail / retried per scenario
//! and monitor with every failure's and retry's cause. Flakes show only over
//! many runs; this is the instrument for them.
//!
//! The report is rewritten after every run (target/soak/report.md and
//! report.json), so a soak stopped half-way still says what it saw, and the
//! logs of every failed or retried scenario are kept per run under
//! target/soak/run-K/ (ci-boot's own log folders are reused by the next run).

use crate::ci_boot;
use anyhow::Result;
use colinux_harness::paths;
use colinux_harness::runner::{Monitor, Outcome, RunContext, Verdict};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Tally of one scenario under one monitor.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Tally {
    /// Runs counted.
    pub runs: u32,
    /// Passed on the first attempt.
    pub pass: u32,
    /// Failed (after the retry, if one applied); unsupported counts here too.
    pub fail: u32,
    /// Passed or failed only after a retry for a nested-setup fault.
    pub retried: u32,
    /// Runs in which the host VM needed a nudge (a late heartbeat).
    pub nudged: u32,
    /// "run K: cause" for every failure, retry and nudge.
    pub causes: Vec<String>,
}

/// Adds one run's outcomes to the tallies.
pub fn add_run(tallies: &mut BTreeMap<(String, String), Tally>, run: u32, outcomes: &[Outcome]) {
    for o in outcomes {
        let t = tallies
            .entry((o.name.clone(), o.monitor.name().to_string()))
            .or_default();
        t.runs += 1;
        if !o.nudges.is_empty() {
            t.nudged += 1;
            for n in &o.nudges {
                t.causes.push(format!("run {run}: nudged: {n}"));
            }
        }
        if let Some(why) = &o.retried_because {
            t.retried += 1;
            t.causes.push(format!("run {run}: retried: {why}"));
        }
        match o.result {
            Verdict::Pass if o.retried_because.is_none() => t.pass += 1,
            Verdict::Pass => {}
            Verdict::Fail | Verdict::Unsupported => {
                t.fail += 1;
                let why = o
                    .reasons
                    .first()
                    .cloned()
                    .unwrap_or_else(|| format!("{:?}", o.result));
                t.causes.push(format!("run {run}: {why}"));
            }
        }
    }
}

/// The table in Markdown: one row per scenario and monitor, then the causes.
pub fn table(tallies: &BTreeMap<(String, String), Tally>, runs_done: u32, runs: u32) -> String {
    let mut s = format!("# soak: {runs_done} of {runs} runs\n\n");
    s.push_str("| scenario | monitor | runs | pass | fail | retried | nudged |\n");
    s.push_str("|---|---|---:|---:|---:|---:|---:|\n");
    for ((name, monitor), t) in tallies {
        let _ = writeln!(
            s,
            "| {name} | {monitor} | {} | {} | {} | {} | {} |",
            t.runs, t.pass, t.fail, t.retried, t.nudged
        );
    }
    let (fails, retries, nudged) = tallies.values().fold((0, 0, 0), |(f, r, n), t| {
        (f + t.fail, r + t.retried, n + t.nudged)
    });
    let _ = writeln!(
        s,
        "\nfailures {fails}, retries {retries}, runs with a nudged host VM {nudged}"
    );
    if tallies.values().any(|t| !t.causes.is_empty()) {
        s.push_str("\n## causes\n\n");
        for ((name, monitor), t) in tallies {
            for c in &t.causes {
                let _ = writeln!(s, "- {name} ({monitor}) {c}");
            }
        }
    }
    s
}

/// Copies the logs of a failed, retried or nudged scenario into the run's folder.
fn keep_logs(o: &Outcome, run_dir: &Path) {
    let Some(dir) = o.log.parent() else { return };
    let Some(scenario_dir) = dir.parent() else {
        return;
    };
    let dest = run_dir
        .join(scenario_dir.file_name().unwrap_or_default())
        .join(o.monitor.name());
    let _ = std::fs::create_dir_all(&dest);
    let mut copies = vec![(dir.to_path_buf(), dest.join("final"))];
    for n in 1..o.attempts {
        let name = format!("attempt{n}");
        copies.push((dir.with_extension(&name), dest.join(name)));
    }
    for (from, to) in copies {
        if from.exists() {
            let _ = std::process::Command::new("cp")
                .arg("-a")
                .arg(&from)
                .arg(&to)
                .status();
        }
    }
}

/// Runs the soak; exit code 1 when any scenario failed in any run.
pub fn soak(
    runs: u32,
    monitors: &[Monitor],
    only: Option<&str>,
    jobs: usize,
    verbose: bool,
) -> Result<i32> {
    let t0 = Instant::now();
    let scenarios = ci_boot::select(only)?;
    let (imgs, choice) = ci_boot::prepare()?;
    let ctx = RunContext {
        images: &imgs,
        accel: choice.accel,
        capabilities: ci_boot::capabilities(&imgs),
        verbose,
    };
    let out: PathBuf = paths::workspace_root().join("target/soak");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;
    let mut tallies = BTreeMap::new();
    let mut all_runs = Vec::new();
    for run in 1..=runs {
        for &monitor in monitors {
            let tr = Instant::now();
            eprintln!("soak: run {run} of {runs}, monitor {}", monitor.name());
            let outcomes = ci_boot::run_all(
                &ci_boot::for_monitor(&scenarios, monitor),
                monitor,
                &ctx,
                jobs,
            );
            add_run(&mut tallies, run, &outcomes);
            let run_dir = out.join(format!("run-{run}"));
            for o in &outcomes {
                if o.result != Verdict::Pass || o.retried_because.is_some() || !o.nudges.is_empty()
                {
                    keep_logs(o, &run_dir);
                }
            }
            let failed = outcomes
                .iter()
                .filter(|o| o.result != Verdict::Pass)
                .count();
            eprintln!(
                "soak: run {run} {}: {} scenarios, {failed} failed, {} retried, {:.1}s (elapsed {:.0}s)",
                monitor.name(),
                outcomes.len(),
                outcomes.iter().filter(|o| o.retried_because.is_some()).count(),
                tr.elapsed().as_secs_f64(),
                t0.elapsed().as_secs_f64()
            );
            all_runs.push(serde_json::json!({
                "run": run,
                "monitor": monitor,
                "report": colinux_harness::report::json(&outcomes, tr.elapsed().as_secs_f64()),
            }));
        }
        let md = table(&tallies, run, runs);
        std::fs::write(out.join("report.md"), &md)?;
        let rows: Vec<serde_json::Value> = tallies
            .iter()
            .map(|((name, monitor), t)| {
                serde_json::json!({"scenario": name, "monitor": monitor, "tally": t})
            })
            .collect();
        std::fs::write(
            out.join("report.json"),
            serde_json::to_string_pretty(&serde_json::json!({
                "runs_done": run, "runs": runs, "tallies": rows, "per_run": all_runs,
                "seconds": t0.elapsed().as_secs_f64(),
            }))? + "\n",
        )?;
    }
    let md = table(&tallies, runs, runs);
    print!("{md}");
    println!(
        "soak total: {:.1}s (report {})",
        t0.elapsed().as_secs_f64(),
        out.join("report.md").display()
    );
    Ok(i32::from(tallies.values().any(|t| t.fail > 0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(name: &str, result: Verdict, retried: Option<&str>, reason: &str) -> Outcome {
        Outcome {
            result,
            seconds: 1.0,
            reasons: if reason.is_empty() {
                vec![]
            } else {
                vec![reason.into()]
            },
            attempts: if retried.is_some() { 2 } else { 1 },
            retried_because: retried.map(String::from),
            ..Outcome::new(
                name,
                Monitor::Colinux,
                "/t/ci-boot/x/colinux/summary.txt".into(),
            )
        }
    }

    #[test]
    fn runs_are_tallied_with_their_causes() {
        let mut t = BTreeMap::new();
        add_run(
            &mut t,
            1,
            &[
                outcome("boot", Verdict::Pass, None, ""),
                outcome(
                    "swap",
                    Verdict::Pass,
                    Some("host VM kernel: soft lockup"),
                    "",
                ),
            ],
        );
        add_run(
            &mut t,
            2,
            &[
                outcome("boot", Verdict::Fail, None, "watchdog: heartbeat stopped"),
                outcome("swap", Verdict::Unsupported, None, ""),
            ],
        );
        let mut nudged = outcome("boot", Verdict::Pass, None, "");
        nudged.nudges = vec!["300s into the run, heartbeat 21s late: Shift pressed".into()];
        add_run(&mut t, 3, &[nudged]);
        let boot = &t[&("boot".to_string(), "colinux".to_string())];
        assert_eq!(
            (boot.runs, boot.pass, boot.fail, boot.retried, boot.nudged),
            (3, 2, 1, 0, 1)
        );
        assert_eq!(
            boot.causes,
            [
                "run 2: watchdog: heartbeat stopped",
                "run 3: nudged: 300s into the run, heartbeat 21s late: Shift pressed"
            ]
        );
        let swap = &t[&("swap".to_string(), "colinux".to_string())];
        assert_eq!(
            (swap.runs, swap.pass, swap.fail, swap.retried),
            (2, 0, 1, 1)
        );
        assert_eq!(
            swap.causes[0],
            "run 1: retried: host VM kernel: soft lockup"
        );
        let md = table(&t, 3, 20);
        assert!(
            md.contains("| boot | colinux | 3 | 2 | 1 | 0 | 1 |"),
            "{md}"
        );
        assert!(
            md.contains("failures 2, retries 1, runs with a nudged host VM 1"),
            "{md}"
        );
        assert!(md.contains("- swap (colinux) run 1: retried"), "{md}");
    }
}
