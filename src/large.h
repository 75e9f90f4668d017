/* large.h - runs of pages and huge mappings for malloc (large.c). */
#ifndef BM_LARGE_H
#define BM_LARGE_H

#include "internal.h"

struct bm_page *bm_large_alloc(size_t npages, unsigned align_order, bool *zeroed);
void bm_large_free(struct bm_page *p);
bool bm_large_resize(struct bm_page *p, size_t npages);

/*
 * Runs handed out and given back, and their pages, counted in the calling
 * thread's heap like the slab counters (shared atomics cost 2.8x jemalloc's
 * time for 64 KiB blocks with two threads); bm_malloc_large gives a thread
 * without a heap one, so only frees by a thread that never allocated count
 * in the (atomic) retired totals. Summed by bm_heap_totals.
 */
extern _Atomic uint64_t bm_retired_large_nalloc, bm_retired_large_nfree;
extern _Atomic int64_t bm_retired_large_pages;
void bm_large_count(int allocs, int64_t pages);

void *bm_huge_alloc(size_t size, size_t align);
bool bm_huge_free(void *p);
size_t bm_huge_usable(const void *p);        /* 0: not a huge allocation */
void *bm_huge_realloc(void *p, size_t size);
void bm_huge_fork_lock(enum bm_fork_step step);
size_t bm_huge_table_slots(void);     /* the huge table's size (tests) */
void bm_huge_stats(uint64_t *allocs, uint64_t *frees, uint64_t *live, uint64_t *bytes);
bool bm_huge_stats_try(uint64_t *allocs, uint64_t *frees, uint64_t *live, uint64_t *bytes,
                       bool (*trylock)(bm_mutex_t *));

#endif
