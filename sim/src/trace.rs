//! The boundary trace: every crossing between the monitor and the simulated
//! guest, in order.
//!
//! A trace holds only what the guest and the monitor exchange — register values,
//! ports, guest-physical addresses, data, interrupt messages — never host
//! addresses or times, so the same scenario always yields the same trace and a
//! snapshot of it shows any change in how the daemon talks to the guest.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

/// An interrupt as the simulated interrupt controller sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Interrupt {
    /// A message-signalled interrupt (MSI or an MSI-X table entry).
    Msi {
        /// Message address (0xfee0_0000 | destination << 12).
        address: u64,
        /// Message data (the vector in bits 0-7).
        data: u32,
    },
    /// A legacy interrupt line (GSI) asserted.
    Line {
        /// The GSI.
        irq: u32,
    },
}

impl Interrupt {
    /// The vector a local APIC would take: the MSI data's low byte, or
    /// `0x20 + irq` for a line (the conventional remapped PIC/IOAPIC base).
    pub fn vector(&self) -> u8 {
        match self {
            Interrupt::Msi { data, .. } => *data as u8,
            Interrupt::Line { irq } => 0x20u32.wrapping_add(*irq) as u8,
        }
    }
}

impl fmt::Display for Interrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Interrupt::Msi { address, data } => write!(f, "msi addr={address:#x} data={data:#x}"),
            Interrupt::Line { irq } => write!(f, "line irq={irq}"),
        }
    }
}

/// What made a vCPU leave the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitKind {
    /// `in` from a port.
    IoIn {
        /// Port.
        port: u16,
        /// Access width in bytes.
        size: u8,
    },
    /// `out` to a port.
    IoOut {
        /// Port.
        port: u16,
        /// Access width in bytes.
        size: u8,
        /// Value written.
        value: u64,
    },
    /// A load from unbacked guest-physical memory.
    MmioRead {
        /// Guest-physical address.
        addr: u64,
        /// Access width in bytes.
        size: u8,
    },
    /// A store to unbacked guest-physical memory.
    MmioWrite {
        /// Guest-physical address.
        addr: u64,
        /// Access width in bytes.
        size: u8,
        /// Value written.
        value: u64,
    },
    /// `hlt` with nothing to deliver.
    Halt,
    /// The run was interrupted before the guest ran (`EINTR`).
    Interrupted,
    /// The guest shut the CPU down (triple fault).
    Shutdown,
    /// The guest asked for a reset.
    Reset,
    /// The guest asked to power off.
    Poweroff,
    /// Entry refused: the state broke architectural rules.
    FailEntry {
        /// The reason code returned.
        reason: u64,
    },
    /// `KVM_RUN` itself failed (injected fault).
    RunError,
}

impl fmt::Display for ExitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitKind::IoIn { port, size } => write!(f, "io-in port={port:#x} size={size}"),
            ExitKind::IoOut { port, size, value } => {
                write!(f, "io-out port={port:#x} size={size} value={value:#x}")
            }
            ExitKind::MmioRead { addr, size } => write!(f, "mmio-read addr={addr:#x} size={size}"),
            ExitKind::MmioWrite { addr, size, value } => {
                write!(f, "mmio-write addr={addr:#x} size={size} value={value:#x}")
            }
            ExitKind::Halt => write!(f, "halt"),
            ExitKind::Interrupted => write!(f, "interrupted"),
            ExitKind::Shutdown => write!(f, "shutdown"),
            ExitKind::Reset => write!(f, "reset"),
            ExitKind::Poweroff => write!(f, "poweroff"),
            ExitKind::FailEntry { reason } => write!(f, "fail-entry reason={reason:#x}"),
            ExitKind::RunError => write!(f, "run-error"),
        }
    }
}

/// One event of the trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The monitor entered vCPU `vcpu` with this state.
    Entry {
        /// vCPU index.
        vcpu: u32,
        /// RIP at entry.
        rip: u64,
        /// RAX at entry (carries the value of a completed `in`/MMIO read).
        rax: u64,
        /// Whether the monitor changed registers since the last exit.
        monitor_set: bool,
    },
    /// vCPU `vcpu` left the guest.
    Exit {
        /// vCPU index.
        vcpu: u32,
        /// RIP of the exiting instruction.
        rip: u64,
        /// What happened.
        kind: ExitKind,
    },
    /// A device raised an interrupt (through the VM).
    Inject(Interrupt),
    /// A legacy line was lowered.
    LineLow {
        /// The GSI.
        irq: u32,
    },
    /// A message the interrupt controller refused (bad address, delivery fault).
    Dropped {
        /// The message.
        irq: Interrupt,
        /// Why.
        why: String,
    },
    /// The guest on `vcpu` took this interrupt at entry.
    Deliver {
        /// vCPU index.
        vcpu: u32,
        /// The interrupt.
        irq: Interrupt,
    },
    /// A guest write matched an ioeventfd: signalled, no exit.
    IoEvent {
        /// vCPU index.
        vcpu: u32,
        /// Address written.
        addr: u64,
    },
    /// Entry was refused; the rules the state broke.
    EntryRefused {
        /// vCPU index.
        vcpu: u32,
        /// Broken rule names.
        rules: Vec<String>,
    },
    /// A fault the test asked for was injected.
    Fault {
        /// vCPU index.
        vcpu: u32,
        /// What was injected.
        what: String,
    },
    /// A marker the guest program wrote (what it is about to do).
    Guest {
        /// vCPU index.
        vcpu: u32,
        /// The text.
        text: String,
    },
    /// The guest program ended.
    GuestEnd {
        /// vCPU index.
        vcpu: u32,
        /// How it ended.
        how: String,
    },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Entry {
                vcpu,
                rip,
                rax,
                monitor_set,
            } => {
                write!(f, "cpu{vcpu} > entry rip={rip:#x} rax={rax:#x}")?;
                if *monitor_set {
                    write!(f, " (state set by monitor)")?;
                }
                Ok(())
            }
            Event::Exit { vcpu, rip, kind } => write!(f, "cpu{vcpu} < exit rip={rip:#x} {kind}"),
            Event::Inject(i) => write!(f, "     ! inject {i}"),
            Event::LineLow { irq } => write!(f, "     ! line irq={irq} low"),
            Event::Dropped { irq, why } => write!(f, "     ! dropped {irq}: {why}"),
            Event::Deliver { vcpu, irq } => {
                write!(f, "cpu{vcpu} * deliver vector={:#x} ({irq})", irq.vector())
            }
            Event::IoEvent { vcpu, addr } => write!(f, "cpu{vcpu} = ioeventfd addr={addr:#x}"),
            Event::EntryRefused { vcpu, rules } => {
                write!(f, "cpu{vcpu} x entry refused: {}", rules.join(", "))
            }
            Event::Fault { vcpu, what } => write!(f, "cpu{vcpu} ~ fault: {what}"),
            Event::Guest { vcpu, text } => write!(f, "cpu{vcpu} # {text}"),
            Event::GuestEnd { vcpu, how } => write!(f, "cpu{vcpu} # guest ended: {how}"),
        }
    }
}

/// A shared, append-only event log.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    events: Arc<Mutex<Vec<Event>>>,
}

impl Trace {
    /// An empty trace.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Event>> {
        self.events.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `event`.
    pub fn push(&self, event: Event) {
        self.lock().push(event);
    }

    /// A copy of every event so far.
    pub fn events(&self) -> Vec<Event> {
        self.lock().clone()
    }

    /// Number of events so far.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Forgets everything recorded so far (e.g. after a setup phase).
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// The trace as text, one event per line.
    pub fn render(&self) -> String {
        render(&self.events())
    }
}

/// Renders `events` one per line.
pub fn render(events: &[Event]) -> String {
    let mut s = String::new();
    for e in events {
        s.push_str(&e.to_string());
        s.push('\n');
    }
    s
}
