/*
 * peer.h — one end of a relayed connection (the client or the backend): the
 * libuv stream handle, its input buffer, its frame parser and the accounting
 * of bytes queued for writing to it.  A session owns two peers.
 *
 * Ownership: the input buffer is the peer's; alloc_cb hands out its free
 * tail.  A write first goes straight to the socket (uv_try_write, no copy);
 * whatever the socket does not take now is copied into a px_write request
 * that lives until write_cb.  The peer never frees the session; it reports to it through the
 * callbacks in px_peer_ops.
 *
 * Backpressure: when the bytes queued for writing to a peer pass the high
 * watermark, the *other* peer is throttled (its reads stop); when they drain
 * below the low watermark it is released.  See px_peer_after_write().
 */
#ifndef PGFOLD_PROXY_PEER_H
#define PGFOLD_PROXY_PEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "../protocol/pgwire.h"

typedef struct px_peer px_peer;

/* What a peer tells its owner.  Called from libuv callbacks; they may close
 * the session (the peer only touches itself after a callback when
 * px_peer_is_open() still holds). */
typedef struct px_peer_ops {
	/* New bytes were appended to peer->in. */
	void (*on_data)(px_peer *peer);
	/* EOF (status UV_EOF) or a read/write error. */
	void (*on_error)(px_peer *peer, int status);
	/* A write finished; the peer's queue shrank. */
	void (*on_drained)(px_peer *peer);
	/* The handle finished closing (last callback for this peer). */
	void (*on_closed)(px_peer *peer);
} px_peer_ops;

struct px_peer {
	union {
		uv_handle_t handle;
		uv_stream_t stream;
		uv_tcp_t tcp;
		uv_pipe_t pipe;
	} h;
	const px_peer_ops *ops;
	void *owner;         /* the session */
	const char *name;    /* "client" or "backend", for logs */
	uint8_t *in;         /* unconsumed input */
	size_t in_len;
	size_t held;         /* in[0, held) was looked at and is held back: the relay
	                      * writes it with what follows (px_peer_consume drops it) */
	size_t in_cap;
	size_t in_max;       /* the buffer never grows past this */
	pgw_stream framer;
	size_t write_queued; /* bytes handed to uv_write, not yet written */
	uint64_t *count_read;    /* optional process-wide counters to add to */
	uint64_t *count_written;
	bool initialized;    /* h was passed to uv_*_init */
	bool want_read;      /* the owner wants input from this peer */
	bool throttled;      /* backpressure: the other side's queue is full */
	bool reading;        /* uv_read_start is in effect */
	bool closing;        /* uv_close was called */
	bool eof;            /* read EOF seen */
};

/* Prepare a peer (no handle yet). */
void px_peer_init(px_peer *peer, const px_peer_ops *ops, void *owner, const char *name, size_t in_initial,
		  size_t in_max);
/* Free the input buffer; only after on_closed (or if never initialized). */
void px_peer_release(px_peer *peer);

bool px_peer_is_open(const px_peer *peer);
/* Recompute and apply whether the handle should be reading. */
void px_peer_update_reading(px_peer *peer);
void px_peer_set_want_read(px_peer *peer, bool want);
/* Drop n consumed bytes from the front of the input buffer. */
void px_peer_consume(px_peer *peer, size_t n);
/* Make room so that in_cap >= need (bounded by in_max).  0 or -1. */
int px_peer_reserve(px_peer *peer, size_t need);

/* Queue a copy of data for writing.  0, or a negative libuv error (the
 * owner's on_error is not called for a synchronous failure). */
int px_peer_write(px_peer *peer, const void *data, size_t len);

/* Close the handle (idempotent).  on_closed follows; if the handle was never
 * initialized, on_closed is not called and false is returned. */
bool px_peer_close(px_peer *peer);

/* Backpressure between two peers: src is throttled while dst's write queue is
 * above high, released once it drops to low or below. */
void px_peer_apply_backpressure(px_peer *src, const px_peer *dst, size_t high, size_t low);

#endif /* PGFOLD_PROXY_PEER_H */
