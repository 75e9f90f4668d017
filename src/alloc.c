/*
 * alloc.c - the malloc API (bm_* names; override.c gives the standard
 * names the same code): size dispatch, calloc, realloc, aligned
 * allocation, usable size, and every path that is not a small block.
 *
 * What a pointer is, is read from where it lies: inside a region, its page
 * descriptor says slab block, run of pages (PG_large) or nothing of ours;
 * outside every region, the huge table knows it or it is foreign.
 */
#include <errno.h>
#include <string.h>

#include "alloc.h"
#include "buddymalloc.h"
#include "large.h"
#include "slab.h"

/* Pages for n bytes; n <= PTRDIFF_MAX (every caller checks), so no wrap. */
#define PAGES(n) (((n) + BM_PAGE_SIZE - 1) >> BM_PAGE_SHIFT)

/* Anything above the slab classes, or aligned beyond them. */
void *bm_malloc_large(size_t size, size_t align, bool zero)
{
    if (unlikely(size > PTRDIFF_MAX)) {
        errno = ENOMEM;
        return NULL;
    }
    /* a thread that only makes runs gets a heap too: runs are counted there */
    if (unlikely(bm_tls_heap == &bm_heap_empty))
        bm_heap_create();
    size_t npages = PAGES(size ? size : 1);
    unsigned align_order = 0;
    if (align > BM_PAGE_SIZE)
        align_order = (unsigned)__builtin_ctzl(align) - BM_PAGE_SHIFT;
    if (npages <= (1UL << PCP_MAX_ORDER) && !(npages & (npages - 1)) &&
        align_order <= (unsigned)__builtin_ctzl(npages)) {
        /* a whole buddy block of a pageset order: through the pagesets,
         * no zone lock (bm_large_free gives it back the same way) */
        unsigned order = (unsigned)__builtin_ctzl(npages);
        struct bm_page *p = bm_alloc_block(order, MIGRATE_LARGE, 0);
        if (!p)
            return NULL;
        p->large.npages = npages;
        set_page_flags(p, PG_alloc | PG_large);
        bm_large_count(1, (int64_t)npages);
        void *a = page_to_addr(p);
        bm_vg_malloc(a, size, npages << BM_PAGE_SHIFT, 0);
        if (zero)
            memset(a, 0, size);
        return a;
    }
    if (npages <= MAX_ORDER_NR_PAGES && align_order < MAX_ORDER) {
        bool zeroed = false;
        struct bm_page *p = bm_large_alloc(npages, align_order, &zeroed);
        if (!p)
            return NULL;
        bm_large_count(1, (int64_t)npages);
        void *a = page_to_addr(p);
        bm_vg_malloc(a, size, npages << BM_PAGE_SHIFT, zeroed);
        if (zero && !zeroed)
            memset(a, 0, size);
        return a;
    }
    void *a = bm_huge_alloc(size, align);      /* mmap: zero already */
    if (BM_VG_RUNNING() && a)
        bm_vg_malloc(a, size, bm_huge_usable(a), 1);
    return a;
}

enum kind { K_SLAB, K_LARGE, K_HUGE };

/* What p is, or a report naming fn if it is nothing we handed out. */
static enum kind classify(void *p, const char *fn, struct bm_page **pd, size_t *usable)
{
    uintptr_t a = (uintptr_t)p;
    if (bm_addr_mapped(a)) {
        struct bm_page *d = addr_to_page(a);
        if ((a & REGION_MASK) >> BM_PAGE_SHIFT < REGION_FIRST_PAGE)
            bm_fatal_bad_pointer(fn, p, "invalid pointer (allocator metadata)");
        unsigned f = page_flags(d);
        if (f & PG_tail) {
            d = (struct bm_page *)d->lru.next;
            f = page_flags(d);
        }
        if (f & PG_slab) {
            if (!slab_block_ok(d, a))
                bm_fatal_bad_pointer(fn, p, "invalid pointer (inside a slab but not at a block start)");
            *pd = d;
            *usable = bm_classes[d->slab.cls].size;
            return K_SLAB;
        }
        if ((f & (PG_alloc | PG_large)) == (PG_alloc | PG_large) && !(a & (BM_PAGE_SIZE - 1))) {
            *pd = d;
            *usable = d->large.npages << BM_PAGE_SHIFT;
            return K_LARGE;
        }
        if (f & (PG_buddy | PG_pcp))
            bm_fatal_bad_pointer(fn, p, "double free (the memory is already free)");
        bm_fatal_bad_pointer(fn, p, "invalid pointer (not the start of an allocated block)");
    }
    size_t n = bm_huge_usable(p);
    if (!n)
        bm_fatal_bad_pointer(fn, p, "invalid pointer (not allocated by buddymalloc)");
    *pd = NULL;
    *usable = n;
    return K_HUGE;
}

/* Out of line part of free: NULL, runs of pages, huge, bad pointers. */
BM_COLD void bm_free_other(void *p, const char *fn)
{
    if (!p)
        return;
    uintptr_t a = (uintptr_t)p;
    if (bm_addr_mapped(a)) {
        struct bm_page *d;
        size_t usable;
        enum kind k = classify(p, fn, &d, &usable);
        bm_vg_free(p);
        if (k == K_LARGE)
            bm_large_free(d);
        else                                /* a slab block after all */
            bm_free_slab_slow(d, p, bm_tls_heap, fn);
        return;
    }
    if (!bm_huge_free(p))
        bm_fatal_bad_pointer(fn, p, "invalid pointer (not allocated by buddymalloc)");
    bm_vg_free(p);
}

void *bm_calloc_fn(size_t n, size_t size)
{
    size_t total;
    if (unlikely(__builtin_mul_overflow(n, size, &total))) {
        errno = ENOMEM;
        return NULL;
    }
    if (likely(total <= BM_SLAB_MAX)) {
        void *p = bm_malloc_class(bm_size_to_class(total), total);
        if (likely(p))
            memset(p, 0, total);
        return p;
    }
    return bm_malloc_large(total, 0, true);
}

/* realloc under valgrind: a block stays where it is only while it fits its
 * slot (memcheck is told its new size); otherwise it moves, with the bytes
 * the program was given and no more (no run grown in place, no mremap:
 * memcheck would lose the block). */
static void *realloc_vg(void *p, size_t n, const char *fn, enum kind k, size_t usable)
{
    size_t old = bm_vg_requested(p, usable);
    if (k != K_HUGE && n <= usable && (n > usable / 2 || (k == K_SLAB && usable <= 16))) {
        bm_vg_resize(p, old, n, usable);
        return p;
    }
    void *q = bm_malloc_inline(n);
    if (!q)
        return NULL;
    memcpy(q, p, n < old ? n : old);
    bm_free_inline(p, fn);
    return q;
}

void *bm_realloc_fn(void *p, size_t n, const char *fn)
{
    if (!p)
        return bm_malloc_inline(n);
    if (n == 0) {                       /* glibc: free and return NULL */
        bm_free_inline(p, fn);
        return NULL;
    }
    struct bm_page *d;
    size_t usable;
    enum kind k = classify(p, fn, &d, &usable);
    if (unlikely(n > PTRDIFF_MAX)) {    /* as glibc: no object is that large, */
        errno = ENOMEM;                 /* and PAGES(n) below would wrap */
        return NULL;
    }
    if (BM_VG_RUNNING())
        return realloc_vg(p, n, fn, k, usable);
    switch (k) {
    case K_SLAB:
        /* In place while the block is at most twice what is asked. */
        if (n <= usable && (usable <= 16 || n > usable / 2))
            return p;
        break;
    case K_LARGE:
        /* in place while the run is at most twice what is asked: the slack
         * a growing buffer was given (below) is kept for its next steps */
        if (n <= usable && n > usable / 2)
            return p;
        if (n > BM_SLAB_MAX && PAGES(n) <= BM_RUN_MAX_PAGES &&
            bm_large_resize(d, PAGES(n)))
            return p;
        break;
    case K_HUGE:
        if (n > (MAX_ORDER_NR_PAGES << BM_PAGE_SHIFT)) {
            void *q = bm_huge_realloc(p, n);
            if (q)
                return q;
            return NULL;
        }
        break;
    }
    /*
     * Moving a block that grows into a run: give it a whole buddy block
     * (pages rounded up to a power of two), so its next small steps stay in
     * place instead of needing free pages behind it or another move. The
     * slack is virtual until written.
     */
    size_t ask = n;
    if (n > usable && n > BM_SLAB_MAX && PAGES(n) <= MAX_ORDER_NR_PAGES) {
        size_t pages = PAGES(n);
        ask = (pages & (pages - 1) ? 1UL << (64 - __builtin_clzl(pages)) : pages) << BM_PAGE_SHIFT;
    }
    void *q = bm_malloc_inline(ask);
    if (!q)
        return NULL;                    /* p is untouched, errno ENOMEM */
    memcpy(q, p, n < usable ? n : usable);
    bm_free_inline(p, fn);
    return q;
}

/* align is a power of two. */
void *bm_memalign_impl(size_t align, size_t size)
{
    if (align <= 16)                    /* every block is 16-aligned */
        return bm_malloc_inline(size);
    if (size <= BM_SLAB_MAX && align <= BM_SLAB_MAX) {
        /* a class whose size is a multiple of align: its blocks are aligned,
         * slabs being aligned to at least their block size. The class table
         * is built at bootstrap, which this may be the first call of. */
        bm_ensure_init();
        for (unsigned c = bm_size_to_class(size); c < BM_NR_CLASSES; c++)
            if (bm_classes[c].size % align == 0)
                return bm_malloc_class(c, size);
    }
    return bm_malloc_large(size, align, false);
}

size_t bm_usable_fn(void *p, const char *fn)
{
    if (!p)
        return 0;
    struct bm_page *d;
    size_t usable;
    classify(p, fn, &d, &usable);
    return bm_vg_requested(p, usable);      /* under valgrind: the size asked */
}

static bool power_of_two(size_t a) { return a && !(a & (a - 1)); }

int bm_posix_memalign_impl(void **out, size_t align, size_t size)
{
    if (!power_of_two(align) || align < sizeof(void *))
        return EINVAL;
    int saved = errno;
    void *p = bm_memalign_impl(align, size);
    errno = saved;
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}

void *bm_aligned_impl(size_t align, size_t size)
{
    if (!power_of_two(align)) {
        errno = EINVAL;
        return NULL;
    }
    return bm_memalign_impl(align, size);
}

void *bm_pvalloc_impl(size_t size)
{
    size_t rounded = (size + BM_PAGE_SIZE - 1) & ~(BM_PAGE_SIZE - 1);
    if (rounded < size) {
        errno = ENOMEM;
        return NULL;
    }
    return bm_memalign_impl(BM_PAGE_SIZE, rounded ? rounded : BM_PAGE_SIZE);
}

void *bm_reallocarray_fn(void *p, size_t n, size_t size, const char *fn)
{
    size_t total;
    if (__builtin_mul_overflow(n, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    return bm_realloc_fn(p, total, fn);
}

BM_COLD void bm_sized_mismatch(void *p, size_t size, const char *fn)
{
    bm_fatal_size(fn, p, "size ", size, " given is not the size allocated (wrong sized free)");
}

void bm_free_sized_fn(void *p, size_t size, const char *fn, bool strict)
{
    if (!p)
        return;
    struct bm_page *d;
    size_t usable;
    enum kind k = classify(p, fn, &d, &usable);
    bool ok = size <= usable;
    if (strict) {
        if (k == K_SLAB)
            ok = size <= BM_SLAB_MAX && bm_size_to_class(size) == d->slab.cls;
        else            /* a run or mapping is the request rounded up to pages */
            ok = size > BM_SLAB_MAX && size <= PTRDIFF_MAX &&
                 PAGES(size) == usable >> BM_PAGE_SHIFT;
    }
    if (!ok)
        bm_sized_mismatch(p, size, fn);
    bm_free_inline(p, fn);
}

/* ---- the bm_ names ------------------------------------------------------- */

BM_API void *bm_malloc(size_t size) { return bm_malloc_inline(size); }
BM_API void bm_free(void *p) { bm_free_inline(p, "bm_free"); }
BM_API void *bm_calloc(size_t n, size_t size) { return bm_calloc_fn(n, size); }
BM_API void *bm_realloc(void *p, size_t n) { return bm_realloc_fn(p, n, "bm_realloc"); }
BM_API void *bm_reallocarray(void *p, size_t n, size_t size)
{
    return bm_reallocarray_fn(p, n, size, "bm_reallocarray");
}
BM_API void *bm_memalign(size_t align, size_t size)
{
    return bm_aligned_impl(align, size);
}
BM_API int bm_posix_memalign(void **out, size_t align, size_t size)
{
    return bm_posix_memalign_impl(out, align, size);
}
BM_API void *bm_aligned_alloc(size_t align, size_t size)
{
    return bm_aligned_impl(align, size);
}
BM_API void *bm_valloc(size_t size) { return bm_memalign_impl(BM_PAGE_SIZE, size); }
BM_API void *bm_pvalloc(size_t size) { return bm_pvalloc_impl(size); }
BM_API size_t bm_malloc_usable_size(void *p) { return bm_usable_fn(p, "bm_malloc_usable_size"); }
BM_API void bm_free_sized(void *p, size_t size) { bm_free_sized_fn(p, size, "bm_free_sized", false); }
