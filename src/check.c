/*
 * check.c - the heap checker: walks every zone's free lists, dirty list,
 * pagesets and regions with all locks held and verifies the invariants
 * stated in buddy.c, pcp.c and release.c. Each violation is described on a
 * file descriptor; the return value counts them.
 *
 * Two independent views are compared: the lists (what the allocator thinks
 * is free or cached) and a walk of every region from its first usable page,
 * jumping from block head to block head (what the mem_map says). A block on
 * two lists, a lost block, a stray flag on a tail page or a wrong counter
 * makes the two disagree.
 */
#include <string.h>

#include "alloc.h"
#include "buddymalloc.h"
#include "fmt.h"
#include "internal.h"
#include "slab.h"

struct ck {
    struct bm_buf b;
    long errors;
    int node;
};

static void fail(struct ck *c, const char *what, const struct bm_page *p, uint64_t x, uint64_t y)
{
    c->errors++;
    if (c->b.fd < 0 || c->errors > 50)
        return;
    bm_puts(&c->b, "bm_check: node ");
    bm_puti(&c->b, c->node, 0);
    bm_puts(&c->b, ": ");
    bm_puts(&c->b, what);
    if (p) {
        bm_puts(&c->b, " [block ");
        bm_putx(&c->b, (uintptr_t)page_to_addr(p));
        bm_puts(&c->b, " flags ");
        bm_putx(&c->b, p->flags);
        bm_puts(&c->b, " order ");
        bm_putu(&c->b, p->order, 0);
        bm_puts(&c->b, "]");
    }
    bm_puts(&c->b, " (");
    bm_putu(&c->b, x, 0);
    bm_puts(&c->b, ", ");
    bm_putu(&c->b, y, 0);
    bm_puts(&c->b, ")\n");
}

void bm_zone_lock_all(struct bm_zone *z)
{
    if (z->pcp)
        for (int c = 0; c < bm_g.nr_cpus; c++)
            bm_spin_lock(&z->pcp[c].lock);
    bm_mutex_lock(&z->lock);
}

void bm_zone_unlock_all(struct bm_zone *z)
{
    bm_mutex_unlock(&z->lock);
    if (z->pcp)
        for (int c = 0; c < bm_g.nr_cpus; c++)
            bm_spin_unlock(&z->pcp[c].lock);
}

static bool page_belongs(const struct bm_zone *z, const struct bm_page *p)
{
    uintptr_t a = (uintptr_t)p;
    if (!bm_addr_in_region(a) || (a & (sizeof(struct bm_page) - 1)))
        return false;
    const struct bm_region *r = page_region(p);
    unsigned long i = page_index(p);
    return r->magic == BM_REGION_MAGIC && r->zone == z && i >= REGION_FIRST_PAGE &&
           i < r->fresh_next;
}

static bool types_merge(int a, int b)
{
    return a == b || (a != MIGRATE_RESERVE && b != MIGRATE_RESERVE);
}

struct counts {
    unsigned long blocks[MAX_ORDER][MIGRATE_TYPES];
    unsigned long free_pages, pcp_pages, alloc_pages, isolated_pages, dirty_pages;
    unsigned long released_pages;
};

static void check_free_lists(struct ck *c, struct bm_zone *z, struct counts *lists)
{
    unsigned long limit = z->managed_pages + 1;
    for (unsigned o = 0; o < MAX_ORDER; o++) {
        unsigned long n = 0;
        for (int mt = 0; mt < MIGRATE_TYPES; mt++) {
            struct bm_list *h = &z->free_area[o].free_list[mt], *prev = h;
            unsigned long steps = 0;
            for (struct bm_list *l = h->next; l != h; prev = l, l = l->next) {
                struct bm_page *p = lru_to_page(l);
                if (++steps > limit) {
                    fail(c, "free list does not end (cycle)", NULL, o, (uint64_t)mt);
                    break;
                }
                if (l->prev != prev)
                    fail(c, "free list link broken (next->prev)", NULL, o, (uint64_t)mt);
                if (!page_belongs(z, p)) {
                    fail(c, "free list holds a page outside the zone's carved memory", NULL, o,
                         (uint64_t)mt);
                    break;
                }
                unsigned long idx = page_index(p);
                if (!(p->flags & PG_buddy) || p->order != o)
                    fail(c, "block on free list without PG_buddy at the list's order", p, o, 0);
                if (idx & ((1UL << o) - 1))
                    fail(c, "free block not aligned to its order", p, idx, o);
                if (idx + (1UL << o) > page_region(p)->fresh_next)
                    fail(c, "free block runs past the carved part of its region", p, idx, o);
                unsigned long npb = o > pageblock_order ? 1UL << (o - pageblock_order) : 1;
                for (unsigned long k = 0; k < npb; k++)
                    if (page_region(p)->pb_mt[(idx >> pageblock_order) + k] != mt)
                        fail(c, "free block on the list of another migrate type than its pageblock",
                             p, (uint64_t)mt, page_region(p)->pb_mt[(idx >> pageblock_order) + k]);
                bool dirty_expected = o >= bm_g.opt.release_min_order && !(p->flags & PG_released);
                if (!!(p->flags & PG_dirty) != dirty_expected)
                    fail(c, "PG_dirty disagrees with the block's order and released state", p,
                         dirty_expected, 0);
                if ((p->flags & PG_zero) && !(p->flags & PG_released))
                    fail(c, "free block marked zero but not released", p, 0, 0);
                if ((p->flags & PG_advised) && !(p->flags & PG_released))
                    fail(c, "free block marked advised but not released", p, 0, 0);
                if (p->flags & PG_released)
                    lists->released_pages += 1UL << o;
                lists->blocks[o][mt]++;
                lists->free_pages += 1UL << o;
                n++;
            }
            bool nonempty = (z->nonempty[mt] >> o) & 1;
            if (nonempty == list_empty(h))
                fail(c, "nonempty bitmap disagrees with the free list", NULL, o, (uint64_t)mt);
        }
        if (n != z->free_area[o].nr_free)
            fail(c, "nr_free differs from the blocks on the lists", NULL, n,
                 z->free_area[o].nr_free);
    }
    if (lists->free_pages != z->nr_free_pages)
        fail(c, "nr_free_pages differs from the pages on the free lists", NULL,
             lists->free_pages, z->nr_free_pages);
    if (lists->released_pages != z->nr_returned_pages)
        fail(c, "nr_returned_pages differs from the released free blocks", NULL,
             lists->released_pages, z->nr_returned_pages);
}

static void check_dirty_list(struct ck *c, struct bm_zone *z)
{
    unsigned long pages = 0, steps = 0;
    struct bm_list *h = &z->dirty_list;
    for (struct bm_list *l = h->next; l != h; l = l->next) {
        struct bm_page *p = dirty_to_page(l);
        if (++steps > z->managed_pages) {
            fail(c, "dirty list does not end (cycle)", NULL, 0, 0);
            return;
        }
        if (!page_belongs(z, p) || (p->flags & (PG_dirty | PG_buddy)) != (PG_dirty | PG_buddy)) {
            fail(c, "dirty list holds a block that is not a free dirty block", NULL, 0, 0);
            continue;
        }
        pages += 1UL << p->order;
    }
    if (pages != z->nr_dirty_pages)
        fail(c, "nr_dirty_pages differs from the dirty list", NULL, pages, z->nr_dirty_pages);
}

static void check_pcp(struct ck *c, struct bm_zone *z, struct counts *lists)
{
    if (!z->pcp)
        return;
    for (int cpu = 0; cpu < bm_g.nr_cpus; cpu++) {
        struct bm_pcp *pcp = &z->pcp[cpu];
        unsigned long pages = 0;
        for (unsigned i = 0; i < NR_PCP_LISTS; i++) {
            unsigned order = i / MIGRATE_PCPTYPES;
            int mt = (int)(i % MIGRATE_PCPTYPES);
            struct bm_list *h = &pcp->lists[i], *prev = h;
            unsigned long steps = 0;
            for (struct bm_list *l = h->next; l != h; prev = l, l = l->next) {
                struct bm_page *p = lru_to_page(l);
                if (++steps > z->managed_pages || l->prev != prev || !page_belongs(z, p)) {
                    fail(c, "pageset list broken", NULL, (uint64_t)cpu, i);
                    break;
                }
                if (p->flags != PG_pcp || p->order != order || p->mt != mt)
                    fail(c, "block on pageset list without PG_pcp, its order or its type", p,
                         (uint64_t)cpu, i);
                pages += 1UL << order;
            }
        }
        if (pages != (unsigned long)pcp->count)
            fail(c, "pageset count differs from its lists", NULL, pages, (uint64_t)pcp->count);
        lists->pcp_pages += pages;
    }
}

/* A slab head's metadata and tail pages (always safe to read: written only
 * when the slab is made or unmade, under no lock but before or after any
 * other thread can reach it). */
static void check_slab_meta(struct ck *c, struct bm_page *s)
{
    unsigned cls = s->slab.cls;
    if (cls >= BM_NR_CLASSES || s->order != bm_classes[cls].order) {
        fail(c, "slab with an impossible class or order", s, cls, s->order);
        return;
    }
    if (s->slab.reserved > bm_classes[cls].capacity || s->slab.used > s->slab.reserved)
        fail(c, "slab counters out of range (used, reserved)", s, s->slab.used,
             s->slab.reserved);
    for (unsigned long i = 1; i < (1UL << s->order); i++)
        if (page_flags(&s[i]) != PG_tail || s[i].lru.next != &s->lru || s[i].head_off != i)
            fail(c, "slab tail page does not point to its head", s, i, 0);
}

/* Count one free list of a slab into seen[], checking every block. */
static unsigned long walk_slab_list(struct ck *c, struct bm_page *s, void *head, uint64_t *seen)
{
    unsigned long n = 0, where = 0;
    switch (bm_slab_mark_list(s, head, seen, &n, &where)) {
    case BM_LIST_FOREIGN:
        fail(c, "slab free list holds a pointer that is not a carved block", s, where, 0);
        break;
    case BM_LIST_TWICE:
        fail(c, "slab block on a free list twice (double free or cycle)", s, where, 0);
        break;
    case BM_LIST_OK:
        break;
    }
    return n;
}

/* The free lists of a slab nobody else is using now (the caller's own, or
 * an abandoned one under its list lock): free + local + used must be every
 * carved block, each once. Blocks other threads freed (thread_free) still
 * count as used until the owner collects them, so there are at most used
 * of them, and none is also on the owner's lists. */
static void bm_check_slab_lists(void *ctx, struct bm_page *s)
{
    struct ck *c = ctx;
    uint64_t seen[(1u << 16) / 64];
    unsigned reserved = s->slab.reserved;
    memset(seen, 0, ((reserved + 63) / 64) * sizeof seen[0]);
    unsigned long n = walk_slab_list(c, s, s->slab.free, seen);
    n += walk_slab_list(c, s, s->slab.local_free, seen);
    if (n + s->slab.used != reserved)
        fail(c, "slab free blocks + used differ from the carved blocks", s, n + s->slab.used,
             reserved);
    unsigned long remote = walk_slab_list(c, s, (void *)atomic_load(&s->slab.thread_free), seen);
    if (remote > s->slab.used)
        fail(c, "slab has more blocks freed by other threads than in use", s, remote,
             s->slab.used);
}

/* The mem_map view: every usable page of every region is fresh or under
 * exactly one block head. */
static void check_regions(struct ck *c, struct bm_zone *z, struct counts *walk)
{
    unsigned long managed = 0, fresh = 0, nregions = 0;
    bool fresh_seen = false;
    for (struct bm_region *r = z->regions; r; r = r->next) {
        nregions++;
        if (r->magic != BM_REGION_MAGIC || r->zone != z || r->base != (uintptr_t)r ||
            !bm_addr_in_region(r->base)) {
            fail(c, "region header damaged or not in the region map", NULL, r->base, 0);
            continue;
        }
        if (r->end <= REGION_FIRST_PAGE || r->end > REGION_PAGES ||
            (r->end & (MAX_ORDER_NR_PAGES - 1))) {
            fail(c, "region mapped end out of range", NULL, r->end, 0);
            continue;
        }
        if (r->fresh_next < REGION_FIRST_PAGE || r->fresh_next > r->end ||
            (r->fresh_next & (MAX_ORDER_NR_PAGES - 1))) {
            fail(c, "region fresh boundary out of range", NULL, r->fresh_next, 0);
            continue;
        }
        managed += r->end - REGION_FIRST_PAGE;
        fresh += (r->end - r->fresh_next) / MAX_ORDER_NR_PAGES;
        if (r->fresh_next < r->end) {
            fresh_seen = true;
            if (r != z->fresh)
                fail(c, "a region other than the zone's fresh one has fresh blocks", NULL,
                     r->index, 0);
        }
        for (unsigned long pb = REGION_FIRST_PAGE >> pageblock_order;
             pb < r->end >> pageblock_order; pb++) {
            if (r->pb_mt[pb] >= MIGRATE_TYPES)
                fail(c, "pageblock has no valid migrate type", NULL, pb, r->pb_mt[pb]);
        }

        struct bm_page *mm = region_mem_map(r);
        for (unsigned long i = REGION_FIRST_PAGE; i < r->fresh_next;) {
            struct bm_page *p = mm + i;
            unsigned o = p->order;
            unsigned kinds = p->flags & (PG_buddy | PG_pcp | PG_alloc | PG_isolated);
            if (!kinds || (kinds & (kinds - 1))) {
                fail(c, "page not covered by exactly one block head", p, i, kinds);
                i++;
                continue;
            }
            /* a malloc'ed run covers npages, not 2^order */
            unsigned long span = (p->flags & PG_large) ? p->large.npages : 1UL << o;
            if (o >= MAX_ORDER || (i & ((1UL << o) - 1)) || !span || i + span > r->fresh_next) {
                fail(c, "block head with an impossible order, size or alignment", p, i, o);
                i++;
                continue;
            }
            /* (a run grows in place past the block it came from: realloc
             * bounds it by BM_RUN_MAX_PAGES, not by its order) */
            if ((p->flags & PG_large) && (kinds != PG_alloc || span > BM_RUN_MAX_PAGES))
                fail(c, "page run with impossible flags or size", p, i, span);
            if (p->head_off)
                fail(c, "block head with a tail offset", p, i, p->head_off);
            if (p->flags & PG_slab) {
                if (kinds != PG_alloc)
                    fail(c, "slab head that is not allocated", p, i, kinds);
                else
                    check_slab_meta(c, p);
            }
            int mt = r->pb_mt[i >> pageblock_order];
            if (kinds == PG_buddy) {
                walk->blocks[o][mt]++;
                walk->free_pages += 1UL << o;
                if (o < MAX_ORDER - 1) {
                    unsigned long bidx = i ^ (1UL << o);
                    struct bm_page *b = mm + bidx;
                    if ((b->flags & PG_buddy) && b->order == o &&
                        types_merge(mt, r->pb_mt[bidx >> pageblock_order]))
                        fail(c, "buddies both free at the same order (missed merge)", p, i, bidx);
                }
            } else {
                if (kinds == PG_pcp)
                    walk->pcp_pages += 1UL << o;
                else if (kinds == PG_alloc)
                    walk->alloc_pages += span;
                else
                    walk->isolated_pages += 1UL << o;
                if (p->flags & PG_STATE)
                    fail(c, "released/zero state on a block that is not free", p, i, 0);
            }
            i += span;
        }
    }
    if (nregions != z->nr_regions)
        fail(c, "nr_regions differs from the region list", NULL, nregions, z->nr_regions);
    if (managed != z->managed_pages)
        fail(c, "managed_pages differs from the regions", NULL, managed, z->managed_pages);
    if (fresh != z->nr_fresh_blocks)
        fail(c, "nr_fresh_blocks differs from the regions", NULL, fresh, z->nr_fresh_blocks);
    if (fresh_seen && !z->fresh)
        fail(c, "a region has fresh blocks but the zone has no fresh region", NULL, 0, 0);
    if (walk->isolated_pages != z->nr_isolated)
        fail(c, "nr_isolated differs from the isolated blocks", NULL, walk->isolated_pages,
             z->nr_isolated);
    unsigned long accounted = walk->free_pages + walk->pcp_pages + walk->alloc_pages +
                              walk->isolated_pages + fresh * MAX_ORDER_NR_PAGES;
    if (accounted != managed)
        fail(c, "pages not accounted exactly once", NULL, accounted, managed);
}

static void check_zone(struct ck *c, struct bm_zone *z)
{
    struct counts lists, walk;
    memset(&lists, 0, sizeof lists);
    memset(&walk, 0, sizeof walk);
    c->node = z->node;
    bm_zone_lock_all(z);
    check_free_lists(c, z, &lists);
    check_dirty_list(c, z);
    check_pcp(c, z, &lists);
    check_regions(c, z, &walk);
    /* NUMA: only the policy's zones get regions, and a pageset's high
     * mark is the zone's for its own node's CPUs, a batch for the others */
    if (z->regions && !(bm_g.topo.allowed >> z->node & 1))
        fail(c, "a zone outside the policy's nodes has regions", NULL, (uint64_t)z->node,
             bm_g.topo.allowed);
    for (int cpu = 0; z->pcp && cpu < bm_g.nr_cpus; cpu++) {
        int want = bm_cpu_node(cpu) == z->node ? z->pcp_high : z->pcp_batch;
        if (z->pcp[cpu].high != want)
            fail(c, "pageset high mark differs from its zone's for the CPU's node", NULL,
                 (uint64_t)cpu, (uint64_t)z->pcp[cpu].high);
    }
    bm_zone_unlock_all(z);

    for (unsigned o = 0; o < MAX_ORDER; o++)
        for (int mt = 0; mt < MIGRATE_TYPES; mt++)
            if (lists.blocks[o][mt] != walk.blocks[o][mt])
                fail(c, "free blocks on the lists differ from free heads in the mem_map", NULL,
                     lists.blocks[o][mt], walk.blocks[o][mt]);
    if (lists.pcp_pages != walk.pcp_pages)
        fail(c, "pages on pagesets differ from PG_pcp heads in the mem_map", NULL,
             lists.pcp_pages, walk.pcp_pages);
}

BM_API long bm_check(int fd)
{
    char scratch[512];
    struct ck c;
    bm_ensure_init();
    c.errors = 0;
    c.node = 0;
    if (fd >= 0)
        bm_buf_fd(&c.b, fd, scratch, sizeof scratch);
    else
        bm_buf_mem(&c.b, scratch, 0);
    /* Slab free lists that are safe to walk: the calling thread's own and
     * the abandoned ones (under their lock), before any zone lock is taken
     * (lock order: abandoned list, pageset, zone). */
    bm_slab_for_each_quiet(bm_check_slab_lists, &c);
    for (int n = 0; n < bm_g.nr_nodes; n++)
        check_zone(&c, &bm_g.zones[n]);
    if (fd >= 0)
        bm_buf_finish(&c.b);
    return c.errors;
}
