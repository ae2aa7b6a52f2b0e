/*
 * pgctl.c — a non-blocking libpq connection on the libuv loop (see pgctl.h).
 * One query runs at a time; the rest wait in a FIFO.  Every failure (connect,
 * query, timeout, server gone) fails the running query and everything queued,
 * and the connection stays failed: the owner makes a new one when it wants.
 */
#include "pgctl.h"

#include <stdio.h>
#include <string.h>

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
	uv_poll_t *poll;   /* watches poll_fd; NULL when none */
	uv_timer_t timer;
	int poll_fd;
	int handles;       /* uv handles still to close */
	unsigned timeout_ms;
	pgctl_query *head; /* head is running when state is READY and busy */
	pgctl_query *tail;
	bool busy;
	PGresult *last;
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

/* Fail everything queued; the connection is unusable from now on. */
static void fail(px_pgctl *c, const char *why)
{
	if (c->state == PGCTL_CONNECTING || c->state == PGCTL_READY) {
		snprintf(c->error, sizeof(c->error), "%s", why);
		c->state = PGCTL_FAILED;
		pf_debug("control connection failed: %s", why);
	}
	if (c->poll)
		uv_poll_stop(c->poll);
	uv_timer_stop(&c->timer);
	PQclear(c->last);
	c->last = NULL;
	pgctl_query *q;
	while ((q = pop(c)))
		finish_query(q, NULL, c->error);
	c->busy = false;
}

static void on_poll(uv_poll_t *handle, int status, int events);

static void close_poll(px_pgctl *c)
{
	uv_poll_stop(c->poll);
	uv_close((uv_handle_t *)c->poll, handle_closed);
	c->poll = NULL;
}

static void watch(px_pgctl *c, int events)
{
	int fd = PQsocket(c->conn);
	if (fd < 0) {
		fail(c, "no socket");
		return;
	}
	if (c->poll && fd != c->poll_fd)
		close_poll(c); /* libpq moved to another socket (next host or address) */
	if (!c->poll) {
		uv_poll_t *p = pf_malloc(sizeof(*p));
		if (uv_poll_init(c->loop, p, fd) < 0) {
			pf_free(p);
			fail(c, "cannot poll the socket");
			return;
		}
		p->data = c;
		c->poll = p;
		c->poll_fd = fd;
		c->handles++;
	}
	uv_poll_start(c->poll, events, on_poll);
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
		PQsetnonblocking(c->conn, 1);
		drive(c);
		break;
	default:
		fail(c, PQerrorMessage(c->conn));
		break;
	}
}

static void on_timeout(uv_timer_t *t)
{
	fail(t->data, "timeout");
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

/* Collect results of the running query; complete it when libpq is done. */
static void collect(px_pgctl *c)
{
	while (c->busy && !PQisBusy(c->conn)) {
		PGresult *res = PQgetResult(c->conn);
		if (res) {
			PQclear(c->last);
			c->last = res;
			continue;
		}
		uv_timer_stop(&c->timer);
		c->busy = false;
		PGresult *last = c->last;
		c->last = NULL;
		pgctl_query *q = pop(c);
		ExecStatusType st = last ? PQresultStatus(last) : PGRES_FATAL_ERROR;
		bool ok = st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK;
		finish_query(q, ok ? last : NULL, ok ? NULL : (last ? PQresultErrorMessage(last) : "no result"));
		PQclear(last);
		if (c->state != PGCTL_READY)
			return;
		start_next(c);
	}
}

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
	watch(c, UV_READABLE | (flushed == 1 ? UV_WRITABLE : 0));
}

static void on_poll(uv_poll_t *handle, int status, int events)
{
	px_pgctl *c = handle->data;
	if (status < 0) {
		fail(c, uv_strerror(status));
		return;
	}
	if (c->state == PGCTL_CONNECTING) {
		step_connect(c);
		return;
	}
	if (c->state != PGCTL_READY)
		return;
	if ((events & UV_READABLE) && !PQconsumeInput(c->conn)) {
		fail(c, PQerrorMessage(c->conn));
		return;
	}
	collect(c);
	drive(c);
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
	c->conn = PQconnectStartParams(keywords, values, 0);
	if (!c->conn || PQstatus(c->conn) == CONNECTION_BAD) {
		c->state = PGCTL_CONNECTING;
		fail(c, c->conn ? PQerrorMessage(c->conn) : "out of memory");
		return c;
	}
	c->state = PGCTL_CONNECTING;
	uv_timer_start(&c->timer, on_timeout, c->timeout_ms, 0);
	/* A fresh connection waits to write its startup packet. */
	watch(c, UV_WRITABLE);
	return c;
}

int px_pgctl_query(px_pgctl *c, const char *sql, px_pgctl_cb cb, void *ctx)
{
	if (c->state == PGCTL_FAILED || c->state == PGCTL_CLOSED)
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
		watch(c, UV_WRITABLE);
	return 0;
}

bool px_pgctl_failed(const px_pgctl *c)
{
	return c->state == PGCTL_FAILED;
}

void px_pgctl_close(px_pgctl *c)
{
	if (c->state == PGCTL_CLOSED)
		return;
	if (c->state != PGCTL_FAILED)
		fail(c, "closed");
	c->state = PGCTL_CLOSED;
	if (c->poll)
		close_poll(c);
	uv_close((uv_handle_t *)&c->timer, handle_closed);
}
