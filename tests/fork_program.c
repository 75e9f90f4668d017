/*
 * fork under load, in a program linked with -lbuddymalloc: four threads
 * allocate and free (small, page runs, huge; some freed by another thread)
 * while the main thread forks again and again. Every child must allocate,
 * start threads, fork a grandchild that does the same, pass the heap
 * checker and exit within a time limit (a deadlock fails the test). The
 * heaps of the threads that do not exist in the child must be retired
 * (their memory reused), not lost. Plain C: prints "N passed, M failed".
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "buddymalloc.h"
#include "plain_test.h"

#define THREADS 4
#define SLOTS 256
#ifndef FORKS
#define FORKS 150
#endif

static _Atomic int stop;
static _Atomic(char *) shared[SLOTS];       /* handed between threads */

static size_t pick(unsigned *seed)
{
    unsigned r = (unsigned)rand_r(seed);
    switch (r % 16) {
    case 0: return 40000 + r % 100000;              /* a run of pages */
    case 1: return r % 64 == 0 ? (5u << 20) : 4096; /* now and then huge */
    default: return 1 + r % 2000;                   /* slab classes */
    }
}

static void fill(char *p, size_t n, unsigned char v)
{
    memset(p, v, n < 64 ? n : 64);
    p[n - 1] = (char)v;
}

static int intact(const char *p, size_t n, unsigned char v)
{
    for (size_t i = 0; i < (n < 64 ? n : 64); i++)
        if ((unsigned char)p[i] != v)
            return 0;
    return (unsigned char)p[n - 1] == v;
}

/* Churn: a private working set plus blocks passed through `shared`. */
static void churn(unsigned seed, long rounds, int *bad)
{
    char *mine[64] = { 0 };
    size_t len[64] = { 0 };
    for (long i = 0; rounds < 0 ? !atomic_load(&stop) : i < rounds; i++) {
        unsigned k = (unsigned)rand_r(&seed) % 64;
        if (mine[k]) {
            if (!intact(mine[k], len[k], (unsigned char)k))
                (*bad)++;
            free(mine[k]);
        }
        len[k] = pick(&seed);
        mine[k] = malloc(len[k]);
        if (!mine[k]) {
            (*bad)++;
            continue;
        }
        fill(mine[k], len[k], (unsigned char)k);
        if (i % 4 == 0) {
            char *p = malloc(48);
            if (p)
                strcpy(p, "passed on");
            p = atomic_exchange(&shared[(unsigned)rand_r(&seed) % SLOTS], p);
            if (p && strcmp(p, "passed on"))
                (*bad)++;
            free(p);
        }
    }
    for (int k = 0; k < 64; k++)
        free(mine[k]);
}

static void *worker(void *arg)
{
    int bad = 0;
    churn((unsigned)(uintptr_t)arg, -1, &bad);
    return (void *)(intptr_t)bad;
}

static void *short_worker(void *arg)
{
    int bad = 0;
    churn((unsigned)(uintptr_t)arg, 2000, &bad);
    return (void *)(intptr_t)bad;
}

/* What a child does: exit status 0 when all is well. */
static int child_work(int depth)
{
    struct bm_malloc_stats st;
    bm_malloc_stats(&st);
    int bad = 0;
    /* Only this thread survived the fork: every other heap is retired or
     * counted lost, none still live. */
    if (st.heaps != 1) {
        fprintf(stderr, "child: %lu heaps live after fork, expected 1\n", st.heaps);
        bad++;
    }
    churn(1234u + (unsigned)depth, 3000, &bad);
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        if (pthread_create(&t[i], NULL, short_worker, (void *)(uintptr_t)(77 + i)))
            bad++;
    for (int i = 0; i < 2; i++) {
        void *r;
        pthread_join(t[i], &r);
        bad += (int)(intptr_t)r;
    }
    if (depth == 0) {
        pid_t g = fork();
        if (g == 0)
            _exit(child_work(1));
        int status;
        if (g < 0 || waitpid(g, &status, 0) != g || !WIFEXITED(status) || WEXITSTATUS(status))
            bad++;
    }
    long errors = bm_check(2);
    if (errors)
        bad++;
    return bad ? 1 : 0;
}

/* Wait for pid at most `seconds`; a hung child is a deadlock. */
static int wait_bounded(pid_t pid, int seconds, int *status)
{
    struct timespec d = { 0, 2 * 1000 * 1000 };
    for (long waited = 0; waited < seconds * 500L; waited++) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid)
            return 1;
        nanosleep(&d, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, status, 0);
    return 0;
}

int main(void)
{
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)(i + 1));

    int hung = 0, child_failed = 0;
    for (int f = 0; f < FORKS; f++) {
        struct timespec d = { 0, (long)(f % 7) * 100 * 1000 };
        nanosleep(&d, NULL);        /* fork at varied points of the churn */
        pid_t pid = fork();
        if (pid == 0)
            _exit(child_work(0));
        CHECK(pid > 0, "fork: %s", strerror(errno));
        if (pid < 0)
            break;
        int status = 0;
        if (!wait_bounded(pid, 30, &status)) {
            hung++;
            continue;
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status))
            child_failed++;
    }
    CHECK(hung == 0, "%d of %d children hung (deadlock after fork)", hung, FORKS);
    CHECK(child_failed == 0, "%d of %d children failed", child_failed, FORKS);

    atomic_store(&stop, 1);
    int bad = 0;
    for (int i = 0; i < THREADS; i++) {
        void *r;
        pthread_join(t[i], &r);
        bad += (int)(intptr_t)r;
    }
    CHECK(bad == 0, "%d corrupted or failed allocations in the parent's threads", bad);
    for (int i = 0; i < SLOTS; i++)
        free(atomic_exchange(&shared[i], NULL));
    CHECK(bm_check(2) == 0, "heap check in the parent");

    /* A child of a quiet parent: its threads are gone, their heaps retired. */
    pthread_create(&t[0], NULL, short_worker, (void *)(uintptr_t)9);
    pthread_join(t[0], NULL);
    pid_t pid = fork();
    if (pid == 0) {
        struct bm_malloc_stats st;
        bm_malloc_stats(&st);
        _exit(st.fork_heaps_lost == 0 && st.heaps == 1 ? 0 : 1);
    }
    int status;
    CHECK(wait_bounded(pid, 30, &status) && WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "quiet fork: no heap may be lost");

    struct bm_malloc_stats st;
    bm_malloc_stats(&st);
    CHECK(st.small_allocs > 100000, "buddymalloc served the program (%llu small allocations)",
          (unsigned long long)st.small_allocs);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
