//! Where things live: the workspace, the built images, the ci-boot logs.

use std::path::PathBuf;

/// The workspace root (the harness crate's parent directory).
pub fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(PathBuf::from).unwrap_or(here)
}

/// Directory of built VM images: `$COLINUX_IMAGES_DIR` or `<workspace>/target/vm-images`.
pub fn images_dir() -> PathBuf {
    match std::env::var_os("COLINUX_IMAGES_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => workspace_root().join("target").join("vm-images"),
    }
}

/// Directory of per-scenario logs: `<workspace>/target/ci-boot`.
pub fn ci_boot_dir() -> PathBuf {
    workspace_root().join("target").join("ci-boot")
}

/// Cargo's target directory (`$CARGO_TARGET_DIR` or `<workspace>/target`).
pub fn cargo_target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => {
            let p = PathBuf::from(d);
            if p.is_absolute() {
                p
            } else {
                workspace_root().join(p)
            }
        }
        _ => workspace_root().join("target"),
    }
}

/// Recipe directory: `<workspace>/vm-images`.
pub fn recipes_dir() -> PathBuf {
    workspace_root().join("vm-images")
}

/// Scenario data directory: `<workspace>/harness/scenarios`.
pub fn scenarios_dir() -> PathBuf {
    workspace_root().join("harness").join("scenarios")
}
