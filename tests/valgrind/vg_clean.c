/*
 * A correct program for memcheck: small, page and huge blocks, calloc,
 * realloc growing through every kind, aligned allocation, usable size,
 * blocks freed by other threads. run.sh requires no error and no leak:
 * the allocator's own accesses to free blocks must stay invisible.
 */
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { N = 3000 };
static void *blocks[N];

static void *free_half(void *arg)
{
    (void)arg;
    for (int i = 0; i < N; i += 2)
        free(blocks[i]);
    return NULL;
}

int main(void)
{
    unsigned long sum = 0;
    for (int i = 0; i < N; i++) {
        size_t size = 1 + (size_t)(i * 37) % (i % 97 ? 900 : 70000);
        blocks[i] = malloc(size);
        memset(blocks[i], i & 0xff, size);
    }
    pthread_t t;
    pthread_create(&t, NULL, free_half, NULL);
    pthread_join(t, NULL);
    for (int i = 1; i < N; i += 2)
        free(blocks[i]);

    /* realloc from 1 byte to 6 MiB and back, checking the contents */
    unsigned char *g = NULL;
    size_t have = 0;
    for (size_t n = 1; n <= (6u << 20); n = n * 3 / 2 + 1) {
        g = realloc(g, n);
        for (size_t k = 0; k < have && k < n; k += 4093)
            sum += g[k] != (unsigned char)k;
        for (size_t k = have; k < n; k++)
            g[k] = (unsigned char)k;
        have = n;
    }
    for (size_t n = have; n > 8; n /= 3) {
        g = realloc(g, n);
        sum += g[n - 1] != (unsigned char)(n - 1);
    }
    free(g);

    int *c = calloc(1000, sizeof *c);
    for (int i = 0; i < 1000; i++)
        sum += (unsigned long)c[i];
    free(c);

    void *a = aligned_alloc(4096, 5000), *m = memalign(256, 100), *pa;
    if (posix_memalign(&pa, 64, 33) != 0)
        return 1;
    sum += ((uintptr_t)a | (uintptr_t)m | (uintptr_t)pa) & 63;
    free(a);
    free(m);
    free(pa);

    char *u = malloc(50);
    size_t us = malloc_usable_size(u);
    memset(u, 0, us);               /* usable size is all the program's */
    free(u);

    char *h = malloc(8u << 20);     /* huge */
    h[0] = h[(8u << 20) - 1] = 1;
    sum += (unsigned long)h[0] - 1;
    free(h);

    printf("mismatches %lu\n", sum);
    return sum != 0;
}
