//! `cargo xtask ci`: the same steps CI runs, in order, stopping at the first failure.

use anyhow::{bail, Result};
use colinux_harness::paths;
use colinux_harness::runner::Monitor;
use std::process::Command;
use std::time::Instant;

fn cargo(args: &[&str]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("ci: cargo {}", args.join(" "));
    let st = Command::new(cargo)
        .args(args)
        .current_dir(paths::workspace_root())
        .status()?;
    if !st.success() {
        bail!("cargo {} failed ({st})", args.join(" "));
    }
    Ok(())
}

/// fmt, clippy, nextest, images, then every ci-boot scenario under both
/// monitors: qemu (proves the harness and guest agent, and is the baseline)
/// and colinux (proves the daemon). Unsupported counts as failed here.
pub fn ci() -> Result<i32> {
    let t0 = Instant::now();
    cargo(&["fmt", "--all", "--", "--check"])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    cargo(&["nextest", "run", "--workspace"])?;
    let mut code = 0;
    for monitor in [Monitor::Qemu, Monitor::Colinux] {
        eprintln!("ci: cargo xtask ci-boot --monitor {}", monitor.name());
        let c = crate::ci_boot::ci_boot(None, monitor, None, false, 2, true)?;
        if c != 0 {
            eprintln!("ci: ci-boot --monitor {} failed", monitor.name());
            code = c;
        }
    }
    eprintln!("ci: total {:.1}s", t0.elapsed().as_secs_f64());
    Ok(code)
}
