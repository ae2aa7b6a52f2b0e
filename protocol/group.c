/*
 * group.c — recognising one extended-protocol statement as drivers send it
 * when nothing else is pipelined (libpq's PQsendQueryParams and
 * PQsendQueryPrepared, psycopg 3, node-postgres, JDBC):
 *
 *     [Parse ""]  Bind "" <stmt>  [Describe portal ""]  Execute "" <max_rows>  Sync
 *
 * The N+1 batcher can answer such a group as a whole.  Pure code: the scan
 * only reads the caller's bytes (see pgwire.h, pgw_ext_group_scan).
 */
#include "pgwire.h"

#include <string.h>

typedef enum step { STEP_PARSE, STEP_BIND, STEP_DESCRIBE, STEP_EXECUTE, STEP_SYNC, STEP_DONE } step;

/* Could a message of this type come next?  (Checked from the header alone,
 * so a group is given up on before waiting for a body it cannot use.) */
static bool may_follow(uint8_t type, step at)
{
	switch (type) {
	case PGW_FE_PARSE:
		return at == STEP_PARSE;
	case PGW_FE_BIND:
		return at <= STEP_BIND;
	case PGW_FE_DESCRIBE:
		return at == STEP_DESCRIBE;
	case PGW_FE_EXECUTE:
		return at == STEP_DESCRIBE || at == STEP_EXECUTE;
	case PGW_FE_SYNC:
		return at == STEP_SYNC;
	default:
		return false;
	}
}

/* Read one message of the group (may_follow() has placed it) into out and
 * advance *at.  PGW_OK, or PGW_ERR_MALFORMED when it does not fit a group. */
static int group_message(uint8_t type, const uint8_t *msg, const uint8_t *body, size_t len, step *at,
			 pgw_ext_group *out)
{
	char kind;
	const char *name;
	switch (type) {
	case PGW_FE_PARSE:
		if (pgw_read_parse(body, len, &out->parse_msg) != PGW_OK || out->parse_msg.stmt_name[0])
			return PGW_ERR_MALFORMED;
		out->parse = msg;
		out->parse_len = PGW_HEADER_LEN + len;
		*at = STEP_BIND;
		return PGW_OK;
	case PGW_FE_BIND:
		if (pgw_read_bind(body, len, &out->bind) != PGW_OK || out->bind.portal[0] ||
		    (out->parse && out->bind.stmt_name[0]))
			return PGW_ERR_MALFORMED;
		*at = STEP_DESCRIBE;
		return PGW_OK;
	case PGW_FE_DESCRIBE:
		if (pgw_read_describe_close(body, len, &kind, &name) != PGW_OK || kind != 'P' || name[0])
			return PGW_ERR_MALFORMED;
		out->describe = true;
		*at = STEP_EXECUTE;
		return PGW_OK;
	case PGW_FE_EXECUTE:
		if (pgw_read_execute(body, len, &name, &out->max_rows) != PGW_OK || name[0])
			return PGW_ERR_MALFORMED;
		*at = STEP_SYNC;
		return PGW_OK;
	default: /* Sync */
		*at = STEP_DONE;
		return PGW_OK;
	}
}

int pgw_ext_group_scan(const uint8_t *buf, size_t len, size_t max_len, pgw_ext_group *out)
{
	memset(out, 0, sizeof(*out));
	step at = STEP_PARSE;
	size_t pos = 0;
	while (at != STEP_DONE) {
		pgw_frame f;
		int rc = pgw_frame_header(buf + pos, len - pos, PGW_FROM_FRONTEND, max_len, &f);
		if (rc < 0)
			return PGW_ERR_MALFORMED;
		if (rc == PGW_NEED_MORE)
			return pos + PGW_HEADER_LEN <= max_len ? PGW_NEED_MORE : PGW_ERR_MALFORMED;
		if (pos + f.frame_len > max_len || !may_follow(f.type, at))
			return PGW_ERR_MALFORMED;
		if (f.frame_len > len - pos)
			return PGW_NEED_MORE;
		const uint8_t *msg = buf + pos;
		rc = group_message(f.type, msg, msg + PGW_HEADER_LEN, f.body_len, &at, out);
		if (rc != PGW_OK)
			return rc;
		pos += f.frame_len;
	}
	out->len = pos;
	return PGW_OK;
}
