/*
 * alloc-workloads - the classic allocator benchmark workloads in one program.
 *
 *   alloc-workloads WORKLOAD [--quick] [--threads N] [--seed N] [--trace FILE]
 *                   [--size N[K|M|G]]
 *   alloc-workloads --list
 *
 * Only the standard malloc API is called, so the allocator measured is the
 * one LD_PRELOAD provides (glibc's when nothing is preloaded). Each workload
 * does a fixed amount of work and prints one line on stdout:
 *
 *   RESULT workload=NAME threads=N seconds=S ops=N peak_rss_kib=N
 *          final_rss_kib=N [key=value ...]
 *
 * (steady also prints SAMPLE lines before it). A wrong byte in a block, a
 * NULL from the allocator or a bad argument ends the program with a message
 * on stderr and a non-zero status (2 for usage, 3 for a failed check).
 * README.md beside this file describes every workload.
 */
#include "common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct workload table[] = {
	{ "larson",        wl_larson },
	{ "threadtest",    wl_threadtest },
	{ "cache-scratch", wl_cache_scratch },
	{ "cache-thrash",  wl_cache_thrash },
	{ "xmalloc",       wl_xmalloc },
	{ "sizes",         wl_sizes },
	{ "trace",         wl_trace },
	{ "fragment",      wl_fragment },
	{ "steady",        wl_steady },
	{ "realloc",       wl_realloc },
	{ "threads",       wl_threads },
	{ "scaling",       wl_scaling },
};

#define N_WORKLOADS (sizeof table / sizeof table[0])

static void usage(FILE *f)
{
	fprintf(f,
		"usage: alloc-workloads WORKLOAD [--quick] [--threads N] [--seed N] [--trace FILE]\n"
		"                       [--size N[K|M|G]]\n"
		"       alloc-workloads --list\n"
		"workloads:");
	for (size_t i = 0; i < N_WORKLOADS; i++)
		fprintf(f, " %s", table[i].name);
	fprintf(f, "\n");
}

static int bad_usage(const char *what, const char *arg)
{
	fprintf(stderr, "alloc-workloads: %s%s%s\n", what, arg ? ": " : "",
		arg ? arg : "");
	usage(stderr);
	return 2;
}

static int parse_num(const char *s, unsigned long long max,
		     unsigned long long *out)
{
	char *end;

	if (!s || !*s || *s == '-')
		return -1;
	errno = 0;
	*out = strtoull(s, &end, 0);
	if (errno || *end || *out > max)
		return -1;
	return 0;
}

/* A byte count with an optional binary suffix: 64M, 1G, 4096, 512K. */
static int parse_size(const char *s, unsigned long long *out)
{
	char num[32];
	size_t len = s ? strlen(s) : 0;
	unsigned shift = 0;

	if (len == 0 || len >= sizeof num)
		return -1;
	memcpy(num, s, len + 1);
	switch (num[len - 1]) {
	case 'k': case 'K': shift = 10; break;
	case 'm': case 'M': shift = 20; break;
	case 'g': case 'G': shift = 30; break;
	default: break;
	}
	if (shift)
		num[--len] = '\0';
	if (parse_num(num, ~0ULL >> (shift + 1), out) || *out == 0)
		return -1;
	*out <<= shift;
	return 0;
}

int main(int argc, char **argv)
{
	struct wl_opts o = { .seed = 42 };
	const struct workload *w = NULL;
	unsigned long long v;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "--list")) {
			for (size_t k = 0; k < N_WORKLOADS; k++)
				printf("%s\n", table[k].name);
			return 0;
		} else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(a, "--quick")) {
			o.quick = 1;
		} else if (!strcmp(a, "--threads")) {
			++i;
			if (parse_num(i < argc ? argv[i] : NULL, 4096, &v) || v == 0)
				return bad_usage("--threads needs a number from 1 to 4096", NULL);
			o.threads = (int)v;
		} else if (!strcmp(a, "--seed")) {
			++i;
			if (parse_num(i < argc ? argv[i] : NULL, ~0ULL, &v))
				return bad_usage("--seed needs a number", NULL);
			o.seed = v;
		} else if (!strcmp(a, "--size")) {
			++i;
			if (parse_size(i < argc ? argv[i] : NULL, &v))
				return bad_usage("--size needs a byte count (suffix K, M or G)", NULL);
			o.size = v;
		} else if (!strcmp(a, "--trace")) {
			if (++i >= argc)
				return bad_usage("--trace needs a file", NULL);
			o.trace = argv[i];
		} else if (a[0] == '-') {
			return bad_usage("unknown option", a);
		} else if (w) {
			return bad_usage("one workload at a time", a);
		} else {
			for (size_t k = 0; k < N_WORKLOADS; k++)
				if (!strcmp(a, table[k].name))
					w = &table[k];
			if (!w)
				return bad_usage("unknown workload", a);
		}
	}
	if (!w)
		return bad_usage("no workload given", NULL);
	if (o.trace && w->run != wl_trace)
		return bad_usage("--trace is only for the trace workload", NULL);
	if (o.size && w->run != wl_scaling)
		return bad_usage("--size is only for the scaling workload", NULL);
	return w->run(&o);
}
