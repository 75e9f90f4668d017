/*
 * os.c - what buddymalloc asks of the kernel besides memory: futex sleeps,
 * the CPU number when rseq is off, a clock, and messages on stderr. Nothing
 * here allocates.
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fmt.h"
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
        if (bm_spin_trylock(l))
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
