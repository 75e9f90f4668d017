/*
 * sizes - malloc+free cost for one size at a time, 16 bytes to 1 MiB.
 *
 * For each size of the sweep (16, 32, 64, 128, 256, 512, 1K, 4K, 16K, 64K,
 * 256K, 1M) every thread keeps a working set of min(1024, 64 MiB / size)
 * blocks of that size and repeats a step: free the block of a random slot,
 * malloc a new one into it, write its first and last 8 bytes. This is the
 * steady state of a program whose live data stay the same while the objects
 * come and go; the working set is larger than a thread cache, so the slow
 * paths and, for the big sizes, the way the allocator gets and returns
 * pages are part of the figure.
 *
 * One RESULT line for the whole sweep: seconds and ops are the sums over the
 * sizes, and an extra key ns_SIZE per size gives the wall time per step of
 * one thread (the measured time of that size divided by the steps each
 * thread did). The working sets are filled before and freed after each
 * size's measured part, all threads together (barriers). The steps are
 * fixed in total per size and divided among the threads; the two largest
 * sizes do fewer of them.
 */
#define _GNU_SOURCE
#include "common.h"

#include <stdio.h>
#include <stdlib.h>

#define STEPS      12000000ULL          /* per size, all threads together */
#define WS_MAX     1024
#define WS_BYTES   (64UL << 20)

static const size_t sweep[] = {
	16, 32, 64, 128, 256, 512, 1024, 4096, 16384, 65536, 262144, 1048576,
};
#define N_SIZES (sizeof sweep / sizeof sweep[0])

struct sizes_run {
	pthread_barrier_t bar;
	int nt;
	uint64_t seed;
	uint64_t steps[N_SIZES];        /* per thread */
	double secs[N_SIZES];
};

static void sizes_thread(int idx, void *arg)
{
	struct sizes_run *s = arg;
	struct wl_rng rng;
	void **slot = wl_malloc(WS_MAX * sizeof *slot);
	uint64_t *tag = wl_malloc(WS_MAX * sizeof *tag);
	uint64_t serial = (uint64_t)idx << 40;

	wl_rng_init(&rng, s->seed, (uint64_t)idx);
	for (size_t z = 0; z < N_SIZES; z++) {
		size_t size = sweep[z];
		size_t ws = WS_BYTES / size < WS_MAX ? WS_BYTES / size : WS_MAX;
		double t0 = 0;

		for (size_t i = 0; i < ws; i++) {
			slot[i] = wl_malloc(size);
			tag[i] = serial++;
			wl_mark(slot[i], size, tag[i]);
		}
		pthread_barrier_wait(&s->bar);
		if (idx == 0)
			t0 = wl_now();
		for (uint64_t n = s->steps[z]; n; n--) {
			size_t i = (size_t)wl_rng_below(&rng, ws);

			wl_check(slot[i], size, tag[i], "sizes");
			free(slot[i]);
			slot[i] = wl_malloc(size);
			tag[i] = serial++;
			wl_mark(slot[i], size, tag[i]);
		}
		pthread_barrier_wait(&s->bar);
		if (idx == 0)
			s->secs[z] = wl_now() - t0;
		for (size_t i = 0; i < ws; i++) {
			wl_check(slot[i], size, tag[i], "sizes");
			free(slot[i]);
		}
	}
	free(tag);
	free(slot);
}

int wl_sizes(const struct wl_opts *o)
{
	int nt = wl_thread_count(o, 1);
	uint64_t total = o->quick ? STEPS / 10 : STEPS;
	struct sizes_run s = { .nt = nt, .seed = o->seed };
	char extra[1024];
	size_t len = 0;
	double secs = 0;
	uint64_t ops = 0;

	for (size_t z = 0; z < N_SIZES; z++) {
		uint64_t steps = sweep[z] >= (256u << 10) ? total / 8 : total;

		s.steps[z] = steps / (uint64_t)nt ? steps / (uint64_t)nt : 1;
	}
	pthread_barrier_init(&s.bar, NULL, (unsigned)nt);
	wl_parallel(nt, sizes_thread, &s, 0);
	pthread_barrier_destroy(&s.bar);

	for (size_t z = 0; z < N_SIZES; z++) {
		secs += s.secs[z];
		ops += s.steps[z] * (uint64_t)nt;
		len += (size_t)snprintf(extra + len, sizeof extra - len,
					"%sns_%zu=%.1f", z ? " " : "", sweep[z],
					s.secs[z] * 1e9 / (double)s.steps[z]);
	}
	wl_result("sizes", nt, secs, ops, "%s", extra);
	return 0;
}
