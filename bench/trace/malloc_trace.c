/*
 * libmalloc-trace.so: an LD_PRELOAD library that records every malloc-family
 * call of one process into a text trace (format in README.md), forwarding
 * each call to glibc's own allocator through the names glibc exports for
 * that purpose (__libc_malloc and friends), so nothing is looked up with
 * dlsym on the allocation path and nothing can recurse.
 *
 *   MALLOC_TRACE_FILE=out.trace LD_PRELOAD=./libmalloc-trace.so program
 *
 * Environment:
 *   MALLOC_TRACE_FILE     where to write; unset or empty: no tracing at all.
 *                         "%p" in the name is replaced by the process id.
 *   MALLOC_TRACE_MAX_OPS  stop recording after this many operations
 *                         (default 2000000; 0: no limit). Calls go on being
 *                         forwarded after the limit.
 *
 * Rules the tracer keeps:
 *   - it never calls malloc: the pointer table and the free-ID stack are
 *     mmap'ed, the output buffer is static, the file is written with write(2);
 *   - one global spin lock is held across the forwarded call and its record,
 *     so the order of the trace is the order in which glibc saw the calls
 *     (an address freed by one thread and handed out again to another is
 *     always seen free-then-malloc);
 *   - a thread-local flag makes any allocation made while the tracer runs
 *     (by a signal handler, by pthread_atfork, by dlopen) a plain forward;
 *   - one process records into one file: a forked child stops (the atfork
 *     child handler); a program started by the traced one loads the tracer
 *     too, finds the file's header naming a live process other than itself
 *     and leaves the file alone (unless the name has "%p": then every
 *     process has its own file); a program that replaced the traced one by
 *     exec (same pid: env, nice, a wrapper script's last exec) takes the
 *     file over from the start, so `env A=B program` records `program`;
 *   - it starts in its constructor: blocks allocated before that (by the
 *     dynamic loader, by libc's start-up) are unknown, and frees of unknown
 *     pointers are not written.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

/* glibc's allocator under its exported internal names. */
extern void *__libc_malloc(size_t n);
extern void __libc_free(void *p);
extern void *__libc_calloc(size_t nmemb, size_t size);
extern void *__libc_realloc(void *p, size_t n);
extern void *__libc_memalign(size_t align, size_t n);
extern void *__libc_valloc(size_t n);
extern void *__libc_pvalloc(size_t n);

enum { ST_OFF = 0, ST_ON = 1, ST_LIMIT = 2, ST_DONE = 3 };

static volatile int state = ST_OFF;    /* ST_ON only while recording */
static int trace_fd = -1;
static dev_t trace_dev;          /* to notice a program that closed our fd */
static ino_t trace_ino;
static int lock_word;
static __thread int in_tracer __attribute__((tls_model("initial-exec")));

static uint64_t max_ops = 2000000;
static uint64_t n_ops, n_m, n_c, n_r, n_f, n_a;
static uint64_t n_unknown_free, n_unknown_realloc, n_stale;
static uint64_t live_bytes, peak_live_bytes, live_blocks, peak_live_blocks;
static off_t totals_offset = -1;
static int stopped_at_limit;

/* ------------------------------------------------------------------ */
/* lock                                                                */

static void lock(void)
{
    for (unsigned spins = 0;; spins++) {
        if (!__atomic_exchange_n(&lock_word, 1, __ATOMIC_ACQUIRE))
            return;
        while (__atomic_load_n(&lock_word, __ATOMIC_RELAXED)) {
            if (++spins > 64) {
                sched_yield();
                spins = 0;
            } else {
#if defined(__x86_64__) || defined(__i386__)
                __builtin_ia32_pause();
#endif
            }
        }
    }
}

static void unlock(void)
{
    __atomic_store_n(&lock_word, 0, __ATOMIC_RELEASE);
}

/* ------------------------------------------------------------------ */
/* output                                                              */

#define OUT_SIZE (1u << 20)
static char out[OUT_SIZE];
static size_t out_len;

static void write_all(const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(trace_fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return;          /* disk full or similar: drop the rest quietly */
        }
        p += w;
        n -= (size_t)w;
    }
}

/* Whether trace_fd is still the trace file: a program may close every
 * descriptor it does not know of and open something else under the number. */
static int fd_is_ours(void)
{
    struct stat st;
    return fstat(trace_fd, &st) == 0 && st.st_dev == trace_dev && st.st_ino == trace_ino;
}

static void flush(void)
{
    if (out_len && trace_fd >= 0) {
        int saved = errno;
        if (fd_is_ours()) {
            write_all(out, out_len);
        } else {
            trace_fd = -1;
            if (state == ST_ON)
                state = ST_LIMIT;   /* nowhere to write: stop recording */
        }
        errno = saved;
    }
    out_len = 0;
}

static void put_char(char c)
{
    out[out_len++] = c;
}

static void put_str(const char *s)
{
    while (*s)
        out[out_len++] = *s++;
}

/* v in decimal at dst; returns the number of digits */
static size_t fmt_u64(char *dst, uint64_t v)
{
    char tmp[20];
    size_t i = 0, n = 0;
    do {
        tmp[i++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (i)
        dst[n++] = tmp[--i];
    return n;
}

static void put_u64(uint64_t v) { out_len += fmt_u64(out + out_len, v); }

/* a zero-padded number of `width` digits (for the date) */
static void put_u64w(uint64_t v, int width)
{
    char tmp[20];
    for (int i = width - 1; i >= 0; i--) {
        tmp[i] = (char)('0' + v % 10);
        v /= 10;
    }
    for (int i = 0; i < width; i++)
        out[out_len++] = tmp[i];
}

/* Called after each record: room for one more line of at most 4 numbers. */
static void maybe_flush(void)
{
    if (out_len > OUT_SIZE - 128)
        flush();
}

/* ------------------------------------------------------------------ */
/* pointer -> (ID, size), open addressing with linear probing          */

struct slot {
    uintptr_t key;          /* 0: empty */
    uint64_t size;
    uint32_t id;
};

static struct slot *table;
static unsigned table_bits;
static size_t table_count;

static void *map(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static inline size_t hash_ptr(uintptr_t key, unsigned bits)
{
    return (size_t)(((uint64_t)(key >> 4) * 0x9e3779b97f4a7c15ull) >> (64 - bits));
}

static int table_init(unsigned bits)
{
    table = map(sizeof(struct slot) << bits);
    if (!table)
        return -1;
    table_bits = bits;
    table_count = 0;
    return 0;
}

static struct slot *table_find(uintptr_t key)
{
    size_t mask = ((size_t)1 << table_bits) - 1;
    for (size_t i = hash_ptr(key, table_bits);; i = (i + 1) & mask) {
        if (table[i].key == key)
            return &table[i];
        if (table[i].key == 0)
            return NULL;
    }
}

static void table_put(struct slot *t, unsigned bits, const struct slot *s)
{
    size_t mask = ((size_t)1 << bits) - 1;
    size_t i = hash_ptr(s->key, bits);
    while (t[i].key != 0)
        i = (i + 1) & mask;
    t[i] = *s;
}

/* Keeps the load under 1/2; on failure to grow, the caller stops tracing. */
static int table_grow(void)
{
    if (table_count + 1 <= ((size_t)1 << table_bits) / 2)
        return 0;
    unsigned bits = table_bits + 1;
    struct slot *t = map(sizeof(struct slot) << bits);
    if (!t)
        return -1;
    size_t n = (size_t)1 << table_bits;
    for (size_t i = 0; i < n; i++)
        if (table[i].key)
            table_put(t, bits, &table[i]);
    munmap(table, sizeof(struct slot) << table_bits);
    table = t;
    table_bits = bits;
    return 0;
}

/* Backward-shift deletion: no tombstones, probes stay short. */
static void table_remove(struct slot *s)
{
    size_t mask = ((size_t)1 << table_bits) - 1;
    size_t hole = (size_t)(s - table);
    size_t i = hole;
    for (;;) {
        i = (i + 1) & mask;
        if (table[i].key == 0)
            break;
        size_t home = hash_ptr(table[i].key, table_bits);
        /* Move the entry at i into the hole unless its home lies in
         * (hole, i] cyclically, where it would then be unreachable. */
        int stays = hole <= i ? (home > hole && home <= i)
                              : (home > hole || home <= i);
        if (!stays) {
            table[hole] = table[i];
            hole = i;
        }
    }
    table[hole].key = 0;
    table_count--;
}

/* ------------------------------------------------------------------ */
/* IDs: a counter, and a stack of freed IDs to reuse first             */

static uint32_t *free_ids;
static size_t free_ids_len, free_ids_cap;
static uint32_t next_id;

static int id_get(uint32_t *id)
{
    if (free_ids_len) {
        *id = free_ids[--free_ids_len];
        return 0;
    }
    if (next_id == UINT32_MAX)
        return -1;
    *id = next_id++;
    return 0;
}

static int id_put(uint32_t id)
{
    if (free_ids_len == free_ids_cap) {
        size_t cap = free_ids_cap ? free_ids_cap * 2 : 65536;
        void *p = free_ids ? mremap(free_ids, free_ids_cap * 4, cap * 4, MREMAP_MAYMOVE)
                           : mmap(NULL, cap * 4, PROT_READ | PROT_WRITE,
                                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return -1;
        free_ids = p;
        free_ids_cap = cap;
    }
    free_ids[free_ids_len++] = id;
    return 0;
}

/* ------------------------------------------------------------------ */
/* recording (lock held, state == ST_ON)                               */

/* Called when something cannot go on (no memory for the tables). */
static void stop_recording(void)
{
    flush();
    state = ST_LIMIT;
}

static void count_op(void)
{
    maybe_flush();
    if (++n_ops == max_ops) {
        stopped_at_limit = 1;
        stop_recording();
    }
}

static void forget(struct slot *s)
{
    live_bytes -= s->size;
    live_blocks--;
    id_put(s->id);
    table_remove(s);
}

/* A block freed behind the tracer's back: written as freed now. Non-zero
 * while tracing goes on. */
static int free_stale(struct slot *s)
{
    put_str("f ");
    put_u64(s->id);
    put_char('\n');
    n_f++;
    n_stale++;
    forget(s);
    count_op();
    return state == ST_ON;
}

/* Block p of n bytes is live as id from now on: in the table and in the
 * live and peak counts. */
static void track(void *p, uint64_t n, uint32_t id)
{
    struct slot ns = { (uintptr_t)p, n, id };
    table_put(table, table_bits, &ns);
    table_count++;
    live_bytes += n;
    live_blocks++;
    if (live_bytes > peak_live_bytes)
        peak_live_bytes = live_bytes;
    if (live_blocks > peak_live_blocks)
        peak_live_blocks = live_blocks;
}

/* A new block p of n bytes: returns its ID, or -1 if tracing had to stop.
 * If p is still in the table, it was freed behind the tracer's back (by a
 * path that does not go through these functions): the old block is written
 * as freed first so that the trace stays consistent. */
static int64_t remember(void *p, uint64_t n)
{
    struct slot *s = table_find((uintptr_t)p);
    if (s && !free_stale(s))
        return -1;
    uint32_t id;
    if (table_grow() < 0 || id_get(&id) < 0) {
        stop_recording();
        return -1;
    }
    track(p, n, id);
    return id;
}

static void rec_alloc(char op, void *p, uint64_t n)
{
    int64_t id = remember(p, n);
    if (id < 0)
        return;
    put_char(op);
    put_char(' ');
    put_u64((uint64_t)id);
    put_char(' ');
    put_u64(n);
    put_char('\n');
    if (op == 'm')
        n_m++;
    else
        n_c++;
    count_op();
}

static void rec_aligned(void *p, uint64_t align, uint64_t n)
{
    int64_t id = remember(p, n);
    if (id < 0)
        return;
    put_str("a ");
    put_u64((uint64_t)id);
    put_char(' ');
    put_u64(align);
    put_char(' ');
    put_u64(n);
    put_char('\n');
    n_a++;
    count_op();
}

/* Before the block goes back to glibc (so its address cannot be reused
 * before the free is written; the lock is held across both anyway). */
static void rec_free(void *p)
{
    struct slot *s = table_find((uintptr_t)p);
    if (!s) {
        n_unknown_free++;
        return;
    }
    put_str("f ");
    put_u64(s->id);
    put_char('\n');
    n_f++;
    forget(s);
    count_op();
}

/* realloc(p, n) returned q != NULL (p != NULL, the old block is gone). */
static void rec_realloc(void *p, void *q, uint64_t n)
{
    struct slot *s = table_find((uintptr_t)p);
    if (!s) {
        /* the old block was never seen: to a replay this is a new block */
        n_unknown_realloc++;
        rec_alloc('m', q, n);
        return;
    }
    /* The new ID is taken before the old one is given back, so NEWID never
     * equals ID: a replay may clear slot ID after filling slot NEWID, or the
     * other way round. */
    uint32_t old_id = s->id;
    uint64_t old_size = s->size;
    uint32_t new_id;
    if (id_get(&new_id) < 0) {
        stop_recording();
        return;
    }
    live_bytes -= old_size;
    live_blocks--;
    table_remove(s);
    if (table_grow() < 0) {
        stop_recording();
        return;
    }
    /* q cannot be in the table: the lock was held across the realloc and
     * p's entry is gone, but stay consistent if it is (see remember). */
    struct slot *stale = table_find((uintptr_t)q);
    if (stale) {
        if (!free_stale(stale))
            return;
    }
    track(q, n, new_id);
    id_put(old_id);
    put_str("r ");
    put_u64(old_id);
    put_char(' ');
    put_u64(new_id);
    put_char(' ');
    put_u64(n);
    put_char('\n');
    n_r++;
    count_op();
}

/* ------------------------------------------------------------------ */
/* entry and exit of the tracer                                        */

static inline int tracing(void)
{
    return state == ST_ON && !in_tracer;
}

/* Returns 1 with the lock held if the op is to be recorded. */
static inline int enter(void)
{
    if (!tracing())
        return 0;
    in_tracer = 1;
    lock();
    if (state != ST_ON) {     /* stopped while we waited */
        unlock();
        in_tracer = 0;
        return 0;
    }
    return 1;
}

static inline void leave(void)
{
    unlock();
    in_tracer = 0;
}

/* ------------------------------------------------------------------ */
/* the interposed functions                                            */

EXPORT void *malloc(size_t n)
{
    if (!enter())
        return __libc_malloc(n);
    void *p = __libc_malloc(n);
    if (p && state == ST_ON)
        rec_alloc('m', p, n);
    leave();
    return p;
}

EXPORT void free(void *p)
{
    if (!p || !enter()) {
        __libc_free(p);
        return;
    }
    rec_free(p);
    __libc_free(p);
    leave();
}

EXPORT void *calloc(size_t nmemb, size_t size)
{
    if (!enter())
        return __libc_calloc(nmemb, size);
    void *p = __libc_calloc(nmemb, size);
    if (p && state == ST_ON)
        rec_alloc('c', p, (uint64_t)nmemb * size);   /* no overflow if p */
    leave();
    return p;
}

EXPORT void *realloc(void *p, size_t n)
{
    if (!enter())
        return __libc_realloc(p, n);
    void *q = __libc_realloc(p, n);
    if (state == ST_ON) {
        if (!p) {
            if (q)
                rec_alloc('m', q, n);
        } else if (q) {
            rec_realloc(p, q, n);
        } else if (n == 0) {
            /* glibc's realloc(p, 0) frees p and returns NULL; with n > 0
             * a NULL result is a failure and p is untouched. */
            rec_free(p);
        }
    }
    leave();
    return q;
}

/* The alignment a replay should ask for: a power of two, at least
 * sizeof(void *) (so that posix_memalign accepts it). glibc's memalign
 * rounds a non-power of two up the same way. */
static uint64_t replay_align(size_t align)
{
    uint64_t a = sizeof(void *);
    while (a < align)
        a <<= 1;
    return a;
}

static void *aligned(size_t align, size_t n)
{
    if (!enter())
        return __libc_memalign(align, n);
    void *p = __libc_memalign(align, n);
    if (p && state == ST_ON)
        rec_aligned(p, replay_align(align), n);
    leave();
    return p;
}

EXPORT void *memalign(size_t align, size_t n)
{
    return aligned(align, n);
}

EXPORT void *aligned_alloc(size_t align, size_t n)
{
    return aligned(align, n);
}

EXPORT int posix_memalign(void **out_p, size_t align, size_t n)
{
    if (align < sizeof(void *) || (align & (align - 1)) != 0)
        return EINVAL;
    int saved = errno;
    void *p = aligned(align, n);
    if (!p)
        return ENOMEM;
    errno = saved;
    *out_p = p;
    return 0;
}

EXPORT void *valloc(size_t n)
{
    if (!enter())
        return __libc_valloc(n);
    void *p = __libc_valloc(n);
    if (p && state == ST_ON)
        rec_aligned(p, (uint64_t)sysconf(_SC_PAGESIZE), n);
    leave();
    return p;
}

EXPORT void *pvalloc(size_t n)
{
    if (!enter())
        return __libc_pvalloc(n);
    void *p = __libc_pvalloc(n);
    if (p && state == ST_ON) {
        uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
        uint64_t rounded = n ? (n + page - 1) / page * page : page;
        rec_aligned(p, page, rounded);
    }
    leave();
    return p;
}

/*
 * malloc_usable_size must be glibc's too, whatever else is loaded: a program
 * linked against jemalloc (Debian's redis-server) calls malloc_usable_size
 * on the blocks that, under this preload, glibc hands out. glibc exports no
 * __libc_ name for it, so it is taken from libc.so.6 itself (a handle search
 * starts at that object, unlike RTLD_NEXT), in the constructor or on first
 * use, with the recursion flag set.
 */
typedef size_t (*usable_fn)(void *);
static usable_fn libc_usable;

static usable_fn resolve_usable(void)
{
    usable_fn f = __atomic_load_n(&libc_usable, __ATOMIC_ACQUIRE);
    if (f)
        return f;
    int was = in_tracer;
    in_tracer = 1;
    void *h = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
    if (h) {
        void *sym = dlsym(h, "malloc_usable_size");
        memcpy(&f, &sym, sizeof f);      /* object to function pointer */
        dlclose(h);
    }
    in_tracer = was;
    if (f)
        __atomic_store_n(&libc_usable, f, __ATOMIC_RELEASE);
    return f;
}

EXPORT size_t malloc_usable_size(void *p)
{
    if (!p)
        return 0;
    usable_fn f = resolve_usable();
    return f ? f(p) : 0;
}

/* ------------------------------------------------------------------ */
/* start and end                                                       */

/* Whether the trace file open at fd is being written by another process
 * that is still running (its header names the pid that writes it): then a
 * program that process started is loading the tracer, and must leave the
 * file alone. The same pid is a program that exec'ed another one (env, nice,
 * a wrapper script): the new program takes the file over. */
static int owned_by_other(int fd)
{
    char buf[1024];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    const char *p = strstr(buf, "\n# pid: ");
    if (!p)
        return 0;
    uint64_t pid = 0;
    for (p += 8; *p >= '0' && *p <= '9'; p++)
        pid = pid * 10 + (uint64_t)(*p - '0');
    if (pid == 0 || pid == (uint64_t)getpid())
        return 0;
    return kill((pid_t)pid, 0) == 0 || errno == EPERM;
}

static int parse_u64(const char *s, uint64_t *v)
{
    uint64_t x = 0;
    if (!*s)
        return -1;
    for (; *s; s++) {
        if (*s == '_' || *s == ',')
            continue;
        if (*s < '0' || *s > '9')
            return -1;
        x = x * 10 + (uint64_t)(*s - '0');
    }
    *v = x;
    return 0;
}

/* "# program: ..." from /proc/self/cmdline, read before main can rewrite
 * argv (redis sets its process title there). Absolute paths are written as
 * their last component only, so a trace names no directory of the machine
 * it was recorded on. */
static void put_cmdline(void)
{
    char buf[1024];
    int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    if (fd >= 0)
        close(fd);
    put_str("# program:");
    if (n <= 0) {
        put_str(" ?\n");
        return;
    }
    buf[n] = 0;
    size_t shown = 0;
    for (char *arg = buf; arg < buf + n && shown < 400; arg += strlen(arg) + 1) {
        const char *a = arg;
        if (*a == '/') {
            const char *slash = strrchr(a, '/');
            a = slash + 1;
        }
        put_char(' ');
        for (; *a && shown < 400; a++, shown++)
            put_char(*a >= 0x20 && *a < 0x7f ? *a : '?');
    }
    if (n == (ssize_t)sizeof buf - 1 || shown >= 400)
        put_str(" ...");
    put_char('\n');
}

/* UTC date from the epoch (days to civil date, proleptic Gregorian). */
static void put_date(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t t = ts.tv_sec;
    int64_t days = t / 86400, secs = t % 86400;
    int64_t z = days + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t d = doy - (153 * mp + 2) / 5 + 1;
    int64_t m = mp < 10 ? mp + 3 : mp - 9;
    int64_t y = yoe + era * 400 + (m <= 2);
    put_str("# recorded: ");
    put_u64w((uint64_t)y, 4);
    put_char('-');
    put_u64w((uint64_t)m, 2);
    put_char('-');
    put_u64w((uint64_t)d, 2);
    put_char(' ');
    put_u64w((uint64_t)(secs / 3600), 2);
    put_char(':');
    put_u64w((uint64_t)(secs / 60 % 60), 2);
    put_char(':');
    put_u64w((uint64_t)(secs % 60), 2);
    put_str(" UTC\n");
}

/* The totals line is written at exit, over a line of spaces reserved in
 * the header; if the process never exits normally the line says so. */
#define TOTALS_LINE 320

static void put_totals_placeholder(void)
{
    const char *msg = "# totals: (not written: the process did not exit normally)";
    size_t start = out_len;
    put_str(msg);
    while (out_len - start < TOTALS_LINE - 1)
        put_char(' ');
    put_char('\n');
}

static void write_totals(void)
{
    if (trace_fd < 0 || totals_offset < 0 || !fd_is_ours())
        return;
    out_len = 0;
    put_str("# totals: ops ");
    put_u64(n_ops);
    put_str(" m ");
    put_u64(n_m);
    put_str(" c ");
    put_u64(n_c);
    put_str(" r ");
    put_u64(n_r);
    put_str(" f ");
    put_u64(n_f);
    put_str(" a ");
    put_u64(n_a);
    put_str("; ids ");
    put_u64(next_id);
    put_str("; peak live ");
    put_u64(peak_live_bytes);
    put_str(" bytes in ");
    put_u64(peak_live_blocks);
    put_str(" blocks; at end ");
    put_u64(live_bytes);
    put_str(" bytes in ");
    put_u64(live_blocks);
    put_str(" blocks; unknown frees skipped ");
    put_u64(n_unknown_free);
    put_str(", reallocs as m ");
    put_u64(n_unknown_realloc);
    put_str(", addresses reused unseen ");
    put_u64(n_stale);
    put_str(stopped_at_limit ? "; stopped at the limit" : "; complete");
    if (out_len > TOTALS_LINE - 1)
        out_len = TOTALS_LINE - 1;
    while (out_len < TOTALS_LINE - 1)
        put_char(' ');
    put_char('\n');
    if (pwrite(trace_fd, out, out_len, totals_offset) < 0) {
        /* nothing to do: the placeholder stays */
    }
    out_len = 0;
}

/* The lock is held across fork, so the child's copy of the tracer's state
 * is not caught half-way through a record. */
static void fork_prepare(void)
{
    lock();
}

static void fork_parent(void)
{
    unlock();
}

static void fork_child(void)
{
    /* The child's copy of the buffer belongs to the parent's trace: drop
     * it, and let the parent alone write the file. */
    if (state == ST_ON || state == ST_LIMIT) {
        state = ST_DONE;
        out_len = 0;
        trace_fd = -1;       /* the descriptor stays open, unused */
    }
    unlock();
}

__attribute__((constructor(101)))
static void trace_start(void)
{
    in_tracer = 1;
    resolve_usable();

    const char *name = getenv("MALLOC_TRACE_FILE");
    const char *max = getenv("MALLOC_TRACE_MAX_OPS");
    if (!name || !*name)
        goto out;
    if (max) {
        uint64_t v;
        if (parse_u64(max, &v) == 0)
            max_ops = v ? v : UINT64_MAX;
    }

    /* the file name, with %p replaced by the pid */
    char path[4096];
    size_t len = 0;
    int per_pid = 0;
    for (const char *s = name; *s && len < sizeof path - 24; s++) {
        if (s[0] == '%' && s[1] == 'p') {
            len += fmt_u64(path + len, (uint64_t)getpid());
            s++;
            per_pid = 1;
        } else {
            path[len++] = *s;
        }
    }
    path[len] = 0;

    trace_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (trace_fd >= 0 && !per_pid && owned_by_other(trace_fd)) {
        close(trace_fd);
        trace_fd = -1;
        goto out;
    }
    if (trace_fd >= 0 && ftruncate(trace_fd, 0) < 0) {
        close(trace_fd);
        trace_fd = -1;
    }
    if (trace_fd < 0) {
        static const char msg[] = "malloc-trace: cannot open MALLOC_TRACE_FILE, not tracing\n";
        if (write(2, msg, sizeof msg - 1) < 0) {
            /* nothing more to say */
        }
        goto out;
    }
    /* out of the way of the low numbers a program opens and closes */
    int high = fcntl(trace_fd, F_DUPFD_CLOEXEC, 700);
    if (high >= 0) {
        close(trace_fd);
        trace_fd = high;
    }
    struct stat st;
    if (fstat(trace_fd, &st) == 0) {
        trace_dev = st.st_dev;
        trace_ino = st.st_ino;
    }
    if (table_init(16) < 0) {
        close(trace_fd);
        trace_fd = -1;
        goto out;
    }
    pthread_atfork(fork_prepare, fork_parent, fork_child);

    put_str("# buddymalloc-trace v1\n");
    put_cmdline();
    put_str("# pid: ");
    put_u64((uint64_t)getpid());
    put_str(" (the process that writes this file)\n");
    put_date();
    put_str("# recorder: libmalloc-trace.so (bench/trace), glibc malloc underneath; MALLOC_TRACE_MAX_OPS=");
    if (max_ops == UINT64_MAX)
        put_str("0 (no limit)");
    else
        put_u64(max_ops);
    put_char('\n');
    totals_offset = (off_t)out_len;
    put_totals_placeholder();
    flush();
    __atomic_store_n(&state, ST_ON, __ATOMIC_RELEASE);
out:
    in_tracer = 0;
}

__attribute__((destructor(101)))
static void trace_end(void)
{
    in_tracer = 1;
    lock();
    if (state == ST_ON || state == ST_LIMIT) {
        flush();
        write_totals();
        close(trace_fd);
        trace_fd = -1;
        state = ST_DONE;
    }
    unlock();
    in_tracer = 0;
}
