//! The guest's next instruction as the monitor sees it: port and MMIO
//! accesses become exits (with the modelled register effects), writes that hit
//! an ioeventfd and halts with an interrupt pending complete in place.

use std::sync::mpsc::RecvTimeoutError;
use std::time::Instant;

use colinux_driver::hypervisor::{HypervisorError, IoEventAddress, Result, VmExit};

use super::{lock, HaltEnd, Owed, SimVcpu};
use crate::guest::{Request, Resume};
use crate::trace::{Event, ExitKind, Interrupt};
use crate::world::{merge_register, mmio_insn_len, pio_insn_len};

impl SimVcpu {
    /// Interrupts that end a halt: `hlt` completes (RIP moves past it).
    pub(super) fn deliver_after_halt(&self, irqs: &[Interrupt]) {
        let mut st = lock(&self.state);
        st.regs.rip = st.regs.rip.wrapping_add(1);
        drop(st);
        self.deliver(irqs);
    }

    /// Waits for the guest's next exit and returns it.
    pub(super) fn next_exit(&mut self) -> Result<VmExit<'_>> {
        loop {
            let Some(link) = &self.link else {
                let e = self.end_with(Err("the guest is not running".into()));
                return Ok(self.end_exit(e));
            };
            let req = match link.rx.recv_timeout(self.vm.config.step_timeout) {
                Ok(r) => r,
                Err(RecvTimeoutError::Timeout) => {
                    return Err(HypervisorError::Unsupported(format!(
                        "sim vCPU {}: the guest program did not reach its next instruction within {:?}",
                        self.id, self.vm.config.step_timeout
                    )))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let e = self.end_with(Err("the guest thread ended without a word".into()));
                    return Ok(self.end_exit(e));
                }
            };
            match req {
                Request::In { port, size } => {
                    let size = clamp_pio(size);
                    lock(&self.state).regs.rdx = u64::from(port);
                    self.exit_event(ExitKind::IoIn { port, size });
                    self.owed = Owed::Read {
                        size,
                        len: pio_insn_len(size),
                    };
                    self.buf = [0; 8];
                    return Ok(VmExit::IoIn {
                        port,
                        data: &mut self.buf[..usize::from(size)],
                    });
                }
                Request::Out { port, size, value } => {
                    let size = clamp_pio(size);
                    let len = pio_insn_len(size);
                    {
                        let mut st = lock(&self.state);
                        st.regs.rax = merge_register(st.regs.rax, value, size);
                        st.regs.rdx = u64::from(port);
                    }
                    if self
                        .vm
                        .ioevent(IoEventAddress::Pio(u64::from(port)), size, value)
                    {
                        self.ioevent_done(u64::from(port), len)?;
                        continue;
                    }
                    self.exit_event(ExitKind::IoOut { port, size, value });
                    self.owed = Owed::Advance(len);
                    self.buf = value.to_le_bytes();
                    return Ok(VmExit::IoOut {
                        port,
                        data: &self.buf[..usize::from(size)],
                    });
                }
                Request::MmioRead { addr, size } => {
                    let size = clamp_mmio(size);
                    lock(&self.state).regs.rbx = addr;
                    self.exit_event(ExitKind::MmioRead { addr, size });
                    self.owed = Owed::Read {
                        size,
                        len: mmio_insn_len(size),
                    };
                    self.buf = [0; 8];
                    return Ok(VmExit::MmioRead {
                        addr,
                        data: &mut self.buf[..usize::from(size)],
                    });
                }
                Request::MmioWrite { addr, size, value } => {
                    let size = clamp_mmio(size);
                    let len = mmio_insn_len(size);
                    {
                        let mut st = lock(&self.state);
                        st.regs.rax = merge_register(st.regs.rax, value, size);
                        st.regs.rbx = addr;
                    }
                    if self.vm.ioevent(IoEventAddress::Mmio(addr), size, value) {
                        self.ioevent_done(addr, len)?;
                        continue;
                    }
                    self.exit_event(ExitKind::MmioWrite { addr, size, value });
                    self.owed = Owed::Advance(len);
                    self.buf = value.to_le_bytes();
                    return Ok(VmExit::MmioWrite {
                        addr,
                        data: &self.buf[..usize::from(size)],
                    });
                }
                Request::Halt { patience } => {
                    let deadline = Instant::now() + patience;
                    let irqs = self.vm.take_pending(self.id);
                    if !irqs.is_empty() {
                        self.deliver_after_halt(&irqs);
                        self.resume_or_fail(irqs)?;
                        continue;
                    }
                    if !self.vm.has_irqchip() {
                        // No in-kernel irqchip: `hlt` is the monitor's business.
                        self.exit_event(ExitKind::Halt);
                        self.owed = Owed::Halt { deadline };
                        return Ok(VmExit::Halt);
                    }
                    match self.halt_wait(deadline) {
                        HaltEnd::Resume(irqs, timed_out) => {
                            self.deliver_after_halt(&irqs);
                            let regs = lock(&self.state).regs;
                            let ok = self.link.as_ref().is_some_and(|l| {
                                l.tx.send(Resume {
                                    value: 0,
                                    irqs,
                                    regs,
                                    timed_out,
                                })
                                .is_ok()
                            });
                            if !ok {
                                let e = self.end_with(Err("the guest thread vanished".into()));
                                return Ok(self.end_exit(e));
                            }
                        }
                        HaltEnd::Kick => return Ok(self.kick_exit(deadline)),
                    }
                }
                Request::End(end) => {
                    let e = self.end_with(end);
                    return Ok(self.end_exit(e));
                }
            }
        }
    }

    fn resume_or_fail(&mut self, irqs: Vec<Interrupt>) -> Result<()> {
        if self.resume(0, irqs, false) {
            Ok(())
        } else {
            Err(HypervisorError::Unsupported(format!(
                "sim vCPU {}: the guest thread vanished",
                self.id
            )))
        }
    }

    /// A write absorbed by an ioeventfd: the instruction completes in place.
    fn ioevent_done(&mut self, addr: u64, len: u64) -> Result<()> {
        self.trace(Event::IoEvent {
            vcpu: self.id,
            addr,
        });
        {
            let mut st = lock(&self.state);
            st.regs.rip = st.regs.rip.wrapping_add(len);
        }
        let irqs = self.vm.take_pending(self.id);
        self.deliver(&irqs);
        self.resume_or_fail(irqs)
    }
}

fn clamp_pio(size: u8) -> u8 {
    match size {
        1 | 2 => size,
        _ => 4,
    }
}

fn clamp_mmio(size: u8) -> u8 {
    match size {
        1 | 2 | 4 => size,
        _ => 8,
    }
}
