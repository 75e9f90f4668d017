/* Return to the OS: resident memory falls after a large free and comes back
 * on reuse; by trim, by threshold, by delay; never for partial pageblocks. */
#include "helpers.h"

#define MiB (1024UL * 1024)
#define BIG_BLOCKS 64          /* of MAX_ORDER-1: 256 MiB with 4 MiB blocks */

static void *big[BIG_BLOCKS];

static size_t block_bytes(void) { return BM_PAGE_SIZE << (MAX_ORDER - 1); }

static void alloc_and_touch(void)
{
    for (int i = 0; i < BIG_BLOCKS; i++) {
        big[i] = bm_alloc_pages(MAX_ORDER - 1, 0);
        cr_assert_not_null(big[i]);
        memset(big[i], 0x5a, block_bytes());
    }
}

static void free_all(void)
{
    for (int i = 0; i < BIG_BLOCKS; i++)
        bm_free_pages(big[i], MAX_ORDER - 1);
}

static size_t total(void) { return BIG_BLOCKS * block_bytes(); }

/* What of the blocks is resident (mincore): the test of what buddymalloc
 * gave back, independent of what else the process holds. */
static size_t big_resident(void)
{
    size_t r = 0;
    for (int i = 0; i < BIG_BLOCKS; i++)
        r += resident_bytes(big[i], block_bytes());
    return r;
}

static void keep_until_trim(void)
{
    bm_test_options("release_threshold=4G,release_delay_ms=1000000");
}

Test(release, trim_returns_memory_and_reuse_brings_it_back, .init = keep_until_trim)
{
    bm_ensure_init();
    alloc_and_touch();
    cr_assert_geq(big_resident(), total() * 9 / 10, "touched memory is resident");
    free_all();
    cr_assert_geq(big_resident(), total() * 9 / 10, "kept until trim");
    struct bm_zone_stats s = zone0();
    cr_assert_geq(s.dirty_pages, total() / BM_PAGE_SIZE);
    cr_assert_eq(bm_trim(0), 1);
    cr_assert_eq(big_resident(), 0, "every page given back: %zu KiB stay",
                 big_resident() >> 10);
    s = zone0();
    cr_assert_eq(s.dirty_pages, 0);
    cr_assert_geq(s.released_pages, total() / BM_PAGE_SIZE);
    cr_assert_geq(s.returned_pages, total() / BM_PAGE_SIZE);
    assert_heap_ok();

    /* Reuse: the blocks come back zeroed (MADV_DONTNEED) and resident once
     * written. (Whether a read alone makes a page resident is the kernel's
     * business: the zero page, or not.) */
    for (int i = 0; i < BIG_BLOCKS; i++) {
        big[i] = bm_alloc_pages(MAX_ORDER - 1, 0);
        const unsigned char *c = big[i];
        for (size_t k = 0; k < block_bytes(); k += 4096)
            cr_assert_eq(c[k], 0, "returned memory reads as zero");
    }
    for (int i = 0; i < BIG_BLOCKS; i++)
        memset(big[i], 1, block_bytes());
    cr_assert_geq(big_resident(), total() * 9 / 10);
    cr_assert_lt(zone0().returned_pages + total() / BM_PAGE_SIZE, zone0().managed_pages + 1);
    free_all();
    assert_heap_ok();
}

Test(release, threshold_releases_at_once)
{
    bm_test_options("release_threshold=32M,release_peak=no,release_delay_ms=1000000");
    bm_ensure_init();
    alloc_and_touch();
    free_all();
    size_t after = big_resident();
    cr_assert_leq(after, 40 * MiB, "released down to half the threshold: %zu MiB kept",
                  after / MiB);
    struct bm_zone_stats s = zone0();
    cr_assert_leq(s.dirty_pages, (32 * MiB) / BM_PAGE_SIZE);
    assert_heap_ok();
}

/* A burst of frees keeps its memory for the delay: free memory that only
 * fills the drop from the zone's recent in-use peak is not released by the
 * threshold. With release_peak=no the threshold alone applies
 * (threshold_releases_at_once, above). */
Test(release, peak_keeps_a_burst_of_frees)
{
    bm_test_options("release_threshold=8M,release_delay_ms=1000000");
    bm_ensure_init();
    alloc_and_touch();
    free_all();
    cr_assert_geq(big_resident(), total() * 9 / 10, "the freed blocks stay resident: %zu MiB",
                  big_resident() / MiB);
    struct bm_zone_stats s = zone0();
    cr_assert_geq(s.dirty_pages, total() / BM_PAGE_SIZE);
    cr_assert_eq(s.release_calls, 0);
    /* reused without a fault: the same pages come back */
    alloc_and_touch();
    cr_assert_eq(zone0().release_calls, 0);
    free_all();
    cr_assert_eq(bm_trim(0), 1);
    cr_assert_eq(big_resident(), 0);
    assert_heap_ok();
}

/* The hold covers the drop from the peak only: when the heap grows past it
 * while free memory waits (here 16 KiB holes that 4 MiB blocks cannot use),
 * the threshold releases the waiting memory as before, down to half the
 * threshold plus the eighth of the pages in use that the hold keeps. */
Test(release, growth_past_the_peak_releases_what_waits)
{
    bm_test_options("release_threshold=8M,release_delay_ms=1000000");
    bm_ensure_init();
    enum { SMALL = 8192 };                  /* 128 MiB of 16 KiB blocks */
    static void *small[SMALL];
    for (int i = 0; i < SMALL; i++) {
        small[i] = bm_alloc_pages(2, 0);
        cr_assert_not_null(small[i]);
        memset(small[i], 1, 16384);
    }
    for (int i = 0; i < SMALL; i += 2)      /* 64 MiB of holes, no merging */
        bm_free_pages(small[i], 2);
    bm_drain_pagesets();
    struct bm_zone_stats s = zone0();
    cr_assert_geq(s.dirty_pages, (60 * MiB) / BM_PAGE_SIZE, "the burst waits: %lu pages",
                  s.dirty_pages);
    unsigned long calls = s.release_calls;
    alloc_and_touch();                      /* 256 MiB more: growth */
    void *one = bm_alloc_pages(0, 0);
    bm_free_pages(one, 0);                  /* a free: the check runs */
    bm_drain_pagesets();
    s = zone0();
    cr_assert_gt(s.release_calls, calls, "the waiting holes went back");
    /* in use: 64 MiB of small blocks and 256 MiB of big ones */
    cr_assert_leq(s.dirty_pages, ((4 + 320 / 8 + 2) * MiB) / BM_PAGE_SIZE,
                  "%lu pages still wait", s.dirty_pages);
    free_all();
    for (int i = 1; i < SMALL; i += 2)
        bm_free_pages(small[i], 2);
    assert_heap_ok();
}

Test(release, delay_releases_old_free_memory)
{
    bm_test_options("release_threshold=4G,release_delay_ms=50");
    bm_ensure_init();
    alloc_and_touch();
    free_all();
    /* the last frees may already have found the first ones old enough */
    usleep(150 * 1000);
    /* any free through the zone looks at the dirty list */
    void *p = bm_alloc_pages(MAX_ORDER - 1, BM_GFP_NOPCP);
    bm_free_pages(p, MAX_ORDER - 1);
    size_t after = big_resident();
    cr_assert_leq(after, 16 * MiB, "old free memory released: %zu MiB kept", after / MiB);
    assert_heap_ok();
}

Test(release, none_keeps_everything)
{
    bm_test_options("release=none,release_threshold=0");
    bm_ensure_init();
    alloc_and_touch();
    free_all();
    cr_assert_eq(bm_trim(0), 0);
    cr_assert_geq(big_resident(), total() * 9 / 10);
    cr_assert_eq(zone0().released_pages, 0);
    assert_heap_ok();
}

Test(release, madv_free_mode)
{
    bm_test_options("release=free,release_threshold=4G,release_delay_ms=1000000");
    alloc_and_touch();
    free_all();
    cr_assert_eq(bm_trim(0), 1);
    cr_assert_geq(zone0().released_pages, total() / BM_PAGE_SIZE);
    alloc_and_touch();              /* reusable; content is unspecified */
    free_all();
    assert_heap_ok();
}

/* Fill three pageblocks with pages and free all but one: everything around
 * that page goes back (holes are fine: regions are not backed by huge
 * pages), and the page keeps its contents. */
Test(release, a_pinned_pageblock_pins_only_its_page, .init = keep_until_trim)
{
    enum { N = 1 << 13 };
    static void *pages[N];
    unsigned long n = pageblock_nr_pages * 3;
    bm_ensure_init();
    for (unsigned long i = 0; i < n; i++) {
        pages[i] = bm_alloc_pages(0, BM_GFP_NOPCP);
        memset(pages[i], 1, BM_PAGE_SIZE);
    }
    size_t res = 0;
    for (unsigned long i = 0; i < n; i++)
        res += resident_bytes(pages[i], BM_PAGE_SIZE);
    cr_assert_eq(res, n * BM_PAGE_SIZE);
    void *kept = pages[n / 2 + 7];
    for (unsigned long i = 0; i < n; i++)
        if (pages[i] != kept)
            bm_free_pages(pages[i], 0);
    cr_assert_eq(bm_trim(0), 1);
    /* what stays: the kept page and the holes next to it below
     * release_min_order (its buddies of the orders below) */
    res = 0;
    for (unsigned long i = 0; i < n; i++)
        res += resident_bytes(pages[i], BM_PAGE_SIZE);
    cr_assert_leq(res, BM_PAGE_SIZE << bm_g.opt.release_min_order, "%zu KiB stay", res >> 10);
    cr_assert_eq(resident_bytes(kept, BM_PAGE_SIZE), BM_PAGE_SIZE);
    cr_assert_eq(*(char *)kept, 1);
    bm_free_pages(kept, 0);
    assert_heap_ok();
}

/* Holes below release_min_order are never returned: one page in use out
 * of every two leaves free blocks of one page. */
Test(release, small_holes_stay, .init = keep_until_trim)
{
    enum { N = 1 << 12 };
    static void *pages[N];
    bm_ensure_init();
    for (unsigned long i = 0; i < N; i++) {
        pages[i] = bm_alloc_pages(0, BM_GFP_NOPCP);
        memset(pages[i], 1, BM_PAGE_SIZE);
    }
    size_t before = 0, after = 0;
    for (unsigned long i = 0; i < N; i++)
        if (((uintptr_t)pages[i] >> BM_PAGE_SHIFT) % 2 != 0)
            bm_free_pages(pages[i], 0);
    for (unsigned long i = 0; i < N; i++)
        before += resident_bytes(pages[i], BM_PAGE_SIZE);
    struct bm_zone_stats s0 = zone0();
    bm_trim(0);
    struct bm_zone_stats s1 = zone0();
    cr_assert_eq(s1.released_pages, s0.released_pages, "no block of 16 KiB or more was free");
    for (unsigned long i = 0; i < N; i++)
        after += resident_bytes(pages[i], BM_PAGE_SIZE);
    cr_assert_eq(after, before, "the holes stay resident");
    assert_heap_ok();
}

/* Free memory released past the threshold and wanted again at once (a
 * working set cycling around the threshold) doubles the threshold; with
 * release_threshold_max at the threshold it stays put and every cycle pays
 * the madvise calls and the page faults again. */
static struct bm_zone_stats churn(int cycles)
{
    enum { N = 8 };                 /* 8 blocks of 4 MiB: 32 MiB per cycle */
    void *b[N];
    for (int k = 0; k < cycles; k++) {
        for (int i = 0; i < N; i++) {
            b[i] = bm_alloc_pages(MAX_ORDER - 1, 0);
            cr_assert_not_null(b[i]);
            memset(b[i], 0x5a, block_bytes());
        }
        for (int i = 0; i < N; i++)
            bm_free_pages(b[i], MAX_ORDER - 1);
    }
    return zone0();
}

Test(release, reuse_of_released_memory_raises_the_threshold)
{
    bm_test_options("release_threshold=8M,release_peak=no,release_delay_ms=1000000");
    bm_ensure_init();
    struct bm_zone_stats s = churn(12);
    cr_assert_gt(s.threshold_raised, 0);
    cr_assert_geq(s.release_threshold_pages, 2 * (8 * MiB / BM_PAGE_SIZE),
                  "threshold now %lu pages", s.release_threshold_pages);
    cr_assert_gt(s.reused_pages, 0);
    /* once raised past the cycle's 32 MiB, nothing more is released */
    struct bm_zone_stats t = churn(4);
    cr_assert_eq(t.release_calls, s.release_calls, "%lu more madvise calls",
                 (unsigned long)(t.release_calls - s.release_calls));
    assert_heap_ok();
}

Test(release, threshold_max_keeps_the_threshold_fixed)
{
    bm_test_options("release_threshold=8M,release_threshold_max=8M,release_peak=no,"
                    "release_delay_ms=1000000");
    bm_ensure_init();
    struct bm_zone_stats s = churn(12);
    cr_assert_eq(s.threshold_raised, 0);
    cr_assert_eq(s.release_threshold_pages, 8 * MiB / BM_PAGE_SIZE);
    struct bm_zone_stats t = churn(4);
    cr_assert_geq(t.release_calls, s.release_calls + 4, "every cycle releases again");
    assert_heap_ok();
}
