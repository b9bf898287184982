//! A tiny AML (ACPI Machine Language) encoder: just the terms the DSDT needs
//! (scopes, devices, named integers/strings/packages and resource templates).

/// Encodes a PkgLength for a body of `body_len` bytes (the length counts itself).
pub fn pkg_length(body_len: usize) -> Vec<u8> {
    if body_len + 1 < 64 {
        return vec![(body_len + 1) as u8];
    }
    for extra in 1..=3usize {
        let total = body_len + 1 + extra;
        if total < 1 << (4 + 8 * extra) {
            let mut v = vec![((extra as u8) << 6) | (total & 0xf) as u8];
            for i in 0..extra {
                v.push((total >> (4 + 8 * i)) as u8);
            }
            return v;
        }
    }
    // A DSDT this large (256 MiB) is never built here.
    unreachable!("AML package too large")
}

/// A 4-character name segment, padded with `_`.
pub fn name_seg(name: &str) -> [u8; 4] {
    let mut s = [b'_'; 4];
    for (d, c) in s.iter_mut().zip(name.bytes()) {
        *d = c;
    }
    s
}

/// A name path: `\` prefix allowed, then one or more dot-separated segments.
pub fn name_string(path: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let rest = match path.strip_prefix('\\') {
        Some(r) => {
            out.push(b'\\');
            r
        }
        None => path,
    };
    let segs: Vec<&str> = rest.split('.').filter(|s| !s.is_empty()).collect();
    match segs.len() {
        0 => out.push(0),
        1 => {}
        2 => out.push(0x2e),
        n => {
            out.push(0x2f);
            out.push(n as u8);
        }
    }
    for s in segs {
        out.extend_from_slice(&name_seg(s));
    }
    out
}

/// An integer constant with the shortest encoding.
pub fn integer(v: u64) -> Vec<u8> {
    match v {
        0 => vec![0x00],
        1 => vec![0x01],
        2..=0xff => vec![0x0a, v as u8],
        0x100..=0xffff => {
            let mut o = vec![0x0b];
            o.extend_from_slice(&(v as u16).to_le_bytes());
            o
        }
        0x1_0000..=0xffff_ffff => {
            let mut o = vec![0x0c];
            o.extend_from_slice(&(v as u32).to_le_bytes());
            o
        }
        _ => {
            let mut o = vec![0x0e];
            o.extend_from_slice(&v.to_le_bytes());
            o
        }
    }
}

/// A compressed EISA id such as `PNP0A03`, as a DWord.
pub fn eisa_id(id: &str) -> Vec<u8> {
    let b = id.as_bytes();
    let c = |i: usize| u16::from(b[i] - 0x40) & 0x1f;
    let vendor = (c(0) << 10) | (c(1) << 5) | c(2);
    let hex = |i: usize| (b[i] as char).to_digit(16).unwrap_or(0) as u8;
    let mut o = vec![0x0c];
    o.extend_from_slice(&vendor.to_be_bytes());
    o.push((hex(3) << 4) | hex(4));
    o.push((hex(5) << 4) | hex(6));
    o
}

/// `Name(name, value)`.
pub fn name(name: &str, value: &[u8]) -> Vec<u8> {
    let mut o = vec![0x08];
    o.extend(name_string(name));
    o.extend_from_slice(value);
    o
}

fn with_pkg(op: &[u8], name: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut inner = Vec::new();
    if let Some(n) = name {
        inner.extend(name_string(n));
    }
    inner.extend_from_slice(body);
    let mut o = op.to_vec();
    o.extend(pkg_length(inner.len()));
    o.extend(inner);
    o
}

/// `Scope(path) { body }`.
pub fn scope(path: &str, body: &[u8]) -> Vec<u8> {
    with_pkg(&[0x10], Some(path), body)
}

/// `Device(name) { body }`.
pub fn device(name: &str, body: &[u8]) -> Vec<u8> {
    with_pkg(&[0x5b, 0x82], Some(name), body)
}

/// `Package() { elements }` of already encoded data objects.
pub fn package(elements: &[Vec<u8>]) -> Vec<u8> {
    let mut body = vec![elements.len() as u8];
    for e in elements {
        body.extend_from_slice(e);
    }
    with_pkg(&[0x12], None, &body)
}

/// `Buffer() { bytes }`.
pub fn buffer(bytes: &[u8]) -> Vec<u8> {
    let mut body = integer(bytes.len() as u64);
    body.extend_from_slice(bytes);
    with_pkg(&[0x11], None, &body)
}

/// Resource descriptors for `ResourceTemplate()` buffers.
pub mod res {
    /// Flags of a bridge window: producer, fixed minimum and maximum.
    const WINDOW_FLAGS: u8 = 0x0c;

    /// WordBusNumber covering buses `min..=max`.
    pub fn word_bus(min: u16, max: u16) -> Vec<u8> {
        word(2, 0, min, max)
    }

    /// WordIO window `min..=max` (entire ISA range).
    pub fn word_io(min: u16, max: u16) -> Vec<u8> {
        word(1, 3, min, max)
    }

    fn word(kind: u8, type_flags: u8, min: u16, max: u16) -> Vec<u8> {
        let mut o = vec![0x88, 13, 0, kind, WINDOW_FLAGS, type_flags];
        for v in [0, min, max, 0, max - min + 1] {
            o.extend_from_slice(&v.to_le_bytes());
        }
        o
    }

    /// A fixed 16-bit-decoded I/O port range.
    pub fn io(base: u16, len: u8) -> Vec<u8> {
        let mut o = vec![0x47, 1];
        o.extend_from_slice(&base.to_le_bytes());
        o.extend_from_slice(&base.to_le_bytes());
        o.push(1);
        o.push(len);
        o
    }

    /// DWordMemory window `[base, base + len)`, read-write, non-cacheable.
    pub fn dword_memory(base: u32, len: u32) -> Vec<u8> {
        let mut o = vec![0x87, 23, 0, 0, WINDOW_FLAGS, 1];
        for v in [0, base, base + (len - 1), 0, len] {
            o.extend_from_slice(&v.to_le_bytes());
        }
        o
    }

    /// QWordMemory window `[base, base + len)`, read-write, non-cacheable.
    pub fn qword_memory(base: u64, len: u64) -> Vec<u8> {
        let mut o = vec![0x8a, 43, 0, 0, WINDOW_FLAGS, 1];
        for v in [0, base, base + (len - 1), 0, len] {
            o.extend_from_slice(&v.to_le_bytes());
        }
        o
    }

    /// An edge-triggered, active-high ISA interrupt (IRQNoFlags) on line `irq`.
    pub fn irq(irq: u8) -> Vec<u8> {
        let mask = 1u16 << (irq & 15);
        let mut o = vec![0x22];
        o.extend_from_slice(&mask.to_le_bytes());
        o
    }

    /// The end tag closing a template.
    pub fn end() -> Vec<u8> {
        vec![0x79, 0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        assert_eq!(pkg_length(10), vec![11]);
        // 100 body bytes + 2 length bytes = 102 = 0x66.
        assert_eq!(pkg_length(100), vec![0x46, 0x06]);
        assert_eq!(eisa_id("PNP0A03"), vec![0x0c, 0x41, 0xd0, 0x0a, 0x03]);
        assert_eq!(name_string("\\_SB_.PCI0"), b"\\\x2e_SB_PCI0".to_vec());
        assert_eq!(integer(0x1234), vec![0x0b, 0x34, 0x12]);
        assert_eq!(res::word_bus(0, 0).len(), 16);
        assert_eq!(res::dword_memory(0xc000_0000, 0x1000).len(), 26);
        assert_eq!(res::qword_memory(1 << 36, 1 << 30).len(), 46);
    }
}
