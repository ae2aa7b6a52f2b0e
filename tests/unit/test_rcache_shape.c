/*
 * test_rcache_shape.c — per-shape lookup outcomes (proxy/rcache_shape.h):
 * a shape turns cold under 10% hits over a full window and is then looked
 * up once in PX_RC_SHAPE_PROBE executions (one in PX_RC_SHAPE_STORE of the
 * others stored); probes that hit warm it up again; the table is bounded and evicts the least recently used shape of
 * a set.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../proxy/rcache_shape.h"

static px_rc_shapes *table(void)
{
	return calloc(1, sizeof(px_rc_shapes));
}

/* n executions of fp, each looked up when allowed and recorded as hit;
 * returns how many were looked up. */
static int run(px_rc_shapes *t, uint64_t fp, int n, bool hit)
{
	int looked = 0;
	for (int i = 0; i < n; i++) {
		px_rc_verdict v = px_rc_shape_lookup(t, fp);
		if (v == PX_RC_LOOK_UP || v == PX_RC_PROBE) {
			looked++;
			px_rc_shape_record(t, fp, hit);
		}
	}
	return looked;
}

static void test_new_and_warm_shapes_are_looked_up(void **state)
{
	(void)state;
	px_rc_shapes *t = table();
	assert_int_equal(run(t, 42, 100, true), 100);
	assert_int_equal(run(t, 43, PX_RC_SHAPE_WINDOW - 1, false), PX_RC_SHAPE_WINDOW - 1); /* window not full */
	assert_int_equal(px_rc_shape_lookup(t, 0), PX_RC_LOOK_UP); /* unparsed: always */
	free(t);
}

static void test_cold_shape_probes(void **state)
{
	(void)state;
	px_rc_shapes *t = table();
	int looked = run(t, 7, 1000, false);
	/* the window fills, then one probe in PX_RC_SHAPE_PROBE */
	int want = PX_RC_SHAPE_WINDOW + (1000 - PX_RC_SHAPE_WINDOW) / PX_RC_SHAPE_PROBE;
	printf("looked up %d of 1000 (want %d)\n", looked, want);
	assert_int_equal(looked, want);
	free(t);
}

static void test_three_hits_in_32_is_cold_four_is_not(void **state)
{
	(void)state;
	px_rc_shapes *t = table();
	for (int i = 0; i < PX_RC_SHAPE_WINDOW; i++)
		px_rc_shape_record(t, 9, i < 3);
	assert_int_not_equal(px_rc_shape_lookup(t, 9), PX_RC_LOOK_UP); /* 3/32 < 10% */
	px_rc_shapes *u = table();
	for (int i = 0; i < PX_RC_SHAPE_WINDOW; i++)
		px_rc_shape_record(u, 9, i < 4);
	assert_int_equal(px_rc_shape_lookup(u, 9), PX_RC_LOOK_UP); /* 4/32 >= 10% */
	free(t);
	free(u);
}

static void test_probes_that_hit_warm_up(void **state)
{
	(void)state;
	px_rc_shapes *t = table();
	run(t, 11, 200, false);
	assert_int_not_equal(px_rc_shape_lookup(t, 11), PX_RC_LOOK_UP);
	/* 4 probes that hit make 4 of 32: warm again */
	int looked = run(t, 11, 4 * PX_RC_SHAPE_PROBE, true);
	printf("looked up %d while warming\n", looked);
	assert_int_equal(run(t, 11, 50, true), 50);
	free(t);
}

static void test_cold_stores_one_in_eight_skipped(void **state)
{
	(void)state;
	px_rc_shapes *t = table();
	run(t, 13, PX_RC_SHAPE_WINDOW, false);
	int counts[4] = {0, 0, 0, 0};
	for (int i = 0; i < 16 * 60; i++)
		counts[px_rc_shape_lookup(t, 13)]++;
	printf("probe %d, skip and store %d, skip %d\n", counts[PX_RC_PROBE], counts[1], counts[2]);
	assert_int_equal(counts[PX_RC_PROBE], 60);
	assert_int_equal(counts[PX_RC_LOOK_UP], 0);
	int skipped = counts[PX_RC_SKIP_STORE] + counts[PX_RC_SKIP];
	assert_true(counts[PX_RC_SKIP_STORE] == skipped / PX_RC_SHAPE_STORE);
	free(t);
}

static void test_bounded_lru(void **state)
{
	(void)state;
	px_rc_shapes *t = table();
	run(t, 5, 100, false); /* cold */
	assert_int_not_equal(px_rc_shape_lookup(t, 5), PX_RC_LOOK_UP);
	for (uint64_t fp = 1000; fp < 1000 + 64 * PX_RC_SHAPE_SETS * PX_RC_SHAPE_WAYS; fp++)
		(void)px_rc_shape_lookup(t, fp); /* far more shapes than fit: 5 is evicted */
	assert_int_equal(run(t, 5, PX_RC_SHAPE_WINDOW, false), PX_RC_SHAPE_WINDOW); /* new again */
	size_t used = 0;
	for (size_t i = 0; i < PX_RC_SHAPE_SETS * PX_RC_SHAPE_WAYS; i++)
		used += t->shapes[i].fingerprint != 0;
	assert_true(used <= PX_RC_SHAPE_SETS * PX_RC_SHAPE_WAYS);
	free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_new_and_warm_shapes_are_looked_up),
		cmocka_unit_test(test_cold_shape_probes),
		cmocka_unit_test(test_three_hits_in_32_is_cold_four_is_not),
		cmocka_unit_test(test_probes_that_hit_warm_up),
		cmocka_unit_test(test_cold_stores_one_in_eight_skipped),
		cmocka_unit_test(test_bounded_lru),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
