/*
 * redis.c — the Redis connection manager (see redis.h): one hiredis async
 * context at a time on the libuv loop through <hiredis/adapters/libuv.h>,
 * reconnect with backoff, per-command timeouts, a circuit breaker and a
 * health PING.
 *
 * Connection states (r->conn; the public qc_state is derived from it and the
 * failure count, and changes only in set_state()):
 *   IDLE        no hiredis context; conn_timer waits for the next attempt
 *   RESOLVING   uv_getaddrinfo() running (host names only)
 *   CONNECTING  context made, connect(2) in progress; conn_timer ticks
 *               every QC_CONNECT_CHECK_MS until connect_deadline
 *   HANDSHAKE   connected, the first PING is out
 *   READY       that PING answered: commands are sent
 *   LOST        we asked hiredis to free the context, or hiredis is freeing
 *               it after an error; nothing more is sent on it
 *
 * hiredis ownership rules this file keeps:
 *   - Every command we send carries a qc_cmd as privdata.  hiredis calls
 *     on_reply exactly once per command: with the answer, or with NULL when
 *     the context is freed; on_reply is where a qc_cmd is freed, never
 *     elsewhere.  A command that timed out (or was failed by close) is marked
 *     done and stays with hiredis until then; its late answer is dropped.
 *   - The context is freed only with redisAsyncFree().  Inside a command
 *     callback hiredis defers that (REDIS_IN_CALLBACK), so dropping from
 *     on_reply is safe.  onConnect is not protected that way, so on_connect
 *     never frees: after a failed connect hiredis frees the context itself.
 *   - onDisconnect runs only for a context that had connected; a context
 *     that never connected is freed synchronously by redisAsyncFree() and
 *     calls nothing of ours.  r->ac is cleared exactly when hiredis lets go.
 *   - qc_redis itself is freed in the close_cb of its last uv timer, and its
 *     timers are closed only after hiredis let go of the context and the
 *     resolver request finished, so no hiredis or libuv callback can see a
 *     freed qc_redis.  (The adapter's uv_poll_t frees itself in its own
 *     close_cb.)
 *
 * The adapter's blind spot: libuv reports a socket error (POLLERR: a
 * refused connect, a connection reset) to a uv_poll_t only as an error
 * status, stopping the watch, and hiredis 0.14's adapter ignores that status,
 * so hiredis never hears of it.  socket_error() reads SO_ERROR instead: every
 * QC_CONNECT_CHECK_MS while connecting, and before each health PING.
 * Anything it misses still ends in a timeout.
 *
 * Timeouts: all commands have the same timeout and Redis answers in order,
 * so the waiting commands (r->waiting, in send order) time out in order and
 * one timer armed for the oldest deadline serves them all.
 */
#include "redis.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <limits.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "../common/alloc.h"
#include "../common/log.h"

enum {
	QC_DEFAULT_TIMEOUT_MS = 1000,
	QC_CONNECT_CHECK_MS = 50, /* SO_ERROR look while connecting (see socket_error) */
	QC_HANDLES = 3,           /* deadline_timer, conn_timer, ping_timer */
};

typedef enum conn_state {
	CONN_IDLE,
	CONN_RESOLVING,
	CONN_CONNECTING,
	CONN_HANDSHAKE,
	CONN_READY,
	CONN_LOST,
} conn_state;

typedef enum cmd_kind {
	CMD_USER,      /* qc_redis_command*: the caller's callback */
	CMD_HANDSHAKE, /* the PING that makes a new connection READY */
	CMD_HEALTH,    /* the PING every QC_PING_INTERVAL_MS */
} cmd_kind;

/* One command hiredis holds (see the ownership rules above). */
typedef struct qc_cmd {
	qc_redis *r;
	struct qc_cmd *next, *prev; /* in r->waiting while !done */
	cmd_kind kind;
	bool done;         /* outcome delivered already (timeout, close): drop the answer */
	uint64_t deadline; /* uv_now() ms */
	uint64_t sent_ns;  /* uv_hrtime() at send, for the PING round trip */
	qc_reply_fn cb;    /* CMD_USER; may be NULL */
	void *ctx;
} qc_cmd;

struct qc_redis {
	uv_loop_t *loop;
	char host[256];            /* as configured */
	int port;
	char name[300];            /* "host:port" for logs and the admin */
	char ip[INET6_ADDRSTRLEN]; /* the numeric address hiredis connects to */
	bool numeric;              /* host is an address literal: no resolving */
	unsigned timeout_ms;
	qc_state state;
	conn_state conn;
	redisAsyncContext *ac;     /* the context hiredis holds for us; NULL once it let go */
	bool ac_connected;         /* on_connect(OK) ran: on_disconnect will run when it goes */
	bool dropping;             /* redisAsyncFree() called on a connected context */
	uv_getaddrinfo_t resolver;
	bool resolving;            /* resolver's callback has not run */
	uv_timer_t deadline_timer; /* the oldest waiting command's deadline */
	uv_timer_t conn_timer;     /* IDLE: retry backoff; CONNECTING: connect check */
	uint64_t connect_deadline; /* uv_now() ms */
	uv_timer_t ping_timer;     /* health PING */
	int handles_open;          /* our timers whose close_cb has not run */
	bool handles_closing;
	qc_cmd *waiting_head, *waiting_tail; /* outcome pending, oldest first */
	unsigned in_hiredis;       /* qc_cmds hiredis still holds */
	bool ping_out;             /* a health PING is waiting */
	unsigned failures;         /* consecutive */
	unsigned backoff_ms;       /* delay before the next attempt */
	bool attempted;            /* a connect was attempted (reconnects counts the rest) */
	bool closing;
	char last_error[200];
	qc_redis_counters counters;
};

static void start_connect(qc_redis *r);
static void drop_connection(qc_redis *r);
static void try_finish_close(qc_redis *r);

/* ---- names -------------------------------------------------------------- */

const char *qc_redis_state_name(qc_state state)
{
	switch (state) {
	case QC_STATE_OFF: return "off";
	case QC_STATE_CONNECTING: return "connecting";
	case QC_STATE_UP: return "up";
	case QC_STATE_DOWN: return "down";
	}
	return "unknown";
}

const char *qc_strerror(int status)
{
	switch (status) {
	case QC_OK: return "ok";
	case QC_TIMEOUT: return "redis command timed out";
	case QC_DISCONNECTED: return "not connected to redis";
	case QC_DOWN: return "redis is down";
	case QC_CLOSED: return "redis client closed";
	case QC_EINVAL: return "invalid redis command";
	}
	return "unknown redis error";
}

/* ---- state and circuit breaker ------------------------------------------ */

/* The one place the public state changes; logs each change once. */
static void set_state(qc_redis *r, qc_state next, const char *why)
{
	qc_state prev = r->state;
	if (prev == next)
		return;
	r->state = next;
	switch (next) {
	case QC_STATE_UP: pf_info("redis %s is up", r->name); break;
	case QC_STATE_DOWN: pf_warn("redis %s is down: %s", r->name, why ? why : "unknown"); break;
	case QC_STATE_CONNECTING:
		if (prev == QC_STATE_UP)
			pf_warn("redis %s: connection lost (%s); reconnecting", r->name, why ? why : "unknown");
		break;
	case QC_STATE_OFF: pf_debug("redis %s: closed", r->name); break;
	}
}

/* Redis answered something: the breaker closes. */
static void note_success(qc_redis *r)
{
	r->failures = 0;
	if (r->conn == CONN_READY)
		set_state(r, QC_STATE_UP, NULL);
}

/* Redis failed us (connect, lost connection, timeout, bad PING answer).  The
 * QC_FAILURE_THRESHOLD-th in a row opens the breaker and drops the
 * connection; reconnecting is then the probe. */
static void note_failure(qc_redis *r, const char *why)
{
	snprintf(r->last_error, sizeof(r->last_error), "%s", why);
	pf_debug("redis %s: %s", r->name, why);
	if (r->failures < UINT_MAX)
		r->failures++;
	if (r->state != QC_STATE_DOWN && r->state != QC_STATE_OFF && r->failures >= QC_FAILURE_THRESHOLD) {
		set_state(r, QC_STATE_DOWN, why);
		drop_connection(r);
	}
}

/* The pending error of the context's socket (errno value), or 0. */
static int socket_error(const qc_redis *r)
{
	int err = 0;
	socklen_t len = sizeof(err);
	if (!r->ac || r->ac->c.fd < 0)
		return 0;
	if (getsockopt(r->ac->c.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		return errno;
	return err;
}

/* ---- waiting commands --------------------------------------------------- */

static void on_deadline(uv_timer_t *timer);

static void arm_deadline(qc_redis *r)
{
	if (r->closing || !r->waiting_head) {
		uv_timer_stop(&r->deadline_timer);
		return;
	}
	uint64_t now = uv_now(r->loop), when = r->waiting_head->deadline;
	uv_timer_start(&r->deadline_timer, on_deadline, when > now ? when - now : 0, 0);
}

/* Deadlines only grow, so a running timer already fires early enough; an
 * early fire just re-arms (on_deadline). */
static void waiting_push(qc_redis *r, qc_cmd *cmd)
{
	cmd->prev = r->waiting_tail;
	cmd->next = NULL;
	if (r->waiting_tail)
		r->waiting_tail->next = cmd;
	else
		r->waiting_head = cmd;
	r->waiting_tail = cmd;
	if (!uv_is_active((uv_handle_t *)&r->deadline_timer))
		arm_deadline(r);
}

static void waiting_unlink(qc_redis *r, qc_cmd *cmd)
{
	if (cmd->prev)
		cmd->prev->next = cmd->next;
	else
		r->waiting_head = cmd->next;
	if (cmd->next)
		cmd->next->prev = cmd->prev;
	else
		r->waiting_tail = cmd->prev;
	cmd->next = cmd->prev = NULL;
}

/* ---- sending ------------------------------------------------------------ */

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata);

static qc_cmd *cmd_new(qc_redis *r, cmd_kind kind, qc_reply_fn cb, void *ctx)
{
	qc_cmd *cmd = pf_calloc(1, sizeof(*cmd));
	cmd->r = r;
	cmd->kind = kind;
	cmd->cb = cb;
	cmd->ctx = ctx;
	cmd->deadline = uv_now(r->loop) + r->timeout_ms;
	cmd->sent_ns = uv_hrtime();
	return cmd;
}

/* After redisAsyncCommand*(): on success hiredis holds cmd until on_reply. */
static int cmd_sent(qc_redis *r, qc_cmd *cmd, int hiredis_rc)
{
	if (hiredis_rc != REDIS_OK) {
		pf_free(cmd);
		return (r->ac->c.flags & (REDIS_DISCONNECTING | REDIS_FREEING)) ? QC_DISCONNECTED : QC_EINVAL;
	}
	r->in_hiredis++;
	waiting_push(r, cmd);
	return 0;
}

static int send_ping(qc_redis *r, cmd_kind kind)
{
	qc_cmd *cmd = cmd_new(r, kind, NULL, NULL);
	return cmd_sent(r, cmd, redisAsyncCommand(r->ac, on_reply, cmd, "PING"));
}

/* Why a command cannot be sent now, or 0. */
static int refusal(const qc_redis *r)
{
	if (r->closing)
		return QC_CLOSED;
	if (r->conn != CONN_READY)
		return r->state == QC_STATE_DOWN ? QC_DOWN : QC_DISCONNECTED;
	return 0;
}

int qc_redis_command(qc_redis *r, qc_reply_fn cb, void *ctx, const char *fmt, ...)
{
	if (!r)
		return QC_CLOSED;
	r->counters.commands++;
	int rc = refusal(r);
	if (rc == 0) {
		qc_cmd *cmd = cmd_new(r, CMD_USER, cb, ctx);
		va_list ap;
		va_start(ap, fmt);
		rc = cmd_sent(r, cmd, redisvAsyncCommand(r->ac, on_reply, cmd, fmt, ap));
		va_end(ap);
	}
	if (rc < 0)
		r->counters.errors++;
	return rc;
}

int qc_redis_command_argv(qc_redis *r, qc_reply_fn cb, void *ctx, int argc, const char **argv,
			  const size_t *argvlen)
{
	if (!r)
		return QC_CLOSED;
	r->counters.commands++;
	int rc = argc > 0 && argv ? refusal(r) : QC_EINVAL;
	if (rc == 0) {
		qc_cmd *cmd = cmd_new(r, CMD_USER, cb, ctx);
		rc = cmd_sent(r, cmd, redisAsyncCommandArgv(r->ac, on_reply, cmd, argc, argv, argvlen));
	}
	if (rc < 0)
		r->counters.errors++;
	return rc;
}

/* ---- answers and timeouts ----------------------------------------------- */

/* An internal PING (kind) answered, or failed with why != NULL. */
static void ping_outcome(qc_redis *r, cmd_kind kind, const redisReply *reply, uint64_t sent_ns, const char *why)
{
	char buf[160];
	if (!why && reply->type == REDIS_REPLY_ERROR) {
		snprintf(buf, sizeof(buf), "PING answered: %.120s", reply->str ? reply->str : "error");
		why = buf;
	}
	if (kind == CMD_HEALTH)
		r->ping_out = false;
	if (why) {
		note_failure(r, why);
		if (kind == CMD_HANDSHAKE)
			drop_connection(r); /* inside on_reply hiredis defers the free */
		return;
	}
	r->counters.ping_us = (uv_hrtime() - sent_ns) / 1000;
	if (kind == CMD_HANDSHAKE) {
		r->conn = CONN_READY;
		r->backoff_ms = QC_BACKOFF_MIN_MS;
	}
	note_success(r);
}

/* hiredis's callback for every command: exactly once each (see above). */
static void on_reply(redisAsyncContext *ac, void *reply_, void *privdata)
{
	qc_cmd *cmd = privdata;
	qc_redis *r = cmd->r;
	const redisReply *reply = reply_;
	r->in_hiredis--;
	if (cmd->done) {
		if (reply)
			r->counters.late_replies++;
		pf_free(cmd);
		return;
	}
	waiting_unlink(r, cmd);
	cmd_kind kind = cmd->kind;
	qc_reply_fn cb = cmd->cb;
	void *ctx = cmd->ctx;
	uint64_t sent_ns = cmd->sent_ns;
	pf_free(cmd);
	if (!reply) {
		/* The context is going away: lost, or dropped by us.  on_disconnect
		 * counts the failure once, not per command. */
		r->conn = CONN_LOST;
		if (kind == CMD_HEALTH)
			r->ping_out = false;
		if (kind == CMD_USER) {
			r->counters.errors++;
			if (cb)
				cb(r, QC_DISCONNECTED, NULL, ctx);
		}
		return;
	}
	if (kind != CMD_USER) {
		ping_outcome(r, kind, reply, sent_ns, NULL);
		return;
	}
	note_success(r);
	if (cb)
		cb(r, QC_OK, reply, ctx);
}

/* The oldest waiting commands whose deadline passed get their outcome now;
 * hiredis keeps them (done) until their answer or the context's end. */
static void on_deadline(uv_timer_t *timer)
{
	qc_redis *r = timer->data;
	uint64_t now = uv_now(r->loop);
	char why[96];
	while (!r->closing && r->waiting_head && r->waiting_head->deadline <= now) {
		qc_cmd *cmd = r->waiting_head;
		cmd_kind kind = cmd->kind;
		qc_reply_fn cb = cmd->cb;
		void *ctx = cmd->ctx;
		waiting_unlink(r, cmd);
		cmd->done = true; /* cmd is hiredis's now: not touched again here */
		if (kind != CMD_USER) {
			snprintf(why, sizeof(why), "PING timed out after %u ms", r->timeout_ms);
			ping_outcome(r, kind, NULL, 0, why);
			continue;
		}
		r->counters.timeouts++;
		if (cb)
			cb(r, QC_TIMEOUT, NULL, ctx);
		if (!r->closing) {
			snprintf(why, sizeof(why), "command timed out after %u ms", r->timeout_ms);
			note_failure(r, why);
		}
	}
	arm_deadline(r);
}

static void connection_lost(qc_redis *r, const char *why);

static void on_ping_timer(uv_timer_t *timer)
{
	qc_redis *r = timer->data;
	if (r->conn != CONN_READY)
		return;
	int err = socket_error(r);
	if (err) {
		char why[160];
		snprintf(why, sizeof(why), "%s", strerror(err));
		connection_lost(r, why);
		drop_connection(r);
		return;
	}
	if (!r->ping_out && send_ping(r, CMD_HEALTH) == 0)
		r->ping_out = true;
}

/* ---- connecting --------------------------------------------------------- */

static void on_conn_timer(uv_timer_t *timer);

static void schedule_retry(qc_redis *r)
{
	if (r->closing)
		return;
	unsigned delay = r->backoff_ms;
	r->backoff_ms = delay >= QC_BACKOFF_MAX_MS / 2 ? QC_BACKOFF_MAX_MS : delay * 2;
	uv_timer_start(&r->conn_timer, on_conn_timer, delay, 0);
}

/* hiredis no longer holds a context (or none was made). */
static void connection_gone(qc_redis *r)
{
	r->conn = CONN_IDLE;
	r->ping_out = false;
	if (r->closing)
		try_finish_close(r);
	else
		schedule_retry(r);
}

/* An attempt failed before hiredis held a context. */
static void attempt_failed(qc_redis *r, const char *why)
{
	r->conn = CONN_IDLE;
	note_failure(r, why);
	schedule_retry(r);
}

/* Free the context: at once when it never connected (hiredis calls nothing
 * then), else through on_disconnect, now or once the running hiredis
 * callback returned. */
static void drop_connection(qc_redis *r)
{
	redisAsyncContext *ac = r->ac;
	if (!ac || r->dropping)
		return;
	r->conn = CONN_LOST;
	uv_timer_stop(&r->conn_timer);
	if (r->ac_connected) {
		r->dropping = true;
		redisAsyncFree(ac);
		return;
	}
	r->ac = NULL;
	redisAsyncFree(ac);
	connection_gone(r);
}

/* A connection we did not drop failed. */
static void connection_lost(qc_redis *r, const char *why)
{
	if (r->state == QC_STATE_UP)
		set_state(r, QC_STATE_CONNECTING, why);
	note_failure(r, why);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
	qc_redis *r = ac->data;
	bool ours = r->dropping || r->closing;
	r->ac = NULL;
	r->ac_connected = false;
	r->dropping = false;
	if (!ours) {
		char why[160];
		snprintf(why, sizeof(why), "%s", ac->err && ac->errstr[0] ? ac->errstr : "connection closed");
		connection_lost(r, why);
	}
	connection_gone(r);
}

/* hiredis frees the context itself right after a failed connect: never free
 * it here (onConnect runs outside hiredis's REDIS_IN_CALLBACK protection). */
static void on_connect(const redisAsyncContext *ac, int status)
{
	qc_redis *r = ac->data;
	uv_timer_stop(&r->conn_timer);
	if (status != REDIS_OK) {
		char why[160];
		snprintf(why, sizeof(why), "connect: %s", ac->errstr[0] ? ac->errstr : "failed");
		r->ac = NULL;
		attempt_failed(r, why);
		return;
	}
	r->ac_connected = true;
	r->conn = CONN_HANDSHAKE;
	if (send_ping(r, CMD_HANDSHAKE) < 0)
		uv_timer_start(&r->conn_timer, on_conn_timer, 0, 0); /* fails it outside this callback */
}

static void connect_to(qc_redis *r)
{
	char why[160];
	redisAsyncContext *ac = redisAsyncConnect(r->ip, r->port);
	if (!ac) {
		attempt_failed(r, "connect: out of memory");
		return;
	}
	if (ac->err) {
		snprintf(why, sizeof(why), "connect: %s", ac->errstr);
		redisAsyncFree(ac);
		attempt_failed(r, why);
		return;
	}
	ac->data = r;
	if (redisLibuvAttach(ac, r->loop) != REDIS_OK) {
		ac->ev.cleanup = NULL; /* the adapter failed half-way: its cleanup would crash */
		redisAsyncFree(ac);
		attempt_failed(r, "connect: cannot watch the socket");
		return;
	}
	/* The adapter first: setting the connect callback arms its write watch. */
	redisAsyncSetConnectCallback(ac, on_connect);
	redisAsyncSetDisconnectCallback(ac, on_disconnect);
	r->ac = ac;
	r->ac_connected = false;
	r->conn = CONN_CONNECTING;
	r->connect_deadline = uv_now(r->loop) + r->timeout_ms;
	uv_timer_start(&r->conn_timer, on_conn_timer, QC_CONNECT_CHECK_MS, QC_CONNECT_CHECK_MS);
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
	qc_redis *r = req->data;
	char why[400];
	r->resolving = false;
	const struct addrinfo *ai = status == 0 ? pick_address(res) : NULL;
	int rc = UV_EAI_NONAME;
	if (ai && ai->ai_family == AF_INET)
		rc = uv_ip4_name((const struct sockaddr_in *)ai->ai_addr, r->ip, sizeof(r->ip));
	else if (ai && ai->ai_family == AF_INET6)
		rc = uv_ip6_name((const struct sockaddr_in6 *)ai->ai_addr, r->ip, sizeof(r->ip));
	uv_freeaddrinfo(res);
	if (r->closing) {
		try_finish_close(r);
		return;
	}
	if (status < 0 || rc < 0) {
		snprintf(why, sizeof(why), "resolve %s: %s", r->host, uv_strerror(status < 0 ? status : rc));
		attempt_failed(r, why);
		return;
	}
	connect_to(r);
}

static void start_connect(qc_redis *r)
{
	if (r->closing || r->ac || r->resolving)
		return;
	if (r->attempted)
		r->counters.reconnects++;
	r->attempted = true;
	if (r->numeric) {
		connect_to(r);
		return;
	}
	struct addrinfo hints;
	char port[16], why[400];
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	snprintf(port, sizeof(port), "%d", r->port);
	r->conn = CONN_RESOLVING;
	int rc = uv_getaddrinfo(r->loop, &r->resolver, on_resolved, r->host, port, &hints);
	if (rc < 0) {
		snprintf(why, sizeof(why), "resolve %s: %s", r->host, uv_strerror(rc));
		attempt_failed(r, why);
		return;
	}
	r->resolving = true;
}

static void on_conn_timer(uv_timer_t *timer)
{
	qc_redis *r = timer->data;
	char why[160];
	int err;
	switch (r->conn) {
	case CONN_IDLE: start_connect(r); break;
	case CONN_CONNECTING:
		if ((err = socket_error(r)) != 0)
			snprintf(why, sizeof(why), "connect: %s", strerror(err));
		else if (uv_now(r->loop) >= r->connect_deadline)
			snprintf(why, sizeof(why), "connect: timed out after %u ms", r->timeout_ms);
		else
			break;
		note_failure(r, why);
		drop_connection(r);
		break;
	case CONN_HANDSHAKE: /* the PING could not be sent in on_connect */
		note_failure(r, "PING could not be sent");
		drop_connection(r);
		break;
	default: break;
	}
}

/* ---- lifecycle ---------------------------------------------------------- */

static bool is_address_literal(const char *host)
{
	unsigned char buf[sizeof(struct in6_addr)];
	return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

qc_redis *qc_redis_new(uv_loop_t *loop, const cf_addr *addr, unsigned command_timeout_ms)
{
	char where[300];
	if (!addr || addr->kind != CF_ADDR_TCP) {
		pf_error("redis: %s is not a host:port address", addr ? cf_addr_format(addr, where, sizeof(where)) : "NULL");
		return NULL;
	}
	qc_redis *r = pf_calloc(1, sizeof(*r));
	r->loop = loop;
	snprintf(r->host, sizeof(r->host), "%s", addr->host);
	r->port = addr->port;
	cf_addr_format(addr, r->name, sizeof(r->name));
	r->numeric = is_address_literal(r->host) && strlen(r->host) < sizeof(r->ip);
	if (r->numeric)
		snprintf(r->ip, sizeof(r->ip), "%.*s", (int)sizeof(r->ip) - 1, r->host);
	r->timeout_ms = command_timeout_ms ? command_timeout_ms : QC_DEFAULT_TIMEOUT_MS;
	r->state = QC_STATE_CONNECTING;
	r->conn = CONN_IDLE;
	r->backoff_ms = QC_BACKOFF_MIN_MS;
	r->resolver.data = r;
	uv_timer_t *timers[QC_HANDLES] = {&r->deadline_timer, &r->conn_timer, &r->ping_timer};
	for (int i = 0; i < QC_HANDLES; i++) {
		uv_timer_init(loop, timers[i]);
		timers[i]->data = r;
	}
	r->handles_open = QC_HANDLES;
	uv_timer_start(&r->ping_timer, on_ping_timer, QC_PING_INTERVAL_MS, QC_PING_INTERVAL_MS);
	pf_debug("redis %s: connecting", r->name);
	start_connect(r);
	return r;
}

static void on_timer_closed(uv_handle_t *handle)
{
	qc_redis *r = handle->data;
	if (--r->handles_open == 0)
		pf_free(r);
}

/* Once hiredis and the resolver let go, close the timers; the last close_cb frees r. */
static void try_finish_close(qc_redis *r)
{
	if (!r->closing || r->ac || r->resolving || r->handles_closing)
		return;
	assert(r->in_hiredis == 0 && r->waiting_head == NULL);
	r->handles_closing = true;
	uv_close((uv_handle_t *)&r->deadline_timer, on_timer_closed);
	uv_close((uv_handle_t *)&r->conn_timer, on_timer_closed);
	uv_close((uv_handle_t *)&r->ping_timer, on_timer_closed);
}

void qc_redis_close(qc_redis *r)
{
	if (!r || r->closing)
		return;
	r->closing = true;
	set_state(r, QC_STATE_OFF, NULL);
	uv_timer_stop(&r->deadline_timer);
	uv_timer_stop(&r->conn_timer);
	uv_timer_stop(&r->ping_timer);
	while (r->waiting_head) {
		qc_cmd *cmd = r->waiting_head;
		qc_reply_fn cb = cmd->kind == CMD_USER ? cmd->cb : NULL;
		void *ctx = cmd->ctx;
		bool user = cmd->kind == CMD_USER;
		waiting_unlink(r, cmd);
		cmd->done = true; /* freed when hiredis lets go of it below */
		if (user)
			r->counters.errors++;
		if (cb)
			cb(r, QC_CLOSED, NULL, ctx);
	}
	if (r->resolving)
		uv_cancel((uv_req_t *)&r->resolver);
	drop_connection(r);
	try_finish_close(r);
}

/* ---- accessors ---------------------------------------------------------- */

qc_state qc_redis_state(const qc_redis *r)
{
	return r ? r->state : QC_STATE_OFF;
}

const qc_redis_counters *qc_redis_counters_get(const qc_redis *r)
{
	static const qc_redis_counters none;
	return r ? &r->counters : &none;
}

const char *qc_redis_address(const qc_redis *r)
{
	return r ? r->name : "off";
}

const char *qc_redis_last_error(const qc_redis *r)
{
	return r ? r->last_error : "";
}
