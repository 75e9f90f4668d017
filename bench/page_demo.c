/*
 * page-demo - the main job until `buddymalloc run` lands: drives the page
 * allocator the way a program would (a long-lived population, churn of
 * short-lived blocks from two threads, a burst of large blocks freed again),
 * then the malloc layer (two threads building and tearing down a table of
 * strings, passing half of them to each other to free), and prints what the
 * allocator looks like at each step, in the kernel's formats. Ends with the
 * heap checker's verdict.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buddymalloc.h"

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void show(const char *title)
{
    char buf[8192];
    bm_buddyinfo(buf, sizeof buf);
    printf("\n## %s\n%s", title, buf);
    fflush(stdout);
}

#define KEEP 4096

struct worker { uint64_t seed; long ops; void *keep[KEEP]; unsigned order[KEEP]; };

/* Each thread keeps KEEP blocks alive and replaces one at random per step:
 * mostly single pages, some up to order 3 (the pagesets' range), a few
 * larger ones straight from the zone. */
static void *churn(void *arg)
{
    struct worker *w = arg;
    for (long i = 0; i < w->ops; i++) {
        unsigned k = (unsigned)(rnd(&w->seed) % KEEP);
        if (w->keep[k])
            bm_free_pages(w->keep[k], w->order[k]);
        uint64_t r = rnd(&w->seed);
        unsigned order = (r & 15) < 12 ? (unsigned)(r >> 4) % 4 : 4 + (unsigned)(r >> 4) % 3;
        w->keep[k] = bm_alloc_pages(order, BM_GFP_AUTO);
        if (!w->keep[k]) {
            perror("bm_alloc_pages");
            exit(1);
        }
        memset(w->keep[k], (int)i, 64);         /* touch it, as a program would */
        w->order[k] = order;
    }
    return NULL;
}

/* The malloc layer: a table of strings of many sizes, grown with realloc,
 * half of it freed by the other thread. */
#define STRINGS 50000
static char *strings[2][STRINGS];

static void *build_strings(void *arg)
{
    long t = (long)arg;
    uint64_t seed = 0x243f6a8885a308d3ull * (uint64_t)(t + 1);
    for (long i = 0; i < STRINGS; i++) {
        size_t n = 8 + rnd(&seed) % (i % 16 == 0 ? 4000 : 200);
        char *s = bm_malloc(n);
        memset(s, 'a' + (int)(i % 26), n - 1);
        s[n - 1] = '\0';
        if (i % 8 == 0) {
            s = bm_realloc(s, 2 * n);
            s[2 * n - 1] = '\0';
        }
        strings[t][i] = s;
    }
    return NULL;
}

static void *free_half(void *arg)
{
    long t = (long)arg;
    for (long i = 0; i < STRINGS; i++)
        if (i % 2 == t)                 /* one half of each thread's strings */
            for (int k = 0; k < 2; k++) {
                bm_free(strings[k][i]);
                strings[k][i] = NULL;
            }
    return NULL;
}

int main(int argc, char **argv)
{
    long ops = argc > 1 ? atol(argv[1]) : 200000;
    static struct worker w[2];
    pthread_t t[2];

    printf("# buddymalloc page-demo: 2 threads x %ld block replacements\n", ops);
    show("buddyinfo at start (fresh memory counts as free blocks of the top order)");

    for (int i = 0; i < 2; i++) {
        w[i].seed = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1);
        w[i].ops = ops;
        pthread_create(&t[i], NULL, churn, &w[i]);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    show("buddyinfo with 2 x 4096 blocks live after the churn");

    /* A burst of 64 MiB in max-order blocks, touched, then freed. */
    int top = bm_max_order() - 1;
    enum { BURST = 16 };
    void *burst[BURST];
    for (int i = 0; i < BURST; i++) {
        burst[i] = bm_alloc_pages((unsigned)top, BM_GFP_LARGE);
        memset(burst[i], 1, (size_t)BM_PAGE_BYTES << top);
    }
    show("buddyinfo after a 64 MiB burst of max-order blocks");
    for (int i = 0; i < BURST; i++)
        bm_free_pages(burst[i], (unsigned)top);

    for (int i = 0; i < 2; i++)
        for (int k = 0; k < KEEP; k++)
            if (w[i].keep[k])
                bm_free_pages(w[i].keep[k], w[i].order[k]);
    show("buddyinfo after freeing everything (pagesets still hold pages)");
    int released = bm_trim(0);
    show(released ? "buddyinfo after bm_trim(0): pagesets drained, free memory returned to the OS"
                  : "buddyinfo after bm_trim(0): pagesets drained");

    for (long i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, build_strings, (void *)i);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    show("buddyinfo with 2 x 50000 strings from bm_malloc (slabs of many classes)");
    char slab[16384];
    bm_slabinfo(slab, sizeof slab);
    printf("\n## slabinfo with the strings live\n%.*s", (int)(strchr(slab, '\n') ?
           strstr(slab, "\n\n") - slab + 1 : 0), slab);
    for (long i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, free_half, (void *)i);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    bm_trim(0);
    show("buddyinfo after the strings were freed (half by the other thread) and bm_trim(0)");

    printf("\n## full statistics\n");
    fflush(stdout);
    bm_stats_fd(1);
    long problems = bm_check(2);
    printf("\nheap checker: %s (%ld problems)\n", problems ? "FAILED" : "consistent", problems);
    return problems != 0;
}
