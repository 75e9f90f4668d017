/*
 * steady - a long-running process whose working set grows, holds, shrinks.
 *
 * The life of a server or a cache: a working set of blocks (log-uniform
 * 16 B ... 8 KiB, one in 128 between 16 and 256 KiB, each filled) grows to
 * PEAK bytes (256 MiB, 64 MiB with --quick) while some blocks already die
 * (three mallocs to one free), holds there for HOLD_STEPS steps (free a
 * random block, malloc a new one), shrinks to a tenth (three frees to one
 * malloc) and holds again at that level. What is measured is memory: whether
 * the allocator gives the freed 90 % back to the system while the process
 * goes on, and how soon.
 *
 * Every ~100 ms of the run a line
 *   SAMPLE t=SECONDS rss_kib=N live_kib=N phase=grow|hold|shrink|low
 * goes to stdout (live_kib: the bytes requested and not freed), for a plot of
 * RSS over time; the RESULT line follows. Extra keys: rss_grown_kib,
 * rss_held_kib, rss_shrunk_kib, rss_low_kib (VmRSS at the end of each phase),
 * live_peak_kib, live_low_kib, and final_rss_kib is read after everything is
 * freed and 200 ms of sleep.
 */
#define _GNU_SOURCE
#include "common.h"

#include <stdio.h>
#include <stdlib.h>

#define PEAK          (256UL << 20)
#define HOLD_STEPS    5000000UL
#define LOW_STEPS     5000000UL
#define SAMPLE_EVERY  0.1
#define CLOCK_STEPS   256

struct blk {
	unsigned char *p;
	size_t size;
	uint64_t tag;
};

struct steady {
	struct blk *b;
	size_t n, cap;
	size_t live;
	uint64_t serial, ops;
	struct wl_rng rng;
	double t0, next_sample;
	unsigned tick;
	const char *phase;
};

static size_t pick_size(struct wl_rng *r)
{
	if (wl_rng_below(r, 128) == 0)
		return wl_rng_range(r, 16UL << 10, 256UL << 10);
	return wl_rng_logsize(r, 16, 8192);
}

static void sample(struct steady *s, double now)
{
	printf("SAMPLE t=%.3f rss_kib=%ld live_kib=%zu phase=%s\n",
	       now - s->t0, wl_rss_kib(), s->live >> 10, s->phase);
	s->next_sample += SAMPLE_EVERY;
	if (s->next_sample < now - s->t0)
		s->next_sample = now - s->t0 + SAMPLE_EVERY;
}

static inline void tick(struct steady *s)
{
	if (++s->tick % CLOCK_STEPS == 0) {
		double now = wl_now();

		if (now - s->t0 >= s->next_sample)
			sample(s, now);
	}
}

static void add(struct steady *s)
{
	struct blk *b;

	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 4096;
		s->b = wl_realloc_or_die(s->b, s->cap * sizeof *s->b);
	}
	b = &s->b[s->n++];
	b->size = pick_size(&s->rng);
	b->tag = s->serial++;
	b->p = wl_malloc(b->size);
	memset(b->p, (int)(b->tag & 0xff), b->size);
	wl_mark(b->p, b->size, b->tag);
	s->live += b->size;
	s->ops++;
	tick(s);
}

static void drop(struct steady *s)
{
	size_t i = (size_t)wl_rng_below(&s->rng, s->n);
	struct blk *b = &s->b[i];

	wl_check(b->p, b->size, b->tag, "steady");
	free(b->p);
	s->live -= b->size;
	*b = s->b[--s->n];
	tick(s);
}

int wl_steady(const struct wl_opts *o)
{
	struct steady s = { .phase = "grow" };
	size_t peak = o->quick ? PEAK / 4 : PEAK;
	unsigned long hold = o->quick ? HOLD_STEPS / 4 : HOLD_STEPS;
	unsigned long low = o->quick ? LOW_STEPS / 4 : LOW_STEPS;
	long rss_grown, rss_held, rss_shrunk, rss_low;
	size_t live_peak, live_low;
	double t1;

	wl_single_threaded(o, "steady");
	wl_rng_init(&s.rng, o->seed, 0);
	s.t0 = wl_now();
	sample(&s, s.t0);

	while (s.live < peak) {
		add(&s);
		add(&s);
		add(&s);
		drop(&s);
	}
	live_peak = s.live;
	rss_grown = wl_rss_kib();

	s.phase = "hold";
	for (unsigned long i = 0; i < hold; i++) {
		drop(&s);
		add(&s);
	}
	rss_held = wl_rss_kib();

	s.phase = "shrink";
	while (s.live > peak / 10 && s.n > 3) {
		drop(&s);
		drop(&s);
		drop(&s);
		add(&s);
	}
	live_low = s.live;
	rss_shrunk = wl_rss_kib();

	s.phase = "low";
	for (unsigned long i = 0; i < low && s.n; i++) {
		drop(&s);
		add(&s);
	}
	rss_low = wl_rss_kib();
	t1 = wl_now();
	sample(&s, t1);

	while (s.n) {
		struct blk *b = &s.b[--s.n];

		wl_check(b->p, b->size, b->tag, "steady");
		free(b->p);
	}
	free(s.b);
	wl_sleep_ms(200);
	wl_result("steady", 1, t1 - s.t0, s.ops,
		  "rss_grown_kib=%ld rss_held_kib=%ld rss_shrunk_kib=%ld "
		  "rss_low_kib=%ld live_peak_kib=%zu live_low_kib=%zu",
		  rss_grown, rss_held, rss_shrunk, rss_low, live_peak >> 10,
		  live_low >> 10);
	return 0;
}
