//! Software model of the world switch: a scripted guest, page walker and architectural checks.

pub mod arch;
pub mod paging;
