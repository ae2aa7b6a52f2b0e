/*
 * test_sub.c — the channel subscriber (cache/subscriber.c) against a real
 * redis-server that each test starts itself on a free port (Debian's
 * /usr/bin/redis-server, no persistence; redis_server.h, shared with
 * test_redis.c), then kills, restarts, freezes (SIGSTOP) and thaws, and
 * with requirepass or ACL users for AUTH; a fake server on the test's loop
 * resets a subscribed connection.
 * Messages are published from a blocking hiredis connection of the test's
 * own.  Every callback is recorded; once a test closed the
 * subscriber, any further callback is counted as an error.  Every test ends
 * by closing the subscriber and checking that the loop ran out of handles
 * and uv_loop_close() returned 0; run under ASan (build-asan/) that also
 * covers leaks.
 *
 * Waits are bounded (a failing test fails, it does not hang); timing
 * assertions use generous bounds only.  Tests are skipped when redis-server
 * is not installed.  PGFOLD_TEST_DEBUG=1 shows debug logs.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
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

#include "../../cache/subscriber.h"
#include "../../common/log.h"
#include "redis_server.h"

#define CHANNEL "pgfold:invalidate"

/* ---------------------------------------------------------------- fixture */

/* What one subscriber's callbacks saw, and what they should do. */
typedef struct events {
	qc_sub *s;          /* for closing from a callback */
	int actives;        /* on_state(true) calls */
	int losses;         /* on_state(false) calls */
	int messages;
	char *last;         /* the last payload, copied */
	size_t last_len;
	bool closed;        /* qc_sub_close ran: no callback may follow */
	int after_close;    /* callbacks that came anyway */
	bool close_on_message, close_on_active, close_on_loss;
} events;

typedef struct fixture {
	uv_loop_t loop;
	loop_ticker tick; /* wakes uv_run(ONCE) every few ms while a test waits */
	redis_server srv; /* the throwaway redis-server */
	const char *user, *password; /* what publish() authenticates with */
	events ev;       /* of ev.s, the subscriber under test */
} fixture;

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	ticking_loop_init(&f->loop, &f->tick);
	redis_server_init(&f->srv, "/tmp/pgfold-test-sub-XXXXXX");
	*state = f;
	return 0;
}

static void close_sub(events *ev)
{
	qc_sub_close(ev->s);
	qc_sub_close(ev->s); /* idempotent */
	ev->s = NULL;
	ev->closed = true;
}

/* Close the subscriber and the tick, run the loop until it has no handles
 * left (bounded), and close it: 0 means every handle was closed and freed. */
static int finish_loop(fixture *f)
{
	if (!f->tick.open)
		return 0;
	if (f->ev.s)
		close_sub(&f->ev);
	return ticking_loop_close(&f->loop, &f->tick);
}

static int teardown(void **state)
{
	fixture *f = *state;
	int rc = finish_loop(f);
	redis_server_cleanup(&f->srv);
	free(f->ev.last);
	free(f);
	if (rc != 0)
		fprintf(stderr, "teardown: uv_loop_close() = %d (%s)\n", rc, uv_strerror(rc));
	return rc == 0 ? 0 : -1;
}

/* Run the loop until pred(f) or timeout_ms passed; returns pred(f). */
static bool run_until(fixture *f, bool (*pred)(void *), unsigned timeout_ms)
{
	return loop_run_until(&f->loop, pred, f, timeout_ms);
}

static void run_for(fixture *f, unsigned ms)
{
	loop_run_for(&f->loop, ms);
}

/* ------------------------------------------------------------- callbacks */

static void on_message(void *ctx, const char *payload, size_t len)
{
	events *ev = ctx;
	if (ev->closed) {
		ev->after_close++;
		return;
	}
	ev->messages++;
	free(ev->last);
	ev->last = malloc(len + 1);
	assert_non_null(ev->last);
	memcpy(ev->last, payload, len);
	ev->last_len = len;
	if (ev->close_on_message)
		close_sub(ev);
}

static void on_state(void *ctx, bool active)
{
	events *ev = ctx;
	if (ev->closed) {
		ev->after_close++;
		return;
	}
	if (active)
		ev->actives++;
	else
		ev->losses++;
	if ((active && ev->close_on_active) || (!active && ev->close_on_loss))
		close_sub(ev);
}

static bool is_active(void *p) { fixture *f = p; return qc_sub_active(f->ev.s); }
static bool not_active(void *p) { fixture *f = p; return !qc_sub_active(f->ev.s); }
static bool is_closed(void *p) { fixture *f = p; return f->ev.closed; }
static bool lost_once(void *p) { fixture *f = p; return f->ev.losses >= 1; }

static qc_redis_options sub_options(fixture *f, unsigned timeout_ms)
{
	qc_redis_options o = {.addr = tcp_addr("127.0.0.1", f->srv.port), .timeout_ms = timeout_ms};
	return o;
}

static void open_sub(fixture *f, const qc_redis_options *o)
{
	f->ev.s = qc_sub_open(&f->loop, o, CHANNEL, on_message, on_state, &f->ev);
	assert_non_null(f->ev.s);
}

static void expect_active(fixture *f, unsigned timeout_ms)
{
	if (!run_until(f, is_active, timeout_ms))
		fail_msg("not subscribed within %u ms (actives %d, losses %d)", timeout_ms, f->ev.actives,
			 f->ev.losses);
}

/* ------------------------------------------------------------- publisher */

/* A blocking connection to the test's Redis, authenticated as the fixture says. */
static redisContext *sync_connect(fixture *f)
{
	struct timeval tv = {2, 0};
	redisContext *c = redisConnectWithTimeout("127.0.0.1", f->srv.port, tv);
	assert_non_null(c);
	if (c->err)
		fail_msg("publisher connect: %s", c->errstr);
	redisSetTimeout(c, tv);
	if (f->password) {
		redisReply *r = f->user ? redisCommand(c, "AUTH %s %s", f->user, f->password)
					: redisCommand(c, "AUTH %s", f->password);
		assert_non_null(r);
		if (r->type == REDIS_REPLY_ERROR)
			fail_msg("publisher AUTH: %s", r->str);
		freeReplyObject(r);
	}
	return c;
}

/* PUBLISH on a channel; how many subscribers Redis delivered it to. */
static long long publish_on(fixture *f, const char *channel, const char *payload, size_t len)
{
	redisContext *c = sync_connect(f);
	redisReply *r = redisCommand(c, "PUBLISH %s %b", channel, payload, len);
	assert_non_null(r);
	assert_int_equal(r->type, REDIS_REPLY_INTEGER);
	long long n = r->integer;
	freeReplyObject(r);
	redisFree(c);
	return n;
}

static long long publish(fixture *f, const char *payload, size_t len)
{
	return publish_on(f, CHANNEL, payload, len);
}

/* Publish and wait until the subscriber got it, with exactly these bytes. */
static void publish_delivered(fixture *f, const char *payload, size_t len)
{
	int before = f->ev.messages;
	assert_int_equal(publish(f, payload, len), 1);
	uint64_t deadline = mono_ms() + 5000;
	while (f->ev.messages == before && mono_ms() < deadline)
		uv_run(&f->loop, UV_RUN_ONCE);
	if (f->ev.messages != before + 1)
		fail_msg("%d message(s) delivered, want 1", f->ev.messages - before);
	assert_int_equal(f->ev.last_len, len);
	if (len > 0)
		assert_memory_equal(f->ev.last, payload, len);
}

/* INFO stats total_connections_received, read on connection c. */
static long long connections_received(redisContext *c)
{
	redisReply *r = redisCommand(c, "INFO stats");
	assert_non_null(r);
	assert_int_equal(r->type, REDIS_REPLY_STRING);
	const char *p = strstr(r->str, "total_connections_received:");
	assert_non_null(p);
	long long n = atoll(p + strlen("total_connections_received:"));
	freeReplyObject(r);
	return n;
}

/* ----------------------------------------------------------------- tests */

/* Subscribed: on_state(true) once, generation 1; messages arrive with
 * their exact bytes (NUL inside, empty, 100 KB), other channels' do not. */
static void test_subscribe_publish(void **state)
{
	fixture *f = *state;
	redis_server_require();
	redis_server_start(&f->srv, NULL);
	qc_redis_options o = sub_options(f, 1000);
	open_sub(f, &o);
	assert_false(qc_sub_active(f->ev.s));
	assert_int_equal(qc_sub_generation(f->ev.s), 0);
	expect_active(f, 5000);
	assert_int_equal(f->ev.actives, 1);
	assert_int_equal(f->ev.losses, 0);
	assert_int_equal(qc_sub_generation(f->ev.s), 1);

	publish_delivered(f, "hello", 5);
	publish_delivered(f, "a\0b", 3);
	publish_delivered(f, "", 0);
	size_t big_len = 100 * 1024;
	char *big = malloc(big_len);
	assert_non_null(big);
	for (size_t i = 0; i < big_len; i++)
		big[i] = (char)(i * 7);
	publish_delivered(f, big, big_len);
	free(big);
	assert_int_equal(publish_on(f, "pgfold:other", "x", 1), 0);

	/* quiet for a while (the socket watch ticks): nothing changes */
	run_for(f, 1300);
	assert_int_equal(f->ev.messages, 4);
	assert_int_equal(qc_sub_messages(f->ev.s), 4);
	assert_int_equal(f->ev.actives, 1);
	assert_int_equal(f->ev.losses, 0);
	assert_true(qc_sub_active(f->ev.s));
	assert_int_equal(finish_loop(f), 0); /* closed with the connection up */
	assert_int_equal(f->ev.after_close, 0);
}

/* The server killed: on_state(false) once; restarted on the same port:
 * subscribed again (generation 2) and messages flow again. */
static void test_kill_restart(void **state)
{
	fixture *f = *state;
	redis_server_require();
	redis_server_start(&f->srv, NULL);
	qc_redis_options o = sub_options(f, 300);
	open_sub(f, &o);
	expect_active(f, 5000);
	publish_delivered(f, "one", 3);

	redis_server_kill(&f->srv);
	if (!run_until(f, not_active, 5000))
		fail_msg("still active 5 s after the server was killed");
	assert_int_equal(f->ev.losses, 1);
	run_for(f, 500); /* a few failed attempts: no further callbacks */
	assert_int_equal(f->ev.losses, 1);
	assert_int_equal(f->ev.actives, 1);
	assert_int_equal(qc_sub_generation(f->ev.s), 1);

	redis_server_start(&f->srv, NULL); /* same port */
	expect_active(f, 10000);
	assert_int_equal(f->ev.actives, 2);
	assert_int_equal(f->ev.losses, 1);
	assert_int_equal(qc_sub_generation(f->ev.s), 2);
	publish_delivered(f, "two", 3);
	assert_int_equal(qc_sub_messages(f->ev.s), 2);
	assert_int_equal(finish_loop(f), 0);
	assert_int_equal(f->ev.after_close, 0);
}

/* A frozen server accepts the TCP connection but never confirms the
 * SUBSCRIBE: each attempt times out and the next follows; thawed, it
 * subscribes.  A host name is resolved first. */
static void test_frozen_handshake(void **state)
{
	fixture *f = *state;
	redis_server_require();
	redis_server_start(&f->srv, NULL);
	redis_server_signal(&f->srv, SIGSTOP);
	qc_redis_options o = sub_options(f, 200);
	o.addr = tcp_addr("localhost", f->srv.port);
	open_sub(f, &o);
	run_for(f, 1000);
	assert_int_equal(f->ev.actives + f->ev.losses, 0);
	assert_false(qc_sub_active(f->ev.s));
	redis_server_signal(&f->srv, SIGCONT);
	expect_active(f, 10000);
	assert_int_equal(f->ev.actives, 1);
	assert_int_equal(f->ev.losses, 0);
	publish_delivered(f, "thawed", 6);
	assert_int_equal(finish_loop(f), 0);
}

/* requirepass: the right password subscribes; a wrong one never does and
 * keeps retrying with backoff (new connections seen by the server). */
static void test_auth_password(void **state)
{
	fixture *f = *state;
	redis_server_require();
	const char *const extra[] = {"--requirepass", "s3cret pass", NULL};
	redis_server_start(&f->srv, extra);
	f->password = "s3cret pass";
	qc_redis_options o = sub_options(f, 1000);
	o.password = "s3cret pass";
	open_sub(f, &o);
	expect_active(f, 5000);
	publish_delivered(f, "authed", 6);
	close_sub(&f->ev);

	events wrong = {0};
	o.password = "wrong";
	wrong.s = qc_sub_open(&f->loop, &o, CHANNEL, on_message, on_state, &wrong);
	assert_non_null(wrong.s);
	redisContext *c = sync_connect(f);
	long long before = connections_received(c);
	run_for(f, 2000);
	long long attempts = connections_received(c) - before;
	redisFree(c);
	print_message("wrong password: %lld attempt(s) in 2 s\n", attempts);
	assert_true(attempts >= 3 && attempts <= 12); /* backoff 100, 200, 400, 800 ms ... */
	assert_false(qc_sub_active(wrong.s));
	assert_int_equal(qc_sub_generation(wrong.s), 0);
	assert_int_equal(wrong.actives + wrong.losses + wrong.messages, 0);
	close_sub(&wrong);

	o.password = NULL; /* none: SUBSCRIBE answered NOAUTH */
	events none = {0};
	none.s = qc_sub_open(&f->loop, &o, CHANNEL, on_message, on_state, &none);
	run_for(f, 500);
	assert_false(qc_sub_active(none.s));
	assert_int_equal(none.actives + none.losses, 0);
	close_sub(&none);
	assert_int_equal(finish_loop(f), 0);
	assert_int_equal(f->ev.after_close + wrong.after_close + none.after_close, 0);
}

/* Redis 6 ACL users: AUTH user password; a user without the channel's
 * permission gets NOPERM for the SUBSCRIBE and never becomes active. */
static void test_auth_acl_user(void **state)
{
	fixture *f = *state;
	redis_server_require();
	const char *const extra[] = {"--user", "pgfold", "on", ">pw-1", "~*", "&*", "+@all",
				     "--user", "nochan", "on", ">pw-2", "~*", "resetchannels", "+@all", NULL};
	redis_server_start(&f->srv, extra);
	f->user = "pgfold";
	f->password = "pw-1";
	qc_redis_options o = sub_options(f, 1000);
	o.username = "pgfold";
	o.password = "pw-1";
	open_sub(f, &o);
	expect_active(f, 5000);
	publish_delivered(f, "acl", 3);

	events denied = {0};
	o.username = "nochan";
	o.password = "pw-2";
	denied.s = qc_sub_open(&f->loop, &o, CHANNEL, on_message, on_state, &denied);
	run_for(f, 800);
	assert_false(qc_sub_active(denied.s));
	assert_int_equal(denied.actives + denied.losses, 0);
	close_sub(&denied);
	publish_delivered(f, "still", 5); /* the other one is unaffected */
	assert_int_equal(finish_loop(f), 0);
	assert_int_equal(f->ev.after_close + denied.after_close, 0);
}

/* Closing while connecting (numeric: connect in progress; host name:
 * resolving), after failed resolves, while the handshake waits on a frozen server, while Redis is
 * down and after the subscription was lost: no callback, nothing leaks. */
static void test_close_not_active(void **state)
{
	fixture *f = *state;
	redis_server_require();
	qc_redis_options o = sub_options(f, 1000);
	events a = {0}, b = {0}, down = {0};
	a.s = qc_sub_open(&f->loop, &o, CHANNEL, on_message, on_state, &a);
	qc_redis_options named = o;
	named.addr = tcp_addr("localhost", f->srv.port);
	b.s = qc_sub_open(&f->loop, &named, CHANNEL, on_message, on_state, &b);
	close_sub(&a);
	close_sub(&b);

	/* a host name that does not resolve: attempts fail, then close */
	events bad = {0};
	qc_redis_options nowhere = o;
	nowhere.addr = tcp_addr("pgfold-test.invalid", f->srv.port);
	bad.s = qc_sub_open(&f->loop, &nowhere, CHANNEL, on_message, on_state, &bad);
	assert_non_null(bad.s);
	run_for(f, 300);
	assert_false(qc_sub_active(bad.s));
	close_sub(&bad);

	/* nothing listens: attempts fail, close in the backoff wait */
	down.s = qc_sub_open(&f->loop, &o, CHANNEL, on_message, on_state, &down);
	run_for(f, 400);
	assert_false(qc_sub_active(down.s));
	close_sub(&down);

	/* frozen server: connected, SUBSCRIBE unanswered */
	redis_server_start(&f->srv, NULL);
	redis_server_signal(&f->srv, SIGSTOP);
	events frozen = {0};
	frozen.s = qc_sub_open(&f->loop, &o, CHANNEL, on_message, on_state, &frozen);
	run_for(f, 200);
	close_sub(&frozen);
	redis_server_signal(&f->srv, SIGCONT);

	/* subscribed, then lost: close while reconnecting */
	open_sub(f, &o);
	expect_active(f, 5000);
	redis_server_kill(&f->srv);
	assert_true(run_until(f, lost_once, 5000));
	run_for(f, 300);
	close_sub(&f->ev);
	run_for(f, 300);
	assert_int_equal(finish_loop(f), 0);
	assert_int_equal(a.actives + a.losses + b.actives + b.losses + down.actives + down.losses, 0);
	assert_int_equal(bad.actives + bad.losses + bad.after_close, 0);
	assert_int_equal(frozen.actives + frozen.losses + frozen.messages, 0);
	assert_int_equal(f->ev.actives, 1);
	assert_int_equal(f->ev.losses, 1);
	assert_int_equal(a.after_close + b.after_close + down.after_close + frozen.after_close + f->ev.after_close,
			 0);
}

/* Closing from inside each callback: on_state(true), on_message (with a
 * second message already in the same read: not delivered), on_state(false). */
static void test_close_in_callbacks(void **state)
{
	fixture *f = *state;
	redis_server_require();
	redis_server_start(&f->srv, NULL);
	qc_redis_options o = sub_options(f, 1000);

	f->ev.close_on_active = true;
	open_sub(f, &o);
	assert_true(run_until(f, is_closed, 5000));
	run_for(f, 200);
	assert_int_equal(f->ev.actives, 1);
	assert_int_equal(f->ev.after_close, 0);

	events *ev = &f->ev;
	memset(ev, 0, sizeof(*ev));
	ev->close_on_message = true;
	open_sub(f, &o);
	expect_active(f, 5000);
	redisContext *c = sync_connect(f);
	redisAppendCommand(c, "MULTI");
	redisAppendCommand(c, "PUBLISH %s %s", CHANNEL, "first");
	redisAppendCommand(c, "PUBLISH %s %s", CHANNEL, "second");
	redisAppendCommand(c, "EXEC"); /* both messages in one write to the subscriber */
	for (int i = 0; i < 4; i++) {
		redisReply *r = NULL;
		assert_int_equal(redisGetReply(c, (void **)&r), REDIS_OK);
		freeReplyObject(r);
	}
	redisFree(c);
	assert_true(run_until(f, is_closed, 5000));
	run_for(f, 200);
	assert_int_equal(ev->messages, 1);
	assert_int_equal(ev->last_len, 5);
	assert_memory_equal(ev->last, "first", 5);
	assert_int_equal(ev->after_close, 0);

	free(ev->last);
	memset(ev, 0, sizeof(*ev));
	ev->close_on_loss = true;
	open_sub(f, &o);
	expect_active(f, 5000);
	redis_server_kill(&f->srv);
	assert_true(run_until(f, is_closed, 5000));
	run_for(f, 300);
	assert_int_equal(ev->losses, 1);
	assert_int_equal(ev->after_close, 0);
	assert_int_equal(finish_loop(f), 0);
	assert_int_equal(ev->after_close, 0);
}

/* ------------------------------------------------------------ fake Redis */

/* For what real Redis does not do on demand: a listener on the test's loop
 * that confirms any SUBSCRIBE, then sends one message, and resets (RST) its
 * first connection 200 ms later.  libuv reports the RST to hiredis's
 * adapter as an error it ignores: only the subscriber's socket watch sees it. */
typedef struct fake_redis {
	uv_tcp_t listener;
	uv_tcp_t conns[8];
	int nconns;
	uv_timer_t reset_timer;
	int port;
	char buf[512];
} fake_redis;

static void fake_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
	fake_redis *fr = h->data;
	*buf = uv_buf_init(fr->buf, sizeof(fr->buf));
}

static void fake_reset(uv_timer_t *t)
{
	fake_redis *fr = t->data;
	assert_int_equal(uv_tcp_close_reset(&fr->conns[0], NULL), 0);
}

static void fake_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
	static const char answer[] = "*3\r\n$9\r\nsubscribe\r\n$17\r\n" CHANNEL "\r\n:1\r\n"
				     "*3\r\n$7\r\nmessage\r\n$17\r\n" CHANNEL "\r\n$4\r\nfake\r\n";
	fake_redis *fr = st->data;
	if (n < 0) {
		if (!uv_is_closing((uv_handle_t *)st))
			uv_close((uv_handle_t *)st, NULL);
		return;
	}
	if (n == 0 || !memmem(buf->base, (size_t)n, "SUBSCRIBE", 9))
		return;
	uv_buf_t b = uv_buf_init((char *)answer, sizeof(answer) - 1);
	assert_int_equal(uv_try_write(st, &b, 1), (int)b.len);
	if (st == (uv_stream_t *)&fr->conns[0])
		uv_timer_start(&fr->reset_timer, fake_reset, 200, 0);
}

static void fake_connection(uv_stream_t *server, int status)
{
	fake_redis *fr = server->data;
	assert_int_equal(status, 0);
	assert_true(fr->nconns < 8);
	uv_tcp_t *c = &fr->conns[fr->nconns++];
	assert_int_equal(uv_tcp_init(server->loop, c), 0);
	c->data = fr;
	assert_int_equal(uv_accept(server, (uv_stream_t *)c), 0);
	assert_int_equal(uv_read_start((uv_stream_t *)c, fake_alloc, fake_read), 0);
}

static void fake_start(fixture *f, fake_redis *fr)
{
	struct sockaddr_in sin;
	int len = sizeof(sin);
	memset(fr, 0, sizeof(*fr));
	assert_int_equal(uv_tcp_init(&f->loop, &fr->listener), 0);
	assert_int_equal(uv_timer_init(&f->loop, &fr->reset_timer), 0);
	fr->listener.data = fr->reset_timer.data = fr;
	assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &sin), 0);
	assert_int_equal(uv_tcp_bind(&fr->listener, (const struct sockaddr *)&sin, 0), 0);
	assert_int_equal(uv_listen((uv_stream_t *)&fr->listener, 8, fake_connection), 0);
	assert_int_equal(uv_tcp_getsockname(&fr->listener, (struct sockaddr *)&sin, &len), 0);
	fr->port = ntohs(sin.sin_port);
}

/* Its handles close in the loop's next turns: fr must outlive finish_loop(). */
static void fake_stop(fake_redis *fr)
{
	uv_close((uv_handle_t *)&fr->listener, NULL);
	uv_close((uv_handle_t *)&fr->reset_timer, NULL);
	for (int i = 0; i < fr->nconns; i++)
		if (!uv_is_closing((uv_handle_t *)&fr->conns[i]))
			uv_close((uv_handle_t *)&fr->conns[i], NULL);
}

/* A connection reset while subscribed (hiredis never hears of it): the
 * socket watch notices within about a second; resubscribed, generation 2. */
static void test_reset_while_active(void **state)
{
	fixture *f = *state;
	static fake_redis fr; /* outlives a failed assertion: teardown still runs the loop */
	fake_start(f, &fr);
	qc_redis_options o = {.addr = tcp_addr("127.0.0.1", fr.port), .timeout_ms = 1000};
	open_sub(f, &o);
	expect_active(f, 5000);
	uint64_t t0 = mono_ms();
	assert_true(run_until(f, lost_once, 5000));
	print_message("reset noticed after %llu ms\n", (unsigned long long)(mono_ms() - t0));
	assert_false(qc_sub_active(f->ev.s));
	expect_active(f, 5000);
	assert_int_equal(f->ev.actives, 2);
	assert_int_equal(f->ev.losses, 1);
	assert_int_equal(qc_sub_generation(f->ev.s), 2);
	assert_int_equal(f->ev.messages, 2);
	assert_int_equal(f->ev.last_len, 4);
	assert_memory_equal(f->ev.last, "fake", 4);
	assert_int_equal(fr.nconns, 2);
	close_sub(&f->ev);
	fake_stop(&fr);
	assert_int_equal(finish_loop(f), 0);
	assert_int_equal(f->ev.after_close, 0);
}

/* NULL and bad arguments. */
static void test_arguments(void **state)
{
	fixture *f = *state;
	qc_redis_options o = sub_options(f, 0);
	assert_false(qc_sub_active(NULL));
	assert_int_equal(qc_sub_generation(NULL), 0);
	assert_int_equal(qc_sub_messages(NULL), 0);
	qc_sub_close(NULL);
	assert_null(qc_sub_open(&f->loop, NULL, CHANNEL, NULL, NULL, NULL));
	assert_null(qc_sub_open(&f->loop, &o, "", NULL, NULL, NULL));
	assert_null(qc_sub_open(&f->loop, &o, NULL, NULL, NULL, NULL));
	qc_redis_options off = o;
	memset(&off.addr, 0, sizeof(off.addr));
	assert_null(qc_sub_open(&f->loop, &off, CHANNEL, NULL, NULL, NULL));
	/* NULL callbacks are allowed */
	qc_sub *s = qc_sub_open(&f->loop, &o, CHANNEL, NULL, NULL, NULL);
	assert_non_null(s);
	qc_sub_close(s);
	assert_int_equal(finish_loop(f), 0);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN); /* as pgfold's main does: hiredis writes with write(2) */
	pf_log_set_level(getenv("PGFOLD_TEST_DEBUG") ? PF_LOG_DEBUG : PF_LOG_WARN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_subscribe_publish, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kill_restart, setup, teardown),
		cmocka_unit_test_setup_teardown(test_frozen_handshake, setup, teardown),
		cmocka_unit_test_setup_teardown(test_auth_password, setup, teardown),
		cmocka_unit_test_setup_teardown(test_auth_acl_user, setup, teardown),
		cmocka_unit_test_setup_teardown(test_close_not_active, setup, teardown),
		cmocka_unit_test_setup_teardown(test_close_in_callbacks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset_while_active, setup, teardown),
		cmocka_unit_test_setup_teardown(test_arguments, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
