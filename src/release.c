/*
 * release.c - returning free memory to the OS.
 *
 * Only whole pageblocks are returned (2 MiB by default): small holes would
 * break transparent huge pages and cost a system call per page. A pageblock
 * is "returned" (bit in region->pb_returned) when it was never touched or
 * its memory was given back with madvise; allocating any part of it makes it
 * resident again (bm_mark_resident), and the kernel faults fresh zero pages
 * in as the program touches them. So resident = managed - returned is an
 * upper bound of what the zone keeps in RAM, kept per pageblock.
 *
 * Free blocks of pageblock order or more that still hold resident pageblocks
 * sit on zone->dirty_list, newest first. They are released
 *   - when the oldest has been free for release_delay, or
 *   - at once when the dirty total passes release_threshold (down to half of
 *     it, so alloc/free cycles around the threshold do not thrash), or
 *   - on bm_trim().
 * Checks happen where the zone lock is already held after frees; no thread
 * is started.
 *
 * The madvise runs without the zone lock: the block is taken off the free
 * lists and marked PG_isolated, the lock dropped, the memory released, the
 * lock retaken and the block freed back (merging with whatever was freed
 * meanwhile).
 */
#include <errno.h>
#include <sys/mman.h>

#include "internal.h"

static unsigned long block_pageblocks(unsigned order)
{
    return order > pageblock_order ? 1UL << (order - pageblock_order) : 1;
}

static unsigned long resident_pages(const struct bm_page *p, unsigned order)
{
    const struct bm_region *r = page_region(p);
    unsigned long pb = page_index(p) >> pageblock_order, n = 0;
    for (unsigned long i = pb; i < pb + block_pageblocks(order); i++)
        if (!pageblock_returned(r, i))
            n += pageblock_nr_pages;
    return n;
}

bool bm_block_resident(const struct bm_page *p, unsigned order)
{
    return resident_pages(p, order) != 0;
}

void bm_dirty_add(struct bm_zone *z, struct bm_page *p, unsigned order, uint64_t stamp)
{
    p->flags |= PG_dirty;
    p->freed_ns = stamp ? stamp : bm_now_ns();
    list_add(&z->dirty_list, &p->dirty);
    z->nr_dirty_pages += resident_pages(p, order);
}

void bm_dirty_del(struct bm_zone *z, struct bm_page *p, unsigned order)
{
    list_del(&p->dirty);
    p->flags &= (uint16_t)~PG_dirty;
    z->nr_dirty_pages -= resident_pages(p, order);
}

/* Release one dirty block. Zone lock held on entry and on return, dropped in
 * between. */
static void release_block(struct bm_zone *z, struct bm_page *p)
{
    unsigned order = p->order;
    struct bm_region *r = page_region(p);
    unsigned long pb0 = page_index(p) >> pageblock_order, npb = block_pageblocks(order);
    uint64_t done[2] = {0, 0};      /* pageblocks released (at most 128) */
    uint64_t resident[2] = {0, 0};  /* snapshot: the bitmap word is shared with
                                     * neighbours that change under the lock */
    for (unsigned long k = 0; k < npb; k++)
        if (!pageblock_returned(r, pb0 + k))
            resident[k / 64] |= 1ULL << (k % 64);

    bm_del_free(z, p, order);
    p->flags = PG_isolated;
    p->order = (uint8_t)order;
    z->nr_isolated += 1UL << order;
    bm_mutex_unlock(&z->lock);

    int advice = bm_g.opt.release_mode == BM_RELEASE_FREE ? MADV_FREE : MADV_DONTNEED;
    int saved = errno;
    unsigned long calls = 0;
#define RESIDENT(k) ((resident[(k) / 64] >> ((k) % 64)) & 1)
    for (unsigned long i = 0; i < npb;) {
        if (!RESIDENT(i)) {
            i++;
            continue;
        }
        unsigned long j = i;
        while (j < npb && RESIDENT(j))
            j++;
        void *addr = (char *)r + ((pb0 + i) << (pageblock_order + BM_PAGE_SHIFT));
        size_t len = (j - i) << (pageblock_order + BM_PAGE_SHIFT);
        calls++;
        if (madvise(addr, len, advice) == 0)
            for (unsigned long k = i; k < j; k++)
                done[k / 64] |= 1ULL << (k % 64);
        i = j;
    }
#undef RESIDENT
    errno = saved;

    bm_mutex_lock(&z->lock);
    for (unsigned long k = 0; k < npb; k++) {
        if (done[k / 64] >> (k % 64) & 1) {
            unsigned long pb = pb0 + k;
            r->pb_returned[pb / 64] |= 1ULL << (pb % 64);
            if (advice == MADV_DONTNEED)
                r->pb_zero[pb / 64] |= 1ULL << (pb % 64);
            z->nr_returned_pages += pageblock_nr_pages;
            z->c.released_pages += pageblock_nr_pages;
        }
    }
    z->c.release_calls += calls;
    z->nr_isolated -= 1UL << order;
    p->flags = 0;
    bm_free_one_page(z, p, order);
}

/*
 * Release dirty blocks, oldest first, while more than keep_pages are dirty or
 * the oldest was freed before `before` (ns). Zone lock held. Returns the
 * number of pages released.
 */
static unsigned long release_some(struct bm_zone *z, unsigned long keep_pages, uint64_t before)
{
    unsigned long start = z->c.released_pages;
    while (!list_empty(&z->dirty_list)) {
        struct bm_page *p = dirty_to_page(z->dirty_list.prev);
        if (z->nr_dirty_pages <= keep_pages && p->freed_ns >= before)
            break;
        unsigned long before_pages = z->nr_dirty_pages;
        release_block(z, p);
        if (z->nr_dirty_pages >= before_pages)
            break;                  /* madvise refused: try again later */
    }
    return z->c.released_pages - start;
}

void bm_release_maybe(struct bm_zone *z)
{
    if (list_empty(&z->dirty_list) || bm_g.opt.release_mode == BM_RELEASE_NONE)
        return;
    unsigned long threshold = bm_g.opt.release_threshold_pages;
    if (z->nr_dirty_pages > threshold) {
        release_some(z, threshold / 2, 0);
        return;
    }
    uint64_t now = bm_now_ns(), delay = bm_g.opt.release_delay_ns;
    struct bm_page *oldest = dirty_to_page(z->dirty_list.prev);
    if (now >= delay && oldest->freed_ns <= now - delay)
        release_some(z, ~0UL, now - delay + 1);
}

unsigned long bm_release_zone(struct bm_zone *z, unsigned long keep_pages)
{
    if (bm_g.opt.release_mode == BM_RELEASE_NONE)
        return 0;
    return release_some(z, keep_pages, 0);
}
