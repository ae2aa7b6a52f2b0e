/*
 * fastscan.h — a small hand-written SQL lexer for the analyzer's fast shape
 * path (rewrite/analysis_fast.c).  It walks a query string once and gives
 *
 *   key     the statement's token stream with literal values masked:
 *           keywords and unquoted identifiers folded to lower case (ASCII
 *           A-Z only, as PostgreSQL does), quoted identifiers, operators,
 *           punctuation and $n verbatim, each literal by its class only;
 *           white space and comments dropped.  The encoding is uniquely
 *           decodable: equal keys mean equal token streams up to literal
 *           values of the same class (and the case of unquoted names);
 *   slots   every literal and $n, in text order, with location and length
 *           (what rw_value holds for them);
 *   range   the statement's byte range as the analyzer reports it: first to
 *           last token or comment before a trailing ';'.
 *
 * It models only what it can lex exactly like PostgreSQL 15's scanner, and
 * answers "not handled" (a status other than RW_FS_OK, the reason) for
 * everything else, so that the caller takes the pg_query_scan path:
 * E'' B'' X'' N'' U&'' U&"" strings and UESCAPE, dollar quoting, a string
 * right after a string (continuation across a newline), a backslash inside a
 * string (standard_conforming_strings), bytes >= 0x80 outside strings and
 * quoted identifiers, anything unterminated, "", a number right after an
 * operator ending in '-' (the grammar may fold the minus into the constant),
 * malformed numbers and trailing junk (1e, 1.., 12abc, $1a), operators too
 * long for PostgreSQL, psql variables (:name, :'name'), characters SQL has
 * no token for (\ { } NUL, control bytes), several statements (a token
 * after ';'), and texts without a token.
 *
 * Literal classes: RW_FS_ICONST an integer that fits int32 (leading zeros
 * allowed), RW_FS_FCONST any other number (decimal point, exponent, or an
 * integer above 2147483647), RW_FS_SCONST a standard '...' string ('' inside
 * allowed), RW_FS_PARAM $n.
 *
 * Pure computation; reads exactly len bytes of sql (no NUL needed).  The
 * rw_fastscan is scratch space reused from call to call; zero-initialise it
 * and release it with rw_fastscan_free().
 */
#ifndef PGFOLD_REWRITE_FASTSCAN_H
#define PGFOLD_REWRITE_FASTSCAN_H

#include <stddef.h>

typedef enum rw_fs_status {
	RW_FS_OK,              /* handled: key, slots and range are valid */
	RW_FS_EMPTY,           /* no token (empty, white space, comments) */
	RW_FS_MULTI,           /* a token after ';', or a ';' before any token */
	RW_FS_PREFIXED_STRING, /* E'' B'' X'' N'' */
	RW_FS_UNICODE,         /* U&'' U&"" UESCAPE */
	RW_FS_DOLLAR,          /* '$' not starting $n: dollar quoting */
	RW_FS_CONTINUATION,    /* a string right after a string ('a'\n'b' continues it) */
	RW_FS_BACKSLASH,       /* '\' inside a string */
	RW_FS_NON_ASCII,       /* a byte >= 0x80 outside strings and quoted identifiers */
	RW_FS_UNTERMINATED,    /* string, quoted identifier or comment */
	RW_FS_EMPTY_IDENT,     /* "" */
	RW_FS_NEGATIVE,        /* a number right after an operator ending in '-' */
	RW_FS_JUNK,            /* malformed number or trailing junk (1e 1e+ 1.. 12abc 1.5x $1a),
	                          an operator of 64 characters or more */
	RW_FS_PSQL_VAR,        /* :name :'name' :"name" */
	RW_FS_CHAR,            /* a byte no token starts with here: \ { } NUL, control bytes */
	RW_FS_TOO_LONG,        /* longer than RW_FS_MAX_LEN */
} rw_fs_status;

#define RW_FS_MAX_LEN (1u << 20)

typedef enum rw_fs_class {
	RW_FS_ICONST = 1,
	RW_FS_FCONST,
	RW_FS_SCONST,
	RW_FS_PARAM,
} rw_fs_class;

typedef struct rw_fs_slot {
	int location; /* byte offset of the literal or $n in the text */
	int length;   /* its bytes, quotes included */
	rw_fs_class cls;
} rw_fs_slot;

typedef struct rw_fastscan {
	/* results of the last rw_fastscan_run() that returned RW_FS_OK */
	int stmt_location, stmt_length;
	rw_fs_slot *slots;
	size_t nslots;
	unsigned char *key;
	size_t keylen;
	/* storage */
	size_t capslots, capkey;
} rw_fastscan;

/* Lex sql (len bytes) into fs; RW_FS_OK when handled, else why not
 * (fs's results are then meaningless). */
rw_fs_status rw_fastscan_run(rw_fastscan *fs, const char *sql, size_t len);
void rw_fastscan_free(rw_fastscan *fs); /* releases the storage; fs may be reused */
const char *rw_fs_status_name(rw_fs_status st); /* "ok", "empty", "multi", ... */

#endif /* PGFOLD_REWRITE_FASTSCAN_H */
