/*
 * session.h — one client connection and its backend connection (session
 * mode: the backend is opened when the client's StartupMessage arrives and
 * lives exactly as long as the client).
 *
 * States (px_session_set_state() is the only place that changes them):
 *   STARTUP     reading SSLRequest / GSSENCRequest / CancelRequest / StartupMessage
 *   CONNECTING  resolving and connecting to the backend; client reads paused
 *   LOGIN       StartupMessage sent; authentication relayed until ReadyForQuery
 *   ACTIVE      relaying; transaction status from each ReadyForQuery
 *   CLOSING     final writes draining, then every handle closed; freed after
 */
#ifndef PGFOLD_PROXY_SESSION_H
#define PGFOLD_PROXY_SESSION_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "peer.h"
#include "batcher.h"
#include "nplusone.h"
#include "track.h"
#include "server.h"
#include "rcache.h"

typedef enum px_session_state {
	PX_SESSION_STARTUP,
	PX_SESSION_CONNECTING,
	PX_SESSION_LOGIN,
	PX_SESSION_ACTIVE,
	PX_SESSION_CLOSING,
} px_session_state;

struct px_session {
	px_server *server;
	uint64_t id;
	px_session_state state;
	px_peer client;
	px_peer backend;
	uv_timer_t timer; /* login / connect / close deadline */
	uv_connect_t connect_req;
	uv_getaddrinfo_t resolve_req;
	int refs;             /* handles and requests whose callback is still due */
	bool resolving;       /* resolve_req is in flight */
	cf_addr backend_addr; /* where this session's backend is (for CancelRequests) */
	struct sockaddr_storage backend_sa; /* its resolved TCP address */
	bool backend_connected;
	char peer_name[64];   /* client address, for logs */
	char user[64];
	char database[64];
	uint8_t *startup_packet; /* the client's StartupMessage, forwarded once connected */
	size_t startup_len;
	char *startup_settings;  /* its parameters but user, database and application_name:
	                            name\0value\0 pairs (they can change results: the cache keys on them) */
	size_t startup_settings_len;
	bool startup_role;       /* they set a role, a session authorization or a custom setting */
	uint32_t backend_pid; /* from BackendKeyData */
	uint32_t backend_key;
	bool has_key;
	char tx_status;         /* 'I', 'T' or 'E' from the last ReadyForQuery */
	uint32_t pending_ready; /* Query/Sync/FunctionCall sent, ReadyForQuery not yet back */
	bool extended_open;     /* extended-protocol messages sent since the last Sync */
	bool backend_fatal;     /* the backend sent a FATAL error: its close is expected */
	bool backend_answered;  /* the backend sent its first byte (login under way) */
	bool backend_paused;    /* reading the backend stopped: too much behind a held ReadyForQuery */
	bool reject_too_many;   /* accepted over max_client_conn: refuse after startup */
	px_track track;         /* statements in flight, prepared statements, session state */
	bool analyse;           /* analysis = on when the session started */
	rw_np_session *np;      /* N+1 detection state; NULL when the registry is off */
	px_np_capture np_capture;
	px_batcher batch;       /* N+1 batch in flight and prefetched answers */
	px_rcache *rcache;      /* result cache lookups, capture and pending invalidations; NULL until used */
	bool ddl_done;          /* DDL completed: refresh function volatility once it commits */
	bool in_group;          /* tracking an extended group the batcher may take whole */
	bool settling;          /* the client left with writes in flight (px_rcache_unsettled): relay the
	                           backend's answers to nobody until they are in, then close */
	uint32_t parses_out;    /* client Parse messages sent, ParseComplete not yet relayed (this Sync) */
	bool swallow_parse;     /* pgfold sent a deferred Parse: drop its ParseComplete, */
	uint32_t swallow_after; /* ... which follows this many of the client's */
	px_session *prev, *next;
};

/* Accept a connection from the listener into a new session (registered with
 * the server).  Returns NULL if accepting failed. */
px_session *px_session_accept(px_server *server, uv_stream_t *listener);

/* Close the session: send the client a FATAL ErrorResponse first when
 * sqlstate is not NULL.  Idempotent; safe from any callback of the session. */
void px_session_close(px_session *session, const char *reason, const char *sqlstate, const char *message);

/* During shutdown: close the session now if no statement is running;
 * otherwise it closes itself once the answer has been relayed. */
void px_session_close_if_idle(px_session *session);

/* If a statement is running, ask PostgreSQL to cancel it (before a forced
 * close, so the backend does not go on working for nobody). */
void px_session_cancel_running(px_session *session);

/* Send a CancelRequest for (pid, key) to target's backend; fire-and-forget. */
void px_cancel_forward(uv_loop_t *loop, const px_session *target, uint32_t pid, uint32_t key);

/* A ReadyForQuery reached the client (relayed or made by pgfold). */
void px_session_ready(px_session *session, char status);
/* A client Parse went to the backend outside the relay (batcher). */
void px_session_parse_sent(px_session *session);
/* Send the batcher's deferred Parse of the unnamed statement now (the
 * result cache forwards a group that binds it).  False if the write failed. */
bool px_session_send_deferred_parse(px_session *session);
/* Start reading the client again and relay what it already sent. */
void px_session_resume_client(px_session *session);
/* Relay what the backend already sent (after pgfold held a message back). */
void px_session_resume_backend(px_session *session);

/* backend.c reports a connected backend handle: send the StartupMessage and
 * start relaying. */
void px_session_backend_connected(px_session *session);

/* A handle or request of the session began / finished (its last callback
 * ran).  The session is freed when the count reaches zero. */
void px_session_ref(px_session *session);
void px_session_unref(px_session *session);

/* Start connecting the session's backend (backend.c). */
void px_backend_connect(px_session *session);

const char *px_session_state_name(px_session_state state);
void px_session_set_state(px_session *session, px_session_state state);

/* Log with the session's id and user@db/address prefix. */
#define px_session_log(level, s, fmt, ...)                                                                     \
	PF_LOG_AT(level, "[c%llu %s@%s/%s] " fmt, (unsigned long long)(s)->id, (s)->user[0] ? (s)->user : "-",    \
		  (s)->database[0] ? (s)->database : "-", (s)->peer_name, ##__VA_ARGS__)

#endif /* PGFOLD_PROXY_SESSION_H */
