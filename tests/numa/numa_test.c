/*
 * numa_test.c - where buddymalloc's memory lands on a NUMA machine (issue 6).
 *
 *   numa_test MODE [NODE]
 *
 * Linked with libbuddymalloc, so malloc and free are the allocator's. Each
 * mode ends with "N passed, M failed" and exits non-zero on a failure;
 * tests/numa/modes.sh runs them all, here and in the QEMU machines of
 * tests/numa/vm.sh (README.md beside this file).
 *
 *   selftest    the measuring method: memory mbind'ed to each node is
 *               reported there by get_mempolicy and move_pages; pinning a
 *               thread to a node's CPUs runs it there; sysfs and libnuma
 *               agree on the distances
 *   place       a thread on each node gets memory of its node for small
 *               objects, page blocks, runs and a large block, even right
 *               after a thread of another node freed memory it had touched;
 *               a thread that moves to another node gets that node's memory
 *   remote      objects and page blocks of node 0 freed by a thread on node 1
 *               go home (counted, batched), are not reused by node 1
 *   exhaust     a thread on node 0 allocating 1.5x node 0's memory gets node
 *               0's memory first, then its nearest node's, counted as
 *               numa_foreign / numa_miss
 *   interleave  BUDDYMALLOC_OPTIONS=numa=interleave spreads pages evenly
 *   membind N   under numactl --membind=N every kind of block is on node N
 *
 * A page's node is read with get_mempolicy(MPOL_F_NODE | MPOL_F_ADDR) for
 * every page, and with move_pages(nodes = NULL) for a sample of them. Every
 * page is written before it is asked about (asking would fault it in).
 * Modes that need two nodes with CPUs pass one check with a note on a
 * machine that has fewer.
 */
#include <errno.h>
#include <numa.h>
#include <numaif.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "buddymalloc.h"
#include "../plain_test.h"

#define PAGE 4096ul
#define MAXN 64

/* ------------------------------------------------------------ topology */

static int nr_nodes;                    /* numa_max_node() + 1 */
static int cpu_nodes[MAXN], nr_cpu_nodes;   /* nodes with CPUs, ascending */
static cpu_set_t node_cpus[MAXN];
static long node_mem_kb[MAXN];          /* MemTotal from sysfs, 0: no memory */

static long meminfo_kb(int node, const char *field)
{
    char path[96], line[256], key[64];
    snprintf(path, sizeof path, "/sys/devices/system/node/node%d/meminfo", node);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long v = -1;
    snprintf(key, sizeof key, "%s:", field);
    while (fgets(line, sizeof line, f)) {
        int n;
        char k[64];
        long x;
        if (sscanf(line, "Node %d %63s %ld", &n, k, &x) == 3 && strcmp(k, key) == 0) {
            v = x;
            break;
        }
    }
    fclose(f);
    return v;
}

/* Row `node` of /sys/devices/system/node/nodeN/distance into d[]; count. */
static int distances(int node, int *d)
{
    char path[96];
    snprintf(path, sizeof path, "/sys/devices/system/node/node%d/distance", node);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    int n = 0;
    while (n < MAXN && fscanf(f, "%d", &d[n]) == 1)
        n++;
    fclose(f);
    return n;
}

static void topology(void)
{
    if (numa_available() < 0) {
        fprintf(stderr, "numa_test: libnuma says this system has no NUMA support\n");
        exit(2);
    }
    nr_nodes = numa_max_node() + 1;
    if (nr_nodes > MAXN)
        nr_nodes = MAXN;
    struct bitmask *m = numa_allocate_cpumask();
    for (int n = 0; n < nr_nodes; n++) {
        CPU_ZERO(&node_cpus[n]);
        long kb = meminfo_kb(n, "MemTotal");
        node_mem_kb[n] = kb > 0 ? kb : 0;
        if (numa_node_to_cpus(n, m) != 0)
            continue;
        int any = 0;
        for (unsigned c = 0; c < m->size && c < CPU_SETSIZE; c++)
            if (numa_bitmask_isbitset(m, c)) {
                CPU_SET(c, &node_cpus[n]);
                any = 1;
            }
        if (any)
            cpu_nodes[nr_cpu_nodes++] = n;
    }
    numa_free_cpumask(m);
}

static const char *cpulist(int node)
{
    static char buf[256];
    size_t o = 0;
    buf[0] = 0;
    for (int c = 0; c < CPU_SETSIZE && o + 8 < sizeof buf; c++)
        if (CPU_ISSET(c, &node_cpus[node]))
            o += (size_t)snprintf(buf + o, sizeof buf - o, o ? ",%d" : "%d", c);
    return buf;
}

/* Pin the calling thread to node's CPUs; 1 if it then runs there. */
static int pin_to(int node)
{
    if (sched_setaffinity(0, sizeof(cpu_set_t), &node_cpus[node]) != 0) {
        fprintf(stderr, "sched_setaffinity(node %d): %s\n", node, strerror(errno));
        return 0;
    }
    int cpu = sched_getcpu();
    return cpu >= 0 && numa_node_of_cpu(cpu) == node;
}

static int running_on(void)
{
    int cpu = sched_getcpu();
    return cpu < 0 ? -1 : numa_node_of_cpu(cpu);
}

/* Zone index of node, or -1 (the library has no zone for it). */
static int zone_of(int node)
{
    struct bm_zone_stats st;
    for (int z = 0; z < bm_nr_zones(); z++)
        if (bm_zone_stats(z, &st) == 0 && st.node == node)
            return z;
    return -1;
}

static struct bm_zone_stats zone_stats(int node)
{
    struct bm_zone_stats st;
    int z = zone_of(node);
    if (z < 0 || bm_zone_stats(z, &st) != 0)
        memset(&st, 0, sizeof st);
    return st;
}

/* ------------------------------------------------------------ where pages are */

static int page_node(const void *addr)
{
    int node = -1;
    if (get_mempolicy(&node, NULL, 0, (void *)addr, MPOL_F_NODE | MPOL_F_ADDR) != 0)
        return -1;
    return node;
}

#define SAMPLE 256
struct where {
    const char *what;
    long pages;                 /* pages looked at */
    long on[MAXN];              /* by node */
    long unknown;               /* get_mempolicy failed */
    const void *stray;          /* first page not on the node wanted */
    int stray_node;
    void *sample[SAMPLE];       /* pages for move_pages: a reservoir sample */
    int nsample;
    unsigned seed;
};

static void where_init(struct where *w, const char *what)
{
    memset(w, 0, sizeof *w);
    w->what = what;
    w->seed = 12345;
}

/* Every page that [p, p + len) touches; want is the node they should be on. */
static void look(struct where *w, const void *p, size_t len, int want)
{
    uintptr_t a = (uintptr_t)p & ~(PAGE - 1), end = (uintptr_t)p + (len ? len : 1);
    for (; a < end; a += PAGE) {
        int n = page_node((void *)a);
        w->pages++;
        if (n < 0 || n >= MAXN)
            w->unknown++;
        else
            w->on[n]++;
        if (n != want && !w->stray) {
            w->stray = (void *)a;
            w->stray_node = n;
        }
        if (w->nsample < SAMPLE) {
            w->sample[w->nsample++] = (void *)a;
        } else {
            w->seed = w->seed * 1103515245u + 12345u;
            unsigned long r = (w->seed >> 8) % (unsigned long)w->pages;
            if (r < SAMPLE)
                w->sample[r] = (void *)a;
        }
    }
}

/* CHECK that every page looked at is on node want, by both methods. */
static void expect_on(struct where *w, int want, const char *ctx)
{
    CHECK(w->pages > 0 && w->on[want] == w->pages,
          "%s: %s: %ld of %ld pages not on node %d (first %p on node %d)%s",
          ctx, w->what, w->pages - w->on[want], w->pages, want, w->stray, w->stray_node,
          w->unknown ? ", some unknown to get_mempolicy" : "");
    int status[SAMPLE], wrong = 0, first = -1;
    memset(status, 0xff, sizeof status);
    long rc = move_pages(0, (unsigned long)w->nsample, w->sample, NULL, status, 0);
    for (int i = 0; i < w->nsample; i++)
        if (status[i] != want && wrong++ == 0)
            first = i;
    CHECK(rc == 0 && wrong == 0,
          "%s: %s: move_pages: %d of %d sampled pages not on node %d (%p: %d)%s",
          ctx, w->what, wrong, w->nsample, want, first >= 0 ? w->sample[first] : NULL,
          first >= 0 ? status[first] : 0, rc ? " (move_pages failed)" : "");
}

static void touch(void *p, size_t len, int v)
{
    memset(p, v, len);
}

/* ------------------------------------------------------------ a mixed load */

/* Sizes of the small objects (16 B .. 2 KiB), the page-block orders and the
 * runs (64 KiB .. 1 MiB). */
static const size_t small_sizes[] = { 16, 24, 48, 64, 100, 128, 256, 512, 1000, 2048 };
#define NSMALL_SIZES (sizeof small_sizes / sizeof small_sizes[0])
static const size_t run_sizes[] = { 64 << 10, 96 << 10, 128 << 10, 256 << 10, 512 << 10, 768 << 10, 1 << 20 };
#define NRUN_SIZES (sizeof run_sizes / sizeof run_sizes[0])
#define LARGE (16ul << 20)

struct load {
    int nsmall, nblocks, nruns;
    void **small;
    void **blocks;
    unsigned *orders;
    void **runs;
    void *large;
};

/* Allocate and write: nsmall objects, nblocks page blocks (orders 0..3
 * through the pagesets), nruns runs, and the 16 MiB block if large. */
static int load_alloc(struct load *l, int nsmall, int nblocks, int nruns, int large)
{
    memset(l, 0, sizeof *l);
    l->small = calloc((size_t)nsmall + 1, sizeof *l->small);
    l->blocks = calloc((size_t)nblocks + 1, sizeof *l->blocks);
    l->orders = calloc((size_t)nblocks + 1, sizeof *l->orders);
    l->runs = calloc((size_t)nruns + 1, sizeof *l->runs);
    if (!l->small || !l->blocks || !l->orders || !l->runs)
        return -1;
    for (int i = 0; i < nsmall; i++, l->nsmall++) {
        size_t n = small_sizes[i % NSMALL_SIZES];
        if (!(l->small[i] = malloc(n)))
            return -1;
        touch(l->small[i], n, i);
    }
    for (int i = 0; i < nblocks; i++, l->nblocks++) {
        l->orders[i] = (unsigned)i % 4;
        if (!(l->blocks[i] = bm_alloc_pages(l->orders[i], 0)))
            return -1;
        touch(l->blocks[i], PAGE << l->orders[i], i);
    }
    for (int i = 0; i < nruns; i++, l->nruns++) {
        size_t n = run_sizes[i % NRUN_SIZES];
        if (!(l->runs[i] = malloc(n)))
            return -1;
        touch(l->runs[i], n, i);
    }
    if (large) {
        if (!(l->large = malloc(LARGE)))
            return -1;
        touch(l->large, LARGE, 7);
    }
    return 0;
}

/* Check every page of the load is on node want (four CHECKs per kind). */
static void load_expect(struct load *l, int want, const char *ctx)
{
    struct where w;
    if (l->nsmall) {
        where_init(&w, "small objects");
        for (int i = 0; i < l->nsmall; i++)
            look(&w, l->small[i], small_sizes[i % NSMALL_SIZES], want);
        expect_on(&w, want, ctx);
    }
    if (l->nblocks) {
        where_init(&w, "page blocks");
        for (int i = 0; i < l->nblocks; i++)
            look(&w, l->blocks[i], PAGE << l->orders[i], want);
        expect_on(&w, want, ctx);
    }
    if (l->nruns) {
        where_init(&w, "runs");
        for (int i = 0; i < l->nruns; i++)
            look(&w, l->runs[i], run_sizes[i % NRUN_SIZES], want);
        expect_on(&w, want, ctx);
    }
    if (l->large) {
        where_init(&w, "large block");
        look(&w, l->large, LARGE, want);
        expect_on(&w, want, ctx);
    }
}

/* Free every other object, block and run (keep = 1) or all of them. */
static void load_free(struct load *l, int keep_half)
{
    for (int i = keep_half; i < l->nsmall; i += 1 + keep_half)
        free(l->small[i]), l->small[i] = NULL;
    for (int i = keep_half; i < l->nblocks; i += 1 + keep_half)
        bm_free_pages(l->blocks[i], l->orders[i]), l->blocks[i] = NULL;
    for (int i = keep_half; i < l->nruns; i += 1 + keep_half)
        free(l->runs[i]), l->runs[i] = NULL;
    if (!keep_half) {
        free(l->large);
        free(l->small);
        free(l->blocks);
        free(l->orders);
        free(l->runs);
        memset(l, 0, sizeof *l);
    }
}

/* Run fn(arg) in a new thread and wait for it. */
static void in_thread(void *(*fn)(void *), void *arg)
{
    pthread_t t;
    if (pthread_create(&t, NULL, fn, arg) != 0) {
        CHECK(0, "pthread_create failed");
        return;
    }
    pthread_join(t, NULL);
}

static int need_two_cpu_nodes(const char *mode)
{
    if (nr_cpu_nodes >= 2)
        return 1;
    printf("%s: skipped: it needs two nodes with CPUs, this machine has %d (counted as passed)\n",
           mode, nr_cpu_nodes);
    passed++;
    return 0;
}

/* ------------------------------------------------------------ selftest */

static void selftest(void)
{
    printf("selftest: %d nodes", nr_nodes);
    for (int n = 0; n < nr_nodes; n++)
        printf("; node %d: %ld MiB, cpus %s", n, node_mem_kb[n] >> 10, cpulist(n));
    printf("\n");
    CHECK(nr_cpu_nodes >= 1, "no node with CPUs");

    for (int i = 0; i < nr_cpu_nodes; i++) {
        int n = cpu_nodes[i];
        CHECK(pin_to(n), "a thread pinned to node %d's CPUs (%s) runs on node %d", n, cpulist(n),
              running_on());
    }
    cpu_set_t all;
    CPU_ZERO(&all);
    for (int i = 0; i < nr_cpu_nodes; i++)
        CPU_OR(&all, &all, &node_cpus[cpu_nodes[i]]);
    sched_setaffinity(0, sizeof all, &all);

    for (int a = 0; a < nr_nodes; a++) {
        int d[MAXN];
        int k = distances(a, d);
        int ok = k == nr_nodes;
        for (int b = 0; ok && b < k; b++)
            ok = d[b] == numa_distance(a, b) && (a == b ? d[b] == 10 : d[b] > 10);
        CHECK(ok, "node %d: sysfs distances (%d of them) disagree with numa_distance or are not 10 / > 10",
              a, k);
    }

    /* mbind a mapping to each node: both methods must say that node */
    for (int n = 0; n < nr_nodes; n++) {
        if (!node_mem_kb[n])
            continue;
        size_t len = 4ul << 20;
        void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        CHECK(p != MAP_FAILED, "mmap: %s", strerror(errno));
        if (p == MAP_FAILED)
            continue;
        unsigned long mask[MAXN / 64] = { 0 };
        mask[n / 64] = 1ul << (n % 64);
        long rc = mbind(p, len, MPOL_BIND, mask, MAXN + 1, 0);
        CHECK(rc == 0, "mbind(node %d): %s", n, strerror(errno));
        touch(p, len, n);
        char ctx[64];
        snprintf(ctx, sizeof ctx, "selftest: mbind to node %d", n);
        struct where w;
        where_init(&w, "4 MiB mapping");
        look(&w, p, len, n);
        expect_on(&w, n, ctx);
        /* both report where a page is, not the policy: move 16 pages to
         * another node (move_pages ignores the mbind) and ask again */
        int other = (n + 1) % nr_nodes;
        if (other != n && node_mem_kb[other]) {
            void *pg[16];
            int to[16], status[16], moved = 0, seen = 0;
            for (int i = 0; i < 16; i++) {
                pg[i] = (char *)p + (size_t)i * PAGE;
                to[i] = other;
                status[i] = -1;
            }
            long rc = move_pages(0, 16, pg, to, status, MPOL_MF_MOVE);
            for (int i = 0; i < 16; i++) {
                moved += status[i] == other;
                seen += page_node(pg[i]) == other;
            }
            memset(status, 0xff, sizeof status);
            move_pages(0, 16, pg, NULL, status, 0);
            int asked = 0;
            for (int i = 0; i < 16; i++)
                asked += status[i] == other;
            /* the move's own status may differ for a page of a huge page
             * that moved with another: what counts is where they are */
            CHECK(rc == 0 && seen == 16 && asked == 16,
                  "selftest: 16 pages moved from node %d to %d (rc %ld): %d moved, get_mempolicy "
                  "sees %d there, move_pages %d", n, other, rc, moved, seen, asked);
        }
        munmap(p, len);
    }
    int any_mem = 0;
    for (int n = 0; n < nr_nodes; n++)
        any_mem |= node_mem_kb[n] > 0;
    CHECK(any_mem, "no node with memory in /sys/devices/system/node/node*/meminfo");
}

/* ------------------------------------------------------------ place */

struct place_job {
    int node;           /* where the thread runs */
    int pollute;        /* only allocate, write and free everything */
};

static void *place_thread(void *arg)
{
    struct place_job *j = arg;
    char ctx[64];
    snprintf(ctx, sizeof ctx, "place: thread on node %d", j->node);
    if (!pin_to(j->node)) {
        CHECK(0, "%s: cannot run there", ctx);
        return NULL;
    }
    struct load l;
    if (load_alloc(&l, 2000, j->pollute ? 64 : 32, NRUN_SIZES, 1) != 0) {
        CHECK(0, "%s: out of memory after %d small, %d blocks, %d runs", ctx, l.nsmall, l.nblocks,
              l.nruns);
        load_free(&l, 0);
        return NULL;
    }
    if (!j->pollute) {
        int f0 = failed;
        load_expect(&l, j->node, ctx);
        if (failed == f0)
            printf("%s (cpus %s): 2000 small objects, 32 page blocks, %zu runs, a 16 MiB block: "
                   "every page on node %d\n", ctx, cpulist(j->node), NRUN_SIZES, j->node);
    }
    load_free(&l, 0);
    return NULL;
}

/* A thread on node a allocates, frees half, moves to node b, allocates. */
struct repin_job {
    int a, b;
};

static void *repin_thread(void *arg)
{
    struct repin_job *j = arg;
    char ctx[96];
    snprintf(ctx, sizeof ctx, "place: thread moved from node %d", j->a);
    if (!pin_to(j->a)) {
        CHECK(0, "%s: cannot run on node %d", ctx, j->a);
        return NULL;
    }
    struct load before, after;
    if (load_alloc(&before, 600, 16, NRUN_SIZES, 0) != 0) {
        CHECK(0, "%s: out of memory", ctx);
        return NULL;
    }
    load_expect(&before, j->a, ctx);
    load_free(&before, 1);      /* its caches now hold free memory of node a */
    if (!pin_to(j->b)) {
        CHECK(0, "%s: cannot move to node %d", ctx, j->b);
        return NULL;
    }
    snprintf(ctx, sizeof ctx, "place: thread moved from node %d to node %d", j->a, j->b);
    int f0 = failed;
    if (load_alloc(&after, 600, 16, NRUN_SIZES, 1) != 0) {
        CHECK(0, "%s: out of memory", ctx);
        return NULL;
    }
    load_expect(&after, j->b, ctx);
    if (failed == f0)
        printf("%s: its new memory is on node %d\n", ctx, j->b);
    load_free(&after, 0);
    load_free(&before, 0);      /* the rest; frees of node a's memory from node b */
    return NULL;
}

static void place(void)
{
    for (int i = 0; i < nr_cpu_nodes; i++) {
        int n = cpu_nodes[i];
        /* first a thread of another node leaves touched memory free */
        struct place_job dirty = { cpu_nodes[(i + 1) % nr_cpu_nodes], 1 };
        in_thread(place_thread, &dirty);
        struct place_job job = { n, 0 };
        in_thread(place_thread, &job);
    }
    if (need_two_cpu_nodes("place: moving thread")) {
        struct repin_job j = { cpu_nodes[0], cpu_nodes[1] };
        in_thread(repin_thread, &j);
    }
    CHECK(bm_check(2) == 0, "place: the heap checker found errors");
}

/* ------------------------------------------------------------ remote */

#define REMOTE_OBJS 10000
#define REMOTE_BLOCKS 100

static struct {
    int a, b;                   /* the nodes of threads A and B */
    pthread_barrier_t step;
    struct load la, lb, la2;
    struct bm_zone_stats before, after_free;
} rm;

static void *remote_a(void *arg)
{
    (void)arg;
    int ok = pin_to(rm.a);
    CHECK(ok, "remote: thread A cannot run on node %d", rm.a);
    if (ok && load_alloc(&rm.la, REMOTE_OBJS, REMOTE_BLOCKS, 0, 0) != 0)
        CHECK(0, "remote: A: out of memory");
    if (ok)
        load_expect(&rm.la, rm.a, "remote: A's first allocations");
    rm.before = zone_stats(rm.a);
    pthread_barrier_wait(&rm.step);     /* B frees them and allocates */
    pthread_barrier_wait(&rm.step);
    if (ok) {
        int f0 = failed;
        if (load_alloc(&rm.la2, REMOTE_OBJS, REMOTE_BLOCKS, 0, 0) != 0)
            CHECK(0, "remote: A: out of memory the second time");
        load_expect(&rm.la2, rm.a, "remote: A's allocations after B freed its first ones");
        if (failed == f0)
            printf("remote: A allocates again on node %d: all there\n", rm.a);
    }
    load_free(&rm.la2, 0);
    return NULL;
}

static void *remote_b(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&rm.step);
    int ok = pin_to(rm.b);
    CHECK(ok, "remote: thread B cannot run on node %d", rm.b);
    /* free A's objects and blocks in the order A made them */
    for (int i = 0; i < rm.la.nsmall; i++)
        free(rm.la.small[i]);
    for (int i = 0; i < rm.la.nblocks; i++)
        bm_free_pages(rm.la.blocks[i], rm.la.orders[i]);
    rm.la.nsmall = rm.la.nblocks = 0;
    bm_drain_pagesets();        /* a pageset of B's CPU for zone A may hold some */
    rm.after_free = zone_stats(rm.a);
    uint64_t d = rm.after_free.remote_free - rm.before.remote_free;
    CHECK(d >= REMOTE_BLOCKS,
          "remote: zone of node %d: remote_free grew by %llu after B freed %d of its page blocks",
          rm.a, (unsigned long long)d, REMOTE_BLOCKS);
    if (ok) {
        int f0 = failed;
        if (load_alloc(&rm.lb, REMOTE_OBJS, REMOTE_BLOCKS, 0, 0) != 0)
            CHECK(0, "remote: B: out of memory");
        /* none of it may be the node-A memory B has just freed */
        load_expect(&rm.lb, rm.b, "remote: B's allocations after freeing A's");
        if (failed == f0)
            printf("remote: B frees A's %d objects and %d blocks, allocates as many: all on node %d\n",
                   REMOTE_OBJS, REMOTE_BLOCKS, rm.b);
    }
    load_free(&rm.lb, 0);
    pthread_barrier_wait(&rm.step);
    return NULL;
}

static void remote(void)
{
    if (!need_two_cpu_nodes("remote"))
        return;
    rm.a = cpu_nodes[0];
    rm.b = cpu_nodes[1];
    CHECK(zone_of(rm.a) >= 0 && zone_of(rm.b) >= 0,
          "remote: the library has no zone for node %d or %d (%d zones)", rm.a, rm.b, bm_nr_zones());
    pthread_barrier_init(&rm.step, NULL, 2);
    pthread_t ta, tb;
    pthread_create(&ta, NULL, remote_a, NULL);
    pthread_create(&tb, NULL, remote_b, NULL);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    pthread_barrier_destroy(&rm.step);
    free(rm.la.small);
    free(rm.la.blocks);
    free(rm.la.orders);
    free(rm.la.runs);
    bm_trim(0);

    struct bm_zone_stats end = zone_stats(rm.a);
    uint64_t objs = end.slab_remote_free - rm.before.slab_remote_free;
    uint64_t batches = end.slab_remote_batches - rm.before.slab_remote_batches;
    printf("remote: zone of node %d: remote_free +%llu, slab_remote_free +%llu in %llu batches\n", rm.a,
           (unsigned long long)(rm.after_free.remote_free - rm.before.remote_free),
           (unsigned long long)objs, (unsigned long long)batches);
    CHECK(objs >= REMOTE_OBJS, "remote: slab_remote_free grew by %llu, B freed %d objects of node %d",
          (unsigned long long)objs, REMOTE_OBJS, rm.a);
    CHECK(batches > 0 && batches < objs,
          "remote: %llu objects came home in %llu batches: not batched",
          (unsigned long long)objs, (unsigned long long)batches);
    CHECK(bm_check(2) == 0, "remote: the heap checker found errors");
}

/* ------------------------------------------------------------ exhaust */

static struct {
    int near;                   /* node 0's nearest other node */
    long blocks, pages, on[MAXN], first_on0, free_kb;
    int first_off;              /* index of the first block not all on node 0 */
} ex;

static void *exhaust_thread(void *arg)
{
    (void)arg;
    if (!pin_to(0)) {
        CHECK(0, "exhaust: cannot run on node 0");
        return NULL;
    }
    long goal = node_mem_kb[0] * 3 / 2 / 1024;      /* MiB */
    void **blk = calloc((size_t)goal + 1, sizeof *blk);
    void *pages[256];
    int status[256];
    ex.first_off = -1;
    for (long i = 0; i < goal; i++) {
        if (!(blk[i] = malloc(1 << 20))) {
            CHECK(0, "exhaust: malloc(1 MiB) failed after %ld MiB", i);
            break;
        }
        touch(blk[i], 1 << 20, (int)i);
        ex.blocks++;
        for (int k = 0; k < 256; k++)
            pages[k] = (char *)blk[i] + k * PAGE;
        if (move_pages(0, 256, pages, NULL, status, 0) != 0) {
            CHECK(0, "exhaust: move_pages: %s", strerror(errno));
            break;
        }
        int all0 = 1;
        for (int k = 0; k < 256; k++) {
            ex.pages++;
            if (status[k] >= 0 && status[k] < MAXN)
                ex.on[status[k]]++;
            all0 &= status[k] == 0;
        }
        if (!all0 && ex.first_off < 0)
            ex.first_off = (int)i;
    }
    for (long i = 0; i < ex.blocks; i++)
        free(blk[i]);
    free(blk);
    return NULL;
}

static void exhaust(void)
{
    if (!need_two_cpu_nodes("exhaust"))
        return;
    if (cpu_nodes[0] != 0 || !node_mem_kb[0]) {
        CHECK(0, "exhaust: node 0 has no CPUs or no memory");
        return;
    }
    int d[MAXN], k = distances(0, d);
    ex.near = -1;
    for (int n = 1; n < k; n++)
        if (node_mem_kb[n] && (ex.near < 0 || d[n] < d[ex.near]))
            ex.near = n;
    CHECK(ex.near > 0, "exhaust: no other node with memory");
    if (ex.near < 0)
        return;
    ex.free_kb = meminfo_kb(0, "MemFree");
    struct bm_zone_stats s0 = zone_stats(0), sn = zone_stats(ex.near);
    printf("exhaust: node 0: %ld MiB, %ld MiB free; nearest node %d (distance %d); allocating %ld MiB\n",
           node_mem_kb[0] >> 10, ex.free_kb >> 10, ex.near, d[ex.near], node_mem_kb[0] * 3 / 2 >> 10);
    in_thread(exhaust_thread, NULL);
    struct bm_zone_stats e0 = zone_stats(0), en = zone_stats(ex.near);

    long off = ex.pages - ex.on[0];
    printf("exhaust: %ld MiB allocated: %ld MiB on node 0, %ld MiB on node %d, %ld MiB elsewhere; "
           "first block off node 0: #%d\n", ex.blocks, ex.on[0] >> 8, ex.on[ex.near] >> 8, ex.near,
           (off - ex.on[ex.near]) >> 8, ex.first_off);
    CHECK(ex.blocks * 1024 >= node_mem_kb[0] * 3 / 2 - 1024, "exhaust: only %ld MiB allocated", ex.blocks);
    CHECK(ex.first_off < 0 || ex.first_off >= 16,
          "exhaust: block #%d is already (partly) off node 0: the first ones must be on node 0",
          ex.first_off);
    CHECK(ex.on[0] * 4 >= ex.free_kb / 2,
          "exhaust: only %ld MiB on node 0, which had %ld MiB free: filled before it spilled?",
          ex.on[0] >> 8, ex.free_kb >> 10);
    CHECK(off > 0 && ex.on[ex.near] * 10 >= off * 9,
          "exhaust: of the %ld pages off node 0 only %ld are on its nearest node %d", off,
          ex.on[ex.near], ex.near);
    CHECK(e0.numa_foreign > s0.numa_foreign,
          "exhaust: zone of node 0: numa_foreign did not grow (%llu)", (unsigned long long)e0.numa_foreign);
    CHECK(en.numa_miss > sn.numa_miss, "exhaust: zone of node %d: numa_miss did not grow (%llu)",
          ex.near, (unsigned long long)en.numa_miss);
    CHECK(bm_check(2) == 0, "exhaust: the heap checker found errors");
}

/* ------------------------------------------------------------ interleave */

static void interleave(void)
{
    const char *o = getenv("BUDDYMALLOC_OPTIONS");
    int pol = -1;
    get_mempolicy(&pol, NULL, 0, NULL, 0);
    CHECK((o && strstr(o, "numa=interleave")) || pol == MPOL_INTERLEAVE,
          "interleave: run me with BUDDYMALLOC_OPTIONS=numa=interleave or numactl --interleave");
    enum { BLOCK = 256 << 10, N = (64 << 20) / BLOCK, PER = BLOCK / PAGE };
    void **blk = calloc(N, sizeof *blk);
    void **pages = calloc((size_t)N * PER, sizeof *pages);
    int *status = calloc((size_t)N * PER, sizeof *status);
    long on[MAXN] = { 0 }, bad = 0;
    for (int i = 0; i < N; i++) {
        if (!(blk[i] = malloc(BLOCK))) {
            CHECK(0, "interleave: malloc(256 KiB) failed after %d", i);
            return;
        }
        touch(blk[i], BLOCK, i);
        for (int k = 0; k < PER; k++)
            pages[i * PER + k] = (char *)blk[i] + (size_t)k * PAGE;
    }
    long rc = move_pages(0, (unsigned long)N * PER, pages, NULL, status, 0);
    CHECK(rc == 0, "interleave: move_pages: %s", strerror(errno));
    for (long i = 0; i < (long)N * PER; i++) {
        if (status[i] >= 0 && status[i] < MAXN)
            on[status[i]]++;
        else
            bad++;
    }
    int nmem = 0;
    for (int n = 0; n < nr_nodes; n++)
        nmem += node_mem_kb[n] > 0;
    long mean = (long)N * PER / (nmem ? nmem : 1);
    printf("interleave: 64 MiB in 256 KiB blocks: pages per node");
    for (int n = 0; n < nr_nodes; n++)
        printf(" %d:%ld", n, on[n]);
    printf(" (mean %ld)\n", mean);
    CHECK(bad == 0, "interleave: %ld pages on no node", bad);
    for (int n = 0; n < nr_nodes; n++) {
        if (!node_mem_kb[n])
            continue;
        long dev = on[n] > mean ? on[n] - mean : mean - on[n];
        CHECK(dev * 100 <= mean * 15, "interleave: node %d has %ld pages, more than 15%% from the mean %ld",
              n, on[n], mean);
    }
    for (int i = 0; i < N; i++)
        free(blk[i]);
    free(blk);
    free(pages);
    free(status);
}

/* ------------------------------------------------------------ membind */

static int membind_to;

static void *membind_thread(void *arg)
{
    (void)arg;
    int on = cpu_nodes[0];
    char ctx[80];
    snprintf(ctx, sizeof ctx, "membind: thread on node %d, memory bound to node %d", on, membind_to);
    if (!pin_to(on)) {
        CHECK(0, "%s: cannot run there", ctx);
        return NULL;
    }
    struct load l;
    if (load_alloc(&l, 2000, 32, NRUN_SIZES, 1) != 0)
        CHECK(0, "%s: out of memory", ctx);
    int f0 = failed;
    load_expect(&l, membind_to, ctx);
    if (failed == f0)
        printf("%s: small objects, page blocks, runs, a 16 MiB block: every page on node %d\n", ctx,
               membind_to);
    load_free(&l, 0);
    return NULL;
}

/* membind NODE: run under numactl --membind=NODE (MPOL_BIND); with
 * want == MPOL_PREFERRED, under numactl --preferred=NODE: either way a
 * thread on another node gets only NODE's pages. */
static void membind(int node, int want)
{
    int mode = -1;
    unsigned long mask[MAXN / 64] = { 0 };
    long rc = get_mempolicy(&mode, mask, MAXN + 1, NULL, 0);
    int only = rc == 0 && mode == want && (mask[node / 64] >> (node % 64) & 1);
    for (int n = 0; only && n < MAXN; n++)
        if (n != node && (mask[n / 64] >> (n % 64) & 1))
            only = 0;
    CHECK(only, "membind: run me under numactl --%s=%d (policy %d)",
          want == MPOL_BIND ? "membind" : "preferred", node, mode);
    if (!only)
        return;
    membind_to = node;
    in_thread(membind_thread, NULL);
}

/* ------------------------------------------------------------ main */

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *mode = argc > 1 ? argv[1] : "";
    topology();
    if (!strcmp(mode, "selftest"))
        selftest();
    else if (!strcmp(mode, "place"))
        place();
    else if (!strcmp(mode, "remote"))
        remote();
    else if (!strcmp(mode, "exhaust"))
        exhaust();
    else if (!strcmp(mode, "interleave"))
        interleave();
    else if (!strcmp(mode, "membind") && argc > 2)
        membind(atoi(argv[2]), MPOL_BIND);
    else if (!strcmp(mode, "preferred") && argc > 2)
        membind(atoi(argv[2]), MPOL_PREFERRED);
    else {
        fprintf(stderr, "usage: numa_test selftest|place|remote|exhaust|interleave|"
                        "membind NODE|preferred NODE\n");
        return 2;
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
