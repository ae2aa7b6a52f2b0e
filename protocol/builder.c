/*
 * builder.c — the growable output buffer (pgw_buf_*) and the message
 * builders on top of it (see pgwire.h).  The buffer grows by doubling with
 * realloc; an allocation failure, growing past the limit or misuse (nested
 * begin, end without begin) sets the sticky `failed` flag and every later
 * call does nothing, so a caller checks pgw_buf_ok() once before sending.
 * pgw_buf_begin() reserves the length field and pgw_buf_end() back-patches
 * it.  Uses plain realloc (not pf_realloc) because the client may control
 * the size and a failure must fail only this buffer.
 */
#include "pgwire.h"

#include <stdlib.h>
#include <string.h>

#define BUF_MIN_CAP 64u

void pgw_buf_init(pgw_buf *b, size_t limit)
{
	memset(b, 0, sizeof(*b));
	b->limit = limit;
}

void pgw_buf_free(pgw_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	pgw_buf_reset(b);
}

void pgw_buf_reset(pgw_buf *b)
{
	b->len = 0;
	b->msg_start = 0;
	b->in_message = false;
	b->failed = false;
}

/* Not failed and no message left open. */
bool pgw_buf_ok(const pgw_buf *b)
{
	return !b->failed && !b->in_message;
}

/* A failed buffer yields NULL (its bytes are freed); either way b is left
 * empty and ready for reuse with the same limit. */
uint8_t *pgw_buf_steal(pgw_buf *b, size_t *len)
{
	uint8_t *data = b->data;
	*len = b->len;
	if (!pgw_buf_ok(b)) {
		free(data);
		data = NULL;
		*len = 0;
	}
	b->data = NULL;
	b->cap = 0;
	pgw_buf_reset(b);
	return data;
}

static size_t effective_limit(const pgw_buf *b)
{
	return b->limit ? b->limit : PGW_MAX_LENGTH;
}

/* Room for n more bytes; false (and failed set) when that is impossible. */
static bool reserve(pgw_buf *b, size_t n)
{
	if (b->failed)
		return false;
	size_t limit = effective_limit(b);
	if (b->len > limit || n > limit - b->len) {
		b->failed = true;
		return false;
	}
	size_t need = b->len + n;
	if (need <= b->cap)
		return true;
	size_t cap = b->cap ? b->cap : BUF_MIN_CAP;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	uint8_t *p = realloc(b->data, cap);
	if (!p) {
		b->failed = true;
		return false;
	}
	b->data = p;
	b->cap = cap;
	return true;
}

static void write_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

void pgw_buf_put_bytes(pgw_buf *b, const void *p, size_t n)
{
	if (!reserve(b, n) || n == 0)
		return;
	memcpy(b->data + b->len, p, n);
	b->len += n;
}

void pgw_buf_put_u8(pgw_buf *b, uint8_t v)
{
	pgw_buf_put_bytes(b, &v, 1);
}

void pgw_buf_put_i16(pgw_buf *b, int16_t v)
{
	uint16_t u = (uint16_t)v;
	uint8_t p[2] = {(uint8_t)(u >> 8), (uint8_t)u};
	pgw_buf_put_bytes(b, p, sizeof(p));
}

static void put_u32(pgw_buf *b, uint32_t v)
{
	uint8_t p[4];
	write_be32(p, v);
	pgw_buf_put_bytes(b, p, sizeof(p));
}

void pgw_buf_put_i32(pgw_buf *b, int32_t v)
{
	put_u32(b, (uint32_t)v);
}

void pgw_buf_put_cstr(pgw_buf *b, const char *s)
{
	pgw_buf_put_bytes(b, s, strlen(s) + 1);
}

/* Nested begin fails the buffer (a message is always closed first). */
void pgw_buf_begin(pgw_buf *b, uint8_t type)
{
	if (b->in_message)
		b->failed = true;
	b->in_message = true;
	if (b->failed)
		return;
	if (type != 0)
		pgw_buf_put_u8(b, type);
	b->msg_start = b->len;
	put_u32(b, 0);
}

void pgw_buf_end(pgw_buf *b)
{
	if (!b->in_message)
		b->failed = true;
	b->in_message = false;
	if (b->failed)
		return;
	size_t mlen = b->len - b->msg_start;
	if (mlen > PGW_MAX_LENGTH) {
		b->failed = true;
		return;
	}
	write_be32(b->data + b->msg_start, (uint32_t)mlen);
}

/* ---- builders ----------------------------------------------------------- */

static void put_field(pgw_buf *b, uint8_t code, const char *value)
{
	pgw_buf_put_u8(b, code);
	pgw_buf_put_cstr(b, value ? value : "");
}

void pgw_build_error_full(pgw_buf *b, const char *severity, const char *sqlstate, const char *message,
			  const char *detail, const char *hint)
{
	pgw_buf_begin(b, PGW_BE_ERROR);
	put_field(b, 'S', severity);
	put_field(b, 'V', severity);
	put_field(b, 'C', sqlstate);
	put_field(b, 'M', message);
	if (detail)
		put_field(b, 'D', detail);
	if (hint)
		put_field(b, 'H', hint);
	pgw_buf_put_u8(b, 0);
	pgw_buf_end(b);
}

void pgw_build_error(pgw_buf *b, const char *severity, const char *sqlstate, const char *message)
{
	pgw_build_error_full(b, severity, sqlstate, message, NULL, NULL);
}

void pgw_build_ready(pgw_buf *b, char status)
{
	pgw_buf_begin(b, PGW_BE_READY);
	pgw_buf_put_u8(b, (uint8_t)status);
	pgw_buf_end(b);
}

void pgw_build_empty(pgw_buf *b, uint8_t type)
{
	pgw_buf_begin(b, type);
	pgw_buf_end(b);
}

void pgw_build_cancel_request(pgw_buf *b, uint32_t pid, uint32_t key)
{
	pgw_buf_begin(b, 0);
	put_u32(b, PGW_CANCEL_REQUEST_CODE);
	put_u32(b, pid);
	put_u32(b, key);
	pgw_buf_end(b);
}
