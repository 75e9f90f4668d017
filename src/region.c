/*
 * region.c - address space from the OS, and the mem_map inside it.
 *
 * A region is REGION_SIZE bytes reserved with MAP_NORESERVE and aligned to
 * its size, so that
 *     descriptor(addr) = (struct bm_page *)(addr & ~REGION_MASK)
 *                        + ((addr & REGION_MASK) >> 12)
 * and a one-bit-per-slot map says in O(1) whether an address is ours.
 *
 * Memory is handed to the buddy lazily, one max-order block at a time, like
 * the kernel's deferred struct page init: adding a region writes only its
 * header, and a descriptor page is faulted in only when a block starting in
 * it is first used. Until then the region's tail is "fresh": free, counted
 * in buddyinfo as free max-order blocks, never touched.
 *
 * Under an address-space limit (RLIMIT_AS, ulimit -v) MAP_NORESERVE does
 * not help: every mapped byte counts, and a 1 GiB region (2 GiB while it is
 * aligned) leaves a limit of a few hundred MiB nothing for thread stacks or
 * anything else. There a region is a slot of REGION_SIZE bytes of which
 * only a prefix is mapped: the whole mem_map (so that a descriptor is
 * readable for every address of the slot) and usable pages in steps of a
 * sixteenth of the limit (r->end). Carving stops at r->end; when the zone
 * has nothing fresh left its newest region maps its next step in place
 * (MAP_FIXED_NOREPLACE), and only when that fails is a region added. The
 * slot itself is found without mapping it: MAP_FIXED_NOREPLACE at aligned
 * addresses (map_slot).
 *
 * The unmapped rest of a slot is marked ours in bm_region_map, and another
 * mapping can still land there (the kernel's, one of our own huge blocks,
 * a MAP_FIXED of the program): no mapping can keep it free, since a
 * PROT_NONE reservation counts against the limit too. Landings are made
 * unlikely and are handled where they happen:
 *   - unlikely: slots are taken `limit` bytes below the kernel's mmap
 *     area and stack downwards, so the kernel, which fills the highest
 *     hole first (top-down) or the lowest above mmap_base (legacy layout),
 *     reaches them only after more than the limit was mapped;
 *   - handled: a pointer there has a zero descriptor, which the fast
 *     paths already send out of line, and every slow path that reads
 *     descriptors or memory bounds itself by r->end (bm_addr_mapped,
 *     check.c, stats.c) or meets only zero descriptors (large.c's resize,
 *     fork.c, buddy merges, which never cross a max-order block). A
 *     region whose growth meets a landing stops growing; the zone adds
 *     another region.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include "fmt.h"
#include "internal.h"
#include "vg.h"

/* One byte per possible region slot (128 KiB of BSS for 1 GiB regions,
 * only the pages around used slots ever faulted in): a byte load is two
 * instructions shorter than a bit test on free's fast path. */
_Atomic uint8_t bm_region_map[REGION_MAP_BITS];

/* Without a limit: the whole slot, mapped at once. */
static void *reserve_aligned(void)
{
    /* Over-reserve by one region, then trim both ends to the alignment. */
    size_t len = 2 * REGION_SIZE;
    char *p = bm_os_map(len, MAP_NORESERVE);
    if (p == MAP_FAILED)
        return NULL;
    uintptr_t a = ((uintptr_t)p + REGION_MASK) & ~REGION_MASK;
    size_t head = a - (uintptr_t)p, tail = len - head - REGION_SIZE;
    if (head)
        munmap(p, head);
    if (tail)
        munmap((char *)a + REGION_SIZE, tail);
    if ((a + REGION_SIZE - 1) >> BM_VA_BITS) {      /* cannot be mapped by bit */
        munmap((void *)a, REGION_SIZE);
        return NULL;
    }
    return (void *)a;
}

/* The address-space limit in force (RLIMIT_AS) in bytes, 0 for none. A
 * system call without allocation; asked only when a region is added or
 * grows, so a limit set after start-up applies from the next one. O(1). */
static size_t as_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
        return 0;
    return (size_t)rl.rlim_cur;
}

/* Usable pages a region maps at a time under a limit: a sixteenth of it in
 * max-order blocks (12 MiB of 200 MiB), at least one block; no limit (one
 * set after the region was made, then lifted): the rest of the slot. */
static unsigned long step_pages(size_t limit)
{
    if (!limit)
        return REGION_PAGES;
    unsigned long n = ((limit >> BM_PAGE_SHIFT) / 16) & ~(MAX_ORDER_NR_PAGES - 1);
    return n ? n : MAX_ORDER_NR_PAGES;
}

/* Slots below SLOT_FLOOR are not tried (the executable and its brk heap of
 * a non-PIE program live down there); SLOT_TRIES bounds the search. */
#define SLOT_FLOOR (1UL << 32)
#define SLOT_TRIES 64
#define SLOT_GAP_MAX (1UL << 40)

/* The next slot to try: below the last one found, 0 before the first. */
static _Atomic uintptr_t slot_next;

/*
 * Map len bytes at the base of a free aligned slot, under a limit: no
 * over-reservation to align, which would need twice REGION_SIZE of the
 * limit. The first slot is taken `limit` below where the kernel places
 * mappings now (see the top of the file for why), the next ones below the
 * last. NULL with errno ENOMEM when the limit is reached. O(1): at most
 * SLOT_TRIES + 1 mmap calls.
 */
static void *map_slot(size_t len, size_t limit)
{
    uintptr_t s = atomic_load_explicit(&slot_next, memory_order_relaxed);
    if (!s) {
        char *probe = bm_os_map(BM_PAGE_SIZE, MAP_NORESERVE);
        if (probe == MAP_FAILED)
            return NULL;
        munmap(probe, BM_PAGE_SIZE);
        uintptr_t top = (uintptr_t)probe & ~REGION_MASK;
        uintptr_t gap = ((limit < SLOT_GAP_MAX ? limit : SLOT_GAP_MAX) + REGION_MASK) & ~REGION_MASK;
        s = top > SLOT_FLOOR + gap + REGION_SIZE ? top - gap - REGION_SIZE : 1UL << 46;
    }
    for (int i = 0; i < SLOT_TRIES && s >= SLOT_FLOOR; i++, s -= REGION_SIZE) {
        char *p = bm_os_map_at((void *)s, len, MAP_NORESERVE | MAP_FIXED_NOREPLACE);
        if (p == (char *)s) {
            atomic_store_explicit(&slot_next, s - REGION_SIZE, memory_order_relaxed);
            return p;
        }
        if (p != MAP_FAILED)            /* a kernel before 4.17 took it as a hint */
            munmap(p, len);
        else if (errno != EEXIST)       /* the limit, or fault injection */
            return NULL;
    }
    errno = ENOMEM;
    return NULL;
}

/* verbose=2: a line per region reserved. */
static void bm_region_note(const struct bm_region *r)
{
    char scratch[160];
    struct bm_buf b;
    bm_buf_fd(&b, 2, scratch, sizeof scratch);
    bm_puts(&b, "buddymalloc: region ");
    bm_putu(&b, r->index, 0);
    bm_puts(&b, " reserved at ");
    bm_putx(&b, r->base);
    bm_puts(&b, " for node ");
    bm_putu(&b, (unsigned)r->zone->node, 0);
    bm_puts(&b, " (");
    bm_putu(&b, ((size_t)r->end << BM_PAGE_SHIFT) >> 20, 0);
    bm_puts(&b, " of ");
    bm_putu(&b, REGION_SIZE >> 20, 0);
    bm_puts(&b, " MiB mapped)\n");
    bm_buf_finish(&b);
}

/*
 * The options thp and numa, applied to pages [from, to) of a region just
 * mapped (all of it when added, a step when it grows) before anything
 * touches them (docs/options.md, docs/numa.md): they, the mem_map
 * included, go to the zone's node (bm_numa_place). A policy the kernel
 * refuses (a kernel without NUMA) is named once on stderr; the region then
 * stays under the process's own policy. Valgrind: what no one was handed
 * is out of bounds (vg.h).
 */
static void region_policy(struct bm_region *r, struct bm_zone *z, unsigned long from,
                          unsigned long to)
{
    static _Atomic bool told;
    unsigned long first = from > REGION_FIRST_PAGE ? from : REGION_FIRST_PAGE;
    char *base = (char *)r + (first << BM_PAGE_SHIFT);
    size_t len = (to - first) << BM_PAGE_SHIFT;
    struct bm_options *o = &bm_g.opt;
    if (o->thp != BM_THP_DEFAULT &&
        bm_os_advise(base, len, o->thp == BM_THP_ALWAYS ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) != 0 &&
        o->verbose)
        bm_message("thp: ", "madvise refused (kernel without transparent huge pages?)");
    if (!bm_numa_place((char *)r + (from << BM_PAGE_SHIFT), (to - from) << BM_PAGE_SHIFT,
                       z->node) &&
        !atomic_exchange(&told, true))
        bm_message("numa: ", "the kernel refused to place a region on its node (mbind); "
                             "its pages follow the process's policy");
    BM_VG_NOACCESS(base, len);
}

/*
 * Add a region to zone z. Called with the zone lock held when the zone has
 * nothing left; fails (false, errno ENOMEM) at the region limit or when the
 * OS refuses the reservation.
 */
/* Cost: O(1) plus the mmap (and, under a limit, at most 65 of them). */
bool bm_region_add(struct bm_zone *z)
{
    unsigned long n = atomic_load(&bm_g.nr_regions);
    do {
        if (n >= bm_g.opt.max_regions) {
            errno = ENOMEM;
            return false;
        }
    } while (!atomic_compare_exchange_weak(&bm_g.nr_regions, &n, n + 1));

    size_t limit = as_limit();
    unsigned long end = REGION_PAGES;
    struct bm_region *r;
    if (!limit) {
        r = reserve_aligned();
    } else {
        /* the mem_map and a first step; near the limit, one block */
        unsigned long step = step_pages(limit);
        if (step > REGION_PAGES - REGION_FIRST_PAGE)
            step = REGION_PAGES - REGION_FIRST_PAGE;
        end = REGION_FIRST_PAGE + step;
        r = map_slot(end << BM_PAGE_SHIFT, limit);
        if (!r && errno == ENOMEM && step > MAX_ORDER_NR_PAGES) {
            end = REGION_FIRST_PAGE + MAX_ORDER_NR_PAGES;
            r = map_slot(end << BM_PAGE_SHIFT, limit);
        }
    }
    if (!r) {
        atomic_fetch_sub(&bm_g.nr_regions, 1);
        errno = ENOMEM;
        return false;
    }
    region_policy(r, z, 0, end);
    r->magic = BM_REGION_MAGIC;
    r->zone = z;
    r->base = (uintptr_t)r;
    r->fresh_next = REGION_FIRST_PAGE;
    r->end = (uint32_t)end;
    r->index = (uint32_t)n;
    /* Like the kernel at boot, every pageblock starts movable (PAGES); the
     * first user of a fresh block retypes it (bm_carve_fresh). */
    memset(r->pb_mt, MIGRATE_PAGES, sizeof r->pb_mt);

    r->next = z->regions;
    z->regions = r;
    if (!z->fresh)
        z->fresh = r;
    z->nr_regions++;
    unsigned long usable = end - REGION_FIRST_PAGE;
    z->managed_pages += usable;
    z->nr_fresh_blocks += usable / MAX_ORDER_NR_PAGES;

    uintptr_t slot = r->base >> REGION_SHIFT;
    atomic_store_explicit(&bm_region_map[slot], 1, memory_order_release);

    if (z->pcp)
        bm_pcp_update_sizes(z);
    if (bm_g.opt.verbose >= 2)
        bm_region_note(r);
    if (z->nr_regions == 1) {
        /* the zone's first region: its reserve pageblocks and pagesets */
        bm_zone_setup_reserve(z, bm_g.opt.reserve_pageblocks);
        if (bm_g.opt.pcp_enabled)
            bm_pcp_setup(z);
    }
    return true;
}

void bm_set_pageblock_range(struct bm_page *p, unsigned order, int mt)
{
    struct bm_region *r = page_region(p);
    unsigned long pb = page_index(p) >> pageblock_order;
    unsigned long n = order >= pageblock_order ? 1UL << (order - pageblock_order) : 1;
    for (unsigned long i = 0; i < n; i++)
        r->pb_mt[pb + i] = (uint8_t)mt;
}

/*
 * Map the next step of the zone's newest region in place, when it maps
 * only a prefix of its slot (an address-space limit). Only the newest: a
 * region is added only when this failed, so an older one is either whole,
 * blocked by another mapping (not chased), or failed at the limit as the
 * new one then did. Zone lock held. O(1): at most two mmap calls.
 */
static bool region_grow(struct bm_zone *z)
{
    struct bm_region *r = z->regions;
    if (!r || r->end >= REGION_PAGES)
        return false;
    unsigned long from = r->end, step = step_pages(as_limit());
    if (step > REGION_PAGES - from)
        step = REGION_PAGES - from;
    int saved = errno;
    for (;;) {
        char *at = (char *)r + (from << BM_PAGE_SHIFT);
        char *p = bm_os_map_at(at, step << BM_PAGE_SHIFT, MAP_NORESERVE | MAP_FIXED_NOREPLACE);
        if (p == at)
            break;
        if (p != MAP_FAILED)            /* a kernel before 4.17 took it as a hint */
            munmap(p, step << BM_PAGE_SHIFT);
        /* taken by another mapping, or one block does not fit either */
        if (p != MAP_FAILED || errno == EEXIST || step == MAX_ORDER_NR_PAGES) {
            errno = saved;
            return false;
        }
        step = MAX_ORDER_NR_PAGES;      /* near the limit, one block may fit */
    }
    errno = saved;
    region_policy(r, z, from, from + step);
    /* readers of end without the lock (bm_addr_mapped) see it grow only */
    __atomic_store_n(&r->end, (uint32_t)(from + step), __ATOMIC_RELAXED);
    z->managed_pages += step;
    z->nr_fresh_blocks += step / MAX_ORDER_NR_PAGES;
    z->fresh = r;
    if (z->pcp)
        bm_pcp_update_sizes(z);
    return true;
}

/*
 * Hand the next never-used max-order block of the zone to the buddy, typed
 * for mt (it is fresh: nobody else's, so this is no fallback). Zone lock
 * held. Returns false when every region of the zone is carved to its end
 * and the newest cannot grow.
 */
/* Cost: O(1) (a region grow, under a limit, is two mmaps at most). */
bool bm_carve_fresh(struct bm_zone *z, int mt)
{
    while (z->fresh || region_grow(z)) {
        struct bm_region *r = z->fresh;
        if (r->fresh_next < r->end) {
            struct bm_page *p = region_mem_map(r) + r->fresh_next;
            r->fresh_next += MAX_ORDER_NR_PAGES;
            z->nr_fresh_blocks--;
            z->c.fresh_carved++;
            bm_set_pageblock_range(p, MAX_ORDER - 1, mt);
            bm_add_free(z, p, MAX_ORDER - 1, mt, 0, PG_released | PG_zero);   /* untouched */
            return true;
        }
        /* Only z->fresh ever has fresh blocks (bm_check verifies it): a
         * region is added, or grows, only when carving found none, so
         * when it runs dry there is no other to look for. O(1). */
        z->fresh = NULL;
    }
    return false;
}
