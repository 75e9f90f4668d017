/*
 * buddymalloc.h - public interface of buddymalloc.
 *
 * The page layer: the Linux kernel's buddy allocator in a process. Blocks of
 * 2^order pages (4 KiB pages), naturally aligned, from per-node zones with
 * per-CPU pagesets; introspection in the kernel's own text formats.
 *
 * Nothing declared here allocates through malloc or uses stdio, except where
 * a FILE * is taken.
 */
#ifndef BUDDYMALLOC_H
#define BUDDYMALLOC_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BM_PAGE_BYTES 4096u

/* ---- the malloc API --------------------------------------------------- *
 * Same contracts as glibc's: every result 16-byte aligned (8 for requests
 * of at most 8 bytes); malloc(0) a unique pointer; free(NULL) nothing;
 * NULL with errno ENOMEM when memory cannot be had; realloc(p, 0) frees p
 * and returns NULL; aligned variants take any power of two (EINVAL
 * otherwise). Pointers that were not handed out, interior pointers and
 * double frees are reported on stderr with the function and the address,
 * then abort (docs/malloc.md says exactly what is caught where).
 * libbuddymalloc also exports these under the standard names.
 */
void *bm_malloc(size_t size);
void bm_free(void *p);
void *bm_calloc(size_t n, size_t size);
void *bm_realloc(void *p, size_t size);
void *bm_reallocarray(void *p, size_t n, size_t size);
void *bm_memalign(size_t alignment, size_t size);
int bm_posix_memalign(void **out, size_t alignment, size_t size);
void *bm_aligned_alloc(size_t alignment, size_t size);
void *bm_valloc(size_t size);
void *bm_pvalloc(size_t size);
size_t bm_malloc_usable_size(void *p);
/* free with the size asked for; a size larger than the block is reported. */
void bm_free_sized(void *p, size_t size);

/* ---- page allocation ---------------------------------------------------- */

/* gfp flags for bm_alloc_pages: the migrate type (docs/design.md), and
 * whether the per-CPU pagesets may be used. */
enum {
    BM_GFP_AUTO   = 0,      /* PAGES up to the pageset orders, LARGE above   */
    BM_GFP_SLAB   = 1,      /* long-lived, cut into small objects            */
    BM_GFP_PAGES  = 2,      /* page-sized user data                           */
    BM_GFP_LARGE  = 3,      /* multi-page user data                           */
    BM_GFP_TYPE_MASK = 3,
    BM_GFP_NOPCP  = 1u << 2 /* bypass the pagesets: alloc and free go to the zone */
};

/* 2^order contiguous pages aligned to their size, or NULL with errno ENOMEM
 * (order >= bm_max_order(), or the region limit is reached). */
void *bm_alloc_pages(unsigned order, unsigned gfp);

/* Free a block from bm_alloc_pages. addr must be the block's start and order
 * the order it was allocated with; anything else (a foreign pointer, a double
 * free, a wrong order) is reported on stderr with the address and aborts.
 * NULL is ignored. */
void bm_free_pages(void *addr, unsigned order);

/* Order of the allocated block starting at addr, or -1 if addr is not the
 * start of a block handed out by bm_alloc_pages. */
int bm_pages_order(const void *addr);

/* Build-time geometry. */
int bm_max_order(void);           /* number of orders: blocks up to 2^(n-1) pages */
int bm_pageblock_order(void);

/* ---- memory return ---------------------------------------------------- */

/* Give the calling thread's empty slabs back, free the empty slabs of
 * exited threads, drain the per-CPU pagesets and return free memory to the
 * OS, keeping at most pad bytes of free resident memory per zone. Returns 1
 * if any memory was returned, 0 otherwise (malloc_trim's convention). */
int bm_trim(size_t pad);

/* Move every page on the per-CPU pagesets back to the buddy free lists. */
void bm_drain_pagesets(void);

/* ---- introspection ---------------------------------------------------- *
 * The text functions follow snprintf: they write at most size bytes
 * (NUL-terminated when size > 0) and return the length of the whole text.
 */

/* One /proc/buddyinfo line per zone: free blocks per order. Fresh (never
 * used) memory counts as free blocks of the highest order. */
size_t bm_buddyinfo(char *buf, size_t size);
/* /proc/pagetypeinfo: free blocks per order per migrate type, and the number
 * of pageblocks of each type. */
size_t bm_pagetypeinfo(char *buf, size_t size);
/* The kernel's extfrag_index per order (-1.000: the order can be served;
 * towards 0: failure from lack of memory; towards 1: from fragmentation). */
size_t bm_extfrag_index(char *buf, size_t size);
/* Per-CPU pageset counters (count/high/batch, hits, refills, drains). */
size_t bm_pagesetinfo(char *buf, size_t size);
/* The NUMA nodes, the policy, distances and zonelists, and per node the
 * numastat counters of struct bm_zone_stats (docs/numa.md). */
size_t bm_numastat(char *buf, size_t size);
/* The kernel's /proc/slabinfo (version 2.1) for the size classes, then a
 * table of each class's slab geometry and waste. */
size_t bm_slabinfo(char *buf, size_t size);
/* Everything: buddyinfo, pagetypeinfo, extfrag_index, pagesets, zone
 * counters, slabinfo, huge allocations. */
void bm_stats_fd(int fd);
void bm_stats(FILE *f);

struct bm_class_stats {
    unsigned size;                  /* block size                              */
    unsigned objs_per_slab;
    unsigned pages_per_slab;
    unsigned tail_waste;            /* bytes per slab after the last block      */
    unsigned max_waste_permille;    /* worst internal waste of a request, 1/1000 */
    unsigned long slabs;            /* slabs in existence                      */
    unsigned long abandoned;        /* of which left by exited threads          */
    uint64_t total_objs;            /* slabs * objs_per_slab                    */
    uint64_t active_objs;           /* handed out and not freed                 */
    uint64_t allocs, frees;         /* since start                             */
};
int bm_nr_classes(void);
int bm_class_stats(int cls, struct bm_class_stats *out);

struct bm_malloc_stats {
    unsigned long heaps;            /* threads with a heap now                 */
    uint64_t small_allocs, small_frees, small_active_bytes;
    uint64_t large_allocs, large_frees, large_bytes;   /* runs of pages */
    uint64_t huge_allocs, huge_frees, huge_live, huge_bytes;
    /* in a fork child: heaps of threads that did not survive the fork,
     * retired (their memory reused) or left alone (failed the check) */
    unsigned long fork_heaps_retired, fork_heaps_lost;
    /* sweeps of quiet threads' heaps: their emptied slabs given back */
    unsigned long heaps_swept;
};
int bm_malloc_stats(struct bm_malloc_stats *out);

/* Fault injection, for tests: the nth call from now to the kernel's "mmap"
 * (mmap and mremap), "madvise" or "mprotect" (the guard pages of
 * harden=secure) fails, and the count - 1 after it; nth = 0
 * disarms. 0, or -1 with EINVAL for another name. The options fail_mmap,
 * fail_mmap_count, fail_madvise, fail_madvise_count do the same from
 * start-up. */
int bm_fault_inject(const char *call, unsigned long nth, unsigned long count);

#define BM_MAX_ORDERS 16
#define BM_MIGRATE_TYPES 4

struct bm_zone_stats {
    int node;
    unsigned long regions;
    unsigned long managed_pages;     /* usable pages in the zone's regions    */
    unsigned long free_pages;        /* free in the buddy, fresh included     */
    unsigned long fresh_blocks;      /* max-order blocks never used            */
    unsigned long pcp_pages;         /* on the per-CPU pagesets                */
    unsigned long resident_pages;    /* managed - returned (an upper bound)    */
    unsigned long returned_pages;    /* in released / never touched blocks     */
    unsigned long dirty_pages;       /* free but resident, awaiting release    */
    unsigned long nr_free[BM_MAX_ORDERS];                    /* buddyinfo     */
    unsigned long nr_free_type[BM_MIGRATE_TYPES][BM_MAX_ORDERS];
    unsigned long pageblocks[BM_MIGRATE_TYPES];
    uint64_t alloc[BM_MAX_ORDERS];   /* blocks handed out by the buddy         */
    uint64_t fallback[BM_MIGRATE_TYPES];
    uint64_t claimed[BM_MIGRATE_TYPES];
    uint64_t reserve_used;
    uint64_t fresh_carved;
    uint64_t release_calls;
    uint64_t released_pages;
    uint64_t enomem;
    uint64_t zeroed_allocs;          /* blocks known zero when handed out (calloc) */
    uint64_t pcp_alloc_hit, pcp_refill, pcp_free_hit, pcp_drain, pcp_lock_miss;
    uint64_t reused_pages;           /* released pages handed out again          */
    uint64_t threshold_raised;       /* times churn doubled the release threshold */
    unsigned long release_threshold_pages;  /* the threshold now                */
    /* NUMA, per zone (= node), like the kernel's numastat */
    uint64_t numa_hit;          /* blocks handed out here, meant for this node */
    uint64_t numa_miss;         /* handed out here, meant for another node whose zone was full */
    uint64_t numa_foreign;      /* meant for this node, handed out by another zone */
    uint64_t local_node;        /* handed out here to a thread running on this node */
    uint64_t other_node;        /* handed out here to a thread running on another node */
    uint64_t remote_free;       /* page blocks freed into this zone from a CPU of another node */
    uint64_t slab_remote_free;  /* slab objects of this node freed on another node */
    uint64_t slab_remote_batches; /* batches they came home in */
    uint64_t node_full;         /* times the zone declined: its node was low on memory */
};

/* Number of zones: the highest NUMA node + 1 (a node that is not online,
 * or outside the policy's nodes, has an empty zone). */
int bm_nr_zones(void);
/* Fill *out for zone (node) n; 0 on success, -1 if there is no such zone. */
int bm_zone_stats(int n, struct bm_zone_stats *out);

/* Names of the migrate types as printed in pagetypeinfo. */
const char *bm_migratetype_name(int mt);

/* ---- heap checker --------------------------------------------------- */

/* Walk every zone, free list, pageset and region and verify the invariants
 * (docs/design.md#invariants). Each violation is described on fd (if >= 0).
 * Returns the number of violations: 0 means consistent. Takes every lock, so
 * it is a pause for the whole allocator; meant for tests and debugging. */
long bm_check(int fd);

#ifdef __cplusplus
}
#endif

#endif /* BUDDYMALLOC_H */
