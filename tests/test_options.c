/* BUDDYMALLOC_OPTIONS: every key, bad keys and values named on stderr with
 * the default kept. */
#include "helpers.h"

#include <criterion/redirect.h>
#include <numaif.h>
#include <sys/syscall.h>

Test(options, every_key_parses)
{
    struct bm_options o;
    bm_options_defaults(&o);
    int errors = bm_options_parse(&o, "max_regions=8,pcp=off,pcp_high=100,pcp_batch=10,"
                                      "release=free,release_delay_ms=250,"
                                      "release_threshold=16M,reserve_pageblocks=0,verbose=1,"
                                      "release_min_order=6");
    cr_assert_eq(errors, 0);
    cr_assert_eq(o.max_regions, 8);
    cr_assert_eq(o.pcp_enabled, 0);
    cr_assert_eq(o.pcp_high, 100);
    cr_assert_eq(o.pcp_batch, 10);
    cr_assert_eq(o.release_mode, BM_RELEASE_FREE);
    cr_assert_eq(o.release_delay_ns, 250ull * 1000 * 1000);
    cr_assert_eq(o.release_threshold_pages, (16ul << 20) / BM_PAGE_SIZE);
    cr_assert_eq(o.reserve_pageblocks, 0);
    cr_assert_eq(o.verbose, 1);
    cr_assert_eq(o.release_min_order, 6);
}

Test(options, sizes_and_booleans)
{
    struct bm_options o;
    bm_options_defaults(&o);
    cr_assert_eq(bm_options_parse(&o, "release_threshold=2G"), 0);
    cr_assert_eq(o.release_threshold_pages, (2ul << 30) / BM_PAGE_SIZE);
    cr_assert_eq(bm_options_parse(&o, "release_threshold=512kb,pcp=yes"), 0);
    cr_assert_eq(o.release_threshold_pages, 128);
    cr_assert_eq(o.pcp_enabled, 1);
    cr_assert_eq(bm_options_parse(&o, "release_threshold=4096"), 0);
    cr_assert_eq(o.release_threshold_pages, 1);
    cr_assert_eq(o.release_peak, 1, "default: a burst of frees waits for the delay");
    cr_assert_eq(bm_options_parse(&o, "release_peak=no"), 0);
    cr_assert_eq(o.release_peak, 0);
    cr_assert_eq(bm_options_parse(&o, ""), 0);
    cr_assert_eq(bm_options_parse(&o, ",,"), 0);
    cr_assert_eq(bm_options_parse(&o, NULL), 0);
    cr_assert_eq(o.harden, BM_HARDEN_DEFAULT);
    cr_assert_eq(bm_options_parse(&o, "harden=secure"), 0);
    cr_assert_eq(o.harden, BM_HARDEN_SECURE);
    cr_assert_eq(bm_options_parse(&o, "harden=default"), 0);
    cr_assert_eq(o.harden, BM_HARDEN_DEFAULT);
}

static void check_rejected(const char *opts)
{
    struct bm_options o, d;
    memset(&o, 0, sizeof o);        /* padding too: compared whole below */
    memset(&d, 0, sizeof d);
    bm_options_defaults(&o);
    bm_options_defaults(&d);
    cr_assert_eq(bm_options_parse(&o, opts), 1, "%s should be rejected", opts);
    cr_assert_eq(memcmp(&o, &d, sizeof o), 0, "%s changed the defaults", opts);
}

Test(options, bad_values_keep_defaults, .init = cr_redirect_stderr)
{
    check_rejected("max_regions=abc");
    check_rejected("max_regions=0");
    check_rejected("max_regions=-3");
    check_rejected("pcp=maybe");
    check_rejected("pcp");
    check_rejected("release=sometimes");
    check_rejected("harden=paranoid");
    check_rejected("harden=0");
    check_rejected("harden=3");
    check_rejected("thp=sometimes");
    check_rejected("numa=everywhere");
    check_rejected("numa=bind");            /* bind needs its nodes */
    check_rejected("numa=bind:");
    check_rejected("numa=bind:0-");
    check_rejected("numa=bind:3-1");
    check_rejected("numa=bind:64");
    check_rejected("numa=bind:0+");
    check_rejected("numa=preferred:0-1");   /* one node */
    check_rejected("numa=local:0");
    check_rejected("release_threshold=12X");
    check_rejected("release_peak=sometimes");
    check_rejected("release_delay_ms=1.5");
    check_rejected("release_delay_ms=1000000001");
    check_rejected("reserve_pageblocks=99999");
    check_rejected("pcp_high=99999999999999999999999");
    check_rejected("nonsense=1");
}

Test(options, messages_name_the_option, .init = cr_redirect_stderr)
{
    struct bm_options o;
    bm_options_defaults(&o);
    cr_assert_eq(bm_options_parse(&o, "pcp_batch=7,bogus=1,release=sometimes"), 2);
    cr_assert_eq(o.pcp_batch, 7, "good options around bad ones still apply");
    fflush(stderr);
    cr_assert_stderr_eq_str(
        "buddymalloc: BUDDYMALLOC_OPTIONS: unknown option 'bogus=1' (ignored)\n"
        "buddymalloc: BUDDYMALLOC_OPTIONS: bad value in 'release=sometimes' (default kept)\n");
}

Test(options, environment_is_read_at_bootstrap, .init = cr_redirect_stderr)
{
    bm_test_options("pcp_batch=7,pcp_high=50,max_regions=1,what=ever");
    bm_ensure_init();
    cr_assert_eq(bm_g.opt.max_regions, 1);
    cr_assert_eq(bm_g.zones[0].pcp_batch, 7);
    cr_assert_eq(bm_g.zones[0].pcp_high, 50);
    cr_assert_stderr_eq_str("buddymalloc: BUDDYMALLOC_OPTIONS: unknown option 'what=ever' (ignored)\n");
}

Test(options, thp_and_numa_parse)
{
    struct bm_options o;
    bm_options_defaults(&o);
    cr_assert_eq(o.thp, BM_THP_DEFAULT);
    cr_assert_eq(o.numa_policy, BM_NUMA_LOCAL);
    cr_assert_eq(bm_options_parse(&o, "thp=never,numa=bind:0-2+5"), 0);
    cr_assert_eq(o.thp, BM_THP_NEVER);
    cr_assert_eq(o.numa_policy, BM_NUMA_BIND);
    cr_assert_eq(o.numa_nodes, 0x27);
    cr_assert_eq(bm_options_parse(&o, "thp=always,numa=interleave"), 0);
    cr_assert_eq(o.thp, BM_THP_ALWAYS);
    cr_assert_eq(o.numa_policy, BM_NUMA_INTERLEAVE);
    cr_assert_eq(o.numa_nodes, 0, "interleave without nodes: every node");
    cr_assert_eq(bm_options_parse(&o, "numa=preferred:1"), 0);
    cr_assert_eq(o.numa_policy, BM_NUMA_PREFERRED);
    cr_assert_eq(o.numa_nodes, 2);
    cr_assert_eq(bm_options_parse(&o, "numa=local,thp=default"), 0);
    cr_assert_eq(o.numa_policy, BM_NUMA_LOCAL);
    cr_assert_eq(o.thp, BM_THP_DEFAULT);
}

/* The kernel's record of the memory policy of the range holding p. */
static int policy_of(void *p)
{
    int mode = -1;
    cr_assert_eq(syscall(SYS_get_mempolicy, &mode, NULL, 0, p, MPOL_F_ADDR), 0);
    return mode;
}

Test(options, numa_policy_binds_the_regions)
{
    bm_test_options("numa=bind:0");
    void *p = bm_malloc(100), *r = bm_malloc(100000);
    cr_assert_eq(policy_of(p), MPOL_BIND);
    cr_assert_eq(policy_of(r), MPOL_BIND);
    bm_free(p);
    bm_free(r);
}

Test(options, numa_interleave_binds_the_regions)
{
    bm_test_options("numa=interleave");
    void *p = bm_malloc(100);
    cr_assert_eq(policy_of(p), MPOL_INTERLEAVE);
    bm_free(p);
}

Test(options, numa_local_leaves_the_process_policy)
{
    void *p = bm_malloc(100);
    cr_assert_eq(policy_of(p), MPOL_DEFAULT);
    bm_free(p);
}

Test(options, numa_policy_on_absent_nodes_is_refused, .init = cr_redirect_stderr)
{
    bm_test_options("numa=bind:63");
    void *p = bm_malloc(100);
    cr_assert_not_null(p);
    cr_assert_eq(policy_of(p), MPOL_DEFAULT);
    cr_assert_eq(bm_g.opt.numa_policy, BM_NUMA_LOCAL);
    fflush(stderr);
    cr_assert_stderr_eq_str("buddymalloc: BUDDYMALLOC_OPTIONS: numa: no node of the policy is "
                            "online with memory: numa=local kept\n");
    bm_free(p);
}

/* VmFlags of the mapping holding p in /proc/self/smaps. */
static void vmflags_of(void *p, char *out, size_t size)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    cr_assert_not_null(f);
    char line[512];
    bool in = false;
    out[0] = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' '))
            in = (uintptr_t)p >= lo && (uintptr_t)p < hi;
        else if (in && !strncmp(line, "VmFlags:", 8)) {
            snprintf(out, size, "%s", line + 8);
            break;
        }
    }
    fclose(f);
}

/* With option opt, the regions' mapping carries VmFlag flag. */
static void assert_region_vmflag(const char *opt, const char *flag)
{
    char flags[512];
    bm_test_options(opt);
    void *p = bm_malloc(100);
    vmflags_of(p, flags, sizeof flags);
    cr_assert(strstr(flags, flag) != NULL, "%s: VmFlags%s", opt, flags);
    bm_free(p);
}

Test(options, thp_never_advises_the_regions) { assert_region_vmflag("thp=never", " nh"); }
Test(options, thp_always_advises_the_regions) { assert_region_vmflag("thp=always", " hg"); }

Test(options, verbose_announces_the_configuration, .init = cr_redirect_stderr)
{
    bm_test_options("verbose=1,harden=secure,thp=never");
    bm_free(bm_malloc(1));
    fflush(stderr);
    FILE *e = cr_get_redirected_stderr();
    char line[1024] = {0};
    cr_assert_not_null(fgets(line, sizeof line, e));
    cr_assert(strstr(line, "buddymalloc ") == line, "%s", line);
    cr_assert(strstr(line, "harden=secure") && strstr(line, "thp=never") &&
              strstr(line, "numa=local") && strstr(line, "release=dontneed"), "%s", line);
}

/* stats_signal: a number, a name with or without SIG in any case, RTMIN+N. */
Test(options, stats_signal_values)
{
    const struct { const char *in; int sig; } ok[] = {
        { "stats_signal=USR2", SIGUSR2 },   { "stats_signal=SIGUSR1", SIGUSR1 },
        { "stats_signal=usr1", SIGUSR1 },   { "stats_signal=sigwinch", SIGWINCH },
        { "stats_signal=12", 12 },          { "stats_signal=HUP", SIGHUP },
        { "stats_signal=off", 0 },          { "stats_signal=0", 0 },
        { "stats_signal=RTMIN", SIGRTMIN }, { "stats_signal=RTMIN+3", SIGRTMIN + 3 },
        { "stats_signal=SIGRTMAX-1", SIGRTMAX - 1 },
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        struct bm_options o;
        bm_options_defaults(&o);
        cr_assert_eq(o.stats_signal, 0, "off by default");
        o.stats_signal = 99;
        cr_assert_eq(bm_options_parse(&o, ok[i].in), 0, "%s", ok[i].in);
        cr_assert_eq(o.stats_signal, ok[i].sig, "%s gave %d", ok[i].in, o.stats_signal);
    }
}

/* Signals that cannot be caught, that the program needs (faults, abort),
 * glibc's own (32), none at all. */
Test(options, stats_signal_refused, .init = cr_redirect_stderr)
{
    static const char *const refused[] = {
        "KILL", "9", "SIGSTOP", "SEGV", "bus", "FPE", "ILL", "6", "32", "65",
        "USR3", "RTMIN+99", "RTMAX+1", "-12", "",
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        char opt[64];
        snprintf(opt, sizeof opt, "stats_signal=%s", refused[i]);
        check_rejected(opt);
    }
}

Test(options, stats_signal_messages, .init = cr_redirect_stderr)
{
    struct bm_options o;
    bm_options_defaults(&o);
    cr_assert_eq(bm_options_parse(&o, "stats_signal=SEGV,stats_signal=USR9"), 2);
    cr_assert_eq(o.stats_signal, 0);
    fflush(stderr);
    cr_assert_stderr_eq_str(
        "buddymalloc: BUDDYMALLOC_OPTIONS: bad value in 'stats_signal=SEGV' (a signal that "
        "cannot or must not be caught; default kept)\n"
        "buddymalloc: BUDDYMALLOC_OPTIONS: bad value in 'stats_signal=USR9' (default kept)\n");
}
