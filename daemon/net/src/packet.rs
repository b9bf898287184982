//! The `pcap-bridge` / `ndis-bridge` backend: the guest NIC bridged onto a host
//! interface through an AF_PACKET socket (`SOCK_RAW`, `ETH_P_ALL`, bound to the
//! interface index).
//!
//! The guest talks to the LAN with its own MAC. The interface is made
//! promiscuous through a `PACKET_MR_PROMISC` membership (or, for `nopromisc`,
//! only the guest MAC is added to its unicast filter plus all-multicast); the
//! kernel drops the membership when the socket closes. A socket filter passes
//! only frames for the guest MAC and group addresses, and frames leaving the
//! interface (`PACKET_OUTGOING`, including the guest's own) are ignored, so the
//! guest does not hear itself. Offloads pending on received frames (GRO
//! super-frames, partial checksums) are finished in software ([`crate::offload`]).
//!
//! Like the classic pcap bridge, the host itself does not see the guest's frames
//! on that interface (they leave by the wire); use a second NIC (tuntap) for
//! host↔guest traffic.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::offload::{self, VnetHdr, VNET_HDR_LEN};
use crate::stats::AtomicStats;
use crate::wire::{self, format_mac};
use crate::{frame_len_ok, netif, quiet, NetBackend, NetError, NetStats};

const PACKET_VNET_HDR: libc::c_int = 15;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
/// Receive buffer: the virtio-net header plus the largest GRO super-frame.
const RECV_BUF: usize = VNET_HDR_LEN + 65536 + 1024;
/// Segments of split super-frames waiting for the guest before new ones drop.
const PENDING_LIMIT: usize = 256;

/// A bridge onto a host interface; see the module documentation.
pub struct PacketBridge {
    fd: OwnedFd,
    ifname: String,
    ifindex: u32,
    failed: bool,
    stats: AtomicStats,
    buf: Box<[u8]>,
    pending: VecDeque<Vec<u8>>,
    mac: [u8; 6],
}

fn setsockopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, val: &T) -> io::Result<()> {
    // SAFETY: val points to a T of the size we pass; the kernel copies it.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (val as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// A classic BPF program accepting frames whose destination is `mac` or a
/// group address (I/G bit set), dropping the rest inside the kernel.
fn mac_filter(mac: [u8; 6]) -> [libc::sock_filter; 8] {
    let op = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    let (ld_b, ld_h, ld_w) = (0x30, 0x28, 0x20); // BPF_LD|BPF_ABS|{B,H,W}
    let (jset, jeq, ret) = (0x45, 0x15, 0x06); // BPF_JMP|{JSET,JEQ}|BPF_K, BPF_RET|BPF_K
    let hi = u32::from(u16::from_be_bytes([mac[0], mac[1]]));
    let lo = u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]]);
    [
        op(ld_b, 0, 0, 0),
        op(jset, 4, 0, 1), // group address -> accept
        op(ld_w, 0, 0, 2),
        op(jeq, 0, 3, lo), // mismatch -> drop
        op(ld_h, 0, 0, 0),
        op(jeq, 0, 1, hi), // match -> accept, else drop
        op(ret, 0, 0, 0x40000),
        op(ret, 0, 0, 0),
    ]
}

impl PacketBridge {
    /// Bridges onto host interface `name` for a guest NIC with MAC `mac`;
    /// `promiscuous` chooses `promisc` (default) or `nopromisc`.
    pub fn open(name: &str, mac: [u8; 6], promiscuous: bool) -> Result<Self, NetError> {
        netif::check_name(name)?;
        let ifindex =
            netif::index(name).ok_or_else(|| NetError::NoSuchInterface(name.to_string()))?;
        // Protocol 0: receive nothing until bound to the interface below, so no
        // frame of another interface slips into the queue.
        // SAFETY: plain socket(2); the result is checked and owned.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if raw < 0 {
            return Err(NetError::last_os(
                "creating an AF_PACKET socket (needs CAP_NET_RAW)",
            ));
        }
        // SAFETY: raw is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let s = fd.as_raw_fd();
        let ctx = |what: &str| format!("{what} on {name}");
        setsockopt(s, libc::SOL_PACKET, PACKET_VNET_HDR, &1 as &libc::c_int)
            .map_err(|e| NetError::io(ctx("PACKET_VNET_HDR"), e))?;
        if let Err(e) = setsockopt(
            s,
            libc::SOL_PACKET,
            PACKET_IGNORE_OUTGOING,
            &1 as &libc::c_int,
        ) {
            // Kernels before 4.20: we still skip PACKET_OUTGOING frames by hand.
            tracing::debug!(target: "colinux_net::bridge", "PACKET_IGNORE_OUTGOING: {e}");
        }
        let prog = mac_filter(mac);
        let fprog = libc::sock_fprog {
            len: prog.len() as u16,
            filter: prog.as_ptr() as *mut libc::sock_filter,
        };
        setsockopt(s, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog)
            .map_err(|e| NetError::io(ctx("attaching the MAC filter"), e))?;
        // SAFETY: sockaddr_ll is plain data; zero is a valid starting value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: sll is a valid sockaddr_ll of the size passed.
        let rc = unsafe {
            libc::bind(
                s,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(NetError::last_os(ctx("binding the packet socket")));
        }
        let membership = |ty: libc::c_int, addr: Option<[u8; 6]>| {
            let mut mr = libc::packet_mreq {
                mr_ifindex: ifindex as i32,
                mr_type: ty as u16,
                mr_alen: 0,
                mr_address: [0; 8],
            };
            if let Some(a) = addr {
                mr.mr_alen = 6;
                mr.mr_address[..6].copy_from_slice(&a);
            }
            setsockopt(s, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mr)
        };
        if promiscuous {
            membership(libc::PACKET_MR_PROMISC, None)
                .map_err(|e| NetError::io(ctx("promiscuous mode"), e))?;
        } else {
            membership(libc::PACKET_MR_UNICAST, Some(mac))
                .map_err(|e| NetError::io(ctx("adding the guest MAC to the filter"), e))?;
            membership(libc::PACKET_MR_ALLMULTI, None)
                .map_err(|e| NetError::io(ctx("all-multicast"), e))?;
        }
        match netif::flags(name) {
            Ok(f) if f & libc::IFF_UP as libc::c_short == 0 => {
                tracing::warn!(target: "colinux_net::bridge", interface = name, "bridged interface is down; no traffic until it is up")
            }
            _ => {}
        }
        tracing::info!(target: "colinux_net::bridge", interface = name, ifindex, mac = %format_mac(&mac), promiscuous, "bridge open");
        Ok(PacketBridge {
            fd,
            ifname: name.to_string(),
            ifindex,
            failed: false,
            stats: AtomicStats::default(),
            buf: vec![0u8; RECV_BUF].into_boxed_slice(),
            pending: VecDeque::new(),
            mac,
        })
    }

    /// The bridged host interface.
    pub fn interface(&self) -> &str {
        &self.ifname
    }

    fn fail(&mut self, what: &str, e: &io::Error) -> io::Error {
        if !self.failed {
            self.failed = true;
            self.pending.clear();
            tracing::error!(target: "colinux_net::bridge", interface = %self.ifname, "{what}: {e}; the NIC is now disconnected");
            quiet::silence(self.fd.as_raw_fd());
        }
        io::Error::new(e.kind(), format!("bridge on {} failed: {e}", self.ifname))
    }

    fn dead(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::NotConnected,
            format!("bridge on {} has failed", self.ifname),
        )
    }

    /// True while the socket is still bound to our interface: the kernel resets
    /// a packet socket's index to -1 when its interface is unregistered. (Asking
    /// the socket works whatever network namespace the caller is in.)
    fn still_bound(&self) -> bool {
        // SAFETY: sockaddr_ll is plain data.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: getsockname into a sockaddr_ll of the given size.
        let rc = unsafe {
            libc::getsockname(
                self.fd.as_raw_fd(),
                (&mut sll as *mut libc::sockaddr_ll).cast(),
                &mut len,
            )
        };
        rc == 0 && sll.sll_ifindex == self.ifindex as i32
    }

    /// An error from the socket: fatal once the interface is gone.
    fn on_error(&mut self, what: &str, e: io::Error) -> Option<io::Error> {
        if !self.still_bound() {
            return Some(self.fail(what, &e));
        }
        crate::guest_log!(debug, target: "colinux_net::bridge", interface = %self.ifname, "{what}: {e}");
        None
    }

    /// Reads one frame from the socket into `pending` (possibly several
    /// segments). `Ok(false)` when the socket has nothing.
    fn fill(&mut self) -> io::Result<bool> {
        // SAFETY: sockaddr_ll is plain data.
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut fromlen = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: recvfrom into our own buffer and address of the given sizes.
        let n = unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                self.buf.as_mut_ptr().cast(),
                self.buf.len(),
                libc::MSG_TRUNC,
                (&mut from as *mut libc::sockaddr_ll).cast(),
                &mut fromlen,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(false),
                _ => match self.on_error("receive", e) {
                    Some(fatal) => Err(fatal),
                    None => Ok(false),
                },
            };
        }
        let n = n as usize;
        if from.sll_pkttype == libc::PACKET_OUTGOING {
            return Ok(true);
        }
        if n > self.buf.len() || n < VNET_HDR_LEN + wire_min() {
            self.stats.rx_drop();
            return Ok(true);
        }
        let frame = &self.buf[VNET_HDR_LEN..n];
        let for_us = wire::dst_mac(frame).is_some_and(|d| d == self.mac || wire::is_multicast(&d));
        if !for_us {
            return Ok(true);
        }
        let mut head = [0u8; VNET_HDR_LEN];
        head.copy_from_slice(&self.buf[..VNET_HDR_LEN]);
        let hdr = VnetHdr::parse(&head);
        let frame = frame.to_vec();
        let (pending, stats) = (&mut self.pending, &self.stats);
        let res = offload::finish(&hdr, frame, |seg| {
            if frame_len_ok(seg.len()) && pending.len() < PENDING_LIMIT {
                pending.push_back(seg);
            } else {
                stats.rx_drop();
            }
        });
        if let Err(e) = res {
            self.stats.rx_drop();
            crate::guest_log!(debug, target: "colinux_net::bridge", interface = %self.ifname, "frame dropped: {e}");
        }
        Ok(true)
    }
}

fn wire_min() -> usize {
    crate::MIN_FRAME_LEN
}

impl NetBackend for PacketBridge {
    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        if self.failed {
            self.stats.tx_drop();
            return Err(self.dead());
        }
        if !frame_len_ok(frame.len()) {
            self.stats.tx_drop();
            return Ok(());
        }
        let hdr = [0u8; VNET_HDR_LEN]; // no offload requested
        let Err(e) = crate::vnet::write_with_header(self.fd.as_raw_fd(), &hdr, frame) else {
            self.stats.tx_ok();
            return Ok(());
        };
        self.stats.tx_drop();
        // ENETDOWN, EMSGSIZE (over the interface MTU), ENOBUFS: lost like on a
        // wire. The interface gone: fatal.
        match self.on_error("send", e) {
            Some(fatal) => Err(fatal),
            None => Ok(()),
        }
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        if self.failed {
            return Err(self.dead());
        }
        loop {
            if let Some(f) = self.pending.pop_front() {
                if f.len() > buf.len() {
                    self.stats.rx_drop();
                    continue;
                }
                buf[..f.len()].copy_from_slice(&f);
                self.stats.rx_ok();
                return Ok(Some(f.len()));
            }
            if !self.fill()? {
                return Ok(None);
            }
        }
    }

    fn ready_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn stats(&self) -> NetStats {
        self.stats.snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the classic BPF program on `pkt` (only the opcodes it uses).
    fn run_bpf(prog: &[libc::sock_filter], pkt: &[u8]) -> u32 {
        let mut a = 0u32;
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            let k = i.k as usize;
            pc += 1;
            match i.code {
                0x30 => a = u32::from(pkt[k]),
                0x28 => a = u32::from(u16::from_be_bytes([pkt[k], pkt[k + 1]])),
                0x20 => a = u32::from_be_bytes(pkt[k..k + 4].try_into().unwrap()),
                0x45 => pc += usize::from(if a & i.k != 0 { i.jt } else { i.jf }),
                0x15 => pc += usize::from(if a == i.k { i.jt } else { i.jf }),
                0x06 => return i.k,
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
    }

    #[test]
    fn filter_passes_own_mac_and_group_addresses() {
        let mac = [0x00, 0xff, 0x12, 0x34, 0x56, 0x78];
        let prog = mac_filter(mac);
        let frame = |dst: [u8; 6]| {
            let mut f = dst.to_vec();
            f.extend_from_slice(&[0; 8]);
            f
        };
        assert_ne!(run_bpf(&prog, &frame(mac)), 0);
        assert_ne!(run_bpf(&prog, &frame(wire::BROADCAST)), 0);
        assert_ne!(run_bpf(&prog, &frame([0x33, 0x33, 0, 0, 0, 1])), 0);
        assert_eq!(
            run_bpf(&prog, &frame([0x00, 0xff, 0x12, 0x34, 0x56, 0x79])),
            0
        );
        assert_eq!(
            run_bpf(&prog, &frame([0x02, 0xff, 0x12, 0x34, 0x56, 0x78])),
            0
        );
    }

    #[test]
    fn missing_interface_is_an_error() {
        let e = PacketBridge::open("nosuchif9", [2, 0, 0, 0, 0, 1], true)
            .err()
            .unwrap();
        assert!(matches!(e, NetError::NoSuchInterface(_)), "{e}");
    }
}
