/*
 * internal.h - inline helpers (lists, locks, CPU id, address arithmetic) and
 * the functions one part of buddymalloc calls in another.
 */
#ifndef BM_INTERNAL_H
#define BM_INTERNAL_H

#include <linux/futex.h>
#include <sys/rseq.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "types.h"

/* ---- lists ------------------------------------------------------------- */

static inline void list_init(struct bm_list *h) { h->next = h->prev = h; }
static inline bool list_empty(const struct bm_list *h) { return h->next == h; }

static inline void list_add(struct bm_list *h, struct bm_list *n)
{
    n->next = h->next;
    n->prev = h;
    h->next->prev = n;
    h->next = n;
}

static inline void list_add_tail(struct bm_list *h, struct bm_list *n)
{
    n->prev = h->prev;
    n->next = h;
    h->prev->next = n;
    h->prev = n;
}

static inline void list_del(struct bm_list *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->next = n->prev = NULL;
}

#define container_of(p, T, m) ((T *)((char *)(p) - offsetof(T, m)))
#define lru_to_page(l)   container_of(l, struct bm_page, lru)
#define dirty_to_page(l) container_of(l, struct bm_page, dirty)

/* ---- locks ------------------------------------------------------------- *
 * Zone lock: a futex mutex (0 free, 1 held, 2 held with waiters), because 16
 * threads on 2 cores must sleep rather than spin behind a preempted holder.
 * Pageset lock: only ever try-locked on the hot path; a miss means another
 * thread on this CPU (or one that migrated) holds it, and the caller goes to
 * the zone instead, as the kernel's pcp_spin_trylock does.
 *
 * bm_tls_locks counts the locks this thread holds or is about to take, for
 * fork (fork.c): a fork from a signal handler that interrupted the thread
 * inside the allocator must not wait for a lock its own thread holds. It is
 * raised before a lock is tried and lowered after it is released (or the
 * try missed), with compiler barriers between, so a handler that runs at any
 * instant never sees it below the locks held. Only the locks' slow and page
 * paths pay for it: the small-object fast paths take no lock.
 */
extern __thread unsigned bm_tls_locks __attribute__((tls_model("initial-exec")));

static inline void bm_locks_up(void)
{
    bm_tls_locks++;
    atomic_signal_fence(memory_order_seq_cst);
}

static inline void bm_locks_down(void)
{
    atomic_signal_fence(memory_order_seq_cst);
    bm_tls_locks--;
}

/* The raw operations, uncounted: for the fork handlers, whose locks are
 * accounted for by the fork depth instead (fork.c). */
void bm_mutex_lock_slow(bm_mutex_t *m);
void bm_mutex_wake(bm_mutex_t *m);

static inline void bm_mutex_lock_raw(bm_mutex_t *m)
{
    int c = 0;
    if (likely(atomic_compare_exchange_strong_explicit(
            &m->v, &c, 1, memory_order_acquire, memory_order_relaxed)))
        return;
    bm_mutex_lock_slow(m);
}

static inline void bm_mutex_unlock_raw(bm_mutex_t *m)
{
    if (unlikely(atomic_exchange_explicit(&m->v, 0, memory_order_release) == 2))
        bm_mutex_wake(m);
}

static inline bool bm_spin_trylock_raw(bm_spinlock_t *l)
{
    return atomic_load_explicit(&l->v, memory_order_relaxed) == 0 &&
           atomic_exchange_explicit(&l->v, 1, memory_order_acquire) == 0;
}

void bm_spin_lock_slow(bm_spinlock_t *l);
static inline void bm_spin_lock_raw(bm_spinlock_t *l)
{
    if (likely(bm_spin_trylock_raw(l)))
        return;
    bm_spin_lock_slow(l);
}

static inline void bm_spin_unlock_raw(bm_spinlock_t *l)
{
    atomic_store_explicit(&l->v, 0, memory_order_release);
}

/* What the allocator uses: the raw operations, counted. */
static inline void bm_mutex_lock(bm_mutex_t *m)
{
    bm_locks_up();
    bm_mutex_lock_raw(m);
}

static inline void bm_mutex_unlock(bm_mutex_t *m)
{
    bm_mutex_unlock_raw(m);
    bm_locks_down();
}

static inline bool bm_mutex_trylock(bm_mutex_t *m)
{
    int c = 0;
    bm_locks_up();
    if (atomic_load_explicit(&m->v, memory_order_relaxed) == 0 &&
        atomic_compare_exchange_strong_explicit(&m->v, &c, 1, memory_order_acquire,
                                                memory_order_relaxed))
        return true;
    bm_locks_down();
    return false;
}

static inline bool bm_spin_trylock(bm_spinlock_t *l)
{
    bm_locks_up();
    if (bm_spin_trylock_raw(l))
        return true;
    bm_locks_down();
    return false;
}

static inline void bm_spin_unlock(bm_spinlock_t *l)
{
    bm_spin_unlock_raw(l);
    bm_locks_down();
}

static inline void bm_spin_lock(bm_spinlock_t *l)
{
    bm_locks_up();
    bm_spin_lock_raw(l);
}

/* ---- fork (fork.c) ------------------------------------------------------ *
 * Every lock is taken before fork in one global order (init, heaps,
 * abandoned slabs, huge table, pagesets, zones), released after it in the
 * parent and reset in the child, where no other thread exists; unless the
 * forking thread is already inside the allocator or inside a fork (fork.c).
 */
enum bm_fork_step { BM_FORK_PREPARE, BM_FORK_PARENT, BM_FORK_CHILD };

static inline void bm_fork_mutex(bm_mutex_t *m, enum bm_fork_step step)
{
    switch (step) {
    case BM_FORK_PREPARE: bm_mutex_lock_raw(m); break;
    case BM_FORK_PARENT: bm_mutex_unlock_raw(m); break;
    case BM_FORK_CHILD: atomic_store_explicit(&m->v, 0, memory_order_relaxed); break;
    }
}

static inline void bm_fork_spin(bm_spinlock_t *l, enum bm_fork_step step)
{
    switch (step) {
    case BM_FORK_PREPARE: bm_spin_lock_raw(l); break;
    case BM_FORK_PARENT: bm_spin_unlock_raw(l); break;
    case BM_FORK_CHILD: atomic_store_explicit(&l->v, 0, memory_order_relaxed); break;
    }
}

void bm_init_fork_lock(enum bm_fork_step step);
void bm_stats_exit_setup(void);     /* stats.c: keeps a copy of stderr */
/* stats.c, option stats_signal: the memfd and the signal handler of the
 * live report; for tests, the memfd's descriptor (-1: none) and counts. */
void bm_stats_live_setup(void);
int bm_stats_live_fd(void);
struct bm_live_counts {
    uint64_t signals;       /* handled (counted when the handler is done) */
    uint64_t reports;       /* written: the last one's number */
    uint64_t merged;        /* came while a report was written */
    bool writing;           /* a report is being written now */
};
void bm_stats_live_counts(struct bm_live_counts *c);

/* ---- current CPU --------------------------------------------------------- *
 * glibc 2.35+ registers rseq for every thread; cpu_id there is kept current
 * by the kernel, a plain load (~0.5 ns against ~3 ns for sched_getcpu()).
 */
int bm_cpu_slow(void);

/* The CPU from rseq, or -1 when rseq cannot tell (not registered). */
static inline int bm_cpu_rseq(void)
{
    if (likely(bm_g.rseq_ok)) {
        const struct rseq *rs = (const struct rseq *)
            ((char *)__builtin_thread_pointer() + __rseq_offset);
        int cpu = (int)*(const volatile uint32_t *)&rs->cpu_id;
        if (likely(cpu >= 0 && cpu < bm_g.nr_cpus))
            return cpu;
    }
    return -1;
}

static inline int bm_cpu(void)
{
    int cpu = bm_cpu_rseq();
    return likely(cpu >= 0) ? cpu : bm_cpu_slow();
}

/* ---- addresses and descriptors ------------------------------------------ */

extern _Atomic uint8_t bm_region_map[REGION_MAP_BITS];

static inline struct bm_region *region_of_addr(uintptr_t a)
{
    return (struct bm_region *)(a & ~REGION_MASK);
}

/* Is a inside a region of ours? O(1): one bit per possible region slot. */
static inline bool bm_addr_in_region(uintptr_t a)
{
    if (a >> BM_VA_BITS)
        return false;
    uintptr_t slot = a >> REGION_SHIFT;
    return atomic_load_explicit(&bm_region_map[slot], memory_order_relaxed);
}

/* Is a in the mapped part of a region of ours? Under an address-space limit
 * a region maps only a prefix of its slot (region.c), and another mapping
 * may lie in the rest, where a's descriptor (mapped with the whole mem_map)
 * is still zero. For the slow paths that must tell such a pointer apart
 * (a huge block, a foreign pointer) or that would read memory at a; the
 * fast paths need not: a zero descriptor already sends them out of line.
 * O(1). */
static inline bool bm_addr_mapped(uintptr_t a)
{
    return bm_addr_in_region(a) &&
           ((a & REGION_MASK) >> BM_PAGE_SHIFT) <
               __atomic_load_n(&region_of_addr(a)->end, __ATOMIC_RELAXED);
}

static inline struct bm_page *region_mem_map(struct bm_region *r)
{
    return (struct bm_page *)r;
}

static inline struct bm_page *addr_to_page(uintptr_t a)
{
    return (struct bm_page *)(a & ~REGION_MASK) + ((a & REGION_MASK) >> BM_PAGE_SHIFT);
}

static inline struct bm_region *page_region(const struct bm_page *p)
{
    return region_of_addr((uintptr_t)p);
}

static inline unsigned long page_index(const struct bm_page *p)
{
    return ((uintptr_t)p & REGION_MASK) / sizeof(struct bm_page);
}

static inline void *page_to_addr(const struct bm_page *p)
{
    return (void *)(((uintptr_t)p & ~REGION_MASK) + (page_index(p) << BM_PAGE_SHIFT));
}

/* Descriptor flags are written under the zone lock, except on the pageset
 * paths (PG_pcp <-> PG_alloc under the pageset lock only), and are read
 * without a lock when a pointer is validated. Those crossings use relaxed
 * atomics (plain moves on x86): no ordering is needed, because a block seen
 * as PG_pcp or as PG_alloc is, either way, neither merged nor claimed. */
static inline unsigned page_flags(const struct bm_page *p)
{
    return __atomic_load_n(&p->flags, __ATOMIC_RELAXED);
}

static inline void set_page_flags(struct bm_page *p, unsigned f)
{
    __atomic_store_n(&p->flags, (uint16_t)f, __ATOMIC_RELAXED);
}

/* Statistics counters are written by one lock holder and read without the
 * lock by the statistics: a relaxed store keeps that read well defined. */
#define STAT_ADD(field, n) __atomic_store_n(&(field), (field) + (n), __ATOMIC_RELAXED)

static inline struct bm_zone *page_zone(const struct bm_page *p)
{
    return page_region(p)->zone;
}

static inline int get_pageblock_mt(const struct bm_page *p)
{
    return page_region(p)->pb_mt[page_index(p) >> pageblock_order];
}


/* ---- time (vDSO, no system call, no allocation) -------------------------- */
uint64_t bm_now_ns(void);
void bm_link_key_init(void);        /* os.c: the free-list key (freelist.h) */

/* ---- init.c ------------------------------------------------------------ */
void bm_init_slow(void);
static inline void bm_ensure_init(void)
{
    if (unlikely(!atomic_load_explicit(&bm_g.initialised, memory_order_acquire)))
        bm_init_slow();
}

/* ---- topology.c ----------------------------------------------------------- */
void bm_topology_init(void);
bool bm_numa_place(void *addr, size_t len, int zone);   /* mbind before first touch */
bool bm_node_has_room(int node);

/* The node of a CPU, and the zone a thread running on it allocates from
 * first (bm_cpu() is below nr_cpus, which is at most BM_MAX_CPUS). */
static inline int bm_cpu_node(int cpu) { return bm_g.topo.cpu_node[cpu]; }
static inline int bm_cpu_zone(int cpu) { return bm_g.topo.cpu_zone[cpu]; }
static inline int bm_zone_now(void) { return bm_cpu_zone(bm_cpu()); }

/* ---- options.c --------------------------------------------------------- */
/* os.c: the kernel's memory calls, through which fault injection works
 * (bm_fault_inject, options fail_mmap / fail_madvise). mmap and mremap
 * count as "mmap". Each returns what the system call does. */
enum bm_fault_kind { BM_FAULT_MMAP, BM_FAULT_MADVISE, BM_FAULT_MPROTECT, BM_FAULT_KINDS };
void *bm_os_map(size_t len, int extra_flags);
void *bm_os_map_at(void *addr, size_t len, int extra_flags);   /* addr: a hint or fixed */
void *bm_os_remap(void *old, size_t old_len, size_t len);
int bm_os_advise(void *p, size_t len, int advice);
int bm_os_protect(void *p, size_t len, bool none);   /* PROT_NONE, or back to read-write */
void bm_fault_arm(enum bm_fault_kind k, unsigned long nth, unsigned long count);

void bm_options_defaults(struct bm_options *o);
/* Parses "key=value,..." into o; names every bad key/value on stderr and keeps
 * the default for it. Returns the number of errors. */
int bm_options_parse(struct bm_options *o, const char *s);

/* ---- region.c ---------------------------------------------------------- */
bool bm_region_add(struct bm_zone *z);            /* zone lock held */
bool bm_carve_fresh(struct bm_zone *z, int mt);   /* zone lock held */
void bm_set_pageblock_range(struct bm_page *p, unsigned order, int mt);

/* ---- buddy.c ----------------------------------------------------------- */
void bm_zone_init(struct bm_zone *z, int node);
/* aflags: ALLOC_WATCH, decline rather than grow when the node is low on
 * memory (the caller goes down the zonelist) */
#define ALLOC_WATCH 1u
struct bm_page *bm_rmqueue(struct bm_zone *z, unsigned order, int mt, unsigned aflags); /* locked */
int bm_rmqueue_bulk(struct bm_zone *z, unsigned order, int count, int mt,
                    struct bm_list *out);                                /* locked */
/* state: PG_STATE flags of the memory freed (0 for memory a user had) */
void bm_free_one_page(struct bm_zone *z, struct bm_page *p, unsigned order,
                      unsigned state);                                   /* locked */
void bm_add_free(struct bm_zone *z, struct bm_page *p, unsigned order, int mt,
                 uint64_t freed_ns, unsigned state);
void bm_del_free(struct bm_zone *z, struct bm_page *p, unsigned order);
void bm_zone_setup_reserve(struct bm_zone *z, int nr);

/* ---- pcp.c ------------------------------------------------------------- */
void bm_pcp_setup(struct bm_zone *z);             /* after the first region */
void bm_pcp_update_sizes(struct bm_zone *z);
void bm_pcp_drain_zone(struct bm_zone *z);

/* ---- release.c --------------------------------------------------------- */
void bm_dirty_add(struct bm_zone *z, struct bm_page *p, unsigned order, uint64_t now);
void bm_dirty_del(struct bm_zone *z, struct bm_page *p, unsigned order);
/* Called with the zone lock held after a free of `freed` pages; may drop and
 * retake it. */
void bm_release_maybe(struct bm_zone *z, unsigned long freed);
unsigned long bm_release_threshold(const struct bm_zone *z);   /* pages, now */
unsigned long bm_release_zone(struct bm_zone *z, unsigned long keep_pages); /* locked */

/* ---- pages.c ----------------------------------------------------------- */
struct bm_page *bm_alloc_block(unsigned order, int mt, unsigned flags);
/* ... meant for zone `zone` (a heap's node), not the current CPU's */
struct bm_page *bm_alloc_block_zone(unsigned order, int mt, unsigned flags, int zone);
/* The zonelist walk: a block from zone `zone` or, when it declines, the
 * nearest zone that can serve; returned with that zone's lock held (*zp). */
struct bm_page *bm_zonelist_rmqueue(int zone, unsigned order, int mt, struct bm_zone **zp);
void bm_free_block(struct bm_page *p, unsigned order);

/* ---- os.c: messages on stderr without stdio ----------------------------- */
BM_COLD __attribute__((noreturn)) void bm_fatal_bad_pointer(const char *func, const void *p,
                                                            const char *what);
BM_COLD __attribute__((noreturn)) void bm_fatal_size(const char *func, const void *p,
                                                     const char *before, size_t size,
                                                     const char *after);
void bm_message(const char *prefix, const char *msg);

/* ---- check.c ----------------------------------------------------------- */
/* Lock order: every pageset lock of a zone, then the zone lock. */
void bm_zone_lock_all(struct bm_zone *z);
void bm_zone_unlock_all(struct bm_zone *z);

#endif /* BM_INTERNAL_H */
