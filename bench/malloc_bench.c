/*
 * malloc_bench.c - malloc/free workloads for whatever allocator serves the
 * process.
 *
 * Only the standard malloc and free are called (built with -fno-builtin-malloc
 * and friends, so GCC keeps every call): buddymalloc or jemalloc when one of
 * them is preloaded with LD_PRELOAD, glibc's malloc otherwise. The runner,
 * bench/malloc_bench_run.py, starts this program once per allocator and
 * round, interleaved, and makes the tables.
 *
 * Workloads (one function each):
 *
 *   sizes     for each size in 16 ... 65536 bytes: a working set of WS_SLOTS
 *             blocks per thread; a step frees the block of a pseudo-random
 *             slot and mallocs a new block of the size into it, writing one
 *             byte. One thread, then two threads at once (started together
 *             on a barrier), each with its own working set.
 *   prodcons  a producer thread mallocs blocks of pseudo-random sizes
 *             16 ... 1024 and hands them through a bounded lock-free ring to
 *             a consumer thread, which frees them: every free is a
 *             cross-thread free. The two threads are pinned to two different
 *             CPUs (when two are allowed), so the frees really come from
 *             another core.
 *   idle      IDLE_THREADS threads, started together on a barrier, each
 *             malloc about 3 MiB of 64 ... 256-byte objects, free them all and
 *             wait on a barrier; the main thread reads VmRSS: what the
 *             allocator keeps resident for threads that are alive but idle
 *             (thread stacks included, the same for every allocator).
 *   idle-hold the same, but every thread holds all its objects until all
 *             threads have theirs (a barrier), so 256 * 3 MiB are live at
 *             once: the peak no longer depends on the scheduling.
 *
 * Every measurement is one line on stdout:
 *
 *   RESULT workload=sizes size=64 threads=1 ns_per_op=12.3 mops=81.2 ops=...
 *
 * key=value fields, space separated; the runner parses them. INFO lines say
 * which library malloc resolves to and how the run was set up. Times are
 * wall-clock (CLOCK_MONOTONIC); every measured part is preceded by an untimed
 * warm-up of the same pattern. The pseudo-random numbers are xorshift64* from
 * fixed seeds, so every allocator sees the same sequence of requests.
 *
 * The blocks also serve as a light check of the allocator: sizes tags each
 * block with a byte and checks it before the free, prodcons writes a sequence
 * number into each block and the consumer checks it. A mismatch (two live
 * blocks overlapping, a block handed out twice) is reported and the program
 * exits with status 3.
 *
 * Usage: malloc-bench [--quick] [--cell-ms N] [--ops N] [--size N] [--info] [WORKLOAD...]
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <gnu/libc-version.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WS_SLOTS       256          /* blocks per thread in sizes; a power of two */
#define SIZES_THREADS  2            /* sizes is run with 1 and with this many     */
#define CLOCK_EVERY    256          /* steps between two looks at the clock       */
#define RING_SLOTS     1024         /* prodcons ring; a power of two              */
#define PC_MIN         16           /* prodcons block sizes, inclusive            */
#define PC_MAX         1024
#define IDLE_THREADS   256
#define IDLE_BYTES     (3u << 20)   /* requested per idle thread                 */
#define IDLE_MIN       64           /* idle object sizes, inclusive               */
#define IDLE_MAX       256
#define IDLE_STACK     (256u << 10) /* their stacks: small, none of it is malloc  */

#define NOINLINE      __attribute__((noinline))
#define ALWAYS_INLINE inline __attribute__((always_inline))
#define unlikely(x)   __builtin_expect(!!(x), 0)

static const size_t sizes_list[] = { 16, 32, 64, 128, 256, 512, 1024, 4096, 16384, 65536 };

/* Length of one measured cell, and of its warm-up (a tenth of it). */
static uint64_t cell_ns = 300000000;
/* --ops N: steps per thread (sizes) or blocks (prodcons) per cell instead of
 * a time; the same amount of work for every allocator. */
static uint64_t fixed_ops;
/* --size N (repeatable): only these sizes in the sizes workload. */
static size_t only_size[16];
static unsigned nr_only_size;

/* ---- small tools ------------------------------------------------------------ */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* xorshift64* : three shifts and a multiply; the high bits are the good ones. */
static ALWAYS_INLINE uint64_t rnd(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static uint64_t seed_of(uint64_t stream)
{
    uint64_t s = 0x6A09E667F3BCC909ULL ^ (stream + 1) * 0x9E3779B97F4A7C15ULL;
    return s ? s : 1;
}

/* A value in lo..hi (inclusive) from the high bits of r. */
static ALWAYS_INLINE size_t in_range(uint64_t r, size_t lo, size_t hi)
{
    return lo + (size_t)(((r >> 32) * (uint64_t)(hi - lo + 1)) >> 32);
}

static NOINLINE void die_nomem(const char *workload, size_t size)
{
    int e = errno;
    fprintf(stderr, "malloc-bench: %s: malloc(%zu) returned NULL: %s\n", workload, size,
            strerror(e));
    exit(1);
}

static NOINLINE void die_corrupt(const char *workload, const char *what, const void *p,
                                 uint64_t expected, uint64_t found)
{
    fprintf(stderr,
            "malloc-bench: %s: %s: block %p holds %#llx where %#llx was written "
            "(blocks overlap or one was handed out twice)\n",
            workload, what, p, (unsigned long long)found, (unsigned long long)expected);
    exit(3);
}

static void die_errno(const char *what, int e)
{
    fprintf(stderr, "malloc-bench: %s: %s\n", what, strerror(e));
    exit(1);
}

static void start_thread(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *),
                         void *arg)
{
    int e = pthread_create(t, attr, fn, arg);
    if (e)
        die_errno("pthread_create", e);
}

/* Spinning on two shared cores: pause for a while, then give the CPU away so
 * the other side of the ring (or another process) can run. */
static ALWAYS_INLINE void backoff(unsigned *spins)
{
    if (++*spins < 64)
        __builtin_ia32_pause();
    else
        sched_yield();
}

/* A "Key:   123 kB" line of /proc/self/status, in KiB; -1 if absent. Read
 * with open/read into a stack buffer: fopen would malloc. */
static long status_kib(const char *key)
{
    char buf[16384];
    size_t len = 0;
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    for (;;) {
        ssize_t n = read(fd, buf + len, sizeof buf - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
        if (len == sizeof buf - 1)
            break;
    }
    close(fd);
    buf[len] = '\0';
    size_t klen = strlen(key);
    for (char *line = buf; *line;) {
        if (!strncmp(line, key, klen) && line[klen] == ':')
            return strtol(line + klen + 1, NULL, 10);
        char *nl = strchr(line, '\n');
        if (!nl)
            break;
        line = nl + 1;
    }
    return -1;
}

/* Which object malloc resolves to in this process. */
static const char *malloc_library(void)
{
    Dl_info di;
    void *m = dlsym(RTLD_DEFAULT, "malloc");
    if (m && dladdr(m, &di) && di.dli_fname && di.dli_fname[0])
        return di.dli_fname;
    return "unknown";
}

/* ---- sizes: a working set of one size ---------------------------------------- */

struct ws_thread {
    size_t size;
    unsigned id;
    pthread_barrier_t *start;
    uint64_t steps;         /* done in the timed part  */
    uint64_t t0, t1;        /* the timed part          */
} __attribute__((aligned(64)));

/* n steps: free the block of a random slot (after checking its tag), malloc
 * a new one, tag it. The tag byte is the one byte written per block. */
static NOINLINE void ws_steps(void **ws, unsigned char *tag, size_t size, uint64_t *seed,
                              uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        uint64_t r = rnd(seed);
        unsigned slot = (unsigned)(r >> 56) & (WS_SLOTS - 1);
        unsigned char *old = ws[slot];
        if (unlikely(*(volatile unsigned char *)old != tag[slot]))
            die_corrupt("sizes", "before free", old, tag[slot], *old);
        free(old);
        unsigned char *p = malloc(size);
        if (unlikely(!p))
            die_nomem("sizes", size);
        unsigned char t = (unsigned char)(r >> 8);
        *(volatile unsigned char *)p = t;
        tag[slot] = t;
        ws[slot] = p;
    }
}

static void *ws_thread_run(void *arg)
{
    struct ws_thread *w = arg;
    void *ws[WS_SLOTS];
    unsigned char tag[WS_SLOTS];
    uint64_t seed = seed_of(w->id);

    for (unsigned i = 0; i < WS_SLOTS; i++) {
        unsigned char *p = malloc(w->size);
        if (!p)
            die_nomem("sizes", w->size);
        tag[i] = (unsigned char)i;
        *(volatile unsigned char *)p = tag[i];
        ws[i] = p;
    }
    /* warm-up: a tenth of the cell (or of the steps), 4 rounds of the set at least */
    uint64_t t = now_ns(), until = t + cell_ns / 10;
    if (fixed_ops) {
        uint64_t n = fixed_ops / 10 > 4 * WS_SLOTS ? fixed_ops / 10 : 4 * WS_SLOTS;
        ws_steps(ws, tag, w->size, &seed, n);
    } else {
        ws_steps(ws, tag, w->size, &seed, 4 * WS_SLOTS);
        while (now_ns() < until)
            ws_steps(ws, tag, w->size, &seed, CLOCK_EVERY);
    }

    if (w->start)
        pthread_barrier_wait(w->start);
    uint64_t t0 = now_ns(), steps = 0;
    if (fixed_ops) {
        ws_steps(ws, tag, w->size, &seed, fixed_ops);
        steps = fixed_ops;
        t = now_ns();
    } else {
        do {
            ws_steps(ws, tag, w->size, &seed, CLOCK_EVERY);
            steps += CLOCK_EVERY;
            t = now_ns();
        } while (t - t0 < cell_ns);
    }
    w->t0 = t0;
    w->t1 = t;
    w->steps = steps;

    for (unsigned i = 0; i < WS_SLOTS; i++) {
        unsigned char *p = ws[i];
        if (*p != tag[i])
            die_corrupt("sizes", "at the end", p, tag[i], *p);
        free(p);
    }
    return NULL;
}

/* One cell. One thread runs on the main thread, as in most programs; more
 * are started together on a barrier. ns_per_op is the wall time of one step
 * in one thread (wall time * threads / all steps); mops counts all threads. */
static void sizes_cell(size_t size, unsigned threads)
{
    struct ws_thread w[SIZES_THREADS];
    pthread_t tid[SIZES_THREADS];
    pthread_barrier_t start;

    for (unsigned i = 0; i < threads; i++)
        w[i] = (struct ws_thread){ .size = size, .id = i, .start = threads > 1 ? &start : NULL };
    if (threads == 1) {
        ws_thread_run(&w[0]);
    } else {
        pthread_barrier_init(&start, NULL, threads);
        for (unsigned i = 0; i < threads; i++)
            start_thread(&tid[i], NULL, ws_thread_run, &w[i]);
        for (unsigned i = 0; i < threads; i++)
            pthread_join(tid[i], NULL);
        pthread_barrier_destroy(&start);
    }
    uint64_t t0 = w[0].t0, t1 = w[0].t1, steps = 0;
    for (unsigned i = 0; i < threads; i++) {
        if (w[i].t0 < t0)
            t0 = w[i].t0;
        if (w[i].t1 > t1)
            t1 = w[i].t1;
        steps += w[i].steps;
    }
    double wall = (double)(t1 - t0);
    printf("RESULT workload=sizes size=%zu threads=%u ns_per_op=%.2f mops=%.3f ops=%llu "
           "seconds=%.3f\n",
           size, threads, wall * threads / (double)steps, (double)steps * 1e3 / wall,
           (unsigned long long)steps, wall / 1e9);
    fflush(stdout);
}

static void workload_sizes(void)
{
    size_t n = nr_only_size ? nr_only_size : sizeof sizes_list / sizeof sizes_list[0];
    const size_t *list = nr_only_size ? only_size : sizes_list;
    for (size_t s = 0; s < n; s++) {
        sizes_cell(list[s], 1);
        sizes_cell(list[s], SIZES_THREADS);
    }
}

/* ---- prodcons: frees in another thread ------------------------------------ */

/* Single producer, single consumer. head and tail only grow; each side keeps
 * its own copy of the other's index and rereads it only when the ring looks
 * full (producer) or empty (consumer). NULL ends a phase. */
struct ring {
    _Alignas(64) _Atomic uint64_t head;     /* written by the producer */
    _Alignas(64) _Atomic uint64_t tail;     /* written by the consumer */
    _Alignas(64) void *slot[RING_SLOTS];
};

struct pc_side {
    struct ring *ring;
    uint64_t cached;        /* last seen index of the other side */
    uint64_t mine;          /* own index                         */
};

static ALWAYS_INLINE void ring_push(struct pc_side *s, void *p)
{
    unsigned spins = 0;
    while (s->mine - s->cached == RING_SLOTS) {
        s->cached = atomic_load_explicit(&s->ring->tail, memory_order_acquire);
        if (s->mine - s->cached == RING_SLOTS)
            backoff(&spins);
    }
    s->ring->slot[s->mine & (RING_SLOTS - 1)] = p;
    s->mine++;
    atomic_store_explicit(&s->ring->head, s->mine, memory_order_release);
}

static ALWAYS_INLINE void *ring_pop(struct pc_side *s)
{
    unsigned spins = 0;
    while (s->cached == s->mine) {
        s->cached = atomic_load_explicit(&s->ring->head, memory_order_acquire);
        if (s->cached == s->mine)
            backoff(&spins);
    }
    void *p = s->ring->slot[s->mine & (RING_SLOTS - 1)];
    s->mine++;
    atomic_store_explicit(&s->ring->tail, s->mine, memory_order_release);
    return p;
}

/* Phases: 0 is the warm-up, 1 is measured. The producer decides how long a
 * phase lasts (a time, or --ops blocks) and ends it with NULL. */
#define PC_PHASES 2

struct pc_shared {
    struct ring ring;
    pthread_barrier_t pinned;       /* both threads and main: placed on their CPUs */
    pthread_barrier_t phase;
    uint64_t blocks[PC_PHASES];     /* made by the producer     */
    uint64_t t0[PC_PHASES];         /* producer, after the barrier */
    uint64_t t1[PC_PHASES];         /* consumer, after the NULL    */
};

static void *producer(void *arg)
{
    struct pc_shared *sh = arg;
    struct pc_side s = { .ring = &sh->ring };
    uint64_t seed = seed_of(1000), seq = 0;

    pthread_barrier_wait(&sh->pinned);
    for (int ph = 0; ph < PC_PHASES; ph++) {
        uint64_t len = ph == 0 ? cell_ns / 10 : cell_ns;
        uint64_t want = fixed_ops ? (ph == 0 ? fixed_ops / 10 + 1 : fixed_ops) : UINT64_MAX;
        uint64_t n = 0;
        pthread_barrier_wait(&sh->phase);
        uint64_t t0 = now_ns();
        sh->t0[ph] = t0;
        for (;;) {
            for (unsigned i = 0; i < CLOCK_EVERY && n < want; i++, n++) {
                size_t size = in_range(rnd(&seed), PC_MIN, PC_MAX);
                uint64_t *p = malloc(size);
                if (unlikely(!p))
                    die_nomem("prodcons", size);
                *(volatile uint64_t *)p = seq++;
                ring_push(&s, p);
            }
            if (n >= want || (!fixed_ops && now_ns() - t0 >= len))
                break;
        }
        ring_push(&s, NULL);
        sh->blocks[ph] = n;
    }
    return NULL;
}

static void *consumer(void *arg)
{
    struct pc_shared *sh = arg;
    struct pc_side s = { .ring = &sh->ring };
    uint64_t expect = 0;

    pthread_barrier_wait(&sh->pinned);
    for (int ph = 0; ph < PC_PHASES; ph++) {
        pthread_barrier_wait(&sh->phase);
        for (;;) {
            uint64_t *p = ring_pop(&s);
            if (!p)
                break;
            uint64_t v = *(volatile uint64_t *)p;
            if (unlikely(v != expect))
                die_corrupt("prodcons", "in the consumer", p, expect, v);
            expect++;
            free(p);
        }
        sh->t1[ph] = now_ns();
    }
    return NULL;
}

/* The producer and the consumer on two different CPUs of the ones allowed:
 * left to the scheduler they sometimes share one, and then a thread fills
 * or empties the whole ring in its time slice, a different (and much
 * cheaper) pattern than frees arriving from another core. Returns 1 if
 * pinned; on a single allowed CPU nothing is pinned. */
static int pin_pair(pthread_t a, pthread_t b)
{
    cpu_set_t allowed;
    int cpus[2], n = 0;
    if (sched_getaffinity(0, sizeof allowed, &allowed))
        return 0;
    for (int c = 0; c < CPU_SETSIZE && n < 2; c++)
        if (CPU_ISSET(c, &allowed))
            cpus[n++] = c;
    if (n < 2)
        return 0;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpus[0], &one);
    if (pthread_setaffinity_np(a, sizeof one, &one))
        return 0;
    CPU_ZERO(&one);
    CPU_SET(cpus[1], &one);
    return pthread_setaffinity_np(b, sizeof one, &one) == 0;
}

static void workload_prodcons(void)
{
    /* static: the ring is not the allocator's to serve */
    static struct pc_shared shared;
    struct pc_shared *sh = &shared;
    memset(sh, 0, sizeof *sh);
    pthread_barrier_init(&sh->phase, NULL, 2);

    /* the threads meet on the phase barrier before any malloc: pinned by then */
    pthread_barrier_init(&sh->pinned, NULL, 3);
    pthread_t p, c;
    start_thread(&c, NULL, consumer, sh);
    start_thread(&p, NULL, producer, sh);
    int pinned = pin_pair(p, c);
    pthread_barrier_wait(&sh->pinned);
    pthread_join(p, NULL);
    pthread_join(c, NULL);
    pthread_barrier_destroy(&sh->phase);
    pthread_barrier_destroy(&sh->pinned);

    int ph = PC_PHASES - 1;
    double wall = (double)(sh->t1[ph] - sh->t0[ph]);
    uint64_t n = sh->blocks[ph];
    printf("RESULT workload=prodcons threads=2 pinned=%d ring=%u min=%u max=%u ns_per_op=%.2f "
           "mops=%.3f ops=%llu seconds=%.3f\n",
           pinned, RING_SLOTS, PC_MIN, PC_MAX, wall / (double)n, (double)n * 1e3 / wall,
           (unsigned long long)n, wall / 1e9);
    fflush(stdout);
}

/* ---- idle: what stays resident for idle threads ----------------------------- */

struct idle_shared {
    pthread_barrier_t start;        /* every thread exists: go                    */
    pthread_barrier_t held;         /* idle-hold: every thread holds its 3 MiB    */
    pthread_barrier_t go_free;      /* idle-hold: main has read RSS, free it all  */
    int hold;
    pthread_barrier_t idle;         /* every thread has freed all; main reads RSS */
    pthread_barrier_t release;      /* main is done; the threads exit             */
};

struct idle_thread {
    struct idle_shared *sh;
    unsigned id;
    uint64_t objects;
};

/* The objects are chained through their first word, so no array (and no
 * other malloc) is needed; the link is the write into each object. */
struct chained {
    struct chained *next;
};

static void *idle_thread_run(void *arg)
{
    struct idle_thread *t = arg;
    uint64_t seed = seed_of(2000 + t->id), bytes = 0, n = 0;
    struct chained *head = NULL;

    pthread_barrier_wait(&t->sh->start);
    while (bytes < IDLE_BYTES) {
        size_t size = in_range(rnd(&seed), IDLE_MIN, IDLE_MAX);
        struct chained *o = malloc(size);
        if (unlikely(!o))
            die_nomem("idle", size);
        o->next = head;
        head = o;
        bytes += size;
        n++;
    }
    if (t->sh->hold) {
        pthread_barrier_wait(&t->sh->held);
        pthread_barrier_wait(&t->sh->go_free);
    }
    while (head) {
        struct chained *next = head->next;
        free(head);
        head = next;
    }
    t->objects = n;
    pthread_barrier_wait(&t->sh->idle);
    pthread_barrier_wait(&t->sh->release);
    return NULL;
}

/* hold: every thread mallocs all of its objects before any frees them (a
 * barrier between), so all IDLE_THREADS * 3 MiB are live at once; without
 * it, how much is live at once depends on the scheduling. */
static void idle_run(int hold)
{
    static struct idle_thread th[IDLE_THREADS];
    static pthread_t tid[IDLE_THREADS];
    static struct idle_shared sh;
    pthread_attr_t attr;
    long held = -1;
    int e;

    long base = status_kib("VmRSS");
    sh.hold = hold;
    pthread_barrier_init(&sh.start, NULL, IDLE_THREADS + 1);
    pthread_barrier_init(&sh.held, NULL, IDLE_THREADS + 1);
    pthread_barrier_init(&sh.go_free, NULL, IDLE_THREADS + 1);
    pthread_barrier_init(&sh.idle, NULL, IDLE_THREADS + 1);
    pthread_barrier_init(&sh.release, NULL, IDLE_THREADS + 1);
    if ((e = pthread_attr_init(&attr)) || (e = pthread_attr_setstacksize(&attr, IDLE_STACK)))
        die_errno("pthread_attr", e);

    for (unsigned i = 0; i < IDLE_THREADS; i++) {
        th[i] = (struct idle_thread){ .sh = &sh, .id = i };
        start_thread(&tid[i], &attr, idle_thread_run, &th[i]);
    }
    pthread_barrier_wait(&sh.start);
    uint64_t t0 = now_ns();
    if (hold) {
        pthread_barrier_wait(&sh.held);
        held = status_kib("VmRSS");
        pthread_barrier_wait(&sh.go_free);
    }
    pthread_barrier_wait(&sh.idle);
    uint64_t t1 = now_ns();
    long rss = status_kib("VmRSS");
    long anon = status_kib("RssAnon");
    long hwm = status_kib("VmHWM");
    pthread_barrier_wait(&sh.release);
    for (unsigned i = 0; i < IDLE_THREADS; i++)
        pthread_join(tid[i], NULL);
    long after = status_kib("VmRSS");
    pthread_attr_destroy(&attr);
    pthread_barrier_destroy(&sh.start);
    pthread_barrier_destroy(&sh.held);
    pthread_barrier_destroy(&sh.go_free);
    pthread_barrier_destroy(&sh.idle);
    pthread_barrier_destroy(&sh.release);

    uint64_t objects = 0;
    for (unsigned i = 0; i < IDLE_THREADS; i++)
        objects += th[i].objects;
    printf("RESULT workload=%s threads=%u bytes_per_thread=%u objects_per_thread=%llu "
           "base_kib=%ld",
           hold ? "idle-hold" : "idle", IDLE_THREADS, IDLE_BYTES,
           (unsigned long long)(objects / IDLE_THREADS), base);
    if (hold)
        printf(" held_kib=%ld", held);
    printf(" rss_kib=%ld anon_kib=%ld per_thread_kib=%.1f hwm_kib=%ld exit_rss_kib=%ld "
           "seconds=%.3f\n",
           rss, anon, (double)(rss - base) / IDLE_THREADS, hwm, after, (double)(t1 - t0) / 1e9);
    fflush(stdout);
}

static void workload_idle(void)
{
    idle_run(0);
}

static void workload_idle_hold(void)
{
    idle_run(1);
}

/* ---- main ---------------------------------------------------------------------- */

struct workload {
    const char *name;
    void (*run)(void);
};

static const struct workload workloads[] = {
    { "sizes", workload_sizes },
    { "prodcons", workload_prodcons },
    { "idle", workload_idle },
    { "idle-hold", workload_idle_hold },
};
#define NR_WORKLOADS (sizeof workloads / sizeof workloads[0])

static void usage(FILE *f)
{
    fprintf(f,
            "usage: malloc-bench [--quick] [--cell-ms N] [--ops N] [--size N] [--info] "
            "[WORKLOAD...]\n"
            "  WORKLOAD   sizes, prodcons, idle, idle-hold, all (default: all)\n"
            "  --quick    about 0.05 s per measured cell (default 0.3 s)\n"
            "  --cell-ms  N milliseconds per measured cell\n"
            "  --ops N    sizes: N steps per thread per cell; prodcons: N blocks\n"
            "             (a fixed amount of work instead of a time)\n"
            "  --size N   sizes: only this size (repeatable)\n"
            "  --info     print the INFO lines (which library serves malloc) and exit\n"
            "malloc and free are whatever the process resolves: preload buddymalloc or\n"
            "jemalloc with LD_PRELOAD, or nothing for glibc.\n");
}

static uint64_t parse_count(const char *opt, const char *s)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v == 0 || s[0] == '-') {
        fprintf(stderr, "malloc-bench: bad %s value '%s'\n", opt, s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    int quick = 0, info_only = 0;
    int want[NR_WORKLOADS] = { 0 }, any = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--quick")) {
            quick = 1;
            cell_ns = 50000000;
        } else if (!strcmp(a, "--cell-ms") && i + 1 < argc) {
            cell_ns = parse_count(a, argv[++i]) * 1000000u;
        } else if (!strcmp(a, "--ops") && i + 1 < argc) {
            fixed_ops = parse_count(a, argv[++i]);
        } else if (!strcmp(a, "--size") && i + 1 < argc) {
            uint64_t v = parse_count(a, argv[++i]);
            if (nr_only_size == sizeof only_size / sizeof only_size[0]) {
                fprintf(stderr, "malloc-bench: too many --size\n");
                return 2;
            }
            only_size[nr_only_size++] = (size_t)v;
        } else if (!strcmp(a, "--info")) {
            info_only = 1;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "all")) {
            for (unsigned w = 0; w < NR_WORKLOADS; w++)
                want[w] = 1;
            any = 1;
        } else {
            unsigned w;
            for (w = 0; w < NR_WORKLOADS; w++)
                if (!strcmp(a, workloads[w].name))
                    break;
            if (w == NR_WORKLOADS) {
                fprintf(stderr, "malloc-bench: unknown argument '%s'\n", a);
                usage(stderr);
                return 2;
            }
            want[w] = 1;
            any = 1;
        }
    }
    if (!any)
        for (unsigned w = 0; w < NR_WORKLOADS; w++)
            want[w] = 1;

    printf("INFO malloc_from=%s\n", malloc_library());
    printf("INFO glibc=%s cpus=%ld mode=%s cell_ms=%.0f fixed_ops=%llu ws_slots=%u\n",
           gnu_get_libc_version(), sysconf(_SC_NPROCESSORS_ONLN), quick ? "quick" : "default",
           cell_ns / 1e6, (unsigned long long)fixed_ops, WS_SLOTS);
    fflush(stdout);
    if (info_only)
        return 0;

    for (unsigned w = 0; w < NR_WORKLOADS; w++)
        if (want[w])
            workloads[w].run();
    return 0;
}
