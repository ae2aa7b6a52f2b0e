/*
 * volatility.h — per-database function volatility (pg_proc.provolatile)
 * and column types (pg_attribute.atttypid), read from the database itself
 * through a control connection (px_pgctl) and kept in memory, so statement
 * analysis can tell whether a call is immutable, stable or volatile, and the
 * N+1 batcher what type a key column has, without a round trip.
 *
 * Interface
 *   px_volatility_new(loop)          empty; answers 'v' until configured and loaded
 *   px_volatility_configure(v, cfg)  backend address, control_user/_password,
 *                                    connect_timeout; at start and after each reload
 *   px_volatility_of(v, db, user, fn)  'i', 's' or 'v'; the first call for a
 *                                    database starts its load in the background
 *   px_volatility_column_type(...)   a column's type OID, 0 when unknown
 *   px_volatility_invalidate(v, db)  after DDL: reload in the background
 *   px_volatility_loaded(v, db)      a map for db has arrived
 *   px_volatility_close(v)           idempotent; frees once its handles closed
 *   px_volatility_set_timing()       change the linger and eviction times (tests)
 *   px_volatility_add_admin_routes() GET /functions (debugging and tests)
 *
 * Rules
 *   - function is lower case, optionally schema-qualified: "now",
 *     "pg_catalog.now", "myschema.f".  A qualified name answers for that
 *     schema's function (the most volatile of its overloads); an unqualified
 *     name answers for the most volatile function of that name in any schema.
 *   - Anything unknown is 'v': a function not in the map, a database not
 *     (yet) loaded, one whose control connection cannot connect, more than
 *     PX_VOLATILITY_MAX_DATABASES databases in use (one unused for
 *     PX_VOLATILITY_EVICT_MS is forgotten to make room), names longer than
 *     PostgreSQL's.
 *   - One control connection per database at a time.  It connects as
 *     control_user, or when that is empty as the user of the first client
 *     seen for the database (client_user), runs one catalog query, then stays
 *     open PX_VOLATILITY_LINGER_MS for further reloads and is closed.
 *   - After invalidate the old map keeps answering until the new one
 *     arrives; an invalidation during a load queues one more load.
 *   - A failed load is logged once (warn) until the database loads again,
 *     and retried on later calls with a backoff of 1 s doubling to 30 s.
 *   - Nothing here blocks the loop, except that libpq resolves a backend
 *     host *name* synchronously (addresses and socket directories do not).
 */
#ifndef PGFOLD_PROXY_VOLATILITY_H
#define PGFOLD_PROXY_VOLATILITY_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "../rewrite/analysis.h"

#include "../conf/conf.h"
#include "admin.h"

#define PX_VOLATILITY_MAX_DATABASES 64
#define PX_VOLATILITY_LINGER_MS 30000u  /* an idle control connection stays open this long */
#define PX_VOLATILITY_EVICT_MS 600000u  /* a full table forgets a database unused this long */

typedef struct px_volatility px_volatility;

px_volatility *px_volatility_new(uv_loop_t *loop);
/* Takes what it needs from cfg (no pointer is kept).  When the backend
 * address changes every map is dropped (another server's catalog); when the
 * address or the credentials change, open control connections are closed
 * and failed databases are retried at their next use. */
void px_volatility_configure(px_volatility *v, const cf_config *cfg);
/* 'i' immutable, 's' stable, 'v' volatile.  client_user may be NULL.  Cheap:
 * two hash lookups; may start a load (never waits for it). */
char px_volatility_of(px_volatility *v, const char *database, const char *client_user, const char *function);
/* The catalog of database may have changed (DDL): reload in the background.
 * Does nothing for a database not tracked yet. */
/* The most volatile of the functions a statement calls: 'i' when it calls
 * none, 'v' when any is unknown (same rules as px_volatility_of). */
char px_volatility_of_shape(px_volatility *v, const char *database, const char *client_user, const rw_shape *shape);
void px_volatility_invalidate(px_volatility *v, const char *database);
/* The type OID of column of table (schema NULL: as written unqualified) in
 * database, from the same load as the volatility map; 0 when unknown: not
 * loaded, no such column, or an unqualified table whose namesakes in other
 * schemas give the column other types.  Names are compared exactly (as the
 * parser folds them).  Loads like px_volatility_of(). */
uint32_t px_volatility_column_type(px_volatility *v, const char *database, const char *client_user,
				   const char *schema, const char *table, const char *column);
/* The SQL name ("schema"."name", quoted) of a base, domain or enum type
 * outside the system schemas, from the last load of database; NULL when
 * unknown.  Valid until the next call into v. */
const char *px_volatility_type_name(px_volatility *v, const char *database, uint32_t type_oid);
bool px_volatility_loaded(const px_volatility *v, const char *database);
/* How long an idle control connection stays open, and how long a database
 * must be unused before a new one may take its place in a full table; 0
 * restores a default. */
void px_volatility_set_timing(px_volatility *v, unsigned linger_ms, unsigned evict_ms);
/* Closes every control connection and frees v once its timer closed.
 * NULL-safe and idempotent; v must not be used afterwards. */
void px_volatility_close(px_volatility *v);

/* GET /functions?db=NAME&fn=NAME[&user=NAME][&refresh=1]
 *   200 {"database","function","volatility":"immutable|stable|volatile",
 *        "loaded":bool,"tracked":bool,"state":"new|loading|loaded|failed",
 *        "functions":N,"loads":N,"error":"last failure or empty"}
 *   (tracked: false beyond PX_VOLATILITY_MAX_DATABASES; functions: rows of
 *   the last load; loads: loads completed)
 *   400 when db or fn is missing or too long.
 * The lookup is px_volatility_of(db, user, fn), so it starts the load of a
 * database not loaded yet (user: the role to connect as when control_user
 * is empty); refresh=1 calls px_volatility_invalidate(db) first.
 * v must outlive the admin server. */
void px_volatility_add_admin_routes(px_admin *admin, px_volatility *v);

#endif /* PGFOLD_PROXY_VOLATILITY_H */
