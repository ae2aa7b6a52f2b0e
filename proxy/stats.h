/*
 * stats.h — process-wide counters the proxy keeps and the admin port shows.
 * Owned by the px_server (one per process, single-threaded: plain integers).
 */
#ifndef PGFOLD_PROXY_STATS_H
#define PGFOLD_PROXY_STATS_H

#include <stdint.h>

typedef struct px_stats {
	uint64_t start_time_ms;          /* wall clock at start, ms since epoch */
	uint64_t clients_total;          /* client connections accepted */
	uint64_t clients_active;         /* client connections open now */
	uint64_t clients_rejected;       /* refused: max_client_conn or shutting down */
	uint64_t backends_total;         /* backend connections opened */
	uint64_t backends_active;        /* backend connections open now */
	uint64_t backend_connect_errors; /* backend connect or startup failures */
	uint64_t bytes_from_clients;     /* bytes read from clients */
	uint64_t bytes_to_clients;       /* bytes written to clients */
	uint64_t bytes_from_backends;
	uint64_t bytes_to_backends;
	uint64_t queries;                /* Query messages + Execute messages */
	uint64_t backend_errors;         /* ErrorResponse messages relayed from backends */
	uint64_t protocol_errors;        /* clients closed for a protocol violation */
	uint64_t cancel_requests;        /* CancelRequests received */
	uint64_t config_reloads;         /* successful SIGHUP reloads */
	uint64_t nplusone_buffered_bytes; /* prefetched N+1 answers held by all sessions now */
} px_stats;

#endif /* PGFOLD_PROXY_STATS_H */
