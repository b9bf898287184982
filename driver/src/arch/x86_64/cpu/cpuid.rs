//! What CPUID tells each vCPU: its APIC id and the topology, the hypervisor
//! bit, and no virtualization extensions of its own.

use crate::hypervisor::CpuIdEntry;

/// CPUID leaf 1 ECX: hypervisor present.
pub const CPUID1_ECX_HYPERVISOR: u32 = 1 << 31;

/// CPUID leaf 1 ECX: VMX (Intel virtualization).
pub const CPUID1_ECX_VMX: u32 = 1 << 5;
/// CPUID leaf 0x8000_0001 ECX: SVM (AMD virtualization).
pub const CPUID_EXT1_ECX_SVM: u32 = 1 << 2;

/// Adapts the hypervisor's supported CPUID to vCPU `id` of `count`: APIC ids in
/// leaves 1, 0xb and 0x1f, the logical-processor count, the hypervisor bit.
/// VMX and SVM are hidden: a coLinux guest runs beside the host's work and
/// does not host VMs of its own (as Firecracker's default), and a distribution
/// guest would otherwise load kvm_amd/kvm_intel at boot for nothing. The KVM
/// paravirtual leaves (0x4000_0000..) pass through as the backend gave them.
pub fn vcpu_cpuid(supported: &[CpuIdEntry], id: u32, count: u32) -> Vec<CpuIdEntry> {
    let mut out = supported.to_vec();
    for e in &mut out {
        match e.function {
            1 => {
                e.ebx = (e.ebx & 0x0000_ffff) | (id << 24) | ((count.min(255)) << 16);
                e.ecx |= CPUID1_ECX_HYPERVISOR;
                e.ecx &= !CPUID1_ECX_VMX;
                // HTT: the count in EBX[23:16] is valid.
                e.edx |= 1 << 28;
            }
            0xb | 0x1f => {
                // Subleaf 0: SMT level with one thread per core; subleaf 1: core
                // level with `count` cores. EDX is the x2APIC id.
                e.edx = id;
                match e.index {
                    0 => {
                        e.eax = 0;
                        e.ebx = 1;
                        e.ecx = (1 << 8) | e.index;
                    }
                    1 => {
                        e.eax = 32 - count.max(1).next_power_of_two().leading_zeros() - 1;
                        e.ebx = count;
                        e.ecx = (2 << 8) | e.index;
                    }
                    _ => {
                        e.eax = 0;
                        e.ebx = 0;
                        e.ecx = e.index;
                    }
                }
            }
            0x8000_0001 => e.ecx &= !CPUID_EXT1_ECX_SVM,
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtualization_extensions_are_hidden() {
        let entry = |function: u32, ecx: u32| CpuIdEntry {
            function,
            ecx,
            ..Default::default()
        };
        let out = vcpu_cpuid(
            &[
                entry(1, CPUID1_ECX_VMX | 1),
                entry(0x8000_0001, CPUID_EXT1_ECX_SVM | 1),
            ],
            0,
            1,
        );
        assert_eq!(out[0].ecx & CPUID1_ECX_VMX, 0);
        assert_eq!(out[0].ecx & 1, 1, "other leaf 1 bits stay");
        assert_eq!(out[1].ecx, 1, "SVM cleared, the rest kept");
    }

    #[test]
    fn cpuid_topology() {
        let sup = vec![
            CpuIdEntry {
                function: 1,
                ebx: 0xff00_0800,
                ..Default::default()
            },
            CpuIdEntry {
                function: 0xb,
                index: 1,
                ..Default::default()
            },
        ];
        let c = vcpu_cpuid(&sup, 3, 4);
        assert_eq!(c[0].ebx >> 24, 3);
        assert_eq!((c[0].ebx >> 16) & 0xff, 4);
        assert_ne!(c[0].ecx & CPUID1_ECX_HYPERVISOR, 0);
        assert_eq!((c[1].ebx, c[1].edx, c[1].eax), (4, 3, 2));
    }
}
