//! Decompressing the blocks of an LZ4 legacy stream on every host CPU.
//!
//! A kernel payload is a handful of independent 8 MiB blocks, so decoding
//! them side by side divides the monitor's share of boot time by the number
//! of cores. Threads take the next block as they finish one, so uneven
//! blocks balance out.

use super::lz4::{self, Lz4Error, LEGACY_BLOCK_MAX};

/// Threads to use: one a host CPU.
pub fn host_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Decompresses each `(block, output)` pair, the output being exactly the
/// block's size, on up to `threads` threads.
pub fn decompress_blocks(work: Vec<(&[u8], &mut [u8])>, threads: usize) -> Result<(), Lz4Error> {
    let threads = threads.clamp(1, work.len().max(1));
    let queue = std::sync::Mutex::new(work.into_iter());
    let next = || queue.lock().unwrap_or_else(|e| e.into_inner()).next();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    while let Some((src, out)) = next() {
                        lz4::decompress_block_into(src, out)?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles.into_iter().try_for_each(|h| {
            h.join()
                .unwrap_or_else(|_| Err(Lz4Error::Block("decoder thread panicked".into())))
        })
    })
}

/// Decompresses a legacy stream whose total uncompressed size is `total`
/// (every block [`LEGACY_BLOCK_MAX`] bytes but the last) on `threads` threads.
pub fn decompress_legacy_parallel(
    src: &[u8],
    total: usize,
    threads: usize,
) -> Result<Vec<u8>, Lz4Error> {
    let blocks = lz4::legacy_blocks(src)?;
    if total == 0 || total.div_ceil(LEGACY_BLOCK_MAX) != blocks.len() {
        return Err(Lz4Error::TooLarge(total));
    }
    let mut out = vec![0u8; total];
    let work = blocks
        .into_iter()
        .zip(out.chunks_mut(LEGACY_BLOCK_MAX))
        .collect();
    decompress_blocks(work, threads)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::lz4::encode;
    use super::*;

    #[test]
    fn parallel_matches_sequential_over_several_blocks() {
        // Two full 8 MiB blocks of "ab" runs (a literal "ab", a match of
        // offset 2 over the rest but the last 5 bytes) and a short tail block.
        let full = encode::block(&[
            (b"ab".to_vec(), Some((2, LEGACY_BLOCK_MAX - 2 - 5))),
            (b"ababa".to_vec(), None),
        ])
        .0;
        let tail = encode::literal_block(b"xyz");
        let total = 2 * LEGACY_BLOCK_MAX + 3;
        let s = encode::legacy(&[&full, &full, &tail], total);
        let seq = lz4::decompress_legacy(&s, 64 << 20).unwrap();
        assert_eq!(seq.len(), total);
        for threads in [1, 2, 3, 8] {
            let par = decompress_legacy_parallel(&s, total, threads).unwrap();
            assert!(par == seq, "threads={threads}");
        }
        // A wrong total is refused, not mis-decoded.
        assert!(decompress_legacy_parallel(&s, total + 1, 2).is_err());
        assert!(decompress_legacy_parallel(&s, total + LEGACY_BLOCK_MAX, 2).is_err());
    }
}
