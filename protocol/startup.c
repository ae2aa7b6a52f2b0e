/*
 * startup.c — the startup phase of the PostgreSQL v3 protocol (see
 * pgwire.h): the untyped packets a client sends before its first typed
 * message.  pgw_startup_header() validates the 8-byte header (length, code)
 * as soon as it has arrived; pgw_startup_parse() decodes a whole packet into
 * a StartupMessage (protocol + parameters), SSLRequest, GSSENCRequest or
 * CancelRequest.  Parameter strings point into the caller's packet.
 */
#include "pgwire.h"

#include <string.h>

#define STARTUP_HEADER_LEN 8u
#define CANCEL_PACKET_LEN 16u

int pgw_startup_header(const uint8_t *buf, size_t len, uint32_t *packet_len, uint32_t *code)
{
	if (len < STARTUP_HEADER_LEN)
		return PGW_NEED_MORE;
	pgw_reader r;
	pgw_reader_init(&r, buf, STARTUP_HEADER_LEN);
	uint32_t plen = (uint32_t)pgw_read_i32(&r);
	uint32_t c = (uint32_t)pgw_read_i32(&r);
	*packet_len = plen;
	*code = c;
	if (plen < STARTUP_HEADER_LEN || plen > PGW_MAX_STARTUP_PACKET)
		return PGW_ERR_BAD_LENGTH;
	if ((c == PGW_SSL_REQUEST_CODE || c == PGW_GSSENC_REQUEST_CODE) && plen != STARTUP_HEADER_LEN)
		return PGW_ERR_BAD_LENGTH;
	if (c == PGW_CANCEL_REQUEST_CODE && plen != CANCEL_PACKET_LEN)
		return PGW_ERR_BAD_LENGTH;
	return PGW_OK;
}

/*
 * name\0value\0 pairs ending with a single \0 that must be the last byte.
 * A missing terminator, a name without a value, bytes after the terminator,
 * or no (or an empty) "user" is PGW_ERR_MALFORMED, as PostgreSQL rejects the
 * same packets.  The count of pairs is bounded by the packet size only.
 */
static int parse_params(pgw_reader *r, pgw_startup *out)
{
	out->params = (const char *)r->data + r->pos;
	for (;;) {
		const char *name = pgw_read_cstr(r, NULL);
		if (!name)
			return PGW_ERR_MALFORMED;
		if (name[0] == '\0')
			break;
		if (!pgw_read_cstr(r, NULL))
			return PGW_ERR_MALFORMED;
		out->nparams++;
	}
	out->params_len = r->pos - 1 - (size_t)(out->params - (const char *)r->data);
	if (pgw_reader_finish(r) != PGW_OK)
		return PGW_ERR_MALFORMED;
	const char *user = pgw_startup_get(out, "user");
	if (!user || user[0] == '\0')
		return PGW_ERR_MALFORMED;
	return PGW_OK;
}

/*
 * packet_len must equal the packet's own length field: fewer bytes are
 * PGW_ERR_TRUNCATED, more are PGW_ERR_TRAILING.  Any minor version of
 * protocol 3 is accepted (the caller may negotiate it down).
 */
int pgw_startup_parse(const uint8_t *packet, size_t packet_len, pgw_startup *out)
{
	uint32_t plen, code;
	memset(out, 0, sizeof(*out));
	int rc = pgw_startup_header(packet, packet_len, &plen, &code);
	if (rc == PGW_NEED_MORE)
		return PGW_ERR_TRUNCATED;
	if (rc != PGW_OK)
		return rc;
	if (packet_len != plen)
		return packet_len < plen ? PGW_ERR_TRUNCATED : PGW_ERR_TRAILING;

	pgw_reader r;
	pgw_reader_init(&r, packet + STARTUP_HEADER_LEN, packet_len - STARTUP_HEADER_LEN);
	switch (code) {
	case PGW_SSL_REQUEST_CODE: out->kind = PGW_STARTUP_SSL; return PGW_OK;
	case PGW_GSSENC_REQUEST_CODE: out->kind = PGW_STARTUP_GSSENC; return PGW_OK;
	case PGW_CANCEL_REQUEST_CODE:
		out->kind = PGW_STARTUP_CANCEL;
		out->cancel_pid = (uint32_t)pgw_read_i32(&r);
		out->cancel_key = (uint32_t)pgw_read_i32(&r);
		return pgw_reader_finish(&r);
	default: break;
	}
	out->kind = PGW_STARTUP_MESSAGE;
	out->protocol = code;
	if (PGW_PROTOCOL_MAJOR(code) != 3)
		return PGW_ERR_BAD_PROTOCOL;
	return parse_params(&r, out);
}

/* The pairs were validated by parse_params(): every string is terminated
 * inside params_len. */
bool pgw_startup_next_param(const pgw_startup *s, size_t *pos, const char **name, const char **value)
{
	if (!s->params || *pos >= s->params_len)
		return false;
	*name = s->params + *pos;
	*value = *name + strlen(*name) + 1;
	*pos = (size_t)(*value - s->params) + strlen(*value) + 1;
	return true;
}

/* The last occurrence wins, as in PostgreSQL. */
const char *pgw_startup_get(const pgw_startup *s, const char *name)
{
	const char *found = NULL, *n, *v;
	size_t pos = 0;
	while (pgw_startup_next_param(s, &pos, &n, &v))
		if (strcmp(n, name) == 0)
			found = v;
	return found;
}
