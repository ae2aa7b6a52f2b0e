/*
 * test_conf.c — unit tests for conf/: defaults, the example conf/pgfold.ini,
 * a file setting every key, every file error with its exact line, command-line
 * style cf_config_set(), validation, address parse/format round trips,
 * carrying restart-only keys over a reload, the --help reference, and the
 * value parsers.  Table-driven; each failure prints the case and the values.
 * Run from the repository root (it reads conf/pgfold.ini).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../conf/conf.h"
#include "../../conf/conf_value.h"

#include <pg_query.h>

#define EXAMPLE_INI "conf/pgfold.ini"

/* Values one byte within and one byte over the 127-byte limit of string keys. */
#define X16 "xxxxxxxxxxxxxxxx"
#define X127 X16 X16 X16 X16 X16 X16 X16 "xxxxxxxxxxxxxxx"
#define X128 X127 "x"

/* ---- helpers ------------------------------------------------------------ */

/* Every value of a cf_config, addresses as cf_addr_format() prints them. */
typedef struct want_config {
	const char *listen, *backend, *admin, *redis;
	const char *control_user, *control_password, *redis_user, *redis_password;
	long long listen_backlog, max_client_conn, max_message_bytes, buffer_high_bytes, buffer_low_bytes;
	long long connect_timeout_ms, client_login_timeout_ms, shutdown_timeout_ms, log_level;
	long long analysis, analysis_cache_entries, analysis_cache_bytes, max_shapes;
	long long np_mode, np_min_repeats, np_max_parent_rows, np_max_parent_bytes, np_max_patterns;
	long long cache_mode, cache_default_ttl_ms, cache_max_entry_bytes, cache_timeout_ms;
	long long redis_db, redis_connections;
} want_config;

static const want_config defaults = {
	.listen = "127.0.0.1:6432",
	.backend = "127.0.0.1:5432",
	.admin = "127.0.0.1:6433",
	.redis = "127.0.0.1:6379",
	.control_user = "",
	.control_password = "",
	.redis_user = "",
	.redis_password = "",
	.redis_db = 0,
	.redis_connections = 1,
	.listen_backlog = 512,
	.max_client_conn = 1000,
	.max_message_bytes = 1073741824,
	.buffer_high_bytes = 256 * 1024,
	.buffer_low_bytes = 64 * 1024,
	.connect_timeout_ms = 5000,
	.client_login_timeout_ms = 60000,
	.shutdown_timeout_ms = 30000,
	.log_level = 2, /* PF_LOG_INFO */
	.analysis = 1,
	.analysis_cache_entries = 10000,
	.analysis_cache_bytes = 64 << 20,
	.max_shapes = 5000,
	.np_mode = CF_NPLUSONE_REWRITE,
	.np_min_repeats = 3,
	.np_max_parent_rows = 1000,
	.np_max_parent_bytes = 1 << 20,
	.np_max_patterns = 1000,
	.cache_mode = CF_CACHE_OFF,
	.cache_default_ttl_ms = 60000,
	.cache_max_entry_bytes = 1 << 20,
	.cache_timeout_ms = 5,
};

static int expect_addr(const char *what, const cf_addr *got, const char *want)
{
	char buf[300];
	cf_addr_format(got, buf, sizeof(buf));
	if (strcmp(buf, want) == 0)
		return 0;
	print_error("%s: got \"%s\", want \"%s\"\n", what, buf, want);
	return 1;
}

static int expect_num(const char *what, long long got, long long want)
{
	if (got == want)
		return 0;
	print_error("%s: got %lld, want %lld\n", what, got, want);
	return 1;
}

static int expect_str(const char *what, const char *got, const char *want)
{
	if (strcmp(got, want) == 0)
		return 0;
	print_error("%s: got \"%s\", want \"%s\"\n", what, got, want);
	return 1;
}

static void expect_config(const cf_config *c, const want_config *w)
{
	int bad = expect_addr("listen", &c->listen, w->listen) + expect_addr("backend", &c->backend, w->backend) +
		  expect_addr("admin", &c->admin, w->admin) + expect_addr("redis", &c->redis, w->redis) +
		  expect_str("control_user", c->control_user, w->control_user) +
		  expect_str("control_password", c->control_password, w->control_password) +
		  expect_str("cache.redis_user", c->cache_redis_user, w->redis_user) +
		  expect_str("cache.redis_password", c->cache_redis_password, w->redis_password);
	const struct {
		const char *name;
		long long got, want;
	} nums[] = {
		{"listen_backlog", c->listen_backlog, w->listen_backlog},
		{"max_client_conn", c->max_client_conn, w->max_client_conn},
		{"max_message_bytes", (long long)c->max_message_bytes, w->max_message_bytes},
		{"buffer_high_bytes", (long long)c->buffer_high_bytes, w->buffer_high_bytes},
		{"buffer_low_bytes", (long long)c->buffer_low_bytes, w->buffer_low_bytes},
		{"connect_timeout_ms", c->connect_timeout_ms, w->connect_timeout_ms},
		{"client_login_timeout_ms", c->client_login_timeout_ms, w->client_login_timeout_ms},
		{"shutdown_timeout_ms", c->shutdown_timeout_ms, w->shutdown_timeout_ms},
		{"log_level", c->log_level, w->log_level},
		{"analysis", c->analysis, w->analysis},
		{"analysis_cache_entries", c->analysis_cache_entries, w->analysis_cache_entries},
		{"analysis_cache_bytes", (long long)c->analysis_cache_bytes, w->analysis_cache_bytes},
		{"max_shapes", c->max_shapes, w->max_shapes},
		{"nplusone.mode", c->nplusone_mode, w->np_mode},
		{"nplusone.min_repeats", c->nplusone_min_repeats, w->np_min_repeats},
		{"nplusone.max_parent_rows", c->nplusone_max_parent_rows, w->np_max_parent_rows},
		{"nplusone.max_parent_bytes", (long long)c->nplusone_max_parent_bytes, w->np_max_parent_bytes},
		{"nplusone.max_patterns", c->nplusone_max_patterns, w->np_max_patterns},
		{"cache.mode", c->cache_mode, w->cache_mode},
		{"cache.default_ttl", c->cache_default_ttl_ms, w->cache_default_ttl_ms},
		{"cache.max_entry_bytes", (long long)c->cache_max_entry_bytes, w->cache_max_entry_bytes},
		{"cache.timeout_ms", c->cache_timeout_ms, w->cache_timeout_ms},
		{"cache.redis_db", c->cache_redis_db, w->redis_db},
		{"cache.redis_connections", c->cache_redis_connections, w->redis_connections},
	};
	for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++)
		bad += expect_num(nums[i].name, nums[i].got, nums[i].want);
	if (bad)
		fail_msg("%d value(s) differ", bad);
}

/* Write text to a new temp file; the caller unlinks path. */
static void write_temp(const char *text, char *path, size_t size)
{
	snprintf(path, size, "/tmp/pgfold_test_conf_XXXXXX");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	FILE *fp = fdopen(fd, "w");
	assert_non_null(fp);
	assert_int_equal(fputs(text, fp) >= 0, 1);
	assert_int_equal(fclose(fp), 0);
}

static char *read_all(const char *path)
{
	FILE *fp = fopen(path, "r");
	if (!fp)
		fail_msg("cannot open %s (run the test from the repository root)", path);
	char *buf = calloc(1, 1 << 16);
	size_t n = fread(buf, 1, (1 << 16) - 1, fp);
	fclose(fp);
	buf[n] = '\0';
	return buf;
}

/* Every key as a user writes it: the label cf_keys_print() shows. */
static const struct {
	const char *label, *name, *def, *mode;
} all_keys[] = {
	{"listen", "listen", "127.0.0.1:6432", "restart"},
	{"backend", "backend", "127.0.0.1:5432", "reload"},
	{"admin", "admin", "127.0.0.1:6433", "restart"},
	{"listen_backlog", "listen_backlog", "512", "restart"},
	{"max_client_conn", "max_client_conn", "1000", "reload"},
	{"max_message_bytes", "max_message_bytes", "1GB", "reload"},
	{"buffer_high_bytes", "buffer_high_bytes", "256kB", "reload"},
	{"buffer_low_bytes", "buffer_low_bytes", "64kB", "reload"},
	{"connect_timeout", "connect_timeout", "5s", "reload"},
	{"client_login_timeout", "client_login_timeout", "60s", "reload"},
	{"shutdown_timeout", "shutdown_timeout", "30s", "reload"},
	{"log_level", "log_level", "info", "reload"},
	{"control_user", "control_user", "", "reload"},
	{"control_password", "control_password", "", "reload"},
	{"analysis", "analysis", "on", "reload"},
	{"analysis_cache_entries", "analysis_cache_entries", "10000", "restart"},
	{"analysis_cache_bytes", "analysis_cache_bytes", "64MB", "restart"},
	{"nplusone.mode", "mode", "rewrite", "reload"},
	{"nplusone.min_repeats", "min_repeats", "3", "reload"},
	{"nplusone.max_parent_rows", "max_parent_rows", "1000", "reload"},
	{"nplusone.max_parent_bytes", "max_parent_bytes", "1MB", "reload"},
	{"nplusone.max_patterns", "max_patterns", "1000", "restart"},
	{"nplusone.batch_size", "batch_size", "500", "reload"},
	{"nplusone.max_staleness_ms", "max_staleness_ms", "1000", "reload"},
	{"nplusone.max_buffer_bytes", "max_buffer_bytes", "8MB", "reload"},
	{"nplusone.max_total_buffer_bytes", "max_total_buffer_bytes", "256MB", "reload"},
	{"cache.redis", "redis", "127.0.0.1:6379", "restart"},
	{"cache.redis_db", "redis_db", "0", "restart"},
	{"cache.redis_user", "redis_user", "", "restart"},
	{"cache.redis_password", "redis_password", "", "restart"},
	{"cache.redis_connections", "redis_connections", "1", "restart"},
	{"cache.mode", "mode", "off", "reload"},
	{"cache.default_ttl", "default_ttl", "60s", "reload"},
	{"cache.max_entry_bytes", "max_entry_bytes", "1MB", "reload"},
	{"cache.near_cache_bytes", "near_cache_bytes", "64MB", "reload"},
	{"cache.timeout_ms", "timeout_ms", "5ms", "reload"},
	{"stats.max_shapes", "max_shapes", "5000", "restart"},
};
#define N_ALL_KEYS (sizeof(all_keys) / sizeof(all_keys[0]))

/* ---- defaults and files ------------------------------------------------- */

static void test_defaults(void **state)
{
	(void)state;
	cf_config *c = cf_config_new();
	expect_config(c, &defaults);
	cf_error err;
	assert_int_equal(cf_config_validate(c, &err), 0);
	cf_config *copy = cf_config_copy(c);
	expect_config(copy, &defaults);
	cf_config_free(copy);
	cf_config_free(c);
}

static void test_example_ini_is_defaults(void **state)
{
	(void)state;
	cf_config *c = cf_config_new();
	cf_error err;
	char msg[1024];
	if (cf_config_load_file(c, EXAMPLE_INI, &err) != 0)
		fail_msg("%s", cf_error_format(&err, msg, sizeof(msg)));
	expect_config(c, &defaults);
	assert_int_equal(cf_config_validate(c, &err), 0);
	cf_config_free(c);
}

/* The example documents every key, set to its default. */
static void test_example_ini_lists_every_key(void **state)
{
	(void)state;
	char *text = read_all(EXAMPLE_INI);
	for (size_t i = 0; i < N_ALL_KEYS; i++) {
		char line[128];
		if (all_keys[i].def[0])
			snprintf(line, sizeof(line), "\n%s = %s\n", all_keys[i].name, all_keys[i].def);
		else /* an empty default is written "key =" */
			snprintf(line, sizeof(line), "\n%s =\n", all_keys[i].name);
		if (!strstr(text, line))
			fail_msg("%s does not contain the line \"%s = %s\"", EXAMPLE_INI, all_keys[i].name,
				 all_keys[i].def);
	}
	free(text);
}

/* The indented backend line follows a key: it must stay a key, not become a
 * continuation of listen's value (inih's multiline mode). */
static const char every_key_ini[] = "; every key, none at its default\n"
				    "[pgfold]\n"
				    "listen = 0.0.0.0:7000\n"
				    "  backend = /var/run/postgresql   ; an inline comment\n"
				    "admin = off\n"
				    "listen_backlog = 128\n"
				    "max_client_conn = 50\n"
				    "max_message_bytes = 16MB\n"
				    "buffer_high_bytes = 1 MB\n"
				    "buffer_low_bytes = 100000\n"
				    "connect_timeout = 250ms\n"
				    "client_login_timeout = 2min\n"
				    "shutdown_timeout = 7\n"
				    "log_level = debug\n"
				    "control_user = pgfold_ctl\n"
				    "control_password = s3cr=t:with spaces ; a comment\n"
				    "analysis = off\n"
				    "analysis_cache_entries = 0\n"
				    "analysis_cache_bytes = 1MB\n"
				    "\n"
				    "[cache]\n"
				    "redis = [::1]:6380\n"
				    "redis_db = 3\n"
				    "redis_user = pgfold\n"
				    "redis_password = p@ss w=rd:x\n"
				    "redis_connections = 4\n"
				    "mode = Auto\n"
				    "default_ttl = 2min\n"
				    "max_entry_bytes = 64kB\n"
				    "timeout_ms = 20\n"
				    "[stats]\n"
				    "max_shapes = 10\n"
				    "[nplusone]\n"
				    "mode = Detect\n"
				    "min_repeats = 5\n"
				    "max_parent_rows = 20\n"
				    "max_parent_bytes = 64kB\n"
				    "max_patterns = 7\n";

static const want_config every_key_want = {
	.listen = "0.0.0.0:7000",
	.backend = "/var/run/postgresql/.s.PGSQL.5432",
	.admin = "off",
	.redis = "[::1]:6380",
	.control_user = "pgfold_ctl",
	.control_password = "s3cr=t:with spaces",
	.redis_user = "pgfold",
	.redis_password = "p@ss w=rd:x",
	.redis_db = 3,
	.redis_connections = 4,
	.listen_backlog = 128,
	.max_client_conn = 50,
	.max_message_bytes = 16 << 20,
	.buffer_high_bytes = 1 << 20,
	.buffer_low_bytes = 100000,
	.connect_timeout_ms = 250,
	.client_login_timeout_ms = 120000,
	.shutdown_timeout_ms = 7000,
	.log_level = 3,
	.analysis = 0,
	.analysis_cache_entries = 0,
	.analysis_cache_bytes = 1 << 20,
	.max_shapes = 10,
	.np_mode = CF_NPLUSONE_DETECT,
	.np_min_repeats = 5,
	.np_max_parent_rows = 20,
	.np_max_parent_bytes = 64 << 10,
	.np_max_patterns = 7,
	.cache_mode = CF_CACHE_AUTO,
	.cache_default_ttl_ms = 120000,
	.cache_max_entry_bytes = 64 << 10,
	.cache_timeout_ms = 20,
};

static void load_expect(const char *text, const want_config *want)
{
	char path[64], msg[1024];
	cf_error err;
	write_temp(text, path, sizeof(path));
	cf_config *c = cf_config_new();
	int rc = cf_config_load_file(c, path, &err);
	unlink(path);
	if (rc != 0)
		fail_msg("%s", cf_error_format(&err, msg, sizeof(msg)));
	expect_config(c, want);
	cf_config_free(c);
}

static void test_file_every_key(void **state)
{
	(void)state;
	load_expect(every_key_ini, &every_key_want);
}

/* A BOM, CRLF line ends, '#' comments and "key: value" are all inih syntax. */
static void test_file_syntax_variants(void **state)
{
	(void)state;
	want_config want = defaults;
	want.max_client_conn = 7;
	want.log_level = 1;
	want.redis = "off";
	load_expect("\xEF\xBB\xBF# comment\r\n[pgfold]\r\nmax_client_conn: 7\r\nlog_level = warn ; inline\r\n"
		    "\t[cache]\r\nredis = OFF\r\n",
		    &want);
}

/* ---- file errors -------------------------------------------------------- */

typedef struct err_case {
	const char *text;
	int line;
	const char *want; /* a substring of err.message; names the key */
} err_case;

static char long_line_ini[400];

static const err_case err_cases[] = {
	{"[pgfold]\nlisten = 1.2.3.4:5\n[bogus]\nx = 1\n", 3, "unknown section [bogus]"},
	{"[pgfold]\n[cache]\n\n[extra]\n", 4, "unknown section [extra]"},
	{"[pgfold]\n\nno_such_key = 1\n", 3, "unknown key \"no_such_key\" in [pgfold]"},
	{"[cache]\nlisten = 1.2.3.4:5\n", 2, "unknown key \"listen\" in [cache]"},
	{"listen = 1.2.3.4:5\n", 1, "listen: key before any [section]"},
	{"[pgfold]\nmax_client_conn = 12x\n", 2, "max_client_conn: \"12x\" is not an integer"},
	{"[pgfold]\nmax_client_conn = 99999999999999999999\n", 2,
	 "max_client_conn: \"99999999999999999999\" is too large"},
	{"[pgfold]\n; a\n\n# b\nmax_client_conn = 0\n", 5, "max_client_conn: value 0 is below the minimum 1"},
	{"[pgfold]\nmax_client_conn = 100001\n", 2, "max_client_conn: value 100001 is above the maximum 100000"},
	{"[pgfold]\nlisten_backlog = 65536\n", 2, "listen_backlog: value 65536 is above the maximum 65535"},
	{"[pgfold]\nmax_message_bytes = 2GB\n", 2, "max_message_bytes: value 2GB is above the maximum 1GB"},
	{"[pgfold]\nmax_message_bytes = 1000\n", 2, "max_message_bytes: value 1000 is below the minimum 1kB"},
	{"[pgfold]\nbuffer_high_bytes = 64XB\n", 2, "buffer_high_bytes: \"64XB\" is not a size"},
	{"[pgfold]\nbuffer_high_bytes = 64 k B\n", 2, "buffer_high_bytes: \"64 k B\" is not a size"},
	{"[pgfold]\nbuffer_low_bytes = -1kB\n", 2, "buffer_low_bytes: \"-1kB\" is not a size"},
	{"[pgfold]\nconnect_timeout = 5 parsecs\n", 2, "connect_timeout: \"5 parsecs\" is not a duration"},
	{"[pgfold]\nconnect_timeout = 1.5s\n", 2, "connect_timeout: \"1.5s\" is not a duration"},
	{"[pgfold]\nconnect_timeout = 2h\n", 2, "connect_timeout: value 2h is above the maximum 1h"},
	{"[pgfold]\nconnect_timeout = 0\n", 2, "connect_timeout: value 0 is below the minimum 1ms"},
	{"[pgfold]\nbackend = 127.0.0.1:99999\n", 2, "backend: bad port \"99999\""},
	{"[pgfold]\nlisten = [::1\n", 2, "listen: \"[::1\": missing ']'"},
	{"[pgfold]\nlisten = /tmp\n", 2, "listen: \"/tmp\": a unix socket is not supported here"},
	{"[pgfold]\nbackend = off\n", 2, "backend: cannot be off"},
	{"[cache]\nredis = /tmp\n", 2, "cache.redis: \"/tmp\": a unix socket is not supported here"},
	{"[cache]\nredis = nope:0\n", 2, "cache.redis: bad port \"0\""},
	{"[pgfold]\nlog_level = verbose\n", 2, "log_level: \"verbose\" is not a log level"},
	{"[pgfold]\nlog_level =\n", 2, "log_level: empty value"},
	{"[pgfold]\ncontrol_user = ok\ncontrol_password = " X128 "\n", 3,
	 "control_password: value is longer than 127 bytes"},
	{"[cache]\ncontrol_user = x\n", 2, "unknown key \"control_user\" in [cache]"},
	{"[pgfold]\nlisten 1.2.3.4\n", 2, "syntax error"},
	{"[pgfold\n", 1, "syntax error"},
	{"[pgfold]\nnonsense\nmax_client_conn = 0\n", 2, "syntax error"}, /* the first error wins */
	{"[pgfold]\nlisten = 1.2.3.4:5\n   max_client_conn = 0\n", 3, "max_client_conn: value 0 is below"},
	{long_line_ini, 2, "line is longer than"},
	{"[cache.rules]\ntable.orders = 30s\nview.orders = 5s\n", 3,
	 "cache.rules.view.orders: unknown entry: expected table.NAME, table.SCHEMA.NAME, shape.FINGERPRINT or "
	 "statement.LABEL"},
	{"[cache.rules]\ntable.orders = soon\n", 2, "cache.rules.table.orders: \"soon\" is not a duration"},
	{"[cache.rules]\ntable.orders = 500ms\n", 2, "cache.rules.table.orders: TTL 500ms is outside 1s to 24h"},
	{"[cache.rules]\ntable.orders = 25h\n", 2, "cache.rules.table.orders: TTL 25h is outside 1s to 24h"},
	{"[cache.rules]\ntable.orders =\n", 2, "cache.rules.table.orders: empty value"},
	{"[cache.rules]\ntable.a.b.c = 1s\n", 2, "cache.rules.table.a.b.c: expected table.NAME or table.SCHEMA.NAME"},
	{"[cache.rules]\ntable. = 1s\n", 2, "cache.rules.table.: expected a table name"},
	{"[cache.rules]\ntable.\"open = 1s\n", 2, "unterminated quoted name"},
	{"[cache.rules]\ntable." X128 " = 1s\n", 2, "name longer than 63 bytes"},
	{"[cache.rules]\ntable.orders = 1s\n; again\ntable.ORDERS = 2s\n", 4,
	 "cache.rules.table.ORDERS: the same table as the entry on line 2"},
	{"[cache.rules]\nshape.5f3a = 1s\n", 2, "cache.rules.shape.5f3a: a shape is its fingerprint: 16 hex digits"},
	{"[cache.rules]\nshape.5f3a9c01d2e4b7cg = 1s\n", 2, "16 hex digits"},
	{"[cache.rules]\nshape.0a42922fab0bd73f = 1s\nstatement.x = 2s SELECT * FROM t WHERE id = 1\n", 3,
	 "cache.rules.statement.x: the same shape as the entry on line 2"},
	{"[cache.rules]\nstatement.x = 10s\n", 2, "cache.rules.statement.x: expected \"TTL STATEMENT\""},
	{"[cache.rules]\nstatement.x = soon SELECT 1\n", 2, "cache.rules.statement.x: \"soon\" is not a duration"},
	{"[cache.rules]\nstatement.x = 5s SELEC 1\n", 2,
	 "cache.rules.statement.x: the statement does not parse: syntax error at or near \"SELEC\""},
	{"[cache.rules]\nstatement.x = 5s SELECT 1; SELECT 2\n", 2,
	 "cache.rules.statement.x: expected exactly one statement, found 2"},
	{"[cache.rules]\nstatement.a.b = 5s SELECT 1\n", 2, "cache.rules.statement.a.b: a statement entry is"},
	{"[cache.rules]\nstatement. = 5s SELECT 1\n", 2, "a statement entry is statement.LABEL"},
	{"[cache.rulez]\ntable.x = 1s\n", 1, "unknown section [cache.rulez]"},
};

static void check_err_case(size_t i, const err_case *ec)
{
	char path[64], msg[1024];
	cf_error err;
	write_temp(ec->text, path, sizeof(path));
	cf_config *c = cf_config_new();
	int rc = cf_config_load_file(c, path, &err);
	unlink(path);
	cf_error_format(&err, msg, sizeof(msg));
	if (rc != -1 || err.line != ec->line || strcmp(err.file, path) != 0 || !strstr(err.message, ec->want))
		fail_msg("case %zu: rc %d, got \"%s\", want line %d and \"%s\"", i, rc, msg, ec->line, ec->want);
	expect_config(c, &defaults); /* a failed load changes nothing */
	if (c->cache_rules.n != 0)
		fail_msg("case %zu: %d [cache.rules] entries after a failed load", i, c->cache_rules.n);
	cf_config_free(c);
}

static void test_file_errors(void **state)
{
	(void)state;
	int n = snprintf(long_line_ini, sizeof(long_line_ini), "[pgfold]\n; ");
	memset(long_line_ini + n, 'x', 250);
	strcpy(long_line_ini + n + 250, "\nlisten = 1.2.3.4:5\n");
	for (size_t i = 0; i < sizeof(err_cases) / sizeof(err_cases[0]); i++)
		check_err_case(i, &err_cases[i]);
}

/* The whole message, as pgfold prints it. */
static void test_file_error_format(void **state)
{
	(void)state;
	char path[64], msg[1024], want[1024];
	cf_error err;
	write_temp("[pgfold]\nlisten = 127.0.0.1:6432\n\nmax_client_conn = 0\n", path, sizeof(path));
	cf_config *c = cf_config_new();
	assert_int_equal(cf_config_load_file(c, path, &err), -1);
	unlink(path);
	snprintf(want, sizeof(want), "%s:4: max_client_conn: value 0 is below the minimum 1", path);
	assert_string_equal(cf_error_format(&err, msg, sizeof(msg)), want);
	assert_int_equal(cf_config_load_file(c, "/nonexistent/pgfold.ini", &err), -1);
	assert_string_equal(cf_error_format(&err, msg, sizeof(msg)),
			    "/nonexistent/pgfold.ini: No such file or directory");
	cf_config_free(c);
}

/* ---- cf_config_set and validate ----------------------------------------- */

static const struct {
	const char *key, *value;
} set_ok[] = {
	{"listen", "0.0.0.0:7000"},
	{"pgfold.backend", "/var/run/postgresql/"},
	{"pgfold.admin", "off"},
	{"listen_backlog", "128"},
	{"pgfold.max_client_conn", "50"},
	{"max_message_bytes", "16MB"},
	{"buffer_high_bytes", "1MB"},
	{"buffer_low_bytes", "100000"},
	{"connect_timeout", "250ms"},
	{"pgfold.client_login_timeout", "2min"},
	{"shutdown_timeout", "7"},
	{"log_level", "debug"},
	{"control_user", "pgfold_ctl"},
	{"pgfold.control_password", "s3cr=t:with spaces"},
	{"cache.redis", "[::1]:6380"},
	{"cache.redis_db", "3"},
	{"cache.redis_user", "pgfold"},
	{"cache.redis_password", "p@ss w=rd:x"},
	{"cache.redis_connections", "4"},
	{"cache.mode", "auto"},
	{"cache.default_ttl", "120"},
	{"cache.max_entry_bytes", "64kB"},
	{"cache.timeout_ms", "20ms"},
	{"analysis", "off"},
	{"pgfold.analysis_cache_entries", "0"},
	{"analysis_cache_bytes", "1MB"},
	{"stats.max_shapes", "10"},
	{"nplusone.mode", "detect"},
	{"nplusone.min_repeats", "5"},
	{"nplusone.max_parent_rows", "20"},
	{"nplusone.max_parent_bytes", "64kB"},
	{"nplusone.max_patterns", "7"},
};

static const struct {
	const char *key, *value, *want;
} set_bad[] = {
	{"max_client_conn", "0", "max_client_conn: value 0 is below the minimum 1"},
	{"redis", "off", "unknown key \"redis\"; did you mean cache.redis?"},
	{"pgfold.redis", "off", "unknown key \"pgfold.redis\""},
	{"cache.listen", "1.2.3.4:5", "unknown key \"cache.listen\""},
	{"nosuch.listen", "1.2.3.4:5", "unknown key \"nosuch.listen\""},
	{"", "1", "unknown key \"\""},
	{"cache.redis", "x:0", "cache.redis: bad port \"0\": expected a number from 1 to 65535"},
	{"log_level", "", "log_level: empty value"},
	{"connect_timeout", "5 s x",
	 "connect_timeout: \"5 s x\" is not a duration (a whole number with ms, s, min or h)"},
	{"control_user", X128, "control_user: value is longer than 127 bytes"},
	{"control_password", X128, "control_password: value is longer than 127 bytes"},
	{"cache.control_user", "x", "unknown key \"cache.control_user\""},
	{"nplusone.mode", "sometimes", "nplusone.mode: \"sometimes\" is not one of off, detect, rewrite"},
	{"nplusone.min_repeats", "1", "nplusone.min_repeats: value 1 is below the minimum 2"},
	{"cache.mode", "always", "cache.mode: \"always\" is not one of off, rules, auto"},
	{"cache.default_ttl", "500ms", "cache.default_ttl: value 500ms is below the minimum 1s"},
	{"cache.timeout_ms", "0", "cache.timeout_ms: value 0 is below the minimum 1ms"},
	{"cache.max_entry_bytes", "1GB", "cache.max_entry_bytes: value 1GB is above the maximum 512MB"},
	{"mode", "auto", "unknown key \"mode\"; did you mean nplusone.mode?"},
	{"cache.redis_db", "-1", "cache.redis_db: value -1 is below the minimum 0"},
	{"cache.redis_db", "65536", "cache.redis_db: value 65536 is above the maximum 65535"},
	{"cache.redis_connections", "0", "cache.redis_connections: value 0 is below the minimum 1"},
	{"cache.redis_connections", "17", "cache.redis_connections: value 17 is above the maximum 16"},
	{"cache.redis_password", X128, "cache.redis_password: value is longer than 127 bytes"},
	{"redis_password", "x", "unknown key \"redis_password\"; did you mean cache.redis_password?"},
};

static void test_set(void **state)
{
	(void)state;
	cf_config *c = cf_config_new();
	cf_error err;
	for (size_t i = 0; i < sizeof(set_ok) / sizeof(set_ok[0]); i++)
		if (cf_config_set(c, set_ok[i].key, set_ok[i].value, &err) != 0)
			fail_msg("%s=%s: %s", set_ok[i].key, set_ok[i].value, err.message);
	expect_config(c, &every_key_want);
	for (size_t i = 0; i < sizeof(set_bad) / sizeof(set_bad[0]); i++) {
		int rc = cf_config_set(c, set_bad[i].key, set_bad[i].value, &err);
		if (rc != -1 || strcmp(err.message, set_bad[i].want) != 0 || err.file[0] || err.line)
			fail_msg("%s=%s: rc %d, got \"%s\", want \"%s\"", set_bad[i].key, set_bad[i].value, rc,
				 err.message, set_bad[i].want);
	}
	expect_config(c, &every_key_want); /* failed sets change nothing */
	cf_config_free(c);
}

static const struct {
	const char *key, *value, *want; /* want NULL: valid */
} validate_cases[] = {
	{"buffer_low_bytes", "255kB", NULL},
	{"buffer_low_bytes", "256kB", "buffer_low_bytes: 256kB must be below buffer_high_bytes (256kB)"},
	{"buffer_low_bytes", "1MB", "buffer_low_bytes: 1MB must be below buffer_high_bytes (256kB)"},
	{"admin", "127.0.0.1:6432", "admin: 127.0.0.1:6432 is also the listen address"},
	{"admin", "127.0.0.1:6434", NULL},
};

static void test_validate(void **state)
{
	(void)state;
	cf_error err;
	for (size_t i = 0; i < sizeof(validate_cases) / sizeof(validate_cases[0]); i++) {
		cf_config *c = cf_config_new();
		assert_int_equal(cf_config_set(c, validate_cases[i].key, validate_cases[i].value, &err), 0);
		int rc = cf_config_validate(c, &err);
		const char *want = validate_cases[i].want;
		if (want ? rc != -1 || strcmp(err.message, want) != 0 : rc != 0)
			fail_msg("case %zu: rc %d \"%s\", want \"%s\"", i, rc, err.message, want ? want : "ok");
		cf_config_free(c);
	}
}

/* low >= high is legal per key, caught only by validate. */
static void test_validate_after_file(void **state)
{
	(void)state;
	char path[64];
	cf_error err;
	write_temp("[pgfold]\nbuffer_high_bytes = 64kB\nbuffer_low_bytes = 64kB\n", path, sizeof(path));
	cf_config *c = cf_config_new();
	assert_int_equal(cf_config_load_file(c, path, &err), 0);
	unlink(path);
	assert_int_equal(cf_config_validate(c, &err), -1);
	assert_non_null(strstr(err.message, "buffer_low_bytes"));
	cf_config_free(c);
}

/* String keys take any text up to 127 bytes, the empty string included, and
 * never echo the value in an error (it may be a password). */
static void test_string_keys(void **state)
{
	(void)state;
	cf_config *c = cf_config_new();
	cf_error err;
	assert_int_equal(cf_config_set(c, "control_user", X127, &err), 0);
	assert_string_equal(c->control_user, X127);
	assert_int_equal(cf_config_set(c, "control_password", "p w;#=\"", &err), 0);
	assert_string_equal(c->control_password, "p w;#=\"");
	assert_int_equal(cf_config_set(c, "control_password", X128, &err), -1);
	assert_null(strstr(err.message, "xxx"));
	assert_string_equal(c->control_password, "p w;#=\""); /* unchanged */
	assert_int_equal(cf_config_set(c, "control_user", "", &err), 0);
	assert_string_equal(c->control_user, "");
	cf_config_free(c);

	char path[64], msg[1024];
	write_temp("[pgfold]\ncontrol_user = app\ncontrol_user =\ncontrol_password =   secret  \n", path,
		   sizeof(path));
	c = cf_config_new();
	int rc = cf_config_load_file(c, path, &err);
	unlink(path);
	if (rc != 0)
		fail_msg("%s", cf_error_format(&err, msg, sizeof(msg)));
	assert_string_equal(c->control_user, ""); /* the later line wins */
	assert_string_equal(c->control_password, "secret");
	cf_config_free(c);
}

/* ---- addresses ---------------------------------------------------------- */

static const struct {
	const char *text;
	int default_port;
	cf_addr_kind kind;
	const char *host;
	int port;
	const char *path, *formatted;
} addr_ok[] = {
	{"127.0.0.1:6432", 0, CF_ADDR_TCP, "127.0.0.1", 6432, "", "127.0.0.1:6432"},
	{"10.1.2.3", 5432, CF_ADDR_TCP, "10.1.2.3", 5432, "", "10.1.2.3:5432"},
	{"[::1]:5432", 0, CF_ADDR_TCP, "::1", 5432, "", "[::1]:5432"},
	{"[2001:db8::7]", 6379, CF_ADDR_TCP, "2001:db8::7", 6379, "", "[2001:db8::7]:6379"},
	{"[fe80::1%eth0]:5432", 0, CF_ADDR_TCP, "fe80::1%eth0", 5432, "", "[fe80::1%eth0]:5432"},
	{"localhost:5432", 0, CF_ADDR_TCP, "localhost", 5432, "", "localhost:5432"},
	{"db-1.example.com", 5432, CF_ADDR_TCP, "db-1.example.com", 5432, "", "db-1.example.com:5432"},
	{"localhost:1", 0, CF_ADDR_TCP, "localhost", 1, "", "localhost:1"},
	{"localhost:65535", 0, CF_ADDR_TCP, "localhost", 65535, "", "localhost:65535"},
	{"/var/run/postgresql", 5432, CF_ADDR_UNIX, "/var/run/postgresql", 5432, "/var/run/postgresql/.s.PGSQL.5432",
	 "/var/run/postgresql/.s.PGSQL.5432"},
	{"/tmp:5433", 5432, CF_ADDR_UNIX, "/tmp", 5433, "/tmp/.s.PGSQL.5433", "/tmp/.s.PGSQL.5433"},
	{"/tmp//", 5432, CF_ADDR_UNIX, "/tmp", 5432, "/tmp/.s.PGSQL.5432", "/tmp/.s.PGSQL.5432"},
	{"/tmp/.s.PGSQL.5433", 0, CF_ADDR_UNIX, "/tmp", 5433, "/tmp/.s.PGSQL.5433", "/tmp/.s.PGSQL.5433"},
	{"/", 5432, CF_ADDR_UNIX, "/", 5432, "/.s.PGSQL.5432", "/.s.PGSQL.5432"},
	{"/a:b/run", 5432, CF_ADDR_UNIX, "/a:b/run", 5432, "/a:b/run/.s.PGSQL.5432", "/a:b/run/.s.PGSQL.5432"},
	{"off", 0, CF_ADDR_OFF, "", 0, "", "off"},
	{"Off", 5432, CF_ADDR_OFF, "", 0, "", "off"},
};

static const struct {
	const char *text;
	int default_port;
	const char *want;
} addr_bad[] = {
	{"127.0.0.1:0", 0, "bad port \"0\""},
	{"127.0.0.1:65536", 0, "bad port \"65536\""},
	{"127.0.0.1:", 5432, "bad port \"\""},
	{"127.0.0.1:54x", 0, "bad port \"54x\""},
	{"127.0.0.1:+543", 0, "bad port \"+543\""},
	{"127.0.0.1:000005432", 0, "bad port \"000005432\""},
	{"localhost:-1", 0, "bad port \"-1\""},
	{":5432", 0, "missing host"},
	{"", 5432, "missing host"},
	{"::1:5432", 0, "put an IPv6 address in brackets"},
	{"::1", 5432, "put an IPv6 address in brackets"},
	{"[::1", 0, "missing ']'"},
	{"[::1]5432", 0, "expected ':port' after ']'"},
	{"[]:5432", 0, "missing host"},
	{"[zz::q]:1", 0, "bad IPv6 address \"zz::q\""},
	{"[127.0.0.1]:5", 0, "bad IPv6 address"},
	{"300.1.1.1:5", 0, "bad IPv4 address \"300.1.1.1\""},
	{"1.2.3:5", 0, "bad IPv4 address"},
	{"ho st:1", 0, "unexpected character ' '"},
	{"localhost", 0, "missing port"},
	{"/tmp", 0, "missing port"},
	{"/tmp:0", 5432, "bad port \"0\""},
	{"/tmp:", 5432, "bad port \"\""},
	{"/tmp/.s.PGSQL.x", 0, "bad port \"x\""},
};

static void check_addr_ok(size_t i)
{
	cf_addr a, b;
	cf_error err;
	char buf[300];
	if (cf_addr_parse(addr_ok[i].text, addr_ok[i].default_port, &a, &err) != 0)
		fail_msg("\"%s\": %s", addr_ok[i].text, err.message);
	cf_addr_format(&a, buf, sizeof(buf));
	if (a.kind != addr_ok[i].kind || strcmp(a.host, addr_ok[i].host) != 0 || a.port != addr_ok[i].port ||
	    strcmp(a.path, addr_ok[i].path) != 0 || strcmp(buf, addr_ok[i].formatted) != 0)
		fail_msg("\"%s\": got kind %d host \"%s\" port %d path \"%s\" -> \"%s\"", addr_ok[i].text, a.kind,
			 a.host, a.port, a.path, buf);
	/* format -> parse gives the same address, whatever the default port */
	if (cf_addr_parse(buf, 0, &b, &err) != 0 || memcmp(&a, &b, sizeof(a)) != 0)
		fail_msg("\"%s\" -> \"%s\" does not parse back to the same address (%s)", addr_ok[i].text, buf,
			 err.message);
}

static void test_addr_parse_format(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(addr_ok) / sizeof(addr_ok[0]); i++)
		check_addr_ok(i);
	for (size_t i = 0; i < sizeof(addr_bad) / sizeof(addr_bad[0]); i++) {
		cf_addr a;
		cf_error err;
		memset(&a, 0x5a, sizeof(a));
		cf_addr before = a;
		int rc = cf_addr_parse(addr_bad[i].text, addr_bad[i].default_port, &a, &err);
		if (rc != -1 || !strstr(err.message, addr_bad[i].want) || memcmp(&a, &before, sizeof(a)) != 0)
			fail_msg("\"%s\": rc %d, got \"%s\", want \"%s\"", addr_bad[i].text, rc, err.message,
				 addr_bad[i].want);
	}
}

/* sun_path holds 107 bytes and a NUL; host holds 255 bytes. */
static void test_addr_limits(void **state)
{
	(void)state;
	char text[400];
	cf_addr a;
	cf_error err;
	size_t dir_len = 107 - strlen("/.s.PGSQL.5432");
	memset(text, 'd', sizeof(text));
	text[0] = '/';
	text[dir_len] = '\0';
	assert_int_equal(cf_addr_parse(text, 5432, &a, &err), 0);
	assert_int_equal(strlen(a.path), 107);
	text[dir_len] = 'd';
	text[dir_len + 1] = '\0';
	assert_int_equal(cf_addr_parse(text, 5432, &a, &err), -1);
	assert_non_null(strstr(err.message, "is longer than 107 bytes"));
	memset(text, 'h', 255);
	strcpy(text + 255, ":5432");
	assert_int_equal(cf_addr_parse(text, 0, &a, &err), 0);
	memset(text, 'h', 256);
	strcpy(text + 256, ":5432");
	assert_int_equal(cf_addr_parse(text, 0, &a, &err), -1);
	assert_non_null(strstr(err.message, "host is longer than 255 bytes"));
}

/* ---- reload ------------------------------------------------------------- */

static void collect(const char *key, void *ctx)
{
	char *out = ctx;
	if (out[0])
		strcat(out, ",");
	strcat(out, key);
}

static void test_carry_fixed(void **state)
{
	(void)state;
	cf_config *running = cf_config_new();
	cf_config *next = cf_config_new();
	cf_error err;
	char reported[256] = "";
	for (size_t i = 0; i < sizeof(set_ok) / sizeof(set_ok[0]); i++)
		assert_int_equal(cf_config_set(next, set_ok[i].key, set_ok[i].value, &err), 0);
	cf_config_carry_fixed(running, next, collect, reported);
	assert_string_equal(reported, "listen,admin,listen_backlog,analysis_cache_entries,analysis_cache_bytes,stats.max_shapes,nplusone.max_patterns,cache.redis,cache.redis_db,cache.redis_user,cache.redis_password,cache.redis_connections");
	want_config want = every_key_want; /* reloadable keys take the new value ... */
	want.listen = defaults.listen;      /* ... restart-only keys keep the running one */
	want.admin = defaults.admin;
	want.listen_backlog = defaults.listen_backlog;
	want.redis = defaults.redis;
	want.redis_db = defaults.redis_db;
	want.redis_user = defaults.redis_user;
	want.redis_password = defaults.redis_password;
	want.redis_connections = defaults.redis_connections;
	want.analysis_cache_entries = defaults.analysis_cache_entries;
	want.analysis_cache_bytes = defaults.analysis_cache_bytes;
	want.max_shapes = defaults.max_shapes;
	want.np_max_patterns = defaults.np_max_patterns;
	expect_config(next, &want);
	cf_config *back = cf_config_copy(running); /* a string key going back to "" is a change too */
	cf_config_carry_fixed(next, back, collect, reported);
	assert_string_equal(back->control_user, "");
	cf_config_free(back);
	reported[0] = '\0';
	cf_config_carry_fixed(running, next, collect, reported);
	assert_string_equal(reported, "");
	cf_config_carry_fixed(running, next, NULL, NULL);
	cf_config_free(next);
	cf_config_free(running);
}

/* ---- [cache.rules] ------------------------------------------------------- */

static void expect_rule(const cf_config *c, int i, cf_rule_kind kind, const char *schema, const char *table,
			uint64_t fp, int ttl_ms, int line)
{
	if (i >= c->cache_rules.n)
		fail_msg("entry %d: only %d entries", i, c->cache_rules.n);
	const cf_cache_rule *r = &c->cache_rules.rule[i];
	if (r->kind != kind || strcmp(r->schema, schema) != 0 || strcmp(r->table, table) != 0 ||
	    r->fingerprint != fp || r->ttl_ms != ttl_ms || r->line != line)
		fail_msg("entry %d: got kind %d \"%s\".\"%s\" fp %016llx ttl %d line %d, want kind %d \"%s\".\"%s\" "
			 "fp %016llx ttl %d line %d",
			 i, r->kind, r->schema, r->table, (unsigned long long)r->fingerprint, r->ttl_ms, r->line, kind,
			 schema, table, (unsigned long long)fp, ttl_ms, line);
}

/* Literal values, $n, case and blanks do not change a statement's shape;
 * names fold like PostgreSQL's; "quoted" names stay as written. */
static void test_cache_rules_file(void **state)
{
	(void)state;
	char path[64], msg[1024];
	cf_error err;
	write_temp("[cache]\nmode = rules\n"
		   "[cache.rules]\n"
		   "table.orders = 30s\n"
		   "table.Public.Customers = 5min\n"
		   "table.\"Audit\".\"Log\"\"s\" = off\n"
		   "\n"
		   "shape.0A42922FAB0BD73F = 5\n"
		   "statement.top-items_1 = 2min   select id, name::text from items where price > $1 order by 2 "
		   "limit 10\n"
		   "table.public.orders = 1h ; another schema-qualified name: a different entry\n"
		   "[cache]\ndefault_ttl = 10s\n",
		   path, sizeof(path));
	cf_config *c = cf_config_new();
	assert_int_equal(c->cache_rules.n, 0);
	int rc = cf_config_load_file(c, path, &err);
	unlink(path);
	if (rc != 0)
		fail_msg("%s", cf_error_format(&err, msg, sizeof(msg)));
	assert_int_equal(c->cache_rules.n, 6);
	assert_int_equal(c->cache_mode, CF_CACHE_RULES);
	assert_int_equal(c->cache_default_ttl_ms, 10000);
	expect_rule(c, 0, CF_RULE_TABLE, "", "orders", 0, 30000, 4);
	expect_rule(c, 1, CF_RULE_TABLE, "public", "customers", 0, 300000, 5);
	expect_rule(c, 2, CF_RULE_TABLE, "Audit", "Log\"s", 0, 0, 6);
	expect_rule(c, 3, CF_RULE_SHAPE, "", "", UINT64_C(0x0a42922fab0bd73f), 5000, 8);
	PgQueryFingerprintResult fp = pg_query_fingerprint("SELECT id, name::text FROM items WHERE price > 3.5 "
							     "ORDER BY 2 LIMIT 99");
	assert_null(fp.error);
	expect_rule(c, 4, CF_RULE_SHAPE, "", "", fp.fingerprint, 120000, 9);
	pg_query_free_fingerprint_result(fp);
	expect_rule(c, 5, CF_RULE_TABLE, "public", "orders", 0, 3600000, 10);

	/* a copy carries them; the command line adds and replaces (flags win over the file) */
	cf_config *copy = cf_config_copy(c);
	expect_rule(copy, 5, CF_RULE_TABLE, "public", "orders", 0, 3600000, 10);
	assert_int_equal(cf_config_set(copy, "cache.rules.table.ORDERS", "7s", &err), 0);
	expect_rule(copy, 0, CF_RULE_TABLE, "", "orders", 0, 7000, 0);
	assert_int_equal(cf_config_set(copy, "cache.rules.shape.0a42922fab0bd73f", "off", &err), 0);
	expect_rule(copy, 3, CF_RULE_SHAPE, "", "", UINT64_C(0x0a42922fab0bd73f), 0, 0);
	assert_int_equal(cf_config_set(copy, "cache.rules.table.tags", "1", &err), 0);
	expect_rule(copy, 6, CF_RULE_TABLE, "", "tags", 0, 1000, 0);
	assert_int_equal(copy->cache_rules.n, 7);
	assert_int_equal(c->cache_rules.n, 6);
	cf_config_free(copy);
	cf_config_free(c);
}

static void test_cache_rules_set(void **state)
{
	(void)state;
	static const struct {
		const char *key, *value, *want; /* want NULL: accepted */
	} cases[] = {
		{"cache.rules.table.orders", "30s", NULL},
		{"cache.rules.table.orders", "OFF", NULL},
		{"cache.rules.table.s.t", "24h", NULL},
		{"cache.rules.shape.ffffffffffffffff", "1s", NULL},
		{"cache.rules.statement.q", "3 VALUES (1)", NULL},
		{"cache.rules.table.orders", "0",
		 "cache.rules.table.orders: TTL 0 is outside 1s to 24h (off: never cache)"},
		{"cache.rules.table.orders", "", "cache.rules.table.orders: empty value: expected a TTL (30s, 5min ...) or off"},
		{"cache.rules.orders", "1s",
		 "cache.rules.orders: unknown entry: expected table.NAME, table.SCHEMA.NAME, shape.FINGERPRINT or "
		 "statement.LABEL"},
		{"cache.rules.", "1s",
		 "cache.rules.: unknown entry: expected table.NAME, table.SCHEMA.NAME, shape.FINGERPRINT or "
		 "statement.LABEL"},
		{"cache.rules", "1s", "unknown key \"cache.rules\""},
		{"cache.rules.shape.-1", "1s",
		 "cache.rules.shape.-1: a shape is its fingerprint: 16 hex digits, as /queries shows it"},
		{"cache.rules.statement.q", "3 SELECT 'unterminated",
		 "cache.rules.statement.q: the statement does not parse: unterminated quoted string at or near "
		 "\"'unterminated\""},
	};
	cf_config *c = cf_config_new();
	cf_error err;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int n = c->cache_rules.n;
		int rc = cf_config_set(c, cases[i].key, cases[i].value, &err);
		const char *want = cases[i].want;
		if (want ? rc != -1 || strcmp(err.message, want) != 0 || c->cache_rules.n != n : rc != 0)
			fail_msg("%s=%s: rc %d \"%s\", want \"%s\"", cases[i].key, cases[i].value, rc, err.message,
				 want ? want : "ok");
	}
	assert_int_equal(c->cache_rules.n, 4); /* orders twice is one entry */
	expect_rule(c, 0, CF_RULE_TABLE, "", "orders", 0, 0, 0);
	/* bounded: the 257th distinct entry is refused */
	char key[64];
	for (int i = c->cache_rules.n; i < CF_CACHE_RULES_MAX; i++) {
		snprintf(key, sizeof(key), "cache.rules.table.t%d", i);
		assert_int_equal(cf_config_set(c, key, "1s", &err), 0);
	}
	assert_int_equal(cf_config_set(c, "cache.rules.table.one_more", "1s", &err), -1);
	assert_string_equal(err.message, "cache.rules.table.one_more: more than 256 entries");
	assert_int_equal(cf_config_set(c, "cache.rules.table.t10", "9s", &err), 0); /* replacing still works */
	cf_config_free(c);
}

/* ---- --help reference --------------------------------------------------- */

static void test_keys_print(void **state)
{
	(void)state;
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	cf_keys_print(out);
	fclose(out);
	char *rules = strstr(text, "\n[cache.rules] entries");
	assert_non_null(rules); /* the [cache.rules] syntax follows the key table */
	assert_non_null(strstr(rules, "table.SCHEMA.NAME = TTL"));
	assert_non_null(strstr(rules, "shape.FINGERPRINT = TTL"));
	assert_non_null(strstr(rules, "statement.LABEL = TTL SQL"));
	rules[0] = '\0';
	int rows = 0;
	for (const char *p = text; (p = strstr(p, "\n  ")) != NULL; p++)
		rows++;
	assert_int_equal(rows, N_ALL_KEYS + 1); /* + the column header */
	for (size_t i = 0; i < N_ALL_KEYS; i++) {
		char start[64];
		snprintf(start, sizeof(start), "\n  %s ", all_keys[i].label);
		const char *row = strstr(text, start);
		const char *end = row ? strchr(row + 1, '\n') : NULL;
		size_t n = end ? (size_t)(end - row) : 0;
		char line[512];
		snprintf(line, sizeof(line), "%.*s", (int)n, row ? row : "");
		char def[64];
		snprintf(def, sizeof(def), " %s ", all_keys[i].def[0] ? all_keys[i].def : "\"\"");
		if (!row || !strstr(line, def) || !strstr(line, all_keys[i].mode))
			fail_msg("no row for %s with default %s and %s in:\n%s", all_keys[i].label, all_keys[i].def,
				 all_keys[i].mode, text);
	}
	free(text);
}

static void test_error_format(void **state)
{
	(void)state;
	char buf[1024];
	cf_error e = {.file = "a.ini", .line = 3, .message = "x: bad"};
	assert_string_equal(cf_error_format(&e, buf, sizeof(buf)), "a.ini:3: x: bad");
	e.line = 0;
	assert_string_equal(cf_error_format(&e, buf, sizeof(buf)), "a.ini: x: bad");
	e.file[0] = '\0';
	assert_string_equal(cf_error_format(&e, buf, sizeof(buf)), "x: bad");
}

/* ---- value parsers ------------------------------------------------------ */

static const struct {
	const char *text;
	long long want; /* -1: refused */
	const char *formatted;
} size_cases[] = {
	{"0", 0, "0B"},
	{"1024", 1024, "1kB"},
	{"1000", 1000, "1000B"},
	{"64kB", 65536, "64kB"},
	{"64kb", 65536, "64kB"},
	{"64 KB", 65536, "64kB"},
	{"3MB", 3 << 20, "3MB"},
	{"1GB", 1 << 30, "1GB"},
	{"2TB", 2LL << 40, "2TB"},
	{"1536kB", 1536 * 1024, "1536kB"},
	{"12B", 12, "12B"},
	{"", -1, NULL},
	{"kB", -1, NULL},
	{"1.5MB", -1, NULL},
	{"-1", -1, NULL},
	{"+1", -1, NULL},
	{" 1", -1, NULL},
	{"1 MB x", -1, NULL},
	{"9000000000GB", -1, NULL},
	{"1PB", -1, NULL},
};

static const struct {
	const char *text;
	long long want; /* -1: refused */
	const char *formatted;
} duration_cases[] = {
	{"0", 0, "0ms"},      {"30", 30000, "30s"},      {"30s", 30000, "30s"}, {"500ms", 500, "500ms"},
	{"2min", 120000, "2min"}, {"1h", 3600000, "1h"},  {"90 s", 90000, "90s"}, {"1500ms", 1500, "1500ms"},
	{"5S", 5000, "5s"},   {"", -1, NULL},            {"s", -1, NULL},       {"1.5s", -1, NULL},
	{"-1s", -1, NULL},    {"5d", -1, NULL},          {"5m", -1, NULL},      {"99999999999999999h", -1, NULL},
};

static void test_value_parsers(void **state)
{
	(void)state;
	cf_error err;
	char buf[64];
	for (size_t i = 0; i < sizeof(size_cases) / sizeof(size_cases[0]); i++) {
		int64_t v = -1;
		int rc = cf__parse_size(size_cases[i].text, &v, &err);
		if (size_cases[i].want >= 0)
			cf__format_size(v, buf, sizeof(buf));
		if (size_cases[i].want < 0 ? rc != -1 : rc != 0 || v != size_cases[i].want ||
							strcmp(buf, size_cases[i].formatted) != 0)
			fail_msg("size \"%s\": rc %d value %lld \"%s\"", size_cases[i].text, rc, (long long)v,
				 err.message);
	}
	for (size_t i = 0; i < sizeof(duration_cases) / sizeof(duration_cases[0]); i++) {
		int64_t v = -1;
		int rc = cf__parse_duration(duration_cases[i].text, 1000, &v, &err);
		if (duration_cases[i].want >= 0)
			cf__format_duration(v, buf, sizeof(buf));
		if (duration_cases[i].want < 0 ? rc != -1 : rc != 0 || v != duration_cases[i].want ||
							    strcmp(buf, duration_cases[i].formatted) != 0)
			fail_msg("duration \"%s\": rc %d value %lld \"%s\"", duration_cases[i].text, rc,
				 (long long)v, err.message);
	}
}

static void test_bool_parser(void **state)
{
	(void)state;
	static const struct {
		const char *text;
		int want; /* -1: refused */
	} cases[] = {{"on", 1},  {"TRUE", 1}, {"yes", 1}, {"1", 1}, {"off", 0},
		     {"False", 0}, {"no", 0},  {"0", 0},   {"", -1}, {"2", -1}, {"onn", -1}};
	cf_error err;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		bool b = false;
		int rc = cf__parse_bool(cases[i].text, &b, &err);
		if (cases[i].want < 0 ? rc != -1 : rc != 0 || b != (cases[i].want == 1))
			fail_msg("bool \"%s\": rc %d value %d", cases[i].text, rc, b);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_example_ini_is_defaults),
		cmocka_unit_test(test_example_ini_lists_every_key),
		cmocka_unit_test(test_file_every_key),
		cmocka_unit_test(test_file_syntax_variants),
		cmocka_unit_test(test_file_errors),
		cmocka_unit_test(test_file_error_format),
		cmocka_unit_test(test_set),
		cmocka_unit_test(test_validate),
		cmocka_unit_test(test_validate_after_file),
		cmocka_unit_test(test_string_keys),
		cmocka_unit_test(test_addr_parse_format),
		cmocka_unit_test(test_addr_limits),
		cmocka_unit_test(test_carry_fixed),
		cmocka_unit_test(test_cache_rules_file),
		cmocka_unit_test(test_cache_rules_set),
		cmocka_unit_test(test_keys_print),
		cmocka_unit_test(test_error_format),
		cmocka_unit_test(test_value_parsers),
		cmocka_unit_test(test_bool_parser),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
