/*
 * large.c - malloc'ed runs of pages (above the slab limit, up to the largest
 * buddy order) and huge allocations (above that: their own mmap).
 *
 * A run is the kernel's alloc_pages_exact: the smallest buddy block that
 * fits (and is aligned enough) is taken, and its unused tail pages go
 * straight back to the buddy, so 40 KiB pins 10 pages, not 16. The head
 * descriptor records PG_large and the page count; freeing gives the pages
 * back as the largest aligned blocks that tile the run. A run grows in place
 * over free pages that follow it and shrinks in place by freeing its tail.
 *
 * Huge allocations are recorded in a small open-addressing table (mapped,
 * never malloc'ed) from address to mapping, so free() and
 * malloc_usable_size() need no header and a foreign pointer is told apart.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "alloc.h"
#include "internal.h"
#include "large.h"
#include "vg.h"
#include "slab.h"

/* ---- runs of pages ---------------------------------------------------- */

static unsigned order_for_pages(size_t npages)
{
    unsigned o = 0;
    while ((1UL << o) < npages)
        o++;
    return o;
}

/* Give pages [start, start + n) back as the largest aligned blocks that tile
 * them, with released/zero state `state`. Zone lock held; their
 * descriptors' flags must be clear. */
/* Cost: O(MAX_ORDER) blocks (at most two per order), each merged. */
static void free_range(struct bm_zone *z, struct bm_page *start, unsigned long n, unsigned state)
{
    unsigned long i = page_index(start), end = i + n;
    struct bm_page *mm = region_mem_map(page_region(start));
    while (i < end) {
        unsigned o = i ? (unsigned)__builtin_ctzl(i) : MAX_ORDER - 1;
        if (o > MAX_ORDER - 1)
            o = MAX_ORDER - 1;
        while (i + (1UL << o) > end)
            o--;
        bm_free_one_page(z, mm + i, o, state);
        i += 1UL << o;
    }
}

struct bm_page *bm_large_alloc(size_t npages, unsigned align_order, bool *zeroed)
{
    unsigned order = order_for_pages(npages);
    if (order < align_order)
        order = align_order;
    if (order >= MAX_ORDER)
        return NULL;
    bm_ensure_init();
    struct bm_zone *z;
    struct bm_page *p = bm_zonelist_rmqueue(bm_zone_now(), order, MIGRATE_LARGE, &z);
    if (p) {
        /* the tail goes back as untouched as the block was */
        unsigned state = z->last_alloc_state;
        *zeroed = state & PG_zero;
        p->flags = PG_alloc | PG_large;
        p->mt = MIGRATE_LARGE;
        p->large.npages = npages;
        if (npages < (1UL << order))
            free_range(z, p + npages, (1UL << order) - npages, state);
        bm_mutex_unlock(&z->lock);
    } else {
        errno = ENOMEM;
    }
    return p;
}

_Atomic uint64_t bm_retired_large_nalloc, bm_retired_large_nfree;
_Atomic int64_t bm_retired_large_pages;

void bm_large_count(int allocs, int64_t pages)
{
    struct bm_heap *h = bm_tls_heap;
    if (likely(h != &bm_heap_empty)) {
        h->large_nalloc += allocs > 0;
        h->large_nfree += allocs < 0;
        h->large_pages += pages;
        return;
    }
    if (allocs > 0)
        atomic_fetch_add_explicit(&bm_retired_large_nalloc, 1, memory_order_relaxed);
    else if (allocs < 0)
        atomic_fetch_add_explicit(&bm_retired_large_nfree, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&bm_retired_large_pages, pages, memory_order_relaxed);
}

void bm_large_free(struct bm_page *p)
{
    unsigned long n = p->large.npages;
    bm_large_count(-1, -(int64_t)n);
    if (n == (1UL << p->order) && p->order <= PCP_MAX_ORDER) {
        /* a whole block: back through the pagesets, as it came (or as
         * bm_large_alloc's exact runs of a power of two are too) */
        set_page_flags(p, PG_alloc);
        bm_free_block(p, p->order);
        return;
    }
    struct bm_zone *z = page_zone(p);
    bm_mutex_lock(&z->lock);
    set_page_flags(p, 0);
    free_range(z, p, n, 0);
    bm_release_maybe(z, n);
    bm_mutex_unlock(&z->lock);
}

/*
 * Resize run p to npages in place: shrinking frees the tail; growing takes
 * the pages after the run if every one of them is in a free block of a
 * LARGE pageblock (so growth never mixes migrate types) inside the region.
 * Returns false, changing nothing, when growth is not possible.
 */
/* Cost: O(blocks taken), at most BM_RUN_MAX_PAGES >> order of each; in
 * proportion to the growth, never to the heap. */
bool bm_large_resize(struct bm_page *p, size_t npages)
{
    struct bm_zone *z = page_zone(p);
    struct bm_page *mm = region_mem_map(page_region(p));
    unsigned long idx = page_index(p), have = p->large.npages, end = idx + npages;
    bool ok = true;

    bm_mutex_lock(&z->lock);
    if (npages <= have) {
        if (npages < have)
            free_range(z, p + npages, have - npages, 0);
        p->large.npages = npages;
        bm_large_count(0, (int64_t)npages - (int64_t)have);
        bm_release_maybe(z, have - npages);
        bm_mutex_unlock(&z->lock);
        return true;
    }
    if (end > REGION_PAGES)
        ok = false;
    /* A free block that holds page idx + have must start there: anything
     * starting earlier would overlap the run. */
    for (unsigned long i = idx + have; ok && i < end;) {
        struct bm_page *b = mm + i;
        if (!(b->flags & PG_buddy) || get_pageblock_mt(b) != MIGRATE_LARGE)
            ok = false;
        else
            i += 1UL << b->order;
    }
    if (ok) {
        for (unsigned long i = idx + have; i < end;) {
            struct bm_page *b = mm + i;
            unsigned o = b->order, state = b->flags & PG_STATE;
            bm_del_free(z, b, o);
            if (i + (1UL << o) > end)
                free_range(z, mm + end, i + (1UL << o) - end, state);
            i += 1UL << o;
        }
        p->large.npages = npages;
        bm_large_count(0, (int64_t)(npages - have));
    }
    bm_mutex_unlock(&z->lock);
    return ok;
}

/* ---- huge: their own mappings -------------------------------------------- */

struct huge_entry {
    uintptr_t addr;             /* 0 empty, 1 deleted */
    size_t size;                /* usable bytes (whole pages) */
    uintptr_t map;              /* the mapping, when aligned above a page */
    size_t map_len;
};

static struct {
    bm_mutex_t lock;
    struct huge_entry *t;
    size_t cap, used, live;     /* used counts live and deleted slots */
    uint64_t allocs, frees, bytes;
} huge;

void bm_huge_fork_lock(enum bm_fork_step step) { bm_fork_mutex(&huge.lock, step); }

static size_t slot_of(uintptr_t a, size_t cap)
{
    return (size_t)(((a >> 12) * 0x9e3779b97f4a7c15ull) >> 20) & (cap - 1);
}

/*
 * The table's size for `live` entries: a power of two, at least 1024, at
 * most a quarter full after the rehash, so that at least a quarter of it
 * is inserted before the next one (amortised O(1) per insert). It follows
 * the live entries, not the allocations ever made: a rehash that only
 * drops tombstones keeps the size, or shrinks it.
 */
static size_t huge_cap_for(size_t live)
{
    size_t cap = 1024;
    while (cap < (live + 1) * 4)
        cap *= 2;
    return cap;
}

/* Rebuild the table at cap slots, without its tombstones. Lock held. */
static bool huge_rehash(size_t cap)
{
    struct huge_entry *t = bm_os_map(cap * sizeof *t, 0);
    if (t == MAP_FAILED)
        return false;
    BM_VG_HIDE(t, cap * sizeof *t);     /* a leaked huge block is not reachable */
    for (size_t i = 0; i < huge.cap; i++) {
        uintptr_t a = huge.t[i].addr;
        if (a > 1) {
            size_t j = slot_of(a, cap);
            while (t[j].addr)
                j = (j + 1) & (cap - 1);
            t[j] = huge.t[i];
        }
    }
    if (huge.t) {
        BM_VG_UNHIDE(huge.t, huge.cap * sizeof *huge.t);
        munmap(huge.t, huge.cap * sizeof *huge.t);
    }
    huge.t = t;
    huge.cap = cap;
    huge.used = huge.live;
    return true;
}

/* A huge mapping goes to the node of the thread's zone, or the nearest
 * one with memory to spare, by the policy of the regions (bm_numa_place),
 * before the caller touches it. */
static void huge_place(void *a, size_t len)
{
    const struct bm_topology *t = &bm_g.topo;
    int zone = bm_zone_now(), target = zone;
    for (int i = 0; t->watch_memory && i < t->nr_zonelist[zone]; i++)
        if (bm_node_has_room(t->zonelist[zone][i])) {
            target = t->zonelist[zone][i];
            break;
        }
    bm_numa_place(a, len, target);
}

static struct huge_entry *huge_find(uintptr_t a)
{
    if (!huge.t)
        return NULL;
    for (size_t j = slot_of(a, huge.cap);; j = (j + 1) & (huge.cap - 1)) {
        if (huge.t[j].addr == a)
            return &huge.t[j];
        if (!huge.t[j].addr)
            return NULL;
    }
}

void *bm_huge_alloc(size_t size, size_t align)
{
    /* a page at least: memalign(align beyond the largest block, 0) made an
     * entry of length 0, at an address with no mapping of its own, that
     * free then reported as not ours (found by the fuzzer, 16 MiB regions) */
    if (size == 0)
        size = 1;
    size_t len = (size + BM_PAGE_SIZE - 1) & ~(BM_PAGE_SIZE - 1);
    if (len < size || align > ((size_t)1 << 46)) {
        errno = ENOMEM;
        return NULL;
    }
    size_t extra = align > BM_PAGE_SIZE ? align : 0;
    if (len + extra < len) {
        errno = ENOMEM;
        return NULL;
    }
    char *m = bm_os_map(len + extra, 0);
    if (m == MAP_FAILED) {
        errno = ENOMEM;
        return NULL;
    }
    uintptr_t a = (uintptr_t)m;
    if (extra) {
        a = ((uintptr_t)m + align - 1) & ~(align - 1);
        if (a > (uintptr_t)m)
            munmap(m, a - (uintptr_t)m);
        size_t tail = (uintptr_t)m + len + extra - (a + len);
        if (tail)
            munmap((char *)a + len, tail);
    }
    huge_place((void *)a, len);
    bm_mutex_lock(&huge.lock);
    if ((huge.used + 1) * 2 > huge.cap && !huge_rehash(huge_cap_for(huge.live + 1))) {
        bm_mutex_unlock(&huge.lock);
        munmap((void *)a, len);
        errno = ENOMEM;
        return NULL;
    }
    size_t j = slot_of(a, huge.cap);
    while (huge.t[j].addr > 1)
        j = (j + 1) & (huge.cap - 1);
    if (!huge.t[j].addr)
        huge.used++;
    huge.t[j] = (struct huge_entry){ a, len, a, len };
    huge.live++;
    huge.allocs++;
    huge.bytes += len;
    bm_mutex_unlock(&huge.lock);
    return (void *)a;
}

size_t bm_huge_usable(const void *p)
{
    bm_mutex_lock(&huge.lock);
    struct huge_entry *e = huge_find((uintptr_t)p);
    size_t n = e ? e->size : 0;
    bm_mutex_unlock(&huge.lock);
    return n;
}

bool bm_huge_free(void *p)
{
    bm_mutex_lock(&huge.lock);
    struct huge_entry *e = huge_find((uintptr_t)p);
    if (!e) {
        bm_mutex_unlock(&huge.lock);
        return false;
    }
    uintptr_t map = e->map;
    size_t len = e->map_len;
    e->addr = 1;                /* deleted: probing goes on past it */
    huge.live--;
    huge.frees++;
    huge.bytes -= len;
    bm_mutex_unlock(&huge.lock);
    int saved = errno;
    munmap((void *)map, len);
    errno = saved;
    return true;
}

/* Resize a huge mapping with mremap (it may move). NULL with ENOMEM when the
 * kernel refuses; the old mapping is then intact. */
void *bm_huge_realloc(void *p, size_t size)
{
    size_t len = (size + BM_PAGE_SIZE - 1) & ~(BM_PAGE_SIZE - 1);
    bm_mutex_lock(&huge.lock);
    struct huge_entry *e = huge_find((uintptr_t)p);
    if (!e || len < size) {
        bm_mutex_unlock(&huge.lock);
        errno = ENOMEM;
        return NULL;
    }
    void *q = bm_os_remap((void *)e->map, e->map_len, len);
    if (q == MAP_FAILED) {
        bm_mutex_unlock(&huge.lock);
        errno = ENOMEM;
        return NULL;
    }
    huge.bytes += len - e->map_len;
    e->addr = 1;
    huge.live--;
    size_t j = slot_of((uintptr_t)q, huge.cap);
    while (huge.t[j].addr > 1)
        j = (j + 1) & (huge.cap - 1);
    if (!huge.t[j].addr)
        huge.used++;
    huge.t[j] = (struct huge_entry){ (uintptr_t)q, len, (uintptr_t)q, len };
    huge.live++;
    bm_mutex_unlock(&huge.lock);
    return q;
}

/* The table's counters, taken with trylock, or with the lock when trylock
 * is NULL; false if trylock gave up (the live report: the interrupted
 * thread may hold the lock). */
bool bm_huge_stats_try(uint64_t *allocs, uint64_t *frees, uint64_t *live, uint64_t *bytes,
                       bool (*trylock)(bm_mutex_t *))
{
    if (!trylock)
        bm_mutex_lock(&huge.lock);
    else if (!trylock(&huge.lock))
        return false;
    *allocs = huge.allocs;
    *frees = huge.frees;
    *live = huge.live;
    *bytes = huge.bytes;
    bm_mutex_unlock(&huge.lock);
    return true;
}

size_t bm_huge_table_slots(void)
{
    bm_mutex_lock(&huge.lock);
    size_t n = huge.cap;
    bm_mutex_unlock(&huge.lock);
    return n;
}

void bm_huge_stats(uint64_t *allocs, uint64_t *frees, uint64_t *live, uint64_t *bytes)
{
    bm_huge_stats_try(allocs, frees, live, bytes, NULL);
}
