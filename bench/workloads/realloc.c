/*
 * realloc - many buffers growing by small steps at once.
 *
 * String builders, growing vectors and read buffers that call realloc for
 * every append: every thread keeps BUFFERS buffers in flight; a step picks a
 * random one, grows it by a random amount between 1 and 64 + size / 8 bytes
 * (about 6 % of its size once it is large, so a buffer reaches 1 MiB in
 * about 130 reallocs) and writes the new bytes. Each buffer starts at
 * 16 bytes with a target size, log-uniform between 256 B and 1 MiB; once
 * there it is freed and a new one starts in its place. Because the buffers
 * grow in turns, the space behind a buffer is often taken by another one:
 * growing in place is not free, and an allocator that moves every time pays
 * a copy of the whole buffer.
 *
 * Each realloc is checked to have kept the buffer's tagged bytes. The steps
 * are fixed in total and divided among the threads, each with its own
 * buffers. ops counts the reallocs and mallocs. Extra keys: buffers (per
 * thread), reallocs, completed (buffers that reached their target), moved
 * (reallocs that returned a different address), copied_mib (bytes those
 * moves had to copy, at most).
 */
#define _GNU_SOURCE
#include "common.h"

#include <stdatomic.h>
#include <stdlib.h>

#define BUFFERS      256
#define STEPS        2000000ULL
#define START_SIZE   16
#define TARGET_MIN   256
#define TARGET_MAX   (1UL << 20)

struct buf {
	unsigned char *p;
	size_t size, target;
	uint64_t tag;
};

struct rl_run {
	uint64_t steps;         /* per thread */
	uint64_t seed;
	atomic_ullong reallocs, mallocs, completed, moved, copied;
};

static void start(struct buf *b, struct wl_rng *r, uint64_t *serial)
{
	b->size = START_SIZE;
	b->target = wl_rng_logsize(r, TARGET_MIN, TARGET_MAX);
	b->tag = (*serial)++;
	b->p = wl_malloc(b->size);
	wl_mark(b->p, b->size, b->tag);
}

static void rl_thread(int idx, void *arg)
{
	struct rl_run *run = arg;
	struct buf *bufs = wl_malloc(BUFFERS * sizeof *bufs);
	struct wl_rng rng;
	uint64_t serial = (uint64_t)idx << 40;
	uint64_t reallocs = 0, mallocs = 0, completed = 0, moved = 0, copied = 0;

	wl_rng_init(&rng, run->seed, (uint64_t)idx);
	for (unsigned i = 0; i < BUFFERS; i++)
		start(&bufs[i], &rng, &serial);
	mallocs += BUFFERS;

	for (uint64_t n = run->steps; n; n--) {
		struct buf *b = &bufs[wl_rng_below(&rng, BUFFERS)];
		size_t old = b->size, grow;
		unsigned char *q;

		if (old >= b->target) {
			wl_check(b->p, old, b->tag, "realloc (before free)");
			free(b->p);
			start(b, &rng, &serial);
			completed++;
			mallocs++;
			continue;
		}
		grow = wl_rng_range(&rng, 1, 64 + old / 8);
		q = wl_realloc_or_die(b->p, old + grow);
		if (q != b->p) {
			moved++;
			copied += old;
		}
		wl_check(q, old, b->tag, "realloc (after realloc)");
		memset(q + old, (int)(b->tag & 0xff), grow);
		b->p = q;
		b->size = old + grow;
		wl_mark(q, b->size, b->tag);
		reallocs++;
	}

	for (unsigned i = 0; i < BUFFERS; i++) {
		wl_check(bufs[i].p, bufs[i].size, bufs[i].tag, "realloc (at the end)");
		free(bufs[i].p);
	}
	free(bufs);
	atomic_fetch_add(&run->reallocs, reallocs);
	atomic_fetch_add(&run->mallocs, mallocs);
	atomic_fetch_add(&run->completed, completed);
	atomic_fetch_add(&run->moved, moved);
	atomic_fetch_add(&run->copied, copied);
}

int wl_realloc(const struct wl_opts *o)
{
	int nt = wl_thread_count(o, 1);
	uint64_t total = o->quick ? STEPS / 10 : STEPS;
	struct rl_run run = { .steps = total / (uint64_t)nt, .seed = o->seed };
	double secs;

	if (run.steps == 0)
		run.steps = 1;
	secs = wl_parallel(nt, rl_thread, &run, 0);
	wl_result("realloc", nt, secs,
		  (uint64_t)atomic_load(&run.reallocs) + atomic_load(&run.mallocs),
		  "buffers=%d reallocs=%llu completed=%llu moved=%llu copied_mib=%llu",
		  BUFFERS, (unsigned long long)atomic_load(&run.reallocs),
		  (unsigned long long)atomic_load(&run.completed),
		  (unsigned long long)atomic_load(&run.moved),
		  (unsigned long long)(atomic_load(&run.copied) >> 20));
	return 0;
}
