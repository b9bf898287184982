/*
 * mmap-cat: write a file to stdout by reading it through a shared read-only
 * mapping (mmap, no read(2) of the file), for the cofs guest check: pages of
 * a virtio-fs file are then brought in by page faults, the FUSE page-cache
 * read path.
 *
 *   mmap-cat FILE            the whole file, mapped 4 MiB at a time
 *
 * Exit status 0 on success, 1 on an error (named on stderr), 2 on bad usage.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define WINDOW (4u << 20)

static int write_all(const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(1, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: mmap-cat FILE\n");
        return 2;
    }
    int fd = open(argv[1], O_RDONLY);
    if (fd < 0) {
        fprintf(stderr, "mmap-cat: open %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        fprintf(stderr, "mmap-cat: stat %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    off_t size = st.st_size;
    for (off_t off = 0; off < size; off += WINDOW) {
        size_t len = (size_t)(size - off < WINDOW ? size - off : WINDOW);
        void *m = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, off);
        if (m == MAP_FAILED) {
            fprintf(stderr, "mmap-cat: mmap %s at %lld: %s\n", argv[1], (long long)off,
                    strerror(errno));
            return 1;
        }
        if (write_all(m, len) != 0) {
            fprintf(stderr, "mmap-cat: write: %s\n", strerror(errno));
            return 1;
        }
        munmap(m, len);
    }
    close(fd);
    return 0;
}
