/*
 * page_bench.c - throughput of the page allocator.
 *
 * For orders 0..3, one and two threads, two access patterns:
 *
 *   ws    a working set of WS_SLOTS blocks per thread; each step frees the
 *         block of a pseudo-random slot (xorshift64*, fixed seed) and
 *         allocates a new block into that slot;
 *   pair  allocate a block and free it straight away.
 *
 * buddymalloc is measured through the per-CPU pagesets (default gfp) and
 * around them (BM_GFP_NOPCP: allocation and free go to the zone under its
 * lock, the block remembers that it bypasses the pagesets); next to it, the same pattern on glibc's
 * aligned_alloc(4096 << order, 4096 << order) / free and, when the library is
 * installed, on jemalloc's, looked up with dlopen(RTLD_LOCAL) so that it does
 * not replace malloc for the rest of the process. One byte of every block is
 * written, so the memory is really used.
 *
 * The machine this runs on is shared and noisy: for every table row the
 * allocators are run in turn (bm pagesets, bm zone, jemalloc, glibc), that
 * round is repeated REPS times and the median time of each is reported.
 * Nothing here asserts anything about the times.
 *
 * Usage: page-bench [--quick] [--iters N]
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <gnu/libc-version.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buddymalloc.h"

#define WS_SLOTS    64          /* blocks held per thread in the ws pattern  */
#define REPS        3           /* rounds per row; the median is reported    */
#define MAX_THREADS 2
#define NR_ORDERS   4           /* orders 0..3: the pageset orders           */

#define ALWAYS_INLINE inline __attribute__((always_inline))
#define NOINLINE      __attribute__((noinline))

/* ---- the allocators ------------------------------------------------------ */

enum kind { K_BM_PCP, K_BM_NOPCP, K_JEMALLOC, K_GLIBC, NR_KINDS };
enum pattern { P_WS, P_PAIR, NR_PATTERNS };

static const char *const pattern_name[NR_PATTERNS] = { "ws", "pair" };

static void *(*je_aligned_alloc)(size_t align, size_t size);
static void (*je_free)(void *p);
static char je_version[64];
static char je_error[256];

#ifndef JEMALLOC_PATH
#define JEMALLOC_PATH "libjemalloc.so.2"     /* by soname: the loader's search path */
#endif

/* Debian's jemalloc uses initial-exec TLS (about 2.6 KiB): dlopen can only
 * place it in the static TLS surplus glibc reserves at start-up, 512 bytes
 * by default, and fails with "cannot allocate memory in static TLS block".
 * The surplus is a tunable read at exec time, so when that happens the
 * benchmark executes itself again once with a larger one. */
#define TLS_TUNABLE   "glibc.rtld.optional_static_tls=16384"
#define REEXEC_MARKER "PAGE_BENCH_STATIC_TLS_REEXEC"

/* Look jemalloc up without linking it; RTLD_LOCAL keeps its malloc from
 * interposing on anyone else's. Returns 1 if usable. */
static int jemalloc_open(void)
{
    void *h = dlopen(JEMALLOC_PATH, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        snprintf(je_error, sizeof je_error, "%s", e ? e : "dlopen failed");
        return 0;
    }
    je_aligned_alloc = (void *(*)(size_t, size_t))dlsym(h, "aligned_alloc");
    je_free = (void (*)(void *))dlsym(h, "free");
    if (!je_aligned_alloc || !je_free) {
        snprintf(je_error, sizeof je_error, "%s has no aligned_alloc/free", JEMALLOC_PATH);
        je_aligned_alloc = NULL;
        je_free = NULL;
        return 0;
    }
    int (*mallctl)(const char *, void *, size_t *, void *, size_t) =
        (int (*)(const char *, void *, size_t *, void *, size_t))dlsym(h, "mallctl");
    const char *v = NULL;
    size_t len = sizeof v;
    if (mallctl && mallctl("version", &v, &len, NULL, 0) == 0 && v)
        snprintf(je_version, sizeof je_version, "%s", v);
    else
        snprintf(je_version, sizeof je_version, "unknown version");
    return 1;
}

static void reexec_with_static_tls(char **argv)
{
    if (!strstr(je_error, "static TLS") || getenv(REEXEC_MARKER))
        return;
    const char *old = getenv("GLIBC_TUNABLES");
    char tunables[1024];
    if (old && *old)
        snprintf(tunables, sizeof tunables, "%s:%s", old, TLS_TUNABLE);
    else
        snprintf(tunables, sizeof tunables, "%s", TLS_TUNABLE);
    if (setenv("GLIBC_TUNABLES", tunables, 1) || setenv(REEXEC_MARKER, "1", 1))
        return;
    fflush(NULL);
    execv("/proc/self/exe", argv);
    /* exec failed: go on without jemalloc */
    unsetenv(REEXEC_MARKER);
}

static ALWAYS_INLINE void *do_alloc(enum kind k, unsigned order)
{
    size_t bytes = (size_t)BM_PAGE_BYTES << order;
    switch (k) {
    case K_BM_PCP:   return bm_alloc_pages(order, BM_GFP_AUTO);
    case K_BM_NOPCP: return bm_alloc_pages(order, BM_GFP_AUTO | BM_GFP_NOPCP);
    case K_JEMALLOC: return je_aligned_alloc(bytes, bytes);
    default:         return aligned_alloc(bytes, bytes);
    }
}

static ALWAYS_INLINE void do_free(enum kind k, void *p, unsigned order)
{
    switch (k) {
    case K_BM_PCP:
    case K_BM_NOPCP: bm_free_pages(p, order); break;
    case K_JEMALLOC: je_free(p); break;
    default:         free(p); break;
    }
}

/* Write one byte of the block, and let the compiler see the pointer escape,
 * so an allocation followed by a free cannot be folded away. */
static ALWAYS_INLINE void touch(void *p, uint64_t v)
{
    *(volatile unsigned char *)p = (unsigned char)v;
    __asm__ volatile("" : : "r"(p) : "memory");
}

/* xorshift64* (Vigna): deterministic, cheap; the top bits pick a slot. */
static ALWAYS_INLINE uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static NOINLINE void die_nomem(const char *who, unsigned order)
{
    fprintf(stderr, "page-bench: %s: allocation of order %u failed: %s\n", who, order,
            strerror(errno));
    exit(1);
}

static const char *const kind_name[NR_KINDS] = {
    "buddymalloc (pagesets)", "buddymalloc (nopcp)", "jemalloc", "glibc",
};

/* ---- the loops, one copy per allocator so that its calls are direct ---------- */

static ALWAYS_INLINE void ws_fill(enum kind k, unsigned order, void **ws)
{
    for (int i = 0; i < WS_SLOTS; i++) {
        ws[i] = do_alloc(k, order);
        if (!ws[i])
            die_nomem(kind_name[k], order);
        touch(ws[i], (uint64_t)i);
    }
}

static ALWAYS_INLINE void ws_drain(enum kind k, unsigned order, void **ws)
{
    for (int i = 0; i < WS_SLOTS; i++)
        do_free(k, ws[i], order);
}

static ALWAYS_INLINE void ws_loop(enum kind k, unsigned order, void **ws, uint64_t *seed,
                                  uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        uint64_t r = xorshift(seed);
        unsigned slot = (unsigned)(r >> 58);            /* 0..63 */
        do_free(k, ws[slot], order);
        void *p = do_alloc(k, order);
        if (__builtin_expect(!p, 0))
            die_nomem(kind_name[k], order);
        touch(p, r);
        ws[slot] = p;
    }
}

static ALWAYS_INLINE void pair_loop(enum kind k, unsigned order, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        void *p = do_alloc(k, order);
        if (__builtin_expect(!p, 0))
            die_nomem(kind_name[k], order);
        touch(p, i);
        do_free(k, p, order);
    }
}

struct loops {
    void (*fill)(unsigned order, void **ws);
    void (*drain)(unsigned order, void **ws);
    void (*ws)(unsigned order, void **ws, uint64_t *seed, uint64_t n);
    void (*pair)(unsigned order, uint64_t n);
};

#define DEFINE_LOOPS(K, name)                                                          \
    static NOINLINE void fill_##name(unsigned o, void **ws) { ws_fill(K, o, ws); }     \
    static NOINLINE void drain_##name(unsigned o, void **ws) { ws_drain(K, o, ws); }   \
    static NOINLINE void ws_##name(unsigned o, void **ws, uint64_t *s, uint64_t n)     \
    {                                                                                  \
        ws_loop(K, o, ws, s, n);                                                       \
    }                                                                                  \
    static NOINLINE void pair_##name(unsigned o, uint64_t n) { pair_loop(K, o, n); }

DEFINE_LOOPS(K_BM_PCP, bm_pcp)
DEFINE_LOOPS(K_BM_NOPCP, bm_nopcp)
DEFINE_LOOPS(K_JEMALLOC, jemalloc)
DEFINE_LOOPS(K_GLIBC, glibc)

static const struct loops loops[NR_KINDS] = {
    [K_BM_PCP]   = { fill_bm_pcp, drain_bm_pcp, ws_bm_pcp, pair_bm_pcp },
    [K_BM_NOPCP] = { fill_bm_nopcp, drain_bm_nopcp, ws_bm_nopcp, pair_bm_nopcp },
    [K_JEMALLOC] = { fill_jemalloc, drain_jemalloc, ws_jemalloc, pair_jemalloc },
    [K_GLIBC]    = { fill_glibc, drain_glibc, ws_glibc, pair_glibc },
};

/* ---- one timed run ---------------------------------------------------------- */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

struct worker {
    enum kind kind;
    enum pattern pattern;
    unsigned order;
    unsigned id;
    uint64_t iters;
    pthread_barrier_t *start;
    uint64_t t0, t1;
} __attribute__((aligned(64)));

/* Set-up (filling the working set) is done before the barrier and tear-down
 * after the clock stops: only the steady-state loop is timed. */
static void *worker_run(void *arg)
{
    struct worker *w = arg;
    const struct loops *l = &loops[w->kind];
    void *ws[WS_SLOTS];
    uint64_t seed = 0x9E3779B97F4A7C15ULL ^ ((uint64_t)(w->id + 1) * 0xD1B54A32D192ED03ULL);

    if (w->pattern == P_WS)
        l->fill(w->order, ws);
    if (w->start)
        pthread_barrier_wait(w->start);
    w->t0 = now_ns();
    if (w->pattern == P_WS)
        l->ws(w->order, ws, &seed, w->iters);
    else
        l->pair(w->order, w->iters);
    w->t1 = now_ns();
    if (w->pattern == P_WS)
        l->drain(w->order, ws);
    return NULL;
}

/* Wall-clock nanoseconds for `threads` threads each doing `iters` pairs:
 * from the first thread's start to the last one's end. One thread runs on
 * the main thread (glibc's main arena, as in most programs). */
static uint64_t timed_run(enum kind k, enum pattern pat, unsigned order, int threads,
                          uint64_t iters)
{
    struct worker w[MAX_THREADS];
    pthread_barrier_t start;
    pthread_t tid[MAX_THREADS];

    for (int i = 0; i < threads; i++)
        w[i] = (struct worker){ .kind = k, .pattern = pat, .order = order, .id = (unsigned)i,
                                .iters = iters, .start = threads > 1 ? &start : NULL };
    if (threads == 1) {
        worker_run(&w[0]);
        return w[0].t1 - w[0].t0;
    }
    pthread_barrier_init(&start, NULL, (unsigned)threads);
    for (int i = 0; i < threads; i++) {
        int e = pthread_create(&tid[i], NULL, worker_run, &w[i]);
        if (e) {
            fprintf(stderr, "page-bench: pthread_create: %s\n", strerror(e));
            exit(1);
        }
    }
    for (int i = 0; i < threads; i++)
        pthread_join(tid[i], NULL);
    pthread_barrier_destroy(&start);
    uint64_t t0 = w[0].t0, t1 = w[0].t1;
    for (int i = 1; i < threads; i++) {
        if (w[i].t0 < t0)
            t0 = w[i].t0;
        if (w[i].t1 > t1)
            t1 = w[i].t1;
    }
    return t1 - t0;
}

/* Pairs per thread for one run of about target_ns: double a short run until
 * it lasts 5 ms (this is also the warm-up), then scale. */
static uint64_t calibrate(enum kind k, enum pattern pat, unsigned order, int threads,
                          uint64_t target_ns)
{
    uint64_t n = 256, t;
    for (;;) {
        t = timed_run(k, pat, order, threads, n);
        if (t >= 5000000 || n >= (1ULL << 40))
            break;
        n *= 2;
    }
    if (t == 0)
        t = 1;
    double want = (double)n * (double)target_ns / (double)t;
    return want < 1000 ? 1000 : (uint64_t)want;
}

/* ---- the table ---------------------------------------------------------------- */

struct result {
    double ns;          /* ns per pair, per thread (median run)        */
    double mpairs;      /* million pairs per second, all threads        */
    double spread;      /* (slowest - fastest) / median, over the runs  */
};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int have_jemalloc;

static void measure_row(enum pattern pat, unsigned order, int threads, uint64_t fixed_iters,
                        uint64_t run_ns, struct result out[NR_KINDS])
{
    uint64_t iters[NR_KINDS];
    double ns[NR_KINDS][REPS];

    for (int k = 0; k < NR_KINDS; k++) {
        if (k == K_JEMALLOC && !have_jemalloc)
            continue;
        if (fixed_iters) {
            iters[k] = fixed_iters;
            timed_run((enum kind)k, pat, order, threads,
                      fixed_iters < 10000 ? fixed_iters : 10000);       /* warm-up */
        } else {
            iters[k] = calibrate((enum kind)k, pat, order, threads, run_ns);
        }
    }
    for (int r = 0; r < REPS; r++) {
        for (int k = 0; k < NR_KINDS; k++) {
            if (k == K_JEMALLOC && !have_jemalloc)
                continue;
            uint64_t t = timed_run((enum kind)k, pat, order, threads, iters[k]);
            ns[k][r] = (double)t / (double)iters[k];
        }
    }
    for (int k = 0; k < NR_KINDS; k++) {
        if (k == K_JEMALLOC && !have_jemalloc) {
            out[k] = (struct result){ 0, 0, 0 };
            continue;
        }
        qsort(ns[k], REPS, sizeof ns[k][0], cmp_double);
        double med = ns[k][REPS / 2];
        out[k].ns = med;
        out[k].mpairs = med > 0 ? 1e3 * threads / med : 0;
        out[k].spread = med > 0 ? (ns[k][REPS - 1] - ns[k][0]) / med : 0;
    }
}

static void print_header(void)
{
    printf("| pattern | order | threads | path | bm Mpairs/s | bm ns/pair | bm spread |");
    if (have_jemalloc)
        printf(" jemalloc ns/pair |");
    printf(" glibc ns/pair |");
    if (have_jemalloc)
        printf(" bm/jemalloc |");
    printf(" bm/glibc |\n");
    printf("|---|--:|--:|---|--:|--:|--:|");
    if (have_jemalloc)
        printf("--:|");
    printf("--:|");
    if (have_jemalloc)
        printf("--:|");
    printf("--:|\n");
}

static void print_row(enum pattern pat, unsigned order, int threads, enum kind k,
                      const struct result res[NR_KINDS])
{
    const struct result *bm = &res[k];
    printf("| %s | %u | %d | %s | %.2f | %.1f | %.0f%% |", pattern_name[pat], order, threads,
           k == K_BM_PCP ? "pagesets" : "nopcp", bm->mpairs, bm->ns, 100.0 * bm->spread);
    if (have_jemalloc)
        printf(" %.1f |", res[K_JEMALLOC].ns);
    printf(" %.1f |", res[K_GLIBC].ns);
    if (have_jemalloc)
        printf(" %.2f |", bm->ns / res[K_JEMALLOC].ns);
    printf(" %.2f |\n", bm->ns / res[K_GLIBC].ns);
}

static void print_counters(void)
{
    struct bm_zone_stats s;
    for (int n = 0; n < bm_nr_zones(); n++) {
        if (bm_zone_stats(n, &s) != 0)
            continue;
        printf("- buddymalloc zone %d: pcp alloc hits %llu, refills %llu, free hits %llu, "
               "drains %llu, lock misses %llu; enomem %llu; after the run %lu of %lu pages "
               "free (%lu on pagesets), %lu madvise calls\n",
               s.node, (unsigned long long)s.pcp_alloc_hit, (unsigned long long)s.pcp_refill,
               (unsigned long long)s.pcp_free_hit, (unsigned long long)s.pcp_drain,
               (unsigned long long)s.pcp_lock_miss, (unsigned long long)s.enomem,
               s.free_pages + s.pcp_pages, s.managed_pages, s.pcp_pages,
               (unsigned long)s.release_calls);
    }
    /* Not a timing assertion: a consistency check of the heap after the run,
     * so that a benchmark of a broken allocator says so. */
    long bad = bm_check(2);
    printf("- bm_check after the run: %ld violation%s%s\n", bad, bad == 1 ? "" : "s",
           bad ? " (described on stderr)" : "");
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: page-bench [--quick] [--iters N]\n"
            "  --quick    about 0.1 s per table cell (default: about 0.5 s)\n"
            "  --iters N  alloc+free pairs per thread in every timed run (no calibration)\n");
}

int main(int argc, char **argv)
{
    uint64_t cell_ns = 500000000;       /* per allocator and row, all REPS runs */
    uint64_t fixed_iters = 0;
    int quick = 0;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) {
            quick = 1;
            cell_ns = 100000000;
        } else if (!strcmp(argv[i], "--iters") && i + 1 < argc) {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(argv[++i], &end, 10);
            if (errno || *end || v == 0 || argv[i][0] == '-') {
                fprintf(stderr, "page-bench: bad --iters value '%s'\n", argv[i]);
                return 2;
            }
            fixed_iters = v;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "page-bench: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }

    have_jemalloc = jemalloc_open();
    if (!have_jemalloc) {
        reexec_with_static_tls(argv);
        have_jemalloc = jemalloc_open();     /* unchanged if exec failed */
    }

    /* Bootstrap buddymalloc outside any timed run. */
    bm_free_pages(bm_alloc_pages(0, BM_GFP_AUTO), 0);

    printf("# page-bench: alloc+free pairs, buddymalloc vs jemalloc vs glibc\n\n");
    printf("- mode: %s; ", quick ? "--quick" : "default");
    if (fixed_iters)
        printf("%llu pairs per thread per run", (unsigned long long)fixed_iters);
    else
        printf("about %.2f s per allocator and row (%d runs of %.3f s)", cell_ns / 1e9, REPS,
               cell_ns / 1e9 / REPS);
    printf("; median of %d interleaved runs\n", REPS);
    printf("- CPUs online: %ld; glibc %s; buddymalloc max order %d\n",
           sysconf(_SC_NPROCESSORS_ONLN), gnu_get_libc_version(), bm_max_order());
    if (have_jemalloc)
        printf("- jemalloc %s (dlopen %s%s)\n", je_version, JEMALLOC_PATH,
               getenv(REEXEC_MARKER) ? "; re-executed with GLIBC_TUNABLES=" TLS_TUNABLE
                                       " for its static TLS" : "");
    else
        printf("- jemalloc is missing (%s): its columns are skipped "
               "(Debian package libjemalloc2 provides it)\n", je_error);
    printf("- ws: %d blocks per thread, a random one freed and replaced per pair; "
           "pair: alloc then free at once\n", WS_SLOTS);
    printf("- pagesets: default gfp; nopcp: BM_GFP_NOPCP, allocation from the zone under "
           "its lock, for allocation and free\n");
    printf("- Mpairs/s: all threads together; ns/pair: wall time per pair in one thread; "
           "spread: (max - min) / median of the bm runs\n");
    printf("- bm/jemalloc, bm/glibc: time ratio, lower is better for buddymalloc; "
           "jemalloc and glibc are the same runs in the pagesets and nopcp rows\n\n");
    print_header();
    fflush(stdout);

    static const int thread_counts[] = { 1, 2 };
    for (int p = 0; p < NR_PATTERNS; p++) {
        for (unsigned t = 0; t < sizeof thread_counts / sizeof thread_counts[0]; t++) {
            for (unsigned order = 0; order < NR_ORDERS; order++) {
                struct result res[NR_KINDS];
                measure_row((enum pattern)p, order, thread_counts[t], fixed_iters,
                            cell_ns / REPS, res);
                print_row((enum pattern)p, order, thread_counts[t], K_BM_PCP, res);
                print_row((enum pattern)p, order, thread_counts[t], K_BM_NOPCP, res);
                fflush(stdout);
            }
        }
    }
    printf("\n");
    print_counters();
    return 0;
}
