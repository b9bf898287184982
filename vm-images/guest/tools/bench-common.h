/*
 * bench-common.h: what the guest's measuring tools (cobd-bench, fs-bench)
 * share. Include it after defining BENCH_NAME, the tool's name in messages.
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* Seconds on CLOCK_MONOTONIC. */
static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A decimal count in 1..max into *out; -1 with a message otherwise. */
static int parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || v == 0 || v > max) {
        fprintf(stderr, BENCH_NAME ": bad number '%s' (1..%llu)\n", s, (unsigned long long)max);
        return -1;
    }
    *out = v;
    return 0;
}

#endif
