/*
 * admin.c — the admin HTTP/1.1 port (see admin.h).
 *
 * A px_admin owns its listeners (one per address a TCP host resolves to, or
 * one unix socket), a fixed table of routes and a list of connections.  Each
 * connection has a stream handle, one timer, an input buffer and an
 * http-parser in request mode.  Input goes through http_parser_execute() from
 * one loop (conn_parse); on_message_complete pauses the parser, so requests
 * are answered one at a time and in order from that loop, never from inside
 * the parser's callbacks.
 *
 * Limits, per connection:
 *   ADMIN_HEAD_MAX     request line + headers (431)
 *   ADMIN_BODY_MAX     body, counted and dropped (413)
 *   ADMIN_WRITES_HIGH  responses queued before reading pauses (pipelining)
 *   idle_ms            a request must arrive whole within this long of the
 *                      connection opening or of the previous response being
 *                      written; covers idle keep-alive and trickling clients
 * and ADMIN_MAX_CONNS connections per admin: extra ones are accepted and
 * closed at once.
 *
 * Connection states (conn_set_state is the one transition function):
 *   READING   parsing requests, answering each as it completes
 *   PAUSED    ADMIN_WRITES_HIGH responses queued: reads stopped, unparsed
 *             input kept, resumed once writes drain to ADMIN_WRITES_LOW
 *   DRAINING  the last response is queued (Connection: close or an error);
 *             further input is discarded until the writes finish
 *   LINGER    our side is shut down; input discarded until the peer's EOF
 *             or the linger timeout, so the peer reads the response before a
 *             close with unread data could turn into a RST
 *   CLOSING   both handles closing; the connection is freed in the last
 *             close_cb
 *
 * Lifetime: admin->live counts listeners, connections and refused handles
 * whose close_cb has not run.  px_admin_close marks the admin closing and
 * closes all of them; the close_cb that brings live to 0 frees the admin (or
 * px_admin_close itself when nothing was open).  A write buffer is freed in
 * its write_cb, which libuv runs (with UV_ECANCELED) before the stream's
 * close_cb, so a connection always outlives its writes.
 */
#include "admin.h"

#include <errno.h>
#include <http_parser.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "../common/alloc.h"
#include "../common/log.h"

enum {
	ADMIN_MAX_ROUTES = 32,
	ADMIN_MAX_ADDRS = 8, /* listeners per px_admin_listen (resolved addresses) */
	ADMIN_MAX_CONNS = 64,
	ADMIN_HEAD_MAX = 8 * 1024,
	ADMIN_BODY_MAX = 64 * 1024,
	ADMIN_READ_BUF = 16 * 1024,
	ADMIN_WRITES_HIGH = 8,
	ADMIN_WRITES_LOW = 2,
	ADMIN_IDLE_MS = 10 * 1000,
	ADMIN_LINGER_MS = 2 * 1000,
	ADMIN_BACKLOG = 64,
};

typedef union admin_stream {
	uv_handle_t handle;
	uv_stream_t stream;
	uv_tcp_t tcp;
	uv_pipe_t pipe;
} admin_stream;

typedef struct admin_route {
	char method[8];
	char path[128];
	px_admin_handler handler;
	void *ctx;
} admin_route;

typedef struct admin_listener {
	admin_stream h; /* h.handle.data = this listener */
	px_admin *admin;
	struct admin_listener *next; /* admin->listeners, until closing starts */
	char unix_path[sizeof(((cf_addr *)0)->path)]; /* socket file we created, unlinked on close; "" */
} admin_listener;

typedef enum conn_state {
	CONN_READING,
	CONN_PAUSED,
	CONN_DRAINING,
	CONN_LINGER,
	CONN_CLOSING,
} conn_state;

typedef struct admin_conn {
	px_admin *admin;
	struct admin_conn *prev, *next; /* admin->conns, until the last close_cb */
	uint64_t id;
	conn_state state;
	int open_handles; /* h and timer not yet through conn_close_cb */
	int writes;       /* uv_write requests in flight */
	bool eof;         /* the peer shut down its sending side */
	admin_stream h;   /* h.handle.data = this connection */
	uv_timer_t timer; /* idle timeout, then linger timeout */
	uv_shutdown_t shutdown_req;
	http_parser parser; /* parser.data = this connection */
	/* the request being parsed */
	pf_sb url;          /* request target as received (bounded by ADMIN_HEAD_MAX) */
	size_t head_fed;    /* bytes fed since the previous request, while its head is incomplete */
	size_t body_len;    /* body bytes seen (and dropped) */
	bool headers_done;  /* on_headers_complete ran for this request */
	bool request_ready; /* on_message_complete ran; the parser is paused */
	bool keep_alive;    /* answer with Connection: keep-alive and read on */
	int reject_status;  /* set when a parser callback stopped parsing over a limit */
	/* input: [rstart, rend) of rbuf is received but not yet parsed */
	size_t rstart, rend;
	char rbuf[ADMIN_READ_BUF];
} admin_conn;

typedef struct admin_write {
	uv_write_t req;
	admin_conn *conn;
	char *data; /* the whole response; freed in conn_write_cb */
} admin_write;

/* What conn_send writes: one complete response. */
typedef struct admin_reply {
	int status;
	const char *content_type;
	const char *allow; /* value of an Allow header, or NULL */
	const char *body;
	size_t body_len;
} admin_reply;

struct px_admin {
	uv_loop_t *loop;
	admin_route routes[ADMIN_MAX_ROUTES];
	int nroutes;
	admin_listener *listeners; /* open listeners */
	admin_conn *conns;         /* connections not yet freed (closing ones included) */
	int nconns;
	unsigned live;     /* listeners + connections + refused handles before their close_cb */
	uint64_t next_id;  /* connection ids, for logs */
	uint64_t idle_ms;  /* ADMIN_IDLE_MS unless px_admin_set_idle_timeout */
	bool refusing;     /* logged that we are at ADMIN_MAX_CONNS; cleared below it */
	bool closing;      /* px_admin_close ran */
};

static void conn_set_state(admin_conn *c, conn_state next);
static void conn_parse(admin_conn *c);

/* ---------------------------------------------------------------- lifetime */

static void admin_release(px_admin *a)
{
	a->live--;
	if (a->closing && a->live == 0)
		pf_free(a);
}

px_admin *px_admin_new(uv_loop_t *loop)
{
	px_admin *a = pf_calloc(1, sizeof(*a));
	a->loop = loop;
	a->idle_ms = ADMIN_IDLE_MS;
	return a;
}

void px_admin_set_idle_timeout(px_admin *admin, unsigned idle_ms)
{
	admin->idle_ms = idle_ms ? idle_ms : ADMIN_IDLE_MS;
}

static void listener_close_cb(uv_handle_t *handle)
{
	admin_listener *l = handle->data;
	px_admin *a = l->admin;
	pf_free(l);
	admin_release(a);
}

/* Unlinks l and closes it; it is freed in listener_close_cb. */
static void listener_close(admin_listener *l)
{
	for (admin_listener **pp = &l->admin->listeners; *pp; pp = &(*pp)->next) {
		if (*pp == l) {
			*pp = l->next;
			break;
		}
	}
	if (l->unix_path[0] != '\0')
		unlink(l->unix_path);
	uv_close(&l->h.handle, listener_close_cb);
}

static const char *conn_state_name(conn_state s)
{
	switch (s) {
	case CONN_READING: return "reading";
	case CONN_PAUSED: return "paused";
	case CONN_DRAINING: return "draining";
	case CONN_LINGER: return "linger";
	case CONN_CLOSING: return "closing";
	}
	return "?";
}

static void conn_close_cb(uv_handle_t *handle)
{
	admin_conn *c = handle->data;
	if (--c->open_handles > 0)
		return;
	px_admin *a = c->admin;
	if (c->prev)
		c->prev->next = c->next;
	else
		a->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	a->nconns--;
	pf_sb_free(&c->url);
	pf_free(c);
	admin_release(a);
}

/* Idempotent; the connection is freed once both handles are closed. */
static void conn_close(admin_conn *c, const char *reason)
{
	if (c->state == CONN_CLOSING)
		return;
	pf_debug("admin conn %" PRIu64 ": closed (%s)", c->id, reason);
	conn_set_state(c, CONN_CLOSING);
}

void px_admin_close(px_admin *admin)
{
	if (!admin || admin->closing)
		return;
	admin->closing = true;
	while (admin->listeners)
		listener_close(admin->listeners);
	for (admin_conn *c = admin->conns; c; c = c->next)
		conn_close(c, "admin port closing");
	if (admin->live == 0)
		pf_free(admin);
}

/* ------------------------------------------------------------------ routes */

int px_admin_route(px_admin *admin, const char *method, const char *path, px_admin_handler handler, void *ctx)
{
	if (admin->nroutes >= ADMIN_MAX_ROUTES || !handler || path[0] != '/')
		return -1;
	if (strlen(method) >= sizeof(admin->routes[0].method) || strlen(path) >= sizeof(admin->routes[0].path))
		return -1;
	for (int i = 0; i < admin->nroutes; i++)
		if (strcmp(admin->routes[i].method, method) == 0 && strcmp(admin->routes[i].path, path) == 0)
			return -1;
	admin_route *r = &admin->routes[admin->nroutes++];
	strcpy(r->method, method);
	strcpy(r->path, path);
	r->handler = handler;
	r->ctx = ctx;
	return 0;
}

/* The route for method+path, or NULL; allow gets the methods the path does
 * have ("GET, POST"), "" when the path is unknown. */
static const admin_route *route_find(const px_admin *a, const char *method, const char *path, pf_sb *allow)
{
	const admin_route *found = NULL;
	for (int i = 0; i < a->nroutes; i++) {
		const admin_route *r = &a->routes[i];
		if (strcmp(r->path, path) != 0)
			continue;
		if (strcmp(r->method, method) == 0)
			found = r;
		pf_sb_appendf(allow, "%s%s", allow->len ? ", " : "", r->method);
	}
	return found;
}

/* ----------------------------------------------------------------- writing */

static void conn_restart_timer(admin_conn *c, uint64_t ms);

/* A write finished: move on according to the state. */
static void conn_written(admin_conn *c)
{
	switch (c->state) {
	case CONN_READING:
		conn_restart_timer(c, c->admin->idle_ms);
		break;
	case CONN_PAUSED:
		conn_restart_timer(c, c->admin->idle_ms);
		if (c->writes <= ADMIN_WRITES_LOW) {
			conn_set_state(c, CONN_READING);
			conn_parse(c);
		}
		break;
	case CONN_DRAINING:
		if (c->writes == 0)
			conn_set_state(c, CONN_LINGER);
		break;
	case CONN_LINGER:
	case CONN_CLOSING:
		break;
	}
}

static void conn_write_cb(uv_write_t *req, int status)
{
	admin_write *w = (admin_write *)req;
	admin_conn *c = w->conn;
	pf_free(w->data);
	pf_free(w);
	c->writes--;
	if (status < 0) {
		conn_close(c, status == UV_ECANCELED ? "write canceled" : uv_strerror(status));
		return;
	}
	conn_written(c);
}

static const char *status_reason(int status)
{
	const char *s = http_status_str((enum http_status)status);
	return strcmp(s, "<unknown>") == 0 ? "Status" : s;
}

/* Queues one complete response.  May close c (write error). */
static void conn_send(admin_conn *c, const admin_reply *r)
{
	pf_sb out;
	pf_sb_init(&out);
	pf_sb_appendf(&out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: %s\r\n",
		      r->status, status_reason(r->status), r->content_type, r->body_len,
		      c->keep_alive ? "keep-alive" : "close");
	if (r->allow)
		pf_sb_appendf(&out, "Allow: %s\r\n", r->allow);
	pf_sb_append(&out, "\r\n");
	pf_sb_append_n(&out, r->body, r->body_len);

	admin_write *w = pf_malloc(sizeof(*w));
	w->conn = c;
	w->data = out.data;
	uv_buf_t buf = uv_buf_init(out.data, (unsigned)out.len);
	int rc = uv_write(&w->req, &c->h.stream, &buf, 1, conn_write_cb);
	if (rc < 0) {
		pf_free(w->data);
		pf_free(w);
		conn_close(c, uv_strerror(rc));
		return;
	}
	c->writes++;
}

/* Answers with a JSON error; allow is the Allow header for 405, else NULL. */
static void conn_send_error(admin_conn *c, int status, const char *allow)
{
	pf_sb body;
	pf_sb_init(&body);
	pf_sb_append(&body, "{\"error\":");
	pf_sb_append_json_string(&body, status_reason(status));
	pf_sb_append(&body, "}");
	admin_reply r = {status, "application/json", allow, body.data, body.len};
	conn_send(c, &r);
	pf_sb_free(&body);
}

/* The request cannot be answered normally: error response, then close. */
static void conn_fail(admin_conn *c, int status, const char *why)
{
	pf_debug("admin conn %" PRIu64 ": %d (%s)", c->id, status, why);
	c->keep_alive = false;
	conn_send_error(c, status, NULL);
	conn_set_state(c, CONN_DRAINING);
}

/* ---------------------------------------------------------------- requests */

/* Splits c->url in place into NUL-terminated path and query.  0 or -1. */
static int conn_split_target(admin_conn *c, const char **path, const char **query)
{
	struct http_parser_url u;
	http_parser_url_init(&u);
	*path = "";
	*query = "";
	if (c->url.len == 0 ||
	    http_parser_parse_url(c->url.data, c->url.len, c->parser.method == HTTP_CONNECT, &u) != 0)
		return -1;
	char *s = c->url.data;
	size_t path_end = 0, query_end = 0;
	bool has_path = u.field_set & (1 << UF_PATH), has_query = u.field_set & (1 << UF_QUERY);
	if (has_path)
		path_end = (size_t)u.field_data[UF_PATH].off + u.field_data[UF_PATH].len;
	if (has_query)
		query_end = (size_t)u.field_data[UF_QUERY].off + u.field_data[UF_QUERY].len;
	if (has_path) {
		s[path_end] = '\0';
		*path = s + u.field_data[UF_PATH].off;
	}
	if (has_query) {
		s[query_end] = '\0';
		*query = s + u.field_data[UF_QUERY].off;
	}
	return 0;
}

/* Runs the route's handler and sends what it produced. */
static void conn_run_route(admin_conn *c, const admin_route *route, const px_admin_request *req)
{
	px_admin_response resp;
	resp.status = 200;
	resp.content_type = "application/json";
	pf_sb_init(&resp.body);
	route->handler(req, &resp, route->ctx);
	if (resp.status < 100 || resp.status > 599) {
		pf_warn("admin: handler for %s %s set status %d; answering 500", req->method, req->path, resp.status);
		resp.status = 500;
	}
	admin_reply r = {resp.status, resp.content_type ? resp.content_type : "application/json", NULL,
			 pf_sb_str(&resp.body), resp.body.len};
	conn_send(c, &r);
	pf_debug("admin conn %" PRIu64 ": %s %s -> %d", c->id, req->method, req->path, resp.status);
	pf_sb_free(&resp.body);
}

/* A whole request was parsed: answer it (route, 404 or 405). */
static void conn_answer(admin_conn *c)
{
	px_admin_request req;
	req.method = http_method_str((enum http_method)c->parser.method);
	if (conn_split_target(c, &req.path, &req.query) != 0) {
		conn_fail(c, 400, "bad request target");
		return;
	}
	pf_sb allow;
	pf_sb_init(&allow);
	const admin_route *route = route_find(c->admin, req.method, req.path, &allow);
	if (route)
		conn_run_route(c, route, &req);
	else if (allow.len)
		conn_send_error(c, 405, allow.data);
	else
		conn_send_error(c, 404, NULL);
	if (!route)
		pf_debug("admin conn %" PRIu64 ": %s %s -> %d", c->id, req.method, req.path, allow.len ? 405 : 404);
	pf_sb_free(&allow);
}

/* on_message_complete paused the parser: reset, answer, pick the next state. */
static void conn_finish_request(admin_conn *c)
{
	c->request_ready = false;
	c->headers_done = false;
	c->head_fed = 0;
	http_parser_pause(&c->parser, 0);
	conn_answer(c);
	if (c->state != CONN_READING)
		return;
	if (!c->keep_alive)
		conn_set_state(c, CONN_DRAINING);
	else if (c->writes >= ADMIN_WRITES_HIGH)
		conn_set_state(c, CONN_PAUSED);
}

/* http-parser callbacks: record, check limits, never answer from here. */

static int on_message_begin(http_parser *p)
{
	admin_conn *c = p->data;
	pf_sb_reset(&c->url);
	c->body_len = 0;
	return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
	admin_conn *c = p->data;
	pf_sb_append_n(&c->url, at, len);
	return 0;
}

static int on_headers_complete(http_parser *p)
{
	admin_conn *c = p->data;
	c->headers_done = true;
	c->keep_alive = http_should_keep_alive(p) && !p->upgrade;
	if (p->content_length != ULLONG_MAX && p->content_length > ADMIN_BODY_MAX) {
		c->reject_status = 413;
		return -1;
	}
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
	admin_conn *c = p->data;
	c->body_len += len;
	if (c->body_len > ADMIN_BODY_MAX) {
		c->reject_status = 413;
		return -1;
	}
	return 0;
}

static int on_message_complete(http_parser *p)
{
	admin_conn *c = p->data;
	c->request_ready = true;
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings parser_settings = {
	.on_message_begin = on_message_begin,
	.on_url = on_url,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};

/* Feeds unparsed input to the parser while READING, answering each request
 * as it completes.  While a head is incomplete at most the rest of its
 * ADMIN_HEAD_MAX allowance is fed at once, so head_fed counts it exactly. */
static void conn_parse(admin_conn *c)
{
	while (c->state == CONN_READING && c->rstart < c->rend) {
		size_t len = c->rend - c->rstart;
		bool in_head = !c->headers_done;
		if (in_head && len > ADMIN_HEAD_MAX - c->head_fed)
			len = ADMIN_HEAD_MAX - c->head_fed;
		size_t used = http_parser_execute(&c->parser, &parser_settings, c->rbuf + c->rstart, len);
		c->rstart += used;
		enum http_errno err = HTTP_PARSER_ERRNO(&c->parser);
		if (err == HPE_PAUSED && c->request_ready) {
			conn_finish_request(c);
			continue;
		}
		if (err != HPE_OK) {
			if (c->reject_status)
				conn_fail(c, c->reject_status, "request body too large");
			else
				conn_fail(c, 400, http_errno_description(err));
			return;
		}
		if (in_head && !c->headers_done) {
			c->head_fed += used;
			if (c->head_fed >= ADMIN_HEAD_MAX) {
				conn_fail(c, 431, "request head too large");
				return;
			}
		}
	}
}

/* ------------------------------------------------------------- connection */

static void conn_timer_cb(uv_timer_t *timer)
{
	admin_conn *c = timer->data;
	conn_close(c, c->state == CONN_LINGER ? "linger timeout" : "idle timeout");
}

static void conn_restart_timer(admin_conn *c, uint64_t ms)
{
	uv_timer_start(&c->timer, conn_timer_cb, ms, 0);
}

static void conn_alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
	admin_conn *c = handle->data;
	if (c->state != CONN_READING) { /* input is discarded */
		*buf = uv_buf_init(c->rbuf, sizeof(c->rbuf));
		return;
	}
	if (c->rstart == c->rend)
		c->rstart = c->rend = 0;
	*buf = uv_buf_init(c->rbuf + c->rend, (unsigned)(sizeof(c->rbuf) - c->rend));
}

static void conn_on_eof(admin_conn *c)
{
	c->eof = true;
	if (c->state == CONN_DRAINING)
		return; /* shutdown, then close, once the writes finish */
	if (c->state == CONN_READING && c->writes > 0)
		conn_set_state(c, CONN_DRAINING);
	else
		conn_close(c, "closed by client");
}

static void conn_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
	admin_conn *c = stream->data;
	if (nread == UV_EOF) {
		conn_on_eof(c);
		return;
	}
	if (nread < 0) {
		conn_close(c, uv_strerror((int)nread));
		return;
	}
	if (c->state != CONN_READING)
		return;
	c->rend += (size_t)nread;
	conn_parse(c);
}

static void conn_shutdown_cb(uv_shutdown_t *req, int status)
{
	admin_conn *c = req->handle->data;
	if (status < 0)
		conn_close(c, status == UV_ECANCELED ? "shutdown canceled" : uv_strerror(status));
	else if (c->eof)
		conn_close(c, "done");
}

/* Entering LINGER: shut our side down and wait for the peer, bounded. */
static void conn_linger(admin_conn *c)
{
	uint64_t ms = c->admin->idle_ms < ADMIN_LINGER_MS ? c->admin->idle_ms : ADMIN_LINGER_MS;
	conn_restart_timer(c, ms);
	int rc = uv_shutdown(&c->shutdown_req, &c->h.stream, conn_shutdown_cb);
	if (rc < 0)
		conn_close(c, uv_strerror(rc));
}

static void conn_start_reading(admin_conn *c)
{
	int rc = uv_read_start(&c->h.stream, conn_alloc_cb, conn_read_cb);
	if (rc < 0)
		conn_close(c, uv_strerror(rc));
}

/* The one state transition; see the file comment for the states. */
static void conn_set_state(admin_conn *c, conn_state next)
{
	conn_state prev = c->state;
	if (prev == next || prev == CONN_CLOSING)
		return;
	pf_debug("admin conn %" PRIu64 ": %s -> %s", c->id, conn_state_name(prev), conn_state_name(next));
	c->state = next;
	switch (next) {
	case CONN_READING: /* from PAUSED */
		conn_start_reading(c);
		break;
	case CONN_PAUSED:
		uv_read_stop(&c->h.stream);
		break;
	case CONN_DRAINING:
		if (c->writes == 0)
			conn_set_state(c, CONN_LINGER);
		break;
	case CONN_LINGER:
		conn_linger(c);
		break;
	case CONN_CLOSING:
		uv_close(&c->h.handle, conn_close_cb);
		uv_close((uv_handle_t *)&c->timer, conn_close_cb);
		break;
	}
}

static void stream_init(uv_loop_t *loop, const uv_stream_t *server, admin_stream *h)
{
	if (server->type == UV_TCP)
		uv_tcp_init(loop, &h->tcp);
	else
		uv_pipe_init(loop, &h->pipe, 0);
}

static void refused_close_cb(uv_handle_t *handle)
{
	px_admin *a = handle->data;
	pf_free(handle);
	admin_release(a);
}

/* Over ADMIN_MAX_CONNS: accept (else libuv stops accepting) and close. */
static void admin_refuse(px_admin *a, uv_stream_t *server)
{
	if (!a->refusing)
		pf_warn("admin: %d connections open, refusing more", a->nconns);
	a->refusing = true;
	admin_stream *h = pf_malloc(sizeof(*h));
	stream_init(a->loop, server, h);
	h->handle.data = a;
	a->live++;
	(void)uv_accept(server, &h->stream);
	uv_close(&h->handle, refused_close_cb);
}

static void admin_accept(px_admin *a, uv_stream_t *server)
{
	admin_conn *c = pf_calloc(1, sizeof(*c));
	c->admin = a;
	c->id = ++a->next_id;
	c->state = CONN_READING;
	stream_init(a->loop, server, &c->h);
	uv_timer_init(a->loop, &c->timer);
	c->h.handle.data = c;
	c->timer.data = c;
	c->open_handles = 2;
	http_parser_init(&c->parser, HTTP_REQUEST);
	c->parser.data = c;
	pf_sb_init(&c->url);
	c->next = a->conns;
	if (a->conns)
		a->conns->prev = c;
	a->conns = c;
	a->nconns++;
	a->live++;
	int rc = uv_accept(server, &c->h.stream);
	if (rc < 0) {
		conn_close(c, uv_strerror(rc));
		return;
	}
	if (server->type == UV_TCP)
		uv_tcp_nodelay(&c->h.tcp, 1);
	conn_restart_timer(c, a->idle_ms);
	conn_start_reading(c);
	pf_debug("admin conn %" PRIu64 ": accepted", c->id);
}

static void on_connection(uv_stream_t *server, int status)
{
	admin_listener *l = server->data;
	px_admin *a = l->admin;
	if (status < 0) {
		pf_warn("admin: accept failed: %s", uv_strerror(status));
		return;
	}
	if (a->nconns >= ADMIN_MAX_CONNS) {
		admin_refuse(a, server);
		return;
	}
	a->refusing = false;
	admin_accept(a, server);
}

/* --------------------------------------------------------------- listening */

static admin_listener *listener_new(px_admin *a)
{
	admin_listener *l = pf_calloc(1, sizeof(*l));
	l->admin = a;
	l->h.handle.data = l;
	l->next = a->listeners;
	a->listeners = l;
	a->live++;
	return l;
}

/* "127.0.0.1:6433" or "[::1]:6433" into buf. */
static void sockaddr_format(const struct sockaddr *sa, char *buf, size_t size)
{
	char ip[64] = "?";
	int port = 0;
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		uv_ip6_name(in6, ip, sizeof(ip));
		port = ntohs(in6->sin6_port);
		snprintf(buf, size, "[%s]:%d", ip, port);
		return;
	}
	const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
	uv_ip4_name(in, ip, sizeof(ip));
	port = ntohs(in->sin_port);
	snprintf(buf, size, "%s:%d", ip, port);
}

static int listen_tcp_one(px_admin *a, const struct sockaddr *sa)
{
	admin_listener *l = listener_new(a);
	uv_tcp_init(a->loop, &l->h.tcp);
	int rc = uv_tcp_bind(&l->h.tcp, sa, sa->sa_family == AF_INET6 ? UV_TCP_IPV6ONLY : 0);
	if (rc == 0)
		rc = uv_listen(&l->h.stream, ADMIN_BACKLOG, on_connection);
	char name[96];
	struct sockaddr_storage bound;
	int len = sizeof(bound);
	if (rc == 0 && uv_tcp_getsockname(&l->h.tcp, (struct sockaddr *)&bound, &len) == 0)
		sockaddr_format((struct sockaddr *)&bound, name, sizeof(name));
	else
		sockaddr_format(sa, name, sizeof(name));
	if (rc < 0) {
		pf_warn("admin: cannot listen on %s: %s", name, uv_strerror(rc));
		listener_close(l);
		return rc;
	}
	pf_info("admin: listening on http://%s", name);
	return 0;
}

static bool addrinfo_seen(const struct addrinfo *head, const struct addrinfo *ai)
{
	for (const struct addrinfo *p = head; p != ai; p = p->ai_next)
		if (p->ai_addrlen == ai->ai_addrlen && memcmp(p->ai_addr, ai->ai_addr, ai->ai_addrlen) == 0)
			return true;
	return false;
}

/* Listens on every address host resolves to ("" or "*": all interfaces);
 * succeeds when at least one listener does, like PostgreSQL. */
static int listen_tcp(px_admin *a, const cf_addr *addr)
{
	struct addrinfo hints;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	char port[16];
	snprintf(port, sizeof(port), "%d", addr->port);
	const char *host = (addr->host[0] == '\0' || strcmp(addr->host, "*") == 0) ? NULL : addr->host;
	uv_getaddrinfo_t req;
	int rc = uv_getaddrinfo(a->loop, &req, NULL, host, port, &hints); /* no callback: synchronous */
	if (rc < 0) {
		pf_warn("admin: cannot resolve \"%s\": %s", addr->host, uv_strerror(rc));
		return rc;
	}
	int ok = 0, first_err = UV_EADDRNOTAVAIL, n = 0;
	for (const struct addrinfo *ai = req.addrinfo; ai && n < ADMIN_MAX_ADDRS; ai = ai->ai_next) {
		if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) || addrinfo_seen(req.addrinfo, ai))
			continue;
		n++;
		int err = listen_tcp_one(a, ai->ai_addr);
		if (err == 0)
			ok++;
		else if (ok == 0 && first_err == UV_EADDRNOTAVAIL)
			first_err = err;
	}
	uv_freeaddrinfo(req.addrinfo);
	return ok ? 0 : first_err;
}

/* A socket file nobody listens on (left by a crash) is removed; a live one
 * is left alone so that bind fails with EADDRINUSE. */
static void unix_remove_stale(const char *path)
{
	struct stat st;
	if (lstat(path, &st) != 0 || !S_ISSOCK(st.st_mode))
		return;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	struct sockaddr_un sun;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, path, strlen(path) + 1);
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0 && errno == ECONNREFUSED) {
		pf_info("admin: removing stale socket %s", path);
		unlink(path);
	}
	close(fd);
}

static int listen_unix(px_admin *a, const cf_addr *addr)
{
	if (strlen(addr->path) >= sizeof(((struct sockaddr_un *)0)->sun_path) || addr->path[0] == '\0')
		return UV_ENAMETOOLONG;
	unix_remove_stale(addr->path);
	admin_listener *l = listener_new(a);
	uv_pipe_init(a->loop, &l->h.pipe, 0);
	int rc = uv_pipe_bind(&l->h.pipe, addr->path);
	if (rc == 0) {
		memcpy(l->unix_path, addr->path, strlen(addr->path) + 1);
		rc = uv_listen(&l->h.stream, ADMIN_BACKLOG, on_connection);
	}
	if (rc < 0) {
		pf_warn("admin: cannot listen on %s: %s", addr->path, uv_strerror(rc));
		listener_close(l);
		return rc;
	}
	pf_info("admin: listening on %s", addr->path);
	return 0;
}

int px_admin_listen(px_admin *admin, const cf_addr *addr)
{
	if (admin->closing)
		return UV_EINVAL;
	switch (addr->kind) {
	case CF_ADDR_TCP: return listen_tcp(admin, addr);
	case CF_ADDR_UNIX: return listen_unix(admin, addr);
	case CF_ADDR_OFF: break;
	}
	return UV_EINVAL;
}

int px_admin_port(const px_admin *admin)
{
	for (const admin_listener *l = admin->listeners; l; l = l->next) {
		struct sockaddr_storage ss;
		int len = sizeof(ss);
		if (l->h.handle.type != UV_TCP || uv_tcp_getsockname(&l->h.tcp, (struct sockaddr *)&ss, &len) != 0)
			continue;
		if (ss.ss_family == AF_INET6)
			return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	}
	return -1;
}
