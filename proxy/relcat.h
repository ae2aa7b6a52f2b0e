/*
 * relcat.h — what the result cache must know of each relation *name* in a
 * database, read from pg_class through a control connection (px_pgctl), the
 * same way volatility.h reads pg_proc:
 *
 *   read_ok      every relation of that name (any schema) is a permanent
 *                ordinary table, partitioned table or materialized view: a
 *                read of it may be cached (not a view, foreign table,
 *                sequence or anyone's temporary table)
 *   write_local  a write to any relation of that name changes only that
 *                table: no user trigger, no rule, no inheritance or
 *                partitioning, not referenced by a foreign key with a
 *                cascading (CASCADE / SET NULL / SET DEFAULT) action.  A
 *                write to a name without it bumps the whole database.
 *   primary key  the column of the single-column primary key of type
 *                smallint, integer or bigint that every relation of that
 *                name has (same column name), else none: reads and writes
 *                pinned to one value of it are invalidated by that value
 *                (rcache_rows.h).
 *
 * A name pgfold has not seen (not loaded yet, a new table, an unknown
 * database) is neither.  After DDL committed through this pgfold the
 * database is reloaded (px_relcat_invalidate), and until the new map
 * arrives every name answers neither; a map older than PX_RELCAT_MAX_AGE_MS
 * is reloaded in the background (DDL that did not go through this pgfold).
 *
 * Interface
 *   px_relcat_new(loop) / px_relcat_configure(rc, cfg) / px_relcat_close(rc)
 *   px_relcat_flags(rc, db, user, name)   PX_REL_* bits; may start a load
 *   px_relcat_primary_key(rc, db, user, name)  its primary-key column or NULL
 *   px_relcat_invalidate(rc, db)          after DDL: reload
 */
#ifndef PGFOLD_PROXY_RELCAT_H
#define PGFOLD_PROXY_RELCAT_H

#include <uv.h>

#include "../conf/conf.h"

#define PX_RELCAT_MAX_DATABASES 64
#define PX_RELCAT_MAX_AGE_MS 60000u
#define PX_RELCAT_RETRY_MS 2000u

enum {
	PX_REL_READ_OK = 1,
	PX_REL_WRITE_LOCAL = 2,
};

typedef struct px_relcat px_relcat;

px_relcat *px_relcat_new(uv_loop_t *loop);
/* Backend address, control_user / control_password, connect_timeout. */
void px_relcat_configure(px_relcat *rc, const cf_config *cfg);
/* PX_REL_* bits of a relation name (as the parser folds it) in database;
 * 0 while unknown.  client_user connects the load when control_user is
 * empty.  Cheap; never waits. */
unsigned px_relcat_flags(px_relcat *rc, const char *database, const char *client_user, const char *name);
/* The name's primary-key column (above), or NULL (also while unknown); valid
 * until the next call into relcat. */
const char *px_relcat_primary_key(px_relcat *rc, const char *database, const char *client_user, const char *name);
void px_relcat_invalidate(px_relcat *rc, const char *database);
/* NULL-safe, idempotent; rc must not be used afterwards. */
void px_relcat_close(px_relcat *rc);

#endif /* PGFOLD_PROXY_RELCAT_H */
