/*
 * topology.c - the NUMA nodes as buddymalloc sees them, and the memory
 * policy its zones follow (docs/numa.md).
 *
 * Read once at bootstrap from sysfs with open/read into stack buffers:
 * libnuma's own constructor allocates, so only its system-call wrappers
 * (numaif.h: get_mempolicy, mbind) are used here. A machine or kernel
 * without NUMA (no /sys/devices/system/node) is one node.
 *
 * What comes out of it (struct bm_topology in types.h):
 *   cpu_node[cpu]   the node a CPU belongs to;
 *   cpu_zone[cpu]   the zone a thread running on that CPU allocates from
 *                   first: its own node's under the default policy, the
 *                   nearest allowed one under bind, the preferred one ...;
 *   zonelist[n]     the zones to try for an allocation meant for zone n:
 *                   n, then every other allowed zone, nearest first (the
 *                   kernel's build_zonelists: distance, then node number).
 */
#include <fcntl.h>
#include <numaif.h>
#include <string.h>
#include <unistd.h>

#include "fmt.h"
#include "internal.h"

#define NODE_DIR "/sys/devices/system/node/"

/* A sysfs file into buf (NUL-terminated); the length, or -1. */
static long read_file(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    long n = read(fd, buf, size - 1);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    return n;
}

/* NODE_DIR "node<n>/<leaf>" */
static long read_node_file(int node, const char *leaf, char *buf, size_t size)
{
    char path[96];
    struct bm_buf b;
    bm_buf_mem(&b, path, sizeof path);
    bm_puts(&b, NODE_DIR "node");
    bm_putu(&b, (unsigned)node, 0);
    bm_putc(&b, '/');
    bm_puts(&b, leaf);
    bm_buf_finish(&b);
    return read_file(path, buf, size);
}

/* Calls fn(ctx, i) for every i of a sysfs list such as "0-3,8,10-11". */
static void for_each_in_list(const char *s, void (*fn)(void *, unsigned long), void *ctx)
{
    while (*s) {
        if (*s < '0' || *s > '9') {
            s++;
            continue;
        }
        unsigned long a = 0, b;
        while (*s >= '0' && *s <= '9')
            a = a * 10 + (unsigned long)(*s++ - '0');
        b = a;
        if (*s == '-') {
            s++;
            b = 0;
            while (*s >= '0' && *s <= '9')
                b = b * 10 + (unsigned long)(*s++ - '0');
        }
        for (unsigned long i = a; i <= b && i < 1UL << 20; i++)
            fn(ctx, i);
    }
}

static void add_node_bit(void *ctx, unsigned long i)
{
    if (i < BM_MAX_NODES)
        *(uint64_t *)ctx |= 1ull << i;
}

struct cpu_ctx { struct bm_topology *t; int node; };
static void set_cpu_node(void *ctx, unsigned long cpu)
{
    struct cpu_ctx *c = ctx;
    if (cpu < BM_MAX_CPUS)
        c->t->cpu_node[cpu] = (uint8_t)c->node;
}

/* One distance row: "10 20 40" for node n, read into t->distance[n]. */
static void read_distances(struct bm_topology *t, int n)
{
    char buf[4 * BM_MAX_NODES + 16];
    for (int m = 0; m < BM_MAX_NODES; m++)
        t->distance[n][m] = n == m ? 10 : 20;   /* the kernel's default */
    if (read_node_file(n, "distance", buf, sizeof buf) < 0)
        return;
    /* the row lists the online nodes in order */
    int m = 0;
    for (const char *s = buf; *s && m < BM_MAX_NODES;) {
        if (*s < '0' || *s > '9') {
            s++;
            continue;
        }
        unsigned v = 0;
        while (*s >= '0' && *s <= '9')
            v = v * 10 + (unsigned)(*s++ - '0');
        while (m < BM_MAX_NODES && !(t->online >> m & 1))
            m++;
        if (m < BM_MAX_NODES)
            t->distance[n][m++] = (uint8_t)(v > 255 ? 255 : v);
    }
}

/* The node nearest to n among the nodes of mask (n itself if in it). */
static int nearest_in(const struct bm_topology *t, int n, uint64_t mask)
{
    int best = -1;
    for (int m = 0; m < BM_MAX_NODES; m++)
        if ((mask >> m & 1) && (best < 0 || t->distance[n][m] < t->distance[n][best] ||
                                (m == n && t->distance[n][m] == t->distance[n][best])))
            best = m;
    return best < 0 ? 0 : best;
}

/* zonelist[n]: the allowed zones by distance from n (ties: node number). */
static void build_zonelists(struct bm_topology *t)
{
    for (int n = 0; n < BM_MAX_NODES; n++) {
        if (!(t->online >> n & 1))
            continue;
        uint64_t left = t->allowed;
        int k = 0;
        if (left >> n & 1) {
            t->zonelist[n][k++] = (uint8_t)n;
            left &= ~(1ull << n);
        }
        while (left) {
            int m = nearest_in(t, n, left);
            t->zonelist[n][k++] = (uint8_t)m;
            left &= ~(1ull << m);
        }
        t->nr_zonelist[n] = (uint8_t)k;
    }
}

/* The process's own memory policy (numactl --membind/--interleave/
 * --preferred, or set_mempolicy before exec), as one of ours. */
static int process_policy(uint64_t *nodes)
{
    int mode = 0;
    unsigned long mask[BM_MAX_NODES / 64 + 1] = { 0 };
    if (get_mempolicy(&mode, mask, sizeof mask * 8, NULL, 0) != 0)
        return -1;
    *nodes = mask[0];
    switch (mode & 0xff) {          /* without the mode flags (MPOL_F_*) */
    case MPOL_BIND: return BM_NUMA_BIND;
    case MPOL_INTERLEAVE: return BM_NUMA_INTERLEAVE;
    case 6: /* MPOL_WEIGHTED_INTERLEAVE (Linux 6.9) */ return BM_NUMA_INTERLEAVE;
    case MPOL_PREFERRED:
        /* an empty mask is "local" (MPOL_PREFERRED with no node) */
        return *nodes ? BM_NUMA_PREFERRED : BM_NUMA_LOCAL;
    case 5: /* MPOL_PREFERRED_MANY (Linux 5.15) */ return BM_NUMA_PREFERRED;
    default: return BM_NUMA_LOCAL;      /* MPOL_DEFAULT, MPOL_LOCAL */
    }
}

/* option numa_fake=N: N nodes made up from the CPUs (CPU c on node c % N),
 * distances 10 / 20, no memory policy at all: the zones, zonelists, heaps
 * per node and remote frees work as on a real machine, the pages lie
 * wherever the kernel puts them. For tests on single-node machines. */
static void fake_topology(struct bm_topology *t, int n)
{
    t->online = t->memory = n >= 64 ? ~0ull : (1ull << n) - 1;
    for (int c = 0; c < BM_MAX_CPUS; c++)
        t->cpu_node[c] = (uint8_t)(c % n);
    for (int a = 0; a < n; a++)
        for (int b = 0; b < n; b++)
            t->distance[a][b] = a == b ? 10 : 20;
    t->fake = true;
}

static void read_topology(struct bm_topology *t)
{
    char buf[1024];
    t->online = 0;
    if (read_file(NODE_DIR "online", buf, sizeof buf) > 0)
        for_each_in_list(buf, add_node_bit, &t->online);
    if (!t->online) {                       /* no NUMA in this kernel */
        t->online = t->memory = 1;
        t->distance[0][0] = 10;
        return;
    }
    t->memory = 0;
    if (read_file(NODE_DIR "has_memory", buf, sizeof buf) > 0)
        for_each_in_list(buf, add_node_bit, &t->memory);
    t->memory &= t->online;
    if (!t->memory)
        t->memory = t->online;
    for (int n = 0; n < BM_MAX_NODES; n++) {
        if (!(t->online >> n & 1))
            continue;
        char cpus[2048];
        struct cpu_ctx c = { t, n };
        if (read_node_file(n, "cpulist", cpus, sizeof cpus) > 0)
            for_each_in_list(cpus, set_cpu_node, &c);
        read_distances(t, n);
    }
}

/*
 * Bootstrap: the nodes, the policy in force and what it means for every
 * CPU and zone. bm_g.nr_nodes becomes the highest node + 1 (zones of nodes
 * that are not online, or not allowed, stay empty).
 */
void bm_topology_init(void)
{
    struct bm_topology *t = &bm_g.topo;
    struct bm_options *o = &bm_g.opt;
    if (o->numa_fake > 1)
        fake_topology(t, (int)o->numa_fake);
    else
        read_topology(t);
    int last = 63 - __builtin_clzll(t->online);
    bm_g.nr_nodes = last + 1;

    /* The option wins (each region is mbind()ed, which overrides the
     * process policy); numa=local follows the process's policy. */
    uint64_t nodes = o->numa_nodes;
    int policy = o->numa_policy;
    t->source = BM_POLICY_OPTION;
    if (policy == BM_NUMA_LOCAL) {
        int p = t->fake || bm_g.nr_nodes == 1 ? -1 : process_policy(&nodes);
        policy = p < 0 ? BM_NUMA_LOCAL : p;
        t->source = p > BM_NUMA_LOCAL ? BM_POLICY_PROCESS : BM_POLICY_DEFAULT;
    }
    uint64_t allowed = t->memory;
    if (policy != BM_NUMA_LOCAL && nodes && (nodes & t->memory))
        allowed = nodes & t->memory;
    else if (policy != BM_NUMA_LOCAL && nodes) {
        /* nodes without memory, or not online: refused, named once */
        bm_message("BUDDYMALLOC_OPTIONS: numa: ",
                   "no node of the policy is online with memory: numa=local kept");
        policy = o->numa_policy = BM_NUMA_LOCAL;
        o->numa_nodes = 0;
        t->source = BM_POLICY_DEFAULT;
    }
    t->policy = policy;
    t->nodes = policy == BM_NUMA_LOCAL ? 0 : allowed;
    if (policy == BM_NUMA_INTERLEAVE)
        t->allowed = 1ull << __builtin_ctzll(allowed);  /* one zone, interleaved */
    else if (policy == BM_NUMA_PREFERRED)
        t->allowed = t->memory;             /* preferred first, then any node */
    else
        t->allowed = allowed;
    build_zonelists(t);

    /* The first zone of a thread on each node. */
    uint64_t zones_used = 0;
    for (int c = 0; c < bm_g.nr_cpus; c++) {     /* at most BM_MAX_CPUS */
        int n = t->cpu_node[c], z;
        if (!(t->online >> n & 1))
            n = t->cpu_node[c] = (uint8_t)__builtin_ctzll(t->online);
        if (policy == BM_NUMA_PREFERRED)
            z = nearest_in(t, n, allowed);
        else
            z = t->zonelist[n][0];
        t->cpu_zone[c] = (uint8_t)z;
        zones_used |= 1ull << z;
    }
    /* Heaps follow their thread from node to node only when two CPUs
     * start from different zones. */
    bm_numa_multi = __builtin_popcountll(zones_used) > 1;
    /* Zones watch their node's free memory and send allocations down
     * the zonelist before it runs out, unless the kernel spreads the
     * pages (interleave) or the nodes are made up. */
    t->watch_memory = bm_g.nr_nodes > 1 && !t->fake && policy != BM_NUMA_INTERLEAVE;
}

/*
 * The memory policy of a zone's region (or a huge mapping of a thread of
 * that zone), set with mbind before anything touches it:
 *   default, preferred  MPOL_PREFERRED to the zone's node: its pages come
 *                       from that node while it has memory; if the node
 *                       runs out before the zone notices (the kernel may
 *                       also need it for others), the kernel takes the
 *                       page from the nearest node instead of failing;
 *   bind                MPOL_BIND to the zone's node: the user asked that no
 *                       page ever lies outside the node set;
 *   interleave          MPOL_INTERLEAVE over the node set.
 * Fake nodes, or one node and no policy: nothing (the kernel's default).
 * Returns false if the kernel refused.
 */
bool bm_numa_place(void *addr, size_t len, int zone)
{
    const struct bm_topology *t = &bm_g.topo;
    if (t->fake || (bm_g.nr_nodes == 1 && t->policy == BM_NUMA_LOCAL))
        return true;
    unsigned long mask[BM_MAX_NODES / 64 + 1] = { 0 };
    int mode;
    switch (t->policy) {
    case BM_NUMA_INTERLEAVE:
        mode = MPOL_INTERLEAVE;
        mask[0] = t->nodes;
        break;
    case BM_NUMA_BIND:
        mode = MPOL_BIND;
        mask[0] = 1ull << zone;
        break;
    default:
        mode = MPOL_PREFERRED;
        mask[0] = 1ull << zone;
        break;
    }
    return mbind(addr, len, mode, mask, sizeof mask * 8, 0) == 0;
}

/* ---- free memory of a node ---------------------------------------------- */

struct zoneinfo {
    int want, node;                 /* the node asked for; the zone's node */
    uint64_t free, high, avail;     /* pages */
    uint64_t managed;               /* pages of the node's zones */
};

static uint64_t number_after(const char *s)
{
    while (*s && (*s < '0' || *s > '9'))
        s++;
    uint64_t v = 0;
    while (*s >= '0' && *s <= '9')
        v = v * 10 + (uint64_t)(*s++ - '0');
    return v;
}

static bool starts(const char *s, const char *word)
{
    return strncmp(s, word, strlen(word)) == 0;
}

/* One line of /proc/zoneinfo. A zone's block has "pages free F", its
 * watermark "high H", and "protection: (...)", the pages it keeps back from
 * allocations that could use a higher zone (lowmem_reserve): what a user
 * page may still take from the zone without the kernel going elsewhere is
 * F - H - the largest protection. */
static void zoneinfo_line(struct zoneinfo *zi, const char *l)
{
    if (starts(l, "Node ")) {
        zi->node = (int)number_after(l);
        zi->free = zi->high = 0;
        return;
    }
    while (*l == ' ')
        l++;
    if (starts(l, "pages free")) {
        zi->free = number_after(l);
    } else if (starts(l, "high ")) {
        zi->high = number_after(l);
    } else if (starts(l, "managed ") && zi->node == zi->want) {
        zi->managed += number_after(l);
    } else if (starts(l, "protection: (") && zi->node == zi->want) {
        uint64_t prot = 0;
        for (const char *p = l + 13; *p && *p != ')';) {
            uint64_t v = number_after(p);
            prot = v > prot ? v : prot;
            while (*p && *p != ',' && *p != ')')
                p++;
            if (*p == ',')
                p++;
        }
        if (zi->free > zi->high + prot)
            zi->avail += zi->free - zi->high - prot;
    }
}

/* Pages node n can still give user memory before the kernel takes it from
 * another node, from /proc/zoneinfo read line by line through a small
 * buffer (the file is tens of KiB on large machines; this runs on the
 * allocation path, maybe on a small thread stack). -1: unknown. */
static long node_avail_pages(int n, unsigned long *managed)
{
    int fd = open("/proc/zoneinfo", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct zoneinfo zi = { .want = n, .node = -1 };
    char buf[1024];
    size_t have = 0;
    long got;
    bool any = false;
    while ((got = read(fd, buf + have, sizeof buf - 1 - have)) > 0) {
        have += (size_t)got;
        buf[have] = '\0';
        char *line = buf, *nl;
        while ((nl = strchr(line, '\n'))) {
            *nl = '\0';
            zoneinfo_line(&zi, line);
            line = nl + 1;
            any = true;
        }
        have = (size_t)(buf + have - line);
        if (have == sizeof buf - 1)         /* a line longer than the buffer */
            have = 0;
        memmove(buf, line, have);
    }
    close(fd);
    *managed = (unsigned long)zi.managed;
    return any ? (long)zi.avail : -1;
}

/*
 * Has node n memory to spare for a new block of its zone? Asked before a
 * zone carves a never-used block or adds a region, at most every 4 MiB:
 * below a mark the zone declines, and the allocation goes down the
 * zonelist (bm_zonelist_rmqueue), as the kernel's watermarks send it to
 * the next zone. The mark is 1/64 of the node's pages, at least 4 MiB,
 * counted above the kernel's high watermark and reserves: the zone gives
 * up before the kernel would start placing its pages on another node.
 * /proc/zoneinfo is read again only when the pages carved since the last
 * reading may have used up the margin seen then, or 100 ms have passed.
 */
bool bm_node_has_room(int n)
{
    if (!bm_g.topo.watch_memory)
        return true;
    struct bm_zone *z = &bm_g.zones[n];
    /* The room_* fields have a lock of their own: the huge path asks
     * without any zone lock, rmqueue with its zone's lock held (a leaf
     * lock, after the zone's; fork takes it too). O(1); a read of
     * /proc/zoneinfo at most every 100 ms or when the margin may be gone. */
    bm_mutex_lock(&z->room_lock);
    bool room = true;
    uint64_t now = bm_now_ns();
    if (now - z->room_ns < 100000000 && z->room_pages > 2 * z->room_mark + MAX_ORDER_NR_PAGES) {
        z->room_pages -= MAX_ORDER_NR_PAGES;    /* this block's, at most */
    } else {
        unsigned long managed;
        long avail = node_avail_pages(n, &managed);
        if (avail >= 0) {
            z->room_ns = now;
            z->room_pages = (unsigned long)avail;
            z->room_mark = managed / 64 > 1024 ? managed / 64 : 1024;
            room = z->room_pages > z->room_mark;
        }
    }
    bm_mutex_unlock(&z->room_lock);
    return room;
}
