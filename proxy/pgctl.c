/*
 * pgctl.c — a non-blocking libpq connection on the libuv loop (see pgctl.h).
 *
 * States: CONNECTING (PQconnectPoll steps, each waiting for the socket as
 * libpq asks), READY (queries run one at a time from a FIFO), FAILED (every
 * query was failed; nothing runs any more), CLOSED (handles closing; the
 * object frees itself in the last close_cb).  One uv_timer bounds the
 * connect and then each query; one uv_poll watches the socket and is
 * replaced when libpq moves to another socket (next host or address).  An SQL
 * error completes only its own query; a connection-level failure fails the
 * running query and everything queued.
 *
 * The uv_poll watches a dup() of PQsocket, never libpq's own descriptor:
 * libpq closes its socket by itself (on EOF, a failed connect attempt, a
 * switch to the next address), and a uv_poll stopped or closed after that
 * would have libuv unregister whatever else got the same number meanwhile
 * (in libuv 1.44 that aborts the loop later).  The dup is ours: it stays
 * valid until we close it right after uv_close() of its poll handle.  A
 * socket is recognised by its inode, so a new socket that got the old
 * number is noticed too.
 */
#include "pgctl.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/alloc.h"
#include "../common/log.h"

typedef struct pgctl_query {
	struct pgctl_query *next;
	char *sql;
	px_pgctl_cb cb;
	void *ctx;
} pgctl_query;

typedef enum pgctl_state { PGCTL_CONNECTING, PGCTL_READY, PGCTL_FAILED, PGCTL_CLOSED } pgctl_state;

struct px_pgctl {
	uv_loop_t *loop;
	PGconn *conn;
	pgctl_state state;
	uv_poll_t *poll; /* watches poll_fd; NULL when none */
	uv_timer_t timer;
	int poll_fd;      /* our dup() of libpq's socket, -1 when none */
	dev_t poll_dev;   /* identity of the socket poll_fd refers to */
	ino_t poll_ino;
	int handles; /* uv handles still to close */
	unsigned timeout_ms;
	pgctl_query *head; /* the running query when busy, then the queued ones */
	pgctl_query *tail;
	bool busy;      /* head was sent and its results are being collected */
	PGresult *last; /* the latest result of the running query */
	char error[256];
};

static void drive(px_pgctl *c);

static void handle_closed(uv_handle_t *h)
{
	px_pgctl *c = h->data;
	if (h->type == UV_POLL)
		pf_free(h);
	if (--c->handles > 0)
		return;
	if (c->conn)
		PQfinish(c->conn);
	pf_free(c);
}

static pgctl_query *pop(px_pgctl *c)
{
	pgctl_query *q = c->head;
	if (q) {
		c->head = q->next;
		if (!c->head)
			c->tail = NULL;
	}
	return q;
}

static void finish_query(pgctl_query *q, const PGresult *res, const char *err)
{
	q->cb(res, err, q->ctx);
	pf_free(q->sql);
	pf_free(q);
}

/* libpq's messages end with a newline and may span lines (DETAIL, HINT,
 * tab-indented continuations): make them one line, blanks collapsed. */
static void one_line(char *dst, size_t size, const char *src)
{
	size_t o = 0;
	bool blank = false;
	for (const char *p = src; *p && o + 1 < size; p++) {
		bool is_blank = *p == ' ' || *p == '\t' || *p == '\n' || *p == '\r';
		if (is_blank && (blank || o == 0)) {
			blank = true;
			continue;
		}
		dst[o++] = is_blank ? ' ' : *p;
		blank = is_blank;
	}
	while (o > 0 && dst[o - 1] == ' ')
		o--;
	dst[o] = '\0';
}

static void set_error(px_pgctl *c, const char *why)
{
	one_line(c->error, sizeof(c->error), why && why[0] ? why : "unknown error");
}

/* Fail everything queued; the connection is unusable from now on.  The
 * callbacks may call px_pgctl_close(): the state is FAILED before they run. */
static void fail(px_pgctl *c, const char *why)
{
	if (c->state == PGCTL_CONNECTING || c->state == PGCTL_READY) {
		set_error(c, why);
		c->state = PGCTL_FAILED;
		if (strcmp(why, "closed") != 0)
			pf_debug("control connection failed: %s", c->error);
	}
	if (c->poll)
		uv_poll_stop(c->poll);
	uv_timer_stop(&c->timer);
	PQclear(c->last);
	c->last = NULL;
	c->busy = false;
	pgctl_query *q;
	while ((q = pop(c)))
		finish_query(q, NULL, c->error);
}

static void on_poll(uv_poll_t *handle, int status, int events);

/* The descriptor may be closed right after uv_close() (libuv's docs). */
static void close_poll(px_pgctl *c)
{
	uv_poll_stop(c->poll);
	uv_close((uv_handle_t *)c->poll, handle_closed);
	c->poll = NULL;
	close(c->poll_fd);
	c->poll_fd = -1;
}

/* A poll handle on a dup of fd (whose identity is st); 0 or -1. */
static int open_poll(px_pgctl *c, int fd, const struct stat *st)
{
	int dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (dup_fd < 0)
		return -1;
	uv_poll_t *p = pf_malloc(sizeof(*p));
	if (uv_poll_init(c->loop, p, dup_fd) < 0) {
		pf_free(p);
		close(dup_fd);
		return -1;
	}
	p->data = c;
	c->poll = p;
	c->poll_fd = dup_fd;
	c->poll_dev = st->st_dev;
	c->poll_ino = st->st_ino;
	c->handles++;
	return 0;
}

/* Wait for events on libpq's current socket. */
static void watch(px_pgctl *c, int events)
{
	int fd = PQsocket(c->conn);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0) {
		fail(c, "no socket");
		return;
	}
	if (c->poll && (st.st_ino != c->poll_ino || st.st_dev != c->poll_dev))
		close_poll(c); /* libpq moved to another socket (next host or address) */
	if (!c->poll && open_poll(c, fd, &st) < 0) {
		fail(c, "cannot poll the socket");
		return;
	}
	int rc = uv_poll_start(c->poll, events, on_poll);
	if (rc < 0)
		fail(c, uv_strerror(rc));
}

static void on_timeout(uv_timer_t *t)
{
	px_pgctl *c = t->data;
	char why[96];
	snprintf(why, sizeof(why), "timed out after %u ms %s", c->timeout_ms,
		 c->state == PGCTL_CONNECTING ? "connecting" : "waiting for a query");
	fail(c, why);
}

static void step_connect(px_pgctl *c)
{
	switch (PQconnectPoll(c->conn)) {
	case PGRES_POLLING_READING:
		watch(c, UV_READABLE);
		break;
	case PGRES_POLLING_WRITING:
		watch(c, UV_WRITABLE);
		break;
	case PGRES_POLLING_OK:
		c->state = PGCTL_READY;
		uv_timer_stop(&c->timer);
		if (PQsetnonblocking(c->conn, 1) != 0) {
			fail(c, PQerrorMessage(c->conn));
			break;
		}
		drive(c);
		break;
	default:
		fail(c, PQerrorMessage(c->conn));
		break;
	}
}

static void start_next(px_pgctl *c)
{
	if (c->busy || !c->head)
		return;
	if (!PQsendQuery(c->conn, c->head->sql)) {
		fail(c, PQerrorMessage(c->conn));
		return;
	}
	c->busy = true;
	uv_timer_start(&c->timer, on_timeout, c->timeout_ms, 0);
}

/* The running query is complete: hand its last result to its callback. */
static void complete(px_pgctl *c)
{
	uv_timer_stop(&c->timer);
	c->busy = false;
	PGresult *last = c->last;
	c->last = NULL;
	pgctl_query *q = pop(c);
	ExecStatusType st = last ? PQresultStatus(last) : PGRES_FATAL_ERROR;
	bool ok = st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK || st == PGRES_EMPTY_QUERY;
	char err[256] = "";
	if (!ok) {
		const char *msg = last ? PQresultErrorMessage(last) : "";
		one_line(err, sizeof(err), msg[0] ? msg : "no result");
	}
	finish_query(q, ok ? last : NULL, ok ? NULL : err);
	PQclear(last);
}

/* Collect results of the running query; complete it when libpq is done. */
static void collect(px_pgctl *c)
{
	while (c->state == PGCTL_READY && c->busy && !PQisBusy(c->conn)) {
		PGresult *res = PQgetResult(c->conn);
		if (!res) {
			complete(c); /* may close c or queue more */
			if (c->state == PGCTL_READY)
				start_next(c);
			continue;
		}
		ExecStatusType st = PQresultStatus(res);
		PQclear(c->last);
		c->last = res;
		if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH)
			fail(c, "COPY is not supported on a control connection");
	}
}

/* Send what is queued and wait for what libpq needs next. */
static void drive(px_pgctl *c)
{
	if (c->state != PGCTL_READY)
		return;
	start_next(c);
	if (c->state != PGCTL_READY)
		return;
	int flushed = PQflush(c->conn);
	if (flushed < 0) {
		fail(c, PQerrorMessage(c->conn));
		return;
	}
	/* Idle connections keep reading, so a server that goes away is seen. */
	watch(c, UV_READABLE | (flushed == 1 ? UV_WRITABLE : 0));
}

static void on_poll(uv_poll_t *handle, int status, int events)
{
	px_pgctl *c = handle->data;
	/* libuv reports POLLERR (a refused connect, a reset) as UV_EBADF and
	 * stops the handle: let libpq read the socket error and say what it is. */
	if (c->state == PGCTL_CONNECTING) {
		step_connect(c);
		return;
	}
	if (c->state != PGCTL_READY)
		return;
	if ((status < 0 || (events & UV_READABLE)) && !PQconsumeInput(c->conn)) {
		fail(c, PQerrorMessage(c->conn));
		return;
	}
	if (status < 0) {
		/* The socket is in error but libpq read something first: deliver
		 * what is complete, then give up on the connection. */
		collect(c);
		if (c->state == PGCTL_READY)
			fail(c, uv_strerror(status));
		return;
	}
	collect(c);
	drive(c);
}

static void on_notice(void *arg, const char *message)
{
	(void)arg;
	pf_debug("control connection notice: %.*s", (int)strcspn(message, "\n"), message);
}

px_pgctl *px_pgctl_new(uv_loop_t *loop, const char *const *keywords, const char *const *values, unsigned timeout_ms)
{
	px_pgctl *c = pf_calloc(1, sizeof(*c));
	c->loop = loop;
	c->poll_fd = -1;
	c->timeout_ms = timeout_ms ? timeout_ms : 5000;
	uv_timer_init(loop, &c->timer);
	c->timer.data = c;
	c->handles = 1;
	c->state = PGCTL_CONNECTING;
	c->conn = PQconnectStartParams(keywords, values, 0);
	if (!c->conn || PQstatus(c->conn) == CONNECTION_BAD) {
		fail(c, c->conn ? PQerrorMessage(c->conn) : "out of memory");
		return c;
	}
	PQsetNoticeProcessor(c->conn, on_notice, NULL);
	uv_timer_start(&c->timer, on_timeout, c->timeout_ms, 0);
	/* A fresh connection behaves as if PQconnectPoll asked for writing. */
	watch(c, UV_WRITABLE);
	return c;
}

int px_pgctl_query(px_pgctl *c, const char *sql, px_pgctl_cb cb, void *ctx)
{
	if (c->state != PGCTL_CONNECTING && c->state != PGCTL_READY)
		return -1;
	pgctl_query *q = pf_calloc(1, sizeof(*q));
	q->sql = pf_strdup(sql);
	q->cb = cb;
	q->ctx = ctx;
	if (c->tail)
		c->tail->next = q;
	else
		c->head = q;
	c->tail = q;
	/* Never run the callback from here: start on the next poll event. */
	if (c->state == PGCTL_READY && !c->busy)
		watch(c, UV_READABLE | UV_WRITABLE);
	return 0;
}

bool px_pgctl_failed(const px_pgctl *c)
{
	return c->state != PGCTL_CONNECTING && c->state != PGCTL_READY;
}

const char *px_pgctl_error(const px_pgctl *c)
{
	return c->error;
}

void px_pgctl_close(px_pgctl *c)
{
	if (c->state == PGCTL_CLOSED)
		return;
	/* Queued callbacks run inside fail() and may call px_pgctl_close()
	 * again: that nested call does the closing, this one then stops. */
	if (c->state != PGCTL_FAILED)
		fail(c, "closed");
	if (c->state == PGCTL_CLOSED)
		return;
	c->state = PGCTL_CLOSED;
	if (c->poll)
		close_poll(c);
	uv_close((uv_handle_t *)&c->timer, handle_closed);
}
