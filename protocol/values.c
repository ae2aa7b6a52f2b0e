/*
 * values.c — column values in text form (see pgw_value_text in pgwire.h):
 * binary-format integers, uuids and strings converted as PostgreSQL's own
 * output functions print them, so values from the text and the binary
 * protocol compare equal.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "pgwire.h"
#include "pgtypes.h"


static int copy_out(const uint8_t *value, size_t len, char *out, size_t size, size_t *out_len)
{
	if (len + 1 > size)
		return PGW_ERR_TOO_LARGE;
	memcpy(out, value, len);
	out[len] = '\0';
	*out_len = len;
	return PGW_OK;
}

static uint64_t big_endian(const uint8_t *p, size_t n)
{
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++)
		v = (v << 8) | p[i];
	return v;
}

static int print_out(char *out, size_t size, size_t *out_len, int n)
{
	if (n < 0 || (size_t)n + 1 > size)
		return PGW_ERR_TOO_LARGE;
	*out_len = (size_t)n;
	return PGW_OK;
}

static int integer_text(uint32_t type_oid, const uint8_t *v, int32_t len, char *out, size_t size, size_t *out_len)
{
	switch (type_oid) {
	case OID_INT2:
		if (len != 2)
			return PGW_ERR_MALFORMED;
		return print_out(out, size, out_len, snprintf(out, size, "%d", (int16_t)big_endian(v, 2)));
	case OID_INT4:
		if (len != 4)
			return PGW_ERR_MALFORMED;
		return print_out(out, size, out_len, snprintf(out, size, "%" PRId32, (int32_t)big_endian(v, 4)));
	case OID_OID:
		if (len != 4)
			return PGW_ERR_MALFORMED;
		return print_out(out, size, out_len, snprintf(out, size, "%" PRIu32, (uint32_t)big_endian(v, 4)));
	default: /* OID_INT8 */
		if (len != 8)
			return PGW_ERR_MALFORMED;
		return print_out(out, size, out_len, snprintf(out, size, "%" PRId64, (int64_t)big_endian(v, 8)));
	}
}

static int uuid_text(const uint8_t *v, int32_t len, char *out, size_t size, size_t *out_len)
{
	if (len != 16)
		return PGW_ERR_MALFORMED;
	if (size < 37)
		return PGW_ERR_TOO_LARGE;
	size_t o = 0;
	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		o += (size_t)snprintf(out + o, size - o, "%02x", v[i]);
	}
	*out_len = o;
	return PGW_OK;
}

int pgw_value_text(uint32_t type_oid, int16_t format, const uint8_t *value, int32_t len, char *out, size_t size,
		   size_t *out_len)
{
	if (len < 0)
		return PGW_ERR_MALFORMED;
	if (format == 0)
		return copy_out(value, (size_t)len, out, size, out_len);
	if (format != 1)
		return PGW_ERR_MALFORMED;
	switch (type_oid) {
	case OID_INT2:
	case OID_INT4:
	case OID_INT8:
	case OID_OID:
		return integer_text(type_oid, value, len, out, size, out_len);
	case OID_UUID:
		return uuid_text(value, len, out, size, out_len);
	case OID_TEXT:
	case OID_VARCHAR:
	case OID_BPCHAR:
	case OID_NAME:
		return copy_out(value, (size_t)len, out, size, out_len);
	default:
		return PGW_ERR_MALFORMED;
	}
}
