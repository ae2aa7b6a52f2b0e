/*
 * conf.c — the key table and everything it drives: defaults, applying one
 * value to one key, INI files through libinih, cross-key checks, carrying
 * restart-only keys over a reload, and the --help reference.
 *
 * Every key is one row of `keys[]` (section, name, type, default text, bounds,
 * reloadable, offset into cf_config, help).  Defaults are parsed from their
 * text by the same code as the file, so the reference, the example pgfold.ini
 * and the running values cannot drift apart.
 *
 * INI files go through ini_parse_stream() with our own line reader, because
 * Debian's libinih is built without INI_HANDLER_LINENO and with
 * INI_ALLOW_MULTILINE.  The reader:
 *   - counts lines, so the handler knows the line of the key it is given;
 *   - strips leading blanks, so an indented "key = value" stays a key instead
 *     of becoming a continuation of the previous value;
 *   - refuses lines longer than inih's buffer (inih would split them);
 *   - refuses an unknown [section] on its own line (inih never reports a
 *     section that has no keys).
 * A file is applied to a copy, so on any error the caller's config is as it
 * was.  The first error stops the parse.
 */
#include "conf.h"

#include <errno.h>
#include <ini.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../common/alloc.h"
#include "../common/log.h"
#include "conf_rules.h"
#include "conf_value.h"

typedef enum cf_type {
	CF_T_ADDR,     /* cf_addr */
	CF_T_INT,      /* int */
	CF_T_SIZE,     /* size_t, bytes */
	CF_T_DURATION, /* int, milliseconds */
	CF_T_LOGLEVEL, /* int, a pf_log_level */
	CF_T_ENUM,     /* int, the index of the value in cf_key.choices */
	CF_T_BOOL,     /* bool */
	CF_T_STRING,   /* char[CF_STRING_MAX + 1], may be empty */
} cf_type;

#define CF_STRING_MAX 127 /* bytes; the fields are char[128] */

/* Bits of cf_addr_kind an address key accepts. */
enum { ADDR_OFF = 1u << CF_ADDR_OFF, ADDR_TCP = 1u << CF_ADDR_TCP, ADDR_UNIX = 1u << CF_ADDR_UNIX };

typedef struct cf_key {
	const char *section;
	const char *name;
	cf_type type;
	const char *def;   /* default, written as in the file */
	int64_t min, max;  /* INT, SIZE (bytes), DURATION (ms) */
	int64_t unit_ms;   /* DURATION: what a bare number counts */
	int port;          /* ADDR: port when the text has none */
	unsigned kinds;    /* ADDR: accepted ADDR_* bits */
	const char *const *choices; /* ENUM: the values, NULL-terminated */
	bool reloadable;   /* SIGHUP applies it; otherwise it needs a restart */
	size_t offset;     /* of the field in cf_config */
	const char *help;  /* one line for --help */
} cf_key;

/* offsetof() that does not compile unless the field has type T. */
#define FIELD(f, T) (offsetof(cf_config, f) + 0 * sizeof(_Generic(((cf_config *)0)->f, T : 1)))

#define RELOAD true
#define RESTART false
#define KB (INT64_C(1) << 10)
#define GB (INT64_C(1) << 30)
#define SEC INT64_C(1000)
#define HOUR (3600 * SEC)

#define K_ADDR(sec, key, dflt, port_, kinds_, reload, text)                                                    \
	{.section = sec, .name = #key, .type = CF_T_ADDR, .def = dflt, .port = port_, .kinds = kinds_,         \
	 .reloadable = reload, .offset = FIELD(key, cf_addr), .help = text}
#define K_INT(key, dflt, lo, hi, reload, text)                                                                 \
	{.section = "pgfold", .name = #key, .type = CF_T_INT, .def = dflt, .min = lo, .max = hi,              \
	 .reloadable = reload, .offset = FIELD(key, int), .help = text}
#define K_SIZE(key, dflt, lo, hi, reload, text)                                                                \
	{.section = "pgfold", .name = #key, .type = CF_T_SIZE, .def = dflt, .min = lo, .max = hi,             \
	 .reloadable = reload, .offset = FIELD(key, size_t), .help = text}
#define K_DURATION(key, field, dflt, unit, lo, hi, reload, text)                                               \
	{.section = "pgfold", .name = #key, .type = CF_T_DURATION, .def = dflt, .min = lo, .max = hi,         \
	 .unit_ms = unit, .reloadable = reload, .offset = FIELD(field, int), .help = text}
#define K_STRING(key, dflt, reload, text)                                                                      \
	{.section = "pgfold", .name = #key, .type = CF_T_STRING, .def = dflt, .reloadable = reload,           \
	 .offset = FIELD(key, char *), .help = text}
#define K_INT_IN(sec, key, dflt, lo, hi, reload, text)                                                       \
	{.section = sec, .name = #key, .type = CF_T_INT, .def = dflt, .min = lo, .max = hi,                   \
	 .reloadable = reload, .offset = FIELD(key, int), .help = text}
#define K_BOOL(key, dflt, reload, text)                                                                        \
	{.section = "pgfold", .name = #key, .type = CF_T_BOOL, .def = dflt, .reloadable = reload,             \
	 .offset = FIELD(key, bool), .help = text}
/* Keys of other sections, stored in a field named differently from the key. */
#define K_INT_F(sec, key, field, dflt, lo, hi, reload, text)                                                   \
	{.section = sec, .name = #key, .type = CF_T_INT, .def = dflt, .min = lo, .max = hi,                   \
	 .reloadable = reload, .offset = FIELD(field, int), .help = text}
#define K_SIZE_F(sec, key, field, dflt, lo, hi, reload, text)                                                  \
	{.section = sec, .name = #key, .type = CF_T_SIZE, .def = dflt, .min = lo, .max = hi,                  \
	 .reloadable = reload, .offset = FIELD(field, size_t), .help = text}
#define K_ENUM_F(sec, key, field, dflt, names, reload, text)                                                   \
	{.section = sec, .name = #key, .type = CF_T_ENUM, .def = dflt, .choices = names, .reloadable = reload, \
	 .offset = FIELD(field, int), .help = text}
#define K_DURATION_F(sec, key, field, dflt, unit, lo, hi, reload, text)                                        \
	{.section = sec, .name = #key, .type = CF_T_DURATION, .def = dflt, .min = lo, .max = hi,              \
	 .unit_ms = unit, .reloadable = reload, .offset = FIELD(field, int), .help = text}
#define K_STRING_F(sec, key, field, dflt, reload, text)                                                        \
	{.section = sec, .name = #key, .type = CF_T_STRING, .def = dflt, .reloadable = reload,                \
	 .offset = FIELD(field, char *), .help = text}
#define K_LOGLEVEL(key, dflt, reload, text)                                                                    \
	{.section = "pgfold", .name = #key, .type = CF_T_LOGLEVEL, .def = dflt, .reloadable = reload,         \
	 .offset = FIELD(key, int), .help = text}

static const char *const nplusone_modes[] = {"off", "detect", "rewrite", NULL};
static const char *const cache_modes[] = {"off", "rules", "auto", NULL};

static const cf_key keys[] = {
	K_ADDR("pgfold", listen, "127.0.0.1:6432", 6432, ADDR_TCP, RESTART,
	       "address clients connect to: host:port or [v6]:port"),
	K_ADDR("pgfold", backend, "127.0.0.1:5432", 5432, ADDR_TCP | ADDR_UNIX, RELOAD,
	       "PostgreSQL server: host:port, [v6]:port, or a socket directory /dir[:port]"),
	K_ADDR("pgfold", admin, "127.0.0.1:6433", 6433, ADDR_TCP | ADDR_OFF, RESTART,
	       "admin HTTP endpoint (stats, metrics): host:port, [v6]:port, or off"),
	K_INT(listen_backlog, "512", 1, 65535, RESTART, "listen(2) backlog of the client socket"),
	K_INT(max_client_conn, "1000", 1, 100000, RELOAD, "client connections open at once; more are refused"),
	K_SIZE(max_message_bytes, "1GB", KB, GB, RELOAD, "largest protocol message accepted from a client"),
	K_SIZE(buffer_high_bytes, "256kB", KB, GB, RELOAD,
	       "stop reading a peer once the other side's write queue passes this"),
	K_SIZE(buffer_low_bytes, "64kB", 1, GB, RELOAD,
	       "resume reading once that queue is below this; must be less than buffer_high_bytes"),
	K_DURATION(connect_timeout, connect_timeout_ms, "5s", SEC, 1, HOUR, RELOAD,
		   "backend connect plus its startup must finish within this"),
	K_DURATION(client_login_timeout, client_login_timeout_ms, "60s", SEC, 1, HOUR, RELOAD,
		   "a client must finish startup and login within this"),
	K_DURATION(shutdown_timeout, shutdown_timeout_ms, "30s", SEC, 0, 24 * HOUR, RELOAD,
		   "on SIGTERM, how long running queries may take before pgfold exits"),
	K_LOGLEVEL(log_level, "info", RELOAD, "error, warn, info or debug"),
	K_STRING(control_user, "", RELOAD,
		 "role for pgfold's catalog connections (function volatility); empty: the client's user"),
	K_STRING(control_password, "", RELOAD, "password of control_user; empty: none"),
	K_BOOL(analysis, "on", RELOAD,
	       "analyse statements (new sessions); off: pure pass-through, no session state or /queries"),
	K_INT(analysis_cache_entries, "10000", 0, 10000000, RESTART,
	      "statement texts (and, separately, shapes) whose analysis is cached; 0 disables the caches"),
	K_SIZE(analysis_cache_bytes, "64MB", 0, GB, RESTART, "memory the analysis caches may account for"),
	K_INT_IN("stats", max_shapes, "5000", 0, 1000000, RESTART,
		 "statement shapes /queries keeps (least used evicted); 0 disables it"),
	K_ENUM_F("nplusone", mode, nplusone_mode, "rewrite", nplusone_modes, RELOAD,
		 "N+1 handling: off, detect (report patterns only) or rewrite (fold children into batches)"),
	K_INT_F("nplusone", min_repeats, nplusone_min_repeats, "3", 2, 1000, RELOAD,
		"children of one parent result that confirm a pattern"),
	K_INT_F("nplusone", max_parent_rows, nplusone_max_parent_rows, "1000", 1, 1000000, RELOAD,
		"rows of a result kept per session as a possible parent"),
	K_SIZE_F("nplusone", max_parent_bytes, nplusone_max_parent_bytes, "1MB", KB, GB, RELOAD,
		 "key values kept per session over its recent results"),
	K_INT_F("nplusone", max_patterns, nplusone_max_patterns, "1000", 1, 1000000, RESTART,
		"patterns kept process-wide"),
	K_INT_F("nplusone", batch_size, nplusone_batch_size, "500", 2, 10000, RELOAD,
		"key values fetched by one batched statement"),
	K_INT_F("nplusone", max_staleness_ms, nplusone_max_staleness_ms, "1000", 0, 3600000, RELOAD,
		"how long prefetched answers may be used (outside REPEATABLE READ / SERIALIZABLE blocks)"),
	K_SIZE_F("nplusone", max_buffer_bytes, nplusone_max_buffer_bytes, "8MB", KB, GB, RELOAD,
		 "prefetched answers kept per session; over it children are relayed unchanged"),
	K_SIZE_F("nplusone", max_total_buffer_bytes, nplusone_max_total_buffer_bytes, "256MB", KB, 64 * GB,
		 RELOAD, "prefetched answers kept by all sessions together; over it children are relayed unchanged"),
	K_ADDR("cache", redis, "127.0.0.1:6379", 6379, ADDR_TCP | ADDR_OFF, RESTART,
	       "Redis for the query cache: host:port, [v6]:port, or off"),
	K_INT_F("cache", redis_db, cache_redis_db, "0", 0, 65535, RESTART,
		"Redis database number, SELECTed after connecting"),
	K_STRING_F("cache", redis_user, cache_redis_user, "", RESTART,
		   "Redis 6 ACL user for AUTH (with redis_password); empty: the default user"),
	K_STRING_F("cache", redis_password, cache_redis_password, "", RESTART,
		   "password sent with AUTH after connecting; empty: no AUTH"),
	K_INT_F("cache", redis_connections, cache_redis_connections, "1", 1, 16, RESTART,
		"connections to Redis, used round-robin (one circuit breaker for all)"),
	K_ENUM_F("cache", mode, cache_mode, "off", cache_modes, RELOAD,
		 "result cache: off, rules (what [cache.rules] or a /* pgfold:cache */ hint selects) or auto "
		 "(every cacheable read)"),
	K_DURATION_F("cache", default_ttl, cache_default_ttl_ms, "60s", SEC, SEC, 24 * HOUR, RELOAD,
		     "how long a cached result lives unless a [cache.rules] entry or its hint gives a ttl"),
	K_SIZE_F("cache", max_entry_bytes, cache_max_entry_bytes, "1MB", 64, 512 * (KB << 10), RELOAD,
		 "larger results are not cached"),
	K_SIZE_F("cache", near_cache_bytes, cache_near_cache_bytes, "64MB", 0, 64 * GB, RELOAD,
		 "memory for results kept in pgfold itself (the near cache, checked against Redis's bump log "
		 "before each use); 0: every hit is read from Redis"),
	K_DURATION_F("cache", timeout_ms, cache_timeout_ms, "5ms", 1, 1, 60 * SEC, RELOAD,
		     "a cache lookup not answered within this goes to PostgreSQL (fail open)"),
};

#define N_KEYS (sizeof(keys) / sizeof(keys[0]))

/* ---- the table ---------------------------------------------------------- */

static bool section_known(const char *section, size_t len)
{
	if (len == strlen(CF_RULES_SECTION) && strncmp(section, CF_RULES_SECTION, len) == 0)
		return true;
	for (size_t i = 0; i < N_KEYS; i++)
		if (strlen(keys[i].section) == len && strncmp(keys[i].section, section, len) == 0)
			return true;
	return false;
}

static const cf_key *key_find(const char *section, size_t section_len, const char *name)
{
	for (size_t i = 0; i < N_KEYS; i++) {
		const cf_key *k = &keys[i];
		if (strlen(k->section) == section_len && strncmp(k->section, section, section_len) == 0 &&
		    strcmp(k->name, name) == 0)
			return k;
	}
	return NULL;
}

/* "max_client_conn" for [pgfold], "cache.redis" for the other sections. */
static const char *key_label(const cf_key *k, char *buf, size_t size)
{
	if (strcmp(k->section, "pgfold") == 0)
		snprintf(buf, size, "%s", k->name);
	else
		snprintf(buf, size, "%s.%s", k->section, k->name);
	return buf;
}

/* ---- typed access through the offset ------------------------------------ */

static void *field_of(cf_config *cfg, const cf_key *k)
{
	return (char *)cfg + k->offset;
}

static const void *cfield_of(const cf_config *cfg, const cf_key *k)
{
	return (const char *)cfg + k->offset;
}

static size_t field_size(const cf_key *k)
{
	switch (k->type) {
	case CF_T_ADDR:
		return sizeof(cf_addr);
	case CF_T_SIZE:
		return sizeof(size_t);
	case CF_T_BOOL:
		return sizeof(bool);
	case CF_T_STRING:
		return CF_STRING_MAX + 1;
	default:
		return sizeof(int);
	}
}

static int64_t number_get(const cf_config *cfg, const cf_key *k)
{
	switch (k->type) {
	case CF_T_SIZE:
		return (int64_t) * (const size_t *)cfield_of(cfg, k);
	case CF_T_BOOL:
		return *(const bool *)cfield_of(cfg, k);
	default:
		return *(const int *)cfield_of(cfg, k);
	}
}

/* v is within the key's bounds, which fit the field's type. */
static void number_put(cf_config *cfg, const cf_key *k, int64_t v)
{
	switch (k->type) {
	case CF_T_SIZE:
		*(size_t *)field_of(cfg, k) = (size_t)v;
		break;
	case CF_T_BOOL:
		*(bool *)field_of(cfg, k) = v != 0;
		break;
	default:
		*(int *)field_of(cfg, k) = (int)v;
		break;
	}
}

static bool addr_equal(const cf_addr *a, const cf_addr *b)
{
	return a->kind == b->kind && a->port == b->port && strcmp(a->host, b->host) == 0 &&
	       strcmp(a->path, b->path) == 0;
}

static bool key_equal(const cf_config *a, const cf_config *b, const cf_key *k)
{
	if (k->type == CF_T_ADDR)
		return addr_equal(cfield_of(a, k), cfield_of(b, k));
	if (k->type == CF_T_STRING)
		return strcmp(cfield_of(a, k), cfield_of(b, k)) == 0;
	return number_get(a, k) == number_get(b, k);
}

/* ---- applying one value (each writes the field only on success) --------- */

static void format_bound(const cf_key *k, int64_t v, char *buf, size_t size)
{
	if (k->type == CF_T_SIZE)
		cf__format_size(v, buf, size);
	else if (k->type == CF_T_DURATION)
		cf__format_duration(v, buf, size);
	else
		snprintf(buf, size, "%lld", (long long)v);
}

static int apply_number(cf_config *cfg, const cf_key *k, const char *text, cf_error *why)
{
	int64_t v;
	char bound[32];
	int rc = k->type == CF_T_SIZE       ? cf__parse_size(text, &v, why)
		 : k->type == CF_T_DURATION ? cf__parse_duration(text, k->unit_ms, &v, why)
					    : cf__parse_int(text, &v, why);
	if (rc < 0)
		return -1;
	if (v < k->min) {
		format_bound(k, k->min, bound, sizeof(bound));
		return cf__error_set(why, "value %s is below the minimum %s", text, bound);
	}
	if (v > k->max) {
		format_bound(k, k->max, bound, sizeof(bound));
		return cf__error_set(why, "value %s is above the maximum %s", text, bound);
	}
	number_put(cfg, k, v);
	return 0;
}

static int apply_addr(cf_config *cfg, const cf_key *k, const char *text, cf_error *why)
{
	cf_addr a;
	if (cf_addr_parse(text, k->port, &a, why) < 0)
		return -1;
	if (!(k->kinds & (1u << a.kind))) {
		if (a.kind == CF_ADDR_OFF)
			return cf__error_set(why, "cannot be off");
		return cf__error_set(why, "\"%s\": a unix socket is not supported here, use host:port", text);
	}
	*(cf_addr *)field_of(cfg, k) = a;
	return 0;
}

static int apply_enum(cf_config *cfg, const cf_key *k, const char *text, cf_error *why)
{
	for (int i = 0; k->choices[i]; i++) {
		if (strcasecmp(k->choices[i], text) == 0) {
			number_put(cfg, k, i);
			return 0;
		}
	}
	char list[128] = "";
	for (int i = 0; k->choices[i]; i++)
		snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i ? ", " : "", k->choices[i]);
	return cf__error_set(why, "\"%s\" is not one of %s", text, list);
}

static int apply_other(cf_config *cfg, const cf_key *k, const char *text, cf_error *why)
{
	if (k->type == CF_T_LOGLEVEL) {
		int level = pf_log_level_parse(text);
		if (level < 0)
			return cf__error_set(why, "\"%s\" is not a log level (error, warn, info or debug)", text);
		number_put(cfg, k, level);
		return 0;
	}
	bool b;
	if (cf__parse_bool(text, &b, why) < 0)
		return -1;
	number_put(cfg, k, b);
	return 0;
}

/* Any text up to CF_STRING_MAX bytes, the empty string included.  The value
 * is never echoed in the error: it may be a password. */
static int apply_string(cf_config *cfg, const cf_key *k, const char *text, cf_error *why)
{
	size_t len = strlen(text);
	if (len > CF_STRING_MAX)
		return cf__error_set(why, "value is longer than %d bytes", CF_STRING_MAX);
	memcpy(field_of(cfg, k), text, len + 1);
	return 0;
}

/* Parse text for k and store it; on error err->message is "key: reason". */
static int key_apply(cf_config *cfg, const cf_key *k, const char *text, cf_error *err)
{
	cf_error why;
	char label[64];
	int rc;
	cf__error_clear(&why);
	if (k->type == CF_T_STRING)
		rc = apply_string(cfg, k, text, &why);
	else if (text[0] == '\0')
		rc = cf__error_set(&why, "empty value");
	else if (k->type == CF_T_ADDR)
		rc = apply_addr(cfg, k, text, &why);
	else if (k->type == CF_T_LOGLEVEL || k->type == CF_T_BOOL)
		rc = apply_other(cfg, k, text, &why);
	else if (k->type == CF_T_ENUM)
		rc = apply_enum(cfg, k, text, &why);
	else
		rc = apply_number(cfg, k, text, &why);
	if (rc < 0)
		return cf__error_set(err, "%s: %s", key_label(k, label, sizeof(label)), why.message);
	return 0;
}

/* ---- snapshots ---------------------------------------------------------- */

cf_config *cf_config_new(void)
{
	cf_config *cfg = pf_calloc(1, sizeof(*cfg));
	cf_error err;
	for (size_t i = 0; i < N_KEYS; i++) {
		if (key_apply(cfg, &keys[i], keys[i].def, &err) < 0) {
			/* A bug in keys[], caught by the unit tests. */
			fprintf(stderr, "pgfold: bad built-in default: %s\n", err.message);
			abort();
		}
	}
	return cfg;
}

void cf_config_free(cf_config *cfg)
{
	pf_free(cfg);
}

cf_config *cf_config_copy(const cf_config *cfg)
{
	cf_config *copy = pf_malloc(sizeof(*copy));
	*copy = *cfg;
	return copy;
}

int cf_config_set(cf_config *cfg, const char *key, const char *value, cf_error *err)
{
	cf__error_clear(err);
	if (strncmp(key, CF_RULES_SECTION ".", sizeof(CF_RULES_SECTION)) == 0)
		return cf__rule_apply(&cfg->cache_rules, key + sizeof(CF_RULES_SECTION), value, 0, INT32_MAX, err);
	const char *dot = strchr(key, '.');
	const char *name = dot ? dot + 1 : key;
	const cf_key *k = dot ? key_find(key, (size_t)(dot - key), name) : key_find("pgfold", 6, name);
	if (k)
		return key_apply(cfg, k, value, err);
	for (size_t i = 0; i < N_KEYS && !dot; i++) {
		if (strcmp(keys[i].name, key) == 0)
			return cf__error_set(err, "unknown key \"%s\"; did you mean %s.%s?", key, keys[i].section,
					     key);
	}
	return cf__error_set(err, "unknown key \"%s\"", key);
}

int cf_config_validate(const cf_config *cfg, cf_error *err)
{
	char a[300], b[300];
	cf__error_clear(err);
	if (cfg->buffer_low_bytes >= cfg->buffer_high_bytes) {
		cf__format_size((int64_t)cfg->buffer_low_bytes, a, sizeof(a));
		cf__format_size((int64_t)cfg->buffer_high_bytes, b, sizeof(b));
		return cf__error_set(err, "buffer_low_bytes: %s must be below buffer_high_bytes (%s)", a, b);
	}
	if (cfg->admin.kind != CF_ADDR_OFF && addr_equal(&cfg->admin, &cfg->listen))
		return cf__error_set(err, "admin: %s is also the listen address",
				     cf_addr_format(&cfg->admin, a, sizeof(a)));
	return 0;
}

void cf_config_carry_fixed(const cf_config *running, cf_config *next, void (*report)(const char *key, void *ctx),
			   void *ctx)
{
	char label[64];
	for (size_t i = 0; i < N_KEYS; i++) {
		const cf_key *k = &keys[i];
		if (k->reloadable || key_equal(running, next, k))
			continue;
		memcpy(field_of(next, k), cfield_of(running, k), field_size(k));
		if (report)
			report(key_label(k, label, sizeof(label)), ctx);
	}
}

/* ---- --help and errors -------------------------------------------------- */

void cf_keys_print(FILE *out)
{
	char label[64];
	fprintf(out, "Configuration keys (a bare name is in [pgfold]; \"restart\" keys ignore SIGHUP):\n");
	fprintf(out, "  %-22s %-16s %-8s %s\n", "key", "default", "on HUP", "meaning");
	for (size_t i = 0; i < N_KEYS; i++) {
		const cf_key *k = &keys[i];
		fprintf(out, "  %-22s %-16s %-8s %s%s\n", key_label(k, label, sizeof(label)),
			k->type == CF_T_STRING && !k->def[0] ? "\"\"" : k->def,
			k->reloadable ? "reload" : "restart", k->help,
			k->type != CF_T_DURATION ? ""
			: k->unit_ms == SEC      ? " (ms, s, min, h; a bare number is seconds)"
						 : " (ms, s, min, h; a bare number is milliseconds)");
	}
	cf__rules_print(out);
}

const char *cf_error_format(const cf_error *err, char *buf, size_t size)
{
	if (err->file[0] && err->line > 0)
		snprintf(buf, size, "%s:%d: %s", err->file, err->line, err->message);
	else if (err->file[0])
		snprintf(buf, size, "%s: %s", err->file, err->message);
	else
		snprintf(buf, size, "%s", err->message);
	return buf;
}

/* ---- INI files ---------------------------------------------------------- */

typedef struct ini_ctx {
	FILE *fp;
	cf_config cfg; /* the copy being applied */
	int line;      /* lines handed to inih so far: the one being parsed */
	int err_line;  /* 0, or the line of the first error found here */
	int rules_before; /* [cache.rules] entries the config had before this file */
	cf_error err;  /* its message */
} ini_ctx;

/* fgets() filled the buffer without reaching the end of the line. */
static bool line_too_long(FILE *fp, const char *str, int num)
{
	size_t len = strlen(str);
	if ((len > 0 && str[len - 1] == '\n') || len + 1 < (size_t)num)
		return false;
	int c = fgetc(fp);
	if (c == EOF)
		return false;
	ungetc(c, fp);
	return true;
}

/* Drop a UTF-8 BOM on line 1, then leading blanks. */
static void strip_leading(char *str, int line)
{
	char *p = str;
	if (line == 1 && strncmp(p, "\xEF\xBB\xBF", 3) == 0)
		p += 3;
	while (*p == ' ' || *p == '\t')
		p++;
	memmove(str, p, strlen(p) + 1);
}

static int check_section(ini_ctx *ctx, const char *str)
{
	const char *end = strchr(str, ']');
	if (str[0] != '[' || !end)
		return 0; /* not a section line, or inih reports its syntax error */
	size_t len = (size_t)(end - str - 1);
	if (section_known(str + 1, len))
		return 0;
	ctx->err_line = ctx->line;
	return cf__error_set(&ctx->err, "unknown section [%.*s]", (int)len, str + 1);
}

/* inih's reader: one whole line per call, NULL to stop. */
static char *ini_read_line(char *str, int num, void *stream)
{
	ini_ctx *ctx = stream;
	if (ctx->err_line || !fgets(str, num, ctx->fp))
		return NULL;
	ctx->line++;
	if (line_too_long(ctx->fp, str, num)) {
		ctx->err_line = ctx->line;
		cf__error_set(&ctx->err, "line is longer than %d characters", num - 2);
		return NULL;
	}
	strip_leading(str, ctx->line);
	return check_section(ctx, str) < 0 ? NULL : str;
}

/* inih's handler: nonzero on success. */
static int ini_on_key(void *user, const char *section, const char *name, const char *value)
{
	ini_ctx *ctx = user;
	int rc;
	if (ctx->err_line)
		return 0;
	const cf_key *k = key_find(section, strlen(section), name);
	if (strcmp(section, CF_RULES_SECTION) == 0)
		rc = cf__rule_apply(&ctx->cfg.cache_rules, name, value, ctx->line, ctx->rules_before, &ctx->err);
	else if (!section[0])
		rc = cf__error_set(&ctx->err, "%s: key before any [section]; put it under [pgfold]", name);
	else if (!k)
		rc = cf__error_set(&ctx->err, "unknown key \"%s\" in [%s]", name, section);
	else
		rc = key_apply(&ctx->cfg, k, value, &ctx->err);
	if (rc < 0)
		ctx->err_line = ctx->line;
	return rc == 0;
}

static int file_error(cf_error *err, const char *path, int line, const char *message)
{
	if (err) {
		snprintf(err->file, sizeof(err->file), "%s", path);
		err->line = line;
	}
	return cf__error_set(err, "%s", message);
}

/* Turn inih's result and ours into one error, or publish the copy. */
static int ini_finish(cf_config *cfg, const char *path, const ini_ctx *ctx, int rc, int io_errno, cf_error *err)
{
	if (rc > 0 && (!ctx->err_line || rc < ctx->err_line))
		return file_error(err, path, rc, "syntax error: expected [section], key = value, or a ; comment");
	if (ctx->err_line)
		return file_error(err, path, ctx->err_line, ctx->err.message);
	if (rc < 0)
		return file_error(err, path, 0, "out of memory");
	if (io_errno)
		return file_error(err, path, ctx->line, strerror(io_errno));
	*cfg = ctx->cfg;
	return 0;
}

int cf_config_load_file(cf_config *cfg, const char *path, cf_error *err)
{
	cf__error_clear(err);
	ini_ctx *ctx = pf_calloc(1, sizeof(*ctx));
	ctx->cfg = *cfg;
	ctx->rules_before = cfg->cache_rules.n;
	ctx->fp = fopen(path, "r");
	if (!ctx->fp) {
		int rc = file_error(err, path, 0, strerror(errno));
		pf_free(ctx);
		return rc;
	}
	errno = 0;
	int rc = ini_parse_stream(ini_read_line, ctx, ini_on_key, ctx);
	int io_errno = ferror(ctx->fp) ? (errno ? errno : EIO) : 0;
	fclose(ctx->fp);
	rc = ini_finish(cfg, path, ctx, rc, io_errno, err);
	pf_free(ctx);
	return rc;
}
