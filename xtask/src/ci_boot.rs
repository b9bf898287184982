//! `cargo xtask images` and `cargo xtask ci-boot`.

use anyhow::{bail, Result};
use colinux_harness::accel::{self, AccelChoice};
use colinux_harness::images::{self, BuildOptions, Images};
use colinux_harness::runner::{self, Monitor, Outcome, RunContext, Verdict};
use colinux_harness::{daemon, paths, report, scenario};
use std::path::Path;
use std::time::Instant;

/// Build the daemon (release) and all images; a daemon that fails to build is
/// reported and left out (monitor colinux then supports nothing).
pub fn images() -> Result<Images> {
    let daemon = match daemon::build_release() {
        Ok(p) => Some(p),
        Err(e) => {
            eprintln!("images: WARNING: colinux-daemon not packed: {e:#}");
            None
        }
    };
    images::build(&BuildOptions { daemon })
}

/// Images plus the accelerator decision, printed.
pub fn prepare() -> Result<(Images, AccelChoice)> {
    let imgs = images()?;
    let choice = accel::choose(&imgs, &paths::ci_boot_dir().join("accel.json"))?;
    eprintln!(
        "host VM accelerator: {:?} ({})",
        choice.accel, choice.reason
    );
    let dir = paths::ci_boot_dir();
    match colinux_harness::util::free_mib(&dir) {
        Some(mib) if mib < colinux_harness::util::LOW_DISK_MIB => eprintln!(
            "ci-boot: WARNING: only {mib} MiB free on the disk holding {}; a scenario's work disk takes up to ~3 GiB",
            dir.display()
        ),
        Some(mib) => eprintln!("ci-boot: {mib} MiB free on the disk holding {}", dir.display()),
        None => {}
    }
    Ok((imgs, choice))
}

/// Capabilities of the daemon packed in the host initramfs.
pub fn capabilities(imgs: &Images) -> Vec<String> {
    imgs.manifest
        .daemon
        .as_ref()
        .map(|d| d.capabilities.clone())
        .unwrap_or_default()
}

/// The scenarios to run: all of them, or the comma-separated `only` list
/// (an unknown name is an error).
pub fn select(only: Option<&str>) -> Result<Vec<scenario::Scenario>> {
    let mut all = scenario::load_all(&paths::scenarios_dir())?;
    if let Some(list) = only {
        let names: Vec<&str> = list.split(',').map(str::trim).collect();
        for n in &names {
            if !all.iter().any(|s| s.name == *n) {
                bail!(
                    "no scenario named {n:?} in {}",
                    paths::scenarios_dir().display()
                );
            }
        }
        all.retain(|s| names.contains(&s.name.as_str()));
    }
    Ok(all)
}

/// The scenarios of `all` that run under `monitor`; the others (a daemon-only
/// scenario under qemu) are named once as left out by design.
pub fn for_monitor(all: &[scenario::Scenario], monitor: Monitor) -> Vec<scenario::Scenario> {
    let (run, out): (Vec<_>, Vec<_>) = all.iter().cloned().partition(|s| s.is_for(monitor.name()));
    for s in out {
        eprintln!(
            "ci-boot: {} is for {} only: left out under {} by design",
            s.name,
            s.monitors.join(", "),
            monitor.name()
        );
    }
    run
}

/// Runs `scenarios` under `monitor`, printing a line as each starts and
/// ends; outcomes in scenario order. The scenarios marked `alone` run first,
/// one at a time with nothing beside them; the others then run `jobs` at a
/// time (each in its own host VM).
pub fn run_all(
    scenarios: &[scenario::Scenario],
    monitor: Monitor,
    ctx: &RunContext,
    jobs: usize,
) -> Vec<Outcome> {
    let slots: Vec<std::sync::Mutex<Option<Outcome>>> = scenarios
        .iter()
        .map(|_| std::sync::Mutex::new(None))
        .collect();
    let (alone, shared): (Vec<usize>, Vec<usize>) =
        (0..scenarios.len()).partition(|&i| scenarios[i].alone);
    for &i in &alone {
        eprintln!(
            "ci-boot: {} runs alone (its guest's own timeouts need the whole machine)",
            scenarios[i].name
        );
    }
    run_batch(scenarios, &alone, monitor, ctx, 1, &slots);
    run_batch(scenarios, &shared, monitor, ctx, jobs, &slots);
    slots
        .into_iter()
        .filter_map(|m| m.into_inner().ok().flatten())
        .collect()
}

/// Runs the scenarios at `indices`, `jobs` at a time, each outcome into its
/// slot.
fn run_batch(
    scenarios: &[scenario::Scenario],
    indices: &[usize],
    monitor: Monitor,
    ctx: &RunContext,
    jobs: usize,
    slots: &[std::sync::Mutex<Option<Outcome>>],
) {
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|sc| {
        for _ in 0..jobs.max(1).min(indices.len()) {
            sc.spawn(|| loop {
                let k = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(&i) = indices.get(k) else { break };
                let s = &scenarios[i];
                eprintln!("ci-boot: {} ({}) ...", s.name, monitor.name());
                let o = runner::run_scenario(s, monitor, ctx);
                eprintln!(
                    "ci-boot: {} {:?} in {:.1}s ({})",
                    o.name,
                    o.result,
                    o.seconds,
                    o.log.display()
                );
                if let Ok(mut slot) = slots[i].lock() {
                    *slot = Some(o);
                }
            });
        }
    });
}

/// Run scenarios, print the table, write JSON; exit code 1 on any failure.
/// With `strict` (what `cargo xtask ci` uses) an `unsupported` scenario is a
/// failure too: CI must prove every scenario with every monitor.
pub fn ci_boot(
    only: Option<&str>,
    monitor: Monitor,
    json: Option<&Path>,
    verbose: bool,
    jobs: usize,
    strict: bool,
) -> Result<i32> {
    let t0 = Instant::now();
    let all = select(only)?;
    let (imgs, choice) = prepare()?;
    let ctx = RunContext {
        images: &imgs,
        accel: choice.accel,
        capabilities: capabilities(&imgs),
        verbose,
    };
    if monitor == Monitor::Colinux {
        eprintln!("colinux-daemon capabilities: {:?}", ctx.capabilities);
    }
    let all = for_monitor(&all, monitor);
    let outcomes = run_all(&all, monitor, &ctx, jobs);
    let total = t0.elapsed().as_secs_f64();
    print!("{}", report::table(&outcomes, total));
    let j = serde_json::to_string_pretty(&report::json(&outcomes, total))? + "\n";
    let default_json = paths::ci_boot_dir().join(format!("report-{}.json", monitor.name()));
    std::fs::write(&default_json, &j)?;
    if let Some(p) = json {
        std::fs::write(p, &j)?;
    }
    println!(
        "ci-boot total: {total:.1}s (report {})",
        json.unwrap_or(&default_json).display()
    );
    let failed = outcomes
        .iter()
        .any(|o| o.result == Verdict::Fail || (strict && o.result == Verdict::Unsupported));
    if strict && outcomes.iter().any(|o| o.result == Verdict::Unsupported) {
        eprintln!("ci-boot: unsupported scenarios count as failures here");
    }
    Ok(if failed || outcomes.len() != all.len() {
        1
    } else {
        0
    })
}
