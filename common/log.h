/*
 * log.h — one line per event on stderr, with a level that is checked before
 * any formatting happens.  Used by proxy/, conf/ users and cache/; protocol/
 * never logs.
 *
 *   pf_log_set_level(level)      process-wide threshold (set from config)
 *   pf_error/pf_warn/pf_info/pf_debug(fmt, ...)
 *
 * Lines look like:  2026-11-28 10:00:00.123 UTC [1234] INFO  message
 */
#ifndef PGFOLD_COMMON_LOG_H
#define PGFOLD_COMMON_LOG_H

#include <stdbool.h>

typedef enum pf_log_level {
	PF_LOG_ERROR = 0,
	PF_LOG_WARN = 1,
	PF_LOG_INFO = 2,
	PF_LOG_DEBUG = 3,
} pf_log_level;

extern pf_log_level pf_log_threshold; /* read by the macros; written by pf_log_set_level() */

void pf_log_set_level(pf_log_level level);
/* "error", "warn", "info", "debug" -> level; returns -1 for anything else. */
int pf_log_level_parse(const char *name);
const char *pf_log_level_name(pf_log_level level);

void pf_log_write(pf_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define PF_LOG_AT(level, ...)                                                                                  \
	do {                                                                                                   \
		if ((level) <= pf_log_threshold)                                                               \
			pf_log_write((level), __VA_ARGS__);                                                    \
	} while (0)

#define pf_error(...) PF_LOG_AT(PF_LOG_ERROR, __VA_ARGS__)
#define pf_warn(...) PF_LOG_AT(PF_LOG_WARN, __VA_ARGS__)
#define pf_info(...) PF_LOG_AT(PF_LOG_INFO, __VA_ARGS__)
#define pf_debug(...) PF_LOG_AT(PF_LOG_DEBUG, __VA_ARGS__)

#endif /* PGFOLD_COMMON_LOG_H */
