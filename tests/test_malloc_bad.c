/*
 * Bad input: each is reported on stderr with the function and the address,
 * then aborts (as glibc does). docs/malloc.md lists what is caught where.
 */
#include "helpers.h"
#include "size_class.h"

static void *free_in_thread(void *p)
{
    bm_free(p);
    return NULL;
}

static void *stack_ptr(void)
{
    static char buf[64] __attribute__((aligned(16)));
    return buf;
}

Test(bad, free_foreign_pointer, .signal = SIGABRT) { bm_free(stack_ptr()); }

Test(bad, free_glibc_pointer, .signal = SIGABRT)
{
    void *p = malloc(32);           /* the test runner's glibc malloc */
    bm_free(p);
}

Test(bad, double_free_immediate, .signal = SIGABRT)
{
    void *p = bm_malloc(32);
    bm_malloc(32);                  /* keep the slab non-empty */
    bm_free(p);
    bm_free(p);
}

Test(bad, double_free_of_last_block, .signal = SIGABRT)
{
    void *p = bm_malloc(32);
    bm_free(p);                     /* the slab is empty now */
    void *q = bm_malloc(64);
    bm_free(q);
    bm_free(p);
}

Test(bad, double_free_of_run, .signal = SIGABRT)
{
    void *p = bm_malloc(100000);
    bm_free(p);
    bm_free(p);
}

Test(bad, double_free_of_huge, .signal = SIGABRT)
{
    void *p = bm_malloc(64 << 20);
    bm_free(p);
    bm_free(p);
}

Test(bad, double_free_by_other_thread, .signal = SIGABRT)
{
    /* the first free comes from another thread (remote), the second too:
     * caught when the owner collects more blocks than it handed out */
    static void *p;
    p = bm_malloc(48);
    pthread_t t;
    pthread_create(&t, NULL, free_in_thread, p);
    pthread_join(t, NULL);
    pthread_create(&t, NULL, free_in_thread, p);
    pthread_join(t, NULL);
    for (int i = 0; i < 10000; i++)
        bm_free(bm_malloc(48));
    bm_trim(0);
}

Test(bad, interior_pointer_of_run, .signal = SIGABRT)
{
    char *p = bm_malloc(100000);
    bm_free(p + 4096);
}

Test(bad, interior_pointer_of_slab_block_from_other_thread, .signal = SIGABRT)
{
    char *p = bm_malloc(100);
    pthread_t t;
    pthread_create(&t, NULL, free_in_thread, p + 16);
    pthread_join(t, NULL);
}

Test(bad, misaligned_pointer_caught_when_the_bin_flushes, .signal = SIGABRT)
{
    /* An own-thread free goes to the class's bin without the block-start
     * check; the check runs when the bin gives blocks back to their slabs,
     * after a few more frees of the class (or at trim / thread exit). */
    static char *p[64];
    for (int i = 0; i < 64; i++)
        p[i] = bm_malloc(100);
    bm_free(p[0] + 8);
    for (int i = 1; i < 64; i++)
        bm_free(p[i]);
    cr_assert_fail("the misaligned pointer was not caught");
}

Test(bad, misaligned_pointer_caught_by_trim, .signal = SIGABRT)
{
    char *p = bm_malloc(100);
    bm_free(p + 16);
    bm_trim(0);
}

Test(bad, realloc_of_foreign_pointer, .signal = SIGABRT) { bm_realloc(stack_ptr(), 10); }

Test(bad, usable_size_of_foreign_pointer, .signal = SIGABRT)
{
    bm_malloc_usable_size(stack_ptr());
}

Test(bad, free_sized_with_a_larger_size, .signal = SIGABRT)
{
    void *p = bm_malloc(100);
    bm_free_sized(p, 1000);
}

Test(bad, pointer_into_allocator_metadata, .signal = SIGABRT)
{
    void *p = bm_malloc(100);
    bm_free((void *)((uintptr_t)p & ~(uintptr_t)((1UL << 30) - 1)));
}

/* The report names the function and the address. */
Test(bad, report_names_function_and_address)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    char *p = bm_malloc(100000);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 2);
        bm_realloc(p + 4096, 10);
        _exit(0);
    }
    close(fds[1]);
    char msg[512] = {0};
    cr_assert_gt(read(fds[0], msg, sizeof msg - 1), 0);
    int status;
    waitpid(pid, &status, 0);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
    char addr[40];
    snprintf(addr, sizeof addr, "bm_realloc(%p)", (void *)(p + 4096));
    cr_assert(strstr(msg, addr) != NULL, "message: %s", msg);
    cr_assert(strstr(msg, "invalid pointer") != NULL, "message: %s", msg);
    bm_free(p);
    cr_assert_eq(bm_check(2), 0, "the attempt damaged nothing in the parent");
}
