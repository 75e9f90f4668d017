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

/*
 * The zonelist walk (the kernel's get_page_from_freelist): zone `zone`
 * first, then the other zones of its zonelist, nearest node first. On the
 * first pass a zone whose node is low on memory declines (ALLOC_WATCH);
 * if every zone declined, the second pass lets them grow anyway, and the
 * kernel finds the pages where it can. Counts numastat's hit / miss /
 * foreign and local / other for the block. Returns with the serving
 * zone's lock held (*zp), or NULL (no zone could serve: ENOMEM).
 */
/* Cost: O(zones on the zonelist) bm_rmqueue calls (nodes, not heap size). */
struct bm_page *bm_zonelist_rmqueue(int zone, unsigned order, int mt, struct bm_zone **zp)
{
    const struct bm_topology *t = &bm_g.topo;
    int passes = t->watch_memory ? 2 : 1;
    for (int pass = 0; pass < passes; pass++) {
        for (int i = 0; i < t->nr_zonelist[zone]; i++) {
            struct bm_zone *z = &bm_g.zones[t->zonelist[zone][i]];
            bm_mutex_lock(&z->lock);
            struct bm_page *p = bm_rmqueue(z, order, mt, pass + 1 < passes ? ALLOC_WATCH : 0);
            if (p) {
                if (z->node == zone) {
                    z->c.numa_hit++;
                } else {
                    z->c.numa_miss++;
                    atomic_fetch_add_explicit(&bm_g.zones[zone].numa_foreign, 1,
                                              memory_order_relaxed);
                }
                if (z->node == bm_cpu_node(bm_cpu()))
                    z->c.local_node++;
                else
                    z->c.other_node++;
                *zp = z;
                return p;
            }
            bm_mutex_unlock(&z->lock);
        }
    }
    *zp = NULL;
    return NULL;
}

/* Slow path: the zones themselves. */
BM_COLD static struct bm_page *alloc_from_zone(int zone, unsigned order, int mt, unsigned gfp)
{
    struct bm_zone *z;
    struct bm_page *p = bm_zonelist_rmqueue(zone, order, mt, &z);
    if (!p) {
        errno = ENOMEM;
        return NULL;
    }
    p->flags = PG_alloc;
    p->mt = (uint8_t)(mt | ((gfp & BM_GFP_NOPCP) ? MT_NOPCP : 0));
    bm_mutex_unlock(&z->lock);
    return p;
}

/* Fast path: the pageset of this CPU in zone `zone` (< 0: the zone of
 * this CPU). */
static inline __attribute__((always_inline)) struct bm_page *
alloc_block(unsigned order, int mt, unsigned gfp, int zone)
{
    bm_ensure_init();
    int cpu = bm_cpu();
    if (zone < 0)
        zone = bm_cpu_zone(cpu);
    struct bm_zone *z = &bm_g.zones[zone];
    struct bm_pcp *pcps = z->pcp;
    if (order <= PCP_MAX_ORDER && !(gfp & BM_GFP_NOPCP) && likely(pcps)) {
        struct bm_page *p = bm_pcp_alloc(z, &pcps[cpu], order, mt);
        if (likely(p))
            return p;
    }
    return alloc_from_zone(zone, order, mt, gfp);
}

struct bm_page *bm_alloc_block(unsigned order, int mt, unsigned gfp)
{
    return alloc_block(order, mt, gfp, -1);
}

struct bm_page *bm_alloc_block_zone(unsigned order, int mt, unsigned gfp, int zone)
{
    return alloc_block(order, mt, gfp, zone);
}

/* Slow path: the zone the block came from, whichever CPU frees it. */
BM_COLD static void free_to_zone(struct bm_zone *z, struct bm_page *p, unsigned order, int cpu)
{
    bm_mutex_lock(&z->lock);
    p->flags = 0;
    z->c.remote_free += bm_cpu_node(cpu) != z->node;
    bm_free_one_page(z, p, order, 0);
    bm_release_maybe(z, 1UL << order);
    bm_mutex_unlock(&z->lock);
}

/* A block goes to this CPU's pageset of the block's own zone: a CPU of
 * another node frees into a pageset whose high mark is one batch (pcp.c),
 * so remote frees go home in batches. */
static inline __attribute__((always_inline)) void free_block(struct bm_page *p, unsigned order)
{
    struct bm_zone *z = page_zone(p);
    struct bm_pcp *pcps = z->pcp;
    int cpu = bm_cpu();
    if (order <= PCP_MAX_ORDER && p->mt < MIGRATE_PCPTYPES && likely(pcps) &&
        likely(bm_pcp_free(z, &pcps[cpu], p, order)))
        return;
    free_to_zone(z, p, order, cpu);
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
    struct bm_page *p = alloc_block(order, gfp_migratetype(order, gfp), gfp, -1);
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
    const char *why = NULL;
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
        if (bm_g.zones[n].present)
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
        if (!z->present)
            continue;
        bm_pcp_drain_zone(z);
        bm_mutex_lock(&z->lock);
        released += bm_release_zone(z, pad >> BM_PAGE_SHIFT);
        bm_mutex_unlock(&z->lock);
    }
    return released != 0;
}
