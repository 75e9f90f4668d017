/*
 * Run with GLIBC_TUNABLES=glibc.pthread.rseq=0 (meson sets it): glibc then
 * registers no rseq area, and the current CPU must come from sched_getcpu().
 * Plain C (not Criterion): the tunable must be in the environment at exec.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "buddymalloc.h"
#include "internal.h"

static int failed, passed;
#define CHECK(c, msg)                                                          \
    do {                                                                       \
        if (c) passed++;                                                       \
        else { failed++; fprintf(stderr, "FAIL: %s\n", msg); }                  \
    } while (0)

static void *work(void *arg)
{
    (void)arg;
    for (int i = 0; i < 20000; i++) {
        void *p = bm_alloc_pages((unsigned)i % 4, 0);
        if (!p)
            abort();
        *(volatile int *)p = i;
        bm_free_pages(p, (unsigned)i % 4);
    }
    return NULL;
}

int main(void)
{
    bm_ensure_init();
    CHECK(!bm_g.rseq_ok, "rseq is off under the tunable");
    CHECK(bm_cpu() >= 0 && bm_cpu() < bm_g.nr_cpus, "sched_getcpu fallback gives a CPU");
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, work, NULL);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    struct bm_zone_stats s;
    bm_zone_stats(0, &s);
    CHECK(s.pcp_alloc_hit > 0, "pagesets used without rseq");
    CHECK(bm_check(2) == 0, "heap consistent");
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
