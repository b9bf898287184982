//! The slirp thread: owns the libslirp instance, runs its poll loop and timers,
//! feeds it guest frames and queues the frames it emits for the guest.
//!
//! libslirp is single-threaded, so every call into it happens here. The callbacks
//! get a pointer to [`Worker`] as their opaque and only touch its `RefCell`s and
//! the shared queue for short, non-reentrant borrows.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::ffi::CStr;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::raw::{c_char, c_int, c_void};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use vmm_sys_util::eventfd::EventFd;

use super::ffi;
use crate::stats::AtomicStats;
use crate::{frame_len_ok, NetError};

/// Frames queued for the guest before new ones are dropped (the guest is not
/// reading; TCP inside slirp retransmits later).
pub(super) const RX_QUEUE_LIMIT: usize = 1024;

/// State shared between the backend (device thread) and the slirp thread.
pub(super) struct Shared {
    /// Frames from slirp waiting for the guest.
    pub rx: Mutex<VecDeque<Vec<u8>>>,
    /// Readable while `rx` is non-empty.
    pub ready: EventFd,
    /// Frame counters.
    pub stats: AtomicStats,
}

impl Shared {
    /// Queues one frame for the guest and signals `ready`.
    fn push_rx(&self, frame: Vec<u8>) {
        let mut q = self.rx.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() >= RX_QUEUE_LIMIT {
            self.stats.rx_drop();
            return;
        }
        q.push_back(frame);
        let _ = self.ready.write(1);
    }
}

/// What the slirp thread is started with.
pub(super) struct Setup {
    /// Host address redirections bind to.
    pub bind: Ipv4Addr,
    /// Expanded redirections: (udp, host port, guest port).
    pub forwards: Vec<(bool, u16, u16)>,
    /// Guest frames to feed into slirp; disconnect means stop.
    pub from_guest: Receiver<Vec<u8>>,
    /// Written by the backend after queueing a guest frame or to ask for a stop.
    pub wake: EventFd,
}

struct Timer {
    cb: ffi::SlirpTimerCb,
    cb_opaque: *mut c_void,
    expire_ms: Cell<Option<i64>>,
}

/// The callbacks' view of the thread (the `opaque` given to libslirp).
struct Worker {
    start: Instant,
    shared: Arc<Shared>,
    pollfds: RefCell<Vec<libc::pollfd>>,
    timers: RefCell<Vec<*mut Timer>>,
}

impl Worker {
    fn now_ms(&self) -> i64 {
        (self.start.elapsed().as_nanos() / 1_000_000) as i64
    }
}

/// The [`Worker`] behind a callback's `opaque`.
///
/// # Safety
///
/// `opaque` must be the pointer `run` gave `slirp_new` (its boxed [`Worker`]),
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
        w.shared.stats.rx_drop();
        return len as isize;
    }
    // SAFETY: libslirp passes a buffer of `len` readable bytes for this call.
    let frame = unsafe { std::slice::from_raw_parts(buf as *const u8, len) }.to_vec();
    w.shared.push_rx(frame);
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

/// The slirp thread's body. Reports start-up success or failure on `started`,
/// then runs until the backend disconnects `from_guest`.
pub(super) fn run(
    setup: Setup,
    shared: Arc<Shared>,
    started: std::sync::mpsc::Sender<Result<(), NetError>>,
) {
    let w = Box::new(Worker {
        start: Instant::now(),
        shared,
        pollfds: RefCell::new(Vec::new()),
        timers: RefCell::new(Vec::new()),
    });
    let opaque = &*w as *const Worker as *mut c_void;
    let cfg = config();
    // SAFETY: cfg and CALLBACKS are valid for the call (CALLBACKS is static and
    // libslirp keeps its pointer); opaque points to `w`, alive until after
    // slirp_cleanup below.
    let slirp = unsafe { ffi::slirp_new(&cfg, &CALLBACKS, opaque) };
    if slirp.is_null() {
        let _ = started.send(Err(NetError::SlirpInit("slirp_new returned NULL".into())));
        return;
    }
    for &(udp, host, guest) in &setup.forwards {
        // SAFETY: slirp is the live instance created above.
        let rc = unsafe {
            ffi::slirp_add_hostfwd(
                slirp,
                c_int::from(udp),
                in_addr(setup.bind),
                c_int::from(host),
                in_addr(super::SLIRP_GUEST),
                c_int::from(guest),
            )
        };
        if rc < 0 {
            let proto = if udp { "udp" } else { "tcp" };
            let what = format!(
                "{proto}:{}:{host} -> {}:{guest}",
                setup.bind,
                super::SLIRP_GUEST
            );
            // SAFETY: slirp is live and not used afterwards.
            unsafe { ffi::slirp_cleanup(slirp) };
            free_timers(&w);
            let _ = started.send(Err(NetError::RedirectFailed(what)));
            return;
        }
        tracing::info!(target: "colinux_net::slirp", udp, host, guest, bind = %setup.bind, "port redirection");
    }
    let _ = started.send(Ok(()));
    drop(started);
    // SAFETY: slirp is the live instance created above and opaque its Worker `w`.
    unsafe { poll_loop(slirp, &w, opaque, &setup) };
    // SAFETY: slirp is live; after this no callback can run.
    unsafe { ffi::slirp_cleanup(slirp) };
    free_timers(&w);
}

fn free_timers(w: &Worker) {
    for t in w.timers.borrow_mut().drain(..) {
        // SAFETY: each pointer came from Box::into_raw in timer_new.
        drop(unsafe { Box::from_raw(t) });
    }
}

/// Feeds guest frames to slirp and runs its poll loop and timers until the
/// backend hangs up.
///
/// # Safety
///
/// `slirp` must be a live instance whose callbacks' opaque is `opaque`, a
/// pointer to `w`.
unsafe fn poll_loop(slirp: *mut ffi::Slirp, w: &Worker, opaque: *mut c_void, setup: &Setup) {
    loop {
        // Guest frames first, so a burst reaches slirp before we sleep.
        loop {
            match setup.from_guest.try_recv() {
                Ok(frame) => {
                    // SAFETY: slirp is live; the frame outlives the call (slirp copies).
                    unsafe { ffi::slirp_input(slirp, frame.as_ptr(), frame.len() as c_int) };
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
        {
            let mut fds = w.pollfds.borrow_mut();
            fds.clear();
            fds.push(libc::pollfd {
                fd: setup.wake.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        let mut timeout: u32 = 1000;
        // SAFETY: slirp is live; add_poll only borrows w.pollfds briefly.
        unsafe { ffi::slirp_pollfds_fill(slirp, &mut timeout, Some(add_poll), opaque) };
        let now = w.now_ms();
        let next_timer = w
            .timers
            .borrow()
            .iter()
            // SAFETY: pointers in the list are live timers.
            .filter_map(|&t| unsafe { &*t }.expire_ms.get())
            .min();
        let mut wait = i64::from(timeout);
        if let Some(at) = next_timer {
            wait = wait.min((at - now).max(0));
        }
        let rc = {
            let mut fds = w.pollfds.borrow_mut();
            // SAFETY: fds is a valid array of pollfd of the given length.
            unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait as c_int) }
        };
        if rc < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            tracing::warn!(target: "colinux_net::slirp", "poll: {}", std::io::Error::last_os_error());
        }
        let woke = w.pollfds.borrow()[0].revents & libc::POLLIN != 0;
        if woke {
            let _ = setup.wake.read();
        }
        // SAFETY: slirp is live; get_revents only borrows w.pollfds briefly.
        unsafe { ffi::slirp_pollfds_poll(slirp, c_int::from(rc < 0), Some(get_revents), opaque) };
        fire_timers(w);
    }
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
