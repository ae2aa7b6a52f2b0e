/*
 * relcat.c — relation facts per database for the result cache (relcat.h):
 * one catalog query per load over a short-lived control connection, kept
 * as a map from relation name to PX_REL_* bits.
 */
#include "relcat.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/alloc.h"
#include "../common/log.h"
#include "../common/strmap.h"
#include "pgctl.h"

/* One row per relation name outside pg_catalog / information_schema: the
 * name, read_ok, write_local and the column of the single-column integer
 * primary key every relation of that name has (NULL otherwise). */
static const char relcat_sql[] =
	"SELECT c.relname::text,"
	" bool_and(c.relkind IN ('r', 'p', 'm') AND c.relpersistence <> 't'),"
	" bool_and(c.relkind IN ('r', 'm') AND NOT c.relhasrules AND NOT c.relispartition"
	"  AND NOT EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid OR i.inhparent = c.oid)"
	"  AND NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal)"
	"  AND NOT EXISTS (SELECT 1 FROM pg_constraint f WHERE f.contype = 'f' AND f.confrelid = c.oid"
	"   AND (f.confdeltype IN ('c', 'n', 'd') OR f.confupdtype IN ('c', 'n', 'd')))),"
	" CASE WHEN bool_and(k.attname IS NOT NULL) AND count(DISTINCT k.attname) = 1 THEN min(k.attname::text) END"
	" FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
	" LEFT JOIN LATERAL (SELECT a.attname FROM pg_index i"
	"  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]"
	"  WHERE i.indrelid = c.oid AND i.indisprimary AND i.indnatts = 1 AND a.atttypid IN (20, 21, 23)) k ON true"
	" WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')"
	" AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
	" GROUP BY 1";

typedef struct rel_db {
	px_relcat *owner;
	char name[64];
	char user[64];        /* the first client's user (when control_user is empty) */
	pf_strmap *map;       /* name -> PX_REL_* bits; NULL until loaded */
	pf_strmap *pks;       /* name -> its primary-key column (owned strings), loaded with map */
	bool stale;           /* DDL committed since the map's load began: do not use it */
	bool loading;
	bool reload_again;    /* invalidated while loading */
	bool failed_logged;
	uint64_t loaded_at;   /* loop ms */
	uint64_t retry_at;
	px_pgctl *conn;
} rel_db;

struct px_relcat {
	uv_loop_t *loop;
	cf_addr backend;
	char user[128];
	char password[128];
	unsigned timeout_ms;
	bool closing;
	size_t ndbs;
	rel_db *dbs[PX_RELCAT_MAX_DATABASES];
};

px_relcat *px_relcat_new(uv_loop_t *loop)
{
	px_relcat *rc = pf_calloc(1, sizeof(*rc));
	rc->loop = loop;
	return rc;
}

void px_relcat_configure(px_relcat *rc, const cf_config *cfg)
{
	if (!rc)
		return;
	rc->backend = cfg->backend;
	snprintf(rc->user, sizeof(rc->user), "%s", cfg->control_user);
	snprintf(rc->password, sizeof(rc->password), "%s", cfg->control_password);
	rc->timeout_ms = (unsigned)cfg->connect_timeout_ms;
}

/* ---- loading -------------------------------------------------------------- */

static void map_free(pf_strmap *m)
{
	pf_strmap_free(m); /* values are bit sets, not pointers */
}

static void start_load(rel_db *db);

static void pks_free(pf_strmap *m)
{
	pf_strmap_free_values(m);
}

static pf_strmap *pks_from(const PGresult *res)
{
	pf_strmap *m = pf_strmap_new();
	for (int i = 0; i < PQntuples(res); i++)
		if (!PQgetisnull(res, i, 3))
			pf_strmap_put(m, PQgetvalue(res, i, 0), pf_strdup(PQgetvalue(res, i, 3)), NULL);
	return m;
}

static pf_strmap *map_from(const PGresult *res)
{
	pf_strmap *m = pf_strmap_new();
	for (int i = 0; i < PQntuples(res); i++) {
		uintptr_t bits = 0;
		if (strcmp(PQgetvalue(res, i, 1), "t") == 0)
			bits |= PX_REL_READ_OK;
		if (strcmp(PQgetvalue(res, i, 2), "t") == 0)
			bits |= PX_REL_WRITE_LOCAL;
		pf_strmap_put(m, PQgetvalue(res, i, 0), (void *)bits, NULL);
	}
	return m;
}

static void on_loaded(const PGresult *res, const char *err, void *ctx)
{
	rel_db *db = ctx;
	px_relcat *rc = db->owner;
	if (rc->closing)
		return;
	px_pgctl *c = db->conn;
	db->conn = NULL;
	db->loading = false;
	px_pgctl_close(c);
	if (err) {
		if (!db->failed_logged)
			pf_warn("relations: database \"%s\": %s (results there are not cached)", db->name, err);
		db->failed_logged = true;
		db->retry_at = uv_now(rc->loop) + PX_RELCAT_RETRY_MS;
		db->reload_again = false;
		return;
	}
	map_free(db->map);
	db->map = map_from(res);
	pks_free(db->pks);
	db->pks = pks_from(res);
	db->failed_logged = false;
	db->loaded_at = uv_now(rc->loop);
	db->stale = db->reload_again;
	pf_debug("relations: database \"%s\": %d names loaded", db->name, PQntuples(res));
	if (db->reload_again) {
		db->reload_again = false;
		start_load(db);
	}
}

static px_pgctl *open_conn(px_relcat *rc, const rel_db *db)
{
	char port[16];
	snprintf(port, sizeof(port), "%d", rc->backend.port);
	const char *keys[8], *vals[8];
	int n = 0;
	keys[n] = "host", vals[n++] = rc->backend.host;
	keys[n] = "port", vals[n++] = port;
	keys[n] = "dbname", vals[n++] = db->name;
	keys[n] = "user", vals[n++] = rc->user[0] ? rc->user : db->user;
	keys[n] = "application_name", vals[n++] = "pgfold-control";
	keys[n] = "client_encoding", vals[n++] = "UTF8";
	if (rc->password[0])
		keys[n] = "password", vals[n++] = rc->password;
	keys[n] = NULL, vals[n] = NULL;
	return px_pgctl_new(rc->loop, keys, vals, rc->timeout_ms);
}

static void start_load(rel_db *db)
{
	px_relcat *rc = db->owner;
	if (db->loading) {
		db->reload_again = true;
		return;
	}
	db->conn = open_conn(rc, db);
	if (px_pgctl_query(db->conn, relcat_sql, on_loaded, db) < 0) {
		px_pgctl_close(db->conn);
		db->conn = NULL;
		db->retry_at = uv_now(rc->loop) + PX_RELCAT_RETRY_MS;
		return;
	}
	db->loading = true;
}

/* ---- lookups -------------------------------------------------------------- */

static rel_db *db_find(px_relcat *rc, const char *database, const char *user, bool create)
{
	for (size_t i = 0; i < rc->ndbs; i++)
		if (strcmp(rc->dbs[i]->name, database) == 0)
			return rc->dbs[i];
	if (!create || rc->ndbs == PX_RELCAT_MAX_DATABASES || strlen(database) >= sizeof(rc->dbs[0]->name))
		return NULL;
	rel_db *db = pf_calloc(1, sizeof(*db));
	db->owner = rc;
	snprintf(db->name, sizeof(db->name), "%s", database);
	snprintf(db->user, sizeof(db->user), "%s", user ? user : "");
	rc->dbs[rc->ndbs++] = db;
	return db;
}

unsigned px_relcat_flags(px_relcat *rc, const char *database, const char *client_user, const char *name)
{
	if (!rc || rc->closing || !name)
		return 0;
	rel_db *db = db_find(rc, database, client_user, true);
	if (!db)
		return 0;
	uint64_t now = uv_now(rc->loop);
	bool usable = db->map && !db->stale;
	if (!db->loading && now >= db->retry_at && (!usable || now - db->loaded_at >= PX_RELCAT_MAX_AGE_MS))
		start_load(db);
	void *bits = NULL;
	if (!usable || !pf_strmap_get(db->map, name, &bits))
		return 0;
	return (unsigned)(uintptr_t)bits;
}

const char *px_relcat_primary_key(px_relcat *rc, const char *database, const char *client_user, const char *name)
{
	if (!(px_relcat_flags(rc, database, client_user, name) & PX_REL_READ_OK))
		return NULL; /* also: not loaded, stale */
	rel_db *db = db_find(rc, database, client_user, false);
	void *col = NULL;
	return db && db->pks && pf_strmap_get(db->pks, name, &col) ? col : NULL;
}

void px_relcat_invalidate(px_relcat *rc, const char *database)
{
	if (!rc || rc->closing)
		return;
	rel_db *db = db_find(rc, database, NULL, false);
	if (!db)
		return;
	db->stale = true;
	db->retry_at = 0;
	start_load(db);
}

void px_relcat_close(px_relcat *rc)
{
	if (!rc || rc->closing)
		return;
	rc->closing = true;
	for (size_t i = 0; i < rc->ndbs; i++) {
		rel_db *db = rc->dbs[i];
		if (db->conn)
			px_pgctl_close(db->conn); /* on_loaded("closed") returns at once */
		map_free(db->map);
		pks_free(db->pks);
		pf_free(db);
	}
	pf_free(rc);
}
