/*
 * Deliberate heap errors for memcheck, in a program linked with a
 * buddymalloc built with -Dvalgrind=enabled: run.sh checks that valgrind
 * reports each one, with the block's size, and nothing else.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *volatile sink;

__attribute__((noinline)) static void leak_small(void) { sink = malloc(100); sink = NULL; }
__attribute__((noinline)) static void leak_run(void) { sink = malloc(200000); sink = NULL; }

__attribute__((noinline)) static int use_after_free(void)
{
    char *q = malloc(64);
    memset(q, 1, 64);
    free(q);
    return q[3];                    /* invalid read, 3 bytes inside a freed 64 */
}

__attribute__((noinline)) static void overrun(void)
{
    volatile char *r = malloc(24);  /* a 32-byte slot: the overrun is in its slack */
    r[24] = 1;                      /* invalid write, 0 bytes after a 24 */
    free((void *)r);
}

__attribute__((noinline)) static int uninitialised(void)
{
    char *s = malloc(32);
    int bad = 0;
    if (s[5] == 7)                  /* depends on an uninitialised value */
        bad = puts("seven");
    free(s);
    return bad > 0;
}

int main(void)
{
    char *z = calloc(10, 10);       /* zeroed: defined, no report */
    int v = z[99];
    free(z);
    leak_small();
    leak_run();
    v += use_after_free();
    overrun();
    if (uninitialised())
        v++;
    printf("done %d\n", v != 0);
    return 0;
}
