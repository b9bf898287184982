//! `colinux-image`: make and inspect coLinux disk images (root file systems
//! and swap files are plain host files the guest sees as cobd devices).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use colinux_daemon::image::bootstrap::{BootstrapOptions, Init, SwapSpec};
use colinux_daemon::image::{self, ext::ExtType, format_size, ImageError};

#[derive(Debug, Parser)]
#[command(
    name = "colinux-image",
    version,
    about = "Create, resize and inspect coLinux disk images",
    after_help = "SIZE takes a unit: K, M, G or T (powers of 1024), e.g. 512M or 2G.\n\
                  Exit status: 0 success, 1 failure, 2 usage error."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Fs {
    Ext2,
    Ext3,
    Ext4,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a sparse image file (refuses to overwrite an existing file).
    Create {
        /// The new image file.
        file: PathBuf,
        /// Its size, e.g. 2G.
        size: String,
        /// Also make a file system on it (runs mke2fs).
        #[arg(long, value_enum)]
        fs: Option<Fs>,
        /// File system label (with --fs).
        #[arg(long, requires = "fs")]
        label: Option<String>,
    },
    /// Create a ready Linux swap file (swap header version 1).
    Mkswap {
        /// The new swap file.
        file: PathBuf,
        /// Its size, e.g. 512M.
        size: String,
        /// Swap label (up to 16 bytes).
        #[arg(long)]
        label: Option<String>,
        /// Leave the file sparse (fine as a cobd device; host swapon refuses holes).
        #[arg(long)]
        sparse: bool,
    },
    /// Grow an ext2/3/4 image and its file system (stop the VM first; never shrinks).
    Resize {
        /// The image file.
        file: PathBuf,
        /// The new, larger size, e.g. 4G.
        size: String,
    },
    /// Build a ready Debian system image (root file system) with mmdebstrap.
    #[command(
        after_help = "Runs mmdebstrap (minbase + the init, udev, ifupdown, DHCP, \
        openssh-server, ...), customizes the tree (fstab with /dev/cobd0 [and /dev/cobd1], \
        hostname, eth0 by DHCP, empty root password unless --root-password; with systemd a \
        serial getty on ttyS0, with sysvinit Debian's /etc/inittab as shipped: gettys on \
        tty1..tty6, the screen, as classic coLinux images had) and makes it an ext4 image \
        with mke2fs -d. Needs root and `apt-get install mmdebstrap`. A failed or interrupted \
        build leaves nothing behind."
    )]
    Bootstrap {
        /// The new image file.
        file: PathBuf,
        /// Its size, e.g. 2G (the system uses about 450M with a kernel's modules).
        size: String,
        /// Also make a swap file SWAPFILE of SWAPSIZE (and its fstab line, /dev/cobd1).
        #[arg(long, num_args = 2, value_names = ["SWAPFILE", "SWAPSIZE"])]
        swap: Option<Vec<String>>,
        /// Kernel modules: a .tar.gz of lib/modules/<release>/... (depmod is run).
        #[arg(long, value_name = "TARBALL")]
        modules: Option<PathBuf>,
        /// A public key file for root's ~/.ssh/authorized_keys (repeatable).
        #[arg(long = "authorized-key", value_name = "FILE")]
        authorized_keys: Vec<PathBuf>,
        /// Root's password (default: empty, the console login asks none; sshd refuses it).
        #[arg(long, value_name = "PW")]
        root_password: Option<String>,
        /// The guest's host name.
        #[arg(long, default_value = image::bootstrap::DEFAULT_HOSTNAME)]
        hostname: String,
        /// Debian mirror (default: this host's apt source for Debian main, else
        /// http://deb.debian.org/debian).
        #[arg(long, value_name = "URL")]
        mirror: Option<String>,
        /// Debian release.
        #[arg(long, default_value = image::bootstrap::DEFAULT_SUITE)]
        suite: String,
        /// ext4 volume label.
        #[arg(long, default_value = image::bootstrap::DEFAULT_LABEL)]
        label: String,
        /// The init: systemd (serial getty on ttyS0) or sysvinit (gettys on tty1..tty6).
        #[arg(long, value_enum, default_value_t = Init::Systemd)]
        init: Init,
        /// Replace FILE (and SWAPFILE) if they exist.
        #[arg(long)]
        force: bool,
    },
    /// Show the size and type (ext2/3/4, swap or raw) of an image.
    Info {
        /// The image file.
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn run(cli: Cli) -> Result<(), ImageError> {
    match cli.command {
        Command::Create {
            file,
            size,
            fs,
            label,
        } => {
            let bytes = image::parse_size(&size)?;
            let fs = fs.map(|f| {
                let kind = match f {
                    Fs::Ext2 => ExtType::Ext2,
                    Fs::Ext3 => ExtType::Ext3,
                    Fs::Ext4 => ExtType::Ext4,
                };
                (kind, label.as_deref())
            });
            image::create(&file, bytes, fs)?;
            println!("created {} ({})", file.display(), format_size(bytes));
        }
        Command::Mkswap {
            file,
            size,
            label,
            sparse,
        } => {
            let bytes = image::parse_size(&size)?;
            let uuid = image::mkswap(&file, bytes, label.as_deref(), sparse)?;
            println!(
                "created swap file {} ({}), UUID={uuid}",
                file.display(),
                format_size(bytes)
            );
        }
        Command::Resize { file, size } => {
            let bytes = image::parse_size(&size)?;
            let r = image::resize(&file, bytes)?;
            println!(
                "resized {}: {} -> {}; file system {} -> {} blocks of {} bytes",
                file.display(),
                format_size(r.old_size),
                format_size(r.new_size),
                r.old_blocks,
                r.new_blocks,
                r.block_size
            );
        }
        Command::Bootstrap {
            file,
            size,
            swap,
            modules,
            authorized_keys,
            root_password,
            hostname,
            mirror,
            suite,
            label,
            init,
            force,
        } => {
            let mut o = BootstrapOptions::new(file, image::parse_size(&size)?);
            if let Some([path, size]) = swap.as_deref() {
                o.swap = Some(SwapSpec {
                    path: path.into(),
                    size: image::parse_size(size)?,
                });
            }
            o.modules = modules;
            o.authorized_keys = authorized_keys;
            o.root_password = root_password;
            o.hostname = hostname;
            o.mirror = mirror;
            o.suite = suite;
            o.label = label;
            o.force = force;
            o.init = init;
            bootstrap(&o)?;
        }
        Command::Info { file, json } => {
            let info = image::detect(&file)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&info).unwrap_or_default()
                );
            } else {
                print!("{info}");
            }
        }
    }
    Ok(())
}

/// `bootstrap`: builds the image and prints its size and a colinux.conf
/// that uses it.
fn bootstrap(o: &BootstrapOptions) -> Result<(), ImageError> {
    let r = image::bootstrap::bootstrap(o, &mut |line| println!("{line}"))?;
    println!(
        "bootstrap done in {:.0} s: {} ({}, {} used{})",
        r.elapsed.as_secs_f64(),
        o.image.display(),
        format_size(r.image_size),
        format_size(r.used_bytes),
        if r.module_releases.is_empty() {
            String::new()
        } else {
            format!(", modules {}", r.module_releases.join(" "))
        }
    );
    if let (Some(s), Some(uuid)) = (&o.swap, &r.swap_uuid) {
        println!(
            "swap file {} ({}), UUID={uuid}",
            s.path.display(),
            format_size(s.size)
        );
    }
    println!("example colinux.conf:");
    print!(
        "{}",
        image::bootstrap::example_conf(&o.image, o.swap.as_ref().map(|s| s.path.as_path()))
    );
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ (ImageError::BadSize { .. } | ImageError::BadArgument { .. })) => {
            eprintln!("colinux-image: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("colinux-image: {e}");
            ExitCode::FAILURE
        }
    }
}
