/*
 * literal.h — the value a SQL literal stands for, in PostgreSQL's text form,
 * so a constant in a statement can be compared with a value of a result
 * column: 42 -> "42", -7 -> "-7", 'it''s' -> "it's".  Only the forms whose
 * value is plain: numbers and standard strings; E'' strings, U&'' strings,
 * bit strings and dollar quoting are refused (their value is not the text
 * between the quotes).  Pure, no allocation.
 */
#ifndef PGFOLD_REWRITE_LITERAL_H
#define PGFOLD_REWRITE_LITERAL_H

#include <stddef.h>

/* 0 with out NUL-terminated and *out_len set; -1 when the literal is of a
 * refused form or its value does not fit in size bytes. */
int rw_literal_text(const char *lit, size_t len, char *out, size_t size, size_t *out_len);

#endif /* PGFOLD_REWRITE_LITERAL_H */
