/*
 * batcher_int.h — what batcher.c (buffers, batches, their answers) shares
 * with batcher_ext.c (extended-protocol groups).  Not an interface: only
 * those two files include it.
 */
#ifndef PGFOLD_PROXY_BATCHER_INT_H
#define PGFOLD_PROXY_BATCHER_INT_H

#include "batcher.h"
#include "session.h"

#define PX_BATCH_MAX_PARAMS 64 /* extended children with more parameters are not batched */

/* One child to batch or answer, however it arrived. */
typedef struct px_child {
	const rw_stmt *st;
	const char *sql;            /* the text st's locations refer to */
	const rw_np_match *m;
	const uint8_t *msg;         /* what the client sent: relayed unchanged if the batch fails */
	size_t msg_len;
	size_t nparams;             /* extended: bound values in text form (NULL pointer: SQL NULL) */
	const char *const *param_values;
	const size_t *param_lengths;
	const uint32_t *param_types;
	const char *portal;         /* extended: "" (the key may be a bound value); NULL otherwise */
	size_t nresult_formats;     /* extended: the Bind's result format codes (big-endian int16s) */
	const uint8_t *result_formats;
	px_answer_form form;
	const uint8_t *restore;     /* a Parse to send after the batch (the Query destroys the unnamed
	                               statement), or NULL */
	size_t restore_len;
	bool restore_is_childs;     /* ... the child's own Parse: its failure is the client's answer */
} px_child;

uint64_t px_batch_now_ms(void);
bool px_batch_allowed(const px_session *s);
/* A child the result cache looked up first and gives back (px_rc_redispatch):
 * its second match must not count it twice in /nplusone. */
void px_batch_uncount_again(px_session *s, const rw_np_match *m);
/* Answer the child from a prefetch buffer, or send a batch for it.  True
 * when pgfold took the child. */
bool px_batch_child(px_session *s, const px_child *c);
/* The child's identity: its text with the key slot's bytes replaced by one
 * marker, then every other bound value with its type (a later child is
 * answered from a buffer only when its identity is equal). */
void px_batch_identity(pf_sb *out, const px_child *c);

/* DESCRIBING: the statement's ParameterDescription arrived (body), and then
 * its ReadyForQuery (the child follows, relayed as usual). */
void px_batch_learn_types(px_session *s, const uint8_t *body, size_t len);
void px_batch_described(px_session *s);

#endif /* PGFOLD_PROXY_BATCHER_INT_H */
