/*
 * init.c - bootstrap: lazily on the first call from whatever thread, before
 * or after main, without allocating (see docs/design.md#bootstrap).
 */
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "fmt.h"
#include "internal.h"
#include "slab.h"

struct bm_global bm_g;
bool bm_numa_multi;
static bm_spinlock_t init_lock;

/* Highest CPU number + 1 from /sys/devices/system/cpu/possible ("0-3,8"),
 * read with open/read into a stack buffer: sysconf may allocate. */
static int possible_cpus(void)
{
    char buf[512];
    int fd = open("/sys/devices/system/cpu/possible", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 256;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 256;
    buf[n] = '\0';
    long max = -1, v = 0;
    for (char *s = buf; *s; s++) {
        if (*s >= '0' && *s <= '9') {
            v = v * 10 + (*s - '0');
            if (v > max)
                max = v;
        } else {
            v = 0;
        }
    }
    return max >= 0 ? (int)max + 1 : 256;
}

/* The zones of the policy's nodes. The zone of the CPU that bootstraps gets
 * its first region (with the reserve and the pagesets, bm_region_add) now;
 * the others when they are first asked for memory, so that a process that
 * stays on one node touches no other node's memory. */
static void zone_bootstrap(struct bm_zone *z, int node, bool now)
{
    bm_zone_init(z, node);
    if (!(bm_g.topo.allowed >> node & 1))
        return;
    z->present = true;
    if (!now)
        return;
    bm_mutex_lock(&z->lock);
    bm_region_add(z);
    bm_mutex_unlock(&z->lock);
}

/* verbose=1: what this process runs with, once, at bootstrap. */
static void announce(void)
{
    static const char *const harden[] = { "", "default", "secure" };
    static const char *const thp[] = { "default", "always", "never" };
    static const char *const numa[] = { "local", "interleave", "bind", "preferred" };
    static const char *const release[] = { "dontneed", "free", "none" };
    const struct bm_options *o = &bm_g.opt;
    char scratch[512];
    struct bm_buf b;
    bm_buf_fd(&b, 2, scratch, sizeof scratch);
    bm_puts(&b, "buddymalloc " BM_VERSION ": pid ");
    bm_puti(&b, getpid(), 0);
    bm_puts(&b, ", ");
    bm_putu(&b, (unsigned)bm_g.nr_cpus, 0);
    bm_puts(&b, " CPUs, ");
    bm_putu(&b, (unsigned)bm_g.nr_nodes, 0);
    bm_puts(&b, " node(s); harden=");
    bm_puts(&b, harden[o->harden]);
    bm_puts(&b, BM_HARDEN_LINKS ? " (links encoded)" : " (links plain: built without)");
    bm_puts(&b, ", thp=");
    bm_puts(&b, thp[o->thp]);
    bm_puts(&b, ", numa=");
    bm_puts(&b, numa[bm_g.topo.policy]);
    if (bm_g.topo.nodes) {
        bm_puts(&b, " nodes ");
        bm_putx(&b, bm_g.topo.nodes);
    }
    if (bm_g.topo.source == BM_POLICY_PROCESS)
        bm_puts(&b, " (the process's policy)");
    bm_puts(&b, ", pcp=");
    bm_puts(&b, o->pcp_enabled ? "on" : "off");
    bm_puts(&b, ", release=");
    bm_puts(&b, release[o->release_mode]);
    bm_puts(&b, " after ");
    bm_putu(&b, o->release_delay_ns / 1000000, 0);
    bm_puts(&b, " ms or above ");
    bm_putu(&b, (o->release_threshold_pages << BM_PAGE_SHIFT) >> 10, 0);
    bm_puts(&b, " KiB free (up to ");
    bm_putu(&b, (o->release_threshold_max_pages << BM_PAGE_SHIFT) >> 10, 0);
    bm_puts(&b, " KiB)");
    bm_puts(&b, o->release_peak ? " beyond the in-use peak" : "");
    bm_puts(&b, BM_VALGRIND ? ", valgrind client requests on" : "");
    bm_putc(&b, '\n');
    bm_buf_finish(&b);
}

/* Out of line and cold: runs once. Concurrent first callers wait on a spin
 * lock; nothing here can call back into the allocator. */
BM_COLD void bm_init_slow(void)
{
    bm_spin_lock(&init_lock);
    if (!atomic_load_explicit(&bm_g.initialised, memory_order_acquire)) {
        bm_options_defaults(&bm_g.opt);
        bm_options_parse(&bm_g.opt, getenv("BUDDYMALLOC_OPTIONS"));
        if (bm_g.opt.fail_mmap)
            bm_fault_arm(BM_FAULT_MMAP, bm_g.opt.fail_mmap, bm_g.opt.fail_mmap_count);
        if (bm_g.opt.fail_madvise)
            bm_fault_arm(BM_FAULT_MADVISE, bm_g.opt.fail_madvise, bm_g.opt.fail_madvise_count);
        bm_g.nr_cpus = possible_cpus();
        if (bm_g.nr_cpus > BM_MAX_CPUS)     /* the rest share pagesets */
            bm_g.nr_cpus = BM_MAX_CPUS;
        bm_g.rseq_ok = __rseq_size > 0;
        bm_topology_init();
        bm_link_key_init();
        if (bm_g.opt.verbose)
            announce();
        bm_size_classes_init();
        bm_slabs_init();
        bm_heaps_init();
        int first = bm_zone_now();
        for (int n = 0; n < bm_g.nr_nodes; n++)
            zone_bootstrap(&bm_g.zones[n], n, n == first);
        atomic_store_explicit(&bm_g.initialised, 1, memory_order_release);
        bm_stats_exit_setup();
        bm_stats_live_setup();
    }
    bm_spin_unlock(&init_lock);
}

/* fork (fork.c): no bootstrap may be half done in the child. */
void bm_init_fork_lock(enum bm_fork_step step) { bm_fork_spin(&init_lock, step); }
