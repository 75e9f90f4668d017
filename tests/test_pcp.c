/* Per-CPU pagesets: refill and drain at the watermarks, sizes, migration
 * between CPUs, contention, disabled pagesets. */
#include "helpers.h"

static void pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    cr_assert_eq(sched_setaffinity(0, sizeof set, &set), 0);
}

static void small_watermarks(void)
{
    bm_test_options("pcp_batch=4,pcp_high=16");
    pin(0);
}

Test(pcp, default_sizes_follow_the_kernel_rule)
{
    bm_ensure_init();
    struct bm_zone *z = &bm_g.zones[0];
    unsigned long b = z->managed_pages / 1024;
    if (b > 256)
        b = 256;
    b /= 4;
    if (b < 1)
        b = 1;
    b += b / 2;
    unsigned long p2 = 1;
    while (p2 * 2 <= b)
        p2 *= 2;
    cr_assert_eq(z->pcp_batch, (int)(p2 - 1 ? p2 - 1 : 1));
    cr_assert_eq(z->pcp_high, 6 * z->pcp_batch);
    if (REGION_SHIFT == 30)
        cr_assert_eq(z->pcp_batch, 63, "a 1 GiB zone gets the kernel's 63");
}

Test(pcp, refill_takes_a_batch, .init = small_watermarks)
{
    void *p[8];
    p[0] = bm_alloc_pages(0, 0);
    struct bm_zone_stats s = zone0();
    cr_assert_eq(s.pcp_refill, 1);
    cr_assert_eq(s.pcp_pages, 3, "batch of 4, one handed out");
    for (int i = 1; i < 4; i++)
        p[i] = bm_alloc_pages(0, 0);
    s = zone0();
    cr_assert_eq(s.pcp_refill, 1, "served from the list");
    cr_assert_eq(s.pcp_pages, 0);
    cr_assert_eq(s.pcp_alloc_hit, 4);
    p[4] = bm_alloc_pages(0, 0);
    s = zone0();
    cr_assert_eq(s.pcp_refill, 2, "empty list refilled");
    cr_assert_eq(s.pcp_pages, 3);
    for (int i = 0; i < 5; i++)
        bm_free_pages(p[i], 0);
    cr_assert_eq(zone0().pcp_pages, 8);
    assert_heap_ok();
}

Test(pcp, higher_orders_refill_fewer_blocks, .init = small_watermarks)
{
    /* batch >> order blocks, at least 2 */
    void *p = bm_alloc_pages(1, 0);
    cr_assert_eq(zone0().pcp_pages, (4 >> 1) * 2 - 2);
    void *q = bm_alloc_pages(3, 0);
    cr_assert_eq(zone0().pcp_pages, 2 + (2 * 8 - 8));
    bm_free_pages(p, 1);
    bm_free_pages(q, 3);
    assert_heap_ok();
}

Test(pcp, drain_at_high, .init = small_watermarks)
{
    enum { N = 40 };
    void *p[N];
    for (int i = 0; i < N; i++)
        p[i] = bm_alloc_pages(0, 0);
    int cached = (int)zone0().pcp_pages;
    cr_assert_lt(cached, 4);
    int drains = 0;
    for (int i = 0; i < N; i++) {
        bm_free_pages(p[i], 0);
        struct bm_zone_stats s = zone0();
        cr_assert_lt(s.pcp_pages, 16, "count stays below high");
        if ((int)s.pcp_drain > drains) {
            drains = (int)s.pcp_drain;
            cr_assert_eq(s.pcp_pages, 16 - 4, "a drain frees one batch at high");
        }
        if ((i + 1) % 16 == 0)
            assert_heap_ok();
    }
    cr_assert_geq(drains, 2);
    bm_drain_pagesets();
    cr_assert_eq(zone0().pcp_pages, 0);
    assert_heap_ok();
}

Test(pcp, disabled_by_option)
{
    bm_test_options("pcp=0");
    void *p = bm_alloc_pages(0, 0);
    cr_assert_not_null(p);
    bm_free_pages(p, 0);
    struct bm_zone_stats s = zone0();
    cr_assert_eq(s.pcp_pages, 0);
    cr_assert_eq(s.pcp_alloc_hit, 0);
    char buf[4096];
    bm_pagesetinfo(buf, sizeof buf);
    cr_assert(strstr(buf, "disabled") != NULL, "%s", buf);
    assert_heap_ok();
}

Test(pcp, nopcp_bypasses_the_pagesets)
{
    void *p = bm_alloc_pages(0, BM_GFP_NOPCP);
    struct bm_zone_stats s = zone0();
    cr_assert_eq(s.pcp_alloc_hit, 0);
    cr_assert_eq(s.pcp_pages, 0);
    bm_free_pages(p, 0);                /* and so does its free */
    s = zone0();
    cr_assert_eq(s.pcp_free_hit, 0);
    cr_assert_eq(s.pcp_pages, 0);
    assert_heap_ok();
}

/* A thread moved between the CPUs every few operations: each CPU's pageset
 * is used, and the heap stays consistent. */
struct mover_arg { int ops; int ncpu; };

static void *mover(void *argp)
{
    struct mover_arg *a = argp;
    enum { SLOTS = 256 };
    void *slot[SLOTS] = {0};
    unsigned ord[SLOTS];
    uint64_t seed = 88172645463325252ull;
    for (int i = 0; i < a->ops; i++) {
        if (i % 50 == 0) {
            cpu_set_t set;
            CPU_ZERO(&set);
            CPU_SET((i / 50) % a->ncpu, &set);
            sched_setaffinity(0, sizeof set, &set);
        }
        unsigned k = (unsigned)(xorshift(&seed) % SLOTS);
        if (slot[k]) {
            cr_assert_eq(*(unsigned *)slot[k], k);
            bm_free_pages(slot[k], ord[k]);
            slot[k] = NULL;
        } else {
            ord[k] = (unsigned)(xorshift(&seed) % (PCP_MAX_ORDER + 1));
            slot[k] = bm_alloc_pages(ord[k], 0);
            cr_assert_not_null(slot[k]);
            *(unsigned *)slot[k] = k;
        }
    }
    for (unsigned k = 0; k < SLOTS; k++)
        if (slot[k])
            bm_free_pages(slot[k], ord[k]);
    return NULL;
}

Test(pcp, thread_migrating_between_cpus)
{
    int ncpu = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (ncpu < 2)
        cr_skip_test("needs two CPUs");
    if (ncpu > 4)
        ncpu = 4;
    char initial[4096], now[4096];
    bm_ensure_init();
    buddyinfo_now(initial, sizeof initial);
    struct mover_arg a = { 20000, ncpu };
    pthread_t t[2];
    /* Two movers: they meet on the same CPU half the time, so pageset locks
     * are contended and some operations fall back to the zone. */
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, mover, &a);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    assert_heap_ok();
    int used = 0;
    for (int c = 0; c < bm_g.nr_cpus; c++)
        used += bm_g.zones[0].pcp[c].alloc_hit > 0;
    cr_assert_geq(used, 2, "more than one CPU's pageset served the threads");
    bm_drain_pagesets();
    cr_assert_str_eq(buddyinfo_now(now, sizeof now), initial);
    assert_heap_ok();
}
