/*
 * release.c - returning free memory to the OS.
 *
 * Every free block carries its state: PG_released when none of its pages is
 * resident (never touched, or given back with madvise since it was freed),
 * PG_zero when it also reads as zero (MADV_DONTNEED or fresh; MADV_FREE
 * pages may come back with their old contents). A split keeps the state in
 * both halves; a merge keeps what both halves share, so a released block
 * that merges with a freshly freed one becomes resident again in the books
 * (an upper bound: madvise on pages that are already gone costs little).
 * resident = managed - fresh - released is the zone's RSS bound.
 *
 * Free blocks of release_min_order (16 KiB) or more that may be resident sit
 * on zone->dirty_list, newest first. They are released
 *   - when the oldest has been free for release_delay (5 s: with 1 s, a
 *     4 GiB heap whose program freed 90 % and wanted it back two phases
 *     later, a second or two, had it released and faulted in again: the
 *     scaling benchmark's refill 4,300-5,300 ns a malloc against 14,700-
 *     25,000; jemalloc decays over 10 s), or
 *   - at once when the dirty total passes release_threshold (down to half of
 *     it, so alloc/free cycles around the threshold do not thrash) on top
 *     of what a burst of frees below the heap's peak holds (peak_hold), or
 *   - on bm_trim().
 * Checks happen where the zone lock is already held after frees; no thread
 * is started. Blocks below release_min_order are never released: the
 * system call would cost more than the memory is worth. (At 64 KiB, the
 * holes around the one-slab-per-class that idle threads keep held 30 % more
 * memory with 256 idle threads than at 16 KiB, for no measured speed.)
 *
 * A whole 2 MiB pageblock would be the unit to keep if regions were backed
 * by transparent huge pages; by default they are not (MADV_NOHUGEPAGE;
 * thp=always opts in, and then a release splits the huge page), so holes
 * are fine and a pageblock pinned by one slab does not pin 2 MiB of RSS.
 *
 * The madvise runs without the zone lock: the block is taken off the free
 * lists and marked PG_isolated, the lock dropped, the memory released, the
 * lock retaken and the block freed back (merging with whatever was freed
 * meanwhile).
 */
#include <errno.h>
#include <sys/mman.h>

#include "internal.h"

void bm_dirty_add(struct bm_zone *z, struct bm_page *p, unsigned order, uint64_t stamp)
{
    p->flags |= PG_dirty;
    p->freed_ns = stamp ? stamp : bm_now_ns();
    list_add(&z->dirty_list, &p->dirty);
    z->nr_dirty_pages += 1UL << order;
}

void bm_dirty_del(struct bm_zone *z, struct bm_page *p, unsigned order)
{
    list_del(&p->dirty);
    p->flags &= (uint16_t)~PG_dirty;
    z->nr_dirty_pages -= 1UL << order;
}

/* Release one dirty block. Zone lock held on entry and on return, dropped in
 * between. Returns whether the memory went back. */
static bool release_block(struct bm_zone *z, struct bm_page *p)
{
    unsigned order = p->order;
    bm_del_free(z, p, order);
    p->flags = PG_isolated;
    p->order = (uint8_t)order;
    z->nr_isolated += 1UL << order;
    bm_mutex_unlock(&z->lock);

    int advice = bm_g.opt.release_mode == BM_RELEASE_FREE ? MADV_FREE : MADV_DONTNEED;
    int saved = errno;
    bool ok = bm_os_advise(page_to_addr(p), BM_PAGE_SIZE << order, advice) == 0;
    errno = saved;

    bm_mutex_lock(&z->lock);
    z->c.release_calls++;
    if (ok)
        z->c.released_pages += 1UL << order;
    z->nr_isolated -= 1UL << order;
    p->flags = 0;
    bm_free_one_page(z, p, order,
                     ok ? PG_released | PG_advised | (advice == MADV_DONTNEED ? PG_zero : 0) : 0);
    return ok;
}

/*
 * Release dirty blocks, oldest first, while more than keep_pages are dirty or
 * the oldest was freed before `before` (ns). Zone lock held. Returns the
 * number of pages released.
 */
/* Cost: O(blocks released), one madvise each: each dirty block is released
 * at most once per time it was freed, so amortised O(1) per free. */
static unsigned long release_some(struct bm_zone *z, unsigned long keep_pages, uint64_t before)
{
    unsigned long start = z->c.released_pages;
    while (!list_empty(&z->dirty_list)) {
        struct bm_page *p = dirty_to_page(z->dirty_list.prev);
        if (z->nr_dirty_pages <= keep_pages && p->freed_ns >= before)
            break;
        if (!release_block(z, p))
            break;                  /* madvise refused: try again later */
    }
    return z->c.released_pages - start;
}

/*
 * The threshold adapts to churn. Memory released because the dirty total
 * passed the threshold is often wanted again at once: a working set that
 * frees and mallocs tens of MiB a second around the threshold had its free
 * memory given back and faulted in again (alloc-workloads larson --threads
 * 32: 2 GiB released in 28,000 madvise calls in 2.5 s, 4 times jemalloc's
 * page faults, 1.5 times its time). So each release by the threshold looks
 * at the previous one: if it was less than release_delay ago and at least
 * half of what it gave back has been handed out again since (PG_advised
 * blocks, counted in take_block), the threshold doubles, up to the option
 * release_threshold_max (1 GiB; set it to release_threshold to keep the
 * threshold fixed). After 8 release delays without a release by the
 * threshold it halves again. The delay rule is untouched, so free memory
 * nobody wants still goes back within release_delay.
 */
static void release_adapt(struct bm_zone *z, uint64_t now)
{
    if (z->release_event_ns && now - z->release_event_ns < bm_g.opt.release_delay_ns &&
        z->release_event_pages && z->reused_since_event * 2 >= z->release_event_pages &&
        bm_release_threshold(z) * 2 <= bm_g.opt.release_threshold_max_pages) {
        z->release_scale *= 2;
        z->c.threshold_raised++;
        z->reused_since_event = 0;      /* the evidence is used up */
    }
}

unsigned long bm_release_threshold(const struct bm_zone *z)
{
    return bm_g.opt.release_threshold_pages * z->release_scale;
}

/*
 * A burst of frees keeps its memory for the delay. Frees in a large heap (a
 * server dropping a cache, a phase of a program ending) are typically
 * followed by mallocs that want the memory again; with the threshold alone,
 * freeing 90 % of a 2 GiB heap gave 745 MiB back in 23,000 madvise calls
 * and the next phase faulted it all in again (bench/frag-at-size.sh: free
 * 1.0 s instead of 0.06 s, the 8 KiB phase 2.1 s instead of 0.13 s, the same
 * peak). So free memory that only fills the drop from the zone's in-use peak
 * (the highest count of pages in use seen at a free since the delay last
 * released anything) is not released by the threshold, which applies on top of
 * it: while it is held, the zone's resident memory stays within that recent
 * peak plus the threshold. When the heap grows past the peak while free
 * memory waits (its mallocs could not use it), the hold is 0 and the
 * threshold releases as before; the delay returns everything.
 * Option release_peak=no: the threshold alone.
 */
/* Cost: O(1), zone counters kept by the buddy's list operations. */
static unsigned long peak_hold(struct bm_zone *z, unsigned long freed)
{
    if (!__atomic_load_n(&bm_g.opt.release_peak, __ATOMIC_RELAXED))
        return 0;
    /* held: pages in use plus the holes (resident free pages off the dirty
     * list), less the released pages that merges made count as resident
     * again. Every event moves pages between held and dirty one for one (a
     * free into a dirty block, a malloc from one, a split leaving a hole, a
     * merge with a hole or a released block) or out of dirty alone (a
     * release); only mallocs of fresh or released memory, the heap's
     * growth, raise held alone. So dirty <= threshold + (held at the peak -
     * held) holds through a burst of frees and fails when the heap grows
     * while free memory waits. */
    unsigned long idle = z->nr_free_pages + z->nr_isolated +
                         (z->nr_fresh_blocks << (MAX_ORDER - 1));
    unsigned long in_use = z->managed_pages > idle ? z->managed_pages - idle : 0;
    unsigned long holes = z->nr_free_pages - z->nr_dirty_pages - z->nr_returned_pages;
    unsigned long held = in_use + holes - z->nr_unreleased_by_merge;   /* modular */
    /* in use before this free: the peak is sampled at frees only */
    if (in_use + freed >= z->inuse_peak) {
        z->inuse_peak = in_use + freed;
        z->held_at_peak = held + freed;
    }
    long hold = (long)(z->held_at_peak - held);
    /* Plus an eighth of the pages in use, at most 4 thresholds (64 MiB). A
     * fixed 16 MiB made a heap of hundreds of MiB that grows while a little
     * free memory waits pay hundreds of madvise calls, each a TLB shootdown
     * on every CPU that runs the process (scaling benchmark, 256 MiB, two
     * threads: 190-660 calls, the remote phase 540-1,800 ns per free
     * against 100-180 without them, the same peak RSS); uncapped, an eighth
     * of a 4 GiB heap held 512 MiB its mallocs could not use (peak RSS 4913
     * MiB against 4815). */
    unsigned long eighth = in_use / 8, cap = 4 * bm_release_threshold(z);
    return (hold > 0 ? (unsigned long)hold : 0) + (eighth < cap ? eighth : cap);
}

void bm_release_maybe(struct bm_zone *z, unsigned long freed)
{
    if (list_empty(&z->dirty_list) || bm_g.opt.release_mode == BM_RELEASE_NONE)
        return;
    unsigned long threshold = bm_release_threshold(z);
    uint64_t now = bm_now_ns(), delay = bm_g.opt.release_delay_ns;
    unsigned long hold = peak_hold(z, freed);
    if (z->nr_dirty_pages > threshold + hold) {
        release_adapt(z, now);
        threshold = bm_release_threshold(z);
        if (z->nr_dirty_pages > threshold + hold) {
            z->release_event_ns = now;
            z->reused_since_event = 0;
            z->release_event_pages = release_some(z, hold + threshold / 2, 0);
        }
        return;
    }
    if (z->release_scale > 1 && now - z->release_event_ns > 8 * delay) {
        z->release_scale /= 2;          /* calm again */
        z->release_event_ns = now;
    }
    struct bm_page *oldest = dirty_to_page(z->dirty_list.prev);
    if (now >= delay && oldest->freed_ns <= now - delay) {
        release_some(z, ~0UL, now - delay + 1);
        z->inuse_peak = 0;              /* the next free samples a new peak */
    }
}

unsigned long bm_release_zone(struct bm_zone *z, unsigned long keep_pages)
{
    if (bm_g.opt.release_mode == BM_RELEASE_NONE)
        return 0;
    return release_some(z, keep_pages, 0);
}
