/*
 * test_strmap.c — common/strmap.c: put/get/replace/remove on a table of
 * keys, lookups by length, iteration, growth, and a long random sequence of
 * puts and removes checked step by step against a plain array (this is what
 * exercises the backward-shift deletion across wrapped probe runs).  Under
 * ASan (build-asan/) it also checks that the map frees its key copies.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/alloc.h"
#include "../../common/strmap.h"

#define VAL(n) ((void *)(uintptr_t)(n))

static void expect_get(const pf_strmap *m, const char *key, bool present, uintptr_t want)
{
	void *v = VAL(0xdead);
	bool found = pf_strmap_get(m, key, &v);
	if (found != present || (present && (uintptr_t)v != want))
		fail_msg("get(\"%s\"): found %d value %lu, want found %d value %lu", key, found,
			 (unsigned long)(uintptr_t)v, present, (unsigned long)want);
}

static void test_basic(void **state)
{
	(void)state;
	static const struct {
		const char *key;
		uintptr_t value;
	} cases[] = {
		{"now", 1}, {"pg_catalog.now", 2}, {"", 3}, {"random", 4}, {"a.b.c", 5}, {"NOW", 6}, {"now ", 7},
	};
	size_t n = sizeof(cases) / sizeof(cases[0]);
	pf_strmap *m = pf_strmap_new();
	assert_int_equal(pf_strmap_count(m), 0);
	expect_get(m, "now", false, 0);
	for (size_t i = 0; i < n; i++) {
		void *old = VAL(1);
		if (!pf_strmap_put(m, cases[i].key, VAL(cases[i].value), &old) || old != NULL)
			fail_msg("put(\"%s\") was not new", cases[i].key);
	}
	assert_int_equal(pf_strmap_count(m), n);
	for (size_t i = 0; i < n; i++)
		expect_get(m, cases[i].key, true, cases[i].value);
	expect_get(m, "no", false, 0);
	expect_get(m, "nowx", false, 0);

	/* replace */
	void *old = NULL;
	assert_false(pf_strmap_put(m, "now", VAL(100), &old));
	assert_int_equal((uintptr_t)old, 1);
	assert_false(pf_strmap_put(m, "now", VAL(101), NULL));
	expect_get(m, "now", true, 101);
	assert_int_equal(pf_strmap_count(m), n);

	/* by length: a prefix of a longer buffer; an embedded NUL never matches */
	void *v = NULL;
	assert_true(pf_strmap_get_n(m, "random()", 6, &v));
	assert_int_equal((uintptr_t)v, 4);
	assert_true(pf_strmap_get_n(m, "pg_catalog.now(x)", 14, NULL));
	assert_false(pf_strmap_get_n(m, "now\0x", 5, NULL));
	assert_true(pf_strmap_get_n(m, "", 0, &v));
	assert_int_equal((uintptr_t)v, 3);

	/* remove */
	assert_true(pf_strmap_remove(m, "random", &old));
	assert_int_equal((uintptr_t)old, 4);
	assert_false(pf_strmap_remove(m, "random", &old));
	expect_get(m, "random", false, 0);
	assert_int_equal(pf_strmap_count(m), n - 1);
	for (size_t i = 0; i < n; i++)
		if (strcmp(cases[i].key, "random") != 0 && strcmp(cases[i].key, "now") != 0)
			expect_get(m, cases[i].key, true, cases[i].value);
	pf_strmap_free(m);
	pf_strmap_free(NULL);
}

static void test_iterate_and_grow(void **state)
{
	(void)state;
	enum { N = 5000 };
	pf_strmap *m = pf_strmap_new();
	char key[32];
	for (unsigned i = 0; i < N; i++) {
		snprintf(key, sizeof(key), "schema%u.fn%u", i % 7, i);
		assert_true(pf_strmap_put(m, key, VAL(i + 1), NULL));
	}
	assert_int_equal(pf_strmap_count(m), N);
	static unsigned char seen[N];
	memset(seen, 0, sizeof(seen));
	size_t pos = 0, visited = 0;
	const char *k;
	void *v;
	while (pf_strmap_next(m, &pos, &k, &v)) {
		uintptr_t i = (uintptr_t)v - 1;
		assert_true(i < N);
		snprintf(key, sizeof(key), "schema%u.fn%u", (unsigned)(i % 7), (unsigned)i);
		if (strcmp(k, key) != 0 || seen[i])
			fail_msg("entry %lu: key \"%s\", want \"%s\" (seen %d)", (unsigned long)i, k, key, seen[i]);
		seen[i] = 1;
		visited++;
	}
	assert_int_equal(visited, N);
	assert_false(pf_strmap_next(m, &pos, &k, &v)); /* stays at the end */
	for (unsigned i = 0; i < N; i++) {
		snprintf(key, sizeof(key), "schema%u.fn%u", i % 7, i);
		expect_get(m, key, true, i + 1);
	}
	pf_strmap_free(m);
}

/* A deterministic PRNG so failures reproduce. */
static uint64_t rng_state = 88172645463325252ULL;
static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* Small key space, many operations: long probe runs, wrap-around at the
 * end of the slot array, and removals in the middle of runs. */
static void test_random_against_array(void **state)
{
	(void)state;
	enum { KEYS = 300, OPS = 200000 };
	static uintptr_t ref[KEYS]; /* 0: absent */
	memset(ref, 0, sizeof(ref));
	size_t ref_count = 0;
	pf_strmap *m = pf_strmap_new();
	char key[16];
	for (unsigned op = 0; op < OPS; op++) {
		unsigned k = (unsigned)(rng() % KEYS);
		snprintf(key, sizeof(key), "k%u", k);
		unsigned what = (unsigned)(rng() % 3);
		if (what == 0) {
			void *old;
			bool fresh = pf_strmap_put(m, key, VAL(op + 1), &old);
			if (fresh != (ref[k] == 0) || (uintptr_t)old != ref[k])
				fail_msg("op %u put %s: new %d old %lu, want new %d old %lu", op, key, fresh,
					 (unsigned long)(uintptr_t)old, ref[k] == 0, (unsigned long)ref[k]);
			ref_count += fresh;
			ref[k] = op + 1;
		} else if (what == 1) {
			void *old = NULL;
			bool had = pf_strmap_remove(m, key, &old);
			if (had != (ref[k] != 0) || (had && (uintptr_t)old != ref[k]))
				fail_msg("op %u remove %s: had %d old %lu, want had %d old %lu", op, key, had,
					 (unsigned long)(uintptr_t)old, ref[k] != 0, (unsigned long)ref[k]);
			ref_count -= had;
			ref[k] = 0;
		} else {
			expect_get(m, key, ref[k] != 0, ref[k]);
		}
		if (pf_strmap_count(m) != ref_count)
			fail_msg("op %u: count %zu, want %zu", op, pf_strmap_count(m), ref_count);
		if (op % 5000 == 0) {
			for (unsigned i = 0; i < KEYS; i++) {
				snprintf(key, sizeof(key), "k%u", i);
				expect_get(m, key, ref[i] != 0, ref[i]);
			}
		}
	}
	pf_strmap_free(m);
}

/* Values owned by the map's user, freed with it (LeakSanitizer in the asan
 * build reports any left), including after removals and replacements. */
static void test_free_values(void **state)
{
	(void)state;
	pf_strmap *m = pf_strmap_new();
	char key[16];
	for (int i = 0; i < 100; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		int *v = pf_malloc(sizeof(int));
		*v = i;
		pf_strmap_put(m, key, v, NULL);
	}
	void *old = NULL;
	assert_true(pf_strmap_remove(m, "k7", &old));
	pf_free(old);
	assert_false(pf_strmap_put(m, "k8", pf_malloc(4), &old));
	pf_free(old);
	assert_int_equal(pf_strmap_count(m), 99);
	pf_strmap_free_values(m);
	pf_strmap_free_values(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_basic),
		cmocka_unit_test(test_iterate_and_grow),
		cmocka_unit_test(test_random_against_array),
		cmocka_unit_test(test_free_values),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
