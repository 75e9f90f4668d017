/*
 * types.h - every internal type and constant of buddymalloc in one place.
 *
 * The picture (docs/design.md has the long version):
 *
 *   region  : 2^BM_REGION_SHIFT bytes of address space aligned to its size
 *             (a slot), mapped whole, or under an address-space limit as a
 *             prefix that grows. Its first pages hold the region header and
 *             the mem_map: one struct bm_page (64 bytes) per 4 KiB page of the
 *             slot, so the descriptor of any address is
 *             base + ((addr - base) >> 12) * 64.
 *   zone    : one per NUMA node; owns regions, free_area[BM_MAX_ORDER] with a
 *             free list per migrate type, and one per_cpu_pages per CPU.
 *   pageblock: 2^BM_PAGEBLOCK_ORDER pages; the unit that has a migrate type and
 *             the unit that is returned to the OS.
 */
#ifndef BM_TYPES_H
#define BM_TYPES_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bm_config.h"

#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define BM_API      __attribute__((visibility("default")))
#define BM_COLD     __attribute__((cold, noinline))
#define BM_CACHELINE 64

/* ---- geometry -------------------------------------------------------- */

#define BM_PAGE_SHIFT        12
#define BM_PAGE_SIZE         (1UL << BM_PAGE_SHIFT)
#define MAX_ORDER            BM_MAX_ORDER
#define MAX_ORDER_NR_PAGES   (1UL << (MAX_ORDER - 1))
/* The longest a run of pages may grow to in place (realloc), whatever the
 * order of the block it was first carved from: 16 max-order blocks. */
#define BM_RUN_MAX_PAGES     (MAX_ORDER_NR_PAGES << 4)
#define pageblock_order      BM_PAGEBLOCK_ORDER
#define pageblock_nr_pages   (1UL << pageblock_order)
#define PCP_MAX_ORDER        BM_PCP_MAX_ORDER

#define REGION_SHIFT         BM_REGION_SHIFT
#define REGION_SIZE          (1UL << REGION_SHIFT)
#define REGION_MASK          (REGION_SIZE - 1)
#define REGION_PAGES         (REGION_SIZE >> BM_PAGE_SHIFT)
#define REGION_PAGEBLOCKS    (REGION_PAGES >> pageblock_order)
/* Bytes of mem_map, and the first page index usable for blocks: the mem_map
 * (which also holds the region header) rounded up to a max-order block, so
 * every buddy pair of a region lies wholly inside its usable part. */
#define REGION_MEMMAP_BYTES  (REGION_PAGES * sizeof(struct bm_page))
#define REGION_FIRST_PAGE                                                     \
    ((((REGION_MEMMAP_BYTES + BM_PAGE_SIZE - 1) >> BM_PAGE_SHIFT) +           \
      MAX_ORDER_NR_PAGES - 1) & ~(MAX_ORDER_NR_PAGES - 1))

/* The largest slab (four 32 KiB blocks) is order 5 (size_class.c). */
#define BM_SLAB_MAX_ORDER    5
_Static_assert(BM_SLAB_MAX_ORDER <= MAX_ORDER - 1,
               "max_order must be at least 6: the 32 KiB class needs order-5 slabs");
_Static_assert(pageblock_order <= MAX_ORDER - 1, "a pageblock is at most a max-order block");
_Static_assert(PCP_MAX_ORDER <= MAX_ORDER - 1, "pageset orders are buddy orders");

/* User space addresses on x86_64 are below 2^47 (the kernel never returns a
 * higher one to an mmap without a hint above it). */
#define BM_VA_BITS           47
#define REGION_MAP_BITS      (1UL << (BM_VA_BITS - REGION_SHIFT))

/* ---- migrate types ----------------------------------------------------- *
 * What "mobility" means in a process (docs/design.md#migrate-types): nothing
 * can be moved, but blocks differ in how long they pin a pageblock.
 *   SLAB    pages cut into small objects: one live object pins the page, the
 *           kernel's UNMOVABLE. Grouped so they do not pepper every pageblock.
 *   PAGES   page-sized user allocations (orders 0..PCP_MAX_ORDER), short
 *           lived and the bulk of traffic: the kernel's MOVABLE.
 *   LARGE   multi-page user allocations above the pagesets; freed whole,
 *           like the kernel's RECLAIMABLE.
 *   RESERVE a pageblock per zone used only when every other type is out and
 *           no region can be added; like the kernel's old MIGRATE_RESERVE it
 *           keeps one contiguous 2 MiB block for the last large request.
 */
enum bm_migratetype {
    MIGRATE_SLAB,
    MIGRATE_PAGES,
    MIGRATE_LARGE,
    MIGRATE_PCPTYPES,               /* number of types on the pagesets */
    MIGRATE_RESERVE = MIGRATE_PCPTYPES,
    MIGRATE_TYPES
};

/* Set in bm_page.mt of a block allocated with BM_GFP_NOPCP: its free goes
 * straight to the zone too (the test mt < MIGRATE_PCPTYPES fails). */
#define MT_NOPCP 0x80
#define MT_MASK  0x7f

/* ---- doubly linked list (O(1) insert/remove, as the kernel's list_head) --- */

struct bm_list {
    struct bm_list *next, *prev;
};

/* ---- page descriptor (the kernel's struct page) -------------------------- *
 * Invariant: flags are non-zero only on the head descriptor of a block that
 * is free in the buddy (PG_buddy), on a pageset list (PG_pcp), handed out
 * (PG_alloc) or isolated while being returned to the OS (PG_isolated).
 * Tail descriptors are never read or written, so the mem_map is faulted in
 * only where blocks begin.
 */
enum {
    PG_buddy    = 1u << 0,  /* head of a free block in free_area[order]      */
    PG_pcp      = 1u << 1,  /* on a per-CPU pageset list                       */
    PG_alloc    = 1u << 2,  /* head of an allocated block                      */
    PG_isolated = 1u << 3,  /* taken off the free lists while madvise runs     */
    PG_dirty    = 1u << 4,  /* PG_buddy block >= release_min_order, on dirty_list */
    PG_internal = 1u << 5,  /* allocated for the allocator's own metadata      */
    PG_slab     = 1u << 6,  /* PG_alloc head of a slab: page->slab is valid     */
    PG_tail     = 1u << 7,  /* tail page of a slab: lru.next is the head        */
    PG_large    = 1u << 8,  /* PG_alloc head of a malloc'ed run of pages:
                             * page->large.npages is valid                     */
    PG_released = 1u << 9,  /* PG_buddy block none of whose pages is resident:
                             * fresh, or given back with madvise since        */
    PG_zero     = 1u << 10, /* PG_released block that reads as zero (fresh, or
                             * MADV_DONTNEED)                                  */
    PG_advised  = 1u << 11, /* PG_released block given back by madvise (not
                             * fresh): handing it out again faults it back in */
};
#define PG_STATE (PG_released | PG_zero | PG_advised)

/* A slab's metadata lives in its head descriptor (no header in the slab
 * itself, so blocks start page-aligned and the slab's memory is touched only
 * as blocks are handed out). */
struct bm_slab_meta {
    void *free;                     /* blocks to hand out (owner only)       */
    void *local_free;               /* blocks freed by the owner             */
    _Atomic(uintptr_t) thread_free; /* blocks freed by other threads (push)  */
    _Atomic(uintptr_t) heap;        /* owning heap, | SLAB_FULL while on the
                                     * full queue; 0 when abandoned          */
    uint16_t used;                  /* handed out and not yet collected back */
    uint16_t reserved;              /* blocks carved so far (lazy extension)  */
    uint8_t  cls;                   /* size class                             */
    uint8_t  _pad;
    _Atomic uint16_t orphan_live;   /* abandoned: blocks live when it was, less
                                     * the remote frees seen since (a hint:
                                     * slab.c's orphan_free)                 */
};
#define SLAB_FULL ((uintptr_t)1)

struct bm_page {
    struct bm_list lru;     /* free_list / pcp list / heap slab queue link;
                             * on a slab tail page, lru.next = head         */
    uint16_t flags;
    uint8_t  order;         /* block order, valid on heads                   */
    uint8_t  mt;            /* migrate type asked for when allocated/on pcp,
                             * | MT_NOPCP if it must bypass the pagesets    */
    uint16_t node;
    uint16_t head_off;      /* slab tail page: its distance from the head
                             * page (so the head is found without a branch);
                             * 0 on every other descriptor                  */
    union {
        struct {                    /* free blocks (buddy)                   */
            struct bm_list dirty;   /* zone->dirty_list link (PG_dirty)      */
            uint64_t freed_ns;      /* when a PG_dirty block became free     */
        };
        struct bm_slab_meta slab;   /* PG_slab heads                          */
        struct {                    /* PG_large heads                         */
            uint64_t npages;        /* pages in use from the head on          */
        } large;
    };
};
_Static_assert(sizeof(struct bm_page) == 64, "struct bm_page is one cache line");

/* ---- region ------------------------------------------------------------- *
 * The header lives at the region base, in space that would hold the
 * descriptors of the mem_map's own pages (which are never used).
 */
#define BM_REGION_MAGIC 0x6275646479726731ULL   /* "buddyrg1" */

struct bm_zone;

struct bm_region {
    uint64_t magic;
    struct bm_zone *zone;
    struct bm_region *next;         /* zone->regions, newest first           */
    uintptr_t base;
    uint32_t fresh_next;            /* next page index never handed to the
                                     * buddy (deferred init, a multiple of
                                     * MAX_ORDER_NR_PAGES); end when the
                                     * region is fully carved                */
    uint32_t end;                   /* pages mapped from the base, a multiple
                                     * of MAX_ORDER_NR_PAGES: REGION_PAGES
                                     * without an address-space limit, else
                                     * a prefix that only grows (region.c).
                                     * The mem_map is mapped whole either way. */
    uint32_t index;                 /* creation order, for reports            */
    uint8_t  pb_mt[REGION_PAGEBLOCKS];              /* pageblock migrate type */
};
_Static_assert(sizeof(struct bm_region) <= REGION_FIRST_PAGE * sizeof(struct bm_page),
               "region header must fit in the mem_map's unused descriptors");
_Static_assert(REGION_FIRST_PAGE + MAX_ORDER_NR_PAGES <= REGION_PAGES,
               "a region holds its mem_map and at least one max-order block");

/* ---- locks ----------------------------------------------------------- */

typedef struct { _Atomic int v; } bm_mutex_t;     /* futex mutex: zones      */
typedef struct { _Atomic int v; } bm_spinlock_t;  /* trylock-mostly: pagesets, heaps */

/* ---- per-CPU pagesets (the kernel's struct per_cpu_pages) ----------------- */

#define NR_PCP_LISTS (MIGRATE_PCPTYPES * (PCP_MAX_ORDER + 1))

struct bm_pcp {
    bm_spinlock_t lock;
    int count;                      /* pages on all lists                    */
    int high;                       /* drain when count >= high              */
    int batch;                      /* pages moved per refill / drain        */
    unsigned drain_rr;              /* round-robin list index for drains     */
    uint64_t alloc_hit, alloc_refill, free_hit, free_drain, lock_miss;
    struct bm_list lists[NR_PCP_LISTS];
} __attribute__((aligned(BM_CACHELINE)));

/* ---- zone ------------------------------------------------------------- */

struct bm_free_area {
    struct bm_list free_list[MIGRATE_TYPES];
    unsigned long nr_free;          /* blocks of this order on all lists     */
};

struct bm_zone_counters {
    uint64_t alloc[MAX_ORDER];      /* blocks handed out by the buddy         */
    uint64_t fallback[MIGRATE_TYPES];   /* served from another type's block  */
    uint64_t claimed[MIGRATE_TYPES];    /* pageblocks taken over by a type   */
    uint64_t reserve_used;
    uint64_t fresh_carved;          /* max-order blocks taken from regions   */
    uint64_t release_calls;         /* madvise calls that returned memory    */
    uint64_t released_pages;        /* pages returned to the OS, cumulative  */
    uint64_t reused_pages;          /* pages given back by madvise, handed out again */
    uint64_t threshold_raised;      /* times churn doubled the release threshold */
    uint64_t enomem;                /* allocations that found nothing        */
    uint64_t zeroed_allocs;         /* blocks handed out known to be zero    */
    /* NUMA, for blocks handed out by the zone itself (pageset hits are
     * counted per pageset and added in the statistics) */
    uint64_t numa_hit;              /* meant for this zone                   */
    uint64_t numa_miss;             /* meant for another zone, which declined */
    uint64_t local_node;            /* to a thread running on this node      */
    uint64_t other_node;            /* to a thread running on another node   */
    uint64_t remote_free;           /* freed here by a CPU of another node   */
    uint64_t node_full;             /* declined: the node was low on memory  */
};

struct bm_zone {
    bm_mutex_t lock;
    int node;
    /* nonempty[mt] bit o: free_area[o].free_list[mt] is not empty */
    uint32_t nonempty[MIGRATE_TYPES];
    struct bm_free_area free_area[MAX_ORDER];

    struct bm_region *regions;      /* all regions of this zone              */
    struct bm_region *fresh;        /* a region with uncarved blocks, if any */
    unsigned long nr_regions;
    unsigned long managed_pages;    /* usable pages in all regions           */
    unsigned long nr_free_pages;    /* on the free lists (not fresh)         */
    unsigned long nr_fresh_blocks;  /* max-order blocks never carved         */
    unsigned long nr_isolated;      /* pages off the lists during release    */
    unsigned long nr_reserve_blocks;

    /* return to the OS (release.c) */
    struct bm_list dirty_list;      /* free blocks of release_min_order or more
                                     * that may be resident, newest first    */
    unsigned long nr_dirty_pages;
    unsigned long nr_returned_pages;    /* in PG_released free blocks (fresh
                                         * blocks not included)              */
    unsigned release_scale;         /* release_threshold x this (release.c)  */
    uint64_t release_event_ns;      /* last release by the threshold         */
    unsigned long nr_unreleased_by_merge; /* released pages merged into a
                                     * resident block: counted as resident */
    unsigned long inuse_peak;       /* pages in use at the peak, and the     */
    unsigned long held_at_peak;     /* hold's measure then (release.c)       */
    unsigned long release_event_pages;  /* pages it gave back                */
    unsigned long reused_since_event;   /* advised pages handed out since    */

    struct bm_zone_counters c;
    bool present;                   /* a zone of the policy (has regions or
                                     * may get them)                        */
    /* the node's memory as last read (topology.c: bm_node_has_room),
     * under room_lock */
    bm_mutex_t room_lock;
    uint64_t room_ns;
    unsigned long room_pages, room_mark;
    /* counted without the zone lock, by other zones' walks and by the
     * threads sending slab objects home (slab.c) */
    _Atomic uint64_t numa_foreign;  /* meant for this zone, served by another */
    _Atomic uint64_t slab_remote_free, slab_remote_batches;
    unsigned last_alloc_state;      /* set by bm_rmqueue for its caller, under
                                     * the same lock hold: the PG_STATE flags
                                     * of the block it came from             */

    /* per-CPU pagesets, nr_cpus of them, allocated from the zone itself.
     * Read on every pageset operation: kept off the cache lines that the
     * zone lock holder writes. */
    struct bm_pcp *pcp __attribute__((aligned(BM_CACHELINE)));
    int pcp_high, pcp_batch;
} __attribute__((aligned(BM_CACHELINE)));

/* ---- thread heaps (heap.c, slab.c) -------------------------------------- */

#include "size_class.h"

struct bm_heap_class {
    struct bm_list partial;         /* slabs with free blocks, not current    */
    struct bm_list full;            /* slabs that had none when last looked at */
    unsigned long nr_partial, nr_full;
};

/* A heap's alien cache: per slab, a chain of blocks freed from another
 * node, pushed home with one CAS when the cache flushes (slab.c). */
#define BM_ALIEN_SLOTS 64           /* slabs at once (open addressing)     */
#define BM_ALIEN_OBJS 256           /* blocks waiting before all go home   */
struct bm_alien_slot {
    struct bm_page *slab;           /* NULL: free slot                       */
    void *head, *tail;              /* the chain, linked as free lists are   */
    uint32_t n;
};
struct bm_alien {
    uint32_t objs, used;            /* blocks waiting; slots in use          */
    struct bm_alien_slot slot[BM_ALIEN_SLOTS];
};
_Static_assert(sizeof(struct bm_alien) <= 4096, "an alien cache is one page");

struct bm_heap {
    /* fast path: the current slab of each class (never NULL: an empty
     * static slab stands in), and counters only this thread writes */
    struct bm_page *cur[BM_NR_CLASSES];
    /* blocks this thread freed into its own slabs, LIFO, at most BIN_MAX
     * per class: malloc takes them back first, whatever slab they are in */
    void *bin[BM_NR_CLASSES];
    uint32_t bin_n[BM_NR_CLASSES];  /* blocks in the bin; BIN_MAX while the
                                     * bin is empty with bins off (harden=
                                     * secure): every free leaves the fast path */
    /* bm_classes[c].magic, copied here for the free fast path's
     * block-start test (alloc.h): one load from a line it reads anyway */
    uint32_t magic[BM_NR_CLASSES];
    uint64_t nalloc[BM_NR_CLASSES]; /* blocks this thread allocated         */
    uint64_t nfree[BM_NR_CLASSES];  /* blocks this thread freed, any owner   */
    uint64_t large_nalloc, large_nfree;  /* runs of pages, as the two above */
    /* slabs made minus slabs freed under this heap's lock (negative when
     * it frees adopted ones); with the retired heaps' sums in
     * bm_slab_stats[].slabs, the slabs in existence. Shared atomic
     * counters here cost threadtest (a slab made and freed per 64 frees,
     * two threads) about a tenth of its time in cache-line transfers. */
    int64_t slab_net[BM_NR_CLASSES];
    uint32_t slabs_made;            /* sweep clock (slab.c)                  */
    int64_t large_pages;            /* pages of runs: allocated - freed here */
    struct bm_heap_class q[BM_NR_CLASSES];
    struct bm_heap *next;           /* live list or pool                      */
    struct bm_heap **pprev;         /* live list back link                    */
    int dead;                       /* torn down, waiting in the pool          */
    int first;                      /* the thread's first heap (counts threads) */
    /* NUMA: a thread has a heap per zone it allocated from (heap.c); this
     * one's slabs come from zone `node`. */
    int node;
    struct bm_heap *sib;            /* the thread's next heap                 */
    /* Blocks of slabs on other nodes freed by this thread, waiting to go
     * home together (slab.c, the kernel's SLAB alien caches); under lock.
     * A page of its own, made at the heap's first such free and kept with
     * the heap in the pool. */
    struct bm_alien *alien;
    /* The queues (q[]) and the slabs on them belong to the owner, which
     * takes `lock` on its slow paths only (malloc's refill, a bin that
     * overflows, trim, exit); another thread takes it to sweep a heap whose
     * owner has gone quiet (heap.c). The current slabs and the bins are the
     * owner's alone, lock-free, and never swept. */
    bm_spinlock_t lock;             /* held briefly; the unlock is a plain store */
    _Atomic uint64_t ticks;         /* bumped by the owner's slow paths       */
    uint64_t swept_ticks;           /* ticks at the last sweep pass (heaps_lock) */
};

_Static_assert(sizeof(struct bm_heap) <= BM_PAGE_SIZE, "heaps are carved from single pages");

/* ---- options (options.c) ----------------------------------------------- */

enum bm_release_mode { BM_RELEASE_DONTNEED, BM_RELEASE_FREE, BM_RELEASE_NONE };

/* option thp: transparent huge pages on the regions */
enum bm_thp { BM_THP_DEFAULT, BM_THP_ALWAYS, BM_THP_NEVER };

/* option numa: the memory policy each region is bound with before first
 * touch (mbind); local leaves the process's own policy (numactl) in force */
enum bm_numa_policy { BM_NUMA_LOCAL, BM_NUMA_INTERLEAVE, BM_NUMA_BIND, BM_NUMA_PREFERRED };

/* option harden (docs/malloc.md#hardening) */
enum bm_harden_level {
    BM_HARDEN_DEFAULT = 1,          /* checks that cost a few instructions   */
    BM_HARDEN_SECURE = 2,           /* + no bins, guard pages, random order  */
};

struct bm_options {
    unsigned long max_regions;      /* regions per process                   */
    int pcp_enabled;
    int pcp_high, pcp_batch;        /* 0 = scale with the zone (kernel rule) */
    int release_mode;               /* enum bm_release_mode                  */
    uint64_t release_delay_ns;      /* free this long before release         */
    unsigned long release_threshold_pages; /* or when this many are free     */
    unsigned long release_threshold_max_pages; /* what churn may raise it to */
    int release_peak;               /* free memory within the in-use peak
                                     * waits for the delay (release.c)       */
    int reserve_pageblocks;         /* RESERVE pageblocks per zone           */
    unsigned release_min_order;     /* smallest free block given back        */
    int verbose;
    int harden;                     /* enum bm_harden_level                  */
    int thp;                        /* enum bm_thp                           */
    int numa_policy;                /* enum bm_numa_policy                   */
    uint64_t numa_nodes;            /* its nodes (bit n: node n); 0 = all    */
    unsigned long numa_fake;        /* tests: make up this many nodes (> 1)  */
    int stats_at_exit;              /* print every statistic when the process exits */
    long stats_pid;                 /* ... only in this process (0: in every one) */
    char stats_file[256];           /* ... appended to this file, "" = stderr */
    int stats_signal;               /* live report into a memfd on this signal, 0 = off */
    /* fault injection (tests): the fail_mmap-th mmap/mremap from start-up
     * and the fail_mmap_count - 1 after it fail; madvise the same */
    unsigned long fail_mmap, fail_mmap_count, fail_madvise, fail_madvise_count;
};

/* ---- NUMA topology and policy (topology.c) ------------------------------ */

#define BM_MAX_CPUS 4096            /* CPUs above share node 0's tables  */

enum bm_policy_source { BM_POLICY_DEFAULT, BM_POLICY_OPTION, BM_POLICY_PROCESS };

struct bm_topology {
    uint64_t online;                /* nodes (bit n: node n)                 */
    uint64_t memory;                /* ... that have memory                  */
    uint64_t allowed;               /* ... whose zones may get regions       */
    uint64_t nodes;                 /* the policy's node set (0: none)       */
    int policy;                     /* in force: enum bm_numa_policy          */
    int source;                     /* where it came from: enum bm_policy_source */
    bool fake;                      /* option numa_fake: nodes made up        */
    bool watch_memory;              /* zones check their node's free memory   */
    uint8_t cpu_node[BM_MAX_CPUS];  /* the node of each CPU                   */
    uint8_t cpu_zone[BM_MAX_CPUS];  /* the zone a thread on it allocates from */
    uint8_t nr_zonelist[BM_MAX_NODES];
    uint8_t zonelist[BM_MAX_NODES][BM_MAX_NODES];   /* nearest first          */
    uint8_t distance[BM_MAX_NODES][BM_MAX_NODES];
};

/* ---- global state (init.c) --------------------------------------------- */

struct bm_global {
    _Atomic int initialised;
    int nr_cpus;
    int nr_nodes;                   /* highest node + 1                       */
    bool rseq_ok;
    _Atomic unsigned long nr_regions;
    struct bm_options opt;
    struct bm_topology topo;
    struct bm_zone zones[BM_MAX_NODES];
};

extern struct bm_global bm_g;
/* Threads on different CPUs start from different zones (NUMA): heaps
 * follow their thread's node. A variable of its own: one instruction to
 * test on the malloc fast path. */
extern bool bm_numa_multi;

#endif /* BM_TYPES_H */
