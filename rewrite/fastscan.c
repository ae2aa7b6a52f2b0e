/*
 * fastscan.c — the fast path's SQL lexer (interface and guarantees in
 * fastscan.h).
 *
 * One pass, one switch on the first byte of each token, mirroring PostgreSQL
 * 15's scan.l for the subset it accepts:
 *
 *   white space   ' ' \t \n \r \f (\v is not white space before PostgreSQL 16)
 *   comments      -- to \n or \r; nested slash-star comments
 *   identifiers   [A-Za-z_][A-Za-z0-9_$]*, folded A-Z -> a-z; "..." with ""
 *   numbers       digits, digits.digits, .digits, with [eE][+-]digits
 *   strings       '...' with ''
 *   $n            $ digits
 *   operators     a maximal run of ~!@#^&|`?+-*%<>=/ that stops before a
 *                 comment start, kept verbatim: PostgreSQL splits a run into
 *                 tokens by the run's text alone (trailing +/- stripping,
 *                 => <= >= <> !=), so equal runs are equal token sequences
 *   punctuation   ( ) , [ ] . : :: := .. ;
 *
 * Key encoding: every token is one tag byte (below 0x20) or one punctuation
 * character, followed for names, operators and $n by their bytes (all drawn
 * from sets that contain neither tags nor punctuation nor '"') and for
 * quoted identifiers by their bytes after the opening quote (inner quotes
 * doubled, so the first lone '"' is the closing one).  So a key decodes to
 * exactly one token sequence.
 */
#include "fastscan.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "../common/alloc.h"

/* key tags */
enum {
	K_IDENT = 0x01,  /* + folded name */
	K_OP = 0x02,     /* + operator run */
	K_ICONST = 0x03,
	K_FCONST = 0x04,
	K_SCONST = 0x05,
	K_PARAM = 0x06,  /* + digits */
	K_QIDENT = 0x07, /* + the bytes after the opening quote, closing quote included */
	K_TYPECAST = 0x08,
	K_COLON_EQUALS = 0x09,
	K_DOT_DOT = 0x0a,
};

/* character classes */
enum {
	C_SPACE = 1 << 0,
	C_IDSTART = 1 << 1, /* A-Z a-z _ */
	C_IDCONT = 1 << 2,  /* A-Z a-z _ 0-9 $ */
	C_DIGIT = 1 << 3,
	C_OP = 1 << 4,      /* ~ ! @ # ^ & | ` ? + - * / % < > = */
	C_HIGH = 1 << 5,    /* >= 0x80 */
};

#define L (C_IDSTART | C_IDCONT)
#define LETTERS(a, v) [a] = v, [a + 1] = v, [a + 2] = v, [a + 3] = v, [a + 4] = v, [a + 5] = v, [a + 6] = v, \
		   [a + 7] = v, [a + 8] = v, [a + 9] = v, [a + 10] = v, [a + 11] = v, [a + 12] = v,        \
		   [a + 13] = v, [a + 14] = v, [a + 15] = v, [a + 16] = v, [a + 17] = v, [a + 18] = v,     \
		   [a + 19] = v, [a + 20] = v, [a + 21] = v, [a + 22] = v, [a + 23] = v, [a + 24] = v,     \
		   [a + 25] = v
#define D (C_IDCONT | C_DIGIT)
#define H8(a) [a] = C_HIGH, [a + 1] = C_HIGH, [a + 2] = C_HIGH, [a + 3] = C_HIGH, [a + 4] = C_HIGH, \
	      [a + 5] = C_HIGH, [a + 6] = C_HIGH, [a + 7] = C_HIGH
#define H64(a) H8(a), H8(a + 8), H8(a + 16), H8(a + 24), H8(a + 32), H8(a + 40), H8(a + 48), H8(a + 56)

static const unsigned char cls[256] = {
	[' '] = C_SPACE, ['\t'] = C_SPACE, ['\n'] = C_SPACE, ['\r'] = C_SPACE, ['\f'] = C_SPACE,
	LETTERS('A', L), LETTERS('a', L), ['_'] = L, ['$'] = C_IDCONT,
	['0'] = D, ['1'] = D, ['2'] = D, ['3'] = D, ['4'] = D, ['5'] = D, ['6'] = D, ['7'] = D, ['8'] = D, ['9'] = D,
	['~'] = C_OP, ['!'] = C_OP, ['@'] = C_OP, ['#'] = C_OP, ['^'] = C_OP, ['&'] = C_OP, ['|'] = C_OP,
	['`'] = C_OP, ['?'] = C_OP, ['+'] = C_OP, ['-'] = C_OP, ['*'] = C_OP, ['/'] = C_OP, ['%'] = C_OP,
	['<'] = C_OP, ['>'] = C_OP, ['='] = C_OP,
	H64(0x80), H64(0xc0),
};

/* An identifier character folded as PostgreSQL folds it (A-Z -> a-z); 0 for
 * the bytes that end an identifier. */
#define F10(a) [a] = a, [a + 1] = a + 1, [a + 2] = a + 2, [a + 3] = a + 3, [a + 4] = a + 4, [a + 5] = a + 5, \
	       [a + 6] = a + 6, [a + 7] = a + 7, [a + 8] = a + 8, [a + 9] = a + 9
#define FOLD10(a) [a] = a + 32, [a + 1] = a + 33, [a + 2] = a + 34, [a + 3] = a + 35, [a + 4] = a + 36,    \
		  [a + 5] = a + 37, [a + 6] = a + 38, [a + 7] = a + 39, [a + 8] = a + 40, [a + 9] = a + 41

static const unsigned char fold[256] = {
	FOLD10('A'), FOLD10('A' + 10), ['U'] = 'u', ['V'] = 'v', ['W'] = 'w', ['X'] = 'x', ['Y'] = 'y', ['Z'] = 'z',
	F10('a'), F10('a' + 10), ['u'] = 'u', ['v'] = 'v', ['w'] = 'w', ['x'] = 'x', ['y'] = 'y', ['z'] = 'z',
	F10('0'), ['_'] = '_', ['$'] = '$',
};

#undef L
#undef D
#undef F10
#undef FOLD10

/* What the last token was, for the checks on the next one. */
typedef enum prev_kind { PREV_OTHER, PREV_STRING, PREV_MINUS } prev_kind;

/*
 * The state of one rw_fastscan_run().  Token readers take the position of
 * the token's first byte and return the position after it, or 0 with st set
 * when they refuse the text (a token is never empty, so 0 is no end).  They
 * copy s, len and k into locals: the key bytes they store could otherwise
 * alias everything, and the loops would reload them byte by byte.
 */
typedef struct lexer {
	const unsigned char *s;
	size_t len;
	unsigned char *k; /* the next key byte (room for the whole text reserved) */
	rw_fastscan *fs;
	prev_kind prev;   /* the token before this one */
	prev_kind now;    /* what this token counts as for the next one */
	rw_fs_status st;  /* why a reader refused */
} lexer;

static inline bool is(const unsigned char *s, size_t len, size_t i, unsigned char c)
{
	return i < len && s[i] == c;
}

static inline unsigned class_at(const unsigned char *s, size_t len, size_t i)
{
	return i < len ? cls[s[i]] : 0;
}

static inline size_t refuse(lexer *x, rw_fs_status st)
{
	x->st = st;
	return 0;
}

static void key_reserve(rw_fastscan *fs, size_t n)
{
	if (n <= fs->capkey)
		return;
	size_t cap = fs->capkey ? fs->capkey : 256;
	while (cap < n)
		cap *= 2;
	pf_free(fs->key);
	fs->key = pf_malloc(cap);
	fs->capkey = cap;
}

static void add_slot(rw_fastscan *fs, size_t start, size_t end, rw_fs_class c)
{
	if (fs->nslots == fs->capslots) {
		fs->capslots = fs->capslots ? 2 * fs->capslots : 32;
		fs->slots = pf_realloc(fs->slots, fs->capslots * sizeof *fs->slots);
	}
	fs->slots[fs->nslots++] = (rw_fs_slot){.location = (int)start, .length = (int)(end - start), .cls = c};
}

/* ---- comments ------------------------------------------------------------ */

static size_t line_comment(lexer *x, size_t p)
{
	const unsigned char *s = x->s;
	size_t len = x->len;
	for (p += 2; p < len && s[p] != '\n' && s[p] != '\r'; p++)
		if (s[p] == '\0')
			return refuse(x, RW_FS_CHAR);
	return p;
}

static size_t block_comment(lexer *x, size_t p)
{
	const unsigned char *s = x->s;
	size_t len = x->len;
	long depth = 1;
	for (p += 2; p < len;) {
		unsigned char c = s[p];
		if (c == '/' && is(s, len, p + 1, '*')) {
			depth++;
			p += 2;
		} else if (c == '*' && is(s, len, p + 1, '/')) {
			p += 2;
			if (--depth == 0)
				return p;
		} else if (c == '\0') {
			return refuse(x, RW_FS_CHAR);
		} else {
			p++;
		}
	}
	return refuse(x, RW_FS_UNTERMINATED);
}

/* ---- names --------------------------------------------------------------- */

static inline size_t identifier(lexer *x, size_t start)
{
	const unsigned char *s = x->s;
	size_t len = x->len, p = start;
	unsigned char *name = x->k + 1, f;
	name[-1] = K_IDENT;
	while (p < len && (f = fold[s[p]]) != 0)
		name[p++ - start] = f;
	if (class_at(s, len, p) & C_HIGH)
		return refuse(x, RW_FS_NON_ASCII);
	size_t n = p - start;
	if (n == 1) {
		f = name[0];
		if ((f == 'e' || f == 'b' || f == 'x' || f == 'n') && is(s, len, p, '\''))
			return refuse(x, RW_FS_PREFIXED_STRING);
		if (f == 'u' && is(s, len, p, '&') && (is(s, len, p + 1, '\'') || is(s, len, p + 1, '"')))
			return refuse(x, RW_FS_UNICODE);
	} else if (n == 7 && memcmp(name, "uescape", 7) == 0) {
		return refuse(x, RW_FS_UNICODE);
	}
	x->k = name + n;
	return p;
}

/* Its key is K_QIDENT and the bytes after the opening quote, closing quote
 * included ("" stays doubled): the next token's key never starts with '"',
 * so the closing quote ends it unambiguously. */
static size_t quoted_identifier(lexer *x, size_t start)
{
	const unsigned char *s = x->s;
	size_t len = x->len, p = start + 1;
	unsigned char *k = x->k, c = 0;
	*k++ = K_QIDENT;
	for (;;) {
		while (p < len && (c = s[p]) != '"' && c != '\0') {
			*k++ = c;
			p++;
		}
		if (p >= len)
			return refuse(x, RW_FS_UNTERMINATED);
		if (c == '\0')
			return refuse(x, RW_FS_CHAR);
		*k++ = '"';
		p++;
		if (!is(s, len, p, '"'))
			break;
		*k++ = '"'; /* "" stands for one " */
		p++;
	}
	if (p == start + 2)
		return refuse(x, RW_FS_EMPTY_IDENT);
	x->k = k;
	return p;
}

/* ---- literals ------------------------------------------------------------ */

/* Does the integer [p, end) fit int32 (strtol + range check, as PostgreSQL's
 * process_integer_literal)? */
static bool fits_int32(const unsigned char *p, const unsigned char *end)
{
	while (p < end - 1 && *p == '0')
		p++;
	size_t n = (size_t)(end - p);
	return n < 10 || (n == 10 && memcmp(p, "2147483647", 10) <= 0);
}

static size_t digits(const unsigned char *s, size_t len, size_t p)
{
	while (p < len && (cls[s[p]] & C_DIGIT))
		p++;
	return p;
}

static size_t number(lexer *x, size_t start)
{
	if (x->prev == PREV_MINUS)
		return refuse(x, RW_FS_NEGATIVE);
	const unsigned char *s = x->s;
	size_t len = x->len, p = digits(s, len, start);
	bool integer = true;
	if (is(s, len, p, '.')) {
		if (is(s, len, p + 1, '.'))
			return refuse(x, RW_FS_JUNK); /* 1..: PostgreSQL backs up to 1 and .. */
		integer = false;
		p = digits(s, len, p + 1);
	}
	if (p < len && (s[p] | 0x20) == 'e') {
		integer = false;
		p++;
		if (is(s, len, p, '+') || is(s, len, p, '-'))
			p++;
		if (!(class_at(s, len, p) & C_DIGIT))
			return refuse(x, RW_FS_JUNK);
		p = digits(s, len, p);
	}
	if ((class_at(s, len, p) & (C_IDCONT | C_HIGH)) || is(s, len, p, '.'))
		return refuse(x, RW_FS_JUNK);
	bool iconst = integer && fits_int32(s + start, s + p);
	*x->k++ = iconst ? K_ICONST : K_FCONST;
	add_slot(x->fs, start, p, iconst ? RW_FS_ICONST : RW_FS_FCONST);
	return p;
}

static size_t string(lexer *x, size_t start)
{
	if (x->prev == PREV_STRING)
		return refuse(x, RW_FS_CONTINUATION);
	const unsigned char *s = x->s;
	size_t len = x->len, p = start + 1;
	for (;;) {
		while (p < len && s[p] != '\'' && s[p] != '\\' && s[p] != '\0')
			p++;
		if (p >= len)
			return refuse(x, RW_FS_UNTERMINATED);
		if (s[p] != '\'')
			return refuse(x, s[p] == '\\' ? RW_FS_BACKSLASH : RW_FS_CHAR);
		p++;
		if (!is(s, len, p, '\''))
			break;
		p++; /* '' stands for one ' */
	}
	*x->k++ = K_SCONST;
	add_slot(x->fs, start, p, RW_FS_SCONST);
	x->now = PREV_STRING;
	return p;
}

static size_t dollar(lexer *x, size_t start)
{
	const unsigned char *s = x->s;
	size_t len = x->len;
	if (!(class_at(s, len, start + 1) & C_DIGIT))
		return refuse(x, RW_FS_DOLLAR);
	size_t p = digits(s, len, start + 1);
	if (class_at(s, len, p) & (C_IDCONT | C_HIGH))
		return refuse(x, RW_FS_JUNK);
	unsigned char *k = x->k;
	*k = K_PARAM;
	memcpy(k + 1, s + start + 1, p - start - 1);
	x->k = k + (p - start);
	add_slot(x->fs, start, p, RW_FS_PARAM);
	return p;
}

/* ---- operators and punctuation ------------------------------------------- */

static size_t operator(lexer *x, size_t start)
{
	const unsigned char *s = x->s;
	size_t len = x->len, p = start + 1;
	while (p < len && (cls[s[p]] & C_OP)) {
		if ((s[p] == '-' && is(s, len, p + 1, '-')) || (s[p] == '/' && is(s, len, p + 1, '*')))
			break; /* a comment starts: the operator ends here */
		p++;
	}
	size_t n = p - start;
	if (n >= 64)
		return refuse(x, RW_FS_JUNK); /* PostgreSQL: "operator too long" (NAMEDATALEN) */
	unsigned char *k = x->k;
	*k = K_OP;
	memcpy(k + 1, s + start, n);
	x->k = k + n + 1;
	if (s[p - 1] == '-')
		x->now = PREV_MINUS;
	return p;
}

/* A token of n bytes whose key is one byte. */
static size_t punct(lexer *x, size_t start, size_t n, unsigned char keybyte)
{
	*x->k++ = keybyte;
	return start + n;
}

static size_t colon(lexer *x, size_t p)
{
	const unsigned char *s = x->s;
	size_t len = x->len;
	if (is(s, len, p + 1, ':'))
		return punct(x, p, 2, K_TYPECAST);
	if (is(s, len, p + 1, '='))
		return punct(x, p, 2, K_COLON_EQUALS);
	if ((class_at(s, len, p + 1) & C_IDSTART) || is(s, len, p + 1, '\'') || is(s, len, p + 1, '"'))
		return refuse(x, RW_FS_PSQL_VAR);
	return punct(x, p, 1, ':');
}

static size_t dot(lexer *x, size_t p)
{
	if (class_at(x->s, x->len, p + 1) & C_DIGIT)
		return number(x, p);
	if (is(x->s, x->len, p + 1, '.'))
		return punct(x, p, 2, K_DOT_DOT);
	return punct(x, p, 1, '.');
}

/* A token that is not a name (those start with C_IDSTART; the loop reads them). */
static size_t other_token(lexer *x, size_t p)
{
	unsigned char c = x->s[p];
	switch (c) {
	case '\'':
		return string(x, p);
	case '"':
		return quoted_identifier(x, p);
	case '$':
		return dollar(x, p);
	case '(':
	case ')':
	case ',':
	case '[':
	case ']':
		return punct(x, p, 1, c);
	case '.':
		return dot(x, p);
	case ':':
		return colon(x, p);
	default:
		break;
	}
	unsigned k = cls[c];
	if (k & C_DIGIT)
		return number(x, p);
	if (k & C_OP)
		return operator(x, p);
	return refuse(x, (k & C_HIGH) ? RW_FS_NON_ASCII : RW_FS_CHAR);
}

/* ---- the loop ------------------------------------------------------------ */

rw_fs_status rw_fastscan_run(rw_fastscan *fs, const char *sql, size_t len)
{
	fs->nslots = fs->keylen = 0;
	if (len > RW_FS_MAX_LEN)
		return RW_FS_TOO_LONG;
	key_reserve(fs, 2 * len + 16); /* a token's key is at most twice its length */
	lexer x = {.s = (const unsigned char *)sql, .len = len, .k = fs->key, .fs = fs};
	const unsigned char *s = x.s;
	long first = -1, last = 0; /* the statement's range so far */
	bool tokens = false, ended = false; /* a token seen; a ';' after it */
	for (size_t p = 0, end; p < len; p = end) {
		unsigned char c = s[p];
		unsigned k = cls[c];
		end = p + 1;
		if (k & C_SPACE)
			continue;
		if (k & C_IDSTART) { /* the common case first */
			if (ended)
				return RW_FS_MULTI;
			if (!(end = identifier(&x, p)))
				return x.st;
			x.prev = PREV_OTHER;
			tokens = true;
			if (first < 0)
				first = (long)p;
			last = (long)end;
			continue;
		}
		bool comment = (c == '-' && is(s, len, p + 1, '-')) || (c == '/' && is(s, len, p + 1, '*'));
		if (comment) {
			end = c == '-' ? line_comment(&x, p) : block_comment(&x, p);
		} else if (c == ';') {
			if (!tokens)
				return RW_FS_MULTI;
			ended = true;
			continue;
		} else {
			x.now = PREV_OTHER;
			end = other_token(&x, p);
			if (end && ended)
				return RW_FS_MULTI;
			x.prev = x.now;
			tokens = true;
		}
		if (!end)
			return x.st;
		if (!ended) {
			if (first < 0)
				first = (long)p;
			last = (long)end;
		}
	}
	if (!tokens)
		return RW_FS_EMPTY;
	fs->keylen = (size_t)(x.k - fs->key);
	fs->stmt_location = (int)first;
	fs->stmt_length = (int)(last - first);
	return RW_FS_OK;
}

void rw_fastscan_free(rw_fastscan *fs)
{
	pf_free(fs->slots);
	pf_free(fs->key);
	memset(fs, 0, sizeof *fs);
}

const char *rw_fs_status_name(rw_fs_status st)
{
	static const char *const names[] = {
		"ok",	     "empty",	      "multi",	   "prefixed string", "unicode",  "dollar",
		"continuation", "backslash", "non-ascii", "unterminated",    "empty identifier", "negative",
		"junk",	     "psql variable", "char",	   "too long",
	};
	return (unsigned)st < sizeof names / sizeof *names ? names[st] : "?";
}
