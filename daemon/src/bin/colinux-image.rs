//! `colinux-image`: make and inspect coLinux disk images (root file systems
//! and swap files are plain host files the guest sees as cobd devices).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ ImageError::BadSize { .. }) => {
            eprintln!("colinux-image: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("colinux-image: {e}");
            ExitCode::FAILURE
        }
    }
}
