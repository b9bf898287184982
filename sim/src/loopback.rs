//! A [`NetBackend`] for tests: frames the guest sends are kept (and, in echo
//! mode, handed straight back to the guest); frames a test injects go to the
//! guest. It can fail sends or receives and stall delivery on demand, so the
//! device's error paths can be driven from a test.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};

use colinux_net::{NetBackend, NetStats};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

#[derive(Debug, Default)]
struct State {
    to_guest: VecDeque<Vec<u8>>,
    from_guest: Vec<Vec<u8>>,
    echo: bool,
    failing_sends: u32,
    failing_recvs: u32,
    stalled: bool,
    stats: NetStats,
}

/// The test's side of a [`Loopback`]: inject frames, read what the guest
/// sent, arm faults.
#[derive(Clone)]
pub struct LoopbackHandle {
    state: Arc<Mutex<State>>,
    ready: Arc<EventFd>,
}

/// The backend the virtio-net device owns.
pub struct Loopback {
    handle: LoopbackHandle,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Loopback {
    /// A backend; with `echo`, every frame the guest sends comes back to it.
    pub fn new(echo: bool) -> io::Result<(Loopback, LoopbackHandle)> {
        let handle = LoopbackHandle {
            state: Arc::new(Mutex::new(State {
                echo,
                ..State::default()
            })),
            ready: Arc::new(EventFd::new(EFD_NONBLOCK)?),
        };
        Ok((
            Loopback {
                handle: handle.clone(),
            },
            handle,
        ))
    }
}

impl LoopbackHandle {
    fn signal(&self, s: &State) {
        if !s.to_guest.is_empty() && !s.stalled {
            let _ = self.ready.write(1);
        } else {
            let _ = self.ready.read();
        }
    }

    /// Queues `frame` for the guest.
    pub fn inject(&self, frame: Vec<u8>) {
        let mut s = lock(&self.state);
        s.to_guest.push_back(frame);
        self.signal(&s);
    }

    /// Every frame the guest sent so far, in order.
    pub fn sent(&self) -> Vec<Vec<u8>> {
        lock(&self.state).from_guest.clone()
    }

    /// Frames still waiting for the guest.
    pub fn waiting(&self) -> usize {
        lock(&self.state).to_guest.len()
    }

    /// Makes the next `n` sends fail with `EIO`.
    pub fn fail_sends(&self, n: u32) {
        lock(&self.state).failing_sends = n;
    }

    /// Makes the next `n` receives fail with `EIO`.
    pub fn fail_recvs(&self, n: u32) {
        lock(&self.state).failing_recvs = n;
    }

    /// Stalls (or resumes) delivery to the guest: a stalled backend reports
    /// nothing to read.
    pub fn set_stalled(&self, stalled: bool) {
        let mut s = lock(&self.state);
        s.stalled = stalled;
        self.signal(&s);
    }
}

impl NetBackend for Loopback {
    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        let h = &self.handle;
        let mut s = lock(&h.state);
        if s.failing_sends > 0 {
            s.failing_sends -= 1;
            s.stats.tx_dropped += 1;
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        s.from_guest.push(frame.to_vec());
        s.stats.tx_frames += 1;
        if s.echo {
            s.to_guest.push_back(frame.to_vec());
        }
        h.signal(&s);
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let h = &self.handle;
        let mut s = lock(&h.state);
        if s.stalled {
            return Ok(None);
        }
        if s.failing_recvs > 0 {
            s.failing_recvs -= 1;
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        let r = match s.to_guest.pop_front() {
            Some(f) if f.len() <= buf.len() => {
                buf[..f.len()].copy_from_slice(&f);
                s.stats.rx_frames += 1;
                Some(f.len())
            }
            Some(f) => {
                // Longer than the device's buffer: report its length, as a
                // socket would truncate; the device drops it as oversize.
                let n = buf.len();
                buf.copy_from_slice(&f[..n]);
                s.stats.rx_dropped += 1;
                Some(f.len().min(n))
            }
            None => None,
        };
        h.signal(&s);
        Ok(r)
    }

    fn ready_fd(&self) -> RawFd {
        self.handle.ready.as_raw_fd()
    }

    fn stats(&self) -> NetStats {
        lock(&self.handle.state).stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fd::readable;

    #[test]
    fn echo_faults_and_stall() {
        let (mut b, h) = Loopback::new(true).unwrap();
        let mut buf = [0u8; 64];
        assert!(!readable(b.ready_fd()));
        assert_eq!(b.recv(&mut buf).unwrap(), None);
        h.fail_sends(1);
        assert!(b.send(&[1; 20]).is_err());
        b.send(&[2; 20]).unwrap();
        assert!(readable(b.ready_fd()), "echoed frame pending");
        h.set_stalled(true);
        assert!(!readable(b.ready_fd()));
        assert_eq!(b.recv(&mut buf).unwrap(), None);
        h.set_stalled(false);
        h.fail_recvs(1);
        assert!(b.recv(&mut buf).is_err());
        assert_eq!(b.recv(&mut buf).unwrap(), Some(20));
        assert_eq!(&buf[..20], &[2; 20]);
        assert!(!readable(b.ready_fd()), "drained");
        assert_eq!(h.sent(), vec![vec![2; 20]]);
        let s = b.stats();
        assert_eq!((s.tx_frames, s.tx_dropped, s.rx_frames), (1, 1, 1));
    }
}
