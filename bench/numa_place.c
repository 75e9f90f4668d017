/*
 * numa_place.c - where an allocator puts the memory of threads on every
 * NUMA node: the share of each thread's pages that lie on its own node,
 * measured with move_pages(2) (placement only: run it in a QEMU machine
 * with NUMA nodes, bench/numa-place.sh, which models placement and not
 * latency). The allocator is whatever malloc the program gets: glibc's,
 * or one given with LD_PRELOAD.
 *
 * Threads: `per_node` on each node with CPUs, pinned to the node's CPUs.
 * Phases, each ending with every thread's blocks measured:
 *   first    each thread allocates a mix (small objects, 64 KiB blocks,
 *            2 MiB blocks) and touches it;
 *   moved    each thread frees everything, moves to the next node and
 *            allocates the mix again there;
 *   handoff  each thread allocates the mix and hands it to a thread of the
 *            next node, which frees it; then every thread allocates the mix
 *            again (a producer / consumer pipeline across nodes).
 * Output: one line per phase, "phase local_pages total_pages share".
 */
#define _GNU_SOURCE
#include <numa.h>
#include <numaif.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SMALL 12000
#define MEDIUM 48
#define LARGE 3
#define NBLOCKS (SMALL + MEDIUM + LARGE)

struct thr {
    int node, idx;
    void *blk[NBLOCKS];
    size_t len[NBLOCKS];
    long local, total;          /* pages of the last measure */
};

static int nthreads, phase_no;
static struct thr *thr;
static pthread_barrier_t bar;

static void pin_to(int node)
{
    struct bitmask *cpus = numa_allocate_cpumask();
    if (numa_node_to_cpus(node, cpus) == 0)
        numa_sched_setaffinity(0, cpus);
    numa_free_cpumask(cpus);
    sched_yield();
}

static uint64_t rng(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void alloc_mix(struct thr *t)
{
    uint64_t s = 0x9e3779b97f4a7c15ull * (uint64_t)(t->idx + 1 + phase_no * 64);
    for (int i = 0; i < NBLOCKS; i++) {
        size_t n = i < SMALL ? 16 + rng(&s) % 1009
                   : i < SMALL + MEDIUM ? 64 << 10 : 2 << 20;
        t->blk[i] = malloc(n);
        t->len[i] = n;
        memset(t->blk[i], 0x5a, n);
    }
}

static void free_mix(void **blk)
{
    for (int i = 0; i < NBLOCKS; i++)
        free(blk[i]);
}

static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return x < y ? -1 : x > y;
}

/* The distinct pages of t's blocks and how many lie on t's node. */
static void measure(struct thr *t)
{
    long cap = 0;
    for (int i = 0; i < NBLOCKS; i++)
        cap += (long)(t->len[i] / 4096) + 2;
    uintptr_t *pg = malloc((size_t)cap * sizeof *pg);
    long n = 0;
    for (int i = 0; i < NBLOCKS; i++) {
        uintptr_t a = (uintptr_t)t->blk[i] & ~4095ul, end = (uintptr_t)t->blk[i] + t->len[i];
        for (; a < end; a += 4096)
            pg[n++] = a;
    }
    qsort(pg, (size_t)n, sizeof *pg, cmp_ptr);
    long u = 0;
    for (long i = 0; i < n; i++)
        if (!u || pg[u - 1] != pg[i])
            pg[u++] = pg[i];
    int *status = malloc((size_t)u * sizeof *status);
    move_pages(0, (unsigned long)u, (void **)pg, NULL, status, 0);
    t->local = t->total = 0;
    for (long i = 0; i < u; i++) {
        if (status[i] < 0)
            continue;
        t->total++;
        t->local += status[i] == t->node;
    }
    free(status);
    free(pg);
}

static int cpu_nodes[64], ncpu_nodes;

/* End of a phase: measure, then wait while main reports and for its go. */
static void phase_end(struct thr *t)
{
    measure(t);
    pthread_barrier_wait(&bar);
    pthread_barrier_wait(&bar);
}

static void *run(void *arg)
{
    struct thr *t = arg;
    pin_to(t->node);
    /* first */
    alloc_mix(t);
    phase_end(t);
    /* moved */
    free_mix(t->blk);
    int k = 0;
    while (cpu_nodes[k] != t->node)
        k++;
    t->node = cpu_nodes[(k + 1) % ncpu_nodes];
    pin_to(t->node);
    alloc_mix(t);
    phase_end(t);
    /* handoff: free the mix a thread of the previous node made */
    free_mix(t->blk);
    alloc_mix(t);
    pthread_barrier_wait(&bar);
    struct thr *from = &thr[(t->idx + nthreads - nthreads / ncpu_nodes) % nthreads];
    free_mix(from->blk);
    pthread_barrier_wait(&bar);
    alloc_mix(t);
    phase_end(t);
    free_mix(t->blk);
    return NULL;
}

static void report(const char *name)
{
    long local = 0, total = 0;
    for (int i = 0; i < nthreads; i++) {
        local += thr[i].local;
        total += thr[i].total;
    }
    printf("%-8s %8ld %8ld %6.3f\n", name, local, total, total ? (double)local / total : 0.0);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    int per_node = argc > 1 ? atoi(argv[1]) : 2;
    if (numa_available() < 0 || per_node < 1) {
        fprintf(stderr, "numa-place: no NUMA here\n");
        return 2;
    }
    for (int n = 0; n <= numa_max_node() && ncpu_nodes < 64; n++) {
        struct bitmask *cpus = numa_allocate_cpumask();
        if (numa_node_to_cpus(n, cpus) == 0 && numa_bitmask_weight(cpus) > 0)
            cpu_nodes[ncpu_nodes++] = n;
        numa_free_cpumask(cpus);
    }
    nthreads = per_node * ncpu_nodes;
    thr = calloc((size_t)nthreads, sizeof *thr);
    pthread_barrier_init(&bar, NULL, (unsigned)nthreads + 1);
    pthread_t *tid = calloc((size_t)nthreads, sizeof *tid);
    /* threads i of node group i / per_node; a thread's handoff partner,
     * i - per_node, sits on the previous node (before and after moving) */
    for (int i = 0; i < nthreads; i++) {
        thr[i].idx = i;
        thr[i].node = cpu_nodes[(i / per_node) % ncpu_nodes];
        pthread_create(&tid[i], NULL, run, &thr[i]);
    }
    static const char *const names[] = { "first", "moved", "handoff" };
    for (int p = 0; p < 3; p++) {
        pthread_barrier_wait(&bar);
        report(names[p]);
        phase_no = p + 1;
        pthread_barrier_wait(&bar);
        if (p == 2)
            break;
        if (p == 1) {           /* handoff's two inner barriers */
            pthread_barrier_wait(&bar);
            pthread_barrier_wait(&bar);
        }
    }
    for (int i = 0; i < nthreads; i++)
        pthread_join(tid[i], NULL);
    return 0;
}
