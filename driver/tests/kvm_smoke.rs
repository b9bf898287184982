//! The KVM backend and the driver's long-mode boot state on the host's real
//! `/dev/kvm`: a few instructions at the boot entry produce the expected port
//! exits and a halt. Even `kvm_pvm`, which cannot boot a stock kernel, runs this.
//! Without a usable `/dev/kvm`, the probe must say so.

use colinux_driver::arch::x86_64::cpu::{boot_cpu_state, boot_fpu, EntryMode};
use colinux_driver::arch::x86_64::layout::{PAGE_TABLES_PAGES, PAGE_TABLES_START, ZERO_PAGE_START};
use colinux_driver::arch::x86_64::paging::{boot_identity_map, build, TableArea};
use colinux_driver::hypervisor::kvm::{probe_host, HostSupport, KvmHypervisor};
use colinux_driver::hypervisor::{Hypervisor, VmExit};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const ENTRY: u64 = 0x10_0000;

#[test]
fn long_mode_entry_runs_and_exits_on_port_io() {
    let hv = match KvmHypervisor::new() {
        Ok(hv) => hv,
        Err(e) => {
            assert!(
                matches!(probe_host(), HostSupport::NoKvm(_)),
                "KVM unusable ({e}) but the probe says otherwise"
            );
            return;
        }
    };
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 32 << 20)]).unwrap();
    let tables = build(
        &boot_identity_map(),
        TableArea {
            base: PAGE_TABLES_START,
            pages: PAGE_TABLES_PAGES,
        },
    )
    .unwrap();
    for (addr, bytes) in tables.page_bytes() {
        mem.write_slice(&bytes, GuestAddress(addr)).unwrap();
    }
    // mov dx,0x3f8; mov al,'K'; out dx,al; mov eax,0x12345678; out dx,eax;
    // in al,dx; out 0x80,al; hlt
    let code = [
        0x66, 0xba, 0xf8, 0x03, 0xb0, 0x4b, 0xee, 0xb8, 0x78, 0x56, 0x34, 0x12, 0xef, 0xec, 0xe6,
        0x80, 0xf4,
    ];
    mem.write_slice(&code, GuestAddress(ENTRY)).unwrap();

    let vm = hv.create_vm().unwrap();
    vm.set_memory(&mem).unwrap();
    let mut vcpu = vm.create_vcpu(0).unwrap();
    let reset = vcpu.get_sregs().unwrap();
    let state = boot_cpu_state(
        EntryMode::Long64 {
            cr3: tables.cr3,
            zero_page: ZERO_PAGE_START,
        },
        ENTRY,
        &reset,
    );
    mem.write_slice(&state.gdt_bytes(), GuestAddress(state.sregs.gdt.base))
        .unwrap();
    vcpu.set_cpuid(&hv.supported_cpuid().unwrap()).unwrap();
    vcpu.set_sregs(&state.sregs).unwrap();
    vcpu.set_regs(&state.regs).unwrap();
    vcpu.set_fpu(&boot_fpu()).unwrap();

    let mut seen = Vec::new();
    for _ in 0..16 {
        match vcpu.run().unwrap() {
            VmExit::IoOut { port, data } => seen.push(format!("out {port:#x} {data:02x?}")),
            VmExit::IoIn { port, data } => {
                data.fill(0x5a);
                seen.push(format!("in {port:#x} {}", data.len()));
            }
            VmExit::Halt => {
                seen.push("hlt".into());
                break;
            }
            VmExit::Interrupted => {}
            other => panic!("unexpected exit {other:?} after {seen:?}"),
        }
    }
    assert_eq!(
        seen,
        vec![
            "out 0x3f8 [4b]",
            "out 0x3f8 [78, 56, 34, 12]",
            "in 0x3f8 1",
            "out 0x80 [5a]",
            "hlt"
        ]
    );
    let regs = vcpu.get_regs().unwrap();
    assert_eq!(regs.rip, ENTRY + code.len() as u64);
    let sregs = vcpu.get_sregs().unwrap();
    assert_eq!(sregs.efer & (1 << 10), 1 << 10, "long mode active");
}
