//! `colinux-image` against the real e2fsprogs / util-linux tools.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output};

use colinux_daemon::image::{self, ext::ExtType, tools, ImageKind};
use rstest::rstest;

mod common;
use common::{bin, s, scratch, stderr};

/// Where this file's scratch directories go.
const GROUP: &str = "image-tests";

fn tool(program: &str, args: &[&str]) -> Output {
    let exe = tools::find(program).unwrap_or_else(|| panic!("{program} is needed for this test"));
    Command::new(exe).args(args).output().unwrap()
}

#[test]
fn create_is_sparse_and_never_overwrites() {
    let d = scratch(GROUP, "create");
    let f = d.join("disk.img");
    let out = bin(&["create", s(&f), "2G"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let m = std::fs::metadata(&f).unwrap();
    assert_eq!(m.len(), 2 << 30);
    assert!(
        m.blocks() * 512 < 1 << 20,
        "not sparse: {} blocks",
        m.blocks()
    );

    std::fs::write(d.join("keep.img"), b"precious").unwrap();
    let out = bin(&["create", s(&d.join("keep.img")), "1M"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already exists; refusing to overwrite"));
    assert_eq!(std::fs::read(d.join("keep.img")).unwrap(), b"precious");

    let out = bin(&["create", s(&d.join("x.img")), "512"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("add a unit"));
    assert!(!d.join("x.img").exists());
}

#[rstest]
#[case(ExtType::Ext2)]
#[case(ExtType::Ext3)]
#[case(ExtType::Ext4)]
fn create_with_fs_and_detect_type(#[case] kind: ExtType) {
    let d = scratch(GROUP, &format!("mkfs-{}", kind.name()));
    let f = d.join("root.img");
    image::create(&f, 64 << 20, Some((kind, Some("colinux-root")))).unwrap();
    let info = image::detect(&f).unwrap();
    let ImageKind::Ext(e) = &info.kind else {
        panic!("not ext: {info:?}")
    };
    assert_eq!(e.kind, kind);
    assert_eq!(e.label.as_deref(), Some("colinux-root"));
    assert_eq!(e.fs_bytes(), 64 << 20);
    // blkid agrees on the type and label.
    let out = tool("blkid", &["-p", "-o", "export", s(&f)]);
    let txt = String::from_utf8_lossy(&out.stdout);
    assert!(txt.contains(&format!("TYPE={}", kind.name())), "{txt}");
    assert!(txt.contains("LABEL=colinux-root"), "{txt}");
    assert!(txt.contains(&format!("UUID={}", e.uuid)), "{txt}");
}

#[test]
fn mkswap_header_is_what_linux_tools_read() {
    let d = scratch(GROUP, "mkswap");
    let f = d.join("swap.img");
    let out = bin(&["mkswap", s(&f), "32M", "--label", "coswap"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    let uuid = printed.rsplit("UUID=").next().unwrap().trim().to_string();
    let m = std::fs::metadata(&f).unwrap();
    assert_eq!(m.len(), 32 << 20);
    assert!(
        m.blocks() * 512 >= 32 << 20,
        "swap file should be fully allocated"
    );

    let out = tool("blkid", &["-p", "-o", "export", s(&f)]);
    let txt = String::from_utf8_lossy(&out.stdout);
    assert!(txt.contains("TYPE=swap"), "{txt}");
    assert!(txt.contains("VERSION=1"), "{txt}");
    assert!(txt.contains("LABEL=coswap"), "{txt}");
    assert!(txt.contains(&format!("UUID={uuid}")), "{txt}");

    let out = tool("swaplabel", &[s(&f)]);
    let txt = String::from_utf8_lossy(&out.stdout);
    assert!(
        txt.contains("LABEL: coswap") && txt.contains(&uuid),
        "{txt}"
    );

    // Same header fields as util-linux mkswap writes for the same size.
    let theirs = d.join("theirs.img");
    std::fs::write(&theirs, vec![0u8; 32 << 20]).unwrap();
    let out = tool("mkswap", &["-L", "coswap", s(&theirs)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let a = image::detect(&f).unwrap();
    let b = image::detect(&theirs).unwrap();
    let (ImageKind::Swap(a), ImageKind::Swap(b)) = (a.kind, b.kind) else {
        panic!("not swap")
    };
    assert_eq!(
        (a.version, a.last_page, a.bad_pages, &a.label),
        (b.version, b.last_page, b.bad_pages, &b.label)
    );
    assert_eq!(a.uuid.as_deref(), Some(uuid.as_str()));

    let out = bin(&["mkswap", s(&d.join("tiny.img")), "16K"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("at least 10 pages"));
    assert!(
        !d.join("tiny.img").exists(),
        "no half-made file left behind"
    );
}

#[test]
fn sparse_swap_is_sparse() {
    let d = scratch(GROUP, "mkswap-sparse");
    let f = d.join("swap.img");
    image::mkswap(&f, 256 << 20, None, true).unwrap();
    let m = std::fs::metadata(&f).unwrap();
    assert_eq!(m.len(), 256 << 20);
    assert!(m.blocks() * 512 < 1 << 20);
    assert!(matches!(
        image::detect(&f).unwrap().kind,
        ImageKind::Swap(_)
    ));
}

#[test]
fn resize_grows_file_and_file_system() {
    let d = scratch(GROUP, "resize");
    let f = d.join("root.img");
    image::create(&f, 64 << 20, Some((ExtType::Ext3, None))).unwrap();
    // Put a file in it to be sure data survives (debugfs writes without mounting).
    let payload = d.join("payload.txt");
    std::fs::write(&payload, b"hello from the guest\n").unwrap();
    let out = tool(
        "debugfs",
        &[
            "-w",
            "-R",
            &format!("write {} hello.txt", s(&payload)),
            s(&f),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));

    let out = bin(&["resize", s(&f), "192M"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("64 MiB -> 192 MiB"), "{said}");

    let info = image::detect(&f).unwrap();
    let ImageKind::Ext(e) = &info.kind else {
        panic!("not ext")
    };
    assert_eq!(info.size, 192 << 20);
    assert_eq!(e.fs_bytes(), 192 << 20);
    assert_eq!(e.kind, ExtType::Ext3);
    let fsck = tool("e2fsck", &["-f", "-n", s(&f)]);
    assert_eq!(
        fsck.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&fsck.stdout)
    );
    let cat = tool("debugfs", &["-R", "cat hello.txt", s(&f)]);
    assert_eq!(
        String::from_utf8_lossy(&cat.stdout),
        "hello from the guest\n"
    );

    // Shrinking is refused and leaves the image alone.
    let out = bin(&["resize", s(&f), "128M"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("shrinking is not supported"));
    assert_eq!(std::fs::metadata(&f).unwrap().len(), 192 << 20);
}

#[test]
fn resize_refuses_non_ext_and_broken_images() {
    let d = scratch(GROUP, "resize-bad");
    let raw = d.join("raw.img");
    image::create(&raw, 1 << 20, None).unwrap();
    let out = bin(&["resize", s(&raw), "2M"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("holds raw data, not an ext2/3/4 file system"));
    assert_eq!(std::fs::metadata(&raw).unwrap().len(), 1 << 20);

    let swap = d.join("swap.img");
    image::mkswap(&swap, 1 << 20, None, true).unwrap();
    let err = image::resize(&swap, 2 << 20).unwrap_err().to_string();
    assert!(err.contains("holds swap data"), "{err}");

    // A file system whose root inode and group tables are smashed: e2fsck
    // cannot make it right without losing everything, so stop before growing.
    let broken = d.join("broken.img");
    image::create(&broken, 8 << 20, Some((ExtType::Ext2, None))).unwrap();
    let mut bytes = std::fs::read(&broken).unwrap();
    for b in &mut bytes[2048..2048 + 64 * 1024] {
        *b = 0xff;
    }
    std::fs::write(&broken, &bytes).unwrap();
    match image::resize(&broken, 16 << 20) {
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.starts_with("e2fsck:") || msg.contains("not an ext2/3/4"),
                "{msg}"
            );
            assert_eq!(
                std::fs::metadata(&broken).unwrap().len(),
                8 << 20,
                "left as it was"
            );
        }
        Ok(r) => {
            // e2fsck repaired it: then the file system must be whole and grown.
            assert_eq!(r.new_size, 16 << 20);
            let fsck = tool("e2fsck", &["-f", "-n", s(&broken)]);
            assert_eq!(fsck.status.code(), Some(0));
        }
    }
}

#[test]
fn info_text_and_json() {
    let d = scratch(GROUP, "info");
    let f = d.join("root.img");
    image::create(&f, 32 << 20, Some((ExtType::Ext4, Some("root")))).unwrap();
    // Grow the file only: info points out the unused space.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&f)
        .unwrap()
        .set_len(48 << 20)
        .unwrap();
    let out = bin(&["info", s(&f)]);
    assert_eq!(out.status.code(), Some(0));
    let txt = String::from_utf8_lossy(&out.stdout);
    assert!(txt.contains("type:        ext4"), "{txt}");
    assert!(txt.contains("label:       root"), "{txt}");
    assert!(txt.contains("size:        48 MiB"), "{txt}");
    assert!(txt.contains("colinux-image resize"), "{txt}");

    let out = bin(&["info", "--json", s(&f)]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["size"], 48u64 << 20);
    assert_eq!(v["kind"]["type"], "ext");
    assert_eq!(v["kind"]["fs_type"], "ext4");
    assert_eq!(
        v["kind"]["block_count"].as_u64().unwrap() * v["kind"]["block_size"].as_u64().unwrap(),
        32 << 20
    );

    let out = bin(&["info", s(&d.join("missing.img"))]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("missing.img"));
}

/// Writes a stand-in for `program` that prints `message` and exits `code`.
fn fake_tool(dir: &Path, program: &str, code: i32, message: &str) {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(program);
    std::fs::write(&p, format!("#!/bin/sh\necho '{message}'\nexit {code}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn bin_with_path(fake_dir: &Path, args: &[&str]) -> Output {
    let path = format!(
        "{}:{}",
        fake_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new(env!("CARGO_BIN_EXE_colinux-image"))
        .args(args)
        .env("PATH", path)
        .output()
        .unwrap()
}

#[test]
fn resize_stops_when_e2fsck_cannot_fix() {
    let d = scratch(GROUP, "resize-fsck-fails");
    let f = d.join("root.img");
    image::create(&f, 8 << 20, Some((ExtType::Ext2, None))).unwrap();
    let fake = d.join("bin");
    std::fs::create_dir_all(&fake).unwrap();
    fake_tool(
        &fake,
        "e2fsck",
        8,
        "e2fsck: Bad magic number in super-block",
    );
    let out = bin_with_path(&fake, &["resize", s(&f), "16M"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("e2fsck: exit status Some(8)"), "{err}");
    assert!(
        err.contains("left as it was") && err.contains("Bad magic number"),
        "{err}"
    );
    assert_eq!(std::fs::metadata(&f).unwrap().len(), 8 << 20);
}

#[test]
fn resize_reports_resize2fs_failure() {
    let d = scratch(GROUP, "resize2fs-fails");
    let f = d.join("root.img");
    image::create(&f, 8 << 20, Some((ExtType::Ext2, None))).unwrap();
    let fake = d.join("bin");
    std::fs::create_dir_all(&fake).unwrap();
    fake_tool(&fake, "resize2fs", 1, "resize2fs: No space left on device");
    let out = bin_with_path(&fake, &["resize", s(&f), "16M"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("resize2fs: exit status Some(1)"), "{err}");
    assert!(
        err.contains("file system was not grown (it is intact at its old size)"),
        "{err}"
    );
    // The file system is still whole.
    let fsck = tool("e2fsck", &["-f", "-n", s(&f)]);
    assert_eq!(fsck.status.code(), Some(0));
}
