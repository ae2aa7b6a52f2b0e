/*
 * volatility.c — per-database function volatility loaded through px_pgctl
 * (see volatility.h for the rules).
 *
 * Each tracked database is a vol_db: its current map (lower-cased
 * "schema.name" and bare "name" -> 'i'/'s'/'v', each the most volatile of
 * the rows it covers), at most one control connection, and a few flags:
 * stale (a load is wanted), loading (the query is in flight), failing (the
 * last attempt failed; logged once per streak) with a retry time.  Loads are
 * started only from px_volatility_of() and px_volatility_invalidate() (and
 * right after a load when an invalidation arrived meanwhile), so a database
 * nobody uses is never retried.  One janitor timer, running while any
 * control connection is open, closes connections idle for
 * PX_VOLATILITY_LINGER_MS and ones the server dropped.  The table holds at
 * most PX_VOLATILITY_MAX_DATABASES; when it is full, a database not asked
 * about for PX_VOLATILITY_EVICT_MS makes room for a new one.
 *
 * Merging a bare name and a qualified one in one map is safe: a bare name
 * that holds a dot ("a.b", quoted) shares its key with function b of schema
 * a, and both then answer the more volatile of the two.
 */
#include "volatility.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/alloc.h"
#include "../common/log.h"
#include "../common/strmap.h"
#include "pgctl.h"

#define VOL_NAME_MAX 63            /* PostgreSQL's NAMEDATALEN - 1 */
#define VOL_FUNCTION_MAX 255       /* "schema.name": two names and a dot, with room */
#define VOL_MAX_ROWS 200000        /* more (schema, name) pairs than this: the map is refused */
#define VOL_RETRY_MIN_MS 1000u
#define VOL_RETRY_MAX_MS 30000u
#define VOL_JANITOR_MS 1000u

#define VOL_STR(x) #x
#define VOL_XSTR(x) VOL_STR(x)

/* Functions: one row per (schema, name), the most volatile overload ('i' <
 * 's' < 'v' as text).  Columns of tables, views and foreign tables outside
 * the system schemas: their type OIDs; base, domain and enum types outside
 * them: their names (the N+1 batcher types its keys with both).  Everything
 * qualified, so no search_path can shadow it. */
static const char vol_sql[] =
	"(SELECT 'f'::pg_catalog.text, n.nspname, p.proname, NULL::pg_catalog.name, "
	"pg_catalog.max(p.provolatile::pg_catalog.text) "
	"FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace "
	"GROUP BY n.nspname, p.proname LIMIT " VOL_XSTR(VOL_MAX_ROWS) " + 1) UNION ALL "
	"(SELECT 'c'::pg_catalog.text, n.nspname, c.relname, a.attname, a.atttypid::pg_catalog.text "
	"FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid "
	"JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
	"WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f') "
	"AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_' "
	"LIMIT " VOL_XSTR(VOL_MAX_ROWS) " + 1) UNION ALL "
	"(SELECT 't'::pg_catalog.text, n.nspname, t.typname, NULL, t.oid::pg_catalog.text "
	"FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace "
	"WHERE n.nspname <> 'information_schema' AND n.nspname !~ '^pg_' AND t.typtype IN ('b', 'd', 'e') "
	"LIMIT " VOL_XSTR(VOL_MAX_ROWS) " + 1)";

typedef struct vol_db {
	px_volatility *owner;
	char name[VOL_NAME_MAX + 1];
	char user[VOL_NAME_MAX + 1]; /* the client user to connect as when control_user is empty */
	pf_strmap *map;              /* NULL until the first load; values are (void *)(uintptr_t)'i' ... */
	pf_strmap *columns;          /* "schema.table.column" and "table.column" -> type OID (0: differs
	                                between schemas); NULL until the first load */
	pf_strmap *types;            /* type OID in decimal -> its quoted, qualified name (owned) */
	size_t functions;            /* rows of the last load */
	px_pgctl *conn;              /* the control connection, or NULL */
	bool conn_used;              /* conn already completed a load (it is lingering) */
	bool loading;                /* a query is in flight on conn */
	bool stale;                  /* a load is wanted */
	bool dropping;               /* closing conn ourselves: its callback must ignore the error */
	bool failing;                /* the last attempt failed; the streak was logged */
	unsigned backoff_ms;         /* 0 while not failing */
	uint64_t retry_at;           /* uv_now() before which no new attempt starts */
	uint64_t idle_since;         /* uv_now() when conn finished its last load */
	uint64_t loads;              /* loads completed */
	uint64_t last_used;          /* uv_now() of the last px_volatility_of() */
	char error[256];             /* the last failure */
} vol_db;

struct px_volatility {
	uv_loop_t *loop;
	uv_timer_t janitor; /* closes idle control connections; active while any is open */
	bool closing;
	bool configured;
	bool full_logged; /* "too many databases" was logged */
	pf_strmap *dbs;   /* database name -> vol_db * */
	unsigned linger_ms; /* idle control connections are closed after this */
	unsigned evict_ms;  /* when full, a database unused this long makes room */
	/* from the configuration */
	cf_addr backend;
	char user[128];
	char password[128];
	unsigned timeout_ms;
};

/* ---- maps --------------------------------------------------------------- */

static char vol_rank(char c)
{
	return c == 'i' ? 0 : c == 's' ? 1 : 2;
}

/* Store the more volatile of what key has and c. */
static void map_put_max(pf_strmap *map, const char *key, char c)
{
	void *old = NULL;
	if (pf_strmap_get(map, key, &old) && vol_rank((char)(uintptr_t)old) >= vol_rank(c))
		return;
	pf_strmap_put(map, key, (void *)(uintptr_t)c, NULL);
}

/* Lower-case src into dst (ASCII only, like PostgreSQL's identifier folding
 * of unquoted names); false when it does not fit. */
static bool lower_copy(char *dst, size_t size, const char *src)
{
	size_t n = strlen(src);
	if (n >= size)
		return false;
	for (size_t i = 0; i <= n; i++)
		dst[i] = (char)tolower((unsigned char)src[i]);
	return true;
}

/* One function row into the function map. */
static void put_function(pf_strmap *map, const PGresult *res, int i)
{
	char nsp[VOL_NAME_MAX * 2 + 2], name[VOL_NAME_MAX * 2 + 2], key[sizeof(nsp) + sizeof(name)];
	const char *vol = PQgetvalue(res, i, 4);
	char c = vol[0] == 'i' || vol[0] == 's' ? vol[0] : 'v';
	if (!lower_copy(nsp, sizeof(nsp), PQgetvalue(res, i, 1)) ||
	    !lower_copy(name, sizeof(name), PQgetvalue(res, i, 2)))
		return; /* longer than a name can be: never looked up */
	snprintf(key, sizeof(key), "%s.%s", nsp, name);
	map_put_max(map, key, c);
	map_put_max(map, name, c);
}

/* A column's type under key; two tables of one name in different schemas
 * whose columns differ in type make the bare key ambiguous (0). */
static void put_column_key(pf_strmap *map, const char *key, uint32_t type)
{
	void *old;
	if (pf_strmap_get(map, key, &old) && (uint32_t)(uintptr_t)old != type)
		type = 0;
	pf_strmap_put(map, key, (void *)(uintptr_t)type, NULL);
}

/* One column row into the column map (names are case-sensitive here). */
static void put_column(pf_strmap *map, const PGresult *res, int i)
{
	char key[VOL_NAME_MAX * 3 + 3];
	const char *nsp = PQgetvalue(res, i, 1), *rel = PQgetvalue(res, i, 2), *att = PQgetvalue(res, i, 3);
	uint32_t type = (uint32_t)strtoul(PQgetvalue(res, i, 4), NULL, 10);
	if (strlen(nsp) > VOL_NAME_MAX || strlen(rel) > VOL_NAME_MAX || strlen(att) > VOL_NAME_MAX)
		return;
	snprintf(key, sizeof(key), "%s.%s.%s", nsp, rel, att);
	put_column_key(map, key, type);
	snprintf(key, sizeof(key), "%s.%s", rel, att);
	put_column_key(map, key, type);
}

/* Append name as a quoted identifier. */
static void put_ident(char *out, size_t size, const char *name)
{
	size_t n = strlen(out);
	if (n + 1 < size)
		out[n++] = '"';
	for (; *name && n + 2 < size; name++) {
		if (*name == '"')
			out[n++] = '"';
		out[n++] = *name;
	}
	if (n + 1 < size)
		out[n++] = '"';
	out[n] = '\0';
}

/* One type row: OID -> "schema"."name". */
static void put_type(pf_strmap *map, const PGresult *res, int i)
{
	char name[VOL_NAME_MAX * 4 + 8] = "";
	put_ident(name, sizeof(name), PQgetvalue(res, i, 1));
	strcat(name, ".");
	put_ident(name, sizeof(name), PQgetvalue(res, i, 2));
	void *old = NULL;
	pf_strmap_put(map, PQgetvalue(res, i, 4), pf_strdup(name), &old);
	pf_free(old);
}

static void types_free(pf_strmap *map)
{
	pf_strmap_free_values(map);
}

/* The function, column and type maps from the rows of vol_sql; false when
 * the result is not usable. */
static bool maps_from_result(const PGresult *res, const char *db, pf_strmap **functions, pf_strmap **columns,
			     pf_strmap **types, size_t *nfunctions)
{
	int n = PQntuples(res);
	if (PQnfields(res) != 5) {
		pf_warn("volatility: database \"%s\": unexpected catalog result (%d columns)", db, PQnfields(res));
		return false;
	}
	size_t nf = 0, nc = 0;
	for (int i = 0; i < n; i++) {
		char kind = *PQgetvalue(res, i, 0);
		nf += kind == 'f';
		nc += kind == 'c';
	}
	*nfunctions = nf;
	*functions = pf_strmap_new();
	*columns = pf_strmap_new();
	*types = pf_strmap_new();
	/* A partial function map could call a name immutable whose volatile
	 * overload was cut off: keep an empty one (all volatile); likewise a
	 * partial column map stays empty (no key types). */
	if (nf > VOL_MAX_ROWS)
		pf_warn("volatility: database \"%s\" has more than %d functions; all count as volatile", db,
			VOL_MAX_ROWS);
	for (int i = 0; i < n; i++) {
		char kind = *PQgetvalue(res, i, 0);
		if (kind == 'f' && nf <= VOL_MAX_ROWS)
			put_function(*functions, res, i);
		else if (kind == 'c' && nc <= VOL_MAX_ROWS)
			put_column(*columns, res, i);
		else if (kind == 't')
			put_type(*types, res, i);
	}
	return true;
}

static char map_lookup(const pf_strmap *map, const char *function)
{
	char key[VOL_FUNCTION_MAX + 1];
	void *val;
	if (!map || !lower_copy(key, sizeof(key), function) || !pf_strmap_get(map, key, &val))
		return 'v';
	return (char)(uintptr_t)val;
}

/* ---- connections -------------------------------------------------------- */

static void janitor_start(px_volatility *v);

/* Close db's control connection.  A load in flight on it is lost: the
 * database stays stale and loads again at its next use. */
static void drop_conn(vol_db *db)
{
	px_pgctl *c = db->conn;
	if (!c)
		return;
	bool was_loading = db->loading;
	db->conn = NULL;
	db->dropping = true;
	px_pgctl_close(c); /* runs on_loaded("closed") when a load was in flight */
	db->dropping = false;
	db->loading = false;
	if (was_loading)
		db->stale = true;
}

static px_pgctl *open_conn(px_volatility *v, const vol_db *db, const char *user)
{
	char port[16];
	snprintf(port, sizeof(port), "%d", v->backend.port);
	const char *keys[8], *vals[8];
	int n = 0;
	keys[n] = "host", vals[n++] = v->backend.host;
	keys[n] = "port", vals[n++] = port;
	keys[n] = "dbname", vals[n++] = db->name;
	keys[n] = "user", vals[n++] = user;
	keys[n] = "application_name", vals[n++] = "pgfold-control";
	keys[n] = "client_encoding", vals[n++] = "UTF8";
	if (v->password[0])
		keys[n] = "password", vals[n++] = v->password;
	keys[n] = NULL, vals[n] = NULL;
	return px_pgctl_new(v->loop, keys, vals, v->timeout_ms);
}

static void load_failed(vol_db *db, const char *why)
{
	px_volatility *v = db->owner;
	drop_conn(db);
	db->stale = true;
	snprintf(db->error, sizeof(db->error), "%s", why);
	db->backoff_ms = db->backoff_ms ? db->backoff_ms * 2 : VOL_RETRY_MIN_MS;
	if (db->backoff_ms > VOL_RETRY_MAX_MS)
		db->backoff_ms = VOL_RETRY_MAX_MS;
	db->retry_at = uv_now(v->loop) + db->backoff_ms;
	if (!db->failing)
		pf_warn("volatility: cannot read the functions of database \"%s\": %s; every function there counts "
			"as volatile until it works (retrying when used)",
			db->name, why);
	else
		pf_debug("volatility: database \"%s\" still failing: %s", db->name, why);
	db->failing = true;
}

static void start_load(vol_db *db);

static void on_loaded(const PGresult *res, const char *err, void *ctx)
{
	vol_db *db = ctx;
	px_volatility *v = db->owner;
	db->loading = false;
	if (db->dropping)
		return;
	if (err) {
		bool reused = db->conn_used;
		drop_conn(db); /* closing from its own callback is allowed */
		if (reused && !db->failing) {
			/* A lingering connection the server dropped: one fresh try. */
			pf_debug("volatility: database \"%s\": idle control connection lost (%s); reconnecting",
				 db->name, err);
			db->stale = true;
			start_load(db);
			return;
		}
		load_failed(db, err);
		return;
	}
	size_t rows;
	pf_strmap *map, *columns, *types;
	if (!maps_from_result(res, db->name, &map, &columns, &types, &rows)) {
		load_failed(db, "unexpected catalog result");
		return;
	}
	pf_strmap_free(db->map);
	pf_strmap_free(db->columns);
	types_free(db->types);
	db->map = map;
	db->columns = columns;
	db->types = types;
	db->functions = rows;
	db->loads++;
	db->conn_used = true;
	db->idle_since = uv_now(v->loop);
	if (db->failing || db->loads == 1)
		pf_info("volatility: database \"%s\": %zu functions loaded", db->name, rows);
	else
		pf_debug("volatility: database \"%s\": %zu functions reloaded", db->name, rows);
	db->failing = false;
	db->backoff_ms = 0;
	db->retry_at = 0;
	db->error[0] = '\0';
	if (db->stale)
		start_load(db); /* invalidated while loading */
}

/* Send the catalog query, on the lingering connection or a new one. */
static void start_load(vol_db *db)
{
	px_volatility *v = db->owner;
	const char *user = v->user[0] ? v->user : db->user;
	if (v->closing || !v->configured || db->loading || !user[0])
		return; /* stays stale: nobody to connect as yet */
	if (db->conn && px_pgctl_failed(db->conn))
		drop_conn(db);
	if (!db->conn) {
		db->conn = open_conn(v, db, user);
		db->conn_used = false;
		janitor_start(v);
	}
	db->stale = false;
	if (px_pgctl_query(db->conn, vol_sql, on_loaded, db) < 0) {
		char why[256];
		snprintf(why, sizeof(why), "%s", px_pgctl_error(db->conn));
		load_failed(db, why);
		return;
	}
	db->loading = true;
}

/* A load is due: wanted, not running, not waiting out a backoff. */
static void maybe_load(vol_db *db)
{
	if (db->stale && !db->loading && uv_now(db->owner->loop) >= db->retry_at)
		start_load(db);
}

/* ---- the janitor -------------------------------------------------------- */

static void on_janitor(uv_timer_t *t)
{
	px_volatility *v = t->data;
	uint64_t now = uv_now(v->loop);
	size_t pos = 0, alive = 0;
	void *val;
	while (pf_strmap_next(v->dbs, &pos, NULL, &val)) {
		vol_db *db = val;
		if (!db->conn || db->loading)
			alive += db->conn != NULL;
		else if (px_pgctl_failed(db->conn) || now - db->idle_since >= v->linger_ms)
			drop_conn(db);
		else
			alive++;
	}
	if (!alive)
		uv_timer_stop(&v->janitor);
}

static void janitor_start(px_volatility *v)
{
	unsigned every = v->linger_ms < VOL_JANITOR_MS ? v->linger_ms + 1 : VOL_JANITOR_MS;
	if (!uv_is_active((uv_handle_t *)&v->janitor))
		uv_timer_start(&v->janitor, on_janitor, every, every);
}

/* ---- databases ---------------------------------------------------------- */

static vol_db *db_find(const px_volatility *v, const char *name)
{
	void *val;
	return v->dbs && pf_strmap_get(v->dbs, name, &val) ? val : NULL;
}

static void db_free(vol_db *db);

/* When the table is full: forget the database unused the longest, if that
 * is at least evict_ms ago.  false when every one is in use. */
static bool db_evict(px_volatility *v)
{
	uint64_t now = uv_now(v->loop);
	vol_db *oldest = NULL;
	size_t pos = 0;
	void *val;
	while (pf_strmap_next(v->dbs, &pos, NULL, &val)) {
		vol_db *db = val;
		if (!oldest || db->last_used < oldest->last_used)
			oldest = db;
	}
	if (!oldest || now - oldest->last_used < v->evict_ms)
		return false;
	pf_debug("volatility: forgetting database \"%s\" (unused) to make room", oldest->name);
	pf_strmap_remove(v->dbs, oldest->name, NULL);
	db_free(oldest);
	return true;
}

static vol_db *db_track(px_volatility *v, const char *name)
{
	vol_db *db = db_find(v, name);
	if (db || strlen(name) > VOL_NAME_MAX || !name[0])
		return db;
	if (pf_strmap_count(v->dbs) >= PX_VOLATILITY_MAX_DATABASES && !db_evict(v)) {
		if (!v->full_logged)
			pf_warn("volatility: more than %d databases in use; functions of the others count as volatile",
				PX_VOLATILITY_MAX_DATABASES);
		v->full_logged = true;
		return NULL;
	}
	db = pf_calloc(1, sizeof(*db));
	db->owner = v;
	snprintf(db->name, sizeof(db->name), "%s", name);
	db->stale = true;
	pf_strmap_put(v->dbs, name, db, NULL);
	return db;
}

/* Remember whom to connect as when control_user is empty: the first client
 * user, replaced by another one while the database keeps failing. */
static void db_note_user(vol_db *db, const char *user)
{
	if (!user || !user[0] || strlen(user) > VOL_NAME_MAX || strcmp(db->user, user) == 0)
		return;
	if (!db->user[0] || db->failing)
		snprintf(db->user, sizeof(db->user), "%s", user);
}

static void db_free(vol_db *db)
{
	drop_conn(db);
	pf_strmap_free(db->map);
	pf_strmap_free(db->columns);
	types_free(db->types);
	pf_free(db);
}

/* ---- interface ---------------------------------------------------------- */

px_volatility *px_volatility_new(uv_loop_t *loop)
{
	px_volatility *v = pf_calloc(1, sizeof(*v));
	v->loop = loop;
	v->dbs = pf_strmap_new();
	uv_timer_init(loop, &v->janitor);
	v->janitor.data = v;
	v->timeout_ms = 5000;
	v->linger_ms = PX_VOLATILITY_LINGER_MS;
	v->evict_ms = PX_VOLATILITY_EVICT_MS;
	return v;
}

void px_volatility_set_timing(px_volatility *v, unsigned linger_ms, unsigned evict_ms)
{
	v->linger_ms = linger_ms ? linger_ms : PX_VOLATILITY_LINGER_MS;
	v->evict_ms = evict_ms ? evict_ms : PX_VOLATILITY_EVICT_MS;
	if (uv_is_active((uv_handle_t *)&v->janitor)) {
		uv_timer_stop(&v->janitor);
		janitor_start(v);
	}
}

static bool addr_same(const cf_addr *a, const cf_addr *b)
{
	return a->kind == b->kind && a->port == b->port && strcmp(a->host, b->host) == 0;
}

void px_volatility_configure(px_volatility *v, const cf_config *cfg)
{
	if (!v || v->closing)
		return;
	bool moved = !addr_same(&v->backend, &cfg->backend);
	bool creds = strcmp(v->user, cfg->control_user) != 0 || strcmp(v->password, cfg->control_password) != 0;
	v->backend = cfg->backend;
	snprintf(v->user, sizeof(v->user), "%s", cfg->control_user);
	snprintf(v->password, sizeof(v->password), "%s", cfg->control_password);
	v->timeout_ms = cfg->connect_timeout_ms > 0 ? (unsigned)cfg->connect_timeout_ms : 5000;
	bool was_configured = v->configured;
	v->configured = true;
	if (!was_configured || (!moved && !creds))
		return;
	size_t pos = 0;
	void *val;
	while (pf_strmap_next(v->dbs, &pos, NULL, &val)) {
		vol_db *db = val;
		drop_conn(db);
		if (moved) {
			pf_strmap_free(db->map); /* another server's catalog */
			pf_strmap_free(db->columns);
			types_free(db->types);
			db->map = NULL;
			db->columns = NULL;
			db->types = NULL;
			db->functions = 0;
			db->stale = true;
		}
		if (db->failing)
			db->stale = true;
		db->failing = false;
		db->backoff_ms = 0;
		db->retry_at = 0;
	}
}

char px_volatility_of(px_volatility *v, const char *database, const char *client_user, const char *function)
{
	if (!v || v->closing || !database || !function)
		return 'v';
	vol_db *db = db_track(v, database);
	if (!db)
		return 'v';
	db->last_used = uv_now(v->loop);
	db_note_user(db, client_user);
	maybe_load(db);
	return map_lookup(db->map, function);
}

uint32_t px_volatility_column_type(px_volatility *v, const char *database, const char *client_user,
				   const char *schema, const char *table, const char *column)
{
	if (!v || v->closing || !database || !table || !column)
		return 0;
	vol_db *db = db_track(v, database);
	if (!db)
		return 0;
	db->last_used = uv_now(v->loop);
	db_note_user(db, client_user);
	maybe_load(db);
	char key[VOL_NAME_MAX * 3 + 3];
	void *val;
	if (snprintf(key, sizeof(key), "%s%s%s.%s", schema ? schema : "", schema ? "." : "", table, column) >=
		    (int)sizeof(key) ||
	    !db->columns || !pf_strmap_get(db->columns, key, &val))
		return 0;
	return (uint32_t)(uintptr_t)val;
}

const char *px_volatility_type_name(px_volatility *v, const char *database, uint32_t type_oid)
{
	char key[16];
	void *val;
	vol_db *db = v && !v->closing && database ? db_find(v, database) : NULL;
	snprintf(key, sizeof(key), "%u", type_oid);
	return db && db->types && pf_strmap_get(db->types, key, &val) ? val : NULL;
}

char px_volatility_of_shape(px_volatility *v, const char *database, const char *client_user, const rw_shape *shape)
{
	char worst = 'i';
	for (size_t i = 0; i < shape->nfunctions && worst != 'v'; i++) {
		char c = px_volatility_of(v, database, client_user, shape->functions[i]);
		if (c > worst) /* 'i' < 's' < 'v' */
			worst = c;
	}
	return worst;
}

void px_volatility_invalidate(px_volatility *v, const char *database)
{
	if (!v || v->closing || !database)
		return;
	vol_db *db = db_find(v, database);
	if (!db)
		return;
	db->stale = true;
	maybe_load(db);
}

bool px_volatility_loaded(const px_volatility *v, const char *database)
{
	const vol_db *db = v && database ? db_find(v, database) : NULL;
	return db && db->map;
}

static void on_janitor_closed(uv_handle_t *h)
{
	pf_free(h->data);
}

void px_volatility_close(px_volatility *v)
{
	if (!v || v->closing)
		return;
	v->closing = true;
	size_t pos = 0;
	void *val;
	while (pf_strmap_next(v->dbs, &pos, NULL, &val))
		db_free(val);
	pf_strmap_free(v->dbs);
	v->dbs = NULL;
	uv_close((uv_handle_t *)&v->janitor, on_janitor_closed);
}

/* ---- admin: GET /functions ---------------------------------------------- */

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)tolower((unsigned char)c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The URL-decoded value of name in an x-www-form-urlencoded query string.
 * 1 found, 0 absent, -1 too long or badly encoded. */
static int query_param(const char *query, const char *name, char *out, size_t size)
{
	size_t name_len = strlen(name);
	for (const char *p = query; *p;) {
		size_t len = strcspn(p, "&");
		if (len > name_len && strncmp(p, name, name_len) == 0 && p[name_len] == '=') {
			size_t o = 0;
			for (size_t i = name_len + 1; i < len; i++) {
				int c = (unsigned char)p[i];
				if (c == '+')
					c = ' ';
				else if (c == '%') {
					int hi = i + 2 < len ? hex_digit(p[i + 1]) : -1;
					int lo = hi >= 0 ? hex_digit(p[i + 2]) : -1;
					if (lo < 0 || (hi == 0 && lo == 0))
						return -1;
					c = hi * 16 + lo;
					i += 2;
				}
				if (o + 1 >= size)
					return -1;
				out[o++] = (char)c;
			}
			out[o] = '\0';
			return 1;
		}
		p += len;
		if (*p == '&')
			p++;
	}
	out[0] = '\0';
	return 0;
}

static const char *vol_word(char c)
{
	return c == 'i' ? "immutable" : c == 's' ? "stable" : "volatile";
}

static const char *db_state(const vol_db *db)
{
	if (!db)
		return "new";
	if (db->loading)
		return "loading";
	if (db->failing)
		return "failed";
	return db->map ? "loaded" : "new";
}

static void bad_request(px_admin_response *resp, const char *why)
{
	resp->status = 400;
	pf_sb_append(&resp->body, "{\"error\":");
	pf_sb_append_json_string(&resp->body, why);
	pf_sb_append(&resp->body, "}");
}

static void functions_handler(const px_admin_request *req, px_admin_response *resp, void *ctx)
{
	px_volatility *v = ctx;
	char db_name[VOL_NAME_MAX + 1], fn[VOL_FUNCTION_MAX + 1], user[VOL_NAME_MAX + 1], refresh[8];
	const char *bad = NULL;
	if (query_param(req->query, "db", db_name, sizeof(db_name)) <= 0 || !db_name[0])
		bad = "db=NAME is required (at most 63 bytes)";
	else if (query_param(req->query, "fn", fn, sizeof(fn)) <= 0 || !fn[0])
		bad = "fn=NAME is required (at most 255 bytes)";
	else if (query_param(req->query, "user", user, sizeof(user)) < 0)
		bad = "user: at most 63 bytes";
	if (bad) {
		bad_request(resp, bad);
		return;
	}
	if (query_param(req->query, "refresh", refresh, sizeof(refresh)) > 0 && strcmp(refresh, "0") != 0)
		px_volatility_invalidate(v, db_name);
	char c = px_volatility_of(v, db_name, user, fn);
	const vol_db *db = db_find(v, db_name);
	pf_sb *b = &resp->body;
	pf_sb_append(b, "{\"database\":");
	pf_sb_append_json_string(b, db_name);
	pf_sb_append(b, ",\"function\":");
	pf_sb_append_json_string(b, fn);
	pf_sb_appendf(b,
		      ",\"volatility\":\"%s\",\"loaded\":%s,\"tracked\":%s,\"state\":\"%s\",\"functions\":%zu,"
		      "\"loads\":%llu",
		      vol_word(c), db && db->map ? "true" : "false", db ? "true" : "false", db_state(db),
		      db ? db->functions : 0, db ? (unsigned long long)db->loads : 0ULL);
	pf_sb_append(b, ",\"error\":");
	pf_sb_append_json_string(b, db ? db->error : "");
	pf_sb_append(b, "}");
}

void px_volatility_add_admin_routes(px_admin *admin, px_volatility *v)
{
	if (px_admin_route(admin, "GET", "/functions", functions_handler, v) != 0)
		pf_warn("admin: no room for the /functions route");
}
