/*
 * test_numa.c - the NUMA machinery on this machine, with nodes made up
 * from its CPUs (option numa_fake: CPU c on node c % N): zones per node,
 * node-local heaps that follow their thread, the zonelists, remote frees
 * that go home in batches, the per-node statistics. Where the pages
 * physically lie is proven on real multi-node machines (tests/numa/).
 */
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "alloc.h"
#include "buddymalloc.h"
#include "helpers.h"
#include "internal.h"

static bool two_cpus(void)
{
    cpu_set_t set;
    return sched_getaffinity(0, sizeof set, &set) == 0 && CPU_ISSET(0, &set) &&
           CPU_ISSET(1, &set);
}

static void pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    cr_assert_eq(sched_setaffinity(0, sizeof set, &set), 0);
    sched_yield();
    cr_assert_eq(sched_getcpu(), cpu);
}

static int node_of(const void *p)
{
    return page_zone(addr_to_page((uintptr_t)p))->node;
}

static void setup(void)
{
    bm_test_options("numa_fake=2");
    if (!two_cpus())
        cr_skip_test("needs CPUs 0 and 1");
}

TestSuite(numa, .init = setup);

Test(numa, zones_and_zonelists_of_made_up_nodes)
{
    bm_ensure_init();
    cr_assert_eq(bm_nr_zones(), 2);
    cr_assert(bm_g.zones[0].present && bm_g.zones[1].present);
    cr_assert(bm_numa_multi);
    cr_assert_eq(bm_g.topo.cpu_node[0], 0);
    cr_assert_eq(bm_g.topo.cpu_node[1], 1);
    cr_assert_eq(bm_g.topo.nr_zonelist[1], 2);
    cr_assert_eq(bm_g.topo.zonelist[1][0], 1, "a node's own zone first");
    cr_assert_eq(bm_g.topo.zonelist[1][1], 0);
    cr_assert_not(bm_g.topo.watch_memory, "made-up nodes have no memory of their own to watch");
}

/* Every kind of block comes from the zone of the CPU that asks, and a
 * thread that moves gets the new node's memory from its next malloc. */
Test(numa, blocks_follow_the_cpu)
{
    for (int round = 0; round < 2; round++) {
        for (int cpu = 0; cpu < 2; cpu++) {
            pin(cpu);
            void *small = bm_malloc(48), *mid = bm_malloc(3000);
            void *page = bm_alloc_pages(0, 0), *pages = bm_alloc_pages(3, 0);
            void *run = bm_malloc(100000), *big = bm_malloc(3 << 20);
            cr_assert_eq(node_of(small), cpu, "slab object on cpu %d", cpu);
            cr_assert_eq(node_of(mid), cpu);
            cr_assert_eq(node_of(page), cpu, "pageset page");
            cr_assert_eq(node_of(pages), cpu);
            cr_assert_eq(node_of(run), cpu, "run of pages");
            cr_assert_eq(node_of(big), cpu, "max-order run");
            bm_free(small);
            bm_free(mid);
            bm_free_pages(page, 0);
            bm_free_pages(pages, 3);
            bm_free(run);
            bm_free(big);
        }
    }
    struct bm_malloc_stats m;
    bm_malloc_stats(&m);
    cr_assert_eq(m.heaps, 1, "one thread, though it has a heap on each node: %lu", m.heaps);
    assert_heap_ok();
}

/* A block this thread freed on node 0 is not handed out again on node 1:
 * the bins and slabs belong to the node's heap. */
Test(numa, freed_blocks_stay_on_their_node)
{
    pin(0);
    void *a[64];
    for (int i = 0; i < 64; i++)
        a[i] = bm_malloc(64);
    for (int i = 0; i < 64; i++)
        bm_free(a[i]);
    pin(1);
    for (int i = 0; i < 64; i++) {
        a[i] = bm_malloc(64);
        cr_assert_eq(node_of(a[i]), 1);
    }
    pin(0);
    for (int i = 0; i < 64; i++)
        bm_free(a[i]);          /* node 1's blocks freed on node 0 */
    void *b = bm_malloc(64);
    cr_assert_eq(node_of(b), 0);
    bm_free(b);
    bm_trim(0);
    assert_heap_ok();
}

struct remote { void **p; int n; int cpu; };

static void *free_on(void *arg)
{
    struct remote *r = arg;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(r->cpu, &set);
    sched_setaffinity(0, sizeof set, &set);
    sched_yield();
    for (int i = 0; i < r->n; i++)
        bm_free(r->p[i]);
    return NULL;
}

/* Objects of node 0 freed by a thread on node 1 go home in batches: one
 * atomic push per slab and flush, counted in zone 0's statistics (here at
 * least 16 objects a push, though the frees alternate over 8 classes). */
Test(numa, remote_slab_frees_go_home_in_batches)
{
    enum { N = 4000 };
    static void *p[N];
    pin(0);
    for (int i = 0; i < N; i++) {
        p[i] = bm_malloc(16 + (size_t)(i % 8) * 40);     /* 8 classes, interleaved */
        cr_assert_eq(node_of(p[i]), 0);
    }
    struct bm_zone_stats before, after;
    bm_zone_stats(0, &before);
    struct remote r = { p, N, 1 };
    pthread_t t;
    pthread_create(&t, NULL, free_on, &r);
    pthread_join(t, NULL);          /* its exit flushes what still waits */
    bm_zone_stats(0, &after);
    uint64_t objs = after.slab_remote_free - before.slab_remote_free;
    uint64_t batches = after.slab_remote_batches - before.slab_remote_batches;
    cr_assert_eq(objs, N, "every object came home: %lu", (unsigned long)objs);
    cr_assert_leq(batches * 16, objs, "in batches: %lu for %lu objects", (unsigned long)batches,
                 (unsigned long)objs);
    /* the owner collects them: its slabs empty and go back */
    for (int i = 0; i < 1000; i++)
        bm_free(bm_malloc(48));
    bm_trim(0);
    struct bm_malloc_stats m;
    bm_malloc_stats(&m);
    cr_assert_eq(m.small_allocs - m.small_frees, 0);
    assert_heap_ok();
}

/* Pages of node 0 freed on a CPU of node 1 go to that CPU's pageset of
 * zone 0, whose high mark is one batch: home in batches, counted. */
Test(numa, remote_page_frees_go_home)
{
    enum { N = 200 };
    static void *p[N];
    pin(0);
    for (int i = 0; i < N; i++)
        p[i] = bm_alloc_pages(0, 0);
    struct bm_zone_stats before, after;
    bm_zone_stats(0, &before);
    pin(1);
    for (int i = 0; i < N; i++)
        bm_free_pages(p[i], 0);
    bm_zone_stats(0, &after);
    cr_assert_eq(after.remote_free - before.remote_free, N);
    cr_assert_leq(bm_g.zones[0].pcp[1].count, bm_g.zones[0].pcp_batch,
                  "a remote CPU keeps at most a batch of the zone's pages");
    bm_zone_stats(1, &after);
    assert_heap_ok();
}

Test(numa, numastat_counts_local_and_other)
{
    pin(1);
    void *p = bm_alloc_pages(2, 0);
    void *q = bm_malloc(200000);
    struct bm_zone_stats s;
    bm_zone_stats(1, &s);
    cr_assert_geq(s.numa_hit, 2);
    cr_assert_geq(s.local_node, 2);
    cr_assert_eq(s.numa_miss, 0);
    char buf[4096];
    bm_numastat(buf, sizeof buf);
    cr_assert(strstr(buf, "nodes 2 (made up: numa_fake)"), "%s", buf);
    cr_assert(strstr(buf, "numa_hit"), "%s", buf);
    cr_assert(strstr(buf, "node1"), "%s", buf);
    cr_assert(strstr(buf, "zonelist: 1 0"), "%s", buf);
    bm_free_pages(p, 2);
    bm_free(q);
}

/* in a child: another thread, on node 1, frees p twice */
static void free_twice_on_node_1(void *p)
{
    struct remote r = { (void *[]){ p, p }, 2, 1 };
    pthread_t t;
    pthread_create(&t, NULL, free_on, &r);
    pthread_join(t, NULL);
}

/* A block freed twice while it waits in the alien buffer is caught there,
 * with the function and the address. */
Test(numa, double_free_waiting_to_go_home)
{
    pin(0);
    void *p = bm_malloc(64);
    char msg[1024];
    expect_child_abort(free_twice_on_node_1, p, msg, sizeof msg);
    char where[64];
    snprintf(where, sizeof where, "bm_free(%p)", p);
    cr_assert(strstr(msg, where) && strstr(msg, "waiting to go home"), "%s", msg);
    bm_free(p);
}

/* Threads on both nodes, allocating, freeing each other's blocks and
 * moving: the heap checker finds every structure consistent. */
struct churn { int cpu; void **shared; pthread_barrier_t *bar; };

static void *churn(void *arg)
{
    struct churn *c = arg;
    cpu_set_t set;
    for (int round = 0; round < 20; round++) {
        CPU_ZERO(&set);
        CPU_SET((c->cpu + round) % 2, &set);
        sched_setaffinity(0, sizeof set, &set);
        void *mine[256];
        for (int i = 0; i < 256; i++)
            mine[i] = bm_malloc(16 + (size_t)(i * 37 % 1500));
        for (int i = 0; i < 256; i++) {
            int j = (c->cpu * 256 + i);
            void *old = __atomic_exchange_n(&c->shared[j], mine[i], __ATOMIC_ACQ_REL);
            bm_free(old);
        }
        pthread_barrier_wait(c->bar);
        for (int i = 0; i < 256; i++) {
            int j = ((1 - c->cpu) * 256 + i);
            void *old = __atomic_exchange_n(&c->shared[j], NULL, __ATOMIC_ACQ_REL);
            bm_free(old);
        }
        pthread_barrier_wait(c->bar);
    }
    return NULL;
}

Test(numa, churn_across_nodes_keeps_the_heap_consistent)
{
    static void *shared[512];
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, 2);
    pthread_t t[2];
    struct churn c[2] = { { 0, shared, &bar }, { 1, shared, &bar } };
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, churn, &c[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    bm_trim(0);
    assert_heap_ok();
    struct bm_malloc_stats m;
    bm_malloc_stats(&m);
    cr_assert_eq(m.small_allocs, m.small_frees);
}
