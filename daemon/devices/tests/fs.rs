//! virtio-fs (cofs) through PCI: FUSE requests as the guest driver sends
//! them, answered from a real host directory. Checks the share's edges (no
//! way out through `..` or a slash in a name), the read-only share, and that
//! a malformed chain costs only itself.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use colinux_devices::virtio::fs::{FsDevice, TAG_LEN};
use colinux_devices::virtio::pci::VirtioPciDevice;
use common::*;
use vm_memory::{Bytes, GuestAddress};

const ROOT: u64 = 1;
const LOOKUP: u32 = 1;
const GETATTR: u32 = 3;
const MKDIR: u32 = 9;
const OPEN: u32 = 14;
const READ: u32 = 15;
const INIT: u32 = 26;
const CREATE: u32 = 35;
const REQUEST_QUEUE: u16 = 1;

struct Share {
    m: Machine,
    d: VirtioDriver,
    dir: TempDir,
    unique: u64,
}

impl Share {
    /// `share/hello` ("hello, host") and, beside the share, `secret`.
    fn new(read_only: bool) -> Share {
        Self::with_init_flags(read_only, 0).0
    }

    /// [`Share::new`] whose FUSE_INIT offers `flags`; also returns the INIT reply.
    fn with_init_flags(read_only: bool, flags: u32) -> (Share, Vec<u8>) {
        let dir = TempDir::new();
        dir.file("secret", b"outside the share");
        std::fs::create_dir(dir.0.join("share")).unwrap();
        dir.file("share/hello", b"hello, host");
        let mut m = Machine::new();
        let fs = FsDevice::new(&dir.0.join("share"), "cofs0", read_only).unwrap();
        let dev = VirtioPciDevice::new(fs, m.mem.clone(), m.sink.clone(), Some(10));
        let slot = m.add(Box::new(dev));
        let mut d = VirtioDriver::probe(&mut m, slot);
        d.init(&mut m, EVENT_IDX, true, 64);
        let mut s = Share {
            m,
            d,
            dir,
            unique: 0,
        };
        let mut init = Vec::new();
        for v in [7u32, 31, 0x2_0000, flags] {
            init.extend_from_slice(&v.to_le_bytes());
        }
        let (err, reply) = s.call(INIT, 0, &init, 256);
        assert_eq!(err, 0, "FUSE_INIT answered");
        assert_eq!(u32::from_le_bytes(reply[0..4].try_into().unwrap()), 7);
        (s, reply)
    }

    fn share_path(&self, name: &str) -> PathBuf {
        self.dir.0.join("share").join(name)
    }

    /// Sends one request on the request queue; returns the reply's error
    /// (0 or a negative errno) and body.
    fn call(&mut self, opcode: u32, nodeid: u64, body: &[u8], out_len: usize) -> (i32, Vec<u8>) {
        self.unique += 1;
        let mut req = Vec::new();
        req.extend_from_slice(&(40 + body.len() as u32).to_le_bytes());
        req.extend_from_slice(&opcode.to_le_bytes());
        req.extend_from_slice(&self.unique.to_le_bytes());
        req.extend_from_slice(&nodeid.to_le_bytes());
        req.extend_from_slice(&[0u8; 16]); // uid, gid, pid, padding
        req.extend_from_slice(body);
        let (err, used, reply) = self.raw(&req, 16 + out_len);
        assert!(used >= 16, "a reply header");
        assert_eq!(
            u64::from_le_bytes(reply[8..16].try_into().unwrap()),
            self.unique
        );
        let len = u32::from_le_bytes(reply[0..4].try_into().unwrap()) as usize;
        assert_eq!(len, used as usize, "reply length as used");
        (err, reply[16..len].to_vec())
    }

    /// Puts `req` and an `out_len` writable buffer on the request queue;
    /// returns (error field, used length, reply bytes).
    fn raw(&mut self, req: &[u8], out_len: usize) -> (i32, u32, Vec<u8>) {
        let a = self.d.alloc(req.len().max(1));
        self.m.mem.write_slice(req, GuestAddress(a)).unwrap();
        let b = self.d.alloc(out_len);
        self.m
            .mem
            .write_slice(&vec![0u8; out_len], GuestAddress(b))
            .unwrap();
        let q = &mut self.d.queues[usize::from(REQUEST_QUEUE)];
        q.add_chain(
            &self.m.mem,
            &[(a, req.len() as u32, false), (b, out_len as u32, true)],
        );
        self.d.kick(&mut self.m, REQUEST_QUEUE);
        let q = &mut self.d.queues[usize::from(REQUEST_QUEUE)];
        let (_, used) = q.pop_used(&self.m.mem).expect("request completed");
        let mut reply = vec![0u8; out_len];
        self.m.mem.read_slice(&mut reply, GuestAddress(b)).unwrap();
        let err = i32::from_le_bytes(reply[4..8].try_into().unwrap());
        (err, used, reply)
    }

    /// LOOKUP `name` under `parent`: (error, nodeid, host inode number).
    fn lookup(&mut self, parent: u64, name: &[u8]) -> (i32, u64, u64) {
        let mut n = name.to_vec();
        n.push(0);
        let (err, r) = self.call(LOOKUP, parent, &n, 128);
        if err != 0 {
            return (err, 0, 0);
        }
        let word = |o: usize| u64::from_le_bytes(r[o..o + 8].try_into().unwrap());
        (0, word(0), word(40))
    }

    fn mkdir(&mut self, name: &str) -> i32 {
        let mut b = Vec::new();
        b.extend_from_slice(&0o755u32.to_le_bytes());
        b.extend_from_slice(&0o022u32.to_le_bytes());
        b.extend_from_slice(name.as_bytes());
        b.push(0);
        self.call(MKDIR, ROOT, &b, 128).0
    }

    fn create(&mut self, name: &str) -> i32 {
        let mut b = Vec::new();
        for v in [
            libc::O_WRONLY as u32 | libc::O_CREAT as u32,
            0o644,
            0o022,
            0,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(name.as_bytes());
        b.push(0);
        self.call(CREATE, ROOT, &b, 256).0
    }

    /// OPEN `nodeid` with `flags`: (error, file handle).
    fn open(&mut self, nodeid: u64, flags: i32) -> (i32, u64) {
        let mut b = (flags as u32).to_le_bytes().to_vec();
        b.extend_from_slice(&0u32.to_le_bytes());
        let (err, r) = self.call(OPEN, nodeid, &b, 16);
        let fh = if err == 0 {
            u64::from_le_bytes(r[0..8].try_into().unwrap())
        } else {
            0
        };
        (err, fh)
    }

    fn read(&mut self, nodeid: u64, fh: u64, size: u32) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&fh.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes()); // offset
        b.extend_from_slice(&size.to_le_bytes());
        b.extend_from_slice(&[0u8; 20]); // read_flags, lock_owner, flags, padding
        let (err, data) = self.call(READ, nodeid, &b, size as usize);
        assert_eq!(err, 0, "READ answered");
        data
    }
}

#[test]
fn the_tag_is_in_the_configuration() {
    let mut s = Share::new(false);
    let mut tag = Vec::new();
    for i in 0..TAG_LEN as u64 {
        tag.push(s.d.device_cfg(&mut s.m, i, 1) as u8);
    }
    assert_eq!(&tag[..5], b"cofs0");
    assert!(tag[5..].iter().all(|&b| b == 0));
    assert_eq!(
        s.d.device_cfg(&mut s.m, TAG_LEN as u64, 4),
        1,
        "request queues"
    );
    assert_eq!(s.d.queues.len(), 2, "hiprio and one request queue");
}

#[test]
fn files_of_the_share_are_read() {
    let mut s = Share::new(false);
    let (err, node, ino) = s.lookup(ROOT, b"hello");
    assert_eq!(err, 0);
    assert_eq!(ino, std::fs::metadata(s.share_path("hello")).unwrap().ino());
    let (err, fh) = s.open(node, libc::O_RDONLY);
    assert_eq!(err, 0);
    assert_eq!(s.read(node, fh, 4096), b"hello, host");
}

#[test]
fn dot_dot_at_the_root_is_the_root_and_slashes_are_refused() {
    let mut s = Share::new(false);
    let root_ino = std::fs::metadata(s.dir.0.join("share")).unwrap().ino();
    let (err, node, ino) = s.lookup(ROOT, b"..");
    assert_eq!(err, 0);
    assert_eq!(
        (node, ino),
        (ROOT, root_ino),
        "`..` of the root is the root"
    );
    assert_eq!(s.lookup(ROOT, b"secret").0, -libc::ENOENT);
    assert_eq!(s.lookup(ROOT, b"../secret").0, -libc::EINVAL);
    assert_eq!(s.lookup(ROOT, b"/etc").0, -libc::EINVAL);
    // From a directory inside, `..` climbs back to the root and no further.
    assert_eq!(s.mkdir("sub"), 0);
    let (_, sub, _) = s.lookup(ROOT, b"sub");
    let (err, up, _) = s.lookup(sub, b"..");
    assert_eq!((err, up), (0, ROOT));
    let (err, up2, ino2) = s.lookup(up, b"..");
    assert_eq!((err, up2, ino2), (0, ROOT, root_ino));
}

#[test]
fn a_writable_share_takes_changes() {
    let mut s = Share::new(false);
    assert_eq!(s.mkdir("made"), 0);
    assert!(s.share_path("made").is_dir());
    assert_eq!(s.create("new.txt"), 0);
    assert!(s.share_path("new.txt").is_file());
}

#[test]
fn a_read_only_share_refuses_every_change() {
    let mut s = Share::new(true);
    assert_eq!(s.mkdir("made"), -libc::EROFS);
    assert_eq!(s.create("new.txt"), -libc::EROFS);
    let (_, node, _) = s.lookup(ROOT, b"hello");
    assert_eq!(s.open(node, libc::O_WRONLY).0, -libc::EROFS);
    assert_eq!(s.open(node, libc::O_RDWR).0, -libc::EROFS);
    assert_eq!(s.open(node, libc::O_RDONLY | libc::O_TRUNC).0, -libc::EROFS);
    let (err, fh) = s.open(node, libc::O_RDONLY);
    assert_eq!(err, 0, "reading stays allowed");
    assert_eq!(s.read(node, fh, 64), b"hello, host");
    assert!(!s.share_path("made").exists());
    assert!(!s.share_path("new.txt").exists());
    assert_eq!(
        std::fs::read(s.share_path("hello")).unwrap(),
        b"hello, host"
    );
}

#[test]
fn a_malformed_request_costs_only_itself() {
    let mut s = Share::new(false);
    // Too short for a FUSE header, then a header whose length lies.
    let (_, used, _) = s.raw(&[1, 2, 3], 64);
    assert_eq!(used, 0, "no reply to a request without a header");
    let mut lying = Vec::new();
    lying.extend_from_slice(&u32::MAX.to_le_bytes());
    lying.extend_from_slice(&GETATTR.to_le_bytes());
    lying.extend_from_slice(&[0u8; 32]);
    let (_, used, _) = s.raw(&lying, 64);
    assert!(used == 0 || used >= 16);
    // The device still serves the next request.
    let (err, _, _) = s.lookup(ROOT, b"hello");
    assert_eq!(err, 0);
}

const BIG_WRITES: u32 = 1 << 5;
const MAX_PAGES: u32 = 1 << 22;
const WRITE: u32 = 16;

fn field32(r: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(r[at..at + 4].try_into().unwrap())
}

#[test]
fn init_offers_one_mib_requests_to_a_guest_that_can_take_them() {
    // InitOut: flags at 12, max_write at 20, max_pages at 28.
    let (_, plain) = Share::with_init_flags(false, 0);
    assert_eq!(field32(&plain, 12) & (BIG_WRITES | MAX_PAGES), 0);
    assert_eq!(field32(&plain, 20), 4096, "4 KiB writes without BIG_WRITES");
    let (mut s, wide) = Share::with_init_flags(false, BIG_WRITES | MAX_PAGES);
    assert_eq!(
        field32(&wide, 12) & (BIG_WRITES | MAX_PAGES),
        BIG_WRITES | MAX_PAGES
    );
    assert_eq!(field32(&wide, 20), 1 << 20, "max_write");
    assert_eq!(u16::from_le_bytes(wide[28..30].try_into().unwrap()), 256);
    // And the server takes such a write: 128 KiB in one request.
    assert_eq!(s.create("big"), 0);
    let (_, node, _) = s.lookup(ROOT, b"big");
    let (err, fh) = s.open(node, libc::O_WRONLY);
    assert_eq!(err, 0);
    let data: Vec<u8> = (0..128 * 1024u32).map(|i| (i % 251) as u8).collect();
    let mut b = Vec::new();
    b.extend_from_slice(&fh.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes()); // offset
    b.extend_from_slice(&(data.len() as u32).to_le_bytes());
    b.extend_from_slice(&[0u8; 20]); // write_flags, lock_owner, flags, padding
    b.extend_from_slice(&data);
    let (err, r) = s.call(WRITE, node, &b, 8);
    assert_eq!(err, 0);
    assert_eq!(field32(&r, 0) as usize, data.len(), "written");
    assert_eq!(std::fs::read(s.share_path("big")).unwrap(), data);
}

#[test]
fn attributes_follow_what_the_host_changes() {
    let mut s = Share::new(false);
    let (_, node, _) = s.lookup(ROOT, b"hello");
    // GETATTR: getattr_flags, dummy, fh; AttrOut: attr_valid(8), nsec(4),
    // dummy(4), then the attributes with the size at 8.
    let getattr_size = |s: &mut Share| {
        let (err, r) = s.call(GETATTR, node, &[0u8; 16], 104);
        assert_eq!(err, 0);
        assert_eq!(u64::from_le_bytes(r[0..8].try_into().unwrap()), 1, "1 s");
        u64::from_le_bytes(r[24..32].try_into().unwrap())
    };
    assert_eq!(getattr_size(&mut s), 11);
    std::fs::OpenOptions::new()
        .append(true)
        .open(s.share_path("hello"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, b", again"))
        .unwrap();
    assert_eq!(getattr_size(&mut s), 18);
    let (err, node2, _) = s.lookup(ROOT, b"hello");
    assert_eq!((err, node2), (0, node), "the same inode");
}

#[test]
fn the_daemon_keeps_its_umask_and_guest_modes_are_kept() {
    // The device serves on a thread of its own, as in the daemon; this
    // thread stands for the rest of the daemon, with a umask of 027.
    // SAFETY (umask): sets the process's file mode mask, returns the old one.
    let before = unsafe { libc::umask(0o027) };
    let made = std::thread::spawn(|| {
        let mut s = Share::new(false);
        // MKDIR asks for 0755 with the guest's umask 022: the host's 027
        // must not mask it again (that would give 0750).
        assert_eq!(s.mkdir("shared"), 0);
        std::fs::metadata(s.share_path("shared")).unwrap()
    })
    .join()
    .unwrap();
    let after = unsafe { libc::umask(before) };
    assert_eq!(
        after, 0o027,
        "serving a share leaves the daemon's umask alone"
    );
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&made.permissions()) & 0o777,
        0o755
    );
}
