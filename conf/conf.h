/*
 * conf.h — pgfold's configuration: a table of keys (name, type, default,
 * bounds, reloadable) read from an INI file with libinih and from command-line
 * overrides, into an immutable snapshot that SIGHUP reload replaces.
 *
 * Interface
 *   cf_config_new()            a snapshot holding every default
 *   cf_config_load_file()      apply an INI file (errors carry file:line)
 *   cf_config_set()            apply one "section.key=value" (or bare key of [pgfold])
 *   cf_config_validate()       cross-key checks once everything is applied
 *   cf_config_carry_fixed()    on reload: keep the running value of keys that
 *                              need a restart, reporting each one that changed
 *   cf_config_free()
 *   cf_addr_parse/format       HOST:PORT, [v6]:PORT, /unix/dir[:PORT], "off"
 *   cf_keys_print()            the key reference, for --help
 *   cf_error_format()          "file:line: message" for printing a cf_error
 *
 * [cache.rules] is not a table of fixed keys: each entry names a table or a
 * statement shape and gives it a TTL (or off).  The entries live in the
 * snapshot as a bounded array (cf_cache_rules), so copying a snapshot is a
 * plain struct copy; a statement entry's text is reduced to its
 * libpg_query fingerprint when it is read, and only the fingerprint is kept.
 *
 * Nothing here logs or touches the event loop; errors come back in cf_error.
 */
#ifndef PGFOLD_CONF_CONF_H
#define PGFOLD_CONF_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum cf_addr_kind {
	CF_ADDR_OFF = 0, /* "off": the listener / client is disabled */
	CF_ADDR_TCP,
	CF_ADDR_UNIX, /* a PostgreSQL-style socket directory + port */
} cf_addr_kind;

typedef struct cf_addr {
	cf_addr_kind kind;
	char host[256]; /* TCP: host name or address literal, without brackets; UNIX: the socket directory */
	int port;       /* TCP port, or the port in the unix socket file name */
	char path[108]; /* UNIX: full socket path, e.g. /tmp/.s.PGSQL.5432 */
} cf_addr;

typedef struct cf_error {
	char file[256]; /* "" for the command line */
	int line;       /* 0 when not from a file */
	char message[512];
} cf_error;

typedef enum cf_nplusone_mode { CF_NPLUSONE_OFF, CF_NPLUSONE_DETECT, CF_NPLUSONE_REWRITE } cf_nplusone_mode;
typedef enum cf_cache_mode { CF_CACHE_OFF, CF_CACHE_RULES, CF_CACHE_AUTO } cf_cache_mode;

#define CF_CACHE_RULES_MAX 256 /* [cache.rules] entries one configuration holds */
#define CF_IDENT_MAX 63        /* bytes of a PostgreSQL identifier (NAMEDATALEN - 1) */

typedef enum cf_rule_kind {
	CF_RULE_TABLE, /* table.NAME / table.SCHEMA.NAME: statements that read the table */
	CF_RULE_SHAPE, /* shape.FINGERPRINT / statement.LABEL: statements of that shape */
} cf_rule_kind;

/* One [cache.rules] entry. */
typedef struct cf_cache_rule {
	cf_rule_kind kind;
	int ttl_ms;                    /* > 0; 0 for "off": never cache what it selects */
	uint64_t fingerprint;          /* SHAPE: pg_query_fingerprint, as /queries prints it */
	char schema[CF_IDENT_MAX + 1]; /* TABLE: "" when the entry names no schema */
	char table[CF_IDENT_MAX + 1];  /* TABLE: as PostgreSQL folds it (unquoted: lower case) */
	int line;                      /* line of the file it came from; 0 from the command line */
} cf_cache_rule;

typedef struct cf_cache_rules {
	int n;
	cf_cache_rule rule[CF_CACHE_RULES_MAX];
} cf_cache_rules;

/* One immutable snapshot of every setting.  Durations are milliseconds. */
typedef struct cf_config {
	/* [pgfold] */
	cf_addr listen;             /* restart */
	cf_addr backend;            /* reload: new connections use it */
	cf_addr admin;              /* restart; kind OFF disables */
	int listen_backlog;         /* restart */
	int max_client_conn;        /* reload */
	size_t max_message_bytes;   /* reload: largest frame accepted from a client */
	size_t buffer_high_bytes;   /* reload: stop reading a peer when the other's queue passes this */
	size_t buffer_low_bytes;    /* reload: resume below this */
	int connect_timeout_ms;     /* reload: backend connect + its startup */
	int client_login_timeout_ms;/* reload: a client must finish startup within this */
	int shutdown_timeout_ms;    /* reload: SIGTERM grace period for running queries */
	int log_level;              /* reload: a pf_log_level */
	char control_user[128];     /* reload: role of the catalog (control) connections; "" = the client's user */
	char control_password[128]; /* reload: its password; "" = none (libpq may still use ~/.pgpass) */
	bool analysis;              /* reload: analyse statements in new sessions */
	int analysis_cache_entries; /* restart */
	size_t analysis_cache_bytes;/* restart */
	/* [nplusone] */
	int nplusone_mode;          /* reload: a cf_nplusone_mode */
	int nplusone_min_repeats;   /* reload */
	int nplusone_max_parent_rows;     /* reload */
	size_t nplusone_max_parent_bytes; /* reload */
	int nplusone_max_patterns;  /* restart */
	int nplusone_batch_size;    /* reload */
	int nplusone_max_staleness_ms;    /* reload */
	size_t nplusone_max_buffer_bytes; /* reload */
	size_t nplusone_max_total_buffer_bytes; /* reload */
	/* [stats] */
	int max_shapes;             /* restart: /queries table size */
	/* [cache] */
	cf_addr redis;              /* restart; kind OFF disables */
	int cache_redis_db;         /* restart: SELECTed after connect */
	char cache_redis_user[128]; /* restart: AUTH user (Redis 6 ACL); "" = AUTH with the password alone */
	char cache_redis_password[128]; /* restart: "" = no AUTH */
	int cache_redis_connections;/* restart: pool size */
	int cache_mode;             /* reload: a cf_cache_mode */
	int cache_default_ttl_ms;   /* reload: TTL of entries cached in auto mode */
	size_t cache_max_entry_bytes; /* reload: larger results are not cached */
	size_t cache_near_cache_bytes; /* reload: the near cache's bound (0: off) */
	int cache_timeout_ms;       /* reload: a lookup not answered within this fails open */
	cf_cache_rules cache_rules; /* reload: [cache.rules] */
} cf_config;

/* A new snapshot holding every default. */
cf_config *cf_config_new(void);
void cf_config_free(cf_config *cfg);
cf_config *cf_config_copy(const cf_config *cfg);

/* Apply an INI file.  Unknown sections or keys and bad values fail with
 * err->file, err->line and a reason.  Returns 0 or -1; on -1 cfg is unchanged. */
int cf_config_load_file(cf_config *cfg, const char *path, cf_error *err);

/* Apply one setting.  key is "section.name", or a bare name of [pgfold]
 * ("listen" == "pgfold.listen"), or "cache.rules.ENTRY" for a [cache.rules]
 * entry (replacing an entry for the same table or shape).  Returns 0 or -1
 * with err->message (the key is then unchanged). */
int cf_config_set(cf_config *cfg, const char *key, const char *value, cf_error *err);

/* Checks across keys (buffer_low_bytes < buffer_high_bytes, ...). 0 or -1. */
int cf_config_validate(const cf_config *cfg, cf_error *err);

/* For a reload: copy into `next` the running value of every key that needs a
 * restart and whose value differs, calling report(key, ctx) for each. */
void cf_config_carry_fixed(const cf_config *running, cf_config *next, void (*report)(const char *key, void *ctx),
			   void *ctx);

/* Parse "HOST:PORT", "[::1]:PORT", "/dir" or "/dir:PORT" (PostgreSQL socket
 * directory; default_port when absent), or "off".  0 or -1. */
int cf_addr_parse(const char *text, int default_port, cf_addr *out, cf_error *err);
/* "127.0.0.1:6432", "[::1]:6432", "/tmp/.s.PGSQL.5432" or "off" into buf. */
const char *cf_addr_format(const cf_addr *addr, char *buf, size_t size);

/* Print every key with its default and whether SIGHUP reloads it. */
void cf_keys_print(FILE *out);

/* "pgfold.ini:12: max_client_conn: value 0 is below the minimum 1": the file
 * and line prefix only when present.  Returns buf. */
const char *cf_error_format(const cf_error *err, char *buf, size_t size);

#endif /* PGFOLD_CONF_CONF_H */
