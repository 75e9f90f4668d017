/*
 * Hardening (docs/malloc.md#hardening): encoded free-list links catch
 * writes into freed blocks before the bad link is used, and double frees
 * anywhere on a slab's lists; harden=secure adds guard pages, a random
 * block order and no bins. Each detection names what, where and which
 * function, then aborts: the bad cases run in a child whose stderr is read.
 */
#include <setjmp.h>
#include <sys/mman.h>

#include "helpers.h"
#include "size_class.h"
#include "slab.h"

/* What the child shares with the parent: the address the report must name. */
static volatile uintptr_t *shared_addr;

static void share_init(void)
{
    shared_addr = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    cr_assert_neq((void *)shared_addr, MAP_FAILED);
    *shared_addr = 0;
}

struct child { const char *opts; void (*fn)(void); };

static void run_child(void *arg)
{
    struct child *c = arg;
    if (c->opts)
        bm_test_options(c->opts);
    c->fn();
}

/* Run fn in a child with options opts and stderr captured: it must abort,
 * the report must contain want and "fn_name(<address the child shared>)". */
static void expect_report(const char *opts, void (*fn)(void), const char *fn_name,
                          const char *want)
{
    share_init();
    struct child c = { opts, fn };
    char msg[1024];
    expect_child_abort(run_child, &c, msg, sizeof msg);
    cr_assert(strstr(msg, want) != NULL, "report lacks '%s': %s", want, msg);
    char where[64];
    snprintf(where, sizeof where, "%s(%p)", fn_name, (void *)*shared_addr);
    cr_assert(strstr(msg, where) != NULL, "report lacks '%s': %s", where, msg);
}

#if BM_HARDEN_LINKS

/* ---- default level: encoded links ---------------------------------------- */

static void write_after_free(void)
{
    void **p = bm_malloc(64);
    bm_malloc(64);                          /* keeps the slab */
    bm_free(p);
    *shared_addr = (uintptr_t)p;
    static int victim;
    p[0] = &victim;                         /* a plausible pointer */
    bm_malloc(64);                          /* pops p: its link is checked */
}

Test(harden, write_after_free_is_caught_at_the_next_malloc)
{
    expect_report(NULL, write_after_free, "malloc", "heap corruption");
}

static void overrun_into_free_block(void)
{
    /* two neighbours a, b = a + 48; b freed, then a overrun by 8 bytes */
    char *blk[64];
    for (int i = 0; i < 64; i++)
        blk[i] = bm_malloc(48);
    for (int i = 0; i < 64; i++)
        for (int j = 0; j < 64; j++)
            if (blk[j] == blk[i] + 48) {
                bm_free(blk[j]);
                *shared_addr = (uintptr_t)blk[j];
                memset(blk[i], 'A', 48 + 8);
                bm_malloc(48);
                return;
            }
}

Test(harden, overrun_into_a_free_neighbour_is_caught)
{
    expect_report(NULL, overrun_into_free_block, "malloc", "heap corruption");
}

static void double_free_in_bin(void)
{
    void *p = bm_malloc(32), *q = bm_malloc(32);
    bm_free(p);
    bm_free(q);                             /* p is no longer on top */
    *shared_addr = (uintptr_t)p;
    bm_free(p);
}

Test(harden, double_free_of_a_block_deep_in_the_bin)
{
    expect_report(NULL, double_free_in_bin, "free", "double free");
}

/* p freed, then n other blocks of its slab (the bin flushes: p goes to its
 * slab), then p again */
static void double_free_after(int n)
{
    void *keep = bm_malloc(32), *p = bm_malloc(32), *more[100];
    (void)keep;
    for (int i = 0; i < n; i++)
        more[i] = bm_malloc(32);
    bm_free(p);
    for (int i = 0; i < n; i++)
        bm_free(more[i]);
    *shared_addr = (uintptr_t)p;
    bm_free(p);
}

static void double_free_on_slab_list(void) { double_free_after(40); }

Test(harden, double_free_of_a_block_back_on_its_slab)
{
    expect_report(NULL, double_free_on_slab_list, "free", "double free (the block is on a free list)");
}

static void *free_it(void *p)
{
    bm_free(p);
    return NULL;
}

static void double_free_remote(void)
{
    void *p = bm_malloc(48);
    bm_malloc(48);
    pthread_t t;
    pthread_create(&t, NULL, free_it, p);
    pthread_join(t, NULL);
    *shared_addr = (uintptr_t)p;
    pthread_create(&t, NULL, free_it, p);   /* aborts in the thread */
    pthread_join(t, NULL);
}

Test(harden, second_remote_free_is_caught_at_once)
{
    expect_report(NULL, double_free_remote, "free",
                  "double free (the block is on the slab's remote free list)");
}

static void corrupt_remote_list(void)
{
    /* p freed by another thread sits on the slab's thread_free list; a
     * write into it is found when the owner collects that list */
    void **p = bm_malloc(96);
    pthread_t t;
    pthread_create(&t, NULL, free_it, p);
    pthread_join(t, NULL);
    p[0] = (void *)0x1234;
    *shared_addr = (uintptr_t)p;
    for (int n = 0; n < 2000; n++)          /* until a refill collects it */
        bm_malloc(96);
}

Test(harden, write_into_a_block_freed_by_another_thread_is_caught)
{
    expect_report(NULL, corrupt_remote_list, "malloc", "heap corruption");
}

/* Live blocks whose first word is anything a program stores are freed as
 * usual: no false double free. */
Test(harden, live_data_never_looks_like_a_free_block)
{
    enum { N = 60000 };
    static void *blk[N];
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < N; i++) {
        size_t size = 8 + (xorshift(&seed) % 512);
        uint64_t *p = bm_malloc(size);
        cr_assert_not_null(p);
        switch (i % 6) {
        case 0: p[0] = 0; break;
        case 1: p[0] = ~0ull; break;                    /* -1 */
        case 2: p[0] = xorshift(&seed); break;
        case 3: p[0] = (uintptr_t)blk[i ? i - 1 : 0]; break;   /* a heap pointer */
        case 4: memcpy(p, "textual", 8); break;
        case 5: break;                                  /* never written */
        }
        blk[i] = p;
    }
    for (int i = 0; i < N; i++) {                       /* a shuffled order */
        int j = (int)(xorshift(&seed) % N);
        void *t = blk[i];
        blk[i] = blk[j];
        blk[j] = t;
    }
    for (int i = 0; i < N; i++)
        bm_free(blk[i]);
    assert_heap_ok();
}

#endif /* BM_HARDEN_LINKS */

/* ---- harden=secure ----------------------------------------------------------- */

/* The slab a block lies in (buddy blocks are aligned to their size), and
 * the guard page at its end. */
static char *guard_of(void *p, unsigned cls)
{
    size_t bytes = BM_PAGE_SIZE << bm_classes[cls].order;
    uintptr_t base = (uintptr_t)p & ~(uintptr_t)(bytes - 1);
    return (char *)base + bytes - BM_PAGE_SIZE;
}

static sigjmp_buf fault_jmp;
static void on_segv(int sig)
{
    (void)sig;
    siglongjmp(fault_jmp, 1);
}

Test(harden_secure, slabs_end_in_a_guard_page)
{
    bm_test_options("harden=secure");
    signal(SIGSEGV, on_segv);
    for (volatile size_t size = 16; size <= BM_SLAB_MAX; size *= 4) {
        char *p = bm_malloc(size);
        unsigned cls = bm_size_to_class(size);
        const struct bm_class *c = &bm_classes[cls];
        char *guard = guard_of(p, cls);
        uintptr_t base = (uintptr_t)guard + BM_PAGE_SIZE - (BM_PAGE_SIZE << c->order);
        cr_assert_leq(base + (uintptr_t)c->capacity * c->size, (uintptr_t)guard,
                      "no block reaches into the guard page (size %zu)", size);
        volatile char *g = guard;
        if (sigsetjmp(fault_jmp, 1) == 0) {
            *g = 1;
            cr_assert_fail("writing the guard page of a %zu-byte slab did not fault", size);
        }
        if (sigsetjmp(fault_jmp, 1) == 0) {
            (void)*g;
            cr_assert_fail("reading the guard page did not fault");
        }
        bm_free(p);
    }
    signal(SIGSEGV, SIG_DFL);
    cr_assert_gt(atomic_load(&bm_guard_stats.pages), 0);
    char report[16384];
    FILE *f = fmemopen(report, sizeof report, "w");
    bm_stats(f);
    fclose(f);
    cr_assert_not_null(strstr(report, "slabs with a guard page"), "%s", report);
    assert_heap_ok();
}

/* Freed slabs give their pages back readable: a page run made from them
 * can be written end to end. */
Test(harden_secure, guard_pages_are_lifted_when_slabs_go)
{
    bm_test_options("harden=secure");
    enum { N = 4000 };
    static void *blk[N];
    for (int i = 0; i < N; i++)
        blk[i] = bm_malloc(512);
    for (int i = 0; i < N; i++)
        bm_free(blk[i]);
    bm_trim(0);
    for (int i = 0; i < 64; i++) {
        char *r = bm_malloc(40000);
        memset(r, 0x5a, 40000);
        blk[i] = r;
    }
    for (int i = 0; i < 64; i++)
        bm_free(blk[i]);
    assert_heap_ok();
}

Test(harden_secure, blocks_come_in_a_random_order)
{
    bm_test_options("harden=secure");
    enum { N = 60 };
    char *p[N];
    for (int i = 0; i < N; i++)
        p[i] = bm_malloc(64);
    int ascending = 0, descending = 0;
    for (int i = 1; i < N; i++) {
        ascending += p[i] == p[i - 1] + 64;
        descending += p[i] == p[i - 1] - 64;
    }
    /* a random order puts neighbours next to each other about 2 times in 60 */
    cr_assert_lt(ascending + descending, 20, "%d in address order", ascending + descending);
    for (int i = 0; i < N; i++)
        bm_free(p[i]);
    assert_heap_ok();
}

#if BM_HARDEN_LINKS
static void secure_double_free_later(void) { double_free_after(100); }

Test(harden_secure, double_free_found_on_the_slab)
{
    expect_report("harden=secure", secure_double_free_later, "free", "double free");
}
#endif

static void secure_misaligned_free(void)
{
    char *p = bm_malloc(64);
    bm_malloc(64);
    *shared_addr = (uintptr_t)(p + 8);
    bm_free(p + 8);
}

/* The default level checks a block start only off the fast path; with
 * bins off every free is checked. */
Test(harden_secure, free_of_an_interior_pointer_is_caught_at_once)
{
    expect_report("harden=secure", secure_misaligned_free, "free", "invalid pointer");
}

/* When mprotect fails (at the limit of mappings), slabs go without a guard
 * page, or keep their pages out of use if the guard cannot be lifted;
 * nothing else changes. */
Test(harden_secure, mprotect_failures_cost_only_the_guard)
{
    bm_test_options("harden=secure");
    bm_free(bm_malloc(1));
    bm_fault_inject("mprotect", 1, 1000000);
    enum { N = 3000 };
    static void *blk[N];
    for (int i = 0; i < N; i++)
        blk[i] = bm_malloc(200);
    cr_assert_gt(atomic_load(&bm_guard_stats.failed), 0);
    for (int i = 0; i < N; i++)
        bm_free(blk[i]);
    cr_assert_gt(atomic_load(&bm_guard_stats.leaked), 0, "freed slabs whose guard stuck are kept");
    assert_heap_ok();
    bm_fault_inject("mprotect", 0, 0);
    for (int i = 0; i < N; i++)
        blk[i] = bm_malloc(200);
    for (int i = 0; i < N; i++) {
        memset(blk[i], 1, 200);
        bm_free(blk[i]);
    }
    assert_heap_ok();
}

/* The class table is built at bootstrap: memalign as a process's first
 * call used to pick a class from the empty table (only luck kept the
 * block aligned without the random order). */
Test(harden_secure, memalign_as_the_first_call_is_aligned)
{
    bm_test_options("harden=secure");
    void *v = bm_valloc(100);
    cr_assert_eq((uintptr_t)v % 4096, 0, "%p", v);
    cr_assert_geq(bm_malloc_usable_size(v), 100);
    bm_free(v);
    assert_heap_ok();
}

Test(harden_secure, heavy_mixed_work_keeps_the_heap_sound)
{
    bm_test_options("harden=secure");
    enum { N = 20000 };
    static void *blk[N];
    uint64_t seed = 42;
    for (int round = 0; round < 6; round++) {
        for (int i = 0; i < N; i++) {
            size_t size = 1 + (xorshift(&seed) % (i % 50 ? 600 : 70000));
            blk[i] = bm_malloc(size);
            cr_assert_not_null(blk[i]);
            memset(blk[i], i & 0xff, size < 64 ? size : 64);
        }
        for (int i = 0; i < N; i += 1 + (round & 1))
            bm_free(blk[i]), blk[i] = NULL;
        for (int i = 0; i < N; i++)
            if (blk[i])
                bm_free(blk[i]);
    }
    assert_heap_ok();
}
