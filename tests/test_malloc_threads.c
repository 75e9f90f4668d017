/* Threads: cross-thread frees, thread exit, memory bounded with many
 * threads. */
#include "helpers.h"
#include "slab.h"

#include <time.h>

#define MiB (1024UL * 1024)

static void check_at_end(void) { cr_assert_eq(bm_check(2), 0, "heap checker"); }
TestSuite(threads, .fini = check_at_end);

/* ---- producer / consumer -------------------------------------------------- */

#define RING 1024
struct ring {
    _Atomic(uintptr_t) slot[RING];
};
static struct ring rings[16];
static _Atomic int producers_done;

struct msg { uint64_t seq; uint32_t size; uint32_t owner; };

static size_t msg_size(uint64_t r)
{
    switch (r % 8) {
    case 0: return 16 + r % 48;
    case 1: return 100 + r % 900;
    case 2: return 2000 + r % 30000;
    case 3: return 40000 + r % 200000;      /* runs of pages */
    default: return 24 + r % 200;
    }
}

static void stamp(struct msg *m, size_t size, uint64_t seq, unsigned owner)
{
    m->seq = seq;
    m->size = (uint32_t)size;
    m->owner = owner;
    unsigned char *b = (unsigned char *)m;
    for (size_t i = sizeof *m; i < size; i++)
        b[i] = (unsigned char)(seq + i);
}

static void check_msg(const struct msg *m)
{
    const unsigned char *b = (const unsigned char *)m;
    for (size_t i = sizeof *m; i < m->size; i++)
        if (b[i] != (unsigned char)(m->seq + i))
            cr_assert_fail("message %llu byte %zu overwritten", (unsigned long long)m->seq, i);
}

struct role { int id, nring; long count; };

static void *producer(void *arg)
{
    struct role *r = arg;
    uint64_t seed = 0x1234567ull * (uint64_t)(r->id + 1);
    for (long i = 0; i < r->count; i++) {
        size_t size = msg_size(xorshift(&seed));
        struct msg *m = bm_malloc(size);
        cr_assert_not_null(m);
        stamp(m, size, (uint64_t)i * 16 + (uint64_t)r->id, (unsigned)r->id);
        struct ring *q = &rings[r->id % r->nring];
        unsigned k = (unsigned)(xorshift(&seed) % RING);
        uintptr_t expect = 0;
        while (!atomic_compare_exchange_weak(&q->slot[k], &expect, (uintptr_t)m)) {
            expect = 0;
            k = (k + 1) % RING;
            sched_yield();
        }
    }
    return NULL;
}

static void *consumer(void *arg)
{
    struct role *r = arg;
    struct ring *q = &rings[r->id];
    for (;;) {
        bool any = false;
        for (unsigned k = 0; k < RING; k++) {
            uintptr_t v = atomic_exchange(&q->slot[k], 0);
            if (v) {
                check_msg((struct msg *)v);
                bm_free((void *)v);
                any = true;
            }
        }
        if (!any) {
            if (atomic_load(&producers_done))
                break;
            sched_yield();
        }
    }
    /* a last sweep after the producers stopped */
    for (unsigned k = 0; k < RING; k++) {
        uintptr_t v = atomic_exchange(&q->slot[k], 0);
        if (v) {
            check_msg((struct msg *)v);
            bm_free((void *)v);
        }
    }
    return NULL;
}

static void producer_consumer(int pairs, long per_producer)
{
    pthread_t pt[8], ct[8];
    struct role pr[8], cr[8];
    atomic_store(&producers_done, 0);
    for (int i = 0; i < pairs; i++) {
        cr[i] = (struct role){ i, pairs, 0 };
        pthread_create(&ct[i], NULL, consumer, &cr[i]);
    }
    for (int i = 0; i < pairs; i++) {
        pr[i] = (struct role){ i, pairs, per_producer };
        pthread_create(&pt[i], NULL, producer, &pr[i]);
    }
    for (int i = 0; i < pairs; i++)
        pthread_join(pt[i], NULL);
    atomic_store(&producers_done, 1);
    for (int i = 0; i < pairs; i++)
        pthread_join(ct[i], NULL);
    struct bm_malloc_stats ms;
    bm_malloc_stats(&ms);
    cr_assert_eq(ms.small_allocs, ms.small_frees, "every small block came back");
    bm_trim(0);
    for (int c = 0; c < bm_nr_classes(); c++) {
        struct bm_class_stats cs;
        bm_class_stats(c, &cs);
        cr_assert_eq(cs.slabs, 0, "class %u keeps %lu slabs after trim", cs.size, cs.slabs);
    }
}

Test(threads, producer_consumer_2, .timeout = 120) { producer_consumer(1, 100000); }
Test(threads, producer_consumer_4, .timeout = 120) { producer_consumer(2, 50000); }
Test(threads, producer_consumer_8, .timeout = 120) { producer_consumer(4, 25000); }
Test(threads, producer_consumer_16, .timeout = 120) { producer_consumer(8, 12000); }

/* ---- thread exit ----------------------------------------------------------- */

static void *alloc_and_leave(void *arg)
{
    void **out = arg;
    for (int i = 0; i < 1000; i++)
        out[i] = bm_malloc(64 + (size_t)(i % 7) * 100);
    return NULL;
}

Test(threads, blocks_outlive_their_thread_and_slabs_are_adopted)
{
    static void *blocks[1000];
    pthread_t t;
    pthread_create(&t, NULL, alloc_and_leave, blocks);
    pthread_join(t, NULL);
    struct bm_class_stats cs;
    unsigned long abandoned = 0;
    for (int c = 0; c < bm_nr_classes(); c++) {
        bm_class_stats(c, &cs);
        abandoned += cs.abandoned;
    }
    cr_assert_gt(abandoned, 0, "the dead thread's slabs wait for an owner");
    assert_heap_ok();
    /* this thread frees them (remote frees into abandoned slabs) ... */
    for (int i = 0; i < 1000; i += 2)
        bm_free(blocks[i]);
    /* ... and adopts the slabs when it allocates those classes */
    for (int i = 0; i < 1000; i++)
        blocks[i] = i % 2 ? blocks[i] : bm_malloc(64 + (size_t)(i % 7) * 100);
    unsigned long adopted_after = 0;
    for (int c = 0; c < bm_nr_classes(); c++) {
        bm_class_stats(c, &cs);
        adopted_after += cs.abandoned;
    }
    cr_assert_lt(adopted_after, abandoned, "abandoned slabs were adopted");
    for (int i = 0; i < 1000; i++)
        bm_free(blocks[i]);
    bm_trim(0);
    for (int c = 0; c < bm_nr_classes(); c++) {
        bm_class_stats(c, &cs);
        cr_assert_eq(cs.slabs, 0, "nothing stranded in class %u", cs.size);
    }
}

static void *churn_and_exit(void *arg)
{
    (void)arg;
    void *p[256];
    for (int r = 0; r < 4; r++) {
        for (int i = 0; i < 256; i++)
            p[i] = bm_malloc(16 + (size_t)i * 24);
        for (int i = 0; i < 256; i++)
            bm_free(p[i]);
    }
    return NULL;
}

/* Resident memory less the free memory waiting for its release delay (up
 * to the release threshold, whatever the thread count). */
static size_t held_bytes(void)
{
    struct bm_zone_stats z;
    bm_zone_stats(0, &z);
    size_t rss = rss_bytes(), waiting = (z.dirty_pages + z.pcp_pages) * BM_PAGE_SIZE;
    return rss > waiting ? rss - waiting : 0;
}

Test(threads, thousand_threads_keep_memory_bounded, .timeout = 120)
{
#ifdef __SANITIZE_ADDRESS__
    cr_skip_test("AddressSanitizer keeps memory of its own per thread");
#endif
    bm_ensure_init();
    pthread_t t[8];
    size_t held_after_100 = 0;
    for (int round = 0; round < 125; round++) {
        for (int i = 0; i < 8; i++)
            pthread_create(&t[i], NULL, churn_and_exit, NULL);
        for (int i = 0; i < 8; i++)
            pthread_join(t[i], NULL);
        if (round == 12)
            held_after_100 = held_bytes();
    }
    size_t held_end = held_bytes();
    cr_assert_leq(held_end, held_after_100 + 4 * MiB,
                  "memory held grew from %zu KiB after 100 threads to %zu KiB after 1000",
                  held_after_100 >> 10, held_end >> 10);
    struct bm_malloc_stats ms;
    bm_malloc_stats(&ms);
    cr_assert_leq(ms.heaps, 1, "exited threads' heaps are recycled");
    cr_assert_eq(ms.small_allocs, ms.small_frees);
}

/* 256 threads each allocate and free a few MiB of small objects, then sit
 * idle: what stays resident is bounded by a small amount per thread. */
static pthread_barrier_t idle_barrier, done_barrier;

static void *few_mib_then_idle(void *arg)
{
    (void)arg;
    enum { N = 16384 };
    void **p = bm_malloc(N * sizeof *p);
    for (int i = 0; i < N; i++)
        p[i] = bm_malloc(64 + (size_t)(i % 4) * 64);     /* ~3 MiB */
    for (int i = 0; i < N; i++)
        bm_free(p[i]);
    bm_free(p);
    pthread_barrier_wait(&idle_barrier);
    pthread_barrier_wait(&done_barrier);
    return NULL;
}

Test(threads, idle_threads_cost_little, .timeout = 120)
{
#ifdef __SANITIZE_ADDRESS__
    /* its per-thread bound is in KiB, and AddressSanitizer keeps memory of
     * its own per thread (188 KiB against a 172 KiB bound in one CI run) */
    cr_skip_test("AddressSanitizer keeps memory of its own per thread");
#endif
    enum { T = 256 };
    static pthread_t t[T];
    /* the threshold alone: with the hold, the 768 MiB the threads freed
     * would wait for the release delay (test_release covers the hold) */
    bm_test_options("release_peak=no");
    bm_ensure_init();
    size_t base = held_bytes();
    pthread_barrier_init(&idle_barrier, NULL, T + 1);
    pthread_barrier_init(&done_barrier, NULL, T + 1);
    for (int i = 0; i < T; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, few_mib_then_idle, NULL), 0);
    pthread_barrier_wait(&idle_barrier);
    size_t idle = held_bytes();
    struct bm_zone_stats z;
    bm_zone_stats(0, &z);
    /* Each idle thread keeps its current slab of each class it used (the
     * four classes of 64..256 bytes): nothing else of the slab layer. */
    unsigned long slab_pages = 0, per_thread = 0;
    for (int c = 0; c < bm_nr_classes(); c++) {
        struct bm_class_stats cs;
        bm_class_stats(c, &cs);
        slab_pages += cs.slabs * cs.pages_per_slab;
        if (cs.size >= 64 && cs.size <= 256 && cs.size % 64 == 0)
            per_thread += cs.pages_per_slab;
    }
    cr_assert_leq(slab_pages, (unsigned long)T * per_thread + 16,
                  "%lu slab pages for %d idle threads (%lu each expected)", slab_pages, T,
                  per_thread);
    /* What the process holds beyond that is free memory waiting for its
     * release delay (bounded by the threshold, not by the thread count)
     * and the threads' own stacks and descriptors. */
    size_t held = idle > base ? idle - base : 0;
    /* its current slabs, the holes below release_min_order next to each
     * (the four classes), plus 64 KiB for its stack, TLS and heap */
    size_t bound = (per_thread + 4 * (1UL << bm_g.opt.release_min_order)) * BM_PAGE_SIZE +
                   64 * 1024;
    cr_assert_leq(held / T, bound, "%zu KiB resident per idle thread beyond free memory "
                  "(bound %zu KiB)", (held / T) >> 10, bound >> 10);
    cr_assert_leq(z.dirty_pages * BM_PAGE_SIZE, 64 * MiB, "free memory above the threshold "
                  "went back to the OS");
    pthread_barrier_wait(&done_barrier);
    for (int i = 0; i < T; i++)
        pthread_join(t[i], NULL);
}

/*
 * Blocks that come back only by remote frees: one thread allocates 48-byte
 * blocks (keeping a working set of them) and hands most to another thread
 * that frees them. The allocating thread's partial slabs must be collected
 * when it looks for a slab, or its queue grows without bound (it reached
 * 37,000 slabs in a few seconds before slab_find collected the slabs it
 * scans and rotated its window).
 */
#define HANDOFF_SLOTS 4096
static _Atomic(void *) handoff[HANDOFF_SLOTS];
static _Atomic int handoff_done;

static void *handoff_freer(void *arg)
{
    (void)arg;
    while (!atomic_load(&handoff_done))
        for (int i = 0; i < HANDOFF_SLOTS; i++)
            bm_free(atomic_exchange(&handoff[i], NULL));
    return NULL;
}

Test(threads, remote_frees_do_not_grow_the_partial_queue, .timeout = 120)
{
    pthread_t t;
    pthread_create(&t, NULL, handoff_freer, NULL);
    void *keep[64] = { 0 };
    unsigned seed = 7;
    for (long i = 0; i < 400000; i++) {
        unsigned k = (unsigned)rand_r(&seed) % 64;
        bm_free(keep[k]);
        keep[k] = bm_malloc(48);
        void *p = bm_malloc(48);
        cr_assert_not_null(p);
        bm_free(atomic_exchange(&handoff[(unsigned)rand_r(&seed) % HANDOFF_SLOTS], p));
    }
    atomic_store(&handoff_done, 1);
    pthread_join(t, NULL);
    struct bm_class_stats cs;
    bm_class_stats((int)bm_size_to_class(48), &cs);
    /* live: 64 kept + at most 4096 in flight: 49 slabs of 85 blocks when
     * full, about twice that with the slack slab_find keeps */
    cr_assert_leq(cs.slabs, 200, "%lu slabs of 48 B for at most 4160 live blocks", cs.slabs);
    for (int k = 0; k < 64; k++)
        bm_free(keep[k]);
    for (int i = 0; i < HANDOFF_SLOTS; i++)
        bm_free(atomic_exchange(&handoff[i], NULL));
}

/* ---- a quiet thread's slabs, emptied by other threads' frees ------------------
 * The owner collects remote frees only on its own slow paths; a thread that
 * allocated and then went quiet would keep its slabs however empty they
 * become. Its heap is swept by other threads (heap.c). */

enum { QUIET_N = 20000, QUIET_SIZE = 200 };
static void *quiet_blocks[QUIET_N];
static pthread_barrier_t quiet_filled, quiet_release;

static void *quiet_owner(void *arg)
{
    (void)arg;
    for (int i = 0; i < QUIET_N; i++) {
        quiet_blocks[i] = bm_malloc(QUIET_SIZE);
        memset(quiet_blocks[i], 0x5a, QUIET_SIZE);
    }
    pthread_barrier_wait(&quiet_filled);
    pthread_barrier_wait(&quiet_release);      /* quiet until the test is done */
    return NULL;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static unsigned long class_slabs(size_t size)
{
    struct bm_class_stats cs;
    bm_class_stats((int)bm_size_to_class(size), &cs);
    return cs.slabs;
}

/* Another thread fills the quiet one's slabs, this one frees every block. */
static pthread_t quiet_start(unsigned long *before)
{
    pthread_t t;
    pthread_barrier_init(&quiet_filled, NULL, 2);
    pthread_barrier_init(&quiet_release, NULL, 2);
    cr_assert_eq(pthread_create(&t, NULL, quiet_owner, NULL), 0);
    pthread_barrier_wait(&quiet_filled);
    *before = class_slabs(QUIET_SIZE);
    cr_assert_gt(*before, 50, "%lu slabs for %d blocks", *before, QUIET_N);
    for (int i = 0; i < QUIET_N; i++)
        bm_free(quiet_blocks[i]);
    return t;
}

static void quiet_end(pthread_t t)
{
    pthread_barrier_wait(&quiet_release);
    pthread_join(t, NULL);
}

Test(threads, trim_sweeps_a_quiet_threads_slabs)
{
    unsigned long before;
    pthread_t t = quiet_start(&before);
    cr_assert_eq(class_slabs(QUIET_SIZE), before, "nothing given back before the sweep");
    bm_trim(0);
    unsigned long after = class_slabs(QUIET_SIZE);
    cr_assert_leq(after, 1, "the quiet thread's current slab at most (%lu of %lu left)", after,
                  before);
    quiet_end(t);
}

Test(threads, quiet_threads_slabs_are_swept_without_trim, .timeout = 60)
{
    unsigned long before;
    pthread_t t = quiet_start(&before);
    struct bm_malloc_stats m0, m1;
    bm_malloc_stats(&m0);
    /* Keep making slabs of another class (the sweep looks for quiet heaps
     * every few hundred new slabs, at most every 100 ms) until the quiet
     * thread's slabs are gone, for at most 10 s. */
    static void *p[4096];
    unsigned long after = before;
    double t0 = now_s();
    while (after > 1 && now_s() - t0 < 10) {
        for (int i = 0; i < 4096; i++)
            p[i] = bm_malloc(1000);
        for (int i = 0; i < 4096; i++)
            bm_free(p[i]);
        after = class_slabs(QUIET_SIZE);
    }
    bm_malloc_stats(&m1);
    cr_assert_leq(after, 1, "%lu of %lu slabs left after %.1f s", after, before, now_s() - t0);
    cr_assert_gt(m1.heaps_swept, m0.heaps_swept);
    quiet_end(t);
}

/*
 * Remote frees into full slabs reach the owner as they happen (issue 15):
 * the first one moves the slab back to the owner's partial queue, so the
 * owner reuses it at once, however many full slabs sit before it. Here the
 * owner fills 400 slabs, another thread frees every block of the newest
 * 100, and the owner allocates that many blocks again: they come from the
 * freed slabs, not from new ones. (Before, a bounded scan of the oldest 8
 * full slabs per refill found them only after rotating past the other
 * 300, making a new slab each time.)
 */
struct handoff { void **blocks; size_t from, to; };

static void *free_range_thread(void *arg)
{
    struct handoff *h = arg;
    for (size_t i = h->from; i < h->to; i++)
        bm_free(h->blocks[i]);
    return NULL;
}

static unsigned long slabs_of(unsigned cls)
{
    struct bm_class_stats cs;
    cr_assert_eq(bm_class_stats((int)cls, &cs), 0);
    return cs.slabs;
}

Test(threads, remote_frees_bring_full_slabs_back_at_once)
{
    enum { SIZE = 64 };
    bm_ensure_init();
    unsigned cls = bm_size_to_class(SIZE);
    size_t per = bm_classes[cls].capacity, n = 400 * per;
    void **b = calloc(n, sizeof *b);
    cr_assert_not_null(b);
    unsigned long slabs0 = slabs_of(cls);
    for (size_t i = 0; i < n; i++)
        cr_assert_not_null(b[i] = bm_malloc(SIZE));
    unsigned long slabs1 = slabs_of(cls);
    cr_assert_geq(slabs1 - slabs0, 400);
    uint64_t notified0 = atomic_load(&bm_slab_notified);
    struct handoff h = { b, n - 100 * per, n };
    pthread_t t;
    pthread_create(&t, NULL, free_range_thread, &h);
    pthread_join(t, NULL);
    cr_assert_geq(atomic_load(&bm_slab_notified) - notified0, 99,
                  "full slabs moved by remote frees: %llu",
                  (unsigned long long)(atomic_load(&bm_slab_notified) - notified0));
    for (size_t i = n - 100 * per; i < n; i++)
        cr_assert_not_null(b[i] = bm_malloc(SIZE));
    unsigned long slabs2 = slabs_of(cls);
    cr_assert_leq(slabs2, slabs1 + 2, "%lu new slabs for blocks that had room",
                  slabs2 - slabs1);
    assert_heap_ok();
    for (size_t i = 0; i < n; i++)
        bm_free(b[i]);
    free(b);
    assert_heap_ok();
}

/*
 * Slabs of a thread that exited, emptied by other threads' frees, go back
 * to the pages at the last free (orphan_free), not at the next sweep or
 * thread exit: a thread fills 50 slabs and exits with every block live
 * (its slabs are abandoned), the main thread frees them all, and no
 * abandoned slab of the class is left.
 */
struct fill_arg { void **blocks; size_t n, size; };

static void *fill_and_exit(void *arg)
{
    struct fill_arg *f = arg;
    for (size_t i = 0; i < f->n; i++)
        f->blocks[i] = bm_malloc(f->size);
    return NULL;
}

Test(threads, abandoned_slabs_go_back_at_their_last_remote_free)
{
    enum { SIZE = 96 };
    bm_ensure_init();
    unsigned cls = bm_size_to_class(SIZE);
    struct bm_class_stats cs;
    bm_class_stats((int)cls, &cs);
    unsigned long abandoned0 = cs.abandoned;
    size_t n = 50 * bm_classes[cls].capacity;
    void **b = calloc(n, sizeof *b);
    cr_assert_not_null(b);
    struct fill_arg f = { b, n, SIZE };
    pthread_t t;
    pthread_create(&t, NULL, fill_and_exit, &f);
    pthread_join(t, NULL);
    bm_class_stats((int)cls, &cs);
    cr_assert_geq(cs.abandoned, abandoned0 + 50, "the exited thread's slabs are abandoned");
    uint64_t freed0 = atomic_load(&bm_slab_orphans_freed);
    for (size_t i = 0; i < n; i++) {
        cr_assert_not_null(b[i]);
        bm_free(b[i]);
    }
    bm_class_stats((int)cls, &cs);
    cr_assert_leq(cs.abandoned, abandoned0, "%lu abandoned slabs left", cs.abandoned - abandoned0);
    cr_assert_geq(atomic_load(&bm_slab_orphans_freed) - freed0, 50);
    free(b);
    assert_heap_ok();
}
