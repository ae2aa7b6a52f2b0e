/*
 * subscriber.c — one Redis connection subscribed to one channel (see
 * subscriber.h): the AUTH / SUBSCRIBE handshake on a qc_link
 * (cache/redis_link.h, shared with cache/redis.c: a hiredis async context on
 * the libuv loop, the connect deadline and SO_ERROR watch, freeing the
 * context, reconnecting with backoff), its watchdog and the message
 * dispatch.
 *
 * Phases (s->link.phase; only activate() and lost() change whether it is
 * ACTIVE):
 *   the link's   IDLE, RESOLVING, CONNECTING, LOST (see redis_link.h); LOST
 *                also when the attempt or the subscription failed
 *   AUTH         connected, AUTH out (only with a password)
 *   SUBSCRIBING  SUBSCRIBE out
 *   ACTIVE       Redis confirmed the SUBSCRIBE
 * The link's watch is the watchdog (on_watch): a look at the socket and the
 * deadline every QC_LINK_CHECK_MS from CONNECTING to SUBSCRIBING; a look at
 * the socket every SUB_WATCH_MS while ACTIVE.
 *
 * hiredis ownership rules this file keeps (with redis_link.c's):
 *   - s is the privdata of AUTH and of the channel's callback.  hiredis calls
 *     each with NULL when it frees the context, before onDisconnect, so s
 *     lives until hiredis let go and the timer closed: it is freed in the
 *     timer's close_cb, which try_finish_close() requests only then.  A NULL
 *     reply is ignored; the link's lost hook tells what happened.
 *   - Inside a command callback (on_auth, on_channel, hence inside
 *     on_message / on_state(true) of the caller) hiredis defers a free;
 *     on_open runs inside onConnect, which is not protected, so it never
 *     drops (a failed send there is failed by the watchdog instead).
 *   - SUBSCRIBE is sent only once AUTH answered OK, not pipelined behind it:
 *     hiredis 0.14 turns an error answer that has no pending callback (the
 *     -NOAUTH a pipelined SUBSCRIBE would get after a failed AUTH) into a
 *     disconnect; keeping AUTH alone gives its answer to on_auth.
 *
 * Without a PING, a silently dead peer is found by TCP keepalive, which
 * hiredis sets up (redisEnableKeepAlive: probes after 15 s idle).
 */
#include "subscriber.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <string.h>

#include "../common/alloc.h"
#include "../common/log.h"
#include "redis_link.h"

enum {
	SUB_WATCH_MS = 1000, /* SO_ERROR look while ACTIVE */
};

/* The subscriber's phases once its link is open (s->link.phase; see the top). */
enum {
	SUB_AUTH = QC_LINK_OPEN,
	SUB_SUBSCRIBING,
	SUB_ACTIVE,
};

struct qc_sub {
	qc_link_target target;     /* address, name ("host:port" for logs), timeout, AUTH */
	qc_link link;              /* the context, its phase, timer and backoff (data: s) */
	char *channel;
	qc_sub_message_fn on_message;
	qc_sub_state_fn on_state;
	void *ctx;
	bool warned;               /* not ACTIVE and that was logged as a warning */
	bool closing;
	bool timer_closing;
	uint64_t generation;
	uint64_t messages;
};

static void try_finish_close(qc_sub *s);

/* ---- activity ----------------------------------------------------------- */

/* Redis confirmed the SUBSCRIBE. */
static void activate(qc_sub *s)
{
	s->link.phase = SUB_ACTIVE;
	s->generation++;
	qc_link_succeeded(&s->link);
	s->warned = false;
	qc_link_watch(&s->link, SUB_WATCH_MS, SUB_WATCH_MS);
	pf_info("redis %s: subscribed to %s", s->target.name, s->channel);
	if (s->on_state)
		s->on_state(s->ctx, true); /* may close s */
}

/* The attempt or the subscription failed (not by qc_sub_close): log once per
 * change; the caller hears of it only when it was ACTIVE.  May close s. */
static void lost(qc_sub *s, const char *why)
{
	bool was_active = s->link.phase == SUB_ACTIVE;
	s->link.phase = QC_LINK_LOST;
	if (was_active)
		pf_warn("redis %s: subscription to %s lost (%s); resubscribing", s->target.name, s->channel, why);
	else if (!s->warned)
		pf_warn("redis %s: cannot subscribe to %s (%s); retrying", s->target.name, s->channel, why);
	else
		pf_debug("redis %s: subscribe to %s failed: %s", s->target.name, s->channel, why);
	s->warned = true;
	if (was_active && s->on_state)
		s->on_state(s->ctx, false);
}

/* Failed with a context hiredis holds (not from on_open: see the top). */
static void fail(qc_sub *s, const char *why)
{
	lost(s, why);
	if (!s->closing) /* lost() may have closed s, which dropped the context */
		qc_link_drop(&s->link);
}

/* ---- the handshake and the channel -------------------------------------- */

/* A command could not be queued (out of memory): the watchdog fails the
 * attempt at its next look, outside any hiredis callback. */
static void send_failed(qc_sub *s, int hiredis_rc)
{
	if (hiredis_rc != REDIS_OK)
		s->link.deadline = 0;
}

static void on_channel(redisAsyncContext *ac, void *reply_, void *privdata)
{
	qc_sub *s = privdata;
	const redisReply *r = reply_;
	if (!r || s->closing)
		return; /* NULL: the context is going away; the link's lost hook follows */
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 || r->element[0]->type != REDIS_REPLY_STRING)
		return;
	const char *kind = r->element[0]->str;
	const redisReply *payload = r->element[2];
	if (strcmp(kind, "subscribe") == 0 && s->link.phase == SUB_SUBSCRIBING) {
		activate(s);
	} else if (strcmp(kind, "message") == 0 && s->link.phase == SUB_ACTIVE && payload->type == REDIS_REPLY_STRING) {
		s->messages++;
		if (s->on_message)
			s->on_message(s->ctx, payload->str, payload->len);
	}
}

static void send_subscribe(qc_sub *s)
{
	s->link.phase = SUB_SUBSCRIBING;
	send_failed(s, redisAsyncCommand(s->link.ac, on_channel, s, "SUBSCRIBE %s", s->channel));
}

static void on_auth(redisAsyncContext *ac, void *reply_, void *privdata)
{
	qc_sub *s = privdata;
	const redisReply *reply = reply_;
	if (!reply || s->closing || s->link.phase != SUB_AUTH)
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
	const qc_link_target *t = &s->target;
	s->link.phase = SUB_AUTH;
	send_failed(s, t->username[0]
			       ? redisAsyncCommand(s->link.ac, on_auth, s, "AUTH %s %s", t->username, t->password)
			       : redisAsyncCommand(s->link.ac, on_auth, s, "AUTH %s", t->password));
}

/* ---- the link's hooks (redis_link.h says when each runs; l->data is s) --- */

/* Connected: inside hiredis's onConnect, so never drops (see the top). */
static void on_open(qc_link *l)
{
	qc_sub *s = l->data;
	redisEnableKeepAlive(&l->ac->c); /* best effort */
	if (s->target.password[0])
		send_auth(s);
	else
		send_subscribe(s);
}

/* The attempt failed before hiredis held a context, or the connection was
 * lost: either way the subscription is not (or no longer) there. */
static void on_failed_or_lost(qc_link *l, const char *why)
{
	lost(l->data, why);
}

static void on_gone(qc_link *l)
{
	qc_sub *s = l->data;
	if (s->closing)
		try_finish_close(s);
}

/* What the attempt is waiting for, for the failure's reason. */
static const char *phase_step(int phase)
{
	switch (phase) {
	case QC_LINK_CONNECTING: return "connect";
	case SUB_AUTH: return "AUTH";
	case SUB_SUBSCRIBING: return "SUBSCRIBE";
	default: return "socket";
	}
}

/* The watchdog (see the top). */
static void on_watch(qc_link *l)
{
	qc_sub *s = l->data;
	char why[160];
	int err;
	if (l->phase == QC_LINK_IDLE || l->phase == QC_LINK_RESOLVING || l->phase == QC_LINK_LOST)
		return; /* no socket to look at */
	if ((err = qc_link_socket_error(l)) != 0)
		snprintf(why, sizeof(why), "%s: %s", phase_step(l->phase), strerror(err));
	else if (l->phase != SUB_ACTIVE && uv_now(l->loop) >= l->deadline)
		snprintf(why, sizeof(why), "%s timed out after %u ms", phase_step(l->phase), s->target.timeout_ms);
	else
		return;
	fail(s, why);
}

static const qc_link_hooks sub_hooks = {
	.failed = on_failed_or_lost,
	.open = on_open,
	.lost = on_failed_or_lost,
	.gone = on_gone,
	.watch = on_watch,
};

/* ---- lifecycle ---------------------------------------------------------- */

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
	qc_link_target_init(&s->target, o);
	s->channel = pf_strdup(channel);
	s->on_message = on_message;
	s->on_state = on_state;
	s->ctx = ctx;
	qc_link_init(&s->link, loop, &s->target, &sub_hooks, s);
	pf_debug("redis %s: subscribing to %s%s", s->target.name, s->channel,
		 s->target.password[0] ? ", with AUTH" : "");
	qc_link_start(&s->link);
	return s;
}

static void on_timer_closed(uv_handle_t *handle)
{
	const qc_link *l = handle->data;
	qc_sub *s = l->data;
	qc_link_target_wipe(&s->target);
	pf_free(s->channel);
	pf_free(s);
}

/* Once hiredis and the resolver let go, close the timer; its close_cb frees s. */
static void try_finish_close(qc_sub *s)
{
	if (!s->closing || s->timer_closing || !qc_link_released(&s->link))
		return;
	s->timer_closing = true;
	uv_close((uv_handle_t *)&s->link.timer, on_timer_closed);
}

void qc_sub_close(qc_sub *s)
{
	if (!s || s->closing)
		return;
	pf_debug("redis %s: subscriber to %s closed", s->target.name, s->channel);
	s->closing = true;
	qc_link_close(&s->link);
	try_finish_close(s); /* may free s in a later loop turn, never now */
}

/* ---- accessors ---------------------------------------------------------- */

bool qc_sub_active(const qc_sub *s)
{
	return s && !s->closing && s->link.phase == SUB_ACTIVE;
}

uint64_t qc_sub_generation(const qc_sub *s)
{
	return s ? s->generation : 0;
}

uint64_t qc_sub_messages(const qc_sub *s)
{
	return s ? s->messages : 0;
}
