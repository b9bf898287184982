//! The work disk: the data exchange with the host VM. The harness fills a
//! directory (conf, qemu.args, scenario.env, files), turns it into an ext4
//! image with `mke2fs -d` (no mounts), the host VM mounts it at /work and
//! writes results under /work/out, and the harness reads them back with
//! debugfs after the VM ends.

use crate::images::stage::mke2fs_d;
use crate::scenario::WorkFile;
use crate::util::sha256_file;
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A generated work file and what it was when the run started.
#[derive(Debug, Clone)]
pub struct MadeFile {
    /// Path on the outer host.
    pub path: PathBuf,
    /// SHA-256 before the run.
    pub sha256: String,
    /// Bytes.
    pub size: u64,
}

fn random_fill(path: &Path, bytes: u64) -> Result<()> {
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0x9e37_79b9_7f4a_7c15)
        | 1;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut left = bytes;
    while left > 0 {
        // xorshift64*: fast, and fresh per run (the seed is the clock).
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        let v = seed.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
        let n = left.min(8) as usize;
        f.write_all(&v[..n])?;
        left -= n as u64;
    }
    f.flush()?;
    Ok(())
}

/// Copy `src` to `dst` keeping holes: all-zero 64 KiB blocks are skipped, so
/// a 2 GiB system image with 400 MiB in use costs 400 MiB (mke2fs -d keeps
/// the holes on the work disk too).
pub fn sparse_copy(src: &Path, dst: &Path) -> Result<()> {
    sparse_write(std::fs::File::open(src)?, dst).map(|_| ())
}

/// Write everything `r` yields to a new file `dst`, seeking over all-zero
/// 64 KiB blocks instead of writing them; returns the length. A file read
/// back from the work disk after a run (a 2 GiB system image) then costs the
/// outer disk only the blocks in use.
pub fn sparse_write(mut r: impl std::io::Read, dst: &Path) -> Result<u64> {
    use std::io::{Seek, SeekFrom};
    let mut w = std::fs::File::create(dst)?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut len = 0u64;
    loop {
        let mut n = 0;
        while n < buf.len() {
            match r.read(&mut buf[n..])? {
                0 => break,
                k => n += k,
            }
        }
        if n == 0 {
            break;
        }
        if buf[..n].iter().all(|b| *b == 0) {
            w.seek(SeekFrom::Current(n as i64))?;
        } else {
            w.write_all(&buf[..n])?;
        }
        len += n as u64;
    }
    w.set_len(len)?;
    Ok(len)
}

/// Create `spec` in `dir`, copying built images from `image_path(name)`.
pub fn make_file(
    dir: &Path,
    spec: &WorkFile,
    image_path: &dyn Fn(&str) -> PathBuf,
) -> Result<MadeFile> {
    if spec.name.contains('/') || spec.name.starts_with('.') {
        bail!("work file name {:?} must be a plain file name", spec.name);
    }
    let path = dir.join(&spec.name);
    let bytes = spec.size_mib * 1024 * 1024;
    match spec.kind.as_str() {
        "random" => random_fill(&path, bytes)?,
        "zero" => std::fs::File::create(&path)?.set_len(bytes)?,
        "image" => {
            let name = spec
                .image
                .as_deref()
                .with_context(|| format!("work file {}: kind image needs image =", spec.name))?;
            let src = image_path(name);
            sparse_copy(&src, &path)
                .with_context(|| format!("copying {} to {}", src.display(), path.display()))?;
        }
        k => bail!(
            "work file {}: unknown kind {k:?} (random|zero|image)",
            spec.name
        ),
    }
    if spec.read_only {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444))?;
    }
    Ok(MadeFile {
        sha256: sha256_file(&path)?,
        size: std::fs::metadata(&path)?.len(),
        path,
    })
}

/// Size the work image for `dir`'s content plus room for results.
pub fn image_size_mib(dir: &Path) -> Result<u64> {
    let mut files = Vec::new();
    crate::util::walk(dir, &mut files)?;
    let mut bytes = 0u64;
    for f in files {
        bytes += std::fs::metadata(&f)?.len();
    }
    Ok(bytes / (1024 * 1024) * 11 / 10 + 64)
}

/// Make the work image from `dir`.
pub fn make_image(dir: &Path, out: &Path) -> Result<()> {
    mke2fs_d(dir, out, image_size_mib(dir)?, "colinux-work")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::debugfs_dump;

    #[test]
    fn work_files_survive_the_ext4_round_trip() {
        if crate::images::stage::which("mke2fs").is_err()
            || crate::images::stage::which("debugfs").is_err()
        {
            eprintln!("e2fsprogs missing; skipping");
            return;
        }
        let base = std::env::temp_dir().join(format!("colinux-wd-{}", std::process::id()));
        let dir = base.join("work");
        std::fs::create_dir_all(&dir).unwrap();
        let spec = WorkFile {
            name: "r.img".into(),
            kind: "random".into(),
            size_mib: 1,
            image: None,
            read_only: true,
        };
        let m = make_file(&dir, &spec, &|_| PathBuf::new()).unwrap();
        assert_eq!(m.size, 1 << 20);
        assert_eq!(
            std::fs::metadata(&m.path).unwrap().permissions().mode() & 0o777,
            0o444
        );
        let img = base.join("work.img");
        make_image(&dir, &img).unwrap();
        let back = base.join("back.img");
        debugfs_dump(&img, "/r.img", &back).unwrap();
        assert_eq!(sha256_file(&back).unwrap(), m.sha256);
        // An image copy keeps content and length, and its holes.
        let img_src = base.join("src.img");
        {
            let f = std::fs::File::create(&img_src).unwrap();
            f.set_len(8 << 20).unwrap();
            use std::os::unix::fs::FileExt;
            f.write_all_at(b"superblock", 4 << 20).unwrap();
        }
        let img_spec = WorkFile {
            name: "copy.img".into(),
            kind: "image".into(),
            size_mib: 0,
            image: Some("src".into()),
            read_only: false,
        };
        let c = make_file(&dir, &img_spec, &|_| img_src.clone()).unwrap();
        assert_eq!(c.sha256, sha256_file(&img_src).unwrap());
        assert_eq!(c.size, 8 << 20);
        use std::os::unix::fs::MetadataExt;
        assert!(
            std::fs::metadata(&c.path).unwrap().blocks() * 512 < 1 << 20,
            "the copy keeps the holes"
        );
        // Read back out of a work disk, it keeps content, length and holes;
        // a file that is not there is an error and leaves nothing behind.
        let img2 = base.join("work2.img");
        make_image(&dir, &img2).unwrap();
        let back2 = base.join("back2.img");
        debugfs_dump(&img2, "/copy.img", &back2).unwrap();
        assert_eq!(sha256_file(&back2).unwrap(), c.sha256);
        assert_eq!(std::fs::metadata(&back2).unwrap().len(), 8 << 20);
        assert!(
            std::fs::metadata(&back2).unwrap().blocks() * 512 < 1 << 20,
            "the dump keeps the holes"
        );
        let missing = base.join("missing.img");
        let e = debugfs_dump(&img2, "/missing.img", &missing).unwrap_err();
        assert!(format!("{e:#}").contains("missing.img"), "{e:#}");
        assert!(!missing.exists());
        let bad = WorkFile {
            kind: "nope".into(),
            ..spec
        };
        assert!(make_file(&dir, &bad, &|_| PathBuf::new()).is_err());
        std::fs::set_permissions(&m.path, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::remove_dir_all(&base).unwrap();
    }
}
