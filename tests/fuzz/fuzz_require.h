/*
 * fuzz_require.h: REQUIRE(cond), the fuzz targets' invariant check: a
 * failed invariant prints where and aborts, which libFuzzer reports as a
 * crash with the input that caused it.
 */
#ifndef MERIDIAN_FUZZ_REQUIRE_H
#define MERIDIAN_FUZZ_REQUIRE_H

#include <stdio.h>
#include <stdlib.h>

#define REQUIRE(c)                                                                                             \
    do {                                                                                                       \
        if (!(c)) {                                                                                            \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #c);                        \
            abort();                                                                                           \
        }                                                                                                      \
    } while (0)

#endif
