/*
 * test_cache.c — unit tests for the result cache's pure parts: hint
 * comments, the cacheability policy over real analyses (statements x
 * session facts x modes x [cache.rules] entries), entry keys (what changes them and what does
 * not), version keys, primary-key values read as canonical integers
 * (proxy/rcache_rows.h) and the stored payload walk.  Table-driven; each
 * failure prints the case.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "../../cache/key.h"
#include "../../cache/policy.h"
#include "../../conf/conf.h"
#include "../../proxy/rcache_rows.h"

static rw_analyzer *analyzer;

static int setup(void **state)
{
	(void)state;
	analyzer = rw_analyzer_new(100, 1 << 20);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	rw_analyzer_free(analyzer);
	return 0;
}

/* ---- hints ---------------------------------------------------------------- */

static void test_hints(void **state)
{
	(void)state;
	static const struct {
		const char *sql;
		qc_hint_kind kind;
		int ttl;
	} cases[] = {
		{"SELECT 1", QC_HINT_NONE, 0},
		{"/* pgfold:cache */ SELECT * FROM t", QC_HINT_CACHE, 0},
		{"/* pgfold:cache ttl=30 */ SELECT * FROM t", QC_HINT_CACHE, 30},
		{"SELECT * FROM t /*pgfold:cache ttl=5*/", QC_HINT_CACHE, 5},
		{"/* PGFOLD:Cache TTL=7 */ SELECT 1", QC_HINT_CACHE, 7},
		{"/* pgfold:cache ttl=0 */ SELECT 1", QC_HINT_CACHE, 0},
		{"/* pgfold:cache ttl=999999 */ SELECT 1", QC_HINT_CACHE, 0},
		{"/* pgfold:nocache */ SELECT 1", QC_HINT_NOCACHE, 0},
		{"/* pgfold:cache */ SELECT 1 /* pgfold:nocache */", QC_HINT_NOCACHE, 0},
		{"/* pgfold:cachex */ SELECT 1", QC_HINT_NONE, 0},
		{"/* other comment */ SELECT 1", QC_HINT_NONE, 0},
		{"-- pgfold:cache\nSELECT 1", QC_HINT_NONE, 0},
		{"/* pgfold:cache", QC_HINT_NONE, 0},
		{"/* app=x */ /* pgfold:cache ttl=12 */ SELECT 1", QC_HINT_CACHE, 12},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		qc_hint h = qc_hint_parse(cases[i].sql, strlen(cases[i].sql));
		if (h.kind != cases[i].kind || h.ttl_s != cases[i].ttl)
			fail_msg("%s: got kind %d ttl %d, want %d %d", cases[i].sql, h.kind, h.ttl_s, cases[i].kind,
				 cases[i].ttl);
	}
}

/* ---- policy --------------------------------------------------------------- */

static char stub_volatility(void *ctx, const char *fn)
{
	(void)ctx;
	if (strcmp(fn, "lower") == 0 || strcmp(fn, "abs") == 0 || strcmp(fn, "count") == 0)
		return 'i';
	if (strcmp(fn, "now") == 0 || strcmp(fn, "current_setting") == 0)
		return 's';
	return 'v';
}

static const qc_session_facts idle = {.tx_status = 'I'};

static qc_decision decide_with(const char *sql, int mode, qc_session_facts f, const cf_cache_rules *rules)
{
	rw_analysis *an = rw_analyze(analyzer, sql, strlen(sql));
	assert_int_equal(an->nstmts, 1);
	qc_policy_input in = {
		.mode = mode,
		.default_ttl_ms = 60000,
		.rules = rules,
		.shape = an->stmts[0].shape,
		.sql = sql,
		.sql_len = strlen(sql),
		.stmt_location = an->stmts[0].location,
		.stmt_length = an->stmts[0].length,
		.session = f,
		.volatility = stub_volatility,
	};
	qc_decision d = qc_policy_decide(&in);
	rw_analysis_free(an);
	return d;
}

static qc_decision decide(const char *sql, int mode, qc_session_facts f)
{
	return decide_with(sql, mode, f, NULL);
}

static void test_policy_statements(void **state)
{
	(void)state;
	static const struct {
		const char *sql;
		qc_bypass want;
	} cases[] = {
		{"SELECT * FROM users WHERE id = 1", QC_CACHEABLE},
		{"select u.name, count(*) from users u join posts p on p.user_id = u.id group by 1", QC_CACHEABLE},
		{"WITH x AS (SELECT id FROM users) SELECT * FROM x", QC_CACHEABLE},
		{"VALUES (1), (2)", QC_CACHEABLE},
		{"TABLE users", QC_CACHEABLE},
		{"(SELECT 1 FROM users) UNION (SELECT 2 FROM posts)", QC_CACHEABLE},
		{"/* app */ SELECT lower(name) FROM users", QC_CACHEABLE},
		{"SELECT abs(x) FROM t", QC_CACHEABLE},
		{"SELECT * FROM users FOR UPDATE", QC_BYPASS_LOCKING},
		{"SELECT * FROM users FOR SHARE", QC_BYPASS_LOCKING},
		{"SELECT * FROM users FOR NO KEY UPDATE SKIP LOCKED", QC_BYPASS_LOCKING},
		{"SELECT * FROM pg_temp.scratch", QC_BYPASS_TEMP},
		{"SELECT * FROM pg_class", QC_BYPASS_CATALOG},
		{"SELECT * FROM information_schema.tables", QC_BYPASS_CATALOG},
		{"SELECT now(), id FROM users", QC_BYPASS_FUNCTION},
		{"SELECT current_setting('app.tenant') FROM users", QC_BYPASS_FUNCTION},
		{"SELECT random() FROM users", QC_BYPASS_FUNCTION},
		{"SELECT current_user", QC_BYPASS_FUNCTION},
		{"SELECT * FROM users WHERE created < current_timestamp", QC_BYPASS_FUNCTION},
		{"SELECT nextval('s')", QC_BYPASS_NOT_READ},
		{"INSERT INTO users VALUES (1)", QC_BYPASS_NOT_READ},
		{"UPDATE users SET name = 'x'", QC_BYPASS_NOT_READ},
		{"DELETE FROM users", QC_BYPASS_NOT_READ},
		{"SELECT * INTO copy FROM users", QC_BYPASS_NOT_READ},
		{"WITH d AS (DELETE FROM users RETURNING *) SELECT * FROM d", QC_BYPASS_NOT_READ},
		{"SHOW search_path", QC_BYPASS_NOT_READ},
		{"EXPLAIN SELECT * FROM users", QC_BYPASS_NOT_READ},
		{"SELECT set_config('a.b', '1', false)", QC_BYPASS_NOT_READ},
		{"BEGIN", QC_BYPASS_NOT_READ},
		{"SET search_path = x", QC_BYPASS_NOT_READ},
		{"CALL p()", QC_BYPASS_NOT_READ},
		{"SELEC oops", QC_BYPASS_NOT_READ},
		{"/* pgfold:nocache */ SELECT * FROM users", QC_BYPASS_HINT},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		qc_decision d = decide(cases[i].sql, CF_CACHE_AUTO, idle);
		if (d.reason != cases[i].want)
			fail_msg("%s: got %s, want %s", cases[i].sql, qc_bypass_name(d.reason),
				 qc_bypass_name(cases[i].want));
	}
}

static void test_policy_session(void **state)
{
	(void)state;
	static const struct {
		const char *what;
		qc_session_facts f;
		qc_bypass want;
	} cases[] = {
		{"idle", {.tx_status = 'I'}, QC_CACHEABLE},
		{"in a block that did not write", {.tx_status = 'T'}, QC_CACHEABLE},
		{"read committed block", {.tx_status = 'T', .isolation = RW_ISO_READ_COMMITTED}, QC_CACHEABLE},
		{"failed block", {.tx_status = 'E'}, QC_BYPASS_TX_FAILED},
		{"repeatable read", {.tx_status = 'T', .isolation = RW_ISO_REPEATABLE_READ}, QC_BYPASS_ISOLATION},
		{"serializable", {.tx_status = 'T', .isolation = RW_ISO_SERIALIZABLE}, QC_BYPASS_ISOLATION},
		{"block that wrote", {.tx_status = 'T', .tx_wrote = true}, QC_BYPASS_TX_WROTE},
		{"unknown settings", {.tx_status = 'I', .unknown = true}, QC_BYPASS_SESSION},
		{"set role", {.tx_status = 'I', .role_changed = true}, QC_BYPASS_ROLE},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		qc_decision d = decide("SELECT * FROM users", CF_CACHE_AUTO, cases[i].f);
		if (d.reason != cases[i].want)
			fail_msg("%s: got %s, want %s", cases[i].what, qc_bypass_name(d.reason),
				 qc_bypass_name(cases[i].want));
	}
}

static void test_policy_modes_and_ttl(void **state)
{
	(void)state;
	static const struct {
		const char *sql;
		int mode;
		qc_bypass want;
		int ttl_ms;
	} cases[] = {
		{"SELECT * FROM users", CF_CACHE_OFF, QC_BYPASS_OFF, 0},
		{"/* pgfold:cache */ SELECT * FROM users", CF_CACHE_OFF, QC_BYPASS_OFF, 0},
		{"SELECT * FROM users", CF_CACHE_RULES, QC_BYPASS_NO_RULE, 0},
		{"/* pgfold:cache */ SELECT * FROM users", CF_CACHE_RULES, QC_CACHEABLE, 60000},
		{"/* pgfold:cache ttl=30 */ SELECT * FROM users", CF_CACHE_RULES, QC_CACHEABLE, 30000},
		{"/* pgfold:cache ttl=30 */ SELECT now() FROM users", CF_CACHE_RULES, QC_BYPASS_FUNCTION, 30000},
		{"SELECT * FROM users", CF_CACHE_AUTO, QC_CACHEABLE, 60000},
		{"/* pgfold:cache ttl=2 */ SELECT * FROM users", CF_CACHE_AUTO, QC_CACHEABLE, 2000},
		{"/* pgfold:nocache */ SELECT * FROM users", CF_CACHE_RULES, QC_BYPASS_HINT, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		qc_decision d = decide(cases[i].sql, cases[i].mode, idle);
		if (d.reason != cases[i].want || (d.reason == QC_CACHEABLE && d.ttl_ms != cases[i].ttl_ms))
			fail_msg("%s (mode %d): got %s ttl %d, want %s ttl %d", cases[i].sql, cases[i].mode,
				 qc_bypass_name(d.reason), d.ttl_ms, qc_bypass_name(cases[i].want), cases[i].ttl_ms);
	}
	for (int i = 0; i < QC_BYPASS_COUNT; i++)
		assert_string_not_equal(qc_bypass_name((qc_bypass)i), "?");
	assert_string_equal(qc_bypass_name(QC_BYPASS_ROLE), "role"); /* the names line up with the enum */
	assert_string_equal(qc_bypass_name(QC_BYPASS_RELATION), "relation");
	assert_string_equal(qc_bypass_name(QC_BYPASS_NOT_STORED), "not_stored");
	assert_string_equal(qc_bypass_name(QC_BYPASS_COUNT), "?");
}

/* [cache.rules]: which entry decides, "any" table, the shortest TTL, off,
 * schemas, shapes by fingerprint or by statement text, and hints over all. */
static void test_policy_rules(void **state)
{
	(void)state;
	static const struct {
		const char *key, *value;
	} entries[] = {
		{"cache.rules.table.orders", "30s"},
		{"cache.rules.table.customers", "10s"},
		{"cache.rules.table.public.products", "20s"},
		{"cache.rules.table.audit", "off"},
		{"cache.rules.table.\"Mixed\"", "40s"},
		{"cache.rules.statement.hot", "5s SELECT id FROM hits WHERE day = $1"},
		{"cache.rules.statement.quiet", "off SELECT count(*) FROM orders WHERE status = 'x'"},
		{"cache.rules.statement.audited", "7s SELECT * FROM audit WHERE id = 1"},
	};
	cf_config *cfg = cf_config_new();
	cf_error err;
	for (size_t i = 0; i < sizeof(entries) / sizeof(entries[0]); i++)
		if (cf_config_set(cfg, entries[i].key, entries[i].value, &err) != 0)
			fail_msg("%s: %s", entries[i].key, err.message);
	static const struct {
		const char *sql;
		int mode;
		qc_bypass want;
		int ttl_ms;
	} cases[] = {
		/* rules mode: exactly what an entry selects */
		{"SELECT * FROM orders WHERE id = 1", CF_CACHE_RULES, QC_CACHEABLE, 30000},
		{"SELECT * FROM shop.orders", CF_CACHE_RULES, QC_CACHEABLE, 30000},
		{"SELECT * FROM ORDERS o JOIN items i ON i.order_id = o.id", CF_CACHE_RULES, QC_CACHEABLE, 30000},
		{"SELECT * FROM orders o JOIN customers c ON c.id = o.customer_id", CF_CACHE_RULES, QC_CACHEABLE, 10000},
		{"SELECT * FROM items WHERE order_id IN (SELECT id FROM orders)", CF_CACHE_RULES, QC_CACHEABLE, 30000},
		{"SELECT * FROM items", CF_CACHE_RULES, QC_BYPASS_NO_RULE, 0},
		{"WITH orders AS (SELECT 1 AS id) SELECT * FROM orders", CF_CACHE_RULES, QC_BYPASS_NO_RULE, 0},
		{"SELECT * FROM products", CF_CACHE_RULES, QC_CACHEABLE, 20000},
		{"SELECT * FROM public.products", CF_CACHE_RULES, QC_CACHEABLE, 20000},
		{"SELECT * FROM archive.products", CF_CACHE_RULES, QC_BYPASS_NO_RULE, 0},
		{"SELECT * FROM \"Mixed\"", CF_CACHE_RULES, QC_CACHEABLE, 40000},
		{"SELECT * FROM Mixed", CF_CACHE_RULES, QC_BYPASS_NO_RULE, 0},
		{"SELECT * FROM audit", CF_CACHE_RULES, QC_BYPASS_RULE, 0},
		{"SELECT * FROM orders JOIN audit USING (id)", CF_CACHE_RULES, QC_BYPASS_RULE, 0},
		{"select id from hits where day = '2026-01-01'", CF_CACHE_RULES, QC_CACHEABLE, 5000},
		{"SELECT id FROM hits WHERE day = $1", CF_CACHE_RULES, QC_CACHEABLE, 5000},
		{"SELECT id, day FROM hits WHERE day = 1", CF_CACHE_RULES, QC_BYPASS_NO_RULE, 0},
		{"SELECT count(*) FROM orders WHERE status = 'new'", CF_CACHE_RULES, QC_BYPASS_RULE, 0},
		{"SELECT * FROM audit WHERE id = 42", CF_CACHE_RULES, QC_CACHEABLE, 7000}, /* the shape decides */
		/* hints: nocache always wins; cache selects, its ttl over the entry's */
		{"/* pgfold:nocache */ SELECT * FROM orders", CF_CACHE_RULES, QC_BYPASS_HINT, 0},
		{"/* pgfold:cache */ SELECT * FROM audit", CF_CACHE_RULES, QC_CACHEABLE, 60000},
		{"/* pgfold:cache */ SELECT * FROM orders", CF_CACHE_RULES, QC_CACHEABLE, 30000},
		{"/* pgfold:cache ttl=3 */ SELECT * FROM orders", CF_CACHE_RULES, QC_CACHEABLE, 3000},
		{"/* pgfold:cache */ SELECT * FROM items", CF_CACHE_RULES, QC_CACHEABLE, 60000},
		/* safety rules still apply to what an entry selects */
		{"SELECT * FROM orders FOR UPDATE", CF_CACHE_RULES, QC_BYPASS_LOCKING, 0},
		{"SELECT now(), * FROM orders", CF_CACHE_RULES, QC_BYPASS_FUNCTION, 0},
		/* auto mode: entries change the TTL or opt out */
		{"SELECT * FROM items", CF_CACHE_AUTO, QC_CACHEABLE, 60000},
		{"SELECT * FROM orders", CF_CACHE_AUTO, QC_CACHEABLE, 30000},
		{"SELECT * FROM audit", CF_CACHE_AUTO, QC_BYPASS_RULE, 0},
		{"SELECT id FROM hits WHERE day = 3", CF_CACHE_AUTO, QC_CACHEABLE, 5000},
		{"SELECT * FROM orders", CF_CACHE_OFF, QC_BYPASS_OFF, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		qc_decision d = decide_with(cases[i].sql, cases[i].mode, idle, &cfg->cache_rules);
		if (d.reason != cases[i].want || (d.reason == QC_CACHEABLE && d.ttl_ms != cases[i].ttl_ms))
			fail_msg("%s (mode %d): got %s ttl %d, want %s ttl %d", cases[i].sql, cases[i].mode,
				 qc_bypass_name(d.reason), d.ttl_ms, qc_bypass_name(cases[i].want), cases[i].ttl_ms);
	}
	assert_string_equal(qc_bypass_name(QC_BYPASS_RULE), "rule");
	cf_config_free(cfg);
}

/* ---- keys ----------------------------------------------------------------- */

static void entry_key(const qc_key_input *in, char *out)
{
	qc_key_entry(in, out);
	assert_int_equal(strlen(out), QC_ENTRY_KEY_LEN);
	assert_memory_equal(out, "pgfold:e:", 9);
}

static void test_entry_keys(void **state)
{
	(void)state;
	static const char sp[] = "search_path\0SET search_path = a\0";
	static const char sp2[] = "search_path\0SET search_path = b\0";
	const qc_key_input base = {.database = "shop", .user = "app", .format = 't', .sql = "SELECT 1",
				   .sql_len = 8};
	qc_key_input v[9];
	for (int i = 0; i < 9; i++)
		v[i] = base;
	v[1].database = "shop2";
	v[2].user = "app2";
	v[3].settings = sp;
	v[3].settings_len = sizeof(sp) - 1;
	v[4].settings = sp2;
	v[4].settings_len = sizeof(sp2) - 1;
	v[5].local = sp;
	v[5].local_len = sizeof(sp) - 1;
	v[6].format = 'b';
	v[7].sql = "SELECT 2";
	/* field boundaries are part of the hash: "shop"+"app" != "shopa"+"pp" */
	v[8].database = "shopa";
	v[8].user = "pp";
	char keys[9][QC_ENTRY_KEY_LEN + 1];
	for (int i = 0; i < 9; i++)
		entry_key(&v[i], keys[i]);
	for (int i = 0; i < 9; i++)
		for (int j = i + 1; j < 9; j++)
			if (strcmp(keys[i], keys[j]) == 0)
				fail_msg("variants %d and %d share the key %s", i, j, keys[i]);
	char again[QC_ENTRY_KEY_LEN + 1];
	entry_key(&base, again);
	assert_string_equal(again, keys[0]); /* deterministic */
	/* SHA-256 over each field as an 8-byte big-endian length and its bytes
	 * ("pgfold-cache-v1", database, user, startup, settings, SET LOCAL,
	 * format, text), in lower-case hex: keys stay the same across versions */
	assert_string_equal(again, "pgfold:e:a43668914486dd7a23f229dd6a2fe43448e9f9f6f42660436c82343abded3747");
	static const unsigned char bytes[] = {0x00, 0x0f, 0xa5, 0xff};
	char hex[2 * sizeof(bytes) + 1];
	pf_hex(bytes, sizeof(bytes), hex);
	assert_string_equal(hex, "000fa5ff");
	/* the same text cut from a longer buffer gives the same key */
	qc_key_input cut = base;
	cut.sql = "SELECT 1; junk";
	entry_key(&cut, again);
	assert_string_equal(again, keys[0]);
}

static void test_version_keys(void **state)
{
	(void)state;
	const char *sql = "SELECT * FROM users u JOIN public.users v ON true JOIN posts p ON true";
	rw_analysis *an = rw_analyze(analyzer, sql, strlen(sql));
	qc_keys k;
	assert_true(qc_key_versions("shop", an->stmts[0].shape, NULL, &k));
	assert_int_equal(k.n, 6);
	assert_string_equal(k.keys[0], "pgfold:v:all");
	assert_string_equal(k.keys[1], "pgfold:v:shop:all");
	assert_string_equal(k.keys[2], "pgfold:v:shop:t:users");
	assert_string_equal(k.keys[3], "pgfold:v:shop:n:users");
	assert_string_equal(k.keys[4], "pgfold:v:shop:t:posts");
	assert_string_equal(k.keys[5], "pgfold:v:shop:n:posts");
	qc_keys_free(&k);
	/* a row is only used for a read of one table */
	assert_true(qc_key_versions("shop", an->stmts[0].shape, "7", &k));
	assert_int_equal(k.n, 6);
	assert_string_equal(k.keys[3], "pgfold:v:shop:n:users");
	qc_keys_free(&k);
	rw_analysis_free(an);
	sql = "SELECT name FROM users WHERE id = 7";
	an = rw_analyze(analyzer, sql, strlen(sql));
	assert_true(qc_key_versions("shop", an->stmts[0].shape, "7", &k));
	assert_int_equal(k.n, 4);
	assert_string_equal(k.keys[2], "pgfold:v:shop:t:users");
	assert_string_equal(k.keys[3], "pgfold:v:shop:r:users:7");
	qc_keys_free(&k);
	rw_analysis_free(an);
	pf_sb sb;
	pf_sb_init(&sb);
	qc_key_table(&sb, "shop", "users");
	assert_string_equal(pf_sb_str(&sb), "pgfold:v:shop:t:users"); /* a write bumps what a read reads */
	pf_sb_reset(&sb);
	qc_key_database(&sb, "shop");
	assert_string_equal(pf_sb_str(&sb), "pgfold:v:shop:all");
	pf_sb_reset(&sb);
	qc_key_row(&sb, "shop", "users", "-3");
	assert_string_equal(pf_sb_str(&sb), "pgfold:v:shop:r:users:-3");
	pf_sb_reset(&sb);
	qc_key_unkeyed(&sb, "shop", "users");
	assert_string_equal(pf_sb_str(&sb), "pgfold:v:shop:n:users");
	pf_sb_free(&sb);
}

/* ---- primary-key values (proxy/rcache_rows.h) ----------------------------- */

static void test_canonical_int(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		bool literal;
		const char *want; /* NULL: not an integer */
	} cases[] = {
		{"5", true, "5"},       {"'5'", true, "5"},     {"005", true, "5"},    {"'007'", true, "7"},
		{"-5", true, "-5"},     {"- 5", true, "-5"},    {"'-5'", true, "-5"},  {"-0", true, "0"},
		{"0", false, "0"},      {"000", false, "0"},    {"42", false, "42"},   {"-42", false, "-42"},
		{"- 5", false, NULL},   {"'- 5'", true, NULL},  {"5.0", true, NULL},   {"1e3", true, NULL},
		{"+5", true, NULL},     {" 5", false, NULL},    {"5 ", false, NULL},   {"", false, NULL},
		{"-", true, NULL},      {"''", true, NULL},     {"'5", true, NULL},    {"E'5'", true, NULL},
		{"0x10", true, NULL},   {"'5'", false, NULL},   {"123456789012345678", false, "123456789012345678"},
		{"1234567890123456789", false, NULL}, {"0001234567890123456789", true, NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[PX_RC_ROW_KEY_MAX];
		bool ok = px_rc_canonical_int(cases[i].in, strlen(cases[i].in), cases[i].literal, out);
		if (ok != (cases[i].want != NULL) || (ok && strcmp(out, cases[i].want) != 0))
			fail_msg("%s (%s): got %s", cases[i].in, cases[i].literal ? "literal" : "value", ok ? out : "none");
	}
}

/* ---- payloads ------------------------------------------------------------- */

static size_t put_msg(char *out, char type, const char *body, size_t len)
{
	uint32_t n = (uint32_t)len + 4;
	out[0] = type;
	out[1] = (char)(n >> 24);
	out[2] = (char)(n >> 16);
	out[3] = (char)(n >> 8);
	out[4] = (char)n;
	memcpy(out + 5, body, len);
	return 5 + len;
}

static void test_payload_check(void **state)
{
	(void)state;
	char buf[256], tag[32];
	size_t n = 0;
	n += put_msg(buf + n, 'T', "\0\0", 2);
	n += put_msg(buf + n, 'D', "\0\0", 2);
	n += put_msg(buf + n, 'C', "SELECT 1", 9);
	assert_true(qc_payload_check(buf, n, tag, sizeof(tag)));
	assert_string_equal(tag, "SELECT 1");
	assert_false(qc_payload_check(buf, n - 1, tag, sizeof(tag))); /* cut short */
	assert_false(qc_payload_check(buf, n - 14, tag, sizeof(tag))); /* no CommandComplete */
	assert_false(qc_payload_check(buf, 0, tag, sizeof(tag)));
	char bad[64];
	size_t m = put_msg(bad, 'E', "x", 1);
	assert_false(qc_payload_check(bad, m, tag, sizeof(tag))); /* not a result message */
	m = put_msg(bad, 'C', "SELECT 1", 8);                    /* tag without its NUL */
	assert_false(qc_payload_check(bad, m, tag, sizeof(tag)));
	m = put_msg(bad, 'C', "SELECT 1", 9);
	m += put_msg(bad + m, 'D', "\0\0", 2); /* something after the CommandComplete */
	assert_false(qc_payload_check(bad, m, tag, sizeof(tag)));
	assert_false(qc_payload_check(buf, n, tag, 4)); /* tag does not fit */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hints),
		cmocka_unit_test(test_policy_statements),
		cmocka_unit_test(test_policy_session),
		cmocka_unit_test(test_policy_modes_and_ttl),
		cmocka_unit_test(test_policy_rules),
		cmocka_unit_test(test_entry_keys),
		cmocka_unit_test(test_version_keys),
		cmocka_unit_test(test_canonical_int),
		cmocka_unit_test(test_payload_check),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
