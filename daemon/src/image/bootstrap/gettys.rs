//! Stage 2, the logins on the consoles, as the image's init runs them:
//! systemd gets a serial getty on ttyS0 (the daemon's console); sysvinit
//! keeps Debian's `/etc/inittab` as shipped, gettys on tty1..tty6 (the
//! daemon's screen) and the serial `T0` line commented out, as classic
//! coLinux images had.

use std::path::Path;

use super::super::ImageError;
use super::files::symlink;
use super::options::Init;

/// The virtual terminals Debian's inittab runs gettys on, which a sysvinit
/// image must have.
pub const VT_GETTYS: &[&str] = &["tty1", "tty2", "tty3", "tty4", "tty5", "tty6"];

/// The terminals an inittab's active lines run a getty on, in order (comments
/// and other actions left out). In `id:runlevels:respawn:/sbin/getty ARGS`
/// the terminal is agetty's port: the first argument that is neither an
/// option nor a number (`38400 tty1`, `-L ttyS0 9600 vt100`).
pub fn inittab_gettys(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut f = l.splitn(4, ':');
            let (_id, _levels, action, process) = (f.next()?, f.next()?, f.next()?, f.next()?);
            let mut words = process.split_whitespace();
            let is_getty = words.next()?.rsplit('/').next()?.ends_with("getty");
            if action != "respawn" || !is_getty {
                return None;
            }
            words
                .find(|w| !w.starts_with('-') && !w.starts_with(|c: char| c.is_ascii_digit()))
                .map(str::to_string)
        })
        .collect()
}

/// Sets up the consoles' logins in the tree at `root` for `init`, and checks
/// that the init mmdebstrap installed is the one asked for.
pub(super) fn setup_gettys(init: Init, root: &Path) -> Result<(), ImageError> {
    match init {
        Init::Systemd => serial_getty(root),
        Init::Sysvinit => {
            check_sysvinit(root)?;
            // sysvinit 3.06 reads /etc/inittab.d/ too and says "No inittab.d
            // directory found" at every boot and shutdown if there is none
            // (Debian 12's package ships none): an empty one keeps it quiet.
            let d = root.join("etc/inittab.d");
            std::fs::create_dir_all(&d).map_err(|e| ImageError::io(&d, e))
        }
    }
}

/// systemd: `serial-getty@ttyS0` enabled.
fn serial_getty(root: &Path) -> Result<(), ImageError> {
    let unit = "lib/systemd/system/serial-getty@.service";
    if !root.join(unit).exists() {
        return Err(ImageError::WrongKind {
            path: root.join(unit),
            why: "missing: systemd did not install its serial getty unit".into(),
        });
    }
    symlink(
        &format!("/{unit}"),
        &root.join("etc/systemd/system/getty.target.wants/serial-getty@ttyS0.service"),
    )
}

/// sysvinit: `/sbin/init` is sysvinit's own program (not systemd-sysv's
/// link) and the shipped inittab runs gettys on tty1..tty6.
fn check_sysvinit(root: &Path) -> Result<(), ImageError> {
    let init = root.join("sbin/init");
    let wrong = |why: String| ImageError::WrongKind {
        path: init.clone(),
        why,
    };
    let meta = std::fs::symlink_metadata(&init)
        .map_err(|e| wrong(format!("missing ({e}): sysvinit-core did not install it")))?;
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(&init).map_err(|e| ImageError::io(&init, e))?;
        return Err(wrong(format!(
            "a link to {} (systemd-sysv?), not sysvinit's init",
            target.display()
        )));
    }
    let inittab = root.join("etc/inittab");
    let text = std::fs::read_to_string(&inittab).map_err(|e| ImageError::io(&inittab, e))?;
    let gettys = inittab_gettys(&text);
    let missing: Vec<&str> = VT_GETTYS
        .iter()
        .copied()
        .filter(|t| !gettys.iter().any(|g| g == t))
        .collect();
    if !missing.is_empty() {
        return Err(ImageError::WrongKind {
            path: inittab,
            why: format!(
                "no getty on {} (it runs them on: {})",
                missing.join(", "),
                gettys.join(", ")
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::bootstrap::customize::tests::fake_tree;

    /// The gettys of Debian 12's /etc/inittab (sysvinit-core 3.06), as shipped.
    const DEBIAN_INITTAB: &str = "\
id:2:initdefault:
si::sysinit:/etc/init.d/rcS
~~:S:wait:/sbin/sulogin --force
l0:0:wait:/etc/init.d/rc 0
ca:12345:ctrlaltdel:/sbin/shutdown -t1 -a -r now
1:2345:respawn:/sbin/getty --noclear 38400 tty1
2:23:respawn:/sbin/getty 38400 tty2
3:23:respawn:/sbin/getty 38400 tty3
4:23:respawn:/sbin/getty 38400 tty4
5:23:respawn:/sbin/getty 38400 tty5
6:23:respawn:/sbin/getty 38400 tty6
# Example how to put a getty on a serial line (for a terminal)
#
#T0:23:respawn:/sbin/getty -L ttyS0 9600 vt100
#T1:23:respawn:/sbin/getty -L ttyS1 9600 vt100
";

    #[test]
    fn the_shipped_inittab_runs_gettys_on_the_six_vts_only() {
        assert_eq!(inittab_gettys(DEBIAN_INITTAB), VT_GETTYS);
        let serial = DEBIAN_INITTAB.replace("#T0:", "T0:");
        assert_eq!(inittab_gettys(&serial).last().unwrap(), "ttyS0");
        assert!(inittab_gettys("1:2345:once:/sbin/getty 38400 tty1\n").is_empty());
        assert!(inittab_gettys("garbage\n\n::\n").is_empty());
        assert_eq!(
            inittab_gettys("x:2:respawn:/sbin/agetty -8 tty7 38400 linux"),
            ["tty7"]
        );
    }

    /// A fake tree with sysvinit's files: `init` (a program or a link) and
    /// an inittab.
    fn sysv_tree(name: &str, init_link: Option<&str>, inittab: &str) -> super::super::Scratch {
        let s = fake_tree(name);
        let root = s.root();
        std::fs::create_dir_all(root.join("usr/sbin")).unwrap();
        std::os::unix::fs::symlink("usr/sbin", root.join("sbin")).unwrap();
        match init_link {
            Some(target) => std::os::unix::fs::symlink(target, root.join("usr/sbin/init")).unwrap(),
            None => std::fs::write(root.join("usr/sbin/init"), "\x7fELF").unwrap(),
        }
        std::fs::write(root.join("etc/inittab"), inittab).unwrap();
        s
    }

    fn cleanup(s: super::super::Scratch) {
        let base = s.dir.parent().unwrap().to_path_buf();
        drop(s);
        std::fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn sysvinit_keeps_the_inittab_and_adds_no_serial_getty() {
        let s = sysv_tree("sysv-ok", None, DEBIAN_INITTAB);
        let root = s.root();
        setup_gettys(Init::Sysvinit, &root).unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("etc/inittab")).unwrap(),
            DEBIAN_INITTAB
        );
        assert!(!root.join("etc/systemd/system/getty.target.wants").exists());
        assert!(root.join("etc/inittab.d").is_dir());
        cleanup(s);
    }

    #[test]
    fn sysvinit_refuses_systemds_init_or_an_inittab_without_vt_gettys() {
        let s = sysv_tree("sysv-link", Some("/lib/systemd/systemd"), DEBIAN_INITTAB);
        let e = setup_gettys(Init::Sysvinit, &s.root())
            .unwrap_err()
            .to_string();
        assert!(e.contains("/lib/systemd/systemd"), "{e}");
        cleanup(s);
        let no_tty6 = DEBIAN_INITTAB.replace("6:23:respawn", "#6:23:respawn");
        let s = sysv_tree("sysv-tty6", None, &no_tty6);
        let e = setup_gettys(Init::Sysvinit, &s.root())
            .unwrap_err()
            .to_string();
        assert!(e.contains("no getty on tty6"), "{e}");
        cleanup(s);
        let s = fake_tree("sysv-none");
        let e = setup_gettys(Init::Sysvinit, &s.root())
            .unwrap_err()
            .to_string();
        assert!(e.contains("sysvinit-core did not install it"), "{e}");
        cleanup(s);
    }

    #[test]
    fn a_sysvinit_images_config_keeps_eth0_and_adds_no_systemd_units() {
        let s = sysv_tree("sysv-config", None, DEBIAN_INITTAB);
        let root = s.root();
        let mut o = crate::image::bootstrap::BootstrapOptions::new(s.dir.join("x.img"), 1 << 30);
        o.init = Init::Sysvinit;
        super::super::customize::write_config(&o, &root).unwrap();
        assert_eq!(
            std::fs::read_link(root.join("etc/systemd/network/99-default.link")).unwrap(),
            Path::new("/dev/null")
        );
        assert!(!root.join("etc/systemd/system").exists());
        assert!(root.join("etc/fstab").is_file());
        cleanup(s);
    }

    #[test]
    fn systemd_gets_the_serial_getty() {
        let s = fake_tree("systemd-getty");
        let root = s.root();
        setup_gettys(Init::Systemd, &root).unwrap();
        let getty = root.join("etc/systemd/system/getty.target.wants/serial-getty@ttyS0.service");
        assert_eq!(
            std::fs::read_link(getty).unwrap(),
            Path::new("/lib/systemd/system/serial-getty@.service")
        );
        cleanup(s);
    }
}
