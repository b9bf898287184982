//! The scripted guest: a program that runs on its own thread, in lock step with
//! the simulated vCPU, and sees the machine only as a guest would.
//!
//! Every port or MMIO access the program makes becomes a [`VmExit`] of the vCPU
//! and blocks until the monitor has handled it and entered the vCPU again
//! (reads get the value the monitor filled in). Plain RAM accesses
//! ([`GuestCpu::mem`]) do not exit, as on hardware. Interrupts are taken at
//! entry into the program's inbox; [`GuestCpu::wait_interrupt`] halts until one
//! arrives. Only one side ever runs at a time, so a run is deterministic.
//!
//! [`VmExit`]: colinux_driver::hypervisor::VmExit

use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::Duration;

use colinux_driver::hypervisor::StandardRegisters;
use vm_memory::GuestMemoryMmap;

use crate::trace::{Event, Interrupt, Trace};

/// How a guest program ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestEnd {
    /// Power off (the vCPU returns `VmExit::Poweroff`).
    Poweroff,
    /// Reset (the vCPU returns `VmExit::Reset`).
    Reset,
    /// Triple fault (the vCPU returns `VmExit::Shutdown`).
    Shutdown,
    /// `cli; hlt` forever: the vCPU idles until the monitor stops it (after the
    /// guest asked a device, e.g. the ACPI port, to end the machine).
    Idle,
}

/// Why a guest operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuestError {
    /// The monitor dropped the vCPU (the machine stopped) while the guest ran.
    #[error("the vCPU was dropped by the monitor")]
    Detached,
    /// No interrupt arrived within the guest's patience.
    #[error("no interrupt within {0:?}")]
    NoInterrupt(Duration),
    /// The guest's driver found the device or its answers wrong.
    #[error("{0}")]
    Device(String),
}

impl From<colinux_virtq_driver::RingError> for GuestError {
    fn from(e: colinux_virtq_driver::RingError) -> Self {
        GuestError::Device(e.to_string())
    }
}

/// Result of a guest operation.
pub type GuestResult<T> = Result<T, GuestError>;

/// A guest program: the code vCPU `id` runs from its first entry.
pub type GuestProgram = Box<dyn FnOnce(&mut GuestCpu) -> GuestResult<GuestEnd> + Send + 'static>;

/// What the guest asks the vCPU to do next (the instruction that exits).
#[derive(Debug, Clone)]
pub(crate) enum Request {
    In { port: u16, size: u8 },
    Out { port: u16, size: u8, value: u64 },
    MmioRead { addr: u64, size: u8 },
    MmioWrite { addr: u64, size: u8, value: u64 },
    Halt { patience: Duration },
    End(Result<GuestEnd, String>),
}

/// What the vCPU gives back when it resumes the guest.
#[derive(Debug, Clone)]
pub(crate) struct Resume {
    /// Value of a completed read (0 otherwise).
    pub value: u64,
    /// Interrupts taken at this entry, in order.
    pub irqs: Vec<Interrupt>,
    /// The registers at entry.
    pub regs: StandardRegisters,
    /// A halt ended because the guest's patience ran out.
    pub timed_out: bool,
}

/// The guest's view of its CPU and memory.
pub struct GuestCpu {
    id: u32,
    mem: GuestMemoryMmap,
    trace: Trace,
    tx: SyncSender<Request>,
    rx: Receiver<Resume>,
    inbox: VecDeque<Interrupt>,
    regs: StandardRegisters,
    taken: u64,
}

impl GuestCpu {
    pub(crate) fn new(
        id: u32,
        mem: GuestMemoryMmap,
        trace: Trace,
        tx: SyncSender<Request>,
        rx: Receiver<Resume>,
    ) -> Self {
        GuestCpu {
            id,
            mem,
            trace,
            tx,
            rx,
            inbox: VecDeque::new(),
            regs: StandardRegisters::default(),
            taken: 0,
        }
    }

    /// Waits for the first entry.
    pub(crate) fn start(&mut self) -> GuestResult<()> {
        let r = self.rx.recv().map_err(|_| GuestError::Detached)?;
        self.absorb(&r);
        Ok(())
    }

    fn absorb(&mut self, r: &Resume) {
        self.regs = r.regs;
        self.taken += r.irqs.len() as u64;
        self.inbox.extend(r.irqs.iter().copied());
    }

    fn exit(&mut self, req: Request) -> GuestResult<Resume> {
        self.tx.send(req).map_err(|_| GuestError::Detached)?;
        let r = self.rx.recv().map_err(|_| GuestError::Detached)?;
        self.absorb(&r);
        Ok(r)
    }

    /// The vCPU index.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Guest RAM (plain loads and stores: no exit).
    pub fn mem(&self) -> &GuestMemoryMmap {
        &self.mem
    }

    /// The registers as of the last entry.
    pub fn regs(&self) -> &StandardRegisters {
        &self.regs
    }

    /// Writes a marker into the trace (no exit): what the guest is about to do.
    pub fn note(&self, text: impl Into<String>) {
        self.trace.push(Event::Guest {
            vcpu: self.id,
            text: text.into(),
        });
    }

    /// `in` of `size` bytes (1, 2 or 4) from `port`.
    pub fn port_in(&mut self, port: u16, size: u8) -> GuestResult<u32> {
        Ok(self.exit(Request::In { port, size })?.value as u32)
    }

    /// `out` of `size` bytes (1, 2 or 4) of `value` to `port`.
    pub fn port_out(&mut self, port: u16, size: u8, value: u32) -> GuestResult<()> {
        self.exit(Request::Out {
            port,
            size,
            value: u64::from(value),
        })?;
        Ok(())
    }

    /// `in al, dx`.
    pub fn inb(&mut self, port: u16) -> GuestResult<u8> {
        Ok(self.port_in(port, 1)? as u8)
    }
    /// `in ax, dx`.
    pub fn inw(&mut self, port: u16) -> GuestResult<u16> {
        Ok(self.port_in(port, 2)? as u16)
    }
    /// `in eax, dx`.
    pub fn inl(&mut self, port: u16) -> GuestResult<u32> {
        self.port_in(port, 4)
    }
    /// `out dx, al`.
    pub fn outb(&mut self, port: u16, v: u8) -> GuestResult<()> {
        self.port_out(port, 1, u32::from(v))
    }
    /// `out dx, ax`.
    pub fn outw(&mut self, port: u16, v: u16) -> GuestResult<()> {
        self.port_out(port, 2, u32::from(v))
    }
    /// `out dx, eax`.
    pub fn outl(&mut self, port: u16, v: u32) -> GuestResult<()> {
        self.port_out(port, 4, v)
    }

    /// A `size`-byte load (1, 2, 4 or 8) from unbacked guest-physical `addr`.
    pub fn mmio_read(&mut self, addr: u64, size: u8) -> GuestResult<u64> {
        Ok(self.exit(Request::MmioRead { addr, size })?.value)
    }

    /// A `size`-byte store (1, 2, 4 or 8) of `value` to unbacked `addr`.
    pub fn mmio_write(&mut self, addr: u64, size: u8, value: u64) -> GuestResult<()> {
        self.exit(Request::MmioWrite { addr, size, value })?;
        Ok(())
    }

    /// Interrupts taken but not yet handled, oldest first (no exit).
    pub fn take_interrupts(&mut self) -> Vec<Interrupt> {
        self.inbox.drain(..).collect()
    }

    /// Removes the interrupts with `vector` from the inbox; returns how many
    /// (an interrupt handler acknowledging what is already pending, no exit).
    pub fn take_vector(&mut self, vector: u8) -> usize {
        let before = self.inbox.len();
        self.inbox.retain(|i| i.vector() != vector);
        before - self.inbox.len()
    }

    /// Total interrupts taken since the program started.
    pub fn interrupts_taken(&self) -> u64 {
        self.taken
    }

    /// The next interrupt: from the inbox, or by halting (`sti; hlt`) until one
    /// is delivered. Fails after `patience` with nothing delivered.
    pub fn wait_interrupt(&mut self, patience: Duration) -> GuestResult<Interrupt> {
        if let Some(i) = self.inbox.pop_front() {
            return Ok(i);
        }
        let r = self.exit(Request::Halt { patience })?;
        if r.timed_out && self.inbox.is_empty() {
            return Err(GuestError::NoInterrupt(patience));
        }
        self.inbox
            .pop_front()
            .ok_or(GuestError::NoInterrupt(patience))
    }

    /// Tells the vCPU the program ended (no reply expected).
    pub(crate) fn finish(&self, end: Result<GuestEnd, String>) {
        let _ = self.tx.send(Request::End(end));
    }
}
