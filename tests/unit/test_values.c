/*
 * test_values.c — values in text form: binary protocol values converted as
 * PostgreSQL prints them (pgw_value_text) and SQL literals' values
 * (rw_literal_text), table-driven.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "../../protocol/pgwire.h"
#include "../../rewrite/literal.h"

#define LIT(s) (const uint8_t *)(s), (int32_t)(sizeof(s) - 1)

typedef struct value_case {
	const char *name;
	uint32_t type;
	int16_t format;
	const uint8_t *data;
	int32_t len;
	int want_rc;
	const char *want;
} value_case;

static void test_value_text(void **state)
{
	(void)state;
	const value_case cases[] = {
		{"text format copied", 23, 0, LIT("12345"), PGW_OK, "12345"},
		{"int2 binary", 21, 1, LIT("\xff\xfe"), PGW_OK, "-2"},
		{"int4 binary", 23, 1, LIT("\x00\x01\xe2\x40"), PGW_OK, "123456"},
		{"int4 negative", 23, 1, LIT("\x80\x00\x00\x00"), PGW_OK, "-2147483648"},
		{"int8 binary", 20, 1, LIT("\x00\x00\x00\x02\x54\x0b\xe3\xff"), PGW_OK, "9999999999"},
		{"oid binary", 26, 1, LIT("\xff\xff\xff\xff"), PGW_OK, "4294967295"},
		{"uuid binary", 2950, 1,
		 LIT("\xa0\xee\xbc\x99\x9c\x0b\x4e\xf8\xbb\x6d\x6b\xb9\xbd\x38\x0a\x11"), PGW_OK,
		 "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
		{"text binary", 25, 1, LIT("héllo"), PGW_OK, "héllo"},
		{"varchar binary", 1043, 1, LIT("x"), PGW_OK, "x"},
		{"int4 wrong size", 23, 1, LIT("\x00\x01"), PGW_ERR_MALFORMED, NULL},
		{"uuid wrong size", 2950, 1, LIT("\x00"), PGW_ERR_MALFORMED, NULL},
		{"numeric binary refused", 1700, 1, LIT("\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01"),
		 PGW_ERR_MALFORMED, NULL},
		{"format 2", 23, 2, LIT("1"), PGW_ERR_MALFORMED, NULL},
		{"negative length", 23, 0, (const uint8_t *)"", -1, PGW_ERR_MALFORMED, NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[64];
		size_t n = 0;
		int rc = pgw_value_text(cases[i].type, cases[i].format, cases[i].data, cases[i].len, out, sizeof(out),
					&n);
		if (rc != cases[i].want_rc)
			fail_msg("%s: rc %d, want %d", cases[i].name, rc, cases[i].want_rc);
		if (rc == PGW_OK && (strcmp(out, cases[i].want) != 0 || n != strlen(cases[i].want)))
			fail_msg("%s: got \"%s\" (%zu), want \"%s\"", cases[i].name, out, n, cases[i].want);
	}
	char small[4];
	size_t n;
	assert_int_equal(pgw_value_text(23, 0, LIT("12345"), small, sizeof(small), &n), PGW_ERR_TOO_LARGE);
	assert_int_equal(pgw_value_text(2950, 1, LIT("0123456789abcdef"), small, sizeof(small), &n),
			 PGW_ERR_TOO_LARGE);
}

typedef struct literal_case {
	const char *lit;
	int want_rc;
	const char *want;
} literal_case;

static void test_literal_text(void **state)
{
	(void)state;
	const literal_case cases[] = {
		{"42", 0, "42"},         {"-7", 0, "-7"},       {"- 7", 0, "-7"},     {"0", 0, "0"},
		{"'abc'", 0, "abc"},     {"''", 0, ""},         {"'it''s'", 0, "it's"}, {"'a''''b'", 0, "a''b"},
		{"007", -1, NULL},       {"1.5", -1, NULL},     {"1e3", -1, NULL},    {"-", -1, NULL},
		{"E'a\\nb'", -1, NULL},  {"U&'x'", -1, NULL},   {"B'101'", -1, NULL}, {"$$x$$", -1, NULL},
		{"'unterminated", -1, NULL}, {"'a' 'b'", -1, NULL}, {"'a'b'", -1, NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[64];
		size_t n = 0;
		int rc = rw_literal_text(cases[i].lit, strlen(cases[i].lit), out, sizeof(out), &n);
		if (rc != cases[i].want_rc)
			fail_msg("%s: rc %d, want %d", cases[i].lit, rc, cases[i].want_rc);
		if (rc == 0 && (strcmp(out, cases[i].want) != 0 || n != strlen(cases[i].want)))
			fail_msg("%s: got \"%s\", want \"%s\"", cases[i].lit, out, cases[i].want);
	}
	char small[3];
	size_t n;
	assert_int_equal(rw_literal_text("'abcd'", 6, small, sizeof(small), &n), -1);
	assert_int_equal(rw_literal_text("1234", 4, small, sizeof(small), &n), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_value_text),
		cmocka_unit_test(test_literal_text),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
