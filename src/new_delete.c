/*
 * new_delete.c - the C++ operators new and delete, every replaceable form
 * (plain, array, nothrow, sized, C++17 aligned), exported under their
 * Itanium-ABI names from libbuddymalloc so that libstdc++ programs are
 * served directly instead of through libstdc++'s operator new -> malloc.
 *
 * Written in C: the library must not pull libstdc++ into every program it
 * is preloaded into. What C++ needs on failure - the new-handler and
 * std::bad_alloc - is reached through weak references to libstdc++'s own
 * exported functions, present whenever a program that calls operator new
 * is running. The file is built with -fexceptions so that an exception
 * from a new-handler or from std::__throw_bad_alloc unwinds through it.
 *
 * A sized delete is checked: the size must be the one the block was asked
 * for (it must map to the block's size class, or to its number of pages),
 * else the program is stopped with a report naming operator delete.
 */
#include <errno.h>
#include <stddef.h>

#include "alloc.h"

typedef void (*bm_new_handler)(void);

/* std::get_new_handler() and std::__throw_bad_alloc(), from libstdc++. */
extern bm_new_handler _ZSt15get_new_handlerv(void) __attribute__((weak));
extern void _ZSt17__throw_bad_allocv(void) __attribute__((weak, noreturn));

static inline void *new_try(size_t size, size_t align)
{
    if (align <= 16)                        /* every block is 16-aligned */
        return bm_malloc_inline(size);
    return bm_aligned_impl(align, size);
}

/*
 * Slow path, out of line: the allocation failed. As the standard says,
 * call the new-handler while there is one and retry; without one, throw
 * std::bad_alloc (plain forms) or return NULL (nothrow forms). A nothrow
 * form whose handler throws lets the exception through: it cannot catch
 * it from C (docs/preload.md).
 */
static BM_COLD void *new_failed(size_t size, size_t align, int nothrow)
{
    for (;;) {
        bm_new_handler h = _ZSt15get_new_handlerv ? _ZSt15get_new_handlerv() : NULL;
        if (!h)
            break;
        h();
        void *p = new_try(size, align);
        if (p)
            return p;
    }
    if (nothrow)
        return NULL;
    if (_ZSt17__throw_bad_allocv)
        _ZSt17__throw_bad_allocv();
    bm_fatal_size("operator new", NULL, "out of memory for ", size,
                  " bytes and no C++ runtime to throw std::bad_alloc");
}

static inline __attribute__((always_inline)) void *new_plain(size_t size, int nothrow)
{
    void *p = bm_malloc_inline(size);
    return likely(p) ? p : new_failed(size, 0, nothrow);
}

static inline void *new_aligned(size_t size, size_t align, int nothrow)
{
    void *p = new_try(size, align);
    return p ? p : new_failed(size, align, nothrow);
}

#define NEW_API BM_API __attribute__((malloc, alloc_size(1)))

/* operator new(size_t), new[](size_t) */
NEW_API void *_Znwm(size_t n) { return new_plain(n, 0); }
NEW_API void *_Znam(size_t n) { return new_plain(n, 0); }
/* operator new(size_t, const std::nothrow_t &), new[] */
NEW_API void *_ZnwmRKSt9nothrow_t(size_t n, const void *nt)
{
    (void)nt;
    return new_plain(n, 1);
}
NEW_API void *_ZnamRKSt9nothrow_t(size_t n, const void *nt)
{
    (void)nt;
    return new_plain(n, 1);
}
/* operator new(size_t, std::align_val_t), new[], and their nothrow forms */
NEW_API void *_ZnwmSt11align_val_t(size_t n, size_t al) { return new_aligned(n, al, 0); }
NEW_API void *_ZnamSt11align_val_t(size_t n, size_t al) { return new_aligned(n, al, 0); }
NEW_API void *_ZnwmSt11align_val_tRKSt9nothrow_t(size_t n, size_t al, const void *nt)
{
    (void)nt;
    return new_aligned(n, al, 1);
}
NEW_API void *_ZnamSt11align_val_tRKSt9nothrow_t(size_t n, size_t al, const void *nt)
{
    (void)nt;
    return new_aligned(n, al, 1);
}

/* operator delete(void *), delete[], and the nothrow forms */
BM_API void _ZdlPv(void *p) { bm_free_inline(p, "operator delete"); }
BM_API void _ZdaPv(void *p) { bm_free_inline(p, "operator delete[]"); }
BM_API void _ZdlPvRKSt9nothrow_t(void *p, const void *nt)
{
    (void)nt;
    bm_free_inline(p, "operator delete");
}
BM_API void _ZdaPvRKSt9nothrow_t(void *p, const void *nt)
{
    (void)nt;
    bm_free_inline(p, "operator delete[]");
}
/* sized: operator delete(void *, size_t), delete[] */
BM_API void _ZdlPvm(void *p, size_t n) { bm_free_sized_inline(p, n, "operator delete"); }
BM_API void _ZdaPvm(void *p, size_t n) { bm_free_sized_inline(p, n, "operator delete[]"); }

/* aligned: operator delete(void *, std::align_val_t), sized, nothrow. The
 * aligned path may have given a larger class than the size maps to, so a
 * sized aligned delete checks the size against the block's usable size. */
BM_API void _ZdlPvSt11align_val_t(void *p, size_t al)
{
    (void)al;
    bm_free_inline(p, "operator delete");
}
BM_API void _ZdaPvSt11align_val_t(void *p, size_t al)
{
    (void)al;
    bm_free_inline(p, "operator delete[]");
}
BM_API void _ZdlPvmSt11align_val_t(void *p, size_t n, size_t al)
{
    (void)al;
    bm_free_sized_fn(p, n, "operator delete", false);
}
BM_API void _ZdaPvmSt11align_val_t(void *p, size_t n, size_t al)
{
    (void)al;
    bm_free_sized_fn(p, n, "operator delete[]", false);
}
BM_API void _ZdlPvSt11align_val_tRKSt9nothrow_t(void *p, size_t al, const void *nt)
{
    (void)al, (void)nt;
    bm_free_inline(p, "operator delete");
}
BM_API void _ZdaPvSt11align_val_tRKSt9nothrow_t(void *p, size_t al, const void *nt)
{
    (void)al, (void)nt;
    bm_free_inline(p, "operator delete[]");
}
