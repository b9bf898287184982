//! `cargo xtask bench all`: one report of every benchmark's figures, colinux
//! beside qemu in the same host VMs, as ratios against the project's goals.
//! Written as Markdown (printed and `target/bench/report.md`), JSON
//! (`target/bench/report.json`: `{"figures": [{"name", "unit", "colinux",
//! "qemu", "ratio", "goal", "spread"}]}`) and a small SVG chart of the ratios
//! with each goal marked (`target/bench/report.svg`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// A benchmark's table, as `bench_host` collects it and this report reads
/// it: per row, the unit and the samples of each monitor.
pub type Rows = BTreeMap<String, (&'static str, BTreeMap<String, Vec<f64>>)>;

/// What a figure should be, as the issues state it.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum Goal {
    /// colinux/qemu at most this (times: lower is better).
    RatioAtMost(f64),
    /// colinux/qemu at least this (throughput: higher is better).
    RatioAtLeast(f64),
    /// colinux's own value at most this, in the figure's unit.
    ColinuxAtMost(f64),
}

impl Goal {
    /// Whether `f` meets the goal; `None` when a value it needs is missing.
    fn met(self, colinux: Option<f64>, ratio: Option<f64>) -> Option<bool> {
        match self {
            Goal::RatioAtMost(g) => ratio.map(|r| r <= g),
            Goal::RatioAtLeast(g) => ratio.map(|r| r >= g),
            Goal::ColinuxAtMost(g) => colinux.map(|c| c <= g),
        }
    }

    /// The goal as a colinux/qemu ratio (for the chart): an absolute goal
    /// becomes the ratio colinux would have at exactly that value.
    fn as_ratio(self, qemu: Option<f64>) -> Option<f64> {
        match self {
            Goal::RatioAtMost(g) | Goal::RatioAtLeast(g) => Some(g),
            Goal::ColinuxAtMost(g) => qemu.filter(|q| *q > 0.0).map(|q| g / q),
        }
    }

    fn describe(self) -> String {
        match self {
            Goal::RatioAtMost(g) => format!("ratio <= {g}"),
            Goal::RatioAtLeast(g) => format!("ratio >= {g}"),
            Goal::ColinuxAtMost(g) => format!("colinux <= {g}"),
        }
    }
}

/// The figures the issues name: (figure name, table row, goal).
const NAMED: &[(&str, &str, Option<Goal>)] = &[
    ("boot-to-init", "boot-to-init", Some(Goal::RatioAtMost(0.5))),
    ("boot-to-login", "boot-to-login (system image)", None),
    (
        "monitor-own-memory",
        "monitor own memory at init",
        Some(Goal::ColinuxAtMost(5.0)),
    ),
    (
        "monitor-own-memory-after-cobd",
        "monitor own memory after cobd",
        Some(Goal::ColinuxAtMost(5.0)),
    ),
    (
        "monitor-own-memory-after-cofs",
        "monitor own memory after cofs",
        Some(Goal::ColinuxAtMost(5.0)),
    ),
    (
        "monitor-own-memory-after-net",
        "monitor own memory after net",
        Some(Goal::ColinuxAtMost(5.0)),
    ),
    ("rss-at-init", "RSS at init", None),
    (
        "cobd-seq-read",
        "seq-read 1M",
        Some(Goal::RatioAtLeast(1.0)),
    ),
    (
        "cobd-seq-write",
        "seq-write 1M",
        Some(Goal::RatioAtLeast(1.0)),
    ),
    (
        "tcp-tap-g2h",
        "tap-g2h (recv side)",
        Some(Goal::RatioAtLeast(1.0)),
    ),
    (
        "tcp-tap-h2g",
        "tap-h2g (recv side)",
        Some(Goal::RatioAtLeast(1.0)),
    ),
    (
        "tcp-slirp-g2h",
        "slirp-g2h (recv side)",
        Some(Goal::RatioAtLeast(1.0)),
    ),
    (
        "tcp-slirp-h2g",
        "slirp-h2g (recv side)",
        Some(Goal::RatioAtLeast(1.0)),
    ),
];

/// One line of the report.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Figure {
    /// Stable name (`boot-to-init`, `tcp-slirp-g2h`, ...).
    pub name: String,
    /// Unit of `colinux` and `qemu`.
    pub unit: String,
    /// colinux's mean over rounds.
    pub colinux: Option<f64>,
    /// qemu's mean over rounds.
    pub qemu: Option<f64>,
    /// colinux / qemu.
    pub ratio: Option<f64>,
    /// What it should be, if the project has a goal for it.
    pub goal: Option<Goal>,
    /// Whether the goal is met (`None`: no goal, or a value is missing).
    pub met: Option<bool>,
    /// The larger of the two monitors' (max - min) / mean over rounds.
    pub spread: Option<f64>,
    /// Rounds each monitor contributed.
    pub samples: BTreeMap<String, usize>,
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

fn relative_range(v: &[f64]) -> Option<f64> {
    let m = mean(v).filter(|m| *m != 0.0)?;
    let (lo, hi) = v
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
            (lo.min(*x), hi.max(*x))
        });
    Some((hi - lo) / m.abs())
}

/// A row label as a figure name: lower case, words joined by `-`.
fn slug(row: &str) -> String {
    let mut s = String::new();
    for c in row.chars() {
        if c.is_ascii_alphanumeric() {
            s.push(c.to_ascii_lowercase());
        } else if !s.ends_with('-') && !s.is_empty() {
            s.push('-');
        }
    }
    s.trim_end_matches('-').to_string()
}

/// Every row of every benchmark as a figure; the named ones first, in the
/// issues' order, then the rest by name.
pub fn figures(rows: &Rows) -> Vec<Figure> {
    let figure = |name: String, row: &str, goal: Option<Goal>| -> Option<Figure> {
        let (unit, m) = rows.get(row)?;
        let colinux = m.get("colinux").and_then(|v| mean(v));
        let qemu = m.get("qemu").and_then(|v| mean(v));
        let ratio = match (colinux, qemu) {
            (Some(c), Some(q)) if q > 0.0 => Some(c / q),
            _ => None,
        };
        let spread = m
            .values()
            .filter_map(|v| relative_range(v))
            .fold(None, |a: Option<f64>, x| Some(a.map_or(x, |a| a.max(x))));
        Some(Figure {
            name,
            unit: unit.to_string(),
            colinux,
            qemu,
            ratio,
            goal,
            met: goal.and_then(|g| g.met(colinux, ratio)),
            spread,
            samples: m.iter().map(|(k, v)| (k.clone(), v.len())).collect(),
        })
    };
    let mut out: Vec<Figure> = NAMED
        .iter()
        .filter_map(|(name, row, goal)| figure(name.to_string(), row, *goal))
        .collect();
    for row in rows.keys() {
        if !NAMED.iter().any(|(_, r, _)| r == row) {
            out.extend(figure(slug(row), row, None));
        }
    }
    out
}

/// The JSON report.
pub fn json(figures: &[Figure], rounds: u32, failures: &[String]) -> serde_json::Value {
    serde_json::json!({
        "figures": figures,
        "rounds": rounds,
        "failed_rounds": failures,
    })
}

fn num(v: Option<f64>) -> String {
    v.map_or("-".into(), |x| {
        if x.abs() >= 100.0 {
            format!("{x:.0}")
        } else {
            format!("{x:.2}")
        }
    })
}

/// The Markdown table.
pub fn markdown(figures: &[Figure]) -> String {
    let mut s = String::from(
        "| figure | unit | colinux | qemu | colinux/qemu | goal | met | spread |\n\
         |---|---|---:|---:|---:|---|---|---:|\n",
    );
    for f in figures {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            f.name,
            f.unit,
            num(f.colinux),
            num(f.qemu),
            num(f.ratio),
            f.goal.map_or("-".into(), Goal::describe),
            match f.met {
                Some(true) => "yes",
                Some(false) => "no",
                None => "-",
            },
            f.spread
                .map_or("-".into(), |x| format!("{:.0} %", x * 100.0)),
        );
    }
    s
}

/// Escapes text for SVG.
fn esc(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A horizontal bar per figure that has a ratio: the bar is colinux/qemu
/// (1.0 marked: parity), the goal a red tick; green when met, orange when
/// not, grey without a goal. Ratios above 2.5 are drawn clipped, with their
/// value written.
pub fn svg(figures: &[Figure]) -> String {
    const LEFT: f64 = 170.0;
    const WIDTH: f64 = 360.0;
    const ROW: f64 = 22.0;
    const MAX: f64 = 2.5;
    let shown: Vec<&Figure> = figures.iter().filter(|f| f.ratio.is_some()).collect();
    let height = 40.0 + ROW * shown.len() as f64 + 20.0;
    let x = |r: f64| LEFT + WIDTH * r.clamp(0.0, MAX) / MAX;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"11\">",
        w = LEFT + WIDTH + 70.0
    );
    let _ = writeln!(
        s,
        "<text x=\"4\" y=\"14\" font-weight=\"bold\">colinux / qemu, same host VM (red tick: goal)</text>"
    );
    for (i, f) in shown.iter().enumerate() {
        let y = 30.0 + ROW * i as f64;
        let r = f.ratio.unwrap_or(0.0);
        let fill = match f.met {
            Some(true) => "#3a3",
            Some(false) => "#e80",
            None => "#999",
        };
        let _ = writeln!(
            s,
            "<text x=\"{tx}\" y=\"{ty}\" text-anchor=\"end\">{}</text>",
            esc(&f.name),
            tx = LEFT - 6.0,
            ty = y + 12.0
        );
        let _ = writeln!(
            s,
            "<rect x=\"{LEFT}\" y=\"{}\" width=\"{:.1}\" height=\"14\" fill=\"{fill}\"/>",
            y + 2.0,
            x(r) - LEFT
        );
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{}\">{r:.2}</text>",
            x(r) + 4.0,
            y + 13.0
        );
        if let Some(g) = f.goal.and_then(|g| g.as_ratio(f.qemu)) {
            let _ = writeln!(
                s,
                "<line x1=\"{gx:.1}\" x2=\"{gx:.1}\" y1=\"{}\" y2=\"{}\" stroke=\"#c00\" stroke-width=\"2\"/>",
                y,
                y + 18.0,
                gx = x(g)
            );
        }
    }
    let bottom = 30.0 + ROW * shown.len() as f64;
    let _ = writeln!(
        s,
        "<line x1=\"{p:.1}\" x2=\"{p:.1}\" y1=\"24\" y2=\"{bottom}\" stroke=\"#000\" stroke-dasharray=\"3,3\"/>\n\
         <text x=\"{p:.1}\" y=\"{}\" text-anchor=\"middle\">1.0 (parity)</text>",
        bottom + 14.0,
        p = x(1.0)
    );
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Rows {
        let mut r: Rows = BTreeMap::new();
        let mut add = |row: &str, unit: &'static str, c: &[f64], q: &[f64]| {
            let mut m = BTreeMap::new();
            if !c.is_empty() {
                m.insert("colinux".to_string(), c.to_vec());
            }
            if !q.is_empty() {
                m.insert("qemu".to_string(), q.to_vec());
            }
            r.insert(row.to_string(), (unit, m));
        };
        add("boot-to-init", "s", &[2.0, 4.0], &[6.0, 6.0]);
        add("monitor own memory at init", "MiB", &[6.0], &[52.0]);
        add("slirp-g2h (recv side)", "MiB/s", &[50.0], &[40.0]);
        add("rand-read 4k QD1", "IOPS", &[900.0], &[]);
        r
    }

    #[test]
    fn named_figures_get_their_goals_and_verdicts() {
        let f = figures(&rows());
        let names: Vec<&str> = f.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "boot-to-init",
                "monitor-own-memory",
                "tcp-slirp-g2h",
                "rand-read-4k-qd1"
            ]
        );
        let boot = &f[0];
        assert_eq!(boot.colinux, Some(3.0));
        assert_eq!(boot.ratio, Some(0.5));
        assert_eq!(boot.met, Some(true), "0.5 meets ratio <= 0.5");
        // (4 - 2) / 3 for colinux beats qemu's 0.
        assert!((boot.spread.unwrap() - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(f[1].met, Some(false), "6 MiB is over the 5 MiB goal");
        assert_eq!(f[2].met, Some(true), "1.25 >= 1.0");
        assert_eq!(f[3].ratio, None, "no qemu figure, no ratio");
        assert_eq!(f[3].met, None);
    }

    #[test]
    fn json_has_the_issues_fields() {
        let f = figures(&rows());
        let j = json(&f, 3, &["round 2 Fail: x".to_string()]);
        let first = &j["figures"][0];
        for k in ["name", "unit", "colinux", "qemu", "ratio", "goal", "spread"] {
            assert!(first.get(k).is_some(), "{k} in {first}");
        }
        assert_eq!(first["goal"]["kind"], "ratio_at_most");
        assert_eq!(first["goal"]["value"], 0.5);
        assert_eq!(j["rounds"], 3);
        assert_eq!(j["failed_rounds"][0], "round 2 Fail: x");
    }

    #[test]
    fn markdown_and_chart_show_every_ratio_and_goal() {
        let f = figures(&rows());
        let md = markdown(&f);
        assert!(
            md.lines()
                .any(|l| l
                    .starts_with("| boot-to-init | s | 3.00 | 6.00 | 0.50 | ratio <= 0.5 | yes |")),
            "{md}"
        );
        assert!(
            md.contains("| monitor-own-memory | MiB | 6.00 | 52.00 |"),
            "{md}"
        );
        let svg = svg(&f);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        // Three figures have a ratio; the IOPS one (no qemu) has no bar.
        assert_eq!(svg.matches("<rect").count(), 3, "{svg}");
        // Three goals: ratio 0.5, ratio 1.0 and the 5 MiB goal as 5/52.
        assert_eq!(svg.matches("stroke=\"#c00\"").count(), 3, "{svg}");
        assert!(!svg.contains("rand-read"), "{svg}");
    }

    #[test]
    fn slugs_are_stable_names() {
        assert_eq!(slug("cofs seq-write 1M"), "cofs-seq-write-1m");
        assert_eq!(slug("tap-h2g (send side)"), "tap-h2g-send-side");
    }
}
