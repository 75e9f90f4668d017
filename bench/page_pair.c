/*
 * page_pair.c - N alloc+free pairs of one block, for instruction counting.
 *
 * The measured loop is bench_pairs(), kept out of line under that exact
 * name so that `valgrind --tool=callgrind --toggle-collect=bench_pairs`
 * counts it and everything it calls, and nothing else (bench/callgrind-pages.sh).
 * A warm-up of WARMUP pairs runs first, in another function, so that
 * bootstrap and the first pageset refill are not in the count.
 *
 * Usage: page-pair [N [ORDER]] [nopcp]
 *   N      pairs in bench_pairs (default 200000)
 *   ORDER  block order (default 0)
 *   nopcp  pass BM_GFP_NOPCP: bypass the per-CPU pagesets
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buddymalloc.h"

#define WARMUP 1000

static __attribute__((noinline, cold)) void die_nomem(unsigned order)
{
    fprintf(stderr, "page-pair: allocation of order %u failed: %s\n", order, strerror(errno));
    exit(1);
}

/* One pair: allocate, write a byte (the memory is used), free. */
static inline __attribute__((always_inline)) void one_pair(unsigned order, unsigned gfp,
                                                           unsigned long i)
{
    void *p = bm_alloc_pages(order, gfp);
    if (__builtin_expect(!p, 0))
        die_nomem(order);
    *(volatile unsigned char *)p = (unsigned char)i;
    bm_free_pages(p, order);
}

static __attribute__((noinline, noclone)) void warm_up(unsigned long n, unsigned order,
                                                       unsigned gfp)
{
    for (unsigned long i = 0; i < n; i++)
        one_pair(order, gfp, i);
}

/* The function callgrind is pointed at: no clone, no inlining, one name. */
__attribute__((noinline, noclone, used)) void bench_pairs(unsigned long n, unsigned order,
                                                           unsigned gfp);
__attribute__((noinline, noclone, used)) void bench_pairs(unsigned long n, unsigned order,
                                                           unsigned gfp)
{
    for (unsigned long i = 0; i < n; i++)
        one_pair(order, gfp, i);
}

static int parse_ulong(const char *s, unsigned long *out)
{
    char *end;
    if (!*s || *s == '-')
        return -1;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    unsigned long n = 200000, order = 0, v;
    unsigned gfp = BM_GFP_AUTO;
    int numbers = 0;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "nopcp")) {
            gfp |= BM_GFP_NOPCP;
        } else if (!strcmp(argv[i], "pcp")) {
            gfp &= ~(unsigned)BM_GFP_NOPCP;
        } else if (numbers < 2 && parse_ulong(argv[i], &v) == 0) {
            if (numbers++ == 0)
                n = v;
            else
                order = v;
        } else {
            fprintf(stderr, "usage: page-pair [N [ORDER]] [nopcp]\n");
            return 2;
        }
    }
    if (order >= (unsigned long)bm_max_order()) {
        fprintf(stderr, "page-pair: order %lu out of range (max order %d)\n", order,
                bm_max_order() - 1);
        return 2;
    }

    warm_up(WARMUP, (unsigned)order, gfp);
    bench_pairs(n, (unsigned)order, gfp);
    printf("page-pair: %lu pairs of order %lu (%s), after %d warm-up pairs\n", n, order,
           gfp & BM_GFP_NOPCP ? "nopcp" : "pagesets", WARMUP);
    return 0;
}
