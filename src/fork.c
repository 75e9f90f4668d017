/*
 * fork.c - fork safety: pthread_atfork handlers, and the repair of the
 * heaps a fork child inherits from threads that do not exist in it.
 *
 * Before fork, every lock of the allocator is taken in one global order
 * (bootstrap, heaps, abandoned slab lists, huge table, pagesets, zones),
 * so no structure behind a lock is half updated when the address space is
 * copied; the parent releases them, the child resets them. A fork from a
 * signal handler may find its own thread holding them: see the handlers. Our handlers
 * are registered first (a constructor), so glibc runs our prepare handler
 * last and our child handler first: other libraries' handlers may
 * allocate on both sides.
 *
 * The thread-local side has no locks: another thread may be inside malloc
 * or free at the instant of fork, and the kernel copies the address space
 * page by page while it runs, so its heap may reach the child half
 * updated. The child checks each such heap completely before using it
 * (bm_fork_heap_repair): lists well linked and owned, every free block a
 * block start of its slab and on one list only, each slab's use count
 * recomputed from its lists. A heap that passes is retired like the heap
 * of an exited thread (its free blocks serve the child, its partly used
 * slabs are adopted); one that fails is left out and counted in the
 * statistics ("heaps lost at fork"): its memory is lost to the child but
 * nothing is corrupted.
 */
#include <pthread.h>
#include <signal.h>
#include <string.h>

#include "alloc.h"
#include "large.h"
#include "slab.h"

#if BM_HAVE_SINGLE_THREADED         /* bm_config.h */
#include <sys/single_threaded.h>
#endif

/* ---- the handlers ---------------------------------------------------------- *
 *
 * The prepare handler must never wait for a lock its own thread holds,
 * which a fork made in a signal handler would do. It takes nothing when:
 *
 *  - nested: the signal interrupted this thread's own fork between our
 *    prepare and our parent or child handler (glibc's tst-mallocfork).
 *    fork_depth counts this thread's prepares not yet matched; only the
 *    outermost takes locks, and only its parent handler releases them;
 *  - inside the allocator: the signal interrupted malloc or free while it
 *    held, or was taking, a lock (bm_tls_locks, internal.h). The child then
 *    inherits locks perhaps held in the middle of an update (by this thread,
 *    or by threads that are gone): it leaves them held and no heap is
 *    repaired. Its malloc and free work while they need no lock; as POSIX
 *    asks of the child of a fork in a signal handler, it should call only
 *    async-signal-safe functions;
 *  - single-threaded (__libc_single_threaded): nobody else can hold a lock,
 *    as glibc's own malloc assumes.
 *
 * Our handlers run with every signal blocked, so a handler that interrupts
 * this thread sees all of their work or none of it: never some locks taken
 * and others not, or a repair half done.
 *
 * The child of a fork where nothing was taken resets every lock all the
 * same unless its thread was inside the allocator: it has no other thread,
 * and the locks its own outer fork holds guard consistent structures.
 */
enum took { TOOK_NOTHING, TOOK_INIT, TOOK_ALL };
static __thread unsigned fork_depth __attribute__((tls_model("initial-exec")));
static __thread unsigned char fork_took __attribute__((tls_model("initial-exec")));
static __thread bool fork_took_stdio __attribute__((tls_model("initial-exec")));

__thread unsigned bm_tls_locks __attribute__((tls_model("initial-exec")));

/*
 * stdio: glibc's fork takes its lock of the list of streams after every
 * prepare handler. A thread in fflush(NULL) holds that lock and waits for a
 * stream's lock, held by a thread in getline that waits in malloc for a lock
 * our prepare took: a cycle (glibc bug 19431, which glibc's own malloc
 * avoids by locking last; tst-malloc-fork-deadlock). So our prepare takes
 * the list lock first. It is recursive: glibc's own take is a second count,
 * released before our parent handler runs; in the child glibc resets it
 * before our child handler runs, which therefore leaves it alone. Weak: a C
 * library without these names goes without.
 */
extern void _IO_list_lock(void) __attribute__((weak));
extern void _IO_list_unlock(void) __attribute__((weak));

static bool single_threaded(void)
{
#if BM_HAVE_SINGLE_THREADED
    return __libc_single_threaded;
#else
    return false;
#endif
}

static void signals_block(sigset_t *old)
{
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, old);
}

static void signals_restore(const sigset_t *old) { pthread_sigmask(SIG_SETMASK, old, NULL); }

static void zones_fork(enum bm_fork_step step)
{
    for (int n = 0; n < bm_g.nr_nodes; n++) {
        struct bm_zone *z = &bm_g.zones[n];
        if (step == BM_FORK_PREPARE) {      /* pagesets before zone locks */
            if (z->pcp)
                for (int c = 0; c < bm_g.nr_cpus; c++)
                    bm_fork_spin(&z->pcp[c].lock, step);
            bm_fork_mutex(&z->lock, step);
            bm_fork_mutex(&z->room_lock, step);
        } else {
            bm_fork_mutex(&z->room_lock, step);
            bm_fork_mutex(&z->lock, step);
            if (z->pcp)
                for (int c = 0; c < bm_g.nr_cpus; c++)
                    bm_fork_spin(&z->pcp[c].lock, step);
        }
    }
}

/* Every lock but the bootstrap one, in the global order (released or reset
 * in the other order). */
static void all_locks(enum bm_fork_step step)
{
    if (step == BM_FORK_PREPARE) {
        bm_heaps_fork_lock(step);
        bm_slab_fork_locks(step);
        bm_huge_fork_lock(step);
        zones_fork(step);
    } else {
        zones_fork(step);
        bm_huge_fork_lock(step);
        bm_slab_fork_locks(step);
        bm_heaps_fork_lock(step);
    }
}

static bool initialised(void)
{
    return atomic_load_explicit(&bm_g.initialised, memory_order_acquire);
}

static void prepare(void)
{
    sigset_t old;
    signals_block(&old);
    if (fork_depth++ == 0) {
        fork_took = TOOK_NOTHING;
        fork_took_stdio = false;
        if (bm_tls_locks == 0 && !single_threaded()) {
            if (_IO_list_lock && _IO_list_unlock) {
                _IO_list_lock();
                fork_took_stdio = true;
            }
            bm_init_fork_lock(BM_FORK_PREPARE);
            fork_took = TOOK_INIT;
            if (initialised()) {    /* otherwise nothing else exists yet */
                all_locks(BM_FORK_PREPARE);
                fork_took = TOOK_ALL;
            }
        }
    }
    signals_restore(&old);
}

static void parent(void)
{
    sigset_t old;
    signals_block(&old);
    if (--fork_depth == 0) {
        if (fork_took == TOOK_ALL)
            all_locks(BM_FORK_PARENT);
        if (fork_took != TOOK_NOTHING)
            bm_init_fork_lock(BM_FORK_PARENT);
        if (fork_took_stdio)
            _IO_list_unlock();
        fork_took = TOOK_NOTHING;
        fork_took_stdio = false;
    }
    signals_restore(&old);
}

static void child(void)
{
    sigset_t old;
    signals_block(&old);
    fork_depth--;
    if (bm_tls_locks == 0) {
        bm_init_fork_lock(BM_FORK_CHILD);
        if (initialised()) {
            all_locks(BM_FORK_CHILD);
            bm_heaps_after_fork();
        }
    }
    /* Every lock is reset, or left to what the interrupted code holds: an
     * outer fork of this thread has nothing left to release in this child,
     * and the stream list's lock was reset by the C library. */
    fork_took = TOOK_NOTHING;
    fork_took_stdio = false;
    signals_restore(&old);
}

__attribute__((constructor)) static void fork_register(void)
{
    pthread_atfork(prepare, parent, child);
}

/* ---- checking an inherited heap ------------------------------------------- */

#define MAX_CAPACITY 1024           /* blocks per slab the check can mark */

/* s is the head descriptor of a slab of class cls (a descriptor inside a
 * region's mem_map, not allocator metadata). */
static bool is_slab(const struct bm_page *s, unsigned cls)
{
    uintptr_t a = (uintptr_t)s;
    if ((a & (sizeof *s - 1)) || !bm_addr_in_region(a))
        return false;
    unsigned long i = page_index(s);
    if (i < REGION_FIRST_PAGE || i >= REGION_PAGES)
        return false;
    return (page_flags(s) & PG_slab) && !(page_flags(s) & PG_tail) && s->slab.cls == cls &&
           s->slab.reserved <= bm_classes[cls].capacity &&
           bm_classes[cls].capacity <= MAX_CAPACITY;
}

/* The slab a pointer lies in, if it is a block start of a slab of cls. */
static struct bm_page *block_slab(const void *p, unsigned cls)
{
    uintptr_t a = (uintptr_t)p;
    if (!bm_addr_in_region(a) || (a & 7))
        return NULL;
    if ((a & REGION_MASK) >> BM_PAGE_SHIFT < REGION_FIRST_PAGE)
        return NULL;
    struct bm_page *s = addr_to_page(a);
    if (s->head_off > (1u << (MAX_ORDER - 1)))
        return NULL;
    s -= s->head_off;
    if (!is_slab(s, cls) || !slab_block_ok(s, a))
        return NULL;
    return s;
}

static unsigned block_index(const struct bm_page *s, const void *p)
{
    return (unsigned)(((uintptr_t)p - (uintptr_t)page_to_addr(s)) / bm_classes[s->slab.cls].size);
}

/* One slab of h: owned by h, lists sound (bm_slab_mark_list); then its use
 * count is set to what its lists say (blocks in h's bin, and blocks freed
 * by other threads and not collected yet, count as used, as they do while
 * a thread runs). */
static bool repair_slab(struct bm_heap *h, struct bm_page *s, unsigned cls, bool full)
{
    uint64_t bits[MAX_CAPACITY / 64];
    unsigned long n = 0, remote = 0, where;
    uintptr_t owner = atomic_load_explicit(&s->slab.heap, memory_order_relaxed);
    if (!is_slab(s, cls) || owner != ((uintptr_t)h | (full ? SLAB_FULL : 0)))
        return false;
    memset(bits, 0, sizeof bits);
    if (bm_slab_mark_list(s, s->slab.free, bits, &n, &where) != BM_LIST_OK ||
        bm_slab_mark_list(s, s->slab.local_free, bits, &n, &where) != BM_LIST_OK ||
        bm_slab_mark_list(s, (void *)atomic_load_explicit(&s->slab.thread_free,
                                                          memory_order_relaxed),
                          bits, &remote, &where) != BM_LIST_OK)
        return false;
    /* blocks of this slab in the bin must be on none of its lists */
    unsigned in_bin = 0;
    for (void *p = h->bin[cls]; p; p = bm_link_peek(p), in_bin++) {
        if (in_bin > BIN_MAX + 1)
            return false;
        if (block_slab(p, cls) == s) {
            unsigned i = block_index(s, p);
            if (bits[i / 64] & (1ull << (i % 64)))
                return false;
            bits[i / 64] |= 1ull << (i % 64);
        }
    }
    s->slab.used = (uint16_t)(s->slab.reserved - n);
    return true;
}

/* A queue of h's slabs: a sound circular list of nr slabs. */
static bool repair_queue(struct bm_heap *h, struct bm_list *q, unsigned long nr, unsigned cls,
                         bool full)
{
    unsigned long n = 0;
    struct bm_list *prev = q;
    for (struct bm_list *l = q->next; l != q; prev = l, l = l->next) {
        if (!l || l->prev != prev || ++n > nr)
            return false;
        if (!repair_slab(h, lru_to_page(l), cls, full))
            return false;
    }
    return n == nr && q->prev == prev;
}

bool bm_fork_heap_repair(struct bm_heap *h)
{
    if (h->dead)
        return false;
    for (unsigned c = 0; c < BM_NR_CLASSES; c++) {
        /* the bin: a short list of block starts of slabs of h */
        unsigned n = 0;
        for (void *p = h->bin[c]; p; p = bm_link_peek(p)) {
            struct bm_page *s = block_slab(p, c);
            if (!s || ++n > BIN_MAX + 1 ||
                (atomic_load_explicit(&s->slab.heap, memory_order_relaxed) & ~SLAB_FULL) !=
                    (uintptr_t)h)
                return false;
        }
        h->bin_n[c] = n ? n : bm_bin_empty_n();
        struct bm_page *cur = h->cur[c];
        if (cur != &bm_slab_empty && !repair_slab(h, cur, c, false))
            return false;
        if (!repair_queue(h, &h->q[c].partial, h->q[c].nr_partial, c, false) ||
            !repair_queue(h, &h->q[c].full, h->q[c].nr_full, c, true))
            return false;
    }
    return true;
}
