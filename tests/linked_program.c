/*
 * A program that knows nothing of buddymalloc but is linked with
 * -lbuddymalloc (shared, and in a second build static): its malloc family
 * calls must be served by buddymalloc, as its statistics show. Plain C, no
 * Criterion: the runner itself must not be the one allocating.
 */
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buddymalloc.h"
#include "plain_test.h"

static void *worker(void *arg)
{
    char **v = arg;
    for (int i = 0; i < 1000; i++) {
        v[i] = malloc(32 + (size_t)i);
        snprintf(v[i], 32, "block %d", i);
    }
    return NULL;
}

int main(void)
{
    struct bm_malloc_stats before, after;
    bm_malloc_stats(&before);

    enum { N = 5000 };
    static char *p[N];
    for (int i = 0; i < N; i++)
        p[i] = malloc(100);
    bm_malloc_stats(&after);
    CHECK(after.small_allocs - before.small_allocs >= N,
          "%d mallocs counted as %llu", N,
          (unsigned long long)(after.small_allocs - before.small_allocs));
    CHECK(malloc_usable_size(p[0]) == 112, "usable size of malloc(100) is %zu (class 112)",
          malloc_usable_size(p[0]));
    for (int i = 0; i < N; i++)
        free(p[i]);

    void *c = calloc(1000, 10);
    CHECK(c && ((char *)c)[9999] == 0, "calloc");
    c = realloc(c, 1 << 20);
    CHECK(c != NULL, "realloc");
    free(c);
    void *a = NULL;
    CHECK(posix_memalign(&a, 1 << 16, 10) == 0 && ((uintptr_t)a & 0xffff) == 0, "posix_memalign");
    free(a);
    a = aligned_alloc(4096, 4096);
    CHECK(a && ((uintptr_t)a & 4095) == 0, "aligned_alloc");
    free(a);
    a = memalign(64, 10);
    CHECK(a && ((uintptr_t)a & 63) == 0, "memalign");
    free(a);
    free(valloc(10));
    free(pvalloc(10));

    /* libc's own allocations come to us too: strdup, a thread's stack
     * bookkeeping, stdio buffers */
    bm_malloc_stats(&before);
    char *d = strdup("hello, buddymalloc");
    bm_malloc_stats(&after);
    CHECK(after.small_allocs == before.small_allocs + 1, "strdup is served");
    free(d);

    static char *v[1000];
    pthread_t t;
    pthread_create(&t, NULL, worker, v);
    pthread_join(t, NULL);
    for (int i = 0; i < 1000; i++) {
        char expect[32];
        snprintf(expect, sizeof expect, "block %d", i);
        if (strcmp(v[i], expect) != 0) {
            CHECK(0, "block %d of the thread lost", i);
            break;
        }
        free(v[i]);
    }
    /* malloc_trim: 1 when memory went back to the OS */
    static char *big[32];
    for (int i = 0; i < 32; i++) {
        big[i] = malloc(3 << 20);
        memset(big[i], 1, 3 << 20);
    }
    for (int i = 0; i < 32; i++)
        free(big[i]);
    CHECK(malloc_trim(0) == 1, "malloc_trim after freeing 96 MiB returns 1");
    CHECK(malloc_trim(0) == 0, "nothing left to trim");
    CHECK(bm_check(2) == 0, "heap checker");
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
