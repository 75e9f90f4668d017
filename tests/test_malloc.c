/* The malloc API's contracts, as glibc users expect them. */
#include <sys/resource.h>

#include "helpers.h"
#include "large.h"
#include "size_class.h"

#define MiB (1024UL * 1024)

static void check_at_end(void) { cr_assert_eq(bm_check(2), 0, "heap checker"); }

TestSuite(malloc, .fini = check_at_end);

Test(malloc, every_result_16_byte_aligned_and_usable)
{
    static void *p[70000];
    int n = 0;
    for (size_t s = 0; s <= 70000; s += (s < 2048 ? 1 : 97)) {
        void *q = bm_malloc(s);
        cr_assert_not_null(q, "size %zu", s);
        size_t align = s <= 8 ? 8 : 16;
        cr_assert_eq((uintptr_t)q % align, 0, "size %zu at %p", s, q);
        size_t u = bm_malloc_usable_size(q);
        cr_assert_geq(u, s, "usable %zu < %zu", u, s);
        if (s > 128 && s <= BM_SLAB_MAX)
            cr_assert_leq(u * 4, s * 5, "size %zu: usable %zu above the class bound (25%%)", s, u);
        if (s > BM_SLAB_MAX)
            cr_assert_lt(u - s, 4096, "size %zu: usable %zu, a run rounds to pages", s, u);
        memset(q, 0xa5, u);                 /* every usable byte is usable */
        p[n++] = q;
    }
    for (int i = 0; i < n; i++)
        bm_free(p[i]);
}

Test(malloc, class_table_and_exact_division)
{
    /* the byte table and the formula agree, and the multiply that finds a
     * block's index is exact for every offset of every slab */
    bm_ensure_init();
    for (size_t s = 1; s <= BM_SLAB_MAX; s++) {
        unsigned c = bm_size_to_class(s);
        cr_assert_geq(bm_classes[c].size, s);
        if (c)
            cr_assert_lt(bm_classes[c - 1].size, s);
    }
    for (unsigned c = 0; c < BM_NR_CLASSES; c++) {
        const struct bm_class *k = &bm_classes[c];
        uint64_t bytes = BM_PAGE_SIZE << k->order;
        for (uint64_t off = 0; off < bytes; off++) {
            uint64_t idx = (off * k->magic) >> 32;
            cr_assert_eq(idx, off / k->size, "class %u offset %llu", k->size,
                         (unsigned long long)off);
        }
    }
}

Test(malloc, zero_size_is_unique_and_freeable)
{
    void *a = bm_malloc(0), *b = bm_malloc(0);
    cr_assert_not_null(a);
    cr_assert_not_null(b);
    cr_assert_neq(a, b);
    bm_free(a);
    bm_free(b);
    bm_free(NULL);
    bm_free_sized(NULL, 10);
    cr_assert_eq(bm_malloc_usable_size(NULL), 0);
}

Test(malloc, calloc_zeroes_and_checks_overflow)
{
    errno = 0;
    cr_assert_null(bm_calloc(SIZE_MAX / 2, 3));
    cr_assert_eq(errno, ENOMEM);
    errno = 0;
    cr_assert_null(bm_calloc((size_t)1 << 33, (size_t)1 << 33));
    cr_assert_eq(errno, ENOMEM);
    /* dirty memory first, then calloc of the same sizes must read zero */
    size_t sizes[] = { 1, 16, 100, 1000, 4096, 20000, 32768, 50000, 300000, 3 * MiB, 9 * MiB };
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        for (int round = 0; round < 3; round++) {
            unsigned char *d = bm_malloc(sizes[i]);
            memset(d, 0xff, sizes[i]);
            bm_free(d);
            unsigned char *z = bm_calloc(1, sizes[i]);
            cr_assert_not_null(z);
            for (size_t k = 0; k < sizes[i]; k++)
                if (z[k])
                    cr_assert_fail("calloc(%zu) byte %zu is %u", sizes[i], k, z[k]);
            memset(z, 0xee, sizes[i]);
            bm_free(z);
        }
    }
    cr_assert_not_null(bm_calloc(0, 5));
}

Test(malloc, calloc_skips_memset_on_fresh_pages)
{
    struct bm_zone_stats before, after;
    bm_zone_stats(0, &before);
    void *p = bm_calloc(1, 3 * MiB);
    bm_zone_stats(0, &after);
    cr_assert_gt(after.zeroed_allocs, before.zeroed_allocs, "a fresh run is known zero");
    bm_free(p);
}

static void fill(unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(seed + i * 7);
}

static void verify(const unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(seed + i * 7))
            cr_assert_fail("byte %zu of %zu lost", i, n);
}

Test(malloc, realloc_chains_keep_contents)
{
    /* grow from 1 byte to 12 MiB through every kind (slab, run, huge) and
     * back, checking the common prefix at every step */
    size_t n = 1;
    unsigned char *p = bm_malloc(n);
    fill(p, n, 3);
    while (n < 12 * MiB) {
        size_t m = n + n / 3 + 1;
        p = bm_realloc(p, m);
        cr_assert_not_null(p);
        verify(p, n, 3);
        fill(p, m, 3);
        n = m;
    }
    while (n > 1) {
        size_t m = n / 2;
        p = bm_realloc(p, m);
        cr_assert_not_null(p);
        verify(p, m, 3);
        n = m;
    }
    bm_free(p);
}

Test(malloc, realloc_zero_frees_and_null_mallocs)
{
    void *p = bm_realloc(NULL, 100);
    cr_assert_not_null(p);
    struct bm_malloc_stats ms;
    bm_malloc_stats(&ms);
    cr_assert_eq(ms.small_allocs - ms.small_frees, 1);
    errno = 0;
    cr_assert_null(bm_realloc(p, 0), "glibc: realloc(p, 0) frees and returns NULL");
    bm_malloc_stats(&ms);
    cr_assert_eq(ms.small_allocs - ms.small_frees, 0, "the block was freed");
}

Test(malloc, realloc_in_place)
{
    /* shrink in place within a class and for runs */
    char *s = bm_malloc(1000);
    cr_assert_eq(bm_realloc(s, 900), s);
    bm_free(s);
    char *r = bm_malloc(200000);
    cr_assert_eq(bm_realloc(r, 100000), r, "a run shrinks in place");
    cr_assert_eq(bm_malloc_usable_size(r), 102400);
    /* the pages freed behind it are free: it grows back in place */
    cr_assert_eq(bm_realloc(r, 200000), r, "a run grows over the free pages behind it");
    cr_assert_geq(bm_malloc_usable_size(r), 200000);
    bm_free(r);
    /* growth into the buddy: a 64 KiB run whose buddy is free */
    char *a = bm_malloc(60000);
    char *b = bm_realloc(a, 120000);
    cr_assert_eq(b, a, "grew into the free buddy");
    bm_free(b);
}

/* A buffer growing by small steps when the pages behind it are taken: a
 * move gives it a whole buddy block, so it moves at most once per doubling
 * (15 moves here before; in alloc-workloads realloc the freed runs churned
 * through 23,864 madvise calls and it took 1.43x jemalloc's time). */
Test(malloc, realloc_growth_moves_once_per_doubling)
{
    size_t n = 40000;
    char *buf = bm_malloc(n);
    memset(buf, 7, n);
    int moves = 0;
    void *blockers[300];
    int nb = 0;
    while (n < (1u << 20)) {
        blockers[nb++] = bm_malloc(40000);      /* likely right behind buf */
        size_t m = n + 4096;
        char *q = bm_realloc(buf, m);
        cr_assert_not_null(q);
        moves += q != buf;
        cr_assert_eq(q[n - 1], 7, "contents kept");
        memset(q + n, 7, m - n);
        cr_assert_geq(bm_malloc_usable_size(q), m);
        cr_assert_leq(bm_malloc_usable_size(q), 2 * m + BM_PAGE_SIZE, "slack at most the size");
        buf = q;
        n = m;
    }
    cr_assert_leq(moves, 8, "%d moves growing 40 KB to 1 MiB in 4 KiB steps", moves);
    bm_free(buf);
    while (nb)
        bm_free(blockers[--nb]);
}

Test(malloc, realloc_failure_keeps_the_block)
{
    char *p = bm_malloc(64);
    strcpy(p, "still here");
    errno = 0;
    cr_assert_null(bm_realloc(p, SIZE_MAX - 4096));
    cr_assert_eq(errno, ENOMEM);
    cr_assert_str_eq(p, "still here");
    cr_assert_null(bm_reallocarray(p, SIZE_MAX / 2, 4));
    cr_assert_eq(errno, ENOMEM);
    p = bm_reallocarray(p, 10, 100);
    cr_assert_str_eq(p, "still here");
    bm_free(p);
}

Test(malloc, aligned_allocation_every_power_of_two)
{
    for (unsigned shift = 0; shift <= 30; shift++) {
        size_t align = (size_t)1 << shift;
        size_t sizes[] = { 1, align / 2 + 1, align, 3 * align + 5 };
        for (size_t k = 0; k < 4; k++) {
            size_t size = sizes[k] > 64 * MiB ? 64 * MiB : sizes[k];
            void *a = bm_aligned_alloc(align, size);
            cr_assert_not_null(a, "aligned_alloc(%zu, %zu)", align, size);
            cr_assert_eq((uintptr_t)a % align, 0);
            cr_assert_geq(bm_malloc_usable_size(a), size);
            ((char *)a)[size - 1] = 1;
            bm_free(a);
            void *m = bm_memalign(align, size);
            cr_assert_eq((uintptr_t)m % align, 0);
            bm_free_sized(m, size);
            void *pm = NULL;
            if (align >= sizeof(void *)) {
                cr_assert_eq(bm_posix_memalign(&pm, align, size), 0);
                cr_assert_eq((uintptr_t)pm % align, 0);
                bm_free(pm);
            }
        }
    }
}

Test(malloc, bad_alignments_are_einval)
{
    void *p = (void *)0x1;
    cr_assert_eq(bm_posix_memalign(&p, 3, 10), EINVAL);
    cr_assert_eq(bm_posix_memalign(&p, 4, 10), EINVAL, "less than sizeof(void *)");
    cr_assert_eq(bm_posix_memalign(&p, 0, 10), EINVAL);
    cr_assert_eq(p, (void *)0x1, "untouched on error");
    errno = 0;
    cr_assert_null(bm_aligned_alloc(24, 10));
    cr_assert_eq(errno, EINVAL);
    errno = 0;
    cr_assert_null(bm_memalign(0, 10));
    cr_assert_eq(errno, EINVAL);
}

Test(malloc, valloc_and_pvalloc)
{
    void *v = bm_valloc(100);
    cr_assert_eq((uintptr_t)v % 4096, 0);
    void *pv = bm_pvalloc(5000);
    cr_assert_eq((uintptr_t)pv % 4096, 0);
    cr_assert_geq(bm_malloc_usable_size(pv), 8192);
    void *pz = bm_pvalloc(0);
    cr_assert_geq(bm_malloc_usable_size(pz), 4096);
    bm_free(v);
    bm_free(pv);
    bm_free(pz);
    errno = 0;
    cr_assert_null(bm_pvalloc(SIZE_MAX - 10));
    cr_assert_eq(errno, ENOMEM);
}

Test(malloc, huge_allocations)
{
    char *h = bm_malloc(40 * MiB);
    cr_assert_not_null(h);
    cr_assert_eq(bm_malloc_usable_size(h), 40 * MiB);
    h[0] = 1;
    h[40 * MiB - 1] = 2;
    h = bm_realloc(h, 80 * MiB);
    cr_assert_eq(h[0], 1);
    cr_assert_eq(h[40 * MiB - 1], 2);
    struct bm_malloc_stats ms;
    bm_malloc_stats(&ms);
    cr_assert_eq(ms.huge_live, 1);
    cr_assert_eq(ms.huge_bytes, 80 * MiB);
    h = bm_realloc(h, 1000);            /* back to a slab block */
    cr_assert_eq(h[0], 1);
    bm_malloc_stats(&ms);
    cr_assert_eq(ms.huge_live, 0);
    bm_free(h);
}

Test(malloc, exhaustion_is_enomem_never_abort)
{
    bm_test_options("max_regions=1");
    /* runs and slabs: the one region */
    static void *p[400];
    int n = 0;
    for (;;) {
        errno = 0;
        void *q = bm_malloc(3 * MiB);
        if (!q)
            break;
        cr_assert_lt(n, 400);
        p[n++] = q;
    }
    cr_assert_eq(errno, ENOMEM);
    assert_heap_ok();
    /* huge: the address space limit */
    struct rlimit old, lim;
    getrlimit(RLIMIT_AS, &old);
    lim = old;
    lim.rlim_cur = 8UL << 30;
    cr_assert_eq(setrlimit(RLIMIT_AS, &lim), 0);
    errno = 0;
    cr_assert_null(bm_malloc(16UL << 30));
    cr_assert_eq(errno, ENOMEM);
    errno = 0;
    cr_assert_null(bm_aligned_alloc(1UL << 30, 12UL << 30));
    cr_assert_eq(errno, ENOMEM);
    setrlimit(RLIMIT_AS, &old);
    while (n)
        bm_free(p[--n]);
    void *again = bm_malloc(3 * MiB);
    cr_assert_not_null(again);
    bm_free(again);
}

Test(malloc, free_preserves_errno)
{
    void *p[64];
    for (int i = 0; i < 64; i++)
        p[i] = bm_malloc(i < 32 ? 100 : 5 * MiB);
    errno = 12345;
    for (int i = 0; i < 64; i++)
        bm_free(p[i]);
    bm_trim(0);
    cr_assert_eq(errno, 12345);
}

Test(malloc, statistics_count_objects)
{
    struct bm_class_stats cs;
    void *p[100];
    unsigned cls = bm_size_to_class(48);
    for (int i = 0; i < 100; i++)
        p[i] = bm_malloc(48);
    cr_assert_eq(bm_class_stats((int)cls, &cs), 0);
    cr_assert_eq(cs.size, 48);
    cr_assert_eq(cs.active_objs, 100);
    cr_assert_geq(cs.total_objs, 100);
    cr_assert_geq(cs.slabs, 1);
    for (int i = 0; i < 100; i++)
        bm_free(p[i]);
    bm_class_stats((int)cls, &cs);
    cr_assert_eq(cs.active_objs, 0);
    cr_assert_eq(cs.allocs, 100);
    cr_assert_eq(cs.frees, 100);
    char buf[16384];
    bm_slabinfo(buf, sizeof buf);
    cr_assert(strstr(buf, "slabinfo - version: 2.1") != NULL);
    cr_assert(strstr(buf, "bm-48 ") != NULL, "%s", buf);
}

Test(malloc, trim_returns_empty_slabs)
{
    static void *p[20000];
    for (int i = 0; i < 20000; i++)
        p[i] = bm_malloc(200);
    struct bm_class_stats cs;
    int cls = (int)bm_size_to_class(200);
    bm_class_stats(cls, &cs);
    unsigned long slabs = cs.slabs;
    cr_assert_gt(slabs, 100);
    for (int i = 0; i < 20000; i++)
        bm_free(p[i]);
    bm_class_stats(cls, &cs);
    cr_assert_leq(cs.slabs, 1, "only the current slab stays (%lu)", cs.slabs);
    bm_trim(0);
    bm_class_stats(cls, &cs);
    cr_assert_eq(cs.slabs, 0);
}

/* The huge table follows the live entries: a process that makes and frees
 * huge blocks one at a time for ever keeps it at its smallest (a rehash
 * that only drops tombstones used to double it every time). */
Test(malloc, huge_table_size_follows_live_blocks)
{
    size_t big = (BM_PAGE_SIZE << (MAX_ORDER - 1)) + 1;
    for (int i = 0; i < 20000; i++) {
        void *p = bm_malloc(big);
        cr_assert_not_null(p);
        bm_free(p);
    }
    cr_assert_eq(bm_huge_table_slots(), 1024, "slots: %zu", bm_huge_table_slots());
    /* and grows with what is live: 1,000 at once; then no further */
    static void *live[1000];
    for (int i = 0; i < 1000; i++)
        cr_assert_not_null(live[i] = bm_malloc(big));
    cr_assert_geq(bm_huge_table_slots(), 4000);
    for (int i = 0; i < 1000; i++)
        bm_free(live[i]);
    for (int i = 0; i < 20000; i++)
        bm_free(bm_malloc(big));
    cr_assert_leq(bm_huge_table_slots(), 4096, "does not grow: %zu", bm_huge_table_slots());
    assert_heap_ok();
}
