/*
 * analysis_bench.c — what statement analysis costs per statement on this
 * machine: exact-text cache hit, shape hit (same statement, new literals:
 * not parsed; by fastscan key when rewrite/fastscan.h handles the text, else
 * with pg_query_scan) and full parse (a shape never seen), for statements as
 * pgbench, Django and SQLAlchemy send them.  Prints a Markdown table;
 * bench/run_analysis_bench.sh puts it in BENCHMARKS.md.  The last row's
 * literal is negative, which fastscan leaves to pg_query_scan: it shows the
 * shape hit without the fast path.
 *
 *   build/bench/analysis_bench [iterations]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../rewrite/analysis.h"

typedef struct sample {
	const char *name;
	const char *fmt; /* one %d: the literal that changes */
} sample;

static const sample samples[] = {
	{"pgbench -S", "SELECT abalance FROM pgbench_accounts WHERE aid = %d;"},
	{"Django get", "SELECT \"app_user\".\"id\", \"app_user\".\"username\", \"app_user\".\"email\", "
		       "\"app_user\".\"date_joined\" FROM \"app_user\" WHERE \"app_user\".\"id\" = %d LIMIT 21"},
	{"SQLAlchemy lazy load",
	 "SELECT posts.id AS posts_id, posts.user_id AS posts_user_id, posts.title AS posts_title, "
	 "posts.body AS posts_body, posts.created_at AS posts_created_at FROM posts WHERE %d = posts.user_id"},
	{"SQLAlchemy UPDATE", "UPDATE users SET name='user %d', updated_at=now() WHERE users.id = 17"},
	{"pgbench UPDATE, negative delta (pg_query_scan)",
	 "UPDATE pgbench_accounts SET abalance = abalance + -%d WHERE aid = 4242;"},
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Mean µs per rw_analyze over n texts; `vary` picks distinct literals,
 * `fresh_shape` makes every text a new shape (a new table name). */
static double measure(rw_analyzer *a, const char *fmt, int n, int vary, int fresh_shape)
{
	char sql[1024], tmpl[1024];
	double t0 = now_s();
	for (int i = 0; i < n; i++) {
		if (fresh_shape) {
			/* A distinct identifier each time: same text length class, new shape. */
			snprintf(tmpl, sizeof(tmpl), "%s /* */", fmt);
			char *p = strstr(tmpl, "FROM ");
			if (!p)
				p = strstr(tmpl, "UPDATE ");
			snprintf(sql, sizeof(sql), "%.*s%s t%d_%s", (int)(p - tmpl), tmpl, p[0] == 'F' ? "FROM" : "UPDATE",
				 i, p + (p[0] == 'F' ? 5 : 7));
			char final[1100];
			snprintf(final, sizeof(final), sql, 1);
			rw_analysis_free(rw_analyze(a, final, strlen(final)));
			continue;
		}
		snprintf(sql, sizeof(sql), fmt, vary ? 100000 + i : 42);
		rw_analysis_free(rw_analyze(a, sql, strlen(sql)));
	}
	return (now_s() - t0) * 1e6 / n;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 20000;
	printf("| statement | text hit µs | shape hit µs | full parse µs |\n| --- | ---: | ---: | ---: |\n");
	for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
		rw_analyzer *a = rw_analyzer_new(2 * (size_t)n + 16, 512u * 1024 * 1024);
		char warm[1024];
		snprintf(warm, sizeof(warm), samples[i].fmt, 42);
		rw_analysis_free(rw_analyze(a, warm, strlen(warm)));
		double hit = measure(a, samples[i].fmt, n, 0, 0);
		double shape = measure(a, samples[i].fmt, n, 1, 0);
		double full = measure(a, samples[i].fmt, n / 10 > 0 ? n / 10 : 1, 0, 1);
		rw_analyzer_stats st;
		rw_analyzer_stats_get(a, &st);
		printf("| %s | %.2f | %.2f | %.1f |\n", samples[i].name, hit, shape, full);
		fprintf(stderr, "%s: text_hits=%llu shape_hits=%llu (fast %llu) full_parses=%llu\n", samples[i].name,
			(unsigned long long)st.text_hits, (unsigned long long)st.shape_hits,
			(unsigned long long)st.fast_hits, (unsigned long long)st.full_parses);
		rw_analyzer_free(a);
	}
	return 0;
}
