/*
 * fragment - does memory freed by small blocks serve larger ones?
 *
 * A program that builds a large structure of small objects, drops most of
 * it, then needs larger buffers (a parser's tree thrown away before the
 * output is built, a cache that is flushed): phase 1 mallocs blocks of
 * random sizes, log-uniform in 16 B ... 4 KiB, TOTAL bytes in all (200 MiB,
 * 40 MiB with --quick), and fills each; phase 2 frees a random 90 % of them;
 * phase 3 mallocs blocks of 8 ... 64 KiB, filled too, until as many bytes
 * are requested again as phase 2 freed. An allocator that can reuse (or
 * return to the system and get back) the space left between the surviving
 * 10 % stays near the resident size of phase 1; one that cannot grows by the
 * whole freed amount.
 *
 * Extra keys: rss1_kib, rss2_kib, rss3_kib (VmRSS after each phase),
 * live1_kib, live2_kib, live3_kib (bytes requested and live then),
 * t1, t2, t3 (seconds of each phase; seconds is their sum). final_rss_kib
 * is read after everything is freed and 200 ms of sleep.
 */
#define _GNU_SOURCE
#include "common.h"

#include <stdlib.h>

#define TOTAL        (200UL << 20)
#define SMALL_MIN    16
#define SMALL_MAX    4096
#define LARGE_MIN    (8UL << 10)
#define LARGE_MAX    (64UL << 10)
#define FREE_PERMILLE 900

struct blk {
	unsigned char *p;
	size_t size;
};

static void fill(struct blk *b, size_t size, uint64_t tag)
{
	b->size = size;
	b->p = wl_malloc(size);
	memset(b->p, (int)(tag & 0xff), size);
	wl_mark(b->p, size, tag);
}

int wl_fragment(const struct wl_opts *o)
{
	size_t total = o->quick ? TOTAL / 5 : TOTAL;
	size_t cap = 1 << 16, n = 0, n_small;
	struct blk *b = wl_malloc(cap * sizeof *b);
	struct wl_rng rng;
	size_t live = 0, freed = 0, again = 0;
	long rss[3];
	size_t livek[3];
	double t[4];
	uint64_t ops = 0;

	wl_single_threaded(o, "fragment");
	wl_rng_init(&rng, o->seed, 0);

	t[0] = wl_now();
	while (live < total) {
		if (n == cap) {
			cap *= 2;
			b = wl_realloc_or_die(b, cap * sizeof *b);
		}
		fill(&b[n], wl_rng_logsize(&rng, SMALL_MIN, SMALL_MAX), n);
		live += b[n++].size;
	}
	n_small = n;
	ops += n;
	t[1] = wl_now();
	rss[0] = wl_rss_kib();
	livek[0] = live >> 10;

	for (size_t i = 0; i < n_small; i++) {
		if (wl_rng_below(&rng, 1000) < FREE_PERMILLE) {
			wl_check(b[i].p, b[i].size, i, "fragment");
			free(b[i].p);
			freed += b[i].size;
			b[i].p = NULL;
		}
	}
	live -= freed;
	t[2] = wl_now();
	rss[1] = wl_rss_kib();
	livek[1] = live >> 10;

	/* the freed slots of the table take the large blocks */
	for (size_t i = 0; i < n_small && again < freed; i++) {
		if (b[i].p)
			continue;
		fill(&b[i], wl_rng_range(&rng, LARGE_MIN, LARGE_MAX), i);
		again += b[i].size;
		ops++;
	}
	live += again;
	t[3] = wl_now();
	rss[2] = wl_rss_kib();
	livek[2] = live >> 10;

	for (size_t i = 0; i < n_small; i++) {
		if (b[i].p) {
			wl_check(b[i].p, b[i].size, i, "fragment");
			free(b[i].p);
		}
	}
	free(b);
	wl_sleep_ms(200);
	wl_result("fragment", 1, t[3] - t[0], ops,
		  "rss1_kib=%ld rss2_kib=%ld rss3_kib=%ld live1_kib=%zu "
		  "live2_kib=%zu live3_kib=%zu t1=%.4f t2=%.4f t3=%.4f",
		  rss[0], rss[1], rss[2], livek[0], livek[1], livek[2],
		  t[1] - t[0], t[2] - t[1], t[3] - t[2]);
	return 0;
}
