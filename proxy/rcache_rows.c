/*
 * rcache_rows.c — which primary-key values a read or a write is pinned to
 * (rcache_rows.h), from the statement's analysis, relcat's primary keys and
 * the statement's literal or bound values.
 */
#include "rcache_rows.h"

#include <string.h>

#include "relcat.h"
#include "session.h"

#define PIN_READ_EXCLUDED (RW_HAS_SUBQUERY | RW_HAS_EXISTS | RW_HAS_CTE | RW_HAS_SET_OP | RW_EXISTS_QUERY)
#define INT_DIGITS_MAX 18 /* fits int64 whatever the digits */

bool px_rc_canonical_int(const char *text, size_t len, bool literal, char out[PX_RC_ROW_KEY_MAX])
{
	bool quoted = literal && len >= 2 && text[0] == '\'' && text[len - 1] == '\'';
	if (quoted) {
		text++;
		len -= 2;
	}
	bool neg = len > 0 && text[0] == '-';
	size_t i = neg ? 1 : 0;
	while (literal && !quoted && neg && i < len && text[i] == ' ')
		i++; /* the analysis folds "- 5" into one literal */
	if (i == len)
		return false;
	while (i + 1 < len && text[i] == '0')
		i++;
	if (len - i > INT_DIGITS_MAX)
		return false;
	for (size_t j = i; j < len; j++)
		if (text[j] < '0' || text[j] > '9')
			return false;
	bool zero = len - i == 1 && text[i] == '0';
	size_t n = 0;
	if (neg && !zero)
		out[n++] = '-';
	memcpy(out + n, text + i, len - i);
	out[n + len - i] = '\0';
	return true;
}

/* The canonical value of slot i, when it has one. */
static bool slot_int(const rw_stmt *st, size_t i, const px_rc_values *vals, char out[PX_RC_ROW_KEY_MAX])
{
	const rw_slot *sl = &st->shape->slots[i];
	if (sl->param > 0) {
		const char *v;
		size_t len;
		return vals->param && vals->param(vals->ctx, sl->param, &v, &len) == 1 &&
		       px_rc_canonical_int(v, len, false, out);
	}
	const rw_value *v = &st->values[i];
	if (v->location < st->location)
		return false;
	size_t at = (size_t)(v->location - st->location);
	if (!vals->sql || at > vals->sql_len || (size_t)v->length > vals->sql_len - at)
		return false;
	return px_rc_canonical_int(vals->sql + at, (size_t)v->length, true, out);
}

/* The first slot that is `pk = value` on relation rel with an integer value. */
static bool pinning_slot(const rw_stmt *st, int rel, const char *pk, const px_rc_values *vals,
			 char out[PX_RC_ROW_KEY_MAX], size_t *slot)
{
	const rw_shape *sh = st->shape;
	for (size_t i = 0; i < sh->nslots; i++) {
		const rw_slot *sl = &sh->slots[i];
		if (sl->rel_index == rel && sl->column && strcmp(sl->column, pk) == 0 && slot_int(st, i, vals, out)) {
			*slot = i;
			return true;
		}
	}
	return false;
}

static const char *primary_key(px_session *s, const char *table)
{
	return px_relcat_primary_key(s->server->relcat, s->database, s->user, table);
}

bool px_rc_pin_read(px_session *s, const rw_stmt *st, const px_rc_values *vals, char out[PX_RC_ROW_KEY_MAX],
		    size_t *slot)
{
	const rw_shape *sh = st->shape;
	if (sh->kind != RW_KIND_READ || sh->nrelations != 1 || (sh->flags & PIN_READ_EXCLUDED))
		return false;
	const char *pk = primary_key(s, sh->relations[0].name);
	return pk && pinning_slot(st, 0, pk, vals, out, slot);
}

static bool assigns(const rw_shape *sh, const char *column)
{
	for (size_t i = 0; i < sh->nset_columns; i++)
		if (strcmp(sh->set_columns[i], column) == 0)
			return true;
	return false;
}

static size_t written_relations(const rw_shape *sh)
{
	size_t n = 0;
	for (size_t i = 0; i < sh->nrelations; i++)
		n += sh->relations[i].written;
	return n;
}

/* INSERT ... VALUES: the key column's value in every row. */
static int pin_insert(const rw_stmt *st, const char *pk, const px_rc_values *vals,
		      char out[PX_RC_MAX_ROW_KEYS][PX_RC_ROW_KEY_MAX])
{
	const rw_shape *sh = st->shape;
	size_t col = sh->ninsert_columns;
	for (size_t i = 0; i < sh->ninsert_columns; i++)
		if (strcmp(sh->insert_columns[i], pk) == 0)
			col = i;
	if (sh->write_on_conflict || col == sh->ninsert_columns || sh->ninsert_rows == 0 ||
	    sh->ninsert_rows > PX_RC_MAX_ROW_KEYS)
		return -1;
	for (size_t r = 0; r < sh->ninsert_rows; r++) {
		int slot = sh->insert_slots[r * sh->ninsert_columns + col];
		if (slot < 0 || !slot_int(st, (size_t)slot, vals, out[r]))
			return -1;
	}
	return (int)sh->ninsert_rows;
}

int px_rc_pin_write(px_session *s, const rw_stmt *st, const px_rc_values *vals,
		    char out[PX_RC_MAX_ROW_KEYS][PX_RC_ROW_KEY_MAX])
{
	const rw_shape *sh = st->shape;
	if (sh->kind != RW_KIND_WRITE || (sh->flags & RW_WRITABLE_CTE) || sh->write_rel < 0 ||
	    (size_t)sh->write_rel >= sh->nrelations || written_relations(sh) != 1)
		return -1;
	const char *table = sh->relations[sh->write_rel].name;
	if (!(px_relcat_flags(s->server->relcat, s->database, s->user, table) & PX_REL_WRITE_LOCAL))
		return -1;
	const char *pk = primary_key(s, table);
	if (!pk)
		return -1;
	size_t slot;
	switch (sh->write_form) {
	case RW_WRITE_UPDATE:
		if (assigns(sh, pk))
			return -1;
		/* fall through */
	case RW_WRITE_DELETE:
		return pinning_slot(st, sh->write_rel, pk, vals, out[0], &slot) ? 1 : -1;
	case RW_WRITE_INSERT_VALUES:
		return pin_insert(st, pk, vals, out);
	default:
		return -1;
	}
}

int px_rc_bind_param(void *ctx, int n, const char **value, size_t *len)
{
	px_rc_bind *bv = ctx;
	const pgw_bind_msg *b = bv->b;
	size_t pos = 0;
	const uint8_t *v;
	int32_t l;
	for (int i = 0; i < b->nparams && pgw_bind_next(b, &pos, &v, &l); i++) {
		if (i + 1 < n)
			continue;
		if (l < 0)
			return 0;
		int16_t format = pgw_bind_format(b, i);
		if (format == 0) {
			*value = (const char *)v;
			*len = (size_t)l;
			return 1;
		}
		uint32_t type = i < bv->ntypes ? bv->types[i] : 0;
		if (pgw_value_text(type, format, v, l, bv->text, sizeof(bv->text), len) != PGW_OK)
			return -1;
		*value = bv->text;
		return 1;
	}
	return -1;
}
