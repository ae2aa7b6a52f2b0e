/*
 * peer.c — a relayed connection endpoint: input buffer handed to libuv's
 * alloc_cb, copied writes with queue accounting, read start/stop from the
 * owner's wish and backpressure, and deferred close (see peer.h).
 */
#include "peer.h"

#include <string.h>

#include "../common/alloc.h"

/* A write in flight: the bytes live here until write_cb. */
typedef struct px_write {
	uv_write_t req;
	px_peer *peer;
	size_t len;
	uint8_t data[];
} px_write;

/* libuv wants at least this much room per read call. */
#define PX_MIN_READ_ROOM 4096

void px_peer_init(px_peer *peer, const px_peer_ops *ops, void *owner, const char *name, size_t in_initial,
		  size_t in_max)
{
	memset(peer, 0, sizeof(*peer));
	peer->ops = ops;
	peer->owner = owner;
	peer->name = name;
	peer->in_cap = in_initial;
	peer->in_max = in_max > in_initial ? in_max : in_initial;
	peer->in = pf_malloc(in_initial);
	peer->h.handle.data = peer;
}

void px_peer_release(px_peer *peer)
{
	pf_free(peer->in);
	peer->in = NULL;
	peer->in_len = peer->in_cap = peer->held = 0;
}

bool px_peer_is_open(const px_peer *peer)
{
	return peer->initialized && !peer->closing;
}

int px_peer_reserve(px_peer *peer, size_t need)
{
	if (need <= peer->in_cap)
		return 0;
	if (need > peer->in_max)
		return -1;
	size_t cap = peer->in_cap;
	while (cap < need)
		cap = cap * 2 > peer->in_max ? peer->in_max : cap * 2;
	peer->in = pf_realloc(peer->in, cap);
	peer->in_cap = cap;
	return 0;
}

void px_peer_consume(px_peer *peer, size_t n)
{
	peer->held = n >= peer->held ? 0 : peer->held - n;
	if (n >= peer->in_len) {
		peer->in_len = 0;
		return;
	}
	memmove(peer->in, peer->in + n, peer->in_len - n);
	peer->in_len -= n;
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
	px_peer *peer = handle->data;
	(void)suggested;
	if (peer->in_cap - peer->in_len < PX_MIN_READ_ROOM)
		(void)px_peer_reserve(peer, peer->in_len + PX_MIN_READ_ROOM);
	/* A zero-length buffer makes libuv report UV_ENOBUFS, which on_read treats
	 * as an error: only possible if a peer overflows in_max. */
	buf->base = (char *)peer->in + peer->in_len;
	buf->len = peer->in_cap - peer->in_len;
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
	px_peer *peer = stream->data;
	(void)buf;
	if (nread == 0)
		return;
	if (nread < 0) {
		if (nread == UV_EOF)
			peer->eof = true;
		uv_read_stop(stream);
		peer->reading = false;
		peer->ops->on_error(peer, (int)nread);
		return;
	}
	peer->in_len += (size_t)nread;
	if (peer->count_read)
		*peer->count_read += (uint64_t)nread;
	peer->ops->on_data(peer);
}

void px_peer_update_reading(px_peer *peer)
{
	if (!px_peer_is_open(peer))
		return;
	bool should = peer->want_read && !peer->throttled && !peer->eof;
	if (should && !peer->reading) {
		if (uv_read_start(&peer->h.stream, on_alloc, on_read) == 0)
			peer->reading = true;
	} else if (!should && peer->reading) {
		uv_read_stop(&peer->h.stream);
		peer->reading = false;
	}
}

void px_peer_set_want_read(px_peer *peer, bool want)
{
	peer->want_read = want;
	px_peer_update_reading(peer);
}

static void on_write(uv_write_t *req, int status)
{
	px_write *w = (px_write *)req;
	px_peer *peer = w->peer;
	peer->write_queued -= w->len;
	if (status == 0 && peer->count_written)
		*peer->count_written += w->len;
	pf_free(w);
	if (status == UV_ECANCELED)
		return; /* the handle is closing; nothing more to report */
	if (status < 0)
		peer->ops->on_error(peer, status);
	else
		peer->ops->on_drained(peer);
}

/* Write what the socket takes now, without a copy; returns bytes written or
 * a negative libuv error other than UV_EAGAIN. */
static ssize_t write_now(px_peer *peer, const void *data, size_t len)
{
	if (peer->write_queued > 0)
		return 0; /* keep order: earlier bytes are still queued */
	uv_buf_t buf = uv_buf_init((char *)data, (unsigned int)len);
	int n = uv_try_write(&peer->h.stream, &buf, 1);
	if (n == UV_EAGAIN || n == UV_ENOSYS)
		return 0;
	if (n > 0 && peer->count_written)
		*peer->count_written += (uint64_t)n;
	return n;
}

int px_peer_write(px_peer *peer, const void *data, size_t len)
{
	if (!px_peer_is_open(peer))
		return UV_EPIPE;
	ssize_t done = len ? write_now(peer, data, len) : 0;
	if (done < 0)
		return (int)done;
	len -= (size_t)done;
	if (len == 0)
		return 0;
	px_write *w = pf_malloc(sizeof(*w) + len);
	w->peer = peer;
	w->len = len;
	memcpy(w->data, (const uint8_t *)data + done, len);
	uv_buf_t buf = uv_buf_init((char *)w->data, (unsigned int)len);
	int rc = uv_write(&w->req, &peer->h.stream, &buf, 1, on_write);
	if (rc < 0) {
		pf_free(w);
		return rc;
	}
	peer->write_queued += len;
	return 0;
}

static void on_close(uv_handle_t *handle)
{
	px_peer *peer = handle->data;
	peer->ops->on_closed(peer);
}

bool px_peer_close(px_peer *peer)
{
	if (!peer->initialized)
		return false;
	if (peer->closing)
		return true;
	peer->closing = true;
	peer->reading = false;
	uv_close(&peer->h.handle, on_close);
	return true;
}

void px_peer_apply_backpressure(px_peer *src, const px_peer *dst, size_t high, size_t low)
{
	bool was = src->throttled;
	if (!was && dst->write_queued > high)
		src->throttled = true;
	else if (was && dst->write_queued <= low)
		src->throttled = false;
	if (was != src->throttled)
		px_peer_update_reading(src);
}
