/*
 * override.c - the standard allocation names, exported by libbuddymalloc.so
 * and .a so that linking with -lbuddymalloc (or preloading it) replaces the
 * system malloc. Each is the same inline fast path as its bm_ twin, not a
 * call to it; reports name the function the program called.
 *
 * Not in the core library the unit tests link: there the test runner keeps
 * glibc's malloc and only the bm_ names exist.
 */
#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <string.h>

#include "alloc.h"
#include "buddymalloc.h"
#include "fmt.h"
#include "internal.h"

BM_API void *malloc(size_t size) { return bm_malloc_inline(size); }
BM_API void free(void *p) { bm_free_inline(p, "free"); }
BM_API void cfree(void *p) { bm_free_inline(p, "cfree"); }
BM_API void *calloc(size_t n, size_t size) { return bm_calloc_fn(n, size); }
BM_API void *realloc(void *p, size_t n) { return bm_realloc_fn(p, n, "realloc"); }
BM_API void *reallocarray(void *p, size_t n, size_t size)
{
    return bm_reallocarray_fn(p, n, size, "reallocarray");
}
BM_API void *memalign(size_t align, size_t size) { return bm_aligned_impl(align, size); }
BM_API void *aligned_alloc(size_t align, size_t size)
{
    return bm_aligned_impl(align, size);
}
BM_API int posix_memalign(void **out, size_t align, size_t size)
{
    return bm_posix_memalign_impl(out, align, size);
}
BM_API void *valloc(size_t size) { return bm_memalign_impl(BM_PAGE_SIZE, size); }
BM_API void *pvalloc(size_t size) { return bm_pvalloc_impl(size); }
BM_API size_t malloc_usable_size(void *p) { return bm_usable_fn(p, "malloc_usable_size"); }
BM_API int malloc_trim(size_t pad) { return bm_trim(pad); }
BM_API void free_sized(void *p, size_t size) { bm_free_sized_fn(p, size, "free_sized", false); }
/* C23: for aligned_alloc's blocks; the size is checked as free_sized's. */
BM_API void free_aligned_sized(void *p, size_t align, size_t size)
{
    (void)align;
    bm_free_sized_fn(p, size, "free_aligned_sized", false);
}

/*
 * glibc's exported internal names, which a few programs and libraries call
 * directly: the same functions, so nothing reaches glibc's malloc.
 */
BM_API void *__libc_malloc(size_t size) { return bm_malloc_inline(size); }
BM_API void __libc_free(void *p) { bm_free_inline(p, "__libc_free"); }
BM_API void *__libc_calloc(size_t n, size_t size) { return bm_calloc_fn(n, size); }
BM_API void *__libc_realloc(void *p, size_t n) { return bm_realloc_fn(p, n, "__libc_realloc"); }
BM_API void *__libc_memalign(size_t align, size_t size) { return bm_aligned_impl(align, size); }
BM_API void *__libc_valloc(size_t size) { return bm_memalign_impl(BM_PAGE_SIZE, size); }
BM_API void *__libc_pvalloc(size_t size) { return bm_pvalloc_impl(size); }

/* ---- glibc's tuning and statistics calls -------------------------------- */

/*
 * mallopt: M_TRIM_THRESHOLD sets release_threshold (free resident memory
 * past it goes back to the OS at once) and turns the hold off
 * (release_peak=no: a program that sets it asks for prompt trimming, as
 * glibc's free gives it); the other parameters glibc knows
 * describe its arenas, top pad and mmap threshold, which do not exist
 * here: accepted and ignored (1), as a program expects. Unknown: 0.
 */
BM_API int mallopt(int param, int value)
{
    bm_ensure_init();
    switch (param) {
    case M_TRIM_THRESHOLD:
        if (value < 0)
            return 0;
        __atomic_store_n(&bm_g.opt.release_threshold_pages,
                         (unsigned long)value >> BM_PAGE_SHIFT, __ATOMIC_RELAXED);
        __atomic_store_n(&bm_g.opt.release_peak, 0, __ATOMIC_RELAXED);
        return 1;
    case M_MXFAST: case M_TOP_PAD: case M_MMAP_THRESHOLD: case M_MMAP_MAX:
    case M_CHECK_ACTION: case M_PERTURB: case M_ARENA_TEST: case M_ARENA_MAX:
        return 1;
    default:
        return 0;
    }
}
BM_API int __libc_mallopt(int param, int value) { return mallopt(param, value); }

/*
 * mallinfo2 in buddymalloc's terms: arena = memory of the regions that is
 * resident (bound), ordblks = free buddy blocks, hblks/hblkhd = huge
 * mappings, uordblks = bytes in use (slab blocks at their class size plus
 * runs), fordblks = the rest of arena, keepcost = 0.
 */
static struct mallinfo2 info2(void)
{
    struct mallinfo2 mi;
    struct bm_malloc_stats m;
    memset(&mi, 0, sizeof mi);
    bm_malloc_stats(&m);
    for (int n = 0; n < bm_nr_zones(); n++) {
        struct bm_zone_stats z;
        bm_zone_stats(n, &z);
        mi.arena += z.resident_pages << BM_PAGE_SHIFT;
        for (int o = 0; o < BM_MAX_ORDERS; o++)
            mi.ordblks += z.nr_free[o];
    }
    mi.hblks = m.huge_live;
    mi.hblkhd = m.huge_bytes;
    mi.uordblks = m.small_active_bytes + m.large_bytes;
    mi.fordblks = mi.arena > mi.uordblks ? mi.arena - mi.uordblks : 0;
    return mi;
}

BM_API struct mallinfo2 mallinfo2(void) { return info2(); }

static int clamp(size_t v) { return v > INT_MAX ? INT_MAX : (int)v; }

static struct mallinfo info1(void)
{
    struct mallinfo2 m2 = info2();
    struct mallinfo mi = {
        .arena = clamp(m2.arena), .ordblks = clamp(m2.ordblks), .hblks = clamp(m2.hblks),
        .hblkhd = clamp(m2.hblkhd), .uordblks = clamp(m2.uordblks),
        .fordblks = clamp(m2.fordblks),
    };
    return mi;
}
BM_API struct mallinfo mallinfo(void) { return info1(); }
BM_API struct mallinfo __libc_mallinfo(void) { return info1(); }

/* malloc_stats: like glibc, to stderr; every statistic we have. */
BM_API void malloc_stats(void) { bm_stats_fd(2); }

/*
 * malloc_info: XML in glibc's layout - a <heap> per zone whose <sizes> are
 * the free buddy blocks per order, then totals. Only options == 0 exists.
 */
static void put_attr(struct bm_buf *b, const char *name, uint64_t v)
{
    bm_putc(b, ' ');
    bm_puts(b, name);
    bm_puts(b, "=\"");
    bm_putu(b, v, 0);
    bm_putc(b, '"');
}

static void put_total(struct bm_buf *b, const char *tag, const char *type, uint64_t count,
                      uint64_t size)
{
    bm_putc(b, '<');
    bm_puts(b, tag);
    bm_puts(b, " type=\"");
    bm_puts(b, type);
    bm_putc(b, '"');
    if (count != UINT64_MAX)
        put_attr(b, "count", count);
    put_attr(b, "size", size);
    bm_puts(b, "/>\n");
}

static void to_stream(void *ctx, const char *s, size_t n) { fwrite(s, 1, n, (FILE *)ctx); }

BM_API int malloc_info(int options, FILE *fp)
{
    if (options != 0 || !fp) {
        errno = EINVAL;
        return -1;
    }
    bm_ensure_init();
    struct bm_malloc_stats m;
    bm_malloc_stats(&m);
    char scratch[512];
    struct bm_buf b;
    uint64_t free_blocks = 0, free_bytes = 0, resident = 0, managed = 0;
    bm_buf_sink(&b, to_stream, fp, scratch, sizeof scratch);
    bm_puts(&b, "<malloc version=\"1\" allocator=\"buddymalloc " BM_VERSION "\">\n");
    for (int n = 0; n < bm_nr_zones(); n++) {
        struct bm_zone_stats z;
        bm_zone_stats(n, &z);
        bm_puts(&b, "<heap nr=\"");
        bm_putu(&b, (uint64_t)n, 0);
        bm_puts(&b, "\">\n<sizes>\n");
        uint64_t blocks = 0, bytes = 0;
        for (int o = 0; o < bm_max_order(); o++) {
            uint64_t sz = (uint64_t)BM_PAGE_SIZE << o;
            if (!z.nr_free[o])
                continue;
            bm_puts(&b, "  <size");
            put_attr(&b, "from", sz);
            put_attr(&b, "to", sz);
            put_attr(&b, "total", z.nr_free[o] * sz);
            put_attr(&b, "count", z.nr_free[o]);
            bm_puts(&b, "/>\n");
            blocks += z.nr_free[o];
            bytes += z.nr_free[o] * sz;
        }
        bm_puts(&b, "</sizes>\n");
        put_total(&b, "total", "buddy", blocks, bytes);
        put_total(&b, "total", "pcp", UINT64_MAX, (uint64_t)z.pcp_pages << BM_PAGE_SHIFT);
        put_total(&b, "system", "current", UINT64_MAX, (uint64_t)z.resident_pages << BM_PAGE_SHIFT);
        put_total(&b, "aspace", "total", UINT64_MAX, (uint64_t)z.managed_pages << BM_PAGE_SHIFT);
        bm_puts(&b, "</heap>\n");
        free_blocks += blocks;
        free_bytes += bytes;
        resident += (uint64_t)z.resident_pages << BM_PAGE_SHIFT;
        managed += (uint64_t)z.managed_pages << BM_PAGE_SHIFT;
    }
    put_total(&b, "total", "buddy", free_blocks, free_bytes);
    put_total(&b, "total", "small", m.small_allocs - m.small_frees, m.small_active_bytes);
    put_total(&b, "total", "large", m.large_allocs - m.large_frees, m.large_bytes);
    put_total(&b, "total", "mmap", m.huge_live, m.huge_bytes);
    put_total(&b, "system", "current", UINT64_MAX, resident + m.huge_bytes);
    put_total(&b, "aspace", "total", UINT64_MAX, managed + m.huge_bytes);
    bm_puts(&b, "</malloc>\n");
    bm_buf_finish(&b);
    return ferror(fp) ? -1 : 0;
}
