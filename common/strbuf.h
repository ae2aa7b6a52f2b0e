/*
 * strbuf.h — a growable text buffer for building HTTP bodies, JSON and
 * Prometheus text.  Allocation aborts on OOM (pf_malloc); the contents are
 * always NUL-terminated.
 */
#ifndef PGFOLD_COMMON_STRBUF_H
#define PGFOLD_COMMON_STRBUF_H

#include <stddef.h>

typedef struct pf_sb {
	char *data; /* NUL-terminated; NULL until the first append */
	size_t len;
	size_t cap;
} pf_sb;

void pf_sb_init(pf_sb *sb);
void pf_sb_free(pf_sb *sb);
void pf_sb_reset(pf_sb *sb);
void pf_sb_append(pf_sb *sb, const char *s);
void pf_sb_append_n(pf_sb *sb, const char *s, size_t n);
void pf_sb_appendf(pf_sb *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append s as a JSON string literal, quotes included. */
void pf_sb_append_json_string(pf_sb *sb, const char *s);
/* Contents as a C string ("" when empty). */
const char *pf_sb_str(const pf_sb *sb);

/* n bytes as 2n lowercase hex digits and a NUL into out (2n + 1 bytes). */
void pf_hex(const void *bytes, size_t n, char *out);

#endif /* PGFOLD_COMMON_STRBUF_H */
