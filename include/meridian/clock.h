/*
 * clock.h: the monotonic clock, read where I/O code needs "now" (pure
 * modules get it passed in instead).
 */
#ifndef MERIDIAN_CLOCK_H
#define MERIDIAN_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t
mrd_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static inline uint64_t
mrd_now_ms(void)
{
    return mrd_now_us() / 1000u;
}

#endif
