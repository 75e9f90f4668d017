/* Address and order arithmetic: descriptors found by arithmetic, natural
 * alignment, foreign addresses recognised. */
#include "helpers.h"

Test(arith, geometry_constants)
{
    cr_assert_eq(bm_max_order(), MAX_ORDER);
    cr_assert_eq(bm_pageblock_order(), pageblock_order);
    cr_assert(pageblock_order < MAX_ORDER);
    cr_assert_eq(REGION_FIRST_PAGE % MAX_ORDER_NR_PAGES, 0);
    /* the mem_map fits below the first usable page */
    cr_assert_leq(REGION_PAGES * sizeof(struct bm_page), REGION_FIRST_PAGE * BM_PAGE_SIZE);
    cr_assert_eq(sizeof(struct bm_page), 64);
}

Test(arith, descriptor_roundtrip)
{
    for (unsigned order = 0; order < MAX_ORDER; order++) {
        char *p = bm_alloc_pages(order, 0);
        cr_assert_not_null(p, "order %u", order);
        uintptr_t a = (uintptr_t)p;
        cr_assert_eq(a % (BM_PAGE_SIZE << order), 0, "order %u block %p not naturally aligned",
                     order, p);
        struct bm_page *d = addr_to_page(a);
        cr_assert_eq(page_to_addr(d), p);
        cr_assert_eq((uintptr_t)page_region(d), a & ~REGION_MASK);
        cr_assert_eq(page_index(d), (a & REGION_MASK) >> BM_PAGE_SHIFT);
        cr_assert_eq(page_index(d) % (1UL << order), 0);
        cr_assert(page_index(d) >= REGION_FIRST_PAGE);
        /* every page inside the block maps into the same descriptor array */
        uintptr_t last = a + (BM_PAGE_SIZE << order) - 1;
        cr_assert_eq(addr_to_page(last), d + (1UL << order) - 1);
        cr_assert_eq(bm_pages_order(p), (int)order);
        cr_assert(bm_addr_in_region(a));
        bm_free_pages(p, order);
    }
    assert_heap_ok();
}

Test(arith, buddy_index_is_xor)
{
    /* Allocate two order-3 blocks from one fresh order-4 split: they are
     * buddies, and their indices differ exactly in bit 3. */
    char *a = bm_alloc_pages(4, BM_GFP_LARGE | BM_GFP_NOPCP);
    bm_free_pages(a, 4);
    char *x = bm_alloc_pages(3, BM_GFP_LARGE | BM_GFP_NOPCP);
    char *y = bm_alloc_pages(3, BM_GFP_LARGE | BM_GFP_NOPCP);
    unsigned long ix = page_index(addr_to_page((uintptr_t)x));
    unsigned long iy = page_index(addr_to_page((uintptr_t)y));
    cr_assert_eq(ix ^ (1UL << 3), iy, "expected buddies, got %lu and %lu", ix, iy);
    cr_assert_eq((uintptr_t)x ^ (BM_PAGE_SIZE << 3), (uintptr_t)y);
    bm_free_pages(x, 3);
    bm_free_pages(y, 3);
    assert_heap_ok();
}

Test(arith, foreign_addresses)
{
    int on_stack;
    static int in_data;
    void *heap = malloc(64);
    cr_assert_not(bm_addr_in_region((uintptr_t)&on_stack));
    cr_assert_not(bm_addr_in_region((uintptr_t)&in_data));
    cr_assert_not(bm_addr_in_region((uintptr_t)heap));
    cr_assert_not(bm_addr_in_region(~(uintptr_t)0));
    cr_assert_eq(bm_pages_order(&on_stack), -1);
    cr_assert_eq(bm_pages_order(heap), -1);
    free(heap);

    char *p = bm_alloc_pages(2, 0);
    cr_assert_eq(bm_pages_order(p + BM_PAGE_SIZE), -1, "interior page is not a block start");
    cr_assert_eq(bm_pages_order(p + 16), -1, "unaligned address");
    /* the region header / mem_map is ours but never a block */
    cr_assert_eq(bm_pages_order((void *)((uintptr_t)p & ~REGION_MASK)), -1);
    bm_free_pages(p, 2);
    cr_assert_eq(bm_pages_order(p), -1, "freed block is no longer allocated");
}

Test(arith, too_large_order_is_enomem)
{
    errno = 0;
    cr_assert_null(bm_alloc_pages(MAX_ORDER, 0));
    cr_assert_eq(errno, ENOMEM);
    errno = 0;
    cr_assert_null(bm_alloc_pages(63, 0));
    cr_assert_eq(errno, ENOMEM);
    bm_free_pages(NULL, 0);          /* ignored */
    assert_heap_ok();
}

Test(arith, bad_free_foreign, .signal = SIGABRT)
{
    static char page[8192] __attribute__((aligned(4096)));
    bm_free_pages(page, 0);
}

Test(arith, bad_free_double, .signal = SIGABRT)
{
    void *p = bm_alloc_pages(0, BM_GFP_NOPCP);
    bm_free_pages(p, 0);
    bm_free_pages(p, 0);
}

Test(arith, bad_free_double_via_pcp, .signal = SIGABRT)
{
    void *p = bm_alloc_pages(0, 0);
    bm_free_pages(p, 0);             /* now on a pageset list */
    bm_free_pages(p, 0);
}

Test(arith, bad_free_wrong_order, .signal = SIGABRT)
{
    void *p = bm_alloc_pages(2, 0);
    bm_free_pages(p, 1);
}

Test(arith, bad_free_interior, .signal = SIGABRT)
{
    char *p = bm_alloc_pages(2, 0);
    bm_free_pages(p + 2 * BM_PAGE_SIZE, 0);
}

Test(arith, bad_free_message_names_function_and_address)
{
    /* Run the bad free in a child and read what it printed. */
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    char *p = bm_alloc_pages(1, 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 2);
        bm_free_pages(p, 0);
        _exit(0);
    }
    close(fds[1]);
    char msg[512] = {0};
    ssize_t n = read(fds[0], msg, sizeof msg - 1);
    cr_assert_gt(n, 0);
    char addr[32];
    snprintf(addr, sizeof addr, "%p", (void *)p);
    cr_assert(strstr(msg, "bm_free_pages(") != NULL, "message: %s", msg);
    cr_assert(strstr(msg, addr) != NULL, "message lacks %s: %s", addr, msg);
    cr_assert(strstr(msg, "order") != NULL, "message: %s", msg);
}
