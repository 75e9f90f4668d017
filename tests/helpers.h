/*
 * helpers.h - shared by the Criterion tests. Each Criterion test runs in a
 * process of its own, so every test starts with an uninitialised allocator;
 * bm_test_options() sets BUDDYMALLOC_OPTIONS before the first call.
 */
#ifndef BM_TEST_HELPERS_H
#define BM_TEST_HELPERS_H

#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buddymalloc.h"
#include "internal.h"

static inline void bm_test_options(const char *opts)
{
    setenv("BUDDYMALLOC_OPTIONS", opts, 1);
}

/* Run fn(arg) in a child with its stderr captured into msg: the child
 * must abort (the allocator's report of a bad pointer). */
static inline void expect_child_abort(void (*fn)(void *), void *arg, char *msg, size_t size)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 2);
        fn(arg);
        _exit(0);
    }
    close(fds[1]);
    memset(msg, 0, size);
    size_t got = 0;
    ssize_t n;
    while (got < size - 1 && (n = read(fds[0], msg + got, size - 1 - got)) > 0)
        got += (size_t)n;
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
              "the child must abort (status %#x); stderr: %s", status, msg);
}

/* The checker must find nothing; on failure its report is on stderr. */
#define assert_heap_ok() cr_assert_eq(bm_check(2), 0, "heap checker found violations")

static inline const char *buddyinfo_now(char *buf, size_t size)
{
    bm_buddyinfo(buf, size);
    return buf;
}

static inline struct bm_zone_stats zone0(void)
{
    struct bm_zone_stats s;
    cr_assert_eq(bm_zone_stats(0, &s), 0);
    return s;
}

/*
 * The buddy system is back where a snapshot (buddyinfo text and zone
 * statistics) found it, in any geometry: the same free blocks at every
 * order, and at the top order those plus the fresh blocks of regions added
 * meanwhile (a small-region build adds regions where the default one has
 * room); the same pages in use.
 */
struct buddy_snapshot { char info[4096]; struct bm_zone_stats z; };

static inline void buddy_snapshot_take(struct buddy_snapshot *b)
{
    bm_buddyinfo(b->info, sizeof b->info);
    cr_assert_eq(bm_zone_stats(0, &b->z), 0);
}

static inline void buddyinfo_parse(const char *s, unsigned long *n)
{
    const char *p = strstr(s, "Normal");
    cr_assert_not_null(p, "buddyinfo: %s", s);
    p += 6;
    for (unsigned o = 0; o < MAX_ORDER; o++)
        n[o] = strtoul(p, (char **)&p, 10);
}

static inline void assert_buddy_back(const struct buddy_snapshot *b, const char *what)
{
    struct buddy_snapshot now;
    buddy_snapshot_take(&now);
    unsigned long was[MAX_ORDER], is[MAX_ORDER];
    buddyinfo_parse(b->info, was);
    buddyinfo_parse(now.info, is);
    unsigned long added = (now.z.managed_pages - b->z.managed_pages) / MAX_ORDER_NR_PAGES;
    for (unsigned o = 0; o < MAX_ORDER; o++)
        cr_assert_eq(is[o], was[o] + (o == MAX_ORDER - 1 ? added : 0),
                     "%s: order %u: %lu free blocks, %lu before (+%lu fresh)\nbefore: %s\nnow:    %s",
                     what, o, is[o], was[o], o == MAX_ORDER - 1 ? added : 0, b->info, now.info);
    cr_assert_eq(now.z.managed_pages - now.z.free_pages, b->z.managed_pages - b->z.free_pages,
                 "%s: pages in use", what);
}

/* Bytes of [p, p + len) that are resident, by mincore: what the kernel
 * maps for those pages, whatever it counts elsewhere (a sanitizer's shadow
 * memory, the zero page on kernels that do or do not map it on a read). */
static inline size_t resident_bytes(const void *p, size_t len)
{
    uintptr_t a = (uintptr_t)p & ~(uintptr_t)(BM_PAGE_SIZE - 1);
    size_t n = ((uintptr_t)p + len - a + BM_PAGE_SIZE - 1) / BM_PAGE_SIZE, res = 0;
    unsigned char vec[256];
    for (size_t i = 0; i < n; i += sizeof vec) {
        size_t k = n - i < sizeof vec ? n - i : sizeof vec;
        cr_assert_eq(mincore((void *)(a + i * BM_PAGE_SIZE), k * BM_PAGE_SIZE, vec), 0,
                     "mincore: %s", strerror(errno));
        for (size_t j = 0; j < k; j++)
            res += vec[j] & 1;
    }
    return res * BM_PAGE_SIZE;
}

/* Resident set of this process in bytes, from /proc/self/statm. */
static inline size_t rss_bytes(void)
{
    char buf[128];
    FILE *f = fopen("/proc/self/statm", "r");
    size_t size = 0, res = 0;
    cr_assert_not_null(f);
    cr_assert_not_null(fgets(buf, sizeof buf, f));
    fclose(f);
    sscanf(buf, "%zu %zu", &size, &res);
    return res * (size_t)sysconf(_SC_PAGESIZE);
}

static inline uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

#endif
