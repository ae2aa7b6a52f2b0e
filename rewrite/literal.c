/*
 * literal.c — a SQL literal's value in text form (see literal.h).
 */
#include "literal.h"

#include <ctype.h>
#include <stdbool.h>
#include <string.h>

/* An integer as the scanner gives it: optional '-' (the analysis folds a
 * unary minus into the slot) and digits.  Leading zeros and '+' change the
 * printed form, so they are refused rather than normalised. */
static int integer_text(const char *lit, size_t len, char *out, size_t size, size_t *out_len)
{
	size_t i = 0, o = 0;
	if (lit[0] == '-') {
		out[o++] = '-';
		i = 1;
		while (i < len && isspace((unsigned char)lit[i]))
			i++; /* "- 1" */
	}
	if (i >= len || (lit[i] == '0' && i + 1 < len))
		return -1;
	for (; i < len; i++) {
		if (!isdigit((unsigned char)lit[i]) || o + 1 >= size)
			return -1;
		out[o++] = lit[i];
	}
	if (o == 1 && out[0] == '-')
		return -1;
	out[o] = '\0';
	*out_len = o;
	return 0;
}

/* 'text' with '' for a quote; adjacent 'a' 'b' continuation is refused. */
static int string_text(const char *lit, size_t len, char *out, size_t size, size_t *out_len)
{
	if (len < 2 || lit[len - 1] != '\'')
		return -1;
	size_t o = 0;
	for (size_t i = 1; i + 1 < len; i++) {
		if (lit[i] == '\'') {
			if (lit[i + 1] != '\'' || i + 2 >= len)
				return -1;
			i++;
		}
		if (o + 1 >= size)
			return -1;
		out[o++] = lit[i];
	}
	out[o] = '\0';
	*out_len = o;
	return 0;
}

int rw_literal_text(const char *lit, size_t len, char *out, size_t size, size_t *out_len)
{
	if (len == 0 || size == 0)
		return -1;
	if (lit[0] == '\'')
		return string_text(lit, len, out, size, out_len);
	if (lit[0] == '-' || isdigit((unsigned char)lit[0]))
		return integer_text(lit, len, out, size, out_len);
	return -1;
}
