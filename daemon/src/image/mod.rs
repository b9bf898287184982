//! Disk-image tools behind `colinux-image`: sparse images, ready swap files,
//! growing ext2/3/4 images (like the old toporesize), identifying images and
//! bootstrapping ready Debian system images.

pub mod bootstrap;
pub mod detect;
pub mod error;
pub mod ext;
pub mod ops;
pub mod size;
pub mod swap;
pub mod tools;

pub use detect::{detect, ImageInfo, ImageKind};
pub use error::ImageError;
pub use ops::{create, mkswap, resize, ResizeReport};
pub use size::{format_size, parse_size};
