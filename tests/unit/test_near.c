/*
 * test_near.c — unit tests for the near cache's bookkeeping
 * (proxy/rcache_near.h) without a sync: known versions learnt from lookup
 * answers (only when not behind the last sync, larger values win), entries
 * valid exactly while their versions equal the known ones, the versions a
 * miss may be stored with, the byte bound (least recently used evicted) and
 * the bound on known versions (the ones no entry needs are forgotten first);
 * and the lease's bookkeeping: an own bump's values known at once, the wait
 * for other instances' acknowledgements (or their leases' end, or a young
 * registry's age), announcements parsed strictly.
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

#include <hiredis/hiredis.h>

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


/* ---- own bumps and the lease ---------------------------------------------- */

static redisReply *str_reply(const char *s)
{
	redisReply *r = calloc(1, sizeof(*r));
	r->type = REDIS_REPLY_STRING;
	r->str = strdup(s);
	r->len = strlen(s);
	return r;
}

static redisReply *int_reply(long long v)
{
	redisReply *r = calloc(1, sizeof(*r));
	r->type = REDIS_REPLY_INTEGER;
	r->integer = v;
	return r;
}

/* A bump's answer: {seq, wait_ms, n, id, left_ms ..., key, value ...}; the
 * arguments after n: n (id, left) pairs as "id", left, then "key", "value"
 * pairs, NULL-terminated. */
static redisReply *bump_reply(const char *seq, long long wait_ms, int n, ...)
{
	redisReply *r = calloc(1, sizeof(*r));
	r->type = REDIS_REPLY_ARRAY;
	r->element = calloc(64, sizeof(redisReply *));
	r->element[r->elements++] = str_reply(seq);
	r->element[r->elements++] = int_reply(wait_ms);
	r->element[r->elements++] = int_reply(n);
	va_list ap;
	va_start(ap, n);
	for (int i = 0; i < n; i++) {
		r->element[r->elements++] = str_reply(va_arg(ap, const char *));
		r->element[r->elements++] = int_reply(va_arg(ap, int));
	}
	for (const char *k; (k = va_arg(ap, const char *));) {
		r->element[r->elements++] = str_reply(k);
		r->element[r->elements++] = str_reply(va_arg(ap, const char *));
	}
	va_end(ap);
	return r;
}

static void reply_free(redisReply *r)
{
	for (size_t i = 0; i < r->elements; i++) {
		free(r->element[i]->str);
		free(r->element[i]);
	}
	free(r->element);
	free(r);
}

typedef struct waited {
	int calls;
	bool ok;
	uint64_t at_ns;
} waited;

static void on_waited(void *ctx, bool ok)
{
	waited *w = ctx;
	w->calls++;
	w->ok = ok;
	w->at_ns = uv_hrtime();
}

/* Run the loop until cb ran (at most 5 s). */
static void run_until_called(fixture *f, const waited *w)
{
	uint64_t end = uv_hrtime() + 5000000000u;
	while (w->calls == 0 && uv_hrtime() < end)
		uv_run(&f->loop, UV_RUN_ONCE);
}

static void announce(fixture *f, const char *msg)
{
	px_near_message(f->near, msg, strlen(msg));
}

static void test_own_bump_known_at_once(void **state)
{
	fixture *f = *state;
	qc_keys vk = keys2("v:to", "v:r:o1");
	char p[64];
	size_t len = payload(p, "SELECT 1");
	const char *got, *tag;
	size_t glen;
	px_near_learn(f->near, "100", &vk, "5,6");
	px_near_put(f->near, "o1", &vk, "5,6", p, len, 60000);
	assert_true(px_near_get(f->near, "o1", &got, &glen, &tag));
	/* nobody else holds a lease: no wait, and the entry is outdated at once */
	redisReply *r = bump_reply("101", 0, 0, "v:r:o1", "7", "v:r:new", "3", NULL);
	waited w = {0};
	assert_false(px_near_after_bump(f->near, r, on_waited, &w));
	reply_free(r);
	assert_false(px_near_get(f->near, "o1", &got, &glen, &tag));
	/* a version first seen in an own bump is known, and an older lookup
	 * answer cannot lower it */
	qc_keys nk = keys2("v:to", "v:r:new");
	px_near_learn(f->near, "100", &nk, "5,2");
	pf_sb sb;
	pf_sb_init(&sb);
	assert_true(px_near_versions(f->near, &nk, &sb));
	assert_string_equal(pf_sb_str(&sb), "5,3");
	pf_sb_free(&sb);
	assert_int_equal(w.calls, 0);
	/* malformed answers are refused, never waited on */
	redisReply *bad = bump_reply("x", 0, 0, NULL);
	assert_false(px_near_after_bump(f->near, bad, on_waited, &w));
	reply_free(bad);
	bad = bump_reply("102", 0, 0, "only-one", "10", NULL);
	bad->element[2]->integer = 5; /* claims more leases than it lists */
	assert_false(px_near_after_bump(f->near, bad, on_waited, &w));
	reply_free(bad);
	assert_int_equal(w.calls, 0);
}

static void test_bump_waits_for_every_acknowledgement(void **state)
{
	fixture *f = *state;
	redisReply *r = bump_reply("200", 0, 2, "peer-a", 5000, "peer-b", 5000, "v:t", "9", NULL);
	waited w = {0};
	assert_true(px_near_after_bump(f->near, r, on_waited, &w));
	reply_free(r);
	announce(f, "a 200 peer-a");
	announce(f, "a 199 peer-b"); /* an older sequence does not count */
	announce(f, "b 200 peer-b");
	announce(f, "a 200 peer-z"); /* nobody waited for that one */
	uv_run(&f->loop, UV_RUN_NOWAIT);
	assert_int_equal(w.calls, 0);
	announce(f, "a 205 peer-b");
	assert_int_equal(w.calls, 1);
	assert_true(w.ok);
	px_near_stats st = px_near_stats_get(f->near);
	assert_int_equal(st.bump_waits, 1);
	assert_int_equal(st.bump_wait_timeouts, 0);
	/* acknowledged before the bump's answer arrived: no wait at all */
	announce(f, "a 300 peer-c");
	r = bump_reply("300", 0, 1, "peer-c", 5000, NULL);
	assert_false(px_near_after_bump(f->near, r, on_waited, &w));
	reply_free(r);
	assert_int_equal(w.calls, 1);
}

static void test_bump_wait_ends_with_the_lease(void **state)
{
	fixture *f = *state;
	uint64_t start = uv_hrtime();
	redisReply *r = bump_reply("400", 0, 1, "peer-stopped", 60, NULL);
	waited w = {0};
	assert_true(px_near_after_bump(f->near, r, on_waited, &w));
	reply_free(r);
	run_until_called(f, &w);
	assert_int_equal(w.calls, 1);
	assert_true(w.ok);
	/* not before the lease's end as Redis reported it */
	assert_true(w.at_ns - start >= 60u * 1000000u);
	assert_int_equal(px_near_stats_get(f->near).bump_wait_timeouts, 1);
}

static void test_young_registry_waits_its_age(void **state)
{
	fixture *f = *state;
	uint64_t start = uv_hrtime();
	redisReply *r = bump_reply("500", 40, 0, NULL);
	waited w = {0};
	assert_true(px_near_after_bump(f->near, r, on_waited, &w));
	reply_free(r);
	run_until_called(f, &w);
	assert_int_equal(w.calls, 1);
	assert_true(w.at_ns - start >= 40u * 1000000u);
}

static void test_waits_end_when_freed(void **state)
{
	fixture *f = *state;
	redisReply *r = bump_reply("600", 0, 1, "peer-x", 60000, NULL);
	waited w = {0};
	assert_true(px_near_after_bump(f->near, r, on_waited, &w));
	reply_free(r);
	px_near_free(f->near); /* shutdown: the wait ends (not ok), nothing leaks */
	f->near = NULL;
	assert_int_equal(w.calls, 1);
	assert_false(w.ok);
}

static void test_announcements_parsed_strictly(void **state)
{
	fixture *f = *state;
	const char *bad[] = {"", "a", "a ", "a 1", "a 1 ", "x 1 peer", "a x peer", "a 1x peer", "b  peer",
			     "a 99999999999999999999999 peer",
			     "a 1 a-very-long-instance-id-that-does-not-fit"};
	redisReply *r = bump_reply("700", 0, 1, "peer", 60000, NULL);
	waited w = {0};
	assert_true(px_near_after_bump(f->near, r, on_waited, &w));
	reply_free(r);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		announce(f, bad[i]);
	announce(f, "a 700 peer\n"); /* the id is "peer\n": not the one waited for */
	assert_int_equal(w.calls, 0);
	/* this instance's own announcements are ignored */
	char own[64];
	snprintf(own, sizeof(own), "a 700 %s", px_near_id(f->near));
	announce(f, own);
	assert_int_equal(w.calls, 0);
	announce(f, "a 700 peer");
	assert_int_equal(w.calls, 1);
	assert_true(strlen(px_near_id(f->near)) == 16);
	assert_int_equal(atoi(QC_LEASE_MS), PX_NEAR_LEASE_MS); /* the registry's and the waits' lease agree */
	assert_string_equal(px_near_channel(f->near), "pgfold:bus:0");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_valid_while_versions_hold, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_versions_are_not_trusted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bytes_bound_evicts_least_recent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_known_versions_bounded, setup, teardown),
		cmocka_unit_test_setup_teardown(test_own_bump_known_at_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bump_waits_for_every_acknowledgement, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bump_wait_ends_with_the_lease, setup, teardown),
		cmocka_unit_test_setup_teardown(test_young_registry_waits_its_age, setup, teardown),
		cmocka_unit_test_setup_teardown(test_waits_end_when_freed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_announcements_parsed_strictly, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
