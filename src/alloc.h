/*
 * alloc.h - the malloc and free fast paths, inlined into both the bm_*
 * entry points (alloc.c) and the standard names (override.c).
 *
 * malloc of a small size: class from a byte table, the thread's current
 * slab of that class, pop its free list (a block in the class's bin comes
 * first). free of a small block by its owner: the descriptor by address
 * arithmetic, push on the class's bin, or on the slab's local free list
 * when the bin is full. No lock, no atomic read-modify-write. Everything
 * else (empty list, other thread's block, pages, bad pointers) is out of
 * line.
 */
#ifndef BM_ALLOC_H
#define BM_ALLOC_H

#include "freelist.h"
#include "internal.h"
#include "size_class.h"
#include "vg.h"

extern __thread struct bm_heap *bm_tls_heap __attribute__((tls_model("initial-exec")));

/* NUMA (heap.c): malloc of class cls from the thread's heap of the zone
 * its CPU is in, switching heaps when it moved (docs/numa.md). Out of
 * line and reached by a tail call, so that the fast path below keeps its
 * registers free when there is one zone. */
void *bm_malloc_numa(unsigned cls);

/* slab.c: slow paths */
void *bm_malloc_slow(struct bm_heap *h, unsigned cls);
void bm_bin_flush(struct bm_heap *h, unsigned cls);
#define BIN_MAX 8               /* blocks a class's bin holds at most */
/* bin_n of an empty bin: BIN_MAX when bins are off (harden=secure), so the
 * free fast path's room test fails without a test of its own */
static inline uint32_t bm_bin_empty_n(void)
{
    return bm_g.opt.harden >= BM_HARDEN_SECURE ? BIN_MAX : 0;
}
void bm_free_local(struct bm_heap *h, struct bm_page *slab, void *p, const char *fn);
void bm_free_slab_slow(struct bm_page *slab, void *p, struct bm_heap *h, const char *fn);
/* alloc.c: everything that is not a small block; the API with the name of
 * the entry point where it may report a bad pointer */
void *bm_malloc_large(size_t size, size_t align, bool zero);
void bm_free_other(void *p, const char *fn);
void *bm_calloc_fn(size_t n, size_t size);
void *bm_realloc_fn(void *p, size_t n, const char *fn);
void *bm_reallocarray_fn(void *p, size_t n, size_t size, const char *fn);
void *bm_memalign_impl(size_t align, size_t size);   /* power of 2 */
void *bm_aligned_impl(size_t align, size_t size);    /* checks it */
int bm_posix_memalign_impl(void **out, size_t align, size_t size);
void *bm_pvalloc_impl(size_t size);
size_t bm_usable_fn(void *p, const char *fn);
/* strict: size must be what was asked for (C++ sized delete); otherwise
 * at most the usable size (C's free_sized, after a realloc in place). */
void bm_free_sized_fn(void *p, size_t size, const char *fn, bool strict);

static inline __attribute__((always_inline)) void *malloc_class_heap(struct bm_heap *h,
                                                                    unsigned cls)
{
    void *b = h->bin[cls];
    if (likely(b)) {                /* a block this thread freed lately */
        h->bin[cls] = bm_link_pop(b);
        h->bin_n[cls]--;
        h->nalloc[cls]++;
        return b;
    }
    struct bm_page *s = h->cur[cls];
    b = s->slab.free;
    if (unlikely(!b)) {
        /* the blocks this thread freed into its current slab: taken whole
         * here, without the slow path (a few blocks cycling through a
         * slab would otherwise cost a slow call every few mallocs) */
        b = s->slab.local_free;
        if (!b)
            return bm_malloc_slow(h, cls);
        s->slab.local_free = NULL;
    }
    s->slab.free = bm_link_pop(b);
    s->slab.used++;
    h->nalloc[cls]++;
    return b;
}

static inline __attribute__((always_inline)) void *malloc_class_raw(unsigned cls)
{
    if (unlikely(bm_numa_multi))
        return bm_malloc_numa(cls);
    return malloc_class_heap(bm_tls_heap, cls);
}

/* A block of class cls for a request of size bytes (size: for valgrind). */
static inline __attribute__((always_inline)) void *bm_malloc_class(unsigned cls, size_t size)
{
    void *p = malloc_class_raw(cls);
    bm_vg_malloc(p, size, bm_classes[cls].size, 0);
    return p;
}

static inline __attribute__((always_inline)) void *bm_malloc_inline(size_t size)
{
    if (likely(size <= BM_SMALL_LOOKUP))
        return bm_malloc_class(bm_class_lookup[(size + 7) >> 3], size);
    if (likely(size <= BM_SLAB_MAX))
        return bm_malloc_class(bm_size_to_class(size), size);
    return bm_malloc_large(size, 0, false);
}

/*
 * Is off, an offset in slab s, the start of a carved block? Blocks are at
 * i * size: off * ceil(2^32 / size) (the class's magic) has its low 32 bits
 * below the magic exactly when off is a multiple of the size, and then its
 * high 32 bits are the index i, which must be below the carved count.
 * Exact for every class and every offset below the largest slab
 * (tests/test_edges.c checks them all). A multiply and two compares.
 */
static inline __attribute__((always_inline)) bool slab_offset_is_block(const struct bm_page *s,
                                                                       uint32_t off,
                                                                       uint32_t magic)
{
    uint64_t prod = (uint64_t)off * magic;
    return (uint32_t)prod < magic &&
           (prod >> 32) < __atomic_load_n(&s->slab.reserved, __ATOMIC_RELAXED);
}

/* The slow paths' test of a pointer a into slab s. */
static inline __attribute__((always_inline)) bool slab_block_ok(const struct bm_page *s, uintptr_t a)
{
    return slab_offset_is_block(s, (uint32_t)(a - (uintptr_t)page_to_addr(s)),
                                bm_classes[s->slab.cls].magic);
}

/*
 * The free fast path's block-start test (default hardening): off comes from
 * bm_slab_of, the magic from the heap's copy (h->magic, next to the bins).
 * A pointer inside a block (p + 8 of a 64-byte block) or never handed out
 * fails, and bm_free_local reports it.
 */
static inline __attribute__((always_inline)) bool slab_block_start(const struct bm_heap *h,
                                                                   const struct bm_page *s,
                                                                   uint32_t off, unsigned cls)
{
#if BM_HARDEN_LINKS
    return slab_offset_is_block(s, off, h->magic[cls]);
#else
    (void)h, (void)s, (void)off, (void)cls;
    return true;
#endif
}

/* The slab p lies in, or NULL for everything free handles out of line:
 * NULL, huge and foreign pointers (outside every region), runs of pages and
 * bad pointers. *off: p's offset in the slab (its page's distance from the
 * head, and its place in the page). */
static inline __attribute__((always_inline)) struct bm_page *bm_slab_of(const void *p,
                                                                       uint32_t *off)
{
    uintptr_t a = (uintptr_t)p;
    if (unlikely(!bm_addr_in_region(a)))
        return NULL;
    struct bm_page *s = addr_to_page(a);
    unsigned back = s->head_off;
    s -= back;                      /* a multi-page slab's head, branch-free */
    *off = (uint32_t)((back << BM_PAGE_SHIFT) | (a & (BM_PAGE_SIZE - 1)));
    return likely(page_flags(s) & PG_slab) ? s : NULL;
}

static inline __attribute__((always_inline)) void bm_free_to_slab(struct bm_page *s, void *p,
                                                                  uint32_t off, const char *fn)
{
    struct bm_heap *h = bm_tls_heap;
    /* Checked: the slab is this thread's (on the full queue or not), p is
     * a block start of it (slab_block_start), p is not the block freed
     * last, and p's first word does not decode as a free-list link (a block
     * already free: bm_free_local looks for it on the lists and reports
     * what is wrong). The block goes to the class's bin
     * while it has room; the slab still counts it as used until the bin
     * gives it back. A full bin gives all its blocks back to their slabs
     * and starts again with this one (bm_free_local), so the bin holds the
     * latest frees, which are mostly in the current slab: older slabs are
     * not kept alive by a few blocks waiting in the bin. */
    unsigned cls = s->slab.cls;
    void *top;
    bm_vg_free(p);
    if (likely((atomic_load_explicit(&s->slab.heap, memory_order_relaxed) & ~SLAB_FULL) ==
               (uintptr_t)h)) {
        uintptr_t k = bm_link_slot_key(p);
        if (likely(slab_block_start(h, s, off, cls) && p != (top = h->bin[cls]) &&
                   h->bin_n[cls] < BIN_MAX && !bm_link_looks_free_k(p, k))) {
            bm_link_set_k(p, top, k);
            h->bin[cls] = p;
            h->bin_n[cls]++;
            h->nfree[cls]++;
            return;
        }
        bm_free_local(h, s, p, fn);
        return;
    }
    bm_free_slab_slow(s, p, h, fn);
}

static inline __attribute__((always_inline)) void bm_free_inline(void *p, const char *fn)
{
    uint32_t off;
    struct bm_page *s = bm_slab_of(p, &off);
    if (unlikely(!s)) {
        bm_free_other(p, fn);
        return;
    }
    bm_free_to_slab(s, p, off, fn);
}

BM_COLD __attribute__((noreturn)) void bm_sized_mismatch(void *p, size_t size, const char *fn);

/*
 * C++ sized delete: the size given must map to the block's class, which
 * costs a table lookup on the same path as free. Anything else (runs,
 * huge, NULL, bad pointers) is checked out of line.
 */
static inline __attribute__((always_inline)) void bm_free_sized_inline(void *p, size_t size,
                                                                       const char *fn)
{
    struct bm_page *s;
    uint32_t off;
    if (likely(size <= BM_SLAB_MAX && (s = bm_slab_of(p, &off)))) {
        if (unlikely(bm_size_to_class(size) != s->slab.cls))
            bm_sized_mismatch(p, size, fn);
        bm_free_to_slab(s, p, off, fn);
        return;
    }
    bm_free_sized_fn(p, size, fn, true);
}

#endif
