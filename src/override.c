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

#include "alloc.h"
#include "buddymalloc.h"

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
BM_API void free_sized(void *p, size_t size) { bm_free_sized_fn(p, size, "free_sized"); }
