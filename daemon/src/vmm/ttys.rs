//! `ttysN=PORT`: the guest's serial port N+1 connected to a host tty.
//!
//! - `ttys0` is the guest's ttyS1 (COM2: 0x2f8, IRQ 3), `ttys1` its ttyS2
//!   (COM3: 0x3e8, IRQ 4), `ttys2` its ttyS3 (COM4: 0x2e8, IRQ 3); ttyS0 is
//!   the console. Each is a vm-superio UART, described in the DSDT so the
//!   guest's 8250 driver finds it.
//! - `PORT` is a host tty device (`/dev/ttyUSB0`, opened and put in raw mode)
//!   or `pty`: a new pseudo-terminal, whose slave path is logged
//!   (`ttys0: guest ttyS1 is /dev/pts/N`) and written to a file: next to the
//!   pid file (`<pidfile>.ttys0`) with `-p`, else
//!   `$XDG_RUNTIME_DIR/colinux-<pid>.ttys0`, else `/run/colinux/<pid>.ttys0`.
//!   The file is removed when the daemon ends.
//! - Windows names (`COM1`, `com2:`, `\\.\COM3`) are configuration errors.
//!
//! The host side is opened once and survives guest reboots: each boot's UART
//! is plugged into the same host descriptor.

use std::ffi::CStr;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use colinux_conf::Config;
use colinux_devices::bus::Bus;
use colinux_devices::interrupt::InterruptSink;
use colinux_devices::legacy::serial::SerialPort;
use colinux_driver::hypervisor::Vm;

use super::interrupts::VmInterrupts;
use super::terminal::make_raw;

/// What a `ttysN=` value names on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A new pseudo-terminal.
    Pty,
    /// A host tty device.
    Device(PathBuf),
}

/// The guest port of `ttysN`: (guest device name, I/O base, ISA IRQ).
pub fn guest_port(index: u32) -> Option<(&'static str, u16, u8)> {
    let names = ["ttyS1", "ttyS2", "ttyS3"];
    let (_, base, irq) = *colinux_driver::arch::x86_64::acpi::EXTRA_COM.get(index as usize)?;
    Some((names[index as usize], base, irq))
}

/// The [`colinux_driver::arch::x86_64::acpi::AcpiConfig::extra_com`] bits for the
/// configured `ttysN`.
pub fn extra_com(config: &Config) -> u8 {
    config
        .serial
        .iter()
        .filter(|s| guest_port(s.index).is_some())
        .fold(0, |m, s| m | 1 << s.index)
}

fn is_windows_port(v: &str) -> bool {
    let v = v.strip_prefix(r"\\.\").unwrap_or(v);
    let v = v.strip_suffix(':').unwrap_or(v);
    let lower = v.to_ascii_lowercase();
    ["com", "lpt"].iter().any(|p| {
        lower
            .strip_prefix(p)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// Checks a `ttysN=` port value (index and device), as the message to show.
pub fn parse_target(index: u32, device: &str) -> Result<Target, String> {
    if guest_port(index).is_none() {
        return Err(format!(
            "ttys{index}: only ttys0 .. ttys2 (the guest's ttyS1 .. ttyS3) are available"
        ));
    }
    if is_windows_port(device) {
        return Err(format!(
            "`{device}` is a Windows port name; give a host tty device \
             (e.g. /dev/ttyS0, /dev/ttyUSB0) or `pty` for a new pseudo-terminal"
        ));
    }
    if device == "pty" {
        return Ok(Target::Pty);
    }
    if device.starts_with('/') {
        return Ok(Target::Device(PathBuf::from(device)));
    }
    Err(format!(
        "`{device}`: expected an absolute host tty device path (e.g. /dev/ttyUSB0) or `pty`"
    ))
}

/// Where the slave path of `ttysN=pty` is written.
pub fn pty_path_file(pidfile: Option<&Path>, index: u32) -> PathBuf {
    let name = format!("ttys{index}");
    if let Some(p) = pidfile {
        let mut s = p.as_os_str().to_owned();
        s.push(format!(".{name}"));
        return PathBuf::from(s);
    }
    let pid = std::process::id();
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d).join(format!("colinux-{pid}.{name}")),
        None => PathBuf::from("/run/colinux").join(format!("{pid}.{name}")),
    }
}

/// The UART's output: the host descriptor, non-blocking (bytes nobody reads
/// are dropped rather than stalling the vCPU).
struct HostOut(Arc<OwnedFd>);

impl Write for HostOut {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // SAFETY: writing from a valid buffer to an open descriptor.
        let n = unsafe { libc::write(self.0.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
        // A full or closed host side drops the bytes, like an unplugged cable.
        Ok(if n < 0 { buf.len() } else { n as usize })
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

type Uart = Arc<Mutex<SerialPort<HostOut>>>;

struct HostPort {
    index: u32,
    fd: Arc<OwnedFd>,
    /// The current boot's UART (input goes there).
    uart: Arc<Mutex<Option<Uart>>>,
    /// The pty slave, kept open so the master never reads EIO.
    _slave: Option<OwnedFd>,
    path_file: Option<PathBuf>,
}

/// The host side of every `ttysN=`, opened once for the daemon's life.
#[derive(Default)]
pub struct HostPorts {
    ports: Vec<HostPort>,
}

fn set_nonblocking(fd: i32) {
    // SAFETY: fcntl on an open descriptor.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

fn open_pty() -> Result<(OwnedFd, OwnedFd, PathBuf)> {
    // SAFETY: plain libc calls on the descriptor they return; checked below.
    let master = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    if master < 0 {
        return Err(std::io::Error::last_os_error()).context("opening a pseudo-terminal");
    }
    // SAFETY: `master` is a new descriptor we own.
    let master = unsafe { OwnedFd::from_raw_fd(master) };
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: valid descriptor and buffer of the given length.
    let ok = unsafe {
        libc::grantpt(master.as_raw_fd()) == 0
            && libc::unlockpt(master.as_raw_fd()) == 0
            && libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()) == 0
    };
    if !ok {
        return Err(std::io::Error::last_os_error()).context("setting up a pseudo-terminal");
    }
    // SAFETY: ptsname_r wrote a NUL-terminated string.
    let path = PathBuf::from(
        unsafe { CStr::from_ptr(name.as_ptr()) }
            .to_string_lossy()
            .into_owned(),
    );
    let slave = open_device(&path)?;
    make_raw(slave.as_raw_fd(), false)
        .with_context(|| format!("raw mode on {}", path.display()))?;
    Ok((master, slave, path))
}

fn open_device(path: &Path) -> Result<OwnedFd> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .context("a device path with a NUL byte")?;
    // SAFETY: a valid C string; the descriptor is checked and then owned.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC | libc::O_NONBLOCK,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("opening {}", path.display()));
    }
    // SAFETY: `fd` is a new descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl HostPorts {
    /// Opens the host side of every `ttysN=` (values already checked).
    pub fn open(config: &Config, pidfile: Option<&Path>) -> Result<Self> {
        let mut ports = Vec::new();
        for s in &config.serial {
            let target = match parse_target(s.index, &s.device) {
                Ok(t) => t,
                Err(e) => bail!("ttys{}={}: {e}", s.index, s.device),
            };
            let (guest, _, _) = guest_port(s.index).unwrap_or(("ttyS?", 0, 0));
            let (fd, slave, path_file) = match target {
                Target::Pty => {
                    let (master, slave, path) = open_pty()?;
                    eprintln!(
                        "colinux-daemon: ttys{}: guest {guest} is {}",
                        s.index,
                        path.display()
                    );
                    let file = pty_path_file(pidfile, s.index);
                    if let Some(dir) = file.parent() {
                        let _ = std::fs::create_dir_all(dir);
                    }
                    let file = match std::fs::write(&file, format!("{}\n", path.display())) {
                        Ok(()) => Some(file),
                        Err(e) => {
                            tracing::warn!("ttys{}: cannot write {}: {e}", s.index, file.display());
                            None
                        }
                    };
                    (master, Some(slave), file)
                }
                Target::Device(path) => {
                    let fd = open_device(&path).with_context(|| format!("ttys{}", s.index))?;
                    if let Err(e) = make_raw(fd.as_raw_fd(), false) {
                        tracing::warn!(
                            "ttys{}: {} is not a terminal ({e}); used as it is",
                            s.index,
                            path.display()
                        );
                    }
                    tracing::info!("ttys{}: guest {guest} is {}", s.index, path.display());
                    (fd, None, None)
                }
            };
            set_nonblocking(fd.as_raw_fd());
            let port = HostPort {
                index: s.index,
                fd: Arc::new(fd),
                uart: Arc::new(Mutex::new(None)),
                _slave: slave,
                path_file,
            };
            spawn_reader(port.index, port.fd.clone(), port.uart.clone())?;
            ports.push(port);
        }
        Ok(Self { ports })
    }

    /// Adds this boot's UARTs to its port bus `pio` (interrupting `vm`),
    /// wired to the host ports.
    pub fn attach(&self, vm: &Arc<dyn Vm>, pio: &mut Bus) -> Result<()> {
        if self.ports.is_empty() {
            return Ok(());
        }
        let irq: Arc<dyn InterruptSink> = Arc::new(VmInterrupts::new(vm.clone()));
        for p in &self.ports {
            let Some((_, base, line)) = guest_port(p.index) else {
                continue;
            };
            let uart = Arc::new(Mutex::new(SerialPort::new(
                irq.clone(),
                u32::from(line),
                HostOut(p.fd.clone()),
            )));
            pio.insert(uart.clone(), u64::from(base), 8)
                .with_context(|| format!("ttys{}: placing the UART at {base:#x}", p.index))?;
            *p.uart.lock().unwrap_or_else(|e| e.into_inner()) = Some(uart);
        }
        Ok(())
    }
}

impl Drop for HostPorts {
    fn drop(&mut self) {
        for p in &self.ports {
            if let Some(f) = &p.path_file {
                let _ = std::fs::remove_file(f);
            }
        }
    }
}

/// Moves host input to the current UART (waiting while its FIFO is full or
/// while the guest reboots).
fn spawn_reader(index: u32, fd: Arc<OwnedFd>, uart: Arc<Mutex<Option<Uart>>>) -> Result<()> {
    std::thread::Builder::new()
        .name(format!("ttys{index}"))
        .spawn(move || {
            let mut buf = [0u8; 256];
            loop {
                let mut pfd = libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                if unsafe { libc::poll(&mut pfd, 1, 500) } <= 0 {
                    continue;
                }
                // SAFETY: reading into a valid buffer from an open descriptor.
                let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if n <= 0 {
                    // EAGAIN, or a hung-up device: do not spin.
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                let mut rest = &buf[..n as usize];
                while !rest.is_empty() {
                    let current = uart.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    let took = current.map_or(0, |u| {
                        u.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .enqueue_input(rest)
                    });
                    rest = &rest[took..];
                    if !rest.is_empty() {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                }
            }
        })
        .context("starting a ttys reader thread")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        assert_eq!(parse_target(0, "pty"), Ok(Target::Pty));
        assert_eq!(
            parse_target(1, "/dev/ttyUSB0"),
            Ok(Target::Device("/dev/ttyUSB0".into()))
        );
        for w in ["COM1", "com2:", r"\\.\COM3", "Com12"] {
            let e = parse_target(0, w).unwrap_err();
            assert!(e.contains("Windows port name") && e.contains(w), "{e}");
        }
        assert!(parse_target(0, "ttyUSB0").unwrap_err().contains("absolute"));
        assert!(parse_target(0, "command").is_err());
        assert!(parse_target(3, "pty")
            .unwrap_err()
            .contains("ttys0 .. ttys2"));
    }

    #[test]
    fn guest_ports_are_the_standard_com2_to_com4() {
        assert_eq!(guest_port(0), Some(("ttyS1", 0x2f8, 3)));
        assert_eq!(guest_port(1), Some(("ttyS2", 0x3e8, 4)));
        assert_eq!(guest_port(2), Some(("ttyS3", 0x2e8, 3)));
        assert_eq!(guest_port(3), None);
        let c = colinux_conf::parse_str(
            "ttys0=pty ttys2=/dev/ttyUSB0",
            Path::new("t.conf"),
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(extra_com(&c), 0b101);
    }

    #[test]
    fn pty_path_file_locations() {
        assert_eq!(
            pty_path_file(Some(Path::new("/run/co.pid")), 1),
            PathBuf::from("/run/co.pid.ttys1")
        );
        let f = pty_path_file(None, 0);
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.ends_with(&format!("{}.ttys0", std::process::id())),
            "{name}"
        );
    }

    #[test]
    fn pty_carries_bytes_both_ways() {
        let (master, slave, path) = open_pty().unwrap();
        assert!(path.starts_with("/dev/pts"), "{}", path.display());
        let mut out = HostOut(Arc::new(master));
        out.write_all(b"hi").unwrap();
        let mut buf = [0u8; 8];
        // SAFETY: reading into a valid buffer.
        let n = unsafe { libc::read(slave.as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
        assert_eq!(&buf[..n as usize], b"hi");
    }
}
