/*
 * pcp.h - the per-CPU pageset fast paths, inlined into the page allocator's
 * entry points (pages.c); refill and drain are out of line in pcp.c.
 * Locking and invariants: see pcp.c.
 */
#ifndef BM_PCP_H
#define BM_PCP_H

#include "internal.h"

bool bm_pcp_refill(struct bm_zone *z, struct bm_pcp *pcp, unsigned order, int mt,
                   struct bm_list *l);
void bm_pcp_drain_batch(struct bm_zone *z, struct bm_pcp *pcp);

static inline unsigned pindex(unsigned order, int mt)
{
    return order * MIGRATE_PCPTYPES + (unsigned)mt;
}

/* List removal without poisoning the links: the block's descriptor is
 * rewritten by its next owner anyway. */
static inline void list_del_fast(struct bm_list *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
}

/* A block from this CPU's pageset, or NULL when the pageset is busy (the
 * caller goes to the zone) or empty with nothing left in the zone (the
 * zone path then sets ENOMEM). */
static inline struct bm_page *bm_pcp_alloc(struct bm_zone *z, struct bm_pcp *pcp,
                                           unsigned order, int mt)
{
    if (unlikely(!bm_spin_trylock(&pcp->lock))) {
        __atomic_fetch_add(&pcp->lock_miss, 1, __ATOMIC_RELAXED);
        return NULL;
    }
    struct bm_list *l = &pcp->lists[pindex(order, mt)];
    if (unlikely(list_empty(l)) && !bm_pcp_refill(z, pcp, order, mt, l)) {
        bm_spin_unlock(&pcp->lock);
        return NULL;
    }
    struct bm_page *p = lru_to_page(l->next);
    list_del_fast(&p->lru);
    STAT_ADD(pcp->count, -(1 << order));
    STAT_ADD(pcp->alloc_hit, 1);
    set_page_flags(p, PG_alloc);
    bm_spin_unlock(&pcp->lock);
    return p;
}

/* false when the pageset is busy: the caller frees to the zone. The
 * pageset's own high mark: a CPU of another node drains at one batch. */
static inline bool bm_pcp_free(struct bm_zone *z, struct bm_pcp *pcp, struct bm_page *p,
                               unsigned order)
{
    if (unlikely(!bm_spin_trylock(&pcp->lock))) {
        __atomic_fetch_add(&pcp->lock_miss, 1, __ATOMIC_RELAXED);
        return false;
    }
    set_page_flags(p, PG_pcp);
    list_add(&pcp->lists[pindex(order, p->mt)], &p->lru);
    STAT_ADD(pcp->count, 1 << order);
    STAT_ADD(pcp->free_hit, 1);
    if (unlikely(pcp->count >= __atomic_load_n(&pcp->high, __ATOMIC_RELAXED)))
        bm_pcp_drain_batch(z, pcp);
    bm_spin_unlock(&pcp->lock);
    return true;
}

#endif
