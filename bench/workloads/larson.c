/*
 * larson - a server that hands its connections from thread to thread.
 *
 * After the benchmark of Larson and Krishnan (a long-running multithreaded
 * server): T "lanes", each a table of SLOTS blocks. The main thread fills all
 * tables, then one thread per lane runs ROUND_STEPS steps; a step frees the
 * block of a random slot and mallocs a new block of a random size into it
 * (16 ... 1024 bytes, one request in 64 between 1 and 8 KiB). At the end of
 * its round the thread starts a NEW thread that carries on with the same
 * table and exits itself, so almost every free is of a block that a thread
 * other than the freeing one allocated, often one that no longer exists, and
 * the allocator sees a steady stream of thread births and deaths.
 *
 * The work is fixed in total (TOTAL_STEPS mallocs, a tenth with --quick) and
 * divided among the lanes. seconds is the time from the first worker to the
 * last round's end; the tables are filled before and emptied (by the main
 * thread) after. Extra keys: slots (per lane), rounds (per lane).
 */
#define _GNU_SOURCE
#include "common.h"

#include <stdatomic.h>
#include <stdlib.h>

#define SLOTS        2000
#define ROUND_STEPS  20000
#define TOTAL_STEPS  80000000ULL
#define SMALL_MIN    16
#define SMALL_MAX    1024
#define LARGE_MAX    8192

struct slot {
	void *p;
	size_t size;
	uint64_t tag;
};

struct lane {
	struct slot *slots;
	struct wl_rng rng;
	uint64_t serial;          /* tags of this lane's blocks     */
	unsigned rounds_left;
	unsigned idx;
	struct larson *l;
};

struct larson {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned lanes_done;
	atomic_ulong threads_started;
};

static size_t pick_size(struct wl_rng *r)
{
	if (wl_rng_below(r, 64) == 0)
		return wl_rng_range(r, SMALL_MAX + 1, LARGE_MAX);
	return wl_rng_range(r, SMALL_MIN, SMALL_MAX);
}

static void fill_slot(struct lane *ln, struct slot *s)
{
	s->size = pick_size(&ln->rng);
	s->tag = wl_tag_of(ln->idx, ln->serial++);
	s->p = wl_malloc(s->size);
	wl_mark(s->p, s->size, s->tag);
}

static void *lane_thread(void *arg)
{
	struct lane *ln = arg;
	struct larson *l = ln->l;
	pthread_t next;

	for (unsigned i = 0; i < ROUND_STEPS; i++) {
		struct slot *s = &ln->slots[wl_rng_below(&ln->rng, SLOTS)];

		wl_check(s->p, s->size, s->tag, "larson");
		free(s->p);
		fill_slot(ln, s);
	}
	if (--ln->rounds_left) {
		/* hand the table over to a new thread and go away */
		atomic_fetch_add(&l->threads_started, 1);
		wl_thread_create(&next, lane_thread, ln, 0, 1);
		return NULL;
	}
	pthread_mutex_lock(&l->lock);
	l->lanes_done++;
	pthread_cond_signal(&l->cond);
	pthread_mutex_unlock(&l->lock);
	return NULL;
}

int wl_larson(const struct wl_opts *o)
{
	int nt = wl_thread_count(o, 2);
	uint64_t total = o->quick ? TOTAL_STEPS / 10 : TOTAL_STEPS;
	unsigned rounds = (unsigned)(total / ((uint64_t)nt * ROUND_STEPS));
	struct larson l = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
			    0, 0 };
	struct lane *lanes = wl_calloc((size_t)nt, sizeof *lanes);
	double t0, t1;
	pthread_t tid;

	if (rounds == 0)
		rounds = 1;
	for (int i = 0; i < nt; i++) {
		struct lane *ln = &lanes[i];

		ln->slots = wl_calloc(SLOTS, sizeof *ln->slots);
		wl_rng_init(&ln->rng, o->seed, (uint64_t)i);
		ln->rounds_left = rounds;
		ln->idx = (unsigned)i;
		ln->l = &l;
		for (unsigned k = 0; k < SLOTS; k++)
			fill_slot(ln, &ln->slots[k]);
	}

	t0 = wl_now();
	for (int i = 0; i < nt; i++) {
		atomic_fetch_add(&l.threads_started, 1);
		wl_thread_create(&tid, lane_thread, &lanes[i], 0, 1);
	}
	pthread_mutex_lock(&l.lock);
	while (l.lanes_done < (unsigned)nt)
		pthread_cond_wait(&l.cond, &l.lock);
	pthread_mutex_unlock(&l.lock);
	t1 = wl_now();

	for (int i = 0; i < nt; i++) {
		for (unsigned k = 0; k < SLOTS; k++) {
			struct slot *s = &lanes[i].slots[k];

			wl_check(s->p, s->size, s->tag, "larson");
			free(s->p);
		}
		free(lanes[i].slots);
	}
	free(lanes);
	wl_result("larson", nt, t1 - t0, (uint64_t)nt * rounds * ROUND_STEPS,
		  "slots=%u rounds=%u threads_started=%lu", SLOTS, rounds,
		  (unsigned long)atomic_load(&l.threads_started));
	return 0;
}
