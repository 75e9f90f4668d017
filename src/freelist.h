/*
 * freelist.h - the link word of a free slab block: the one place that reads
 * or writes it, so that hardening (and valgrind's view of it) is here.
 *
 * A free block's first word holds the next block of its list (the slab's
 * free, local_free and thread_free lists, and the heap's bins). With
 * BM_HARDEN_LINKS (meson option freelist_hardening, on by default) it is
 * stored encoded, as the kernel's SLAB_FREELIST_HARDENED does:
 *
 *     stored = next ^ bm_link_key ^ slot
 *
 * bm_link_key is random per process with bit 63 set; slot is the block's own
 * address, so the same next reads differently in every block. Every block
 * address is below 2^47 and 8-aligned, so a decoded link with any of
 * BM_LINK_BAD set cannot be one: whatever a program writes into a block it
 * freed (a use after free, an overflow from the block before) is caught at
 * the pop that would have followed it, before the bad pointer is used.
 * A value with bit 63 clear - a pointer, a small integer, text - always
 * decodes to a bad link; random bits pass with odds 2^-20 (20 bits must
 * match). A forged link needs the key.
 *
 * malloc clears the word of every block it hands out (bm_link_pop), so a
 * live block's first word is the program's data or zero, which never
 * decodes as a link; free uses that to tell a block that is already free
 * at the price of a load and a test (bm_link_looks_free), and confirms it
 * out of line by finding the block on a list (slab.c).
 *
 * Under valgrind (vg.h) a free block is no-access to the program; each
 * access here opens its 8 bytes for the access only (link_open/close).
 */
#ifndef BM_FREELIST_H
#define BM_FREELIST_H

#include "internal.h"
#include "vg.h"

#define BM_LINK_BAD 0xffff800000000007ull   /* above 2^47, or not 8-aligned */
_Static_assert(BM_VA_BITS == 47, "BM_LINK_BAD and bm_link_looks_free assume 47-bit addresses");

extern __attribute__((visibility("hidden"))) uintptr_t bm_link_key;   /* os.c: bm_link_key_init */

/* Report a link that decodes to no block, found by fn, and abort. */
BM_COLD __attribute__((noreturn)) void bm_link_corrupt(const char *fn, const void *slot,
                                                       uintptr_t decoded);

#define link_open(slot) BM_VG_DEFINED((slot), sizeof(uintptr_t))
#define link_close(slot) BM_VG_NOACCESS((slot), sizeof(uintptr_t))

static inline __attribute__((always_inline)) uintptr_t link_word(const void *slot)
{
    link_open(slot);
    uintptr_t w = *(const uintptr_t *)slot;
    link_close(slot);
    return w;
}

static inline __attribute__((always_inline)) void link_store(void *slot, uintptr_t w)
{
    link_open(slot);
    *(uintptr_t *)slot = w;
    link_close(slot);
}

/* What slot's link is XORed with: key ^ slot (0 without the hardening).
 * The free fast path computes it once for its test and its store. */
static inline __attribute__((always_inline)) uintptr_t bm_link_slot_key(const void *slot)
{
#if BM_HARDEN_LINKS
    return bm_link_key ^ (uintptr_t)slot;
#else
    (void)slot;
    return 0;
#endif
}

static inline __attribute__((always_inline)) uintptr_t bm_link_decode(const void *slot)
{
    return link_word(slot) ^ bm_link_slot_key(slot);
}

static inline __attribute__((always_inline)) uintptr_t bm_link_encode(const void *slot, const void *next)
{
    return (uintptr_t)next ^ bm_link_slot_key(slot);
}

/* Store next as slot's link. */
static inline __attribute__((always_inline)) void bm_link_set(void *slot, const void *next)
{
    link_store(slot, bm_link_encode(slot, next));
}

/* The next block after slot, checked: a corrupt link aborts with its
 * address and fn, the function that found it ("malloc" for every
 * allocation path, "free" for the paths of free). For the lists the
 * allocator pops from. */
static inline __attribute__((always_inline)) void *bm_link_next(const void *slot, const char *fn)
{
    uintptr_t n = bm_link_decode(slot);
#if BM_HARDEN_LINKS
    if (unlikely(n & BM_LINK_BAD))
        bm_link_corrupt(fn, slot, n);
#else
    (void)fn;
#endif
    return (void *)n;
}

/* Take slot off the head of its list for a caller: the next block, and the
 * link word cleared so the live block does not look free. */
static inline __attribute__((always_inline)) void *bm_link_pop(void *slot)
{
    void *n = bm_link_next(slot, "malloc");
#if BM_HARDEN_LINKS
    link_store(slot, 0);
#endif
    return n;
}

/* The next block after slot, unchecked: for walkers that judge what they
 * find themselves (the heap checker, fork's repair, the double-free
 * search), so a bad link is a verdict, not an abort. */
static inline __attribute__((always_inline)) void *bm_link_peek(const void *slot)
{
    return (void *)bm_link_decode(slot);
}

/* bm_link_set with k = bm_link_slot_key(slot). */
static inline __attribute__((always_inline)) void bm_link_set_k(void *slot, const void *next,
                                                                uintptr_t k)
{
    link_store(slot, (uintptr_t)next ^ k);
}

/* Could p, a block being freed, be free already? Its word decodes to a
 * link. Never true of a live block unless its first word was crafted with
 * the key; false with the hardening compiled out. */
static inline __attribute__((always_inline)) bool bm_link_looks_free_k(const void *p, uintptr_t k)
{
#if BM_HARDEN_LINKS
    /* the BM_LINK_BAD test as a rotate and a 32-bit mask: the free fast
     * path has no register to spare for a 64-bit one */
    uintptr_t n = link_word(p) ^ k;
    return !(((n << 17) | (n >> 47)) & 0xfffff);
#else
    (void)p;
    (void)k;
    return false;
#endif
}

static inline __attribute__((always_inline)) bool bm_link_looks_free(const void *p)
{
    return bm_link_looks_free_k(p, bm_link_slot_key(p));
}

#endif
