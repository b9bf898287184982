//! The ci-boot report: a table on the terminal and a JSON file.

use crate::runner::Outcome;
use std::fmt::Write as _;

/// The JSON report `{"scenarios": [...], "total_seconds": N}`.
pub fn json(outcomes: &[Outcome], total_seconds: f64) -> serde_json::Value {
    serde_json::json!({
        "scenarios": outcomes.iter().map(|o| serde_json::json!({
            "name": o.name,
            "monitor": o.monitor,
            "result": o.result,
            "seconds": (o.seconds * 10.0).round() / 10.0,
            "log": o.log.display().to_string(),
            "attempts": o.attempts,
            "retried_because": o.retried_because,
            "nudges": o.nudges,
            "reasons": o.reasons,
        })).collect::<Vec<_>>(),
        "total_seconds": (total_seconds * 10.0).round() / 10.0,
    })
}

/// A plain-text table: scenario, monitor, result, seconds, log.
pub fn table(outcomes: &[Outcome], total_seconds: f64) -> String {
    let w = outcomes
        .iter()
        .map(|o| o.name.len())
        .max()
        .unwrap_or(8)
        .max(8);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<w$}  {:<8} {:<12} {:>8}  log",
        "scenario", "monitor", "result", "seconds"
    );
    for o in outcomes {
        let r = serde_json::to_value(o.result)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "{:<w$}  {:<8} {:<12} {:>8.1}  {}",
            o.name,
            o.monitor.name(),
            r,
            o.seconds,
            o.log.display()
        );
        if let Some(why) = &o.retried_because {
            let _ = writeln!(
                s,
                "{:<w$}    - attempt {}; earlier attempts hit {why}",
                "", o.attempts
            );
        }
        for nudge in &o.nudges {
            let _ = writeln!(s, "{:<w$}    - nudged the host VM: {nudge}", "");
        }
        for reason in o.reasons.iter().take(6) {
            let _ = writeln!(s, "{:<w$}    - {reason}", "");
        }
    }
    let _ = writeln!(s, "total {total_seconds:.1}s");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::{Monitor, Verdict};

    #[test]
    fn json_shape() {
        let o = Outcome {
            result: Verdict::Unsupported,
            seconds: 1.234,
            ..Outcome::new("boot", Monitor::Qemu, "/t/summary.txt".into())
        };
        let j = json(std::slice::from_ref(&o), 2.0);
        assert_eq!(j["scenarios"][0]["result"], "unsupported");
        assert_eq!(j["scenarios"][0]["monitor"], "qemu");
        assert_eq!(j["scenarios"][0]["seconds"], 1.2);
        assert_eq!(j["total_seconds"], 2.0);
        assert_eq!(j["scenarios"][0]["attempts"], 1);
        assert!(j["scenarios"][0]["retried_because"].is_null());
        assert!(table(&[o], 2.0).contains("unsupported"));
    }
}
