/*
 * cache-scratch, cache-thrash - false sharing caused by the allocator.
 *
 * After Hoard's two cache tests. Both have every thread run ITERATIONS times
 * "malloc a small object (OBJ_SIZE bytes), write each of its bytes REPS
 * times, free it". The writes are the work; the allocator is called rarely.
 * If the allocator gives objects on one cache line to two threads, every
 * write of one thread steals the line from the other and the run is several
 * times slower than the same work on separate lines.
 *
 * cache-thrash (active false sharing): the threads allocate concurrently from
 * the start; an allocator that serves them from one shared pool places their
 * objects side by side.
 *
 * cache-scratch (passive false sharing): the main thread first mallocs one
 * object per thread, one after the other (so they are neighbours), and hands
 * object i to thread i, which frees it before its loop. An allocator that
 * gives a freed block back to the freeing thread hands each thread a piece
 * of that shared cache line again and again.
 *
 * The iterations are fixed in total and divided among the threads, so an
 * allocator without false sharing runs them about min(T, CPUs) times faster
 * than one thread does. The bytes of each object are checked after its
 * writes (another thread writing the same object shows up). Extra keys:
 * size, iterations (per thread), reps.
 */
#define _GNU_SOURCE
#include "common.h"

#include <stdlib.h>

#define OBJ_SIZE    8
#define ITERATIONS  1000      /* all threads together */
#define REPS        1000000

struct cache_run {
	unsigned iterations;    /* per thread */
	void **handed;          /* cache-scratch: one object per thread */
};

/* Writes every byte of the object REPS times, volatile so that each write
 * really goes to memory (the cache line), then checks the last values. */
static void hammer(unsigned char *obj, const char *name)
{
	volatile unsigned char *b = obj;

	for (unsigned r = 0; r < REPS; r++)
		for (unsigned k = 0; k < OBJ_SIZE; k++)
			b[k] = (unsigned char)(b[k] + 1 + k);
	for (unsigned k = 0; k < OBJ_SIZE; k++)
		if (b[k] != (unsigned char)((k * 7) + (unsigned)REPS * (1 + k)))
			wl_die("%s: object %p byte %u is 0x%02x, expected 0x%02x"
			       " (another thread wrote into it)", name,
			       (void *)obj, k, b[k],
			       (unsigned char)((k * 7) + (unsigned)REPS * (1 + k)));
}

static void cache_loop(struct cache_run *c, const char *name)
{
	for (unsigned i = 0; i < c->iterations; i++) {
		unsigned char *obj = wl_malloc(OBJ_SIZE);

		for (unsigned k = 0; k < OBJ_SIZE; k++)
			obj[k] = (unsigned char)(k * 7);
		hammer(obj, name);
		free(obj);
	}
}

static void thrash_thread(int idx, void *arg)
{
	(void)idx;
	cache_loop(arg, "cache-thrash");
}

static void scratch_thread(int idx, void *arg)
{
	struct cache_run *c = arg;
	void *mine = c->handed[idx];

	wl_check(mine, OBJ_SIZE, (uint64_t)idx, "cache-scratch");
	free(mine);
	cache_loop(c, "cache-scratch");
}

static int run(const struct wl_opts *o, int scratch)
{
	const char *name = scratch ? "cache-scratch" : "cache-thrash";
	int nt = wl_thread_count(o, 2);
	unsigned total = o->quick ? ITERATIONS / 10 : ITERATIONS;
	struct cache_run c = { total / (unsigned)nt, NULL };
	double secs;

	if (c.iterations == 0)
		c.iterations = 1;
	if (scratch) {
		c.handed = wl_malloc((size_t)nt * sizeof *c.handed);
		for (int i = 0; i < nt; i++) {
			c.handed[i] = wl_malloc(OBJ_SIZE);
			wl_mark(c.handed[i], OBJ_SIZE, (uint64_t)i);
		}
	}
	secs = wl_parallel(nt, scratch ? scratch_thread : thrash_thread, &c, 0);
	free(c.handed);
	wl_result(name, nt, secs, (uint64_t)nt * c.iterations,
		  "size=%d iterations=%u reps=%d", OBJ_SIZE, c.iterations, REPS);
	return 0;
}

int wl_cache_scratch(const struct wl_opts *o)
{
	return run(o, 1);
}

int wl_cache_thrash(const struct wl_opts *o)
{
	return run(o, 0);
}
