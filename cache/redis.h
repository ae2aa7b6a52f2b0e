/*
 * redis.h — pgfold's connections to Redis: a small pool (cache.redis_connections,
 * default 1) that the result cache sends its commands through, round-robin
 * over the connections that are ready, and the source of the Redis health
 * the admin port reports (the pool's, and each connection's).  hiredis 0.14
 * async API on the libuv loop (cache/redis_link.c hooks hiredis's events
 * into it); nothing else in pgfold talks to Redis but the subscriber
 * (subscriber.h).
 *
 * Each new connection first sends AUTH (with a user name for a Redis 6 ACL
 * user) when a password is configured, SELECT when the database is not 0,
 * then the PING that makes it ready; an error answer to any of them fails
 * the attempt ("AUTH: WRONGPASS ..." in the last error; the password is
 * never logged).  Commands on different connections are not ordered with
 * each other: a command sent after another one's answer arrived is.
 *
 * pgfold never depends on Redis being up (fail-open): a command either gets
 * its answer within the command timeout or an error, and while Redis is down
 * commands are refused at once without touching the network.
 *
 * Interface
 *   qc_redis_open(loop, options)        start connecting the pool (and keep reconnecting)
 *   qc_redis_new(loop, addr, timeout)   the same for one connection, no AUTH, database 0
 *   qc_redis_command(r, cb, ctx, fmt, ...)
 *   qc_redis_command_argv(r, cb, ctx, argc, argv, argvlen)
 *                                       send one command (binary-safe in argv form)
 *   qc_redis_eval(r, cb, ctx, script, nkeys, argc, argv, argvlen)
 *                                       run a Lua script: EVALSHA, EVAL with the text
 *                                       only when Redis answers NOSCRIPT
 *   qc_redis_close(r)                   idempotent; fails every pending command
 *                                       once; frees itself once every handle closed
 *   qc_redis_state(r), qc_redis_state_name(s) OFF / CONNECTING / UP / DOWN
 *   qc_redis_counters(r)                commands, errors, timeouts, reconnects, ping,
 *                                       script loads
 *   qc_redis_address(r)                 "127.0.0.1:6379", for logs and the admin
 *   qc_redis_connections(r), qc_redis_conn_info_get(r, i, out)
 *                                       each connection's state and counters
 *   qc_redis_database(r)                the database number SELECTed
 *   qc_strerror(status)                 text of a QC_* status
 *
 * States (of the pool: one circuit breaker for all its connections)
 *   CONNECTING  no connection ready yet, or reconnecting after the last ready
 *               one was lost, while fewer than QC_FAILURE_THRESHOLD failures
 *               happened in a row; commands are refused with QC_DISCONNECTED
 *   UP          at least one connection ready (its connect handshake, then its
 *               PING once a second, answered); commands are sent round-robin
 *               over the ready connections
 *   DOWN        QC_FAILURE_THRESHOLD failures in a row over the whole pool
 *               (failed connects or handshakes, lost connections, timed-out
 *               commands or PINGs): every connection is dropped and commands
 *               are refused with QC_DOWN.  Each connection reconnects with
 *               capped exponential backoff (100 ms doubling to 5 s): the
 *               first whose handshake answers makes the pool UP.
 *   OFF         after qc_redis_close (and for a NULL qc_redis)
 * Each change is logged once: "redis ADDR is down: why" (warning), "redis
 * ADDR is up" (info), "redis ADDR: connection lost (...)" (warning).
 *
 * Single-threaded: every function runs on the loop's thread.  hiredis writes
 * with write(2), so the process must ignore SIGPIPE (pgfold's main does).
 */
#ifndef PGFOLD_CACHE_REDIS_H
#define PGFOLD_CACHE_REDIS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "../conf/conf.h"

struct redisReply; /* <hiredis/hiredis.h>: include it to read a reply's fields */

typedef struct qc_redis qc_redis;

/* Connections one pool may hold (cache.redis_connections). */
#define QC_MAX_CONNECTIONS 16
/* Consecutive failures that make the state DOWN. */
#define QC_FAILURE_THRESHOLD 3
/* Reconnect backoff: the first retry after QC_BACKOFF_MIN_MS, doubling to QC_BACKOFF_MAX_MS. */
#define QC_BACKOFF_MIN_MS 100
#define QC_BACKOFF_MAX_MS 5000
/* A health PING is sent this often while UP. */
#define QC_PING_INTERVAL_MS 1000

/* Status of a command: 0 or negative. */
typedef enum qc_status {
	QC_OK = 0,
	QC_TIMEOUT = -1,      /* no answer within the command timeout; a late answer is dropped */
	QC_DISCONNECTED = -2, /* no connection (not yet, or reconnecting), or it was lost */
	QC_DOWN = -3,         /* refused without trying: the circuit breaker is open */
	QC_CLOSED = -4,       /* qc_redis_close() ran */
	QC_EINVAL = -5,       /* the command could not be formatted */
} qc_status;

typedef enum qc_state {
	QC_STATE_OFF = 0,
	QC_STATE_CONNECTING,
	QC_STATE_UP,
	QC_STATE_DOWN,
} qc_state;

typedef struct qc_redis_counters {
	uint64_t commands;     /* qc_redis_command* calls; each ends as a reply, an error or a timeout */
	uint64_t errors;       /* commands refused (down, disconnected, closed, bad format) or lost with
				  their connection; an error *reply* from Redis is a reply, not counted */
	uint64_t timeouts;     /* commands not answered within the command timeout */
	uint64_t reconnects;   /* connection attempts after the first one */
	uint64_t late_replies; /* answers that arrived after their command timed out (dropped) */
	uint64_t ping_us;      /* round trip of the last answered PING, microseconds; 0 before one */
	uint64_t script_loads; /* qc_redis_eval: EVALSHA answered NOSCRIPT, so the script was sent
				  again with its text (EVAL), which loads it into Redis's script cache */
} qc_redis_counters;

/* What one connection of the pool reports (qc_redis_conn_info_get). */
typedef struct qc_redis_conn_info {
	qc_state state;         /* UP when ready; DOWN while the pool's breaker is open; else CONNECTING */
	uint64_t commands;      /* commands sent on it (the pool's round-robin share) */
	uint64_t reconnects;    /* its connection attempts after the first */
	uint64_t ping_us;       /* round trip of its last answered PING; 0 before one */
	const char *last_error; /* its last failure, "" when none */
} qc_redis_conn_info;

/* How to reach Redis (qc_redis_open). */
typedef struct qc_redis_options {
	cf_addr addr;            /* must be CF_ADDR_TCP */
	unsigned timeout_ms;     /* each command, PING, handshake and connect attempt (0: 1000 ms) */
	int database;            /* SELECTed on each connection when not 0 */
	const char *username;    /* with password: AUTH username password (Redis 6 ACL); NULL or "" */
	const char *password;    /* AUTH password when not NULL or ""; copied */
	int connections;         /* 1 .. QC_MAX_CONNECTIONS (clamped) */
} qc_redis_options;

/*
 * The answer to one command.  status is QC_OK with reply set (valid only
 * during the call; hiredis frees it afterwards; a Redis error answer is a
 * reply of type REDIS_REPLY_ERROR), or a negative QC_* status with reply
 * NULL.  Runs exactly once per accepted command, always from the loop and
 * never from inside qc_redis_command().  It may send commands and may call
 * qc_redis_close(r) (r stays valid until the callback returns).
 */
typedef void (*qc_reply_fn)(qc_redis *r, int status, const struct redisReply *reply, void *ctx);

/* Starts connecting to addr (must be CF_ADDR_TCP; a host name is resolved
 * before every connect attempt) and keeps its connections for the object's
 * lifetime.  command_timeout_ms bounds each command, each PING and each
 * connect attempt (0: 1000 ms).  Returns NULL, after logging, only when addr
 * is not TCP. */
qc_redis *qc_redis_new(uv_loop_t *loop, const cf_addr *addr, unsigned command_timeout_ms);
/* The same with every option; NULL, after logging, only when the address is not TCP. */
qc_redis *qc_redis_open(uv_loop_t *loop, const qc_redis_options *options);

/*
 * Send one command (hiredis format: "SET %s %b", key, val, len).  Returns 0
 * when it was sent: cb will run exactly once, later.  Otherwise returns the
 * negative QC_* status why it was not (QC_DOWN, QC_DISCONNECTED, QC_CLOSED,
 * QC_EINVAL; QC_CLOSED for a NULL r), nothing went to Redis and cb will never
 * run: fail-open callers simply carry on without the cache.  cb may be NULL
 * (fire and forget).  Not for SUBSCRIBE or MONITOR.
 */
int qc_redis_command(qc_redis *r, qc_reply_fn cb, void *ctx, const char *fmt, ...)
	__attribute__((format(printf, 4, 5), warn_unused_result));
/* The same with arguments as byte strings (argvlen NULL: NUL-terminated). */
int qc_redis_command_argv(qc_redis *r, qc_reply_fn cb, void *ctx, int argc, const char **argv,
			  const size_t *argvlen) __attribute__((warn_unused_result));

/* Scripts per pool whose SHA-1 qc_redis_eval remembers (see there). */
#define QC_SCRIPT_SHAS 16

/*
 * Run a Lua script: EVALSHA with the script's SHA-1, and when Redis answers
 * NOSCRIPT (script cache flushed, Redis restarted, another server), the same
 * command again as EVAL with the text, transparently: cb runs exactly once,
 * with the final answer (a script's own error is a REDIS_REPLY_ERROR reply,
 * as for any command), under the same contract as qc_redis_command_argv:
 * the same return values (QC_EINVAL also for a NULL script, argc < 0,
 * nkeys < 0 or > argc, or argv NULL with argc > 0), cb may be NULL, and one
 * command in the counters (plus script_loads for a retry).  The command timeout covers both attempts
 * together: cb runs within one timeout of this call, whatever the retry.
 * A retry refused at once (pool down or closed) gives cb that status.
 * argv/argvlen are the keys then the arguments (the first nkeys of the argc
 * are keys); argvlen NULL: NUL-terminated.  They are only read during the
 * call: the command is formatted once (the bytes hiredis would format
 * anyway) and that copy, less its EVALSHA header, is kept for the retry
 * until cb runs, then freed, on every path.
 *
 * script must be NUL-terminated and never change while r lives (a string
 * literal or a static const array, as pgfold's scripts are): the SHA-1 is
 * computed once per script *pointer* (the first QC_SCRIPT_SHAS pointers a
 * pool sees; any further script is hashed on each call) and the text is
 * read again when the retry is sent.
 */
int qc_redis_eval(qc_redis *r, qc_reply_fn cb, void *ctx, const char *script, int nkeys, int argc,
		  const char **argv, const size_t *argvlen) __attribute__((warn_unused_result));

/* Write every connection's queued commands now.  Commands are otherwise
 * written at the end of the loop turn that queued them (a check handle):
 * a caller that queues from a check callback itself calls this, since a
 * check handle started during the check phase runs only a turn later. */
void qc_redis_flush(qc_redis *r);

/* Idempotent.  Every command still waiting gets its callback once, with
 * QC_CLOSED, before this returns; the state becomes OFF; the connection is
 * dropped.  r frees itself once hiredis has let go of the connection and
 * every uv handle's close callback ran: do not use r after this call (except
 * inside a callback that is running). */
void qc_redis_close(qc_redis *r);

qc_state qc_redis_state(const qc_redis *r); /* QC_STATE_OFF for NULL */
const char *qc_redis_state_name(qc_state state); /* "off", "connecting", "up", "down" */
const qc_redis_counters *qc_redis_counters_get(const qc_redis *r);
const char *qc_redis_address(const qc_redis *r); /* "127.0.0.1:6379" */
int qc_redis_database(const qc_redis *r);        /* 0 for NULL */
int qc_redis_connections(const qc_redis *r);     /* connections in the pool; 0 for NULL */
/* Connection i (0 .. qc_redis_connections() - 1) into out; -1 when out of range. */
int qc_redis_conn_info_get(const qc_redis *r, int i, qc_redis_conn_info *out);
/* The reason of the last failure ("" when none), e.g. "connect: Connection refused". */
const char *qc_redis_last_error(const qc_redis *r);
const char *qc_strerror(int status);

/* Does this outcome of a command prove it never ran?  Only an error answer
 * Redis gives before running anything (NOSCRIPT, NOPERM, NOAUTH, OOM,
 * LOADING, BUSY, READONLY, ...); a timeout, a lost connection or an error
 * from inside a script leave its fate unknown. */
bool qc_redis_never_ran(int status, const struct redisReply *reply);

#endif /* PGFOLD_CACHE_REDIS_H */
