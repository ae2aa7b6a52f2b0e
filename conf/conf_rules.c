/*
 * conf_rules.c — [cache.rules] entries (see conf_rules.h): the entry name
 * (table / shape / statement), SQL identifiers folded as PostgreSQL folds
 * them, the TTL or "off", a statement's text reduced to its libpg_query
 * fingerprint, and duplicates.
 */
#include "conf_rules.h"

#include <ctype.h>
#include <inttypes.h>
#include <pg_query.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf_value.h"

#define RULE_TTL_MIN INT64_C(1000)           /* 1s, like cache.default_ttl */
#define RULE_TTL_MAX (INT64_C(24) * 3600000) /* 24h */
#define FINGERPRINT_DIGITS 16

/* ---- names ---------------------------------------------------------------- */

/* One identifier at *p into out (CF_IDENT_MAX + 1 bytes): bare (folded to
 * lower case) or "quoted" ("" is a quote).  Advances *p.  0 or -1. */
static int parse_ident(const char **p, char *out, cf_error *why)
{
	const char *s = *p;
	size_t n = 0;
	if (*s == '"') {
		for (s++;; s++) {
			if (*s == '\0')
				return cf__error_set(why, "unterminated quoted name");
			if (*s == '"' && s[1] != '"')
				break;
			if (*s == '"')
				s++;
			if (n == CF_IDENT_MAX)
				return cf__error_set(why, "name longer than %d bytes", CF_IDENT_MAX);
			out[n++] = *s;
		}
		s++;
	} else {
		if (!(isalpha((unsigned char)*s) || *s == '_' || (unsigned char)*s >= 0x80))
			return cf__error_set(why, "expected a table name");
		for (; isalnum((unsigned char)*s) || *s == '_' || *s == '$' || (unsigned char)*s >= 0x80; s++) {
			if (n == CF_IDENT_MAX)
				return cf__error_set(why, "name longer than %d bytes", CF_IDENT_MAX);
			out[n++] = (char)tolower((unsigned char)*s);
		}
	}
	if (n == 0)
		return cf__error_set(why, "empty name");
	out[n] = '\0';
	*p = s;
	return 0;
}

/* "NAME" or "SCHEMA.NAME" after "table.". */
static int parse_table(const char *text, cf_cache_rule *r, cf_error *why)
{
	char first[CF_IDENT_MAX + 1];
	const char *p = text;
	if (parse_ident(&p, first, why) < 0)
		return -1;
	if (*p == '\0') {
		memcpy(r->table, first, sizeof(first));
		return 0;
	}
	if (*p != '.')
		return cf__error_set(why, "expected table.NAME or table.SCHEMA.NAME");
	p++;
	if (parse_ident(&p, r->table, why) < 0)
		return -1;
	if (*p != '\0')
		return cf__error_set(why, "expected table.NAME or table.SCHEMA.NAME");
	memcpy(r->schema, first, sizeof(first));
	return 0;
}

/* Exactly 16 hex digits after "shape.". */
static int parse_fingerprint(const char *text, uint64_t *out, cf_error *why)
{
	uint64_t v = 0;
	size_t n = 0;
	for (; isxdigit((unsigned char)text[n]); n++) {
		int c = tolower((unsigned char)text[n]);
		v = (v << 4) | (uint64_t)(isdigit(c) ? c - '0' : c - 'a' + 10);
	}
	if (n != FINGERPRINT_DIGITS || text[n] != '\0')
		return cf__error_set(why, "a shape is its fingerprint: %d hex digits, as /queries shows it",
				     FINGERPRINT_DIGITS);
	*out = v;
	return 0;
}

/* A label after "statement.": letters, digits, '_' and '-'. */
static int check_label(const char *text, cf_error *why)
{
	size_t n = 0;
	for (; isalnum((unsigned char)text[n]) || text[n] == '_' || text[n] == '-'; n++)
		;
	if (n == 0 || text[n] != '\0')
		return cf__error_set(why, "a statement entry is statement.LABEL (letters, digits, _ and -)");
	return 0;
}

/* ---- values --------------------------------------------------------------- */

/* "off" (0) or a duration of 1s to 24h; a bare number is seconds. */
static int parse_ttl(const char *text, int *ttl_ms, cf_error *why)
{
	int64_t v;
	if (strcasecmp(text, "off") == 0) {
		*ttl_ms = 0;
		return 0;
	}
	if (text[0] == '\0')
		return cf__error_set(why, "empty value: expected a TTL (30s, 5min ...) or off");
	if (cf__parse_duration(text, 1000, &v, why) < 0)
		return -1;
	if (v < RULE_TTL_MIN || v > RULE_TTL_MAX)
		return cf__error_set(why, "TTL %s is outside 1s to 24h (off: never cache)", text);
	*ttl_ms = (int)v;
	return 0;
}

/* The fingerprint of exactly one statement, as the analysis computes it. */
static int fingerprint_statement(const char *sql, uint64_t *out, cf_error *why)
{
	PgQuerySplitResult split = pg_query_split_with_parser(sql);
	int nstmts = split.error ? -1 : split.n_stmts;
	if (split.error)
		cf__error_set(why, "the statement does not parse: %s", split.error->message);
	pg_query_free_split_result(split);
	if (nstmts < 0)
		return -1;
	if (nstmts != 1)
		return cf__error_set(why, "expected exactly one statement, found %d", nstmts);
	PgQueryFingerprintResult fp = pg_query_fingerprint(sql);
	int rc = 0;
	if (fp.error)
		rc = cf__error_set(why, "the statement does not parse: %s", fp.error->message);
	else
		*out = fp.fingerprint;
	pg_query_free_fingerprint_result(fp);
	return rc;
}

/* "TTL STATEMENT" of a statement entry. */
static int parse_statement_value(const char *value, cf_cache_rule *r, cf_error *why)
{
	char ttl[32];
	size_t n = strcspn(value, " \t");
	const char *sql = value + n;
	while (*sql == ' ' || *sql == '\t')
		sql++;
	if (n == 0 || *sql == '\0')
		return cf__error_set(why, "expected \"TTL STATEMENT\", e.g. 10s SELECT * FROM t WHERE id = $1");
	if (n >= sizeof(ttl))
		return cf__error_set(why, "\"%.*s\" is not a TTL", (int)n, value);
	memcpy(ttl, value, n);
	ttl[n] = '\0';
	if (parse_ttl(ttl, &r->ttl_ms, why) < 0)
		return -1;
	return fingerprint_statement(sql, &r->fingerprint, why);
}

/* ---- entries -------------------------------------------------------------- */

static int parse_entry(const char *name, const char *value, cf_cache_rule *r, cf_error *why)
{
	if (strncmp(name, "table.", 6) == 0) {
		r->kind = CF_RULE_TABLE;
		return parse_table(name + 6, r, why) < 0 ? -1 : parse_ttl(value, &r->ttl_ms, why);
	}
	r->kind = CF_RULE_SHAPE;
	if (strncmp(name, "shape.", 6) == 0)
		return parse_fingerprint(name + 6, &r->fingerprint, why) < 0 ? -1 : parse_ttl(value, &r->ttl_ms, why);
	if (strncmp(name, "statement.", 10) == 0)
		return check_label(name + 10, why) < 0 ? -1 : parse_statement_value(value, r, why);
	return cf__error_set(why, "unknown entry: expected table.NAME, table.SCHEMA.NAME, shape.FINGERPRINT "
				  "or statement.LABEL");
}

static bool same_target(const cf_cache_rule *a, const cf_cache_rule *b)
{
	if (a->kind != b->kind)
		return false;
	if (a->kind == CF_RULE_SHAPE)
		return a->fingerprint == b->fingerprint;
	return strcmp(a->schema, b->schema) == 0 && strcmp(a->table, b->table) == 0;
}

int cf__rule_apply(cf_cache_rules *rules, const char *name, const char *value, int line, int dup_from,
		   cf_error *err)
{
	cf_cache_rule r;
	cf_error why;
	memset(&r, 0, sizeof(r));
	cf__error_clear(&why);
	r.line = line;
	if (parse_entry(name, value, &r, &why) < 0)
		return cf__error_set(err, "%s.%s: %s", CF_RULES_SECTION, name, why.message);
	for (int i = 0; i < rules->n; i++) {
		if (!same_target(&rules->rule[i], &r))
			continue;
		if (i >= dup_from)
			return cf__error_set(err, "%s.%s: the same %s as the entry on line %d", CF_RULES_SECTION, name,
					     r.kind == CF_RULE_TABLE ? "table" : "shape", rules->rule[i].line);
		rules->rule[i] = r;
		return 0;
	}
	if (rules->n >= CF_CACHE_RULES_MAX)
		return cf__error_set(err, "%s.%s: more than %d entries", CF_RULES_SECTION, name, CF_CACHE_RULES_MAX);
	rules->rule[rules->n++] = r;
	return 0;
}

void cf__rules_print(FILE *out)
{
	fprintf(out, "\n[cache.rules] entries (reload; on the command line: --set cache.rules.ENTRY=VALUE):\n"
		     "  table.NAME = TTL            statements reading NAME (any schema); TTL 1s..24h or off\n"
		     "  table.SCHEMA.NAME = TTL     statements reading SCHEMA.NAME (or an unqualified NAME)\n"
		     "  shape.FINGERPRINT = TTL     statements of that shape (16 hex digits, as /queries shows)\n"
		     "  statement.LABEL = TTL SQL   statements of the same shape as SQL (literals or $n)\n"
		     "  A shape entry wins over table entries; of several tables the shortest TTL wins and\n"
		     "  off wins over any TTL; a /* pgfold:cache */ hint wins over entries.\n");
}
