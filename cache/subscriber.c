/*
 * subscriber.c — one Redis connection subscribed to one channel (see
 * subscriber.h): a hiredis async context on the libuv loop through
 * <hiredis/adapters/libuv.h>, the AUTH / SUBSCRIBE handshake, a watchdog
 * timer and reconnecting with backoff.  It follows cache/redis.c's rules for
 * hiredis 0.14; the differences are noted here.
 *
 * Phases (s->phase; only activate() and lost() change whether it is ACTIVE):
 *   IDLE         no hiredis context; the timer waits for the next attempt
 *   RESOLVING    uv_getaddrinfo() running (host names only)
 *   CONNECTING   context made, connect(2) in progress
 *   AUTH         connected, AUTH out (only with a password)
 *   SUBSCRIBING  SUBSCRIBE out
 *   ACTIVE       Redis confirmed the SUBSCRIBE
 *   LOST         the attempt or the subscription failed; hiredis is freeing
 *                the context (we asked, or it failed by itself)
 * The timer serves every phase: the retry delay in IDLE; a look at the
 * socket and the deadline every SUB_CHECK_MS from CONNECTING to
 * SUBSCRIBING; a look at the socket every SUB_WATCH_MS while ACTIVE.
 *
 * hiredis ownership rules this file keeps (as redis.c):
 *   - s is the privdata of AUTH and of the channel's callback.  hiredis calls
 *     each with NULL when it frees the context, before on_disconnect, so s
 *     lives until hiredis let go (s->ac == NULL) and the timer closed: it is
 *     freed in the timer's close_cb, which try_finish_close() requests only
 *     then.  A NULL reply is ignored; on_disconnect tells what happened.
 *   - A context is freed only with redisAsyncFree().  Inside a command
 *     callback (on_auth, on_channel, hence inside on_message / on_state(true)
 *     of the caller) hiredis defers that (REDIS_IN_CALLBACK); onConnect is
 *     not protected, so on_connect never frees (a failed send there is
 *     failed by the watchdog instead).  onDisconnect runs only for a context
 *     that had connected; one that never did is freed synchronously and
 *     calls nothing of ours.
 *   - SUBSCRIBE is sent only once AUTH answered OK, not pipelined behind it:
 *     hiredis 0.14 turns an error answer that has no pending callback (the
 *     -NOAUTH a pipelined SUBSCRIBE would get after a failed AUTH) into a
 *     disconnect; keeping AUTH alone gives its answer to on_auth.
 *
 * The adapter's blind spot (see redis.c): a socket error (POLLERR: refused
 * connect, reset, keepalive timeout) stops libuv's watch and the adapter
 * ignores it, so hiredis never hears of it.  The watchdog reads SO_ERROR.
 * Without a PING, a silently dead peer is found by TCP keepalive, which
 * hiredis sets up (redisEnableKeepAlive: probes after 15 s idle).
 */
#include "subscriber.h"

#include <arpa/inet.h>
#include <errno.h>
#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "../common/alloc.h"
#include "../common/log.h"

enum {
	SUB_DEFAULT_TIMEOUT_MS = 1000,
	SUB_CHECK_MS = 50,   /* SO_ERROR and deadline look while connecting */
	SUB_WATCH_MS = 1000, /* SO_ERROR look while ACTIVE */
	SUB_SECRET_MAX = 128,
};

typedef enum sub_phase {
	SUB_IDLE,
	SUB_RESOLVING,
	SUB_CONNECTING,
	SUB_AUTH,
	SUB_SUBSCRIBING,
	SUB_ACTIVE,
	SUB_LOST,
} sub_phase;

struct qc_sub {
	uv_loop_t *loop;
	char host[256];            /* as configured */
	int port;
	char name[300];            /* "host:port" for logs */
	bool numeric;              /* host is an address literal: no resolving */
	char ip[INET6_ADDRSTRLEN]; /* the numeric address hiredis connects to */
	unsigned timeout_ms;       /* connect + handshake */
	char username[SUB_SECRET_MAX];
	char password[SUB_SECRET_MAX];
	char *channel;
	qc_sub_message_fn on_message;
	qc_sub_state_fn on_state;
	void *ctx;
	sub_phase phase;
	redisAsyncContext *ac;     /* the context hiredis holds for us; NULL once it let go */
	bool ac_connected;         /* on_connect(OK) ran: on_disconnect will run when it goes */
	bool dropping;             /* redisAsyncFree() called on a connected context */
	uv_getaddrinfo_t resolver;
	bool resolving;            /* resolver's callback has not run */
	uv_timer_t timer;          /* see the top */
	uint64_t deadline;         /* uv_now() ms: connect + handshake done by then */
	unsigned backoff_ms;       /* delay before the next attempt */
	bool warned;               /* not ACTIVE and that was logged as a warning */
	bool closing;
	bool timer_closing;
	uint64_t generation;
	uint64_t messages;
};

static void start_connect(qc_sub *s);
static void try_finish_close(qc_sub *s);
static void on_timer(uv_timer_t *timer);

/* ---- activity ----------------------------------------------------------- */

/* Redis confirmed the SUBSCRIBE. */
static void activate(qc_sub *s)
{
	s->phase = SUB_ACTIVE;
	s->generation++;
	s->backoff_ms = QC_BACKOFF_MIN_MS;
	s->warned = false;
	uv_timer_start(&s->timer, on_timer, SUB_WATCH_MS, SUB_WATCH_MS);
	pf_info("redis %s: subscribed to %s", s->name, s->channel);
	if (s->on_state)
		s->on_state(s->ctx, true); /* may close s */
}

/* The attempt or the subscription failed (not by qc_sub_close): log once per
 * change; the caller hears of it only when it was ACTIVE.  May close s. */
static void lost(qc_sub *s, const char *why)
{
	bool was_active = s->phase == SUB_ACTIVE;
	s->phase = SUB_LOST;
	if (was_active)
		pf_warn("redis %s: subscription to %s lost (%s); resubscribing", s->name, s->channel, why);
	else if (!s->warned)
		pf_warn("redis %s: cannot subscribe to %s (%s); retrying", s->name, s->channel, why);
	else
		pf_debug("redis %s: subscribe to %s failed: %s", s->name, s->channel, why);
	s->warned = true;
	if (was_active && s->on_state)
		s->on_state(s->ctx, false);
}

/* ---- dropping and retrying ---------------------------------------------- */

static void schedule_retry(qc_sub *s)
{
	unsigned delay = s->backoff_ms;
	s->backoff_ms = delay >= QC_BACKOFF_MAX_MS / 2 ? QC_BACKOFF_MAX_MS : delay * 2;
	uv_timer_start(&s->timer, on_timer, delay, 0);
}

/* hiredis no longer holds the context (or none was made). */
static void connection_gone(qc_sub *s)
{
	s->phase = SUB_IDLE;
	if (s->closing)
		try_finish_close(s);
	else
		schedule_retry(s);
}

/* Free the context: at once when it never connected (hiredis calls nothing
 * then), else through on_disconnect, now or once the running hiredis
 * callback returned. */
static void drop_connection(qc_sub *s)
{
	redisAsyncContext *ac = s->ac;
	if (!ac || s->dropping)
		return;
	s->phase = SUB_LOST;
	uv_timer_stop(&s->timer);
	if (s->ac_connected) {
		s->dropping = true;
		redisAsyncFree(ac);
		return;
	}
	s->ac = NULL;
	redisAsyncFree(ac);
	connection_gone(s);
}

/* Failed with a context hiredis holds (not from on_connect: see the top). */
static void fail(qc_sub *s, const char *why)
{
	lost(s, why);
	if (!s->closing) /* lost() may have closed s, which dropped the context */
		drop_connection(s);
}

/* Failed before hiredis held a context. */
static void attempt_failed(qc_sub *s, const char *why)
{
	lost(s, why);
	s->phase = SUB_IDLE;
	schedule_retry(s);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
	qc_sub *s = ac->data;
	bool ours = s->dropping || s->closing;
	s->ac = NULL;
	s->ac_connected = false;
	s->dropping = false;
	if (!ours) {
		char why[160];
		snprintf(why, sizeof(why), "%s", ac->err && ac->errstr[0] ? ac->errstr : "connection closed");
		lost(s, why);
	}
	connection_gone(s);
}

/* ---- the handshake and the channel -------------------------------------- */

/* A command could not be queued (out of memory): the watchdog fails the
 * attempt at its next look, outside any hiredis callback. */
static void send_failed(qc_sub *s, int hiredis_rc)
{
	if (hiredis_rc != REDIS_OK)
		s->deadline = 0;
}

static void on_channel(redisAsyncContext *ac, void *reply_, void *privdata)
{
	qc_sub *s = privdata;
	const redisReply *r = reply_;
	if (!r || s->closing)
		return; /* NULL: the context is going away; on_disconnect follows */
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 || r->element[0]->type != REDIS_REPLY_STRING)
		return;
	const char *kind = r->element[0]->str;
	const redisReply *payload = r->element[2];
	if (strcmp(kind, "subscribe") == 0 && s->phase == SUB_SUBSCRIBING) {
		activate(s);
	} else if (strcmp(kind, "message") == 0 && s->phase == SUB_ACTIVE && payload->type == REDIS_REPLY_STRING) {
		s->messages++;
		if (s->on_message)
			s->on_message(s->ctx, payload->str, payload->len);
	}
}

static void send_subscribe(qc_sub *s)
{
	s->phase = SUB_SUBSCRIBING;
	send_failed(s, redisAsyncCommand(s->ac, on_channel, s, "SUBSCRIBE %s", s->channel));
}

static void on_auth(redisAsyncContext *ac, void *reply_, void *privdata)
{
	qc_sub *s = privdata;
	const redisReply *reply = reply_;
	if (!reply || s->closing || s->phase != SUB_AUTH)
		return;
	if (reply->type == REDIS_REPLY_ERROR) {
		char why[160];
		snprintf(why, sizeof(why), "AUTH answered: %.120s", reply->str ? reply->str : "error");
		fail(s, why); /* inside a callback: hiredis defers the free */
		return;
	}
	send_subscribe(s);
}

static void send_auth(qc_sub *s)
{
	s->phase = SUB_AUTH;
	send_failed(s, s->username[0]
			       ? redisAsyncCommand(s->ac, on_auth, s, "AUTH %s %s", s->username, s->password)
			       : redisAsyncCommand(s->ac, on_auth, s, "AUTH %s", s->password));
}

/* hiredis frees the context itself right after a failed connect: never free
 * it here (see the top). */
static void on_connect(const redisAsyncContext *ac, int status)
{
	qc_sub *s = ac->data;
	if (status != REDIS_OK) {
		char why[160];
		snprintf(why, sizeof(why), "connect: %s", ac->errstr[0] ? ac->errstr : "failed");
		s->ac = NULL;
		attempt_failed(s, why);
		return;
	}
	s->ac_connected = true;
	redisEnableKeepAlive(&s->ac->c); /* best effort */
	if (s->password[0])
		send_auth(s);
	else
		send_subscribe(s);
}

/* ---- connecting --------------------------------------------------------- */

/* The pending error of the context's socket (errno value), or 0. */
static int socket_error(const qc_sub *s)
{
	int err = 0;
	socklen_t len = sizeof(err);
	if (!s->ac || s->ac->c.fd < 0)
		return 0;
	if (getsockopt(s->ac->c.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		return errno;
	return err;
}

/* What the attempt is waiting for, for the failure's reason. */
static const char *phase_step(sub_phase phase)
{
	switch (phase) {
	case SUB_CONNECTING: return "connect";
	case SUB_AUTH: return "AUTH";
	case SUB_SUBSCRIBING: return "SUBSCRIBE";
	default: return "socket";
	}
}

/* The watchdog (see the top), or the end of the retry delay in IDLE. */
static void on_timer(uv_timer_t *timer)
{
	qc_sub *s = timer->data;
	char why[160];
	int err;
	if (s->phase == SUB_IDLE) {
		start_connect(s);
		return;
	}
	if (s->phase == SUB_RESOLVING || s->phase == SUB_LOST)
		return; /* no socket to look at */
	if ((err = socket_error(s)) != 0)
		snprintf(why, sizeof(why), "%s: %s", phase_step(s->phase), strerror(err));
	else if (s->phase != SUB_ACTIVE && uv_now(s->loop) >= s->deadline)
		snprintf(why, sizeof(why), "%s timed out after %u ms", phase_step(s->phase), s->timeout_ms);
	else
		return;
	fail(s, why);
}

static void connect_to(qc_sub *s)
{
	char why[160];
	redisAsyncContext *ac = redisAsyncConnect(s->ip, s->port);
	if (!ac) {
		attempt_failed(s, "connect: out of memory");
		return;
	}
	if (ac->err) {
		snprintf(why, sizeof(why), "connect: %s", ac->errstr);
		redisAsyncFree(ac);
		attempt_failed(s, why);
		return;
	}
	ac->data = s;
	if (redisLibuvAttach(ac, s->loop) != REDIS_OK) {
		ac->ev.cleanup = NULL; /* the adapter failed half-way: its cleanup would crash */
		redisAsyncFree(ac);
		attempt_failed(s, "connect: cannot watch the socket");
		return;
	}
	/* The adapter first: setting the connect callback arms its write watch. */
	redisAsyncSetConnectCallback(ac, on_connect);
	redisAsyncSetDisconnectCallback(ac, on_disconnect);
	s->ac = ac;
	s->ac_connected = false;
	s->phase = SUB_CONNECTING;
	s->deadline = uv_now(s->loop) + s->timeout_ms;
	uv_timer_start(&s->timer, on_timer, SUB_CHECK_MS, SUB_CHECK_MS);
}

/* The first IPv4 address (Redis listens on 127.0.0.1 by default), else the first. */
static const struct addrinfo *pick_address(const struct addrinfo *res)
{
	for (const struct addrinfo *ai = res; ai; ai = ai->ai_next)
		if (ai->ai_family == AF_INET)
			return ai;
	return res;
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	qc_sub *s = req->data;
	char why[400];
	s->resolving = false;
	const struct addrinfo *ai = status == 0 ? pick_address(res) : NULL;
	int rc = UV_EAI_NONAME;
	if (ai && ai->ai_family == AF_INET)
		rc = uv_ip4_name((const struct sockaddr_in *)ai->ai_addr, s->ip, sizeof(s->ip));
	else if (ai && ai->ai_family == AF_INET6)
		rc = uv_ip6_name((const struct sockaddr_in6 *)ai->ai_addr, s->ip, sizeof(s->ip));
	uv_freeaddrinfo(res);
	if (s->closing) {
		try_finish_close(s);
		return;
	}
	if (status < 0 || rc < 0) {
		snprintf(why, sizeof(why), "resolve %s: %s", s->host, uv_strerror(status < 0 ? status : rc));
		attempt_failed(s, why);
		return;
	}
	connect_to(s);
}

static void start_connect(qc_sub *s)
{
	if (s->closing || s->ac || s->resolving)
		return;
	if (s->numeric) {
		connect_to(s);
		return;
	}
	struct addrinfo hints;
	char port[16], why[400];
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	snprintf(port, sizeof(port), "%d", s->port);
	s->phase = SUB_RESOLVING;
	int rc = uv_getaddrinfo(s->loop, &s->resolver, on_resolved, s->host, port, &hints);
	if (rc < 0) {
		snprintf(why, sizeof(why), "resolve %s: %s", s->host, uv_strerror(rc));
		attempt_failed(s, why);
		return;
	}
	s->resolving = true;
}

/* ---- lifecycle ---------------------------------------------------------- */

static bool is_address_literal(const char *host)
{
	unsigned char buf[sizeof(struct in6_addr)];
	return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

static void copy_secret(char *dst, const char *src)
{
	snprintf(dst, SUB_SECRET_MAX, "%s", src ? src : "");
}

qc_sub *qc_sub_open(uv_loop_t *loop, const qc_redis_options *o, const char *channel,
		    qc_sub_message_fn on_message, qc_sub_state_fn on_state, void *ctx)
{
	char where[300];
	if (!o || o->addr.kind != CF_ADDR_TCP) {
		pf_error("redis subscriber: %s is not a host:port address",
			 o ? cf_addr_format(&o->addr, where, sizeof(where)) : "NULL");
		return NULL;
	}
	if (!channel || !channel[0]) {
		pf_error("redis subscriber: no channel to subscribe to");
		return NULL;
	}
	qc_sub *s = pf_calloc(1, sizeof(*s));
	s->loop = loop;
	snprintf(s->host, sizeof(s->host), "%s", o->addr.host);
	s->port = o->addr.port;
	cf_addr_format(&o->addr, s->name, sizeof(s->name));
	s->numeric = is_address_literal(s->host) && strlen(s->host) < INET6_ADDRSTRLEN;
	if (s->numeric)
		snprintf(s->ip, sizeof(s->ip), "%.*s", (int)sizeof(s->ip) - 1, s->host);
	s->timeout_ms = o->timeout_ms ? o->timeout_ms : SUB_DEFAULT_TIMEOUT_MS;
	copy_secret(s->username, o->username);
	copy_secret(s->password, o->password);
	s->channel = pf_strdup(channel);
	s->on_message = on_message;
	s->on_state = on_state;
	s->ctx = ctx;
	s->phase = SUB_IDLE;
	s->backoff_ms = QC_BACKOFF_MIN_MS;
	s->resolver.data = s;
	uv_timer_init(loop, &s->timer);
	s->timer.data = s;
	pf_debug("redis %s: subscribing to %s%s", s->name, s->channel, s->password[0] ? ", with AUTH" : "");
	start_connect(s);
	return s;
}

static void on_timer_closed(uv_handle_t *handle)
{
	qc_sub *s = handle->data;
	memset(s->password, 0, sizeof(s->password));
	pf_free(s->channel);
	pf_free(s);
}

/* Once hiredis and the resolver let go, close the timer; its close_cb frees s. */
static void try_finish_close(qc_sub *s)
{
	if (!s->closing || s->timer_closing || s->ac || s->resolving)
		return;
	s->timer_closing = true;
	uv_close((uv_handle_t *)&s->timer, on_timer_closed);
}

void qc_sub_close(qc_sub *s)
{
	if (!s || s->closing)
		return;
	pf_debug("redis %s: subscriber to %s closed", s->name, s->channel);
	s->closing = true;
	uv_timer_stop(&s->timer);
	if (s->resolving)
		uv_cancel((uv_req_t *)&s->resolver);
	drop_connection(s);
	try_finish_close(s); /* may free s in a later loop turn, never now */
}

/* ---- accessors ---------------------------------------------------------- */

bool qc_sub_active(const qc_sub *s)
{
	return s && !s->closing && s->phase == SUB_ACTIVE;
}

uint64_t qc_sub_generation(const qc_sub *s)
{
	return s ? s->generation : 0;
}

uint64_t qc_sub_messages(const qc_sub *s)
{
	return s ? s->messages : 0;
}
