/*
 * threadtest - batches of same-size objects, each thread on its own.
 *
 * After Hoard's threadtest: every thread repeats ROUNDS times "malloc a batch
 * of objects of OBJ_SIZE bytes, then free them all", with nothing shared
 * between threads. It is the best case for per-thread caches and measures the
 * raw malloc+free throughput of a scalable allocator, plus what it costs to
 * go beyond the thread cache (a batch is far bigger than any cache), and any
 * hidden contention between threads that should not meet at all.
 *
 * The work is fixed in total: ROUNDS rounds of BATCH objects (a tenth of the
 * rounds with --quick), each round's batch divided among the threads. Extra
 * keys: size, batch (objects per thread and round), rounds.
 */
#define _GNU_SOURCE
#include "common.h"

#include <stdlib.h>

#define OBJ_SIZE 64
#define BATCH    100000      /* objects per round, all threads together */
#define ROUNDS   1500

struct tt {
	unsigned per_thread;
	unsigned rounds;
};

static void tt_thread(int idx, void *arg)
{
	struct tt *t = arg;
	unsigned n = t->per_thread;
	void **objs = wl_malloc(n * sizeof *objs);

	for (unsigned r = 0; r < t->rounds; r++) {
		uint64_t base = wl_tag_of((uint64_t)idx, r);

		for (unsigned i = 0; i < n; i++) {
			objs[i] = wl_malloc(OBJ_SIZE);
			wl_mark(objs[i], OBJ_SIZE, base + i);
		}
		for (unsigned i = 0; i < n; i++) {
			wl_check(objs[i], OBJ_SIZE, base + i, "threadtest");
			free(objs[i]);
		}
	}
	free(objs);
}

int wl_threadtest(const struct wl_opts *o)
{
	int nt = wl_thread_count(o, 2);
	struct tt t = {
		.per_thread = BATCH / (unsigned)nt ? BATCH / (unsigned)nt : 1,
		.rounds = o->quick ? ROUNDS / 10 : ROUNDS,
	};
	double secs = wl_parallel(nt, tt_thread, &t, 0);

	wl_result("threadtest", nt, secs,
		  (uint64_t)nt * t.per_thread * t.rounds,
		  "size=%d batch=%u rounds=%u", OBJ_SIZE, t.per_thread,
		  t.rounds);
	return 0;
}
