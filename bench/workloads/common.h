/*
 * common.h - shared pieces of alloc-workloads: options, the workload table,
 * timing, resident-set readings, a small PRNG, block tagging and checking,
 * thread helpers and the RESULT line.
 *
 * Everything here calls only the standard allocation functions (malloc,
 * calloc, realloc, posix_memalign, free), so the allocator measured is the
 * one the dynamic linker resolves them to: a preloaded library or glibc.
 */
#ifndef WL_COMMON_H
#define WL_COMMON_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define WL_NORETURN   __attribute__((noreturn))
#define WL_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define WL_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* Command-line options, as given (threads == 0: the workload's default). */
struct wl_opts {
	int quick;              /* --quick: about a tenth of the work        */
	int threads;            /* --threads N, 0 when not given             */
	uint64_t seed;          /* --seed N                                  */
	const char *trace;      /* --trace FILE (the trace workload)         */
	uint64_t size;          /* --size N[KMG] (scaling), 0 when not given */
};

struct workload {
	const char *name;
	int (*run)(const struct wl_opts *o);
};

/* One entry point per workload (larson.c, threadtest.c, ...). */
int wl_larson(const struct wl_opts *o);
int wl_threadtest(const struct wl_opts *o);
int wl_cache_scratch(const struct wl_opts *o);
int wl_cache_thrash(const struct wl_opts *o);
int wl_xmalloc(const struct wl_opts *o);
int wl_sizes(const struct wl_opts *o);
int wl_trace(const struct wl_opts *o);
int wl_fragment(const struct wl_opts *o);
int wl_steady(const struct wl_opts *o);
int wl_realloc(const struct wl_opts *o);
int wl_threads(const struct wl_opts *o);
int wl_scaling(const struct wl_opts *o);

/* ---- failures ----------------------------------------------------------- */

/* Prints "alloc-workloads: MESSAGE" on stderr and ends the process with
 * status 3 at once (_exit: other threads may be inside the allocator). */
void wl_die(const char *fmt, ...) WL_PRINTF(1, 2) WL_NORETURN;

/* The standard functions, with a NULL result turned into wl_die. */
void *wl_malloc(size_t n);
void *wl_calloc(size_t count, size_t n);
void *wl_realloc_or_die(void *p, size_t n);
void *wl_aligned(size_t align, size_t n);

/* ---- time and memory ---------------------------------------------------- */

double wl_now(void);                 /* CLOCK_MONOTONIC, seconds     */
void wl_sleep_ms(unsigned ms);
long wl_rss_kib(void);               /* VmRSS of /proc/self/status   */
long wl_hwm_kib(void);               /* VmHWM of /proc/self/status   */

/* Resolves the thread count: the option if given, else the default. */
int wl_thread_count(const struct wl_opts *o, int dflt);
/* For the single-threaded workloads: dies unless --threads is absent or 1. */
void wl_single_threaded(const struct wl_opts *o, const char *name);

/*
 * The RESULT line: "RESULT workload=NAME threads=N seconds=S ops=N
 * peak_rss_kib=N final_rss_kib=N" followed by the workload's own key=value
 * fields (extra_fmt, may be NULL). VmHWM and VmRSS are read when it is called.
 */
void wl_result(const char *name, int threads, double seconds, uint64_t ops,
	       const char *extra_fmt, ...) WL_PRINTF(5, 6);

/* ---- pseudo-random numbers (xorshift64*, one state per thread) ---------- */

struct wl_rng {
	uint64_t s;
};

/* A different, reproducible stream for every (seed, stream) pair. */
void wl_rng_init(struct wl_rng *r, uint64_t seed, uint64_t stream);

static inline uint64_t wl_rng_next(struct wl_rng *r)
{
	uint64_t x = r->s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	r->s = x;
	return x * 0x2545F4914F6CDD1DULL;
}

/* Uniform in [0, n), n > 0 (multiply-shift, no division). */
static inline uint64_t wl_rng_below(struct wl_rng *r, uint64_t n)
{
	return (uint64_t)(((unsigned __int128)wl_rng_next(r) * n) >> 64);
}

/* Uniform in [lo, hi]. */
static inline size_t wl_rng_range(struct wl_rng *r, size_t lo, size_t hi)
{
	return lo + (size_t)wl_rng_below(r, (uint64_t)(hi - lo) + 1);
}

/* Roughly log-uniform in [lo, hi] (lo >= 1): as many requests between 16 and
 * 32 bytes as between 2048 and 4096, the usual shape of real programs. */
size_t wl_rng_logsize(struct wl_rng *r, size_t lo, size_t hi);

/* ---- block tags --------------------------------------------------------- */

/*
 * A block of n >= 16 bytes is tagged with two 64-bit words derived from a
 * 64-bit tag: one in its first 8 bytes, one in its last 8 (two stores, so the
 * tagging costs little next to the allocator); a smaller block gets a byte
 * pattern over all of it. Checking the tag before the free finds two live
 * blocks that overlap, a block handed out twice or a realloc that lost data.
 */
#define WL_TAG_SMALL 16

static inline uint64_t wl_tag_front(uint64_t tag)
{
	return tag ^ 0xA5C3F00F12345678ULL;
}

static inline uint64_t wl_tag_back(uint64_t tag, size_t n)
{
	return (tag * 0x9E3779B97F4A7C15ULL) ^ n;
}

static inline unsigned char wl_tag_byte(uint64_t tag, size_t i)
{
	return (unsigned char)((tag >> ((i & 7) * 8)) ^ (i * 0x9dU) ^ 0x5a);
}

static inline void wl_mark(void *p, size_t n, uint64_t tag)
{
	unsigned char *b = p;

	if (n >= WL_TAG_SMALL) {
		uint64_t f = wl_tag_front(tag), k = wl_tag_back(tag, n);

		memcpy(b, &f, 8);
		memcpy(b + n - 8, &k, 8);
	} else {
		for (size_t i = 0; i < n; i++)
			b[i] = wl_tag_byte(tag, i);
	}
}

/* Reports a wrong tag and ends the process (at: the offset of the bad word or
 * byte). */
void wl_check_failed(const void *p, size_t n, uint64_t tag, size_t at,
		     const char *where) WL_NORETURN;

/* Checks the tag of a block of n bytes where it lies below limit (limit ==
 * n: the whole tag; smaller: what a shrinking realloc must have kept). */
static inline void wl_check_upto(const void *p, size_t n, size_t limit,
				 uint64_t tag, const char *where)
{
	const unsigned char *b = p;

	if (n >= WL_TAG_SMALL) {
		uint64_t f, k;

		if (limit >= 8) {
			memcpy(&f, b, 8);
			if (WL_UNLIKELY(f != wl_tag_front(tag)))
				wl_check_failed(p, n, tag, 0, where);
		}
		if (limit >= n) {
			memcpy(&k, b + n - 8, 8);
			if (WL_UNLIKELY(k != wl_tag_back(tag, n)))
				wl_check_failed(p, n, tag, n - 8, where);
		}
	} else {
		for (size_t i = 0; i < n && i < limit; i++)
			if (WL_UNLIKELY(b[i] != wl_tag_byte(tag, i)))
				wl_check_failed(p, n, tag, i, where);
	}
}

static inline void wl_check(const void *p, size_t n, uint64_t tag,
			    const char *where)
{
	wl_check_upto(p, n, n, tag, where);
}

/* A tag for slot i of some table in round r: distinct enough to catch a block
 * that another slot also holds. */
static inline uint64_t wl_tag_of(uint64_t a, uint64_t b)
{
	uint64_t x = (a + 0x9E3779B97F4A7C15ULL) ^ (b * 0xBF58476D1CE4E5B9ULL);
	x ^= x >> 31;
	x *= 0x94D049BB133111EBULL;
	x ^= x >> 29;
	return x;
}

/* ---- threads ------------------------------------------------------------ */

/*
 * Runs fn(idx, arg) on n new threads (idx 0 .. n-1) released together from a
 * barrier and returns the wall time from the release to the last join.
 * stack: the stack size of each thread, 0 for the default.
 */
double wl_parallel(int n, void (*fn)(int idx, void *arg), void *arg,
		   size_t stack);

void wl_thread_create(pthread_t *t, void *(*fn)(void *), void *arg,
		      size_t stack, int detached);

#endif
