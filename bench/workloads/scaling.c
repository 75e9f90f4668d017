/*
 * scaling - the same mixed work at a given heap size, phase by phase.
 *
 * Does the cost of malloc and free stay flat as the heap grows from tens of
 * MiB to many GiB? One run works at one size (--size, default 256 MiB,
 * 64 MiB with --quick); bench/scaling.py runs it at every size under every
 * allocator. The work per byte of heap is fixed, so ns per operation can be
 * compared between sizes. Phases, each timed on its own:
 *
 *   alloc    malloc random sizes until the live bytes reach the target: 63 in
 *            64 log-uniform in 16 B .. 32 KiB (every slab class), 1 in 64
 *            log-uniform in 32 KiB .. 1 MiB (runs of pages); each block is
 *            written (memset up to 4 KiB, one byte per page above);
 *   free     free a random 90 % of the blocks, in random order;
 *   realloc  realloc a random half of the survivors, in random order, four
 *            times over, each time to 0.5 .. 2 times the block's size
 *            (log-uniform; 16 B .. 2 MiB), the grown part written;
 *   churn    batches of 64 blocks (7 in 8 of 4, 8, 12 or 16 KiB, 1 in 8 of
 *            1 MiB), a byte written per page, then the batch freed; batches
 *            until twice the target has been allocated;
 *   refill   malloc random sizes (as alloc) until the live bytes are back at
 *            the target;
 *   freeall  free every block, in random order.
 *
 * With --threads N (N > 1) each thread does the same on target / N bytes of
 * its own, the threads released together at every phase (a barrier between
 * phases, the phase timed from one barrier to the next), except the last
 * phase, remote: thread i frees, in random order, every block that thread
 * (i + 1) mod N allocated, so each free is a free of another thread's block.
 *
 * Operations: each malloc, realloc and free call. The bookkeeping (the
 * table of blocks, the random orders) is mapped with mmap, outside the
 * allocator measured, and the random orders are drawn before each phase's
 * clock starts.
 *
 * Extra keys: size_kib (the target), peak_live_kib (the most bytes
 * requested and not freed at once, summed over the threads' peaks), blocks
 * (the most blocks in the table), and per phase P: P_ops, P_s (seconds),
 * P_ns (wall nanoseconds per operation), P_rss_kib (VmRSS at its end).
 */
#define _GNU_SOURCE
#include "common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

#define PAGE          4096UL
#define SMALL_MIN     16UL
#define SMALL_MAX     (32UL << 10)
#define LARGE_MAX     (1UL << 20)
#define LARGE_ONE_IN  64
#define FREE_PERMILLE 900
#define REALLOC_PASSES 4
#define REALLOC_MAX   (2UL << 20)
#define CHURN_BATCH   64
#define CHURN_MIB_ONE_IN 8
#define CHURN_FACTOR  2            /* churned bytes = CHURN_FACTOR x target */

enum { PH_ALLOC, PH_FREE, PH_REALLOC, PH_CHURN, PH_REFILL, PH_FREEALL, NPH };

static const char *const phase_name[NPH] = {
	"alloc", "free", "realloc", "churn", "refill", "freeall",
};

struct blk {
	unsigned char *p;
	size_t size;
};

/* A table that grows outside the allocator under test. */
struct table {
	void *mem;
	size_t bytes;
};

static void *table_resize(struct table *t, size_t bytes)
{
	bytes = (bytes + PAGE - 1) & ~(PAGE - 1);
	if (bytes <= t->bytes)
		return t->mem;
	void *m = t->mem
		? mremap(t->mem, t->bytes, bytes, MREMAP_MAYMOVE)
		: mmap(NULL, bytes, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (m == MAP_FAILED)
		wl_die("scaling: cannot map a table of %zu bytes: %s", bytes,
		       strerror(errno));
	t->mem = m;
	t->bytes = bytes;
	return m;
}

static void table_free(struct table *t)
{
	if (t->mem)
		munmap(t->mem, t->bytes);
	t->mem = NULL;
	t->bytes = 0;
}

struct worker {
	int idx;
	struct wl_rng rng;
	struct table tb, tperm;
	struct blk *b;          /* tb.mem                                  */
	size_t n, cap;          /* slots used, slots mapped                */
	uint32_t *perm;         /* tperm.mem                               */
	size_t live, peak;      /* bytes requested and not freed           */
	uint64_t ops[NPH];
	struct shared *sh;
};

struct shared {
	int nt;
	size_t target;          /* per thread                              */
	pthread_barrier_t bar;
	double t0[NPH], t1[NPH];
	long rss[NPH];
	struct worker *w;
};

static size_t random_size(struct wl_rng *r)
{
	if (wl_rng_below(r, LARGE_ONE_IN) == 0)
		return wl_rng_logsize(r, SMALL_MAX + 1, LARGE_MAX);
	return wl_rng_logsize(r, SMALL_MIN, SMALL_MAX);
}

/* Writes a new block (or the part [from, n) of a grown one) and tags it. */
static void fill(unsigned char *p, size_t from, size_t n, uint64_t tag)
{
	if (n <= PAGE) {
		memset(p + from, (int)(tag & 0xff), n - from);
	} else {
		for (size_t i = from; i < n; i += PAGE)
			p[i] = (unsigned char)tag;
	}
	wl_mark(p, n, tag);
}

static uint64_t tag_of(const struct worker *w, size_t slot)
{
	return wl_tag_of((uint64_t)w->idx + 1, slot);
}

static void grow_table(struct worker *w)
{
	w->cap = w->cap ? w->cap * 2 : 1 << 16;
	w->b = table_resize(&w->tb, w->cap * sizeof *w->b);
}

static void add_live(struct worker *w, size_t n)
{
	w->live += n;
	if (w->live > w->peak)
		w->peak = w->live;
}

static void put(struct worker *w, size_t slot)
{
	size_t size = random_size(&w->rng);
	struct blk *b = &w->b[slot];

	b->p = wl_malloc(size);
	b->size = size;
	fill(b->p, 0, size, tag_of(w, slot));
	add_live(w, size);
}

static void drop(struct worker *owner, size_t slot, size_t *live)
{
	struct blk *b = &owner->b[slot];

	wl_check(b->p, b->size, tag_of(owner, slot), "scaling");
	free(b->p);
	*live -= b->size;
	b->p = NULL;
}

/* perm[0 .. n) := a random order of the slots 0 .. n-1 */
static void shuffle(struct worker *w, size_t n)
{
	w->perm = table_resize(&w->tperm, (n ? n : 1) * sizeof *w->perm);
	for (size_t i = 0; i < n; i++)
		w->perm[i] = (uint32_t)i;
	for (size_t i = n; i > 1; i--) {
		size_t j = (size_t)wl_rng_below(&w->rng, i);
		uint32_t x = w->perm[i - 1];

		w->perm[i - 1] = w->perm[j];
		w->perm[j] = x;
	}
}

static void phase_begin(struct worker *w, int ph)
{
	pthread_barrier_wait(&w->sh->bar);
	if (w->idx == 0)
		w->sh->t0[ph] = wl_now();
}

static void phase_end(struct worker *w, int ph)
{
	pthread_barrier_wait(&w->sh->bar);
	if (w->idx == 0) {
		w->sh->t1[ph] = wl_now();
		w->sh->rss[ph] = wl_rss_kib();
	}
}

static void work(int idx, void *arg)
{
	struct shared *sh = arg;
	struct worker *w = &sh->w[idx];
	size_t target = sh->target;
	uint64_t ops;

	w->idx = idx;
	w->sh = sh;

	/* alloc */
	phase_begin(w, PH_ALLOC);
	for (ops = 0; w->live < target; ops++) {
		if (w->n == w->cap)
			grow_table(w);
		put(w, w->n++);
	}
	w->ops[PH_ALLOC] = ops;
	phase_end(w, PH_ALLOC);

	/* free a random 90 % */
	size_t nfree = w->n * FREE_PERMILLE / 1000;
	shuffle(w, w->n);
	phase_begin(w, PH_FREE);
	for (size_t i = 0; i < nfree; i++)
		drop(w, w->perm[i], &w->live);
	w->ops[PH_FREE] = nfree;
	phase_end(w, PH_FREE);

	/* realloc a random half of the survivors (perm[nfree ..] is a random
	 * order of them), REALLOC_PASSES times over, each time to 0.5 .. 2
	 * times the block's size */
	size_t nre = (w->n - nfree) / 2;
	phase_begin(w, PH_REALLOC);
	for (int pass = 0; pass < REALLOC_PASSES; pass++) {
		for (size_t i = 0; i < nre; i++) {
			size_t slot = w->perm[nfree + i];
			struct blk *b = &w->b[slot];
			uint64_t tag = tag_of(w, slot);
			size_t old = b->size;
			size_t n = (size_t)((double)old * 0.5 *
					    (double)wl_rng_logsize(&w->rng, 1 << 16, 1 << 18) /
					    (double)(1 << 16));

			n = n < SMALL_MIN ? SMALL_MIN : n > REALLOC_MAX ? REALLOC_MAX : n;
			wl_check(b->p, old, tag, "scaling realloc");
			b->p = wl_realloc_or_die(b->p, n);
			wl_check_upto(b->p, old, n < old ? n : old, tag, "scaling realloc");
			fill(b->p, n > old ? old : n, n, tag);
			b->size = n;
			w->live -= old;
			add_live(w, n);
		}
	}
	w->ops[PH_REALLOC] = nre * REALLOC_PASSES;
	phase_end(w, PH_REALLOC);

	/* churn: batches of page-sized and 1 MiB blocks */
	struct blk batch[CHURN_BATCH];
	size_t churned = 0, churn_total = CHURN_FACTOR * target;
	uint64_t round = 0;
	phase_begin(w, PH_CHURN);
	for (ops = 0; churned < churn_total; round++) {
		for (int i = 0; i < CHURN_BATCH; i++) {
			size_t n = wl_rng_below(&w->rng, CHURN_MIB_ONE_IN) == 0
				? 1UL << 20
				: PAGE * (size_t)wl_rng_range(&w->rng, 1, 4);

			batch[i].p = wl_malloc(n);
			batch[i].size = n;
			fill(batch[i].p, 0, n, wl_tag_of(round, (uint64_t)i));
			add_live(w, n);
			churned += n;
		}
		for (int i = 0; i < CHURN_BATCH; i++) {
			wl_check(batch[i].p, batch[i].size,
				 wl_tag_of(round, (uint64_t)i), "scaling churn");
			free(batch[i].p);
			w->live -= batch[i].size;
		}
		ops += 2 * CHURN_BATCH;
	}
	w->ops[PH_CHURN] = ops;
	phase_end(w, PH_CHURN);

	/* refill: the freed slots first, then new ones */
	phase_begin(w, PH_REFILL);
	ops = 0;
	for (size_t i = 0; i < nfree && w->live < target; i++, ops++)
		put(w, w->perm[i]);
	while (w->live < target) {
		if (w->n == w->cap)
			grow_table(w);
		put(w, w->n++);
		ops++;
	}
	w->ops[PH_REFILL] = ops;
	phase_end(w, PH_REFILL);

	/* freeall (one thread) or remote (each thread frees its neighbour's
	 * blocks) */
	struct worker *owner = &sh->w[(idx + 1) % sh->nt];
	pthread_barrier_wait(&sh->bar);   /* the neighbour's table is final */
	shuffle(w, owner->n);
	size_t owner_live = owner->live;  /* read here, owned by us below */
	phase_begin(w, PH_FREEALL);
	ops = 0;
	for (size_t i = 0; i < owner->n; i++) {
		if (owner->b[w->perm[i]].p) {
			drop(owner, w->perm[i], &owner_live);
			ops++;
		}
	}
	w->ops[PH_FREEALL] = ops;
	phase_end(w, PH_FREEALL);
	if (owner_live != 0)
		wl_die("scaling: %zu bytes still counted live after the last phase",
		       owner_live);
}

static void *thread_main(void *arg)
{
	struct worker *w = arg;

	work(w->idx, w->sh);
	return NULL;
}

int wl_scaling(const struct wl_opts *o)
{
	int nt = wl_thread_count(o, 1);
	size_t size = o->size ? o->size : o->quick ? 64UL << 20 : 256UL << 20;
	struct shared sh = { .nt = nt, .target = size / (size_t)nt };
	pthread_t *tid = wl_calloc((size_t)nt, sizeof *tid);
	double total = 0;
	uint64_t all_ops = 0;
	size_t peak = 0, blocks = 0;
	char extra[2048];
	int len;

	if (sh.target < (1UL << 20))
		wl_die("scaling: --size must give each thread at least 1 MiB");
	sh.w = wl_calloc((size_t)nt, sizeof *sh.w);
	pthread_barrier_init(&sh.bar, NULL, (unsigned)nt);
	for (int i = 0; i < nt; i++) {
		sh.w[i].idx = i;
		sh.w[i].sh = &sh;
		wl_rng_init(&sh.w[i].rng, o->seed, (uint64_t)i);
	}
	/* thread 0 is the main thread: with one thread, the work runs where
	 * a single-threaded program's would (glibc's main arena, say) */
	for (int i = 1; i < nt; i++)
		wl_thread_create(&tid[i], thread_main, &sh.w[i], 0, 0);
	work(0, &sh);
	for (int i = 1; i < nt; i++)
		pthread_join(tid[i], NULL);
	pthread_barrier_destroy(&sh.bar);

	len = snprintf(extra, sizeof extra, "size_kib=%zu", size >> 10);
	for (int i = 0; i < nt; i++) {
		peak += sh.w[i].peak;
		if (sh.w[i].n > blocks)
			blocks = sh.w[i].n;
	}
	len += snprintf(extra + len, sizeof extra - (size_t)len,
			" peak_live_kib=%zu blocks=%zu", peak >> 10, blocks);
	for (int ph = 0; ph < NPH; ph++) {
		uint64_t ops = 0;
		double s = sh.t1[ph] - sh.t0[ph];
		const char *name = ph == PH_FREEALL && nt > 1 ? "remote" : phase_name[ph];

		for (int i = 0; i < nt; i++)
			ops += sh.w[i].ops[ph];
		total += s;
		all_ops += ops;
		len += snprintf(extra + len, sizeof extra - (size_t)len,
				" %s_ops=%llu %s_s=%.6f %s_ns=%.1f %s_rss_kib=%ld",
				name, (unsigned long long)ops, name, s, name,
				ops ? s * 1e9 / (double)ops : 0.0, name, sh.rss[ph]);
	}
	for (int i = 0; i < nt; i++) {
		table_free(&sh.w[i].tb);
		table_free(&sh.w[i].tperm);
	}
	free(sh.w);
	free(tid);
	wl_result("scaling", nt, total, all_ops, "%s", extra);
	return 0;
}
