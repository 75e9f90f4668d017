/*
 * fuzz_malloc.c - libFuzzer harness for the malloc API.
 *
 * The input is a program: each operation is an opcode byte followed by the
 * bytes it needs (a slot, a size, an alignment). Up to SLOTS blocks live at
 * once. Operations run on one of two threads, the harness's own and a helper
 * that takes operations one at a time (a "switch" operation changes which):
 * blocks allocated on one thread and freed, reallocated or read on the
 * other exercise the remote-free paths, deterministically. Every block
 * carries a pattern made from its slot and generation, checked before it is
 * freed or reallocated (a realloc must keep the smaller of the two sizes),
 * calloc'ed memory must read zero, and the heap checker (bm_check) runs
 * after every operation: any failure aborts, which libFuzzer reports with
 * the input that caused it.
 *
 * Build and run: tests/fuzz/run.sh [SECONDS] (CI: 60 s; docs/malloc.md).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buddymalloc.h"

#define SLOTS 64

struct slot {
    unsigned char *p;
    size_t size;
    uint8_t gen;
};

static struct slot slots[SLOTS];

static void die(const char *what, size_t a, size_t b)
{
    fprintf(stderr, "fuzz_malloc: %s (%zu, %zu)\n", what, a, b);
    abort();
}

static unsigned char pattern(unsigned s, uint8_t gen, size_t i)
{
    return (unsigned char)(s * 31 + gen * 7 + i * 13 + 1);
}

static void fill(unsigned s)
{
    struct slot *b = &slots[s];
    for (size_t i = 0; i < b->size; i++)
        b->p[i] = pattern(s, b->gen, i);
}

static void verify(unsigned s, size_t upto)
{
    struct slot *b = &slots[s];
    size_t n = upto < b->size ? upto : b->size;
    for (size_t i = 0; i < n; i++)
        if (b->p[i] != pattern(s, b->gen, i))
            die("block contents changed: slot, offset", s, i);
}

/* Sizes: mostly small, some runs of pages, rarely above the largest buddy
 * block (a mapping of its own). */
static size_t pick_size(uint16_t r, uint8_t kind)
{
    switch (kind % 8) {
    case 0: case 1: case 2: case 3:
        return r % 1100;                        /* slab classes, 0 included */
    case 4: case 5:
        return r % (64 * 1024);                 /* up to the largest class and past */
    case 6:
        return 32 * 1024 + (size_t)r * 16;      /* runs: 32 KiB ... 1 MiB */
    default:
        return (kind & 0x80) ? 4 * 1024 * 1024 + (size_t)r * 8 : r % 300000;
    }
}

/* ---- one operation ------------------------------------------------------ */

struct op {
    uint8_t code, slot, kind, align;
    uint16_t r;
};

static void store(unsigned s, void *p, size_t size, int zeroed)
{
    struct slot *b = &slots[s];
    b->p = p;
    b->size = size;
    b->gen++;
    if (zeroed)
        for (size_t i = 0; i < size; i++)
            if (b->p[i])
                die("calloc'ed byte not zero: size, offset", size, i);
    fill(s);
}

static void release(unsigned s)
{
    if (!slots[s].p)
        return;
    verify(s, SIZE_MAX);
    if ((slots[s].gen & 3) == 0)
        bm_free_sized(slots[s].p, slots[s].size);
    else
        bm_free(slots[s].p);
    slots[s].p = NULL;
}

static void run_op(const struct op *o)
{
    unsigned s = o->slot % SLOTS;
    size_t size = pick_size(o->r, o->kind);
    void *p;

    switch (o->code % 8) {
    case 0: case 1:                             /* malloc */
        release(s);
        p = bm_malloc(size);
        if (!p)
            die("malloc returned NULL", size, 0);
        store(s, p, size, 0);
        break;
    case 2: {                                   /* calloc */
        release(s);
        size_t n = 1 + o->align % 8;
        p = bm_calloc(n, size / n);
        if (!p)
            die("calloc returned NULL", n, size / n);
        store(s, p, n * (size / n), 1);
        break;
    }
    case 3: {                                   /* realloc */
        struct slot *b = &slots[s];
        if (b->p)
            verify(s, SIZE_MAX);
        size_t keep = b->p ? (size < b->size ? size : b->size) : 0;
        p = bm_realloc(b->p, size);
        if (!p && size)
            die("realloc returned NULL", size, 0);
        if (!size && !p) {
            b->p = NULL;
            break;
        }
        b->p = p;
        b->size = keep;
        verify(s, keep);                        /* the kept bytes moved with it */
        b->size = size;
        b->gen++;
        fill(s);
        break;
    }
    case 4: {                                   /* memalign family */
        release(s);
        size_t align = (size_t)1 << (o->align % 22);   /* 1 B ... 2 MiB */
        if (align < sizeof(void *))
            align = sizeof(void *);
        if (o->kind & 1) {
            if (bm_posix_memalign(&p, align, size))
                die("posix_memalign failed", align, size);
        } else {
            p = bm_memalign(align, size);
            if (!p)
                die("memalign returned NULL", align, size);
        }
        if ((uintptr_t)p % align)
            die("misaligned block: align, address", align, (uintptr_t)p);
        store(s, p, size, 0);
        break;
    }
    case 5:                                     /* free */
        release(s);
        break;
    case 6:                                     /* usable size */
        if (slots[s].p && bm_malloc_usable_size(slots[s].p) < slots[s].size)
            die("usable size below the request", bm_malloc_usable_size(slots[s].p),
                slots[s].size);
        break;
    default:                                    /* handled by the caller */
        break;
    }
}

/* ---- the helper thread: runs one operation at a time, on request ---------- */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static const struct op *pending;
static int helper_started;

static void *helper(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&mu);
    for (;;) {
        while (!pending)
            pthread_cond_wait(&cv, &mu);
        run_op(pending);
        if (bm_check(-1) != 0) {                /* this thread's heap too */
            bm_check(2);
            die("heap checker failed on the helper thread", 0, pending->code % 8);
        }
        pending = NULL;
        pthread_cond_broadcast(&cv);
    }
    return NULL;
}

static void run_on_helper(const struct op *o)
{
    pthread_mutex_lock(&mu);
    if (!helper_started) {
        pthread_t t;
        if (pthread_create(&t, NULL, helper, NULL))
            die("pthread_create failed", 0, 0);
        helper_started = 1;
    }
    pending = o;
    pthread_cond_broadcast(&cv);
    while (pending)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int on_helper = 0;
    for (size_t i = 0; i + 6 <= size; i += 6) {
        struct op o = { data[i], data[i + 1], data[i + 2], data[i + 3],
                        (uint16_t)(data[i + 4] | data[i + 5] << 8) };
        if (o.code % 8 == 7) {
            on_helper = !on_helper;             /* thread switch */
            continue;
        }
        if (on_helper)
            run_on_helper(&o);
        else
            run_op(&o);
        if (bm_check(-1) != 0) {
            bm_check(2);
            die("heap checker failed after operation", i / 6, o.code % 8);
        }
    }
    /* everything back, half of it from the other thread */
    for (unsigned s = 0; s < SLOTS; s++) {
        struct op o = { 5, (uint8_t)s, 0, 0, 0 };
        if (s & 1)
            run_on_helper(&o);
        else
            run_op(&o);
    }
    if (bm_check(-1) != 0) {
        bm_check(2);
        die("heap checker failed at the end of the input", 0, 0);
    }
    return 0;
}
