/*
 * heap.c - thread heaps: one per thread that allocates, found through an
 * initial-exec TLS pointer. A thread starts on a static empty heap whose
 * every class has an empty current slab, so its first malloc simply misses
 * and creates the real heap; no NULL test on the fast path.
 *
 * A heap's slabs are its own: only the owning thread allocates from them
 * and frees into their local lists. At thread exit (a pthread key
 * destructor) the heap collects what other threads freed, returns empty
 * slabs to the pages and abandons the others to a global list per class,
 * where the next thread that needs a slab of that class adopts them. Heaps
 * themselves are recycled through a pool.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <string.h>

#include "alloc.h"
#include "buddymalloc.h"
#include "large.h"
#include "slab.h"

/* The stand-in slab: free is NULL, so the fast path always misses. */
struct bm_page bm_slab_empty;

struct bm_heap bm_heap_empty = {
    .cur = { [0 ... BM_NR_CLASSES - 1] = &bm_slab_empty },
};

__thread struct bm_heap *bm_tls_heap __attribute__((tls_model("initial-exec"))) = &bm_heap_empty;
/* The thread's first heap; its other heaps (one per zone it allocated
 * from, NUMA) follow on ->sib. The pthread key holds it too. */
static __thread struct bm_heap *tls_heaps __attribute__((tls_model("initial-exec")));

static pthread_key_t heap_key;
static bm_mutex_t heaps_lock;          /* live list and pool */
static struct bm_heap *live_heaps, *heap_pool;
static unsigned long nr_heap_pages;

/* Counters of heaps that were torn down, folded in at teardown. */
_Atomic uint64_t bm_retired_nalloc[BM_NR_CLASSES], bm_retired_nfree[BM_NR_CLASSES];

static void heap_teardown(void *arg);

/* Slabs looked at per queue (and per abandoned list) in a sweep that is not
 * a trim: O(threads x classes x SWEEP_SCAN) a sweep, whatever the heap's
 * size; a queue is gone round over several sweeps. */
#define SWEEP_SCAN 16

void bm_heaps_init(void)
{
    pthread_key_create(&heap_key, heap_teardown);
}

static void heap_reset(struct bm_heap *h)
{
    for (unsigned c = 0; c < BM_NR_CLASSES; c++) {
        h->cur[c] = &bm_slab_empty;
        h->bin[c] = NULL;
        h->bin_n[c] = bm_bin_empty_n();
        h->magic[c] = bm_classes[c].magic;
        h->nalloc[c] = h->nfree[c] = 0;
        h->slab_net[c] = 0;
        list_init(&h->q[c].partial);
        list_init(&h->q[c].full);
        h->q[c].nr_partial = h->q[c].nr_full = 0;
    }
    h->large_nalloc = h->large_nfree = 0;
    h->large_pages = 0;
    h->slabs_made = 0;
    h->dead = 0;
    h->sib = NULL;                  /* h->alien stays: empty, kept with the heap */
    h->first = 0;
    atomic_store_explicit(&h->lock.v, 0, memory_order_relaxed);
    atomic_store_explicit(&h->ticks, 0, memory_order_relaxed);
    h->swept_ticks = 0;
}

/* A heap from the pool (or a new page of them), on the live list, for
 * slabs of zone `node`; NULL (ENOMEM) if no page can be had. */
static struct bm_heap *heap_new(int node)
{
    struct bm_heap *h;
    bm_mutex_lock(&heaps_lock);
    h = heap_pool;
    if (h) {
        heap_pool = h->next;
    } else {
        /* A page of the allocator's own memory per heap (one fits). */
        struct bm_page *pg = bm_alloc_block(0, MIGRATE_SLAB, BM_GFP_NOPCP);
        if (!pg) {
            bm_mutex_unlock(&heaps_lock);
            errno = ENOMEM;
            return NULL;
        }
        set_page_flags(pg, PG_alloc | PG_internal);
        nr_heap_pages++;
        char *base = page_to_addr(pg);
        BM_VG_UNDEFINED(base, BM_PAGE_SIZE);
        size_t n = BM_PAGE_SIZE / sizeof(struct bm_heap);
        for (size_t i = 1; i < n; i++) {
            struct bm_heap *extra = (struct bm_heap *)(base + i * sizeof(struct bm_heap));
            extra->next = heap_pool;
            extra->alien = NULL;
            heap_pool = extra;
        }
        h = (struct bm_heap *)base;
        h->alien = NULL;
    }
    heap_reset(h);
    h->node = node;
    h->next = live_heaps;
    h->pprev = &live_heaps;
    if (live_heaps)
        live_heaps->pprev = &h->next;
    live_heaps = h;
    bm_mutex_unlock(&heaps_lock);
    return h;
}

/* Slow path of the first malloc of a thread. */
BM_COLD struct bm_heap *bm_heap_create(void)
{
    bm_ensure_init();
    struct bm_heap *h = heap_new(bm_zone_now());
    if (!h)
        return NULL;
    h->first = 1;
    bm_tls_heap = tls_heaps = h;
    pthread_setspecific(heap_key, h);   /* keys < 32 live in the TCB: no malloc */
    return h;
}

/*
 * Slow path of malloc when the thread runs on a CPU of another zone than
 * its current heap's (NUMA, bm_malloc_numa): its heap for that zone, made
 * the first time. Its other heaps keep their slabs and bins for when it
 * comes back; what it frees into them meanwhile goes home as remote frees.
 * Before the thread's first heap exists, the empty heap stays (the malloc
 * slow path makes the first one). Without memory for a new heap, the
 * thread goes on with the one it has.
 */
static BM_COLD struct bm_heap *heap_move(int zone)
{
    struct bm_heap *h;
    if (!tls_heaps)
        return bm_tls_heap;
    for (h = tls_heaps; h; h = h->sib)
        if (h->node == zone)
            return bm_tls_heap = h;
    h = heap_new(zone);
    if (!h)
        return bm_tls_heap;
    h->sib = tls_heaps->sib;
    tls_heaps->sib = h;
    return bm_tls_heap = h;
}

/* Every small malloc when CPUs start from different zones: the heap of the
 * CPU's zone. The rseq read and the table lookup inline; anything else
 * (no rseq, a heap switch) through one cold call, so that this path keeps
 * its registers too (16 instructions over the one-zone path). */
static BM_COLD void *malloc_numa_cold(unsigned cls)
{
    struct bm_heap *h = bm_tls_heap;
    int zone = bm_zone_now();
    if (h->node != zone)
        h = heap_move(zone);
    return malloc_class_heap(h, cls);
}

__attribute__((noinline)) void *bm_malloc_numa(unsigned cls)
{
    struct bm_heap *h = bm_tls_heap;
    int cpu = bm_cpu_rseq();
    if (unlikely(cpu < 0 || h->node != bm_cpu_zone(cpu)))
        return malloc_numa_cold(cls);
    return malloc_class_heap(h, cls);
}

/* Out of the live list (heaps_lock held, or the only thread). */
static void live_unlink(struct bm_heap *h)
{
    *h->pprev = h->next;
    if (h->next)
        h->next->pprev = h->pprev;
}

/* The heap's slabs go back to the pages or to the abandoned lists, its
 * counters to the retired totals, the heap to the pool. */
static void heap_retire(struct bm_heap *h)
{
    bm_spin_lock(&h->lock);
    bm_alien_flush(h);
    for (unsigned c = 0; c < BM_NR_CLASSES; c++) {
        bm_slab_release_class(h, c);
        atomic_fetch_add(&bm_retired_nalloc[c], h->nalloc[c]);
        atomic_fetch_add(&bm_retired_nfree[c], h->nfree[c]);
        atomic_fetch_add(&bm_slab_stats[c].slabs, (unsigned long)h->slab_net[c]);
        __atomic_store_n(&h->slab_net[c], 0, __ATOMIC_RELAXED);
    }
    bm_spin_unlock(&h->lock);
    atomic_fetch_add(&bm_retired_large_nalloc, h->large_nalloc);
    atomic_fetch_add(&bm_retired_large_nfree, h->large_nfree);
    atomic_fetch_add(&bm_retired_large_pages, h->large_pages);
    bm_mutex_lock(&heaps_lock);
    live_unlink(h);
    h->dead = 1;
    h->next = heap_pool;
    heap_pool = h;
    bm_mutex_unlock(&heaps_lock);
}

/*
 * Thread exit. Frees may still arrive afterwards (later TLS destructors):
 * the thread is back on the empty heap, so they take the remote path, and
 * a later malloc makes a new heap, torn down in the next destructor round.
 */
static void heap_teardown(void *arg)
{
    bm_tls_heap = &bm_heap_empty;
    tls_heaps = NULL;
    for (struct bm_heap *h = arg, *sib; h; h = sib) {
        sib = h->sib;
        heap_retire(h);
    }
    /* a good time to look for quiet heaps; abandoned slabs emptied by
     * remote frees go back either way (the sweep does that too) */
    if (!bm_heaps_sweep(NULL, false))
        bm_slab_reclaim_abandoned(SWEEP_SCAN);
}

_Atomic unsigned long bm_fork_heaps_retired, bm_fork_heaps_lost, bm_heaps_swept;

/* fork: the heaps lock, then every live heap's (the order a sweep takes
 * them in); released in the other order. */
void bm_heaps_fork_lock(enum bm_fork_step step)
{
    if (step == BM_FORK_PREPARE)
        bm_fork_mutex(&heaps_lock, step);
    for (struct bm_heap *h = live_heaps; h; h = h->next)
        bm_fork_spin(&h->lock, step);
    if (step != BM_FORK_PREPARE)
        bm_fork_mutex(&heaps_lock, step);
}

/*
 * Sweeping quiet heaps. Blocks other threads free into a heap's slabs wait
 * on the slabs' thread_free lists until the owner collects them, which it
 * does only on its own slow paths. A thread that allocated and went quiet
 * (a main thread that filled tables and now waits, a pool worker between
 * jobs) would keep those slabs for ever, however empty they become: in
 * `alloc-workloads larson --threads 32` the main thread held 1,083 slabs,
 * 49 MiB, 98 % free, to the end. So at every SWEEP_EVERY-th new slab of a
 * heap (slab.c) and at every thread exit, at most every SWEEP_INTERVAL,
 * the thread looks at the live heaps: one whose owner took no slow path
 * since the last look is swept under its lock (try-locked: a busy heap is
 * skipped) - its queued slabs collect their remote frees, and the empty
 * ones go back to the pages. The owner's current slabs and bins are never
 * touched, so the fast paths stay lock-free; quietness only decides whether
 * a sweep is worth its cost, not whether it is safe. Abandoned slabs
 * emptied by remote frees are reclaimed on the same occasion. Returns
 * whether it looked (false: too soon).
 */
#define SWEEP_INTERVAL_NS 100000000ULL       /* 100 ms */

bool bm_heaps_sweep(struct bm_heap *self, bool all)
{
    static _Atomic uint64_t last_ns;
    if (!all) {
        uint64_t now = bm_now_ns(), last = atomic_load_explicit(&last_ns, memory_order_relaxed);
        if (now - last < SWEEP_INTERVAL_NS ||
            !atomic_compare_exchange_strong_explicit(&last_ns, &last, now, memory_order_relaxed,
                                                     memory_order_relaxed))
            return false;           /* too soon, or another thread sweeps */
    }
    bm_mutex_lock(&heaps_lock);
    for (struct bm_heap *h = live_heaps; h; h = h->next) {
        if (h == self)
            continue;
        uint64_t t = atomic_load_explicit(&h->ticks, memory_order_relaxed);
        bool quiet = t == h->swept_ticks;
        h->swept_ticks = t;
        if ((!quiet && !all) || !bm_spin_trylock(&h->lock))
            continue;
        bm_alien_flush(h);
        for (unsigned c = 0; c < BM_NR_CLASSES; c++)
            bm_slab_sweep_class(h, c, all ? ULONG_MAX : SWEEP_SCAN);
        bm_spin_unlock(&h->lock);
        atomic_fetch_add_explicit(&bm_heaps_swept, 1, memory_order_relaxed);
    }
    bm_mutex_unlock(&heaps_lock);
    bm_slab_reclaim_abandoned(all ? ULONG_MAX : SWEEP_SCAN);
    return true;
}

/*
 * In a fork child, the only thread is the one that forked: every other
 * live heap belongs to a thread that does not exist here. Each is checked
 * (fork.c: a thread inside malloc at the instant of fork may have left it
 * half updated) and retired as if its thread had exited, so its free
 * blocks serve the child; one that fails the check is left alone and
 * counted: its memory is lost to the child, never corrupted.
 */
static bool heap_is_mine(const struct bm_heap *h)
{
    for (const struct bm_heap *m = tls_heaps; m; m = m->sib)
        if (m == h)
            return true;
    return false;
}

void bm_heaps_after_fork(void)
{
    struct bm_heap *h = live_heaps, *next;
    for (; h; h = next) {
        next = h->next;
        if (heap_is_mine(h))
            continue;
        if (bm_fork_heap_repair(h)) {
            heap_retire(h);
            atomic_fetch_add(&bm_fork_heaps_retired, 1);
        } else {
            live_unlink(h);             /* not pooled: its slabs still name it */
            atomic_fetch_add(&bm_fork_heaps_lost, 1);
        }
    }
    bm_slab_reclaim_abandoned(ULONG_MAX);   /* what the retired heaps left (fork child) */
}

/*
 * Counts for the statistics: what every heap allocated minus what every
 * heap freed (a block may be freed by another thread than the one that
 * allocated it), the retired totals plus every live heap's. Live heaps'
 * counters are read while their owners write them: a statistic, racy by
 * design like the kernel's per-CPU counters; heaps are never unmapped, so
 * the reads are safe.
 */
__attribute__((no_sanitize("thread")))
/* Sum the live heaps' counters into t (which holds the retired ones).
 * heaps_lock held. */
static void add_live_heaps(struct bm_heap_totals *t)
{
    t->heaps = 0;
    for (struct bm_heap *h = live_heaps; h; h = h->next) {
        for (unsigned c = 0; c < BM_NR_CLASSES; c++) {
            t->nalloc[c] += __atomic_load_n(&h->nalloc[c], __ATOMIC_RELAXED);
            t->nfree[c] += __atomic_load_n(&h->nfree[c], __ATOMIC_RELAXED);
            t->slabs[c] += (unsigned long)__atomic_load_n(&h->slab_net[c], __ATOMIC_RELAXED);
        }
        t->large_nalloc += __atomic_load_n(&h->large_nalloc, __ATOMIC_RELAXED);
        t->large_nfree += __atomic_load_n(&h->large_nfree, __ATOMIC_RELAXED);
        t->large_pages += __atomic_load_n(&h->large_pages, __ATOMIC_RELAXED);
        t->heaps += h->first;       /* threads: a thread has a heap per node */
    }
}

static void retired_totals(struct bm_heap_totals *t)
{
    for (unsigned c = 0; c < BM_NR_CLASSES; c++) {
        t->nalloc[c] = atomic_load(&bm_retired_nalloc[c]);
        t->nfree[c] = atomic_load(&bm_retired_nfree[c]);
        t->slabs[c] = atomic_load(&bm_slab_stats[c].slabs);
    }
    t->large_nalloc = atomic_load(&bm_retired_large_nalloc);
    t->large_nfree = atomic_load(&bm_retired_large_nfree);
    t->large_pages = atomic_load(&bm_retired_large_pages);
}

void bm_heap_totals(struct bm_heap_totals *t)
{
    retired_totals(t);
    bm_mutex_lock(&heaps_lock);
    add_live_heaps(t);
    bm_mutex_unlock(&heaps_lock);
}

/* The same with the heaps lock taken by trylock, which may give up (the
 * live report: the interrupted thread may hold it, or a thread holding it
 * may wait for a lock the interrupted one holds): then false. */
bool bm_heap_totals_try(struct bm_heap_totals *t, bool (*trylock)(bm_mutex_t *))
{
    if (!trylock(&heaps_lock))
        return false;
    retired_totals(t);
    add_live_heaps(t);
    bm_mutex_unlock(&heaps_lock);
    return true;
}

/* The calling thread's heap gives back its empty slabs, current ones too
 * (bm_trim). */
void bm_heap_trim_current(void)
{
    for (struct bm_heap *h = tls_heaps; h; h = h->sib) {
        bm_spin_lock(&h->lock);
        bm_alien_flush(h);
        for (unsigned c = 0; c < BM_NR_CLASSES; c++)
            bm_slab_trim_class(h, c);
        bm_spin_unlock(&h->lock);
    }
}

/* The calling thread's heaps, first to last (statistics, checks). */
struct bm_heap *bm_heap_first(void) { return tls_heaps; }
