/*
 * redis_link.c — one hiredis 0.14 async connection's mechanics (see
 * redis_link.h): resolving, connecting through hiredis's libuv adapter,
 * freeing the context, reconnecting with backoff.
 *
 * hiredis ownership rules this file keeps (its owners keep the rest):
 *   - A context is freed only with redisAsyncFree().  Inside a command
 *     callback hiredis defers that (REDIS_IN_CALLBACK), so dropping from
 *     one is safe; onConnect is not protected that way, so on_connect never
 *     frees: after a failed connect hiredis frees the context itself, and
 *     hooks->open must not drop.
 *   - onDisconnect runs only for a context that had connected; a context
 *     that never connected is freed synchronously by redisAsyncFree() and
 *     calls nothing of ours (qc_link_drop then says gone itself).  l->ac is
 *     cleared exactly when hiredis lets go.
 *   - hiredis calls every pending command's callback with a NULL reply when
 *     it frees the context, before onDisconnect: the owner's privdata lives
 *     until gone (the owner frees it only in its timer's close_cb).
 *
 * The adapter's blind spot: libuv reports a socket error (POLLERR: a
 * refused connect, a connection reset) to a uv_poll_t only as an error
 * status, stopping the watch, and hiredis 0.14's adapter ignores that status,
 * so hiredis never hears of it.  qc_link_socket_error() reads SO_ERROR
 * instead, from the owner's watch.  Anything it misses still ends in a
 * timeout.
 */
#include "redis_link.h"

#include <arpa/inet.h>
#include <errno.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <hiredis/sds.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "../common/alloc.h"

/* ---- target ------------------------------------------------------------- */

static bool is_address_literal(const char *host)
{
	unsigned char buf[sizeof(struct in6_addr)];
	return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

static void copy_secret(char *dst, const char *src)
{
	snprintf(dst, QC_LINK_SECRET_MAX, "%s", src ? src : "");
}

void qc_link_target_init(qc_link_target *t, const qc_redis_options *o)
{
	snprintf(t->host, sizeof(t->host), "%s", o->addr.host);
	t->port = o->addr.port;
	cf_addr_format(&o->addr, t->name, sizeof(t->name));
	t->numeric = is_address_literal(t->host) && strlen(t->host) < INET6_ADDRSTRLEN;
	t->timeout_ms = o->timeout_ms ? o->timeout_ms : QC_LINK_DEFAULT_TIMEOUT_MS;
	copy_secret(t->username, o->username);
	copy_secret(t->password, o->password);
}

void qc_link_target_wipe(qc_link_target *t)
{
	memset(t->password, 0, sizeof(t->password));
}

/* ---- dropping and retrying ---------------------------------------------- */

static void on_retry_timer(uv_timer_t *timer)
{
	qc_link_start(timer->data);
}

static void schedule_retry(qc_link *l)
{
	if (l->closing)
		return;
	unsigned delay = l->backoff_ms;
	l->backoff_ms = delay >= QC_BACKOFF_MAX_MS / 2 ? QC_BACKOFF_MAX_MS : delay * 2;
	uv_timer_start(&l->timer, on_retry_timer, delay, 0);
}

/* hiredis no longer holds the context (or none was made). */
static void connection_gone(qc_link *l)
{
	l->phase = QC_LINK_IDLE;
	l->hooks->gone(l);
	schedule_retry(l);
}

/* An attempt failed before hiredis held a context. */
static void attempt_failed(qc_link *l, const char *why)
{
	l->hooks->failed(l, why);
	l->phase = QC_LINK_IDLE;
	schedule_retry(l);
}

void qc_link_drop(qc_link *l)
{
	redisAsyncContext *ac = l->ac;
	if (!ac || l->dropping)
		return;
	l->phase = QC_LINK_LOST;
	uv_timer_stop(&l->timer);
	if (l->ac_connected) {
		l->dropping = true;
		redisAsyncFree(ac);
		return;
	}
	l->ac = NULL;
	redisAsyncFree(ac);
	connection_gone(l);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
	qc_link *l = ac->data;
	bool ours = l->dropping || l->closing;
	l->ac = NULL;
	l->ac_connected = false;
	l->dropping = false;
	if (!ours) {
		char why[160];
		snprintf(why, sizeof(why), "%s", ac->err && ac->errstr[0] ? ac->errstr : "connection closed");
		l->hooks->lost(l, why);
	}
	connection_gone(l);
}

/* hiredis frees the context itself right after a failed connect: never free
 * it here (see the top). */
static void on_connect(const redisAsyncContext *ac, int status)
{
	qc_link *l = ac->data;
	if (status != REDIS_OK) {
		char why[160];
		snprintf(why, sizeof(why), "connect: %s", ac->errstr[0] ? ac->errstr : "failed");
		l->ac = NULL;
		attempt_failed(l, why);
		return;
	}
	l->ac_connected = true;
	l->hooks->open(l);
}

/* ---- connecting --------------------------------------------------------- */

static void on_watch_timer(uv_timer_t *timer)
{
	qc_link *l = timer->data;
	l->hooks->watch(l);
}

void qc_link_watch(qc_link *l, uint64_t timeout, uint64_t repeat)
{
	uv_timer_start(&l->timer, on_watch_timer, timeout, repeat);
}

void qc_link_unwatch(qc_link *l)
{
	uv_timer_stop(&l->timer);
}

int qc_link_socket_error(const qc_link *l)
{
	int err = 0;
	socklen_t len = sizeof(err);
	if (!l->ac || l->ac->c.fd < 0)
		return 0;
	if (getsockopt(l->ac->c.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		return errno;
	return err;
}

void qc_link_succeeded(qc_link *l)
{
	l->backoff_ms = QC_BACKOFF_MIN_MS;
}


/* ---- the event hooks hiredis calls (its libuv adapter's job) --------------
 * Why not <hiredis/adapters/libuv.h>: it calls uv_poll_start() on every
 * hook, and each call makes libuv drop the descriptor from epoll and add
 * it again (two epoll_ctl calls), several times per command; and it waits
 * for writability before every write.  Here the poll handle is changed only
 * when what it watches changes, and with defer_writes a connected context's
 * commands are written by qc_link_flush() at the end of the loop turn. */

typedef struct link_events {
	redisAsyncContext *ac;  /* NULL once hiredis let go (the handle is closing) */
	qc_link *link;
	uv_poll_t poll;
	int watching;           /* UV_READABLE / UV_WRITABLE the handle polls for */
	bool reading;
	bool writing;           /* hiredis has something to write */
	bool stuck;             /* ... that the socket did not take: wait until it can */
	bool flushing;          /* inside a write: a write asked for now is one the socket did not take */
} link_events;

static void on_events(uv_poll_t *h, int status, int events);

static void events_update(link_events *e)
{
	if (!e->ac)
		return;
	bool deferred = e->link->defer_writes && (e->ac->c.flags & REDIS_CONNECTED) && !e->stuck;
	int want = (e->reading ? UV_READABLE : 0) | (e->writing && !deferred ? UV_WRITABLE : 0);
	if (want == e->watching)
		return;
	e->watching = want;
	if (want)
		uv_poll_start(&e->poll, want, on_events);
	else
		uv_poll_stop(&e->poll);
}

static void on_events(uv_poll_t *h, int status, int events)
{
	link_events *e = h->data;
	if (status < 0) {
		/* libuv stopped the handle: the owner's watch finds the socket
		 * error (qc_link_socket_error), as with hiredis's adapter */
		e->watching = 0;
		return;
	}
	if (e->ac && (events & UV_READABLE))
		redisAsyncHandleRead(e->ac);
	if (e->ac && (events & UV_WRITABLE)) {
		e->flushing = true;
		redisAsyncHandleWrite(e->ac);
		e->flushing = false; /* e lives until its handle's close callback */
	}
}

static void ev_add_read(void *data)
{
	link_events *e = data;
	e->reading = true;
	events_update(e);
}

static void ev_del_read(void *data)
{
	link_events *e = data;
	e->reading = false;
	events_update(e);
}

static void ev_add_write(void *data)
{
	link_events *e = data;
	e->writing = true;
	if (e->flushing)
		e->stuck = true; /* the socket did not take it all */
	events_update(e);
}

static void ev_del_write(void *data)
{
	link_events *e = data;
	e->writing = false;
	e->stuck = false;
	events_update(e);
}

static void on_events_closed(uv_handle_t *h)
{
	pf_free(h->data);
}

static void ev_cleanup(void *data)
{
	link_events *e = data;
	e->ac = NULL;
	uv_close((uv_handle_t *)&e->poll, on_events_closed);
}

static int attach_events(qc_link *l, redisAsyncContext *ac)
{
	link_events *e = pf_calloc(1, sizeof(*e));
	e->ac = ac;
	e->link = l;
	if (uv_poll_init(l->loop, &e->poll, ac->c.fd) != 0) {
		pf_free(e);
		return -1;
	}
	e->poll.data = e;
	ac->ev.data = e;
	ac->ev.addRead = ev_add_read;
	ac->ev.delRead = ev_del_read;
	ac->ev.addWrite = ev_add_write;
	ac->ev.delWrite = ev_del_write;
	ac->ev.cleanup = ev_cleanup;
	return 0;
}

void qc_link_flush(qc_link *l)
{
	redisAsyncContext *ac = l->ac;
	if (!ac || !l->ac_connected || l->dropping || !(ac->c.flags & REDIS_CONNECTED) ||
	    (ac->c.flags & (REDIS_DISCONNECTING | REDIS_FREEING)) || !ac->c.obuf || sdslen(ac->c.obuf) == 0)
		return;
	link_events *e = ac->ev.data;
	e->flushing = true;
	redisAsyncHandleWrite(ac);
	e->flushing = false; /* e lives until its handle's close callback, even if ac went */
}
static void connect_to(qc_link *l)
{
	char why[160];
	redisAsyncContext *ac = redisAsyncConnect(l->ip, l->target->port);
	if (!ac) {
		attempt_failed(l, "connect: out of memory");
		return;
	}
	if (ac->err) {
		snprintf(why, sizeof(why), "connect: %s", ac->errstr);
		redisAsyncFree(ac);
		attempt_failed(l, why);
		return;
	}
	ac->data = l;
	if (attach_events(l, ac) != 0) {
		redisAsyncFree(ac);
		attempt_failed(l, "connect: cannot watch the socket");
		return;
	}
	/* The adapter first: setting the connect callback arms its write watch. */
	redisAsyncSetConnectCallback(ac, on_connect);
	redisAsyncSetDisconnectCallback(ac, on_disconnect);
	l->ac = ac;
	l->ac_connected = false;
	l->phase = QC_LINK_CONNECTING;
	l->deadline = uv_now(l->loop) + l->target->timeout_ms;
	qc_link_watch(l, QC_LINK_CHECK_MS, QC_LINK_CHECK_MS);
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
	qc_link *l = req->data;
	char why[400];
	l->resolving = false;
	const struct addrinfo *ai = status == 0 ? pick_address(res) : NULL;
	int rc = UV_EAI_NONAME;
	if (ai && ai->ai_family == AF_INET)
		rc = uv_ip4_name((const struct sockaddr_in *)ai->ai_addr, l->ip, sizeof(l->ip));
	else if (ai && ai->ai_family == AF_INET6)
		rc = uv_ip6_name((const struct sockaddr_in6 *)ai->ai_addr, l->ip, sizeof(l->ip));
	uv_freeaddrinfo(res);
	if (l->closing) {
		connection_gone(l);
		return;
	}
	if (status < 0 || rc < 0) {
		snprintf(why, sizeof(why), "resolve %s: %s", l->target->host, uv_strerror(status < 0 ? status : rc));
		attempt_failed(l, why);
		return;
	}
	connect_to(l);
}

void qc_link_start(qc_link *l)
{
	const qc_link_target *t = l->target;
	if (l->closing || l->ac || l->resolving)
		return;
	if (l->hooks->attempt)
		l->hooks->attempt(l);
	if (t->numeric) {
		connect_to(l);
		return;
	}
	struct addrinfo hints;
	char port[16], why[400];
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	snprintf(port, sizeof(port), "%d", t->port);
	l->phase = QC_LINK_RESOLVING;
	int rc = uv_getaddrinfo(l->loop, &l->resolver, on_resolved, t->host, port, &hints);
	if (rc < 0) {
		snprintf(why, sizeof(why), "resolve %s: %s", t->host, uv_strerror(rc));
		attempt_failed(l, why);
		return;
	}
	l->resolving = true;
}

/* ---- lifecycle ---------------------------------------------------------- */

void qc_link_init(qc_link *l, uv_loop_t *loop, const qc_link_target *target, const qc_link_hooks *hooks,
		  void *data)
{
	memset(l, 0, sizeof(*l));
	l->loop = loop;
	l->target = target;
	l->hooks = hooks;
	l->data = data;
	l->phase = QC_LINK_IDLE;
	l->backoff_ms = QC_BACKOFF_MIN_MS;
	l->resolver.data = l;
	if (target->numeric)
		snprintf(l->ip, sizeof(l->ip), "%.*s", (int)sizeof(l->ip) - 1, target->host);
	uv_timer_init(loop, &l->timer);
	l->timer.data = l;
}

void qc_link_stop(qc_link *l)
{
	l->closing = true;
	uv_timer_stop(&l->timer);
}

void qc_link_close(qc_link *l)
{
	qc_link_stop(l);
	if (l->resolving)
		uv_cancel((uv_req_t *)&l->resolver);
	qc_link_drop(l);
}

bool qc_link_released(const qc_link *l)
{
	return !l->ac && !l->resolving;
}
