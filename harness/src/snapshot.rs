//! Regression snapshots of what the guest sees: the agent's COLINUX-INV lines,
//! normalized (kernel version masked), compared with an insta snapshot in
//! harness/snapshots/.

/// Extract and normalize the inventory block from a guest console.
pub fn inventory(console: &str) -> String {
    let mut out = Vec::new();
    for l in console.lines() {
        let Some(at) = l.find("COLINUX-INV ") else {
            continue;
        };
        let item = l[at + "COLINUX-INV ".len()..].trim_end();
        if item == "end" {
            break;
        }
        let item = if let Some(_v) = item.strip_prefix("kernel ") {
            "kernel [KERNEL-RELEASE]".to_string()
        } else {
            item.to_string()
        };
        out.push(item);
    }
    out.join("\n") + "\n"
}

/// Compare `content` with snapshot `name`; Err explains a mismatch (insta also
/// writes `<name>.snap.new` beside it unless CI is set; `INSTA_UPDATE=always`
/// accepts the new content).
pub fn compare(name: &str, content: &str) -> Result<(), String> {
    let dir = crate::paths::workspace_root()
        .join("harness")
        .join("snapshots");
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(dir);
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        settings.bind(|| insta::assert_snapshot!(name.to_string(), content))
    }));
    r.map_err(|e| {
        let msg = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        format!("inventory differs from snapshot harness/snapshots/{name}.snap ({msg}); review with cargo insta review")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inventory_masks_kernel_and_stops_at_end() {
        let c = "noise\nCOLINUX-INV kernel 6.1.0-56-cloud-amd64\r\n[ 1.2] COLINUX-INV blk cobd0 sectors=8 ro=1\nCOLINUX-INV end\nCOLINUX-INV late\n";
        assert_eq!(
            inventory(c),
            "kernel [KERNEL-RELEASE]\nblk cobd0 sectors=8 ro=1\n"
        );
    }
}
