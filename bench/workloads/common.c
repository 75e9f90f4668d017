/*
 * common.c - see common.h.
 */
#define _GNU_SOURCE
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* ---- failures ----------------------------------------------------------- */

void wl_die(const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	int len = snprintf(msg, sizeof msg, "alloc-workloads: ");

	va_start(ap, fmt);
	len += vsnprintf(msg + len, sizeof msg - (size_t)len - 1, fmt, ap);
	va_end(ap);
	if (len > (int)sizeof msg - 2)
		len = (int)sizeof msg - 2;
	msg[len++] = '\n';
	/* One write, no stdio: this may run on any thread, with others still
	 * inside malloc, so no exit handlers either. */
	ssize_t w = write(STDERR_FILENO, msg, (size_t)len);
	(void)w;
	_exit(3);
}

void *wl_malloc(size_t n)
{
	void *p = malloc(n);

	if (WL_UNLIKELY(!p))
		wl_die("malloc(%zu) returned NULL", n);
	return p;
}

void *wl_calloc(size_t count, size_t n)
{
	void *p = calloc(count, n);

	if (WL_UNLIKELY(!p))
		wl_die("calloc(%zu, %zu) returned NULL", count, n);
	return p;
}

void *wl_realloc_or_die(void *p, size_t n)
{
	void *q = realloc(p, n);

	if (WL_UNLIKELY(!q))
		wl_die("realloc(%p, %zu) returned NULL", p, n);
	return q;
}

void *wl_aligned(size_t align, size_t n)
{
	void *p = NULL;
	int err = posix_memalign(&p, align, n);

	if (WL_UNLIKELY(err || !p))
		wl_die("posix_memalign(%zu, %zu) failed: %s", align, n,
		       strerror(err ? err : ENOMEM));
	if (WL_UNLIKELY((uintptr_t)p & (align - 1)))
		wl_die("posix_memalign(%zu, %zu) returned %p, not aligned",
		       align, n, p);
	return p;
}

void wl_check_failed(const void *p, size_t n, uint64_t tag, size_t at,
		     const char *where)
{
	const unsigned char *b = p;

	if (n >= WL_TAG_SMALL) {
		uint64_t got, want = at ? wl_tag_back(tag, n) : wl_tag_front(tag);

		memcpy(&got, b + at, 8);
		wl_die("%s: block %p of %zu bytes: the 8 bytes at offset %zu are "
		       "0x%016llx, expected 0x%016llx (overlapping blocks, a "
		       "block handed out twice, or data lost)", where, p, n, at,
		       (unsigned long long)got, (unsigned long long)want);
	}
	wl_die("%s: block %p of %zu bytes: byte %zu is 0x%02x, expected 0x%02x "
	       "(overlapping blocks, a block handed out twice, or data lost)",
	       where, p, n, at, b[at], wl_tag_byte(tag, at));
}

/* ---- time and memory ---------------------------------------------------- */

double wl_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void wl_sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* One field of /proc/self/status in KiB, read with plain system calls (no
 * stdio buffer, no malloc between the allocator and the figure). */
static long status_kib(const char *key)
{
	char buf[8192];
	size_t klen = strlen(key);
	ssize_t len = 0, r;
	int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		wl_die("cannot open /proc/self/status: %s", strerror(errno));
	while ((r = read(fd, buf + len, sizeof buf - 1 - (size_t)len)) > 0)
		len += r;
	close(fd);
	buf[len] = '\0';
	for (char *line = buf; line && *line; ) {
		if (!strncmp(line, key, klen) && line[klen] == ':')
			return strtol(line + klen + 1, NULL, 10);
		line = strchr(line, '\n');
		if (line)
			line++;
	}
	wl_die("no %s in /proc/self/status", key);
}

long wl_rss_kib(void)
{
	return status_kib("VmRSS");
}

long wl_hwm_kib(void)
{
	return status_kib("VmHWM");
}

int wl_thread_count(const struct wl_opts *o, int dflt)
{
	return o->threads > 0 ? o->threads : dflt;
}

void wl_single_threaded(const struct wl_opts *o, const char *name)
{
	if (o->threads > 1)
		wl_die("%s is single-threaded: --threads must be 1", name);
}

void wl_result(const char *name, int threads, double seconds, uint64_t ops,
	       const char *extra_fmt, ...)
{
	long peak = wl_hwm_kib();
	long final = wl_rss_kib();
	va_list ap;

	printf("RESULT workload=%s threads=%d seconds=%.6f ops=%llu "
	       "peak_rss_kib=%ld final_rss_kib=%ld",
	       name, threads, seconds, (unsigned long long)ops, peak, final);
	if (extra_fmt && *extra_fmt) {
		putchar(' ');
		va_start(ap, extra_fmt);
		vprintf(extra_fmt, ap);
		va_end(ap);
	}
	putchar('\n');
	fflush(stdout);
}

/* ---- pseudo-random numbers ---------------------------------------------- */

void wl_rng_init(struct wl_rng *r, uint64_t seed, uint64_t stream)
{
	/* splitmix64 of the pair, never zero (xorshift's one fixed point) */
	r->s = wl_tag_of(seed, stream + 1) | 1;
	for (int i = 0; i < 4; i++)
		wl_rng_next(r);
}

size_t wl_rng_logsize(struct wl_rng *r, size_t lo, size_t hi)
{
	double u = (double)(wl_rng_next(r) >> 11) * 0x1.0p-53;
	size_t n = (size_t)((double)lo * exp(u * log((double)hi / (double)lo)));

	return n < lo ? lo : n > hi ? hi : n;
}

/* ---- threads ------------------------------------------------------------ */

void wl_thread_create(pthread_t *t, void *(*fn)(void *), void *arg,
		      size_t stack, int detached)
{
	pthread_attr_t attr;
	int err;

	pthread_attr_init(&attr);
	if (stack)
		pthread_attr_setstacksize(&attr, stack);
	if (detached)
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	err = pthread_create(t, &attr, fn, arg);
	pthread_attr_destroy(&attr);
	if (err)
		wl_die("pthread_create: %s", strerror(err));
}

struct par_thread {
	pthread_t tid;
	int idx;
	struct par_run *run;
};

struct par_run {
	void (*fn)(int idx, void *arg);
	void *arg;
	pthread_barrier_t start;
};

static void *par_main(void *p)
{
	struct par_thread *t = p;

	pthread_barrier_wait(&t->run->start);
	t->run->fn(t->idx, t->run->arg);
	return NULL;
}

double wl_parallel(int n, void (*fn)(int idx, void *arg), void *arg,
		   size_t stack)
{
	struct par_run run = { fn, arg, { { 0 } } };
	struct par_thread *th = wl_calloc((size_t)n, sizeof *th);
	double t0, t1;

	pthread_barrier_init(&run.start, NULL, (unsigned)n + 1);
	for (int i = 0; i < n; i++) {
		th[i].idx = i;
		th[i].run = &run;
		wl_thread_create(&th[i].tid, par_main, &th[i], stack, 0);
	}
	pthread_barrier_wait(&run.start);
	t0 = wl_now();
	for (int i = 0; i < n; i++)
		pthread_join(th[i].tid, NULL);
	t1 = wl_now();
	pthread_barrier_destroy(&run.start);
	free(th);
	return t1 - t0;
}
