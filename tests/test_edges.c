/*
 * Edge cases of the API where glibc is exact (issue 14): sizes near
 * SIZE_MAX through every entry point (NULL with ENOMEM, the old block
 * intact), huge and bad alignments, frees of pointers inside a small block
 * made by the slab's owner, and the 16-byte minimum alignment.
 */
#include <stdint.h>

#include "helpers.h"
#include "alloc.h"

static const size_t huge_sizes[] = {
    SIZE_MAX,          SIZE_MAX - 1,      SIZE_MAX - 15,         SIZE_MAX - 4095,
    SIZE_MAX - 4096,   SIZE_MAX / 2 + 1,  (size_t)PTRDIFF_MAX + 1, (size_t)PTRDIFF_MAX,
    (size_t)PTRDIFF_MAX - 4095,
};
#define NHUGE (sizeof huge_sizes / sizeof huge_sizes[0])

#define assert_enomem(expr, what, n)                                            \
    do {                                                                       \
        errno = 0;                                                             \
        void *r_ = (expr);                                                     \
        cr_assert_null(r_, "%s(%zu) returned %p", what, (size_t)(n), r_);      \
        cr_assert_eq(errno, ENOMEM, "%s(%zu): errno %d", what, (size_t)(n), errno); \
    } while (0)

Test(edges, malloc_near_size_max)
{
    for (size_t i = 0; i < NHUGE; i++)
        assert_enomem(bm_malloc(huge_sizes[i]), "malloc", huge_sizes[i]);
    assert_heap_ok();
}

Test(edges, calloc_overflow_and_near_size_max)
{
    for (size_t i = 0; i < NHUGE; i++) {
        assert_enomem(bm_calloc(1, huge_sizes[i]), "calloc 1 x", huge_sizes[i]);
        assert_enomem(bm_calloc(huge_sizes[i], 1), "calloc x 1", huge_sizes[i]);
        assert_enomem(bm_calloc(2, huge_sizes[i]), "calloc 2 x", huge_sizes[i]);
    }
    /* the product wraps to a small number */
    assert_enomem(bm_calloc(SIZE_MAX / 16 + 2, 16), "calloc wrapping", 16);
    assert_enomem(bm_calloc((size_t)1 << 32, ((size_t)1 << 32) + 1), "calloc wrapping", 0);
    assert_heap_ok();
}

/* realloc of each kind of block (small, run, huge) to each huge size:
 * NULL, ENOMEM, and the block unchanged and still usable. */
static void realloc_keeps(size_t old, void *(*fn)(void *, size_t, size_t), const char *name)
{
    for (size_t i = 0; i < NHUGE; i++) {
        unsigned char *p = bm_malloc(old);
        cr_assert_not_null(p);
        size_t usable = bm_malloc_usable_size(p);
        for (size_t k = 0; k < old; k++)
            p[k] = (unsigned char)(k * 7 + i);
        errno = 0;
        void *q = fn(p, huge_sizes[i], 1);
        cr_assert_null(q, "%s(%zu-byte block, %zu) returned %p", name, old, huge_sizes[i], q);
        cr_assert_eq(errno, ENOMEM, "%s(%zu-byte block, %zu): errno %d", name, old,
                     huge_sizes[i], errno);
        cr_assert_eq(bm_malloc_usable_size(p), usable, "the old block keeps its size");
        for (size_t k = 0; k < old; k++)
            cr_assert_eq(p[k], (unsigned char)(k * 7 + i), "byte %zu of the old block", k);
        bm_free(p);
        assert_heap_ok();
    }
}

static void *realloc2(void *p, size_t n, size_t one)
{
    (void)one;
    return bm_realloc(p, n);
}

static void *reallocarray_n1(void *p, size_t n, size_t one) { return bm_reallocarray(p, n, one); }
static void *reallocarray_1n(void *p, size_t n, size_t one) { return bm_reallocarray(p, one, n); }

Test(edges, realloc_near_size_max_keeps_the_block)
{
    const size_t olds[] = {1, 100, 4096, 40000, 300000, 8 << 20};
    for (size_t i = 0; i < sizeof olds / sizeof olds[0]; i++)
        realloc_keeps(olds[i], realloc2, "realloc");
    /* and from NULL: malloc's answer */
    for (size_t i = 0; i < NHUGE; i++)
        assert_enomem(bm_realloc(NULL, huge_sizes[i]), "realloc(NULL)", huge_sizes[i]);
}

Test(edges, reallocarray_near_size_max_keeps_the_block)
{
    const size_t olds[] = {100, 300000};
    for (size_t i = 0; i < sizeof olds / sizeof olds[0]; i++) {
        realloc_keeps(olds[i], reallocarray_n1, "reallocarray");
        realloc_keeps(olds[i], reallocarray_1n, "reallocarray");
    }
    void *p = bm_malloc(100);
    assert_enomem(bm_reallocarray(p, (size_t)1 << 33, (size_t)1 << 33), "reallocarray wrapping", 0);
    bm_free(p);
}

Test(edges, aligned_entry_points_near_size_max)
{
    const size_t aligns[] = {16, 64, 4096, 1 << 20, (size_t)1 << 30};
    for (size_t a = 0; a < sizeof aligns / sizeof aligns[0]; a++) {
        for (size_t i = 0; i < NHUGE; i++) {
            size_t n = huge_sizes[i];
            assert_enomem(bm_memalign(aligns[a], n), "memalign", n);
            assert_enomem(bm_aligned_alloc(aligns[a], n), "aligned_alloc", n);
            void *out = (void *)0x1234;
            cr_assert_eq(bm_posix_memalign(&out, aligns[a], n), ENOMEM,
                         "posix_memalign(%zu, %zu)", aligns[a], n);
            cr_assert_eq(out, (void *)0x1234, "posix_memalign leaves *out alone on failure");
        }
    }
    for (size_t i = 0; i < NHUGE; i++) {
        assert_enomem(bm_valloc(huge_sizes[i]), "valloc", huge_sizes[i]);
        assert_enomem(bm_pvalloc(huge_sizes[i]), "pvalloc", huge_sizes[i]);
    }
    assert_heap_ok();
}

Test(edges, huge_and_bad_alignments)
{
    for (int shift = 40; shift < 64; shift++) {
        size_t al = (size_t)1 << shift;
        void *p = bm_aligned_alloc(al, 100);
        if (p) {                        /* the kernel found room: it must hold */
            cr_assert_eq((uintptr_t)p & (al - 1), 0, "aligned to 2^%d", shift);
            bm_free(p);
        } else {
            cr_assert_eq(errno, ENOMEM, "aligned_alloc(2^%d, 100): errno %d", shift, errno);
        }
        void *out = NULL;
        int r = bm_posix_memalign(&out, al, 100);
        cr_assert(r == 0 || r == ENOMEM, "posix_memalign(2^%d): %d", shift, r);
        if (!r)
            bm_free(out);
    }
    errno = 0;
    cr_assert_null(bm_aligned_alloc(24, 100));
    cr_assert_eq(errno, EINVAL);
    void *out = (void *)0x1234;
    cr_assert_eq(bm_posix_memalign(&out, 24, 100), EINVAL);
    cr_assert_eq(bm_posix_memalign(&out, 4, 100), EINVAL, "below sizeof(void *)");
    cr_assert_eq(out, (void *)0x1234);
    assert_heap_ok();
}

/* Every block is aligned to 16 (alignof(max_align_t)), as glibc's are,
 * even for a request of 1 byte; memalign(8) and (16) too. */
Test(edges, every_block_is_16_aligned)
{
    static void *keep[2048];
    for (size_t n = 0; n < 2048; n++) {
        keep[n] = bm_malloc(n);
        cr_assert_eq((uintptr_t)keep[n] & 15, 0, "malloc(%zu) = %p", n, keep[n]);
        cr_assert_geq(bm_malloc_usable_size(keep[n]), n ? n : 1);
    }
    for (size_t n = 0; n < 2048; n++)
        bm_free(keep[n]);
    for (size_t n = 1; n <= 64; n++) {
        void *a = bm_calloc(1, n), *b = bm_memalign(8, n), *c = bm_memalign(16, n);
        cr_assert_eq(((uintptr_t)a | (uintptr_t)b | (uintptr_t)c) & 15, 0, "size %zu", n);
        void *d = bm_realloc(a, n + 1);
        cr_assert_eq((uintptr_t)d & 15, 0);
        bm_free(d), bm_free(b), bm_free(c);
    }
    assert_heap_ok();
}

/* ---- frees of pointers that malloc never returned ------------------------ */

struct bad_free { size_t size; size_t delta; int by_other_thread; };

static void *free_from_thread(void *p)
{
    bm_free(p);
    return NULL;
}

static void free_inside(void *arg)
{
    const struct bad_free *b = arg;
    /* a few blocks first, so the bin has room and the block is not the
     * last one freed: the fast path is what is tested */
    char *keep[4];
    for (int i = 0; i < 4; i++)
        keep[i] = bm_malloc(b->size);
    char *p = bm_malloc(b->size);
    bm_free(keep[0]);
    fprintf(stderr, "block %p\n", (void *)p);
    if (b->by_other_thread) {
        pthread_t t;
        pthread_create(&t, NULL, free_from_thread, p + b->delta);
        pthread_join(t, NULL);
    } else {
        bm_free(p + b->delta);
    }
    /* not reached when the free is caught: the block it would have given */
    void *q = bm_malloc(b->size);
    fprintf(stderr, "not caught: malloc then returned %p\n", q);
}

static void expect_invalid(size_t size, size_t delta, int other)
{
    struct bad_free b = { size, delta, other };
    char msg[1024], addr[64];
    expect_child_abort(free_inside, &b, msg, sizeof msg);
    void *blk = NULL;
    cr_assert_eq(sscanf(msg, "block %p", &blk), 1, "stderr: %s", msg);
    snprintf(addr, sizeof addr, "bm_free(%p)", (void *)((char *)blk + delta));
    cr_assert(strstr(msg, addr), "the report names %s: %s", addr, msg);
    cr_assert(strstr(msg, "invalid pointer"), "stderr: %s", msg);
}

Test(edges, interior_free_by_the_owner_is_caught)
{
    expect_invalid(64, 8, 0);
    expect_invalid(256, 16, 0);
    expect_invalid(48, 32, 0);
    expect_invalid(1024, 512, 0);
    expect_invalid(20480, 4096, 0);        /* a multi-page slab */
    expect_invalid(32768, 16, 0);
}

Test(edges, interior_free_by_another_thread_is_caught)
{
    expect_invalid(64, 8, 1);
    expect_invalid(256, 16, 1);
}

/* A block-sized step past everything carved so far: a block start by its
 * offset, but never handed out (the slab carves lazily). */
static void free_uncarved(void *arg)
{
    (void)arg;
    char *p = bm_malloc(256);
    char *q = bm_malloc(256);
    bm_free(q);
    fprintf(stderr, "block %p\n", (void *)p);
    /* the slab's first extension carves a page of 256-byte blocks */
    bm_free(p + 40 * 256);
}

Test(edges, free_of_a_block_never_carved_is_caught)
{
    char msg[1024];
    expect_child_abort(free_uncarved, NULL, msg, sizeof msg);
    cr_assert(strstr(msg, "invalid pointer"), "stderr: %s", msg);
}

/* The block-start test of the free fast path and the slow paths
 * (alloc.h slab_offset_is_block) against division, for every class and
 * every offset of its slab, with a slab carved to every block but the last
 * (the index bound is checked too). */
Test(edges, block_start_test_is_exact_for_every_class)
{
    bm_ensure_init();
    for (unsigned c = 0; c < BM_NR_CLASSES; c++) {
        const struct bm_class *k = &bm_classes[c];
        struct bm_page slab;
        memset(&slab, 0, sizeof slab);
        slab.slab.reserved = (uint16_t)(k->capacity - 1);
        uint32_t bytes = (uint32_t)(BM_PAGE_SIZE << k->order);
        for (uint32_t off = 0; off < bytes; off++) {
            bool want = off % k->size == 0 && off / k->size < slab.slab.reserved;
            if (slab_offset_is_block(&slab, off, k->magic) != want)
                cr_assert_fail("class %u offset %u: %d, division says %d", k->size, off,
                               !want, want);
        }
    }
}

/* free_sized (C23) with a size near SIZE_MAX is a wrong size: reported,
 * with the function and the address, for a small block, a run and a huge
 * block alike. */
static size_t sized_block, sized_bad;

static void free_sized_huge(void *arg)
{
    (void)arg;
    void *p = bm_malloc(sized_block);
    fprintf(stderr, "block %p\n", p);
    bm_free_sized(p, sized_bad);
}

Test(edges, free_sized_near_size_max_is_reported)
{
    const size_t blocks[] = {100, 300000, 8 << 20};
    const size_t bad[] = {SIZE_MAX, SIZE_MAX - 4095, (size_t)PTRDIFF_MAX + 1};
    for (size_t i = 0; i < 3; i++)
        for (size_t j = 0; j < 3; j++) {
            char msg[1024], want[64];
            void *blk = NULL;
            sized_block = blocks[i];
            sized_bad = bad[j];
            expect_child_abort(free_sized_huge, NULL, msg, sizeof msg);
            cr_assert_eq(sscanf(msg, "block %p", &blk), 1, "stderr: %s", msg);
            snprintf(want, sizeof want, "bm_free_sized(%p)", blk);
            cr_assert(strstr(msg, want) && strstr(msg, "wrong sized free"),
                      "%zu-byte block, size %zu: %s", blocks[i], bad[j], msg);
        }
}

/* A zero-byte block aligned beyond the largest buddy block (a mapping of
 * its own): it must be a real block, with a usable size, that free and
 * free_sized accept. Before, memalign(align, 0) there made a huge entry of
 * length 0 at an address with no mapping, and free reported it as not
 * buddymalloc's (found by the fuzzer in the 16 MiB-region build). */
Test(edges, zero_bytes_aligned_beyond_the_largest_block)
{
    size_t align = (size_t)BM_PAGE_SIZE << MAX_ORDER;
    for (int k = 0; k < 4; k++) {
        void *p = k & 2 ? bm_aligned_alloc(align, 0) : bm_memalign(align, 0);
        cr_assert_not_null(p);
        cr_assert_eq((uintptr_t)p % align, 0);
        cr_assert_geq(bm_malloc_usable_size(p), 1);
        memset(p, 0x5a, bm_malloc_usable_size(p));
        if (k & 1)
            bm_free_sized(p, 0);
        else
            bm_free(p);
    }
    void *q;
    cr_assert_eq(bm_posix_memalign(&q, align, 0), 0);
    cr_assert_geq(bm_malloc_usable_size(q), 1);
    bm_free(q);
    assert_heap_ok();
}
