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
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "fmt.h"
#include "internal.h"
#include "vg.h"

/* One byte per possible region slot (128 KiB of BSS for 1 GiB regions,
 * only the pages around used slots ever faulted in): a byte load is two
 * instructions shorter than a bit test on free's fast path. */
_Atomic uint8_t bm_region_map[REGION_MAP_BITS];

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
    /* valgrind: what no one was handed is out of bounds (vg.h) */
    BM_VG_NOACCESS((char *)a + (REGION_FIRST_PAGE << BM_PAGE_SHIFT),
                   REGION_SIZE - (REGION_FIRST_PAGE << BM_PAGE_SHIFT));
    return (void *)a;
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
    bm_putu(&b, REGION_SIZE >> 20, 0);
    bm_puts(&b, " MiB)\n");
    bm_buf_finish(&b);
}

/*
 * The options thp and numa, applied to a new region before anything
 * touches it (docs/options.md, docs/numa.md): the region, its mem_map
 * included, goes to its zone's node (bm_numa_place). A policy the kernel
 * refuses (a kernel without NUMA) is named once on stderr; the region then
 * stays under the process's own policy.
 */
static void region_policy(struct bm_region *r, struct bm_zone *z)
{
    static _Atomic bool told;
    char *base = (char *)r + (REGION_FIRST_PAGE << BM_PAGE_SHIFT);
    size_t len = REGION_SIZE - (REGION_FIRST_PAGE << BM_PAGE_SHIFT);
    struct bm_options *o = &bm_g.opt;
    if (o->thp != BM_THP_DEFAULT &&
        bm_os_advise(base, len, o->thp == BM_THP_ALWAYS ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) != 0 &&
        o->verbose)
        bm_message("thp: ", "madvise refused (kernel without transparent huge pages?)");
    if (!bm_numa_place(r, REGION_SIZE, z->node) && !atomic_exchange(&told, true))
        bm_message("numa: ", "the kernel refused to place a region on its node (mbind); "
                             "its pages follow the process's policy");
}

/*
 * Add a region to zone z. Called with the zone lock held when the zone has
 * nothing left; fails (false, errno ENOMEM) at the region limit or when the
 * OS refuses the reservation.
 */
bool bm_region_add(struct bm_zone *z)
{
    unsigned long n = atomic_load(&bm_g.nr_regions);
    do {
        if (n >= bm_g.opt.max_regions) {
            errno = ENOMEM;
            return false;
        }
    } while (!atomic_compare_exchange_weak(&bm_g.nr_regions, &n, n + 1));

    struct bm_region *r = reserve_aligned();
    if (!r) {
        atomic_fetch_sub(&bm_g.nr_regions, 1);
        errno = ENOMEM;
        return false;
    }
    region_policy(r, z);
    r->magic = BM_REGION_MAGIC;
    r->zone = z;
    r->base = (uintptr_t)r;
    r->fresh_next = REGION_FIRST_PAGE;
    r->index = (uint32_t)n;
    /* Like the kernel at boot, every pageblock starts movable (PAGES); the
     * first user of a fresh block retypes it (bm_carve_fresh). */
    memset(r->pb_mt, MIGRATE_PAGES, sizeof r->pb_mt);

    r->next = z->regions;
    z->regions = r;
    if (!z->fresh)
        z->fresh = r;
    z->nr_regions++;
    unsigned long usable = REGION_PAGES - REGION_FIRST_PAGE;
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
 * Hand the next never-used max-order block of the zone to the buddy, typed
 * for mt (it is fresh: nobody else's, so this is no fallback). Zone lock
 * held. Returns false when every region of the zone is fully carved.
 */
bool bm_carve_fresh(struct bm_zone *z, int mt)
{
    while (z->fresh) {
        struct bm_region *r = z->fresh;
        if (r->fresh_next < REGION_PAGES) {
            struct bm_page *p = region_mem_map(r) + r->fresh_next;
            r->fresh_next += MAX_ORDER_NR_PAGES;
            z->nr_fresh_blocks--;
            z->c.fresh_carved++;
            bm_set_pageblock_range(p, MAX_ORDER - 1, mt);
            bm_add_free(z, p, MAX_ORDER - 1, mt, 0, PG_released | PG_zero);   /* untouched */
            return true;
        }
        /* Regions are carved oldest first; find another with fresh blocks. */
        struct bm_region *next = NULL;
        for (struct bm_region *q = z->regions; q; q = q->next)
            if (q->fresh_next < REGION_PAGES)
                next = q;
        z->fresh = next;
    }
    return false;
}
