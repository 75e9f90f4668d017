/*
 * slab.c - slab caches for small objects, after the kernel's mm/slub.c and
 * mimalloc's pages: a slab is a buddy block (MIGRATE_SLAB, through the
 * pagesets for orders <= PCP_MAX_ORDER) cut into blocks of one size class; its metadata
 * is in the head page descriptor.
 *
 * Each slab has three free lists (mimalloc's sharding):
 *   free         blocks to hand out; only the owner pops (fast path);
 *   local_free   blocks the owner freed; only the owner pushes;
 *   thread_free  blocks other threads freed: one CAS to push, taken whole by
 *                the owner with one exchange when its lists run dry.
 * `used` counts blocks handed out and not yet collected back, so a slab is
 * empty exactly when used == 0. Blocks are carved lazily, a page's worth at
 * a time, so a slab's untouched memory is never faulted in.
 *
 * Per heap and class: the current slab (fast path), a partial queue and a
 * full queue. A current slab that runs dry goes to the back of the partial
 * queue; the slab at the front, which has waited longest and so gathered
 * the most frees, becomes current. A slab still dry when its turn comes goes
 * to the full queue, its heap word tagged SLAB_FULL. The owner's frees into
 * it stay on the fast path (alloc.h masks the tag) and reach the slab when
 * the bin is flushed, which moves it back to partial.
 * The first remote free into a full slab moves it back to the partial
 * queue too, under the owner's heap lock (slab_remote_notify, as SLUB puts
 * a full slab back on the partial list at its first remote free); only
 * blocks coming home through NUMA alien caches still need a bounded scan
 * of the full queue.
 *
 * Hysteresis: a current slab that empties stays (an alloc/free cycle at a
 * slab boundary costs nothing); any other slab that empties goes back to the
 * pagesets at once, which keep about a CPU's worth of recently freed pages
 * for the next slab of any class. So an idle thread holds one slab per class
 * it used. (Keeping a spare empty slab per class as well was measured: no
 * gain in the working-set benchmark once slabs hold 64 blocks, and 30 %
 * more memory with 256 idle threads.)
 */
#include <errno.h>
#include <limits.h>
#include <string.h>

#include "alloc.h"
#include "buddymalloc.h"
#include "slab.h"

struct bm_slab_class_stats bm_slab_stats[BM_NR_CLASSES];

/* Slabs of exited threads, per node and class: a heap adopts only slabs
 * of its own zone. */
static struct abandoned {
    bm_mutex_t lock;
    struct bm_list list;                /* abandoned slabs, linked by lru */
    _Atomic unsigned long n;
} abandoned[BM_MAX_NODES][BM_NR_CLASSES];

static struct abandoned *abandoned_of(int node, unsigned cls) { return &abandoned[node][cls]; }

#define FULL_SCAN 8                     /* full slabs looked at per refill */
#define SWEEP_EVERY 16                  /* a heap's new slabs between looks for
                                         * quiet heaps (at most every 100 ms) */

/* Every SWEEP_EVERY-th slab a heap makes tells its thread, once out of the
 * heap's lock, to look for quiet heaps to sweep (heap.c). */
static __thread bool sweep_due __attribute__((tls_model("initial-exec")));
#define PARTIAL_SCAN 4                  /* partial slabs compared per refill */
#define ABANDONED_SCAN 8                /* abandoned slabs looked at per refill */

void bm_slabs_init(void)
{
    for (int n = 0; n < BM_MAX_NODES; n++)
        for (unsigned c = 0; c < BM_NR_CLASSES; c++)
            list_init(&abandoned[n][c].list);
}

static inline struct bm_page *lru_slab(struct bm_list *l) { return lru_to_page(l); }

/* The owner enters a slow path: its heap's lock, and a tick that tells
 * sweepers it is not quiet (only the owner writes it: no read-modify-write). */
static inline void heap_lock_tick(struct bm_heap *h)
{
    bm_spin_lock(&h->lock);
    atomic_store_explicit(&h->ticks, atomic_load_explicit(&h->ticks, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

/* ---- harden=secure: guard pages and random block order ------------------ */

struct bm_guard_stats bm_guard_stats;

/* The last page of a slab becomes PROT_NONE: a run off the end of the last
 * block faults at once. It costs a mprotect per slab made and one per slab
 * freed, and two mappings each: at the kernel's limit of mappings
 * (vm.max_map_count) mprotect fails and the slab goes without (counted). */
static char *guard_page(struct bm_page *s, unsigned order)
{
    return (char *)page_to_addr(s) + ((BM_PAGE_SIZE << order) - BM_PAGE_SIZE);
}

static void slab_guard(struct bm_page *s, unsigned order)
{
    if (bm_os_protect(guard_page(s, order), BM_PAGE_SIZE, true) == 0)
        atomic_fetch_add_explicit(&bm_guard_stats.pages, 1, memory_order_relaxed);
    else
        atomic_fetch_add_explicit(&bm_guard_stats.failed, 1, memory_order_relaxed);
}

/* Before the pages go back: the guard page readable again (harmless where
 * slab_guard failed). If even that fails the pages are kept out of use for
 * good rather than handed out unreadable. */
static bool slab_unguard(struct bm_page *s, unsigned order)
{
    if (bm_os_protect(guard_page(s, order), BM_PAGE_SIZE, false) == 0)
        return true;
    atomic_fetch_add_explicit(&bm_guard_stats.leaked, 1u << order, memory_order_relaxed);
    return false;
}

/* A thread's generator for block order (splitmix64), seeded from the
 * link key, the heap and the clock. */
static __thread uint64_t shuffle_state __attribute__((tls_model("initial-exec")));

static uint64_t shuffle_next(const struct bm_heap *h)
{
    if (!shuffle_state)
        shuffle_state = bm_link_key ^ (uintptr_t)h ^ bm_now_ns();
    uint64_t z = (shuffle_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Carve every block of a new slab at once, in a random order (a
 * Fisher-Yates shuffle of the block indices): which block malloc hands out
 * next, and so what lies next to it, cannot be predicted from the order of
 * earlier mallocs. The slab is touched whole, unlike slab_extend's lazy
 * carving. */
static void slab_carve_shuffled(struct bm_page *s, const struct bm_heap *h)
{
    const struct bm_class *c = &bm_classes[s->slab.cls];
    uint16_t idx[1024];             /* secure classes hold at most 512 */
    unsigned n = c->capacity < 1024 ? c->capacity : 1024;   /* the rest lazily */
    for (unsigned i = 0; i < n; i++)
        idx[i] = (uint16_t)i;
    for (unsigned i = n - 1; i > 0; i--) {
        unsigned j = (unsigned)(shuffle_next(h) % (i + 1));
        uint16_t t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
    char *base = (char *)page_to_addr(s);
    void *next = NULL;
    for (unsigned i = 0; i < n; i++) {
        void *b = base + (size_t)idx[i] * c->size;
        bm_link_set(b, next);
        next = b;
    }
    s->slab.free = next;
    __atomic_store_n(&s->slab.reserved, (uint16_t)n, __ATOMIC_RELAXED);
}

static struct bm_page *slab_new(struct bm_heap *h, unsigned cls)
{
    const struct bm_class *c = &bm_classes[cls];
    struct bm_page *s = bm_alloc_block_zone(c->order, MIGRATE_SLAB, 0, h->node);
    if (!s)
        return NULL;
    s->slab.free = NULL;
    s->slab.local_free = NULL;
    atomic_store_explicit(&s->slab.thread_free, 0, memory_order_relaxed);
    atomic_store_explicit(&s->slab.heap, (uintptr_t)h, memory_order_relaxed);
    s->slab.used = 0;
    s->slab.reserved = 0;
    s->slab.cls = (uint8_t)cls;
    for (unsigned long i = 1; i < (1UL << c->order); i++) {
        s[i].lru.next = &s->lru;
        s[i].head_off = (uint16_t)i;
        set_page_flags(&s[i], PG_tail);
    }
    set_page_flags(s, PG_alloc | PG_slab);
    if (bm_g.opt.harden >= BM_HARDEN_SECURE)
        slab_guard(s, c->order);
    __atomic_store_n(&h->slab_net[cls], h->slab_net[cls] + 1, __ATOMIC_RELAXED);
    if ((++h->slabs_made & (SWEEP_EVERY - 1)) == 0)
        sweep_due = true;
    return s;
}

/* h: the heap whose lock is held (its count), or NULL for a slab that
 * belongs to no heap (abandoned). */
static void slab_destroy(struct bm_page *s, struct bm_heap *h)
{
    unsigned cls = s->slab.cls, order = bm_classes[cls].order;
    for (unsigned long i = 1; i < (1UL << order); i++) {
        set_page_flags(&s[i], 0);
        s[i].head_off = 0;
    }
    set_page_flags(s, PG_alloc);
    if (h)
        __atomic_store_n(&h->slab_net[cls], h->slab_net[cls] - 1, __ATOMIC_RELAXED);
    else
        atomic_fetch_sub_explicit(&bm_slab_stats[cls].slabs, 1, memory_order_relaxed);
    if (bm_g.opt.harden >= BM_HARDEN_SECURE && !slab_unguard(s, order)) {
        set_page_flags(s, PG_alloc | PG_internal);
        return;
    }
    bm_free_block(s, order);
}

/* Carve the next blocks of the slab onto its free list (which is empty). */
static void slab_extend(struct bm_page *s)
{
    const struct bm_class *c = &bm_classes[s->slab.cls];
    unsigned n = c->capacity - s->slab.reserved;
    if (n > c->extend)
        n = c->extend;
    char *b = (char *)page_to_addr(s) + (size_t)s->slab.reserved * c->size;
    for (unsigned i = 0; i + 1 < n; i++)
        bm_link_set(b + (size_t)i * c->size, b + (size_t)(i + 1) * c->size);
    bm_link_set(b + (size_t)(n - 1) * c->size, s->slab.free);
    s->slab.free = b;
    /* other threads read it to check a pointer they free */
    __atomic_store_n(&s->slab.reserved, (uint16_t)(s->slab.reserved + n), __ATOMIC_RELAXED);
}

/*
 * Gather what was freed into the slab: the owner's local frees when the
 * free list is empty, and every remote free. Owner (or holder of the
 * abandoned list) only.
 */
/* Cost: O(blocks collected): each remote free is walked once. */
static void slab_collect(struct bm_page *s)
{
    if (!s->slab.free) {
        s->slab.free = s->slab.local_free;
        s->slab.local_free = NULL;
    }
    if (!atomic_load_explicit(&s->slab.thread_free, memory_order_relaxed))
        return;
    uintptr_t tf = atomic_exchange_explicit(&s->slab.thread_free, 0, memory_order_acquire);
    void *tail = (void *)tf, *next;
    unsigned n = 1;
    /* More blocks than were handed out (a double free by other threads,
     * which may also have made the list a cycle): stop counting there. */
    while ((next = bm_link_next(tail, "malloc")) && n <= s->slab.used) {
        tail = next;
        n++;
    }
    if (unlikely(n > s->slab.used))
        bm_fatal_bad_pointer("free", (void *)tf,
                             "double free: more blocks freed into the slab by other threads "
                             "than it handed out");
    bm_link_set(tail, s->slab.free);
    s->slab.free = (void *)tf;
    s->slab.used = (uint16_t)(s->slab.used - n);
}

/* Collect, then carve more if needed: does the slab have a free block? */
static bool slab_refill(struct bm_page *s)
{
    slab_collect(s);
    if (!s->slab.free && s->slab.reserved < bm_classes[s->slab.cls].capacity)
        slab_extend(s);
    return s->slab.free != NULL;
}

/*
 * A slab with nothing to give goes to the full queue, its heap word tagged
 * SLAB_FULL. The first remote free into it then moves it back to the
 * partial queue (slab_remote_notify), so the owner learns of remote frees
 * as they happen instead of by scanning. The tag and a racing remote free
 * are ordered like Dekker's flags: the tag is set with a full barrier
 * before thread_free is read, and the remote free's CAS comes before its
 * read of the tag, so either the remote sees the tag or this sees its
 * block - then the slab goes to the partial queue at once. Heap lock held.
 */
/* Onto h's partial queue, untagged (FIFO: the one freed into longest
 * comes first). Heap lock held. */
static void to_partial(struct bm_heap *h, unsigned cls, struct bm_page *s)
{
    atomic_store_explicit(&s->slab.heap, (uintptr_t)h, memory_order_relaxed);
    list_add_tail(&h->q[cls].partial, &s->lru);
    h->q[cls].nr_partial++;
}

/* A slab of h's full queue that has blocks again. Heap lock held. */
static void full_to_partial(struct bm_heap *h, unsigned cls, struct bm_page *s)
{
    list_del(&s->lru);
    h->q[cls].nr_full--;
    to_partial(h, cls, s);
}

static void to_full(struct bm_heap *h, unsigned cls, struct bm_page *s)
{
    atomic_exchange_explicit(&s->slab.heap, (uintptr_t)h | SLAB_FULL, memory_order_seq_cst);
    if (atomic_load_explicit(&s->slab.thread_free, memory_order_seq_cst)) {
        to_partial(h, cls, s);
        return;
    }
    list_add_tail(&h->q[cls].full, &s->lru);
    h->q[cls].nr_full++;
}

_Atomic uint64_t bm_slab_notified;      /* full slabs moved by a remote free */

/*
 * A remote free found slab s tagged SLAB_FULL: move it to its owner's
 * partial queue, under the owner's heap lock, where every queue change is
 * made. The tag is read again under the lock: the owner may have taken the
 * slab off the full queue meanwhile, or retired (its slabs are abandoned,
 * heap word 0, under the same lock; a heap's memory is never unmapped, so
 * the lock stays valid). The caller holds no lock (a heap lock is never
 * taken inside another). O(1).
 */
static BM_COLD void slab_remote_notify(struct bm_page *s, uintptr_t w)
{
    struct bm_heap *o = (struct bm_heap *)(w & ~SLAB_FULL);
    bm_spin_lock(&o->lock);
    if (atomic_load_explicit(&s->slab.heap, memory_order_relaxed) == w) {
        /* The class read again here, not the caller's: between its push
         * and its load of the heap word (a preempted thread: any time),
         * the slab may have been emptied, freed and made anew for another
         * class, and moving it to the old class's queue hands out blocks
         * of the wrong size. The word equal to w under o's lock means the
         * slab is on o's full queue of the class it has now. */
        full_to_partial(o, s->slab.cls, s);
        atomic_fetch_add_explicit(&bm_slab_notified, 1, memory_order_relaxed);
    }
    bm_spin_unlock(&o->lock);
}

/* Blocks a slab must have free to be worth making current. */
static inline unsigned min_take(unsigned cls)
{
    unsigned q = bm_classes[cls].capacity / 4;
    return q > 2 ? q : 2;
}

/* A slab with a free block for heap h, class cls, cheapest source first. */
/* Cost: amortised O(PARTIAL_SCAN + FULL_SCAN + ABANDONED_SCAN): a partial
 * slab moved to the full queue on the way was paid for by its mallocs. */
static struct bm_page *slab_find(struct bm_heap *h, unsigned cls)
{
    struct bm_heap_class *q = &h->q[cls];
    unsigned capacity = bm_classes[cls].capacity;

    /* The partial slab with the most blocks to give (among the first
     * PARTIAL_SCAN): a slab with one free block would be dry again at the
     * next malloc. Each scanned slab first collects what other threads
     * freed into it, so capacity - used counts every block it can give.
     * Slabs with none go to the full queue on the way. If even the best
     * has less than a quarter of its blocks free, a new slab is made
     * instead (below) and the partial ones gather frees meanwhile: without
     * that slack a heap runs its slabs full and every malloc changes slab.
     * The scanned ones then go to the back of the queue, so the next scan
     * sees others: a window stuck on the same few slabs let a queue whose
     * blocks came back by remote frees grow without bound. */
    unsigned min = min_take(cls);
    struct bm_page *fallback = NULL;
    while (!list_empty(&q->partial)) {
        struct bm_page *best = NULL, *seen[PARTIAL_SCAN];
        unsigned best_free = 0, n = 0, nseen = 0;
        for (struct bm_list *l = q->partial.next, *next; l != &q->partial && n < PARTIAL_SCAN;
             l = next, n++) {
            struct bm_page *s = lru_slab(l);
            next = l->next;
            if (atomic_load_explicit(&s->slab.thread_free, memory_order_relaxed))
                slab_collect(s);
            unsigned avail = capacity - s->slab.used;
            if (avail == 0) {
                list_del(&s->lru);
                q->nr_partial--;
                to_full(h, cls, s);
                continue;
            }
            seen[nseen++] = s;
            if (avail >= best_free) {
                best = s;
                best_free = avail;
            }
        }
        if (!best)
            continue;               /* the scanned ones were full; look on */
        if (best_free < min) {
            fallback = best;        /* if no new slab can be had */
            for (unsigned i = 0; i < nseen; i++) {
                list_del(&seen[i]->lru);
                list_add_tail(&q->partial, &seen[i]->lru);
            }
            break;
        }
        list_del(&best->lru);
        q->nr_partial--;
        if (slab_refill(best))
            return best;
        to_full(h, cls, best);
    }

    /* Remote frees into full slabs move them to the partial queue as they
     * happen (slab_remote_notify), except those that come home through
     * another heap's alien cache (NUMA: pushed under that heap's lock,
     * which may not nest the owner's): on several nodes, look at the
     * oldest few full slabs, and rotate. */
    for (unsigned i = 0; i < (bm_g.nr_nodes > 1 ? FULL_SCAN : 0) && !list_empty(&q->full); i++) {
        struct bm_page *s = lru_slab(q->full.next);
        list_del(&s->lru);
        if (atomic_load_explicit(&s->slab.thread_free, memory_order_relaxed)) {
            q->nr_full--;
            atomic_store_explicit(&s->slab.heap, (uintptr_t)h, memory_order_relaxed);
            if (slab_refill(s))
                return s;
            to_full(h, cls, s);
            continue;
        }
        list_add_tail(&q->full, &s->lru);
    }

    /* Slabs of threads that exited: adopt one with a fair share of blocks
     * to give (as for a partial slab: min_take). One with fewer stays
     * ownerless, rotated to the back: its blocks are other threads' live
     * data, and taking it would only park it in this heap's full queue,
     * where its remote frees wait for this owner's scans. Left in the
     * abandoned list, it goes back to the pages as soon as those frees
     * empty it (bm_slab_reclaim_abandoned: thread exit, sweeps, trim).
     * At most ABANDONED_SCAN looked at per call. */
    struct abandoned *ab = abandoned_of(h->node, cls);
    for (unsigned i = 0; i < ABANDONED_SCAN && atomic_load_explicit(&ab->n, memory_order_relaxed);
         i++) {
        struct bm_page *s = NULL;
        bm_mutex_lock(&ab->lock);
        if (!list_empty(&ab->list)) {
            s = lru_slab(ab->list.next);
            list_del(&s->lru);
            slab_collect(s);            /* the list's lock makes us its owner */
            if ((unsigned)(capacity - s->slab.used) < min && s->slab.used) {
                list_add_tail(&ab->list, &s->lru);
                s = NULL;
                bm_mutex_unlock(&ab->lock);
                continue;
            }
            atomic_fetch_sub_explicit(&ab->n, 1, memory_order_relaxed);
            /* owned again, under the lock that orphan_free checks it with */
            atomic_store_explicit(&s->slab.heap, (uintptr_t)h, memory_order_relaxed);
        }
        bm_mutex_unlock(&ab->lock);
        if (!s)
            break;
        atomic_fetch_sub_explicit(&bm_slab_stats[cls].abandoned, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&bm_slab_stats[cls].adopted, 1, memory_order_relaxed);
        if (slab_refill(s))
            return s;
        to_full(h, cls, s);
    }

    struct bm_page *s = slab_new(h, cls);
    if (s) {
        if (bm_g.opt.harden >= BM_HARDEN_SECURE)
            slab_carve_shuffled(s, h);
        else
            slab_extend(s);
        return s;
    }
    if (fallback) {                 /* out of memory: take what there is */
        list_del(&fallback->lru);
        q->nr_partial--;
        if (slab_refill(fallback))
            return fallback;
        to_full(h, cls, fallback);
    }
    return NULL;
}

/* Slow path of malloc: the current slab's free list is empty (or the thread
 * has no heap yet). */
BM_COLD void *bm_malloc_slow(struct bm_heap *h, unsigned cls)
{
    if (h == &bm_heap_empty) {
        h = bm_heap_create();
        if (!h)
            return NULL;
    }
    heap_lock_tick(h);
    struct bm_page *s = h->cur[cls];
    if (s != &bm_slab_empty) {
        /* Keep the current slab while collecting gives it a good share of
         * blocks; a slab that only gets back the one or two just freed
         * (a working set as large as the slab) would come back here at
         * every malloc: let slab_find add slack instead. Blocks never
         * carved are no trickle of frees: they are handed out to the last
         * (a heap that only allocates left up to a quarter of every slab
         * unused: 11.5 % of 2.4 GB in bench/frag-at-size's first phase). */
        bool uncarved = s->slab.reserved < bm_classes[cls].capacity;
        if (slab_refill(s) &&
            (uncarved || (unsigned)(bm_classes[cls].capacity - s->slab.used) >= min_take(cls)))
            goto pop;
        /* Dry: to the back of the partial queue, untagged, so that frees
         * into it stay on the fast path while it waits its turn. Only a
         * slab still dry when its turn comes is moved to the full queue. */
        list_add_tail(&h->q[cls].partial, &s->lru);
        h->q[cls].nr_partial++;
        h->cur[cls] = &bm_slab_empty;
    }
    s = slab_find(h, cls);
    if (!s) {
        bm_spin_unlock(&h->lock);
        errno = ENOMEM;
        return NULL;
    }
    h->cur[cls] = s;
pop:;
    void *b = s->slab.free;
    s->slab.free = bm_link_pop(b);
    s->slab.used++;
    h->nalloc[cls]++;
    bm_spin_unlock(&h->lock);
    if (unlikely(sweep_due)) {
        sweep_due = false;
        bm_heaps_sweep(h, false);
    }
    return b;
}

/*
 * Give block p back to its slab s, owned by h: the local free list, the
 * partial queue if the slab was full, the pages if it empties and is not
 * current.
 */
static inline __attribute__((always_inline)) void slab_free_local(struct bm_heap *h, struct bm_page *s, void *p,
                                                            const char *fn)
{
    unsigned cls = s->slab.cls;
    uintptr_t owner = atomic_load_explicit(&s->slab.heap, memory_order_relaxed);
    if (s->slab.used == 0 || p == s->slab.local_free || p == s->slab.free)
        bm_fatal_bad_pointer(fn, p, "double free");
    bm_link_set(p, s->slab.local_free);
    s->slab.local_free = p;
    s->slab.used--;
    struct bm_heap_class *q = &h->q[cls];
    if (owner & SLAB_FULL)
        full_to_partial(h, cls, s);
    if (s->slab.used == 0 && s != h->cur[cls]) {
        list_del(&s->lru);
        q->nr_partial--;
        slab_destroy(s, h);
    }
}

static struct bm_page *slab_of_block(void *p)
{
    struct bm_page *s = addr_to_page((uintptr_t)p);
    return s - s->head_off;
}

/* Empty the bin of class cls: every block back to its slab (thread exit,
 * trim, and the checks that need the slabs' own counts). */
/* Cost: O(BIN_MAX). */
void bm_bin_flush(struct bm_heap *h, unsigned cls)
{
    void *rest = h->bin[cls];
    h->bin[cls] = NULL;
    h->bin_n[cls] = bm_bin_empty_n();
    while (rest) {
        void *next = bm_link_next(rest, "free");
        struct bm_page *s = slab_of_block(rest);
        if (!slab_block_ok(s, (uintptr_t)rest))
            bm_fatal_bad_pointer("free", rest,
                                 "invalid pointer (inside a slab but not at a block start)");
        slab_free_local(h, s, rest, "free");
        rest = next;
    }
}

/* Is p on one of the lists that hold free blocks of s: h's bin of its
 * class (h owns s) or the slab's free, local_free and thread_free lists?
 * Asked only when p's first word decodes as a link (bm_link_looks_free),
 * so almost only for a real double free; a false "yes" cannot come from a
 * live block. Walks are bounded by the slab's capacity: a corrupt list
 * ends the walk, and the pop that meets it reports it. */
static bool list_has(const void *head, const void *p, unsigned limit)
{
    for (const void *b = head; b && limit; b = bm_link_peek(b), limit--) {
        if (b == p)
            return true;
        if (!bm_addr_mapped((uintptr_t)b))
            return false;
    }
    return false;
}

/* Cost: O(slab capacity), bounded walks: only when a free looks double. */
static bool block_is_listed(struct bm_heap *h, struct bm_page *s, const void *p)
{
    unsigned limit = bm_classes[s->slab.cls].capacity + BIN_MAX + 1;
    if (h && list_has(h->bin[s->slab.cls], p, limit))
        return true;
    if (h && (list_has(s->slab.free, p, limit) || list_has(s->slab.local_free, p, limit)))
        return true;
    return list_has((void *)atomic_load_explicit(&s->slab.thread_free, memory_order_acquire), p,
                    limit);
}

/*
 * free of a block of this thread's slab s when the bin is full (batch
 * frees: hot, so not marked cold) or p is on top of it (a double free):
 * the bin goes back to the slabs whole, no walk to find what to keep, and
 * p starts it again. Also the owner's case of bm_free_slab_slow.
 */
void bm_free_local(struct bm_heap *h, struct bm_page *s, void *p, const char *fn)
{
    unsigned cls = s->slab.cls;
    if (p == h->bin[cls])
        bm_fatal_bad_pointer(fn, p, "double free");
    if (!slab_block_ok(s, (uintptr_t)p))
        bm_fatal_bad_pointer(fn, p, "invalid pointer (inside a slab but not at a block start)");
    if (bm_link_looks_free(p) && block_is_listed(h, s, p))
        bm_fatal_bad_pointer(fn, p, "double free (the block is on a free list)");
    heap_lock_tick(h);
    if (unlikely(bm_g.opt.harden >= BM_HARDEN_SECURE)) {
        /* bins off: straight to the slab, where a block freed twice is
         * found on its lists (slab_free_local) */
        slab_free_local(h, s, p, fn);
        bm_spin_unlock(&h->lock);
        h->nfree[cls]++;
        return;
    }
    bm_bin_flush(h, cls);
    bm_spin_unlock(&h->lock);
    bm_link_set(p, NULL);
    h->bin[cls] = p;
    h->bin_n[cls] = 1;
    h->nfree[cls]++;
}

/*
 * Remote frees across nodes (the kernel's SLAB alien caches): a block of a
 * slab on another node than the freeing CPU's goes on a chain for its slab
 * in the freeing heap's alien cache. When BM_ALIEN_OBJS blocks wait, or
 * the cache is three quarters full of slabs (or the heap is swept, trimmed
 * or retired), every chain goes home with one CAS onto its slab's
 * thread_free list, and the owner collects it as it collects any remote
 * free. So a thread that frees another node's objects costs their slabs one
 * atomic per slab and flush instead of one per object, and nothing it frees
 * is handed out again on its own node. Heap lock held.
 */
static void push_chain(struct bm_page *s, void *head, void *tail)
{
    uintptr_t old = atomic_load_explicit(&s->slab.thread_free, memory_order_relaxed);
    do {
        bm_link_set(tail, (void *)old);
    } while (!atomic_compare_exchange_weak_explicit(&s->slab.thread_free, &old, (uintptr_t)head,
                                                    memory_order_seq_cst, memory_order_relaxed));
}

_Atomic uint64_t bm_slab_orphans_freed;     /* abandoned slabs emptied and freed */

/* An abandoned slab found empty, already off ab's list: back to the pages.
 * ab's lock held. */
static void abandoned_destroy(struct abandoned *ab, struct bm_page *s, unsigned cls)
{
    atomic_fetch_sub_explicit(&ab->n, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&bm_slab_stats[cls].abandoned, 1, memory_order_relaxed);
    slab_destroy(s, NULL);
}

/*
 * A remote free into an abandoned slab (heap word 0). abandon() set
 * orphan_live to the blocks live then; the free that takes it to zero has
 * seen every one of them come back, so the slab goes back to the pages at
 * once instead of waiting on the abandoned list for a sweep or a thread
 * exit (larson with 32 threads held about 1,700 such slabs, 50 MiB, at its
 * end). The count is a hint: a free that raced with the abandonment or
 * with an adoption may miss it or count twice, so the slab is checked under
 * the list's lock (still ownerless and a slab of this class: on the list),
 * collected and freed only if empty; a slab the hint misses is left to
 * bm_slab_reclaim_abandoned as before. The caller holds no lock.
 */
/* Cost: O(1): an atomic decrement; the last one a lock and a slab free. */
static BM_COLD void orphan_free(struct bm_page *s, unsigned cls)
{
    if (atomic_fetch_sub_explicit(&s->slab.orphan_live, 1, memory_order_relaxed) != 1)
        return;
    struct abandoned *ab = abandoned_of(page_zone(s)->node, cls);
    bm_mutex_lock(&ab->lock);
    if ((page_flags(s) & PG_slab) && s->slab.cls == cls &&
        atomic_load_explicit(&s->slab.heap, memory_order_relaxed) == 0) {
        slab_collect(s);                /* the list's lock makes us its owner */
        if (s->slab.used == 0) {
            list_del(&s->lru);
            atomic_fetch_add_explicit(&bm_slab_orphans_freed, 1, memory_order_relaxed);
            abandoned_destroy(ab, s, cls);
        }
    }
    bm_mutex_unlock(&ab->lock);
}

/* Cost: O(BM_ALIEN_SLOTS) pushes, one CAS each. */
void bm_alien_flush(struct bm_heap *h)
{
    struct bm_alien *a = h->alien;
    if (!a || !a->objs)
        return;
    for (unsigned i = 0; i < BM_ALIEN_SLOTS; i++) {
        struct bm_alien_slot *sl = &a->slot[i];
        if (!sl->slab)
            continue;
        push_chain(sl->slab, sl->head, sl->tail);
        struct bm_zone *z = page_zone(sl->slab);
        atomic_fetch_add_explicit(&z->slab_remote_free, sl->n, memory_order_relaxed);
        atomic_fetch_add_explicit(&z->slab_remote_batches, 1, memory_order_relaxed);
        sl->slab = NULL;
    }
    a->objs = a->used = 0;
}

/* The slot of slab s, taken if free (linear probing from a hash of the
 * slab's address); the cache is flushed before it is three quarters full,
 * so a slot is always found. */
static struct bm_alien_slot *alien_slot(struct bm_alien *a, struct bm_page *s)
{
    unsigned i = (unsigned)(((uintptr_t)s >> 6) * 0x9e3779b1u >> 26) % BM_ALIEN_SLOTS;
    while (a->slot[i].slab && a->slot[i].slab != s)
        i = (i + 1) % BM_ALIEN_SLOTS;
    struct bm_alien_slot *sl = &a->slot[i];
    if (!sl->slab) {
        sl->slab = s;
        sl->head = sl->tail = NULL;
        sl->n = 0;
        a->used++;
    }
    return sl;
}

/* A heap's alien cache: a page of the allocator's own (heap lock held). */
static struct bm_alien *alien_new(void)
{
    struct bm_page *pg = bm_alloc_block(0, MIGRATE_SLAB, BM_GFP_NOPCP);
    if (!pg)
        return NULL;
    set_page_flags(pg, PG_alloc | PG_internal);
    struct bm_alien *a = page_to_addr(pg);
    BM_VG_UNDEFINED(a, BM_PAGE_SIZE);
    memset(a, 0, sizeof *a);
    return a;
}

/* free of block p of slab s, which lies on another node than the CPU
 * freeing it: onto its slab's chain in h's alien cache (above). A block
 * freed twice while it waits is found on that chain. Without memory for a
 * cache, the block goes home at once. */
static void alien_free(struct bm_heap *h, struct bm_page *s, void *p, const char *fn)
{
    bool looks_free = bm_link_looks_free(p);
    if (looks_free && block_is_listed(NULL, s, p))
        bm_fatal_bad_pointer(fn, p, "double free (the block is on the slab's remote free list)");
    heap_lock_tick(h);
    if (!h->alien && !(h->alien = alien_new())) {
        bm_spin_unlock(&h->lock);
        push_chain(s, p, p);
        h->nfree[s->slab.cls]++;
        return;
    }
    struct bm_alien *a = h->alien;
    struct bm_alien_slot *sl = alien_slot(a, s);
    if (looks_free && list_has(sl->head, p, sl->n + 1)) {
        bm_spin_unlock(&h->lock);
        bm_fatal_bad_pointer(fn, p, "double free (the block is waiting to go home to its node)");
    }
    bm_link_set(p, sl->head);
    sl->head = p;
    if (!sl->tail)
        sl->tail = p;
    sl->n++;
    if (++a->objs >= BM_ALIEN_OBJS || a->used > BM_ALIEN_SLOTS * 3 / 4)
        bm_alien_flush(h);
    bm_spin_unlock(&h->lock);
    h->nfree[s->slab.cls]++;
}

/*
 * Slow path of free for a slab block: a block of another thread's (or an
 * abandoned) slab, or a pointer that fails the checks.
 */
BM_COLD void bm_free_slab_slow(struct bm_page *s, void *p, struct bm_heap *h, const char *fn)
{
    unsigned cls = s->slab.cls;
    if (!slab_block_ok(s, (uintptr_t)p))
        bm_fatal_bad_pointer(fn, p, "invalid pointer (inside a slab but not at a block start)");
    uintptr_t owner = atomic_load_explicit(&s->slab.heap, memory_order_relaxed);

    if (h != &bm_heap_empty && (owner & ~SLAB_FULL) == (uintptr_t)h) {
        bm_free_local(h, s, p, fn);
        return;
    }
    if (bm_g.nr_nodes > 1 && page_zone(s)->node != bm_cpu_node(bm_cpu())) {
        /* a thread that only frees gets a heap for its alien buffer */
        if (h == &bm_heap_empty)
            h = bm_heap_create();
        if (h) {
            alien_free(h, s, p, fn);
            return;
        }
        h = &bm_heap_empty;
    }

    /* Another thread's slab (or an abandoned one): one CAS. A block that
     * looks free is looked for on the slab's thread_free list only: the
     * others are the owner's, changing under us. */
    if (bm_link_looks_free(p) && block_is_listed(NULL, s, p))
        bm_fatal_bad_pointer(fn, p, "double free (the block is on the slab's remote free list)");
    push_chain(s, p, p);
    /* after the push (a full barrier), the tag: see to_full */
    uintptr_t w = atomic_load_explicit(&s->slab.heap, memory_order_seq_cst);
    if (unlikely(w & SLAB_FULL))
        slab_remote_notify(s, w);
    else if (unlikely(w == 0))
        orphan_free(s, cls);
    if (h != &bm_heap_empty)
        h->nfree[cls]++;
    else
        atomic_fetch_add_explicit(&bm_retired_nfree[cls], 1, memory_order_relaxed);
}

static void abandon(struct bm_page *s, unsigned cls)
{
    struct abandoned *ab = abandoned_of(page_zone(s)->node, cls);
    atomic_store_explicit(&s->slab.orphan_live, s->slab.used, memory_order_relaxed);
    bm_mutex_lock(&ab->lock);
    atomic_store_explicit(&s->slab.heap, 0, memory_order_release);
    list_add_tail(&ab->list, &s->lru);
    atomic_fetch_add_explicit(&ab->n, 1, memory_order_relaxed);
    bm_mutex_unlock(&ab->lock);
    atomic_fetch_add_explicit(&bm_slab_stats[cls].abandoned, 1, memory_order_relaxed);
}

/* Thread exit: an empty slab goes back to the pages, any other is
 * abandoned. */
static void settle(struct bm_heap *h, struct bm_page *s, unsigned cls)
{
    slab_collect(s);
    if (s->slab.used == 0)
        slab_destroy(s, h);
    else
        abandon(s, cls);
}

static void drain_queue(struct bm_heap *h, struct bm_list *l)
{
    while (!list_empty(l)) {
        struct bm_page *s = lru_slab(l->next);
        list_del(&s->lru);
        settle(h, s, s->slab.cls);
    }
}

/* Thread exit: every slab of the class is freed or abandoned. */
void bm_slab_release_class(struct bm_heap *h, unsigned cls)
{
    struct bm_heap_class *q = &h->q[cls];
    bm_bin_flush(h, cls);
    if (h->cur[cls] != &bm_slab_empty)
        settle(h, h->cur[cls], cls);
    h->cur[cls] = &bm_slab_empty;
    drain_queue(h, &q->partial);
    drain_queue(h, &q->full);
    q->nr_partial = q->nr_full = 0;
}

/*
 * The queues of heap h, class cls: every slab collects its remote frees; an
 * empty one goes back to the pages, a full one that has blocks again goes
 * to the partial queue. The current slab is not touched. Heap lock held
 * (by the owner at bm_trim, or by a thread sweeping a quiet heap).
 */
void bm_slab_sweep_class(struct bm_heap *h, unsigned cls, unsigned long limit)
{
    /* At most `limit` slabs of each queue, from its front; those kept go
     * to the back, so successive bounded sweeps go round the whole queue.
     * O(limit): a sweep's cost does not grow with the heap (bm_trim's
     * complete one, limit ULONG_MAX, is linear). */
    struct bm_heap_class *q = &h->q[cls];
    struct bm_list keep;
    list_init(&keep);
    for (unsigned long n = q->nr_partial < limit ? q->nr_partial : limit; n--;) {
        struct bm_page *s = lru_slab(q->partial.next);
        list_del(&s->lru);
        slab_collect(s);
        if (s->slab.used == 0) {
            slab_destroy(s, h);
            q->nr_partial--;
        } else {
            list_add_tail(&keep, &s->lru);
        }
    }
    for (unsigned long n = q->nr_full < limit ? q->nr_full : limit; n--;) {
        struct bm_page *s = lru_slab(q->full.next);
        list_del(&s->lru);
        slab_collect(s);
        if (s->slab.used == 0) {
            slab_destroy(s, h);
            q->nr_full--;
        } else if (s->slab.free) {
            q->nr_full--;
            q->nr_partial++;
            atomic_store_explicit(&s->slab.heap, (uintptr_t)h, memory_order_relaxed);
            list_add_tail(&keep, &s->lru);
        } else {
            list_add_tail(&q->full, &s->lru);
        }
    }
    while (!list_empty(&keep)) {
        struct bm_page *s = lru_slab(keep.next);
        list_del(&s->lru);
        list_add_tail(&q->partial, &s->lru);
    }
}

/* bm_trim: give back every slab of the calling thread that is empty once
 * remote frees are collected, the current ones too. Heap lock held. */
void bm_slab_trim_class(struct bm_heap *h, unsigned cls)
{
    bm_bin_flush(h, cls);
    struct bm_page *cur = h->cur[cls];
    if (cur != &bm_slab_empty) {
        slab_collect(cur);
        if (cur->slab.used == 0) {
            slab_destroy(cur, h);
            h->cur[cls] = &bm_slab_empty;
        }
    }
    bm_slab_sweep_class(h, cls, ULONG_MAX);
}

/* Abandoned slabs that remote frees have emptied go back to the pages
 * (thread exit, sweeps, bm_trim): at most `limit` looked at per node and
 * class, from the front, the others rotated to the back (O(limit x
 * classes); ULONG_MAX, bm_trim's, is linear). Returns the number freed. */
unsigned long bm_slab_reclaim_abandoned(unsigned long limit)
{
    unsigned long freed = 0;
    for (int n = 0; n < bm_g.nr_nodes; n++) {
        for (unsigned c = 0; c < BM_NR_CLASSES; c++) {
            struct abandoned *ab = abandoned_of(n, c);
            if (!atomic_load_explicit(&ab->n, memory_order_relaxed))
                continue;
            bm_mutex_lock(&ab->lock);
            unsigned long left = atomic_load_explicit(&ab->n, memory_order_relaxed);
            if (left > limit)
                left = limit;
            while (left-- && !list_empty(&ab->list)) {
                struct bm_page *s = lru_slab(ab->list.next);
                list_del(&s->lru);
                slab_collect(s);
                if (s->slab.used == 0) {
                    abandoned_destroy(ab, s, c);
                    freed++;
                } else {
                    list_add_tail(&ab->list, &s->lru);
                }
            }
            bm_mutex_unlock(&ab->lock);
        }
    }
    return freed;
}

/*
 * Walk one free list of slab s without trusting it: each pointer must be a
 * carved block of s (checked before it is followed) and not yet marked in
 * seen[] (a bit per block index), so a cycle or a block on two lists stops
 * the walk. Blocks are counted into *n; on failure *where is the offset of
 * the foreign pointer or the index of the block seen twice. For the heap
 * checker and for a fork child's check of inherited heaps.
 */
enum bm_list_verdict bm_slab_mark_list(const struct bm_page *s, const void *head, uint64_t *seen,
                                       unsigned long *n, unsigned long *where)
{
    const struct bm_class *k = &bm_classes[s->slab.cls];
    uintptr_t base = (uintptr_t)page_to_addr(s);
    for (const void *b = head; b; b = bm_link_peek(b)) {
        uintptr_t a = (uintptr_t)b;
        if (a < base || !slab_block_ok(s, a)) {
            *where = a - base;
            return BM_LIST_FOREIGN;
        }
        unsigned long i = (a - base) / k->size;
        if (seen[i / 64] & (1ULL << (i % 64))) {
            *where = i;
            return BM_LIST_TWICE;
        }
        seen[i / 64] |= 1ULL << (i % 64);
        ++*n;
    }
    return BM_LIST_OK;
}

/* fork: the abandoned lists' locks, taken in class order (fork.c). */
void bm_slab_fork_locks(enum bm_fork_step step)
{
    for (int n = 0; n < bm_g.nr_nodes; n++)
        for (unsigned c = 0; c < BM_NR_CLASSES; c++)
            bm_fork_mutex(&abandoned[n][c].lock, step);
}

void bm_slab_for_each_quiet(void (*fn)(void *ctx, struct bm_page *s), void *ctx)
{
    for (struct bm_heap *h = bm_heap_first(); h; h = h->sib) {
        bm_spin_lock(&h->lock);            /* against a sweep */
        for (unsigned c = 0; c < BM_NR_CLASSES; c++) {
            if (h->cur[c] != &bm_slab_empty)
                fn(ctx, h->cur[c]);
            struct bm_list *lists[2] = { &h->q[c].partial, &h->q[c].full };
            for (int k = 0; k < 2; k++)
                for (struct bm_list *l = lists[k]->next; l != lists[k]; l = l->next)
                    fn(ctx, lru_slab(l));
        }
        bm_spin_unlock(&h->lock);
    }
    for (int n = 0; n < bm_g.nr_nodes; n++) {
        for (unsigned c = 0; c < BM_NR_CLASSES; c++) {
            struct abandoned *ab = abandoned_of(n, c);
            bm_mutex_lock(&ab->lock);
            for (struct bm_list *l = ab->list.next; l != &ab->list; l = l->next)
                fn(ctx, lru_slab(l));
            bm_mutex_unlock(&ab->lock);
        }
    }
}
