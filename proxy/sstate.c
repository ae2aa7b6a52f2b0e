/*
 * sstate.c — per-session state bookkeeping (see sstate.h).
 *
 * Transactions follow the server's answers, in execution order.  The first
 * answer after a transaction ended opens the next one (snapshotting the
 * settings); BEGIN turns it into a block (the statements before BEGIN in
 * the same Query belong to it, as in PostgreSQL); COMMIT or ROLLBACK ends
 * the block (the tag says which: COMMIT of a failed block answers
 * "ROLLBACK"); ReadyForQuery 'I' ends an implicit transaction — if anything
 * in it failed, PostgreSQL undid its SETs, and so do we.
 */
#include "sstate.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "../common/alloc.h"

/* ---- settings blobs ----------------------------------------------------- */

static void settings_init(px_settings *s)
{
	memset(s, 0, sizeof(*s));
	s->default_read_only = -1;
}

static void settings_free(px_settings *s)
{
	pf_free(s->blob);
	settings_init(s);
}

static void settings_copy(px_settings *dst, const px_settings *src)
{
	pf_free(dst->blob);
	*dst = *src;
	dst->blob = NULL;
	if (src->len) {
		dst->blob = pf_malloc(src->len);
		memcpy(dst->blob, src->blob, src->len);
	}
}

/* Roll back to a snapshot; not knowing stays not knowing. */
static void settings_restore(px_settings *dst, const px_settings *src)
{
	bool unknown = dst->unknown;
	settings_copy(dst, src);
	dst->unknown |= unknown;
}

/* Offset of the pair named `name`, or -1. */
static long settings_find(const px_settings *s, const char *name)
{
	size_t pos = 0;
	while (pos < s->len) {
		const char *n = s->blob + pos;
		const char *v = n + strlen(n) + 1;
		if (strcmp(n, name) == 0)
			return (long)pos;
		pos = (size_t)(v - s->blob) + strlen(v) + 1;
	}
	return -1;
}

static void settings_remove(px_settings *s, const char *name)
{
	long at = settings_find(s, name);
	if (at < 0)
		return;
	const char *n = s->blob + at;
	const char *v = n + strlen(n) + 1;
	size_t pair = (size_t)(v - n) + strlen(v) + 1;
	memmove(s->blob + at, s->blob + at + pair, s->len - (size_t)at - pair);
	s->len -= pair;
}

static void settings_put(px_settings *s, const char *name, const char *value, size_t value_len)
{
	settings_remove(s, name);
	size_t nlen = strlen(name) + 1;
	if (s->len + nlen + value_len + 1 > PX_SSTATE_MAX_SETTINGS_BYTES) {
		s->unknown = true; /* more than we keep: stop vouching */
		return;
	}
	s->blob = pf_realloc(s->blob, s->len + nlen + value_len + 1);
	memcpy(s->blob + s->len, name, nlen);
	memcpy(s->blob + s->len + nlen, value, value_len);
	s->blob[s->len + nlen + value_len] = '\0';
	s->len += nlen + value_len + 1;
}

static const char *settings_get(const px_settings *s, const char *name)
{
	long at = settings_find(s, name);
	return at < 0 ? NULL : s->blob + at + strlen(s->blob + at) + 1;
}

/* ---- helpers ------------------------------------------------------------ */

void px_sql_last_name(const char *p, size_t len, char *out, size_t size)
{
	while (len > 0 && (isspace((unsigned char)p[len - 1]) || p[len - 1] == ';'))
		len--;
	size_t end = len, start = len;
	if (len > 0 && p[len - 1] == '"') {
		start = len - 1;
		while (start > 0 && p[start - 1] != '"')
			start--;
		end = len - 1;
	} else {
		while (start > 0 && (isalnum((unsigned char)p[start - 1]) || p[start - 1] == '_' || p[start - 1] == '$' ||
				     (unsigned char)p[start - 1] >= 0x80))
			start--;
	}
	size_t n = end - start < size - 1 ? end - start : size - 1;
	for (size_t i = 0; i < n; i++)
		out[i] = p[len - 1] == '"' ? p[start + i] : (char)tolower((unsigned char)p[start + i]);
	out[n] = '\0';
}

/* An isolation level named anywhere in a SET statement's text. */
static rw_isolation isolation_in(const char *p, size_t len)
{
	static const struct {
		const char *word;
		rw_isolation iso;
	} levels[] = {{"serializable", RW_ISO_SERIALIZABLE}, {"repeatable", RW_ISO_REPEATABLE_READ},
		      {"uncommitted", RW_ISO_READ_UNCOMMITTED}, {"committed", RW_ISO_READ_COMMITTED}};
	for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
		size_t w = strlen(levels[i].word);
		for (size_t j = 0; j + w <= len; j++)
			if (strncasecmp(p + j, levels[i].word, w) == 0)
				return levels[i].iso;
	}
	return RW_ISO_DEFAULT;
}

/* ---- lifecycle ---------------------------------------------------------- */

void px_sstate_init(px_sstate *st)
{
	memset(st, 0, sizeof(*st));
	st->tx = 'I';
	st->tx_read_only = -1;
	settings_init(&st->cur);
	settings_init(&st->local);
	settings_init(&st->at_start);
}

static void drop_savepoints(px_sstate *st, size_t keep)
{
	while (st->nsavepoints > keep) {
		px_savepoint *sp = &st->savepoints[--st->nsavepoints];
		settings_free(&sp->saved);
		settings_free(&sp->saved_local);
	}
}

void px_sstate_free(px_sstate *st)
{
	drop_savepoints(st, 0);
	pf_free(st->savepoints);
	settings_free(&st->cur);
	settings_free(&st->local);
	settings_free(&st->at_start);
}

void px_sstate_lost(px_sstate *st)
{
	st->cur.unknown = true;
	st->tx_wrote = true;
}

/* ---- transactions ------------------------------------------------------- */

/* The first answer of a transaction: remember what to roll back to. */
static void open_transaction(px_sstate *st)
{
	if (st->seg_open)
		return;
	st->seg_open = true;
	st->failed = false;
	settings_copy(&st->at_start, &st->cur);
	st->tx_isolation = st->cur.default_isolation;
	st->tx_read_only = st->cur.default_read_only;
}

/* The running transaction ended (committed unless rolled_back). */
static void close_transaction(px_sstate *st, bool rolled_back)
{
	if (rolled_back)
		settings_restore(&st->cur, &st->at_start);
	settings_free(&st->local);
	drop_savepoints(st, 0);
	st->seg_open = false;
	st->in_block = false;
	st->failed = false;
	st->tx_isolation = st->cur.default_isolation;
	st->tx_read_only = st->cur.default_read_only;
}

static bool may_write(rw_kind kind)
{
	return kind != RW_KIND_READ && kind != RW_KIND_TRANSACTION && kind != RW_KIND_SESSION &&
	       kind != RW_KIND_LISTEN;
}

bool px_sstate_is_write(const rw_shape *sh)
{
	if (!sh)
		return true;
	if (sh->kind == RW_KIND_COPY)
		return sh->nrelations == 0 || sh->relations[0].written;
	return may_write(sh->kind);
}

void px_sstate_sent(px_sstate *st, const rw_shape *sh)
{
	if (!sh) {
		px_sstate_lost(st);
		return;
	}
	if (px_sstate_is_write(sh))
		st->tx_wrote = true;
	if (sh->kind == RW_KIND_UNPARSED)
		st->cur.unknown = true;
}

static void savepoint_push(px_sstate *st, const char *name)
{
	if (st->nsavepoints == PX_SSTATE_MAX_SAVEPOINTS) {
		st->cur.unknown = true;
		return;
	}
	if (!st->savepoints)
		st->savepoints = pf_calloc(PX_SSTATE_MAX_SAVEPOINTS, sizeof(px_savepoint));
	px_savepoint *sp = &st->savepoints[st->nsavepoints++];
	snprintf(sp->name, sizeof(sp->name), "%s", name);
	settings_copy(&sp->saved, &st->cur);
	settings_copy(&sp->saved_local, &st->local);
}

static void savepoint_op(px_sstate *st, rw_tx_op op, const char *sql, size_t len)
{
	char name[PX_SSTATE_NAME_MAX];
	px_sql_last_name(sql, len, name, sizeof(name));
	if (op == RW_TX_SAVEPOINT) {
		savepoint_push(st, name);
		return;
	}
	size_t i = st->nsavepoints;
	while (i > 0 && strcmp(st->savepoints[i - 1].name, name) != 0)
		i--; /* the newest savepoint of that name */
	if (i == 0) {
		st->cur.unknown = true; /* one we did not track */
		return;
	}
	if (op == RW_TX_ROLLBACK_TO) {
		settings_restore(&st->cur, &st->savepoints[i - 1].saved);
		settings_copy(&st->local, &st->savepoints[i - 1].saved_local);
		drop_savepoints(st, i);
	} else {
		drop_savepoints(st, i - 1);
	}
}

static void transaction_done(px_sstate *st, const rw_shape *sh, const char *sql, size_t len, const char *tag)
{
	switch (sh->tx_op) {
	case RW_TX_BEGIN:
		if (st->in_block)
			break; /* "already a transaction in progress": a warning, nothing changes */
		st->in_block = true;
		if (sh->isolation != RW_ISO_DEFAULT)
			st->tx_isolation = sh->isolation;
		if (sh->read_only >= 0)
			st->tx_read_only = sh->read_only;
		break;
	case RW_TX_COMMIT:
	case RW_TX_ROLLBACK:
	case RW_TX_PREPARE: {
		rw_isolation iso = st->tx_isolation;
		int ro = st->tx_read_only;
		close_transaction(st, strncmp(tag, "ROLLBACK", 8) == 0);
		if (sh->chain) { /* a new block at once, with the same characteristics */
			open_transaction(st);
			st->in_block = true;
			st->tx_isolation = iso;
			st->tx_read_only = ro;
		}
		break;
	}
	case RW_TX_SAVEPOINT:
	case RW_TX_RELEASE:
	case RW_TX_ROLLBACK_TO:
		savepoint_op(st, sh->tx_op, sql, len);
		break;
	case RW_TX_SET:
		if (sh->isolation != RW_ISO_DEFAULT)
			st->tx_isolation = sh->isolation;
		if (sh->read_only >= 0)
			st->tx_read_only = sh->read_only;
		break;
	default:
		break;
	}
}

/* ---- settings ----------------------------------------------------------- */

/* RESET ALL keeps the role and session authorization (GUC_NO_RESET_ALL);
 * DISCARD ALL resets those too. */
static void keep_only_roles(px_settings *s, bool discard)
{
	px_settings keep;
	settings_init(&keep);
	keep.unknown = s->unknown;
	static const char *const kept[] = {"role", "session_authorization"};
	for (size_t i = 0; i < 2 && !discard; i++) {
		const char *v = settings_get(s, kept[i]);
		if (v)
			settings_put(&keep, kept[i], v, strlen(v));
	}
	settings_free(s);
	*s = keep;
}

static void reset_all(px_sstate *st, bool discard)
{
	keep_only_roles(&st->cur, discard);
	keep_only_roles(&st->local, discard);
	if (discard)
		st->cur.unknown = false; /* DISCARD ALL: the session is as new */
}

/* A boolean setting's value in a SET statement: 1, 0, or -1 when unclear. */
static int bool_in(const char *p, size_t len)
{
	static const struct {
		const char *word;
		int value;
	} words[] = {{"on", 1}, {"true", 1}, {"yes", 1}, {"1", 1}, {"off", 0}, {"false", 0}, {"no", 0}, {"0", 0}};
	/* The value follows the last '=' or " to ". */
	size_t start = 0;
	for (size_t i = 0; i < len; i++)
		if (p[i] == '=' || (i + 4 <= len && strncasecmp(p + i, " to ", 4) == 0))
			start = i + 1;
	while (start < len && (isspace((unsigned char)p[start]) || p[start] == '\''))
		start++;
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
		size_t w = strlen(words[i].word);
		if (start + w <= len && strncasecmp(p + start, words[i].word, w) == 0 &&
		    (start + w == len || !isalnum((unsigned char)p[start + w])))
			return words[i].value;
	}
	return -1;
}

/* Per-transaction parameters: like SET TRANSACTION, not session settings. */
static bool transaction_scoped(const char *name)
{
	return strcmp(name, "transaction_isolation") == 0 || strcmp(name, "transaction_read_only") == 0 ||
	       strcmp(name, "transaction_deferrable") == 0;
}

static void set_done(px_sstate *st, const rw_shape *sh, const char *p, size_t len, bool reset)
{
	if (transaction_scoped(sh->setting)) {
		if (strcmp(sh->setting, "transaction_isolation") == 0 && !reset)
			st->tx_isolation = isolation_in(p, len);
		else if (strcmp(sh->setting, "transaction_read_only") == 0 && !reset)
			st->tx_read_only = bool_in(p, len);
		return;
	}
	settings_remove(&st->local, sh->setting); /* a plain SET or RESET overrides SET LOCAL */
	if (reset)
		settings_remove(&st->cur, sh->setting);
	else
		settings_put(sh->set_local ? &st->local : &st->cur, sh->setting, p, len);
	if (strcmp(sh->setting, "default_transaction_isolation") == 0 && !sh->set_local)
		st->cur.default_isolation = reset ? RW_ISO_DEFAULT : isolation_in(p, len);
	else if (strcmp(sh->setting, "default_transaction_read_only") == 0 && !sh->set_local)
		st->cur.default_read_only = reset ? -1 : bool_in(p, len);
}

static void session_done(px_sstate *st, const rw_shape *sh, const char *sql, size_t len, const char *tag)
{
	if (!sh->setting) {
		st->cur.unknown = true; /* set_config with a computed name, or something we cannot name */
		return;
	}
	if (strcmp(sh->setting, "all") == 0) {
		reset_all(st, strncmp(tag, "DISCARD", 7) == 0);
		return;
	}
	if (strcmp(sh->setting, "plans") == 0 || strcmp(sh->setting, "sequences") == 0 ||
	    strcmp(sh->setting, "temp") == 0)
		return;
	if (strcmp(sh->setting, "session_characteristics") == 0) {
		if (sh->isolation != RW_ISO_DEFAULT)
			st->cur.default_isolation = sh->isolation;
		if (sh->read_only >= 0)
			st->cur.default_read_only = sh->read_only;
		return;
	}
	set_done(st, sh, sql, len, strcmp(tag, "RESET") == 0);
}

void px_sstate_done(px_sstate *st, const rw_shape *sh, const char *sql, size_t len, const char *tag)
{
	open_transaction(st);
	if (sh->kind == RW_KIND_TRANSACTION)
		transaction_done(st, sh, sql, len, tag);
	else if (sh->kind == RW_KIND_SESSION || sh->setting)
		session_done(st, sh, sql, len, tag);
}

void px_sstate_failed(px_sstate *st)
{
	open_transaction(st);
	st->failed = true;
}

void px_sstate_ready(px_sstate *st, char status, bool writes_pending)
{
	st->tx = status;
	if (status == 'I') {
		/* An implicit transaction, or a block whose end we did not see
		 * (COMMIT answered with an error): rolled back if anything failed. */
		if (st->seg_open)
			close_transaction(st, st->failed);
		st->tx_wrote = writes_pending;
	} else {
		open_transaction(st);
		st->in_block = true;
	}
}

/* ---- queries ------------------------------------------------------------ */

rw_isolation px_sstate_isolation(const px_sstate *st)
{
	return st->seg_open ? st->tx_isolation : st->cur.default_isolation;
}

const char *px_sstate_setting(const px_sstate *st, const char *name)
{
	const char *v = settings_get(&st->local, name);
	return v ? v : settings_get(&st->cur, name);
}

bool px_sstate_settings_changed(const px_sstate *st)
{
	return st->cur.len > 0 || st->local.len > 0 || st->cur.unknown ||
	       st->cur.default_isolation != RW_ISO_DEFAULT || st->cur.default_read_only >= 0;
}

static void render_settings(const px_settings *s, pf_sb *sb)
{
	pf_sb_append(sb, "{");
	size_t pos = 0;
	bool first = true;
	while (pos < s->len) {
		const char *n = s->blob + pos;
		const char *v = n + strlen(n) + 1;
		pf_sb_append(sb, first ? "" : ",");
		pf_sb_append_json_string(sb, n);
		pf_sb_append(sb, ":");
		pf_sb_append_json_string(sb, v);
		first = false;
		pos = (size_t)(v - s->blob) + strlen(v) + 1;
	}
	pf_sb_append(sb, "}");
}

void px_sstate_render_json(const px_sstate *st, pf_sb *sb)
{
	const char *tx = st->tx == 'T' ? "in_transaction" : st->tx == 'E' ? "failed_transaction" : "idle";
	pf_sb_appendf(sb, "{\"transaction\":\"%s\",\"wrote\":%s,\"isolation\":\"%s\",\"read_only\":%d,", tx,
		      st->tx_wrote ? "true" : "false", rw_isolation_name(px_sstate_isolation(st)),
		      st->seg_open ? st->tx_read_only : st->cur.default_read_only);
	pf_sb_appendf(sb, "\"savepoints\":%zu,\"settings_unknown\":%s,\"settings\":", st->nsavepoints,
		      st->cur.unknown ? "true" : "false");
	render_settings(&st->cur, sb);
	pf_sb_append(sb, ",\"local_settings\":");
	render_settings(&st->local, sb);
	pf_sb_append(sb, "}");
}
