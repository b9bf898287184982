//! The guest side of virtio-pci (modern): finding the common, notify, ISR and
//! device structures through the vendor capabilities, enabling MSI-X, the
//! status handshake, feature negotiation and queue setup — in the order Linux's
//! `virtio_pci_modern` and `virtio_dev_probe` use.

use std::time::Duration;

use super::pci::{self, PciFunction, CMD_MASTER, CMD_MEMORY};
use super::virtq::SplitQueue;
use super::GuestAlloc;
use crate::guest::{GuestCpu, GuestError, GuestResult};
use crate::trace::Interrupt;

use virtio_bindings::{virtio_config as vc, virtio_ring as vr};

/// Virtio's PCI vendor ID.
pub const VIRTIO_VENDOR: u16 = 0x1af4;
/// `VIRTIO_F_VERSION_1`.
pub const F_VERSION_1: u64 = 1 << vc::VIRTIO_F_VERSION_1;
/// `VIRTIO_F_RING_EVENT_IDX`.
pub const F_EVENT_IDX: u64 = 1 << vr::VIRTIO_RING_F_EVENT_IDX;
/// "No vector".
pub const NO_VECTOR: u16 = 0xffff;
/// Status: the guest noticed the device.
pub const ACKNOWLEDGE: u8 = vc::VIRTIO_CONFIG_S_ACKNOWLEDGE as u8;
/// Status: driver present.
pub const DRIVER: u8 = vc::VIRTIO_CONFIG_S_DRIVER as u8;
/// Status: driver ready.
pub const DRIVER_OK: u8 = vc::VIRTIO_CONFIG_S_DRIVER_OK as u8;
/// Status: features accepted.
pub const FEATURES_OK: u8 = vc::VIRTIO_CONFIG_S_FEATURES_OK as u8;
/// The local APIC MSI address of CPU 0.
pub const MSI_ADDRESS: u64 = 0xfee0_0000;
/// First vector the driver programs (config changes); queue `i` gets `+ 1 + i`.
pub const VECTOR_BASE: u32 = 0x40;

const CAP_VENDOR: u8 = 0x09;
const CAP_MSIX: u8 = 0x11;

// Common configuration offsets (virtio 1.x 4.1.4.3).
const DFSELECT: u64 = 0;
const DF: u64 = 4;
const GFSELECT: u64 = 8;
const GF: u64 = 12;
const MSIX_CONFIG: u64 = 16;
const NUM_QUEUES: u64 = 18;
const STATUS: u64 = 20;
const Q_SELECT: u64 = 22;
const Q_SIZE: u64 = 24;
const Q_MSIX: u64 = 26;
const Q_ENABLE: u64 = 28;
const Q_NOFF: u64 = 30;
const Q_DESC: u64 = 32;
const Q_AVAIL: u64 = 40;
const Q_USED: u64 = 48;

/// A virtio-pci function as the guest driver found it.
#[derive(Debug, Clone)]
pub struct VirtioPci {
    /// The PCI function.
    pub func: PciFunction,
    /// Guest address of the common configuration.
    pub common: u64,
    /// Guest address of the notification area.
    pub notify_base: u64,
    /// `notify_off_multiplier`.
    pub notify_mult: u32,
    /// Guest address of the ISR byte.
    pub isr: u64,
    /// Guest address of the device configuration.
    pub device_cfg: u64,
    /// Guest address of the MSI-X table, and its size.
    pub msix_table: Option<(u64, u16)>,
    /// Offset of the MSI-X capability.
    pub msix_cap: Option<u8>,
    /// Negotiated features.
    pub features: u64,
}

fn dev_err(f: &PciFunction, what: impl std::fmt::Display) -> GuestError {
    GuestError::Device(format!("virtio slot {}: {what}", f.slot))
}

impl VirtioPci {
    /// [`VirtioPci::probe`] for a device of virtio type `device_type`
    /// (PCI device ID `0x1040 + device_type`); `what` names it in the error.
    pub fn probe_type(
        cpu: &mut GuestCpu,
        func: &PciFunction,
        device_type: u32,
        what: &str,
    ) -> GuestResult<Self> {
        let dev = Self::probe(cpu, func)?;
        if u32::from(dev.func.device) != 0x1040 + device_type {
            return Err(GuestError::Device(format!(
                "slot {} is not {what}",
                func.slot
            )));
        }
        Ok(dev)
    }

    /// Reads the virtio capabilities of `func` (which must be a modern virtio
    /// function) and locates every structure, as `vp_modern_probe` does.
    pub fn probe(cpu: &mut GuestCpu, func: &PciFunction) -> GuestResult<Self> {
        if func.vendor != VIRTIO_VENDOR || !(0x1040..0x1080).contains(&func.device) {
            return Err(dev_err(func, "not a modern virtio device"));
        }
        let mut found: [Option<(u64, u32, u32)>; 6] = [None; 6];
        let mut mult = 0;
        for &(id, off) in &func.caps {
            if id != CAP_VENDOR {
                continue;
            }
            let kind = pci::read(cpu, func.slot, off + 3, 1)? as u8;
            let bar = pci::read(cpu, func.slot, off + 4, 1)? as usize;
            let offset = pci::read(cpu, func.slot, off + 8, 4)?;
            let length = pci::read(cpu, func.slot, off + 12, 4)?;
            if !(1..=4).contains(&kind) || found[usize::from(kind)].is_some() {
                continue;
            }
            let Some(b) = func.bars.get(bar).copied().flatten() else {
                continue;
            };
            if u64::from(offset) + u64::from(length) > b.size {
                return Err(dev_err(func, format!("capability {kind} beyond BAR {bar}")));
            }
            if kind == 2 {
                mult = pci::read(cpu, func.slot, off + 16, 4)?;
            }
            found[usize::from(kind)] = Some((b.addr + u64::from(offset), length, offset));
        }
        let need = |k: usize, min: u32, name: &str| -> GuestResult<u64> {
            match found[k] {
                Some((a, len, _)) if len >= min => Ok(a),
                Some(_) => Err(dev_err(func, format!("{name} structure too small"))),
                None => Err(dev_err(func, format!("no {name} capability"))),
            }
        };
        let common = need(1, 0x38, "common")?;
        let notify_base = need(2, 2, "notify")?;
        let isr = need(3, 1, "ISR")?;
        let device_cfg = need(4, 1, "device")?;
        let mut msix_table = None;
        let mut msix_cap = None;
        if let Some(&(_, off)) = func.caps.iter().find(|c| c.0 == CAP_MSIX) {
            let ctl = pci::read(cpu, func.slot, off + 2, 2)? as u16;
            let table = pci::read(cpu, func.slot, off + 4, 4)?;
            let bar = (table & 7) as usize;
            if let Some(b) = func.bars.get(bar).copied().flatten() {
                msix_table = Some((b.addr + u64::from(table & !7), (ctl & 0x7ff) + 1));
                msix_cap = Some(off);
            }
        }
        Ok(VirtioPci {
            func: func.clone(),
            common,
            notify_base,
            notify_mult: mult,
            isr,
            device_cfg,
            msix_table,
            msix_cap,
            features: 0,
        })
    }

    /// Sets memory decoding and bus mastering (`pci_enable_device` + `pci_set_master`).
    pub fn enable(&self, cpu: &mut GuestCpu) -> GuestResult<()> {
        let cmd = pci::read(cpu, self.func.slot, 0x04, 2)? as u16;
        pci::write(
            cpu,
            self.func.slot,
            0x04,
            2,
            u32::from(cmd | CMD_MEMORY | CMD_MASTER),
        )
    }

    /// Enables MSI-X with `vectors` entries pointing at CPU 0, vector
    /// `VECTOR_BASE + n` (masked while programming, as `msix_capability_init`).
    pub fn enable_msix(&self, cpu: &mut GuestCpu, vectors: u16) -> GuestResult<()> {
        let (Some((table, size)), Some(cap)) = (self.msix_table, self.msix_cap) else {
            return Err(dev_err(&self.func, "no MSI-X capability"));
        };
        if vectors > size {
            return Err(dev_err(
                &self.func,
                format!("{vectors} vectors wanted, {size} offered"),
            ));
        }
        let ctl = pci::read(cpu, self.func.slot, cap + 2, 2)? as u16;
        pci::write(cpu, self.func.slot, cap + 2, 2, u32::from(ctl | 0xc000))?;
        for n in 0..vectors {
            let e = table + 16 * u64::from(n);
            cpu.mmio_write(e, 4, MSI_ADDRESS)?;
            cpu.mmio_write(e + 4, 4, 0)?;
            cpu.mmio_write(e + 8, 4, u64::from(VECTOR_BASE + u32::from(n)))?;
            cpu.mmio_write(e + 12, 4, 0)?;
        }
        pci::write(
            cpu,
            self.func.slot,
            cap + 2,
            2,
            u32::from((ctl | 0x8000) & !0x4000),
        )
    }

    /// Reads the status byte.
    pub fn status(&self, cpu: &mut GuestCpu) -> GuestResult<u8> {
        Ok(cpu.mmio_read(self.common + STATUS, 1)? as u8)
    }

    /// Writes the status byte.
    pub fn set_status(&self, cpu: &mut GuestCpu, s: u8) -> GuestResult<()> {
        cpu.mmio_write(self.common + STATUS, 1, u64::from(s))
    }

    /// Resets the device and waits (bounded) for the status to read 0.
    pub fn reset(&self, cpu: &mut GuestCpu) -> GuestResult<()> {
        self.set_status(cpu, 0)?;
        for _ in 0..100 {
            if self.status(cpu)? == 0 {
                return Ok(());
            }
        }
        Err(dev_err(&self.func, "status never read 0 after reset"))
    }

    /// The device's 64 feature bits.
    pub fn device_features(&self, cpu: &mut GuestCpu) -> GuestResult<u64> {
        cpu.mmio_write(self.common + DFSELECT, 4, 0)?;
        let lo = cpu.mmio_read(self.common + DF, 4)?;
        cpu.mmio_write(self.common + DFSELECT, 4, 1)?;
        let hi = cpu.mmio_read(self.common + DF, 4)?;
        Ok(hi << 32 | lo)
    }

    /// Writes the driver's features, sets FEATURES_OK and checks the device kept it.
    pub fn negotiate(&mut self, cpu: &mut GuestCpu, wanted: u64) -> GuestResult<u64> {
        let offered = self.device_features(cpu)?;
        if offered & F_VERSION_1 == 0 {
            return Err(dev_err(&self.func, "device does not offer VERSION_1"));
        }
        let f = offered & (wanted | F_VERSION_1);
        cpu.mmio_write(self.common + GFSELECT, 4, 0)?;
        cpu.mmio_write(self.common + GF, 4, f & 0xffff_ffff)?;
        cpu.mmio_write(self.common + GFSELECT, 4, 1)?;
        cpu.mmio_write(self.common + GF, 4, f >> 32)?;
        let s = self.status(cpu)?;
        self.set_status(cpu, s | FEATURES_OK)?;
        if self.status(cpu)? & FEATURES_OK == 0 {
            return Err(dev_err(
                &self.func,
                format!("device refused features {f:#x}"),
            ));
        }
        self.features = f;
        Ok(f)
    }

    /// Number of queues the device has.
    pub fn num_queues(&self, cpu: &mut GuestCpu) -> GuestResult<u16> {
        Ok(cpu.mmio_read(self.common + NUM_QUEUES, 2)? as u16)
    }

    /// Programs the configuration-change vector and checks it stuck.
    pub fn set_config_vector(&self, cpu: &mut GuestCpu, v: u16) -> GuestResult<()> {
        cpu.mmio_write(self.common + MSIX_CONFIG, 2, u64::from(v))?;
        let got = cpu.mmio_read(self.common + MSIX_CONFIG, 2)? as u16;
        if got != v {
            return Err(dev_err(
                &self.func,
                format!("config vector {v} read back {got:#x}"),
            ));
        }
        Ok(())
    }

    /// Sets up queue `index` with at most `max` entries and MSI-X vector
    /// `vector` (`setup_vq` + `vp_modern_queue_vector`); it is enabled later by
    /// [`VirtioPci::enable_queue`].
    pub fn setup_queue(
        &self,
        cpu: &mut GuestCpu,
        mem_alloc: &mut GuestAlloc,
        index: u16,
        max: u16,
        vector: u16,
    ) -> GuestResult<SplitQueue> {
        let c = self.common;
        cpu.mmio_write(c + Q_SELECT, 2, u64::from(index))?;
        let size = cpu.mmio_read(c + Q_SIZE, 2)? as u16;
        if size == 0 || cpu.mmio_read(c + Q_ENABLE, 2)? != 0 {
            return Err(dev_err(&self.func, format!("queue {index} unavailable")));
        }
        let size = size.min(max);
        cpu.mmio_write(c + Q_SIZE, 2, u64::from(size))?;
        let mem = cpu.mem().clone();
        let mut q = SplitQueue::new(
            &mem,
            mem_alloc,
            index,
            size,
            self.features & F_EVENT_IDX != 0,
        )?;
        for (off, addr) in [(Q_DESC, q.desc), (Q_AVAIL, q.avail), (Q_USED, q.used)] {
            cpu.mmio_write(c + off, 4, addr & 0xffff_ffff)?;
            cpu.mmio_write(c + off + 4, 4, addr >> 32)?;
        }
        let noff = cpu.mmio_read(c + Q_NOFF, 2)?;
        q.notify_addr = self.notify_base + noff * u64::from(self.notify_mult);
        cpu.mmio_write(c + Q_MSIX, 2, u64::from(vector))?;
        let got = cpu.mmio_read(c + Q_MSIX, 2)? as u16;
        if got != vector {
            return Err(dev_err(
                &self.func,
                format!("queue {index} vector {vector} read back {got:#x}"),
            ));
        }
        q.vector = vector;
        Ok(q)
    }

    /// Enables queue `index`.
    pub fn enable_queue(&self, cpu: &mut GuestCpu, index: u16) -> GuestResult<()> {
        cpu.mmio_write(self.common + Q_SELECT, 2, u64::from(index))?;
        cpu.mmio_write(self.common + Q_ENABLE, 2, 1)
    }

    /// Reads `size` bytes of device configuration at `offset`.
    pub fn config_read(&self, cpu: &mut GuestCpu, offset: u64, size: u8) -> GuestResult<u64> {
        cpu.mmio_read(self.device_cfg + offset, size)
    }

    /// Rings queue `q`'s doorbell (a 16-bit write of its index).
    pub fn kick(&self, cpu: &mut GuestCpu, q: &SplitQueue) -> GuestResult<()> {
        cpu.mmio_write(q.notify_addr, 2, u64::from(q.index))
    }

    /// Reads (and so clears) the ISR byte.
    pub fn read_isr(&self, cpu: &mut GuestCpu) -> GuestResult<u8> {
        Ok(cpu.mmio_read(self.isr, 1)? as u8)
    }

    /// The whole probe: reset, ACKNOWLEDGE|DRIVER, negotiate, MSI-X, queues
    /// (`max_sizes[i]` entries each, vector `1 + i`), DRIVER_OK.
    pub fn bring_up(
        &mut self,
        cpu: &mut GuestCpu,
        alloc: &mut GuestAlloc,
        wanted: u64,
        max_sizes: &[u16],
    ) -> GuestResult<Vec<SplitQueue>> {
        self.bring_up_with(cpu, alloc, wanted, max_sizes, true)
    }

    /// [`VirtioPci::bring_up`], optionally without MSI-X: every vector is then
    /// `NO_VECTOR` and the device interrupts through its legacy INTx line.
    pub fn bring_up_with(
        &mut self,
        cpu: &mut GuestCpu,
        alloc: &mut GuestAlloc,
        wanted: u64,
        max_sizes: &[u16],
        msix: bool,
    ) -> GuestResult<Vec<SplitQueue>> {
        cpu.note(format!("virtio {:02x}: enable, reset", self.func.slot));
        self.enable(cpu)?;
        self.reset(cpu)?;
        self.set_status(cpu, ACKNOWLEDGE)?;
        self.set_status(cpu, ACKNOWLEDGE | DRIVER)?;
        let f = self.negotiate(cpu, wanted)?;
        cpu.note(format!(
            "virtio {:02x}: features {f:#x} accepted",
            self.func.slot
        ));
        let nq = self.num_queues(cpu)?;
        if usize::from(nq) < max_sizes.len() {
            return Err(dev_err(
                &self.func,
                format!("{nq} queues, {} needed", max_sizes.len()),
            ));
        }
        let mut queues = Vec::new();
        if msix {
            cpu.note(format!("virtio {:02x}: MSI-X and queues", self.func.slot));
            self.enable_msix(cpu, 1 + max_sizes.len() as u16)?;
            self.set_config_vector(cpu, 0)?;
        } else {
            cpu.note(format!("virtio {:02x}: INTx and queues", self.func.slot));
            self.set_config_vector(cpu, NO_VECTOR)?;
        }
        for (i, &max) in max_sizes.iter().enumerate() {
            let v = if msix { 1 + i as u16 } else { NO_VECTOR };
            queues.push(self.setup_queue(cpu, alloc, i as u16, max, v)?);
        }
        for q in &queues {
            self.enable_queue(cpu, q.index)?;
        }
        let s = self.status(cpu)?;
        self.set_status(cpu, s | DRIVER_OK)?;
        cpu.note(format!("virtio {:02x}: DRIVER_OK", self.func.slot));
        Ok(queues)
    }
}

/// The APIC vector MSI-X entry `n` of a device set up by [`VirtioPci::bring_up`] uses.
pub fn vector_of(entry: u16) -> u8 {
    (VECTOR_BASE + u32::from(entry)) as u8
}

impl VirtioPci {
    /// The vector queue `q`'s completions arrive on: its MSI-X entry's, or the
    /// legacy line's (`0x20 + interrupt line`) when it has no MSI-X vector.
    pub fn irq_vector(&self, cpu: &mut GuestCpu, q: &SplitQueue) -> GuestResult<u8> {
        if q.vector == NO_VECTOR {
            let line = pci::read(cpu, self.func.slot, 0x3c, 1)? as u8;
            Ok(0x20u8.wrapping_add(line))
        } else {
            Ok(vector_of(q.vector))
        }
    }
}

/// Waits for an interrupt whose vector is `vector`, stashing others in
/// `others`. Errs after `patience` without one.
pub fn wait_vector(
    cpu: &mut GuestCpu,
    vector: u8,
    patience: Duration,
    others: &mut Vec<Interrupt>,
) -> GuestResult<()> {
    loop {
        let i = cpu.wait_interrupt(patience)?;
        if i.vector() == vector {
            return Ok(());
        }
        others.push(i);
    }
}
