/* The region limit: growth up to it, then a clean NULL with ENOMEM, a
 * consistent heap, and recovery once memory is freed. */
#include "helpers.h"

static void two_regions(void) { bm_test_options("max_regions=2"); }

Test(limit, grows_to_the_limit_then_enomem, .init = two_regions)
{
    static void *blocks[1024];
    int n = 0;
    bm_ensure_init();
    cr_assert_eq(zone0().regions, 1, "one region at start");
    for (;;) {
        errno = 0;
        void *p = bm_alloc_pages(MAX_ORDER - 1, BM_GFP_LARGE);
        if (!p) {
            cr_assert_eq(errno, ENOMEM);
            break;
        }
        cr_assert_lt(n, 1024);
        blocks[n++] = p;
    }
    struct bm_zone_stats s = zone0();
    cr_assert_eq(s.regions, 2, "grew to the limit");
    unsigned long per_region = (REGION_PAGES - REGION_FIRST_PAGE) / MAX_ORDER_NR_PAGES;
    /* every max-order block but the one holding the reserve and pagesets */
    cr_assert_eq((unsigned long)n, 2 * per_region - 1);
    cr_assert_gt(s.enomem, 0);
    assert_heap_ok();
    /* smaller requests still succeed from what is left */
    void *small = bm_alloc_pages(0, 0);
    cr_assert_not_null(small);
    bm_free_pages(small, 0);
    /* free one, and the same request succeeds again */
    bm_free_pages(blocks[--n], MAX_ORDER - 1);
    void *again = bm_alloc_pages(MAX_ORDER - 1, BM_GFP_LARGE);
    cr_assert_not_null(again);
    blocks[n++] = again;
    while (n)
        bm_free_pages(blocks[--n], MAX_ORDER - 1);
    assert_heap_ok();
    cr_assert_eq(zone0().regions, 2);
}

Test(limit, exhaustion_costs_no_memory, .init = two_regions)
{
    /* Reserving regions costs address space only: the allocator touches no
     * page of a block it hands out. */
    size_t base = rss_bytes();
    int n = 0;
    while (bm_alloc_pages(MAX_ORDER - 1, BM_GFP_LARGE))
        n++;
    cr_assert_gt(n, 100);
    cr_assert_leq(rss_bytes(), base + 8u * 1024 * 1024, "%d blocks cost RSS", n);
    assert_heap_ok();
}
