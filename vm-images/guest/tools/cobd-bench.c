/*
 * cobd-bench: block-device throughput and IOPS with O_DIRECT, for the guest
 * of `cargo xtask bench cobd` (busybox dd cannot do random offsets in one
 * process, and a shell loop of dd would measure fork+exec, not the disk).
 *
 *   cobd-bench seq-write  DEV MIB            1 MiB O_DIRECT writes from offset 0, then fdatasync
 *   cobd-bench seq-read   DEV MIB            1 MiB O_DIRECT reads from offset 0
 *   cobd-bench rand-read  DEV SPAN_MIB OPS   4 KiB O_DIRECT reads, random aligned offsets in SPAN, QD1
 *   cobd-bench rand-write DEV SPAN_MIB OPS   4 KiB O_DIRECT writes, same; fdatasync at the end
 *
 * Prints one line: "mode=M bytes=N ops=N secs=S mibps=X iops=Y" (CLOCK_MONOTONIC).
 * Exit status 0 on success, 1 on an I/O error (named on stderr), 2 on bad usage.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BENCH_NAME "cobd-bench"
#include "bench-common.h"

static uint64_t rng_state;

/* xorshift64*: enough for spreading offsets; seeded from the clock and pid. */
static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

static int usage(void)
{
    fprintf(stderr, "usage: cobd-bench seq-write|seq-read DEV MIB\n"
                    "       cobd-bench rand-read|rand-write DEV SPAN_MIB OPS\n");
    return 2;
}

/* Full pread/pwrite of len bytes at off; -1 with a message on error or short I/O. */
static int io(int fd, int write, void *buf, size_t len, uint64_t off, const char *dev)
{
    ssize_t n = write ? pwrite(fd, buf, len, (off_t)off) : pread(fd, buf, len, (off_t)off);
    if (n != (ssize_t)len) {
        fprintf(stderr, "cobd-bench: %s %s at %llu: %s\n", write ? "pwrite" : "pread", dev,
                (unsigned long long)off, n < 0 ? strerror(errno) : "short transfer");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 4)
        return usage();
    const char *mode = argv[1], *dev = argv[2];
    int seq = !strncmp(mode, "seq-", 4), rnd = !strncmp(mode, "rand-", 5);
    if (!seq && !rnd)
        return usage();
    int wr = !strcmp(mode + (seq ? 4 : 5), "write");
    if (!wr && strcmp(mode + (seq ? 4 : 5), "read"))
        return usage();
    if ((seq && argc != 4) || (rnd && argc != 5))
        return usage();
    uint64_t mib, ops = 0;
    if (parse_u64(argv[3], 1 << 20, &mib) || (rnd && parse_u64(argv[4], 1ULL << 32, &ops)))
        return 2;

    int fd = open(dev, (wr ? O_RDWR : O_RDONLY) | O_DIRECT);
    if (fd < 0) {
        fprintf(stderr, "cobd-bench: open %s: %s\n", dev, strerror(errno));
        return 1;
    }
    off_t size = lseek(fd, 0, SEEK_END);
    if (size < 0 || (uint64_t)size < mib << 20) {
        fprintf(stderr, "cobd-bench: %s has %lld bytes, fewer than %llu MiB\n", dev,
                (long long)size, (unsigned long long)mib);
        return 1;
    }
    size_t bs = seq ? (1 << 20) : 4096;
    void *buf;
    if (posix_memalign(&buf, 4096, bs)) {
        fprintf(stderr, "cobd-bench: out of memory\n");
        return 1;
    }
    /* A non-zero pattern, so that no layer can shortcut zero pages. */
    for (size_t i = 0; i < bs; i++)
        ((unsigned char *)buf)[i] = (unsigned char)(i * 131 + 7);
    rng_state = ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid() ^ 0x9E3779B97F4A7C15ULL;

    uint64_t count = seq ? mib : ops, blocks = (mib << 20) / 4096;
    double t0 = now();
    for (uint64_t i = 0; i < count; i++) {
        uint64_t off = seq ? i << 20 : (rng() % blocks) * 4096;
        if (io(fd, wr, buf, bs, off, dev))
            return 1;
    }
    if (wr && fdatasync(fd)) {
        fprintf(stderr, "cobd-bench: fdatasync %s: %s\n", dev, strerror(errno));
        return 1;
    }
    double secs = now() - t0;
    if (secs <= 0)
        secs = 1e-9;
    uint64_t bytes = count * bs;
    printf("mode=%s bytes=%llu ops=%llu secs=%.6f mibps=%.2f iops=%.0f\n", mode,
           (unsigned long long)bytes, (unsigned long long)count, secs,
           (double)bytes / 1048576.0 / secs, (double)count / secs);
    close(fd);
    return 0;
}
