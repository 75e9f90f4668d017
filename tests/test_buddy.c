/* Split and merge: the buddy system returns to its exact initial state. */
#include "helpers.h"

static char initial[4096];

static void snapshot_initial(void)
{
    bm_ensure_init();
    buddyinfo_now(initial, sizeof initial);
}

Test(buddy, split_chain_and_merge_back)
{
    snapshot_initial();
    struct bm_zone_stats before = zone0();
    /* One order-0 page from a whole free pageblock (LARGE has none of its
     * own yet) leaves one free block at every order below the pageblock. */
    void *p = bm_alloc_pages(0, BM_GFP_LARGE | BM_GFP_NOPCP);
    struct bm_zone_stats s = zone0();
    for (unsigned o = 0; o < pageblock_order; o++)
        cr_assert_eq(s.nr_free_type[MIGRATE_LARGE][o], 1, "order %u", o);
    cr_assert_eq(s.free_pages + 1, before.free_pages);
    bm_free_pages(p, 0);            /* to the pageset: drain it */
    bm_drain_pagesets();
    char now[4096];
    cr_assert_str_eq(buddyinfo_now(now, sizeof now), initial);
    cr_assert_eq(zone0().free_pages, before.free_pages);
    assert_heap_ok();
}

Test(buddy, smallest_fitting_order_is_taken)
{
    snapshot_initial();
    /* After the first LARGE page there is exactly one free LARGE block at
     * each order below the pageblock. An order-1 request takes the order-1
     * block; the next one must split the order-2 block. */
    char *a = bm_alloc_pages(0, BM_GFP_LARGE | BM_GFP_NOPCP);
    struct bm_zone_stats s0 = zone0();
    char *b = bm_alloc_pages(1, BM_GFP_LARGE | BM_GFP_NOPCP);
    struct bm_zone_stats s1 = zone0();
    cr_assert_eq(s1.nr_free_type[MIGRATE_LARGE][1], s0.nr_free_type[MIGRATE_LARGE][1] - 1);
    for (unsigned o = 2; o < MAX_ORDER; o++)
        cr_assert_eq(s1.nr_free_type[MIGRATE_LARGE][o], s0.nr_free_type[MIGRATE_LARGE][o]);
    char *c = bm_alloc_pages(1, BM_GFP_LARGE | BM_GFP_NOPCP);
    struct bm_zone_stats s2 = zone0();
    cr_assert_eq(s2.nr_free_type[MIGRATE_LARGE][2], s1.nr_free_type[MIGRATE_LARGE][2] - 1);
    cr_assert_eq(s2.nr_free_type[MIGRATE_LARGE][1], 1, "the other half of the split order-2 block");
    cr_assert_eq((uintptr_t)c % (BM_PAGE_SIZE << 2), 0, "low half of the order-2 block");
    bm_free_pages(c, 1);
    bm_free_pages(b, 1);
    bm_free_pages(a, 0);
    bm_drain_pagesets();
    char now[4096];
    cr_assert_str_eq(buddyinfo_now(now, sizeof now), initial);
    assert_heap_ok();
}

/* Random allocations and frees of every order, every type, with and without
 * the pagesets; then free everything: the zone must be exactly as before. */
static void random_sequence(uint64_t seed, int steps, unsigned max_order)
{
    enum { SLOTS = 512 };
    static void *ptr[SLOTS];
    static unsigned ord[SLOTS];
    struct buddy_snapshot snap;
    if (max_order > MAX_ORDER - 1)
        max_order = MAX_ORDER - 1;
    memset(ptr, 0, sizeof ptr);
    bm_ensure_init();
    buddy_snapshot_take(&snap);
    for (int i = 0; i < steps; i++) {
        unsigned k = (unsigned)(xorshift(&seed) % SLOTS);
        if (ptr[k]) {
            bm_free_pages(ptr[k], ord[k]);
            ptr[k] = NULL;
        } else {
            unsigned o = (unsigned)(xorshift(&seed) % (max_order + 1));
            unsigned gfp = (unsigned)(xorshift(&seed) % 4);
            if (xorshift(&seed) & 1)
                gfp |= BM_GFP_NOPCP;
            ptr[k] = bm_alloc_pages(o, gfp);
            cr_assert_not_null(ptr[k]);
            ord[k] = o;
            *(volatile char *)ptr[k] = 1;
        }
        if (i % 4096 == 0)
            assert_heap_ok();
    }
    assert_heap_ok();
    for (unsigned k = 0; k < SLOTS; k++)
        if (ptr[k])
            bm_free_pages(ptr[k], ord[k]);
    bm_drain_pagesets();
    assert_heap_ok();
    char what[64];
    snprintf(what, sizeof what, "seed %llu", (unsigned long long)seed);
    assert_buddy_back(&snap, what);
    struct bm_zone_stats s = zone0();
    cr_assert_eq(s.pcp_pages, 0);
    cr_assert_eq(s.free_pages + 1 /* the pagesets' own page */, s.managed_pages);
}

Test(buddy, random_small_orders_return_to_initial_state)
{
    random_sequence(0x9e3779b97f4a7c15ull, 60000, 3);
}

Test(buddy, random_all_orders_return_to_initial_state)
{
    random_sequence(12345, 20000, MAX_ORDER - 1);
}

Test(buddy, random_seeds_return_to_initial_state)
{
    for (uint64_t seed = 1; seed <= 5; seed++)
        random_sequence(seed * 7919, 8000, 6);
}

Test(buddy, merge_across_pageblock_types_retypes_buddy)
{
    /* Two order-9 halves of one max-order block, one LARGE and one PAGES:
     * freeing both merges them (neither is RESERVE) and the merged block has
     * one type throughout. */
    bm_ensure_init();
    void *big = bm_alloc_pages(MAX_ORDER - 1, BM_GFP_LARGE);
    bm_free_pages(big, MAX_ORDER - 1);
    assert_heap_ok();
    char *lo = bm_alloc_pages(MAX_ORDER - 2, BM_GFP_LARGE);
    char *hi = bm_alloc_pages(MAX_ORDER - 2, BM_GFP_LARGE);
    cr_assert_eq((uintptr_t)lo ^ (BM_PAGE_SIZE << (MAX_ORDER - 2)), (uintptr_t)hi);
    bm_set_pageblock_range(addr_to_page((uintptr_t)hi), MAX_ORDER - 2, MIGRATE_PAGES);
    bm_free_pages(hi, MAX_ORDER - 2);
    bm_free_pages(lo, MAX_ORDER - 2);
    assert_heap_ok();
    struct bm_page *head = addr_to_page((uintptr_t)(lo < hi ? lo : hi));
    cr_assert(head->flags & PG_buddy);
    cr_assert_eq(head->order, MAX_ORDER - 1, "halves merged into one max-order block");
}

Test(buddy, reserve_never_merges_with_its_buddy)
{
    bm_ensure_init();
    struct bm_zone_stats s = zone0();
    cr_assert_eq(s.pageblocks[MIGRATE_RESERVE], 1);
    cr_assert_eq(s.nr_free_type[MIGRATE_RESERVE][pageblock_order], 1);
    bm_drain_pagesets();
    assert_heap_ok();
}

Test(buddy, checker_catches_corruption)
{
    void *p = bm_alloc_pages(0, BM_GFP_NOPCP);
    cr_assert_eq(bm_check(-1), 0);
    struct bm_page *d = addr_to_page((uintptr_t)p);
    /* Pretend the allocated page is free without putting it on a list. */
    d->flags = PG_buddy;
    cr_assert_gt(bm_check(-1), 0, "a lost free block is detected");
    d->flags = PG_alloc;
    cr_assert_eq(bm_check(-1), 0);
    /* A wrong counter is detected too. */
    bm_g.zones[0].free_area[3].nr_free++;
    cr_assert_gt(bm_check(-1), 0);
    bm_g.zones[0].free_area[3].nr_free--;
    /* A free block put on the wrong migrate type's list. */
    char *q = bm_alloc_pages(2, BM_GFP_NOPCP | BM_GFP_LARGE);
    struct bm_page *qd = addr_to_page((uintptr_t)q);
    int mt = get_pageblock_mt(qd);
    bm_set_pageblock_range(qd, 0, mt == MIGRATE_PAGES ? MIGRATE_SLAB : MIGRATE_PAGES);
    bm_free_pages(q, 2);
    cr_assert_gt(bm_check(-1), 0, "a block on the wrong type's list is detected");
}
