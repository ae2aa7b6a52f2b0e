/*
 * redis.c — the Redis connection pool (see redis.h): one to
 * QC_MAX_CONNECTIONS hiredis async contexts on the libuv loop (events
 * through redis_link.c, commands written once per loop turn by
 * qc_redis_flush()), each with its own reconnect backoff and
 * health PING, round-robin sending, per-command timeouts, one circuit
 * breaker for the pool, and the AUTH / SELECT handshake.
 *
 * Each qc_conn's connection mechanics (resolving, connecting, the connect
 * deadline and SO_ERROR watch, freeing the context, reconnect backoff) are
 * a qc_link's (cache/redis_link.h, shared with cache/subscriber.c).
 * Connection phases (c->link.phase; the pool's public qc_state is derived
 * from them and the pool's failure count, and changes only in set_state()):
 *   the link's  IDLE, RESOLVING, CONNECTING, LOST (see redis_link.h); LOST
 *               also once hiredis fails the connection's commands
 *   HANDSHAKE   connected; AUTH / SELECT (when configured) and the first
 *               PING are out
 *   READY       that PING answered: commands are sent on it
 *
 * hiredis ownership rules this file keeps (with redis_link.c's):
 *   - Every command we send carries a qc_cmd as privdata.  hiredis calls
 *     on_reply exactly once per command: with the answer, or with NULL when
 *     the context is freed; on_reply is where a qc_cmd is freed, never
 *     elsewhere.  A command that timed out (or was failed by close) is marked
 *     done and stays with hiredis until then; its late answer is dropped.
 *   - Dropping a connection from on_reply is safe (hiredis defers the free);
 *     dropping another connection of the pool from there frees that one at
 *     once (its callbacks run, with NULL replies).  on_conn_open runs inside
 *     onConnect and never drops: a handshake it could not send is failed
 *     from the watch.
 *   - qc_redis itself (its connections with it) is freed in the close_cb of
 *     its last uv timer, and its timers are closed only after hiredis let go
 *     of every context and every resolver request finished, so no hiredis
 *     or libuv callback can see a freed qc_redis.  (The adapter's uv_poll_t
 *     frees itself in its own close_cb.)
 *
 * The adapter's blind spot (see redis_link.c): SO_ERROR is read every
 * QC_LINK_CHECK_MS while connecting, and before each health PING.  Anything
 * it misses still ends in a timeout.
 *
 * Timeouts: all commands have the same timeout, so the waiting commands of
 * the whole pool (r->waiting, in deadline order: send order, but for an
 * eval's retry, which keeps its first attempt's deadline and is inserted in
 * its place) time out in order and one timer armed for the oldest deadline
 * serves them all.
 *
 * Scripts (qc_redis_eval): a qc_eval is the ctx of the EVALSHA, then of the
 * EVAL retry, with eval_on_reply as their callback, so it rides on the
 * qc_cmd rules above: eval_on_reply runs exactly once per attempt (answer,
 * timeout, close, lost connection) and frees it unless it sends the retry.
 * It holds the command's formatted nkeys and arguments (the RESP "tail",
 * the same for EVALSHA and EVAL), so the retry is header + text + tail.
 */
#include "redis.h"

#include <assert.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <hiredis/sds.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "../common/alloc.h"
#include "../common/log.h"
#include "../common/strbuf.h"
#include "redis_link.h"

enum {
	QC_POOL_HANDLES = 3, /* deadline_timer, ping_timer, flush; + one link timer per connection */
	QC_SHA_HEX = 40,     /* a SHA-1 in hex, as EVALSHA takes it */
	/* "*<argc>\r\n$7\r\nEVALSHA\r\n$40\r\n<sha>\r\n" at most (argc <= INT_MAX) */
	QC_EVALSHA_HEAD_MAX = 1 + 10 + 2 + 13 + 5 + QC_SHA_HEX + 2,
};

/* A connection's phases once its link is open (c->link.phase; see the top). */
enum {
	CONN_HANDSHAKE = QC_LINK_OPEN,
	CONN_READY,
};

typedef enum cmd_kind {
	CMD_USER,      /* qc_redis_command*: the caller's callback */
	CMD_SETUP,     /* AUTH or SELECT of the handshake: an error answer fails the attempt */
	CMD_HANDSHAKE, /* the PING that makes a new connection READY */
	CMD_HEALTH,    /* the PING every QC_PING_INTERVAL_MS */
} cmd_kind;

typedef struct qc_conn qc_conn;

/* One command hiredis holds (see the ownership rules above). */
typedef struct qc_cmd {
	qc_conn *c;
	struct qc_cmd *next, *prev; /* in r->waiting while !done */
	cmd_kind kind;
	const char *what;  /* CMD_SETUP: "AUTH" or "SELECT", for the failure */
	bool done;         /* outcome delivered already (timeout, close): drop the answer */
	uint64_t deadline; /* uv_now() ms */
	uint64_t sent_ns;  /* uv_hrtime() at send, for the PING round trip */
	qc_reply_fn cb;    /* CMD_USER; may be NULL */
	void *ctx;
} qc_cmd;

/* A script whose SHA-1 is known (qc_redis_eval). */
typedef struct qc_script {
	const char *text; /* the caller's, static: the key is the pointer */
	char sha[QC_SHA_HEX + 1];
} qc_script;

/* One connection of the pool. */
struct qc_conn {
	qc_redis *r;
	int index;
	qc_link link;              /* the context, its phase, timer and backoff (data: c) */
	unsigned in_hiredis;       /* qc_cmds hiredis still holds */
	bool ping_out;             /* a health PING is waiting */
	bool attempted;            /* a connect was attempted (reconnects counts the rest) */
	uint64_t commands;         /* user commands sent on it */
	uint64_t reconnects;
	uint64_t ping_us;
	char last_error[200];
};

struct qc_redis {
	uv_loop_t *loop;
	qc_link_target target;     /* address, name ("host:port" for logs and the admin), timeout, AUTH */
	int database;
	qc_state state;
	qc_conn *conns;
	int nconns;
	unsigned next;             /* round-robin cursor */
	uv_timer_t deadline_timer; /* the oldest waiting command's deadline */
	uv_timer_t ping_timer;     /* health PINGs */
	uv_check_t flush;          /* writes the commands queued during a loop turn at its end */
	bool flush_active;
	int handles_open;          /* our timers whose close_cb has not run */
	bool handles_closing;
	qc_cmd *waiting_head, *waiting_tail; /* outcome pending, oldest first */
	unsigned failures;         /* consecutive, over the pool */
	bool closing;
	char last_error[200];
	qc_redis_counters counters;
	qc_script scripts[QC_SCRIPT_SHAS]; /* the first scripts qc_redis_eval saw */
	int nscripts;
};

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

bool qc_redis_never_ran(int status, const redisReply *reply)
{
	static const char *const before_running[] = {"NOSCRIPT", "NOPERM", "NOAUTH", "WRONGPASS", "OOM",
						      "LOADING", "BUSY", "READONLY", "MASTERDOWN",
						      "ERR unknown command"};
	if (status != QC_OK || !reply || reply->type != REDIS_REPLY_ERROR || !reply->str)
		return false;
	for (size_t i = 0; i < sizeof(before_running) / sizeof(before_running[0]); i++)
		if (strncmp(reply->str, before_running[i], strlen(before_running[i])) == 0)
			return true;
	return false;
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
	case QC_STATE_UP: pf_info("redis %s is up", r->target.name); break;
	case QC_STATE_DOWN: pf_warn("redis %s is down: %s", r->target.name, why ? why : "unknown"); break;
	case QC_STATE_CONNECTING:
		if (prev == QC_STATE_UP)
			pf_warn("redis %s: connection lost (%s); reconnecting", r->target.name, why ? why : "unknown");
		break;
	case QC_STATE_OFF: pf_debug("redis %s: closed", r->target.name); break;
	}
}

static int ready_count(const qc_redis *r)
{
	int n = 0;
	for (int i = 0; i < r->nconns; i++)
		n += r->conns[i].link.phase == CONN_READY;
	return n;
}

/* Redis answered something: the breaker closes. */
static void note_success(qc_redis *r)
{
	r->failures = 0;
	if (ready_count(r) > 0)
		set_state(r, QC_STATE_UP, NULL);
}

static void drop_all(qc_redis *r)
{
	for (int i = 0; i < r->nconns; i++)
		qc_link_drop(&r->conns[i].link);
}

/* Redis failed us (connect, handshake, lost connection, timeout, bad PING
 * answer) on connection c (NULL: the pool).  The QC_FAILURE_THRESHOLD-th in a
 * row opens the breaker and drops every connection; reconnecting is then
 * the probe. */
static void note_failure(qc_redis *r, qc_conn *c, const char *why)
{
	snprintf(r->last_error, sizeof(r->last_error), "%s", why);
	if (c)
		snprintf(c->last_error, sizeof(c->last_error), "%s", why);
	pf_debug("redis %s (connection %d): %s", r->target.name, c ? c->index : -1, why);
	if (r->failures < UINT_MAX)
		r->failures++;
	if (r->state != QC_STATE_DOWN && r->state != QC_STATE_OFF && r->failures >= QC_FAILURE_THRESHOLD) {
		set_state(r, QC_STATE_DOWN, why);
		drop_all(r);
	}
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

/* In deadline order: at the tail but for an eval's retry (see the top).
 * Unless cmd is the new head, a running timer already fires early enough;
 * an early fire just re-arms (on_deadline). */
static void waiting_push(qc_redis *r, qc_cmd *cmd)
{
	qc_cmd *after = r->waiting_tail;
	while (after && after->deadline > cmd->deadline)
		after = after->prev;
	cmd->prev = after;
	cmd->next = after ? after->next : r->waiting_head;
	if (cmd->next)
		cmd->next->prev = cmd;
	else
		r->waiting_tail = cmd;
	if (after)
		after->next = cmd;
	else
		r->waiting_head = cmd;
	if (!after || !uv_is_active((uv_handle_t *)&r->deadline_timer))
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

static qc_cmd *cmd_new(qc_conn *c, cmd_kind kind, qc_reply_fn cb, void *ctx)
{
	qc_cmd *cmd = pf_calloc(1, sizeof(*cmd));
	cmd->c = c;
	cmd->kind = kind;
	cmd->cb = cb;
	cmd->ctx = ctx;
	cmd->deadline = uv_now(c->r->loop) + c->r->target.timeout_ms;
	cmd->sent_ns = uv_hrtime();
	return cmd;
}

/* After redisAsyncCommand*(): on success hiredis holds cmd until on_reply. */
/* Commands go out at the end of the loop turn that queued them (one write
 * for all of them), not a turn later when the socket reports writable. */
void qc_redis_flush(qc_redis *r)
{
	if (!r || r->closing)
		return;
	for (int i = 0; i < r->nconns; i++)
		qc_link_flush(&r->conns[i].link);
}

static void on_flush(uv_check_t *h)
{
	qc_redis *r = h->data;
	uv_check_stop(h);
	r->flush_active = false;
	qc_redis_flush(r);
}

static void flush_soon(qc_redis *r)
{
	if (r->flush_active || r->closing)
		return;
	r->flush_active = true;
	uv_check_start(&r->flush, on_flush);
}

static int cmd_sent(qc_conn *c, qc_cmd *cmd, int hiredis_rc)
{
	if (hiredis_rc != REDIS_OK) {
		pf_free(cmd);
		return (c->link.ac->c.flags & (REDIS_DISCONNECTING | REDIS_FREEING)) ? QC_DISCONNECTED : QC_EINVAL;
	}
	c->in_hiredis++;
	waiting_push(c->r, cmd);
	flush_soon(c->r);
	return 0;
}

static int send_ping(qc_conn *c, cmd_kind kind)
{
	qc_cmd *cmd = cmd_new(c, kind, NULL, NULL);
	return cmd_sent(c, cmd, redisAsyncCommand(c->link.ac, on_reply, cmd, "PING"));
}

/* AUTH and SELECT as configured, then the handshake PING, pipelined. */
static int send_handshake(qc_conn *c)
{
	const qc_link_target *t = &c->r->target;
	redisAsyncContext *ac = c->link.ac;
	qc_cmd *cmd;
	int rc = 0;
	if (t->password[0]) {
		cmd = cmd_new(c, CMD_SETUP, NULL, NULL);
		cmd->what = "AUTH";
		rc = cmd_sent(c, cmd,
			      t->username[0]
				      ? redisAsyncCommand(ac, on_reply, cmd, "AUTH %s %s", t->username, t->password)
				      : redisAsyncCommand(ac, on_reply, cmd, "AUTH %s", t->password));
	}
	if (rc == 0 && c->r->database != 0) {
		cmd = cmd_new(c, CMD_SETUP, NULL, NULL);
		cmd->what = "SELECT";
		rc = cmd_sent(c, cmd, redisAsyncCommand(ac, on_reply, cmd, "SELECT %d", c->r->database));
	}
	return rc == 0 ? send_ping(c, CMD_HANDSHAKE) : rc;
}

/* The next ready connection after the last one used, or NULL. */
static qc_conn *pick_conn(qc_redis *r)
{
	for (int i = 0; i < r->nconns; i++) {
		qc_conn *c = &r->conns[(r->next + (unsigned)i) % (unsigned)r->nconns];
		if (c->link.phase == CONN_READY) {
			r->next = (unsigned)(c->index + 1) % (unsigned)r->nconns;
			return c;
		}
	}
	return NULL;
}

/* A connection to send on, or why a command cannot be sent now. */
static int refusal(qc_redis *r, qc_conn **out)
{
	if (r->closing)
		return QC_CLOSED;
	*out = pick_conn(r);
	if (!*out)
		return r->state == QC_STATE_DOWN ? QC_DOWN : QC_DISCONNECTED;
	(*out)->commands++;
	return 0;
}

int qc_redis_command(qc_redis *r, qc_reply_fn cb, void *ctx, const char *fmt, ...)
{
	if (!r)
		return QC_CLOSED;
	r->counters.commands++;
	qc_conn *c = NULL;
	int rc = refusal(r, &c);
	if (rc == 0) {
		qc_cmd *cmd = cmd_new(c, CMD_USER, cb, ctx);
		va_list ap;
		va_start(ap, fmt);
		rc = cmd_sent(c, cmd, redisvAsyncCommand(c->link.ac, on_reply, cmd, fmt, ap));
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
	qc_conn *c = NULL;
	int rc = argc > 0 && argv ? refusal(r, &c) : QC_EINVAL;
	if (rc == 0) {
		qc_cmd *cmd = cmd_new(c, CMD_USER, cb, ctx);
		rc = cmd_sent(c, cmd, redisAsyncCommandArgv(c->link.ac, on_reply, cmd, argc, argv, argvlen));
	}
	if (rc < 0)
		r->counters.errors++;
	return rc;
}

/* ---- scripts ------------------------------------------------------------ */

/* One qc_redis_eval in flight: the ctx of its attempt's qc_cmd (see the top). */
typedef struct qc_eval {
	qc_reply_fn cb;     /* the caller's; may be NULL */
	void *ctx;
	const char *script; /* the caller's, static */
	uint64_t deadline;  /* of the first attempt: the retry keeps it */
	int nargs;          /* elements of the command: 3 + argc */
	bool retried;       /* sent with the text: a NOSCRIPT now is the script's own answer */
	size_t tail_len;
	char buf[];         /* QC_EVALSHA_HEAD_MAX bytes of room for the EVALSHA header, then the tail */
} qc_eval;

static void eval_on_reply(qc_redis *r, int status, const redisReply *reply, void *ctx);

/* The SHA-1 of script in lowercase hex; false when libcrypto failed. */
static bool sha1_hex(const char *script, char hex[QC_SHA_HEX + 1])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	if (EVP_Digest(script, strlen(script), md, &n, EVP_sha1(), NULL) != 1 || n * 2 != QC_SHA_HEX)
		return false;
	pf_hex(md, n, hex);
	return true;
}

/* script's SHA-1: remembered per script pointer in r->scripts (the first
 * QC_SCRIPT_SHAS seen), computed into spare each time once that is full;
 * NULL when it could not be computed. */
static const char *script_sha(qc_redis *r, const char *script, char spare[QC_SHA_HEX + 1])
{
	for (int i = 0; i < r->nscripts; i++)
		if (r->scripts[i].text == script)
			return r->scripts[i].sha;
	qc_script *slot = r->nscripts < QC_SCRIPT_SHAS ? &r->scripts[r->nscripts] : NULL;
	char *hex = slot ? slot->sha : spare;
	if (!sha1_hex(script, hex))
		return NULL;
	if (slot) {
		slot->text = script;
		r->nscripts++;
	}
	return hex;
}

/* The RESP bulk string "$<n>\r\n<s>\r\n" at p (NULL: only measured); its size. */
static size_t put_bulk(char *p, const char *s, size_t n)
{
	char head[32];
	size_t hl = (size_t)snprintf(head, sizeof(head), "$%zu\r\n", n);
	if (p) {
		memcpy(p, head, hl);
		memcpy(p + hl, s, n);
		memcpy(p + hl + n, "\r\n", 2);
	}
	return hl + n + 2;
}

static size_t arg_len(const char **argv, const size_t *argvlen, int i)
{
	return argvlen ? argvlen[i] : strlen(argv[i]);
}

/* A qc_eval whose tail is nkeys then the argc keys and arguments, formatted;
 * NULL when they are too big to format. */
static qc_eval *eval_new(qc_redis *r, qc_reply_fn cb, void *ctx, const char *script, int nkeys, int argc,
			 const char **argv, const size_t *argvlen)
{
	char nk[16];
	size_t nkl = (size_t)snprintf(nk, sizeof(nk), "%d", nkeys);
	size_t tail = put_bulk(NULL, nk, nkl);
	for (int i = 0; i < argc; i++) {
		size_t n = arg_len(argv, argvlen, i);
		if (n > SIZE_MAX / 2 - tail)
			return NULL;
		tail += put_bulk(NULL, argv[i], n);
	}
	qc_eval *ev = pf_malloc(sizeof(*ev) + QC_EVALSHA_HEAD_MAX + tail);
	ev->cb = cb;
	ev->ctx = ctx;
	ev->script = script;
	ev->deadline = uv_now(r->loop) + r->target.timeout_ms;
	ev->nargs = argc + 3;
	ev->retried = false;
	ev->tail_len = tail;
	char *p = ev->buf + QC_EVALSHA_HEAD_MAX;
	p += put_bulk(p, nk, nkl);
	for (int i = 0; i < argc; i++)
		p += put_bulk(p, argv[i], arg_len(argv, argvlen, i));
	return ev;
}

/* Send ev's command on c: EVALSHA sha, or EVAL with the text when sha is
 * NULL; hiredis copies the bytes.  On success hiredis holds ev's attempt. */
static int eval_send(qc_conn *c, qc_eval *ev, const char *sha)
{
	qc_cmd *cmd = cmd_new(c, CMD_USER, eval_on_reply, ev);
	cmd->deadline = ev->deadline;
	char head[96];
	int hl;
	if (sha) {
		hl = snprintf(head, sizeof(head), "*%d\r\n$7\r\nEVALSHA\r\n$%d\r\n%s\r\n", ev->nargs, QC_SHA_HEX, sha);
		assert(hl > 0 && hl <= QC_EVALSHA_HEAD_MAX);
		char *start = ev->buf + QC_EVALSHA_HEAD_MAX - hl;
		memcpy(start, head, (size_t)hl);
		return cmd_sent(c, cmd,
				redisAsyncFormattedCommand(c->link.ac, on_reply, cmd, start,
							   (size_t)hl + ev->tail_len));
	}
	size_t sl = strlen(ev->script);
	hl = snprintf(head, sizeof(head), "*%d\r\n$4\r\nEVAL\r\n", ev->nargs);
	size_t len = (size_t)hl + put_bulk(NULL, ev->script, sl) + ev->tail_len;
	char *buf = pf_malloc(len);
	memcpy(buf, head, (size_t)hl);
	size_t off = (size_t)hl + put_bulk(buf + hl, ev->script, sl);
	memcpy(buf + off, ev->buf + QC_EVALSHA_HEAD_MAX, ev->tail_len);
	ev->retried = true;
	int rc = cmd_sent(c, cmd, redisAsyncFormattedCommand(c->link.ac, on_reply, cmd, buf, len));
	pf_free(buf);
	return rc;
}

static bool is_noscript(const redisReply *reply)
{
	return reply && reply->type == REDIS_REPLY_ERROR && reply->len >= 8 && memcmp(reply->str, "NOSCRIPT", 8) == 0 &&
	       (reply->len == 8 || reply->str[8] == ' ');
}

/* The outcome of one attempt (see the top): NOSCRIPT to the EVALSHA sends
 * the retry; anything else is the caller's answer. */
static void eval_on_reply(qc_redis *r, int status, const redisReply *reply, void *ctx)
{
	qc_eval *ev = ctx;
	if (status == QC_OK && !ev->retried && is_noscript(reply)) {
		qc_conn *c = NULL;
		status = refusal(r, &c);
		if (status == 0 && (status = eval_send(c, ev, NULL)) == 0) {
			r->counters.script_loads++;
			return; /* ev now rides on the retry */
		}
		r->counters.errors++; /* refused at once: that is the answer */
		reply = NULL;
	}
	qc_reply_fn cb = ev->cb;
	void *cb_ctx = ev->ctx;
	pf_free(ev);
	if (cb)
		cb(r, status, reply, cb_ctx);
}

int qc_redis_eval(qc_redis *r, qc_reply_fn cb, void *ctx, const char *script, int nkeys, int argc,
		  const char **argv, const size_t *argvlen)
{
	if (!r)
		return QC_CLOSED;
	r->counters.commands++;
	bool valid = script && nkeys >= 0 && nkeys <= argc && argc <= INT_MAX - 3 && (argc == 0 || argv);
	qc_conn *c = NULL;
	int rc = valid ? refusal(r, &c) : QC_EINVAL;
	qc_eval *ev = NULL;
	if (rc == 0 && !(ev = eval_new(r, cb, ctx, script, nkeys, argc, argv, argvlen)))
		rc = QC_EINVAL;
	if (rc == 0) {
		char spare[QC_SHA_HEX + 1];
		rc = eval_send(c, ev, script_sha(r, script, spare)); /* no SHA-1: EVAL at once */
	}
	if (rc < 0) {
		pf_free(ev);
		r->counters.errors++;
	}
	return rc;
}

/* ---- answers and timeouts ----------------------------------------------- */

/* What an internal command was, copied out of its qc_cmd (which a failure
 * dropping connections may free). */
typedef struct internal_cmd {
	cmd_kind kind;
	const char *what;
	uint64_t sent_ns;
} internal_cmd;

static internal_cmd internal_of(const qc_cmd *cmd)
{
	internal_cmd ic = {cmd->kind, cmd->kind == CMD_SETUP ? cmd->what : "PING", cmd->sent_ns};
	return ic;
}

/* An internal command of connection c answered, or failed with why != NULL. */
static void internal_outcome(qc_conn *c, internal_cmd ic, const redisReply *reply, const char *why)
{
	qc_redis *r = c->r;
	char buf[160];
	if (!why && reply->type == REDIS_REPLY_ERROR) {
		snprintf(buf, sizeof(buf), "%s answered: %.120s", ic.what, reply->str ? reply->str : "error");
		why = buf;
	}
	if (ic.kind == CMD_HEALTH)
		c->ping_out = false;
	if (why) {
		note_failure(r, c, why);
		if (ic.kind != CMD_HEALTH)
			qc_link_drop(&c->link); /* inside on_reply hiredis defers the free */
		return;
	}
	if (ic.kind == CMD_SETUP)
		return; /* the handshake PING decides */
	c->ping_us = r->counters.ping_us = (uv_hrtime() - ic.sent_ns) / 1000;
	if (ic.kind == CMD_HANDSHAKE) {
		c->link.phase = CONN_READY;
		qc_link_succeeded(&c->link);
		c->last_error[0] = '\0';
	}
	note_success(r);
}

/* hiredis's callback for every command: exactly once each (see above). */
static void on_reply(redisAsyncContext *ac, void *reply_, void *privdata)
{
	qc_cmd *cmd = privdata;
	qc_conn *c = cmd->c;
	qc_redis *r = c->r;
	const redisReply *reply = reply_;
	c->in_hiredis--;
	if (cmd->done) {
		if (reply)
			r->counters.late_replies++;
		pf_free(cmd);
		return;
	}
	waiting_unlink(r, cmd);
	if (!reply) {
		/* The context is going away: lost, or dropped by us.  The link's
		 * lost hook counts the failure once, not per command. */
		c->link.phase = QC_LINK_LOST;
		if (cmd->kind == CMD_HEALTH)
			c->ping_out = false;
		if (cmd->kind == CMD_USER) {
			r->counters.errors++;
			if (cmd->cb)
				cmd->cb(r, QC_DISCONNECTED, NULL, cmd->ctx);
		}
		pf_free(cmd);
		return;
	}
	if (cmd->kind != CMD_USER) {
		internal_cmd ic = internal_of(cmd);
		pf_free(cmd);
		internal_outcome(c, ic, reply, NULL);
		return;
	}
	qc_reply_fn cb = cmd->cb;
	void *ctx = cmd->ctx;
	pf_free(cmd);
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
		qc_conn *c = cmd->c;
		waiting_unlink(r, cmd);
		cmd->done = true; /* cmd is hiredis's now: not touched after this block */
		if (cmd->kind != CMD_USER) {
			internal_cmd ic = internal_of(cmd);
			snprintf(why, sizeof(why), "%s timed out after %u ms", ic.what, r->target.timeout_ms);
			internal_outcome(c, ic, NULL, why);
			continue;
		}
		qc_reply_fn cb = cmd->cb;
		void *ctx = cmd->ctx;
		r->counters.timeouts++;
		if (cb)
			cb(r, QC_TIMEOUT, NULL, ctx);
		if (!r->closing) {
			snprintf(why, sizeof(why), "command timed out after %u ms", r->target.timeout_ms);
			note_failure(r, c, why);
		}
	}
	arm_deadline(r);
}

static void connection_lost(qc_conn *c, const char *why);

static void ping_conn(qc_conn *c)
{
	if (c->link.phase != CONN_READY)
		return;
	int err = qc_link_socket_error(&c->link);
	if (err) {
		char why[160];
		snprintf(why, sizeof(why), "%s", strerror(err));
		connection_lost(c, why);
		qc_link_drop(&c->link);
		return;
	}
	if (!c->ping_out && send_ping(c, CMD_HEALTH) == 0)
		c->ping_out = true;
}

static void on_ping_timer(uv_timer_t *timer)
{
	qc_redis *r = timer->data;
	for (int i = 0; i < r->nconns && !r->closing; i++)
		ping_conn(&r->conns[i]);
}

/* ---- the connections' links -------------------------------------------- */

/* A connection we did not drop failed. */
static void connection_lost(qc_conn *c, const char *why)
{
	qc_redis *r = c->r;
	bool was_ready = c->link.phase == CONN_READY;
	c->link.phase = QC_LINK_LOST;
	if (r->state == QC_STATE_UP && ready_count(r) == 0)
		set_state(r, QC_STATE_CONNECTING, why);
	else if (was_ready && r->state == QC_STATE_UP)
		pf_warn("redis %s: connection %d lost (%s); reconnecting", r->target.name, c->index, why);
	note_failure(r, c, why);
}

/* The link's hooks (redis_link.h says when each runs); l->data is the qc_conn. */

static void on_conn_attempt(qc_link *l)
{
	qc_conn *c = l->data;
	if (c->attempted) {
		c->reconnects++;
		c->r->counters.reconnects++;
	}
	c->attempted = true;
}

static void on_conn_failed(qc_link *l, const char *why)
{
	qc_conn *c = l->data;
	note_failure(c->r, c, why);
}

/* Inside hiredis's onConnect: never drops (see the top). */
static void on_conn_open(qc_link *l)
{
	qc_link_unwatch(l); /* the handshake's commands have their own deadlines */
	l->phase = CONN_HANDSHAKE;
	if (send_handshake(l->data) < 0)
		qc_link_watch(l, 0, 0); /* fails it outside this callback */
}

static void on_conn_lost(qc_link *l, const char *why)
{
	connection_lost(l->data, why);
}

static void on_conn_gone(qc_link *l)
{
	qc_conn *c = l->data;
	c->ping_out = false;
	if (c->r->closing)
		try_finish_close(c->r);
}

static void on_conn_watch(qc_link *l)
{
	qc_conn *c = l->data;
	char why[160];
	int err;
	switch (l->phase) {
	case QC_LINK_CONNECTING:
		if ((err = qc_link_socket_error(l)) != 0)
			snprintf(why, sizeof(why), "connect: %s", strerror(err));
		else if (uv_now(c->r->loop) >= l->deadline)
			snprintf(why, sizeof(why), "connect: timed out after %u ms", c->r->target.timeout_ms);
		else
			break;
		note_failure(c->r, c, why);
		qc_link_drop(l);
		break;
	case CONN_HANDSHAKE: /* the handshake could not be sent in on_conn_open */
		note_failure(c->r, c, "handshake could not be sent");
		qc_link_drop(l);
		break;
	default: break;
	}
}

static const qc_link_hooks conn_hooks = {
	.attempt = on_conn_attempt,
	.failed = on_conn_failed,
	.open = on_conn_open,
	.lost = on_conn_lost,
	.gone = on_conn_gone,
	.watch = on_conn_watch,
};

/* ---- lifecycle ---------------------------------------------------------- */

static void conn_init(qc_redis *r, qc_conn *c, int index)
{
	c->r = r;
	c->index = index;
	qc_link_init(&c->link, r->loop, &r->target, &conn_hooks, c);
	c->link.defer_writes = true; /* every command is followed by flush_soon() */
}

qc_redis *qc_redis_open(uv_loop_t *loop, const qc_redis_options *o)
{
	char where[300];
	if (!o || o->addr.kind != CF_ADDR_TCP) {
		pf_error("redis: %s is not a host:port address",
			 o ? cf_addr_format(&o->addr, where, sizeof(where)) : "NULL");
		return NULL;
	}
	qc_redis *r = pf_calloc(1, sizeof(*r));
	r->loop = loop;
	qc_link_target_init(&r->target, o);
	r->database = o->database;
	r->state = QC_STATE_CONNECTING;
	r->nconns = o->connections < 1 ? 1 : o->connections > QC_MAX_CONNECTIONS ? QC_MAX_CONNECTIONS : o->connections;
	r->conns = pf_calloc((size_t)r->nconns, sizeof(*r->conns));
	uv_timer_init(loop, &r->deadline_timer);
	uv_timer_init(loop, &r->ping_timer);
	uv_check_init(loop, &r->flush);
	r->deadline_timer.data = r->ping_timer.data = r->flush.data = r;
	for (int i = 0; i < r->nconns; i++)
		conn_init(r, &r->conns[i], i);
	r->handles_open = QC_POOL_HANDLES + r->nconns;
	uv_timer_start(&r->ping_timer, on_ping_timer, QC_PING_INTERVAL_MS, QC_PING_INTERVAL_MS);
	pf_debug("redis %s: connecting %d connection(s), database %d%s", r->target.name, r->nconns, r->database,
		 r->target.password[0] ? ", with AUTH" : "");
	for (int i = 0; i < r->nconns; i++)
		qc_link_start(&r->conns[i].link);
	return r;
}

qc_redis *qc_redis_new(uv_loop_t *loop, const cf_addr *addr, unsigned command_timeout_ms)
{
	if (!addr) {
		pf_error("redis: NULL is not a host:port address");
		return NULL;
	}
	qc_redis_options o = {.addr = *addr, .timeout_ms = command_timeout_ms, .connections = 1};
	return qc_redis_open(loop, &o);
}

static void handle_closed(qc_redis *r)
{
	if (--r->handles_open == 0) {
		qc_link_target_wipe(&r->target);
		pf_free(r->conns);
		pf_free(r);
	}
}

static void on_pool_timer_closed(uv_handle_t *handle)
{
	handle_closed(handle->data);
}

static void on_conn_timer_closed(uv_handle_t *handle)
{
	const qc_link *l = handle->data;
	handle_closed(((const qc_conn *)l->data)->r);
}

/* Once hiredis and the resolvers let go, close the timers; the last close_cb frees r. */
static void try_finish_close(qc_redis *r)
{
	if (!r->closing || r->handles_closing)
		return;
	for (int i = 0; i < r->nconns; i++)
		if (!qc_link_released(&r->conns[i].link))
			return;
	assert(r->waiting_head == NULL);
	r->handles_closing = true;
	uv_close((uv_handle_t *)&r->deadline_timer, on_pool_timer_closed);
	uv_close((uv_handle_t *)&r->ping_timer, on_pool_timer_closed);
	uv_close((uv_handle_t *)&r->flush, on_pool_timer_closed);
	for (int i = 0; i < r->nconns; i++) {
		assert(r->conns[i].in_hiredis == 0);
		uv_close((uv_handle_t *)&r->conns[i].link.timer, on_conn_timer_closed);
	}
}

void qc_redis_close(qc_redis *r)
{
	if (!r || r->closing)
		return;
	r->closing = true;
	set_state(r, QC_STATE_OFF, NULL);
	uv_timer_stop(&r->deadline_timer);
	uv_timer_stop(&r->ping_timer);
	for (int i = 0; i < r->nconns; i++)
		qc_link_stop(&r->conns[i].link); /* no attempt from now on */
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
	for (int i = 0; i < r->nconns; i++)
		qc_link_close(&r->conns[i].link);
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
	return r ? r->target.name : "off";
}

const char *qc_redis_last_error(const qc_redis *r)
{
	return r ? r->last_error : "";
}

int qc_redis_database(const qc_redis *r)
{
	return r ? r->database : 0;
}

int qc_redis_connections(const qc_redis *r)
{
	return r ? r->nconns : 0;
}

int qc_redis_conn_info_get(const qc_redis *r, int i, qc_redis_conn_info *out)
{
	if (!r || i < 0 || i >= r->nconns)
		return -1;
	const qc_conn *c = &r->conns[i];
	out->state = r->closing                  ? QC_STATE_OFF
		     : c->link.phase == CONN_READY ? QC_STATE_UP
		     : r->state == QC_STATE_DOWN  ? QC_STATE_DOWN
						  : QC_STATE_CONNECTING;
	out->commands = c->commands;
	out->reconnects = c->reconnects;
	out->ping_us = c->ping_us;
	out->last_error = c->last_error;
	return 0;
}
