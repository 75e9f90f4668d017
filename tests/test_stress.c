/*
 * Multi-threaded stress: 2 to 16 threads allocate blocks of random orders,
 * stamp every page with (thread, serial), hand blocks to each other through
 * shared slots and verify the stamp before freeing. A block handed out
 * twice, or memory written by the allocator while in use, breaks a stamp.
 */
#include "helpers.h"

#define SLOTS 2048
static _Atomic(uintptr_t) shared[SLOTS];
static _Atomic uint64_t serial;
static unsigned big_every;      /* 1 in big_every allocations is a pageblock */
/* Operations per thread: the work is fixed, and the timeouts below only
 * catch a hang (10x what the slowest machine seen needed), never decide a
 * pass by the machine's speed. */
static int ops_per_thread = 100000;

struct stamp { uint64_t block; uint64_t serial; uint32_t order; uint32_t page; };

static void stamp_block(char *p, unsigned order, uint64_t s)
{
    for (unsigned long i = 0; i < (1UL << order); i++) {
        struct stamp *st = (struct stamp *)(p + i * BM_PAGE_SIZE);
        *st = (struct stamp){ (uintptr_t)p, s, order, (uint32_t)i };
        /* and the last bytes of the page */
        memcpy(p + (i + 1) * BM_PAGE_SIZE - sizeof s, &s, sizeof s);
    }
}

static void verify_block(char *p, unsigned order)
{
    const struct stamp *first = (const struct stamp *)p;
    uint64_t s = first->serial;
    for (unsigned long i = 0; i < (1UL << order); i++) {
        const struct stamp *st = (const struct stamp *)(p + i * BM_PAGE_SIZE);
        uint64_t tail;
        memcpy(&tail, p + (i + 1) * BM_PAGE_SIZE - sizeof tail, sizeof tail);
        if (st->block != (uintptr_t)p || st->serial != s || st->order != order ||
            st->page != i || tail != s)
            cr_assert_fail("block %p order %u page %lu overwritten (serial %llu vs %llu)", (void *)p,
                     order, i, (unsigned long long)st->serial, (unsigned long long)s);
    }
}

/* slot value: address | order (blocks are page aligned) */
static void *worker(void *arg)
{
    uint64_t seed = 0x2545F4914F6CDD1Dull * ((uintptr_t)arg + 1);
    int ops = ops_per_thread;
    for (int i = 0; i < ops; i++) {
        unsigned k = (unsigned)(xorshift(&seed) % SLOTS);
        uintptr_t v = atomic_exchange(&shared[k], 0);
        if (v) {
            char *p = (char *)(v & ~(uintptr_t)(BM_PAGE_SIZE - 1));
            unsigned order = (unsigned)(v & 63);
            verify_block(p, order);
            bm_free_pages(p, order);
            continue;
        }
        uint64_t r = xorshift(&seed);
        /* mostly small orders, sometimes up to 6 */
        unsigned order = (r & 7) < 6 ? (unsigned)((r >> 3) % (PCP_MAX_ORDER + 1))
                                     : (unsigned)((r >> 3) % 7);
        if (big_every && (r >> 16) % big_every == 0)
            order = pageblock_order + (unsigned)((r >> 24) % 2);
        if (order > MAX_ORDER - 1)      /* small geometries */
            order = MAX_ORDER - 1;
        unsigned gfp = (unsigned)((r >> 8) % 4) | ((r >> 10) & 1 ? BM_GFP_NOPCP : 0);
        char *p = bm_alloc_pages(order, gfp);
        if (!p)
            cr_assert_fail("allocation failed: order %u", order);
        stamp_block(p, order, atomic_fetch_add(&serial, 1));
        uintptr_t expected = 0;
        if (!atomic_compare_exchange_strong(&shared[k], &expected, (uintptr_t)p | order)) {
            verify_block(p, order);
            bm_free_pages(p, order);
        }
    }
    return NULL;
}

static void run(int nthreads)
{
    struct buddy_snapshot snap;
    bm_ensure_init();
    buddy_snapshot_take(&snap);
    pthread_t t[16];
    for (int i = 0; i < nthreads; i++)
        pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)i);
    for (int i = 0; i < nthreads; i++)
        pthread_join(t[i], NULL);
    assert_heap_ok();
    for (int k = 0; k < SLOTS; k++) {
        uintptr_t v = atomic_exchange(&shared[k], 0);
        if (v) {
            char *p = (char *)(v & ~(uintptr_t)(BM_PAGE_SIZE - 1));
            verify_block(p, (unsigned)(v & 63));
            bm_free_pages(p, (unsigned)(v & 63));
        }
    }
    bm_drain_pagesets();
    assert_heap_ok();
    char what[64];
    snprintf(what, sizeof what, "all memory back after %d threads", nthreads);
    assert_buddy_back(&snap, what);
}

Test(stress, threads_2, .timeout = 600) { run(2); }
Test(stress, threads_4, .timeout = 600) { run(4); }
Test(stress, threads_8, .timeout = 600) { run(8); }
Test(stress, threads_16, .timeout = 600) { run(16); }

/* Small watermarks make refills and drains constant: the zone path and the
 * pagesets interleave all the time. */
Test(stress, threads_16_small_pagesets, .timeout = 600)
{
    bm_test_options("pcp_batch=2,pcp_high=6");
    run(16);
}

/* Release on every free: madvise with the zone unlocked races with frees
 * and allocations of neighbouring blocks. */
Test(stress, threads_8_eager_release, .timeout = 600)
{
    /* A madvise on nearly every free: the costly part (106 s for 100,000
     * operations a thread on a machine where madvise is slow), so fewer. */
    bm_test_options("release_threshold=0,release_delay_ms=0");
    big_every = 64;
    ops_per_thread = 25000;
    run(8);
    cr_assert_gt(zone0().released_pages, 0, "memory was released during the run");
}
