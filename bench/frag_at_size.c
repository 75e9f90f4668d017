/*
 * frag-at-size: issue 15's fragmentation pattern at production size.
 *
 *   1. N blocks (default 1,000,000) of random sizes from 16 B to 4 KiB, each
 *      written whole (about 2 GB live at the default N);
 *   2. a random 90 % of them freed;
 *   3. M blocks (default 100,000) of 8 KiB allocated and written: can the
 *      holes the frees left serve them, or does the heap grow?
 *
 * After each phase: its time, the process's RSS and peak RSS, and - when
 * the allocator preloaded is buddymalloc (its bm_* names found with dlsym)
 * - what it holds: pageblocks per migrate type, free and released pages,
 * slabs. Any allocator can be measured (LD_PRELOAD); the same seed gives
 * each the same requests.
 *
 *   frag-at-size [N [M [SEED]]]
 *
 * Output: one line per phase, "PHASE name=... seconds=... rss_kib=...
 * hwm_kib=... [buddymalloc fields]".
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buddymalloc.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* VmRSS and VmHWM of this process, in KiB. */
static void rss_kib(long *rss, long *hwm)
{
    char line[256];
    FILE *f = fopen("/proc/self/status", "r");
    *rss = *hwm = -1;
    if (!f)
        return;
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "VmRSS:", 6))
            *rss = atol(line + 6);
        else if (!strncmp(line, "VmHWM:", 6))
            *hwm = atol(line + 6);
    }
    fclose(f);
}

static uint64_t rng;
static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

typedef int (*zone_stats_fn)(int, struct bm_zone_stats *);
typedef int (*class_stats_fn)(int, struct bm_class_stats *);
typedef int (*nr_classes_fn)(void);

static void report(const char *phase, double secs)
{
    long rss, hwm;
    rss_kib(&rss, &hwm);
    printf("PHASE name=%s seconds=%.3f rss_kib=%ld hwm_kib=%ld", phase, secs, rss, hwm);
    zone_stats_fn zs = (zone_stats_fn)dlsym(RTLD_DEFAULT, "bm_zone_stats");
    class_stats_fn cs = (class_stats_fn)dlsym(RTLD_DEFAULT, "bm_class_stats");
    nr_classes_fn nc = (nr_classes_fn)dlsym(RTLD_DEFAULT, "bm_nr_classes");
    struct bm_zone_stats z;
    if (zs && zs(0, &z) == 0) {
        printf(" regions=%lu pb_slab=%lu pb_pages=%lu pb_large=%lu pb_reserve=%lu"
               " free_mib=%lu fresh_blocks=%lu dirty_mib=%lu returned_mib=%lu"
               " claimed_slab=%llu claimed_large=%llu released_mib=%llu",
               z.regions, z.pageblocks[0], z.pageblocks[1], z.pageblocks[2], z.pageblocks[3],
               z.free_pages >> 8, z.fresh_blocks,
               z.dirty_pages >> 8, z.returned_pages >> 8,
               (unsigned long long)z.claimed[0], (unsigned long long)z.claimed[2],
               (unsigned long long)(z.released_pages >> 8));
    }
    if (cs && nc) {
        unsigned long slabs = 0, slab_pages = 0;
        uint64_t objs = 0, active = 0;
        for (int c = 0; c < nc(); c++) {
            struct bm_class_stats k;
            if (cs(c, &k) == 0) {
                slabs += k.slabs;
                slab_pages += k.slabs * k.pages_per_slab;
                objs += k.total_objs;
                active += k.active_objs;
            }
        }
        printf(" slabs=%lu slab_mib=%lu slab_use_pct=%.1f", slabs, slab_pages >> 8,
               objs ? 100.0 * (double)active / (double)objs : 0.0);
    }
    printf("\n");
    fflush(stdout);
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    long m = argc > 2 ? atol(argv[2]) : 100000;
    rng = argc > 3 ? strtoull(argv[3], NULL, 0) : 0x9e3779b97f4a7c15ull;
    if (n <= 0 || m < 0 || !rng) {
        fprintf(stderr, "usage: frag-at-size [N [M [SEED]]]\n");
        return 2;
    }
    void **v = malloc((size_t)n * sizeof *v), **w = malloc((size_t)(m ? m : 1) * sizeof *w);
    if (!v || !w) {
        perror("frag-at-size");
        return 1;
    }
    size_t live = 0;
    double t0 = now();
    for (long i = 0; i < n; i++) {
        size_t z = 16 + next() % (4096 - 16 + 1);
        v[i] = malloc(z);
        if (!v[i]) {
            perror("malloc");
            return 1;
        }
        memset(v[i], (int)i, z);
        live += z;
    }
    double t1 = now();
    report("alloc", t1 - t0);
    for (long i = 0; i < n; i++)
        if (next() % 10 < 9) {
            free(v[i]);
            v[i] = NULL;
        }
    double t2 = now();
    report("free90", t2 - t1);
    for (long i = 0; i < m; i++) {
        w[i] = malloc(8192);
        if (!w[i]) {
            perror("malloc");
            return 1;
        }
        memset(w[i], 1, 8192);
    }
    double t3 = now();
    report("alloc8k", t3 - t2);
    printf("LIVE requested_mib_at_peak=%zu\n", live >> 20);
    return 0;
}
