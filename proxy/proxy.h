/*
 * proxy.h — the proxy module's interface to main(): build a configuration
 * snapshot from a file plus command-line overrides, then run a px_server on a
 * libuv loop until SIGTERM/SIGINT have drained it.
 *
 *   px_config_build()   defaults + file + overrides + validation
 *   px_server_new()     create (takes ownership of the config snapshot)
 *   px_server_start()   bind the listener and admin port, install signals
 *   px_server_free()    after uv_run() returned
 */
#ifndef PGFOLD_PROXY_PROXY_H
#define PGFOLD_PROXY_PROXY_H

#include <stddef.h>
#include <uv.h>

#include "../conf/conf.h"

#define PX_VERSION "0.1.0"
#define PX_MAX_OVERRIDES 64

typedef struct px_override {
	const char *key;
	const char *value;
} px_override;

/* What the command line said; kept for the life of the process so SIGHUP can
 * rebuild the configuration the same way (overrides win over the file). */
typedef struct px_options {
	const char *config_path; /* NULL: defaults + overrides only */
	size_t noverrides;
	px_override overrides[PX_MAX_OVERRIDES];
} px_options;

typedef struct px_server px_server;

/* Build a snapshot: defaults, then the file, then the overrides, then the
 * cross-key checks.  0 with *out set, or -1 with err filled. */
int px_config_build(const px_options *opts, cf_config **out, cf_error *err);

/* opts must outlive the server; cfg becomes the server's. */
px_server *px_server_new(uv_loop_t *loop, const px_options *opts, cf_config *cfg);
/* 0, or a negative libuv error after logging what failed. */
int px_server_start(px_server *server);
void px_server_free(px_server *server);

#endif /* PGFOLD_PROXY_PROXY_H */
