//! Classic defaults the daemon applies on top of what the configuration
//! says: guest RAM when `mem=` is absent (and the "leave the host room"
//! rule), and the implicit `cofs31` share of the initrd's folder.

use std::path::Path;

use crate::model::{CofsShare, ConfPath, Config, MAX_COFS};

/// RAM always left to the host (MiB), as the original kept back.
pub const HOST_RESERVE_MIB: u64 = 64;
/// Smallest guest RAM the default rule gives (MiB).
pub const MIN_DEFAULT_MEM_MIB: u64 = 8;

/// Why a guest RAM size cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "mem={requested} MiB does not fit: the host has {host_total} MiB and keeps {HOST_RESERVE_MIB} MiB \
     for itself, so at most {max} MiB can go to the guest"
)]
pub struct MemError {
    /// The guest RAM asked for (or the default).
    pub requested: u64,
    /// The host's RAM.
    pub host_total: u64,
    /// The most the guest can have.
    pub max: u64,
}

/// The guest RAM in MiB: `mem=` if given, otherwise a quarter of the host's
/// RAM (at least 8 MiB); either way it must leave the host 64 MiB.
pub fn guest_mem_mib(requested: Option<u64>, host_total_mib: u64) -> Result<u64, MemError> {
    let max = host_total_mib.saturating_sub(HOST_RESERVE_MIB);
    let mem = requested.unwrap_or_else(|| (host_total_mib / 4).max(MIN_DEFAULT_MEM_MIB));
    if mem > max {
        return Err(MemError {
            requested: mem,
            host_total: host_total_mib,
            max,
        });
    }
    Ok(mem)
}

impl Config {
    /// The guest RAM for this configuration on a host with
    /// `host_total_mib` MiB (see [`guest_mem_mib`]).
    pub fn guest_mem_mib(&self, host_total_mib: u64) -> Result<u64, MemError> {
        guest_mem_mib(self.mem_mib, host_total_mib)
    }

    /// The classic implicit share: with `initrd=` given and `cofs31` free,
    /// the initrd's folder is shared as `cofs31` (so the initrd's scripts can
    /// reach files beside it). `None` otherwise.
    pub fn initrd_share(&self) -> Option<CofsShare> {
        let initrd = self.initrd.as_ref()?;
        if self.cofs.iter().any(|c| c.index == MAX_COFS) {
            return None;
        }
        let dir = Path::new(&initrd.raw)
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| ".".to_string());
        Some(CofsShare {
            index: MAX_COFS,
            path: ConfPath::new(dir, initrd.base_dir.clone()),
            read_only: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::sync::Arc;

    #[test]
    fn default_and_limits() {
        assert_eq!(guest_mem_mib(None, 8192), Ok(2048));
        assert_eq!(
            guest_mem_mib(None, 16),
            Err(MemError {
                requested: 8,
                host_total: 16,
                max: 0
            })
        );
        assert_eq!(
            guest_mem_mib(Some(4033), 4096),
            Err(MemError {
                requested: 4033,
                host_total: 4096,
                max: 4032
            })
        );
        assert_eq!(guest_mem_mib(Some(4032), 4096), Ok(4032));
        let msg = guest_mem_mib(Some(9000), 4096).unwrap_err().to_string();
        assert!(
            msg.contains("mem=9000") && msg.contains("at most 4032"),
            "{msg}"
        );
    }

    #[test]
    fn initrd_share_rules() {
        let base = Some(Arc::new(PathBuf::from("/vm")));
        let mut c = Config {
            initrd: Some(ConfPath::new("boot/initrd.gz", base.clone())),
            ..Config::default()
        };
        let s = c.initrd_share().unwrap();
        assert_eq!((s.index, s.path.resolve()), (31, PathBuf::from("/vm/boot")));
        c.initrd = Some(ConfPath::new("initrd.gz", base.clone()));
        assert_eq!(
            c.initrd_share().unwrap().path.resolve(),
            PathBuf::from("/vm/.")
        );
        c.cofs.push(CofsShare {
            index: 31,
            path: ConfPath::new("/x", None),
            read_only: false,
        });
        assert_eq!(c.initrd_share(), None);
        c.initrd = None;
        c.cofs.clear();
        assert_eq!(c.initrd_share(), None);
    }
}
