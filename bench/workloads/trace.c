/*
 * trace - replays a recorded allocation trace.
 *
 * The trace is plain text (README.md has the format): a first line
 * "# buddymalloc-trace v1", then one operation per line:
 *
 *   m ID SIZE            malloc(SIZE), the block is ID from now on
 *   c ID SIZE            calloc(1, SIZE)
 *   r ID NEWID SIZE      realloc(block ID, SIZE), the result is NEWID
 *   a ID ALIGN SIZE      posix_memalign(ALIGN, SIZE)
 *   f ID                 free(block ID)
 *
 * IDs are numbers below 2^32, reused once freed. The whole file is parsed
 * before anything is timed, into a compact array of operations in which each
 * ID is already turned into the index of a slot (slots are reused as blocks
 * die, so the slot table is as large as the most blocks live at once). The
 * array, the slot table and the file are mapped with mmap, never malloc'ed,
 * so the allocator under test sees only the trace's own calls. seconds is the
 * replay; the blocks still live at its end are freed afterwards (untimed).
 *
 * Every block gets the tag pattern of common.h after its allocation and is
 * checked before its free and its realloc (a realloc must keep the old
 * contents); calloc'ed memory is checked to be zero in its first and last
 * 16 bytes. A free of an ID that is not live (a trace that starts after the
 * program did) is skipped, a realloc of one is replayed as a malloc; both
 * are counted in the extra key skipped. A realloc to size 0 may return NULL
 * (the new ID then holds nothing and its free is a free(NULL)).
 *
 * The trace is replayed PASSES times (a twentieth with --quick): a recorded trace
 * takes tens of milliseconds, too short to time against process start-up
 * on a shared machine. The blocks still live at the end of a pass are
 * checked and freed, untimed, before the next one starts with every slot
 * empty, so each pass makes the same calls. seconds is the sum of the
 * passes. Extra keys: passes, frees (per pass), skipped, max_live (blocks), max_live_kib (bytes requested),
 * rss_before_kib (VmRSS before the replay: the parsed trace and the program;
 * peak_rss_kib includes them too), trace_kib (memory of the parsed trace).
 */
#define _GNU_SOURCE
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define HEADER "# buddymalloc-trace v1"
#define PASSES 100

enum { OP_MALLOC, OP_CALLOC, OP_REALLOC, OP_ALIGNED, OP_FREE };

/* 16 bytes: the kind in the top byte of sk, the size below it; a is the
 * slot of the block, b the new slot (realloc) or the alignment (aligned). */
struct top {
	uint64_t sk;
	uint32_t a;
	uint32_t b;
};

#define SIZE_MASK ((1ULL << 56) - 1)

/* ---- mmap'ed growable arrays -------------------------------------------- */

struct marr {
	void *p;
	size_t bytes;   /* mapped */
};

static void *marr_grow(struct marr *m, size_t need)
{
	size_t nb;
	void *q;

	if (need <= m->bytes)
		return m->p;
	nb = m->bytes ? m->bytes : 1 << 20;
	while (nb < need)
		nb *= 2;
	if (m->p)
		q = mremap(m->p, m->bytes, nb, MREMAP_MAYMOVE);
	else
		q = mmap(NULL, nb, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (q == MAP_FAILED)
		wl_die("trace: cannot map %zu bytes: %s", nb, strerror(errno));
	m->p = q;
	m->bytes = nb;
	return q;
}

static void marr_free(struct marr *m)
{
	if (m->p)
		munmap(m->p, m->bytes);
	m->p = NULL;
	m->bytes = 0;
}

/* ---- ID -> slot map (open addressing, linear probing) ------------------- */

struct ent {
	uint32_t id;
	uint32_t slot;          /* UINT32_MAX: empty */
};

struct idmap {
	struct marr m;
	size_t cap;             /* a power of two */
	size_t used;
};

static inline size_t id_hash(uint32_t id, size_t cap)
{
	return (size_t)(((uint64_t)id * 0x9E3779B97F4A7C15ULL) >> 20) & (cap - 1);
}

static void idmap_init(struct idmap *h, size_t cap)
{
	struct ent *e = marr_grow(&h->m, cap * sizeof(struct ent));

	h->cap = cap;
	h->used = 0;
	memset(e, 0xff, cap * sizeof(struct ent));
}

static struct ent *idmap_find(struct idmap *h, uint32_t id)
{
	struct ent *e = h->m.p;

	for (size_t i = id_hash(id, h->cap);; i = (i + 1) & (h->cap - 1)) {
		if (e[i].slot == UINT32_MAX || e[i].id == id)
			return &e[i];
	}
}

static void idmap_put(struct idmap *h, uint32_t id, uint32_t slot);

static void idmap_rehash(struct idmap *h)
{
	struct idmap n = { { NULL, 0 }, 0, 0 };
	struct ent *old = h->m.p;

	idmap_init(&n, h->cap * 2);
	for (size_t i = 0; i < h->cap; i++)
		if (old[i].slot != UINT32_MAX)
			idmap_put(&n, old[i].id, old[i].slot);
	marr_free(&h->m);
	*h = n;
}

static void idmap_put(struct idmap *h, uint32_t id, uint32_t slot)
{
	struct ent *e;

	if ((h->used + 1) * 2 > h->cap)
		idmap_rehash(h);
	e = idmap_find(h, id);
	e->id = id;
	e->slot = slot;
	h->used++;
}

/* Backward-shift deletion keeps every probe chain unbroken. */
static void idmap_del(struct idmap *h, struct ent *hole)
{
	struct ent *e = h->m.p;
	size_t mask = h->cap - 1;
	size_t i = (size_t)(hole - e), j = i;

	for (;;) {
		j = (j + 1) & mask;
		if (e[j].slot == UINT32_MAX)
			break;
		size_t home = id_hash(e[j].id, h->cap);
		/* e[j] may move into the hole unless its home lies in (i, j] */
		if (i <= j ? (home <= i || home > j) : (home <= i && home > j)) {
			e[i] = e[j];
			i = j;
		}
	}
	e[i].slot = UINT32_MAX;
	h->used--;
}

/* ---- parsing ------------------------------------------------------------ */

struct parsed {
	struct marr ops;
	size_t n_ops;
	uint32_t n_slots;
	uint64_t allocs, frees, skipped, max_live, max_live_bytes;
};

struct parser {
	const char *path;
	const char *p, *end;
	size_t line;
	struct idmap map;
	struct marr freeslots;  /* stack of free slot numbers */
	size_t n_free;
	struct marr slotsize;   /* live size per slot, for max_live_bytes */
	uint64_t live, live_bytes;
};

static void WL_NORETURN bad(struct parser *ps, const char *what)
{
	wl_die("trace %s, line %zu: %s", ps->path, ps->line, what);
}

static void skip_blanks(struct parser *ps)
{
	while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t'))
		ps->p++;
}

static uint64_t number(struct parser *ps, uint64_t max, const char *what)
{
	uint64_t v = 0;
	const char *start;

	skip_blanks(ps);
	start = ps->p;
	while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') {
		if (v > (max - (uint64_t)(*ps->p - '0')) / 10)
			bad(ps, what);
		v = v * 10 + (uint64_t)(*ps->p++ - '0');
	}
	if (ps->p == start)
		bad(ps, what);
	return v;
}

static uint32_t take_slot(struct parser *ps, struct parsed *t, uint32_t id,
			  uint64_t size)
{
	uint32_t slot;
	uint64_t *sz;

	if (idmap_find(&ps->map, id)->slot != UINT32_MAX)
		bad(ps, "the ID is already live");
	if (ps->n_free) {
		slot = ((uint32_t *)ps->freeslots.p)[--ps->n_free];
	} else {
		if (t->n_slots == UINT32_MAX - 1)
			bad(ps, "too many live blocks");
		slot = t->n_slots++;
	}
	idmap_put(&ps->map, id, slot);
	sz = marr_grow(&ps->slotsize, ((size_t)slot + 1) * sizeof *sz);
	sz[slot] = size;
	ps->live++;
	ps->live_bytes += size;
	if (ps->live > t->max_live)
		t->max_live = ps->live;
	if (ps->live_bytes > t->max_live_bytes)
		t->max_live_bytes = ps->live_bytes;
	return slot;
}

/* The slot of a live ID, released; UINT32_MAX if the ID is not live. */
static uint32_t drop_slot(struct parser *ps, uint32_t id)
{
	struct ent *e = idmap_find(&ps->map, id);
	uint32_t slot = e->slot;
	uint32_t *fs;

	if (slot == UINT32_MAX)
		return slot;
	idmap_del(&ps->map, e);
	fs = marr_grow(&ps->freeslots, (ps->n_free + 1) * sizeof *fs);
	fs[ps->n_free++] = slot;
	ps->live--;
	ps->live_bytes -= ((uint64_t *)ps->slotsize.p)[slot];
	return slot;
}

static void parse(const char *path, struct parsed *t)
{
	struct parser ps = { .path = path, .line = 1 };
	struct stat st;
	void *file;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	memset(t, 0, sizeof *t);
	if (fd < 0)
		wl_die("cannot open trace %s: %s", path, strerror(errno));
	if (fstat(fd, &st))
		wl_die("cannot stat trace %s: %s", path, strerror(errno));
	if (st.st_size == 0)
		wl_die("trace %s is empty", path);
	file = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (file == MAP_FAILED)
		wl_die("cannot map trace %s: %s", path, strerror(errno));
	close(fd);
	ps.p = file;
	ps.end = ps.p + st.st_size;
	if ((size_t)st.st_size < sizeof HEADER - 1 ||
	    memcmp(ps.p, HEADER, sizeof HEADER - 1) ||
	    (ps.p + sizeof HEADER - 1 < ps.end &&
	     !strchr(" \t\r\n", ps.p[sizeof HEADER - 1])))
		wl_die("trace %s does not start with \"%s\" (compressed? "
		       "decompress it first)", path, HEADER);
	idmap_init(&ps.map, 1 << 12);

	while (ps.p < ps.end) {
		struct top op = { 0, 0, 0 };
		uint32_t id, nid, slot;
		uint64_t size, align;
		int kind;

		skip_blanks(&ps);
		if (ps.p == ps.end)
			break;
		switch (*ps.p) {
		case '#': case '\n': case '\r':
			kind = -1;
			break;
		case 'm': kind = OP_MALLOC; break;
		case 'c': kind = OP_CALLOC; break;
		case 'r': kind = OP_REALLOC; break;
		case 'a': kind = OP_ALIGNED; break;
		case 'f': kind = OP_FREE; break;
		default:
			bad(&ps, "unknown operation (m, c, r, a, f or #)");
		}
		if (kind >= 0) {
			ps.p++;
			if (ps.p < ps.end && *ps.p != ' ' && *ps.p != '\t')
				bad(&ps, "unknown operation (m, c, r, a, f or #)");
			id = (uint32_t)number(&ps, UINT32_MAX, "bad ID");
			switch (kind) {
			case OP_MALLOC:
			case OP_CALLOC:
				size = number(&ps, SIZE_MASK, "bad size");
				op.a = take_slot(&ps, t, id, size);
				op.sk = size;
				t->allocs++;
				break;
			case OP_ALIGNED:
				align = number(&ps, 1ULL << 30, "bad alignment");
				size = number(&ps, SIZE_MASK, "bad size");
				if (align == 0 || (align & (align - 1)))
					bad(&ps, "the alignment is not a power of two");
				if (align < sizeof(void *))
					align = sizeof(void *);
				op.a = take_slot(&ps, t, id, size);
				op.b = (uint32_t)align;
				op.sk = size;
				t->allocs++;
				break;
			case OP_REALLOC:
				nid = (uint32_t)number(&ps, UINT32_MAX, "bad new ID");
				size = number(&ps, SIZE_MASK, "bad size");
				slot = drop_slot(&ps, id);
				if (slot == UINT32_MAX) {
					t->skipped++;
					kind = OP_MALLOC;
				}
				op.b = take_slot(&ps, t, nid, size);
				op.a = slot == UINT32_MAX ? op.b : slot;
				op.sk = size;
				t->allocs++;
				break;
			case OP_FREE:
				slot = drop_slot(&ps, id);
				if (slot == UINT32_MAX) {
					t->skipped++;
					kind = -1;
					break;
				}
				op.a = slot;
				t->frees++;
				break;
			}
		}
		/* the rest of the line: blanks, then the end of the line */
		if (kind < 0 && ps.p < ps.end && *ps.p == '#') {
			while (ps.p < ps.end && *ps.p != '\n')
				ps.p++;
		}
		skip_blanks(&ps);
		if (ps.p < ps.end && *ps.p == '\r')
			ps.p++;
		if (ps.p < ps.end && *ps.p != '\n')
			bad(&ps, "unexpected text after the operation");
		ps.p++;
		ps.line++;
		if (kind >= 0) {
			struct top *ops = marr_grow(&t->ops,
						    (t->n_ops + 1) * sizeof op);

			op.sk |= (uint64_t)kind << 56;
			ops[t->n_ops++] = op;
		}
	}
	munmap(file, (size_t)st.st_size);
	marr_free(&ps.map.m);
	marr_free(&ps.freeslots);
	marr_free(&ps.slotsize);
}

/* ---- replay ------------------------------------------------------------- */

struct slots {
	void **p;
	uint64_t *size;
	uint64_t *tag;
};

static void check_zero(const unsigned char *b, size_t n)
{
	size_t front = n < 16 ? n : 16;
	size_t back = n > 32 ? n - 16 : front;

	for (size_t i = 0; i < front; i++)
		if (b[i])
			wl_die("trace: calloc'ed block %p of %zu bytes: byte %zu "
			       "is 0x%02x, not 0", (void *)b, n, i, b[i]);
	for (size_t i = back; i < n; i++)
		if (b[i])
			wl_die("trace: calloc'ed block %p of %zu bytes: byte %zu "
			       "is 0x%02x, not 0", (void *)b, n, i, b[i]);
}

static void replay(const struct parsed *t, struct slots *s)
{
	const struct top *ops = t->ops.p;

	for (size_t i = 0; i < t->n_ops; i++) {
		const struct top *op = &ops[i];
		size_t size = (size_t)(op->sk & SIZE_MASK);
		uint32_t a = op->a, b = op->b;
		void *p;

		switch ((int)(op->sk >> 56)) {
		case OP_MALLOC:
			p = wl_malloc(size);
			break;
		case OP_CALLOC:
			p = wl_calloc(1, size);
			check_zero(p, size);
			break;
		case OP_ALIGNED:
			p = wl_aligned(b, size);
			break;
		case OP_REALLOC: {
			void *old = s->p[a];
			size_t osize = (size_t)s->size[a];
			uint64_t tag = s->tag[a];

			if (old)
				wl_check(old, osize, tag, "trace (before realloc)");
			p = realloc(old, size);
			if (!p) {
				if (size)
					wl_die("realloc(%p, %zu) returned NULL",
					       old, size);
				s->p[b] = NULL;
				s->size[b] = 0;
				continue;
			}
			/* what was tagged below the new size must have moved */
			wl_check_upto(p, osize, size, tag, "trace (after realloc)");
			s->p[b] = p;
			s->size[b] = size;
			s->tag[b] = i;
			wl_mark(p, size, i);
			continue;
		}
		case OP_FREE:
			if (s->p[a])
				wl_check(s->p[a], (size_t)s->size[a], s->tag[a],
					 "trace (before free)");
			free(s->p[a]);
			s->p[a] = NULL;
			continue;
		default:
			wl_die("trace: corrupt operation %zu", i);
		}
		s->p[a] = p;
		s->size[a] = size;
		s->tag[a] = i;
		wl_mark(p, size, i);
	}
}

int wl_trace(const struct wl_opts *o)
{
	struct parsed t;
	struct marr mp = { NULL, 0 }, ms = { NULL, 0 }, mt = { NULL, 0 };
	struct slots s;
	uint64_t live_end = 0;
	long rss_before;
	double t0, t1, secs = 0;
	unsigned passes;
	size_t n;

	wl_single_threaded(o, "trace");
	if (!o->trace)
		wl_die("the trace workload needs --trace FILE");
	parse(o->trace, &t);
	n = t.n_slots ? t.n_slots : 1;
	s.p = marr_grow(&mp, n * sizeof *s.p);
	s.size = marr_grow(&ms, n * sizeof *s.size);
	s.tag = marr_grow(&mt, n * sizeof *s.tag);
	memset(s.p, 0, n * sizeof *s.p);    /* touch it all before timing */
	memset(s.size, 0, n * sizeof *s.size);
	memset(s.tag, 0, n * sizeof *s.tag);

	rss_before = wl_rss_kib();
	passes = o->quick ? PASSES / 20 : PASSES;
	for (unsigned k = 0; k < passes; k++) {
		t0 = wl_now();
		replay(&t, &s);
		t1 = wl_now();
		secs += t1 - t0;
		live_end = 0;
		for (size_t i = 0; i < t.n_slots; i++) {
			if (s.p[i]) {
				wl_check(s.p[i], (size_t)s.size[i], s.tag[i],
					 "trace (at the end)");
				free(s.p[i]);
				s.p[i] = NULL;
				live_end++;
			}
		}
	}
	wl_result("trace", 1, secs, t.allocs * passes,
		  "passes=%u frees=%llu live_at_end=%llu skipped=%llu max_live=%llu "
		  "max_live_kib=%llu rss_before_kib=%ld trace_kib=%zu",
		  passes, (unsigned long long)t.frees, (unsigned long long)live_end,
		  (unsigned long long)t.skipped,
		  (unsigned long long)t.max_live,
		  (unsigned long long)(t.max_live_bytes >> 10), rss_before,
		  (t.n_ops * sizeof(struct top) + 3 * n * 8) >> 10);
	marr_free(&t.ops);
	marr_free(&mp);
	marr_free(&ms);
	marr_free(&mt);
	return 0;
}
