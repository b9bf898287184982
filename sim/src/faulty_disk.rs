//! A [`BlockBackend`] for tests: an in-memory disk that can fail or stall
//! chosen calls, and that tells what the guest may rely on after a crash.
//!
//! It keeps two copies of the disk: what reads see (`contents`) and what a
//! successful flush made durable (`durable`). A failing call changes nothing;
//! a stalled call sleeps before doing its work, on the caller's thread (the
//! daemon serves block requests on the vCPU thread that rang the doorbell, so
//! the stall is felt exactly where a slow host disk would be felt).

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use colinux_devices::block::BlockBackend;

/// The kinds of backend calls faults can be aimed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DiskOp {
    /// [`BlockBackend::read_at`].
    Read,
    /// [`BlockBackend::write_at`].
    Write,
    /// [`BlockBackend::flush`].
    Flush,
    /// [`BlockBackend::discard`] and [`BlockBackend::write_zeroes`].
    Discard,
}

/// How one backend call ended, as recorded in [`FaultyDiskHandle::calls`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallResult {
    /// It did its work.
    Done,
    /// It did its work after sleeping this many milliseconds.
    Stalled(u64),
    /// It failed with `EIO` and changed nothing.
    Failed,
}

/// One backend call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskCall {
    /// Which operation.
    pub op: DiskOp,
    /// Byte offset (0 for a flush).
    pub offset: u64,
    /// Byte length (0 for a flush).
    pub len: u64,
    /// How it ended.
    pub result: CallResult,
}

#[derive(Debug, Default)]
struct State {
    contents: Vec<u8>,
    durable: Vec<u8>,
    failing: BTreeMap<DiskOp, u32>,
    stalls: BTreeMap<DiskOp, (u32, Duration)>,
    calls: Vec<DiskCall>,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The test's side of a [`FaultyDisk`]: arm faults, read the disk back.
#[derive(Clone)]
pub struct FaultyDiskHandle {
    state: Arc<Mutex<State>>,
}

/// The backend a virtio-blk device owns.
pub struct FaultyDisk {
    handle: FaultyDiskHandle,
    read_only: bool,
}

impl FaultyDisk {
    /// A disk holding `contents` (all of it durable), read-only if asked.
    pub fn new(contents: Vec<u8>, read_only: bool) -> (FaultyDisk, FaultyDiskHandle) {
        let handle = FaultyDiskHandle {
            state: Arc::new(Mutex::new(State {
                durable: contents.clone(),
                contents,
                ..State::default()
            })),
        };
        (
            FaultyDisk {
                handle: handle.clone(),
                read_only,
            },
            handle,
        )
    }

    /// Counts the call, fails or stalls it as armed; `Ok` means do the work.
    fn enter(&self, op: DiskOp, offset: u64, len: u64) -> io::Result<()> {
        let mut s = lock(&self.handle.state);
        if let Some(n) = s.failing.get_mut(&op).filter(|n| **n > 0) {
            *n -= 1;
            s.calls.push(DiskCall {
                op,
                offset,
                len,
                result: CallResult::Failed,
            });
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        let stall = match s.stalls.get_mut(&op).filter(|(n, _)| *n > 0) {
            Some((n, d)) => {
                *n -= 1;
                Some(*d)
            }
            None => None,
        };
        s.calls.push(DiskCall {
            op,
            offset,
            len,
            result: match stall {
                Some(d) => CallResult::Stalled(d.as_millis() as u64),
                None => CallResult::Done,
            },
        });
        drop(s);
        if let Some(d) = stall {
            std::thread::sleep(d);
        }
        Ok(())
    }

    fn range(&self, offset: u64, len: u64) -> io::Result<std::ops::Range<usize>> {
        let size = lock(&self.handle.state).contents.len() as u64;
        match offset.checked_add(len) {
            Some(end) if end <= size => Ok(offset as usize..end as usize),
            _ => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{len} bytes at {offset} run past the {size}-byte disk"),
            )),
        }
    }

    fn zero(&self, op: DiskOp, offset: u64, len: u64) -> io::Result<()> {
        self.enter(op, offset, len)?;
        let r = self.range(offset, len)?;
        lock(&self.handle.state).contents[r].fill(0);
        Ok(())
    }
}

impl FaultyDiskHandle {
    /// Makes the next `n` calls of `op` fail with `EIO`.
    pub fn fail_next(&self, op: DiskOp, n: u32) {
        lock(&self.state).failing.insert(op, n);
    }

    /// Makes the next `n` calls of `op` sleep `delay` before doing their work.
    pub fn stall_next(&self, op: DiskOp, n: u32, delay: Duration) {
        lock(&self.state).stalls.insert(op, (n, delay));
    }

    /// What reads see now.
    pub fn contents(&self) -> Vec<u8> {
        lock(&self.state).contents.clone()
    }

    /// What the last successful flush made durable (what a host crash keeps).
    pub fn durable(&self) -> Vec<u8> {
        lock(&self.state).durable.clone()
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<DiskCall> {
        lock(&self.state).calls.clone()
    }
}

impl BlockBackend for FaultyDisk {
    fn name(&self) -> String {
        "faulty-disk".to_string()
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn size(&self) -> u64 {
        lock(&self.handle.state).contents.len() as u64
    }

    fn supports_discard(&self) -> bool {
        !self.read_only
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.enter(DiskOp::Read, offset, buf.len() as u64)?;
        let r = self.range(offset, buf.len() as u64)?;
        buf.copy_from_slice(&lock(&self.handle.state).contents[r]);
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.enter(DiskOp::Write, offset, buf.len() as u64)?;
        let r = self.range(offset, buf.len() as u64)?;
        lock(&self.handle.state).contents[r].copy_from_slice(buf);
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        self.enter(DiskOp::Flush, 0, 0)?;
        let mut s = lock(&self.handle.state);
        s.durable = s.contents.clone();
        Ok(())
    }

    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        self.zero(DiskOp::Discard, offset, len)
    }

    fn write_zeroes(&self, offset: u64, len: u64, _unmap: bool) -> io::Result<()> {
        self.zero(DiskOp::Discard, offset, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_change_nothing_and_are_counted_down() {
        let (d, h) = FaultyDisk::new(vec![1; 1024], false);
        h.fail_next(DiskOp::Write, 1);
        assert!(d.write_at(&[9; 512], 0).is_err());
        assert_eq!(h.contents(), vec![1; 1024]);
        d.write_at(&[9; 512], 512).unwrap();
        assert_eq!(&h.contents()[512..], &[9; 512][..]);
        assert_eq!(h.durable(), vec![1; 1024], "not flushed yet");
        h.fail_next(DiskOp::Flush, 1);
        assert!(d.flush().is_err());
        assert_eq!(h.durable(), vec![1; 1024]);
        d.flush().unwrap();
        assert_eq!(h.durable(), h.contents());
        let results: Vec<_> = h.calls().iter().map(|c| c.result).collect();
        assert_eq!(
            results,
            [
                CallResult::Failed,
                CallResult::Done,
                CallResult::Failed,
                CallResult::Done
            ]
        );
    }

    #[test]
    fn out_of_range_is_an_error_not_a_panic() {
        let (d, _h) = FaultyDisk::new(vec![0; 512], false);
        let mut b = [0u8; 512];
        assert!(d.read_at(&mut b, 1).is_err());
        assert!(d.write_at(&b, u64::MAX).is_err());
        assert!(d.discard(u64::MAX - 1, 2).is_err());
    }

    #[test]
    fn a_stall_sleeps_then_works() {
        let (d, h) = FaultyDisk::new(vec![5; 512], false);
        h.stall_next(DiskOp::Read, 1, Duration::from_millis(30));
        let t = std::time::Instant::now();
        let mut b = [0u8; 512];
        d.read_at(&mut b, 0).unwrap();
        assert!(t.elapsed() >= Duration::from_millis(30));
        assert_eq!(b, [5; 512]);
        assert_eq!(h.calls()[0].result, CallResult::Stalled(30));
    }
}
