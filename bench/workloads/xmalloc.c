/*
 * xmalloc - producers allocate, consumers free.
 *
 * After xmalloc-test (Lever and Boreham) and the pipelines it stands for (a
 * network thread allocating request buffers that worker threads release):
 * half of the threads are producers that malloc blocks of random sizes
 * (7 in 8 between 8 and 256 bytes, the rest up to 4 KiB), write them, and
 * push them in batches of BATCH onto one shared bounded queue; the other
 * half are consumers that pop a batch, check every block and free it. Every
 * free is a cross-thread free, and a consumer frees blocks of all producers,
 * so the allocator's path for returning remote blocks is what is measured
 * (the queue costs one lock round per batch, little next to BATCH frees).
 * The batch itself is malloc'ed by the producer and freed by the consumer.
 *
 * --threads N (at least 2, default 4): N/2 producers, the rest consumers.
 * The number of blocks is fixed in total and divided among the producers.
 * ops counts the blocks and the batches. Extra keys: producers, consumers,
 * batch.
 */
#define _GNU_SOURCE
#include "common.h"

#include <stdlib.h>

#define TOTAL_BLOCKS 10000000ULL
#define BATCH        64
#define QUEUE_CAP    64           /* batches in flight, at most */

struct item {
	void *p;
	uint32_t size;
	uint32_t tag;
};

struct batch {
	unsigned n;
	struct item it[BATCH];
};

struct xm {
	pthread_mutex_t lock;
	pthread_cond_t not_empty;
	pthread_cond_t not_full;
	struct batch *q[QUEUE_CAP];
	unsigned head, count;
	int producers_left;
	int producers;
	uint64_t per_producer;     /* blocks */
	uint64_t seed;
};

static void push(struct xm *x, struct batch *b)
{
	pthread_mutex_lock(&x->lock);
	while (x->count == QUEUE_CAP)
		pthread_cond_wait(&x->not_full, &x->lock);
	x->q[(x->head + x->count) % QUEUE_CAP] = b;
	x->count++;
	pthread_cond_signal(&x->not_empty);
	pthread_mutex_unlock(&x->lock);
}

/* NULL when every producer is done and the queue is empty. */
static struct batch *pop(struct xm *x)
{
	struct batch *b = NULL;

	pthread_mutex_lock(&x->lock);
	while (x->count == 0 && x->producers_left > 0)
		pthread_cond_wait(&x->not_empty, &x->lock);
	if (x->count) {
		b = x->q[x->head];
		x->head = (x->head + 1) % QUEUE_CAP;
		x->count--;
		pthread_cond_signal(&x->not_full);
	}
	pthread_mutex_unlock(&x->lock);
	return b;
}

static void producer(struct xm *x, int idx)
{
	struct wl_rng rng;
	uint64_t left = x->per_producer;
	uint32_t serial = 0;

	wl_rng_init(&rng, x->seed, (uint64_t)idx);
	while (left) {
		struct batch *b = wl_malloc(sizeof *b);

		b->n = left < BATCH ? (unsigned)left : BATCH;
		for (unsigned i = 0; i < b->n; i++) {
			struct item *it = &b->it[i];

			it->size = (uint32_t)(wl_rng_below(&rng, 8)
				? wl_rng_range(&rng, 8, 256)
				: wl_rng_range(&rng, 257, 4096));
			it->tag = (uint32_t)idx << 24 ^ serial++;
			it->p = wl_malloc(it->size);
			wl_mark(it->p, it->size, it->tag);
		}
		left -= b->n;
		push(x, b);
	}
	pthread_mutex_lock(&x->lock);
	x->producers_left--;
	pthread_cond_broadcast(&x->not_empty);
	pthread_mutex_unlock(&x->lock);
}

static void consumer(struct xm *x)
{
	struct batch *b;

	while ((b = pop(x))) {
		for (unsigned i = 0; i < b->n; i++) {
			struct item *it = &b->it[i];

			wl_check(it->p, it->size, it->tag, "xmalloc");
			free(it->p);
		}
		free(b);
	}
}

static void xm_thread(int idx, void *arg)
{
	struct xm *x = arg;

	if (idx < x->producers)
		producer(x, idx);
	else
		consumer(x);
}

int wl_xmalloc(const struct wl_opts *o)
{
	int nt = wl_thread_count(o, 4);
	uint64_t total = o->quick ? TOTAL_BLOCKS / 10 : TOTAL_BLOCKS;
	struct xm x = {
		.lock = PTHREAD_MUTEX_INITIALIZER,
		.not_empty = PTHREAD_COND_INITIALIZER,
		.not_full = PTHREAD_COND_INITIALIZER,
		.seed = o->seed,
	};
	uint64_t batches;
	double secs;

	if (nt < 2)
		wl_die("xmalloc needs at least 2 threads (a producer and a consumer)");
	x.producers = nt / 2;
	x.producers_left = x.producers;
	x.per_producer = total / (uint64_t)x.producers;
	secs = wl_parallel(nt, xm_thread, &x, 0);
	batches = (uint64_t)x.producers * ((x.per_producer + BATCH - 1) / BATCH);
	wl_result("xmalloc", nt, secs,
		  (uint64_t)x.producers * x.per_producer + batches,
		  "producers=%d consumers=%d batch=%d", x.producers,
		  nt - x.producers, BATCH);
	return 0;
}
