//! The host bridge at 00:00.0. Linux's conf1 sanity check looks for a device of
//! class "host bridge" on bus 0 before it trusts the config ports.

use super::config::{PciConfig, PciIds};
use super::device::PciDevice;

/// Intel's ID space, device 0x0d57: the virtual host bridge ID other VMMs use,
/// which has no Linux quirks attached.
const IDS: PciIds = PciIds {
    vendor: 0x8086,
    device: 0x0d57,
    revision: 0,
    class: 0x06_00_00,
    subsystem_vendor: 0,
    subsystem: 0,
};

/// A host bridge with no BARs and no interrupts.
pub struct HostBridge {
    config: PciConfig,
}

impl HostBridge {
    /// A fresh host bridge.
    pub fn new() -> Self {
        HostBridge {
            config: PciConfig::new(IDS, 0),
        }
    }
}

impl Default for HostBridge {
    fn default() -> Self {
        Self::new()
    }
}

impl PciDevice for HostBridge {
    fn name(&self) -> String {
        "host-bridge".into()
    }
    fn config(&self) -> &PciConfig {
        &self.config
    }
    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }
    fn bar_read(&mut self, _bar: usize, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }
    fn bar_write(&mut self, _bar: usize, _offset: u64, _data: &[u8]) {}
}
