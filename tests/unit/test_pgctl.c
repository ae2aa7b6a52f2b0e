/*
 * test_pgctl.c — proxy/pgctl.c (libpq on the libuv loop) and its user
 * proxy/volatility.c, against a real PostgreSQL 15 that the group setup
 * creates with initdb in a temp dir (as the postgres user when run as root)
 * and stops at the end; tests that need it are skipped when the server
 * binaries are missing.
 *
 * pgctl: queries queued before the connect completes, FIFO order, an SQL
 * error failing only its query, connect refused, a database that does not
 * exist, bad parameters, a connect timeout against a socket that never
 * answers, a query timeout, the server terminating the backend (and its
 * socket number then reused by another handle), and close with queued
 * queries — every callback exactly once, also when a callback closes the
 * connection.
 * volatility: the lookup rules on a loaded catalog, connecting as the client
 * user, idle connections closed after the linger time, invalidate picking up
 * a new function, a moved backend dropping the maps, close while loading.
 *
 * Every test ends by checking the loop ran out of handles and
 * uv_loop_close() returned 0; under ASan (build-asan/) that also covers
 * leaks.
 *
 * PG_BINDIR overrides /usr/lib/postgresql/15/bin; PGFOLD_TEST_DEBUG=1 shows
 * debug logs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "../../common/log.h"
#include "../../conf/conf.h"
#include "../../proxy/pgctl.h"
#include "../../proxy/volatility.h"
#include "testutil.h"

/* ---------------------------------------------------------------- server */

static struct {
	bool up;
	char dir[64];   /* temp dir: data/, the socket, the log */
	char bin[256];  /* PostgreSQL server binaries */
	char port[16];
	char as[64];    /* "runuser -u postgres -- " when root, else "" */
} pg;

static int shell(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int shell(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	int rc = system(cmd);
	if (rc != 0)
		fprintf(stderr, "test_pgctl: \"%s\" failed (%d)\n", cmd, rc);
	return rc;
}

/* Appending as root keeps the file's owner (postgres). */
static int append_conf(void)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/data/postgresql.conf", pg.dir);
	FILE *fp = fopen(path, "a");
	if (!fp)
		return -1;
	fprintf(fp, "\nport = %s\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\nfsync = off\n",
		pg.port, pg.dir);
	return fclose(fp) == 0 ? 0 : -1;
}

static int start_postgres(void **state)
{
	(void)state;
	const char *bindir = getenv("PG_BINDIR");
	snprintf(pg.bin, sizeof(pg.bin), "%s", bindir && bindir[0] ? bindir : "/usr/lib/postgresql/15/bin");
	char initdb[300];
	snprintf(initdb, sizeof(initdb), "%s/initdb", pg.bin);
	if (access(initdb, X_OK) != 0) {
		fprintf(stderr, "test_pgctl: %s not found; PostgreSQL tests are skipped\n", initdb);
		return 0;
	}
	snprintf(pg.dir, sizeof(pg.dir), "/tmp/pgfold_test_pgctl_XXXXXX");
	if (!mkdtemp(pg.dir))
		return -1;
	chmod(pg.dir, 0755);
	if (geteuid() == 0) {
		struct passwd *pw = getpwnam("postgres");
		if (!pw || chown(pg.dir, pw->pw_uid, pw->pw_gid) != 0) {
			fprintf(stderr, "test_pgctl: running as root without a postgres user; skipped\n");
			return 0;
		}
		snprintf(pg.as, sizeof(pg.as), "runuser -u postgres -- ");
	}
	snprintf(pg.port, sizeof(pg.port), "%d", free_port());
	if (shell("%s'%s' -D '%s/data' -U postgres -A trust -E UTF8 --locale=C --no-sync >'%s/initdb.log' 2>&1",
		  pg.as, initdb, pg.dir, pg.dir) != 0 ||
	    append_conf() != 0 ||
	    shell("%s'%s/pg_ctl' -D '%s/data' -l '%s/postgres.log' -w -t 60 start >/dev/null", pg.as, pg.bin, pg.dir,
		  pg.dir) != 0)
		return -1;
	pg.up = true;
	return 0;
}

static int stop_postgres(void **state)
{
	(void)state;
	if (pg.up)
		shell("%s'%s/pg_ctl' -D '%s/data' -m immediate -w stop >/dev/null", pg.as, pg.bin, pg.dir);
	if (pg.dir[0])
		shell("rm -rf '%s'", pg.dir);
	return 0;
}

#define NEED_POSTGRES()                                                                                        \
	do {                                                                                                   \
		if (!pg.up)                                                                                    \
			skip();                                                                                \
	} while (0)

/* ---------------------------------------------------------------- helpers */

typedef struct outcome {
	int calls;
	int order;          /* the value of the shared sequence when it ran */
	bool ok;
	char err[256];
	char value[64];     /* first column of the first row */
	int ntuples;
	px_pgctl *close_me; /* when set, the callback closes this connection */
} outcome;

static int sequence;

static void on_result(const PGresult *res, const char *err, void *ctx)
{
	outcome *o = ctx;
	o->calls++;
	o->order = ++sequence;
	o->ok = err == NULL;
	if (err) {
		assert_null(res);
		snprintf(o->err, sizeof(o->err), "%s", err);
	} else {
		assert_non_null(res);
		o->ntuples = PQntuples(res);
		if (o->ntuples > 0 && PQnfields(res) > 0)
			snprintf(o->value, sizeof(o->value), "%s", PQgetvalue(res, 0, 0));
	}
	if (o->close_me)
		px_pgctl_close(o->close_me);
}

static void tick(uv_timer_t *t)
{
	(void)t;
}

/* Run the loop until *counter reaches want or ms pass. */
static bool run_until(uv_loop_t *loop, const int *counter, int want, unsigned ms)
{
	uv_timer_t guard;
	uv_timer_init(loop, &guard);
	uv_timer_start(&guard, tick, 20, 20);
	uint64_t deadline = mono_ms() + ms;
	while (*counter < want && mono_ms() < deadline)
		uv_run(loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&guard, NULL);
	uv_run(loop, UV_RUN_NOWAIT);
	return *counter >= want;
}

static void finish_loop(uv_loop_t *loop)
{
	assert_int_equal(uv_run(loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(uv_loop_close(loop), 0);
}

/* A connection to the test server: TCP, or the socket directory. */
static px_pgctl *connect_to(uv_loop_t *loop, const char *host, const char *port, const char *db, unsigned ms)
{
	const char *keys[] = {"host", "port", "dbname", "user", "application_name", NULL};
	const char *vals[] = {host, port, db, "postgres", "pgfold-test-pgctl", NULL};
	return px_pgctl_new(loop, keys, vals, ms);
}

static px_pgctl *connect_pg(uv_loop_t *loop, unsigned ms)
{
	return connect_to(loop, "127.0.0.1", pg.port, "postgres", ms);
}

static void expect_error(const outcome *o, const char *want)
{
	if (o->calls != 1 || o->ok || !strstr(o->err, want))
		fail_msg("calls %d ok %d err \"%s\", want one failure containing \"%s\"", o->calls, o->ok, o->err,
			 want);
	if (strchr(o->err, '\n'))
		fail_msg("error \"%s\" holds a newline", o->err);
}

/* ---------------------------------------------------------------- tests */

/* Queued before the connect completes; run in order; an SQL error fails only
 * its own query; TCP and the unix socket both work. */
static void test_queries_in_order(void **state)
{
	(void)state;
	NEED_POSTGRES();
	uv_loop_t loop;
	uv_loop_init(&loop);
	for (int unix_socket = 0; unix_socket < 2; unix_socket++) {
		px_pgctl *c = unix_socket ? connect_to(&loop, pg.dir, pg.port, "postgres", 5000) : connect_pg(&loop, 5000);
		outcome a = {0}, b = {0}, d = {0}, e = {0};
		sequence = 0;
		assert_int_equal(px_pgctl_query(c, "SELECT 41 + 1", on_result, &a), 0);
		assert_int_equal(px_pgctl_query(c, "SELECT 1/0", on_result, &b), 0);
		assert_int_equal(px_pgctl_query(c, "SELEC nonsense", on_result, &d), 0);
		assert_int_equal(px_pgctl_query(c, "SELECT proname FROM pg_proc WHERE proname = 'now'", on_result, &e),
				 0);
		assert_int_equal(a.calls + b.calls + d.calls + e.calls, 0); /* never from inside query() */
		assert_true(run_until(&loop, &e.calls, 1, 10000));
		assert_true(a.ok && a.calls == 1 && a.order == 1);
		assert_string_equal(a.value, "42");
		expect_error(&b, "division by zero");
		assert_int_equal(b.order, 2);
		expect_error(&d, "syntax error");
		assert_true(e.ok && e.calls == 1 && e.order == 4 && e.ntuples == 1);
		assert_string_equal(e.value, "now");
		assert_false(px_pgctl_failed(c));
		assert_string_equal(px_pgctl_error(c), "");
		/* a query queued on the idle connection later */
		outcome f = {0};
		assert_int_equal(px_pgctl_query(c, "SELECT current_setting('application_name')", on_result, &f), 0);
		assert_true(run_until(&loop, &f.calls, 1, 5000));
		assert_string_equal(f.value, "pgfold-test-pgctl");
		px_pgctl_close(c);
		px_pgctl_close(c); /* idempotent until its close_cb ran */
		uv_run(&loop, UV_RUN_DEFAULT);
	}
	finish_loop(&loop);
}

static void test_connect_refused(void **state)
{
	(void)state;
	uv_loop_t loop;
	uv_loop_init(&loop);
	char port[16];
	snprintf(port, sizeof(port), "%d", free_port());
	px_pgctl *c = connect_to(&loop, "127.0.0.1", port, "postgres", 5000);
	outcome a = {0}, b = {0};
	assert_int_equal(px_pgctl_query(c, "SELECT 1", on_result, &a), 0);
	assert_int_equal(px_pgctl_query(c, "SELECT 2", on_result, &b), 0);
	assert_true(run_until(&loop, &b.calls, 1, 5000));
	expect_error(&a, "refused");
	expect_error(&b, "refused");
	assert_true(px_pgctl_failed(c));
	assert_non_null(strstr(px_pgctl_error(c), "refused"));
	outcome late = {0};
	assert_int_equal(px_pgctl_query(c, "SELECT 3", on_result, &late), -1);
	uv_run(&loop, UV_RUN_NOWAIT);
	assert_int_equal(late.calls, 0);
	px_pgctl_close(c);
	assert_int_equal(a.calls + b.calls, 2);
	finish_loop(&loop);
}

static void test_connect_no_database(void **state)
{
	(void)state;
	NEED_POSTGRES();
	uv_loop_t loop;
	uv_loop_init(&loop);
	px_pgctl *c = connect_to(&loop, "127.0.0.1", pg.port, "no_such_db", 5000);
	outcome a = {0};
	assert_int_equal(px_pgctl_query(c, "SELECT 1", on_result, &a), 0);
	assert_true(run_until(&loop, &a.calls, 1, 5000));
	expect_error(&a, "\"no_such_db\" does not exist");
	px_pgctl_close(c);
	finish_loop(&loop);
}

/* Parameters libpq refuses at once: failed before any I/O. */
static void test_bad_parameters(void **state)
{
	(void)state;
	uv_loop_t loop;
	uv_loop_init(&loop);
	const char *keys[] = {"host", "sslmode", NULL};
	const char *vals[] = {"127.0.0.1", "bogus", NULL};
	px_pgctl *c = px_pgctl_new(&loop, keys, vals, 1000);
	assert_true(px_pgctl_failed(c));
	assert_non_null(strstr(px_pgctl_error(c), "sslmode"));
	outcome a = {0};
	assert_int_equal(px_pgctl_query(c, "SELECT 1", on_result, &a), -1);
	px_pgctl_close(c);
	assert_int_equal(a.calls, 0);
	finish_loop(&loop);
}

/* A server that accepts (the kernel's backlog) and never answers. */
static void test_connect_timeout(void **state)
{
	(void)state;
	uv_loop_t loop;
	uv_loop_init(&loop);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = loopback_addr(0);
	socklen_t len = sizeof(sin);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(fd, 8), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	char port[16];
	snprintf(port, sizeof(port), "%d", ntohs(sin.sin_port));
	const char *keys[] = {"host", "port", "dbname", "user", "sslmode", "gssencmode", NULL};
	const char *vals[] = {"127.0.0.1", port, "postgres", "postgres", "disable", "disable", NULL};
	uint64_t t0 = mono_ms();
	px_pgctl *c = px_pgctl_new(&loop, keys, vals, 300);
	outcome a = {0}, b = {0};
	assert_int_equal(px_pgctl_query(c, "SELECT 1", on_result, &a), 0);
	assert_int_equal(px_pgctl_query(c, "SELECT 2", on_result, &b), 0);
	assert_true(run_until(&loop, &b.calls, 1, 5000));
	uint64_t took = mono_ms() - t0;
	expect_error(&a, "timed out after 300 ms connecting");
	expect_error(&b, "timed out after 300 ms connecting");
	if (took < 290 || took > 3000)
		fail_msg("the timeout fired after %llu ms", (unsigned long long)took);
	px_pgctl_close(c);
	close(fd);
	finish_loop(&loop);
}

static void test_query_timeout(void **state)
{
	(void)state;
	NEED_POSTGRES();
	uv_loop_t loop;
	uv_loop_init(&loop);
	px_pgctl *c = connect_pg(&loop, 400);
	outcome a = {0}, b = {0}, d = {0};
	assert_int_equal(px_pgctl_query(c, "SELECT 1", on_result, &a), 0);
	assert_int_equal(px_pgctl_query(c, "SELECT pg_sleep(5)", on_result, &b), 0);
	assert_int_equal(px_pgctl_query(c, "SELECT 3", on_result, &d), 0);
	uint64_t t0 = mono_ms();
	assert_true(run_until(&loop, &d.calls, 1, 5000));
	assert_true(a.ok && a.calls == 1);
	expect_error(&b, "timed out after 400 ms waiting for a query");
	expect_error(&d, "timed out");
	assert_true(mono_ms() - t0 < 3000);
	assert_true(px_pgctl_failed(c));
	px_pgctl_close(c);
	finish_loop(&loop);
}

/* Close with queued queries: before the connect completes, and from inside
 * the callback of a running query (a nested close must not double-close). */
static void test_close_with_queued(void **state)
{
	(void)state;
	NEED_POSTGRES();
	uv_loop_t loop;
	uv_loop_init(&loop);
	px_pgctl *c = connect_pg(&loop, 5000);
	outcome q[3] = {{0}};
	for (int i = 0; i < 3; i++)
		assert_int_equal(px_pgctl_query(c, "SELECT 1", on_result, &q[i]), 0);
	q[1].close_me = c; /* closing again from a callback run by close */
	px_pgctl_close(c);
	for (int i = 0; i < 3; i++)
		expect_error(&q[i], "closed");
	uv_run(&loop, UV_RUN_DEFAULT);

	c = connect_pg(&loop, 5000);
	outcome r[4] = {{0}};
	for (int i = 0; i < 4; i++)
		assert_int_equal(px_pgctl_query(c, i == 1 ? "SELECT pg_sleep(0.2)" : "SELECT 1", on_result, &r[i]), 0);
	r[1].close_me = c; /* the second query's callback closes the connection */
	r[3].close_me = c; /* and a queued one's callback closes it once more */
	assert_true(run_until(&loop, &r[3].calls, 1, 5000));
	assert_true(r[0].ok && r[1].ok);
	expect_error(&r[2], "closed");
	expect_error(&r[3], "closed");
	uv_run(&loop, UV_RUN_DEFAULT);
	for (int i = 0; i < 4; i++)
		assert_int_equal(r[i].calls, 1);
	finish_loop(&loop);
}

/* The server ends the backend: a queued query fails, once. */
static void test_backend_terminated(void **state)
{
	(void)state;
	NEED_POSTGRES();
	uv_loop_t loop;
	uv_loop_init(&loop);
	px_pgctl *victim = connect_pg(&loop, 5000);
	px_pgctl *killer = connect_pg(&loop, 5000);
	outcome pid = {0}, killed = {0};
	assert_int_equal(px_pgctl_query(victim, "SELECT pg_backend_pid()", on_result, &pid), 0);
	assert_true(run_until(&loop, &pid.calls, 1, 5000));
	char sql[128];
	snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend(%s)", pid.value);
	assert_int_equal(px_pgctl_query(killer, sql, on_result, &killed), 0);
	assert_true(run_until(&loop, &killed.calls, 1, 5000));
	assert_string_equal(killed.value, "t");
	/* The idle connection reads, so it notices the server going away. */
	uint64_t deadline = mono_ms() + 5000;
	int failed = 0;
	while (!failed && mono_ms() < deadline) {
		int zero = 0;
		run_until(&loop, &zero, 1, 20);
		failed = px_pgctl_failed(victim);
	}
	assert_true(failed);
	outcome after = {0};
	assert_int_equal(px_pgctl_query(victim, "SELECT 1", on_result, &after), -1);
	assert_int_equal(after.calls, 0);
	px_pgctl_close(victim);
	px_pgctl_close(killer);
	finish_loop(&loop);
}

static void on_other_readable(uv_poll_t *h, int status, int events)
{
	int *calls = h->data;
	if (status == 0 && (events & UV_READABLE))
		(*calls)++;
	uv_poll_stop(h);
}

/* libpq closes its socket by itself when the server goes away; the number
 * is then reused by someone else's handle.  Closing the pgctl afterwards
 * must not unregister that handle from the loop (nor make libuv abort). */
static void test_fd_reuse_after_server_close(void **state)
{
	(void)state;
	NEED_POSTGRES();
	uv_loop_t loop;
	uv_loop_init(&loop);
	px_pgctl *victim = connect_pg(&loop, 5000);
	px_pgctl *killer = connect_pg(&loop, 5000);
	outcome pid = {0}, killed = {0};
	assert_int_equal(px_pgctl_query(victim, "SELECT pg_backend_pid()", on_result, &pid), 0);
	assert_true(run_until(&loop, &pid.calls, 1, 5000));
	char sql[128];
	snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend(%s)", pid.value);
	assert_int_equal(px_pgctl_query(killer, sql, on_result, &killed), 0);
	assert_true(run_until(&loop, &killed.calls, 1, 5000));
	uint64_t deadline = mono_ms() + 5000;
	while (!px_pgctl_failed(victim) && mono_ms() < deadline) {
		int zero = 0;
		run_until(&loop, &zero, 1, 20);
	}
	assert_true(px_pgctl_failed(victim));
	/* libpq's descriptor is closed now: the next socket likely gets it */
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	uv_poll_t other;
	int other_calls = 0;
	assert_int_equal(uv_poll_init(&loop, &other, sv[0]), 0);
	other.data = &other_calls;
	assert_int_equal(uv_poll_start(&other, UV_READABLE, on_other_readable), 0);
	uv_run(&loop, UV_RUN_NOWAIT); /* registers sv[0] with epoll */
	px_pgctl_close(victim);
	px_pgctl_close(killer);
	uv_run(&loop, UV_RUN_NOWAIT);
	assert_int_equal(write(sv[1], "x", 1), 1);
	assert_true(run_until(&loop, &other_calls, 1, 3000));
	uv_close((uv_handle_t *)&other, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	close(sv[0]);
	close(sv[1]);
	finish_loop(&loop);
}

/* ---------------------------------------------------------------- volatility */

static void run_for(uv_loop_t *loop, unsigned ms)
{
	int zero = 0;
	run_until(loop, &zero, 1, ms);
}

static cf_config *vol_config(const char *port, const char *user)
{
	cf_config *cfg = cf_config_new();
	cf_error err;
	char addr[64];
	snprintf(addr, sizeof(addr), "127.0.0.1:%s", port);
	assert_int_equal(cf_config_set(cfg, "backend", addr, &err), 0);
	assert_int_equal(cf_config_set(cfg, "control_user", user, &err), 0);
	assert_int_equal(cf_config_set(cfg, "connect_timeout", "2s", &err), 0);
	return cfg;
}

/* Ask (which drives loads and retries) until db is loaded. */
static bool vol_wait_loaded(uv_loop_t *loop, px_volatility *v, const char *db, const char *user, unsigned ms)
{
	uint64_t deadline = mono_ms() + ms;
	while (mono_ms() < deadline) {
		px_volatility_of(v, db, user, "now");
		if (px_volatility_loaded(v, db))
			return true;
		run_for(loop, 20);
	}
	return false;
}

/* One statement on a connection of its own; the first value. */
static void sql_value(uv_loop_t *loop, const char *sql, char *out, size_t size)
{
	px_pgctl *c = connect_pg(loop, 5000);
	outcome o = {0};
	assert_int_equal(px_pgctl_query(c, sql, on_result, &o), 0);
	assert_true(run_until(loop, &o.calls, 1, 5000));
	if (!o.ok)
		fail_msg("%s: %s", sql, o.err);
	snprintf(out, size, "%s", o.value);
	px_pgctl_close(c);
}

static int control_connections(uv_loop_t *loop)
{
	char n[64];
	sql_value(loop, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgfold-control'", n,
		  sizeof(n));
	return atoi(n);
}

static void test_volatility_lookup(void **state)
{
	(void)state;
	NEED_POSTGRES();
	uv_loop_t loop;
	uv_loop_init(&loop);
	cf_config *cfg = vol_config(pg.port, "postgres");
	px_volatility *v = px_volatility_new(&loop);
	px_volatility_configure(v, cfg);
	assert_int_equal(px_volatility_of(v, "postgres", NULL, "now"), 'v'); /* starts the load */
	assert_false(px_volatility_loaded(v, "postgres"));
	assert_true(vol_wait_loaded(&loop, v, "postgres", NULL, 5000));
	char long_name[300];
	memset(long_name, 'f', sizeof(long_name) - 1);
	long_name[sizeof(long_name) - 1] = '\0';
	static const struct {
		const char *fn;
		char want;
	} cases[] = {
		{"now", 's'},           {"random", 'v'},         {"lower", 'i'},          {"pg_catalog.now", 's'},
		{"PG_CATALOG.NOW", 's'}, {"pg_catalog.random", 'v'}, {"no_such_fn", 'v'},  {"", 'v'},
		{"public.now", 'v'},    {"pg_catalog.", 'v'},    {".now", 'v'},           {"count", 'i'},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char got = px_volatility_of(v, "postgres", NULL, cases[i].fn);
		if (got != cases[i].want)
			fail_msg("\"%s\": got '%c', want '%c'", cases[i].fn, got, cases[i].want);
	}
	assert_int_equal(px_volatility_of(v, "postgres", NULL, long_name), 'v');
	assert_int_equal(px_volatility_of(v, NULL, NULL, "now"), 'v');
	assert_int_equal(px_volatility_of(v, "postgres", NULL, NULL), 'v');
	assert_int_equal(px_volatility_of(v, "", NULL, "now"), 'v');
	long_name[64] = '\0'; /* longer than a database name can be: not tracked */
	assert_int_equal(px_volatility_of(v, long_name, NULL, "now"), 'v');
	assert_false(px_volatility_loaded(v, long_name));
	assert_int_equal(px_volatility_of(NULL, "postgres", NULL, "now"), 'v');
	px_volatility_close(v);
	px_volatility_close(v); /* idempotent until the loop ran */
	cf_config_free(cfg);
	finish_loop(&loop);
}

/* control_user empty: nothing loads until a client user is known. */
static void test_volatility_client_user(void **state)
{
	(void)state;
	NEED_POSTGRES();
	uv_loop_t loop;
	uv_loop_init(&loop);
	cf_config *cfg = vol_config(pg.port, "");
	px_volatility *v = px_volatility_new(&loop);
	px_volatility_configure(v, cfg);
	assert_int_equal(px_volatility_of(v, "postgres", NULL, "now"), 'v');
	run_for(&loop, 200);
	assert_false(px_volatility_loaded(v, "postgres"));
	assert_int_equal(control_connections(&loop), 0);
	assert_true(vol_wait_loaded(&loop, v, "postgres", "postgres", 5000));
	assert_int_equal(px_volatility_of(v, "postgres", "someone_else", "lower"), 'i');
	/* a user that cannot log in: that database stays all volatile */
	assert_false(vol_wait_loaded(&loop, v, "template1", "no_such_role", 500));
	assert_int_equal(px_volatility_of(v, "template1", "no_such_role", "lower"), 'v');
	px_volatility_close(v);
	cf_config_free(cfg);
	finish_loop(&loop);
}

/* An idle control connection closes after the linger time; invalidate
 * reconnects and picks up a function created meanwhile, while the old map
 * keeps answering. */
static void test_volatility_linger_and_invalidate(void **state)
{
	(void)state;
	NEED_POSTGRES();
	uv_loop_t loop;
	uv_loop_init(&loop);
	cf_config *cfg = vol_config(pg.port, "postgres");
	px_volatility *v = px_volatility_new(&loop);
	px_volatility_set_timing(v, 150, 0);
	px_volatility_configure(v, cfg);
	assert_true(vol_wait_loaded(&loop, v, "postgres", NULL, 5000));
	assert_int_equal(control_connections(&loop), 1);
	run_for(&loop, 700);
	assert_int_equal(control_connections(&loop), 0);

	char out[64];
	sql_value(&loop, "CREATE FUNCTION vt_late() RETURNS int IMMUTABLE LANGUAGE sql AS 'SELECT 1'", out,
		  sizeof(out));
	assert_int_equal(px_volatility_of(v, "postgres", NULL, "vt_late"), 'v');
	px_volatility_invalidate(v, "postgres");
	px_volatility_invalidate(v, "postgres"); /* coalesced */
	px_volatility_invalidate(v, "not_tracked");
	assert_true(px_volatility_loaded(v, "postgres"));
	assert_int_equal(px_volatility_of(v, "postgres", NULL, "now"), 's'); /* the old map meanwhile */
	uint64_t deadline = mono_ms() + 5000;
	while (px_volatility_of(v, "postgres", NULL, "vt_late") != 'i' && mono_ms() < deadline)
		run_for(&loop, 20);
	assert_int_equal(px_volatility_of(v, "postgres", NULL, "public.vt_late"), 'i');
	assert_true(control_connections(&loop) <= 1);
	sql_value(&loop, "DROP FUNCTION vt_late()", out, sizeof(out));
	px_volatility_close(v);
	cf_config_free(cfg);
	finish_loop(&loop);
}

/* The backend moves: maps are dropped (another server's catalog); moving
 * back loads again at once. */
static void test_volatility_backend_moved(void **state)
{
	(void)state;
	NEED_POSTGRES();
	uv_loop_t loop;
	uv_loop_init(&loop);
	cf_config *cfg = vol_config(pg.port, "postgres");
	char nowhere[16];
	snprintf(nowhere, sizeof(nowhere), "%d", free_port());
	cf_config *elsewhere = vol_config(nowhere, "postgres");
	px_volatility *v = px_volatility_new(&loop);
	px_volatility_configure(v, cfg);
	assert_true(vol_wait_loaded(&loop, v, "postgres", NULL, 5000));
	px_volatility_configure(v, elsewhere);
	assert_false(px_volatility_loaded(v, "postgres"));
	assert_int_equal(px_volatility_of(v, "postgres", NULL, "lower"), 'v');
	assert_false(vol_wait_loaded(&loop, v, "postgres", NULL, 300));
	px_volatility_configure(v, cfg);
	assert_true(vol_wait_loaded(&loop, v, "postgres", NULL, 5000));
	assert_int_equal(px_volatility_of(v, "postgres", NULL, "lower"), 'i');
	px_volatility_close(v);
	cf_config_free(elsewhere);
	cf_config_free(cfg);
	finish_loop(&loop);
}

/* A full table answers 'v' for a new database until one of the tracked
 * ones has been unused for the eviction time. */
static void test_volatility_eviction(void **state)
{
	(void)state;
	NEED_POSTGRES();
	uv_loop_t loop;
	uv_loop_init(&loop);
	cf_config *cfg = vol_config(pg.port, "postgres");
	px_volatility *v = px_volatility_new(&loop);
	px_volatility_set_timing(v, 0, 400);
	px_volatility_configure(v, cfg);
	char name[32];
	for (int i = 0; i < PX_VOLATILITY_MAX_DATABASES; i++) {
		snprintf(name, sizeof(name), "nodb_%d", i);
		assert_int_equal(px_volatility_of(v, name, NULL, "now"), 'v');
	}
	assert_false(vol_wait_loaded(&loop, v, "postgres", NULL, 200)); /* full: not tracked */
	assert_true(vol_wait_loaded(&loop, v, "postgres", NULL, 5000)); /* room made after 400 ms */
	assert_int_equal(px_volatility_of(v, "postgres", NULL, "lower"), 'i');
	px_volatility_close(v);
	cf_config_free(cfg);
	finish_loop(&loop);
}

/* Close while connecting, while the query runs, and with a lingering
 * connection: everything is freed once the loop ran. */
static void test_volatility_close_while_loading(void **state)
{
	(void)state;
	NEED_POSTGRES();
	cf_config *cfg = vol_config(pg.port, "postgres");
	for (unsigned wait_ms = 0; wait_ms <= 60; wait_ms += 3) {
		uv_loop_t loop;
		uv_loop_init(&loop);
		px_volatility *v = px_volatility_new(&loop);
		px_volatility_configure(v, cfg);
		px_volatility_of(v, "postgres", NULL, "now");
		px_volatility_of(v, "template1", NULL, "now");
		if (wait_ms)
			run_for(&loop, wait_ms);
		px_volatility_close(v);
		finish_loop(&loop);
	}
	cf_config_free(cfg);
}

int main(void)
{
	if (getenv("PGFOLD_TEST_DEBUG"))
		pf_log_set_level(PF_LOG_DEBUG);
	else
		pf_log_set_level(PF_LOG_ERROR);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_queries_in_order),  cmocka_unit_test(test_connect_refused),
		cmocka_unit_test(test_connect_no_database), cmocka_unit_test(test_bad_parameters),
		cmocka_unit_test(test_connect_timeout),   cmocka_unit_test(test_query_timeout),
		cmocka_unit_test(test_close_with_queued), cmocka_unit_test(test_backend_terminated),
		cmocka_unit_test(test_fd_reuse_after_server_close),
		cmocka_unit_test(test_volatility_lookup), cmocka_unit_test(test_volatility_client_user),
		cmocka_unit_test(test_volatility_linger_and_invalidate), cmocka_unit_test(test_volatility_backend_moved),
		cmocka_unit_test(test_volatility_eviction), cmocka_unit_test(test_volatility_close_while_loading),
	};
	return cmocka_run_group_tests(tests, start_postgres, stop_postgres);
}
