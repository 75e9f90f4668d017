/*
 * pages.c - the page allocator's entry points: choose the zone, try the
 * per-CPU pageset for small orders, else the zone under its lock.
 */
#include <errno.h>

#include "buddymalloc.h"
#include "internal.h"
#include "vg.h"
#include "pcp.h"
#include "slab.h"

static inline int gfp_migratetype(unsigned order, unsigned gfp)
{
    switch (gfp & BM_GFP_TYPE_MASK) {
    case BM_GFP_SLAB:  return MIGRATE_SLAB;
    case BM_GFP_PAGES: return MIGRATE_PAGES;
    case BM_GFP_LARGE: return MIGRATE_LARGE;
    default:           return order <= PCP_MAX_ORDER ? MIGRATE_PAGES : MIGRATE_LARGE;
    }
}

/* Slow path: the zone itself. */
BM_COLD static struct bm_page *alloc_from_zone(struct bm_zone *z, unsigned order, int mt,
                                               unsigned gfp)
{
    bm_mutex_lock(&z->lock);
    struct bm_page *p = bm_rmqueue(z, order, mt);
    if (p) {
        p->flags = PG_alloc;
        p->mt = (uint8_t)(mt | ((gfp & BM_GFP_NOPCP) ? MT_NOPCP : 0));
    }
    bm_mutex_unlock(&z->lock);
    if (!p)
        errno = ENOMEM;
    return p;
}

/* Fast path: the pageset of this CPU. */
static inline __attribute__((always_inline)) struct bm_page *
alloc_block(unsigned order, int mt, unsigned gfp)
{
    bm_ensure_init();
    struct bm_zone *z = bm_local_zone();
    struct bm_pcp *pcps = z->pcp;
    if (order <= PCP_MAX_ORDER && !(gfp & BM_GFP_NOPCP) && likely(pcps)) {
        struct bm_page *p = bm_pcp_alloc(z, pcps, order, mt);
        if (likely(p))
            return p;
    }
    return alloc_from_zone(z, order, mt, gfp);
}

struct bm_page *bm_alloc_block(unsigned order, int mt, unsigned gfp)
{
    return alloc_block(order, mt, gfp);
}

/* Slow path: the zone. */
BM_COLD static void free_to_zone(struct bm_zone *z, struct bm_page *p, unsigned order)
{
    bm_mutex_lock(&z->lock);
    p->flags = 0;
    bm_free_one_page(z, p, order, 0);
    bm_release_maybe(z);
    bm_mutex_unlock(&z->lock);
}

static inline __attribute__((always_inline)) void free_block(struct bm_page *p, unsigned order)
{
    struct bm_zone *z = page_zone(p);
    struct bm_pcp *pcps = z->pcp;
    if (order <= PCP_MAX_ORDER && p->mt < MIGRATE_PCPTYPES && likely(pcps) &&
        likely(bm_pcp_free(z, pcps, p, order)))
        return;
    free_to_zone(z, p, order);
}

void bm_free_block(struct bm_page *p, unsigned order)
{
    free_block(p, order);
}

BM_API void *bm_alloc_pages(unsigned order, unsigned gfp)
{
    if (unlikely(order >= MAX_ORDER)) {
        errno = ENOMEM;
        return NULL;
    }
    struct bm_page *p = alloc_block(order, gfp_migratetype(order, gfp), gfp);
    if (unlikely(!p))
        return NULL;
    bm_vg_malloc(page_to_addr(p), BM_PAGE_SIZE << order, BM_PAGE_SIZE << order, 0);
    return page_to_addr(p);
}

/* The descriptor of an allocated block starting at addr, or NULL with *why
 * set. Reads no tail descriptor: flags live only on block heads, and the
 * descriptors of never-carved memory are still zero. Below the first usable
 * page the "descriptor" would be the region header, so that range is cut
 * off first. */
static inline struct bm_page *lookup_block(const void *addr, const char **why)
{
    uintptr_t a = (uintptr_t)addr;
    if (unlikely((a & (BM_PAGE_SIZE - 1)) || !bm_addr_in_region(a) ||
                 ((a & REGION_MASK) >> BM_PAGE_SHIFT) < REGION_FIRST_PAGE)) {
        *why = "not a page block allocated by buddymalloc";
        return NULL;
    }
    struct bm_page *p = addr_to_page(a);
    unsigned flags = page_flags(p);
    if ((flags & (PG_alloc | PG_internal | PG_slab | PG_large)) != PG_alloc) {
        *why = (flags & (PG_buddy | PG_pcp)) ? "double free (block is already free)"
                                                : "not the start of an allocated block";
        return NULL;
    }
    return p;
}

BM_API void bm_free_pages(void *addr, unsigned order)
{
    if (!addr)
        return;
    const char *why;
    struct bm_page *p = lookup_block(addr, &why);
    if (unlikely(!p))
        bm_fatal_bad_pointer("bm_free_pages", addr, why);
    if (unlikely(p->order != order))
        bm_fatal_bad_pointer("bm_free_pages", addr,
                             "order differs from the order the block was allocated with");
    bm_vg_free(addr);
    free_block(p, order);
}

BM_API int bm_pages_order(const void *addr)
{
    const char *why;
    if (!addr || !atomic_load_explicit(&bm_g.initialised, memory_order_acquire))
        return -1;
    struct bm_page *p = lookup_block(addr, &why);
    return p ? p->order : -1;
}

BM_API int bm_max_order(void) { return MAX_ORDER; }
BM_API int bm_pageblock_order(void) { return pageblock_order; }

BM_API void bm_drain_pagesets(void)
{
    bm_ensure_init();
    for (int n = 0; n < bm_g.nr_nodes; n++)
        bm_pcp_drain_zone(&bm_g.zones[n]);
}

BM_API int bm_trim(size_t pad)
{
    bm_ensure_init();
    unsigned long released = 0;
    bm_heap_trim_current();
    bm_heaps_sweep(NULL, true);         /* other threads' queues; abandoned slabs */
    for (int n = 0; n < bm_g.nr_nodes; n++) {
        struct bm_zone *z = &bm_g.zones[n];
        bm_pcp_drain_zone(z);
        bm_mutex_lock(&z->lock);
        released += bm_release_zone(z, pad >> BM_PAGE_SHIFT);
        bm_mutex_unlock(&z->lock);
    }
    return released != 0;
}
