/*
 * policy.c — the result cache's cacheability rules (see policy.h): hint
 * comments, the statement's first keyword, its analysis flags and
 * functions, and the session facts.
 */
#include "policy.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../conf/conf.h"

#define QC_HINT_TTL_MAX 86400

static const char *const bypass_names[QC_BYPASS_COUNT] = {
	"cacheable", "off",       "hint",      "no_rule",  "rule",      "not_read",  "locking", "temp",
	"catalog",   "function",  "tx_failed", "isolation", "tx_wrote", "session", "role",
	"multi",     "busy",      "tables",    "relation",  "redis",     "too_large", "not_stored",
};

const char *qc_bypass_name(qc_bypass reason)
{
	return (unsigned)reason < QC_BYPASS_COUNT ? bypass_names[reason] : "?";
}

/* ---- hints ---------------------------------------------------------------- */

/* Is `word` at p (within end), followed by a non-identifier character? */
static bool word_at(const char *p, const char *end, const char *word)
{
	size_t n = strlen(word);
	if ((size_t)(end - p) < n || strncasecmp(p, word, n) != 0)
		return false;
	return p + n == end || !(isalnum((unsigned char)p[n]) || p[n] == '_');
}

/* ttl=N somewhere in [p, end): N, or 0 when absent or out of range. */
static int hint_ttl(const char *p, const char *end)
{
	for (; p + 4 < end; p++) {
		if (strncasecmp(p, "ttl=", 4) != 0)
			continue;
		long v = 0;
		const char *q = p + 4;
		while (q < end && isdigit((unsigned char)*q) && v <= QC_HINT_TTL_MAX)
			v = v * 10 + (*q++ - '0');
		return q > p + 4 && v >= 1 && v <= QC_HINT_TTL_MAX ? (int)v : 0;
	}
	return 0;
}

/* One comment body [p, end): a hint or NONE. */
static qc_hint comment_hint(const char *p, const char *end)
{
	qc_hint h = {QC_HINT_NONE, 0};
	while (p < end && isspace((unsigned char)*p))
		p++;
	if (!word_at(p, end, "pgfold") || p + 7 > end || p[6] != ':')
		return h;
	p += 7;
	if (word_at(p, end, "nocache")) {
		h.kind = QC_HINT_NOCACHE;
	} else if (word_at(p, end, "cache")) {
		h.kind = QC_HINT_CACHE;
		h.ttl_s = hint_ttl(p + 5, end);
	}
	return h;
}

qc_hint qc_hint_parse(const char *sql, size_t len)
{
	qc_hint best = {QC_HINT_NONE, 0};
	const char *end = sql + len;
	for (const char *p = sql; p + 1 < end; p++) {
		if (p[0] != '/' || p[1] != '*')
			continue;
		const char *body = p + 2;
		const char *close = body;
		while (close + 1 < end && !(close[0] == '*' && close[1] == '/'))
			close++;
		if (close + 1 >= end)
			break; /* unterminated: PostgreSQL rejects the text anyway */
		qc_hint h = comment_hint(body, close);
		if (h.kind == QC_HINT_NOCACHE)
			return h; /* opting out wins */
		if (h.kind == QC_HINT_CACHE && best.kind == QC_HINT_NONE)
			best = h;
		p = close + 1;
	}
	return best;
}

/* ---- the statement -------------------------------------------------------- */

/* The statement's first keyword, past blanks and comments. */
static const char *first_word(const char *p, const char *end)
{
	while (p < end) {
		if (isspace((unsigned char)*p) || *p == '(') {
			p++;
		} else if (p + 1 < end && p[0] == '-' && p[1] == '-') {
			while (p < end && *p != '\n')
				p++;
		} else if (p + 1 < end && p[0] == '/' && p[1] == '*') {
			const char *c = p + 2;
			while (c + 1 < end && !(c[0] == '*' && c[1] == '/'))
				c++;
			p = c + 2;
		} else {
			return p;
		}
	}
	return end;
}

static bool query_form(const qc_policy_input *in)
{
	if (in->stmt_location < 0 || in->stmt_length <= 0 || (size_t)in->stmt_location >= in->sql_len)
		return false;
	const char *p = in->sql + in->stmt_location;
	size_t avail = in->sql_len - (size_t)in->stmt_location;
	const char *end = p + ((size_t)in->stmt_length < avail ? (size_t)in->stmt_length : avail);
	p = first_word(p, end);
	return word_at(p, end, "select") || word_at(p, end, "with") || word_at(p, end, "values") ||
	       word_at(p, end, "table");
}

static bool immutable_only(const qc_policy_input *in)
{
	const rw_shape *sh = in->shape;
	for (size_t i = 0; i < sh->nfunctions; i++)
		if (!in->volatility || in->volatility(in->volatility_ctx, sh->functions[i]) != 'i')
			return false;
	return true;
}

static qc_bypass statement_reason(const qc_policy_input *in)
{
	const rw_shape *sh = in->shape;
	if (sh && (sh->flags & RW_FOR_UPDATE))
		return QC_BYPASS_LOCKING; /* the analysis counts it a write: say why */
	if (!sh || sh->kind != RW_KIND_READ || sh->setting || (sh->flags & (RW_SELECT_INTO | RW_WRITABLE_CTE)) ||
	    !query_form(in))
		return QC_BYPASS_NOT_READ;
	if (sh->flags & RW_FOR_UPDATE)
		return QC_BYPASS_LOCKING;
	if (sh->flags & RW_TOUCHES_TEMP)
		return QC_BYPASS_TEMP;
	if (sh->flags & RW_TOUCHES_CATALOG)
		return QC_BYPASS_CATALOG;
	if (!immutable_only(in))
		return QC_BYPASS_FUNCTION;
	return QC_CACHEABLE;
}

static qc_bypass session_reason(const qc_session_facts *f)
{
	if (f->tx_status == 'E')
		return QC_BYPASS_TX_FAILED;
	if (f->isolation == RW_ISO_REPEATABLE_READ || f->isolation == RW_ISO_SERIALIZABLE)
		return QC_BYPASS_ISOLATION;
	if (f->tx_wrote)
		return QC_BYPASS_TX_WROTE;
	if (f->unknown)
		return QC_BYPASS_SESSION;
	if (f->role_changed)
		return QC_BYPASS_ROLE;
	return QC_CACHEABLE;
}

/* ---- [cache.rules] ------------------------------------------------------- */

enum { RULE_NONE = -1, RULE_OFF = 0 }; /* rules_ttl(): or a TTL in ms */

static bool table_matches(const cf_cache_rule *r, const rw_relation *rel)
{
	if (rel->written || strcmp(rel->name, r->table) != 0)
		return false;
	return !r->schema[0] || !rel->schema || strcmp(rel->schema, r->schema) == 0;
}

/* The TTL the deciding entry gives, RULE_OFF, or RULE_NONE (see policy.h). */
static int rules_ttl(const cf_cache_rules *rules, const rw_shape *sh)
{
	int ttl = RULE_NONE;
	bool off = false;
	if (!rules || !sh || sh->kind == RW_KIND_UNPARSED)
		return RULE_NONE;
	for (int i = 0; i < rules->n; i++) {
		const cf_cache_rule *r = &rules->rule[i];
		if (r->kind == CF_RULE_SHAPE && r->fingerprint == sh->fingerprint)
			return r->ttl_ms; /* entries have distinct shapes: this one decides */
		if (r->kind != CF_RULE_TABLE)
			continue;
		for (size_t j = 0; j < sh->nrelations; j++) {
			if (!table_matches(r, &sh->relations[j]))
				continue;
			if (r->ttl_ms == RULE_OFF)
				off = true;
			else if (ttl == RULE_NONE || r->ttl_ms < ttl)
				ttl = r->ttl_ms;
		}
	}
	return off ? RULE_OFF : ttl;
}

/* The TTL from the hint and the entries, or the reason there is none. */
static qc_decision selection(const qc_policy_input *in, const qc_hint *h)
{
	qc_decision d = {QC_CACHEABLE, in->default_ttl_ms};
	int rule = rules_ttl(in->rules, in->shape);
	if (h->kind == QC_HINT_CACHE) {
		if (h->ttl_s > 0)
			d.ttl_ms = h->ttl_s * 1000;
		else if (rule > 0)
			d.ttl_ms = rule;
	} else if (rule == RULE_OFF) {
		d.reason = QC_BYPASS_RULE;
	} else if (rule > 0) {
		d.ttl_ms = rule;
	} else if (in->mode == CF_CACHE_RULES) {
		d.reason = QC_BYPASS_NO_RULE;
	}
	return d;
}

qc_decision qc_policy_decide(const qc_policy_input *in)
{
	qc_decision d = {QC_BYPASS_OFF, 0};
	if (in->mode != CF_CACHE_RULES && in->mode != CF_CACHE_AUTO)
		return d;
	qc_hint h = qc_hint_parse(in->sql, in->sql_len);
	if (h.kind == QC_HINT_NOCACHE) {
		d.reason = QC_BYPASS_HINT;
		return d;
	}
	d = selection(in, &h);
	if (d.reason != QC_CACHEABLE)
		return d;
	d.reason = statement_reason(in);
	if (d.reason == QC_CACHEABLE)
		d.reason = session_reason(&in->session);
	return d;
}
