/*
 * fs-bench: file-system throughput and metadata rates on a mounted share, for
 * the guest of `cargo xtask bench cofs` (a shell loop of touch/stat/rm would
 * measure fork+exec, not the file system).
 *
 *   fs-bench seq-write FILE MIB   create/truncate FILE, 1 MiB write(2)s, then fsync
 *   fs-bench seq-read  FILE MIB   1 MiB read(2)s of FILE's first MIB MiB
 *   fs-bench create    DIR N      open(O_CREAT|O_EXCL) + close of DIR/f000000.. (N files)
 *   fs-bench stat      DIR N      stat(2) of each of those N files
 *   fs-bench unlink    DIR N      unlink(2) of each of those N files
 *
 * The caller drops the guest's caches where it wants the answers to come from
 * the host (before seq-read and stat). Prints one line (CLOCK_MONOTONIC):
 *   mode=M bytes=N ops=N secs=S mibps=X opsps=Y
 * (bytes=0 for the metadata modes). Exit status 0 on success, 1 on an error
 * (named on stderr), 2 on bad usage.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BENCH_NAME "fs-bench"
#include "bench-common.h"

#define MIB (1u << 20)

static int usage(void)
{
    fprintf(stderr, "usage: fs-bench seq-write|seq-read FILE MIB\n"
                    "       fs-bench create|stat|unlink DIR N\n");
    return 2;
}

static int fail(const char *what, const char *path)
{
    fprintf(stderr, "fs-bench: %s %s: %s\n", what, path, strerror(errno));
    return 1;
}

/* Sequential write or read of mib MiB in 1 MiB calls; *secs is the time taken. */
static int seq(int wr, const char *file, uint64_t mib, double *secs)
{
    unsigned char *buf = malloc(MIB);
    if (!buf) {
        fprintf(stderr, "fs-bench: out of memory\n");
        return 1;
    }
    /* A non-zero pattern, so that no layer can shortcut zero pages. */
    for (size_t i = 0; i < MIB; i++)
        buf[i] = (unsigned char)(i * 131 + 7);
    double t0 = now();
    int fd = wr ? open(file, O_WRONLY | O_CREAT | O_TRUNC, 0644) : open(file, O_RDONLY);
    if (fd < 0)
        return fail("open", file);
    for (uint64_t i = 0; i < mib; i++) {
        size_t done = 0;
        while (done < MIB) {
            ssize_t n = wr ? write(fd, buf + done, MIB - done) : read(fd, buf + done, MIB - done);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                return fail(wr ? "write" : "read", file);
            if (n == 0) {
                fprintf(stderr, "fs-bench: %s ends before %llu MiB\n", file,
                        (unsigned long long)mib);
                return 1;
            }
            done += (size_t)n;
        }
    }
    if (wr && fsync(fd))
        return fail("fsync", file);
    if (close(fd))
        return fail("close", file);
    *secs = now() - t0;
    free(buf);
    return 0;
}

/* One metadata operation on DIR/fNNNNNN; -1 with a message on error. */
static int meta(char mode, const char *dir, uint64_t i)
{
    char path[4096];
    struct stat st;
    snprintf(path, sizeof path, "%s/f%06llu", dir, (unsigned long long)i);
    switch (mode) {
    case 'c': {
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd < 0 || close(fd))
            return -fail("create", path);
        return 0;
    }
    case 's':
        return stat(path, &st) ? -fail("stat", path) : 0;
    default:
        return unlink(path) ? -fail("unlink", path) : 0;
    }
}

int main(int argc, char **argv)
{
    if (argc != 4)
        return usage();
    const char *mode = argv[1], *path = argv[2];
    int seq_mode = !strcmp(mode, "seq-write") || !strcmp(mode, "seq-read");
    char m = !strcmp(mode, "create") ? 'c' : !strcmp(mode, "stat") ? 's'
           : !strcmp(mode, "unlink") ? 'u' : 0;
    if (!seq_mode && !m)
        return usage();
    uint64_t n;
    if (parse_u64(argv[3], seq_mode ? 1 << 20 : 1 << 24, &n))
        return 2;

    double secs = 0;
    uint64_t bytes = 0;
    if (seq_mode) {
        if (seq(!strcmp(mode, "seq-write"), path, n, &secs))
            return 1;
        bytes = n * MIB;
    } else {
        double t0 = now();
        for (uint64_t i = 0; i < n; i++)
            if (meta(m, path, i))
                return 1;
        secs = now() - t0;
    }
    if (secs <= 0)
        secs = 1e-9;
    printf("mode=%s bytes=%llu ops=%llu secs=%.6f mibps=%.2f opsps=%.0f\n", mode,
           (unsigned long long)bytes, (unsigned long long)n, secs,
           (double)bytes / 1048576.0 / secs, (double)n / secs);
    return 0;
}
