//! `cargo xtask run [CONF]`: boot a guest through the host VM with the guest
//! console on this terminal.

use anyhow::{Context, Result};
use colinux_harness::inner::inner_qemu;
use colinux_harness::qemu::HostVm;
use colinux_harness::runner::Monitor;
use colinux_harness::{conf, paths, workdisk};
use std::io::IsTerminal;
use std::path::Path;

/// The host-VM hook of a run without a terminal: wait for a getty's `login:`
/// (a system image) and log in as root and power off; an agent guest ends by
/// itself.
const UNATTENDED: &str = r#"#!/bin/sh
[ "$1" = during ] || exit 0
log="$OUT/guest-$BOOT.raw"
i=0
while [ $i -lt 6000 ]; do
    [ -e /tmp/rc ] && exit 0
    grep -q "login:" "$log" 2>/dev/null && break
    grep -q "COLINUX-AGENT END" "$log" 2>/dev/null && exit 0
    sleep 0.1; i=$((i + 1))
done
grep -q "login:" "$log" || exit 0
echo "run: the guest's login prompt is up; logging in as root on the console and powering off" > /dev/console
sleep 2
printf 'root\n' > "$CONSOLE_INPUT"
i=0
while [ $i -lt 30 ]; do
    sleep 5
    [ -e /tmp/rc ] && exit 0
    printf 'poweroff\n' > "$CONSOLE_INPUT"
    grep -q "reboot: Power down" "$log" && exit 0
    i=$((i + 1))
done
"#;

/// Replace `${image:NAME}` outside comment lines with `lookup(NAME)`'s path.
fn expand_images(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<std::path::PathBuf>,
) -> Result<String> {
    let mut out = String::new();
    for (n, line) in text.lines().enumerate() {
        let mut line = line.to_string();
        while !line.trim_start().starts_with('#') {
            let Some(start) = line.find("${image:") else {
                break;
            };
            let end = start
                + line[start..]
                    .find('}')
                    .with_context(|| format!("line {}: unclosed ${{image:", n + 1))?;
            let name = line[start + 8..end].to_string();
            let path = lookup(&name).with_context(|| {
                format!(
                    "line {}: ${{image:{name}}}: no such built image (see the images step's messages above)",
                    n + 1
                )
            })?;
            line.replace_range(start..=end, &path.display().to_string());
        }
        out.push_str(&line);
        out.push('\n');
    }
    Ok(out)
}

/// Boot `conf_path` (default vm-images/default.conf).
pub fn run(conf_path: Option<&Path>, monitor: Option<Monitor>) -> Result<i32> {
    let (imgs, choice) = crate::ci_boot::prepare()?;
    let caps = crate::ci_boot::capabilities(&imgs);
    let monitor = monitor.unwrap_or_else(|| {
        if caps.iter().any(|c| c == "boot") {
            Monitor::Colinux
        } else {
            eprintln!("run: the colinux daemon cannot boot a guest yet (no \"boot\" capability); using qemu as the inner monitor");
            Monitor::Qemu
        }
    });
    let default = paths::recipes_dir().join("default.conf");
    let conf_path = conf_path.unwrap_or(&default);
    let mut text = std::fs::read_to_string(conf_path)
        .with_context(|| format!("reading {}", conf_path.display()))?;
    // ${image:NAME}: a built image (the default conf's system image).
    text = expand_images(&text, &|name| {
        let path = imgs.path(name);
        path.is_file().then_some(path)
    })
    .with_context(|| format!("{}", conf_path.display()))?;
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        text.push_str("\ncolinux.shell=1\n");
    }
    let dir = paths::ci_boot_dir().join("run");
    let work = dir.join("work");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(work.join("out"))?;
    // cobd files that exist on this machine are copied onto the work disk
    // (a path that does not is taken as one inside the host VM: /work, /images).
    let parsed = conf::parse(&text).with_context(|| format!("{}", conf_path.display()))?;
    for b in &parsed.block_devices {
        let resolved = b.path.resolve();
        let p = resolved.as_path();
        if p.is_file() {
            let name = format!(
                "cobd{}-{}",
                b.index,
                p.file_name().and_then(|n| n.to_str()).unwrap_or("img")
            );
            eprintln!("run: copying {} onto the work disk", p.display());
            workdisk::sparse_copy(p, &work.join(&name))?;
            text = text.replace(&b.path.raw, &format!("/work/{name}"));
        }
    }
    let parsed = conf::parse(&text)?;
    std::fs::write(work.join("colinux.conf"), &text)?;
    let inner = inner_qemu(&parsed, &|_| false);
    inner.write_work_files(&work, monitor == Monitor::Qemu)?;
    // Without a terminal nobody can log in: the run then proves the guest
    // reaches its login prompt, logs in as root on the console, powers off.
    if !interactive {
        std::fs::write(work.join("scenario.sh"), UNATTENDED)?;
    }
    std::fs::write(
        work.join("scenario.env"),
        format!(
            "SCENARIO=run\nMONITOR={}\nBOOTS=1\nBOOT_TIMEOUT={}\nINTERACTIVE={}\nCONSOLE_IN={}\n",
            monitor.name(),
            if interactive { 100_000 } else { 900 },
            u8::from(interactive),
            u8::from(!interactive)
        ),
    )?;
    let img = dir.join("work.img");
    workdisk::make_image(&work, &img)?;
    let vm = HostVm {
        qemu: "qemu-system-x86_64".into(),
        kernel: imgs.path("kernel"),
        initrd: imgs.path("host-initrd"),
        append: "console=ttyS0 panic=-1 loglevel=3".into(),
        mem_mib: 1024 + parsed.mem_mib.unwrap_or(128) as u32,
        smp: colinux_harness::runner::host_vm_cpus(choice.accel),
        accel: choice.accel,
        disks: vec![(img, "work".into())],
        control: None,
    };
    eprintln!(
        "run: monitor {}, conf {}, host VM {:?}; the VM ends when the guest does (`poweroff` in it)",
        monitor.name(),
        conf_path.display(),
        choice.accel
    );
    let st = vm.run_interactive(interactive)?;
    Ok(st.code().unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn images_expand_outside_comments_and_unknown_ones_are_named() {
        let look = |n: &str| (n == "distro").then(|| PathBuf::from("/i/distro.ext4"));
        let t = expand_images(
            "# ${image:NAME} in a comment\ncobd0=${image:distro}\n",
            &look,
        )
        .unwrap();
        assert_eq!(t, "# ${image:NAME} in a comment\ncobd0=/i/distro.ext4\n");
        let e = expand_images("a=1\ncobd1=${image:nope}\n", &look).unwrap_err();
        assert!(format!("{e:#}").contains("line 2: ${image:nope}"), "{e:#}");
        let e = expand_images("cobd1=${image:distro\n", &look).unwrap_err();
        assert!(format!("{e:#}").contains("line 1: unclosed"), "{e:#}");
    }
}
