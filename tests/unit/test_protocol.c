/*
 * test_protocol.c — unit tests for protocol/ (pgwire.h), from byte arrays.
 *
 *   frame headers    every type byte of each direction, lengths (< 4,
 *                    negative, over PGW_MAX_LENGTH, over max_frame), fixed sizes
 *   stream framer    a realistic backend and frontend conversation split at
 *                    every byte boundary, byte by byte and in random pieces,
 *                    reassembled and compared message by message; error streams
 *   startup          StartupMessage, SSL/GSSENC/Cancel requests, bad packets
 *   readers          the cursor, then every message reader on valid input,
 *                    every truncated prefix, a trailing byte and bad fields
 *   builders         back-patching, error round trip, sticky failure, growth
 *
 * Inputs are copied into exact-size heap buffers before parsing so that
 * ASan catches any read past `len`.  Failures print the case and the values.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../protocol/pgwire.h"

/* A string literal with embedded NULs as (bytes, length). */
#define LIT(s) (const uint8_t *)(s), (sizeof(s) - 1)

#define CHECK_RC(got, want, ...)                                                                               \
	do {                                                                                                   \
		int got_ = (got), want_ = (want);                                                              \
		if (got_ != want_) {                                                                           \
			print_error(__VA_ARGS__);                                                              \
			print_error(": got %d (%s), want %d (%s)\n", got_, pgw_strerror(got_), want_,          \
				    pgw_strerror(want_));                                                      \
			fail();                                                                                \
		}                                                                                              \
	} while (0)

#define CHECK_SZ(got, want, ...)                                                                               \
	do {                                                                                                   \
		size_t got_ = (got), want_ = (want);                                                           \
		if (got_ != want_) {                                                                           \
			print_error(__VA_ARGS__);                                                              \
			print_error(": got %zu, want %zu\n", got_, want_);                                     \
			fail();                                                                                \
		}                                                                                              \
	} while (0)

#define CHECK(cond, ...)                                                                                       \
	do {                                                                                                   \
		if (!(cond)) {                                                                                 \
			print_error(__VA_ARGS__);                                                              \
			print_error(": check failed: %s\n", #cond);                                            \
			fail();                                                                                \
		}                                                                                              \
	} while (0)

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* An exact-size heap copy (so reading past n is an ASan error). */
static uint8_t *dup_exact(const uint8_t *p, size_t n)
{
	uint8_t *d = malloc(n ? n : 1);
	assert_non_null(d);
	if (n)
		memcpy(d, p, n);
	return d;
}

/* ---- test writer: builds wire bytes independently of pgw_buf ------------ */

typedef struct tw {
	uint8_t d[16384];
	size_t len;
} tw;

static void tw_raw(tw *t, const void *p, size_t n)
{
	assert_true(t->len + n <= sizeof(t->d));
	if (n)
		memcpy(t->d + t->len, p, n);
	t->len += n;
}

static void tw_u8(tw *t, uint8_t v)
{
	tw_raw(t, &v, 1);
}

static void tw_i16(tw *t, int16_t v)
{
	uint8_t p[2] = {(uint8_t)((uint16_t)v >> 8), (uint8_t)v};
	tw_raw(t, p, 2);
}

static void tw_u32(tw *t, uint32_t v)
{
	uint8_t p[4];
	put_be32(p, v);
	tw_raw(t, p, 4);
}

/* n bytes of every value (binary payloads). */
static void tw_fill(tw *t, size_t n, uint8_t seed)
{
	for (size_t i = 0; i < n; i++)
		tw_u8(t, (uint8_t)(seed + i * 7));
}

/* n lowercase letters (text without NULs). */
static void tw_text(tw *t, size_t n)
{
	for (size_t i = 0; i < n; i++)
		tw_u8(t, (uint8_t)('a' + i % 26));
}

/* ---- pgw_strerror -------------------------------------------------------- */

static void test_strerror(void **state)
{
	(void)state;
	const int codes[] = {PGW_OK,	       PGW_NEED_MORE,	  PGW_ERR_BAD_TYPE, PGW_ERR_BAD_LENGTH,
			     PGW_ERR_TOO_LARGE, PGW_ERR_TRUNCATED, PGW_ERR_TRAILING, PGW_ERR_MALFORMED,
			     PGW_ERR_NOMEM,	PGW_ERR_BAD_PROTOCOL};
	size_t n = sizeof(codes) / sizeof(codes[0]);
	for (size_t i = 0; i < n; i++) {
		const char *s = pgw_strerror(codes[i]);
		CHECK(s && s[0] && strcmp(s, "unknown error") != 0, "code %d", codes[i]);
		for (size_t j = 0; j < i; j++)
			CHECK(strcmp(s, pgw_strerror(codes[j])) != 0, "codes %d and %d", codes[i], codes[j]);
	}
	assert_string_equal(pgw_strerror(-99), "unknown error");
}

/* ---- frame headers -------------------------------------------------------- */

static const char FE_TYPES[] = "BCdcfDEHFPpQSX";
static const char BE_TYPES[] = "RK23CdcGHWDIEVvnNAtS1sZT";

typedef struct fixed_case {
	pgw_sender sender;
	uint8_t type;
	uint32_t length;
} fixed_case;

static const fixed_case FIXED[] = {
	{PGW_FROM_FRONTEND, 'S', 4}, {PGW_FROM_FRONTEND, 'H', 4}, {PGW_FROM_FRONTEND, 'X', 4},
	{PGW_FROM_FRONTEND, 'c', 4}, {PGW_FROM_BACKEND, '1', 4},  {PGW_FROM_BACKEND, '2', 4},
	{PGW_FROM_BACKEND, '3', 4},  {PGW_FROM_BACKEND, 'n', 4},  {PGW_FROM_BACKEND, 'I', 4},
	{PGW_FROM_BACKEND, 's', 4},  {PGW_FROM_BACKEND, 'c', 4},  {PGW_FROM_BACKEND, 'Z', 5},
	{PGW_FROM_BACKEND, 'K', 12},
};
#define NFIXED (sizeof(FIXED) / sizeof(FIXED[0]))

static uint32_t fixed_len_of(pgw_sender sender, uint8_t type)
{
	for (size_t i = 0; i < NFIXED; i++)
		if (FIXED[i].sender == sender && FIXED[i].type == type)
			return FIXED[i].length;
	return 0;
}

static const char *sender_name(pgw_sender s)
{
	return s == PGW_FROM_FRONTEND ? "frontend" : "backend";
}

static int header_rc(pgw_sender sender, uint8_t type, uint32_t length, size_t max_frame, pgw_frame *f)
{
	uint8_t h[PGW_HEADER_LEN];
	h[0] = type;
	put_be32(h + 1, length);
	uint8_t *d = dup_exact(h, sizeof(h));
	int rc = pgw_frame_header(d, sizeof(h), sender, max_frame, f);
	free(d);
	return rc;
}

/* Every one of the 256 type bytes, from each sender. */
static void test_frame_header_types(void **state)
{
	(void)state;
	for (int s = 0; s < 2; s++) {
		pgw_sender sender = s ? PGW_FROM_BACKEND : PGW_FROM_FRONTEND;
		const char *valid = s ? BE_TYPES : FE_TYPES;
		for (unsigned t = 0; t < 256; t++) {
			bool ok = t != 0 && strchr(valid, (int)t) != NULL;
			uint32_t fixed = fixed_len_of(sender, (uint8_t)t);
			uint32_t length = fixed ? fixed : 20;
			pgw_frame f = {0};
			int rc = header_rc(sender, (uint8_t)t, length, 1024, &f);
			CHECK_RC(rc, ok ? PGW_OK : PGW_ERR_BAD_TYPE, "%s type 0x%02x '%c'", sender_name(sender), t,
				 t >= 32 && t < 127 ? (int)t : '?');
			if (!ok)
				continue;
			CHECK(f.type == t, "type 0x%02x", t);
			CHECK_SZ(f.body_len, length - 4, "body_len of '%c'", (int)t);
			CHECK_SZ(f.frame_len, length + 1, "frame_len of '%c'", (int)t);
		}
	}
}

/* Types valid only in the other direction, named explicitly. */
static void test_frame_header_wrong_direction(void **state)
{
	(void)state;
	const struct {
		pgw_sender sender;
		uint8_t type;
	} cases[] = {
		{PGW_FROM_FRONTEND, 'R'}, {PGW_FROM_FRONTEND, 'Z'}, {PGW_FROM_FRONTEND, 'T'},
		{PGW_FROM_FRONTEND, 'K'}, {PGW_FROM_FRONTEND, '1'}, {PGW_FROM_FRONTEND, 'N'},
		{PGW_FROM_BACKEND, 'Q'},  {PGW_FROM_BACKEND, 'P'},  {PGW_FROM_BACKEND, 'B'},
		{PGW_FROM_BACKEND, 'X'},  {PGW_FROM_BACKEND, 'p'},  {PGW_FROM_BACKEND, 'f'},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		pgw_frame f;
		int rc = header_rc(cases[i].sender, cases[i].type, 8, 1024, &f);
		CHECK_RC(rc, PGW_ERR_BAD_TYPE, "%s '%c'", sender_name(cases[i].sender), cases[i].type);
	}
}

static void test_frame_header_lengths(void **state)
{
	(void)state;
	const struct {
		const char *name;
		uint8_t type;
		uint32_t length;
		size_t max_frame;
		int want;
	} cases[] = {
		{"length 0", 'Q', 0, 1024, PGW_ERR_BAD_LENGTH},
		{"length 3", 'Q', 3, 1024, PGW_ERR_BAD_LENGTH},
		{"length 4 (empty body)", 'Q', 4, 1024, PGW_OK},
		{"negative 0x80000000", 'Q', 0x80000000u, SIZE_MAX, PGW_ERR_BAD_LENGTH},
		{"negative 0x80000004", 'd', 0x80000004u, SIZE_MAX, PGW_ERR_BAD_LENGTH},
		{"negative -1", 'Q', 0xffffffffu, SIZE_MAX, PGW_ERR_BAD_LENGTH},
		{"over PGW_MAX_LENGTH", 'd', PGW_MAX_LENGTH + 1, SIZE_MAX, PGW_ERR_BAD_LENGTH},
		{"PGW_MAX_LENGTH", 'd', PGW_MAX_LENGTH, SIZE_MAX, PGW_OK},
		{"frame == max_frame", 'Q', 1023, 1024, PGW_OK},
		{"frame == max_frame + 1", 'Q', 1024, 1024, PGW_ERR_TOO_LARGE},
		{"far over max_frame", 'd', 1u << 29, 1024, PGW_ERR_TOO_LARGE},
		{"max_frame below header", 'Q', 4, 4, PGW_ERR_TOO_LARGE},
		{"bad type beats bad length", 'R', 0, 1024, PGW_ERR_BAD_TYPE},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		pgw_frame f;
		int rc = header_rc(PGW_FROM_FRONTEND, cases[i].type, cases[i].length, cases[i].max_frame, &f);
		CHECK_RC(rc, cases[i].want, "%s (length %u)", cases[i].name, cases[i].length);
		if (rc == PGW_OK)
			CHECK_SZ(f.frame_len, (size_t)cases[i].length + 1, "%s", cases[i].name);
	}
}

static void test_frame_header_fixed_sizes(void **state)
{
	(void)state;
	for (size_t i = 0; i < NFIXED; i++) {
		const fixed_case *c = &FIXED[i];
		const uint32_t bad[] = {c->length - 1, c->length + 1, c->length + 100, c->length | 0x80000000u};
		pgw_frame f;
		CHECK_RC(header_rc(c->sender, c->type, c->length, 1024, &f), PGW_OK, "%s '%c' length %u",
			 sender_name(c->sender), c->type, c->length);
		for (size_t j = 0; j < sizeof(bad) / sizeof(bad[0]); j++)
			CHECK_RC(header_rc(c->sender, c->type, bad[j], SIZE_MAX, &f), PGW_ERR_BAD_LENGTH,
				 "%s '%c' length %u", sender_name(c->sender), c->type, bad[j]);
	}
}

static void test_frame_header_short(void **state)
{
	(void)state;
	const uint8_t h[] = {'Q', 0, 0, 0, 9};
	for (size_t n = 0; n < sizeof(h); n++) {
		uint8_t *d = dup_exact(h, n);
		pgw_frame f;
		CHECK_RC(pgw_frame_header(d, n, PGW_FROM_FRONTEND, 1024, &f), PGW_NEED_MORE, "%zu bytes", n);
		free(d);
	}
}

/* ---- stream framer: a recorded conversation ------------------------------- */

typedef struct wire_msg {
	uint8_t type;
	size_t off; /* where the frame starts in wire.data */
	size_t len; /* frame_len */
	bool whole; /* expected as one PGW_CHUNK_MESSAGE */
} wire_msg;

typedef struct wire {
	tw t;
	wire_msg msgs[64];
	size_t nmsgs;
	pgw_sender sender;
	size_t max_frame, whole_limit;
	const char *whole_types;
} wire;

static void wire_init(wire *w, pgw_sender sender, size_t whole_limit, const char *whole_types)
{
	memset(w, 0, sizeof(*w));
	w->sender = sender;
	w->max_frame = 1u << 20;
	w->whole_limit = whole_limit;
	w->whole_types = whole_types;
}

/* Append a message whose body is the n bytes at body. */
static void wire_add(wire *w, uint8_t type, const void *body, size_t n)
{
	assert_true(w->nmsgs < 64);
	wire_msg *m = &w->msgs[w->nmsgs++];
	m->type = type;
	m->off = w->t.len;
	m->len = n + 5;
	m->whole = strchr(w->whole_types, type) != NULL && m->len <= w->whole_limit;
	tw_u8(&w->t, type);
	tw_u32(&w->t, (uint32_t)n + 4);
	tw_raw(&w->t, body, n);
}

static void wire_add_tw(wire *w, uint8_t type, const tw *body)
{
	wire_add(w, type, body->d, body->len);
}

/* A message of exactly frame_len bytes whose body is one C string. */
static void wire_add_cstr_frame(wire *w, uint8_t type, size_t frame_len)
{
	static tw body;
	body.len = 0;
	tw_text(&body, frame_len - 6);
	tw_u8(&body, 0);
	wire_add_tw(w, type, &body);
}

static void build_backend_wire(wire *w)
{
	static tw body;
	wire_init(w, PGW_FROM_BACKEND, 256, "RKSZT12CEN");
	wire_add(w, 'R', LIT("\x00\x00\x00\x0a" "SCRAM-SHA-256\0\0"));
	wire_add(w, 'R', LIT("\x00\x00\x00\x00"));
	wire_add(w, 'S', LIT("server_version\0" "16.2\0"));
	wire_add(w, 'S', LIT("client_encoding\0UTF8\0"));
	wire_add(w, 'K', LIT("\x00\x00\x30\x39" "\xde\xad\xbe\xef"));
	wire_add(w, 'Z', LIT("I"));
	wire_add(w, '1', LIT(""));
	wire_add(w, '2', LIT(""));
	wire_add(w, 'T', LIT("\x00\x01" "id\0" "\x00\x00\x40\x00" "\x00\x01" "\x00\x00\x00\x17"
			     "\x00\x04" "\xff\xff\xff\xff" "\x00\x00"));
	wire_add(w, 'D', LIT("\x00\x01" "\x00\x00\x00\x01" "7"));
	/* A large DataRow: two columns, 3000 bytes then NULL. */
	body.len = 0;
	tw_i16(&body, 2);
	tw_u32(&body, 3000);
	tw_fill(&body, 3000, 1);
	tw_u32(&body, 0xffffffffu);
	wire_add_tw(w, 'D', &body);
	wire_add(w, 'n', LIT(""));
	wire_add(w, 'C', LIT("SELECT 2\0"));
	wire_add_cstr_frame(w, 'C', w->whole_limit);	 /* whole: exactly the limit */
	wire_add_cstr_frame(w, 'C', w->whole_limit + 1); /* streamed: one over */
	/* An ErrorResponse over whole_limit: streamed although wanted. */
	body.len = 0;
	tw_raw(&body, LIT("SERROR\0VERROR\0CXX000\0M"));
	tw_text(&body, 400);
	tw_raw(&body, LIT("\0\0"));
	wire_add_tw(w, 'E', &body);
	wire_add(w, 'N', LIT("SNOTICE\0VNOTICE\0C00000\0Mhello\0\0"));
	body.len = 0;
	tw_fill(&body, 1000, 3);
	wire_add_tw(w, 'd', &body);
	wire_add(w, 'c', LIT(""));
	wire_add(w, '3', LIT(""));
	wire_add(w, 'Z', LIT("T"));
}

static void build_frontend_wire(wire *w)
{
	static tw body;
	wire_init(w, PGW_FROM_FRONTEND, 256, "QPBDESXHC");
	wire_add(w, 'p', LIT("secret\0"));
	wire_add(w, 'Q', LIT("select 1\0"));
	wire_add(w, 'P', LIT("s1\0select $1::int\0" "\x00\x01" "\x00\x00\x00\x17"));
	wire_add(w, 'B', LIT("\0s1\0" "\x00\x01" "\x00\x00" "\x00\x01" "\x00\x00\x00\x01" "5"
			     "\x00\x01" "\x00\x00"));
	wire_add(w, 'D', LIT("Ss1\0"));
	wire_add(w, 'E', LIT("\0" "\x00\x00\x00\x00"));
	wire_add(w, 'S', LIT(""));
	wire_add(w, 'H', LIT(""));
	wire_add_cstr_frame(w, 'Q', w->whole_limit);
	wire_add_cstr_frame(w, 'Q', w->whole_limit + 1);
	/* A query over whole_limit: streamed although wanted. */
	body.len = 0;
	tw_raw(&body, LIT("select '"));
	tw_text(&body, 1000);
	tw_raw(&body, LIT("'\0"));
	wire_add_tw(w, 'Q', &body);
	body.len = 0;
	tw_fill(&body, 2000, 5);
	wire_add_tw(w, 'd', &body);
	wire_add(w, 'd', LIT(""));
	wire_add(w, 'c', LIT(""));
	wire_add(w, 'f', LIT("oops\0"));
	wire_add(w, 'C', LIT("P\0"));
	wire_add(w, 'F', LIT("\x00\x00\x04\xd2" "\x00\x00" "\x00\x00" "\x00\x00"));
	wire_add(w, 'X', LIT(""));
}

/* A caller of pgw_stream_next(): feeds bytes, checks each chunk against
 * the recorded messages and reassembles the streamed ones. */
typedef struct replay {
	const wire *w;
	const char *ctx; /* printed on failure */
	size_t ctx_arg;
	pgw_stream s;
	size_t fed;      /* bytes of w->t.d handed over so far */
	size_t consumed; /* bytes the framer has returned in chunks */
	size_t done;     /* messages completed */
	size_t part_got; /* bytes of the streamed message seen so far */
	bool in_part;
	bool exact; /* copy pending bytes into an exact-size buffer per call */
} replay;

static void replay_init(replay *rp, const wire *w, const char *ctx, size_t arg)
{
	memset(rp, 0, sizeof(*rp));
	rp->w = w;
	rp->ctx = ctx;
	rp->ctx_arg = arg;
	pgw_stream_init(&rp->s, w->sender, w->max_frame, w->whole_limit);
	for (const char *t = w->whole_types; *t; t++)
		pgw_stream_want_whole(&rp->s, (uint8_t)*t);
}

static void replay_need(replay *rp, size_t pending, size_t need)
{
	const wire_msg *m = &rp->w->msgs[rp->done];
	if (rp->in_part) {
		CHECK(pending == 0 && need == 1, "%s %zu: mid-message pending %zu need %zu", rp->ctx,
		      rp->ctx_arg, pending, need);
	} else if (pending < PGW_HEADER_LEN) {
		CHECK_SZ(need, PGW_HEADER_LEN, "%s %zu: need before header", rp->ctx, rp->ctx_arg);
	} else {
		CHECK(m->whole, "%s %zu: NEED_MORE on streamed msg %zu", rp->ctx, rp->ctx_arg, rp->done);
		CHECK(pending < m->len, "%s %zu: NEED_MORE with the whole msg", rp->ctx, rp->ctx_arg);
		CHECK_SZ(need, m->len, "%s %zu: need for msg %zu", rp->ctx, rp->ctx_arg, rp->done);
	}
}

static void replay_chunk(replay *rp, const uint8_t *buf, const pgw_chunk *c)
{
	CHECK(rp->done < rp->w->nmsgs, "%s %zu: chunk after the last message", rp->ctx, rp->ctx_arg);
	const wire_msg *m = &rp->w->msgs[rp->done];
	CHECK(c->len > 0, "%s %zu: empty chunk", rp->ctx, rp->ctx_arg);
	CHECK(c->frame.type == m->type && c->frame.frame_len == m->len, "%s %zu: msg %zu frame '%c'/%zu, want '%c'/%zu",
	      rp->ctx, rp->ctx_arg, rp->done, c->frame.type, c->frame.frame_len, m->type, m->len);
	if (c->kind == PGW_CHUNK_MESSAGE) {
		CHECK(m->whole && !rp->in_part, "%s %zu: msg %zu came whole", rp->ctx, rp->ctx_arg, rp->done);
		CHECK_SZ(c->len, m->len, "%s %zu: msg %zu len", rp->ctx, rp->ctx_arg, rp->done);
		CHECK(memcmp(buf, rp->w->t.d + m->off, m->len) == 0, "%s %zu: msg %zu bytes", rp->ctx,
		      rp->ctx_arg, rp->done);
		rp->done++;
		return;
	}
	CHECK(!m->whole, "%s %zu: msg %zu came in parts", rp->ctx, rp->ctx_arg, rp->done);
	CHECK(c->first == !rp->in_part, "%s %zu: msg %zu first flag", rp->ctx, rp->ctx_arg, rp->done);
	if (c->first)
		CHECK(c->len >= PGW_HEADER_LEN, "%s %zu: first part without header", rp->ctx, rp->ctx_arg);
	CHECK(rp->part_got + c->len <= m->len, "%s %zu: part overruns msg %zu", rp->ctx, rp->ctx_arg, rp->done);
	CHECK(memcmp(buf, rp->w->t.d + m->off + rp->part_got, c->len) == 0, "%s %zu: msg %zu part bytes",
	      rp->ctx, rp->ctx_arg, rp->done);
	rp->part_got += c->len;
	rp->in_part = rp->part_got < m->len;
	CHECK(c->last == !rp->in_part, "%s %zu: msg %zu last flag", rp->ctx, rp->ctx_arg, rp->done);
	if (c->last) {
		rp->part_got = 0;
		rp->done++;
	}
}

/* Hand n more bytes to the framer and drain every chunk it gives back. */
static void replay_feed(replay *rp, size_t n)
{
	rp->fed += n;
	for (;;) {
		size_t pending = rp->fed - rp->consumed;
		const uint8_t *src = rp->w->t.d + rp->consumed;
		uint8_t *copy = rp->exact ? dup_exact(src, pending) : NULL;
		const uint8_t *buf = copy ? copy : src;
		pgw_chunk c;
		size_t need = 0;
		int rc = pgw_stream_next(&rp->s, buf, pending, &c, &need);
		if (rc == PGW_NEED_MORE)
			replay_need(rp, pending, need);
		else if (rc == PGW_OK)
			replay_chunk(rp, buf, &c);
		free(copy);
		if (rc == PGW_NEED_MORE)
			return;
		CHECK_RC(rc, PGW_OK, "%s %zu: msg %zu", rp->ctx, rp->ctx_arg, rp->done);
		rp->consumed += c.len;
	}
}

static void replay_end(replay *rp)
{
	CHECK_SZ(rp->done, rp->w->nmsgs, "%s %zu: messages", rp->ctx, rp->ctx_arg);
	CHECK_SZ(rp->consumed, rp->w->t.len, "%s %zu: bytes", rp->ctx, rp->ctx_arg);
	CHECK(!rp->in_part, "%s %zu: ends inside a message", rp->ctx, rp->ctx_arg);
}

static void run_wire_splits(const wire *w)
{
	replay rp;
	for (size_t split = 0; split <= w->t.len; split++) {
		replay_init(&rp, w, "split at", split);
		replay_feed(&rp, split);
		replay_feed(&rp, w->t.len - split);
		replay_end(&rp);
	}
	replay_init(&rp, w, "byte by byte", 0);
	rp.exact = true;
	for (size_t i = 0; i < w->t.len; i++)
		replay_feed(&rp, 1);
	replay_end(&rp);
	srand(12345);
	for (size_t run = 0; run < 200; run++) {
		replay_init(&rp, w, "random run", run);
		rp.exact = true;
		while (rp.fed < w->t.len) {
			size_t left = w->t.len - rp.fed, n = 1 + (size_t)rand() % 700;
			replay_feed(&rp, n < left ? n : left);
		}
		replay_end(&rp);
	}
}

static void check_wire_mix(const wire *w)
{
	size_t whole = 0, parts = 0;
	for (size_t i = 0; i < w->nmsgs; i++)
		if (w->msgs[i].whole)
			whole++;
		else
			parts++;
	CHECK(whole >= 5 && parts >= 5, "wire has %zu whole and %zu streamed messages", whole, parts);
}

static void test_stream_backend_splits(void **state)
{
	(void)state;
	static wire w;
	build_backend_wire(&w);
	check_wire_mix(&w);
	run_wire_splits(&w);
}

static void test_stream_frontend_splits(void **state)
{
	(void)state;
	static wire w;
	build_frontend_wire(&w);
	check_wire_mix(&w);
	run_wire_splits(&w);
}

/* A zero-body message not wanted whole is one PART, first && last. */
static void test_stream_empty_part(void **state)
{
	(void)state;
	pgw_stream s;
	pgw_stream_init(&s, PGW_FROM_BACKEND, 1024, 1024);
	const uint8_t nodata[] = {'n', 0, 0, 0, 4};
	pgw_chunk c;
	size_t need = 0;
	CHECK_RC(pgw_stream_next(&s, nodata, sizeof(nodata), &c, &need), PGW_OK, "NoData");
	assert_int_equal(c.kind, PGW_CHUNK_PART);
	assert_true(c.first && c.last);
	assert_int_equal(c.len, 5);
	assert_int_equal(s.remaining, 0);
	/* And a NULL need pointer is accepted. */
	CHECK_RC(pgw_stream_next(&s, nodata, 3, &c, NULL), PGW_NEED_MORE, "short header, need NULL");
}

typedef struct stream_case {
	const char *name;
	pgw_sender sender;
	size_t max_frame;
	const uint8_t *bytes;
	size_t len;
	size_t ok_chunks; /* PGW_OK chunks before the final result */
	int want;
	size_t want_need; /* for PGW_NEED_MORE */
} stream_case;

static void run_stream_case(const stream_case *tc)
{
	pgw_stream s;
	pgw_stream_init(&s, tc->sender, tc->max_frame, 64);
	pgw_stream_want_whole(&s, 'Q');
	pgw_stream_want_whole(&s, 'S');
	pgw_stream_want_whole(&s, 'Z');
	uint8_t *d = dup_exact(tc->bytes, tc->len);
	size_t off = 0, chunks = 0, need = 0;
	int rc;
	pgw_chunk c;
	while ((rc = pgw_stream_next(&s, d + off, tc->len - off, &c, &need)) == PGW_OK) {
		off += c.len;
		chunks++;
	}
	free(d);
	CHECK_RC(rc, tc->want, "%s", tc->name);
	CHECK_SZ(chunks, tc->ok_chunks, "%s: chunks before the result", tc->name);
	if (rc == PGW_NEED_MORE)
		CHECK_SZ(need, tc->want_need, "%s: need", tc->name);
}

#define FE PGW_FROM_FRONTEND
#define BE PGW_FROM_BACKEND

static void test_stream_errors(void **state)
{
	(void)state;
	const stream_case cases[] = {
		{"empty input", FE, 1024, LIT(""), 0, PGW_NEED_MORE, 5},
		{"3 header bytes", FE, 1024, LIT("Q\0\0"), 0, PGW_NEED_MORE, 5},
		{"whole msg short", FE, 1024, LIT("Q\0\0\0\x0dsel"), 0, PGW_NEED_MORE, 14},
		{"whole msg one byte short", FE, 1024, LIT("Q\0\0\0\x06" "a"), 0, PGW_NEED_MORE, 7},
		{"streamed msg, body pending", BE, 1024, LIT("D\0\0\0\x10"), 1, PGW_NEED_MORE, 1},
		{"http request", FE, 1024, LIT("GET / HTTP/1.1\r\n\r\n"), 0, PGW_ERR_BAD_TYPE, 0},
		{"SSLRequest mid-stream", FE, 1024, LIT("\0\0\0\x08\x04\xd2\x16\x2f"), 0, PGW_ERR_BAD_TYPE, 0},
		{"tls client hello", FE, 1024, LIT("\x16\x03\x01\x02\x00"), 0, PGW_ERR_BAD_TYPE, 0},
		{"backend type from frontend", FE, 1024, LIT("Z\0\0\0\x05I"), 0, PGW_ERR_BAD_TYPE, 0},
		{"frontend type from backend", BE, 1024, LIT("Q\0\0\0\x05" "a"), 0, PGW_ERR_BAD_TYPE, 0},
		{"negative length", FE, 1024, LIT("Q\x80\0\0\0"), 0, PGW_ERR_BAD_LENGTH, 0},
		{"length -1", FE, 1024, LIT("d\xff\xff\xff\xff"), 0, PGW_ERR_BAD_LENGTH, 0},
		{"length 3", FE, 1024, LIT("Q\0\0\0\x03"), 0, PGW_ERR_BAD_LENGTH, 0},
		{"length 0", FE, 1024, LIT("Q\0\0\0\0"), 0, PGW_ERR_BAD_LENGTH, 0},
		{"over max_frame", FE, 1024, LIT("d\0\0\x04\x00"), 0, PGW_ERR_TOO_LARGE, 0},
		{"whole type over max_frame", FE, 1024, LIT("Q\0\0\x07\xd0"), 0, PGW_ERR_TOO_LARGE, 0},
		{"Sync with a body", FE, 1024, LIT("S\0\0\0\x05x"), 0, PGW_ERR_BAD_LENGTH, 0},
		{"Terminate length 8", FE, 1024, LIT("X\0\0\0\x08\0\0\0\0"), 0, PGW_ERR_BAD_LENGTH, 0},
		{"ReadyForQuery length 4", BE, 1024, LIT("Z\0\0\0\x04"), 0, PGW_ERR_BAD_LENGTH, 0},
		{"BackendKeyData length 8", BE, 1024, LIT("K\0\0\0\x08\0\0\0\x01"), 0, PGW_ERR_BAD_LENGTH, 0},
		{"ParseComplete with a body", BE, 1024, LIT("1\0\0\0\x05x"), 0, PGW_ERR_BAD_LENGTH, 0},
		{"good Sync then garbage", FE, 1024, LIT("S\0\0\0\x04\xff\0\0\0\x04"), 1, PGW_ERR_BAD_TYPE, 0},
		{"good Ready then bad length", BE, 1024, LIT("Z\0\0\0\x05IT\0\0\0\x02"), 1, PGW_ERR_BAD_LENGTH, 0},
		{"streamed msg then bad type", BE, 1024, LIT("d\0\0\0\x06xyQ\0\0\0\x04"), 1, PGW_ERR_BAD_TYPE, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		run_stream_case(&cases[i]);
}

/* ---- startup phase -------------------------------------------------------- */

/* A startup packet: length, code, then the n bytes at params. */
static size_t startup_pkt(tw *t, uint32_t code, const void *params, size_t n)
{
	t->len = 0;
	tw_u32(t, (uint32_t)(8 + n));
	tw_u32(t, code);
	tw_raw(t, params, n);
	return t->len;
}

static int parse_exact(const tw *t, pgw_startup *out, uint8_t **keep)
{
	*keep = dup_exact(t->d, t->len);
	return pgw_startup_parse(*keep, t->len, out);
}

static void test_startup_message(void **state)
{
	(void)state;
	static tw t;
	startup_pkt(&t, PGW_PROTOCOL_V3,
		    LIT("user\0alice\0database\0db1\0application_name\0psql\0options\0-c geqo=off\0\0"));
	pgw_startup st;
	uint8_t *d;
	CHECK_RC(parse_exact(&t, &st, &d), PGW_OK, "valid StartupMessage");
	assert_int_equal(st.kind, PGW_STARTUP_MESSAGE);
	assert_int_equal(st.protocol, PGW_PROTOCOL_V3);
	assert_int_equal(st.nparams, 4);
	assert_string_equal(pgw_startup_get(&st, "user"), "alice");
	assert_string_equal(pgw_startup_get(&st, "database"), "db1");
	assert_string_equal(pgw_startup_get(&st, "application_name"), "psql");
	assert_string_equal(pgw_startup_get(&st, "options"), "-c geqo=off");
	assert_null(pgw_startup_get(&st, "replication"));
	const char *want[][2] = {{"user", "alice"}, {"database", "db1"}, {"application_name", "psql"},
				 {"options", "-c geqo=off"}};
	size_t pos = 0, i = 0;
	const char *name, *value;
	while (pgw_startup_next_param(&st, &pos, &name, &value)) {
		assert_true(i < 4);
		assert_string_equal(name, want[i][0]);
		assert_string_equal(value, want[i][1]);
		if (i == 0)
			assert_ptr_equal(name, (const char *)d + 8);
		i++;
	}
	assert_int_equal(i, 4);
	free(d);

	uint32_t plen = 0, code = 0;
	CHECK_RC(pgw_startup_header(t.d, t.len, &plen, &code), PGW_OK, "header");
	assert_int_equal(plen, t.len);
	assert_int_equal(code, PGW_PROTOCOL_V3);

	/* Duplicates: the last one wins, as in PostgreSQL; any 3.x is accepted. */
	startup_pkt(&t, (3u << 16) | 2, LIT("user\0a\0user\0b\0\0"));
	CHECK_RC(parse_exact(&t, &st, &d), PGW_OK, "duplicate user, protocol 3.2");
	assert_string_equal(pgw_startup_get(&st, "user"), "b");
	assert_int_equal(PGW_PROTOCOL_MINOR(st.protocol), 2);
	free(d);
}

static void test_startup_requests(void **state)
{
	(void)state;
	static tw t;
	pgw_startup st;
	uint8_t *d;
	startup_pkt(&t, PGW_SSL_REQUEST_CODE, NULL, 0);
	CHECK_RC(parse_exact(&t, &st, &d), PGW_OK, "SSLRequest");
	assert_int_equal(st.kind, PGW_STARTUP_SSL);
	assert_int_equal(st.nparams, 0);
	assert_null(pgw_startup_get(&st, "user"));
	free(d);
	startup_pkt(&t, PGW_GSSENC_REQUEST_CODE, NULL, 0);
	CHECK_RC(parse_exact(&t, &st, &d), PGW_OK, "GSSENCRequest");
	assert_int_equal(st.kind, PGW_STARTUP_GSSENC);
	free(d);
	startup_pkt(&t, PGW_CANCEL_REQUEST_CODE, LIT("\x00\x00\x30\x39" "\xde\xad\xbe\xef"));
	CHECK_RC(parse_exact(&t, &st, &d), PGW_OK, "CancelRequest");
	assert_int_equal(st.kind, PGW_STARTUP_CANCEL);
	assert_int_equal(st.cancel_pid, 12345);
	assert_int_equal(st.cancel_key, 0xdeadbeefu);
	free(d);
}

typedef struct startup_case {
	const char *name;
	uint32_t code;
	const uint8_t *params;
	size_t n;
	int want;
} startup_case;

static void test_startup_bad(void **state)
{
	(void)state;
	const startup_case cases[] = {
		{"protocol 2.0", 2u << 16, LIT("user\0a\0\0"), PGW_ERR_BAD_PROTOCOL},
		{"protocol 4.0", 4u << 16, LIT("user\0a\0\0"), PGW_ERR_BAD_PROTOCOL},
		{"protocol 1234.5679 (unknown code)", 80877105u, LIT("user\0a\0\0"), PGW_ERR_BAD_PROTOCOL},
		{"missing terminator", PGW_PROTOCOL_V3, LIT("user\0alice\0"), PGW_ERR_MALFORMED},
		{"no NUL at all", PGW_PROTOCOL_V3, LIT("user"), PGW_ERR_MALFORMED},
		{"name without value", PGW_PROTOCOL_V3, LIT("user\0alice\0database\0"), PGW_ERR_MALFORMED},
		{"value without NUL", PGW_PROTOCOL_V3, LIT("user\0alice\0database\0db"), PGW_ERR_MALFORMED},
		{"no user", PGW_PROTOCOL_V3, LIT("database\0db\0\0"), PGW_ERR_MALFORMED},
		{"empty user", PGW_PROTOCOL_V3, LIT("user\0\0\0"), PGW_ERR_MALFORMED},
		{"only the terminator", PGW_PROTOCOL_V3, LIT("\0"), PGW_ERR_MALFORMED},
		{"no parameters at all", PGW_PROTOCOL_V3, LIT(""), PGW_ERR_MALFORMED},
		{"bytes after terminator", PGW_PROTOCOL_V3, LIT("user\0a\0\0x"), PGW_ERR_MALFORMED},
		{"SSLRequest with a body", PGW_SSL_REQUEST_CODE, LIT("\0\0\0\0"), PGW_ERR_BAD_LENGTH},
		{"GSSENCRequest with a body", PGW_GSSENC_REQUEST_CODE, LIT("\0"), PGW_ERR_BAD_LENGTH},
		{"CancelRequest length 12", PGW_CANCEL_REQUEST_CODE, LIT("\0\0\0\x01"), PGW_ERR_BAD_LENGTH},
		{"CancelRequest length 20", PGW_CANCEL_REQUEST_CODE, LIT("\0\0\0\x01\0\0\0\x02\0\0\0\x03"),
		 PGW_ERR_BAD_LENGTH},
		{"CancelRequest length 8", PGW_CANCEL_REQUEST_CODE, LIT(""), PGW_ERR_BAD_LENGTH},
	};
	static tw t;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		startup_pkt(&t, cases[i].code, cases[i].params, cases[i].n);
		pgw_startup st;
		uint8_t *d;
		CHECK_RC(parse_exact(&t, &st, &d), cases[i].want, "%s", cases[i].name);
		free(d);
	}
}

/* PostgreSQL bounds only the packet (10,000 bytes), not the number of
 * parameters: 1,000 short pairs parse; a packet over the size limit does not. */
static void test_startup_many_params(void **state)
{
	(void)state;
	static tw params, t;
	params.len = 0;
	tw_raw(&params, LIT("user\0bob\0"));
	for (int i = 1; i < 1000; i++) {
		char name[16];
		snprintf(name, sizeof(name), "p%d", i);
		tw_raw(&params, name, strlen(name) + 1);
		tw_raw(&params, LIT("v\0"));
	}
	tw_u8(&params, 0);
	pgw_startup st;
	uint8_t *d;
	startup_pkt(&t, PGW_PROTOCOL_V3, params.d, params.len);
	CHECK_RC(parse_exact(&t, &st, &d), PGW_OK, "1000 params in %zu bytes", t.len);
	assert_int_equal(st.nparams, 1000);
	assert_string_equal(pgw_startup_get(&st, "p999"), "v");
	assert_string_equal(pgw_startup_get(&st, "user"), "bob");
	free(d);
	uint32_t plen, code;
	params.len--;
	while (params.len + 9 <= PGW_MAX_STARTUP_PACKET)
		tw_raw(&params, LIT("x\0y\0"));
	tw_u8(&params, 0);
	startup_pkt(&t, PGW_PROTOCOL_V3, params.d, params.len);
	CHECK_RC(pgw_startup_header(t.d, t.len, &plen, &code), PGW_ERR_BAD_LENGTH, "%zu-byte packet", t.len);
}

static void test_startup_header_lengths(void **state)
{
	(void)state;
	const struct {
		uint32_t len, code;
		int want;
	} cases[] = {
		{0, PGW_PROTOCOL_V3, PGW_ERR_BAD_LENGTH},
		{4, PGW_PROTOCOL_V3, PGW_ERR_BAD_LENGTH},
		{7, PGW_PROTOCOL_V3, PGW_ERR_BAD_LENGTH},
		{8, PGW_PROTOCOL_V3, PGW_OK}, /* the header passes; parse rejects it */
		{PGW_MAX_STARTUP_PACKET, PGW_PROTOCOL_V3, PGW_OK},
		{PGW_MAX_STARTUP_PACKET + 1, PGW_PROTOCOL_V3, PGW_ERR_BAD_LENGTH},
		{0x80000008u, PGW_PROTOCOL_V3, PGW_ERR_BAD_LENGTH},
		{0xffffffffu, PGW_PROTOCOL_V3, PGW_ERR_BAD_LENGTH},
		{8, PGW_SSL_REQUEST_CODE, PGW_OK},
		{9, PGW_SSL_REQUEST_CODE, PGW_ERR_BAD_LENGTH},
		{8, PGW_GSSENC_REQUEST_CODE, PGW_OK},
		{16, PGW_GSSENC_REQUEST_CODE, PGW_ERR_BAD_LENGTH},
		{16, PGW_CANCEL_REQUEST_CODE, PGW_OK},
		{15, PGW_CANCEL_REQUEST_CODE, PGW_ERR_BAD_LENGTH},
		{17, PGW_CANCEL_REQUEST_CODE, PGW_ERR_BAD_LENGTH},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t h[8];
		put_be32(h, cases[i].len);
		put_be32(h + 4, cases[i].code);
		uint32_t plen = 0, code = 0;
		int rc = pgw_startup_header(h, sizeof(h), &plen, &code);
		CHECK_RC(rc, cases[i].want, "length %u code %u", cases[i].len, cases[i].code);
		assert_int_equal(plen, cases[i].len);
		assert_int_equal(code, cases[i].code);
	}
	const uint8_t h[8] = {0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f};
	for (size_t n = 0; n < sizeof(h); n++) {
		uint32_t plen, code;
		uint8_t *d = dup_exact(h, n);
		CHECK_RC(pgw_startup_header(d, n, &plen, &code), PGW_NEED_MORE, "%zu header bytes", n);
		free(d);
	}
}

/* packet_len must match the packet's length field. */
static void test_startup_parse_size_mismatch(void **state)
{
	(void)state;
	static tw t;
	startup_pkt(&t, PGW_PROTOCOL_V3, LIT("user\0bob\0\0"));
	pgw_startup st;
	for (size_t n = 0; n < t.len; n++) {
		uint8_t *d = dup_exact(t.d, n);
		CHECK_RC(pgw_startup_parse(d, n, &st), PGW_ERR_TRUNCATED, "first %zu bytes", n);
		free(d);
	}
	tw_u8(&t, 0);
	uint8_t *d = dup_exact(t.d, t.len);
	CHECK_RC(pgw_startup_parse(d, t.len, &st), PGW_ERR_TRAILING, "one byte more than its length");
	free(d);
}

/* ---- reader cursor -------------------------------------------------------- */

static void test_reader_primitives(void **state)
{
	(void)state;
	uint8_t *d = dup_exact(LIT("\x01" "\xff\xfe" "\x80\x00\x00\x01" "ab\0" "xy"));
	pgw_reader r;
	pgw_reader_init(&r, d, 12);
	assert_int_equal(pgw_read_u8(&r), 1);
	assert_int_equal(pgw_read_i16(&r), -2);
	assert_int_equal(pgw_read_i32(&r), INT32_MIN + 1);
	size_t n = 99;
	const char *s = pgw_read_cstr(&r, &n);
	assert_non_null(s);
	assert_string_equal(s, "ab");
	assert_int_equal(n, 2);
	const uint8_t *b = pgw_read_bytes(&r, 2);
	assert_ptr_equal(b, d + 10);
	assert_non_null(pgw_read_bytes(&r, 0));
	CHECK_RC(pgw_reader_finish(&r), PGW_OK, "all consumed");
	/* Past the end: zero, NULL, TRUNCATED; position unchanged. */
	assert_int_equal(pgw_read_u8(&r), 0);
	assert_int_equal(r.pos, 12);
	CHECK_RC(pgw_reader_finish(&r), PGW_ERR_TRUNCATED, "u8 past the end");
	free(d);
}

static void test_reader_sticky(void **state)
{
	(void)state;
	uint8_t *d = dup_exact(LIT("\x00\x07" "abc"));
	pgw_reader r;
	pgw_reader_init(&r, d, 5);
	assert_int_equal(pgw_read_i16(&r), 7);
	assert_int_equal(pgw_read_i32(&r), 0); /* only 3 bytes left */
	CHECK_RC(r.err, PGW_ERR_TRUNCATED, "i32 over 3 bytes");
	assert_int_equal(r.pos, 2);
	assert_int_equal(pgw_read_u8(&r), 0); /* sticky, although a byte is there */
	assert_null(pgw_read_cstr(&r, NULL));
	assert_null(pgw_read_bytes(&r, 1));
	assert_int_equal(r.pos, 2);
	CHECK_RC(pgw_reader_finish(&r), PGW_ERR_TRUNCATED, "sticky");

	pgw_reader_init(&r, d, 5);
	assert_null(pgw_read_bytes(&r, SIZE_MAX));
	CHECK_RC(r.err, PGW_ERR_TRUNCATED, "read_bytes(SIZE_MAX)");
	pgw_reader_init(&r, d + 2, 3);
	assert_null(pgw_read_cstr(&r, NULL));
	CHECK_RC(r.err, PGW_ERR_TRUNCATED, "cstr without NUL");
	pgw_reader_init(&r, d, 5);
	pgw_read_i16(&r);
	CHECK_RC(pgw_reader_finish(&r), PGW_ERR_TRAILING, "3 bytes left");
	pgw_reader_init(&r, NULL, 0);
	pgw_read_bytes(&r, 0);
	CHECK_RC(pgw_reader_finish(&r), PGW_OK, "empty body, 0 bytes read");
	pgw_read_i16(&r);
	CHECK_RC(pgw_reader_finish(&r), PGW_ERR_TRUNCATED, "i16 from empty body");
	free(d);
}

/* ---- message readers: one table over every reader --------------------------- */

typedef int (*read_fn)(const uint8_t *body, size_t len);

static int rd_error(const uint8_t *b, size_t n)
{
	pgw_error_fields f;
	return pgw_read_error(b, n, &f);
}
static int rd_ready(const uint8_t *b, size_t n)
{
	char s;
	return pgw_read_ready(b, n, &s);
}
static int rd_key(const uint8_t *b, size_t n)
{
	uint32_t pid, key;
	return pgw_read_key_data(b, n, &pid, &key);
}
static int rd_param_status(const uint8_t *b, size_t n)
{
	const char *name, *value;
	return pgw_read_param_status(b, n, &name, &value);
}
static int rd_auth(const uint8_t *b, size_t n)
{
	int32_t code;
	return pgw_read_auth(b, n, &code);
}
static int rd_query(const uint8_t *b, size_t n)
{
	const char *sql;
	size_t len;
	return pgw_read_query(b, n, &sql, &len);
}
static int rd_command_complete(const uint8_t *b, size_t n)
{
	const char *tag;
	return pgw_read_command_complete(b, n, &tag);
}
static int rd_parse(const uint8_t *b, size_t n)
{
	pgw_parse_msg m;
	return pgw_read_parse(b, n, &m);
}
static int rd_bind(const uint8_t *b, size_t n)
{
	pgw_bind_msg m;
	return pgw_read_bind(b, n, &m);
}
static int rd_describe_close(const uint8_t *b, size_t n)
{
	char kind;
	const char *name;
	return pgw_read_describe_close(b, n, &kind, &name);
}
static int rd_execute(const uint8_t *b, size_t n)
{
	const char *portal;
	int32_t max_rows;
	return pgw_read_execute(b, n, &portal, &max_rows);
}
static int rd_row_desc(const uint8_t *b, size_t n)
{
	int16_t ncols;
	return pgw_read_row_desc(b, n, &ncols);
}
static int rd_data_row(const uint8_t *b, size_t n)
{
	int16_t ncols;
	return pgw_read_data_row(b, n, &ncols);
}

typedef struct reader_case {
	const char *name;
	read_fn fn;
	const uint8_t *body;
	size_t len;
	int want;
	bool open_ended; /* auth: bytes after the code belong to the method */
} reader_case;

#define ROW_DESC_2COLS                                                                                         \
	"\x00\x02"                                                                                             \
	"id\0" "\x00\x00\x40\x00" "\x00\x01" "\x00\x00\x00\x17" "\x00\x04" "\xff\xff\xff\xff" "\x00\x00"       \
	"name\0" "\x00\x00\x40\x00" "\x00\x02" "\x00\x00\x00\x19" "\xff\xff" "\xff\xff\xff\xff" "\x00\x01"
#define DATA_ROW_3COLS "\x00\x03" "\x00\x00\x00\x02" "42" "\xff\xff\xff\xff" "\x00\x00\x00\x00"
#define BIND_3PARAMS                                                                                           \
	"p1\0s1\0" "\x00\x01" "\x00\x01" "\x00\x03" "\x00\x00\x00\x04" "\x00\x00\x00\x2a"                      \
	"\xff\xff\xff\xff" "\x00\x00\x00\x00" "\x00\x01" "\x00\x00"
#define ERROR_BODY                                                                                             \
	"SERROR\0VERROR\0C42P01\0Mrelation \"t\" does not exist\0P15\0Fparse_relation.c\0L1392\0"              \
	"RparserOpenTable\0\0"

static const reader_case VALID[] = {
	{"error", rd_error, LIT(ERROR_BODY), PGW_OK, false},
	{"error, no fields", rd_error, LIT("\0"), PGW_OK, false},
	{"ready I", rd_ready, LIT("I"), PGW_OK, false},
	{"ready T", rd_ready, LIT("T"), PGW_OK, false},
	{"ready E", rd_ready, LIT("E"), PGW_OK, false},
	{"key data", rd_key, LIT("\x00\x00\x04\xd2" "\x12\x34\x56\x78"), PGW_OK, false},
	{"param status", rd_param_status, LIT("TimeZone\0UTC\0"), PGW_OK, false},
	{"param status, empty value", rd_param_status, LIT("application_name\0\0"), PGW_OK, false},
	{"auth ok", rd_auth, LIT("\x00\x00\x00\x00"), PGW_OK, true},
	{"auth sasl", rd_auth, LIT("\x00\x00\x00\x0a" "SCRAM-SHA-256\0\0"), PGW_OK, true},
	{"auth md5", rd_auth, LIT("\x00\x00\x00\x05" "\x01\x02\x03\x04"), PGW_OK, true},
	{"query", rd_query, LIT("select 1\0"), PGW_OK, false},
	{"query, empty", rd_query, LIT("\0"), PGW_OK, false},
	{"command complete", rd_command_complete, LIT("INSERT 0 1\0"), PGW_OK, false},
	{"parse, 2 params", rd_parse, LIT("s1\0select $1, $2\0" "\x00\x02" "\x00\x00\x00\x17" "\x00\x00\x00\x19"),
	 PGW_OK, false},
	{"parse, unnamed, 0 params", rd_parse, LIT("\0select 1\0" "\x00\x00"), PGW_OK, false},
	{"bind, 3 params", rd_bind, LIT(BIND_3PARAMS), PGW_OK, false},
	{"bind, empty", rd_bind, LIT("\0\0" "\x00\x00" "\x00\x00" "\x00\x00"), PGW_OK, false},
	{"describe statement", rd_describe_close, LIT("Ss1\0"), PGW_OK, false},
	{"close portal", rd_describe_close, LIT("P\0"), PGW_OK, false},
	{"execute", rd_execute, LIT("\0" "\x00\x00\x00\x0a"), PGW_OK, false},
	{"row description", rd_row_desc, LIT(ROW_DESC_2COLS), PGW_OK, false},
	{"row description, 0 columns", rd_row_desc, LIT("\x00\x00"), PGW_OK, false},
	{"data row", rd_data_row, LIT(DATA_ROW_3COLS), PGW_OK, false},
	{"data row, 0 columns", rd_data_row, LIT("\x00\x00"), PGW_OK, false},
};

static int run_reader(const reader_case *c, size_t len)
{
	uint8_t *d = dup_exact(c->body, len);
	int rc = c->fn(d, len);
	free(d);
	return rc;
}

/* Each valid body parses; every strict prefix is TRUNCATED; one more byte is
 * TRAILING (open-ended bodies: prefixes past the code, and extra bytes, OK). */
static void test_readers_valid_truncated_trailing(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(VALID) / sizeof(VALID[0]); i++) {
		const reader_case *c = &VALID[i];
		CHECK_RC(run_reader(c, c->len), PGW_OK, "%s", c->name);
		for (size_t n = 0; n < c->len; n++) {
			int want = c->open_ended && n >= 4 ? PGW_OK : PGW_ERR_TRUNCATED;
			CHECK_RC(run_reader(c, n), want, "%s, first %zu of %zu bytes", c->name, n, c->len);
		}
		uint8_t *d = malloc(c->len + 1);
		assert_non_null(d);
		memcpy(d, c->body, c->len);
		d[c->len] = 'z';
		CHECK_RC(c->fn(d, c->len + 1), c->open_ended ? PGW_OK : PGW_ERR_TRAILING, "%s + 1 byte", c->name);
		free(d);
	}
}

static const reader_case INVALID[] = {
	{"error, trailing after terminator", rd_error, LIT("SERROR\0\0x"), PGW_ERR_TRAILING, false},
	{"error, field without NUL", rd_error, LIT("SERROR"), PGW_ERR_TRUNCATED, false},
	{"ready X", rd_ready, LIT("X"), PGW_ERR_MALFORMED, false},
	{"ready NUL", rd_ready, LIT("\0"), PGW_ERR_MALFORMED, false},
	{"describe kind X", rd_describe_close, LIT("Xs1\0"), PGW_ERR_MALFORMED, false},
	{"parse, nparams -1", rd_parse, LIT("s\0q\0" "\xff\xff"), PGW_ERR_MALFORMED, false},
	{"parse, 2 params, 1 oid", rd_parse, LIT("s\0q\0" "\x00\x02" "\x00\x00\x00\x17"), PGW_ERR_TRUNCATED, false},
	{"parse, nparams 32767", rd_parse, LIT("s\0q\0" "\x7f\xff"), PGW_ERR_TRUNCATED, false},
	{"bind, nformats -1", rd_bind, LIT("\0\0" "\xff\xff" "\x00\x00" "\x00\x00"), PGW_ERR_MALFORMED, false},
	{"bind, nparams -1", rd_bind, LIT("\0\0" "\x00\x00" "\xff\xff" "\x00\x00"), PGW_ERR_MALFORMED, false},
	{"bind, nresult -1", rd_bind, LIT("\0\0" "\x00\x00" "\x00\x00" "\xff\xff"), PGW_ERR_MALFORMED, false},
	{"bind, param length -2", rd_bind, LIT("\0\0" "\x00\x00" "\x00\x01" "\xff\xff\xff\xfe" "\x00\x00"),
	 PGW_ERR_MALFORMED, false},
	{"bind, param length INT32_MIN", rd_bind, LIT("\0\0" "\x00\x00" "\x00\x01" "\x80\x00\x00\x00" "\x00\x00"),
	 PGW_ERR_MALFORMED, false},
	{"bind, param past the end", rd_bind, LIT("\0\0" "\x00\x00" "\x00\x01" "\x00\x00\x00\x64" "ab\x00\x00"),
	 PGW_ERR_TRUNCATED, false},
	{"bind, param length INT32_MAX", rd_bind, LIT("\0\0" "\x00\x00" "\x00\x01" "\x7f\xff\xff\xff" "\x00\x00"),
	 PGW_ERR_TRUNCATED, false},
	{"row desc, count -1", rd_row_desc, LIT("\xff\xff"), PGW_ERR_MALFORMED, false},
	{"row desc, count -32768", rd_row_desc, LIT("\x80\x00"), PGW_ERR_MALFORMED, false},
	{"row desc, 2 counted, 0 present", rd_row_desc, LIT("\x00\x02"), PGW_ERR_TRUNCATED, false},
	{"row desc, name without NUL", rd_row_desc, LIT("\x00\x01" "idid"), PGW_ERR_TRUNCATED, false},
	{"data row, count -1", rd_data_row, LIT("\xff\xff"), PGW_ERR_MALFORMED, false},
	{"data row, length -2", rd_data_row, LIT("\x00\x01" "\xff\xff\xff\xfe"), PGW_ERR_MALFORMED, false},
	{"data row, length INT32_MIN", rd_data_row, LIT("\x00\x01" "\x80\x00\x00\x00"), PGW_ERR_MALFORMED, false},
	{"data row, length past the end", rd_data_row, LIT("\x00\x01" "\x00\x00\x00\x05" "abcd"),
	 PGW_ERR_TRUNCATED, false},
	{"data row, length INT32_MAX", rd_data_row, LIT("\x00\x01" "\x7f\xff\xff\xff" "ab"), PGW_ERR_TRUNCATED,
	 false},
	{"data row, fewer values than count", rd_data_row, LIT("\x00\x02" "\xff\xff\xff\xff"), PGW_ERR_TRUNCATED,
	 false},
};

static void test_readers_invalid(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(INVALID) / sizeof(INVALID[0]); i++)
		CHECK_RC(run_reader(&INVALID[i], INVALID[i].len), INVALID[i].want, "%s", INVALID[i].name);
}

/* ---- message readers: decoded fields ---------------------------------------- */

static void test_read_error_fields(void **state)
{
	(void)state;
	pgw_error_fields f;
	CHECK_RC(pgw_read_error(LIT(ERROR_BODY), &f), PGW_OK, "error");
	assert_string_equal(f.severity, "ERROR");
	assert_string_equal(f.severity_nl, "ERROR");
	assert_string_equal(f.sqlstate, "42P01");
	assert_string_equal(f.message, "relation \"t\" does not exist");
	assert_null(f.detail);
	assert_null(f.hint);
	CHECK_RC(pgw_read_error(LIT("SFATAL\0Ddet\0Hhint\0\0"), &f), PGW_OK, "error with D and H");
	assert_string_equal(f.detail, "det");
	assert_string_equal(f.hint, "hint");
	assert_null(f.sqlstate);
}

static void test_read_simple_fields(void **state)
{
	(void)state;
	char status = 0;
	CHECK_RC(pgw_read_ready(LIT("T"), &status), PGW_OK, "ready");
	assert_int_equal(status, 'T');
	uint32_t pid = 0, key = 0;
	CHECK_RC(pgw_read_key_data(LIT("\x00\x00\x04\xd2" "\xde\xad\xbe\xef"), &pid, &key), PGW_OK, "key");
	assert_int_equal(pid, 1234);
	assert_int_equal(key, 0xdeadbeefu);
	const char *name, *value;
	CHECK_RC(pgw_read_param_status(LIT("TimeZone\0UTC\0"), &name, &value), PGW_OK, "param status");
	assert_string_equal(name, "TimeZone");
	assert_string_equal(value, "UTC");
	int32_t code = -1;
	CHECK_RC(pgw_read_auth(LIT("\x00\x00\x00\x0a" "SCRAM-SHA-256\0\0"), &code), PGW_OK, "auth");
	assert_int_equal(code, 10);
	const char *sql;
	size_t sql_len = 0;
	CHECK_RC(pgw_read_query(LIT("select 1\0"), &sql, &sql_len), PGW_OK, "query");
	assert_string_equal(sql, "select 1");
	assert_int_equal(sql_len, 8);
	const char *tag;
	CHECK_RC(pgw_read_command_complete(LIT("INSERT 0 1\0"), &tag), PGW_OK, "command complete");
	assert_string_equal(tag, "INSERT 0 1");
	char kind;
	CHECK_RC(pgw_read_describe_close(LIT("Ss1\0"), &kind, &name), PGW_OK, "describe");
	assert_int_equal(kind, 'S');
	assert_string_equal(name, "s1");
	int32_t max_rows;
	CHECK_RC(pgw_read_execute(LIT("c1\0" "\xff\xff\xff\xff"), &name, &max_rows), PGW_OK, "execute");
	assert_string_equal(name, "c1");
	assert_int_equal(max_rows, -1);
}

static void test_read_parse_bind_fields(void **state)
{
	(void)state;
	const uint8_t parse[] = "s1\0select $1, $2\0" "\x00\x02" "\x00\x00\x00\x17" "\x00\x00\x00\x19";
	pgw_parse_msg p;
	CHECK_RC(pgw_read_parse(parse, sizeof(parse) - 1, &p), PGW_OK, "parse");
	assert_string_equal(p.stmt_name, "s1");
	assert_string_equal(p.query, "select $1, $2");
	assert_int_equal(p.query_len, 13);
	assert_int_equal(p.nparams, 2);
	assert_ptr_equal(p.param_types, parse + 19);
	assert_int_equal(p.param_types[7], 0x19);

	const uint8_t bind[] = BIND_3PARAMS;
	pgw_bind_msg b;
	CHECK_RC(pgw_read_bind(bind, sizeof(bind) - 1, &b), PGW_OK, "bind");
	assert_string_equal(b.portal, "p1");
	assert_string_equal(b.stmt_name, "s1");
	assert_int_equal(b.nformats, 1);
	assert_ptr_equal(b.formats, bind + 8);
	assert_int_equal(b.nparams, 3);
	assert_ptr_equal(b.params, bind + 12);
	assert_int_equal(b.params_len, 8 + 4 + 4);
	assert_int_equal(b.nresult_formats, 1);
	assert_ptr_equal(b.result_formats, bind + 30);

	/* the values one by one: 42 as binary int4, NULL, an empty value */
	size_t pos = 0;
	const uint8_t *v;
	int32_t vlen;
	assert_true(pgw_bind_next(&b, &pos, &v, &vlen));
	assert_int_equal(vlen, 4);
	assert_ptr_equal(v, bind + 16);
	assert_true(pgw_bind_next(&b, &pos, &v, &vlen));
	assert_int_equal(vlen, -1);
	assert_null(v);
	assert_true(pgw_bind_next(&b, &pos, &v, &vlen));
	assert_int_equal(vlen, 0);
	assert_false(pgw_bind_next(&b, &pos, &v, &vlen));
	/* one format code is every parameter's; none means text */
	assert_int_equal(pgw_bind_format(&b, 0), 1);
	assert_int_equal(pgw_bind_format(&b, 2), 1);
	pgw_bind_msg none = b;
	none.nformats = 0;
	assert_int_equal(pgw_bind_format(&none, 1), 0);
	/* a value whose length runs past the list is not walked into */
	pgw_bind_msg cut = b;
	cut.params_len = 6;
	pos = 0;
	assert_false(pgw_bind_next(&cut, &pos, &v, &vlen));
}

static void test_read_row_desc_fields(void **state)
{
	(void)state;
	const uint8_t *body = (const uint8_t *)ROW_DESC_2COLS;
	size_t len = sizeof(ROW_DESC_2COLS) - 1;
	int16_t n = 0;
	CHECK_RC(pgw_read_row_desc(body, len, &n), PGW_OK, "row desc");
	assert_int_equal(n, 2);
	pgw_column c;
	CHECK_RC(pgw_row_desc_column(body, len, 1, &c), PGW_OK, "column 1");
	assert_string_equal(c.name, "name");
	assert_int_equal(c.table_oid, 0x4000);
	assert_int_equal(c.attnum, 2);
	assert_int_equal(c.type_oid, 25);
	assert_int_equal(c.type_len, -1);
	assert_int_equal(c.type_mod, -1);
	assert_int_equal(c.format, 1);
	CHECK_RC(pgw_row_desc_column(body, len, 2, &c), PGW_ERR_MALFORMED, "column 2 of 2");
	CHECK_RC(pgw_row_desc_column(body, len, -1, &c), PGW_ERR_MALFORMED, "column -1");
	/* Sequential decoding. */
	pgw_reader r;
	pgw_reader_init(&r, body, len);
	assert_int_equal(pgw_read_i16(&r), 2);
	CHECK_RC(pgw_row_desc_next(&r, &c), PGW_OK, "next 0");
	assert_string_equal(c.name, "id");
	assert_int_equal(c.type_oid, 23);
	assert_int_equal(c.type_len, 4);
	CHECK_RC(pgw_row_desc_next(&r, &c), PGW_OK, "next 1");
	assert_string_equal(c.name, "name");
	CHECK_RC(pgw_reader_finish(&r), PGW_OK, "all columns read");
	CHECK_RC(pgw_row_desc_next(&r, &c), PGW_ERR_TRUNCATED, "next past the end");
}

static void test_read_data_row_fields(void **state)
{
	(void)state;
	const uint8_t *body = (const uint8_t *)DATA_ROW_3COLS;
	size_t len = sizeof(DATA_ROW_3COLS) - 1;
	int16_t n = 0;
	CHECK_RC(pgw_read_data_row(body, len, &n), PGW_OK, "data row");
	assert_int_equal(n, 3);
	const uint8_t *v;
	int32_t vlen;
	CHECK_RC(pgw_data_row_value(body, len, 0, &v, &vlen), PGW_OK, "value 0");
	assert_int_equal(vlen, 2);
	assert_memory_equal(v, "42", 2);
	CHECK_RC(pgw_data_row_value(body, len, 1, &v, &vlen), PGW_OK, "value 1 (NULL)");
	assert_null(v);
	assert_int_equal(vlen, -1);
	CHECK_RC(pgw_data_row_value(body, len, 2, &v, &vlen), PGW_OK, "value 2 (empty)");
	assert_non_null(v);
	assert_int_equal(vlen, 0);
	CHECK_RC(pgw_data_row_value(body, len, 3, &v, &vlen), PGW_ERR_MALFORMED, "value 3 of 3");
	pgw_reader r;
	pgw_reader_init(&r, body, len);
	assert_int_equal(pgw_read_i16(&r), 3);
	for (int i = 0; i < 3; i++)
		CHECK_RC(pgw_data_row_next(&r, &v, &vlen), PGW_OK, "next %d", i);
	CHECK_RC(pgw_reader_finish(&r), PGW_OK, "all values read");
}

/* ---- builders --------------------------------------------------------------- */

static void test_buf_backpatch(void **state)
{
	(void)state;
	pgw_buf b;
	pgw_buf_init(&b, 0);
	pgw_buf_begin(&b, 'Q');
	assert_false(pgw_buf_ok(&b)); /* a message is open */
	pgw_buf_put_cstr(&b, "select 1");
	pgw_buf_end(&b);
	assert_true(pgw_buf_ok(&b));
	assert_int_equal(b.len, 14);
	assert_memory_equal(b.data, "Q\0\0\0\x0dselect 1\0", 14);
	size_t q_len = b.len;
	/* An untyped startup packet after it, with every put_ kind. */
	pgw_buf_begin(&b, 0);
	pgw_buf_put_i32(&b, (int32_t)PGW_PROTOCOL_V3);
	pgw_buf_put_cstr(&b, "user");
	pgw_buf_put_bytes(&b, "bob\0", 4);
	pgw_buf_put_u8(&b, 0);
	pgw_buf_end(&b);
	assert_true(pgw_buf_ok(&b));
	pgw_startup st;
	CHECK_RC(pgw_startup_parse(b.data + q_len, b.len - q_len, &st), PGW_OK, "built startup packet");
	assert_string_equal(pgw_startup_get(&st, "user"), "bob");
	pgw_buf_reset(&b);
	pgw_buf_put_i16(&b, -2);
	pgw_buf_put_i32(&b, -1);
	pgw_buf_put_i32(&b, 0x01020304);
	assert_memory_equal(b.data, "\xff\xfe\xff\xff\xff\xff\x01\x02\x03\x04", 10);
	size_t len;
	uint8_t *data = pgw_buf_steal(&b, &len);
	assert_int_equal(len, 10);
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	free(data);
	pgw_buf_free(&b);
}

static void check_str(const char *got, const char *want, const char *what, const char *field)
{
	if (got == want)
		return;
	if (!got || !want || strcmp(got, want) != 0) {
		print_error("%s field %s: got %s%s%s, want %s%s%s\n", what, field, got ? "\"" : "",
			    got ? got : "NULL", got ? "\"" : "", want ? "\"" : "", want ? want : "NULL",
			    want ? "\"" : "");
		fail();
	}
}

static void check_error_message(const pgw_buf *b, const char *what, const char *sev, const char *code,
				const char *msg, const char *detail, const char *hint)
{
	pgw_frame f;
	CHECK_RC(pgw_frame_header(b->data, b->len, PGW_FROM_BACKEND, SIZE_MAX, &f), PGW_OK, "%s header", what);
	CHECK(f.type == 'E', "%s type '%c'", what, f.type);
	CHECK_SZ(f.frame_len, b->len, "%s frame_len", what);
	CHECK(b->data[b->len - 1] == 0, "%s terminator", what);
	pgw_error_fields e;
	CHECK_RC(pgw_read_error(b->data + PGW_HEADER_LEN, f.body_len, &e), PGW_OK, "%s read back", what);
	check_str(e.severity, sev, what, "S");
	check_str(e.severity_nl, sev, what, "V");
	check_str(e.sqlstate, code, what, "C");
	check_str(e.message, msg, what, "M");
	check_str(e.detail, detail, what, "D");
	check_str(e.hint, hint, what, "H");
}

static void test_build_error_roundtrip(void **state)
{
	(void)state;
	pgw_buf b;
	pgw_buf_init(&b, 0);
	const char *msg = "password authentication failed for user \"bob\"";
	pgw_build_error(&b, "FATAL", "28P01", msg);
	assert_true(pgw_buf_ok(&b));
	check_error_message(&b, "error", "FATAL", "28P01", msg, NULL, NULL);
	size_t want = 5 + (2 + 5) * 2 + (1 + 6) + (1 + strlen(msg) + 1) + 1;
	assert_int_equal(b.len, want);
	pgw_buf_reset(&b);
	pgw_build_error_full(&b, "ERROR", "53300", "too many clients", "max 10", "try later");
	check_error_message(&b, "error_full", "ERROR", "53300", "too many clients", "max 10", "try later");
	pgw_buf_reset(&b);
	pgw_build_error_full(&b, "ERROR", "08P01", "bad", NULL, "only a hint");
	check_error_message(&b, "error_full hint only", "ERROR", "08P01", "bad", NULL, "only a hint");
	pgw_buf_free(&b);
}

static void test_build_ready_cancel(void **state)
{
	(void)state;
	pgw_buf b;
	pgw_buf_init(&b, 0);
	pgw_build_ready(&b, 'I');
	assert_int_equal(b.len, 6);
	assert_memory_equal(b.data, "Z\0\0\0\x05I", 6);
	char status;
	CHECK_RC(pgw_read_ready(b.data + 5, 1, &status), PGW_OK, "ready");
	pgw_buf_reset(&b);
	pgw_build_cancel_request(&b, 0xfffffffeu, 0xdeadbeefu);
	assert_true(pgw_buf_ok(&b));
	assert_int_equal(b.len, 16);
	uint32_t plen, code;
	CHECK_RC(pgw_startup_header(b.data, b.len, &plen, &code), PGW_OK, "cancel header");
	assert_int_equal(code, PGW_CANCEL_REQUEST_CODE);
	pgw_startup st;
	CHECK_RC(pgw_startup_parse(b.data, b.len, &st), PGW_OK, "cancel");
	assert_int_equal(st.kind, PGW_STARTUP_CANCEL);
	assert_int_equal(st.cancel_pid, 0xfffffffeu);
	assert_int_equal(st.cancel_key, 0xdeadbeefu);
	pgw_buf_free(&b);
}

static void test_buf_sticky_limit(void **state)
{
	(void)state;
	pgw_buf b;
	pgw_buf_init(&b, 12);
	pgw_build_ready(&b, 'I');
	pgw_build_ready(&b, 'T'); /* exactly at the limit */
	assert_true(pgw_buf_ok(&b));
	assert_int_equal(b.len, 12);
	pgw_buf_put_u8(&b, 0); /* one byte over */
	assert_false(pgw_buf_ok(&b));
	assert_int_equal(b.len, 12);
	pgw_build_ready(&b, 'E'); /* no-ops from now on */
	pgw_buf_put_bytes(&b, "abc", 3);
	assert_int_equal(b.len, 12);
	assert_false(pgw_buf_ok(&b));
	size_t len = 99;
	assert_null(pgw_buf_steal(&b, &len));
	assert_int_equal(len, 0);
	assert_true(pgw_buf_ok(&b)); /* steal leaves it empty and usable */
	pgw_build_error(&b, "FATAL", "53300", "a message longer than the limit");
	assert_false(pgw_buf_ok(&b));
	pgw_buf_reset(&b);
	assert_true(pgw_buf_ok(&b));
	pgw_build_ready(&b, 'I');
	assert_true(pgw_buf_ok(&b));
	pgw_buf_free(&b);

	/* limit 0 means PGW_MAX_LENGTH: checked before any allocation or copy. */
	pgw_buf_init(&b, 0);
	pgw_buf_put_bytes(&b, "x", (size_t)PGW_MAX_LENGTH + 1);
	assert_false(pgw_buf_ok(&b));
	assert_int_equal(b.len, 0);
	pgw_buf_free(&b);
}

static void test_buf_misuse(void **state)
{
	(void)state;
	pgw_buf b;
	pgw_buf_init(&b, 0);
	pgw_buf_end(&b);
	assert_false(pgw_buf_ok(&b));
	pgw_buf_reset(&b);
	pgw_buf_begin(&b, 'Q');
	pgw_buf_begin(&b, 'Q');
	pgw_buf_end(&b);
	assert_false(pgw_buf_ok(&b));
	pgw_buf_free(&b);
}

static void test_buf_growth(void **state)
{
	(void)state;
	pgw_buf b;
	pgw_buf_init(&b, 0);
	uint8_t chunk[100];
	for (size_t i = 0; i < sizeof(chunk); i++)
		chunk[i] = (uint8_t)i;
	size_t reallocs = 0, last_cap = 0;
	for (int i = 0; i < 1000; i++) {
		pgw_buf_put_bytes(&b, chunk, sizeof(chunk));
		if (b.cap != last_cap) {
			CHECK(last_cap == 0 || b.cap == last_cap * 2, "cap %zu after %zu", b.cap, last_cap);
			last_cap = b.cap;
			reallocs++;
		}
	}
	assert_true(pgw_buf_ok(&b));
	assert_int_equal(b.len, 100000);
	CHECK(reallocs <= 12, "%zu reallocations for 100000 bytes", reallocs);
	for (size_t i = 0; i < b.len; i += 997)
		CHECK(b.data[i] == (uint8_t)(i % 100), "byte %zu", i);
	pgw_buf_free(&b);
	assert_null(b.data);
	assert_int_equal(b.cap, 0);
}

/* ---- extended groups ------------------------------------------------------ */

static void put_parse(pgw_buf *b, const char *name, const char *sql)
{
	pgw_buf_begin(b, PGW_FE_PARSE);
	pgw_buf_put_cstr(b, name);
	pgw_buf_put_cstr(b, sql);
	pgw_buf_put_i16(b, 1);
	pgw_buf_put_i32(b, 23);
	pgw_buf_end(b);
}

static void put_bind(pgw_buf *b, const char *portal, const char *stmt)
{
	pgw_buf_begin(b, PGW_FE_BIND);
	pgw_buf_put_cstr(b, portal);
	pgw_buf_put_cstr(b, stmt);
	pgw_buf_put_i16(b, 0);
	pgw_buf_put_i16(b, 1);
	pgw_buf_put_i32(b, 2);
	pgw_buf_put_bytes(b, "42", 2);
	pgw_buf_put_i16(b, 0);
	pgw_buf_end(b);
}

static void put_name_msg(pgw_buf *b, uint8_t type, char kind, const char *name)
{
	pgw_buf_begin(b, type);
	pgw_buf_put_u8(b, (uint8_t)kind);
	pgw_buf_put_cstr(b, name);
	pgw_buf_end(b);
}

static void put_execute(pgw_buf *b, const char *portal, int32_t max_rows)
{
	pgw_buf_begin(b, PGW_FE_EXECUTE);
	pgw_buf_put_cstr(b, portal);
	pgw_buf_put_i32(b, max_rows);
	pgw_buf_end(b);
}

static void put_plain(pgw_buf *b, uint8_t type)
{
	pgw_buf_begin(b, type);
	pgw_buf_end(b);
}

/* Parse "" / Bind / Describe P / Execute / Sync, then a Query after it. */
static void libpq_group(pgw_buf *b)
{
	put_parse(b, "", "SELECT * FROM t WHERE id = $1");
	put_bind(b, "", "");
	put_name_msg(b, PGW_FE_DESCRIBE, 'P', "");
	put_execute(b, "", 0);
	put_plain(b, PGW_FE_SYNC);
}

static void test_ext_group_whole(void **state)
{
	(void)state;
	pgw_buf b;
	pgw_buf_init(&b, 0);
	libpq_group(&b);
	size_t group_len = b.len;
	pgw_buf_begin(&b, PGW_FE_QUERY);
	pgw_buf_put_cstr(&b, "SELECT 1");
	pgw_buf_end(&b);
	pgw_ext_group g;
	assert_int_equal(pgw_ext_group_scan(b.data, b.len, 65536, &g), PGW_OK);
	assert_int_equal(g.len, group_len);
	assert_ptr_equal(g.parse, b.data);
	assert_string_equal(g.parse_msg.query, "SELECT * FROM t WHERE id = $1");
	assert_int_equal(g.bind.nparams, 1);
	assert_true(g.describe);
	assert_int_equal(g.max_rows, 0);
	/* every shorter prefix could still become the group */
	for (size_t n = 0; n < group_len; n++)
		assert_int_equal(pgw_ext_group_scan(b.data, n, 65536, &g), PGW_NEED_MORE);
	/* ... unless it could not fit in max_len */
	assert_int_equal(pgw_ext_group_scan(b.data, group_len, group_len - 1, &g), PGW_ERR_MALFORMED);
	pgw_buf_free(&b);
}

static void test_ext_group_prepared(void **state)
{
	(void)state;
	pgw_buf b;
	pgw_buf_init(&b, 0);
	put_bind(&b, "", "stmt1"); /* PQsendQueryPrepared: no Parse, no Describe needed */
	put_execute(&b, "", 0);
	put_plain(&b, PGW_FE_SYNC);
	pgw_ext_group g;
	assert_int_equal(pgw_ext_group_scan(b.data, b.len, 65536, &g), PGW_OK);
	assert_null(g.parse);
	assert_false(g.describe);
	assert_string_equal(g.bind.stmt_name, "stmt1");
	pgw_buf_free(&b);
}

typedef void (*group_builder)(pgw_buf *b);

static void named_parse(pgw_buf *b)
{
	put_parse(b, "s1", "SELECT 1");
}
static void bind_other_than_parsed(pgw_buf *b)
{
	put_parse(b, "", "SELECT $1");
	put_bind(b, "", "s1");
}
static void named_portal(pgw_buf *b)
{
	put_bind(b, "p1", "");
}
static void describe_statement(pgw_buf *b)
{
	put_bind(b, "", "");
	put_name_msg(b, PGW_FE_DESCRIBE, 'S', "");
}
static void flush_instead_of_sync(pgw_buf *b)
{
	put_bind(b, "", "");
	put_execute(b, "", 0);
	put_plain(b, PGW_FE_FLUSH);
}
static void two_executes(pgw_buf *b)
{
	put_bind(b, "", "");
	put_execute(b, "", 0);
	put_execute(b, "", 0);
}
static void query_first(pgw_buf *b)
{
	pgw_buf_begin(b, PGW_FE_QUERY);
	pgw_buf_put_cstr(b, "SELECT 1");
	pgw_buf_end(b);
}
static void close_inside(pgw_buf *b)
{
	put_bind(b, "", "");
	put_name_msg(b, PGW_FE_CLOSE, 'S', "x");
}
static void bad_length(pgw_buf *b)
{
	static const uint8_t bad[] = {'B', 0, 0, 0, 2};
	pgw_buf_put_bytes(b, bad, sizeof(bad));
}

static void test_ext_group_not_a_group(void **state)
{
	(void)state;
	const group_builder builders[] = {named_parse,	 bind_other_than_parsed, named_portal, describe_statement,
					  flush_instead_of_sync, two_executes,		 query_first,  close_inside,
					  bad_length};
	for (size_t i = 0; i < sizeof(builders) / sizeof(builders[0]); i++) {
		pgw_buf b;
		pgw_buf_init(&b, 0);
		builders[i](&b);
		pgw_ext_group g;
		assert_int_equal(pgw_ext_group_scan(b.data, b.len, 65536, &g), PGW_ERR_MALFORMED);
		pgw_buf_free(&b);
	}
}

static void test_read_param_desc(void **state)
{
	(void)state;
	const uint8_t two[] = {0, 2, 0, 0, 0, 23, 0, 0, 0, 25};
	int16_t n;
	const uint8_t *types;
	assert_int_equal(pgw_read_param_desc(two, sizeof(two), &n, &types), PGW_OK);
	assert_int_equal(n, 2);
	assert_ptr_equal(types, two + 2);
	assert_int_equal(pgw_read_param_desc(two, sizeof(two) - 1, &n, &types), PGW_ERR_TRUNCATED);
	const uint8_t negative[] = {0xff, 0xff};
	assert_int_equal(pgw_read_param_desc(negative, sizeof(negative), &n, &types), PGW_ERR_MALFORMED);
	const uint8_t trailing[] = {0, 0, 1};
	assert_int_equal(pgw_read_param_desc(trailing, sizeof(trailing), &n, &types), PGW_ERR_TRAILING);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_strerror),
		cmocka_unit_test(test_frame_header_types),
		cmocka_unit_test(test_frame_header_wrong_direction),
		cmocka_unit_test(test_frame_header_lengths),
		cmocka_unit_test(test_frame_header_fixed_sizes),
		cmocka_unit_test(test_frame_header_short),
		cmocka_unit_test(test_stream_backend_splits),
		cmocka_unit_test(test_stream_frontend_splits),
		cmocka_unit_test(test_stream_empty_part),
		cmocka_unit_test(test_stream_errors),
		cmocka_unit_test(test_startup_message),
		cmocka_unit_test(test_startup_requests),
		cmocka_unit_test(test_startup_bad),
		cmocka_unit_test(test_startup_many_params),
		cmocka_unit_test(test_startup_header_lengths),
		cmocka_unit_test(test_startup_parse_size_mismatch),
		cmocka_unit_test(test_reader_primitives),
		cmocka_unit_test(test_reader_sticky),
		cmocka_unit_test(test_readers_valid_truncated_trailing),
		cmocka_unit_test(test_readers_invalid),
		cmocka_unit_test(test_read_error_fields),
		cmocka_unit_test(test_read_simple_fields),
		cmocka_unit_test(test_read_parse_bind_fields),
		cmocka_unit_test(test_read_row_desc_fields),
		cmocka_unit_test(test_read_data_row_fields),
		cmocka_unit_test(test_buf_backpatch),
		cmocka_unit_test(test_build_error_roundtrip),
		cmocka_unit_test(test_build_ready_cancel),
		cmocka_unit_test(test_buf_sticky_limit),
		cmocka_unit_test(test_buf_misuse),
		cmocka_unit_test(test_buf_growth),
		cmocka_unit_test(test_ext_group_whole),
		cmocka_unit_test(test_ext_group_prepared),
		cmocka_unit_test(test_ext_group_not_a_group),
		cmocka_unit_test(test_read_param_desc),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
