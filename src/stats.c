/*
 * stats.c - introspection in the kernel's formats (/proc/buddyinfo,
 * /proc/pagetypeinfo, debugfs extfrag_index, the pagesets of
 * /proc/zoneinfo) and the counters behind them. A snapshot is taken under
 * the zone lock and formatted afterwards, so printing never holds a lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "buddymalloc.h"
#include "fmt.h"
#include "internal.h"
#include "large.h"
#include "slab.h"

_Static_assert(MAX_ORDER <= BM_MAX_ORDERS, "BM_MAX_ORDERS too small");
_Static_assert(MIGRATE_TYPES == BM_MIGRATE_TYPES, "BM_MIGRATE_TYPES out of date");

static const char *const mt_names[MIGRATE_TYPES] = {
    [MIGRATE_SLAB] = "Slab",
    [MIGRATE_PAGES] = "Pages",
    [MIGRATE_LARGE] = "Large",
    [MIGRATE_RESERVE] = "Reserve",
};

BM_API const char *bm_migratetype_name(int mt)
{
    return mt >= 0 && mt < MIGRATE_TYPES ? mt_names[mt] : "?";
}

/* The zone's scalar counters, each read once. Under the zone lock, or
 * without it in a live report (a statistic: a value may be a moment old). */
#define RD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
static void zone_counters(const struct bm_zone *z, struct bm_zone_stats *s)
{
    unsigned long fresh = RD(z->nr_fresh_blocks);
    s->regions = RD(z->nr_regions);
    s->managed_pages = RD(z->managed_pages);
    s->fresh_blocks = fresh;
    s->free_pages = RD(z->nr_free_pages) + fresh * MAX_ORDER_NR_PAGES;
    s->returned_pages = RD(z->nr_returned_pages) + fresh * MAX_ORDER_NR_PAGES;
    s->resident_pages = s->managed_pages - s->returned_pages;
    s->dirty_pages = RD(z->nr_dirty_pages);
    for (unsigned o = 0; o < MAX_ORDER; o++) {
        s->nr_free[o] = RD(z->free_area[o].nr_free);
        s->alloc[o] = RD(z->c.alloc[o]);
    }
    s->nr_free[MAX_ORDER - 1] += fresh;
    for (int mt = 0; mt < MIGRATE_TYPES; mt++) {
        s->fallback[mt] = RD(z->c.fallback[mt]);
        s->claimed[mt] = RD(z->c.claimed[mt]);
    }
    s->reserve_used = RD(z->c.reserve_used);
    s->fresh_carved = RD(z->c.fresh_carved);
    s->release_calls = RD(z->c.release_calls);
    s->released_pages = RD(z->c.released_pages);
    s->reused_pages = RD(z->c.reused_pages);
    s->threshold_raised = RD(z->c.threshold_raised);
    s->release_threshold_pages = bm_release_threshold(z);
    s->enomem = RD(z->c.enomem);
    s->zeroed_allocs = RD(z->c.zeroed_allocs);
    s->numa_hit = RD(z->c.numa_hit);
    s->numa_miss = RD(z->c.numa_miss);
    s->numa_foreign = atomic_load_explicit(&z->numa_foreign, memory_order_relaxed);
    s->local_node = RD(z->c.local_node);
    s->other_node = RD(z->c.other_node);
    s->remote_free = RD(z->c.remote_free);
    s->slab_remote_free = atomic_load_explicit(&z->slab_remote_free, memory_order_relaxed);
    s->slab_remote_batches = atomic_load_explicit(&z->slab_remote_batches, memory_order_relaxed);
    s->node_full = RD(z->c.node_full);
}

/* What only the zone lock makes readable: the free lists per migrate type
 * and the regions' pageblocks. */
static void zone_lists(const struct bm_zone *z, struct bm_zone_stats *s)
{
    for (unsigned o = 0; o < MAX_ORDER; o++) {
        for (int mt = 0; mt < MIGRATE_TYPES; mt++) {
            const struct bm_list *h = &z->free_area[o].free_list[mt];
            for (const struct bm_list *l = h->next; l != h; l = l->next)
                s->nr_free_type[mt][o]++;
        }
    }
    /* Fresh blocks are free max-order blocks of their pageblocks' type. */
    for (struct bm_region *r = z->regions; r; r = r->next) {
        for (unsigned long pb = REGION_FIRST_PAGE >> pageblock_order;
             pb < r->end >> pageblock_order; pb++)
            s->pageblocks[r->pb_mt[pb]]++;
        for (unsigned long i = r->fresh_next; i < r->end; i += MAX_ORDER_NR_PAGES)
            s->nr_free_type[r->pb_mt[i >> pageblock_order]][MAX_ORDER - 1]++;
    }
}

/* Pageset counters are read without their locks: a statistic. */
static void zone_pagesets(const struct bm_zone *z, struct bm_zone_stats *s)
{
    if (!z->pcp)
        return;
    for (int c = 0; c < bm_g.nr_cpus; c++) {
        const struct bm_pcp *p = &z->pcp[c];
        s->pcp_pages += (unsigned long)RD(p->count);
        s->pcp_alloc_hit += RD(p->alloc_hit);
        s->pcp_refill += RD(p->alloc_refill);
        s->pcp_free_hit += RD(p->free_hit);
        s->pcp_drain += RD(p->free_drain);
        s->pcp_lock_miss += RD(p->lock_miss);
        /* a pageset hit is always meant for its zone; local when the CPU
         * is on the zone's node, and a free there from another node's CPU
         * is a remote free */
        uint64_t hits = RD(p->alloc_hit);
        s->numa_hit += hits;
        if (bm_cpu_node(c) == z->node) {
            s->local_node += hits;
        } else {
            s->other_node += hits;
            s->remote_free += RD(p->free_hit);
        }
    }
}

/* locked: the caller holds the zone lock, released here; without it only
 * the counters are read. */
static void fill(struct bm_zone *z, struct bm_zone_stats *s, bool locked)
{
    memset(s, 0, sizeof *s);
    s->node = z->node;
    zone_counters(z, s);
    if (locked) {
        zone_lists(z, s);
        bm_mutex_unlock(&z->lock);
    }
    zone_pagesets(z, s);
}

static void snapshot(struct bm_zone *z, struct bm_zone_stats *s)
{
    bm_mutex_lock(&z->lock);
    fill(z, s, true);
}

BM_API int bm_nr_zones(void)
{
    bm_ensure_init();
    return bm_g.nr_nodes;
}

BM_API int bm_zone_stats(int n, struct bm_zone_stats *out)
{
    bm_ensure_init();
    if (n < 0 || n >= bm_g.nr_nodes)
        return -1;
    snapshot(&bm_g.zones[n], out);
    return 0;
}

/*
 * What a report is formatted from. The ordinary reports leave both NULL and
 * take each snapshot as they write a table (waiting for every lock); the
 * live report fills them first, waiting for none (stats_signal, below).
 */
struct zone_snap {
    struct bm_zone_stats s;
    bool racy;      /* the zone lock was not had: counters read without it,
                     * free lists and pageblocks not walked */
};
struct view {
    const struct zone_snap *zones;          /* one per zone, or NULL */
    const struct bm_heap_totals *heaps;     /* or NULL: bm_heap_totals() */
    bool live;      /* a live report (stats_signal), which had: */
    bool all_heaps; /* ... every heap; else heaps holds only this thread's
                     * heap and the exited threads' counters, no heap count */
    bool huge_read; /* ... the huge table's counters, in huge[] */
    uint64_t huge[4];   /* allocs, frees, live, bytes */
};

static void zone_prefix(struct bm_buf *b, int node)
{
    bm_puts(b, "Node ");
    bm_puti(b, node, 0);
    bm_puts(b, ", zone   Normal ");
}

/* Numbers, each right-aligned in width columns and followed by a space
 * (the kernel's "%6lu "); put_columns ends the line. */
static void put_row(struct bm_buf *b, const unsigned long *v, int n, int width)
{
    for (int i = 0; i < n; i++) {
        bm_putu(b, v[i], width);
        bm_putc(b, ' ');
    }
}

static void put_columns(struct bm_buf *b, const unsigned long *v, int n, int width)
{
    put_row(b, v, n, width);
    bm_putc(b, '\n');
}

static void write_buddyinfo(struct bm_buf *b, const struct zone_snap *zs)
{
    const struct bm_zone_stats *s = &zs->s;
    zone_prefix(b, s->node);
    put_columns(b, s->nr_free, MAX_ORDER, 6);
}

static void busy_row(struct bm_buf *b, const struct bm_zone_stats *s, const char *what)
{
    zone_prefix(b, s->node);
    bm_puts(b, "busy: ");
    bm_puts(b, what);
    bm_puts(b, " not walked without its lock\n");
}

static void write_pagetypeinfo_free(struct bm_buf *b, const struct zone_snap *zs)
{
    const struct bm_zone_stats *s = &zs->s;
    if (zs->racy) {
        busy_row(b, s, "free lists");
        return;
    }
    for (int mt = 0; mt < MIGRATE_TYPES; mt++) {
        bm_puts(b, "Node ");
        bm_puti(b, s->node, 4);
        bm_puts(b, ", zone   Normal, type ");
        bm_putsw(b, mt_names[mt], 12);
        bm_putc(b, ' ');
        put_columns(b, s->nr_free_type[mt], MAX_ORDER, 6);
    }
}

static void write_pagetypeinfo_blocks(struct bm_buf *b, const struct zone_snap *zs)
{
    const struct bm_zone_stats *s = &zs->s;
    if (zs->racy) {
        busy_row(b, s, "pageblocks");
        return;
    }
    zone_prefix(b, s->node);
    put_columns(b, s->pageblocks, MIGRATE_TYPES, 12);
}

/* The kernel's __fragmentation_index(), in thousandths. */
static int64_t extfrag(const struct bm_zone_stats *s, unsigned order)
{
    uint64_t total = 0, pages = 0, suitable = 0;
    for (unsigned o = 0; o < MAX_ORDER; o++) {
        total += s->nr_free[o];
        pages += (uint64_t)s->nr_free[o] << o;
        if (o >= order)
            suitable += (uint64_t)s->nr_free[o] << (o - order);
    }
    if (!total)
        return 0;
    if (suitable)
        return -1000;
    return 1000 - (int64_t)((1000 + pages * 1000 / (1ULL << order)) / total);
}

static void write_extfrag(struct bm_buf *b, const struct zone_snap *zs)
{
    const struct bm_zone_stats *s = &zs->s;
    zone_prefix(b, s->node);
    for (unsigned o = 0; o < MAX_ORDER; o++) {
        bm_putmilli(b, extfrag(s, o), 6);
        bm_putc(b, ' ');
    }
    bm_putc(b, '\n');
}

/* Zone n as the view has it, or a snapshot taken now into *tmp. */
static const struct zone_snap *zone_view(const struct view *v, int n, struct zone_snap *tmp)
{
    if (v->zones)
        return &v->zones[n];
    snapshot(&bm_g.zones[n], &tmp->s);
    tmp->racy = false;
    return tmp;
}

static void each_zone(struct bm_buf *b, const struct view *v,
                      void (*fn)(struct bm_buf *, const struct zone_snap *))
{
    for (int n = 0; n < bm_g.nr_nodes; n++) {
        struct zone_snap tmp;
        if (!bm_g.zones[n].present)
            continue;
        fn(b, zone_view(v, n, &tmp));
    }
}

static void buddyinfo(struct bm_buf *b, const struct view *v) { each_zone(b, v, write_buddyinfo); }

static void pagetypeinfo(struct bm_buf *b, const struct view *v)
{
    bm_puts(b, "Page block order: ");
    bm_putu(b, pageblock_order, 0);
    bm_puts(b, "\nPages per block:  ");
    bm_putu(b, pageblock_nr_pages, 0);
    bm_puts(b, "\n\n");
    bm_putsw(b, "Free pages count per migrate type at order", -43);
    bm_putc(b, ' ');
    for (unsigned o = 0; o < MAX_ORDER; o++) {
        bm_putu(b, o, 6);
        bm_putc(b, ' ');
    }
    bm_putc(b, '\n');
    each_zone(b, v, write_pagetypeinfo_free);
    bm_putc(b, '\n');
    bm_putsw(b, "Number of blocks type ", -23);
    for (int mt = 0; mt < MIGRATE_TYPES; mt++) {
        bm_putsw(b, mt_names[mt], 12);
        bm_putc(b, ' ');
    }
    bm_putc(b, '\n');
    each_zone(b, v, write_pagetypeinfo_blocks);
}

static void extfrag_index(struct bm_buf *b, const struct view *v)
{
    each_zone(b, v, write_extfrag);
}

static void pagesetinfo(struct bm_buf *b, const struct view *v)
{
    (void)v;                /* counters read without locks either way */
    for (int n = 0; n < bm_g.nr_nodes; n++) {
        struct bm_zone *z = &bm_g.zones[n];
        if (!z->present)
            continue;
        bm_puts(b, "Node ");
        bm_puti(b, n, 0);
        bm_puts(b, ", zone   Normal  pagesets  high: ");
        bm_puti(b, __atomic_load_n(&z->pcp_high, __ATOMIC_RELAXED), 0);
        bm_puts(b, "  batch: ");
        bm_puti(b, __atomic_load_n(&z->pcp_batch, __ATOMIC_RELAXED), 0);
        bm_putc(b, '\n');
        if (!z->pcp) {
            bm_puts(b, "    (pagesets disabled)\n");
            continue;
        }
        for (int c = 0; c < bm_g.nr_cpus; c++) {
            const struct bm_pcp *p = &z->pcp[c];
            uint64_t hits = __atomic_load_n(&p->alloc_hit, __ATOMIC_RELAXED) +
                            __atomic_load_n(&p->free_hit, __ATOMIC_RELAXED);
            int count = __atomic_load_n(&p->count, __ATOMIC_RELAXED);
            if (!hits && !count)
                continue;
            bm_puts(b, "    cpu: ");
            bm_puti(b, c, 3);
            bm_puts(b, "  count: ");
            bm_puti(b, count, 5);
            bm_puts(b, "  alloc: ");
            bm_putu(b, __atomic_load_n(&p->alloc_hit, __ATOMIC_RELAXED), 10);
            bm_puts(b, "  refill: ");
            bm_putu(b, __atomic_load_n(&p->alloc_refill, __ATOMIC_RELAXED), 8);
            bm_puts(b, "  free: ");
            bm_putu(b, __atomic_load_n(&p->free_hit, __ATOMIC_RELAXED), 10);
            bm_puts(b, "  drain: ");
            bm_putu(b, __atomic_load_n(&p->free_drain, __ATOMIC_RELAXED), 8);
            bm_puts(b, "  busy: ");
            bm_putu(b, __atomic_load_n(&p->lock_miss, __ATOMIC_RELAXED), 6);
            bm_putc(b, '\n');
        }
    }
}

static void kv(struct bm_buf *b, const char *k, uint64_t v, const char *unit)
{
    bm_puts(b, "  ");
    bm_putsw(b, k, -22);
    bm_putu(b, v, 14);
    bm_puts(b, unit);
    bm_putc(b, '\n');
}

static void counters(struct bm_buf *b, const struct view *v)
{
    for (int n = 0; n < bm_g.nr_nodes; n++) {
        struct zone_snap tmp;
        if (!bm_g.zones[n].present)
            continue;
        const struct bm_zone_stats s = zone_view(v, n, &tmp)->s;
        bm_puts(b, "Node ");
        bm_puti(b, n, 0);
        bm_puts(b, ", zone   Normal\n");
        kv(b, "regions", s.regions, "");
        kv(b, "managed", s.managed_pages, " pages");
        kv(b, "free", s.free_pages, " pages");
        kv(b, "  of which fresh", s.fresh_blocks * MAX_ORDER_NR_PAGES, " pages");
        kv(b, "on pagesets", s.pcp_pages, " pages");
        kv(b, "resident (bound)", s.resident_pages, " pages");
        kv(b, "returned/untouched", s.returned_pages, " pages");
        kv(b, "free, awaiting release", s.dirty_pages, " pages");
        kv(b, "released (total)", s.released_pages, " pages");
        kv(b, "madvise calls", s.release_calls, "");
        kv(b, "released, reused", s.reused_pages, " pages");
        kv(b, "release threshold", s.release_threshold_pages, " pages");
        kv(b, "  raised by reuse", s.threshold_raised, " times");
        kv(b, "fresh blocks carved", s.fresh_carved, "");
        for (int mt = 0; mt < MIGRATE_PCPTYPES; mt++) {
            char k[40];
            struct bm_buf kb;
            bm_buf_mem(&kb, k, sizeof k);
            bm_puts(&kb, "fallback ");
            bm_puts(&kb, mt_names[mt]);
            kv(b, k, s.fallback[mt], "");
            bm_buf_mem(&kb, k, sizeof k);
            bm_puts(&kb, "claimed by ");
            bm_puts(&kb, mt_names[mt]);
            kv(b, k, s.claimed[mt], " pageblocks");
        }
        kv(b, "reserve used", s.reserve_used, "");
        kv(b, "out of memory", s.enomem, "");
        bm_puts(b, "  allocations per order  ");
        for (unsigned o = 0; o < MAX_ORDER; o++) {
            bm_putc(b, ' ');
            bm_putu(b, s.alloc[o], 0);
        }
        bm_putc(b, '\n');
    }
}

/* ---- NUMA ---------------------------------------------------------------- *
 * The nodes, the policy in force, the distances, and per zone the
 * kernel's numastat counters (numastat(8)'s layout: a column per node)
 * with buddymalloc's own: remote frees, slab objects sent home and in how
 * many batches, and how often a zone declined because its node was low
 * on memory.
 */
static void numa_info(struct bm_buf *b, const struct view *v)
{
    static const char *const policy[] = { "local", "interleave", "bind", "preferred" };
    static const char *const source[] = { "default", "option numa", "process policy" };
    const struct bm_topology *t = &bm_g.topo;
    int nodes[BM_MAX_NODES], nn = 0;
    for (int n = 0; n < bm_g.nr_nodes; n++)
        if (t->online >> n & 1)
            nodes[nn++] = n;
    bm_puts(b, "nodes ");
    bm_putu(b, (unsigned)nn, 0);
    bm_puts(b, t->fake ? " (made up: numa_fake)" : "");
    bm_puts(b, ", policy ");
    bm_puts(b, policy[t->policy]);
    if (t->nodes) {
        bm_puts(b, " nodes ");
        bm_putx(b, t->nodes);
    }
    bm_puts(b, " (");
    bm_puts(b, source[t->source]);
    bm_puts(b, "), zones watch node memory: ");
    bm_puts(b, t->watch_memory ? "yes" : "no");
    bm_puts(b, "\nnode distances:\nnode ");
    for (int i = 0; i < nn; i++)
        bm_putu(b, (unsigned)nodes[i], 4);
    bm_putc(b, '\n');
    for (int i = 0; i < nn; i++) {
        bm_putu(b, (unsigned)nodes[i], 3);
        bm_putc(b, ':');
        for (int j = 0; j < nn; j++)
            bm_putu(b, t->distance[nodes[i]][nodes[j]], 4);
        bm_puts(b, "   zonelist:");
        for (int k = 0; k < t->nr_zonelist[nodes[i]]; k++) {
            bm_putc(b, ' ');
            bm_putu(b, t->zonelist[nodes[i]][k], 0);
        }
        bm_putc(b, '\n');
    }
    /* at most 8 columns a table; one snapshot at a time (small stack: the
     * live report runs in a signal handler) */
    for (int first = 0; first < nn; first += 8) {
        int cols = nn - first < 8 ? nn - first : 8;
        bm_putsw(b, "", -22);
        for (int i = 0; i < cols; i++) {
            char name[16];
            struct bm_buf nb;
            bm_buf_mem(&nb, name, sizeof name);
            bm_puts(&nb, "node");
            bm_putu(&nb, (unsigned)nodes[first + i], 0);
            bm_buf_finish(&nb);
            bm_putsw(b, name, 16);
        }
        bm_putc(b, '\n');
        static const struct { const char *name; size_t off; } rows[] = {
#define ROW(f) { #f, offsetof(struct bm_zone_stats, f) }
            ROW(numa_hit), ROW(numa_miss), ROW(numa_foreign), ROW(local_node),
            ROW(other_node), ROW(remote_free), ROW(slab_remote_free),
            ROW(slab_remote_batches), ROW(node_full),
#undef ROW
        };
        for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
            bm_putsw(b, rows[r].name, -22);
            for (int i = 0; i < cols; i++) {
                struct zone_snap tmp;
                const struct bm_zone_stats *zs = &zone_view(v, nodes[first + i], &tmp)->s;
                bm_putu(b, *(const uint64_t *)((const char *)zs + rows[r].off), 16);
            }
            bm_putc(b, '\n');
        }
    }
}

/* ---- slab classes ------------------------------------------------------ */

BM_API int bm_nr_classes(void) { return BM_NR_CLASSES; }

static void class_stats(unsigned c, const struct bm_heap_totals *t, struct bm_class_stats *o)
{
    const struct bm_class *k = &bm_classes[c];
    memset(o, 0, sizeof *o);
    o->size = k->size;
    o->objs_per_slab = k->capacity;
    o->pages_per_slab = 1u << k->order;
    o->tail_waste = (unsigned)((BM_PAGE_SIZE << k->order) - (size_t)k->capacity * k->size);
    /* the worst request is one byte above the previous class */
    unsigned prev = c ? bm_classes[c - 1].size : 0;
    o->max_waste_permille = (unsigned)((uint64_t)(k->size - prev - 1) * 1000 / k->size);
    o->slabs = t->slabs[c];
    o->abandoned = atomic_load_explicit(&bm_slab_stats[c].abandoned, memory_order_relaxed);
    o->total_objs = (uint64_t)o->slabs * k->capacity;
    o->allocs = t->nalloc[c];
    o->frees = t->nfree[c];
    o->active_objs = t->nalloc[c] > t->nfree[c] ? t->nalloc[c] - t->nfree[c] : 0;
}

BM_API int bm_class_stats(int cls, struct bm_class_stats *out)
{
    struct bm_heap_totals t;
    bm_ensure_init();
    if (cls < 0 || cls >= BM_NR_CLASSES)
        return -1;
    bm_heap_totals(&t);
    class_stats((unsigned)cls, &t, out);
    return 0;
}

/* Everything but the huge mappings, from heap totals; no lock. */
static void malloc_totals(const struct bm_heap_totals *t, struct bm_malloc_stats *out)
{
    memset(out, 0, sizeof *out);
    out->heaps = t->heaps;
    for (unsigned c = 0; c < BM_NR_CLASSES; c++) {
        out->small_allocs += t->nalloc[c];
        out->small_frees += t->nfree[c];
        if (t->nalloc[c] > t->nfree[c])
            out->small_active_bytes += (t->nalloc[c] - t->nfree[c]) * bm_classes[c].size;
    }
    out->large_allocs = t->large_nalloc;
    out->large_frees = t->large_nfree;
    out->large_bytes = t->large_pages > 0 ? (uint64_t)t->large_pages << BM_PAGE_SHIFT : 0;
    out->fork_heaps_retired = atomic_load(&bm_fork_heaps_retired);
    out->fork_heaps_lost = atomic_load(&bm_fork_heaps_lost);
    out->heaps_swept = atomic_load(&bm_heaps_swept);
}

BM_API int bm_malloc_stats(struct bm_malloc_stats *out)
{
    struct bm_heap_totals t;
    bm_ensure_init();
    bm_heap_totals(&t);
    malloc_totals(&t, out);
    bm_huge_stats(&out->huge_allocs, &out->huge_frees, &out->huge_live, &out->huge_bytes);
    return 0;
}

/* What the program did with malloc, in a few lines: the first thing to read
 * (and what the real-program tests check to prove the allocator served). */
static void summary(struct bm_buf *b, const struct view *v)
{
    struct bm_malloc_stats m;
    if (v->heaps)
        malloc_totals(v->heaps, &m);
    else
        bm_malloc_stats(&m);
    unsigned long resident = 0, released = 0;
    for (int n = 0; n < bm_g.nr_nodes; n++) {
        struct zone_snap tmp;
        if (!bm_g.zones[n].present)
            continue;
        const struct zone_snap *zs = zone_view(v, n, &tmp);
        resident += zs->s.resident_pages;
        released += zs->s.released_pages;
    }
    kv(b, "small allocations", m.small_allocs, "");
    kv(b, "small frees", m.small_frees, "");
    kv(b, "small bytes live", m.small_active_bytes, " bytes");
    kv(b, "large allocations", m.large_allocs, "");
    kv(b, "large frees", m.large_frees, "");
    kv(b, "large bytes live", m.large_bytes, " bytes");
    if (v->live && v->huge_read) {
        m.huge_allocs = v->huge[0];
        m.huge_frees = v->huge[1];
        m.huge_bytes = v->huge[3];
    }
    if (!v->live || v->huge_read) {
        kv(b, "huge allocations", m.huge_allocs, "");
        kv(b, "huge frees", m.huge_frees, "");
        kv(b, "huge bytes live", m.huge_bytes, " bytes");
    }
    kv(b, "regions resident", (uint64_t)resident << (BM_PAGE_SHIFT - 10), " KiB (bound)");
    kv(b, "returned to the OS", (uint64_t)released << (BM_PAGE_SHIFT - 10), " KiB (total)");
    if (!v->live || v->all_heaps)
        kv(b, "threads with a heap", m.heaps, "");
    kv(b, "heaps retired at fork", m.fork_heaps_retired, "");
    kv(b, "heaps lost at fork", m.fork_heaps_lost, "");
    kv(b, "quiet heaps swept", m.heaps_swept, "");
    if (bm_g.opt.harden >= BM_HARDEN_SECURE) {
        kv(b, "slabs with a guard page", atomic_load(&bm_guard_stats.pages), "");
        kv(b, "  without (mprotect failed)", atomic_load(&bm_guard_stats.failed), "");
        kv(b, "  pages kept out of use", atomic_load(&bm_guard_stats.leaked), "");
    }
}

/* /proc/slabinfo, version 2.1, one line per size class named bm-SIZE; then
 * the geometry and waste of each class. */
static void slabinfo(struct bm_buf *b, const struct view *v)
{
    struct bm_heap_totals now;
    struct bm_class_stats cs[BM_NR_CLASSES];
    const struct bm_heap_totals *t = v->heaps;
    if (!t) {
        bm_heap_totals(&now);
        t = &now;
    }
    for (unsigned c = 0; c < BM_NR_CLASSES; c++)
        class_stats(c, t, &cs[c]);

    bm_puts(b, "slabinfo - version: 2.1\n"
               "# name            <active_objs> <num_objs> <objsize> <objperslab> "
               "<pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata "
               "<active_slabs> <num_slabs> <sharedavail>\n");
    for (unsigned c = 0; c < BM_NR_CLASSES; c++) {
        char name[24];
        struct bm_buf nb;
        bm_buf_mem(&nb, name, sizeof name);
        bm_puts(&nb, "bm-");
        bm_putu(&nb, cs[c].size, 0);
        bm_putsw(b, name, -17);
        bm_putc(b, ' ');
        const unsigned long objs[] = { cs[c].active_objs, cs[c].total_objs, cs[c].size };
        const unsigned long geo[] = { cs[c].objs_per_slab, cs[c].pages_per_slab };
        const unsigned long slabdata[] = { cs[c].slabs, cs[c].slabs, 0 };
        put_row(b, objs, 3, 6);
        put_row(b, geo, 2, 4);
        bm_puts(b, ": tunables    0    0    0 : slabdata ");
        put_columns(b, slabdata, 3, 6);
    }
    bm_puts(b, "\n# class geometry: tail waste per slab, worst internal waste of a request, "
               "slabs left by exited threads\n");
    bm_puts(b, "#  size objs pages tail_waste max_waste abandoned   allocs    frees\n");
    for (unsigned c = 0; c < BM_NR_CLASSES; c++) {
        bm_putu(b, cs[c].size, 7);
        bm_putu(b, cs[c].objs_per_slab, 5);
        bm_putu(b, cs[c].pages_per_slab, 6);
        bm_putu(b, cs[c].tail_waste, 9);
        bm_puts(b, "B");
        bm_putmilli(b, (int64_t)cs[c].max_waste_permille * 100, 9);
        bm_puts(b, "%");
        bm_putu(b, cs[c].abandoned, 10);
        bm_putu(b, cs[c].allocs, 9);
        bm_putu(b, cs[c].frees, 9);
        bm_putc(b, '\n');
    }
    if (v->live && !v->all_heaps)
        return;
    bm_puts(b, "threads with a heap: ");
    bm_putu(b, t->heaps, 0);
    bm_putc(b, '\n');
}

static void huge_info(struct bm_buf *b, const struct view *v)
{
    if (v->live && !v->huge_read) {
        /* its lock could not be had (the interrupted thread may hold it) */
        bm_puts(b, "huge table busy: not read in this live report\n");
        return;
    }
    uint64_t allocs, frees, live, bytes;
    if (v->live) {
        allocs = v->huge[0], frees = v->huge[1], live = v->huge[2], bytes = v->huge[3];
    } else {
        bm_huge_stats(&allocs, &frees, &live, &bytes);
    }
    bm_puts(b, "huge (own mmap, above ");
    bm_putu(b, (BM_PAGE_SIZE << (MAX_ORDER - 1)) >> 10, 0);
    bm_puts(b, " KiB): allocs ");
    bm_putu(b, allocs, 0);
    bm_puts(b, ", frees ");
    bm_putu(b, frees, 0);
    bm_puts(b, ", live ");
    bm_putu(b, live, 0);
    bm_puts(b, ", bytes ");
    bm_putu(b, bytes, 0);
    bm_putc(b, '\n');
}

static size_t to_mem(void (*fn)(struct bm_buf *, const struct view *), char *buf, size_t size)
{
    struct bm_buf b;
    const struct view now = { 0 };
    bm_ensure_init();
    bm_buf_mem(&b, buf, size);
    fn(&b, &now);
    return bm_buf_finish(&b);
}

BM_API size_t bm_buddyinfo(char *buf, size_t size) { return to_mem(buddyinfo, buf, size); }
BM_API size_t bm_pagetypeinfo(char *buf, size_t size) { return to_mem(pagetypeinfo, buf, size); }
BM_API size_t bm_extfrag_index(char *buf, size_t size) { return to_mem(extfrag_index, buf, size); }
BM_API size_t bm_pagesetinfo(char *buf, size_t size) { return to_mem(pagesetinfo, buf, size); }
BM_API size_t bm_numastat(char *buf, size_t size) { return to_mem(numa_info, buf, size); }
BM_API size_t bm_slabinfo(char *buf, size_t size) { return to_mem(slabinfo, buf, size); }

static void all_stats(struct bm_buf *b);

BM_API void bm_stats_fd(int fd)
{
    char scratch[1024];
    struct bm_buf b;
    bm_ensure_init();
    bm_buf_fd(&b, fd, scratch, sizeof scratch);
    all_stats(&b);
    bm_buf_finish(&b);
}

static void to_file(void *ctx, const char *s, size_t n) { fwrite(s, 1, n, (FILE *)ctx); }

/* For programs: through the FILE's own buffer. The text is formatted from
 * snapshots after every lock is dropped, so fwrite may allocate. */
BM_API void bm_stats(FILE *f)
{
    char scratch[1024];
    struct bm_buf b;
    bm_ensure_init();
    bm_buf_sink(&b, to_file, f, scratch, sizeof scratch);
    all_stats(&b);
    bm_buf_finish(&b);
    fflush(f);
}

/* Every table, each under "--- NAME ---", from the view. */
static void sections(struct bm_buf *b, const struct view *v)
{
    static const struct {
        const char *name;
        void (*fn)(struct bm_buf *, const struct view *);
    } table[] = {
        { "summary", summary },           { "buddyinfo", buddyinfo },
        { "pagetypeinfo", pagetypeinfo }, { "extfrag_index", extfrag_index },
        { "pagesets", pagesetinfo },      { "zone counters", counters },
        { "slabinfo", slabinfo },         { "huge", huge_info },
        { "numa", numa_info },
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        bm_puts(b, "--- ");
        bm_puts(b, table[i].name);
        bm_puts(b, " ---\n");
        table[i].fn(b, v);
    }
}

static void all_stats(struct bm_buf *b)
{
    const struct view now = { 0 };
    bm_puts(b, "=== buddymalloc " BM_VERSION " ===\n");
    sections(b, &now);
}

/* ---- statistics at exit (option stats) --------------------------------- */

/* A copy of stderr taken at start-up: programs may close fd 2 before
 * they exit (coreutils' close_stdout does), after which a report written
 * to 2 would vanish. Close-on-exec: a new program takes its own. */
static int stats_err_fd = -1;

void bm_stats_exit_setup(void)
{
    const struct bm_options *o = &bm_g.opt;
    if (o->stats_at_exit && !o->stats_file[0] && stats_err_fd < 0)
        stats_err_fd = fcntl(2, F_DUPFD_CLOEXEC, 10);
}

/* The process's name from /proc/self/comm, read without stdio. */
static void put_comm(struct bm_buf *b)
{
    char comm[32];
    int fd = open("/proc/self/comm", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, comm, sizeof comm) : -1;
    if (fd >= 0)
        close(fd);
    while (n > 0 && comm[n - 1] == '\n')
        n--;
    if (n > 0)
        bm_putn(b, comm, (size_t)n);
    else
        bm_putc(b, '?');
}

/*
 * A destructor: it runs after the program's atexit handlers and, the
 * library being initialised before the program's own libraries, after their
 * destructors too. Nothing is printed by a process that leaves through
 * _exit or a signal, nor, with stats_pid, by any process but that one
 * (`buddymalloc run --stats` names the program so its children stay quiet).
 */
__attribute__((destructor)) static void stats_at_exit(void)
{
    if (!atomic_load_explicit(&bm_g.initialised, memory_order_acquire)) {
        /* options are read at the first allocation; a program may make none */
        const char *env = getenv("BUDDYMALLOC_OPTIONS");
        if (!env || !strstr(env, "stats"))
            return;
        bm_ensure_init();
    }
    const struct bm_options *o = &bm_g.opt;
    if (!o->stats_at_exit || (o->stats_pid && o->stats_pid != (long)getpid()))
        return;
    int fd = stats_err_fd >= 0 ? stats_err_fd : 2;
    if (o->stats_file[0]) {
        fd = open(o->stats_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd < 0) {
            char scratch[320];
            struct bm_buf e;
            bm_buf_fd(&e, 2, scratch, sizeof scratch);
            bm_puts(&e, "buddymalloc: cannot open stats_file '");
            bm_puts(&e, o->stats_file);
            bm_puts(&e, "'; statistics go to stderr\n");
            bm_buf_finish(&e);
            fd = 2;
        }
    }
    /* one write for the whole report when it fits: processes appending to
     * the same file (stats_pid=0) do not interleave */
    char scratch[64 << 10];
    struct bm_buf b;
    bm_buf_fd(&b, fd, scratch, sizeof scratch);
    bm_puts(&b, "=== buddymalloc statistics at exit: pid ");
    bm_puti(&b, getpid(), 0);
    bm_puts(&b, " (");
    put_comm(&b);
    bm_puts(&b, ") ===\n");
    all_stats(&b);
    bm_buf_finish(&b);
    if (fd != 2 && fd != stats_err_fd)
        close(fd);
}

/* ---- live statistics (option stats_signal) ------------------------------ *
 *
 * At start-up a memfd named buddymalloc-stats is made and a handler for the
 * chosen signal installed. Each signal rewrites the memfd from offset 0: a
 * header line (pid, program, signal, sequence number, monotonic time),
 * every table, and a last line "=== end SEQ ===" with the same number, so a
 * reader knows the report is whole. `buddymalloc stat PID` finds the memfd
 * in /proc/PID/fd, sends the signal and waits for that line.
 *
 * The handler may interrupt a thread inside the allocator holding any of
 * its locks, so it waits for none:
 *  - a zone lock is tried for a bounded time (another thread lets go within
 *    microseconds, the interrupted one never would); without it the zone's
 *    counters are read as they are, its lists are not walked, and the
 *    report names the zone busy;
 *  - pageset counters are read without their locks, as in every report;
 *  - the heaps list (heap.c) and the huge table (large.c) are tried the
 *    same way (bm_heap_totals_try, bm_huge_stats_try); without the heaps
 *    lock the report sums the exited threads' counters and the
 *    interrupted thread's own heap, without the table's it leaves the huge
 *    mappings out, and says so.
 * Nothing allocates or uses stdio. The snapshots and the text buffer are
 * static (one report at a time, see live_handler), so the handler's stack
 * stays small on small thread stacks.
 */
#define LIVE_FD_MIN 100         /* above the numbers programs pick themselves */
#define LIVE_YIELDS 8           /* zone lock: tries with sched_yield between, */
#define LIVE_SLEEPS 100         /* ... then with 100 us sleeps: ~10 ms at most */

static int live_fd = -1;
static pid_t live_pid;
static dev_t live_dev;
static ino_t live_ino;
static _Atomic uint64_t live_seq;   /* written by the report only */
static off_t live_off;
/* 0 idle, else the writer's pid << 2 | 1 (writing) or | 2 (writing and
 * asked again); see live_handler */
static _Atomic long live_state;
static _Atomic uint64_t live_signals, live_merged;
static char live_text[8192];
static struct zone_snap live_zones[BM_MAX_NODES];
static struct bm_heap_totals live_heaps;

int bm_stats_live_fd(void) { return live_fd; }

void bm_stats_live_counts(struct bm_live_counts *c)
{
    c->signals = atomic_load(&live_signals);
    c->reports = atomic_load(&live_seq);
    c->merged = atomic_load(&live_merged);
    c->writing = atomic_load(&live_state) != 0;
}

/*
 * The memfd must be this process's own and still at live_fd: a fork child
 * shares its parent's file (it gets a new one, at the same number), and a
 * program may close every descriptor or dup2 onto ours, in which case the
 * number is no longer ours and a report must never go there.
 */
static bool live_open(void)
{
    struct stat st;
    bool ours = live_fd >= 0 && fstat(live_fd, &st) == 0 && st.st_dev == live_dev &&
                st.st_ino == live_ino;
    if (ours && live_pid == getpid())
        return true;
    int fd = memfd_create("buddymalloc-stats", MFD_CLOEXEC);
    if (fd < 0)
        return false;
    int target = ours ? dup3(fd, live_fd, O_CLOEXEC) : fcntl(fd, F_DUPFD_CLOEXEC, LIVE_FD_MIN);
    if (target >= 0) {
        close(fd);
        fd = target;
    }
    if (fstat(fd, &st) != 0) {
        close(fd);
        return false;
    }
    live_fd = fd;
    live_dev = st.st_dev;
    live_ino = st.st_ino;
    live_pid = getpid();
    live_seq = 0;
    return true;
}

static void live_sink(void *ctx, const char *s, size_t n)
{
    (void)ctx;
    while (n) {
        ssize_t w = pwrite(live_fd, s, n, live_off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;             /* nowhere to report a failed report */
        live_off += w;
        s += w;
        n -= (size_t)w;
    }
}

static bool live_trylock(bm_mutex_t *m)
{
    for (int i = 0; i < LIVE_YIELDS + LIVE_SLEEPS; i++) {
        if (bm_mutex_trylock(m))
            return true;
        if (i < LIVE_YIELDS) {
            sched_yield();
        } else {
            struct timespec ts = { 0, 100000 };
            nanosleep(&ts, NULL);
        }
    }
    return false;
}

/* The heaps' counters readable without the heaps lock: the exited threads'
 * totals and this thread's own heap, which only this thread writes. */
static void live_heap_totals(struct bm_heap_totals *t)
{
    const struct bm_heap *h = bm_tls_heap;
    memset(t, 0, sizeof *t);
    for (unsigned c = 0; c < BM_NR_CLASSES; c++) {
        t->nalloc[c] = atomic_load(&bm_retired_nalloc[c]);
        t->nfree[c] = atomic_load(&bm_retired_nfree[c]);
        t->slabs[c] = atomic_load(&bm_slab_stats[c].slabs);
        if (h != &bm_heap_empty) {
            t->nalloc[c] += h->nalloc[c];
            t->nfree[c] += h->nfree[c];
            t->slabs[c] += (unsigned long)h->slab_net[c];
        }
    }
    t->large_nalloc = atomic_load(&bm_retired_large_nalloc);
    t->large_nfree = atomic_load(&bm_retired_large_nfree);
    t->large_pages = atomic_load(&bm_retired_large_pages);
    if (h != &bm_heap_empty) {
        t->large_nalloc += h->large_nalloc;
        t->large_nfree += h->large_nfree;
        t->large_pages += h->large_pages;
    }
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The first line, which `buddymalloc stat` parses: ") signal S seq N ",
 * then the CLOCK_MONOTONIC time of the report in seconds. */
static void live_header(struct bm_buf *b, uint64_t seq, uint64_t ns)
{
    bm_puts(b, "=== buddymalloc live statistics: pid ");
    bm_puti(b, getpid(), 0);
    bm_puts(b, " (");
    put_comm(b);
    bm_puts(b, ") signal ");
    bm_puti(b, bm_g.opt.stats_signal, 0);
    bm_puts(b, " seq ");
    bm_putu(b, seq, 0);
    bm_puts(b, " monotonic ");
    bm_putu(b, ns / 1000000000u, 0);
    bm_putc(b, '.');
    for (uint64_t us = ns / 1000 % 1000000, d = 100000; d; d /= 10)
        bm_putc(b, (char)('0' + us / d % 10));
    bm_puts(b, " ===\n");
}

static void live_end(struct bm_buf *b, uint64_t seq)
{
    bm_puts(b, "=== end ");
    bm_putu(b, seq, 0);
    bm_puts(b, " ===\n");
}

/* Rewrites the memfd with a whole report; live_busy is held. */
static void live_report(void)
{
    uint64_t t0 = mono_ns();
    if (!live_open())
        return;
    uint64_t seq = ++live_seq;
    for (int n = 0; n < bm_g.nr_nodes; n++) {
        struct bm_zone *z = &bm_g.zones[n];
        bool locked = live_trylock(&z->lock);
        fill(z, &live_zones[n].s, locked);
        live_zones[n].racy = !locked;
    }
    struct view v = { live_zones, &live_heaps, true, false, false, { 0 } };
    v.all_heaps = bm_heap_totals_try(&live_heaps, live_trylock);
    if (!v.all_heaps)
        live_heap_totals(&live_heaps);
    v.huge_read = bm_huge_stats_try(&v.huge[0], &v.huge[1], &v.huge[2], &v.huge[3], live_trylock);

    if (ftruncate(live_fd, 0) != 0)
        return;
    live_off = 0;
    struct bm_buf b;
    bm_buf_sink(&b, live_sink, NULL, live_text, sizeof live_text);
    live_header(&b, seq, t0);
    bm_puts(&b, "signals that came during a report: ");
    bm_putu(&b, atomic_load(&live_merged), 0);
    bm_puts(&b, " (answered by the report after it)");
    bm_putc(&b, '\n');
    if (!v.all_heaps)
        bm_puts(&b, "heaps lock busy: counted from this thread's heap and those of exited "
                    "threads only\n");
    for (int n = 0; n < bm_g.nr_nodes; n++) {
        if (!live_zones[n].racy)
            continue;
        bm_puts(&b, "zone ");
        bm_puti(&b, n, 0);
        bm_puts(&b, " busy: counters read without its lock\n");
    }
    sections(&b, &v);
    bm_puts(&b, "--- report ---\ntook ");
    bm_putu(&b, (mono_ns() - t0) / 1000, 0);
    bm_puts(&b, " us, ");
    bm_putu(&b, b.total + b.len, 0);
    bm_puts(&b, " bytes before this line\n");
    live_end(&b, seq);
    bm_buf_finish(&b);
}

/*
 * One report at a time, and no waiting: a signal that comes while another
 * thread writes a report only marks that it was asked again (state 2) and
 * returns; the writer then writes one more report, which starts after that
 * signal came, so `buddymalloc stat` gets a fresh one instead of a timeout.
 * (Dropping it would lose a request that lands between the writer's last
 * line and its release of the state.) A flood of signals keeps one thread
 * writing at most LIVE_RERUNS more times. The state names the writer's
 * process: a fork child that inherits a report being written by one of its
 * parent's threads (which do not exist in the child) takes it as idle.
 * errno is kept for the interrupted code.
 */
#define LIVE_RERUNS 4

static void live_handler(int sig, siginfo_t *info, void *uctx)
{
    (void)sig;
    (void)info;
    (void)uctx;
    int saved = errno;
    const long writing = (long)getpid() << 2 | 1, again = writing + 1;
    for (;;) {
        long s = atomic_load(&live_state);
        if (s >> 2 != writing >> 2) {
            if (atomic_compare_exchange_strong(&live_state, &s, writing))
                break;
        } else if (s == again || atomic_compare_exchange_strong(&live_state, &s, again)) {
            atomic_fetch_add(&live_merged, 1);
            atomic_fetch_add(&live_signals, 1);
            errno = saved;
            return;
        }
    }
    for (int run = 0;; run++) {
        live_report();
        long s = writing;
        if (atomic_compare_exchange_strong(&live_state, &s, 0))
            break;
        /* asked again while writing (only this thread leaves that state) */
        if (run == LIVE_RERUNS) {
            atomic_store(&live_state, 0);
            break;
        }
        atomic_store(&live_state, writing);
    }
    atomic_fetch_add(&live_signals, 1);     /* last: its counts are final */
    errno = saved;
}

static void live_message(const char *what)
{
    char scratch[256];
    struct bm_buf b;
    bm_buf_fd(&b, 2, scratch, sizeof scratch);
    bm_puts(&b, "buddymalloc: stats_signal=");
    bm_puti(&b, bm_g.opt.stats_signal, 0);
    bm_puts(&b, ": ");
    bm_puts(&b, what);
    bm_puts(&b, "; no live statistics\n");
    bm_buf_finish(&b);
}

/* At bootstrap, after the allocator is set up (init.c). A handler the
 * program installed before its first malloc, or an ignored signal, is left
 * as it is. */
void bm_stats_live_setup(void)
{
    int sig = bm_g.opt.stats_signal;
    struct sigaction old, sa;
    if (!sig)
        return;
    if (sigaction(sig, NULL, &old) != 0) {
        live_message("sigaction failed");
        return;
    }
    if ((old.sa_flags & SA_SIGINFO) || old.sa_handler != SIG_DFL) {
        live_message("the program already handles or ignores this signal");
        return;
    }
    if (!live_open()) {
        live_message("memfd_create failed");
        return;
    }
    char scratch[256];
    struct bm_buf b;
    live_off = 0;
    bm_buf_sink(&b, live_sink, NULL, scratch, sizeof scratch);
    live_header(&b, 0, mono_ns());
    bm_puts(&b, "no report yet: send the signal (buddymalloc stat PID)\n");
    live_end(&b, 0);
    bm_buf_finish(&b);
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = live_handler;
    sa.sa_flags = SA_RESTART | SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    if (sigaction(sig, &sa, NULL) != 0)
        live_message("sigaction failed");
}
