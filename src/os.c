/*
 * os.c - what buddymalloc asks of the kernel besides memory: futex sleeps,
 * the CPU number when rseq is off, a clock, and messages on stderr. Nothing
 * here allocates.
 */
#include <errno.h>
#include <sys/mman.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fmt.h"
#include "freelist.h"
#include "internal.h"

/* ---- zone mutex: slow path ------------------------------------------------ *
 * Drepper's three-state futex mutex ("Futexes Are Tricky", mutex #3): spin a
 * little while the holder is probably running, then mark the lock contended
 * (2) and sleep until the unlocker, seeing 2, wakes one waiter.
 */
void bm_mutex_lock_slow(bm_mutex_t *m)
{
    for (int i = 0; i < 100; i++) {
        int c = 0;
        if (atomic_load_explicit(&m->v, memory_order_relaxed) == 0 &&
            atomic_compare_exchange_strong_explicit(&m->v, &c, 1, memory_order_acquire,
                                                    memory_order_relaxed))
            return;
        __builtin_ia32_pause();
    }
    int saved = errno;              /* free() must not change errno */
    while (atomic_exchange_explicit(&m->v, 2, memory_order_acquire) != 0)
        syscall(SYS_futex, &m->v, FUTEX_WAIT_PRIVATE, 2, NULL, NULL, 0);
    errno = saved;
}

void bm_mutex_wake(bm_mutex_t *m)
{
    int saved = errno;
    syscall(SYS_futex, &m->v, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    errno = saved;
}

/* Pageset locks are held for a handful of list operations (or one refill);
 * a waiter (drain of all pagesets, the checker) spins, then yields so that a
 * preempted holder on the same core gets to run. */
void bm_spin_lock_slow(bm_spinlock_t *l)
{
    for (unsigned i = 0;; i++) {
        if (bm_spin_trylock_raw(l))
            return;
        if (i < 64)
            __builtin_ia32_pause();
        else
            sched_yield();
    }
}

int bm_cpu_slow(void)
{
    int cpu = sched_getcpu();
    if (cpu < 0)
        cpu = 0;
    return cpu % bm_g.nr_cpus;
}

uint64_t bm_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void bm_message(const char *prefix, const char *msg)
{
    char scratch[256];
    struct bm_buf b;
    int saved = errno;
    bm_buf_fd(&b, 2, scratch, sizeof scratch);
    bm_puts(&b, "buddymalloc: ");
    bm_puts(&b, prefix);
    bm_puts(&b, msg);
    bm_putc(&b, '\n');
    bm_buf_finish(&b);
    errno = saved;
}

/* A pointer that buddymalloc did not hand out, or hands back twice, means the
 * heap of the program is already corrupt: report where and stop before the
 * damage spreads. */
void bm_fatal_bad_pointer(const char *func, const void *p, const char *what)
{
    char scratch[256];
    struct bm_buf b;
    bm_buf_fd(&b, 2, scratch, sizeof scratch);
    bm_puts(&b, "buddymalloc: ");
    bm_puts(&b, func);
    bm_puts(&b, "(");
    bm_putx(&b, (uintptr_t)p);
    bm_puts(&b, "): ");
    bm_puts(&b, what);
    bm_putc(&b, '\n');
    bm_buf_finish(&b);
    abort();
}

/* ---- free-list link key (freelist.h) -------------------------------------- */

uintptr_t bm_link_key;

/* From getrandom (a system call: no allocation); without it, from the
 * clock and addresses ASLR placed. Not AT_RANDOM: glibc makes its stack
 * canary and pointer guard from those bytes, and a leaked key must not
 * give them away. Bit 63 set: see freelist.h. */
void bm_link_key_init(void)
{
    uint64_t k = 0;
    if (syscall(SYS_getrandom, &k, sizeof k, 0x1 /* GRND_NONBLOCK */) != (long)sizeof k) {
        k = bm_now_ns() ^ ((uint64_t)(uintptr_t)&k << 17) ^ (uint64_t)(uintptr_t)&bm_link_key;
        k *= 0x9e3779b97f4a7c15ull;
        k ^= k >> 29;
    }
    bm_link_key = (uintptr_t)(k | (1ull << 63));
}

void bm_link_corrupt(const char *fn, const void *slot, uintptr_t decoded)
{
    char what[200];
    struct bm_buf b;
    bm_buf_mem(&b, what, sizeof what);
    bm_puts(&b, "heap corruption: the free-list link of this free block decodes to ");
    bm_putx(&b, decoded);
    bm_puts(&b, ", not a block (written after it was freed, or overrun from the block before)");
    bm_buf_finish(&b);
    bm_fatal_bad_pointer(fn, slot, what);
}

/* The same, with a size in the message: what before, the size, what after. */
void bm_fatal_size(const char *func, const void *p, const char *before, size_t size,
                   const char *after)
{
    char what[160];
    struct bm_buf b;
    bm_buf_mem(&b, what, sizeof what);
    bm_puts(&b, before);
    bm_putu(&b, size, 0);
    bm_puts(&b, after);
    bm_buf_finish(&b);
    bm_fatal_bad_pointer(func, p, what);
}

/* ---- memory calls, with fault injection ----------------------------------- *
 * Every mmap, mremap and madvise of the allocator goes through here, so a
 * test can make the N-th one fail (bm_fault_inject, or the options
 * fail_mmap / fail_madvise counted from start-up) and walk each
 * out-of-memory path: the caller must return NULL with ENOMEM, or keep the
 * memory, and leave the heap consistent. Disarmed, the cost is one relaxed
 * load on paths that make a system call anyway.
 */
static struct {
    _Atomic unsigned long calls, from, until;   /* fail calls from..until-1 */
} faults[BM_FAULT_KINDS];

void bm_fault_arm(enum bm_fault_kind k, unsigned long nth, unsigned long count)
{
    atomic_store(&faults[k].until, 0);              /* off while changing */
    atomic_store(&faults[k].calls, 0);
    atomic_store(&faults[k].from, nth);
    atomic_store(&faults[k].until, nth && count ? nth + count : 0);
}

static bool fault_now(enum bm_fault_kind k)
{
    unsigned long until = atomic_load_explicit(&faults[k].until, memory_order_relaxed);
    if (likely(!until))
        return false;
    unsigned long n = atomic_fetch_add(&faults[k].calls, 1) + 1;
    return n >= atomic_load(&faults[k].from) && n < until;
}

void *bm_os_map_at(void *addr, size_t len, int extra_flags)
{
    if (fault_now(BM_FAULT_MMAP)) {
        errno = ENOMEM;
        return MAP_FAILED;
    }
    return mmap(addr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | extra_flags, -1,
                0);
}

void *bm_os_map(size_t len, int extra_flags) { return bm_os_map_at(NULL, len, extra_flags); }

void *bm_os_remap(void *old, size_t old_len, size_t len)
{
    if (fault_now(BM_FAULT_MMAP)) {
        errno = ENOMEM;
        return MAP_FAILED;
    }
    return mremap(old, old_len, len, MREMAP_MAYMOVE);
}

int bm_os_advise(void *p, size_t len, int advice)
{
    if (fault_now(BM_FAULT_MADVISE)) {
        errno = EAGAIN;
        return -1;
    }
    return madvise(p, len, advice);
}

int bm_os_protect(void *p, size_t len, bool none)
{
    if (fault_now(BM_FAULT_MPROTECT)) {
        errno = ENOMEM;             /* as at the limit of mappings */
        return -1;
    }
    return mprotect(p, len, none ? PROT_NONE : PROT_READ | PROT_WRITE);
}

BM_API int bm_fault_inject(const char *call, unsigned long nth, unsigned long count)
{
    enum bm_fault_kind k;
    if (call && !strcmp(call, "mmap"))
        k = BM_FAULT_MMAP;
    else if (call && !strcmp(call, "madvise"))
        k = BM_FAULT_MADVISE;
    else if (call && !strcmp(call, "mprotect"))
        k = BM_FAULT_MPROTECT;
    else {
        errno = EINVAL;
        return -1;
    }
    bm_fault_arm(k, nth, count);
    return 0;
}
