//! virtio-fs for `cofsN`: a host directory the guest mounts with
//! `mount -t virtiofs cofsN /mnt/x` (classic coLinux's cofs, today's transport).
//!
//! The FUSE requests are served in-process by fuse-backend-rs (cloud-hypervisor's
//! FUSE library): its `Server` decodes each request straight from the
//! descriptor chain and its passthrough file system answers it from the shared
//! directory. The device runs on its own thread like every device with queues,
//! so a slow host file system stalls only this share; the share ends with the
//! daemon. What stays inside the directory, and how users map, is the
//! passthrough's: every name is looked up relative to an already open
//! directory with `O_NOFOLLOW` (a symlink is resolved by the guest, in the
//! guest), names with `/` are refused, and `..` at the root is the root. A
//! read-only share is enforced here, before the server: every request that
//! would change the file system is answered `EROFS`.

use std::io;
use std::path::{Path, PathBuf};

use fuse_backend_rs::abi::fuse_abi::{
    FsOptions, InHeader, InitIn, InitOut, Opcode, OpenIn, OutHeader,
};
use fuse_backend_rs::api::server::Server;
use fuse_backend_rs::passthrough::{self, PassthroughFs};
use fuse_backend_rs::transport::{Reader, VirtioFsWriter};
use virtio_queue::{DescriptorChain, Queue};
use vm_memory::{ByteValued, GuestMemoryMmap};

use super::chain;
use super::{
    drain_raw_chains, Completions, VirtioDevice, F_RING_EVENT_IDX, F_RING_INDIRECT_DESC, TYPE_FS,
};

/// Size of each queue (the high-priority queue and the one request queue).
pub const QUEUE_SIZE: u16 = 256;
/// Longest tag the configuration structure holds (bytes, not NUL-terminated
/// when full).
pub const TAG_LEN: usize = 36;
/// How long the guest may trust a name or an attribute (virtiofsd's default).
const ATTR_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);
/// Request queues offered (besides the high-priority queue 0).
const REQUEST_QUEUES: u32 = 1;

/// Per-device counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FsStats {
    /// FUSE requests taken from the queues.
    pub requests: u64,
    /// Requests a read-only share answered `EROFS`.
    pub refused: u64,
    /// Chains that could not be read as a request (returned unused).
    pub malformed: u64,
}

/// Why a share cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// The tag does not fit the configuration structure.
    #[error("tag `{0}` is longer than {TAG_LEN} bytes")]
    TagTooLong(String),
    /// The passthrough file system could not open the directory.
    #[error("{}: {source}", dir.display())]
    Open {
        /// The shared directory.
        dir: PathBuf,
        /// What failed.
        source: io::Error,
    },
}

/// A virtio-fs device sharing one host directory.
pub struct FsDevice {
    tag: String,
    dir: PathBuf,
    read_only: bool,
    server: Server<PassthroughFs>,
    stats: FsStats,
}

impl FsDevice {
    /// A device sharing `dir` under `tag` (e.g. `cofs0`); `read_only` refuses
    /// every change.
    pub fn new(dir: &Path, tag: &str, read_only: bool) -> Result<Self, FsError> {
        if tag.len() > TAG_LEN {
            return Err(FsError::TagTooLong(tag.to_string()));
        }
        Ok(FsDevice {
            tag: tag.to_string(),
            dir: dir.to_path_buf(),
            read_only,
            server: open_server(dir)?,
            stats: FsStats::default(),
        })
    }

    /// Counters since creation.
    pub fn stats(&self) -> FsStats {
        self.stats
    }

    /// The shared directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn config_bytes(&self) -> [u8; TAG_LEN + 4] {
        let mut c = [0u8; TAG_LEN + 4];
        c[..self.tag.len()].copy_from_slice(self.tag.as_bytes());
        c[TAG_LEN..].copy_from_slice(&REQUEST_QUEUES.to_le_bytes());
        c
    }

    /// Serves one chain; returns the bytes written to the guest.
    fn serve(&mut self, dc: DescriptorChain<&GuestMemoryMmap>, mem: &GuestMemoryMmap) -> u32 {
        self.stats.requests += 1;
        private_umask();
        if self.read_only {
            if let Some(len) = refuse_change(dc.clone(), mem) {
                self.stats.refused += 1;
                return len;
            }
        }
        let init_flags = init_request_flags(dc.clone(), mem);
        let reader = Reader::from_descriptor_chain(mem, dc.clone());
        let writer = VirtioFsWriter::new(mem, dc.clone());
        let (Ok(reader), Ok(writer)) = (reader, writer) else {
            self.stats.malformed += 1;
            crate::guest_log!(debug, tag = %self.tag, "unreadable virtio-fs request dropped");
            return 0;
        };
        match self
            .server
            .handle_message(reader, writer.into(), None, None)
        {
            Ok(n) => {
                if let Some(capable) = init_flags {
                    widen_init_reply(dc, mem, capable);
                }
                u32::try_from(n).unwrap_or(u32::MAX)
            }
            Err(e) => {
                self.stats.malformed += 1;
                crate::guest_log!(debug, tag = %self.tag, error = %e, "virtio-fs request failed");
                0
            }
        }
    }
}

/// The FUSE server over a passthrough of `dir`.
fn open_server(dir: &Path) -> Result<Server<PassthroughFs>, FsError> {
    let err = |source| FsError::Open {
        dir: dir.to_path_buf(),
        source,
    };
    // virtiofsd's `--cache=auto`: close-to-open consistency, names and
    // attributes trusted for 1 s, so what the host changes shows soon.
    let config = passthrough::Config {
        root_dir: dir.to_string_lossy().into_owned(),
        do_import: true,
        cache_policy: passthrough::CachePolicy::Auto,
        entry_timeout: ATTR_TIMEOUT,
        attr_timeout: ATTR_TIMEOUT,
        ..Default::default()
    };
    let fs = PassthroughFs::<()>::new(config).map_err(err)?;
    // `import` clears the umask of the whole process (virtiofsd is a process
    // of its own); the daemon's other files (pid file, logs, sockets) keep
    // the user's. The threads that serve requests get a umask of their own,
    // see `private_umask`.
    // SAFETY: umask only sets the process's file mode mask and returns the old one.
    let user_umask = unsafe { libc::umask(0o022) };
    let imported = fs.import();
    // SAFETY: as above.
    unsafe { libc::umask(user_umask) };
    imported.map_err(err)?;
    Ok(Server::new(fs))
}

thread_local! {
    static PRIVATE_UMASK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Gives the calling thread its own umask of 0 (`unshare(CLONE_FS)`), once:
/// the guest sends the mode and umask of what it creates, so the host's must
/// not mask them again, yet the rest of the daemon keeps the user's umask.
fn private_umask() {
    if PRIVATE_UMASK.with(|p| p.replace(true)) {
        return;
    }
    // SAFETY: unshare(CLONE_FS) gives this thread a private copy of its
    // cwd/root/umask; umask then sets that copy. Neither touches memory.
    let own = unsafe { libc::unshare(libc::CLONE_FS) } == 0;
    if own {
        // SAFETY: as above.
        unsafe { libc::umask(0) };
    } else {
        tracing::warn!(
            "cofs: no thread-private umask ({}): files the guest creates lose the bits of the daemon's umask",
            io::Error::last_os_error()
        );
    }
}

/// The guest's `FUSE_INIT` flags when `dc` is an INIT request.
fn init_request_flags(
    dc: DescriptorChain<&GuestMemoryMmap>,
    mem: &GuestMemoryMmap,
) -> Option<FsOptions> {
    let mut r = Reader::from_descriptor_chain(mem, dc).ok()?;
    let h: InHeader = r.read_obj().ok()?;
    if !matches!(Opcode::from(h.opcode), Opcode::Init) {
        return None;
    }
    let i: InitIn = r.read_obj().ok()?;
    Some(FsOptions::from_bits_truncate(u64::from(i.flags)))
}

/// Largest request the server takes (its `MAX_BUFFER_SIZE`), in pages.
const MAX_REQUEST_PAGES: u16 = 256;

/// fuse-backend-rs's passthrough answers `FUSE_INIT` without `BIG_WRITES` or
/// `MAX_PAGES`, so the guest sends 4 KiB writes: a 1 MiB `write()` became 256
/// requests (measured: sequential writes at 0.13 of qemu+virtiofsd). Its
/// server takes requests of up to 1 MiB, so when the guest can, the reply is
/// widened to what virtiofsd negotiates: 1 MiB writes, 256 pages a request.
/// It also drops `PERFILE_DAX`, which the passthrough offers although this
/// device has no DAX window.
fn widen_init_reply(
    dc: DescriptorChain<&GuestMemoryMmap>,
    mem: &GuestMemoryMmap,
    capable: FsOptions,
) {
    let Ok(c) = chain::parse(dc, mem) else {
        return;
    };
    let header = std::mem::size_of::<OutHeader>() as u64;
    let mut out = InitOut::default();
    if !chain::gather(mem, &c.writable, header, out.as_mut_slice()) {
        return;
    }
    let mut flags = FsOptions::from_bits_truncate(u64::from(out.flags))
        | FsOptions::from_bits_truncate(u64::from(out.flags2) << 32);
    flags.remove(FsOptions::PERFILE_DAX);
    if capable.contains(FsOptions::MAX_PAGES) {
        flags |= FsOptions::MAX_PAGES | FsOptions::BIG_WRITES;
        out.max_pages = MAX_REQUEST_PAGES;
    } else if capable.contains(FsOptions::BIG_WRITES) {
        flags |= FsOptions::BIG_WRITES;
    } else {
        return;
    }
    out.max_write = u32::from(MAX_REQUEST_PAGES) * 4096;
    out.flags = flags.bits() as u32;
    out.flags2 = (flags.bits() >> 32) as u32;
    chain::scatter(mem, &c.writable, header, out.as_slice());
}

/// Whether an `OPEN` with these flags may change the file.
fn opens_for_change(flags: u32) -> bool {
    let flags = flags as i32;
    flags & libc::O_ACCMODE != libc::O_RDONLY || flags & (libc::O_TRUNC | libc::O_CREAT) != 0
}

/// Whether FUSE request `opcode` changes the file system by itself.
pub fn changes_files(opcode: u32) -> bool {
    matches!(
        Opcode::from(opcode),
        Opcode::Setattr
            | Opcode::Symlink
            | Opcode::Mknod
            | Opcode::Mkdir
            | Opcode::Unlink
            | Opcode::Rmdir
            | Opcode::Rename
            | Opcode::Link
            | Opcode::Write
            | Opcode::Setxattr
            | Opcode::Removexattr
            | Opcode::Create
            | Opcode::Fallocate
            | Opcode::Rename2
            | Opcode::CopyFileRange
            | Opcode::SetupMapping
    )
}

/// For a read-only share: answers a changing request `EROFS` and returns the
/// reply's length, or `None` to let the server serve it.
fn refuse_change(dc: DescriptorChain<&GuestMemoryMmap>, mem: &GuestMemoryMmap) -> Option<u32> {
    let mut r = Reader::from_descriptor_chain(mem, dc.clone()).ok()?;
    let h: InHeader = r.read_obj().ok()?;
    let refuse = changes_files(h.opcode)
        || (matches!(Opcode::from(h.opcode), Opcode::Open)
            && r.read_obj::<OpenIn>()
                .is_ok_and(|o| opens_for_change(o.flags)));
    if !refuse {
        return None;
    }
    let mut w = VirtioFsWriter::new(mem, dc).ok()?;
    let len = std::mem::size_of::<OutHeader>() as u32;
    let out = OutHeader {
        len,
        error: -libc::EROFS,
        unique: h.unique,
    };
    w.write_obj(out).ok()?;
    Some(len)
}

impl VirtioDevice for FsDevice {
    fn device_type(&self) -> u16 {
        TYPE_FS
    }
    fn pci_class(&self) -> u32 {
        0x01_80_00 // mass storage, other (as QEMU's vhost-user-fs-pci)
    }
    fn name(&self) -> String {
        format!("virtio-fs {}", self.tag)
    }
    fn features(&self) -> u64 {
        F_RING_INDIRECT_DESC | F_RING_EVENT_IDX
    }
    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE; 1 + REQUEST_QUEUES as usize]
    }
    fn config_space(&self) -> Vec<u8> {
        self.config_bytes().to_vec()
    }
    fn reset(&mut self) {
        // A new driver (a reboot in place) starts from FUSE_INIT with no
        // inodes: drop the old server's open files with it.
        match open_server(&self.dir) {
            Ok(s) => self.server = s,
            Err(e) => tracing::warn!(tag = %self.tag, "cannot reopen the share: {e}"),
        }
    }
    fn process_queue(
        &mut self,
        index: usize,
        queues: &mut [Queue],
        mem: &GuestMemoryMmap,
    ) -> Completions {
        Completions::of_queue(queues, index, |queue| {
            drain_raw_chains(queue, mem, |dc| self.serve(dc, mem))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changing_opcodes_are_refused_and_reading_ones_pass() {
        for op in [4, 6, 8, 9, 10, 11, 12, 13, 16, 21, 24, 35, 43, 45, 47] {
            assert!(changes_files(op), "opcode {op}");
        }
        for op in [
            1, 2, 3, 5, 14, 15, 17, 18, 22, 23, 25, 26, 27, 28, 34, 44, 46, 9999,
        ] {
            assert!(!changes_files(op), "opcode {op}");
        }
    }

    #[test]
    fn open_for_writing_truncating_or_creating_changes() {
        assert!(!opens_for_change(libc::O_RDONLY as u32));
        assert!(!opens_for_change(
            (libc::O_RDONLY | libc::O_NOFOLLOW) as u32
        ));
        assert!(opens_for_change(libc::O_WRONLY as u32));
        assert!(opens_for_change(libc::O_RDWR as u32));
        assert!(opens_for_change((libc::O_RDONLY | libc::O_TRUNC) as u32));
        assert!(opens_for_change((libc::O_RDONLY | libc::O_CREAT) as u32));
    }

    #[test]
    fn config_holds_the_tag_and_one_request_queue() {
        let dir = std::env::temp_dir();
        let d = FsDevice::new(&dir, "cofs7", false).unwrap();
        let mut c = [0u8; TAG_LEN + 4];
        d.read_config(0, &mut c);
        assert_eq!(&c[..5], b"cofs7");
        assert!(c[5..TAG_LEN].iter().all(|&b| b == 0));
        assert_eq!(u32::from_le_bytes(c[TAG_LEN..].try_into().unwrap()), 1);
        assert_eq!(d.queue_max_sizes().len(), 2);
        let long = "x".repeat(TAG_LEN + 1);
        assert!(matches!(
            FsDevice::new(&dir, &long, false),
            Err(FsError::TagTooLong(_))
        ));
    }
}
