/*
 * redis_link.h — internal to cache/: the mechanics of one hiredis 0.14 async
 * connection on the libuv loop, shared by the pool's connections
 * (cache/redis.c) and the subscriber's one (cache/subscriber.c).  A link
 * resolves the host name (before every attempt), connects with
 * redisAsyncConnect() with its own event hooks on a uv_poll_t (not
 * <hiredis/adapters/libuv.h>, whose every call costs epoll_ctl calls:
 * see qc_link_flush), watches the
 * connect deadline and the socket's SO_ERROR, frees the context by hiredis
 * 0.14's rules, and reconnects with capped exponential backoff
 * (QC_BACKOFF_MIN_MS doubling to QC_BACKOFF_MAX_MS), forever.  It logs
 * nothing and sends nothing: what is said on the connection (handshake,
 * commands, SUBSCRIBE) and what a failure means are its owner's, which
 * hears of each event through qc_link_hooks.
 *
 * Phases (l->phase; the link sets its own, the owner its steps once open):
 *   QC_LINK_IDLE        no context; the timer waits for the next attempt
 *   QC_LINK_RESOLVING   uv_getaddrinfo() running (host names only)
 *   QC_LINK_CONNECTING  context made, connect(2) in progress; the timer
 *                       calls hooks->watch every QC_LINK_CHECK_MS
 *   QC_LINK_LOST        dropped, or lost: hiredis is freeing the context;
 *                       nothing more is sent on it (the owner may set it too)
 *   QC_LINK_OPEN and up connected: the owner's steps (handshake, ready)
 *
 * One timer per link serves the retry delay (the link's) and the watch
 * (hooks->watch: from connect on, and whenever the owner asks with
 * qc_link_watch()).  Its data is the link; the owner closes it itself
 * (uv_close on &l->timer) once qc_link_released(), and frees itself (the
 * link with it) in that close_cb, so no hiredis or libuv callback can see a
 * freed link.
 *
 * Interface
 *   qc_link_target_init(t, options)  where to connect and as whom (one per owner)
 *   qc_link_target_wipe(t)           forget the password
 *   qc_link_init(l, loop, t, hooks, data)  an IDLE link; qc_link_start(l) connects
 *   qc_link_watch(l, timeout, repeat), qc_link_unwatch(l)  the timer for hooks->watch
 *   qc_link_socket_error(l)          the socket's pending error (SO_ERROR)
 *   qc_link_succeeded(l)             the owner's handshake answered: backoff to its minimum
 *   qc_link_drop(l)                  free the context (see there)
 *   qc_link_stop(l), qc_link_close(l), qc_link_released(l)  closing
 *
 * Single-threaded: every function runs on the loop's thread.
 */
#ifndef PGFOLD_CACHE_REDIS_LINK_H
#define PGFOLD_CACHE_REDIS_LINK_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "redis.h"

struct redisAsyncContext; /* <hiredis/async.h> */

enum {
	QC_LINK_DEFAULT_TIMEOUT_MS = 1000, /* options->timeout_ms 0 */
	QC_LINK_CHECK_MS = 50,             /* the watch while connecting: SO_ERROR and the deadline */
	QC_LINK_SECRET_MAX = 128,          /* bytes of a user name or password, NUL included */
};

/* l->phase: the link's phases, then the owner's from QC_LINK_OPEN (see the top). */
enum {
	QC_LINK_IDLE,
	QC_LINK_RESOLVING,
	QC_LINK_CONNECTING,
	QC_LINK_LOST,
	QC_LINK_OPEN, /* the first of the owner's phases */
};

/* Where to connect and as whom: one per owner, read by each of its links. */
typedef struct qc_link_target {
	char host[256];      /* as configured */
	int port;
	char name[300];      /* "host:port" for logs */
	bool numeric;        /* host is an address literal: no resolving */
	unsigned timeout_ms; /* the connect deadline (and the owner's own timeouts) */
	char username[QC_LINK_SECRET_MAX];
	char password[QC_LINK_SECRET_MAX];
} qc_link_target;

typedef struct qc_link qc_link;

/*
 * What a link tells its owner.  Besides from the loop, qc_link_start() may
 * call attempt and failed, qc_link_drop() and qc_link_close() gone; nothing
 * runs from qc_link_init() or qc_link_stop().  Every hook but attempt is
 * required.
 *   attempt(l)      a connect attempt starts (the first and each retry);
 *                   NULL for none.  Must not drop or close.
 *   failed(l, why)  the attempt failed before hiredis held a context
 *                   (resolve, connect, the context could not be made).  The
 *                   phase becomes IDLE and the retry is scheduled after it.
 *   open(l)         connected (phase CONNECTING still, the watch running):
 *                   send the handshake.  Runs inside hiredis's onConnect,
 *                   which is not protected against a free: never drop the
 *                   link or close the owner here; fail later, from the watch.
 *   lost(l, why)    a connected context went away without qc_link_drop or
 *                   closing (reset, closed by Redis, an error hiredis met);
 *                   l->ac is NULL already.  gone follows.
 *   gone(l)         the link holds nothing any more: hiredis let go of its
 *                   context (or none was made), or the resolver returned
 *                   while closing; the phase is IDLE.  An owner that is
 *                   closing may finish now; else the retry is scheduled
 *                   after it.
 *   watch(l)        the timer, from qc_link_watch() or the connect watch.
 * failed, lost, gone and watch may drop the link and close the owner.
 */
typedef struct qc_link_hooks {
	void (*attempt)(qc_link *l);
	void (*failed)(qc_link *l, const char *why);
	void (*open)(qc_link *l);
	void (*lost)(qc_link *l, const char *why);
	void (*gone)(qc_link *l);
	void (*watch)(qc_link *l);
} qc_link_hooks;

/* One connection.  The owner embeds it and reads its fields. */
struct qc_link {
	uv_loop_t *loop;
	const qc_link_target *target;
	const qc_link_hooks *hooks;
	void *data;                   /* the owner's */
	int phase;                    /* see the top */
	char ip[INET6_ADDRSTRLEN];    /* the numeric address hiredis connects to */
	struct redisAsyncContext *ac; /* the context hiredis holds for us; NULL once it let go */
	bool ac_connected;            /* onConnect(OK) ran: onDisconnect will run when it goes */
	bool dropping;                /* redisAsyncFree() called on a connected context */
	bool closing;                 /* qc_link_stop ran: no new attempt, no retry */
	uv_getaddrinfo_t resolver;
	bool resolving;               /* resolver's callback has not run */
	uv_timer_t timer;             /* the retry delay, or the watch; data: the link */
	uint64_t deadline;            /* uv_now() ms: the connect is done by then */
	unsigned backoff_ms;          /* delay before the next attempt */
	bool defer_writes;            /* the owner writes with qc_link_flush() (set before start) */
};

/* From options (addr must be CF_ADDR_TCP: the owner checks); timeout_ms 0
 * becomes QC_LINK_DEFAULT_TIMEOUT_MS; the user name and password are copied. */
void qc_link_target_init(qc_link_target *t, const qc_redis_options *options);
void qc_link_target_wipe(qc_link_target *t);

/* An IDLE link to target (which must outlive it); the timer is initialised
 * (the owner closes it).  Nothing runs until qc_link_start(). */
void qc_link_init(qc_link *l, uv_loop_t *loop, const qc_link_target *target, const qc_link_hooks *hooks,
		  void *data);
/* Start an attempt unless one is under way or the link is closing. */
void qc_link_start(qc_link *l);

/* Write what hiredis holds for the connected context now.  With
 * l->defer_writes a command queued on a connected context is written only
 * by this (the owner calls it once per loop turn): the socket is not
 * watched for writability, which would cost a poll and two epoll_ctl calls
 * per command; only a write the socket did not take whole waits for it. */
void qc_link_flush(qc_link *l);

/* (Re)start the timer to call hooks->watch after timeout ms, then every
 * repeat ms (0: once).  A retry delay running is replaced. */
void qc_link_watch(qc_link *l, uint64_t timeout, uint64_t repeat);
void qc_link_unwatch(qc_link *l);
/* The pending error of the context's socket (an errno value), or 0; 0 too
 * without a context.  libuv reports a socket error only as an error status
 * of the uv_poll_t, which stops it (hiredis never hears of it): this is
 * how the owner learns of a refused connect or a reset. */
int qc_link_socket_error(const qc_link *l);
/* The owner's handshake answered: the next retry waits QC_BACKOFF_MIN_MS. */
void qc_link_succeeded(qc_link *l);

/* Free the context (none, or being freed: nothing): phase LOST, timer
 * stopped.  One that never connected is freed at once and gone runs now;
 * a connected one goes through onDisconnect, now or, inside a command
 * callback of its own, once that returned (hiredis defers the free), and
 * lost does not run.  Never from hooks->open. */
void qc_link_drop(qc_link *l);

/* Closing: qc_link_stop() marks the link closing (no attempt or retry
 * follows) and stops its timer, leaving a context or resolver as it is;
 * qc_link_close() stops, cancels the resolver and drops the context.  Both
 * idempotent.  Once qc_link_released() (hooks->gone tells when), the owner
 * closes l->timer. */
void qc_link_stop(qc_link *l);
void qc_link_close(qc_link *l);
bool qc_link_released(const qc_link *l);

#endif /* PGFOLD_CACHE_REDIS_LINK_H */
