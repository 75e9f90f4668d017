/*
 * options.c - BUDDYMALLOC_OPTIONS="key=value,key=value", read once at
 * bootstrap with getenv and parsed in place: no allocation, no stdio. A bad
 * key or value is named on stderr and the default kept. docs/options.md
 * lists every option.
 */
#include <signal.h>
#include <string.h>

#include "fmt.h"
#include "internal.h"

void bm_options_defaults(struct bm_options *o)
{
    o->max_regions = 4096;                  /* 4 TiB of address space */
    o->pcp_enabled = 1;
    o->pcp_high = 0;
    o->pcp_batch = 0;
    o->release_mode = BM_RELEASE_DONTNEED;
    o->release_delay_ns = 5000ull * 1000 * 1000;          /* 5 s: release.c */
    o->release_threshold_pages = (16ul << 20) >> BM_PAGE_SHIFT;
    o->release_threshold_max_pages = (1ul << 30) >> BM_PAGE_SHIFT;   /* 1 GiB */
    o->release_peak = 1;
    o->reserve_pageblocks = 1;
    o->release_min_order = 2;                             /* 16 KiB */
    o->verbose = 0;
    o->harden = BM_HARDEN_DEFAULT;
    o->thp = BM_THP_DEFAULT;
    o->numa_policy = BM_NUMA_LOCAL;
    o->numa_nodes = 0;
    o->numa_fake = 0;
    o->stats_at_exit = 0;
    o->stats_pid = 0;
    o->fail_mmap = o->fail_madvise = 0;
    o->fail_mmap_count = o->fail_madvise_count = 1;
    o->stats_file[0] = '\0';
    o->stats_signal = 0;
}

enum kind { K_UINT, K_WORD, K_SIZE, K_MS, K_NUMA, K_PATH, K_SIGNAL };

/* The values of a K_WORD option, by name; a NULL name ends the list. */
struct word {
    const char *name;
    int value;
};

static const struct word bool_words[] = {
    { "1", 1 }, { "on", 1 }, { "true", 1 }, { "yes", 1 },
    { "0", 0 }, { "off", 0 }, { "false", 0 }, { "no", 0 }, { NULL, 0 },
};
static const struct word release_words[] = {
    { "dontneed", BM_RELEASE_DONTNEED }, { "free", BM_RELEASE_FREE },
    { "none", BM_RELEASE_NONE }, { "off", BM_RELEASE_NONE }, { NULL, 0 },
};
static const struct word harden_words[] = {
    { "default", BM_HARDEN_DEFAULT }, { "1", BM_HARDEN_DEFAULT },
    { "secure", BM_HARDEN_SECURE }, { "2", BM_HARDEN_SECURE }, { NULL, 0 },
};
static const struct word thp_words[] = {
    { "default", BM_THP_DEFAULT }, { "always", BM_THP_ALWAYS }, { "on", BM_THP_ALWAYS },
    { "never", BM_THP_NEVER }, { "off", BM_THP_NEVER }, { NULL, 0 },
};

struct opt_desc {
    const char *name;
    enum kind kind;
    size_t offset;
    size_t width;           /* sizeof the field */
    uint64_t min, max;
    const struct word *words;   /* K_WORD */
};

#define F(field) offsetof(struct bm_options, field), sizeof(((struct bm_options *)0)->field)
static const struct opt_desc table[] = {
    { "max_regions",        K_UINT,    F(max_regions),             1, 1u << 17, NULL },
    { "pcp",                K_WORD,    F(pcp_enabled),             0, 1, bool_words },
    { "pcp_high",           K_UINT,    F(pcp_high),                0, 1u << 20, NULL },
    { "pcp_batch",          K_UINT,    F(pcp_batch),               0, 1u << 16, NULL },
    { "release",            K_WORD,    F(release_mode),            0, 2, release_words },
    { "release_delay_ms",   K_MS,      F(release_delay_ns),        0, 1000000000, NULL },
    { "release_threshold",  K_SIZE,    F(release_threshold_pages), 0, 1ull << 46, NULL },
    { "release_threshold_max", K_SIZE, F(release_threshold_max_pages), 0, 1ull << 46, NULL },
    { "release_peak",       K_WORD,    F(release_peak),            0, 1, bool_words },
    { "reserve_pageblocks", K_UINT,    F(reserve_pageblocks),      0, 128, NULL },
    { "release_min_order",  K_UINT,    F(release_min_order),       0, MAX_ORDER - 1, NULL },
    { "verbose",            K_UINT,    F(verbose),                 0, 9, NULL },
    { "harden",             K_WORD,    F(harden),                  1, 2, harden_words },
    { "thp",                K_WORD,    F(thp),                     0, 2, thp_words },
    { "numa",               K_NUMA,    F(numa_policy),             0, 3, NULL },
    { "numa_fake",          K_UINT,    F(numa_fake),               0, BM_MAX_NODES, NULL },
    { "stats",              K_WORD,    F(stats_at_exit),           0, 1, bool_words },
    { "stats_pid",          K_UINT,    F(stats_pid),               0, 1u << 30, NULL },
    { "stats_file",         K_PATH,    F(stats_file),              0, 0, NULL },
    { "stats_signal",       K_SIGNAL,  F(stats_signal),            0, 0, NULL },
    { "fail_mmap",          K_UINT,    F(fail_mmap),               0, 1ul << 40, NULL },
    { "fail_mmap_count",    K_UINT,    F(fail_mmap_count),         1, 1ul << 40, NULL },
    { "fail_madvise",       K_UINT,    F(fail_madvise),            0, 1ul << 40, NULL },
    { "fail_madvise_count", K_UINT,    F(fail_madvise_count),      1, 1ul << 40, NULL },
};

static bool eq(const char *s, size_t n, const char *word)
{
    return strlen(word) == n && memcmp(s, word, n) == 0;
}

static bool parse_uint(const char *s, size_t n, uint64_t *out, bool size_suffix)
{
    uint64_t v = 0;
    size_t i = 0;
    if (n == 0)
        return false;
    for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
        if (v > (UINT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (i == 0)
        return false;
    if (i < n && size_suffix) {
        int shift;
        switch (s[i] | 0x20) {
        case 'k': shift = 10; break;
        case 'm': shift = 20; break;
        case 'g': shift = 30; break;
        default: return false;
        }
        if (v > (UINT64_MAX >> shift))
            return false;
        v <<= shift;
        i++;
        if (i < n && (s[i] | 0x20) == 'b')      /* 64M or 64MB */
            i++;
    }
    *out = v;
    return i == n;
}

/* "0-3+5": a set of nodes below 64, '+' between items (',' separates
 * options). */
static bool parse_nodes(const char *s, size_t n, uint64_t *mask)
{
    uint64_t m = 0;
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && s[j] != '+')
            j++;
        const char *dash = memchr(s + i, '-', j - i);
        uint64_t lo, hi;
        if (dash) {
            if (!parse_uint(s + i, (size_t)(dash - s - i), &lo, false) ||
                !parse_uint(dash + 1, (size_t)(s + j - dash - 1), &hi, false))
                return false;
        } else if (!parse_uint(s + i, j - i, &lo, false)) {
            return false;
        } else {
            hi = lo;
        }
        if (lo > hi || hi > 63)
            return false;
        for (uint64_t k = lo; k <= hi; k++)
            m |= 1ull << k;
        i = j + 1;
        if (j + 1 == n)                 /* a trailing '+' */
            return false;
    }
    *mask = m;
    return m != 0;
}

/* local | interleave | interleave:NODES | bind:NODES | preferred:NODE */
static bool parse_numa(const char *v, size_t vn, uint64_t *policy, uint64_t *nodes)
{
    const char *colon = memchr(v, ':', vn);
    size_t wn = colon ? (size_t)(colon - v) : vn;
    const char *list = colon ? colon + 1 : NULL;
    size_t ln = colon ? vn - wn - 1 : 0;
    *nodes = 0;
    if (eq(v, wn, "local")) {
        *policy = BM_NUMA_LOCAL;
        return !colon;
    }
    if (eq(v, wn, "interleave")) {
        *policy = BM_NUMA_INTERLEAVE;
        return !colon || parse_nodes(list, ln, nodes);
    }
    if (eq(v, wn, "bind")) {
        *policy = BM_NUMA_BIND;
        return colon && parse_nodes(list, ln, nodes);
    }
    if (eq(v, wn, "preferred")) {
        *policy = BM_NUMA_PREFERRED;
        return colon && parse_nodes(list, ln, nodes) && !(*nodes & (*nodes - 1));
    }
    return false;
}

/* Case-insensitive, for signal names. */
static bool eq_nocase(const char *s, size_t n, const char *word)
{
    if (strlen(word) != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((s[i] | 0x20) != (word[i] | 0x20))
            return false;
    return true;
}

static const struct { const char *name; int sig; } sig_names[] = {
    { "HUP", SIGHUP }, { "INT", SIGINT }, { "QUIT", SIGQUIT }, { "TRAP", SIGTRAP },
    { "USR1", SIGUSR1 }, { "USR2", SIGUSR2 }, { "PIPE", SIGPIPE }, { "ALRM", SIGALRM },
    { "TERM", SIGTERM }, { "CHLD", SIGCHLD }, { "CONT", SIGCONT }, { "TSTP", SIGTSTP },
    { "TTIN", SIGTTIN }, { "TTOU", SIGTTOU }, { "URG", SIGURG }, { "XCPU", SIGXCPU },
    { "XFSZ", SIGXFSZ }, { "VTALRM", SIGVTALRM }, { "PROF", SIGPROF }, { "WINCH", SIGWINCH },
    { "IO", SIGIO }, { "POLL", SIGPOLL }, { "PWR", SIGPWR }, { "SYS", SIGSYS },
    { "KILL", SIGKILL }, { "STOP", SIGSTOP }, { "SEGV", SIGSEGV }, { "BUS", SIGBUS },
    { "FPE", SIGFPE }, { "ILL", SIGILL }, { "ABRT", SIGABRT },
};

/* A signal the live report may not take: it cannot be caught, or the
 * program needs its default action (a fault or an abort), or glibc keeps
 * it for itself (32 and 33, below SIGRTMIN). */
static bool signal_refused(int sig)
{
    return sig == SIGKILL || sig == SIGSTOP || sig == SIGSEGV || sig == SIGBUS ||
           sig == SIGFPE || sig == SIGILL || sig == SIGABRT ||
           (sig > 31 && sig < SIGRTMIN);
}

/* stats_signal: 0/off, a number, a name with or without SIG (USR2,
 * SIGUSR2), RTMIN+N or RTMAX-N. *refused: a real signal that may not be
 * used. SIGRTMIN is a glibc call that reads a variable: safe here. */
static bool parse_signal(const char *s, size_t n, uint64_t *out, bool *refused)
{
    uint64_t v = 0;
    int sig = -1;
    *refused = false;
    if (eq(s, n, "off") || eq(s, n, "none")) {
        *out = 0;
        return true;
    }
    if (parse_uint(s, n, &v, false)) {
        if (v == 0) {
            *out = 0;
            return true;
        }
        sig = v <= (uint64_t)SIGRTMAX ? (int)v : -1;
    } else {
        if (n > 3 && eq_nocase(s, 3, "SIG")) {
            s += 3;
            n -= 3;
        }
        for (size_t i = 0; i < sizeof sig_names / sizeof sig_names[0]; i++)
            if (eq_nocase(s, n, sig_names[i].name))
                sig = sig_names[i].sig;
        if (sig < 0 && n >= 5 && (eq_nocase(s, 5, "RTMIN") || eq_nocase(s, 5, "RTMAX"))) {
            bool min = (s[4] | 0x20) == 'n';
            char op = n > 5 ? s[5] : '+';
            if (n == 5)
                sig = min ? SIGRTMIN : SIGRTMAX;
            else if (op == (min ? '+' : '-') && parse_uint(s + 6, n - 6, &v, false) &&
                     v <= (uint64_t)(SIGRTMAX - SIGRTMIN))
                sig = min ? SIGRTMIN + (int)v : SIGRTMAX - (int)v;
        }
    }
    if (sig <= 0)
        return false;
    if (signal_refused(sig)) {
        *refused = true;
        return false;
    }
    *out = (uint64_t)sig;
    return true;
}

static void complain(const char *what, const char *k, size_t kn, const char *v, size_t vn,
                     const char *tail)
{
    char scratch[256];
    struct bm_buf b;
    bm_buf_fd(&b, 2, scratch, sizeof scratch);
    bm_puts(&b, "buddymalloc: BUDDYMALLOC_OPTIONS: ");
    bm_puts(&b, what);
    bm_puts(&b, " '");
    bm_putn(&b, k, kn);
    if (v) {
        bm_puts(&b, "=");
        bm_putn(&b, v, vn);
    }
    bm_puts(&b, "'");
    bm_puts(&b, tail);
    bm_putc(&b, '\n');
    bm_buf_finish(&b);
}

static void store(struct bm_options *o, const struct opt_desc *d, uint64_t v)
{
    char *field = (char *)o + d->offset;
    switch (d->width) {
    case sizeof(int): { int x = (int)v; memcpy(field, &x, sizeof x); break; }
    case sizeof(uint64_t): memcpy(field, &v, sizeof v); break;
    default: break;
    }
}

static bool set_one(struct bm_options *o, const char *k, size_t kn, const char *v, size_t vn)
{
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        const struct opt_desc *d = &table[i];
        if (!eq(k, kn, d->name))
            continue;
        uint64_t x = 0;
        bool ok = false;
        if (!v) {
            complain("option needs a value:", k, kn, NULL, 0, " (default kept)");
            return false;
        }
        switch (d->kind) {
        case K_PATH:
            /* copied: the program may change its environment later */
            if (vn == 0 || vn >= d->width || memchr(v, '\0', vn)) {
                complain("bad value in", k, kn, v, vn, " (empty or too long; default kept)");
                return false;
            }
            memcpy((char *)o + d->offset, v, vn);
            ((char *)o + d->offset)[vn] = '\0';
            return true;
        case K_UINT:
            ok = parse_uint(v, vn, &x, false);
            break;
        case K_SIZE:
            ok = parse_uint(v, vn, &x, true);
            x >>= BM_PAGE_SHIFT;
            break;
        case K_MS:
            ok = parse_uint(v, vn, &x, false) && x <= d->max;
            x *= 1000000;
            break;
        case K_WORD:
            for (const struct word *w = d->words; w->name && !ok; w++)
                if (eq(v, vn, w->name)) {
                    x = (uint64_t)w->value;
                    ok = true;
                }
            break;
        case K_SIGNAL: {
            bool refused;
            if (parse_signal(v, vn, &x, &refused))
                break;
            complain("bad value in", k, kn, v, vn,
                     refused ? " (a signal that cannot or must not be caught; default kept)"
                             : " (default kept)");
            return false;
        }
        case K_NUMA: {
            uint64_t nodes = 0;
            ok = parse_numa(v, vn, &x, &nodes);
            if (ok)
                o->numa_nodes = nodes;
            break;
        }
        }
        if (d->kind == K_SIGNAL) {
            store(o, d, x);
            return true;
        }
        if (ok && d->kind != K_MS && d->kind != K_SIZE && (x < d->min || x > d->max))
            ok = false;
        if (!ok) {
            complain("bad value in", k, kn, v, vn, " (default kept)");
            return false;
        }
        store(o, d, x);
        return true;
    }
    complain("unknown option", k, kn, v, vn, " (ignored)");
    return false;
}

int bm_options_parse(struct bm_options *o, const char *s)
{
    int errors = 0;
    if (!s)
        return 0;
    while (*s) {
        const char *end = strchr(s, ',');
        size_t n = end ? (size_t)(end - s) : strlen(s);
        if (n) {
            const char *eqs = memchr(s, '=', n);
            size_t kn = eqs ? (size_t)(eqs - s) : n;
            const char *v = eqs ? eqs + 1 : NULL;
            size_t vn = eqs ? n - kn - 1 : 0;
            if (!set_one(o, s, kn, v, vn))
                errors++;
        }
        s += n;
        if (*s == ',')
            s++;
    }
    return errors;
}
