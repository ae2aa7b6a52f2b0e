/*
 * conf_rules.h — internal to conf/ (and its unit test): reading one
 * [cache.rules] entry into a cf_cache_rules.
 *
 *   cf__rule_apply()   "table.public.orders" = "30s" -> one cf_cache_rule
 *   cf__rules_print()  the entry syntax, for --help
 *
 * Entry names (the INI key, or what follows "cache.rules." on the command line):
 *   table.NAME          statements that read NAME in any schema
 *   table.SCHEMA.NAME   statements that read SCHEMA.NAME (or an unqualified NAME:
 *                       pgfold does not resolve search_path)
 *   shape.FINGERPRINT   statements of that shape: the 16 hex digits /queries shows
 *   statement.LABEL     value "TTL STATEMENT": statements of the same shape as
 *                       STATEMENT (literals or $n; fingerprinted by libpg_query)
 * NAME and SCHEMA are SQL identifiers: bare ones fold to lower case, "quoted"
 * ones are taken as written.  The value is a duration (a bare number is
 * seconds, 1s to 24h) or "off".
 */
#ifndef PGFOLD_CONF_CONF_RULES_H
#define PGFOLD_CONF_CONF_RULES_H

#include <stdio.h>

#include "conf.h"

#define CF_RULES_SECTION "cache.rules"

/* Apply one entry.  An entry for the same table or shape already at index
 * < dup_from is replaced; one at index >= dup_from (given earlier in the same
 * file) is an error.  line is recorded in the rule (0: command line).
 * Returns 0, or -1 with err->message "cache.rules.NAME: reason" and rules
 * unchanged. */
int cf__rule_apply(cf_cache_rules *rules, const char *name, const char *value, int line, int dup_from,
		   cf_error *err);

/* The [cache.rules] syntax, a few lines for --help. */
void cf__rules_print(FILE *out);

#endif /* PGFOLD_CONF_CONF_RULES_H */
