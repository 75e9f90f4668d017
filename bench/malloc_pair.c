/*
 * malloc_pair.c - N malloc+free pairs of one size, for instruction counting
 * with callgrind (bench/callgrind-malloc.sh). Calls the standard names, so
 * the allocator is whatever the process resolves malloc to: buddymalloc or
 * jemalloc through LD_PRELOAD, glibc otherwise. The measured loop is
 * bench_pairs(); a warm-up runs first in another function.
 *
 * With a third argument "new", bench_new_pairs() does C++'s operator new
 * and sized operator delete instead (by their ABI names: the program is C,
 * linked with libstdc++ for the glibc column), what std::allocator calls.
 *
 * Usage: malloc-pair [N [SIZE [new]]]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *_Znwm(size_t size);                  /* operator new(size_t) */
void _ZdlPvm(void *p, size_t size);        /* operator delete(void *, size_t) */

void *volatile sink;

static __attribute__((noinline)) void pairs(unsigned long n, size_t size)
{
    for (unsigned long i = 0; i < n; i++) {
        void *p = malloc(size);
        if (!p)
            abort();
        sink = p;
        free(p);
    }
}

__attribute__((noinline, noclone, used)) void bench_pairs(unsigned long n, size_t size);
__attribute__((noinline, noclone, used)) void bench_pairs(unsigned long n, size_t size)
{
    for (unsigned long i = 0; i < n; i++) {
        void *p = malloc(size);
        if (__builtin_expect(!p, 0))
            abort();
        sink = p;
        free(p);
    }
}

__attribute__((noinline, noclone, used)) void bench_new_pairs(unsigned long n, size_t size);
__attribute__((noinline, noclone, used)) void bench_new_pairs(unsigned long n, size_t size)
{
    for (unsigned long i = 0; i < n; i++) {
        void *p = _Znwm(size);
        sink = p;
        _ZdlPvm(p, size);
    }
}

int main(int argc, char **argv)
{
    unsigned long n = argc > 1 ? strtoul(argv[1], NULL, 10) : 200000;
    size_t size = argc > 2 ? strtoul(argv[2], NULL, 10) : 16;
    pairs(1000, size);
    if (argc > 3 && !strcmp(argv[3], "new")) {
        bench_new_pairs(n, size);
        printf("malloc-pair: %lu operator new + sized delete pairs of %zu bytes\n", n, size);
        return 0;
    }
    bench_pairs(n, size);
    printf("malloc-pair: %lu pairs of %zu bytes\n", n, size);
    return 0;
}
