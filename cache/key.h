/*
 * key.h — the result cache's Redis keys, values and scripts.  Pure: no I/O.
 *
 * Keys
 *   pgfold:e:<sha256 hex>      one cached result.  The hash covers, each
 *                              length-prefixed: the database, the
 *                              authenticated user, every setting the session
 *                              changed with SET (session and SET LOCAL:
 *                              search_path, timezone, ...), the protocol
 *                              ('t': simple Query, text results; 'x':
 *                              extended), the statement's exact text
 *                              (literal values included) and, extended, the
 *                              Parse's parameter types with the Bind's
 *                              parameter formats, values and result formats.
 *   pgfold:v:all               global version (POST /cache/flush bumps it)
 *   pgfold:v:<db>:all          per-database version: bumped by writes pgfold
 *                              cannot attribute to tables (CALL, DO, DDL,
 *                              unknown statements)
 *   pgfold:v:<db>:t:<name>     per-table version, by the relation's name as
 *                              the parser folds it, schema left out (a write
 *                              to s1.t also invalidates s2.t: safe, and it
 *                              keeps `t` and `public.t` on one counter):
 *                              bumped by writes to the table that pgfold
 *                              cannot pin to primary-key values
 *   pgfold:v:<db>:r:<name>:<v> per-row version: a write that changes only
 *                              rows whose primary key is v (canonical
 *                              decimal integer) bumps it ...
 *   pgfold:v:<db>:n:<name>     ... and this one, the version every read of
 *                              the table not pinned to one key depends on
 *   pgfold:seq, pgfold:log     the bump log: a counter and a stream with one
 *                              entry "<seq>-1" per bump (the keys and their
 *                              new values), trimmed to about QC_LOG_MAX
 * A read of one table pinned to one primary-key value (rcache_rows.h) reads
 * the global, database, table and that row's version; any other read the
 * global, database and, for each table, its table and its "n" version.  A
 * name collision only makes two things share a counter (more invalidation,
 * never less).  Version keys expire QC_VERSION_TTL_S after their last
 * change (or creation); one created again starts at the time (see below).
 *
 * Value: "<versions>\n<payload>" where versions are the counters read by
 * the lookup that missed (comma-separated, in key order) and payload the
 * exact backend messages (RowDescription, DataRows, CommandComplete).
 *
 * Scripts (EVAL): QC_LOOKUP_SCRIPT takes KEYS = entry, then the version
 * keys; it returns {1, versions, time, seq, payload, pttl} when the entry
 * exists and its versions equal the current ones, else {0, versions, time,
 * seq} (time: the Redis server's, in microseconds, as a decimal string; seq:
 * the bump log's counter, "0" when none).  A missing version key is created
 * with the server's time in microseconds, so a counter that was evicted or
 * lost never comes back to a value an old entry holds.  QC_BUMP_SCRIPT
 * increments each of its KEYS (a missing one starts at the time instead)
 * and logs the new values; ARGV = the bumping instance's id and the
 * channel.  It returns {seq, wait_ms, n, id1, left_ms1, ... idn, left_msn,
 * key1, value1, ...}: the instances with a lease in the registry (other
 * than the caller) and what it has left (at most QC_LEASE_MS), which must
 * acknowledge seq before the COMMIT returns (they are told on the channel:
 * "b <seq> <id>"), at least wait_ms in any case (a registry younger than a
 * lease: it was lost and a lease granted before may still run), and the
 * new values.
 * QC_SYNC_SCRIPT (ARGV = the last seq seen, "0" at first; the instance id;
 * the lease: "-", "0" or its ms) returns {seq},
 * {seq, "log", key, value, ...} or {seq, "reset"} (rcache_near.h).
 * QC_FILL_SCRIPT stores entries computed without a lookup (N+1 batches,
 * cold shapes): KEYS = the version keys, then the entry keys; ARGV = the
 * number of version keys, the bump-log sequence S read before the result's
 * snapshot was taken, the TTL in ms, then one payload per entry.  It stores
 * nothing (returns 0) when the log shows a bump of one of the version keys
 * after S, or cannot tell (trimmed, lost, more than QC_SYNC_MAX_GAP behind):
 * the result may be older than the versions.  Otherwise the versions it
 * reads (created if missing) are the ones the snapshot saw.
 *
 * Interface
 *   qc_key_entry()        the entry key for a statement in a session
 *   qc_key_bind()         the extended protocol's bound part of a key
 *   qc_key_versions()     the version keys a statement's lookup reads
 *   qc_key_table()        the version key of one table (unpinned writes bump it)
 *   qc_key_row()          one primary-key value's version key (pinned writes)
 *   qc_key_unkeyed()      the table's version for reads not pinned to a key (pinned writes)
 *   qc_key_database()     the per-database version key
 *   qc_payload_check()    walk a stored payload: framing, and its final tag
 */
#ifndef PGFOLD_CACHE_KEY_H
#define PGFOLD_CACHE_KEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/strbuf.h"
#include "../rewrite/analysis.h"

#define QC_KEY_PREFIX "pgfold:"
#define QC_KEY_GLOBAL "pgfold:v:all"
#define QC_ENTRY_KEY_LEN (9 + 64) /* "pgfold:e:" + 64 hex digits */
#define QC_KEY_SEQ "pgfold:seq"
#define QC_KEY_LOG "pgfold:log"
#define QC_KEY_LEASES "pgfold:leases" /* the lease registry: a hash, instance id -> lease end (ms) */
#define QC_LEASE_EPOCH "_epoch"           /* ... and this field: when the registry was created (ms) */
#define QC_LEASE_MS "400"                 /* a near-cache lease's length (rcache_near.h) */
#define QC_LOG_MAX "10000"        /* bump log entries Redis keeps (about) */
#define QC_SYNC_MAX_GAP "512"     /* a sync further behind than this resets */
#define QC_VERSION_TTL_S "86400"  /* version keys live a day after their last change (the longest TTL) */
#define QC_MAX_VERSION_KEYS 66    /* global + database + 2 for each of 32 tables; more: not cached */

typedef struct qc_key_input {
	const char *database;
	const char *user;
	const char *startup;      /* the StartupMessage's other parameters (options, search_path, DateStyle,
	                             client_encoding, extra_float_digits, ...): name\0value\0 pairs, may be NULL */
	size_t startup_len;
	const char *settings;     /* name\0value\0 ... pairs (px_settings blob), may be NULL */
	size_t settings_len;
	const char *local;        /* SET LOCAL pairs, may be NULL */
	size_t local_len;
	char format;              /* 't': text results (simple Query); 'x': extended protocol */
	const char *sql;          /* the statement's text */
	size_t sql_len;
	const void *params;       /* 'x': the Parse's parameter types, the Bind's parameter formats and
	                             values and its result formats (qc_key_bind()), may be NULL */
	size_t params_len;
} qc_key_input;

/* A list of version keys (owned strings). */
typedef struct qc_keys {
	size_t n;
	char *keys[QC_MAX_VERSION_KEYS];
} qc_keys;

/* "pgfold:e:<hex>" into out (QC_ENTRY_KEY_LEN + 1 bytes). */
void qc_key_entry(const qc_key_input *in, char out[QC_ENTRY_KEY_LEN + 1]);
/* The extended protocol's part of a key: the Parse's parameter types
 * (ntypes host-order OIDs) and the Bind's parameter format codes, raw
 * parameters and result format codes, each length-prefixed, into out. */
void qc_key_bind(pf_sb *out, int16_t ntypes, const uint32_t *types, int16_t nformats, const uint8_t *formats,
		 int16_t nparams, const uint8_t *params, size_t params_len, int16_t nresult_formats,
		 const uint8_t *result_formats);
/* Global, database, then for each distinct table the shape reads its table
 * key and either its "n" key or, when row is not NULL and the shape reads
 * one table, that row's key.  False when there are more tables than fit
 * (the statement is then not cached). */
bool qc_key_versions(const char *database, const rw_shape *shape, const char *row, qc_keys *out);
void qc_keys_free(qc_keys *k);
/* Append one table's / the database's version key to sb. */
void qc_key_table(pf_sb *sb, const char *database, const char *table);
void qc_key_database(pf_sb *sb, const char *database);
void qc_key_row(pf_sb *sb, const char *database, const char *table, const char *value);
void qc_key_unkeyed(pf_sb *sb, const char *database, const char *table);

/* A stored payload is well formed: whole messages of the types T, D and C
 * only, ending with exactly one CommandComplete whose tag goes to tag
 * (size bytes).  False otherwise (the entry is then ignored). */
bool qc_payload_check(const char *payload, size_t len, char *tag, size_t size);

extern const char QC_LOOKUP_SCRIPT[];
extern const char QC_BUMP_SCRIPT[];
extern const char QC_FILL_SCRIPT[];
extern const char QC_SYNC_SCRIPT[];

#endif /* PGFOLD_CACHE_KEY_H */
