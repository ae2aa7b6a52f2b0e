/*
 * test_near.c — unit tests for the near cache's bookkeeping
 * (proxy/rcache_near.h) without a sync: known versions learnt from lookup
 * answers (only when not behind the last sync, larger values win), entries
 * valid exactly while their versions equal the known ones, the versions a
 * miss may be stored with, the byte bound (least recently used evicted) and
 * the bound on known versions (the ones no entry needs are forgotten first).
 * The pool points at a closed port: nothing is sent.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../cache/redis.h"
#include "../../proxy/rcache_near.h"

typedef struct fixture {
	uv_loop_t loop;
	qc_redis *redis;
	px_near *near;
} fixture;

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof(*f));
	uv_loop_init(&f->loop);
	cf_addr addr = {.kind = CF_ADDR_TCP, .port = 1};
	snprintf(addr.host, sizeof(addr.host), "127.0.0.1");
	f->redis = qc_redis_new(&f->loop, &addr, 100);
	f->near = px_near_new(&f->loop);
	px_near_configure(f->near, f->redis, 1 << 20);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	qc_redis_close(f->redis);
	px_near_free(f->near);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	free(f);
	return 0;
}

/* A payload qc_payload_check() accepts: one CommandComplete. */
static size_t payload(char *out, const char *tag)
{
	size_t n = strlen(tag) + 1;
	uint32_t len = (uint32_t)(4 + n);
	out[0] = 'C';
	out[1] = (char)(len >> 24), out[2] = (char)(len >> 16), out[3] = (char)(len >> 8), out[4] = (char)len;
	memcpy(out + 5, tag, n);
	return 5 + n;
}

static qc_keys keys2(const char *a, const char *b)
{
	qc_keys k = {.n = 2};
	k.keys[0] = (char *)a;
	k.keys[1] = (char *)b;
	return k;
}

static void test_valid_while_versions_hold(void **state)
{
	fixture *f = *state;
	qc_keys vk = keys2("v:t", "v:r:1");
	char p[64];
	size_t len = payload(p, "SELECT 1");
	const char *got, *tag;
	size_t glen;
	assert_true(px_near_enabled(f->near));
	px_near_learn(f->near, "100", &vk, "5,6");
	px_near_put(f->near, "e1", &vk, "5,6", p, len, 60000);
	assert_true(px_near_has(f->near, "e1"));
	assert_true(px_near_get(f->near, "e1", &got, &glen, &tag));
	assert_int_equal(glen, len);
	assert_string_equal(tag, "SELECT 1");
	pf_sb sb;
	pf_sb_init(&sb);
	assert_true(px_near_versions(f->near, &vk, &sb));
	assert_string_equal(pf_sb_str(&sb), "5,6");
	pf_sb_reset(&sb);
	/* a smaller value never lowers a known version */
	px_near_learn(f->near, "100", &vk, "4,6");
	assert_true(px_near_get(f->near, "e1", &got, &glen, &tag));
	/* a bump seen by a later lookup: the entry is outdated and goes */
	px_near_learn(f->near, "101", &vk, "5,7");
	assert_false(px_near_get(f->near, "e1", &got, &glen, &tag));
	assert_false(px_near_has(f->near, "e1"));
	assert_true(px_near_versions(f->near, &vk, &sb));
	assert_string_equal(pf_sb_str(&sb), "5,7");
	pf_sb_free(&sb);
	px_near_stats st = px_near_stats_get(f->near);
	assert_int_equal(st.stale, 1);
	assert_int_equal(st.hits, 2);
}

static void test_unknown_versions_are_not_trusted(void **state)
{
	fixture *f = *state;
	qc_keys vk = keys2("v:t2", "v:r:2");
	char p[64];
	size_t len = payload(p, "SELECT 0");
	const char *got, *tag;
	size_t glen;
	px_near_put(f->near, "e2", &vk, "1,2", p, len, 60000); /* versions never learnt */
	assert_true(px_near_has(f->near, "e2"));
	assert_false(px_near_get(f->near, "e2", &got, &glen, &tag));
	pf_sb sb;
	pf_sb_init(&sb);
	assert_false(px_near_versions(f->near, &vk, &sb));
	pf_sb_free(&sb);
	/* malformed answers are ignored */
	px_near_learn(f->near, "x", &vk, "1,2");
	px_near_learn(f->near, "1", &vk, "1");
	px_near_learn(f->near, "1", &vk, "1,2,3");
	px_near_put(f->near, "e3", &vk, "1,x", p, len, 60000);
	assert_false(px_near_has(f->near, "e3"));
	px_near_put(f->near, "e4", &vk, "1,2", "junk", 4, 60000);
	assert_false(px_near_has(f->near, "e4"));
	px_near_put(f->near, "e5", &vk, "1,2", p, len, 0);
	assert_false(px_near_has(f->near, "e5"));
}

static void test_bytes_bound_evicts_least_recent(void **state)
{
	fixture *f = *state;
	px_near_configure(f->near, f->redis, 8192);
	char p[256];
	size_t len = payload(p, "SELECT 1");
	const char *got, *tag;
	size_t glen;
	char key[32], row[32];
	for (int i = 0; i < 200; i++) {
		snprintf(key, sizeof(key), "b%d", i);
		snprintf(row, sizeof(row), "v:r:%d", i);
		qc_keys vk = keys2("v:tb", row);
		px_near_learn(f->near, "1", &vk, "1,1");
		px_near_put(f->near, key, &vk, "1,1", p, len, 60000);
		if (i == 0 || i % 10 == 0)
			assert_true(px_near_get(f->near, "b0", &got, &glen, &tag)); /* kept recent */
	}
	px_near_stats st = px_near_stats_get(f->near);
	assert_true(st.bytes <= 8192);
	assert_true(st.evictions > 0);
	assert_true(px_near_has(f->near, "b0"));
	assert_true(px_near_has(f->near, "b199"));
	assert_false(px_near_has(f->near, "b1"));
	px_near_configure(f->near, f->redis, 0); /* off: everything goes */
	assert_false(px_near_enabled(f->near));
	assert_false(px_near_has(f->near, "b0"));
}

static void test_known_versions_bounded(void **state)
{
	fixture *f = *state;
	char p[64];
	size_t len = payload(p, "SELECT 1");
	const char *got, *tag;
	size_t glen;
	qc_keys kept = keys2("v:tk", "v:r:kept");
	px_near_learn(f->near, "1", &kept, "3,4");
	px_near_put(f->near, "kept", &kept, "3,4", p, len, 60000);
	char row[32];
	for (int i = 0; i < PX_NEAR_MAX_KNOWN + 1000; i++) {
		snprintf(row, sizeof(row), "v:r:n%d", i);
		qc_keys vk = {.n = 1};
		vk.keys[0] = row;
		px_near_learn(f->near, "1", &vk, "9");
		assert_true(px_near_stats_get(f->near).known <= PX_NEAR_MAX_KNOWN);
	}
	/* the versions no entry needed were forgotten; the entry's were not */
	assert_true(px_near_get(f->near, "kept", &got, &glen, &tag));
	px_near_stats st = px_near_stats_get(f->near);
	assert_int_equal(st.resets, 0);
	assert_true(st.known < PX_NEAR_MAX_KNOWN);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_valid_while_versions_hold, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_versions_are_not_trusted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bytes_bound_evicts_least_recent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_known_versions_bounded, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
