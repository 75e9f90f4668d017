/* Live statistics (option stats_signal): the signal rewrites a memfd with a
 * whole report while other threads allocate, never waits for a lock the
 * interrupted thread holds, and answers a signal that comes while another
 * thread writes a report with one more report from that thread. */
#include "helpers.h"

#include <criterion/redirect.h>
#include <time.h>

#include "large.h"
#include "slab.h"

#define IMAGE_MAX (256 << 10)
#define WORKERS 4

static char image[IMAGE_MAX];

/* The memfd's text now, NUL-terminated. */
static size_t read_image(void)
{
    int fd = bm_stats_live_fd();
    cr_assert_geq(fd, 0, "no statistics memfd");
    ssize_t n = pread(fd, image, sizeof image - 1, 0);
    cr_assert_geq(n, 0);
    image[n] = '\0';
    return (size_t)n;
}

static unsigned count_of(const char *text, const char *s)
{
    unsigned n = 0;
    for (const char *p = strstr(text, s); p; p = strstr(p + 1, s))
        n++;
    return n;
}

/* The report's sequence number if the image is a whole report (a header,
 * one end line that closes it with the same number), else -1. */
static long long complete_seq(const char *text, size_t len)
{
    unsigned long long seq, end;
    int pid, sig, used = 0;
    double t;
    if (sscanf(text,
               "=== buddymalloc live statistics: pid %d (%*[^)]) signal %d seq %llu monotonic %lf ===\n%n",
               &pid, &sig, &seq, &t, &used) != 4 || used == 0)
        return -1;
    if (pid != getpid() || sig != SIGUSR2 || len < 2 || text[len - 1] != '\n')
        return -1;
    const char *last = text + len - 1;
    while (last > text && last[-1] != '\n')
        last--;
    if (sscanf(last, "=== end %llu ===", &end) != 1 || end != seq)
        return -1;
    return (long long)seq;
}

/* A whole report numbered seq with every table and nothing twice. */
static void assert_report(const char *text, size_t len, long long seq)
{
    cr_assert_eq(complete_seq(text, len), seq, "not report %lld:\n%s", seq, text);
    cr_assert_eq(count_of(text, "=== buddymalloc live statistics"), 1, "%s", text);
    cr_assert_eq(count_of(text, "=== end "), 1, "%s", text);
    static const char *const parts[] = {
        "\n--- summary ---\n  small allocations ",
        "\n  regions resident ",
        "\n  returned to the OS ",
        "\n--- buddyinfo ---\nNode 0, zone   Normal ",
        "\n--- pagetypeinfo ---\nPage block order: ",
        "\nNumber of blocks type ",
        "\n--- pagesets ---\nNode 0, zone   Normal  pagesets",
        "\n--- zone counters ---\n",
        "\n--- slabinfo ---\nslabinfo - version: 2.1\n",
        "\nbm-32 ",
        "\n--- numa ---\nnodes ",
        "\nnuma_hit ",
        "\n--- report ---\ntook ",
    };
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        cr_assert_eq(count_of(text, parts[i]), 1, "'%s' not once in:\n%s", parts[i], text);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Waits (5 s at most) for a whole report numbered above old; returns it. */
static long long wait_report(long long old)
{
    uint64_t end = now_ms() + 5000;
    for (;;) {
        size_t len = read_image();
        long long seq = complete_seq(image, len);
        if (seq > old) {
            assert_report(image, len, seq);
            return seq;
        }
        cr_assert_lt(now_ms(), end, "no report after %lld within 5 s; memfd:\n%s", old, image);
        usleep(200);
    }
}

static void start(void)
{
    bm_test_options("stats_signal=USR2");
    bm_free(bm_malloc(1));
    size_t len = read_image();
    cr_assert_eq(complete_seq(image, len), 0, "the first image:\n%s", image);
}

/* Every node is in the live report: buddyinfo, pagesets and counters of
 * each zone, and a numastat column per node (made-up nodes: numa_fake). */
Test(live, every_node_is_reported, .timeout = 30)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0 || !CPU_ISSET(0, &set) || !CPU_ISSET(1, &set))
        cr_skip_test("needs CPUs 0 and 1");
    bm_test_options("stats_signal=USR2,numa_fake=2");
    void *p[2];
    for (int cpu = 0; cpu < 2; cpu++) {
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        cr_assert_eq(sched_setaffinity(0, sizeof set, &set), 0);
        sched_yield();
        p[cpu] = bm_alloc_pages(1, 0);
    }
    raise(SIGUSR2);
    wait_report(0);
    static const char *const parts[] = {
        "\nNode 0, zone   Normal ", "\nNode 1, zone   Normal ",
        "nodes 2 (made up: numa_fake)", "zonelist: 0 1", "zonelist: 1 0",
        "node0           node1",
    };
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        cr_assert_geq(count_of(image, parts[i]), 1, "'%s' not in:\n%s", parts[i], image);
    bm_free_pages(p[0], 1);
    bm_free_pages(p[1], 1);
}

/* ---- under load ------------------------------------------------------- */

static _Atomic int stop;

static void *worker(void *arg)
{
    uint64_t seed = 0x9e3779b97f4a7c15ull * (uintptr_t)arg + 1;
    void *slot[512] = { 0 };
    while (!atomic_load(&stop)) {
        uint64_t r = xorshift(&seed);
        unsigned i = (unsigned)(r % 512);
        if (slot[i]) {
            bm_free(slot[i]);
            slot[i] = NULL;
            continue;
        }
        size_t size;
        switch ((r >> 12) % 16) {
        case 0: size = 40000 + (r >> 20) % 300000; break;        /* runs */
        case 1: size = 5000 + (r >> 20) % 30000; break;
        default: size = 8 + (r >> 20) % 1000; break;
        }
        slot[i] = bm_malloc(size);
        cr_assert_not_null(slot[i]);
        memset(slot[i], (int)i, size < 64 ? size : 64);
    }
    for (unsigned i = 0; i < 512; i++)
        bm_free(slot[i]);
    return NULL;
}

Test(live, reports_whole_while_threads_allocate, .timeout = 120)
{
    start();
    pthread_t t[WORKERS];
    for (uintptr_t i = 0; i < WORKERS; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, worker, (void *)i), 0);

    /* One signal at a time, mostly to a worker inside malloc or free, every
     * fifth to this thread: every report is read back whole. */
    long long seq = 0;
    for (int i = 0; i < 300; i++) {
        if (i % 5 == 4)
            raise(SIGUSR2);
        else
            pthread_kill(t[i % WORKERS], SIGUSR2);
        long long next = wait_report(seq);
        cr_assert_eq(next, seq + 1, "report %lld after %lld", next, seq);
        seq = next;
    }

    /* Bursts: every worker and this thread at once. A signal either finds
     * no report being written and writes one, or marks the running one to
     * be followed by another; the image is one whole report whatever
     * raced. */
    uint64_t merged = 0;
    for (int burst = 0; burst < 50; burst++) {
        struct bm_live_counts c0, c1;
        bm_stats_live_counts(&c0);
        for (int i = 0; i < WORKERS; i++)
            pthread_kill(t[i], SIGUSR2);
        raise(SIGUSR2);
        uint64_t end = now_ms() + 5000;
        do {
            bm_stats_live_counts(&c1);
            cr_assert_lt(now_ms(), end, "burst %d: %llu of %d signals handled", burst,
                         (unsigned long long)(c1.signals - c0.signals), WORKERS + 1);
        } while (c1.signals - c0.signals < WORKERS + 1 || c1.writing);
        uint64_t reports = c1.reports - c0.reports, late = c1.merged - c0.merged;
        cr_assert_eq(c1.signals - c0.signals, WORKERS + 1);
        cr_assert(reports >= 1 && reports <= WORKERS + 1, "%llu reports",
                  (unsigned long long)reports);
        cr_assert_geq(reports + late, WORKERS + 1, "a signal neither reported nor merged");
        if (late)
            cr_assert_geq(reports, 2, "signals merged into a report that was not followed");
        merged += late;
        size_t len = read_image();
        assert_report(image, len, (long long)c1.reports);
    }
    cr_log_info("bursts: %llu of %d signals came during another report",
                (unsigned long long)merged, 50 * (WORKERS + 1));

    atomic_store(&stop, 1);
    for (int i = 0; i < WORKERS; i++)
        pthread_join(t[i], NULL);
    /* the allocator's counters say what this thread did, after the joins
     * folded the workers' heaps into the exited threads' totals */
    struct bm_malloc_stats m;
    bm_malloc_stats(&m);
    raise(SIGUSR2);
    size_t len = read_image();
    cr_assert_gt(complete_seq(image, len), 0, "%s", image);
    unsigned long long small = 0;
    const char *p = strstr(image, "\n  small allocations ");
    cr_assert_not_null(p);
    cr_assert_eq(sscanf(p, "\n  small allocations %llu", &small), 1);
    cr_assert_eq(small, m.small_allocs, "live %llu, bm_malloc_stats %llu", small,
                 (unsigned long long)m.small_allocs);
    cr_assert_gt(small, 10000);
    assert_heap_ok();
}

/* ---- locks the interrupted thread holds ------------------------------- */

Test(live, zone_lock_held_by_this_thread, .timeout = 30)
{
    start();
    struct bm_zone *z = &bm_g.zones[0];
    bm_mutex_lock(&z->lock);
    raise(SIGUSR2);             /* a blocking lock here would never return */
    bm_mutex_unlock(&z->lock);
    size_t len = read_image();
    assert_report(image, len, 1);
    cr_assert_not_null(strstr(image, "\nzone 0 busy: counters read without its lock\n"), "%s",
                       image);
    cr_assert_not_null(strstr(image, "Node 0, zone   Normal busy: free lists not walked"), "%s",
                       image);
    cr_assert_not_null(strstr(image, "Node 0, zone   Normal busy: pageblocks not walked"), "%s",
                       image);

    raise(SIGUSR2);
    len = read_image();
    assert_report(image, len, 2);
    cr_assert_null(strstr(image, "zone 0 busy"), "the lock is free again:\n%s", image);
    cr_assert_null(strstr(image, "not walked"), "the lock is free again:\n%s", image);
    assert_heap_ok();
}

/* The value of a summary line of a report. */
static unsigned long long summary_value(const char *img, const char *name)
{
    char key[64], fmt[80];
    snprintf(key, sizeof key, "\n  %s ", name);
    const char *p = strstr(img, key);
    cr_assert_not_null(p, "no '%s' in:\n%s", name, img);
    unsigned long long v = 0;
    snprintf(fmt, sizeof fmt, "%s%%llu", key);
    cr_assert_eq(sscanf(p, fmt, &v), 1);
    return v;
}

/* Every lock of the allocator, as fork's prepare handler holds them: the
 * start-up lock, the heaps list and every heap, the abandoned-slab lists,
 * the huge table, every pageset and the zone. */
static void every_lock(enum bm_fork_step step)
{
    if (step == BM_FORK_PREPARE) {
        bm_init_fork_lock(step);
        bm_heaps_fork_lock(step);
        bm_slab_fork_locks(step);
        bm_huge_fork_lock(step);
        bm_zone_lock_all(&bm_g.zones[0]);
    } else {
        bm_zone_unlock_all(&bm_g.zones[0]);
        bm_huge_fork_lock(step);
        bm_slab_fork_locks(step);
        bm_heaps_fork_lock(step);
        bm_init_fork_lock(step);
    }
}

Test(live, every_lock_held_by_this_thread, .timeout = 30)
{
    start();
    void *keep = bm_malloc(100);
    every_lock(BM_FORK_PREPARE);
    raise(SIGUSR2);
    every_lock(BM_FORK_PARENT);
    size_t len = read_image();
    assert_report(image, len, 1);
    cr_assert_not_null(strstr(image, "\nzone 0 busy: "), "%s", image);
    cr_assert_not_null(strstr(image, "\nheaps lock busy: "), "%s", image);
    cr_assert_not_null(strstr(image, "huge table busy: not read"), "%s", image);
    cr_assert_null(strstr(image, "threads with a heap"), "no heap count without the lock");
    /* this thread's heap is read without the heaps lock */
    cr_assert_eq(summary_value(image, "small allocations"), 2,
                 "the two mallocs of this thread:\n%s", image);
    bm_free(keep);
    assert_heap_ok();
}

/* ---- processes and signals ---------------------------------------------- */

/* A fork child reports into a memfd of its own at the same number; the
 * parent's stays as it was. */
Test(live, fork_child_has_its_own_memfd, .timeout = 30)
{
    start();
    raise(SIGUSR2);
    int fd = bm_stats_live_fd();
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        raise(SIGUSR2);
        size_t len = read_image();
        int ok = bm_stats_live_fd() == fd && complete_seq(image, len) == 1;
        _exit(ok ? 0 : 1);
    }
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child's report");
    size_t len = read_image();
    cr_assert_eq(complete_seq(image, len), 1, "the parent's memfd was written by the child:\n%s",
                 image);
    char link[64], target[128];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    cr_assert_gt(n, 0);
    target[n] = '\0';
    cr_assert_str_eq(target, "/memfd:buddymalloc-stats (deleted)");
}

/* A fork that copies a report half written by another thread: the child,
 * where that thread does not exist, still reports. The writer is held in
 * its handler by the zone lock this thread holds; _Fork skips the
 * allocator's fork handlers, which would wait for that lock. */
static void *idle_thread(void *arg)
{
    (void)arg;
    for (;;)
        pause();
    return NULL;
}

Test(live, fork_during_another_threads_report, .timeout = 30)
{
    start();
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, idle_thread, NULL), 0);
    struct bm_zone *z = &bm_g.zones[0];
    struct bm_live_counts c;
    bm_mutex_lock(&z->lock);
    pthread_kill(t, SIGUSR2);
    do
        bm_stats_live_counts(&c);
    while (!c.writing);
    pid_t pid = _Fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        raise(SIGUSR2);
        size_t len = read_image();
        _exit(complete_seq(image, len) == 1 && strstr(image, "zone 0 busy") ? 0 : 1);
    }
    bm_mutex_unlock(&z->lock);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "no report in the child");
    wait_report(0);
}

/* A program's own handler, installed before the allocator starts, stays. */
static void own_handler(int sig) { (void)sig; }

Test(live, program_handler_is_kept, .init = cr_redirect_stderr)
{
    signal(SIGUSR2, own_handler);
    bm_test_options("stats_signal=USR2");
    bm_free(bm_malloc(1));
    cr_assert_eq(bm_stats_live_fd(), -1);
    struct sigaction sa;
    sigaction(SIGUSR2, NULL, &sa);
    cr_assert_eq(sa.sa_handler, own_handler);
    fflush(stderr);
    cr_assert_stderr_eq_str("buddymalloc: stats_signal=12: the program already handles or "
                            "ignores this signal; no live statistics\n");
}

Test(live, off_by_default)
{
    bm_free(bm_malloc(1));
    cr_assert_eq(bm_stats_live_fd(), -1);
    struct sigaction sa;
    sigaction(SIGUSR2, NULL, &sa);
    cr_assert_eq(sa.sa_handler, SIG_DFL);
}

/* With no lock held, a report counts every thread's heap and the huge
 * mappings: the allocations of a thread that is still alive (its heap is
 * on the live list, not retired) and a huge block show. */
static pthread_barrier_t allocated, reported;

static void *alloc_in_thread(void *arg)
{
    void **out = arg;
    for (int i = 0; i < 1000; i++)
        out[i] = bm_malloc(40);
    pthread_barrier_wait(&allocated);
    pthread_barrier_wait(&reported);        /* alive while main reports */
    return NULL;
}

Test(live, other_threads_and_huge_mappings_are_counted, .timeout = 30)
{
    start();
    static void *blocks[1000];
    void *huge = bm_malloc(8 << 20);
    pthread_barrier_init(&allocated, NULL, 2);
    pthread_barrier_init(&reported, NULL, 2);
    pthread_t t;
    pthread_create(&t, NULL, alloc_in_thread, blocks);
    pthread_barrier_wait(&allocated);
    raise(SIGUSR2);
    size_t len = read_image();
    pthread_barrier_wait(&reported);
    pthread_join(t, NULL);
    assert_report(image, len, 1);
    cr_assert_null(strstr(image, "heaps lock busy"), "no lock was held:\n%s", image);
    cr_assert_null(strstr(image, "huge table busy"), "no lock was held:\n%s", image);
    cr_assert_null(strstr(image, "zone 0 busy"), "no lock was held:\n%s", image);
    cr_assert_geq(summary_value(image, "small allocations"), 1000, "%s", image);
    cr_assert_eq(summary_value(image, "threads with a heap"), 2, "%s", image);
    cr_assert_eq(summary_value(image, "huge allocations"), 1, "%s", image);
    cr_assert_not_null(strstr(image, "huge (own mmap"), "%s", image);
    for (int i = 0; i < 1000; i++)
        bm_free(blocks[i]);
    bm_free(huge);
    assert_heap_ok();
}
