/*
 * test_redis.c — the Redis connection manager (cache/redis.c) against a real
 * redis-server that each test starts itself on a free port (Debian's
 * /usr/bin/redis-server, no persistence), then stops, freezes (SIGSTOP),
 * thaws (SIGCONT), kills and restarts to drive the connection through its
 * states, and with requirepass or an ACL user for AUTH; a pool of
 * connections is checked with CLIENT INFO (which connection, which database,
 * which user).  Every test ends by closing the qc_redis and checking that the
 * loop ran out of handles and uv_loop_close() returned 0; run under ASan
 * (build-asan/) that also covers leaks.
 *
 * Timing assertions use generous bounds only.  Tests are skipped when
 * redis-server is not installed.  PGFOLD_TEST_DEBUG=1 shows debug logs.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "../../cache/redis.h"
#include "../../common/log.h"
#include "redis_server.h"

/* ---------------------------------------------------------------- fixture */

typedef struct fixture {
	uv_loop_t loop;
	loop_ticker tick; /* wakes uv_run(ONCE) every few ms while a test waits */
	redis_server srv; /* the throwaway redis-server */
	qc_redis *r;
} fixture;

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	ticking_loop_init(&f->loop, &f->tick);
	redis_server_init(&f->srv, "/tmp/pgfold-test-redis-XXXXXX");
	*state = f;
	return 0;
}

/* Close the client and the tick, run the loop until it has no handles left
 * (bounded), and close it: 0 means every handle was closed and freed. */
static int finish_loop(fixture *f)
{
	if (!f->tick.open)
		return 0;
	if (f->r) {
		qc_redis_close(f->r);
		f->r = NULL;
	}
	return ticking_loop_close(&f->loop, &f->tick);
}

static int teardown(void **state)
{
	fixture *f = *state;
	int rc = finish_loop(f);
	redis_server_cleanup(&f->srv);
	free(f);
	if (rc != 0)
		fprintf(stderr, "teardown: uv_loop_close() = %d (%s)\n", rc, uv_strerror(rc));
	return rc == 0 ? 0 : -1;
}

static bool is_up(void *p) { fixture *f = p; return qc_redis_state(f->r) == QC_STATE_UP; }
static bool is_down(void *p) { fixture *f = p; return qc_redis_state(f->r) == QC_STATE_DOWN; }
static bool not_up(void *p) { fixture *f = p; return qc_redis_state(f->r) != QC_STATE_UP; }
static bool has_late_reply(void *p) { fixture *f = p; return qc_redis_counters_get(f->r)->late_replies >= 1; }

/* Run the loop until pred(f) or timeout_ms passed; returns pred(f). */
static bool run_until(fixture *f, bool (*pred)(void *), unsigned timeout_ms)
{
	return loop_run_until(&f->loop, pred, f, timeout_ms);
}

static void run_for(fixture *f, unsigned ms)
{
	loop_run_for(&f->loop, ms);
}

static void expect_state(fixture *f, qc_state want, unsigned timeout_ms)
{
	bool (*pred)(void *) = want == QC_STATE_UP ? is_up : is_down;
	if (!run_until(f, pred, timeout_ms))
		fail_msg("state %s after %u ms, want %s (last error: %s)", qc_redis_state_name(qc_redis_state(f->r)),
			 timeout_ms, qc_redis_state_name(want), qc_redis_last_error(f->r));
}

/* ------------------------------------------------------------- callbacks */

typedef struct result {
	int calls;
	int status;
	int type; /* redisReply type, -1 without a reply */
	char str[64];
	size_t len;
	uint64_t at_ms;
	/* what to do inside the callback */
	bool close_in_cb;
	bool send_in_cb;
	int send_rc;       /* what qc_redis_command returned inside the callback */
	struct result *next_result;
} result;

static void record(qc_redis *r, int status, const struct redisReply *reply, void *ctx)
{
	result *res = ctx;
	res->calls++;
	res->status = status;
	res->type = reply ? reply->type : -1;
	res->len = 0;
	res->str[0] = '\0';
	if (reply && reply->str) {
		res->len = reply->len;
		memcpy(res->str, reply->str, reply->len < sizeof(res->str) - 1 ? reply->len : sizeof(res->str) - 1);
	}
	res->at_ms = mono_ms();
	if (res->send_in_cb)
		res->send_rc = qc_redis_command(r, record, res->next_result, "GET chained");
	if (res->close_in_cb) {
		qc_redis_close(r);
		qc_redis_close(r); /* idempotent */
	}
}

static bool called_flag(const result *res) { return res->calls > 0; }

static void wait_called(fixture *f, result *res, unsigned timeout_ms)
{
	uint64_t deadline = mono_ms() + timeout_ms;
	while (!called_flag(res) && mono_ms() < deadline)
		uv_run(&f->loop, UV_RUN_ONCE);
	if (!called_flag(res))
		fail_msg("no callback within %u ms (state %s)", timeout_ms, qc_redis_state_name(qc_redis_state(f->r)));
}

/* SET then GET a fresh value: Redis answers through the client. */
static void roundtrip(fixture *f, const char *key)
{
	result set = {0}, get = {0};
	char value[32];
	snprintf(value, sizeof(value), "v%llu", (unsigned long long)mono_ms());
	assert_int_equal(qc_redis_command(f->r, record, &set, "SET %s %s", key, value), 0);
	assert_int_equal(qc_redis_command(f->r, record, &get, "GET %s", key), 0);
	wait_called(f, &get, 5000);
	assert_int_equal(set.calls, 1);
	assert_int_equal(set.status, QC_OK);
	assert_int_equal(set.type, REDIS_REPLY_STATUS);
	assert_string_equal(set.str, "OK");
	assert_int_equal(get.calls, 1);
	assert_int_equal(get.status, QC_OK);
	assert_int_equal(get.type, REDIS_REPLY_STRING);
	assert_string_equal(get.str, value);
}

/* ----------------------------------------------------------------- tests */

/* A command larger than the socket takes at once: the end-of-turn write
 * leaves the rest, which goes out when the socket can take it (the only
 * case in which the connection waits for writability), then the next
 * commands follow on the same connection. */
static void test_large_command_written_in_parts(void **state)
{
	fixture *f = *state;
	redis_server_require();
	redis_server_start(&f->srv, NULL);
	cf_addr addr = tcp_addr("127.0.0.1", f->srv.port);
	f->r = qc_redis_new(&f->loop, &addr, 10000);
	assert_non_null(f->r);
	expect_state(f, QC_STATE_UP, 5000);
	size_t big = 16u << 20;
	char *value = malloc(big);
	assert_non_null(value);
	for (size_t i = 0; i < big; i++)
		value[i] = (char)('a' + i % 26);
	result set = {0}, len = {0};
	const char *argv[] = {"SET", "big", value};
	const size_t lens[] = {3, 3, big};
	assert_int_equal(qc_redis_command_argv(f->r, record, &set, 3, argv, lens), 0);
	assert_int_equal(qc_redis_command(f->r, record, &len, "GETRANGE big %llu -1", (unsigned long long)(big - 3)), 0);
	char tail[4] = {value[big - 3], value[big - 2], value[big - 1], '\0'};
	free(value);
	wait_called(f, &len, 10000);
	assert_int_equal(set.status, QC_OK);
	assert_string_equal(set.str, "OK");
	assert_int_equal(len.status, QC_OK);
	assert_string_equal(len.str, tail); /* all of it arrived */
	roundtrip(f, "after-big");
}

static void test_roundtrip(void **state)
{
	fixture *f = *state;
	redis_server_require();
	redis_server_start(&f->srv, NULL);
	cf_addr addr = tcp_addr("127.0.0.1", f->srv.port);
	f->r = qc_redis_new(&f->loop, &addr, 1000);
	assert_non_null(f->r);
	assert_int_equal(qc_redis_state(f->r), QC_STATE_CONNECTING);
	result early = {0};
	assert_int_equal(qc_redis_command(f->r, record, &early, "PING"), QC_DISCONNECTED);
	expect_state(f, QC_STATE_UP, 5000);
	char want_addr[32];
	snprintf(want_addr, sizeof(want_addr), "127.0.0.1:%d", f->srv.port);
	assert_string_equal(qc_redis_address(f->r), want_addr);
	assert_true(qc_redis_counters_get(f->r)->ping_us > 0);

	roundtrip(f, "k1");

	/* argv form, binary-safe */
	result set = {0}, get = {0}, chained = {0};
	const char *sargv[] = {"SET", "bin", "a\0b"};
	const size_t slen[] = {3, 3, 3};
	assert_int_equal(qc_redis_command_argv(f->r, record, &set, 3, sargv, slen), 0);
	const char *gargv[] = {"GET", "bin"};
	get.send_in_cb = true; /* a command sent from inside a callback */
	get.next_result = &chained;
	assert_int_equal(qc_redis_command_argv(f->r, record, &get, 2, gargv, NULL), 0);
	wait_called(f, &chained, 5000);
	assert_int_equal(set.status, QC_OK);
	assert_int_equal(get.status, QC_OK);
	assert_int_equal(get.len, 3);
	assert_memory_equal(get.str, "a\0b", 3);
	assert_int_equal(get.send_rc, 0);
	assert_int_equal(chained.calls, 1);
	assert_int_equal(chained.status, QC_OK);
	assert_int_equal(chained.type, REDIS_REPLY_NIL);

	/* an error answer is an answer: QC_OK with an error reply, still up */
	result incr = {0};
	assert_int_equal(qc_redis_command(f->r, record, &incr, "INCR %s", "bin"), 0);
	wait_called(f, &incr, 5000);
	assert_int_equal(incr.status, QC_OK);
	assert_int_equal(incr.type, REDIS_REPLY_ERROR);
	assert_int_equal(qc_redis_state(f->r), QC_STATE_UP);

	/* refused arguments: no callback */
	result bad = {0};
	assert_int_equal(qc_redis_command_argv(f->r, record, &bad, 0, gargv, NULL), QC_EINVAL);

	/* fire and forget */
	assert_int_equal(qc_redis_command(f->r, NULL, NULL, "SET %s %s", "nocb", "1"), 0);

	/* health PINGs keep it up without traffic */
	run_for(f, 2500);
	assert_int_equal(qc_redis_state(f->r), QC_STATE_UP);

	const qc_redis_counters *c = qc_redis_counters_get(f->r);
	print_message("counters: commands %llu errors %llu timeouts %llu reconnects %llu ping_us %llu\n",
		      (unsigned long long)c->commands, (unsigned long long)c->errors,
		      (unsigned long long)c->timeouts, (unsigned long long)c->reconnects,
		      (unsigned long long)c->ping_us);
	assert_int_equal(c->commands, 9);
	assert_int_equal(c->errors, 2); /* the early PING and the argc 0 */
	assert_int_equal(c->timeouts, 0);
	assert_int_equal(c->reconnects, 0);
	assert_int_equal(bad.calls + early.calls, 0);
	assert_int_equal(finish_loop(f), 0);
}

/* A host name is resolved (uv_getaddrinfo) before connecting. */
static void test_host_name(void **state)
{
	fixture *f = *state;
	redis_server_require();
	redis_server_start(&f->srv, NULL);
	cf_addr addr = tcp_addr("localhost", f->srv.port);
	f->r = qc_redis_new(&f->loop, &addr, 1000);
	expect_state(f, QC_STATE_UP, 5000);
	roundtrip(f, "k2");
	assert_int_equal(finish_loop(f), 0);
}

static void test_stop_timeout_cont(void **state)
{
	fixture *f = *state;
	redis_server_require();
	redis_server_start(&f->srv, NULL);
	cf_addr addr = tcp_addr("127.0.0.1", f->srv.port);
	f->r = qc_redis_new(&f->loop, &addr, 300);
	expect_state(f, QC_STATE_UP, 5000);
	const qc_redis_counters *c = qc_redis_counters_get(f->r);

	/* frozen: the command times out after ~300 ms, once; thawed before
	 * the breaker opens, its late answer is dropped */
	redis_server_signal(&f->srv, SIGSTOP);
	result slow = {0};
	uint64_t t0 = mono_ms();
	assert_int_equal(qc_redis_command(f->r, record, &slow, "SET %s %s", "slow", "1"), 0);
	wait_called(f, &slow, 5000);
	uint64_t took = slow.at_ms - t0;
	print_message("timeout after %llu ms\n", (unsigned long long)took);
	assert_int_equal(slow.status, QC_TIMEOUT);
	assert_true(took >= 250 && took <= 3000);
	assert_int_equal(c->timeouts, 1);
	redis_server_signal(&f->srv, SIGCONT);
	if (qc_redis_state(f->r) == QC_STATE_UP) /* same connection: the answer comes, late */
		assert_true(run_until(f, has_late_reply, 5000));
	expect_state(f, QC_STATE_UP, 10000);
	roundtrip(f, "k3");
	assert_int_equal(slow.calls, 1);

	/* frozen again: timeouts until the breaker opens; every command gets
	 * exactly one outcome; then commands are refused without a callback */
	redis_server_signal(&f->srv, SIGSTOP);
	enum { MAXCMDS = 64 };
	static result cmds[MAXCMDS];
	memset(cmds, 0, sizeof(cmds));
	int sent = 0;
	uint64_t deadline = mono_ms() + 15000;
	while (qc_redis_state(f->r) != QC_STATE_DOWN && mono_ms() < deadline && sent < MAXCMDS) {
		if (qc_redis_state(f->r) == QC_STATE_UP && (sent == 0 || cmds[sent - 1].calls > 0)) {
			int rc = qc_redis_command(f->r, record, &cmds[sent], "GET %s", "k3");
			assert_int_equal(rc, 0);
			sent++;
		}
		uv_run(&f->loop, UV_RUN_ONCE);
	}
	assert_int_equal(qc_redis_state(f->r), QC_STATE_DOWN);
	print_message("down after %d command(s); last error: %s\n", sent, qc_redis_last_error(f->r));
	assert_true(sent >= 1);
	run_for(f, 100);
	for (int i = 0; i < sent; i++) {
		assert_int_equal(cmds[i].calls, 1);
		assert_true(cmds[i].status == QC_TIMEOUT || cmds[i].status == QC_DISCONNECTED);
	}
	result refused = {0};
	uint64_t t1 = mono_ms();
	assert_int_equal(qc_redis_command(f->r, record, &refused, "GET %s", "k3"), QC_DOWN);
	assert_true(mono_ms() - t1 < 50);
	run_for(f, 200);
	assert_int_equal(refused.calls, 0);

	/* thawed: the reconnect probe finds it and it is up again */
	redis_server_signal(&f->srv, SIGCONT);
	expect_state(f, QC_STATE_UP, 15000);
	roundtrip(f, "k4");
	assert_true(c->reconnects >= 1);
	print_message("late replies %llu\n", (unsigned long long)c->late_replies);
	assert_int_equal(finish_loop(f), 0);
}

static void test_kill_restart(void **state)
{
	fixture *f = *state;
	redis_server_require();
	redis_server_start(&f->srv, NULL);
	cf_addr addr = tcp_addr("127.0.0.1", f->srv.port);
	f->r = qc_redis_new(&f->loop, &addr, 300);
	expect_state(f, QC_STATE_UP, 5000);
	roundtrip(f, "k5");

	redis_server_kill(&f->srv);
	assert_true(run_until(f, not_up, 5000));
	result refused = {0};
	int rc = qc_redis_command(f->r, record, &refused, "GET %s", "k5");
	assert_true(rc == QC_DISCONNECTED || rc == QC_DOWN);
	expect_state(f, QC_STATE_DOWN, 10000);
	print_message("down: %s\n", qc_redis_last_error(f->r));
	assert_int_equal(qc_redis_command(f->r, record, &refused, "GET %s", "k5"), QC_DOWN);
	run_for(f, 300);
	assert_int_equal(refused.calls, 0);
	assert_int_equal(qc_redis_state(f->r), QC_STATE_DOWN);

	redis_server_start(&f->srv, NULL); /* same port */
	expect_state(f, QC_STATE_UP, 15000);
	roundtrip(f, "k6");
	assert_true(qc_redis_counters_get(f->r)->reconnects >= 3);
	assert_int_equal(finish_loop(f), 0);
}

/* close with commands waiting on a frozen server: each callback once, with
 * QC_CLOSED, before qc_redis_close returns; none afterwards */
static void test_close_pending(void **state)
{
	fixture *f = *state;
	redis_server_require();
	redis_server_start(&f->srv, NULL);
	cf_addr addr = tcp_addr("127.0.0.1", f->srv.port);
	f->r = qc_redis_new(&f->loop, &addr, 5000);
	expect_state(f, QC_STATE_UP, 5000);
	redis_server_signal(&f->srv, SIGSTOP);
	result res[5], chained = {0};
	memset(res, 0, sizeof(res));
	res[2].send_in_cb = true; /* sending while closing is refused */
	res[2].next_result = &chained;
	res[3].close_in_cb = true; /* closing again from a callback is harmless */
	for (int i = 0; i < 5; i++)
		assert_int_equal(qc_redis_command(f->r, record, &res[i], "SET k%d %d", i, i), 0);
	run_for(f, 50); /* written to the socket */
	qc_redis_close(f->r);
	qc_redis_close(f->r);
	f->r = NULL;
	for (int i = 0; i < 5; i++) {
		assert_int_equal(res[i].calls, 1);
		assert_int_equal(res[i].status, QC_CLOSED);
	}
	assert_int_equal(res[2].send_rc, QC_CLOSED);
	assert_int_equal(chained.calls, 0);
	redis_server_signal(&f->srv, SIGCONT);
	assert_int_equal(finish_loop(f), 0);
	for (int i = 0; i < 5; i++)
		assert_int_equal(res[i].calls, 1);
}

/* close from inside a reply callback (hiredis defers the free): the other
 * waiting commands get QC_CLOSED once */
static void test_close_in_callback(void **state)
{
	fixture *f = *state;
	redis_server_require();
	redis_server_start(&f->srv, NULL);
	cf_addr addr = tcp_addr("127.0.0.1", f->srv.port);
	f->r = qc_redis_new(&f->loop, &addr, 1000);
	expect_state(f, QC_STATE_UP, 5000);
	result res[3];
	memset(res, 0, sizeof(res));
	res[0].close_in_cb = true;
	for (int i = 0; i < 3; i++)
		assert_int_equal(qc_redis_command(f->r, record, &res[i], "INCR n"), 0);
	wait_called(f, &res[0], 5000);
	f->r = NULL; /* closed by the callback */
	assert_int_equal(res[0].status, QC_OK);
	for (int i = 1; i < 3; i++) {
		assert_int_equal(res[i].calls, 1);
		assert_int_equal(res[i].status, QC_CLOSED);
	}
	assert_int_equal(finish_loop(f), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(res[i].calls, 1);
}

/* Nothing listens: CONNECTING, then DOWN after the threshold; commands are
 * refused at once.  Closing while a retry or a connect is pending is clean. */
static void test_nothing_listening(void **state)
{
	fixture *f = *state;
	cf_addr addr = tcp_addr("127.0.0.1", f->srv.port);
	f->r = qc_redis_new(&f->loop, &addr, 1000);
	assert_int_equal(qc_redis_state(f->r), QC_STATE_CONNECTING);
	result res = {0};
	assert_int_equal(qc_redis_command(f->r, record, &res, "PING"), QC_DISCONNECTED);
	uint64_t t0 = mono_ms();
	expect_state(f, QC_STATE_DOWN, 10000);
	print_message("down after %llu ms: %s\n", (unsigned long long)(mono_ms() - t0), qc_redis_last_error(f->r));
	assert_non_null(strstr(qc_redis_last_error(f->r), "refused"));
	assert_int_equal(qc_redis_command(f->r, record, &res, "PING"), QC_DOWN);
	run_for(f, 700);
	assert_int_equal(res.calls, 0);
	assert_int_equal(finish_loop(f), 0);
}

/* Closing right after creating: while connecting, and while resolving. */
static void test_close_at_once(void **state)
{
	fixture *f = *state;
	cf_addr addr = tcp_addr("127.0.0.1", f->srv.port);
	qc_redis *a = qc_redis_new(&f->loop, &addr, 1000);
	cf_addr named = tcp_addr("localhost", f->srv.port);
	qc_redis *b = qc_redis_new(&f->loop, &named, 1000);
	assert_non_null(a);
	assert_non_null(b);
	qc_redis_close(a);
	qc_redis_close(b);
	cf_addr off;
	memset(&off, 0, sizeof(off));
	assert_null(qc_redis_new(&f->loop, &off, 1000));
	assert_int_equal(qc_redis_state(NULL), QC_STATE_OFF);
	assert_string_equal(qc_redis_state_name(QC_STATE_DOWN), "down");
	assert_string_equal(qc_redis_address(NULL), "off");
	assert_int_equal(qc_redis_counters_get(NULL)->commands, 0);
	assert_int_equal(finish_loop(f), 0);
}

/* ---------------------------------------------------- pool, SELECT, AUTH */

typedef struct info_result {
	int calls;
	int status;
	int type;
	char str[1024];
} info_result;

static void record_info(qc_redis *r, int status, const struct redisReply *reply, void *ctx)
{
	info_result *res = ctx;
	res->calls++;
	res->status = status;
	res->type = reply ? reply->type : -1;
	snprintf(res->str, sizeof(res->str), "%.*s", reply && reply->str ? (int)reply->len : 0,
		 reply && reply->str ? reply->str : "");
}

/* CLIENT INFO through the pool: the line describing the connection it went on. */
static void client_info(fixture *f, info_result *res)
{
	memset(res, 0, sizeof(*res));
	assert_int_equal(qc_redis_command(f->r, record_info, res, "CLIENT INFO"), 0);
	uint64_t deadline = mono_ms() + 5000;
	while (res->calls == 0 && mono_ms() < deadline)
		uv_run(&f->loop, UV_RUN_ONCE);
	assert_int_equal(res->calls, 1);
	assert_int_equal(res->status, QC_OK);
	if (res->type != REDIS_REPLY_STRING && res->type != REDIS_REPLY_STATUS)
		fail_msg("CLIENT INFO answered type %d: %s", res->type, res->str);
}

static int conn_up_count(fixture *f)
{
	int up = 0;
	for (int i = 0; i < qc_redis_connections(f->r); i++) {
		qc_redis_conn_info ci;
		assert_int_equal(qc_redis_conn_info_get(f->r, i, &ci), 0);
		up += ci.state == QC_STATE_UP;
	}
	return up;
}

static bool all_conns_up(void *p) { fixture *f = p; return conn_up_count(f) == qc_redis_connections(f->r); }

static qc_redis_options pool_options(fixture *f, int connections)
{
	qc_redis_options o = {.addr = tcp_addr("127.0.0.1", f->srv.port), .timeout_ms = 1000, .connections = connections};
	return o;
}

/* Three connections, each its own client in Redis, SELECTed to database 5;
 * commands go round-robin over them; /stats-style info for each. */
static void test_pool_round_robin_select(void **state)
{
	fixture *f = *state;
	redis_server_require();
	redis_server_start(&f->srv, NULL);
	qc_redis_options o = pool_options(f, 3);
	o.database = 5;
	f->r = qc_redis_open(&f->loop, &o);
	assert_non_null(f->r);
	assert_int_equal(qc_redis_connections(f->r), 3);
	assert_int_equal(qc_redis_database(f->r), 5);
	if (!run_until(f, all_conns_up, 5000))
		fail_msg("%d of 3 connections up (last error: %s)", conn_up_count(f), qc_redis_last_error(f->r));
	assert_int_equal(qc_redis_state(f->r), QC_STATE_UP);
	char ids[3][32];
	for (int i = 0; i < 6; i++) {
		info_result res;
		client_info(f, &res);
		if (!strstr(res.str, " db=5 "))
			fail_msg("command %d not on database 5: %s", i, res.str);
		const char *id = strstr(res.str, "id=");
		assert_non_null(id);
		char mine[32];
		snprintf(mine, sizeof(mine), "%.*s", (int)strcspn(id, " "), id);
		if (i < 3) {
			snprintf(ids[i], sizeof(ids[i]), "%s", mine);
			for (int j = 0; j < i; j++)
				if (strcmp(ids[j], mine) == 0)
					fail_msg("commands %d and %d went on the same connection (%s)", j, i, mine);
		} else if (strcmp(ids[i - 3], mine) != 0) {
			fail_msg("command %d on %s, want %s (round-robin)", i, mine, ids[i - 3]);
		}
	}
	for (int i = 0; i < 3; i++) {
		qc_redis_conn_info ci;
		assert_int_equal(qc_redis_conn_info_get(f->r, i, &ci), 0);
		assert_int_equal(ci.commands, 2);
		assert_int_equal(ci.state, QC_STATE_UP);
		assert_true(ci.ping_us > 0);
		assert_string_equal(ci.last_error, "");
	}
	qc_redis_conn_info ci;
	assert_int_equal(qc_redis_conn_info_get(f->r, 3, &ci), -1);
	assert_int_equal(qc_redis_conn_info_get(NULL, 0, &ci), -1);
	assert_int_equal(qc_redis_connections(NULL), 0);

	/* one breaker for the pool: the server goes, the pool goes down; back, all come back */
	redis_server_kill(&f->srv);
	expect_state(f, QC_STATE_DOWN, 10000);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(qc_redis_conn_info_get(f->r, i, &ci), 0);
		assert_int_equal(ci.state, QC_STATE_DOWN);
	}
	result refused = {0};
	assert_int_equal(qc_redis_command(f->r, record, &refused, "PING"), QC_DOWN);
	redis_server_start(&f->srv, NULL);
	if (!run_until(f, all_conns_up, 15000))
		fail_msg("%d of 3 connections up after the restart", conn_up_count(f));
	info_result res;
	client_info(f, &res);
	assert_non_null(strstr(res.str, " db=5 "));
	assert_int_equal(finish_loop(f), 0);
}

static bool last_error_has_wrongpass(void *p)
{
	fixture *f = p;
	return strstr(qc_redis_last_error(f->r), "WRONGPASS") != NULL;
}

static bool last_error_has_noauth(void *p)
{
	fixture *f = p;
	return strstr(qc_redis_last_error(f->r), "NOAUTH") != NULL;
}

/* requirepass: AUTH with the password; a wrong one or none keeps it from
 * ever being up, with the reason (and never the password) in the error. */
static void test_auth_password(void **state)
{
	fixture *f = *state;
	redis_server_require();
	const char *const extra[] = {"--requirepass", "s3cret pass", NULL};
	redis_server_start(&f->srv, extra);
	qc_redis_options o = pool_options(f, 2);
	o.password = "s3cret pass";
	o.database = 2;
	f->r = qc_redis_open(&f->loop, &o);
	if (!run_until(f, all_conns_up, 5000))
		fail_msg("not up with the right password: %s", qc_redis_last_error(f->r));
	info_result res;
	client_info(f, &res);
	assert_non_null(strstr(res.str, " user=default"));
	assert_non_null(strstr(res.str, " db=2 "));
	/* SET, its answer, then GET: commands on two connections are ordered only so */
	result set = {0}, get = {0};
	assert_int_equal(qc_redis_command(f->r, record, &set, "SET %s %s", "authed", "yes"), 0);
	wait_called(f, &set, 5000);
	assert_int_equal(qc_redis_command(f->r, record, &get, "GET %s", "authed"), 0);
	wait_called(f, &get, 5000);
	assert_int_equal(set.status, QC_OK);
	assert_int_equal(get.type, REDIS_REPLY_STRING);
	assert_string_equal(get.str, "yes");
	qc_redis_close(f->r);

	o.password = "wrong";
	f->r = qc_redis_open(&f->loop, &o);
	if (!run_until(f, last_error_has_wrongpass, 5000))
		fail_msg("no WRONGPASS error: %s", qc_redis_last_error(f->r));
	expect_state(f, QC_STATE_DOWN, 5000);
	print_message("wrong password: %s\n", qc_redis_last_error(f->r));
	assert_non_null(strstr(qc_redis_last_error(f->r), "AUTH answered"));
	assert_null(strstr(qc_redis_last_error(f->r), "wrong"));
	qc_redis_conn_info ci;
	assert_int_equal(qc_redis_conn_info_get(f->r, 0, &ci), 0);
	assert_non_null(strstr(ci.last_error, "WRONGPASS"));
	qc_redis_close(f->r);

	o.password = NULL;
	f->r = qc_redis_open(&f->loop, &o);
	if (!run_until(f, last_error_has_noauth, 5000))
		fail_msg("no NOAUTH error: %s", qc_redis_last_error(f->r));
	expect_state(f, QC_STATE_DOWN, 5000);
	assert_int_equal(finish_loop(f), 0);
}

/* A Redis 6 ACL user: AUTH user password. */
static void test_auth_acl_user(void **state)
{
	fixture *f = *state;
	redis_server_require();
	const char *const extra[] = {"--user", "pgfold", "on", ">pw-1", "~*", "&*", "+@all", NULL};
	redis_server_start(&f->srv, extra);
	qc_redis_options o = pool_options(f, 1);
	o.username = "pgfold";
	o.password = "pw-1";
	f->r = qc_redis_open(&f->loop, &o);
	expect_state(f, QC_STATE_UP, 5000);
	info_result res;
	client_info(f, &res);
	if (!strstr(res.str, " user=pgfold "))
		fail_msg("not the ACL user: %s", res.str);
	qc_redis_close(f->r);

	o.password = "pw-2";
	f->r = qc_redis_open(&f->loop, &o);
	if (!run_until(f, last_error_has_wrongpass, 5000))
		fail_msg("no WRONGPASS error: %s", qc_redis_last_error(f->r));
	assert_int_equal(finish_loop(f), 0);
}

/* ------------------------------------------------------ scripts (EVAL) */

static const char S_ECHO[] = "return {#KEYS, #ARGV, KEYS[1] or '', KEYS[2] or '', ARGV[1] or '', ARGV[2] or ''}";
static const char S_42[] = "return 42";
static const char S_SET[] = "return redis.call('SET', KEYS[1], ARGV[1])";
static const char S_PAIR[] = "return {KEYS[1], ARGV[1]}";
static const char S_WRONGTYPE[] = "return redis.call('LPUSH', KEYS[1], 'x')";
static const char S_FAKE_NOSCRIPT[] = "return redis.error_reply('NOSCRIPT from the script')";
/* Busy for ARGV[1] ms (Redis answers nothing else meanwhile); two texts, two SHA-1s. */
#define BUSY_BODY                                                                                                      \
	"local s = redis.call('TIME') local t0 = s[1] * 1000000 + s[2] local t "                                       \
	"repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] - t0 >= tonumber(ARGV[1]) * 1000 return 1"
static const char S_BUSY_A[] = BUSY_BODY " -- a";
static const char S_BUSY_B[] = BUSY_BODY " -- b";

enum { EV_MAX = 8 };

typedef struct eval_result {
	int calls;
	int status;
	int type;                /* redisReply type, -1 without a reply */
	long long integer;
	size_t elements;         /* REDIS_REPLY_ARRAY */
	int etype[EV_MAX];
	long long einteger[EV_MAX];
	char str[EV_MAX][64];    /* [0]: the reply's own string (error, status, string) */
	size_t len[EV_MAX];
	uint64_t at_ms;
	bool close_in_cb;
} eval_result;

static void copy_str(eval_result *res, int i, const redisReply *rep)
{
	res->len[i] = rep->str ? rep->len : 0;
	memset(res->str[i], 0, sizeof(res->str[i]));
	if (rep->str)
		memcpy(res->str[i], rep->str, rep->len < sizeof(res->str[i]) - 1 ? rep->len : sizeof(res->str[i]) - 1);
}

static void record_eval(qc_redis *r, int status, const struct redisReply *reply, void *ctx)
{
	eval_result *res = ctx;
	res->calls++;
	res->status = status;
	res->type = reply ? reply->type : -1;
	res->at_ms = mono_ms();
	if (reply) {
		res->integer = reply->integer;
		copy_str(res, 0, reply);
		res->elements = reply->type == REDIS_REPLY_ARRAY ? reply->elements : 0;
		for (size_t i = 0; i < res->elements && i < EV_MAX; i++) {
			res->etype[i] = reply->element[i]->type;
			res->einteger[i] = reply->element[i]->integer;
			copy_str(res, (int)i, reply->element[i]);
		}
	}
	if (res->close_in_cb)
		qc_redis_close(r);
}

static void wait_eval(fixture *f, eval_result *res, unsigned timeout_ms)
{
	uint64_t deadline = mono_ms() + timeout_ms;
	while (res->calls == 0 && mono_ms() < deadline)
		uv_run(&f->loop, UV_RUN_ONCE);
	if (res->calls == 0)
		fail_msg("no eval callback within %u ms (state %s)", timeout_ms,
			 qc_redis_state_name(qc_redis_state(f->r)));
}

static uint64_t script_loads(fixture *f)
{
	return qc_redis_counters_get(f->r)->script_loads;
}

/* A plain command through the pool, waited for; its answer in res. */
static void command_wait(fixture *f, eval_result *res, int argc, const char **argv)
{
	memset(res, 0, sizeof(*res));
	assert_int_equal(qc_redis_command_argv(f->r, record_eval, res, argc, argv, NULL), 0);
	wait_eval(f, res, 5000);
	assert_int_equal(res->status, QC_OK);
}

typedef struct big_result {
	int calls;
	char str[16384];
} big_result;

static void record_big(qc_redis *r, int status, const struct redisReply *reply, void *ctx)
{
	big_result *res = ctx;
	res->calls++;
	snprintf(res->str, sizeof(res->str), "%.*s", reply && reply->str ? (int)reply->len : 0,
		 reply && reply->str ? reply->str : "");
}

/* calls= of "cmdstat_<name>:" in INFO commandstats; 0 when Redis has no line for it. */
static long cmdstat_calls(fixture *f, const char *name)
{
	static big_result res;
	memset(&res, 0, sizeof(res));
	assert_int_equal(qc_redis_command(f->r, record_big, &res, "INFO commandstats"), 0);
	uint64_t deadline = mono_ms() + 5000;
	while (res.calls == 0 && mono_ms() < deadline)
		uv_run(&f->loop, UV_RUN_ONCE);
	assert_int_equal(res.calls, 1);
	char want[64];
	snprintf(want, sizeof(want), "cmdstat_%s:calls=", name);
	const char *at = strstr(res.str, want);
	return at ? strtol(at + strlen(want), NULL, 10) : 0;
}

/* S_ECHO's answer: {#KEYS, #ARGV, KEYS[1], KEYS[2], ARGV[1], ARGV[2]} ('' for none). */
static void expect_echo(const eval_result *res, int nkeys, int nargs, const char *k1, const char *k2, const char *a1,
			const char *a2)
{
	assert_int_equal(res->calls, 1);
	assert_int_equal(res->status, QC_OK);
	if (res->type != REDIS_REPLY_ARRAY)
		fail_msg("eval answered type %d: %s", res->type, res->str[0]);
	assert_int_equal(res->elements, 6);
	assert_int_equal(res->etype[0], REDIS_REPLY_INTEGER);
	assert_int_equal(res->einteger[0], nkeys);
	assert_int_equal(res->einteger[1], nargs);
	assert_string_equal(res->str[2], k1);
	assert_string_equal(res->str[3], k2);
	assert_string_equal(res->str[4], a1);
	assert_string_equal(res->str[5], a2);
}

static void open_up(fixture *f, unsigned timeout_ms)
{
	cf_addr addr = tcp_addr("127.0.0.1", f->srv.port);
	f->r = qc_redis_new(&f->loop, &addr, timeout_ms);
	assert_non_null(f->r);
	expect_state(f, QC_STATE_UP, 5000);
}

/* EVALSHA first (NOSCRIPT on a new server: EVAL, once), keys and arguments
 * split by nkeys, only EVALSHA once loaded; SCRIPT FLUSH is recovered from;
 * the caller's argv is not needed after the call; more scripts than the SHA
 * table holds. */
static void test_eval(void **state)
{
	fixture *f = *state;
	redis_server_require();
	redis_server_start(&f->srv, NULL);
	open_up(f, 1000);
	assert_int_equal(script_loads(f), 0);

	eval_result e1 = {0}, e2 = {0};
	const char *a1[] = {"k1", "k2", "a1"};
	assert_int_equal(qc_redis_eval(f->r, record_eval, &e1, S_ECHO, 2, 3, a1, NULL), 0);
	assert_int_equal(qc_redis_eval(f->r, record_eval, &e2, S_42, 0, 0, NULL, NULL), 0);
	wait_eval(f, &e1, 5000);
	wait_eval(f, &e2, 5000);
	expect_echo(&e1, 2, 1, "k1", "k2", "a1", "");
	assert_int_equal(e2.type, REDIS_REPLY_INTEGER);
	assert_int_equal(e2.integer, 42);
	assert_int_equal(script_loads(f), 2); /* a new server knows neither */

	/* loaded: EVALSHA only, no text sent again */
	eval_result cfg;
	const char *reset[] = {"CONFIG", "RESETSTAT"};
	command_wait(f, &cfg, 2, reset);
	eval_result e3 = {0}, e4 = {0}, e5 = {0};
	const char *a3[] = {"k1", "a1", "a2"};
	assert_int_equal(qc_redis_eval(f->r, record_eval, &e3, S_ECHO, 1, 3, a3, NULL), 0);
	assert_int_equal(qc_redis_eval(f->r, record_eval, &e4, S_ECHO, 0, 2, a3 + 1, NULL), 0);
	assert_int_equal(qc_redis_eval(f->r, record_eval, &e5, S_42, 0, 0, NULL, NULL), 0);
	wait_eval(f, &e5, 5000);
	expect_echo(&e3, 1, 2, "k1", "", "a1", "a2");
	expect_echo(&e4, 0, 2, "", "", "a1", "a2");
	assert_int_equal(e5.integer, 42);
	assert_int_equal(script_loads(f), 2);
	long evalsha = cmdstat_calls(f, "evalsha"), eval = cmdstat_calls(f, "eval");
	print_message("after RESETSTAT: evalsha %ld, eval %ld\n", evalsha, eval);
	assert_int_equal(evalsha, 3);
	assert_int_equal(eval, 0);

	/* SCRIPT FLUSH: NOSCRIPT, EVAL with the text, one answer; the caller's
	 * argv is overwritten right after the call */
	const char *flush[] = {"SCRIPT", "FLUSH"};
	command_wait(f, &cfg, 2, flush);
	char k[8] = "key", v1[8] = "val1", v2[8] = "val2";
	const char *a6[] = {k, v1, v2};
	eval_result e6 = {0};
	assert_int_equal(qc_redis_eval(f->r, record_eval, &e6, S_ECHO, 1, 3, a6, NULL), 0);
	memset(k, 'X', sizeof(k) - 1);
	memset(v1, 'X', sizeof(v1) - 1);
	memset(v2, 'X', sizeof(v2) - 1);
	wait_eval(f, &e6, 5000);
	expect_echo(&e6, 1, 2, "key", "", "val1", "val2");
	assert_int_equal(script_loads(f), 3);
	assert_int_equal(cmdstat_calls(f, "eval"), 1);
	assert_int_equal(cmdstat_calls(f, "evalsha"), 4);

	/* fire and forget across a NOSCRIPT: the retry is sent all the same */
	command_wait(f, &cfg, 2, flush);
	const char *a7[] = {"ff", "done"};
	assert_int_equal(qc_redis_eval(f->r, NULL, NULL, S_SET, 1, 2, a7, NULL), 0);
	uint64_t deadline = mono_ms() + 5000;
	while (script_loads(f) < 4 && mono_ms() < deadline)
		uv_run(&f->loop, UV_RUN_ONCE);
	assert_int_equal(script_loads(f), 4);
	eval_result get;
	const char *g[] = {"GET", "ff"}; /* same connection, sent after the retry */
	command_wait(f, &get, 2, g);
	assert_string_equal(get.str[0], "done");

	/* more scripts than the SHA table holds: the rest are hashed each call */
	enum { NS = QC_SCRIPT_SHAS + 4 };
	static char scripts[NS][32];
	static eval_result many[2][NS];
	memset(many, 0, sizeof(many));
	for (int i = 0; i < NS; i++)
		snprintf(scripts[i], sizeof(scripts[i]), "return %d", 1000 + i);
	for (int pass = 0; pass < 2; pass++) {
		uint64_t loads = script_loads(f);
		for (int i = 0; i < NS; i++)
			assert_int_equal(qc_redis_eval(f->r, record_eval, &many[pass][i], scripts[i], 0, 0, NULL, NULL), 0);
		wait_eval(f, &many[pass][NS - 1], 5000);
		for (int i = 0; i < NS; i++) {
			assert_int_equal(many[pass][i].calls, 1);
			assert_int_equal(many[pass][i].type, REDIS_REPLY_INTEGER);
			assert_int_equal(many[pass][i].integer, 1000 + i);
		}
		print_message("pass %d: %llu script loads\n", pass, (unsigned long long)(script_loads(f) - loads));
		assert_int_equal(script_loads(f) - loads, pass == 0 ? NS : 0);
	}

	const qc_redis_counters *c = qc_redis_counters_get(f->r);
	assert_int_equal(c->errors, 0);
	assert_int_equal(c->timeouts, 0);
	run_for(f, 100); /* no second callback for anyone */
	assert_int_equal(e1.calls + e2.calls + e3.calls + e4.calls + e5.calls + e6.calls, 6);
	assert_int_equal(finish_loop(f), 0);
}

/* A script's error is an answer, once; a script answering NOSCRIPT itself
 * gets one retry, not a loop; binary-safe keys and arguments; refused
 * arguments. */
static void test_eval_errors(void **state)
{
	fixture *f = *state;
	redis_server_require();
	redis_server_start(&f->srv, NULL);
	open_up(f, 1000);
	eval_result set;
	const char *sv[] = {"SET", "str", "abc"};
	command_wait(f, &set, 3, sv);

	const char *key[] = {"str"};
	for (int i = 0; i < 2; i++) { /* the first after a NOSCRIPT, the second straight from EVALSHA */
		eval_result e = {0};
		assert_int_equal(qc_redis_eval(f->r, record_eval, &e, S_WRONGTYPE, 1, 1, key, NULL), 0);
		wait_eval(f, &e, 5000);
		run_for(f, 50);
		assert_int_equal(e.calls, 1);
		assert_int_equal(e.status, QC_OK);
		assert_int_equal(e.type, REDIS_REPLY_ERROR);
		if (strncmp(e.str[0], "WRONGTYPE", 9) != 0)
			fail_msg("not WRONGTYPE: %s", e.str[0]);
		assert_int_equal(script_loads(f), 1);
	}
	assert_int_equal(qc_redis_state(f->r), QC_STATE_UP);

	for (int i = 0; i < 2; i++) { /* loaded or not, one EVAL retry, then the answer */
		eval_result e = {0};
		assert_int_equal(qc_redis_eval(f->r, record_eval, &e, S_FAKE_NOSCRIPT, 0, 0, NULL, NULL), 0);
		wait_eval(f, &e, 5000);
		run_for(f, 50);
		assert_int_equal(e.calls, 1);
		assert_int_equal(e.type, REDIS_REPLY_ERROR);
		assert_string_equal(e.str[0], "NOSCRIPT from the script");
		assert_int_equal(script_loads(f), 2 + (uint64_t)i);
	}

	/* binary-safe: NUL bytes in a key and an argument, through NOSCRIPT and EVALSHA */
	const char *bin[] = {"bk\0ey", "a\0b\0c"};
	const size_t binlen[] = {5, 5};
	for (int i = 0; i < 2; i++) {
		eval_result e = {0};
		assert_int_equal(qc_redis_eval(f->r, record_eval, &e, S_PAIR, 1, 2, bin, binlen), 0);
		wait_eval(f, &e, 5000);
		assert_int_equal(e.type, REDIS_REPLY_ARRAY);
		assert_int_equal(e.elements, 2);
		assert_int_equal(e.len[0], 5);
		assert_memory_equal(e.str[0], "bk\0ey", 5);
		assert_int_equal(e.len[1], 5);
		assert_memory_equal(e.str[1], "a\0b\0c", 5);
	}
	assert_int_equal(script_loads(f), 4);

	/* refused arguments: QC_EINVAL (QC_CLOSED for no pool), no callback */
	eval_result bad = {0};
	uint64_t errors = qc_redis_counters_get(f->r)->errors;
	assert_int_equal(qc_redis_eval(f->r, record_eval, &bad, S_PAIR, 2, 1, key, NULL), QC_EINVAL);
	assert_int_equal(qc_redis_eval(f->r, record_eval, &bad, S_PAIR, -1, 1, key, NULL), QC_EINVAL);
	assert_int_equal(qc_redis_eval(f->r, record_eval, &bad, NULL, 0, 1, key, NULL), QC_EINVAL);
	assert_int_equal(qc_redis_eval(f->r, record_eval, &bad, S_PAIR, 0, 1, NULL, NULL), QC_EINVAL);
	assert_int_equal(qc_redis_eval(f->r, record_eval, &bad, S_PAIR, 0, -1, key, NULL), QC_EINVAL);
	assert_int_equal(qc_redis_eval(NULL, record_eval, &bad, S_PAIR, 1, 1, key, NULL), QC_CLOSED);
	assert_int_equal(qc_redis_counters_get(f->r)->errors, errors + 5);
	run_for(f, 50);
	assert_int_equal(bad.calls, 0);
	assert_int_equal(finish_loop(f), 0);
}

static bool retry_out(void *p) { fixture *f = p; return script_loads(f) >= 1; }

/* Closing with an eval waiting, on each attempt: QC_CLOSED once, before
 * qc_redis_close returns; closing from an eval's callback. */
static void test_eval_close(void **state)
{
	fixture *f = *state;
	redis_server_require();
	redis_server_start(&f->srv, NULL);

	/* the first attempt (EVALSHA) waiting on a frozen server */
	open_up(f, 5000);
	redis_server_signal(&f->srv, SIGSTOP);
	eval_result first = {0};
	const char *ms[] = {"1000"};
	assert_int_equal(qc_redis_eval(f->r, record_eval, &first, S_42, 0, 0, NULL, NULL), 0);
	run_for(f, 50);
	assert_int_equal(first.calls, 0);
	qc_redis_close(f->r);
	f->r = NULL;
	assert_int_equal(first.calls, 1);
	assert_int_equal(first.status, QC_CLOSED);
	redis_server_signal(&f->srv, SIGCONT);

	/* the retry (EVAL with the text) waiting: the busy script runs 1 s */
	open_up(f, 5000);
	eval_result retry = {0};
	assert_int_equal(qc_redis_eval(f->r, record_eval, &retry, S_BUSY_B, 0, 1, ms, NULL), 0);
	assert_true(run_until(f, retry_out, 5000));
	assert_int_equal(retry.calls, 0);
	qc_redis_close(f->r);
	f->r = NULL;
	assert_int_equal(retry.calls, 1);
	assert_int_equal(retry.status, QC_CLOSED);

	/* closed from the first eval's callback: the second gets QC_CLOSED once */
	open_up(f, 5000);
	eval_result a = {.close_in_cb = true}, b = {0};
	assert_int_equal(qc_redis_eval(f->r, record_eval, &a, S_42, 0, 0, NULL, NULL), 0);
	assert_int_equal(qc_redis_eval(f->r, record_eval, &b, S_BUSY_A, 0, 1, ms, NULL), 0);
	wait_eval(f, &a, 5000);
	f->r = NULL; /* closed by the callback */
	assert_int_equal(a.status, QC_OK);
	assert_int_equal(a.integer, 42);
	assert_int_equal(b.calls, 1);
	assert_int_equal(b.status, QC_CLOSED);

	assert_int_equal(finish_loop(f), 0);
	assert_int_equal(first.calls + retry.calls + a.calls + b.calls, 4);
}

/* The command timeout covers both attempts together: the EVALSHA waits
 * 700 ms behind a busy script, its NOSCRIPT retry runs another 700 ms:
 * QC_TIMEOUT at the first attempt's deadline (1000 ms), not an answer at
 * ~1400 ms; the retry's late answer is dropped. */
static void test_eval_timeout(void **state)
{
	fixture *f = *state;
	redis_server_require();
	redis_server_start(&f->srv, NULL);
	open_up(f, 1000);
	eval_result busy = {0}, e = {0};
	const char *busy_argv[] = {"EVAL", S_BUSY_A, "0", "700"};
	const char *ms[] = {"700"};
	uint64_t t0 = mono_ms();
	assert_int_equal(qc_redis_command_argv(f->r, record_eval, &busy, 4, busy_argv, NULL), 0);
	assert_int_equal(qc_redis_eval(f->r, record_eval, &e, S_BUSY_B, 0, 1, ms, NULL), 0);
	wait_eval(f, &e, 5000);
	uint64_t took = e.at_ms - t0;
	print_message("busy answered after %llu ms, eval outcome %d after %llu ms\n",
		      (unsigned long long)(busy.at_ms - t0), e.status, (unsigned long long)took);
	assert_int_equal(busy.calls, 1);
	assert_int_equal(busy.status, QC_OK);
	assert_int_equal(e.status, QC_TIMEOUT);
	assert_true(took >= 900 && took < 1350);
	assert_int_equal(script_loads(f), 1);
	assert_int_equal(qc_redis_counters_get(f->r)->timeouts, 1);
	assert_true(run_until(f, has_late_reply, 5000));
	assert_int_equal(e.calls, 1);
	expect_state(f, QC_STATE_UP, 5000);
	eval_result again = {0};
	const char *quick[] = {"1"};
	assert_int_equal(qc_redis_eval(f->r, record_eval, &again, S_BUSY_B, 0, 1, quick, NULL), 0);
	wait_eval(f, &again, 5000);
	assert_int_equal(again.status, QC_OK);
	assert_int_equal(again.integer, 1);
	assert_int_equal(script_loads(f), 1); /* the timed-out EVAL loaded it */
	assert_int_equal(finish_loop(f), 0);
}

/* Which outcomes prove a command never ran (a failed bump then releases
 * its COMMIT at once instead of waiting a lease out). */
static void test_never_ran(void **state)
{
	(void)state;
	char buf[64];
	static const char *const refused[] = {"NOSCRIPT No matching script. Please use EVAL.",
					      "NOPERM this user has no permissions", "OOM command not allowed",
					      "LOADING Redis is loading the dataset in memory",
					      "BUSY Redis is busy running a script", "READONLY You can't write against a read only replica.",
					      "ERR unknown command 'EVALSHA'"};
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		snprintf(buf, sizeof buf, "%s", refused[i]);
		redisReply r = {.type = REDIS_REPLY_ERROR, .str = buf, .len = strlen(buf)};
		assert_true(qc_redis_never_ran(QC_OK, &r));
		assert_false(qc_redis_never_ran(QC_TIMEOUT, &r));
	}
	static const char *const unknown[] = {"ERR Error running script (call to f_x): @user_script:1: oops",
					      "ERR wrong number of arguments", "WRONGTYPE Operation against a key"};
	for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
		snprintf(buf, sizeof buf, "%s", unknown[i]);
		redisReply r = {.type = REDIS_REPLY_ERROR, .str = buf, .len = strlen(buf)};
		assert_false(qc_redis_never_ran(QC_OK, &r));
	}
	redisReply ok = {.type = REDIS_REPLY_STATUS, .str = (char *)"OK", .len = 2};
	assert_false(qc_redis_never_ran(QC_OK, &ok));
	assert_false(qc_redis_never_ran(QC_DISCONNECTED, NULL));
	assert_false(qc_redis_never_ran(QC_OK, NULL));
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN); /* as pgfold's main does: hiredis writes with write(2) */
	pf_log_set_level(getenv("PGFOLD_TEST_DEBUG") ? PF_LOG_DEBUG : PF_LOG_WARN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_never_ran),
		cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_host_name, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop_timeout_cont, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kill_restart, setup, teardown),
		cmocka_unit_test_setup_teardown(test_close_pending, setup, teardown),
		cmocka_unit_test_setup_teardown(test_close_in_callback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nothing_listening, setup, teardown),
		cmocka_unit_test_setup_teardown(test_close_at_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pool_round_robin_select, setup, teardown),
		cmocka_unit_test_setup_teardown(test_auth_password, setup, teardown),
		cmocka_unit_test_setup_teardown(test_auth_acl_user, setup, teardown),
		cmocka_unit_test_setup_teardown(test_eval, setup, teardown),
		cmocka_unit_test_setup_teardown(test_eval_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_eval_close, setup, teardown),
		cmocka_unit_test_setup_teardown(test_eval_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_large_command_written_in_parts, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
