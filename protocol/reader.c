/*
 * reader.c — the bounds-checked cursor (pgw_reader_*, pgw_read_u8/i16/i32/
 * cstr/bytes) and the whole-message readers built on it (see pgwire.h).
 *
 * Every read checks what is left before touching memory; the first failure
 * sticks in r->err and later reads return 0/NULL without moving.  Message
 * readers take a body (the bytes after the length field), return pointers
 * into it, and end with pgw_reader_finish() so that a body with bytes left
 * over is PGW_ERR_TRAILING.  Their outputs are meaningful only on PGW_OK.
 */
#include "pgwire.h"

#include <string.h>

/* ---- cursor ------------------------------------------------------------- */

void pgw_reader_init(pgw_reader *r, const uint8_t *body, size_t len)
{
	r->data = body;
	r->len = len;
	r->pos = 0;
	r->err = PGW_OK;
}

/* n bytes at the cursor, advancing past them; NULL (and err set) when fewer
 * are left.  With n == 0 on an empty NULL body this is NULL with no error. */
static const uint8_t *take(pgw_reader *r, size_t n)
{
	if (r->err != PGW_OK)
		return NULL;
	if (n > r->len - r->pos) {
		r->err = PGW_ERR_TRUNCATED;
		return NULL;
	}
	if (r->data == NULL)
		return NULL;
	const uint8_t *p = r->data + r->pos;
	r->pos += n;
	return p;
}

uint8_t pgw_read_u8(pgw_reader *r)
{
	const uint8_t *p = take(r, 1);
	return p ? p[0] : 0;
}

int16_t pgw_read_i16(pgw_reader *r)
{
	const uint8_t *p = take(r, 2);
	if (!p)
		return 0;
	return (int16_t)(uint16_t)((unsigned)p[0] << 8 | p[1]);
}

int32_t pgw_read_i32(pgw_reader *r)
{
	const uint8_t *p = take(r, 4);
	if (!p)
		return 0;
	uint32_t v = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
	return (int32_t)v;
}

const char *pgw_read_cstr(pgw_reader *r, size_t *len_out)
{
	if (r->err != PGW_OK || r->pos >= r->len) {
		if (r->err == PGW_OK)
			r->err = PGW_ERR_TRUNCATED;
		return NULL;
	}
	const uint8_t *start = r->data + r->pos;
	const uint8_t *nul = memchr(start, 0, r->len - r->pos);
	if (!nul) {
		r->err = PGW_ERR_TRUNCATED;
		return NULL;
	}
	size_t n = (size_t)(nul - start);
	r->pos += n + 1;
	if (len_out)
		*len_out = n;
	return (const char *)start;
}

const uint8_t *pgw_read_bytes(pgw_reader *r, size_t n)
{
	return take(r, n);
}

int pgw_reader_finish(const pgw_reader *r)
{
	if (r->err != PGW_OK)
		return r->err;
	return r->pos == r->len ? PGW_OK : PGW_ERR_TRAILING;
}

/* A count read from the wire: negative is impossible. */
static int16_t read_count(pgw_reader *r)
{
	int16_t n = pgw_read_i16(r);
	if (n < 0 && r->err == PGW_OK)
		r->err = PGW_ERR_MALFORMED;
	return r->err == PGW_OK ? n : 0;
}

static void set_malformed(pgw_reader *r)
{
	if (r->err == PGW_OK)
		r->err = PGW_ERR_MALFORMED;
}

/* ---- simple messages ---------------------------------------------------- */

static void store_error_field(pgw_error_fields *out, uint8_t code, const char *value)
{
	switch (code) {
	case 'S': out->severity = value; break;
	case 'V': out->severity_nl = value; break;
	case 'C': out->sqlstate = value; break;
	case 'M': out->message = value; break;
	case 'D': out->detail = value; break;
	case 'H': out->hint = value; break;
	default: break; /* fields we do not use (P, W, F, L, R, ...) */
	}
}

/* ErrorResponse / NoticeResponse: (code byte, cstr)* then a zero byte. */
int pgw_read_error(const uint8_t *body, size_t len, pgw_error_fields *out)
{
	pgw_reader r;
	pgw_reader_init(&r, body, len);
	memset(out, 0, sizeof(*out));
	for (;;) {
		uint8_t code = pgw_read_u8(&r);
		if (r.err != PGW_OK || code == 0)
			break;
		const char *value = pgw_read_cstr(&r, NULL);
		if (value)
			store_error_field(out, code, value);
	}
	return pgw_reader_finish(&r);
}

int pgw_read_ready(const uint8_t *body, size_t len, char *status)
{
	pgw_reader r;
	pgw_reader_init(&r, body, len);
	uint8_t s = pgw_read_u8(&r);
	if (r.err == PGW_OK && s != 'I' && s != 'T' && s != 'E')
		set_malformed(&r);
	*status = (char)s;
	return pgw_reader_finish(&r);
}

int pgw_read_key_data(const uint8_t *body, size_t len, uint32_t *pid, uint32_t *key)
{
	pgw_reader r;
	pgw_reader_init(&r, body, len);
	*pid = (uint32_t)pgw_read_i32(&r);
	*key = (uint32_t)pgw_read_i32(&r);
	return pgw_reader_finish(&r);
}

int pgw_read_param_status(const uint8_t *body, size_t len, const char **name, const char **value)
{
	pgw_reader r;
	pgw_reader_init(&r, body, len);
	*name = pgw_read_cstr(&r, NULL);
	*value = pgw_read_cstr(&r, NULL);
	return pgw_reader_finish(&r);
}

/*
 * Authentication request: only the int32 code is read; the rest of the body
 * is method-specific (MD5 salt, SASL mechanism list or data, GSS data), so
 * bytes after the code are not PGW_ERR_TRAILING.  Read them with a reader
 * from offset 4.
 */
int pgw_read_auth(const uint8_t *body, size_t len, int32_t *auth_code)
{
	pgw_reader r;
	pgw_reader_init(&r, body, len);
	*auth_code = pgw_read_i32(&r);
	return r.err;
}

int pgw_read_query(const uint8_t *body, size_t len, const char **sql, size_t *sql_len)
{
	pgw_reader r;
	pgw_reader_init(&r, body, len);
	size_t n = 0;
	*sql = pgw_read_cstr(&r, &n);
	if (sql_len)
		*sql_len = n;
	return pgw_reader_finish(&r);
}

int pgw_read_command_complete(const uint8_t *body, size_t len, const char **tag)
{
	pgw_reader r;
	pgw_reader_init(&r, body, len);
	*tag = pgw_read_cstr(&r, NULL);
	return pgw_reader_finish(&r);
}

/* ---- extended query ----------------------------------------------------- */

int pgw_read_parse(const uint8_t *body, size_t len, pgw_parse_msg *out)
{
	pgw_reader r;
	pgw_reader_init(&r, body, len);
	memset(out, 0, sizeof(*out));
	out->stmt_name = pgw_read_cstr(&r, NULL);
	out->query = pgw_read_cstr(&r, &out->query_len);
	out->nparams = read_count(&r);
	out->param_types = pgw_read_bytes(&r, (size_t)out->nparams * 4);
	return pgw_reader_finish(&r);
}

/* Bind parameter values: per value an int32 length (-1 = NULL) and bytes. */
static void skip_bind_values(pgw_reader *r, int16_t n)
{
	for (int16_t i = 0; i < n && r->err == PGW_OK; i++) {
		int32_t vlen = pgw_read_i32(r);
		if (vlen < -1)
			set_malformed(r);
		else if (vlen > 0)
			pgw_read_bytes(r, (size_t)vlen);
	}
}

int pgw_read_bind(const uint8_t *body, size_t len, pgw_bind_msg *out)
{
	pgw_reader r;
	pgw_reader_init(&r, body, len);
	memset(out, 0, sizeof(*out));
	out->portal = pgw_read_cstr(&r, NULL);
	out->stmt_name = pgw_read_cstr(&r, NULL);
	out->nformats = read_count(&r);
	out->formats = pgw_read_bytes(&r, (size_t)out->nformats * 2);
	out->nparams = read_count(&r);
	size_t params_start = r.pos;
	skip_bind_values(&r, out->nparams);
	if (r.err == PGW_OK) {
		out->params = body + params_start;
		out->params_len = r.pos - params_start;
	}
	out->nresult_formats = read_count(&r);
	out->result_formats = pgw_read_bytes(&r, (size_t)out->nresult_formats * 2);
	return pgw_reader_finish(&r);
}

bool pgw_bind_next(const pgw_bind_msg *m, size_t *pos, const uint8_t **value, int32_t *len)
{
	if (!m->params || *pos + 4 > m->params_len)
		return false;
	int32_t n = (int32_t)pgw_get_u32(m->params + *pos);
	size_t at = *pos + 4;
	if (n < -1 || (n > 0 && (size_t)n > m->params_len - at))
		return false;
	*value = n >= 0 ? m->params + at : NULL;
	*len = n;
	*pos = at + (n > 0 ? (size_t)n : 0);
	return true;
}

int16_t pgw_bind_format(const pgw_bind_msg *m, int i)
{
	if (m->nformats <= 0 || i < 0 || (m->nformats > 1 && i >= m->nformats))
		return 0;
	return (int16_t)pgw_get_u16(m->formats + 2 * (m->nformats == 1 ? 0 : i));
}

int pgw_read_describe_close(const uint8_t *body, size_t len, char *kind, const char **name)
{
	pgw_reader r;
	pgw_reader_init(&r, body, len);
	uint8_t k = pgw_read_u8(&r);
	if (r.err == PGW_OK && k != 'S' && k != 'P')
		set_malformed(&r);
	*kind = (char)k;
	*name = pgw_read_cstr(&r, NULL);
	return pgw_reader_finish(&r);
}

int pgw_read_execute(const uint8_t *body, size_t len, const char **portal, int32_t *max_rows)
{
	pgw_reader r;
	pgw_reader_init(&r, body, len);
	*portal = pgw_read_cstr(&r, NULL);
	*max_rows = pgw_read_i32(&r);
	return pgw_reader_finish(&r);
}

int pgw_read_param_desc(const uint8_t *body, size_t len, int16_t *n, const uint8_t **types)
{
	pgw_reader r;
	pgw_reader_init(&r, body, len);
	*n = pgw_read_i16(&r);
	if (r.err == PGW_OK && *n < 0)
		set_malformed(&r);
	*types = pgw_read_bytes(&r, r.err == PGW_OK ? 4 * (size_t)*n : 0);
	return pgw_reader_finish(&r);
}

/* ---- RowDescription ----------------------------------------------------- */

int pgw_row_desc_next(pgw_reader *r, pgw_column *out)
{
	out->name = pgw_read_cstr(r, NULL);
	out->table_oid = (uint32_t)pgw_read_i32(r);
	out->attnum = pgw_read_i16(r);
	out->type_oid = (uint32_t)pgw_read_i32(r);
	out->type_len = pgw_read_i16(r);
	out->type_mod = pgw_read_i32(r);
	out->format = pgw_read_i16(r);
	return r->err;
}

int pgw_read_row_desc(const uint8_t *body, size_t len, int16_t *ncolumns)
{
	pgw_reader r;
	pgw_reader_init(&r, body, len);
	int16_t n = read_count(&r);
	pgw_column col;
	for (int16_t i = 0; i < n && r.err == PGW_OK; i++)
		pgw_row_desc_next(&r, &col);
	*ncolumns = n;
	return pgw_reader_finish(&r);
}

/* Column i out of range is PGW_ERR_MALFORMED. */
int pgw_row_desc_column(const uint8_t *body, size_t len, int16_t i, pgw_column *out)
{
	pgw_reader r;
	pgw_reader_init(&r, body, len);
	int16_t n = read_count(&r);
	memset(out, 0, sizeof(*out));
	if (r.err == PGW_OK && (i < 0 || i >= n))
		set_malformed(&r);
	for (int16_t k = 0; k <= i && r.err == PGW_OK; k++)
		pgw_row_desc_next(&r, out);
	return r.err;
}

/* ---- DataRow ------------------------------------------------------------ */

int pgw_data_row_next(pgw_reader *r, const uint8_t **value, int32_t *vlen)
{
	int32_t n = pgw_read_i32(r);
	*value = NULL;
	*vlen = -1;
	if (r->err != PGW_OK)
		return r->err;
	if (n < -1) {
		set_malformed(r);
		return r->err;
	}
	if (n >= 0) {
		*value = pgw_read_bytes(r, (size_t)n);
		*vlen = r->err == PGW_OK ? n : -1;
	}
	return r->err;
}

int pgw_read_data_row(const uint8_t *body, size_t len, int16_t *ncolumns)
{
	pgw_reader r;
	pgw_reader_init(&r, body, len);
	int16_t n = read_count(&r);
	const uint8_t *value;
	int32_t vlen;
	for (int16_t i = 0; i < n && r.err == PGW_OK; i++)
		pgw_data_row_next(&r, &value, &vlen);
	*ncolumns = n;
	return pgw_reader_finish(&r);
}

/* Column i out of range is PGW_ERR_MALFORMED. */
int pgw_data_row_value(const uint8_t *body, size_t len, int16_t i, const uint8_t **value, int32_t *vlen)
{
	pgw_reader r;
	pgw_reader_init(&r, body, len);
	int16_t n = read_count(&r);
	*value = NULL;
	*vlen = -1;
	if (r.err == PGW_OK && (i < 0 || i >= n))
		set_malformed(&r);
	for (int16_t k = 0; k <= i && r.err == PGW_OK; k++)
		pgw_data_row_next(&r, value, vlen);
	return r.err;
}
