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

/// fmt, clippy, nextest, images, ci-boot --monitor qemu.
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
    let code = crate::ci_boot::ci_boot(None, Monitor::Qemu, None, false, 2)?;
    eprintln!("ci: total {:.1}s", t0.elapsed().as_secs_f64());
    Ok(code)
}
