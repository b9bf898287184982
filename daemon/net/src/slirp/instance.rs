//! The libslirp instance: created, fed guest frames, polled and cleaned up
//! by its [`Instance`], all on whichever thread holds the backend (the NIC's
//! device thread in the daemon), one call at a time.
//!
//! The callbacks get a pointer to [`Worker`] as their opaque and only touch its
//! `RefCell`s for short, non-reentrant borrows.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::ffi::CStr;
use std::net::Ipv4Addr;
use std::os::raw::{c_char, c_int, c_void};
use std::time::Instant;

use vmm_sys_util::eventfd::EventFd;

use super::ffi;
use super::library::{self, Api};
use crate::stats::AtomicStats;
use crate::{frame_len_ok, NetError};

/// Frames queued for the guest before new ones are dropped (the guest is not
/// reading; TCP inside slirp retransmits later).
pub(super) const RX_QUEUE_LIMIT: usize = 1024;

struct Timer {
    cb: ffi::SlirpTimerCb,
    cb_opaque: *mut c_void,
    expire_ms: Cell<Option<i64>>,
}

/// The callbacks' view of the instance (the `opaque` given to libslirp).
pub(super) struct Worker {
    start: Instant,
    /// Frames from slirp waiting for the guest.
    pub rx: RefCell<VecDeque<Vec<u8>>>,
    /// Readable while `rx` is non-empty.
    pub ready: EventFd,
    /// Frame counters.
    pub stats: AtomicStats,
    pollfds: RefCell<Vec<libc::pollfd>>,
    timers: RefCell<Vec<*mut Timer>>,
}

impl Worker {
    fn now_ms(&self) -> i64 {
        (self.start.elapsed().as_nanos() / 1_000_000) as i64
    }

    /// Queues one frame for the guest and signals `ready`.
    fn push_rx(&self, frame: Vec<u8>) {
        let mut q = self.rx.borrow_mut();
        if q.len() >= RX_QUEUE_LIMIT {
            self.stats.rx_drop();
            return;
        }
        q.push_back(frame);
        let _ = self.ready.write(1);
    }
}

/// The [`Worker`] behind a callback's `opaque`.
///
/// # Safety
///
/// `opaque` must be the pointer [`Instance::new`] gave `slirp_new` (its boxed [`Worker`]),
/// and the slirp instance must still be live, so that the Worker is too.
unsafe fn worker<'a>(opaque: *mut c_void) -> &'a Worker {
    // SAFETY: per this function's contract, opaque points to a live Worker.
    unsafe { &*(opaque as *const Worker) }
}

unsafe extern "C" fn send_packet(buf: *const c_void, len: usize, opaque: *mut c_void) -> isize {
    // SAFETY: libslirp hands every callback the opaque given to slirp_new, while
    // the instance (and so the Worker) lives.
    let w = unsafe { worker(opaque) };
    if !frame_len_ok(len) || buf.is_null() {
        w.stats.rx_drop();
        return len as isize;
    }
    // SAFETY: libslirp passes a buffer of `len` readable bytes for this call.
    let frame = unsafe { std::slice::from_raw_parts(buf as *const u8, len) }.to_vec();
    w.push_rx(frame);
    len as isize
}

unsafe extern "C" fn guest_error(msg: *const c_char, _opaque: *mut c_void) {
    if !msg.is_null() {
        // SAFETY: libslirp passes a NUL-terminated message.
        let m = unsafe { CStr::from_ptr(msg) }.to_string_lossy();
        crate::guest_log!(warn, target: "colinux_net::slirp", "guest error: {m}");
    }
}

unsafe extern "C" fn clock_get_ns(opaque: *mut c_void) -> i64 {
    // SAFETY: libslirp hands every callback the opaque given to slirp_new, while
    // the instance (and so the Worker) lives.
    let w = unsafe { worker(opaque) };
    w.start.elapsed().as_nanos() as i64
}

unsafe extern "C" fn timer_new(
    cb: ffi::SlirpTimerCb,
    cb_opaque: *mut c_void,
    opaque: *mut c_void,
) -> *mut c_void {
    let t = Box::into_raw(Box::new(Timer {
        cb,
        cb_opaque,
        expire_ms: Cell::new(None),
    }));
    // SAFETY: libslirp hands every callback the opaque given to slirp_new, while
    // the instance (and so the Worker) lives.
    let w = unsafe { worker(opaque) };
    w.timers.borrow_mut().push(t);
    t as *mut c_void
}

unsafe extern "C" fn timer_free(timer: *mut c_void, opaque: *mut c_void) {
    let t = timer as *mut Timer;
    // SAFETY: libslirp hands every callback the opaque given to slirp_new, while
    // the instance (and so the Worker) lives.
    let w = unsafe { worker(opaque) };
    let mut timers = w.timers.borrow_mut();
    if let Some(i) = timers.iter().position(|&p| p == t) {
        timers.swap_remove(i);
        // SAFETY: `t` came from Box::into_raw in timer_new and is freed once.
        drop(unsafe { Box::from_raw(t) });
    }
}

unsafe extern "C" fn timer_mod(timer: *mut c_void, expire_ms: i64, opaque: *mut c_void) {
    let t = timer as *mut Timer;
    // SAFETY: libslirp hands every callback the opaque given to slirp_new, while
    // the instance (and so the Worker) lives.
    let w = unsafe { worker(opaque) };
    if w.timers.borrow().contains(&t) {
        // SAFETY: the timer is live (still in the list).
        unsafe { &*t }.expire_ms.set(Some(expire_ms));
    }
}

unsafe extern "C" fn register_poll_fd(_fd: c_int, _opaque: *mut c_void) {}
unsafe extern "C" fn unregister_poll_fd(_fd: c_int, _opaque: *mut c_void) {}
unsafe extern "C" fn notify(_opaque: *mut c_void) {}

unsafe extern "C" fn add_poll(fd: c_int, events: c_int, opaque: *mut c_void) -> c_int {
    let mut ev = 0;
    if events & ffi::SLIRP_POLL_IN != 0 {
        ev |= libc::POLLIN;
    }
    if events & ffi::SLIRP_POLL_OUT != 0 {
        ev |= libc::POLLOUT;
    }
    if events & ffi::SLIRP_POLL_PRI != 0 {
        ev |= libc::POLLPRI;
    }
    // SAFETY: libslirp hands every callback the opaque given to slirp_new, while
    // the instance (and so the Worker) lives.
    let w = unsafe { worker(opaque) };
    let mut fds = w.pollfds.borrow_mut();
    fds.push(libc::pollfd {
        fd,
        events: ev,
        revents: 0,
    });
    (fds.len() - 1) as c_int
}

unsafe extern "C" fn get_revents(idx: c_int, opaque: *mut c_void) -> c_int {
    // SAFETY: libslirp hands every callback the opaque given to slirp_new, while
    // the instance (and so the Worker) lives.
    let w = unsafe { worker(opaque) };
    let fds = w.pollfds.borrow();
    let Some(p) = usize::try_from(idx).ok().and_then(|i| fds.get(i)) else {
        return 0;
    };
    let r = p.revents;
    let mut out = 0;
    if r & libc::POLLIN != 0 {
        out |= ffi::SLIRP_POLL_IN;
    }
    if r & libc::POLLOUT != 0 {
        out |= ffi::SLIRP_POLL_OUT;
    }
    if r & libc::POLLPRI != 0 {
        out |= ffi::SLIRP_POLL_PRI;
    }
    if r & libc::POLLERR != 0 {
        out |= ffi::SLIRP_POLL_ERR;
    }
    if r & libc::POLLHUP != 0 {
        out |= ffi::SLIRP_POLL_HUP;
    }
    out
}

static CALLBACKS: ffi::SlirpCb = ffi::SlirpCb {
    send_packet: Some(send_packet),
    guest_error: Some(guest_error),
    clock_get_ns: Some(clock_get_ns),
    timer_new: Some(timer_new),
    timer_free: Some(timer_free),
    timer_mod: Some(timer_mod),
    register_poll_fd: Some(register_poll_fd),
    unregister_poll_fd: Some(unregister_poll_fd),
    notify: Some(notify),
};

fn in_addr(a: Ipv4Addr) -> ffi::in_addr {
    a.into()
}

fn config() -> ffi::SlirpConfig {
    const ZERO6: ffi::in6_addr = ffi::in6_addr { s6_addr: [0; 16] };
    ffi::SlirpConfig {
        // Version 3: every field up to disable_dhcp, all that libslirp-sys
        // (4.2 header) knows; libslirp 4.2 .. 4.7 accept it and then read no
        // SlirpCb field past `notify`.
        version: 3,
        restricted: 0,
        in_enabled: true,
        vnetwork: in_addr(Ipv4Addr::new(10, 0, 2, 0)),
        vnetmask: in_addr(Ipv4Addr::new(255, 255, 255, 0)),
        vhost: in_addr(super::SLIRP_GATEWAY),
        in6_enabled: false,
        vprefix_addr6: ZERO6,
        vprefix_len: 0,
        vhost6: ZERO6,
        vhostname: c"colinux".as_ptr(),
        tftp_server_name: std::ptr::null(),
        tftp_path: std::ptr::null(),
        bootfile: std::ptr::null(),
        vdhcp_start: in_addr(super::SLIRP_GUEST),
        vnameserver: in_addr(super::SLIRP_DNS),
        vnameserver6: ZERO6,
        vdnssearch: std::ptr::null_mut(),
        vdomainname: std::ptr::null(),
        if_mtu: 0,
        if_mru: 0,
        // Like classic coLinux and QEMU: 10.0.2.2 reaches the host's loopback.
        disable_host_loopback: false,
        enable_emu: false,
        outbound_addr: std::ptr::null(),
        outbound_addr6: std::ptr::null(),
        disable_dns: false,
        disable_dhcp: false,
    }
}

/// A live libslirp instance and the [`Worker`] its callbacks see.
pub(super) struct Instance {
    api: &'static Api,
    slirp: *mut ffi::Slirp,
    // Boxed so the callbacks' opaque keeps its address; dropped after
    // slirp_cleanup (see Drop).
    w: Box<Worker>,
}

// SAFETY: libslirp has no thread affinity, only no internal locking. Every call
// into it, and so every callback touching the Worker, happens in a `&mut self`
// method of Instance, so one thread at a time; the raw pointers are owned here
// and never shared.
unsafe impl Send for Instance {}

impl Instance {
    /// Starts libslirp with the expanded redirections `(udp, host port, guest
    /// port)`, each bound to `bind` on the host.
    pub fn new(bind: Ipv4Addr, forwards: &[(bool, u16, u16)]) -> Result<Self, NetError> {
        let ready = EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC)
            .map_err(|e| NetError::io("eventfd", e))?;
        let w = Box::new(Worker {
            start: Instant::now(),
            rx: RefCell::new(VecDeque::new()),
            ready,
            stats: AtomicStats::default(),
            pollfds: RefCell::new(Vec::new()),
            timers: RefCell::new(Vec::new()),
        });
        let api = library::api()?;
        let cfg = config();
        // SAFETY: cfg and CALLBACKS are valid for the call (CALLBACKS is static
        // and libslirp keeps its pointer); the opaque points into `w`, which the
        // Instance keeps alive until after slirp_cleanup.
        let slirp = unsafe { (api.new)(&cfg, &CALLBACKS, opaque(&w)) };
        if slirp.is_null() {
            return Err(NetError::SlirpInit("slirp_new returned NULL".into()));
        }
        let me = Instance { api, slirp, w };
        for &(udp, host, guest) in forwards {
            // SAFETY: slirp is the live instance created above.
            let rc = unsafe {
                (api.add_hostfwd)(
                    me.slirp,
                    c_int::from(udp),
                    in_addr(bind),
                    c_int::from(host),
                    in_addr(super::SLIRP_GUEST),
                    c_int::from(guest),
                )
            };
            if rc < 0 {
                let proto = if udp { "udp" } else { "tcp" };
                let what = format!("{proto}:{bind}:{host} -> {}:{guest}", super::SLIRP_GUEST);
                return Err(NetError::RedirectFailed(what));
            }
            tracing::info!(target: "colinux_net::slirp", udp, host, guest, bind = %bind, "port redirection");
        }
        Ok(me)
    }

    /// What the callbacks share with the backend: the guest-bound queue, its
    /// eventfd and the counters.
    pub fn worker(&self) -> &Worker {
        &self.w
    }

    /// Hands one guest frame to slirp (which copies it); frames slirp answers
    /// with at once (ARP, DHCP) are queued before this returns.
    pub fn input(&mut self, frame: &[u8]) {
        // SAFETY: slirp is live; the frame outlives the call.
        unsafe { (self.api.input)(self.slirp, frame.as_ptr(), frame.len() as c_int) };
    }

    /// Adds slirp's sockets to `fds` and lowers `timeout_ms` to its next
    /// timer or its own poll timeout.
    pub fn poll_fds(&mut self, fds: &mut Vec<libc::pollfd>, timeout_ms: &mut i32) {
        self.w.pollfds.borrow_mut().clear();
        let mut timeout = u32::try_from(*timeout_ms).unwrap_or(1000).min(1000);
        // SAFETY: slirp is live; add_poll only borrows the Worker's pollfds briefly.
        unsafe {
            (self.api.pollfds_fill)(self.slirp, &mut timeout, Some(add_poll), opaque(&self.w))
        };
        let mut wait = i64::from(timeout);
        let now = self.w.now_ms();
        let next_timer = self
            .w
            .timers
            .borrow()
            .iter()
            // SAFETY: pointers in the list are live timers.
            .filter_map(|&t| unsafe { &*t }.expire_ms.get())
            .min();
        if let Some(at) = next_timer {
            wait = wait.min((at - now).max(0));
        }
        *timeout_ms = (*timeout_ms).min(wait as i32);
        fds.extend_from_slice(&self.w.pollfds.borrow());
    }

    /// Takes the poll's results for the descriptors [`Instance::poll_fds`]
    /// added (`fds` is exactly those), lets slirp do its socket I/O and runs
    /// its due timers.
    pub fn poll_done(&mut self, fds: &[libc::pollfd]) {
        {
            let mut own = self.w.pollfds.borrow_mut();
            if own.len() != fds.len() {
                // Not this round's set: report no events, still run timers.
                own.iter_mut().for_each(|p| p.revents = 0);
            } else {
                for (o, p) in own.iter_mut().zip(fds) {
                    o.revents = p.revents;
                }
            }
        }
        // SAFETY: slirp is live; get_revents only borrows the Worker's pollfds briefly.
        unsafe { (self.api.pollfds_poll)(self.slirp, 0, Some(get_revents), opaque(&self.w)) };
        fire_timers(&self.w);
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // SAFETY: slirp is live; after this no callback can run.
        unsafe { (self.api.cleanup)(self.slirp) };
        for t in self.w.timers.borrow_mut().drain(..) {
            // SAFETY: each pointer came from Box::into_raw in timer_new.
            drop(unsafe { Box::from_raw(t) });
        }
    }
}

/// The callbacks' opaque for `w`.
fn opaque(w: &Worker) -> *mut c_void {
    w as *const Worker as *mut c_void
}

fn fire_timers(w: &Worker) {
    let now = w.now_ms();
    let snapshot: Vec<*mut Timer> = w.timers.borrow().clone();
    for t in snapshot {
        // A callback may free other timers: only fire those still listed.
        if !w.timers.borrow().contains(&t) {
            continue;
        }
        let (due, cb, cb_opaque) = {
            // SAFETY: listed timers are live; the reference ends before the
            // callback, which may free this very timer.
            let timer = unsafe { &*t };
            let due = matches!(timer.expire_ms.get(), Some(at) if at <= now);
            if due {
                timer.expire_ms.set(None);
            }
            (due, timer.cb, timer.cb_opaque)
        };
        if let (true, Some(cb)) = (due, cb) {
            // SAFETY: libslirp's own callback with its own opaque.
            unsafe { cb(cb_opaque) };
        }
    }
}
