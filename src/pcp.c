/*
 * pcp.c - per-CPU pagesets (the kernel's struct per_cpu_pages and
 * rmqueue_pcplist / free_unref_page): small-order blocks are taken from and
 * given back to a list of the current CPU, so most page allocations touch
 * no zone lock. Lists are refilled and drained `batch` pages at a time under
 * the zone lock; a free that brings `count` to `high` drains.
 *
 * Locking: a pageset is guarded by its own spinlock, only ever try-locked on
 * the hot path. A thread preempted or migrated between reading its CPU and
 * taking the lock stays correct: it either gets that CPU's lock (and works
 * on that list, just not the nearest one) or misses and goes to the zone.
 * Lock order: pageset, then zone.
 *
 * Invariants: pcp->count is the number of pages (not blocks) on its lists;
 * every block on a list has PG_pcp, the list's order, and mt equal to the
 * list's migrate type.
 */
#include "internal.h"
#include "vg.h"
#include "pcp.h"

/*
 * Sizes as the kernel's zone_batchsize(): a quarter of the zone's pages per
 * 1024, at most 1 MiB, rounded down to 2^n - 1 so that consecutive refills do
 * not alias in the cache; high = 6 * batch (the kernel's classic ratio).
 * Options pcp_batch / pcp_high override either.
 */
void bm_pcp_update_sizes(struct bm_zone *z)
{
    unsigned long batch = z->managed_pages / 1024;
    if (batch > (1UL << 20) / BM_PAGE_SIZE)
        batch = (1UL << 20) / BM_PAGE_SIZE;
    batch /= 4;
    if (batch < 1)
        batch = 1;
    batch += batch / 2;
    batch = (1UL << (63 - __builtin_clzl(batch))) - 1;
    if (batch < 1)
        batch = 1;
    int b = bm_g.opt.pcp_batch > 0 ? bm_g.opt.pcp_batch : (int)batch;
    int h = bm_g.opt.pcp_high > 0 ? bm_g.opt.pcp_high : 6 * b;
    if (h < b)
        h = b;
    __atomic_store_n(&z->pcp_batch, b, __ATOMIC_RELAXED);
    __atomic_store_n(&z->pcp_high, h, __ATOMIC_RELAXED);
    /* A CPU of another node holds the zone's pages only until a batch of
     * its remote frees is there to go home together. */
    if (z->pcp)
        for (int c = 0; c < bm_g.nr_cpus; c++)
            __atomic_store_n(&z->pcp[c].high, bm_cpu_node(c) == z->node ? h : b,
                             __ATOMIC_RELAXED);
}

/* The pagesets of a zone live in the zone's own memory (SLAB type, marked
 * internal), one cache line aligned struct per possible CPU. Zone locked. */
void bm_pcp_setup(struct bm_zone *z)
{
    size_t bytes = (size_t)bm_g.nr_cpus * sizeof(struct bm_pcp);
    unsigned order = 0;
    while ((BM_PAGE_SIZE << order) < bytes && order < MAX_ORDER - 1)
        order++;
    if ((BM_PAGE_SIZE << order) < bytes)
        return;                                 /* absurd CPU count: no pcp */
    struct bm_page *p = bm_rmqueue(z, order, MIGRATE_SLAB, 0);
    if (!p)
        return;
    p->flags = PG_alloc | PG_internal;
    p->mt = MIGRATE_SLAB;
    struct bm_pcp *pcp = page_to_addr(p);
    BM_VG_UNDEFINED(pcp, BM_PAGE_SIZE << order);
    for (int c = 0; c < bm_g.nr_cpus; c++) {
        atomic_store_explicit(&pcp[c].lock.v, 0, memory_order_relaxed);
        pcp[c].count = 0;
        pcp[c].drain_rr = 0;
        for (unsigned i = 0; i < NR_PCP_LISTS; i++)
            list_init(&pcp[c].lists[i]);
    }
    __atomic_store_n(&z->pcp, pcp, __ATOMIC_RELEASE);
    bm_pcp_update_sizes(z);
}

/*
 * Give `pages` pages (at least) of the pageset back to the buddy, coldest
 * first (the kernel's free_pcppages_bulk): empty one list from its tail,
 * then go on round-robin to the next non-empty list, so that repeated drains
 * do not always hit the same order and type. Called with the pageset lock
 * held; takes the zone lock once for the whole batch.
 */
/* Cost: O(pages + NR_PCP_LISTS): a batch, merged, plus the release check. */
static void free_pcppages_bulk(struct bm_zone *z, struct bm_pcp *pcp, int pages)
{
    int asked = pages;
    bm_mutex_lock(&z->lock);
    while (pages > 0 && pcp->count > 0) {
        unsigned i = pcp->drain_rr, tried = 0;
        while (list_empty(&pcp->lists[i]) && ++tried <= NR_PCP_LISTS)
            i = (i + 1) % NR_PCP_LISTS;
        if (tried > NR_PCP_LISTS)
            break;              /* count says pages, lists are empty: bm_check reports it */
        pcp->drain_rr = (i + 1) % NR_PCP_LISTS;
        struct bm_list *l = &pcp->lists[i];
        unsigned order = i / MIGRATE_PCPTYPES;
        do {
            struct bm_page *p = lru_to_page(l->prev);
            list_del(&p->lru);
            STAT_ADD(pcp->count, -(1 << order));
            pages -= 1 << order;
            p->flags = 0;
            bm_free_one_page(z, p, order, 0);
        } while (pages > 0 && !list_empty(l));
    }
    bm_release_maybe(z, (unsigned long)(asked - (pages > 0 ? pages : 0)));
    bm_mutex_unlock(&z->lock);
}

/* Slow path of bm_pcp_alloc: the list was empty, take a batch from the
 * buddy. Pageset lock held; returns false if the zone had nothing. */
/* Cost: O(batch) bm_rmqueue calls under one zone lock hold. */
bool bm_pcp_refill(struct bm_zone *z, struct bm_pcp *pcp, unsigned order, int mt,
                   struct bm_list *l)
{
    int batch = __atomic_load_n(&z->pcp_batch, __ATOMIC_RELAXED);
    int n = order ? batch >> order : batch;
    if (n < 2)
        n = 2;
    bm_mutex_lock(&z->lock);
    int got = bm_rmqueue_bulk(z, order, n, mt, l);
    bm_mutex_unlock(&z->lock);
    STAT_ADD(pcp->count, got << order);
    STAT_ADD(pcp->alloc_refill, 1);
    return got > 0;
}

/* Slow path of bm_pcp_free: count reached high. Pageset lock held. */
void bm_pcp_drain_batch(struct bm_zone *z, struct bm_pcp *pcp)
{
    STAT_ADD(pcp->free_drain, 1);
    free_pcppages_bulk(z, pcp, __atomic_load_n(&z->pcp_batch, __ATOMIC_RELAXED));
}

/* Empty every pageset of the zone into the buddy (trim, tests). */
/* Cost: O(nr_cpus x high): trim and tests only. */
void bm_pcp_drain_zone(struct bm_zone *z)
{
    if (!z->pcp)
        return;
    for (int c = 0; c < bm_g.nr_cpus; c++) {
        struct bm_pcp *pcp = &z->pcp[c];
        bm_spin_lock(&pcp->lock);
        if (pcp->count)
            free_pcppages_bulk(z, pcp, pcp->count);
        bm_spin_unlock(&pcp->lock);
    }
}
