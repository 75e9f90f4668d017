/* Introspection in the kernel's formats. */
#include <regex.h>

#include "helpers.h"

static void assert_matches(const char *text, const char *re)
{
    regex_t r;
    cr_assert_eq(regcomp(&r, re, REG_EXTENDED | REG_NEWLINE | REG_NOSUB), 0);
    cr_assert_eq(regexec(&r, text, 0, NULL, 0), 0, "text:\n%s\ndoes not match %s", text, re);
    regfree(&r);
}

Test(stats, buddyinfo_format)
{
    char buf[4096];
    size_t n = bm_buddyinfo(buf, sizeof buf);
    cr_assert_eq(n, strlen(buf));
    /* "Node 0, zone   Normal" then one %6lu column per order */
    char re[256];
    snprintf(re, sizeof re, "^Node 0, zone   Normal ( +[0-9]+ ){%d}$", MAX_ORDER);
    assert_matches(buf, re);
}

Test(stats, snprintf_semantics)
{
    char full[4096], small[16];
    size_t n = bm_buddyinfo(full, sizeof full);
    size_t m = bm_buddyinfo(small, sizeof small);
    cr_assert_eq(n, m, "the length of the whole text either way");
    cr_assert_eq(strlen(small), sizeof small - 1);
    cr_assert_eq(strncmp(full, small, sizeof small - 1), 0);
    cr_assert_eq(bm_buddyinfo(NULL, 0), n);
}

Test(stats, pagetypeinfo_format_and_counts)
{
    char buf[8192];
    void *p = bm_alloc_pages(0, BM_GFP_LARGE | BM_GFP_NOPCP);
    bm_pagetypeinfo(buf, sizeof buf);
    char re[256];
    snprintf(re, sizeof re, "^Page block order: %d$", pageblock_order);
    assert_matches(buf, re);
    snprintf(re, sizeof re, "^Pages per block:  %lu$", pageblock_nr_pages);
    assert_matches(buf, re);
    assert_matches(buf, "^Free pages count per migrate type at order +0 +1 ");
    for (int mt = 0; mt < MIGRATE_TYPES; mt++) {
        snprintf(re, sizeof re, "^Node    0, zone   Normal, type +%s( +[0-9]+ ){%d}$",
                 bm_migratetype_name(mt), MAX_ORDER);
        assert_matches(buf, re);
    }
    assert_matches(buf, "^Number of blocks type +Slab +Pages +Large +Reserve $");
    /* one LARGE page taken from a pageblock: one free block per lower order */
    snprintf(re, sizeof re, "type        Large( +1 ){%d}", pageblock_order);
    assert_matches(buf, re);
    struct bm_zone_stats s = zone0();
    unsigned long blocks = 0;
    for (int mt = 0; mt < MIGRATE_TYPES; mt++)
        blocks += s.pageblocks[mt];
    cr_assert_eq(blocks, s.managed_pages / pageblock_nr_pages);
    bm_free_pages(p, 0);
}

Test(stats, extfrag_index_values)
{
    bm_test_options("max_regions=1");
    char buf[4096];
    bm_extfrag_index(buf, sizeof buf);
    /* a new heap can serve every order */
    char re[256];
    snprintf(re, sizeof re, "^Node 0, zone   Normal( -1\\.000){%d} $", MAX_ORDER);
    assert_matches(buf, re);
    /* take every max-order block: the top order cannot be served while
     * smaller blocks are free, so its index is above 0 (fragmentation) */
    while (bm_alloc_pages(MAX_ORDER - 1, BM_GFP_LARGE))
        ;
    bm_extfrag_index(buf, sizeof buf);
    assert_matches(buf, "-1\\.000  0\\.[0-9]{3} $");
}

Test(stats, stats_fd_has_every_section)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    void *p = bm_alloc_pages(3, 0);
    bm_stats_fd(fds[1]);
    close(fds[1]);
    static char buf[65536];
    size_t len = 0;
    ssize_t n;
    while ((n = read(fds[0], buf + len, sizeof buf - 1 - len)) > 0)
        len += (size_t)n;
    buf[len] = '\0';
    const char *sections[] = { "--- buddyinfo ---", "--- pagetypeinfo ---",
                               "--- extfrag_index ---", "--- pagesets ---",
                               "--- zone counters ---", "resident (bound)" };
    for (size_t i = 0; i < sizeof sections / sizeof *sections; i++)
        cr_assert(strstr(buf, sections[i]) != NULL, "missing %s in\n%s", sections[i], buf);
    bm_free_pages(p, 3);
}
