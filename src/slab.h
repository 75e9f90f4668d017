/*
 * slab.h - the slab layer's functions shared with heap.c, alloc.c, stats.c
 * and check.c (fast paths are in alloc.h).
 */
#ifndef BM_SLAB_H
#define BM_SLAB_H

#include "internal.h"

extern struct bm_page bm_slab_empty;
extern struct bm_heap bm_heap_empty;

/* heap.c */
void bm_heaps_init(void);
struct bm_heap *bm_heap_create(void);
struct bm_heap_totals {
    uint64_t nalloc[BM_NR_CLASSES], nfree[BM_NR_CLASSES];  /* slab blocks per class */
    uint64_t large_nalloc, large_nfree;                     /* runs of pages */
    int64_t large_pages;
    unsigned long heaps;                                    /* live now */
    unsigned long slabs[BM_NR_CLASSES];                     /* in existence */
};
void bm_heap_totals(struct bm_heap_totals *t);
bool bm_heap_totals_try(struct bm_heap_totals *t, bool (*trylock)(bm_mutex_t *));
void bm_heap_trim_current(void);
struct bm_heap *bm_heap_first(void);    /* this thread's heaps, on ->sib */
/* slab.c: send the blocks waiting in h's alien buffer home (h->lock held) */
void bm_alien_flush(struct bm_heap *h);

/* slab.c */
struct bm_slab_class_stats {
    /* slabs freed outside any heap (abandoned ones) and the sums of
     * retired heaps' slab_net; with the live heaps' slab_net, the slabs
     * in existence (bm_heap_totals) */
    _Atomic unsigned long slabs;
    _Atomic unsigned long abandoned;    /* waiting for a new owner           */
    _Atomic uint64_t adopted;
};
extern struct bm_slab_class_stats bm_slab_stats[BM_NR_CLASSES];

/* harden=secure's guard pages (slab.c) */
struct bm_guard_stats {
    _Atomic unsigned long pages;        /* slabs given a guard page          */
    _Atomic unsigned long failed;       /* ... that could not have one       */
    _Atomic unsigned long leaked;       /* pages kept out of use: the guard
                                         * could not be lifted               */
};
extern struct bm_guard_stats bm_guard_stats;

void bm_slab_release_class(struct bm_heap *h, unsigned cls);   /* thread exit */
void bm_slab_trim_class(struct bm_heap *h, unsigned cls);      /* bm_trim */
void bm_slab_sweep_class(struct bm_heap *h, unsigned cls, unsigned long limit);     /* heap lock held */
/* Sweep the queues of other threads' heaps: the quiet ones (no slow path
 * since the last look, at most every 100 ms), or all of them (bm_trim). */
bool bm_heaps_sweep(struct bm_heap *self, bool all);
unsigned long bm_slab_reclaim_abandoned(unsigned long limit);
void bm_slab_fork_locks(enum bm_fork_step step);
enum bm_list_verdict { BM_LIST_OK, BM_LIST_FOREIGN, BM_LIST_TWICE };
enum bm_list_verdict bm_slab_mark_list(const struct bm_page *s, const void *head, uint64_t *seen,
                                       unsigned long *n, unsigned long *where);
/* fork: the heaps lock; in the child, retire the heaps of threads that
 * do not exist there (heap.c) */
void bm_heaps_fork_lock(enum bm_fork_step step);
void bm_heaps_after_fork(void);
bool bm_fork_heap_repair(struct bm_heap *h);     /* fork.c */
extern _Atomic unsigned long bm_fork_heaps_retired, bm_fork_heaps_lost;
extern _Atomic unsigned long bm_heaps_swept;      /* sweeps of quiet heaps */
extern _Atomic uint64_t bm_slab_notified;         /* full slabs a remote free moved to partial */
extern _Atomic uint64_t bm_slab_orphans_freed;    /* abandoned slabs a remote free emptied and freed */
void bm_slabs_init(void);
/* Call fn on every slab whose lists can be read now: the calling thread's
 * and the abandoned ones (each list locked while it is walked). */
void bm_slab_for_each_quiet(void (*fn)(void *ctx, struct bm_page *s), void *ctx);
extern _Atomic uint64_t bm_retired_nalloc[BM_NR_CLASSES], bm_retired_nfree[BM_NR_CLASSES];

#endif
