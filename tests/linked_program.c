/*
 * A program that knows nothing of buddymalloc but is linked with
 * -lbuddymalloc (shared, and in a second build static): its malloc family
 * calls must be served by buddymalloc, as its statistics show. Plain C, no
 * Criterion: the runner itself must not be the one allocating.
 */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buddymalloc.h"
#include "plain_test.h"

extern void *__libc_malloc(size_t);
extern void __libc_free(void *);
extern void free_aligned_sized(void *, size_t, size_t);   /* C23 */

/* Before main: a constructor allocates, and so does a thread it starts. */
static char *early_block, *early_thread_block;
static void *early_worker(void *arg)
{
    (void)arg;
    early_thread_block = strdup("from a thread started in a constructor");
    return NULL;
}
__attribute__((constructor)) static void early(void)
{
    early_block = malloc(200);
    pthread_t t;
    pthread_create(&t, NULL, early_worker, NULL);
    pthread_join(t, NULL);
}

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
    CHECK(early_block && bm_malloc_usable_size(early_block) == 224, "malloc in a constructor");
    CHECK(early_thread_block && !strcmp(early_thread_block, "from a thread started in a constructor"),
          "malloc in a thread started by a constructor");
    free(early_block);
    free(early_thread_block);

    /* glibc's statistics and tuning calls answer from buddymalloc */
    char *held = malloc(100000);
    memset(held, 1, 100000);
    struct mallinfo2 mi = mallinfo2();
    CHECK(mi.uordblks >= 100000 && mi.arena >= mi.uordblks && mi.fordblks == mi.arena - mi.uordblks,
          "mallinfo2: in use %zu of arena %zu, free %zu", mi.uordblks, mi.arena, mi.fordblks);
    char *volatile h = malloc(8 << 20);   /* volatile: GCC drops an unused malloc+free */
    h[0] = 1;
    mi = mallinfo2();
    CHECK(mi.hblks == 1 && mi.hblkhd >= (8 << 20), "mallinfo2 counts the huge mapping (%zu, %zu)",
          mi.hblks, mi.hblkhd);
    free(h);
    free(held);
    char *xml = NULL;
    size_t xml_len = 0;
    FILE *mf = open_memstream(&xml, &xml_len);
    CHECK(malloc_info(0, mf) == 0, "malloc_info");
    fclose(mf);
    CHECK(xml && strstr(xml, "<malloc version=\"1\" allocator=\"buddymalloc") &&
          strstr(xml, "</malloc>\n") && strstr(xml, "<total type=\"small\""),
          "malloc_info writes the XML document");
    free(xml);
    CHECK(malloc_info(1, stdout) == -1 && errno == EINVAL, "malloc_info with options != 0: EINVAL");
    void *al = aligned_alloc(256, 1000);
    CHECK(al && ((uintptr_t)al & 255) == 0, "aligned_alloc(256, 1000)");
    free_aligned_sized(al, 256, 1000);
    void *lp = __libc_malloc(50);
    CHECK(lp && bm_malloc_usable_size(lp) == 64, "__libc_malloc is buddymalloc's");
    __libc_free(lp);

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
    CHECK(mallopt(M_TRIM_THRESHOLD, 1 << 20) == 1, "mallopt(M_TRIM_THRESHOLD) accepted");
    for (int i = 0; i < 8; i++) {
        big[i] = malloc(2 << 20);
        memset(big[i], 1, 2 << 20);
    }
    for (int i = 0; i < 8; i++)
        free(big[i]);
    struct bm_zone_stats zs;
    bm_zone_stats(0, &zs);
    CHECK(zs.dirty_pages <= 256, "with M_TRIM_THRESHOLD 1 MiB, %lu free pages wait for release",
          zs.dirty_pages);
    CHECK(mallopt(M_ARENA_MAX, 2) == 1, "mallopt(M_ARENA_MAX) accepted (no arenas here)");
    CHECK(mallopt(-12345, 1) == 0, "mallopt of an unknown parameter returns 0");
    CHECK(bm_check(2) == 0, "heap checker");
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
