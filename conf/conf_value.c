/*
 * conf_value.c — parsing and printing of single setting values (integers,
 * sizes with kB/MB/GB units, durations with ms/s/min/h units, booleans) and
 * the cf_error helpers.  See conf_value.h for the accepted syntax.
 */
#include "conf_value.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

typedef struct cf_unit {
	const char *name;
	int64_t factor;
} cf_unit;

/* Smallest first: the formatters walk them from the end. */
static const cf_unit size_units[] = {
	{"B", 1},
	{"kB", INT64_C(1) << 10},
	{"MB", INT64_C(1) << 20},
	{"GB", INT64_C(1) << 30},
	{"TB", INT64_C(1) << 40},
};
static const cf_unit duration_units[] = {
	{"ms", 1},
	{"s", 1000},
	{"min", 60 * 1000},
	{"h", 60 * 60 * 1000},
};

#define N_UNITS(a) (sizeof(a) / sizeof((a)[0]))

enum { PARSE_OK = 0, PARSE_SYNTAX = -1, PARSE_RANGE = -2 };

void cf__error_clear(cf_error *err)
{
	if (!err)
		return;
	err->file[0] = '\0';
	err->line = 0;
	err->message[0] = '\0';
}

int cf__error_set(cf_error *err, const char *fmt, ...)
{
	if (!err)
		return -1;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	return -1;
}

/* The decimal integer at the start of text (optional sign, then digits);
 * *rest is set just past it. */
static int parse_leading(const char *text, int64_t *out, const char **rest)
{
	const char *p = text;
	if (*p == '-' || *p == '+')
		p++;
	if (!isdigit((unsigned char)*p))
		return PARSE_SYNTAX;
	errno = 0;
	char *end;
	long long v = strtoll(text, &end, 10);
	if (errno == ERANGE)
		return PARSE_RANGE;
	*out = v;
	*rest = end;
	return PARSE_OK;
}

/* A non-negative number, optional blanks, then an optional unit from units;
 * without a unit the number is multiplied by bare_factor. */
static int parse_with_unit(const char *text, const cf_unit *units, size_t n_units, int64_t bare_factor,
			   int64_t *out)
{
	int64_t v;
	const char *rest;
	int rc = parse_leading(text, &v, &rest);
	if (rc != PARSE_OK)
		return rc;
	if (v < 0 || text[0] == '+')
		return PARSE_SYNTAX;
	while (*rest == ' ' || *rest == '\t')
		rest++;
	int64_t factor = bare_factor;
	if (*rest) {
		size_t i = 0;
		while (i < n_units && strcasecmp(rest, units[i].name) != 0)
			i++;
		if (i == n_units)
			return PARSE_SYNTAX;
		factor = units[i].factor;
	}
	if (v > INT64_MAX / factor)
		return PARSE_RANGE;
	*out = v * factor;
	return PARSE_OK;
}

int cf__parse_int(const char *text, int64_t *out, cf_error *err)
{
	const char *rest;
	int rc = parse_leading(text, out, &rest);
	if (rc == PARSE_RANGE)
		return cf__error_set(err, "\"%s\" is too large", text);
	if (rc != PARSE_OK || *rest != '\0')
		return cf__error_set(err, "\"%s\" is not an integer", text);
	return 0;
}

int cf__parse_size(const char *text, int64_t *out, cf_error *err)
{
	int rc = parse_with_unit(text, size_units, N_UNITS(size_units), 1, out);
	if (rc == PARSE_RANGE)
		return cf__error_set(err, "\"%s\" is too large", text);
	if (rc != PARSE_OK)
		return cf__error_set(err, "\"%s\" is not a size (a number of bytes, or a number with kB, MB or GB)",
				     text);
	return 0;
}

int cf__parse_duration(const char *text, int64_t default_unit_ms, int64_t *out, cf_error *err)
{
	int rc = parse_with_unit(text, duration_units, N_UNITS(duration_units), default_unit_ms, out);
	if (rc == PARSE_RANGE)
		return cf__error_set(err, "\"%s\" is too large", text);
	if (rc != PARSE_OK)
		return cf__error_set(err, "\"%s\" is not a duration (a whole number with ms, s, min or h)", text);
	return 0;
}

int cf__parse_bool(const char *text, bool *out, cf_error *err)
{
	static const char *const yes[] = {"on", "true", "yes", "1"};
	static const char *const no[] = {"off", "false", "no", "0"};
	for (size_t i = 0; i < N_UNITS(yes); i++) {
		if (strcasecmp(text, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(text, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return cf__error_set(err, "\"%s\" is not a boolean (on/off, true/false, yes/no, 1/0)", text);
}

/* v in the largest unit that divides it exactly. */
static void format_with_unit(int64_t v, const cf_unit *units, size_t n_units, char *buf, size_t size)
{
	size_t i = n_units - 1;
	while (i > 0 && (v == 0 || v % units[i].factor != 0))
		i--;
	snprintf(buf, size, "%" PRId64 "%s", v / units[i].factor, units[i].name);
}

void cf__format_size(int64_t bytes, char *buf, size_t size)
{
	format_with_unit(bytes, size_units, N_UNITS(size_units), buf, size);
}

void cf__format_duration(int64_t ms, char *buf, size_t size)
{
	format_with_unit(ms, duration_units, N_UNITS(duration_units), buf, size);
}
