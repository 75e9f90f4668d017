/* Fault injection: every out-of-memory path of the allocator, walked by
 * making the kernel's mmap, mremap or madvise fail (bm_fault_inject, or the
 * options fail_mmap / fail_madvise). Each must return NULL with ENOMEM (or
 * keep the memory it could not give back), leave the heap consistent, and
 * let later calls succeed once the kernel agrees again. */
#include "helpers.h"

#define MiB (1024UL * 1024)
#define HUGE_SIZE (8 * MiB)         /* above the largest buddy block: own mmap */

static void check_at_end(void) { cr_assert_eq(bm_check(2), 0, "heap checker"); }
TestSuite(faults, .fini = check_at_end);

static void expect_enomem(void *p, const char *what)
{
    cr_assert_null(p, "%s succeeded while mmap failed", what);
    cr_assert_eq(errno, ENOMEM, "%s: errno %d, not ENOMEM", what, errno);
}

Test(faults, bad_call_name_is_refused)
{
    errno = 0;
    cr_assert_eq(bm_fault_inject("munmap", 1, 1), -1);
    cr_assert_eq(errno, EINVAL);
}

Test(faults, huge_allocations_fail_cleanly_then_succeed)
{
    bm_ensure_init();
    void *p;
    int rc;

    bm_fault_inject("mmap", 1, 1);
    errno = 0;
    expect_enomem(bm_malloc(HUGE_SIZE), "malloc");
    bm_fault_inject("mmap", 1, 1);
    expect_enomem(bm_calloc(1, HUGE_SIZE), "calloc");
    bm_fault_inject("mmap", 1, 1);
    expect_enomem(bm_aligned_alloc(1 * MiB, HUGE_SIZE), "aligned_alloc");
    bm_fault_inject("mmap", 1, 1);
    p = (void *)1;
    rc = bm_posix_memalign(&p, 2 * MiB, HUGE_SIZE);
    cr_assert_eq(rc, ENOMEM);
    cr_assert_eq(p, (void *)1, "posix_memalign wrote *out on failure");
    assert_heap_ok();

    p = bm_malloc(HUGE_SIZE);                   /* disarmed: works */
    cr_assert_not_null(p);
    memset(p, 0x11, HUGE_SIZE);
    bm_free(p);
    assert_heap_ok();
}

Test(faults, realloc_keeps_the_block_when_it_cannot_grow)
{
    bm_ensure_init();
    /* small -> huge: a new mapping */
    char *s = bm_malloc(100);
    memset(s, 0x22, 100);
    bm_fault_inject("mmap", 1, 1);
    errno = 0;
    expect_enomem(bm_realloc(s, HUGE_SIZE), "realloc to huge");
    for (int i = 0; i < 100; i++)
        cr_assert_eq((unsigned char)s[i], 0x22);
    /* huge -> larger huge: mremap */
    char *h = bm_malloc(HUGE_SIZE);
    cr_assert_not_null(h);
    memset(h, 0x33, HUGE_SIZE);
    bm_fault_inject("mmap", 1, 1);
    errno = 0;
    expect_enomem(bm_realloc(h, 4 * HUGE_SIZE), "realloc with mremap");
    cr_assert_eq((unsigned char)h[0], 0x33);
    cr_assert_eq((unsigned char)h[HUGE_SIZE - 1], 0x33);
    cr_assert_eq(bm_malloc_usable_size(h) >= HUGE_SIZE, 1);
    assert_heap_ok();
    char *g = bm_realloc(h, 4 * HUGE_SIZE);     /* disarmed */
    cr_assert_not_null(g);
    cr_assert_eq((unsigned char)g[HUGE_SIZE - 1], 0x33);
    bm_free(g);
    bm_free(s);
    assert_heap_ok();
}

/* The table of huge mappings grows (an mmap of its own) when half full:
 * with 1,024 slots, at the 512th live mapping. Fail each of the first mmap
 * calls of a series in turn: the series must have exactly one failure,
 * whichever call it hits, and the rest must be usable. */
Test(faults, huge_table_growth_fails_cleanly, .timeout = 120)
{
    enum { N = 600 };
    static char *p[N];
    bm_ensure_init();
    for (unsigned long nth = 510; nth <= 516; nth++) {
        bm_fault_inject("mmap", nth, 1);
        int failed = 0;
        for (int i = 0; i < N; i++) {
            errno = 0;
            p[i] = bm_malloc(HUGE_SIZE);
            if (!p[i]) {
                cr_assert_eq(errno, ENOMEM);
                failed++;
            } else {
                p[i][0] = (char)i;
            }
        }
        cr_assert_eq(failed, 1, "call %lu: %d failures", nth, failed);
        assert_heap_ok();
        for (int i = 0; i < N; i++) {
            if (p[i])
                cr_assert_eq(p[i][0], (char)i);
            bm_free(p[i]);
        }
    }
    assert_heap_ok();
}

/* A new region (1 GiB of address space) when the ones there are used up:
 * take max-order blocks (untouched: no memory) until a second region has
 * come, then with every mmap failing go on until the second is used up too.
 * Then whatever layer asks for more gets NULL with ENOMEM. */
Test(faults, a_region_that_cannot_be_had, .timeout = 120)
{
    enum { N = 2048 };
    static void *b[N];
    bm_ensure_init();
    unsigned long regions = zone0().regions;
    int n = 0;
    while (n < N && zone0().regions == regions) {
        b[n] = bm_alloc_pages(MAX_ORDER - 1, 0);
        cr_assert_not_null(b[n]);
        n++;
    }
    cr_assert_eq(zone0().regions, regions + 1);
    bm_fault_inject("mmap", 1, 1000000);
    errno = 0;
    while (n < N && (b[n] = bm_alloc_pages(MAX_ORDER - 1, 0)))
        n++;
    cr_assert_lt(n, N, "allocations kept succeeding with every mmap failing");
    cr_assert_eq(errno, ENOMEM);
    cr_assert_eq(zone0().regions, regions + 1);
    /* the slab layer: a class nothing used yet needs a new slab */
    errno = 0;
    void *s = bm_malloc(3000);
    if (!s)
        cr_assert_eq(errno, ENOMEM);
    /* and a run of pages */
    errno = 0;
    expect_enomem(bm_malloc(3 * MiB), "malloc of a run");
    assert_heap_ok();
    bm_fault_inject("mmap", 0, 0);              /* memory is back */
    void *again = bm_alloc_pages(MAX_ORDER - 1, 0);
    cr_assert_not_null(again);
    cr_assert_eq(zone0().regions, regions + 2);
    void *t = bm_malloc(3000);
    cr_assert_not_null(t);
    void *r = bm_malloc(3 * MiB);
    cr_assert_not_null(r);
    bm_free(r);
    bm_free(t);
    bm_free(s);
    bm_free_pages(again, MAX_ORDER - 1);
    for (int i = 0; i < n; i++)
        bm_free_pages(b[i], MAX_ORDER - 1);
    assert_heap_ok();
}

/* madvise refused: the memory stays resident and free, in the books too,
 * and goes back once madvise works again. */
Test(faults, madvise_failure_keeps_the_memory)
{
    bm_test_options("release_threshold=4G,release_delay_ms=1000000");
    bm_ensure_init();
    enum { N = 16 };
    void *b[N];
    for (int i = 0; i < N; i++) {
        b[i] = bm_alloc_pages(MAX_ORDER - 1, 0);
        memset(b[i], 0x44, BM_PAGE_SIZE << (MAX_ORDER - 1));
    }
    for (int i = 0; i < N; i++)
        bm_free_pages(b[i], MAX_ORDER - 1);
    struct bm_zone_stats before = zone0();
    cr_assert_gt(before.dirty_pages, 0);
    bm_fault_inject("madvise", 1, 1000000);
    bm_trim(0);
    struct bm_zone_stats during = zone0();
    cr_assert_eq(during.released_pages, before.released_pages, "released while madvise failed");
    cr_assert_eq(during.dirty_pages, before.dirty_pages);
    assert_heap_ok();
    bm_fault_inject("madvise", 0, 0);
    bm_trim(0);
    struct bm_zone_stats after = zone0();
    cr_assert_geq(after.released_pages - before.released_pages, before.dirty_pages);
    cr_assert_eq(after.dirty_pages, 0);
    assert_heap_ok();
}

/* From start-up, by option: the first region (mmap 1, at start-up) and
 * the retry the first malloc makes (mmap 2) fail. malloc returns NULL with
 * ENOMEM, and works at the next try, with pagesets: they come with a
 * zone's first region, whenever it is made. */
Test(faults, the_first_region_fails_by_option)
{
    bm_test_options("fail_mmap=1,fail_mmap_count=2");
    errno = 0;
    void *p = bm_malloc(100);
    expect_enomem(p, "the first malloc");
    p = bm_malloc(100);
    cr_assert_not_null(p, "the second malloc (errno %d)", errno);
    memset(p, 1, 100);
    bm_free(p);
    void *q = bm_alloc_pages(3, 0);
    cr_assert_not_null(q);
    bm_free_pages(q, 3);
    /* the zone's first region, made late, brought its pagesets with it */
    cr_assert_not_null(bm_g.zones[0].pcp, "no pagesets after a failed first region");
    assert_heap_ok();
}

Test(faults, bad_fault_option_is_named_and_ignored)
{
    bm_test_options("fail_mmap=lots");
    void *p = bm_malloc(100);
    cr_assert_not_null(p);
    bm_free(p);
}
