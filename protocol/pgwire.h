/*
 * pgwire.h — the PostgreSQL v3 wire protocol as pure code: frame headers,
 * startup packets, bounds-checked message readers and length-back-patching
 * builders.  Sans-IO: no sockets, no libuv, no logging, no global state, so
 * every function here is unit-tested (and fuzzable) from byte arrays.
 *
 * Interface
 *   pgw_frame_header()      validate a 5-byte message header for a direction
 *   pgw_startup_header()    validate the 8-byte header of a startup-phase packet
 *   pgw_startup_parse()     StartupMessage / SSLRequest / GSSENCRequest / CancelRequest
 *   pgw_reader_*            cursor over a message body; sticky error, never overreads
 *   pgw_read_*()            whole-message readers (body in, fields out)
 *   pgw_ext_group_scan()    one extended-protocol statement [Parse] Bind [Describe] Execute Sync
 *   pgw_buf_*               growable output buffer with a sticky error flag
 *   pgw_build_*()           message builders on top of pgw_buf
 *
 * Conventions: functions return PGW_OK (0), PGW_NEED_MORE (1) or a negative
 * PGW_ERR_* code; pgw_strerror() names each.  Readers return pointers into the
 * caller's buffer (nothing is copied or allocated).  Integers on the wire are
 * big-endian.
 */
#ifndef PGFOLD_PROTOCOL_PGWIRE_H
#define PGFOLD_PROTOCOL_PGWIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Startup-phase request codes (the int32 after the length). */
#define PGW_PROTOCOL_V3 196608u /* 3.0 */
#define PGW_PROTOCOL_MAJOR(v) ((v) >> 16)
#define PGW_PROTOCOL_MINOR(v) ((v)&0xffffu)
#define PGW_CANCEL_REQUEST_CODE 80877102u
#define PGW_SSL_REQUEST_CODE 80877103u
#define PGW_GSSENC_REQUEST_CODE 80877104u

/* PostgreSQL's own limit for a startup packet (MAX_STARTUP_PACKET_LENGTH). */
#define PGW_MAX_STARTUP_PACKET 10000u
/* Largest value a length field may take at all (PostgreSQL's MaxAllocSize). */
#define PGW_MAX_LENGTH 0x3fffffffu

/* Messages a frontend (client) sends. */
typedef enum pgw_fe_type {
	PGW_FE_BIND = 'B',
	PGW_FE_CLOSE = 'C',
	PGW_FE_COPY_DATA = 'd',
	PGW_FE_COPY_DONE = 'c',
	PGW_FE_COPY_FAIL = 'f',
	PGW_FE_DESCRIBE = 'D',
	PGW_FE_EXECUTE = 'E',
	PGW_FE_FLUSH = 'H',
	PGW_FE_FUNCTION_CALL = 'F',
	PGW_FE_PARSE = 'P',
	PGW_FE_PASSWORD = 'p', /* also SASLInitialResponse, SASLResponse, GSSResponse */
	PGW_FE_QUERY = 'Q',
	PGW_FE_SYNC = 'S',
	PGW_FE_TERMINATE = 'X',
} pgw_fe_type;

/* Messages a backend (server) sends. */
typedef enum pgw_be_type {
	PGW_BE_AUTH = 'R',
	PGW_BE_KEY_DATA = 'K',
	PGW_BE_BIND_COMPLETE = '2',
	PGW_BE_CLOSE_COMPLETE = '3',
	PGW_BE_COMMAND_COMPLETE = 'C',
	PGW_BE_COPY_DATA = 'd',
	PGW_BE_COPY_DONE = 'c',
	PGW_BE_COPY_IN = 'G',
	PGW_BE_COPY_OUT = 'H',
	PGW_BE_COPY_BOTH = 'W',
	PGW_BE_DATA_ROW = 'D',
	PGW_BE_EMPTY_QUERY = 'I',
	PGW_BE_ERROR = 'E',
	PGW_BE_FUNCTION_RESULT = 'V',
	PGW_BE_NEGOTIATE_VERSION = 'v',
	PGW_BE_NO_DATA = 'n',
	PGW_BE_NOTICE = 'N',
	PGW_BE_NOTIFICATION = 'A',
	PGW_BE_PARAM_DESC = 't',
	PGW_BE_PARAM_STATUS = 'S',
	PGW_BE_PARSE_COMPLETE = '1',
	PGW_BE_PORTAL_SUSPENDED = 's',
	PGW_BE_READY = 'Z',
	PGW_BE_ROW_DESC = 'T',
} pgw_be_type;

/* Which peer sent the bytes being framed. */
typedef enum pgw_sender { PGW_FROM_FRONTEND, PGW_FROM_BACKEND } pgw_sender;

enum pgw_result {
	PGW_OK = 0,
	PGW_NEED_MORE = 1,
	PGW_ERR_BAD_TYPE = -1,     /* message type not valid from this sender */
	PGW_ERR_BAD_LENGTH = -2,   /* length < 4, or wrong for a fixed-size message */
	PGW_ERR_TOO_LARGE = -3,    /* length over the caller's limit */
	PGW_ERR_TRUNCATED = -4,    /* a reader ran past the end of the body */
	PGW_ERR_TRAILING = -5,     /* bytes left over after the last field */
	PGW_ERR_MALFORMED = -6,    /* a field holds an impossible value */
	PGW_ERR_NOMEM = -7,        /* a builder could not grow its buffer */
	PGW_ERR_BAD_PROTOCOL = -8, /* startup packet with an unsupported protocol */
};

/* A short English description of a pgw_result code. */
const char *pgw_strerror(int code);

/* ---- framing ---------------------------------------------------------- */

#define PGW_HEADER_LEN 5 /* type byte + int32 length */

/* Big-endian integers as the wire carries them (the caller checked that the
 * bytes are there). */
static inline uint16_t pgw_get_u16(const uint8_t *p)
{
	return (uint16_t)(((uint16_t)p[0] << 8) | p[1]);
}

static inline uint32_t pgw_get_u32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* Bytes of the whole message whose (already validated) header is at msg. */
static inline size_t pgw_frame_size(const uint8_t *msg)
{
	return 1 + (size_t)pgw_get_u32(msg + 1);
}

typedef struct pgw_frame {
	uint8_t type;      /* message type byte */
	uint32_t body_len; /* bytes after the length field */
	size_t frame_len;  /* whole message: 1 + 4 + body_len */
} pgw_frame;

/*
 * Validate the header of the message starting at buf (only the header is
 * needed; the body may not have arrived).  Checks that the type is one that
 * `sender` may send, that the length is >= 4, that fixed-size messages
 * (Sync, Flush, Terminate, CopyDone, ReadyForQuery, BackendKeyData, ...) have
 * exactly their size, and that the whole frame is no larger than max_frame.
 * Returns PGW_NEED_MORE with fewer than PGW_HEADER_LEN bytes.
 */
int pgw_frame_header(const uint8_t *buf, size_t len, pgw_sender sender, size_t max_frame, pgw_frame *out);

/*
 * An incremental framer over one direction of a connection.  The caller keeps
 * the unconsumed bytes and calls pgw_stream_next() on them each time more
 * arrive; it hands back either a whole message (for the types the caller
 * asked to see whole, up to whole_limit bytes) or, for everything else, pieces
 * of a message to pass through as they come, so a 1 GB DataRow never needs
 * 1 GB of buffer.
 */
typedef enum pgw_chunk_kind {
	PGW_CHUNK_MESSAGE, /* len bytes are one whole message (header included) */
	PGW_CHUNK_PART,    /* len bytes are a piece of a streamed message */
} pgw_chunk_kind;

typedef struct pgw_chunk {
	pgw_chunk_kind kind;
	pgw_frame frame; /* the message this chunk belongs to */
	size_t len;      /* bytes of the caller's buffer this chunk covers */
	bool first;      /* PART: the piece holding the header */
	bool last;       /* PART: the piece ending the message */
} pgw_chunk;

typedef struct pgw_stream {
	pgw_sender sender;
	size_t max_frame;       /* larger frames are PGW_ERR_TOO_LARGE */
	size_t whole_limit;     /* frames up to this size of the types in `whole` come whole */
	uint8_t whole[32];      /* bitmap over the type byte */
	pgw_frame cur;          /* the message being streamed */
	size_t remaining;       /* > 0 while cur is being streamed */
} pgw_stream;

void pgw_stream_init(pgw_stream *s, pgw_sender sender, size_t max_frame, size_t whole_limit);
/* Ask for messages of `type` to be delivered whole (when <= whole_limit). */
void pgw_stream_want_whole(pgw_stream *s, uint8_t type);
/*
 * Next chunk from buf (the caller's unconsumed bytes).  PGW_OK: *out covers
 * out->len bytes at buf, which the caller consumes.  PGW_NEED_MORE: buf holds
 * only part of a header or of a message to be delivered whole; *need is the
 * number of bytes buf must hold to make progress (so the caller can size its
 * buffer).  Negative: the stream is broken (bad type, length, size); the
 * connection must be dropped, there is no resynchronising.
 */
int pgw_stream_next(pgw_stream *s, const uint8_t *buf, size_t len, pgw_chunk *out, size_t *need);

/* ---- startup phase ------------------------------------------------------ */

typedef enum pgw_startup_kind {
	PGW_STARTUP_MESSAGE,
	PGW_STARTUP_SSL,
	PGW_STARTUP_GSSENC,
	PGW_STARTUP_CANCEL,
} pgw_startup_kind;

typedef struct pgw_startup {
	pgw_startup_kind kind;
	uint32_t protocol; /* for PGW_STARTUP_MESSAGE */
	size_t nparams;      /* name/value pairs (PostgreSQL bounds only the packet size) */
	const char *params;  /* the validated pairs: name\0value\0...; points into the packet */
	size_t params_len;   /* bytes of params, the final terminator excluded */
	uint32_t cancel_pid; /* for PGW_STARTUP_CANCEL */
	uint32_t cancel_key;
} pgw_startup;

/*
 * Validate the 8-byte header of a startup-phase packet (int32 length incl.
 * itself, int32 code).  Returns PGW_NEED_MORE with fewer than 8 bytes,
 * PGW_ERR_BAD_LENGTH when the length is < 8 or > PGW_MAX_STARTUP_PACKET, or
 * wrong for SSL/GSSENC (8) and Cancel (16) requests.
 */
int pgw_startup_header(const uint8_t *buf, size_t len, uint32_t *packet_len, uint32_t *code);

/*
 * Parse a whole startup-phase packet (packet_len bytes, header included).
 * A StartupMessage must be protocol major 3 (else PGW_ERR_BAD_PROTOCOL), its
 * parameters name/value pairs ending with an empty name, with "user" present
 * (PGW_ERR_MALFORMED otherwise).  Pointers in *out point into packet.
 */
int pgw_startup_parse(const uint8_t *packet, size_t packet_len, pgw_startup *out);

/* The value of startup parameter `name` (the last one if repeated), or NULL. */
const char *pgw_startup_get(const pgw_startup *s, const char *name);
/* Iterate the parameters in packet order: start with *pos = 0; returns false
 * after the last one. */
bool pgw_startup_next_param(const pgw_startup *s, size_t *pos, const char **name, const char **value);

/* ---- readers ------------------------------------------------------------ */

/* A cursor over one message body.  The first failure sticks in err; later
 * reads return zero/NULL and never touch memory past the end. */
typedef struct pgw_reader {
	const uint8_t *data;
	size_t len;
	size_t pos;
	int err; /* PGW_OK or the first error */
} pgw_reader;

void pgw_reader_init(pgw_reader *r, const uint8_t *body, size_t len);
uint8_t pgw_read_u8(pgw_reader *r);
int16_t pgw_read_i16(pgw_reader *r);
int32_t pgw_read_i32(pgw_reader *r);
/* A NUL-terminated string inside the body; *len_out (optional) gets strlen. */
const char *pgw_read_cstr(pgw_reader *r, size_t *len_out);
/* n raw bytes (n may come from the wire: checked against what is left). */
const uint8_t *pgw_read_bytes(pgw_reader *r, size_t n);
/* PGW_OK when every byte was consumed without error, else the error
 * (PGW_ERR_TRAILING when bytes are left). */
int pgw_reader_finish(const pgw_reader *r);

/* Fields of an ErrorResponse or NoticeResponse (NULL when absent). */
typedef struct pgw_error_fields {
	const char *severity;     /* 'S' (localized) */
	const char *severity_nl;  /* 'V' (never localized) */
	const char *sqlstate;     /* 'C' */
	const char *message;      /* 'M' */
	const char *detail;       /* 'D' */
	const char *hint;         /* 'H' */
} pgw_error_fields;

int pgw_read_error(const uint8_t *body, size_t len, pgw_error_fields *out);
int pgw_read_ready(const uint8_t *body, size_t len, char *status); /* 'I','T','E' */
int pgw_read_key_data(const uint8_t *body, size_t len, uint32_t *pid, uint32_t *key);
int pgw_read_param_status(const uint8_t *body, size_t len, const char **name, const char **value);
int pgw_read_auth(const uint8_t *body, size_t len, int32_t *auth_code);
int pgw_read_query(const uint8_t *body, size_t len, const char **sql, size_t *sql_len);
int pgw_read_command_complete(const uint8_t *body, size_t len, const char **tag);

typedef struct pgw_parse_msg {
	const char *stmt_name;
	const char *query;
	size_t query_len;
	int16_t nparams;
	const uint8_t *param_types; /* nparams big-endian int32 OIDs */
} pgw_parse_msg;
int pgw_read_parse(const uint8_t *body, size_t len, pgw_parse_msg *out);

typedef struct pgw_bind_msg {
	const char *portal;
	const char *stmt_name;
	int16_t nformats;
	const uint8_t *formats;    /* nformats big-endian int16 */
	int16_t nparams;
	const uint8_t *params;     /* raw: per param int32 length (-1 NULL) + bytes */
	size_t params_len;
	int16_t nresult_formats;
	const uint8_t *result_formats;
} pgw_bind_msg;
int pgw_read_bind(const uint8_t *body, size_t len, pgw_bind_msg *out);
/* Walk a Bind's parameter values: start with *pos = 0; each call gives the
 * next value's bytes and length (len -1 and value NULL for SQL NULL); false
 * past the last one (or on a list that does not hold together). */
bool pgw_bind_next(const pgw_bind_msg *m, size_t *pos, const uint8_t **value, int32_t *len);
/* The format code of parameter i (0 text, 1 binary): no codes mean text,
 * one code is every parameter's. */
int16_t pgw_bind_format(const pgw_bind_msg *m, int i);

/* Describe and Close: kind 'S' (statement) or 'P' (portal) and a name. */
int pgw_read_describe_close(const uint8_t *body, size_t len, char *kind, const char **name);
int pgw_read_execute(const uint8_t *body, size_t len, const char **portal, int32_t *max_rows);
/* ParameterDescription: n parameter type OIDs (big-endian int32s at *types). */
int pgw_read_param_desc(const uint8_t *body, size_t len, int16_t *n, const uint8_t **types);

/* One extended-protocol statement as drivers send it when nothing else is
 * pipelined: [Parse ""] Bind "" <stmt> [Describe portal ""] Execute "" Sync
 * (a Parse in the group must be the statement the Bind uses). */
typedef struct pgw_ext_group {
	size_t len;              /* bytes of the whole group */
	const uint8_t *parse;    /* the whole Parse message (header included), or NULL */
	size_t parse_len;
	pgw_parse_msg parse_msg;
	pgw_bind_msg bind;
	bool describe;           /* the portal is described (RowDescription wanted) */
	int32_t max_rows;        /* Execute's row limit, 0 = all */
} pgw_ext_group;
/* Does buf (the client's unconsumed bytes, starting at a message) begin with
 * such a group of at most max_len bytes?  PGW_OK: *out describes it (pointers
 * into buf); PGW_NEED_MORE: what is there could be the start of one;
 * PGW_ERR_MALFORMED: it is not one (or a header is invalid: the caller's
 * framer reports that). */
int pgw_ext_group_scan(const uint8_t *buf, size_t len, size_t max_len, pgw_ext_group *out);

/* RowDescription: validates every field; iterate with pgw_row_desc_next(). */
typedef struct pgw_column {
	const char *name;
	uint32_t table_oid;
	int16_t attnum;
	uint32_t type_oid;
	int16_t type_len;
	int32_t type_mod;
	int16_t format;
} pgw_column;
int pgw_read_row_desc(const uint8_t *body, size_t len, int16_t *ncolumns);
/* Decode column i (0-based) of a RowDescription already validated. */
int pgw_row_desc_column(const uint8_t *body, size_t len, int16_t i, pgw_column *out);
/* Sequential decoding (linear instead of quadratic over wide rows): init a
 * reader on the body, read the int16 count with pgw_read_i16(), then call
 * pgw_row_desc_next() / pgw_data_row_next() once per column.  Each returns
 * the reader's error (PGW_OK while fields remain well-formed). */
int pgw_row_desc_next(pgw_reader *r, pgw_column *out);

/* DataRow: validates every field length; ncolumns out. */
int pgw_read_data_row(const uint8_t *body, size_t len, int16_t *ncolumns);
/* Value of column i of a validated DataRow; *value NULL and *vlen -1 for SQL NULL. */
int pgw_data_row_value(const uint8_t *body, size_t len, int16_t i, const uint8_t **value, int32_t *vlen);
int pgw_data_row_next(pgw_reader *r, const uint8_t **value, int32_t *vlen);

/*
 * A column value in its text form, as PostgreSQL's output function would
 * print it: text-format values are copied; binary-format values are
 * converted for int2 (21), int4 (23), int8 (20), oid (26), text (25),
 * varchar (1043), bpchar (1042), name (19) and uuid (2950).  *out_len gets the
 * length; the output is NUL-terminated.  PGW_ERR_MALFORMED for a binary
 * value of a wrong size or another type, PGW_ERR_TOO_LARGE when size is short.
 */
int pgw_value_text(uint32_t type_oid, int16_t format, const uint8_t *value, int32_t len, char *out, size_t size,
		   size_t *out_len);

/* ---- builders ----------------------------------------------------------- */

/*
 * A growable output buffer.  A failed allocation, or growing past `limit`,
 * sets `failed`; every later call is a no-op, so callers check once with
 * pgw_buf_ok() before sending.  Messages are written between
 * pgw_buf_begin() and pgw_buf_end(), which back-patches the length.
 */
typedef struct pgw_buf {
	uint8_t *data;
	size_t len;
	size_t cap;
	size_t limit;     /* maximum len; 0 means PGW_MAX_LENGTH */
	size_t msg_start; /* offset of the length field of the open message */
	bool in_message;
	bool failed;
} pgw_buf;

void pgw_buf_init(pgw_buf *b, size_t limit);
void pgw_buf_free(pgw_buf *b);  /* frees data; the struct can be reused after init */
void pgw_buf_reset(pgw_buf *b); /* len = 0, failed = false; keeps the memory */
bool pgw_buf_ok(const pgw_buf *b);
/* Take ownership of the bytes: returns data (caller frees), leaves b empty. */
uint8_t *pgw_buf_steal(pgw_buf *b, size_t *len);

/* type 0 starts an untyped (startup-phase) packet: only the length is written. */
void pgw_buf_begin(pgw_buf *b, uint8_t type);
void pgw_buf_end(pgw_buf *b);
void pgw_buf_put_u8(pgw_buf *b, uint8_t v);
void pgw_buf_put_i16(pgw_buf *b, int16_t v);
void pgw_buf_put_i32(pgw_buf *b, int32_t v);
void pgw_buf_put_cstr(pgw_buf *b, const char *s);
void pgw_buf_put_bytes(pgw_buf *b, const void *p, size_t n);

/* ErrorResponse ('E') with S, V, C and M fields (severity e.g. "FATAL"). */
void pgw_build_error(pgw_buf *b, const char *severity, const char *sqlstate, const char *message);
/* The same, with an optional detail (D) and hint (H); NULL omits a field. */
void pgw_build_error_full(pgw_buf *b, const char *severity, const char *sqlstate, const char *message,
			  const char *detail, const char *hint);
void pgw_build_ready(pgw_buf *b, char status);
/* A message with no body: Sync, ParseComplete, BindComplete, PortalSuspended ... */
void pgw_build_empty(pgw_buf *b, uint8_t type);
void pgw_build_cancel_request(pgw_buf *b, uint32_t pid, uint32_t key);

#endif /* PGFOLD_PROTOCOL_PGWIRE_H */
