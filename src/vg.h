/*
 * vg.h - what valgrind's memcheck is told (meson -Dvalgrind=enabled; every
 * macro is empty otherwise, and the client requests cost a few
 * instructions each when the program does not run under valgrind).
 *
 * memcheck does not see buddymalloc's malloc (it replaces only libc's), so
 * the allocator describes its blocks itself:
 *   - a region's usable part is no-access from the start: memory nobody
 *     was handed is not scanned for leaks and not readable;
 *   - every block handed out is MALLOCLIKE with the size asked for, and the
 *     rest of its slot (the class's or run's slack) no-access, so an
 *     overrun by one byte is reported as it is with glibc;
 *   - every block freed is FREELIKE: a use after free is reported with the
 *     stack of the free;
 *   - the allocator's own accesses to free blocks (the link word,
 *     freelist.h) make those 8 bytes defined for the access only;
 *   - memory the allocator takes for itself (heaps, pagesets) is made
 *     addressable when taken.
 * The size asked for is recovered when needed (realloc, malloc_usable_size)
 * as the length of the block's addressable prefix: what valgrind's own
 * malloc_usable_size answers too.
 */
#ifndef BM_VG_H
#define BM_VG_H

#include <stddef.h>

#include "bm_config.h"

#if BM_VALGRIND
#include <valgrind/memcheck.h>

#define BM_VG_RUNNING() (RUNNING_ON_VALGRIND != 0)
#define BM_VG_NOACCESS(p, n) VALGRIND_MAKE_MEM_NOACCESS((p), (n))
#define BM_VG_UNDEFINED(p, n) VALGRIND_MAKE_MEM_UNDEFINED((p), (n))
#define BM_VG_DEFINED(p, n) VALGRIND_MAKE_MEM_DEFINED((p), (n))
/* Memory of the allocator's own that holds pointers to blocks (the huge
 * table): out of the leak check's sight, its accesses not reported. */
#define BM_VG_HIDE(p, n)                                                     \
    do {                                                                     \
        VALGRIND_MAKE_MEM_NOACCESS((p), (n));                                \
        VALGRIND_DISABLE_ADDR_ERROR_REPORTING_IN_RANGE((p), (n));            \
    } while (0)
#define BM_VG_UNHIDE(p, n) VALGRIND_ENABLE_ADDR_ERROR_REPORTING_IN_RANGE((p), (n))

/* A block of size bytes handed out at p, in a slot of usable bytes. */
static inline void bm_vg_malloc(void *p, size_t size, size_t usable, int zeroed)
{
    if (!p)
        return;
    VALGRIND_MALLOCLIKE_BLOCK(p, size, 0, zeroed);
    if (usable > size)
        VALGRIND_MAKE_MEM_NOACCESS((char *)p + size, usable - size);
}

static inline void bm_vg_free(void *p)
{
    VALGRIND_FREELIKE_BLOCK(p, 0);
}

/* The size a live block was asked with: its addressable prefix, probed a
 * byte at a time by bisection (GET_VBITS reports no error, unlike
 * CHECK_MEM_IS_ADDRESSABLE). Not under valgrind: the whole slot. */
static inline size_t bm_vg_requested(const void *p, size_t usable)
{
    if (!RUNNING_ON_VALGRIND || usable == 0)
        return usable;
    size_t lo = 0, hi = usable;     /* [p, p+lo) addressable; p+hi not, or end */
    unsigned char bits;
    if (VALGRIND_GET_VBITS((const char *)p + usable - 1, &bits, 1) != 3)
        return usable;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (VALGRIND_GET_VBITS((const char *)p + mid - 1, &bits, 1) == 3)
            hi = mid;
        else
            lo = mid;
    }
    return lo;
}

/* realloc kept the block where it is: its size is now size. */
static inline void bm_vg_resize(void *p, size_t old, size_t size, size_t usable)
{
    VALGRIND_RESIZEINPLACE_BLOCK(p, old, size, 0);
    if (usable > size)
        VALGRIND_MAKE_MEM_NOACCESS((char *)p + size, usable - size);
}

#else

#define BM_VG_RUNNING() 0
#define BM_VG_NOACCESS(p, n) ((void)(p), (void)(n))
#define BM_VG_UNDEFINED(p, n) ((void)(p), (void)(n))
#define BM_VG_DEFINED(p, n) ((void)(p), (void)(n))
#define BM_VG_HIDE(p, n) ((void)(p), (void)(n))
#define BM_VG_UNHIDE(p, n) ((void)(p), (void)(n))
static inline void bm_vg_malloc(void *p, size_t size, size_t usable, int zeroed)
{
    (void)p, (void)size, (void)usable, (void)zeroed;
}
static inline void bm_vg_free(void *p) { (void)p; }
static inline size_t bm_vg_requested(const void *p, size_t usable)
{
    (void)p;
    return usable;
}
static inline void bm_vg_resize(void *p, size_t old, size_t size, size_t usable)
{
    (void)p, (void)old, (void)size, (void)usable;
}

#endif

#endif
