/*
 * frame.c — message framing for the PostgreSQL v3 wire protocol (see
 * pgwire.h): validation of the 5-byte header of a typed message against the
 * sender's set of message types and the fixed sizes, and the incremental
 * framer (pgw_stream_*) that hands back whole messages for the types the
 * caller inspects and pass-through pieces for everything else.  Also
 * pgw_strerror().  Sans-IO: bytes in, chunks or an error out.
 */
#include "pgwire.h"

#include <string.h>

const char *pgw_strerror(int code)
{
	switch (code) {
	case PGW_OK: return "ok";
	case PGW_NEED_MORE: return "need more bytes";
	case PGW_ERR_BAD_TYPE: return "message type not valid from this sender";
	case PGW_ERR_BAD_LENGTH: return "invalid message length";
	case PGW_ERR_TOO_LARGE: return "message too large";
	case PGW_ERR_TRUNCATED: return "message truncated";
	case PGW_ERR_TRAILING: return "trailing bytes after message";
	case PGW_ERR_MALFORMED: return "malformed message";
	case PGW_ERR_NOMEM: return "out of memory";
	case PGW_ERR_BAD_PROTOCOL: return "unsupported protocol version";
	default: return "unknown error";
	}
}

/* ---- header validation ------------------------------------------------ */

static bool frontend_type_valid(uint8_t type)
{
	return type != 0 && strchr("BCdcfDEHFPpQSX", type) != NULL;
}

static bool backend_type_valid(uint8_t type)
{
	return type != 0 && strchr("RK23CdcGHWDIEVvnNAtS1sZT", type) != NULL;
}

/* The exact length field of a fixed-size message, or 0 when it varies. */
static uint32_t fixed_length(pgw_sender sender, uint8_t type)
{
	if (sender == PGW_FROM_FRONTEND)
		return (type == 'S' || type == 'H' || type == 'X' || type == 'c') ? 4 : 0;
	switch (type) {
	case '1': case '2': case '3': case 'n': case 'I': case 's': case 'c': return 4;
	case 'Z': return 5;
	case 'K': return 12;
	default: return 0;
	}
}

int pgw_frame_header(const uint8_t *buf, size_t len, pgw_sender sender, size_t max_frame, pgw_frame *out)
{
	if (len < PGW_HEADER_LEN)
		return PGW_NEED_MORE;
	pgw_reader r;
	pgw_reader_init(&r, buf, PGW_HEADER_LEN);
	uint8_t type = pgw_read_u8(&r);
	uint32_t length = (uint32_t)pgw_read_i32(&r);

	bool valid = sender == PGW_FROM_FRONTEND ? frontend_type_valid(type) : backend_type_valid(type);
	if (!valid)
		return PGW_ERR_BAD_TYPE;
	/* Covers "negative" lengths (top bit set) too. */
	if (length < 4 || length > PGW_MAX_LENGTH)
		return PGW_ERR_BAD_LENGTH;
	uint32_t fixed = fixed_length(sender, type);
	if (fixed != 0 && length != fixed)
		return PGW_ERR_BAD_LENGTH;
	size_t frame_len = (size_t)length + 1;
	if (frame_len > max_frame)
		return PGW_ERR_TOO_LARGE;
	out->type = type;
	out->body_len = length - 4;
	out->frame_len = frame_len;
	return PGW_OK;
}

/* ---- incremental framer ----------------------------------------------- */

void pgw_stream_init(pgw_stream *s, pgw_sender sender, size_t max_frame, size_t whole_limit)
{
	memset(s, 0, sizeof(*s));
	s->sender = sender;
	s->max_frame = max_frame;
	s->whole_limit = whole_limit;
}

void pgw_stream_want_whole(pgw_stream *s, uint8_t type)
{
	s->whole[type >> 3] |= (uint8_t)(1u << (type & 7));
}

static bool wants_whole(const pgw_stream *s, const pgw_frame *f)
{
	bool wanted = (s->whole[f->type >> 3] >> (f->type & 7)) & 1u;
	return wanted && f->frame_len <= s->whole_limit;
}

static void set_need(size_t *need, size_t n)
{
	if (need)
		*need = n;
}

/* A piece of the message being streamed: up to `remaining` bytes of len. */
static void emit_part(pgw_stream *s, size_t len, bool first, pgw_chunk *out)
{
	size_t n = len < s->remaining ? len : s->remaining;
	out->kind = PGW_CHUNK_PART;
	out->frame = s->cur;
	out->len = n;
	out->first = first;
	out->last = n == s->remaining;
	s->remaining -= n;
}

int pgw_stream_next(pgw_stream *s, const uint8_t *buf, size_t len, pgw_chunk *out, size_t *need)
{
	if (s->remaining > 0) {
		if (len == 0) {
			set_need(need, 1);
			return PGW_NEED_MORE;
		}
		emit_part(s, len, false, out);
		return PGW_OK;
	}
	pgw_frame f;
	int rc = pgw_frame_header(buf, len, s->sender, s->max_frame, &f);
	if (rc == PGW_NEED_MORE)
		set_need(need, PGW_HEADER_LEN);
	if (rc != PGW_OK)
		return rc;
	if (wants_whole(s, &f)) {
		if (len < f.frame_len) {
			set_need(need, f.frame_len);
			return PGW_NEED_MORE;
		}
		memset(out, 0, sizeof(*out));
		out->kind = PGW_CHUNK_MESSAGE;
		out->frame = f;
		out->len = f.frame_len;
		return PGW_OK;
	}
	s->cur = f;
	s->remaining = f.frame_len;
	emit_part(s, len, true, out);
	return PGW_OK;
}
