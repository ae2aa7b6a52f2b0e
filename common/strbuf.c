/* strbuf.c — growable NUL-terminated text buffer (see strbuf.h). */
#include "strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"

void pf_sb_init(pf_sb *sb)
{
	sb->data = NULL;
	sb->len = 0;
	sb->cap = 0;
}

void pf_sb_free(pf_sb *sb)
{
	pf_free(sb->data);
	pf_sb_init(sb);
}

void pf_sb_reset(pf_sb *sb)
{
	sb->len = 0;
	if (sb->data)
		sb->data[0] = '\0';
}

static void reserve(pf_sb *sb, size_t extra)
{
	size_t need = sb->len + extra + 1;
	if (need <= sb->cap)
		return;
	size_t cap = sb->cap ? sb->cap : 256;
	while (cap < need)
		cap *= 2;
	sb->data = pf_realloc(sb->data, cap);
	sb->cap = cap;
}

void pf_sb_append_n(pf_sb *sb, const char *s, size_t n)
{
	reserve(sb, n);
	memcpy(sb->data + sb->len, s, n);
	sb->len += n;
	sb->data[sb->len] = '\0';
}

void pf_sb_append(pf_sb *sb, const char *s)
{
	pf_sb_append_n(sb, s, strlen(s));
}

void pf_sb_appendf(pf_sb *sb, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n <= 0)
		return;
	reserve(sb, (size_t)n);
	va_start(ap, fmt);
	vsnprintf(sb->data + sb->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	sb->len += (size_t)n;
}

void pf_sb_append_json_string(pf_sb *sb, const char *s)
{
	pf_sb_append_n(sb, "\"", 1);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		switch (*p) {
		case '"': pf_sb_append_n(sb, "\\\"", 2); break;
		case '\\': pf_sb_append_n(sb, "\\\\", 2); break;
		case '\n': pf_sb_append_n(sb, "\\n", 2); break;
		case '\r': pf_sb_append_n(sb, "\\r", 2); break;
		case '\t': pf_sb_append_n(sb, "\\t", 2); break;
		default:
			if (*p < 0x20)
				pf_sb_appendf(sb, "\\u%04x", *p);
			else
				pf_sb_append_n(sb, (const char *)p, 1);
		}
	}
	pf_sb_append_n(sb, "\"", 1);
}

const char *pf_sb_str(const pf_sb *sb)
{
	return sb->data ? sb->data : "";
}

void pf_hex(const void *bytes, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	const unsigned char *b = bytes;
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[2 * n] = '\0';
}
