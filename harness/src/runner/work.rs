//! A run's work directory and disk (`/work` in the host VM): the generated
//! files, the conf and its inner-QEMU twin, the guest check and host script,
//! packed into `work.img`.

use super::{Monitor, Outcome, RunContext};
use crate::inner::{inner_qemu, InnerQemu};
use crate::scenario::Scenario;
use crate::workdisk::{self, MadeFile};
use crate::{conf, paths};
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// What a run made before it boots the host VM.
pub(super) struct Work {
    /// The work disk image.
    pub img: PathBuf,
    /// The generated work files, by name.
    pub made: BTreeMap<String, MadeFile>,
    /// The inner QEMU derived from the scenario's conf.
    pub inner: InnerQemu,
}

/// Makes the work directory and disk of `s` under `dir`; `None` (the reason
/// in `out`) when a script the scenario needs is missing.
pub(super) fn prepare(
    s: &Scenario,
    monitor: Monitor,
    ctx: &RunContext,
    dir: &Path,
    out: &mut Outcome,
) -> Result<Option<Work>> {
    let recipes = paths::recipes_dir();
    let host_script = recipes
        .join("host/scenarios")
        .join(format!("{}.sh", s.name));
    if s.host_script && !host_script.exists() {
        out.reasons
            .push(format!("host script {} missing", host_script.display()));
        return Ok(None);
    }

    let work = dir.join("work");
    std::fs::create_dir_all(work.join("out"))?;
    let mut made: BTreeMap<String, MadeFile> = BTreeMap::new();
    for f in &s.files {
        let m = workdisk::make_file(&work, f, &|n| ctx.images.path(n))?;
        made.insert(f.name.clone(), m);
    }
    let expand = |text: &str| {
        crate::scenario::expand(text, &|kind, file| {
            let m = made.get(file)?;
            match kind {
                "sha256" => Some(m.sha256.clone()),
                "size" => Some(m.size.to_string()),
                _ => None,
            }
        })
    };
    let conf_text = expand(&s.conf)?;
    let parsed = conf::parse(&conf_text).context("scenario conf")?;
    let read_only = |p: &str| {
        p.strip_prefix("/work/")
            .and_then(|f| std::fs::metadata(work.join(f)).ok())
            .is_some_and(|m| m.permissions().mode() & 0o222 == 0)
    };
    for (name, text) in &s.extra_confs {
        let text = expand(text)?;
        let c = conf::parse(&text).with_context(|| format!("scenario extra conf {name}"))?;
        std::fs::write(work.join(format!("{name}.conf")), &text)?;
        std::fs::write(
            work.join(format!("{name}.qemu.args")),
            inner_qemu(&c, &read_only).args_file(),
        )?;
    }
    let check_name = parsed
        .kernel_cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("colinux.check="))
        .unwrap_or(&s.name)
        .to_string();
    let guest_check = recipes
        .join("guest/checks")
        .join(format!("{check_name}.sh"));
    if !guest_check.exists() {
        out.reasons
            .push(format!("guest check {} missing", guest_check.display()));
        return Ok(None);
    }
    std::fs::write(work.join("colinux.conf"), &conf_text)?;
    std::fs::write(dir.join("colinux.conf"), &conf_text)?;
    let inner = inner_qemu(&parsed, &read_only);
    inner.write_work_files(&work, monitor == Monitor::Qemu)?;
    std::fs::write(
        work.join("scenario.env"),
        format!(
            "SCENARIO={}\nMONITOR={}\nBOOTS={}\nBOOT_TIMEOUT={}\nINTERACTIVE=0\nCONSOLE_IN={}\n",
            s.name,
            monitor.name(),
            s.boots,
            s.boot_timeout_secs,
            u8::from(s.console_input)
        ),
    )?;
    // The check script also rides on the work disk, for guests that are not
    // the agent (a distribution image): the host script runs it over ssh.
    std::fs::copy(&guest_check, work.join("guest-check.sh"))?;
    if host_script.exists() {
        std::fs::copy(&host_script, work.join("scenario.sh"))?;
    }
    let img = dir.join("work.img");
    workdisk::make_image(&work, &img)?;
    Ok(Some(Work { img, made, inner }))
}
