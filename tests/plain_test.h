/*
 * plain_test.h - CHECK for the test programs that cannot use Criterion
 * (its runner must not be what allocates): counts, reports a failure with
 * its line, and the program ends with "N passed, M failed".
 */
#ifndef BM_PLAIN_TEST_H
#define BM_PLAIN_TEST_H

#include <stdio.h>

static int passed, failed;
#define CHECK(c, ...)                                                          \
    do {                                                                       \
        if (c) {                                                               \
            passed++;                                                          \
        } else {                                                               \
            failed++;                                                          \
            fprintf(stderr, "FAIL line %d: ", __LINE__);                        \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
        }                                                                      \
    } while (0)

#endif
