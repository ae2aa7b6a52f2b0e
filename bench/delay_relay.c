/*
 * delay_relay.c — a TCP relay on loopback that delays every chunk by a fixed
 * time in each direction: a stand-in for `tc qdisc ... netem delay`, which
 * the kernels of these machines lack.  Used by bench/run_nplusone_bench.sh to
 * put a realistic network between pgfold and PostgreSQL.
 *
 *   build/bench/delay_relay LISTEN_PORT TARGET_HOST:TARGET_PORT DELAY_US
 *
 * Listens on 127.0.0.1:LISTEN_PORT; for each client it connects to the
 * target and relays both ways.  Every chunk read (one read(2), up to 64 kB)
 * is stamped with its arrival time and written out when the monotonic clock
 * reaches arrival + DELAY_US, so a request/response round trip takes 2 x
 * DELAY_US longer.  Order is kept (one FIFO per direction; the deadlines of
 * a FIFO are monotonic), EOF is delayed like data (then shutdown(2) on the
 * other side), and a direction holding more than 4 MB (queued or being
 * written) stops reading its source until it drains below 1 MB, so a slow
 * reader slows the writer down as TCP would.  The TCP handshake itself is
 * not delayed.
 *
 * libuv timers have millisecond resolution, so each direction has its own
 * timerfd (CLOCK_MONOTONIC, absolute deadlines, the same clock as
 * uv_hrtime()) watched with uv_poll, and the timer slack of the process is
 * set to 1 ns.  Waking up from a timer still takes tens of µs on a VM, so
 * the timer fires DELAY_RELAY_SPIN_US (environment, default 50) before the
 * deadline and the relay spins on the clock until it; with 0 it only
 * sleeps (chunks then leave ~30-40 µs late here).  On SIGINT/SIGTERM it
 * prints, on stderr, the chunks relayed and how late they were released
 * (release time - deadline), then exits.  Errors that end a connection are
 * logged on stderr.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/timerfd.h>
#include <unistd.h>
#include <uv.h>

#define READ_SIZE (64 * 1024)
#define HIGH_WATER (4u * 1024 * 1024)
#define LOW_WATER (1u * 1024 * 1024)
#define DEFAULT_SPIN_US 50
#define LATE_BUCKETS 10000 /* lateness histogram, 1 µs buckets, last one is "more" */

typedef struct chunk {
	struct chunk *next;
	uint64_t due; /* uv_hrtime() ns */
	size_t len;
	int eof;
	char data[];
} chunk;

typedef struct conn conn;

typedef struct dir {
	conn *c;
	uv_tcp_t *src, *dst;
	chunk *head, *tail;
	size_t pending; /* bytes queued or being written */
	int reading;
	int eof_read;
	int shut_done;
	int tfd;
	uv_poll_t poll;
	uint64_t armed_for; /* deadline the timerfd is set to, 0 = disarmed */
	const char *name;
} dir;

struct conn {
	uv_tcp_t client, server;
	uv_connect_t connect;
	dir up, down; /* up: client -> server, down: server -> client */
	int closing;
	int open_handles;
	uint64_t id;
};

typedef struct wreq {
	uv_write_t req;
	dir *d;
	chunk *ch;
} wreq;

typedef struct sreq {
	uv_shutdown_t req;
	dir *d;
} sreq;

static uv_loop_t *loop;
static uv_tcp_t listener;
static uv_signal_t sigint_h, sigterm_h;
static struct sockaddr_storage target;
static uint64_t delay_ns, spin_ns;
static char read_buf[READ_SIZE];
static uint64_t n_conns, n_chunks[2], n_bytes[2];
static uint64_t late_hist[LATE_BUCKETS], late_max_ns, late_sum_ns, late_n;

static void die(const char *what, int err)
{
	fprintf(stderr, "delay_relay: %s: %s\n", what, err < 0 ? uv_strerror(err) : strerror(err));
	exit(1);
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n);
	if (!p) {
		fprintf(stderr, "delay_relay: out of memory\n");
		exit(1);
	}
	return p;
}

static void conn_close(conn *c, const char *why, int err);
static void flush(dir *d);

static void conn_release(conn *c)
{
	if (--c->open_handles == 0)
		free(c);
}

static void on_handle_closed(uv_handle_t *h)
{
	conn_release(h->data);
}

static void on_poll_closed(uv_handle_t *h)
{
	dir *d = h->data;
	close(d->tfd);
	conn_release(d->c);
}

static void free_queue(dir *d)
{
	chunk *ch = d->head;
	while (ch) {
		chunk *next = ch->next;
		free(ch);
		ch = next;
	}
	d->head = d->tail = NULL;
}

static void conn_close(conn *c, const char *why, int err)
{
	if (c->closing)
		return;
	if (why)
		fprintf(stderr, "delay_relay: connection %" PRIu64 ": %s: %s\n", c->id, why, uv_strerror(err));
	c->closing = 1;
	dir *ds[2] = {&c->up, &c->down};
	for (int i = 0; i < 2; i++) {
		free_queue(ds[i]);
		uv_close((uv_handle_t *)&ds[i]->poll, on_poll_closed);
	}
	uv_close((uv_handle_t *)&c->client, on_handle_closed);
	uv_close((uv_handle_t *)&c->server, on_handle_closed);
}

static void record_lateness(uint64_t now, uint64_t due)
{
	uint64_t late = now > due ? now - due : 0;
	uint64_t us = late / 1000;
	late_hist[us < LATE_BUCKETS ? us : LATE_BUCKETS - 1]++;
	late_sum_ns += late;
	late_n++;
	if (late > late_max_ns)
		late_max_ns = late;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	buf->base = read_buf;
	buf->len = sizeof(read_buf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void start_reading(dir *d)
{
	int r = uv_read_start((uv_stream_t *)d->src, on_alloc, on_read);
	if (r < 0) {
		conn_close(d->c, "uv_read_start", r);
		return;
	}
	d->reading = 1;
}

static void on_write(uv_write_t *req, int status)
{
	wreq *w = (wreq *)req;
	dir *d = w->d;
	d->pending -= w->ch->len;
	free(w->ch);
	free(w);
	if (d->c->closing)
		return;
	if (status < 0) {
		conn_close(d->c, d == &d->c->up ? "writing to the target" : "writing to the client", status);
		return;
	}
	if (!d->reading && !d->eof_read && d->pending <= LOW_WATER)
		start_reading(d);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
	sreq *s = (sreq *)req;
	dir *d = s->d;
	free(s);
	if (d->c->closing)
		return;
	d->shut_done = 1;
	conn *c = d->c;
	if (status < 0)
		conn_close(c, "shutdown", status);
	else if (c->up.shut_done && c->down.shut_done)
		conn_close(c, NULL, 0);
}

static void arm(dir *d, uint64_t due)
{
	if (d->armed_for == due)
		return;
	struct itimerspec its = {0};
	its.it_value.tv_sec = (time_t)(due / 1000000000u);
	its.it_value.tv_nsec = (long)(due % 1000000000u);
	if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0)
		its.it_value.tv_nsec = 1; /* all-zero would disarm */
	if (timerfd_settime(d->tfd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
		die("timerfd_settime", errno);
	d->armed_for = due;
}

/* Release every chunk whose deadline has passed (spinning for one that is
 * due within spin_ns); arm the timer for the next. */
static void flush(dir *d)
{
	uint64_t now = uv_hrtime();
	while (d->head && d->head->due <= now + spin_ns && !d->c->closing) {
		while (d->head->due > now)
			now = uv_hrtime();
		chunk *ch = d->head;
		d->head = ch->next;
		if (!d->head)
			d->tail = NULL;
		record_lateness(now, ch->due);
		if (ch->eof) {
			free(ch);
			sreq *s = xmalloc(sizeof(*s));
			s->d = d;
			int r = uv_shutdown(&s->req, (uv_stream_t *)d->dst, on_shutdown);
			if (r < 0) {
				free(s);
				conn_close(d->c, "shutdown", r);
				return;
			}
			continue;
		}
		wreq *w = xmalloc(sizeof(*w));
		w->d = d;
		w->ch = ch;
		uv_buf_t b = uv_buf_init(ch->data, (unsigned int)ch->len);
		int r = uv_write(&w->req, (uv_stream_t *)d->dst, &b, 1, on_write);
		if (r < 0) {
			d->pending -= ch->len;
			free(ch);
			free(w);
			conn_close(d->c, d == &d->c->up ? "writing to the target" : "writing to the client", r);
			return;
		}
		now = uv_hrtime();
	}
	if (d->head && !d->c->closing)
		arm(d, d->head->due - spin_ns);
}

static void on_timer(uv_poll_t *p, int status, int events)
{
	dir *d = p->data;
	uint64_t expirations;
	ssize_t n = read(d->tfd, &expirations, sizeof(expirations));
	(void)n; /* EAGAIN: a stale wake-up, harmless */
	d->armed_for = 0;
	if (!d->c->closing)
		flush(d);
}

static void enqueue(dir *d, const char *data, size_t len, int eof)
{
	uint64_t now = uv_hrtime();
	chunk *ch = xmalloc(sizeof(*ch) + len);
	ch->next = NULL;
	ch->due = now + delay_ns;
	ch->len = len;
	ch->eof = eof;
	if (len)
		memcpy(ch->data, data, len);
	if (d->tail)
		d->tail->next = ch;
	else
		d->head = ch;
	d->tail = ch;
	d->pending += len;
	if (!eof) {
		int i = d == &d->c->up ? 0 : 1;
		n_chunks[i]++;
		n_bytes[i] += len;
	}
	if (d->pending >= HIGH_WATER && d->reading) {
		uv_read_stop((uv_stream_t *)d->src);
		d->reading = 0;
	}
	flush(d);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	conn *c = s->data;
	dir *d = (uv_tcp_t *)s == &c->client ? &c->up : &c->down;
	if (c->closing)
		return;
	if (nread == UV_EOF) {
		uv_read_stop(s);
		d->reading = 0;
		d->eof_read = 1;
		enqueue(d, NULL, 0, 1);
		return;
	}
	if (nread < 0) {
		conn_close(c, d == &c->up ? "reading from the client" : "reading from the target", (int)nread);
		return;
	}
	if (nread > 0)
		enqueue(d, buf->base, (size_t)nread, 0);
}

static void dir_init(conn *c, dir *d, uv_tcp_t *src, uv_tcp_t *dst, const char *name)
{
	memset(d, 0, sizeof(*d));
	d->c = c;
	d->src = src;
	d->dst = dst;
	d->name = name;
	d->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (d->tfd < 0)
		die("timerfd_create", errno);
	int r = uv_poll_init(loop, &d->poll, d->tfd);
	if (r < 0)
		die("uv_poll_init", r);
	d->poll.data = d;
	c->open_handles++;
	r = uv_poll_start(&d->poll, UV_READABLE, on_timer);
	if (r < 0)
		die("uv_poll_start", r);
}

static void on_connected(uv_connect_t *req, int status)
{
	conn *c = req->data;
	if (c->closing)
		return;
	if (status < 0) {
		conn_close(c, "connecting to the target", status);
		return;
	}
	uv_tcp_nodelay(&c->server, 1);
	start_reading(&c->up);
	if (!c->closing)
		start_reading(&c->down);
}

static void on_accept(uv_stream_t *server, int status)
{
	if (status < 0) {
		fprintf(stderr, "delay_relay: accept: %s\n", uv_strerror(status));
		return;
	}
	conn *c = xmalloc(sizeof(*c));
	memset(c, 0, sizeof(*c));
	c->id = ++n_conns;
	uv_tcp_init(loop, &c->client);
	c->client.data = c;
	c->open_handles++;
	if (uv_accept(server, (uv_stream_t *)&c->client) < 0) {
		uv_close((uv_handle_t *)&c->client, on_handle_closed);
		return;
	}
	uv_tcp_init(loop, &c->server);
	c->server.data = c;
	c->open_handles++;
	uv_tcp_nodelay(&c->client, 1);
	dir_init(c, &c->up, &c->client, &c->server, "up");
	dir_init(c, &c->down, &c->server, &c->client, "down");
	c->connect.data = c;
	int r = uv_tcp_connect(&c->connect, &c->server, (const struct sockaddr *)&target, on_connected);
	if (r < 0) {
		conn_close(c, "connecting to the target", r);
	}
}

static double percentile_us(double q)
{
	if (!late_n)
		return 0;
	uint64_t want = (uint64_t)(q * (double)(late_n - 1)) + 1, seen = 0;
	for (int i = 0; i < LATE_BUCKETS; i++) {
		seen += late_hist[i];
		if (seen >= want)
			return i;
	}
	return LATE_BUCKETS - 1;
}

static void on_signal(uv_signal_t *h, int signum)
{
	fprintf(stderr,
		"delay_relay: %" PRIu64 " connections; up %" PRIu64 " chunks %" PRIu64 " bytes, down %" PRIu64
		" chunks %" PRIu64 " bytes; released late by mean %.1f us, p50 <%.0f us, p99 <%.0f us, max %.1f us\n",
		n_conns, n_chunks[0], n_bytes[0], n_chunks[1], n_bytes[1],
		late_n ? (double)late_sum_ns / (double)late_n / 1000.0 : 0.0, percentile_us(0.5) + 1,
		percentile_us(0.99) + 1, (double)late_max_ns / 1000.0);
	fflush(stderr);
	_exit(0);
}

static void usage(void)
{
	fprintf(stderr, "usage: delay_relay LISTEN_PORT TARGET_HOST:TARGET_PORT DELAY_US\n"
			"  relays 127.0.0.1:LISTEN_PORT to the target, delaying every chunk by DELAY_US\n"
			"  microseconds in each direction\n");
	exit(2);
}

int main(int argc, char **argv)
{
	if (argc != 4)
		usage();
	char *end;
	long port = strtol(argv[1], &end, 10);
	if (*end || port <= 0 || port > 65535)
		usage();
	long long delay_us = strtoll(argv[3], &end, 10);
	if (*end || delay_us < 0 || delay_us > 60LL * 1000 * 1000)
		usage();
	delay_ns = (uint64_t)delay_us * 1000u;
	const char *spin = getenv("DELAY_RELAY_SPIN_US");
	spin_ns = (uint64_t)(spin && *spin ? strtoull(spin, NULL, 10) : DEFAULT_SPIN_US) * 1000u;
	if (spin_ns > delay_ns)
		spin_ns = delay_ns;

	char host[256];
	const char *colon = strrchr(argv[2], ':');
	if (!colon || colon == argv[2] || (size_t)(colon - argv[2]) >= sizeof(host))
		usage();
	memcpy(host, argv[2], (size_t)(colon - argv[2]));
	host[colon - argv[2]] = '\0';
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = '\0';
	}

	/* Timer wake-ups as precise as the kernel can make them (default slack is 50 µs). */
	prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
	signal(SIGPIPE, SIG_IGN);

	loop = uv_default_loop();
	uv_getaddrinfo_t gai;
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	int r = uv_getaddrinfo(loop, &gai, NULL, host, colon + 1, &hints);
	if (r < 0)
		die(argv[2], r);
	memcpy(&target, gai.addrinfo->ai_addr, gai.addrinfo->ai_addrlen);
	uv_freeaddrinfo(gai.addrinfo);

	struct sockaddr_in addr;
	uv_ip4_addr("127.0.0.1", (int)port, &addr);
	uv_tcp_init(loop, &listener);
	if ((r = uv_tcp_bind(&listener, (const struct sockaddr *)&addr, 0)) < 0)
		die("bind", r);
	if ((r = uv_listen((uv_stream_t *)&listener, 128, on_accept)) < 0)
		die("listen", r);
	uv_signal_init(loop, &sigint_h);
	uv_signal_start(&sigint_h, on_signal, SIGINT);
	uv_signal_init(loop, &sigterm_h);
	uv_signal_start(&sigterm_h, on_signal, SIGTERM);
	fprintf(stderr, "delay_relay: 127.0.0.1:%ld -> %s, %lld us each way\n", port, argv[2], delay_us);
	fflush(stderr);
	return uv_run(loop, UV_RUN_DEFAULT);
}
