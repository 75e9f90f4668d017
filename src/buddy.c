/*
 * buddy.c - the zone's buddy system: free_area, split (expand), merge
 * (__free_one_page), migrate-type fallback and pageblock claiming, after the
 * Linux kernel's mm/page_alloc.c. Everything here runs with the zone lock
 * held.
 *
 * Invariants (bm_check verifies them):
 *  - a free block of order o is naturally aligned (page index % 2^o == 0),
 *    its head has PG_buddy and order o, and it is on
 *    free_area[o].free_list[mt] where mt is the migrate type of its
 *    pageblock; a block of pageblock order or more covers pageblocks that
 *    all have that type;
 *  - the two buddies of a pair are never both free at the same order,
 *    except across a RESERVE / non-RESERVE pageblock boundary, which is never
 *    merged, so the reserve keeps its size;
 *  - nonempty[mt] has bit o set exactly when free_area[o].free_list[mt] is
 *    not empty; nr_free counts the blocks on an order's lists;
 *  - every usable page of a region is fresh (never carved) or covered by
 *    exactly one block head: free, on a pageset, allocated, or isolated;
 *  - a free block's PG_released / PG_zero say that none of its pages is
 *    resident / that it reads as zero; released blocks are at the tail of
 *    their list, so resident memory is reused first; a split keeps the
 *    state in both halves, a merge keeps what both halves share.
 */
#include "internal.h"

void bm_zone_init(struct bm_zone *z, int node)
{
    z->node = node;
    for (unsigned o = 0; o < MAX_ORDER; o++)
        for (int mt = 0; mt < MIGRATE_TYPES; mt++)
            list_init(&z->free_area[o].free_list[mt]);
    list_init(&z->dirty_list);
    z->release_scale = 1;
}

/* ---- free list primitives -------------------------------------------------- */

/* Resident blocks go to the head and are reused first; blocks whose memory
 * was returned to the OS (or never touched) go to the tail. */
void bm_add_free(struct bm_zone *z, struct bm_page *p, unsigned order, int mt,
                 uint64_t freed_ns, unsigned state)
{
    if (order >= MAX_ORDER)         /* never: tells GCC (-Warray-bounds under ASan) */
        __builtin_unreachable();
    struct bm_free_area *area = &z->free_area[order];
    set_page_flags(p, PG_buddy | state);
    p->order = (uint8_t)order;
    if (state & PG_released) {
        list_add_tail(&area->free_list[mt], &p->lru);
        z->nr_returned_pages += 1UL << order;
    } else {
        list_add(&area->free_list[mt], &p->lru);
        if (order >= bm_g.opt.release_min_order)
            bm_dirty_add(z, p, order, freed_ns);
    }
    area->nr_free++;
    z->nonempty[mt] |= 1u << order;
    z->nr_free_pages += 1UL << order;
}

static inline void del_free(struct bm_zone *z, struct bm_page *p, unsigned order, int mt)
{
    struct bm_free_area *area = &z->free_area[order];
    list_del(&p->lru);
    if (p->flags & PG_dirty)
        bm_dirty_del(z, p, order);
    if (p->flags & PG_released)
        z->nr_returned_pages -= 1UL << order;
    set_page_flags(p, 0);
    area->nr_free--;
    if (list_empty(&area->free_list[mt]))
        z->nonempty[mt] &= ~(1u << order);
    z->nr_free_pages -= 1UL << order;
}

void bm_del_free(struct bm_zone *z, struct bm_page *p, unsigned order)
{
    del_free(z, p, order, get_pageblock_mt(p));
}

/*
 * Split a block of order high, whose head is page, down to order low: the
 * upper halves go back on the free lists (the kernel's expand()), with the
 * block's released/zero state and its dirty timestamp, so splitting does not
 * make old free memory look new.
 */
static void expand(struct bm_zone *z, struct bm_page *page, unsigned low, unsigned high,
                   int mt, uint64_t stamp, unsigned state)
{
    while (high > low) {
        high--;
        bm_add_free(z, page + (1UL << high), high, mt, stamp, state);
    }
}

/* Take free block p of order o off its list and split it down to order:
 * what the caller gets. Its state is left in z->last_alloc_state. */
static void take_block(struct bm_zone *z, struct bm_page *p, unsigned order, unsigned o, int mt)
{
    uint64_t stamp = (p->flags & PG_dirty) ? p->freed_ns : 0;
    unsigned state = p->flags & PG_STATE;
    del_free(z, p, o, mt);
    expand(z, p, order, o, mt, stamp, state);
    z->last_alloc_state = state;
    if (state & PG_advised) {       /* memory given back comes back: churn? */
        z->c.reused_pages += 1UL << order;
        z->reused_since_event += 1UL << order;
    }
}

/* Cost: O(1): a bit scan of nonempty[mt], one list head. */
static struct bm_page *rmqueue_smallest(struct bm_zone *z, unsigned order, int mt)
{
    uint32_t mask = z->nonempty[mt] >> order;
    if (!mask)
        return NULL;
    unsigned o = order + (unsigned)__builtin_ctz(mask);
    struct bm_page *p = lru_to_page(z->free_area[o].free_list[mt].next);
    take_block(z, p, order, o, mt);
    return p;
}

/* ---- migrate-type fallback ----------------------------------------------- *
 * When a type has no free block, another type's is used, in this order (the
 * kernel's fallbacks[]). RESERVE is tried only after every other way,
 * including adding a region, has failed.
 */
static const int fallbacks[MIGRATE_PCPTYPES][MIGRATE_PCPTYPES - 1] = {
    [MIGRATE_SLAB]  = { MIGRATE_LARGE, MIGRATE_PAGES },
    [MIGRATE_PAGES] = { MIGRATE_LARGE, MIGRATE_SLAB },
    [MIGRATE_LARGE] = { MIGRATE_PAGES, MIGRATE_SLAB },
};

/* May the taker claim the whole pageblock? As the kernel's can_steal_fallback:
 * always for big blocks, and eagerly for the long-lived types, so SLAB and
 * LARGE gather in few pageblocks instead of salting PAGES ones. */
static bool can_claim(unsigned order, int start_mt)
{
    if (order >= pageblock_order / 2)
        return true;
    return start_mt == MIGRATE_SLAB || start_mt == MIGRATE_LARGE;
}

static int find_fallback(struct bm_zone *z, unsigned order, int start_mt)
{
    for (int i = 0; i < MIGRATE_PCPTYPES - 1; i++) {
        int mt = fallbacks[start_mt][i];
        if (z->nonempty[mt] & (1u << order))
            return mt;
    }
    return -1;
}

/*
 * Pages a descriptor's block covers from p on: a malloc'ed run covers its
 * page count, not the order of the buddy block it was cut from (large.c
 * gave the rest back as free blocks of their own, which a walk must not
 * step over); any other block head its order; a page that heads nothing
 * (inside a run that grew across pageblocks, a slab's tail) one page.
 */
static inline unsigned long block_span(const struct bm_page *p, unsigned flags)
{
    if ((flags & (PG_alloc | PG_large)) == (PG_alloc | PG_large))
        return p->large.npages;
    if (flags & (PG_buddy | PG_pcp | PG_alloc | PG_isolated))
        return 1UL << p->order;
    return 1;
}

/*
 * Try to make the pageblock holding free block page (of type old_mt) belong
 * to start_mt: whole blocks of pageblock order or more always; a part of a
 * pageblock when at least half of the pageblock is free or already used by
 * start_mt (the kernel's steal_suitable_fallback). All free blocks of the
 * pageblock move to start_mt's lists.
 */
/* Cost: O(pageblock_nr_pages): one walk of a pageblock's block heads (two). */
static bool try_claim(struct bm_zone *z, struct bm_page *page, unsigned order,
                      int start_mt, int old_mt)
{
    if (order >= pageblock_order) {
        uint64_t stamp = (page->flags & PG_dirty) ? page->freed_ns : 0;
        unsigned state = page->flags & PG_STATE;
        del_free(z, page, order, old_mt);
        bm_set_pageblock_range(page, order, start_mt);
        bm_add_free(z, page, order, start_mt, stamp, state);
        z->c.claimed[start_mt] += 1UL << (order - pageblock_order);
        return true;
    }

    struct bm_page *start = page - (page_index(page) & (pageblock_nr_pages - 1));
    unsigned long free_pages = 0, alike = 0;
    for (unsigned long i = 0; i < pageblock_nr_pages;) {
        struct bm_page *p = start + i;
        unsigned flags = page_flags(p);
        unsigned long n = block_span(p, flags);
        if (flags & PG_buddy)
            free_pages += n;
        else if ((flags & (PG_alloc | PG_pcp)) && (p->mt & MT_MASK) == start_mt)
            alike += n;
        i += n;
    }
    if (free_pages + alike < pageblock_nr_pages / 2)
        return false;

    bm_set_pageblock_range(start, 0, start_mt);
    for (unsigned long i = 0; i < pageblock_nr_pages;) {
        struct bm_page *p = start + i;
        unsigned flags = page_flags(p);
        unsigned long n = block_span(p, flags);
        if (flags & PG_buddy) {
            unsigned state = flags & PG_STATE;
            del_free(z, p, (unsigned)p->order, old_mt);
            bm_add_free(z, p, (unsigned)p->order, start_mt, 0, state);
        }
        i += n;
    }
    z->c.claimed[start_mt]++;
    return true;
}

/*
 * Serve order for start_mt from another type's free block of order min_order
 * or more: the block found is taken from start_mt's lists when its
 * pageblock changed owner (try_claim moved it there with the pageblock's
 * other free blocks), or borrowed from the other type's (its remainder stays
 * there). Returns it, or NULL. Cost: O(MAX_ORDER) list heads, plus one walk
 * of a pageblock's heads (at most pageblock_nr_pages steps) for a claim.
 */
static struct bm_page *rmqueue_fallback(struct bm_zone *z, unsigned order, int start_mt,
                                        unsigned min_order)
{
    int current, fmt = -1;

    /* Take the largest block first: splitting it leaves the fewest mixed
     * pageblocks behind. */
    for (current = MAX_ORDER - 1; current >= (int)min_order; current--) {
        fmt = find_fallback(z, (unsigned)current, start_mt);
        if (fmt < 0)
            continue;
        /* A PAGES request that may not claim the pageblock would only
         * fragment a big block: borrow the smallest one instead. */
        if (!can_claim((unsigned)current, start_mt) && start_mt == MIGRATE_PAGES &&
            current > (int)order)
            goto find_smallest;
        goto found;
    }
    return NULL;

find_smallest:
    for (current = (int)order; current < MAX_ORDER; current++) {
        fmt = find_fallback(z, (unsigned)current, start_mt);
        if (fmt >= 0)
            break;
    }

found:;
    struct bm_page *page = lru_to_page(z->free_area[current].free_list[fmt].next);
    z->c.fallback[start_mt]++;
    if (can_claim((unsigned)current, start_mt) &&
        try_claim(z, page, (unsigned)current, start_mt, fmt))
        fmt = start_mt;
    take_block(z, page, order, (unsigned)current, fmt);
    return page;
}

/* ALLOC_WATCH: may the zone grow (carve a fresh block, add a region)? Asks
 * the node once per bm_rmqueue (*room: -1 not asked yet). */
static bool may_grow(struct bm_zone *z, unsigned aflags, int *room)
{
    if (!(aflags & ALLOC_WATCH))
        return true;
    if (*room < 0)
        *room = bm_node_has_room(z->node);
    return *room;
}

/*
 * A block of 2^order pages for migrate type mt (the kernel's rmqueue).
 * Cheapest first, most fragmenting last:
 *   1. the type's own free lists;
 *   2. a whole free pageblock (or larger) of another type, claimed: reuses
 *      resident memory without mixing types inside a pageblock;
 *   3. a fresh block from a region (virtual only until touched);
 *   4. a part of another type's pageblock (claimed if mostly free);
 *   5. the RESERVE pageblocks;
 *   6. a new region, then again from the top.
 * With ALLOC_WATCH a zone whose node is low on memory (bm_node_has_room)
 * serves only from what it already has and otherwise returns NULL without
 * touching its reserve: the caller tries the next zone of the zonelist
 * (pages.c).
 */
/* Cost: O(MAX_ORDER x MIGRATE_TYPES) list heads and one claim walk; at most
 * three passes (a carve or a new region makes the next one hit). */
struct bm_page *bm_rmqueue(struct bm_zone *z, unsigned order, int mt, unsigned aflags)
{
    struct bm_page *p;
    int room = -1;
    for (;;) {
        if ((p = rmqueue_smallest(z, order, mt)))
            break;
        unsigned min = order > pageblock_order ? order : pageblock_order;
        if ((p = rmqueue_fallback(z, order, mt, min)))
            break;
        if (may_grow(z, aflags, &room) && bm_carve_fresh(z, mt))
            continue;
        if ((p = rmqueue_fallback(z, order, mt, order)))
            break;
        if (!room) {
            z->c.node_full++;
            return NULL;
        }
        if ((p = rmqueue_smallest(z, order, MIGRATE_RESERVE))) {
            z->c.reserve_used++;
            break;
        }
        if (bm_region_add(z))
            continue;
        z->c.enomem++;
        return NULL;
    }
    z->c.zeroed_allocs += !!(z->last_alloc_state & PG_zero);
    z->c.alloc[order]++;
    p->order = (uint8_t)order;
    return p;
}

/* Refill a pageset list: up to count blocks, oldest first on out. */
int bm_rmqueue_bulk(struct bm_zone *z, unsigned order, int count, int mt,
                    struct bm_list *out)
{
    int i;
    for (i = 0; i < count; i++) {
        struct bm_page *p = bm_rmqueue(z, order, mt, ALLOC_WATCH);
        if (!p)
            break;
        p->flags = PG_pcp;
        p->mt = (uint8_t)mt;
        list_add_tail(out, &p->lru);
    }
    return i;
}

/*
 * Free a block into the buddy, merging with its buddy while that is free at
 * the same order (the kernel's __free_one_page). page->flags must be clear.
 * Buddies below MAX_ORDER-1 always lie in the same max-order block, which was
 * carved whole, so no bounds check is needed. Above pageblock order the
 * merged block takes the freed block's type, except that RESERVE pageblocks
 * never merge with others. The merged block keeps the released/zero state
 * both halves share.
 */
/* Cost: O(MAX_ORDER) merges. */
void bm_free_one_page(struct bm_zone *z, struct bm_page *page, unsigned order, unsigned state)
{
    unsigned long idx = page_index(page);
    int mt = get_pageblock_mt(page);
    /* released pages that enter the merge; those of them that leave it
     * unreleased count in nr_unreleased_by_merge (release.c's hold) */
    unsigned long released_in = (state & PG_released) ? 1UL << order : 0;

    while (order < MAX_ORDER - 1) {
        unsigned long bidx = idx ^ (1UL << order);
        struct bm_page *buddy = page + ((long)bidx - (long)idx);
        unsigned bflags = page_flags(buddy);
        if (!(bflags & PG_buddy) || buddy->order != order)
            break;
        released_in += (bflags & PG_released) ? 1UL << order : 0;
        state &= bflags;
        if (order >= pageblock_order) {
            int bmt = get_pageblock_mt(buddy);
            if (bmt != mt && (bmt == MIGRATE_RESERVE || mt == MIGRATE_RESERVE))
                break;
            del_free(z, buddy, order, bmt);
            if (bmt != mt)
                bm_set_pageblock_range(buddy, order, mt);
        } else {
            del_free(z, buddy, order, mt);
        }
        if (bidx < idx) {
            page = buddy;
            idx = bidx;
        }
        order++;
    }
    if (!(state & PG_released))
        z->nr_unreleased_by_merge += released_in;
    bm_add_free(z, page, order, mt, 0, state);
}

/*
 * Set aside the zone's RESERVE pageblocks (at most one max-order block's
 * worth) from its first fresh block. Zone lock held.
 */
void bm_zone_setup_reserve(struct bm_zone *z, int nr)
{
    unsigned long per_block = MAX_ORDER_NR_PAGES / pageblock_nr_pages;
    if (nr <= 0)
        return;
    if ((unsigned long)nr > per_block)
        nr = (int)per_block;
    if (!bm_carve_fresh(z, MIGRATE_PAGES) && !(bm_region_add(z) && bm_carve_fresh(z, MIGRATE_PAGES)))
        return;
    struct bm_page *block = lru_to_page(z->free_area[MAX_ORDER - 1].free_list[MIGRATE_PAGES].next);
    del_free(z, block, MAX_ORDER - 1, MIGRATE_PAGES);
    for (unsigned long i = 0; i < per_block; i++) {
        struct bm_page *p = block + i * pageblock_nr_pages;
        int mt = i < (unsigned long)nr ? MIGRATE_RESERVE : MIGRATE_PAGES;
        bm_set_pageblock_range(p, pageblock_order, mt);
        bm_free_one_page(z, p, pageblock_order, PG_released | PG_zero);
    }
    z->nr_reserve_blocks = (unsigned long)nr;
}
