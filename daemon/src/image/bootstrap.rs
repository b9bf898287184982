//! `colinux-image bootstrap`: a ready Debian system image (the kind coLinux
//! users downloaded) built from Debian packages.
//!
//! Four stages: `mmdebstrap` installs the packages into a directory tree in a
//! scratch directory beside the image; the tree is customized (fstab,
//! hostname, network, serial getty, ssh keys, root password, kernel modules);
//! `mke2fs -d` turns it into an ext4 image (`FILE.partial`); with `--swap` a
//! swap file is made; then the partial files are renamed into place.
//!
//! The tree is a directory, not a tarball: e2fsprogs 1.47.0 (Debian 12)
//! cannot read a tarball with `-d` (that came with 1.47.1), and copying a
//! directory keeps owners, modes, symlinks, device nodes, hard links and
//! extended attributes (the `cap_net_raw` file capability of `ping`).
//!
//! Whatever fails (a tool, a bad mirror, SIGINT or SIGTERM), the scratch
//! directory and the partial files are removed: no image is left half made.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use super::detect::{detect, ImageKind};
use super::{ops, swap, tools, ImageError};

/// Packages installed on top of Debian's `minbase` variant: an init that
/// boots (systemd), device names (udev), networking with DHCP (ifupdown,
/// isc-dhcp-client, iproute2, netbase), remote login (openssh-server) and
/// the basic tools a coLinux image had.
pub const PACKAGES: &[&str] = &[
    "systemd-sysv",
    "udev",
    "dbus",
    "ifupdown",
    "isc-dhcp-client",
    "openssh-server",
    "netbase",
    "iproute2",
    "kmod",
    "e2fsprogs",
    "procps",
    "iputils-ping",
    "less",
];

/// The mirror used when this host's apt sources name no Debian mirror.
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
/// The Debian release installed by default (Debian 12).
pub const DEFAULT_SUITE: &str = "bookworm";
/// The guest's host name by default.
pub const DEFAULT_HOSTNAME: &str = "colinux";
/// The ext4 volume label by default.
pub const DEFAULT_LABEL: &str = "colinux-root";

/// A swap file to make beside the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapSpec {
    /// The swap file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
}

/// Everything `bootstrap` needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapOptions {
    /// The image file to make.
    pub image: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// A swap file too (and its line in fstab).
    pub swap: Option<SwapSpec>,
    /// A `.tar.gz` of `lib/modules/<release>/...` to install.
    pub modules: Option<PathBuf>,
    /// Public key files for `/root/.ssh/authorized_keys`.
    pub authorized_keys: Vec<PathBuf>,
    /// Root's password; `None` leaves it empty (console login without one).
    pub root_password: Option<String>,
    /// The guest's host name.
    pub hostname: String,
    /// The Debian mirror; `None` takes this host's (see [`host_mirror`]).
    pub mirror: Option<String>,
    /// The Debian release.
    pub suite: String,
    /// The ext4 volume label.
    pub label: String,
    /// Replace existing image and swap files.
    pub force: bool,
}

impl BootstrapOptions {
    /// Options with the defaults for an image of `size` bytes at `image`.
    pub fn new(image: impl Into<PathBuf>, size: u64) -> Self {
        BootstrapOptions {
            image: image.into(),
            size,
            swap: None,
            modules: None,
            authorized_keys: Vec::new(),
            root_password: None,
            hostname: DEFAULT_HOSTNAME.to_string(),
            mirror: None,
            suite: DEFAULT_SUITE.to_string(),
            label: DEFAULT_LABEL.to_string(),
            force: false,
        }
    }
}

/// What a finished bootstrap made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapReport {
    /// The image's size in bytes.
    pub image_size: u64,
    /// Bytes its file system uses.
    pub used_bytes: u64,
    /// The mirror the packages came from.
    pub mirror: String,
    /// The kernel releases whose modules were installed.
    pub module_releases: Vec<String>,
    /// The swap file's UUID, if one was made.
    pub swap_uuid: Option<String>,
    /// How long the whole build took.
    pub elapsed: Duration,
}

/// The signal (SIGINT/SIGTERM) that asked the build to stop, 0 if none.
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_stop_signal(sig: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    STOP_SIGNAL.store(sig, Ordering::SeqCst);
}

/// `/etc/fstab` in the classic coLinux shape: root on cobd0 and, with
/// `swap`, swap on cobd1.
pub fn fstab_text(swap: bool) -> String {
    let mut t = String::from(
        "# /etc/fstab: static file system information.\n\
         # <file system> <mount point> <type> <options> <dump> <pass>\n\
         /dev/cobd0 / ext4 errors=remount-ro 0 1\n",
    );
    if swap {
        t.push_str("/dev/cobd1 none swap sw 0 0\n");
    }
    t
}

/// `/etc/network/interfaces`: loopback, and eth0 configured by DHCP (slirp,
/// or the LAN's server with TAP and bridges).
pub fn interfaces_text() -> String {
    "# /etc/network/interfaces (made by colinux-image bootstrap)\n\
     source /etc/network/interfaces.d/*\n\
     \n\
     auto lo\n\
     iface lo inet loopback\n\
     \n\
     auto eth0\n\
     iface eth0 inet dhcp\n"
        .to_string()
}

/// `/etc/hosts` with the 127.0.1.1 line Debian's installer writes for the
/// host name.
pub fn hosts_text(hostname: &str) -> String {
    format!(
        "127.0.0.1\tlocalhost\n\
         127.0.1.1\t{hostname}\n\
         \n\
         # The following lines are desirable for IPv6 capable hosts\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         ff02::1\tip6-allnodes\n\
         ff02::2\tip6-allrouters\n"
    )
}

/// A two-line `colinux.conf` that boots the image (and uses the swap file).
pub fn example_conf(image: &Path, swap: Option<&Path>) -> String {
    let mut first = format!("kernel=vmlinuz initrd=initrd.gz cobd0={}", image.display());
    if let Some(s) = swap {
        first.push_str(&format!(" cobd1={}", s.display()));
    }
    format!("{first}\nroot=/dev/cobd0 ro eth0=slirp,,tcp:2222:22\n")
}

/// Checks a host name: one label of letters, digits and `-` (1 to 63
/// characters, not starting or ending with `-`).
pub fn check_hostname(name: &str) -> Result<(), String> {
    let ok_chars = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if name.is_empty() || name.len() > 63 || !ok_chars {
        return Err("use 1 to 63 letters, digits or `-` (one label, no dots)".into());
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err("it must not start or end with `-`".into());
    }
    Ok(())
}

/// One apt source: its URI, suites and components.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Source {
    uri: String,
    suites: Vec<String>,
    components: Vec<String>,
}

/// The `deb` lines of a one-line-style `sources.list` (`deb-src` and
/// comments skipped, `[options]` allowed).
fn one_line_sources(text: &str) -> Vec<Source> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(rest) = line.strip_prefix("deb ").or(line.strip_prefix("deb\t")) else {
            continue;
        };
        let mut rest = rest.trim_start();
        if rest.starts_with('[') {
            let Some(end) = rest.find(']') else { continue };
            rest = &rest[end + 1..];
        }
        let words: Vec<&str> = rest.split_whitespace().collect();
        if words.len() >= 2 {
            out.push(Source {
                uri: words[0].to_string(),
                suites: vec![words[1].to_string()],
                components: words[2..].iter().map(|w| w.to_string()).collect(),
            });
        }
    }
    out
}

/// The enabled `Types: deb` stanzas of a deb822-style `.sources` file.
fn deb822_sources(text: &str) -> Vec<Source> {
    let mut out = Vec::new();
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut flush = |fields: &mut Vec<(String, String)>| {
        let get = |k: &str| {
            fields
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.split_whitespace().map(str::to_string).collect())
                .unwrap_or_else(Vec::new)
        };
        let types: Vec<String> = get("Types");
        let enabled = get("Enabled").first().is_none_or(|v| v != "no");
        if enabled && types.iter().any(|t| t == "deb") {
            for uri in get("URIs") {
                out.push(Source {
                    uri,
                    suites: get("Suites"),
                    components: get("Components"),
                });
            }
        }
        fields.clear();
    };
    for line in text.lines() {
        if line.trim().is_empty() {
            flush(&mut fields);
        } else if line.starts_with('#') {
            continue;
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = fields.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            fields.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    flush(&mut fields);
    out
}

/// The Debian mirror named by apt source files (`(file name, text)`, in
/// apt's order): the first `deb` source with component `main` and `suite`
/// among its suites; failing that, the first with `main` whose URI ends in
/// `/debian`. `.sources` files are read as deb822, others as one-line.
pub fn mirror_from_sources(files: &[(String, String)], suite: &str) -> Option<String> {
    let sources: Vec<Source> = files
        .iter()
        .flat_map(|(name, text)| {
            if name.ends_with(".sources") {
                deb822_sources(text)
            } else {
                one_line_sources(text)
            }
        })
        .filter(|s| s.components.iter().any(|c| c == "main"))
        .filter(|s| s.uri.starts_with("http://") || s.uri.starts_with("https://"))
        .collect();
    let trimmed = |s: &Source| s.uri.trim_end_matches('/').to_string();
    sources
        .iter()
        .find(|s| s.suites.iter().any(|x| x == suite))
        .or_else(|| sources.iter().find(|s| trimmed(s).ends_with("/debian")))
        .map(trimmed)
}

/// This host's Debian mirror (from `/etc/apt/sources.list` and
/// `/etc/apt/sources.list.d/*.list|*.sources`, see
/// [`mirror_from_sources`]), else [`DEFAULT_MIRROR`].
pub fn host_mirror(suite: &str) -> String {
    let mut files = Vec::new();
    if let Ok(t) = std::fs::read_to_string("/etc/apt/sources.list") {
        files.push(("sources.list".to_string(), t));
    }
    let mut names: Vec<PathBuf> = std::fs::read_dir("/etc/apt/sources.list.d")
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    names.sort();
    for p in names {
        let ext = p.extension().and_then(OsStr::to_str);
        if matches!(ext, Some("list" | "sources")) {
            if let Ok(t) = std::fs::read_to_string(&p) {
                files.push((p.display().to_string(), t));
            }
        }
    }
    mirror_from_sources(&files, suite).unwrap_or_else(|| DEFAULT_MIRROR.to_string())
}

/// The kernel releases in a modules tarball's member list (one member a
/// line, as `tar -t` prints them). Every member must be under
/// `lib/modules/` (a leading `./` is allowed).
pub fn module_releases(listing: &str) -> Result<Vec<String>, String> {
    let mut releases: Vec<String> = Vec::new();
    for member in listing.lines().filter(|l| !l.is_empty()) {
        let m = member.trim_start_matches("./");
        if m.is_empty() || m == "lib/" || m == "lib" || m == "lib/modules" || m == "lib/modules/" {
            continue;
        }
        let Some(rest) = m.strip_prefix("lib/modules/") else {
            return Err(format!(
                "member `{member}` is not under lib/modules/ (the tarball must hold \
                 lib/modules/<release>/...)"
            ));
        };
        let release = rest.split('/').next().unwrap_or("");
        if !releases.iter().any(|r| r == release) {
            releases.push(release.to_string());
        }
    }
    if releases.is_empty() {
        return Err("it holds no lib/modules/<release>/ directory".into());
    }
    Ok(releases)
}

/// A public key file's text, checked: every key line has a type and a key,
/// and no private key slipped in.
fn read_public_keys(path: &Path) -> Result<String, ImageError> {
    let text = std::fs::read_to_string(path).map_err(|e| ImageError::io(path, e))?;
    let bad = |why: &str| ImageError::BadArgument {
        what: "--authorized-key".into(),
        value: path.display().to_string(),
        why: why.into(),
    };
    if text.contains("PRIVATE KEY") {
        return Err(bad("this is a private key; give the .pub file"));
    }
    let keys: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    if keys.is_empty() {
        return Err(bad("no public key in it"));
    }
    if keys.iter().any(|l| l.split_whitespace().count() < 2) {
        return Err(bad(
            "not an OpenSSH public key (`ssh-ed25519 AAAA... comment`)",
        ));
    }
    Ok(keys.iter().map(|k| format!("{k}\n")).collect())
}

/// The files a build makes and removes again unless it succeeds.
struct Scratch {
    /// The directory holding the tree, the tools' logs and their temp files.
    dir: PathBuf,
    /// `FILE.partial` and `SWAP.partial`.
    partials: Vec<PathBuf>,
}

impl Scratch {
    /// Makes the scratch directory `.NAME.bootstrap-PID` beside `image`.
    fn new(image: &Path) -> Result<Self, ImageError> {
        let name = image.file_name().unwrap_or_default().to_string_lossy();
        let dir = image
            .parent()
            .unwrap_or(Path::new("."))
            .join(format!(".{name}.bootstrap-{}", std::process::id()));
        std::fs::create_dir(&dir).map_err(|e| ImageError::io(&dir, e))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| ImageError::io(&dir, e))?;
        Ok(Scratch {
            dir,
            partials: Vec::new(),
        })
    }

    /// The tree mmdebstrap fills.
    fn root(&self) -> PathBuf {
        self.dir.join("root")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for p in &self.partials {
            let _ = std::fs::remove_file(p);
        }
        remove_tree(&self.dir);
    }
}

/// Mount points at or under `dir` (from `/proc/self/mountinfo`).
fn mounts_under(dir: &Path) -> Vec<String> {
    let Ok(dir) = dir.canonicalize() else {
        return Vec::new();
    };
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| Path::new(m).starts_with(&dir))
        .map(str::to_string)
        .collect()
}

/// Removes `dir` and everything in it, unless something is mounted there
/// (a host `/dev` bind mount left by a killed tool must never be emptied).
fn remove_tree(dir: &Path) {
    if !dir.exists() {
        return;
    }
    let mounts = mounts_under(dir);
    if !mounts.is_empty() {
        eprintln!(
            "colinux-image: not removing {}: still mounted there: {} (unmount, then remove it)",
            dir.display(),
            mounts.join(", ")
        );
        return;
    }
    if let Err(e) = std::fs::remove_dir_all(dir) {
        eprintln!("colinux-image: cannot remove {}: {e}", dir.display());
    }
}

/// Installs the SIGINT/SIGTERM handlers that stop the build.
fn catch_stop_signals() -> Result<(), ImageError> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        vmm_sys_util::signal::register_signal_handler(sig, on_stop_signal).map_err(|e| {
            ImageError::Tool {
                program: "colinux-image".into(),
                why: format!("installing a handler for signal {sig}: {e}"),
            }
        })?;
    }
    Ok(())
}

/// Fails with [`ImageError::Interrupted`] once a stop signal came.
fn check_stop() -> Result<(), ImageError> {
    match STOP_SIGNAL.load(Ordering::SeqCst) {
        0 => Ok(()),
        signal => Err(ImageError::Interrupted { signal }),
    }
}

/// Sends `sig` to the process group `pgid`.
fn signal_group(pgid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    unsafe {
        libc::kill(-(pgid as libc::pid_t), sig);
    }
}

/// Waits for `child` (leader of its own process group). On a stop signal
/// the group gets SIGINT, as from a terminal, and 60 s to clean up (then
/// SIGKILL); the build then fails with [`ImageError::Interrupted`].
fn wait_child(mut child: Child, program: &str) -> Result<std::process::ExitStatus, ImageError> {
    let pgid = child.id();
    let mut asked: Option<Instant> = None;
    loop {
        let status = child.try_wait().map_err(|e| ImageError::Tool {
            program: program.into(),
            why: format!("waiting for it: {e}"),
        })?;
        if let Some(status) = status {
            check_stop()?;
            return Ok(status);
        }
        if STOP_SIGNAL.load(Ordering::SeqCst) != 0 {
            match asked {
                None => {
                    signal_group(pgid, libc::SIGINT);
                    asked = Some(Instant::now());
                }
                Some(t) if t.elapsed() > Duration::from_secs(60) => {
                    signal_group(pgid, libc::SIGKILL)
                }
                Some(_) => {}
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs a tool in its own process group. With `log`, its output goes to
/// that file and comes back as the error text; otherwise it goes to our
/// stdout and stderr (progress). `input` is written to its stdin.
fn run_tool(
    program: &str,
    args: &[&OsStr],
    log: Option<&Path>,
    input: Option<&str>,
    env: &[(&str, &OsStr)],
) -> Result<(), ImageError> {
    let exe = tools::find(program).ok_or_else(|| ImageError::Tool {
        program: program.into(),
        why: format!(
            "not found in PATH or /sbin (apt-get install {})",
            package_of(program)
        ),
    })?;
    let mut cmd = Command::new(&exe);
    cmd.args(args).process_group(0);
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Some(log) = log {
        let f = File::create(log).map_err(|e| ImageError::io(log, e))?;
        let f2 = f.try_clone().map_err(|e| ImageError::io(log, e))?;
        cmd.stdout(f).stderr(f2);
    }
    let mut child = cmd.spawn().map_err(|e| ImageError::Tool {
        program: program.into(),
        why: format!("cannot start {}: {e}", exe.display()),
    })?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        let _ = stdin.write_all(text.as_bytes());
    }
    let status = wait_child(child, program)?;
    if status.success() {
        return Ok(());
    }
    let output = log
        .and_then(|l| std::fs::read_to_string(l).ok())
        .map(|t| format!(":\n{}", t.trim()))
        .unwrap_or_else(|| " (its messages are above)".to_string());
    Err(ImageError::Tool {
        program: program.into(),
        why: format!("{status}{output}"),
    })
}

/// The Debian package that has `program`.
fn package_of(program: &str) -> &'static str {
    match program {
        "mmdebstrap" => "mmdebstrap",
        "mke2fs" => "e2fsprogs",
        "depmod" => "kmod",
        "tar" => "tar",
        _ => "coreutils",
    }
}

/// Refuses to replace `path` unless `force`.
fn check_new(path: &Path, force: bool) -> Result<(), ImageError> {
    if !force && std::fs::symlink_metadata(path).is_ok() {
        return Err(ImageError::Exists { path: path.into() });
    }
    Ok(())
}

/// `FILE.partial`.
fn partial_of(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".partial");
    PathBuf::from(s)
}


/// Everything checked before the long build starts: sizes, files that would
/// be overwritten, the host name, the password, key files, the modules
/// tarball and the tools.
fn preflight(o: &BootstrapOptions) -> Result<(), ImageError> {
    ops::check_sectors(o.size)?;
    check_new(&o.image, o.force)?;
    if let Some(s) = &o.swap {
        ops::check_sectors(s.size)?;
        swap::header(s.size, [0; 16], None)
            .map_err(|why| ImageError::SwapSize { size: s.size, why })?;
        check_new(&s.path, o.force)?;
        if s.path == o.image {
            return Err(bad_arg(
                "--swap",
                &s.path.display().to_string(),
                "it is the image itself",
            ));
        }
    }
    check_hostname(&o.hostname).map_err(|why| bad_arg("--hostname", &o.hostname, &why))?;
    if let Some(pw) = &o.root_password {
        if pw.contains(['\n', '\r', '\0']) {
            return Err(bad_arg(
                "--root-password",
                "(hidden)",
                "it holds a line break or NUL",
            ));
        }
    }
    for k in &o.authorized_keys {
        read_public_keys(k)?;
    }
    if let Some(m) = &o.modules {
        File::open(m).map_err(|e| ImageError::io(m, e))?;
        if !m.is_file() {
            return Err(bad_arg("--modules", &m.display().to_string(), "not a file"));
        }
    }
    for program in ["mmdebstrap", "mke2fs", "tar", "depmod", "chroot"] {
        if program == "depmod" && o.modules.is_none() {
            continue;
        }
        if tools::find(program).is_none() {
            return Err(ImageError::Tool {
                program: program.into(),
                why: format!(
                    "not found in PATH or /sbin (apt-get install {})",
                    package_of(program)
                ),
            });
        }
    }
    Ok(())
}

/// An [`ImageError::BadArgument`].
fn bad_arg(what: &str, value: &str, why: &str) -> ImageError {
    ImageError::BadArgument {
        what: what.into(),
        value: value.into(),
        why: why.into(),
    }
}

/// Lists a modules tarball (`tar -tzf`) and returns its kernel releases.
fn modules_listing(tarball: &Path, log: &Path) -> Result<Vec<String>, ImageError> {
    let args = [OsStr::new("-tzf"), tarball.as_os_str()];
    run_tool("tar", &args, Some(log), None, &[]).map_err(|e| {
        bad_arg(
            "--modules",
            &tarball.display().to_string(),
            &format!("not a readable .tar.gz: {e}"),
        )
    })?;
    let listing = std::fs::read_to_string(log).map_err(|e| ImageError::io(log, e))?;
    module_releases(&listing)
        .map_err(|why| bad_arg("--modules", &tarball.display().to_string(), &why))
}

/// Stage 1: `mmdebstrap` installs minbase and [`PACKAGES`] into `root`
/// (root mode when run as root, which mounts /proc, /sys and /dev in a
/// mount namespace of its own), its temp files in the scratch dir.
fn run_mmdebstrap(o: &BootstrapOptions, mirror: &str, s: &Scratch) -> Result<(), ImageError> {
    let include = format!("--include={}", PACKAGES.join(","));
    let root = s.root();
    let args: Vec<&OsStr> = vec![
        OsStr::new("--mode=auto"),
        OsStr::new("--variant=minbase"),
        OsStr::new("--format=directory"),
        OsStr::new("--components=main"),
        OsStr::new(&include),
        OsStr::new(&o.suite),
        root.as_os_str(),
        OsStr::new(mirror),
    ];
    run_tool(
        "mmdebstrap",
        &args,
        None,
        None,
        &[("TMPDIR", s.dir.as_os_str())],
    )
}

/// Writes `text` as a new file `path` with `mode` (an existing file or
/// symlink there is removed first, so nothing is written through a link).
fn write_file(path: &Path, text: &str, mode: u32) -> Result<(), ImageError> {
    let io = |e| ImageError::io(path, e);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => return Err(io(e)),
        _ => {}
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(io)
}

/// Makes the symlink `path` -> `target` (replacing what is there).
fn symlink(target: &str, path: &Path) -> Result<(), ImageError> {
    let io = |e| ImageError::io(path, e);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let _ = std::fs::remove_file(path);
    std::os::unix::fs::symlink(target, path).map_err(io)
}

/// Stage 2, the files: fstab, hostname, hosts, interfaces, the serial
/// getty, classic `eth0` naming and root's authorized_keys.
fn write_config(o: &BootstrapOptions, root: &Path) -> Result<(), ImageError> {
    write_file(
        &root.join("etc/fstab"),
        &fstab_text(o.swap.is_some()),
        0o644,
    )?;
    write_file(
        &root.join("etc/hostname"),
        &format!("{}\n", o.hostname),
        0o644,
    )?;
    write_file(&root.join("etc/hosts"), &hosts_text(&o.hostname), 0o644)?;
    write_file(
        &root.join("etc/network/interfaces"),
        &interfaces_text(),
        0o644,
    )?;
    // mmdebstrap copied this host's resolv.conf; dhclient writes the guest's.
    let _ = std::fs::remove_file(root.join("etc/resolv.conf"));
    let unit = "lib/systemd/system/serial-getty@.service";
    if !root.join(unit).exists() {
        return Err(ImageError::WrongKind {
            path: root.join(unit),
            why: "missing: systemd did not install its serial getty unit".into(),
        });
    }
    symlink(
        &format!("/{unit}"),
        &root.join("etc/systemd/system/getty.target.wants/serial-getty@ttyS0.service"),
    )?;
    // Keep the kernel's eth0 (udev would rename it enp0s3 and `auto eth0`
    // would find nothing).
    symlink(
        "/dev/null",
        &root.join("etc/systemd/network/99-default.link"),
    )?;
    if !o.authorized_keys.is_empty() {
        let ssh = root.join("root/.ssh");
        std::fs::create_dir_all(&ssh).map_err(|e| ImageError::io(&ssh, e))?;
        std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| ImageError::io(&ssh, e))?;
        let mut keys = String::new();
        for k in &o.authorized_keys {
            keys.push_str(&read_public_keys(k)?);
        }
        write_file(&ssh.join("authorized_keys"), &keys, 0o600)?;
    }
    Ok(())
}

/// Stage 2, root's password: `chpasswd` in the tree, or empty (`passwd -d`)
/// so the console login needs none (sshd still refuses empty passwords).
fn set_root_password(o: &BootstrapOptions, s: &Scratch) -> Result<(), ImageError> {
    let root = s.root();
    let log = s.dir.join("passwd.log");
    match &o.root_password {
        Some(pw) => {
            let args = [root.as_os_str(), OsStr::new("chpasswd")];
            run_tool(
                "chroot",
                &args,
                Some(&log),
                Some(&format!("root:{pw}\n")),
                &[],
            )
        }
        None => {
            let args = [
                root.as_os_str(),
                OsStr::new("passwd"),
                OsStr::new("-d"),
                OsStr::new("root"),
            ];
            run_tool("chroot", &args, Some(&log), None, &[])
        }
    }
}

/// Stage 2, modules: the tarball is unpacked into the tree through its
/// `/lib -> usr/lib` symlink (`--keep-directory-symlink`, so merged /usr
/// stays merged), owned by root, and `depmod` run for each release.
fn install_modules(tarball: &Path, releases: &[String], s: &Scratch) -> Result<(), ImageError> {
    let root = s.root();
    let log = s.dir.join("modules.log");
    let args = [
        OsStr::new("-xzf"),
        tarball.as_os_str(),
        OsStr::new("-C"),
        root.as_os_str(),
        OsStr::new("--keep-directory-symlink"),
        OsStr::new("--no-same-owner"),
    ];
    run_tool("tar", &args, Some(&log), None, &[])?;
    if !std::fs::symlink_metadata(root.join("lib")).is_ok_and(|m| m.is_symlink()) {
        return Err(ImageError::WrongKind {
            path: root.join("lib"),
            why: "is no longer the symlink to usr/lib after unpacking the modules".into(),
        });
    }
    for r in releases {
        let dir = root.join("usr/lib/modules").join(r);
        if !dir.is_dir() {
            return Err(ImageError::WrongKind {
                path: dir,
                why: "missing after unpacking the modules".into(),
            });
        }
        let args = [OsStr::new("-b"), root.as_os_str(), OsStr::new(r)];
        run_tool("depmod", &args, Some(&log), None, &[])?;
    }
    Ok(())
}

/// Stage 3: `mke2fs -t ext4 -d TREE` fills `FILE.partial` (made sparse
/// first, at its full size).
fn make_fs(o: &BootstrapOptions, partial: &Path, s: &Scratch) -> Result<(), ImageError> {
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(partial)
        .map_err(|e| ImageError::io(partial, e))?;
    f.set_len(o.size).map_err(|e| ImageError::io(partial, e))?;
    drop(f);
    let root = s.root();
    let args = [
        OsStr::new("-F"),
        OsStr::new("-q"),
        OsStr::new("-t"),
        OsStr::new("ext4"),
        OsStr::new("-L"),
        OsStr::new(&o.label),
        OsStr::new("-d"),
        root.as_os_str(),
        partial.as_os_str(),
    ];
    run_tool("mke2fs", &args, Some(&s.dir.join("mke2fs.log")), None, &[]).map_err(|e| match e {
        ImageError::Tool { program, why } => ImageError::Tool {
            program,
            why: format!(
                "{why}\n(the tree is about {} MiB; is SIZE large enough?)",
                tree_mib(&root)
            ),
        },
        other => other,
    })
}

/// The tree's size in MiB (`du -sm`), or `?`.
fn tree_mib(root: &Path) -> String {
    tools::run("du", [OsStr::new("-sm"), root.as_os_str()])
        .ok()
        .and_then(|o| o.text.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// Moves `from` to `to`: replacing `to` with `force`, else only if it
/// still does not exist (hard link, then unlink).
fn publish(from: &Path, to: &Path, force: bool) -> Result<(), ImageError> {
    if force {
        return std::fs::rename(from, to).map_err(|e| ImageError::io(to, e));
    }
    std::fs::hard_link(from, to).map_err(|e| match e.kind() {
        ErrorKind::AlreadyExists => ImageError::Exists { path: to.into() },
        _ => ImageError::io(to, e),
    })?;
    std::fs::remove_file(from).map_err(|e| ImageError::io(from, e))
}

/// Builds the image (and swap file) as `o` says, calling `progress` with a
/// line per stage. On any failure, SIGINT or SIGTERM included, nothing of
/// the build is left behind.
pub fn bootstrap(
    o: &BootstrapOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<BootstrapReport, ImageError> {
    let started = Instant::now();
    catch_stop_signals()?;
    preflight(o)?;
    let mut s = Scratch::new(&o.image)?;
    let releases = match &o.modules {
        Some(m) => modules_listing(m, &s.dir.join("modules-list.log"))?,
        None => Vec::new(),
    };
    let mirror = o.mirror.clone().unwrap_or_else(|| host_mirror(&o.suite));
    progress(&format!(
        "bootstrap [1/4] mmdebstrap: Debian {} from {mirror} into {}",
        o.suite,
        s.root().display()
    ));
    run_mmdebstrap(o, &mirror, &s)?;
    check_stop()?;

    progress("bootstrap [2/4] customize: fstab, hostname, network, serial getty, ssh, root password, modules");
    write_config(o, &s.root())?;
    set_root_password(o, &s)?;
    if let Some(m) = &o.modules {
        install_modules(m, &releases, &s)?;
    }
    check_stop()?;

    let partial = partial_of(&o.image);
    if o.force {
        let _ = std::fs::remove_file(&partial);
    }
    s.partials.push(partial.clone());
    progress(&format!(
        "bootstrap [3/4] mke2fs: ext4 `{}` on {}",
        o.label,
        partial.display()
    ));
    make_fs(o, &partial, &s)?;
    check_stop()?;

    let swap_uuid = match &o.swap {
        Some(sw) => {
            let sp = partial_of(&sw.path);
            if o.force {
                let _ = std::fs::remove_file(&sp);
            }
            progress(&format!("bootstrap [4/4] swap file {}", sw.path.display()));
            let uuid = ops::mkswap(&sp, sw.size, None, false)?;
            s.partials.push(sp);
            check_stop()?;
            Some(uuid)
        }
        None => {
            progress("bootstrap [4/4] finishing (no swap file asked for)");
            None
        }
    };
    let info = detect(&partial)?;
    let used_bytes = match &info.kind {
        ImageKind::Ext(e) => (e.block_count - e.free_blocks) * e.block_size,
        _ => 0,
    };
    if let Some(sw) = &o.swap {
        publish(&partial_of(&sw.path), &sw.path, o.force)?;
        s.partials.retain(|p| *p != partial_of(&sw.path));
    }
    if let Err(e) = publish(&partial, &o.image, o.force) {
        if let Some(sw) = &o.swap {
            let _ = std::fs::remove_file(&sw.path);
        }
        return Err(e);
    }
    s.partials.clear();
    Ok(BootstrapReport {
        image_size: info.size,
        used_bytes,
        mirror,
        module_releases: releases,
        swap_uuid,
        elapsed: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fstab_has_the_classic_lines() {
        let no_swap = fstab_text(false);
        let lines: Vec<&str> = no_swap.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(lines, ["/dev/cobd0 / ext4 errors=remount-ro 0 1"]);
        let with = fstab_text(true);
        let lines: Vec<&str> = with.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            [
                "/dev/cobd0 / ext4 errors=remount-ro 0 1",
                "/dev/cobd1 none swap sw 0 0"
            ]
        );
    }

    #[test]
    fn interfaces_bring_up_lo_and_eth0_by_dhcp() {
        let t = interfaces_text();
        for want in [
            "auto lo",
            "iface lo inet loopback",
            "auto eth0",
            "iface eth0 inet dhcp",
        ] {
            assert!(t.lines().any(|l| l == want), "{want} missing in\n{t}");
        }
    }

    #[test]
    fn hosts_names_the_host_on_127_0_1_1() {
        let t = hosts_text("box");
        assert!(t.lines().any(|l| l == "127.0.1.1\tbox"));
        assert!(t.lines().any(|l| l == "127.0.0.1\tlocalhost"));
    }

    #[test]
    fn example_conf_is_two_lines() {
        let t = example_conf(Path::new("/d/debian.img"), Some(Path::new("/d/swap.img")));
        assert_eq!(
            t,
            "kernel=vmlinuz initrd=initrd.gz cobd0=/d/debian.img cobd1=/d/swap.img\n\
             root=/dev/cobd0 ro eth0=slirp,,tcp:2222:22\n"
        );
        assert!(!example_conf(Path::new("a"), None).contains("cobd1"));
    }

    #[test]
    fn hostnames() {
        assert!(check_hostname("colinux").is_ok());
        assert!(check_hostname("web-1").is_ok());
        for bad in ["", "-a", "a-", "a.b", "a b", &"x".repeat(64)] {
            assert!(check_hostname(bad).is_err(), "{bad:?}");
        }
    }

    fn files(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect()
    }

    #[test]
    fn mirror_from_deb822_like_this_host() {
        let backports =
            "# Added by cargo xtask deps\nTypes: deb\nURIs: http://deb.debian.org/debian\n\
                         Suites: bookworm-backports\nComponents: main\n";
        let debian = "Types: deb\n# http://snapshot.debian.org/archive/debian/20250520T000000Z\n\
                      URIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\n\
                      Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n\
                      Types: deb\nURIs: http://mirror.example/debian-security\n\
                      Suites: bookworm-security\nComponents: main\n";
        let nodesource =
            "Types: deb\nURIs: https://deb.nodesource.com/node_20.x\nSuites: nodistro\n\
                          Components: main\n";
        let f = files(&[
            ("a-backports.sources", backports),
            ("debian.sources", debian),
            ("nodesource.sources", nodesource),
        ]);
        assert_eq!(
            mirror_from_sources(&f, "bookworm").as_deref(),
            Some("http://mirror.example/debian")
        );
        // No source for the suite: the first .../debian one.
        assert_eq!(
            mirror_from_sources(&f, "trixie").as_deref(),
            Some("http://deb.debian.org/debian")
        );
    }

    #[test]
    fn mirror_from_one_line_lists() {
        let list = "# deb http://old.example/debian bookworm main\n\
                    deb-src http://src.example/debian bookworm main\n\
                    deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main\n\
                    deb [arch=amd64 signed-by=/k.gpg] http://ftp.de.debian.org/debian bookworm main contrib\n";
        let f = files(&[("sources.list", list)]);
        assert_eq!(
            mirror_from_sources(&f, "bookworm").as_deref(),
            Some("http://ftp.de.debian.org/debian")
        );
        let disabled = "Types: deb\nEnabled: no\nURIs: http://x.example/debian\nSuites: bookworm\n\
                        Components: main\n";
        assert_eq!(
            mirror_from_sources(&files(&[("x.sources", disabled)]), "bookworm"),
            None
        );
        assert_eq!(mirror_from_sources(&[], "bookworm"), None);
    }

    #[test]
    fn module_releases_from_listing() {
        let l = "lib/modules/\nlib/modules/6.1.0-37-cloud-amd64/\n\
                 lib/modules/6.1.0-37-cloud-amd64/modules.order\n\
                 ./lib/modules/6.12.0/kernel/x.ko\n";
        assert_eq!(
            module_releases(l).unwrap(),
            ["6.1.0-37-cloud-amd64", "6.12.0"]
        );
        assert!(module_releases("etc/passwd\n")
            .unwrap_err()
            .contains("etc/passwd"));
        assert!(module_releases("lib/modules/\n").is_err());
    }

    /// A tree shaped like Debian 12's (merged /usr) in a fresh scratch dir.
    fn fake_tree(name: &str) -> Scratch {
        let base =
            std::env::temp_dir().join(format!("bootstrap-unit-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        let s = Scratch::new(&base.join("debian.img")).unwrap();
        let root = s.root();
        std::fs::create_dir_all(root.join("usr/lib/systemd/system")).unwrap();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(
            root.join("usr/lib/systemd/system/serial-getty@.service"),
            "",
        )
        .unwrap();
        std::fs::write(root.join("etc/resolv.conf"), "nameserver 192.0.2.1\n").unwrap();
        std::os::unix::fs::symlink("usr/lib", root.join("lib")).unwrap();
        s
    }

    #[test]
    fn config_files_land_in_the_tree() {
        let s = fake_tree("config");
        let root = s.root();
        let key = s.dir.join("id.pub");
        std::fs::write(&key, "ssh-ed25519 AAAAC3Nza test@host\n").unwrap();
        let mut o = BootstrapOptions::new(s.dir.join("x.img"), 1 << 30);
        o.hostname = "box".into();
        o.authorized_keys = vec![key];
        o.swap = Some(SwapSpec {
            path: "swap.img".into(),
            size: 1 << 26,
        });
        write_config(&o, &root).unwrap();
        let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
        assert_eq!(read("etc/fstab"), fstab_text(true));
        assert_eq!(read("etc/hostname"), "box\n");
        assert!(read("etc/hosts").contains("127.0.1.1\tbox"));
        assert_eq!(read("etc/network/interfaces"), interfaces_text());
        assert!(!root.join("etc/resolv.conf").exists());
        let getty = root.join("etc/systemd/system/getty.target.wants/serial-getty@ttyS0.service");
        assert_eq!(
            std::fs::read_link(getty).unwrap(),
            Path::new("/lib/systemd/system/serial-getty@.service")
        );
        let mode = |p: &str| {
            std::fs::metadata(root.join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777
        };
        assert_eq!(mode("root/.ssh"), 0o700);
        assert_eq!(mode("root/.ssh/authorized_keys"), 0o600);
        assert_eq!(
            read("root/.ssh/authorized_keys"),
            "ssh-ed25519 AAAAC3Nza test@host\n"
        );
        let base = s.dir.parent().unwrap().to_path_buf();
        drop(s);
        std::fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn modules_go_to_usr_lib_through_the_lib_symlink() {
        let s = fake_tree("modules");
        let root = s.root();
        let src = s.dir.join("src");
        std::fs::create_dir_all(src.join("lib/modules/9.9.9-test/kernel")).unwrap();
        std::fs::write(src.join("lib/modules/9.9.9-test/modules.order"), "").unwrap();
        let tarball = s.dir.join("m.tar.gz");
        let out = Command::new("tar")
            .arg("-C")
            .arg(&src)
            .arg("-czf")
            .arg(&tarball)
            .arg("lib/modules")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let releases = modules_listing(&tarball, &s.dir.join("list.log")).unwrap();
        assert_eq!(releases, ["9.9.9-test"]);
        if tools::find("depmod").is_none() {
            eprintln!("depmod (kmod) is missing: checking the unpacking only");
        }
        let r = install_modules(&tarball, &releases, &s);
        assert!(std::fs::symlink_metadata(root.join("lib"))
            .unwrap()
            .is_symlink());
        assert!(root
            .join("usr/lib/modules/9.9.9-test/modules.order")
            .is_file());
        if tools::find("depmod").is_some() {
            r.unwrap();
            assert!(root
                .join("usr/lib/modules/9.9.9-test/modules.dep")
                .is_file());
        }
        let base = s.dir.parent().unwrap().to_path_buf();
        drop(s);
        assert!(
            std::fs::read_dir(&base).unwrap().next().is_none(),
            "scratch dir left"
        );
        std::fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn partial_name() {
        assert_eq!(
            partial_of(Path::new("/d/debian.img")),
            Path::new("/d/debian.img.partial")
        );
    }
}
