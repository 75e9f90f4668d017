/*
 * size_class.h - the small-object size classes and their slab geometry.
 *
 *   16, 32, 48, ..., 128            (16-byte steps)
 *   then four classes per doubling: 160 192 224 256, 320 ... 512, ...,
 *   20480 24576 28672 32768          (BM_SLAB_MAX)
 *
 * 40 classes. Every class size is a multiple of 16, so every block is
 * 16-byte aligned, as glibc's are (alignof(max_align_t)): programs and
 * compilers may rely on it even for malloc(1). A class 2^k is 2^k-aligned
 * (memalign uses that).
 */
#ifndef BM_SIZE_CLASS_H
#define BM_SIZE_CLASS_H

#include <stddef.h>
#include <stdint.h>

#define BM_NR_CLASSES   40
#define BM_SLAB_MAX     32768u
#define BM_SMALL_LOOKUP 1024u      /* sizes up to this use the byte table */

struct bm_class {
    uint32_t size;          /* block size                                  */
    uint32_t magic;         /* ceil(2^32 / size): offset / size by multiply */
    uint16_t capacity;      /* blocks per slab                              */
    uint8_t  order;         /* slab order                                   */
    uint8_t  extend;        /* blocks carved per lazy extension             */
};

extern struct bm_class bm_classes[BM_NR_CLASSES];
extern const uint8_t bm_class_lookup[BM_SMALL_LOOKUP / 8 + 1];

void bm_size_classes_init(void);

/* Class index for a request of size bytes, size <= BM_SLAB_MAX. */
static inline unsigned bm_size_to_class(size_t size)
{
    if (__builtin_expect(size <= BM_SMALL_LOOKUP, 1))
        return bm_class_lookup[(size + 7) >> 3];
    size_t s1 = size - 1;
    unsigned k = 63u - (unsigned)__builtin_clzl(s1);
    return 8 + (k - 7) * 4 + (unsigned)((s1 >> (k - 2)) - 4);
}

#endif
