/*
 * threads - what the allocator keeps for threads that have gone idle.
 *
 * A thread pool after a burst: THREADS threads (256, 64 with --quick, or
 * --threads N), released together, each malloc PER_THREAD bytes (3 MiB) of
 * small objects (16 ... 256 bytes, each filled), free them all and park on a
 * barrier. The main thread then reads VmRSS: with no live object anywhere,
 * whatever is resident beyond the start is thread caches, per-thread heaps
 * and arenas the allocator keeps for idle threads (plus a few pages of stack
 * per thread, the same for every allocator). Then the threads exit.
 *
 * seconds is from the release to the last thread parked; ops counts the
 * mallocs. Extra keys: rss_before_kib (before the threads start),
 * rss_idle_kib (all parked), kib_per_thread ((idle - before) / threads),
 * rss_joined_kib (after all have exited); final_rss_kib is read 200 ms
 * after that.
 */
#define _GNU_SOURCE
#include "common.h"

#include <stdlib.h>

#define THREADS     256
#define PER_THREAD  (3UL << 20)
#define OBJ_MIN     16
#define OBJ_MAX     256
#define STACK       (256UL << 10)

struct th_thread {
	pthread_t tid;
	int idx;
	struct th_run *run;
};

struct th_run {
	pthread_barrier_t start, idle, leave;
	uint64_t seed;
};

static void *th_main(void *arg)
{
	struct th_thread *t = arg;
	struct th_run *run = t->run;
	size_t cap = PER_THREAD / ((OBJ_MIN + OBJ_MAX) / 2) * 9 / 8;
	size_t n = 0, bytes = 0;
	void **obj;
	struct wl_rng rng;

	wl_rng_init(&rng, run->seed, (uint64_t)t->idx);
	pthread_barrier_wait(&run->start);

	obj = wl_malloc(cap * sizeof *obj);
	while (bytes < PER_THREAD) {
		size_t size = wl_rng_range(&rng, OBJ_MIN, OBJ_MAX);
		uint64_t tag = wl_tag_of((uint64_t)t->idx, n);

		if (n == cap) {
			cap *= 2;
			obj = wl_realloc_or_die(obj, cap * sizeof *obj);
		}
		obj[n] = wl_malloc(size);
		memset(obj[n], (int)(tag & 0xff), size);
		wl_mark(obj[n], size, tag);
		bytes += size;
		n++;
	}
	/* the sizes again, from the same stream, to check before the frees */
	wl_rng_init(&rng, run->seed, (uint64_t)t->idx);
	for (size_t i = 0; i < n; i++) {
		size_t size = wl_rng_range(&rng, OBJ_MIN, OBJ_MAX);

		wl_check(obj[i], size, wl_tag_of((uint64_t)t->idx, i), "threads");
		free(obj[i]);
	}
	free(obj);

	pthread_barrier_wait(&run->idle);
	pthread_barrier_wait(&run->leave);
	return (void *)n;
}

int wl_threads(const struct wl_opts *o)
{
	int nt = wl_thread_count(o, o->quick ? THREADS / 4 : THREADS);
	struct th_run run = { .seed = o->seed };
	struct th_thread *th = wl_calloc((size_t)nt, sizeof *th);
	long rss_before, rss_idle, rss_joined;
	uint64_t ops = 0;
	double t0, t1;

	pthread_barrier_init(&run.start, NULL, (unsigned)nt + 1);
	pthread_barrier_init(&run.idle, NULL, (unsigned)nt + 1);
	pthread_barrier_init(&run.leave, NULL, (unsigned)nt + 1);
	rss_before = wl_rss_kib();
	for (int i = 0; i < nt; i++) {
		th[i].idx = i;
		th[i].run = &run;
		wl_thread_create(&th[i].tid, th_main, &th[i], STACK, 0);
	}
	pthread_barrier_wait(&run.start);
	t0 = wl_now();
	pthread_barrier_wait(&run.idle);
	t1 = wl_now();
	rss_idle = wl_rss_kib();
	pthread_barrier_wait(&run.leave);
	for (int i = 0; i < nt; i++) {
		void *n;

		pthread_join(th[i].tid, &n);
		ops += (uint64_t)(uintptr_t)n + 1;   /* + the pointer array */
	}
	rss_joined = wl_rss_kib();
	free(th);
	pthread_barrier_destroy(&run.start);
	pthread_barrier_destroy(&run.idle);
	pthread_barrier_destroy(&run.leave);
	wl_sleep_ms(200);
	wl_result("threads", nt, t1 - t0, ops,
		  "rss_before_kib=%ld rss_idle_kib=%ld kib_per_thread=%.1f "
		  "rss_joined_kib=%ld",
		  rss_before, rss_idle,
		  (double)(rss_idle - rss_before) / (double)nt, rss_joined);
	return 0;
}
