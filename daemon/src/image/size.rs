//! Sizes as users write them: `512M`, `2G`, `1536K`, `1T` (binary units,
//! optional `B`/`iB`), always a whole number of 512-byte sectors.

use super::ImageError;

/// Bytes per sector: image sizes must be a multiple of it.
pub const SECTOR: u64 = 512;

/// Parses a size with a unit (K, M, G or T, powers of 1024; `MB`, `MiB`
/// accepted too). A bare number is refused so nobody gets 512 bytes when
/// they meant 512 MiB.
pub fn parse_size(text: &str) -> Result<u64, ImageError> {
    let bad = |why: &str| ImageError::BadSize {
        text: text.to_string(),
        why: why.to_string(),
    };
    let t = text.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits_end);
    if num.is_empty() {
        return Err(bad("it must start with a number"));
    }
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" => return Err(bad("add a unit")),
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(bad("unknown unit")),
    };
    let n: u64 = num.parse().map_err(|_| bad("number too large"))?;
    let bytes = n
        .checked_mul(1u64 << shift)
        .filter(|&b| b <= i64::MAX as u64)
        .ok_or_else(|| bad("too large"))?;
    if bytes == 0 {
        return Err(bad("it must be larger than zero"));
    }
    Ok(bytes)
}

/// Formats a byte count for people: exact in the largest binary unit that
/// divides it, else with one decimal (`1.5 GiB`).
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(&str, u32); 4] = [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)];
    for (name, shift) in UNITS {
        let unit = 1u64 << shift;
        if bytes >= unit {
            return if bytes.is_multiple_of(unit) {
                format!("{} {name}", bytes >> shift)
            } else {
                format!("{:.1} {name}", bytes as f64 / unit as f64)
            };
        }
    }
    format!("{bytes} bytes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("512M", 512 << 20)]
    #[case("2G", 2 << 30)]
    #[case("1536k", 1536 << 10)]
    #[case("1T", 1 << 40)]
    #[case("64MiB", 64 << 20)]
    #[case("8GB", 8 << 30)]
    fn sizes(#[case] text: &str, #[case] bytes: u64) {
        assert_eq!(parse_size(text).unwrap(), bytes);
    }

    #[rstest]
    #[case("512", "add a unit")]
    #[case("M", "start with a number")]
    #[case("0M", "larger than zero")]
    #[case("5X", "unknown unit")]
    #[case("99999999999999999999G", "too large")]
    #[case("9999999999T", "too large")]
    #[case("-1G", "start with a number")]
    fn bad_sizes(#[case] text: &str, #[case] why: &str) {
        let msg = parse_size(text).unwrap_err().to_string();
        assert!(msg.contains(why) && msg.contains(text), "{msg}");
    }

    #[test]
    fn formatting() {
        assert_eq!(format_size(512 << 20), "512 MiB");
        assert_eq!(format_size(3 << 29), "1.5 GiB");
        assert_eq!(format_size(100), "100 bytes");
    }
}
