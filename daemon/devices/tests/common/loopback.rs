//! An in-memory [`NetBackend`] for tests: frames to the guest are queued by the
//! test, frames from the guest are recorded, and either direction can be made
//! to fail. It can claim guest-to-host offloads, recording frames sent with
//! their virtio-net header apart from plain ones.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};

use colinux_net::{NetBackend, NetStats, Offloads, VnetHdr};
use vmm_sys_util::eventfd::EventFd;

#[derive(Default)]
pub struct LoopState {
    pub to_guest: VecDeque<Vec<u8>>,
    pub from_guest: Vec<Vec<u8>>,
    pub fail_send: bool,
    pub fail_recv: bool,
    pub recv_calls: usize,
    /// Frames that came through `send_offloaded`, with their header.
    pub offloaded: Vec<(VnetHdr, Vec<u8>)>,
}

/// The backend half handed to the device; the test keeps `state`.
pub struct Loopback {
    pub state: Arc<Mutex<LoopState>>,
    fd: EventFd,
    offloads: Offloads,
}

impl Loopback {
    pub fn new() -> (Self, Arc<Mutex<LoopState>>) {
        let state = Arc::new(Mutex::new(LoopState::default()));
        (
            Loopback {
                state: state.clone(),
                fd: EventFd::new(libc::EFD_NONBLOCK).unwrap(),
                offloads: Offloads::NONE,
            },
            state,
        )
    }

    /// A loopback that claims `offloads`.
    pub fn with_offloads(offloads: Offloads) -> (Self, Arc<Mutex<LoopState>>) {
        let (mut l, state) = Self::new();
        l.offloads = offloads;
        (l, state)
    }
}

impl NetBackend for Loopback {
    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        let mut s = self.state.lock().unwrap();
        if s.fail_send {
            return Err(io::Error::other("send failure injected"));
        }
        s.from_guest.push(frame.to_vec());
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let mut s = self.state.lock().unwrap();
        s.recv_calls += 1;
        if s.fail_recv {
            return Err(io::Error::other("recv failure injected"));
        }
        match s.to_guest.pop_front() {
            Some(f) => {
                let n = f.len().min(buf.len());
                buf[..n].copy_from_slice(&f[..n]);
                // A frame longer than the buffer reports its real length, as
                // a truncating socket read (MSG_TRUNC) would.
                Ok(Some(f.len()))
            }
            None => Ok(None),
        }
    }

    fn ready_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn stats(&self) -> NetStats {
        NetStats::default()
    }

    fn offloads(&self) -> Offloads {
        self.offloads
    }

    fn send_offloaded(&mut self, hdr: &VnetHdr, frame: &[u8]) -> io::Result<()> {
        let mut s = self.state.lock().unwrap();
        if s.fail_send {
            return Err(io::Error::other("send failure injected"));
        }
        s.offloaded.push((*hdr, frame.to_vec()));
        Ok(())
    }
}
