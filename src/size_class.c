/*
 * size_class.c - builds the class table and each class's slab order at
 * bootstrap (a few hundred instructions, no allocation).
 *
 * Slab order as SLUB's calculate_order(): the smallest order that holds
 * enough blocks (64 for classes up to 1 KiB, 8 up to 4 KiB, 2 up to 8 KiB,
 * else 4: what fits in the largest slab, 128 KiB) and leaves at most 1/16
 * of the slab unused at its tail; failing that 1/8, then 1/4, then the
 * order with the least waste. Small slabs keep a thread's idle current
 * slabs small; orders up to PCP_MAX_ORDER come from the per-CPU pagesets.
 */
#include <stdlib.h>

#include "internal.h"
#include "size_class.h"


struct bm_class bm_classes[BM_NR_CLASSES];

/* Class of a request of s bytes (s <= 1024) at index (s + 7) / 8. A
 * constant: malloc's fast path reads it before the allocator has ever run
 * (the first malloc of a process is what bootstraps it). bm_size_classes_init
 * checks it against class_size(). */
const uint8_t bm_class_lookup[BM_SMALL_LOOKUP / 8 + 1] = {
    0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7,
    7, 8, 8, 8, 8, 9, 9, 9, 9, 10, 10, 10, 10, 11, 11, 11,
    11, 12, 12, 12, 12, 12, 12, 12, 12, 13, 13, 13, 13, 13, 13, 13,
    13, 14, 14, 14, 14, 14, 14, 14, 14, 15, 15, 15, 15, 15, 15, 15,
    15, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16,
    16, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17,
    17, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18,
    18, 19, 19, 19, 19, 19, 19, 19, 19, 19, 19, 19, 19, 19, 19, 19,
    19,
};

static uint32_t class_size(unsigned i)
{
    if (i < 8)
        return 16 * (i + 1);                        /* 16 .. 128 */
    unsigned k = 7 + (i - 8) / 4, j = (i - 8) % 4;  /* 2^k + (j+1) 2^(k-2) */
    return (1u << k) + (j + 1) * (1u << (k - 2));
}

/* Bytes of blocks in a slab of order o: all of it, or all but the last
 * page, which is a guard page with harden=secure (slab.c). */
static uint64_t slab_bytes(unsigned o, bool guard)
{
    return (BM_PAGE_SIZE << o) - (guard ? BM_PAGE_SIZE : 0);
}

void bm_size_classes_init(void)
{
    bool guard = bm_g.opt.harden >= BM_HARDEN_SECURE;
    unsigned min_order = guard ? 1 : 0;
    for (unsigned i = 0; i < BM_NR_CLASSES; i++) {
        struct bm_class *c = &bm_classes[i];
        uint32_t size = class_size(i);
        /* 2 above 4 KiB: 16-32 KiB slabs fit the holes that emptied slabs of
         * the 1-4 KiB classes leave (orders 2-3); with 8 blocks the 8 KiB
         * class needed 64 KiB and took fresh pageblocks instead
         * (bench/frag-at-size.sh: 8 KiB phase 2.3 s -> 0.16 s, no RSS
         * growth, with release=none) */
        unsigned min_objs = size <= 1024 ? 64 : size <= 4096 ? 8 : size <= 8192 ? 2 : 4;
        unsigned best = BM_SLAB_MAX_ORDER + 1;
        for (unsigned fraction = 16; fraction >= 4 && best > BM_SLAB_MAX_ORDER; fraction /= 2) {
            for (unsigned o = min_order; o <= BM_SLAB_MAX_ORDER; o++) {
                uint64_t bytes = slab_bytes(o, guard), objs = bytes / size;
                if (objs >= min_objs && bytes - objs * size <= bytes / fraction) {
                    best = o;
                    break;
                }
            }
        }
        if (best > BM_SLAB_MAX_ORDER) {
            uint64_t best_waste = UINT64_MAX;
            for (unsigned o = min_order; o <= BM_SLAB_MAX_ORDER; o++) {
                uint64_t bytes = slab_bytes(o, guard), objs = bytes / size;
                uint64_t waste_ppm = objs ? (bytes - objs * size) * 1000000 / bytes : UINT64_MAX;
                if (waste_ppm < best_waste) {
                    best_waste = waste_ppm;
                    best = o;
                }
            }
        }
        c->size = size;
        c->magic = (uint32_t)(((1ULL << 32) + size - 1) / size);
        c->order = (uint8_t)best;
        c->capacity = (uint16_t)(slab_bytes(best, guard) / size);
        /* carve about a page of blocks at a time, so untouched slab memory
         * stays untouched */
        unsigned ext = (unsigned)(BM_PAGE_SIZE / size);
        c->extend = (uint8_t)(ext < 1 ? 1 : ext > 64 ? 64 : ext);
    }
    for (unsigned s = 0; s <= BM_SMALL_LOOKUP; s += 8) {
        unsigned i = 0;
        while (class_size(i) < (s ? s : 1))
            i++;
        if (bm_class_lookup[(s + 7) >> 3] != i) {
            bm_message("internal error: ", "size class lookup table out of date");
            abort();
        }
    }
}
