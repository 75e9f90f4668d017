/*
 * Address-space limits (RLIMIT_AS, ulimit -v), in a program linked with
 * -lbuddymalloc. The program runs itself again under a limit, so that
 * buddymalloc starts (at the first malloc) with the limit in force, as in a
 * program started under ulimit -v:
 *
 *   threads  (200 MiB, glibc's tst-malloc-thread-fail) threads with small
 *            stacks are created, then each allocates until malloc fails:
 *            every failure is NULL with ENOMEM, nothing crashes; after the
 *            frees, allocation and pthread_create work again;
 *   work     (300 MiB) mixed sizes, runs of pages, huge blocks, realloc,
 *            calloc, aligned blocks, allocation to failure and back, the
 *            heap checker;
 *   foreign  (300 MiB) a mapping that is not ours placed in the unmapped
 *            part of a region's address range, right where the region
 *            would grow: free and malloc_usable_size of it are reported
 *            as not ours (abort with the message, not a crash), and the
 *            heap goes on growing elsewhere.
 *
 * Plain C: prints "N passed, M failed".
 */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bm_config.h"
#include "buddymalloc.h"
#include "plain_test.h"

#define MiB (1024UL * 1024)
#define SLOT (1UL << BM_REGION_SHIFT)

/* ---- threads: allocate until failure ---------------------------------- */

#define THREADS 8
#define STACK (128 * 1024)

static pthread_barrier_t go, exhausted, freed;
static const size_t sizes[THREADS] = { 16, 200, 1000, 3000, 40000, 300000, 1 * MiB, 9 * MiB };

struct result {
    unsigned long n;        /* blocks before the failure */
    int bad_errno;          /* a failure without ENOMEM */
    int bad_after;          /* allocation failed after the frees */
};

static void *hog(void *arg)
{
    unsigned i = (unsigned)(uintptr_t)arg;
    size_t size = sizes[i];
    struct result *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    /* the first block before the race (which the huge blocks may win
     * before the other threads start), then all at once */
    void *chain = malloc(size);     /* the blocks, linked through themselves */
    if (chain) {
        *(void **)chain = NULL;
        r->n++;
    }
    pthread_barrier_wait(&go);
    for (;;) {
        errno = 0;
        void **b = malloc(size);
        if (!b) {
            r->bad_errno = errno != ENOMEM;
            break;
        }
        ((char *)b)[size - 1] = 1;
        *b = chain;
        chain = b;
        r->n++;
    }
    pthread_barrier_wait(&exhausted);
    while (chain) {
        void *next = *(void **)chain;
        free(chain);
        chain = next;
    }
    pthread_barrier_wait(&freed);
    /* everyone has freed: the same size works again */
    for (int k = 0; k < 16; k++) {
        void *b = malloc(size);
        if (!b) {
            r->bad_after++;
            continue;
        }
        memset(b, 0x5a, size < 4096 ? size : 4096);
        free(b);
    }
    return r;
}

static void *small_worker(void *arg)
{
    (void)arg;
    void *p[100];
    for (int i = 0; i < 100; i++)
        p[i] = malloc(32 + (size_t)i * 100);
    long bad = 0;
    for (int i = 0; i < 100; i++) {
        bad += !p[i];
        free(p[i]);
    }
    return (void *)bad;
}

static void run_threads(void)
{
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, STACK);
    pthread_barrier_init(&go, NULL, THREADS);
    pthread_barrier_init(&exhausted, NULL, THREADS + 1);
    pthread_barrier_init(&freed, NULL, THREADS);
    pthread_t t[THREADS];
    int created = 0;
    for (int i = 0; i < THREADS; i++) {
        int e = pthread_create(&t[i], &attr, hog, (void *)(uintptr_t)i);
        CHECK(e == 0, "pthread_create %d under the limit: %s", i, strerror(e));
        if (e)
            break;
        created++;
    }
    if (created < THREADS) {
        /* the barriers cannot be met: nothing more to learn here */
        printf("threads: only %d of %d threads created\n", created, THREADS);
        return;
    }
    pthread_barrier_wait(&exhausted);
    /* Every thread has failed once: the heap is at the limit, and still
     * consistent. */
    CHECK(bm_check(2) == 0, "heap checker at the limit");
    for (int i = 0; i < THREADS; i++) {
        struct result *r = NULL;
        pthread_join(t[i], (void **)&r);
        CHECK(r != NULL, "thread %d: no result", i);
        if (!r)
            continue;
        printf("threads: %7zu-byte blocks: %lu before ENOMEM\n", sizes[i], r->n);
        CHECK(r->n > 0, "thread %d allocated nothing", i);
        CHECK(!r->bad_errno, "thread %d: malloc failed without ENOMEM", i);
        CHECK(!r->bad_after, "thread %d: %d allocations failed after the frees", i,
              r->bad_after);
        free(r);
    }
    CHECK(bm_check(2) == 0, "heap checker after the frees");
    /* and threads can be created again, and allocate */
    for (int i = 0; i < THREADS; i++) {
        int e = pthread_create(&t[i], &attr, small_worker, NULL);
        CHECK(e == 0, "pthread_create %d after the frees: %s", i, strerror(e));
        if (e)
            t[i] = 0;
    }
    for (int i = 0; i < THREADS; i++) {
        void *bad = NULL;
        if (t[i])
            pthread_join(t[i], &bad);
        CHECK(!bad, "thread %d: allocation failed after the frees", i);
    }
    pthread_attr_destroy(&attr);
}

/* ---- work: a mix of everything ------------------------------------------ */

static void fill(unsigned char *p, size_t n, unsigned v)
{
    memset(p, (int)v, n < 256 ? n : 256);
    p[n - 1] = (unsigned char)v;
    p[n / 2] = (unsigned char)v;
}

static int intact(const unsigned char *p, size_t n, unsigned v)
{
    for (size_t i = 0; i < (n < 256 ? n : 256); i++)
        if (p[i] != (unsigned char)v)
            return 0;
    return p[n - 1] == (unsigned char)v && p[n / 2] == (unsigned char)v;
}

#define WSLOTS 2048

static void run_work(void)
{
    static unsigned char *blk[WSLOTS];
    static size_t len[WSLOTS];
    unsigned seed = 12345;
    int corrupt = 0, failed_alloc = 0, live_huge = 0;
    for (long i = 0; i < 60000; i++) {
        unsigned k = (unsigned)rand_r(&seed) % WSLOTS;
        if (blk[k]) {
            corrupt += !intact(blk[k], len[k], k);
            live_huge -= len[k] > 4 * MiB;
            free(blk[k]);
        }
        unsigned r = (unsigned)rand_r(&seed);
        size_t n;
        if (r % 100 < 85)
            n = 1 + r % 2000;
        else if (r % 100 < 99 || live_huge >= 3)
            n = 40000 + r % 160000;                 /* a run of pages */
        else
            n = 5 * MiB + r % (8 * MiB);            /* huge: its own mapping */
        blk[k] = malloc(n);
        len[k] = n;
        if (!blk[k]) {
            failed_alloc++;
            continue;
        }
        live_huge += n > 4 * MiB;
        fill(blk[k], n, k);
        if (i == 30000)
            CHECK(bm_check(2) == 0, "heap checker in the middle of the work");
    }
    CHECK(!corrupt, "%d blocks changed while live", corrupt);
    CHECK(!failed_alloc, "%d allocations failed during the work", failed_alloc);

    /* a buffer growing by realloc, from a slab block to a huge mapping */
    unsigned char *g = NULL;
    size_t have = 0;
    int grow_bad = 0;
    for (size_t n = 10; n <= 24 * MiB; n = n * 3 / 2 + 1) {
        unsigned char *q = realloc(g, n);
        if (!q) {
            grow_bad++;
            break;
        }
        for (size_t j = 0; j < have; j += 4093)
            grow_bad += q[j] != (unsigned char)(j * 7);
        for (size_t j = have; j < n; j++)
            q[j] = (unsigned char)(j * 7);
        g = q;
        have = n;
    }
    CHECK(!grow_bad, "realloc growth lost or changed data");
    free(g);

    unsigned char *z = calloc(3, MiB);
    CHECK(z != NULL, "calloc of 3 MiB");
    int nonzero = 0;
    for (size_t j = 0; z && j < 3 * MiB; j += 512)
        nonzero += z[j] != 0;
    CHECK(!nonzero, "calloc memory not zero");
    free(z);

    void *a = NULL;
    CHECK(posix_memalign(&a, 64 * 1024, 100000) == 0 && ((uintptr_t)a & 0xffff) == 0,
          "posix_memalign 64 KiB");
    free(a);

    unsigned char *huge = malloc(64 * MiB);
    CHECK(huge != NULL, "a 64 MiB block");
    if (huge) {
        huge[0] = 1;
        huge[64 * MiB - 1] = 2;
        CHECK(malloc_usable_size(huge) >= 64 * MiB, "usable size of the 64 MiB block");
        free(huge);
    }

    /* small blocks, then runs of 1 MiB, until failure; everything back */
    static const size_t hog_sizes[] = { 64, MiB };
    for (int h = 0; h < 2; h++) {
        size_t size = hog_sizes[h];
        void *chain = NULL;
        unsigned long n = 0;
        int bad_errno = 0;
        for (;;) {
            errno = 0;
            void **b = malloc(size);
            if (!b) {
                bad_errno = errno != ENOMEM;
                break;
            }
            *b = chain;
            chain = b;
            n++;
        }
        printf("work: %lu blocks of %zu bytes (%lu MiB) before ENOMEM\n", n, size,
               n * size / MiB);
        CHECK(n * size > 100 * MiB, "only %lu MiB in %zu-byte blocks under the limit",
              n * size / MiB, size);
        CHECK(!bad_errno, "the failure was not ENOMEM");
        CHECK(bm_check(2) == 0, "heap checker at the limit");
        while (chain) {
            void *next = *(void **)chain;
            free(chain);
            chain = next;
        }
        void *again = malloc(size);
        CHECK(again != NULL, "a block after the frees");
        free(again);
    }
    /* every mmap failing (a region that cannot grow, none to add): NULL
     * with ENOMEM, a sound heap, and memory again once mmap works */
    bm_fault_inject("mmap", 1, 1000000);
    void *chain = NULL;
    int bad_errno = 0;
    for (int i = 0; i < 1000; i++) {
        errno = 0;
        void **b = malloc(MiB);
        if (!b) {
            bad_errno = errno != ENOMEM;
            break;
        }
        *b = chain;
        chain = b;
    }
    CHECK(!bad_errno, "a failed mmap gave another errno than ENOMEM");
    CHECK(bm_check(2) == 0, "heap checker with mmap failing");
    bm_fault_inject("mmap", 0, 0);
    while (chain) {
        void *next = *(void **)chain;
        free(chain);
        chain = next;
    }
    void *more = malloc(MiB);
    CHECK(more != NULL, "a block once mmap works again");
    free(more);
    for (unsigned k = 0; k < WSLOTS; k++) {
        if (blk[k])
            corrupt += !intact(blk[k], len[k], k);
        free(blk[k]);
    }
    CHECK(!corrupt, "blocks changed by the allocation to failure");
    CHECK(bm_check(2) == 0, "heap checker at the end");
    struct bm_zone_stats s;
    if (bm_zone_stats(0, &s) == 0)
        printf("work: zone 0 has %lu region(s), %lu MiB managed\n", s.regions,
               (s.managed_pages * 4096) / MiB);
}

/* ---- foreign: a mapping in a region's unmapped range -------------------- */

/* Run fn(p) in a child; it must die of SIGABRT with `want` on stderr. */
static void expect_report(const char *what, void (*fn)(void *), void *p, const char *want)
{
    int fds[2];
    if (pipe(fds)) {
        CHECK(0, "pipe");
        return;
    }
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        fn(p);
        _exit(0);
    }
    close(fds[1]);
    char buf[512];
    size_t got = 0;
    ssize_t n;
    while (got < sizeof buf - 1 && (n = read(fds[0], buf + got, sizeof buf - 1 - got)) > 0)
        got += (size_t)n;
    buf[got] = '\0';
    close(fds[0]);
    int status = 0;
    waitpid(c, &status, 0);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
          "%s of a foreign pointer in a region's range: status %#x (want SIGABRT)", what, status);
    CHECK(strstr(buf, want) != NULL, "%s: report \"%s\"", what, buf);
}

static void do_free(void *p) { free(p); }
static void do_usable(void *p) { (void)malloc_usable_size(p); }
static void do_realloc(void *p)
{
    void *q = realloc(p, 100);
    (void)q;
}

static void run_foreign(void)
{
    void *probe = malloc(100);
    uintptr_t base = (uintptr_t)probe & ~(SLOT - 1);
    /* The first page above what the region has mapped: the region is a
     * prefix of its slot, mapped in max-order steps. */
    void *f = MAP_FAILED;
    for (uintptr_t a = base + 4 * MiB; a < base + SLOT; a += 4 * MiB) {
        f = mmap((void *)a, 4096, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        if (f == (void *)a)
            break;
        if (f != MAP_FAILED)
            munmap(f, 4096);
        f = MAP_FAILED;
    }
    CHECK(f != MAP_FAILED, "no room in the region's slot: the region maps all of it");
    if (f == MAP_FAILED) {
        free(probe);
        return;
    }
    printf("foreign: a page at %lu MiB into the region's slot\n",
           (unsigned long)(((uintptr_t)f - base) / MiB));
    strcpy(f, "not the allocator's");
    expect_report("free", do_free, f, "not allocated by buddymalloc");
    expect_report("malloc_usable_size", do_usable, f, "not allocated by buddymalloc");
    expect_report("realloc", do_realloc, f, "not allocated by buddymalloc");
    /* The region cannot grow over it: the heap grows elsewhere. */
    void *chain = NULL;
    int bad = 0;
    for (int i = 0; i < 100; i++) {
        void **b = malloc(MiB);
        if (!b) {
            bad++;
            break;
        }
        memset(b, 1, MiB);
        *b = chain;
        chain = b;
    }
    CHECK(!bad, "100 MiB of runs with the region blocked by a foreign mapping");
    char *s = malloc(50);
    CHECK(s != NULL, "small block");
    free(s);
    CHECK(bm_check(2) == 0, "heap checker with the foreign mapping");
    while (chain) {
        void *next = *(void **)chain;
        free(chain);
        chain = next;
    }
    CHECK(strcmp(f, "not the allocator's") == 0, "the foreign page changed");
    munmap(f, 4096);
    free(probe);
}

/* ---- driver ------------------------------------------------------------- */

static int child(const char *part)
{
    if (!strcmp(part, "threads"))
        run_threads();
    else if (!strcmp(part, "work"))
        run_work();
    else if (!strcmp(part, "foreign"))
        run_foreign();
    printf("%s: %d passed, %d failed\n", part, passed, failed);
    return failed ? 1 : 0;
}

/* Run this program's part `part` under a limit of mib MiB. */
static void run_part(const char *part, unsigned long mib)
{
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        struct rlimit rl;
        getrlimit(RLIMIT_AS, &rl);
        rl.rlim_cur = mib * MiB;
        if (setrlimit(RLIMIT_AS, &rl) != 0) {
            perror("setrlimit");
            _exit(2);
        }
        execl("/proc/self/exe", "as_limit_program", "--child", part, (char *)NULL);
        perror("exec");
        _exit(2);
    }
    int status = 0;
    waitpid(c, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "part %s under %lu MiB: %s %d", part, mib,
          WIFSIGNALED(status) ? "killed by signal" : "exit status",
          WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--child"))
        return child(argv[2]);
    run_part("threads", 200);
    run_part("work", 300);
    run_part("foreign", 300);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
