//! The state a simulated VM shares with its vCPUs: timing limits, guest
//! memory, the interrupt controller's queues, eventfds, the guests'
//! programs and how they ended.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use colinux_driver::hypervisor::{DataMatch, GsiRoute, IoEventAddress};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use crate::fault::FaultPlan;
use crate::fd::readable;
use crate::guest::{GuestEnd, GuestProgram};
use crate::trace::{Event, Interrupt, Trace};

/// Timing limits of the simulation (all bounds, so nothing can hang).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimConfig {
    /// Longest a vCPU waits for its guest program's next instruction before
    /// `run()` fails (a guest stuck computing).
    pub step_timeout: Duration,
    /// Longest a halted vCPU blocks inside `run()` before returning to the
    /// monitor (so the monitor can notice its stop flag), as a kick would.
    pub halt_slice: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            step_timeout: Duration::from_secs(20),
            halt_slice: Duration::from_millis(20),
        }
    }
}

/// How a vCPU's guest program ended, for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestOutcome {
    /// The program returned this end.
    Ended(GuestEnd),
    /// The program returned an error, or panicked; the message.
    Failed(String),
}

/// Host work to do while every guest is halted (e.g. let a device pull frames
/// from its backend): the simulated "I/O thread". Runs on the vCPU's thread.
pub type IdleHook = Arc<dyn Fn() + Send + Sync>;

#[derive(Default)]
pub(crate) struct IrqState {
    pending: BTreeMap<u32, VecDeque<Interrupt>>,
    lines: BTreeMap<u32, bool>,
}

pub(crate) struct VmShared {
    pub(crate) config: SimConfig,
    pub(crate) trace: Trace,
    pub(crate) memory: Mutex<Option<GuestMemoryMmap>>,
    pub(crate) irq: Mutex<IrqState>,
    pub(crate) irq_cv: Condvar,
    pub(crate) programs: Mutex<BTreeMap<u32, GuestProgram>>,
    pub(crate) faults: Mutex<FaultPlan>,
    pub(crate) idle_hook: Mutex<Option<IdleHook>>,
    pub(crate) ioevents: Mutex<Vec<(EventFd, IoEventAddress, DataMatch)>>,
    pub(crate) irqfds: Mutex<Vec<(EventFd, u32)>>,
    pub(crate) routes: Mutex<Vec<GsiRoute>>,
    pub(crate) outcomes: Mutex<BTreeMap<u32, GuestOutcome>>,
    pub(crate) irqchip: AtomicBool,
    pub(crate) pit: AtomicBool,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl VmShared {
    /// An empty VM's state recording into `trace`.
    pub(crate) fn new(config: SimConfig, trace: Trace) -> Self {
        VmShared {
            config,
            trace,
            memory: Mutex::new(None),
            irq: Mutex::new(IrqState::default()),
            irq_cv: Condvar::new(),
            programs: Mutex::new(BTreeMap::new()),
            faults: Mutex::new(FaultPlan::default()),
            idle_hook: Mutex::new(None),
            ioevents: Mutex::new(Vec::new()),
            irqfds: Mutex::new(Vec::new()),
            routes: Mutex::new(Vec::new()),
            outcomes: Mutex::new(BTreeMap::new()),
            irqchip: AtomicBool::new(false),
            pit: AtomicBool::new(false),
        }
    }

    /// Queues `irq` for vCPU `dest` and wakes halted vCPUs.
    pub(crate) fn queue(&self, dest: u32, irq: Interrupt) {
        lock(&self.irq)
            .pending
            .entry(dest)
            .or_default()
            .push_back(irq);
        self.irq_cv.notify_all();
    }

    pub(crate) fn inject_msi(&self, address: u64, data: u32) -> io::Result<()> {
        let irq = Interrupt::Msi { address, data };
        {
            let mut f = lock(&self.faults);
            if f.failing_msis > 0 {
                f.failing_msis -= 1;
                self.trace.push(Event::Dropped {
                    irq,
                    why: "injected delivery failure".into(),
                });
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
        }
        if address & 0xfff0_0000 != 0xfee0_0000 {
            self.trace.push(Event::Dropped {
                irq,
                why: "address outside the APIC window".into(),
            });
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        self.trace.push(Event::Inject(irq));
        self.queue(((address >> 12) & 0xff) as u32, irq);
        Ok(())
    }

    pub(crate) fn line(&self, irq: u32, level: bool) {
        let was = {
            let mut s = lock(&self.irq);
            s.lines.insert(irq, level).unwrap_or(false)
        };
        if level && !was {
            let i = Interrupt::Line { irq };
            self.trace.push(Event::Inject(i));
            self.queue(0, i);
        } else if !level && was {
            self.trace.push(Event::LineLow { irq });
        }
    }

    /// Takes every interrupt queued for `vcpu`, oldest first.
    pub(crate) fn take_pending(&self, vcpu: u32) -> Vec<Interrupt> {
        lock(&self.irq)
            .pending
            .get_mut(&vcpu)
            .map(|q| q.drain(..).collect())
            .unwrap_or_default()
    }

    /// Blocks up to `timeout` for an interrupt for `vcpu`; true if one is queued.
    pub(crate) fn wait_pending(&self, vcpu: u32, timeout: Duration) -> bool {
        let s = lock(&self.irq);
        let has = |s: &IrqState| s.pending.get(&vcpu).is_some_and(|q| !q.is_empty());
        if has(&s) {
            return true;
        }
        let (s, _) = self
            .irq_cv
            .wait_timeout_while(s, timeout, |s| !has(s))
            .unwrap_or_else(|e| e.into_inner());
        has(&s)
    }

    /// Runs the idle hook, if any.
    pub(crate) fn idle(&self) {
        let hook = lock(&self.idle_hook).clone();
        if let Some(h) = hook {
            h();
        }
    }

    /// Signals every irqfd that has been written (polled without blocking).
    pub(crate) fn poll_irqfds(&self) {
        let fired: Vec<u32> = lock(&self.irqfds)
            .iter()
            .filter(|(fd, _)| readable(fd.as_raw_fd()))
            .filter_map(|(fd, gsi)| fd.read().ok().map(|_| *gsi))
            .collect();
        for gsi in fired {
            let route = lock(&self.routes).iter().copied().find(|r| match r {
                GsiRoute::Irqchip { gsi: g, .. } | GsiRoute::Msi { gsi: g, .. } => *g == gsi,
            });
            match route {
                Some(GsiRoute::Msi { address, data, .. }) => {
                    let _ = self.inject_msi(address, data);
                }
                _ => {
                    self.line(gsi, true);
                    self.line(gsi, false);
                }
            }
        }
    }

    /// Whether a guest write of `value` (`size` bytes) at `addr` hits an
    /// ioeventfd; signals it if so.
    pub(crate) fn ioevent(&self, addr: IoEventAddress, size: u8, value: u64) -> bool {
        let evs = lock(&self.ioevents);
        let hit = evs.iter().find(|(_, a, m)| {
            *a == addr
                && match m {
                    DataMatch::Any => true,
                    DataMatch::U16(v) => size == 2 && value as u16 == *v,
                    DataMatch::U32(v) => size == 4 && value as u32 == *v,
                }
        });
        match hit {
            Some((fd, _, _)) => {
                let _ = fd.write(1);
                true
            }
            None => false,
        }
    }

    pub(crate) fn take_program(&self, id: u32) -> Option<GuestProgram> {
        lock(&self.programs).remove(&id)
    }

    pub(crate) fn set_outcome(&self, id: u32, o: GuestOutcome) {
        lock(&self.outcomes).insert(id, o);
    }

    pub(crate) fn has_irqchip(&self) -> bool {
        self.irqchip.load(Ordering::Relaxed)
    }

    pub(crate) fn has_irqfds(&self) -> bool {
        !lock(&self.irqfds).is_empty()
    }
}
