/*
 * backend.c — opening a session's backend connection (TCP by address or
 * name, or a PostgreSQL unix socket) and forwarding CancelRequests to the
 * backend that serves the session whose key they carry.
 */
#include <stdio.h>
#include <string.h>

#include "../common/alloc.h"
#include "../common/log.h"
#include "session.h"

static void connect_failed(px_session *s, const char *what, int status)
{
	char addr[300], msg[512];
	s->server->stats.backend_connect_errors++;
	snprintf(msg, sizeof(msg), "pgfold: could not %s the backend at %s: %s", what,
		 cf_addr_format(&s->backend_addr, addr, sizeof(addr)), uv_strerror(status));
	px_session_close(s, "backend unavailable", "08006", msg);
}

static void on_connected(uv_connect_t *req, int status)
{
	px_session *s = req->data;
	if (s->state == PX_SESSION_CLOSING)
		return;
	if (status < 0) {
		connect_failed(s, "connect to", status);
		return;
	}
	if (s->backend_addr.kind == CF_ADDR_TCP) {
		uv_tcp_nodelay(&s->backend.h.tcp, 1);
		uv_tcp_keepalive(&s->backend.h.tcp, 1, 60);
	}
	px_session_backend_connected(s);
}

static void init_backend_handle(px_session *s, int rc)
{
	s->backend.h.handle.data = &s->backend;
	s->backend.initialized = rc == 0;
	if (rc == 0)
		px_session_ref(s);
}

static void connect_tcp(px_session *s, const struct sockaddr *sa)
{
	size_t len = sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
	memcpy(&s->backend_sa, sa, len);
	int rc = uv_tcp_init(s->server->loop, &s->backend.h.tcp);
	init_backend_handle(s, rc);
	if (rc == 0) {
		s->connect_req.data = s;
		rc = uv_tcp_connect(&s->connect_req, &s->backend.h.tcp, sa, on_connected);
	}
	if (rc < 0)
		connect_failed(s, "connect to", rc);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	px_session *s = req->data;
	s->resolving = false;
	if (s->state != PX_SESSION_CLOSING) {
		if (status < 0)
			connect_failed(s, "resolve", status);
		else
			connect_tcp(s, res->ai_addr);
	}
	uv_freeaddrinfo(res);
	px_session_unref(s);
}

static void resolve_and_connect(px_session *s)
{
	char port[16];
	struct addrinfo hints;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	snprintf(port, sizeof(port), "%d", s->backend_addr.port);
	s->resolve_req.data = s;
	int rc = uv_getaddrinfo(s->server->loop, &s->resolve_req, on_resolved, s->backend_addr.host, port, &hints);
	if (rc < 0) {
		connect_failed(s, "resolve", rc);
		return;
	}
	s->resolving = true;
	px_session_ref(s);
}

/* Fill sa from a numeric host; false when the host is a name. */
static bool numeric_address(const cf_addr *addr, struct sockaddr_storage *sa)
{
	return uv_ip4_addr(addr->host, addr->port, (struct sockaddr_in *)sa) == 0 ||
	       uv_ip6_addr(addr->host, addr->port, (struct sockaddr_in6 *)sa) == 0;
}

void px_backend_connect(px_session *s)
{
	s->backend_addr = s->server->cfg->backend;
	if (s->backend_addr.kind == CF_ADDR_UNIX) {
		int rc = uv_pipe_init(s->server->loop, &s->backend.h.pipe, 0);
		init_backend_handle(s, rc);
		if (rc < 0) {
			connect_failed(s, "connect to", rc);
			return;
		}
		s->connect_req.data = s;
		uv_pipe_connect(&s->connect_req, &s->backend.h.pipe, s->backend_addr.path, on_connected);
		return;
	}
	struct sockaddr_storage sa;
	if (numeric_address(&s->backend_addr, &sa))
		connect_tcp(s, (struct sockaddr *)&sa);
	else
		resolve_and_connect(s);
}

/* ---- cancel forwarding -------------------------------------------------- */

/* One CancelRequest on its way to a backend: freed in close_cb. */
typedef struct px_cancel {
	union {
		uv_handle_t handle;
		uv_stream_t stream;
		uv_tcp_t tcp;
		uv_pipe_t pipe;
	} h;
	uv_connect_t connect_req;
	uv_write_t write_req;
	uint8_t packet[16];
} px_cancel;

static void cancel_closed(uv_handle_t *handle)
{
	pf_free(handle->data);
}

static void cancel_written(uv_write_t *req, int status)
{
	px_cancel *c = req->data;
	if (status < 0)
		pf_warn("cancel request: write to backend failed: %s", uv_strerror(status));
	uv_close(&c->h.handle, cancel_closed);
}

static void cancel_connected(uv_connect_t *req, int status)
{
	px_cancel *c = req->data;
	if (status == 0) {
		uv_buf_t buf = uv_buf_init((char *)c->packet, sizeof(c->packet));
		c->write_req.data = c;
		status = uv_write(&c->write_req, &c->h.stream, &buf, 1, cancel_written);
		if (status == 0)
			return;
	}
	pf_warn("cancel request: could not reach the backend: %s", uv_strerror(status));
	uv_close(&c->h.handle, cancel_closed);
}

void px_cancel_forward(uv_loop_t *loop, const px_session *target, uint32_t pid, uint32_t key)
{
	px_cancel *c = pf_calloc(1, sizeof(*c));
	pgw_buf b;
	pgw_buf_init(&b, 0);
	pgw_build_cancel_request(&b, pid, key);
	if (!pgw_buf_ok(&b) || b.len != sizeof(c->packet)) {
		pgw_buf_free(&b);
		pf_free(c);
		return;
	}
	memcpy(c->packet, b.data, sizeof(c->packet));
	pgw_buf_free(&b);
	c->h.handle.data = c;
	c->connect_req.data = c;
	bool unix_socket = target->backend_addr.kind == CF_ADDR_UNIX;
	int rc = unix_socket ? uv_pipe_init(loop, &c->h.pipe, 0) : uv_tcp_init(loop, &c->h.tcp);
	if (rc < 0) {
		pf_warn("cancel request: %s", uv_strerror(rc));
		pf_free(c);
		return;
	}
	if (unix_socket) {
		uv_pipe_connect(&c->connect_req, &c->h.pipe, target->backend_addr.path, cancel_connected);
		return;
	}
	rc = uv_tcp_connect(&c->connect_req, &c->h.tcp, (const struct sockaddr *)&target->backend_sa, cancel_connected);
	if (rc < 0) {
		pf_warn("cancel request: %s", uv_strerror(rc));
		uv_close(&c->h.handle, cancel_closed);
	}
}
