/*
 * test_admin.c — the admin HTTP port (proxy/admin.c, proxy/admin_stats.c)
 * over real sockets.
 *
 * Each test runs a px_admin on a fresh uv loop in the main thread and a
 * blocking socket client in a pthread.  The client never calls cmocka (it is
 * not thread-safe): it records failed checks with CHECK(), which the main
 * thread prints and fails on after joining.  When the client is done it asks
 * the loop thread (uv_async) to px_admin_close(); the loop must then run out
 * of handles and uv_loop_close() must return 0.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "../../common/log.h"
#include "../../proxy/admin.h"

/* ---------------------------------------------------------------- harness */

typedef struct harness {
	uv_loop_t loop;
	uv_async_t close_async; /* client -> loop: px_admin_close */
	atomic_bool close_sent;
	px_admin *admin;
	px_stats stats;
	px_admin_info info;
	atomic_int accepting;
	int port;              /* TCP harnesses */
	char unix_path[108];   /* unix harnesses */
	int post_calls;        /* POST /reset handler runs (loop thread) */
	void (*client)(struct harness *);
	char failures[16384];  /* written by the client thread only */
	size_t failures_len;
	int nfailures;
} harness;

static void check_at(harness *h, bool ok, int line, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void check_at(harness *h, bool ok, int line, const char *fmt, ...)
{
	if (ok)
		return;
	h->nfailures++;
	size_t room = sizeof(h->failures) - h->failures_len;
	if (room < 2)
		return;
	int n = snprintf(h->failures + h->failures_len, room, "  line %d: ", line);
	if (n > 0 && (size_t)n < room)
		h->failures_len += (size_t)n;
	room = sizeof(h->failures) - h->failures_len;
	va_list ap;
	va_start(ap, fmt);
	n = vsnprintf(h->failures + h->failures_len, room, fmt, ap);
	va_end(ap);
	if (n > 0)
		h->failures_len += (size_t)n < room ? (size_t)n : room - 1;
	room = sizeof(h->failures) - h->failures_len;
	if (room >= 2) {
		h->failures[h->failures_len++] = '\n';
		h->failures[h->failures_len] = '\0';
	}
}

#define CHECK(h, cond, ...) check_at((h), (cond), __LINE__, __VA_ARGS__)

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int accepting_cb(void *ctx)
{
	harness *h = ctx;
	return atomic_load(&h->accepting);
}

static void reset_handler(const px_admin_request *req, px_admin_response *resp, void *ctx)
{
	harness *h = ctx;
	h->post_calls++;
	pf_sb_append(&resp->body, "{\"reset\":true}");
}

static void query_handler(const px_admin_request *req, px_admin_response *resp, void *ctx)
{
	resp->content_type = "text/plain";
	pf_sb_appendf(&resp->body, "path=%s query=%s", req->path, req->query);
}

static void teapot_handler(const px_admin_request *req, px_admin_response *resp, void *ctx)
{
	resp->status = 418;
	pf_sb_append(&resp->body, "{}");
}

static void fill_stats(px_stats *s)
{
	memset(s, 0, sizeof(*s));
	s->start_time_ms = now_ms() - 5000;
	s->clients_total = 42;
	s->clients_active = 7;
	s->clients_rejected = 2;
	s->backends_total = 11;
	s->backends_active = 3;
	s->backend_connect_errors = 1;
	s->bytes_from_clients = 123456789012ULL;
	s->bytes_to_clients = 987654321;
	s->bytes_from_backends = 555;
	s->bytes_to_backends = 444;
	s->queries = 1000;
	s->backend_errors = 5;
	s->protocol_errors = 6;
	s->cancel_requests = 8;
	s->config_reloads = 9;
}

/* A loop and an admin with the stats routes plus test routes; not listening. */
static harness *harness_new(void)
{
	harness *h = calloc(1, sizeof(*h));
	assert_non_null(h);
	assert_int_equal(uv_loop_init(&h->loop), 0);
	h->admin = px_admin_new(&h->loop);
	assert_non_null(h->admin);
	fill_stats(&h->stats);
	atomic_store(&h->accepting, 1);
	h->info.stats = &h->stats;
	h->info.version = "1.2.3-\"test\"";
	h->info.accepting = accepting_cb;
	h->info.ctx = h;
	px_admin_add_stats_routes(h->admin, &h->info);
	assert_int_equal(px_admin_route(h->admin, "POST", "/reset", reset_handler, h), 0);
	assert_int_equal(px_admin_route(h->admin, "GET", "/query", query_handler, h), 0);
	assert_int_equal(px_admin_route(h->admin, "POST", "/query", query_handler, h), 0);
	assert_int_equal(px_admin_route(h->admin, "GET", "/teapot", teapot_handler, h), 0);
	return h;
}

static harness *harness_new_tcp(void)
{
	harness *h = harness_new();
	cf_addr addr;
	memset(&addr, 0, sizeof(addr));
	addr.kind = CF_ADDR_TCP;
	strcpy(addr.host, "127.0.0.1");
	addr.port = 0;
	assert_int_equal(px_admin_listen(h->admin, &addr), 0);
	h->port = px_admin_port(h->admin);
	assert_true(h->port > 0);
	return h;
}

static void on_close_async(uv_async_t *async)
{
	harness *h = async->data;
	px_admin_close(h->admin);
	px_admin_close(h->admin); /* idempotent while handles are closing */
	h->admin = NULL;
	uv_close((uv_handle_t *)async, NULL);
}

/* Client side: ask the loop to close the admin server (once). */
static void harness_close_admin(harness *h)
{
	if (!atomic_exchange(&h->close_sent, true))
		uv_async_send(&h->close_async);
}

static void *client_main(void *arg)
{
	harness *h = arg;
	h->client(h);
	harness_close_admin(h);
	return NULL;
}

/* Runs client in a thread against the loop; checks the loop closes clean. */
static void harness_run(harness *h, void (*client)(harness *))
{
	h->client = client;
	assert_int_equal(uv_async_init(&h->loop, &h->close_async, on_close_async), 0);
	h->close_async.data = h;
	pthread_t thread;
	assert_int_equal(pthread_create(&thread, NULL, client_main, h), 0);
	assert_int_equal(uv_run(&h->loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(pthread_join(thread, NULL), 0);
	assert_null(h->admin);
	assert_int_equal(uv_loop_close(&h->loop), 0);
}

/* Reports the client's failed checks and frees the harness. */
static void harness_done(harness *h)
{
	int n = h->nfailures;
	if (n)
		print_error("%d failed check(s):\n%s", n, h->failures);
	free(h);
	assert_int_equal(n, 0);
}

/* ----------------------------------------------------------------- client */

#define CLIENT_BUF (256 * 1024)

typedef struct client {
	int fd;
	size_t len; /* received, not yet consumed */
	char buf[CLIENT_BUF];
} client;

typedef struct response {
	int status; /* 0 when no whole response arrived */
	char head[4096];
	char body[70 * 1024];
	size_t body_len;
} response;

static void set_timeout(int fd, int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static client *client_new(int fd)
{
	if (fd < 0)
		return NULL;
	client *cl = malloc(sizeof(*cl));
	cl->fd = fd;
	cl->len = 0;
	set_timeout(fd, 5000);
	return cl;
}

static client *client_tcp(const harness *h)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sin;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)h->port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
		close(fd);
		fd = -1;
	}
	return client_new(fd);
}

static client *client_unix(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sun;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
		close(fd);
		fd = -1;
	}
	return client_new(fd);
}

static void client_free(client *cl)
{
	if (!cl)
		return;
	close(cl->fd);
	free(cl);
}

static int client_send_n(client *cl, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = send(cl->fd, data, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

static int client_send(client *cl, const char *data)
{
	return client_send_n(cl, data, strlen(data));
}

static ssize_t client_fill(client *cl)
{
	if (cl->len == sizeof(cl->buf))
		return -1;
	ssize_t n;
	do
		n = recv(cl->fd, cl->buf + cl->len, sizeof(cl->buf) - cl->len, 0);
	while (n < 0 && errno == EINTR);
	if (n > 0)
		cl->len += (size_t)n;
	return n;
}

/* Reads one response (our server always sends Content-Length).  0 or -1. */
static int client_read(client *cl, response *r)
{
	r->status = 0;
	r->head[0] = r->body[0] = '\0';
	r->body_len = 0;
	char *end;
	while (!(end = memmem(cl->buf, cl->len, "\r\n\r\n", 4)))
		if (client_fill(cl) <= 0)
			return -1;
	size_t head_len = (size_t)(end - cl->buf) + 4;
	size_t copy = head_len < sizeof(r->head) ? head_len : sizeof(r->head) - 1;
	memcpy(r->head, cl->buf, copy);
	r->head[copy] = '\0';
	const char *clen = strcasestr(r->head, "\r\nContent-Length: ");
	int status;
	if (sscanf(r->head, "HTTP/1.1 %d ", &status) != 1 || !clen)
		return -1;
	size_t body_len = strtoul(clen + 18, NULL, 10);
	if (body_len >= sizeof(r->body))
		return -1;
	while (cl->len < head_len + body_len)
		if (client_fill(cl) <= 0)
			return -1;
	memcpy(r->body, cl->buf + head_len, body_len);
	r->body[body_len] = '\0';
	r->body_len = body_len;
	r->status = status;
	cl->len -= head_len + body_len;
	memmove(cl->buf, cl->buf + head_len + body_len, cl->len);
	return 0;
}

/* True when the server closed: EOF or a reset, and no stray bytes. */
static bool client_eof(client *cl)
{
	if (cl->len > 0)
		return false;
	ssize_t n = client_fill(cl);
	return n == 0 || (n < 0 && (errno == ECONNRESET || errno == EPIPE));
}

static bool has(const char *haystack, const char *needle)
{
	return strstr(haystack, needle) != NULL;
}

/* One request on a fresh connection; returns the response's status (0: none)
 * and whether the server then closed. */
static int exchange(harness *h, const char *raw, size_t raw_len, response *r, bool *closed)
{
	client *cl = h->unix_path[0] ? client_unix(h->unix_path) : client_tcp(h);
	if (!cl)
		return -1;
	client_send_n(cl, raw, raw_len);
	client_read(cl, r);
	if (closed)
		*closed = client_eof(cl);
	client_free(cl);
	return r->status;
}

static int get(harness *h, const char *raw, response *r)
{
	return exchange(h, raw, strlen(raw), r, NULL);
}

/* ------------------------------------------------------------- the checks */

static const struct {
	const char *name;   /* in /stats */
	const char *metric; /* in /metrics, spelled out rather than derived */
	const char *type;
	uint64_t value;
} expected_stats[] = {
	{"clients_active", "pgfold_clients_active", "gauge", 7},
	{"clients_total", "pgfold_clients_total", "counter", 42},
	{"clients_rejected", "pgfold_clients_rejected_total", "counter", 2},
	{"backends_active", "pgfold_backends_active", "gauge", 3},
	{"backends_total", "pgfold_backends_total", "counter", 11},
	{"backend_connect_errors", "pgfold_backend_connect_errors_total", "counter", 1},
	{"bytes_from_clients", "pgfold_bytes_from_clients_total", "counter", 123456789012ULL},
	{"bytes_to_clients", "pgfold_bytes_to_clients_total", "counter", 987654321},
	{"bytes_from_backends", "pgfold_bytes_from_backends_total", "counter", 555},
	{"bytes_to_backends", "pgfold_bytes_to_backends_total", "counter", 444},
	{"queries", "pgfold_queries_total", "counter", 1000},
	{"backend_errors", "pgfold_backend_errors_total", "counter", 5},
	{"protocol_errors", "pgfold_protocol_errors_total", "counter", 6},
	{"cancel_requests", "pgfold_cancel_requests_total", "counter", 8},
	{"config_reloads", "pgfold_config_reloads_total", "counter", 9},
};
#define N_EXPECTED_STATS (sizeof(expected_stats) / sizeof(expected_stats[0]))

static void client_health(harness *h)
{
	response *r = malloc(sizeof(*r));
	int st = get(h, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n", r);
	CHECK(h, st == 200, "GET /health: status %d", st);
	CHECK(h, strcmp(r->body, "{\"status\":\"ok\"}") == 0, "GET /health body: %s", r->body);
	CHECK(h, has(r->head, "\r\nContent-Type: application/json\r\n"), "GET /health head: %s", r->head);
	CHECK(h, has(r->head, "\r\nContent-Length: 15\r\n"), "GET /health head: %s", r->head);
	CHECK(h, has(r->head, "\r\nConnection: keep-alive\r\n"), "GET /health head: %s", r->head);

	atomic_store(&h->accepting, 0);
	st = get(h, "GET /health HTTP/1.1\r\n\r\n", r);
	CHECK(h, st == 503, "GET /health while shutting down: status %d", st);
	CHECK(h, strcmp(r->body, "{\"status\":\"shutting_down\"}") == 0, "503 body: %s", r->body);
	atomic_store(&h->accepting, 1);
	free(r);
}

static void client_stats(harness *h)
{
	response *r = malloc(sizeof(*r));
	int st = get(h, "GET /stats HTTP/1.1\r\n\r\n", r);
	CHECK(h, st == 200, "GET /stats: status %d", st);
	CHECK(h, has(r->head, "\r\nContent-Type: application/json\r\n"), "GET /stats head: %s", r->head);
	CHECK(h, r->body[0] == '{' && r->body[r->body_len - 1] == '}', "GET /stats body: %s", r->body);
	CHECK(h, has(r->body, "{\"version\":\"1.2.3-\\\"test\\\"\","), "version in %s", r->body);
	const char *up = strstr(r->body, "\"uptime_seconds\":");
	unsigned long uptime = up ? strtoul(up + 17, NULL, 10) : 0;
	CHECK(h, uptime >= 5 && uptime <= 60, "uptime_seconds %lu in %s", uptime, r->body);
	for (size_t i = 0; i < N_EXPECTED_STATS; i++) {
		char want[128];
		snprintf(want, sizeof(want), "\"%s\":%" PRIu64, expected_stats[i].name, expected_stats[i].value);
		CHECK(h, has(r->body, want), "/stats lacks %s: %s", want, r->body);
	}
	free(r);
}

/* Every sample has a HELP and a TYPE line for its own name right before it. */
static void check_exposition(harness *h, const char *text)
{
	char help[128] = "", type[128] = "";
	int samples = 0;
	for (const char *line = text; *line;) {
		const char *nl = strchr(line, '\n');
		CHECK(h, nl != NULL, "/metrics: last line not terminated: %s", line);
		if (!nl)
			return;
		char buf[256];
		snprintf(buf, sizeof(buf), "%.*s", (int)(nl - line), line);
		char name[128] = "";
		if (sscanf(buf, "# HELP %127s", help) == 1 || sscanf(buf, "# TYPE %127s", type) == 1) {
			/* recorded */
		} else if (sscanf(buf, "%127[^ {]", name) == 1) {
			samples++;
			CHECK(h, strncmp(name, "pgfold_", 7) == 0, "/metrics: sample without prefix: %s", buf);
			CHECK(h, strcmp(name, help) == 0 && strcmp(name, type) == 0,
			      "/metrics: %s not preceded by its HELP/TYPE (%s, %s)", name, help, type);
		}
		line = nl + 1;
	}
	CHECK(h, samples == (int)N_EXPECTED_STATS + 2, "/metrics: %d samples", samples);
}

static void client_metrics(harness *h)
{
	response *r = malloc(sizeof(*r));
	int st = get(h, "GET /metrics HTTP/1.1\r\n\r\n", r);
	CHECK(h, st == 200, "GET /metrics: status %d", st);
	CHECK(h, has(r->head, "\r\nContent-Type: text/plain; version=0.0.4\r\n"), "GET /metrics head: %s", r->head);
	for (size_t i = 0; i < N_EXPECTED_STATS; i++) {
		char want[256];
		snprintf(want, sizeof(want), "# TYPE %s %s\n%s %" PRIu64 "\n", expected_stats[i].metric,
			 expected_stats[i].type, expected_stats[i].metric, expected_stats[i].value);
		CHECK(h, has(r->body, want), "/metrics lacks:\n%s", want);
	}
	CHECK(h, has(r->body, "# HELP pgfold_clients_total "), "/metrics lacks HELP");
	CHECK(h, has(r->body, "# TYPE pgfold_uptime_seconds gauge\npgfold_uptime_seconds "), "/metrics: uptime");
	CHECK(h, has(r->body, "pgfold_build_info{version=\"1.2.3-\\\"test\\\"\"} 1\n"), "/metrics: build_info");
	check_exposition(h, r->body);
	free(r);
}

static void client_routing(harness *h)
{
	response *r = malloc(sizeof(*r));
	int st = get(h, "GET /nope HTTP/1.1\r\n\r\n", r);
	CHECK(h, st == 404, "GET /nope: status %d", st);
	CHECK(h, has(r->head, "\r\nContent-Type: application/json\r\n"), "404 head: %s", r->head);

	st = get(h, "POST /stats HTTP/1.1\r\nContent-Length: 0\r\n\r\n", r);
	CHECK(h, st == 405, "POST /stats: status %d", st);
	CHECK(h, has(r->head, "\r\nAllow: GET\r\n"), "405 head: %s", r->head);

	st = get(h, "DELETE /query HTTP/1.1\r\n\r\n", r);
	CHECK(h, st == 405, "DELETE /query: status %d", st);
	CHECK(h, has(r->head, "\r\nAllow: GET, POST\r\n"), "405 head: %s", r->head);

	st = get(h, "HEAD /health HTTP/1.1\r\n\r\n", r);
	CHECK(h, st == 405, "HEAD /health: status %d", st);

	st = get(h, "GET /query?a=1&b=%20#frag HTTP/1.1\r\n\r\n", r);
	CHECK(h, st == 200 && strcmp(r->body, "path=/query query=a=1&b=%20") == 0, "GET /query: %d %s", st, r->body);
	CHECK(h, has(r->head, "\r\nContent-Type: text/plain\r\n"), "GET /query head: %s", r->head);

	st = get(h, "GET http://localhost:1/query?x HTTP/1.1\r\n\r\n", r);
	CHECK(h, st == 200 && strcmp(r->body, "path=/query query=x") == 0, "absolute-form: %d %s", st, r->body);

	st = get(h, "GET /health?verbose HTTP/1.1\r\n\r\n", r);
	CHECK(h, st == 200, "GET /health?verbose: status %d", st);

	st = get(h, "GET /teapot HTTP/1.1\r\n\r\n", r);
	CHECK(h, st == 418 && strncmp(r->head, "HTTP/1.1 418 ", 13) == 0, "teapot: %d %s", st, r->head);

	st = get(h, "POST /reset HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", r);
	CHECK(h, st == 200 && strcmp(r->body, "{\"reset\":true}") == 0, "POST /reset: %d %s", st, r->body);
	free(r);
}

static void client_connection_close(harness *h)
{
	response *r = malloc(sizeof(*r));
	bool closed = false;
	const char *req = "GET /health HTTP/1.1\r\nConnection: close\r\n\r\n";
	int st = exchange(h, req, strlen(req), r, &closed);
	CHECK(h, st == 200 && closed, "Connection: close: status %d, closed %d", st, closed);
	CHECK(h, has(r->head, "\r\nConnection: close\r\n"), "Connection: close head: %s", r->head);

	req = "GET /health HTTP/1.0\r\n\r\n";
	st = exchange(h, req, strlen(req), r, &closed);
	CHECK(h, st == 200 && closed, "HTTP/1.0: status %d, closed %d", st, closed);
	CHECK(h, has(r->head, "\r\nConnection: close\r\n"), "HTTP/1.0 head: %s", r->head);

	req = "GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
	client *cl = client_tcp(h);
	client_send(cl, req);
	client_send(cl, req);
	CHECK(h, client_read(cl, r) == 0 && r->status == 200, "1.0 keep-alive #1: %d", r->status);
	CHECK(h, has(r->head, "\r\nConnection: keep-alive\r\n"), "1.0 keep-alive head: %s", r->head);
	CHECK(h, client_read(cl, r) == 0 && r->status == 200, "1.0 keep-alive #2: %d", r->status);
	client_free(cl);
	free(r);
}

static void client_basic(harness *h)
{
	client_health(h);
	client_stats(h);
	client_metrics(h);
	client_routing(h);
	client_connection_close(h);
}

static void test_routes(void **state)
{
	harness *h = harness_new_tcp();
	harness_run(h, client_basic);
	int post_calls = h->post_calls;
	harness_done(h);
	assert_int_equal(post_calls, 1);
}

/* A request whose head (request line + headers + blank line) is exactly n
 * bytes long. */
static char *request_with_head_size(size_t n)
{
	const char *pre = "GET /health HTTP/1.1\r\nX-Pad: ";
	const char *post = "\r\n\r\n";
	size_t pad = n - strlen(pre) - strlen(post);
	char *s = malloc(n + 1);
	strcpy(s, pre);
	memset(s + strlen(pre), 'a', pad);
	strcpy(s + strlen(pre) + pad, post);
	return s;
}

static void client_bad(harness *h)
{
	response *r = malloc(sizeof(*r));
	bool closed = false;
	const char garbage[] = "\x01\x02 not http\r\n\r\n";
	int st = exchange(h, garbage, sizeof(garbage) - 1, r, &closed);
	CHECK(h, st == 400 && closed, "garbage: status %d, closed %d", st, closed);
	CHECK(h, has(r->head, "\r\nConnection: close\r\n"), "400 head: %s", r->head);

	const char *bad_ver = "GET /health HTTP/9x\r\n\r\n";
	st = exchange(h, bad_ver, strlen(bad_ver), r, &closed);
	CHECK(h, st == 400 && closed, "bad version: status %d, closed %d", st, closed);

	char *big = request_with_head_size(9 * 1024);
	st = exchange(h, big, strlen(big), r, &closed);
	CHECK(h, (st == 431 || st == 400) && closed, "9 KiB head: status %d, closed %d", st, closed);
	free(big);

	big = request_with_head_size(8 * 1024);
	st = exchange(h, big, strlen(big), r, NULL);
	CHECK(h, st == 200, "8192-byte head: status %d", st);
	free(big);

	big = request_with_head_size(8 * 1024 + 1);
	st = exchange(h, big, strlen(big), r, &closed);
	CHECK(h, st == 431 && closed, "8193-byte head: status %d, closed %d", st, closed);
	free(big);

	const char *huge = "POST /reset HTTP/1.1\r\nContent-Length: 65537\r\n\r\n";
	st = exchange(h, huge, strlen(huge), r, &closed);
	CHECK(h, st == 413 && closed, "Content-Length 65537: status %d, closed %d", st, closed);

	const char *dup = "POST /reset HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab";
	st = exchange(h, dup, strlen(dup), r, &closed);
	CHECK(h, st == 400 && closed, "two Content-Length: status %d, closed %d", st, closed);
	free(r);
}

/* Bodies: exactly 64 KiB passes, one byte more (chunked) is 413. */
static void client_bodies(harness *h)
{
	response *r = malloc(sizeof(*r));
	size_t max = 64 * 1024;
	char *req = malloc(max + 256);
	int n = snprintf(req, 256, "POST /reset HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", max);
	memset(req + n, 'b', max);
	client *cl = client_tcp(h);
	client_send_n(cl, req, (size_t)n + max);
	client_send(cl, "GET /health HTTP/1.1\r\n\r\n");
	CHECK(h, client_read(cl, r) == 0 && r->status == 200, "64 KiB body: status %d", r->status);
	CHECK(h, client_read(cl, r) == 0 && r->status == 200, "request after a body: status %d", r->status);
	client_free(cl);

	cl = client_tcp(h);
	client_send(cl, "POST /reset HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
	char chunk[16 * 1024 + 16];
	n = snprintf(chunk, 16, "%x\r\n", 16 * 1024);
	memset(chunk + n, 'c', 16 * 1024);
	memcpy(chunk + n + 16 * 1024, "\r\n", 2);
	for (int i = 0; i < 4; i++)
		client_send_n(cl, chunk, (size_t)n + 16 * 1024 + 2);
	client_send(cl, "1\r\nx\r\n0\r\n\r\n");
	CHECK(h, client_read(cl, r) == 0 && r->status == 413, "chunked 64 KiB + 1: status %d", r->status);
	CHECK(h, client_eof(cl), "chunked 413: not closed");
	client_free(cl);

	cl = client_tcp(h);
	client_send(cl, "POST /reset HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
	CHECK(h, client_read(cl, r) == 0 && r->status == 200, "small chunked body: status %d", r->status);
	client_free(cl);
	free(req);
	free(r);
}

static void client_bad_and_bodies(harness *h)
{
	client_bad(h);
	client_bodies(h);
}

static void test_bad_requests(void **state)
{
	harness *h = harness_new_tcp();
	harness_run(h, client_bad_and_bodies);
	int post_calls = h->post_calls;
	harness_done(h);
	assert_int_equal(post_calls, 2);
}

static void client_keep_alive(harness *h)
{
	response *r = malloc(sizeof(*r));
	client *cl = client_tcp(h);
	client_send(cl, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
	CHECK(h, client_read(cl, r) == 0 && r->status == 200, "keep-alive #1: %d", r->status);
	client_send(cl, "GET /stats HTTP/1.1\r\nHost: x\r\n\r\n");
	CHECK(h, client_read(cl, r) == 0 && r->status == 200 && has(r->body, "\"queries\":1000"),
	      "keep-alive #2: %d %s", r->status, r->body);
	client_send(cl, "GET /nope HTTP/1.1\r\nConnection: close\r\n\r\n");
	CHECK(h, client_read(cl, r) == 0 && r->status == 404, "keep-alive #3: %d", r->status);
	CHECK(h, has(r->head, "\r\nConnection: close\r\n"), "keep-alive #3 head: %s", r->head);
	CHECK(h, client_eof(cl), "keep-alive #3: not closed");
	client_free(cl);

	/* one byte at a time */
	cl = client_tcp(h);
	int one = 1;
	setsockopt(cl->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	const char *req = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
	for (const char *p = req; *p; p++)
		client_send_n(cl, p, 1);
	CHECK(h, client_read(cl, r) == 0 && r->status == 200, "byte by byte: %d", r->status);
	client_free(cl);

	/* pipelined: more than the server queues before it stops reading */
	cl = client_tcp(h);
	static const char *const paths[] = {"/health", "/stats", "/nope", "/metrics"};
	static const int statuses[] = {200, 200, 404, 200};
	char all[64 * 64];
	size_t len = 0;
	for (int i = 0; i < 40; i++)
		len += (size_t)snprintf(all + len, sizeof(all) - len, "GET %s HTTP/1.1\r\n%s\r\n", paths[i % 4],
					i == 39 ? "Connection: close\r\n" : "");
	client_send_n(cl, all, len);
	for (int i = 0; i < 40; i++) {
		int rc = client_read(cl, r);
		CHECK(h, rc == 0 && r->status == statuses[i % 4], "pipelined #%d %s: %d", i, paths[i % 4], r->status);
		if (rc != 0)
			break;
	}
	CHECK(h, client_eof(cl), "pipelined: not closed after Connection: close");
	client_free(cl);

	/* a second request whose head is exactly at the limit, then one over it */
	cl = client_tcp(h);
	char *at = request_with_head_size(8 * 1024), *over = request_with_head_size(8 * 1024 + 1);
	client_send(cl, "GET /health HTTP/1.1\r\n\r\n");
	client_send(cl, at);
	client_send(cl, over);
	CHECK(h, client_read(cl, r) == 0 && r->status == 200, "head limit, #1: %d", r->status);
	CHECK(h, client_read(cl, r) == 0 && r->status == 200, "head limit, #2 (8192): %d", r->status);
	CHECK(h, client_read(cl, r) == 0 && r->status == 431, "head limit, #3 (8193): %d", r->status);
	CHECK(h, client_eof(cl), "head limit: not closed");
	free(at);
	free(over);
	client_free(cl);
	free(r);
}

static void test_keep_alive(void **state)
{
	harness *h = harness_new_tcp();
	harness_run(h, client_keep_alive);
	harness_done(h);
}

/* 64 connections are served, the 65th is closed, and a slot frees up again. */
static void client_max_conns(harness *h)
{
	response *r = malloc(sizeof(*r));
	client *cls[64];
	for (int i = 0; i < 64; i++) {
		cls[i] = client_tcp(h);
		client_send(cls[i], "GET /health HTTP/1.1\r\n\r\n");
		CHECK(h, client_read(cls[i], r) == 0 && r->status == 200, "conn %d: %d", i, r->status);
	}
	client *extra = client_tcp(h);
	if (extra) {
		client_send(extra, "GET /health HTTP/1.1\r\n\r\n");
		CHECK(h, client_read(extra, r) != 0 && r->status == 0, "65th conn answered: %d", r->status);
		client_free(extra);
	}
	client_send(cls[5], "GET /health HTTP/1.1\r\n\r\n");
	CHECK(h, client_read(cls[5], r) == 0 && r->status == 200, "conn 5 again: %d", r->status);
	client_free(cls[0]);
	cls[0] = NULL;
	int st = 0;
	for (uint64_t deadline = mono_ms() + 5000; st != 200 && mono_ms() < deadline;) {
		st = get(h, "GET /health HTTP/1.1\r\n\r\n", r);
		if (st != 200)
			usleep(10 * 1000);
	}
	CHECK(h, st == 200, "no slot after closing one: %d", st);
	for (int i = 0; i < 64; i++)
		client_free(cls[i]);
	free(r);
}

static void test_max_connections(void **state)
{
	harness *h = harness_new_tcp();
	harness_run(h, client_max_conns);
	harness_done(h);
}

static void client_idle(harness *h)
{
	response *r = malloc(sizeof(*r));
	client *cl = client_tcp(h);
	uint64_t t0 = mono_ms();
	CHECK(h, client_eof(cl), "silent connection not closed");
	uint64_t ms = mono_ms() - t0;
	CHECK(h, ms >= 200 && ms < 4000, "silent connection closed after %" PRIu64 " ms", ms);
	client_free(cl);

	cl = client_tcp(h);
	client_send(cl, "GET /health HTTP/1.1\r\n\r\n");
	CHECK(h, client_read(cl, r) == 0 && r->status == 200, "idle keep-alive: %d", r->status);
	client_send(cl, "GET /hea");
	t0 = mono_ms();
	CHECK(h, client_eof(cl), "half a request: not closed");
	ms = mono_ms() - t0;
	CHECK(h, ms >= 200 && ms < 4000, "half a request closed after %" PRIu64 " ms", ms);
	client_free(cl);
	free(r);
}

static void test_idle_timeout(void **state)
{
	harness *h = harness_new_tcp();
	px_admin_set_idle_timeout(h->admin, 300);
	harness_run(h, client_idle);
	harness_done(h);
}

/* px_admin_close with connections idle, mid-request and with queued writes. */
static void client_close_busy(harness *h)
{
	response *r = malloc(sizeof(*r));
	client *idle = client_tcp(h), *partial = client_tcp(h), *flood = client_tcp(h);
	client_send(idle, "GET /health HTTP/1.1\r\n\r\n");
	CHECK(h, client_read(idle, r) == 0 && r->status == 200, "idle: %d", r->status);
	client_send(partial, "GET /stats HTTP/1.1\r\nHost: ");
	static char many[200 * 26];
	size_t len = 0;
	for (int i = 0; i < 200; i++)
		len += (size_t)snprintf(many + len, sizeof(many) - len, "GET /metrics HTTP/1.1\r\n\r\n");
	client_send_n(flood, many, len);
	usleep(50 * 1000);
	harness_close_admin(h);
	CHECK(h, client_eof(idle), "idle connection not closed by px_admin_close");
	CHECK(h, client_eof(partial), "partial connection not closed by px_admin_close");
	while (client_read(flood, r) == 0)
		;
	CHECK(h, client_eof(flood), "flooding connection not closed by px_admin_close");
	client_free(idle);
	client_free(partial);
	client_free(flood);
	free(r);
}

static void test_close_while_busy(void **state)
{
	harness *h = harness_new_tcp();
	harness_run(h, client_close_busy);
	harness_done(h);
}

static void client_unix_health(harness *h)
{
	response *r = malloc(sizeof(*r));
	int st = get(h, "GET /health HTTP/1.1\r\n\r\n", r);
	CHECK(h, st == 200 && strcmp(r->body, "{\"status\":\"ok\"}") == 0, "unix GET /health: %d %s", st, r->body);
	free(r);
}

static void test_unix_socket(void **state)
{
	harness *h = harness_new();
	snprintf(h->unix_path, sizeof(h->unix_path), "/tmp/pgfold-test-admin-%d.sock", (int)getpid());
	/* a stale socket file, as a crash leaves it */
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sun;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", h->unix_path);
	unlink(h->unix_path);
	assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	close(fd);

	cf_addr addr;
	memset(&addr, 0, sizeof(addr));
	addr.kind = CF_ADDR_UNIX;
	snprintf(addr.path, sizeof(addr.path), "%s", h->unix_path);
	assert_int_equal(px_admin_listen(h->admin, &addr), 0);
	assert_int_equal(px_admin_port(h->admin), -1);
	harness_run(h, client_unix_health);
	struct stat st;
	int gone = lstat(h->unix_path, &st) != 0; /* removed on close */
	harness_done(h);
	assert_true(gone);
}

static void dummy_handler(const px_admin_request *req, px_admin_response *resp, void *ctx)
{
}

static void test_listen_and_routes_api(void **state)
{
	uv_loop_t loop;
	assert_int_equal(uv_loop_init(&loop), 0);

	/* never listened: close frees at once */
	px_admin *a = px_admin_new(&loop);
	px_admin_close(a);

	/* the route table */
	a = px_admin_new(&loop);
	char path[32];
	int ok = 0;
	for (int i = 0; i < 40; i++) {
		snprintf(path, sizeof(path), "/r%d", i);
		ok += px_admin_route(a, "GET", path, dummy_handler, NULL) == 0;
	}
	assert_int_equal(ok, 32);
	px_admin_close(a);

	a = px_admin_new(&loop);
	assert_int_equal(px_admin_route(a, "GET", "/x", dummy_handler, NULL), 0);
	assert_int_equal(px_admin_route(a, "GET", "/x", dummy_handler, NULL), -1);
	assert_int_equal(px_admin_route(a, "GET", "no-slash", dummy_handler, NULL), -1);
	assert_int_equal(px_admin_route(a, "GET", "/y", NULL, NULL), -1);

	/* addresses: off, in use, a host name */
	cf_addr addr;
	memset(&addr, 0, sizeof(addr));
	addr.kind = CF_ADDR_OFF;
	assert_int_equal(px_admin_listen(a, &addr), UV_EINVAL);
	addr.kind = CF_ADDR_TCP;
	strcpy(addr.host, "127.0.0.1");
	assert_int_equal(px_admin_listen(a, &addr), 0);
	int port = px_admin_port(a);
	assert_true(port > 0);

	px_admin *b = px_admin_new(&loop);
	addr.port = port;
	assert_int_equal(px_admin_listen(b, &addr), UV_EADDRINUSE);
	strcpy(addr.host, "localhost");
	addr.port = 0;
	assert_int_equal(px_admin_listen(b, &addr), 0);
	assert_true(px_admin_port(b) > 0);
	px_admin_close(a);
	px_admin_close(a);
	px_admin_close(b);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
	if (getenv("PGFOLD_TEST_DEBUG"))
		pf_log_set_level(PF_LOG_DEBUG);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_listen_and_routes_api),
		cmocka_unit_test(test_routes),
		cmocka_unit_test(test_bad_requests),
		cmocka_unit_test(test_keep_alive),
		cmocka_unit_test(test_max_connections),
		cmocka_unit_test(test_idle_timeout),
		cmocka_unit_test(test_close_while_busy),
		cmocka_unit_test(test_unix_socket),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
