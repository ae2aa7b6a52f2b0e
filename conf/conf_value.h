/*
 * conf_value.h — internal to conf/ (and its unit test): parsing and printing
 * of single setting values, and the cf_error helpers.
 *
 *   cf__parse_int/size/duration/bool   text -> value; 0, or -1 with a reason in
 *                                      err->message (without the key name:
 *                                      conf.c prefixes "key: ")
 *   cf__format_size/duration           value -> the shortest exact text ("1GB",
 *                                      "256kB", "2min", "500ms")
 *   cf__error_clear/set                reset / fill a cf_error (NULL-safe)
 *
 * Sizes use 1024 multiples (PostgreSQL's B, kB, MB, GB, TB; case-insensitive).
 * Durations are whole milliseconds; units ms, s, min, h; a bare number is in
 * the caller's default unit.  Nothing here allocates or logs.
 */
#ifndef PGFOLD_CONF_CONF_VALUE_H
#define PGFOLD_CONF_CONF_VALUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf.h"

/* file "", line 0, message "". */
void cf__error_clear(cf_error *err);
/* Set err->message (file and line are left alone).  Always returns -1. */
int cf__error_set(cf_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A decimal integer, optionally negative, nothing else. */
int cf__parse_int(const char *text, int64_t *out, cf_error *err);
/* A non-negative byte count with an optional unit: "1024", "64kB", "1 GB". */
int cf__parse_size(const char *text, int64_t *out, cf_error *err);
/* A non-negative duration in ms: "500ms", "30s", "2min", "1h", or a bare
 * number of default_unit_ms milliseconds each. */
int cf__parse_duration(const char *text, int64_t default_unit_ms, int64_t *out, cf_error *err);
/* on/off, true/false, yes/no, 1/0 (case-insensitive). */
int cf__parse_bool(const char *text, bool *out, cf_error *err);

void cf__format_size(int64_t bytes, char *buf, size_t size);
void cf__format_duration(int64_t ms, char *buf, size_t size);

#endif /* PGFOLD_CONF_CONF_VALUE_H */
