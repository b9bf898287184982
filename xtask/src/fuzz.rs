//! `cargo xtask fuzz`: coverage-guided fuzzing of the daemon's guest-facing
//! devices (virtio-blk and virtio-net request paths, PCI configuration space)
//! with libFuzzer, through `cargo fuzz`, on the stable toolchain.
//!
//! The fuzz crate is `fuzz/` (its own workspace); the targets' bodies live in
//! `daemon/devices/tests/fuzzing/` and also run as the stable test
//! `daemon/devices/tests/fuzz_corpus.rs` over the kept corpus.
//!
//! Stable Rust has no `-Zsanitizer`, so the targets are built with
//! `--sanitizer none` (safe Rust: a panic is the crash), with debug
//! assertions and overflow checks on (`--debug-assertions`), and without
//! comparison tracing (`--no-trace-compares`), which cost ~40 % of the
//! executions here for little gain with inputs that select values by
//! masks rather than compare magic numbers. Each target runs for the given
//! time with one job; new inputs go to `target/fuzz/corpus/<target>` (the
//! kept corpus in `fuzz/corpus/<target>` is read, never written), a crash
//! input to `target/fuzz/artifacts/<target>/`.

use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The fuzz targets, in the order they run.
pub const TARGETS: &[&str] = &["virtio_blk", "virtio_net", "pci_config"];

/// `cargo fuzz build` flags that work on the stable toolchain.
pub const BUILD_FLAGS: &[&str] = &[
    "--sanitizer",
    "none",
    "--release",
    "--debug-assertions",
    "--no-trace-compares",
];

/// Largest input libFuzzer generates (a few hundred guest actions).
const MAX_LEN: u32 = 384;

/// What one run reported.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Stats {
    /// Inputs executed.
    pub execs: u64,
    /// Average executions per second.
    pub execs_per_sec: u64,
    /// Coverage: edges (`cov:`) at the last status line.
    pub cov: u64,
    /// Features (`ft:`) at the last status line.
    pub features: u64,
    /// Corpus size (`corp:`) at the last status line.
    pub corpus: u64,
}

impl Stats {
    /// Takes what a libFuzzer output line says (status lines and the
    /// `-print_final_stats` block).
    pub fn absorb(&mut self, line: &str) {
        let num = |s: &str| s.trim().split('/').next()?.parse::<u64>().ok();
        if let Some(v) = line.strip_prefix("stat::number_of_executed_units:") {
            self.execs = num(v).unwrap_or(self.execs);
        } else if let Some(v) = line.strip_prefix("stat::average_exec_per_sec:") {
            self.execs_per_sec = num(v).unwrap_or(self.execs_per_sec);
        } else if line.starts_with('#') && line.contains(" cov: ") {
            let mut words = line.split_whitespace();
            if let Some(n) = words.next().and_then(|w| w[1..].parse().ok()) {
                self.execs = n;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            for w in fields.windows(2) {
                match w[0] {
                    "cov:" => self.cov = num(w[1]).unwrap_or(self.cov),
                    "ft:" => self.features = num(w[1]).unwrap_or(self.features),
                    "corp:" => self.corpus = num(w[1]).unwrap_or(self.corpus),
                    "exec/s:" => self.execs_per_sec = num(w[1]).unwrap_or(self.execs_per_sec),
                    _ => {}
                }
            }
        }
    }
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Installs cargo-fuzz with `cargo install --locked` when it is missing.
pub fn ensure_cargo_fuzz() -> Result<()> {
    let has = Command::new(cargo())
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has {
        eprintln!("fuzz: installing cargo-fuzz");
        let st = Command::new(cargo())
            .args(["install", "--locked", "cargo-fuzz"])
            .status()
            .context("running cargo install cargo-fuzz")?;
        if !st.success() {
            bail!("cargo install --locked cargo-fuzz failed ({st})");
        }
    }
    Ok(())
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the repository")
        .to_path_buf()
}

/// Runs `target` (or every target) for `minutes` each, or, with `runs`, for
/// that many executions each (no time limit: for a record such as issue 11's
/// 10 M executions per target); returns 0 when no target crashed, 1
/// otherwise (each crash input's path printed).
pub fn fuzz(minutes: f64, runs: Option<u64>, target: Option<&str>) -> Result<i32> {
    if minutes.is_nan() || minutes <= 0.0 {
        bail!("--minutes must be positive");
    }
    let targets: Vec<&str> = match target {
        Some(t) if TARGETS.contains(&t) => vec![t],
        Some(t) => bail!("unknown fuzz target {t}; known: {}", TARGETS.join(", ")),
        None => TARGETS.to_vec(),
    };
    ensure_cargo_fuzz()?;
    let root = repo_root();
    let work = root.join("target/fuzz");
    let build_dir = work.join("build");
    let mut build = Command::new(cargo());
    build
        .current_dir(root.join("fuzz"))
        .args(["fuzz", "build"])
        .args(BUILD_FLAGS)
        .arg("--target-dir")
        .arg(&build_dir);
    if targets.len() == 1 {
        build.arg(targets[0]);
    }
    eprintln!("fuzz: building ({})", BUILD_FLAGS.join(" "));
    let st = build.status().context("running cargo fuzz build")?;
    if !st.success() {
        bail!("cargo fuzz build failed ({st})");
    }
    let bin_dir = build_dir.join(format!("{}/release", host_triple()?));
    let seconds = (minutes * 60.0).ceil() as u64;
    let mut results = Vec::new();
    for t in &targets {
        let corpus = work.join("corpus").join(t);
        let artifacts = work.join("artifacts").join(t);
        std::fs::create_dir_all(&corpus)?;
        std::fs::create_dir_all(&artifacts)?;
        let kept = root.join("fuzz/corpus").join(t);
        let limit = match runs {
            Some(n) => format!("-runs={n}"),
            None => format!("-max_total_time={seconds}"),
        };
        eprintln!(
            "fuzz: {t}, {} (corpus {})",
            runs.map_or(format!("{seconds} s"), |n| format!("{n} executions")),
            corpus.display()
        );
        let started = std::time::SystemTime::now();
        let mut child = Command::new(bin_dir.join(t))
            .arg(limit)
            .arg(format!("-max_len={MAX_LEN}"))
            .arg("-timeout=10")
            .arg("-rss_limit_mb=2048")
            .arg("-print_final_stats=1")
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .arg(&corpus)
            .arg(&kept)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", bin_dir.join(t).display()))?;
        let mut stats = Stats::default();
        let mut tail: Vec<String> = Vec::new();
        if let Some(err) = child.stderr.take() {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                stats.absorb(&line);
                if line.contains("pulse") || line.contains("DONE") || line.contains("INITED") {
                    eprintln!("  {t}: {line}");
                }
                tail.push(line);
                if tail.len() > 60 {
                    tail.remove(0);
                }
            }
        }
        let st = child.wait()?;
        let crashes: Vec<PathBuf> = std::fs::read_dir(&artifacts)?
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|m| m >= started)
            })
            .map(|e| e.path())
            .collect();
        if !st.success() || !crashes.is_empty() {
            for l in &tail {
                eprintln!("  {t}| {l}");
            }
            for c in &crashes {
                eprintln!("fuzz: {t}: crash input kept at {}", c.display());
            }
            if crashes.is_empty() {
                eprintln!("fuzz: {t}: libFuzzer exited with {st} and left no input");
            } else {
                eprintln!(
                    "fuzz: reproduce with `cargo fuzz run {} {t} <input>` in fuzz/",
                    BUILD_FLAGS.join(" ")
                );
            }
        }
        results.push((t, stats, st.success() && crashes.is_empty()));
    }
    println!(
        "{:<12} {:>12} {:>8} {:>6} {:>7} {:>7}  result",
        "target", "executions", "exec/s", "cov", "ft", "corpus"
    );
    for (t, s, ok) in &results {
        println!(
            "{:<12} {:>12} {:>8} {:>6} {:>7} {:>7}  {}",
            t,
            s.execs,
            s.execs_per_sec,
            s.cov,
            s.features,
            s.corpus,
            if *ok { "ok" } else { "CRASH" }
        );
    }
    Ok(if results.iter().all(|r| r.2) { 0 } else { 1 })
}

/// The host's target triple (cargo fuzz builds for it explicitly).
fn host_triple() -> Result<String> {
    let out = Command::new("rustc")
        .arg("-vV")
        .output()
        .context("running rustc -vV")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .context("rustc -vV names no host")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_come_from_status_lines_and_final_stats() {
        let mut s = Stats::default();
        s.absorb("#65536\tpulse  cov: 1098 ft: 2385 corp: 573/18Kb lim: 56 exec/s: 6553 rss: 29Mb");
        assert_eq!(
            s,
            Stats {
                execs: 65536,
                execs_per_sec: 6553,
                cov: 1098,
                features: 2385,
                corpus: 573
            }
        );
        s.absorb("stat::number_of_executed_units: 10000000");
        s.absorb("stat::average_exec_per_sec:     9876");
        assert_eq!((s.execs, s.execs_per_sec), (10_000_000, 9876));
        s.absorb("INFO: Seed: 42");
        assert_eq!(s.cov, 1098);
    }

    #[test]
    fn targets_match_the_fuzz_crate() {
        let manifest = std::fs::read_to_string(repo_root().join("fuzz/Cargo.toml")).unwrap();
        for t in TARGETS {
            assert!(manifest.contains(&format!("name = \"{t}\"")), "{t}");
            assert!(repo_root().join("fuzz/corpus").join(t).is_dir(), "{t}");
        }
    }
}
