//! LZ4 decompression for kernel payloads: the legacy frame format the kernel
//! build uses (`lz4 -l`) and the LZ4 block format inside it.
//!
//! Input is a user-supplied kernel file, so every length and offset is checked:
//! bad input is an error, never a panic or an out-of-bounds access.

/// Magic number opening an LZ4 legacy frame (and possibly repeated between
/// concatenated frames).
pub const LEGACY_MAGIC: u32 = 0x184c_2102;
/// Largest uncompressed size of one legacy block.
pub const LEGACY_BLOCK_MAX: usize = 8 << 20;

/// Why a stream does not decompress.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Lz4Error {
    /// The stream does not start with the legacy magic.
    #[error("not an LZ4 legacy stream")]
    NotLegacy,
    /// A block or length field runs past the end of the input.
    #[error("LZ4 stream truncated at byte {0}")]
    Truncated(usize),
    /// A match refers to data before the start of the block.
    #[error("LZ4 match offset {offset} at byte {at} reaches before the block start")]
    BadOffset {
        /// The offset.
        offset: usize,
        /// Input position.
        at: usize,
    },
    /// A block decompresses to more than allowed.
    #[error("LZ4 block decompresses beyond {0} bytes")]
    TooLarge(usize),
}

fn read_len(src: &[u8], i: &mut usize, mut len: usize) -> Result<usize, Lz4Error> {
    if len == 15 {
        loop {
            let b = *src.get(*i).ok_or(Lz4Error::Truncated(*i))?;
            *i += 1;
            len += usize::from(b);
            if b != 255 {
                break;
            }
        }
    }
    Ok(len)
}

/// Decompresses one LZ4 block, appending at most `max` bytes to `out`.
pub fn decompress_block(src: &[u8], out: &mut Vec<u8>, max: usize) -> Result<(), Lz4Error> {
    let start = out.len();
    let mut i = 0;
    while i < src.len() {
        let token = src[i];
        i += 1;
        let lit = read_len(src, &mut i, usize::from(token >> 4))?;
        let end = i
            .checked_add(lit)
            .filter(|&e| e <= src.len())
            .ok_or(Lz4Error::Truncated(i))?;
        if out.len() - start + lit > max {
            return Err(Lz4Error::TooLarge(max));
        }
        out.extend_from_slice(&src[i..end]);
        i = end;
        if i == src.len() {
            break;
        }
        let off_bytes = src.get(i..i + 2).ok_or(Lz4Error::Truncated(i))?;
        let offset = usize::from(u16::from_le_bytes([off_bytes[0], off_bytes[1]]));
        if offset == 0 || offset > out.len() - start {
            return Err(Lz4Error::BadOffset { offset, at: i });
        }
        i += 2;
        let len = read_len(src, &mut i, usize::from(token & 15))? + 4;
        if out.len() - start + len > max {
            return Err(Lz4Error::TooLarge(max));
        }
        let from = out.len() - offset;
        if offset >= len {
            out.extend_from_within(from..from + len);
        } else {
            for k in 0..len {
                let b = out[from + k];
                out.push(b);
            }
        }
    }
    Ok(())
}

/// Bytes moved by the fixed-size copies of the fast paths: a short literal or
/// match is copied as one 16-byte move when both ends have room; the bytes past
/// its end are overwritten by the following sequence.
const WILD: usize = 16;

/// Copies the `len`-byte match at distance `offset` behind `o` to `o`.
/// `offset` is at least 1 and at most `o`; `o + len` fits in `dst`.
fn copy_match(dst: &mut [u8], o: usize, offset: usize, len: usize) {
    let from = o - offset;
    if offset >= len {
        if len <= WILD && offset >= WILD && o + WILD <= dst.len() {
            dst.copy_within(from..from + WILD, o);
        } else {
            dst.copy_within(from..from + len, o);
        }
        return;
    }
    // Overlapping: the output repeats with period `offset`. Copy whole
    // periods from `from`, doubling each time, so that every copy reads bytes
    // already final and the source and destination never overlap.
    let mut done = 0;
    while done < len {
        let n = (len - done).min(offset + done);
        dst.copy_within(from..from + n, o + done);
        done += n;
    }
}

/// Decompresses `src` into `dst`; with `partial`, output that would not fit
/// ends the work (`dst` full) instead of being an error.
fn decode(src: &[u8], dst: &mut [u8], partial: bool) -> Result<usize, Lz4Error> {
    let max = dst.len();
    let mut o = 0usize;
    let mut i = 0usize;
    while i < src.len() {
        let token = src[i];
        i += 1;
        let lit = read_len(src, &mut i, usize::from(token >> 4))?;
        let end = i
            .checked_add(lit)
            .filter(|&e| e <= src.len())
            .ok_or(Lz4Error::Truncated(i))?;
        if lit <= WILD && i + WILD <= src.len() && o + WILD <= max {
            dst[o..o + WILD].copy_from_slice(&src[i..i + WILD]);
        } else if o + lit <= max {
            dst[o..o + lit].copy_from_slice(&src[i..end]);
        } else if partial {
            dst[o..].copy_from_slice(&src[i..i + (max - o)]);
            return Ok(max);
        } else {
            return Err(Lz4Error::TooLarge(max));
        }
        o += lit;
        i = end;
        if i == src.len() {
            break;
        }
        let off_bytes = src.get(i..i + 2).ok_or(Lz4Error::Truncated(i))?;
        let offset = usize::from(u16::from_le_bytes([off_bytes[0], off_bytes[1]]));
        if offset == 0 || offset > o {
            return Err(Lz4Error::BadOffset { offset, at: i });
        }
        i += 2;
        let len = read_len(src, &mut i, usize::from(token & 15))? + 4;
        if o + len > max {
            if !partial {
                return Err(Lz4Error::TooLarge(max));
            }
            copy_match(dst, o, offset, max - o);
            return Ok(max);
        }
        copy_match(dst, o, offset, len);
        o += len;
    }
    Ok(o)
}

/// Decompresses one LZ4 block into `dst`, which must be exactly the block's
/// uncompressed size; returns the number of bytes written.
pub fn decompress_block_into(src: &[u8], dst: &mut [u8]) -> Result<usize, Lz4Error> {
    decode(src, dst, false)
}

/// Decompresses the first `dst.len()` bytes of one LZ4 block (or all of it, if
/// shorter); returns the number of bytes written.
pub fn decompress_block_prefix(src: &[u8], dst: &mut [u8]) -> Result<usize, Lz4Error> {
    decode(src, dst, true)
}

/// Splits a legacy stream into its blocks (compressed bytes of each).
pub fn legacy_blocks(src: &[u8]) -> Result<Vec<&[u8]>, Lz4Error> {
    let magic = src.get(..4).ok_or(Lz4Error::NotLegacy)?;
    if u32::from_le_bytes([magic[0], magic[1], magic[2], magic[3]]) != LEGACY_MAGIC {
        return Err(Lz4Error::NotLegacy);
    }
    let mut blocks = Vec::new();
    let mut i = 4;
    while i + 4 <= src.len() {
        let size = u32::from_le_bytes([src[i], src[i + 1], src[i + 2], src[i + 3]]) as usize;
        if size == LEGACY_MAGIC as usize {
            i += 4;
            continue;
        }
        let Some(block) = src.get(i + 4..i + 4 + size) else {
            break;
        };
        blocks.push(block);
        i += 4 + size;
    }
    Ok(blocks)
}

/// Decompresses a legacy stream whose total uncompressed size is `total`, with
/// its blocks (8 MiB each but the last) spread over `threads` threads.
pub fn decompress_legacy_parallel(
    src: &[u8],
    total: usize,
    threads: usize,
) -> Result<Vec<u8>, Lz4Error> {
    let blocks = legacy_blocks(src)?;
    if total > blocks.len().saturating_mul(LEGACY_BLOCK_MAX) || total == 0 {
        return Err(Lz4Error::TooLarge(total));
    }
    let mut out = vec![0u8; total];
    let chunks: Vec<(&[u8], &mut [u8])> = blocks
        .iter()
        .copied()
        .zip(out.chunks_mut(LEGACY_BLOCK_MAX))
        .collect();
    if chunks.len() != blocks.len() {
        return Err(Lz4Error::Truncated(src.len()));
    }
    let threads = threads.clamp(1, chunks.len().max(1));
    let per = chunks.len().div_ceil(threads);
    let mut groups: Vec<Vec<(&[u8], &mut [u8])>> = Vec::new();
    let mut it = chunks.into_iter().peekable();
    while it.peek().is_some() {
        groups.push(it.by_ref().take(per).collect());
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = groups
            .into_iter()
            .map(|g| {
                s.spawn(move || {
                    for (src, dst) in g {
                        let n = decompress_block_into(src, dst)?;
                        if n != dst.len() {
                            return Err(Lz4Error::Truncated(n));
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().unwrap_or(Err(Lz4Error::NotLegacy)))
    })?;
    Ok(out)
}

/// Decompresses a legacy-frame stream of at most `max_total` bytes of output.
pub fn decompress_legacy(src: &[u8], max_total: usize) -> Result<Vec<u8>, Lz4Error> {
    let magic = src.get(..4).ok_or(Lz4Error::NotLegacy)?;
    if u32::from_le_bytes([magic[0], magic[1], magic[2], magic[3]]) != LEGACY_MAGIC {
        return Err(Lz4Error::NotLegacy);
    }
    let mut out = Vec::new();
    let mut i = 4;
    while i + 4 <= src.len() {
        let size = u32::from_le_bytes([src[i], src[i + 1], src[i + 2], src[i + 3]]) as usize;
        if size == LEGACY_MAGIC as usize {
            i += 4;
            continue;
        }
        // Anything that is not a whole block (e.g. the kernel build's appended
        // uncompressed size) ends the stream.
        let Some(block) = src.get(i + 4..i + 4 + size) else {
            break;
        };
        let room = max_total.saturating_sub(out.len()).min(LEGACY_BLOCK_MAX);
        decompress_block(block, &mut out, room)?;
        i += 4 + size;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn literals_matches_and_overlap() {
        // "abcd" literal then match offset 4 len 8 ("abcdabcd"), then literal "xyz".
        let block = [0x44, b'a', b'b', b'c', b'd', 4, 0, 0x30, b'x', b'y', b'z'];
        let mut out = Vec::new();
        decompress_block(&block, &mut out, 100).unwrap();
        assert_eq!(out, b"abcdabcdabcdxyz");
        // Run-length: "a" then offset 1, len 4+15+3 = 22.
        let block = [0x1f, b'a', 1, 0, 3, 0x00];
        let mut out = Vec::new();
        decompress_block(&block, &mut out, 100).unwrap();
        assert_eq!(out, vec![b'a'; 23]);
    }

    #[test]
    fn errors_instead_of_panics() {
        let mut out = Vec::new();
        assert_eq!(
            decompress_block(&[0x10], &mut out, 10),
            Err(Lz4Error::Truncated(1))
        );
        assert!(matches!(
            decompress_block(&[0x10, b'a', 5, 0, 0x00], &mut out, 10),
            Err(Lz4Error::BadOffset { .. })
        ));
        let mut out = Vec::new();
        assert_eq!(
            decompress_block(&[0x1f, b'a', 1, 0, 200], &mut out, 50),
            Err(Lz4Error::TooLarge(50))
        );
        assert_eq!(
            decompress_legacy(b"\x04\x22\x4d\x18", 10),
            Err(Lz4Error::NotLegacy)
        );
        // Legacy frame with one block and a trailing size word.
        let mut s = LEGACY_MAGIC.to_le_bytes().to_vec();
        s.extend_from_slice(&4u32.to_le_bytes());
        s.extend_from_slice(&[0x30, b'h', b'e', b'y']);
        s.extend_from_slice(&3u32.to_le_bytes());
        assert_eq!(decompress_legacy(&s, 100).unwrap(), b"hey");
    }

    #[test]
    fn parallel_matches_sequential_over_several_blocks() {
        // Two full 8 MiB blocks of "ab" runs and a short tail block.
        let full = {
            // literal "ab", then a match of offset 2 covering the rest.
            let len = LEGACY_BLOCK_MAX - 2 - 5; // keep the last 5 bytes literal
            let mut b = vec![0x2f, b'a', b'b', 2, 0];
            let mut rest = len - 4 - 15;
            while rest >= 255 {
                b.push(255);
                rest -= 255;
            }
            b.push(rest as u8);
            b.extend_from_slice(&[0x50, b'a', b'b', b'a', b'b', b'a']);
            b
        };
        let tail = [0x30, b'x', b'y', b'z'];
        let mut s = LEGACY_MAGIC.to_le_bytes().to_vec();
        for blk in [&full[..], &full[..], &tail[..]] {
            s.extend_from_slice(&(blk.len() as u32).to_le_bytes());
            s.extend_from_slice(blk);
        }
        let seq = decompress_legacy(&s, 64 << 20).unwrap();
        assert_eq!(seq.len(), 2 * LEGACY_BLOCK_MAX + 3);
        for threads in [1, 2, 3, 8] {
            let par = decompress_legacy_parallel(&s, seq.len(), threads).unwrap();
            assert!(par == seq, "threads={threads}");
        }
        // A wrong total is refused, not mis-decoded.
        assert!(decompress_legacy_parallel(&s, seq.len() + 1, 2).is_err());
    }

    /// Literals, then a match `(offset, len)` (none for the last sequence).
    type Seq = (Vec<u8>, Option<(usize, usize)>);

    /// Encodes `seqs` (literals, then a match `(offset, len)` if any) as one
    /// LZ4 block, and returns it with the output a plain expansion gives.
    fn encode(seqs: &[Seq]) -> (Vec<u8>, Vec<u8>) {
        fn len_bytes(b: &mut Vec<u8>, mut n: usize) {
            while n >= 255 {
                b.push(255);
                n -= 255;
            }
            b.push(n as u8);
        }
        let (mut block, mut out) = (Vec::new(), Vec::new());
        for (lits, m) in seqs {
            let ml = m.map_or(0, |(_, l)| l - 4);
            block.push(((lits.len().min(15) as u8) << 4) | ml.min(15) as u8);
            if lits.len() >= 15 {
                len_bytes(&mut block, lits.len() - 15);
            }
            block.extend_from_slice(lits);
            out.extend_from_slice(lits);
            if let Some((offset, len)) = *m {
                block.extend_from_slice(&(offset as u16).to_le_bytes());
                if ml >= 15 {
                    len_bytes(&mut block, ml - 15);
                }
                for _ in 0..len {
                    out.push(out[out.len() - offset]);
                }
            }
        }
        (block, out)
    }

    fn sequences() -> impl Strategy<Value = Vec<Seq>> {
        let seq = (
            prop::collection::vec(any::<u8>(), 1..40),
            (1usize..64, 4usize..300).prop_map(Some),
        );
        prop::collection::vec(seq, 1..24).prop_map(|mut v| {
            let mut produced = 0;
            for (lits, m) in &mut v {
                produced += lits.len();
                if let Some((off, len)) = m {
                    *off = (*off).min(produced);
                    produced += *len;
                }
            }
            // Only the last sequence, literals alone, has no match.
            v.push((b"tail!".to_vec(), None));
            v
        })
    }

    proptest! {
        #[test]
        fn fast_paths_match_a_plain_expansion(seqs in sequences(), cut in 0usize..2000) {
            let (block, want) = encode(&seqs);
            let mut dst = vec![0u8; want.len()];
            prop_assert_eq!(decompress_block_into(&block, &mut dst), Ok(want.len()));
            prop_assert_eq!(&dst, &want);
            let mut out = Vec::new();
            decompress_block(&block, &mut out, want.len()).unwrap();
            prop_assert_eq!(&out, &want);
            let cut = cut.min(want.len());
            let mut prefix = vec![0u8; cut];
            prop_assert_eq!(decompress_block_prefix(&block, &mut prefix), Ok(cut));
            prop_assert_eq!(&prefix[..], &want[..cut]);
            if cut < want.len() {
                let mut short = vec![0u8; cut];
                prop_assert_eq!(decompress_block_into(&block, &mut short), Err(Lz4Error::TooLarge(cut)));
            }
        }

        #[test]
        fn arbitrary_input_never_panics(data in prop::collection::vec(any::<u8>(), 0..512)) {
            let mut out = Vec::new();
            let _ = decompress_block(&data, &mut out, 4096);
            prop_assert!(out.len() <= 4096);
            let mut framed = LEGACY_MAGIC.to_le_bytes().to_vec();
            framed.extend_from_slice(&data);
            let _ = decompress_legacy(&framed, 1 << 16);
            let _ = decompress_legacy_parallel(&framed, 1 << 16, 2);
            let mut dst = vec![0u8; 300];
            let _ = decompress_block_into(&data, &mut dst);
            let _ = decompress_block_prefix(&data, &mut dst[..20]);
        }
    }
}
