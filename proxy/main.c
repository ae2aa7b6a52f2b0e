/*
 * main.c — pgfold's command line: build the configuration (file + flags),
 * optionally only check it, then run the proxy until it has shut down.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <uv.h>

#include "../common/log.h"
#include "proxy.h"

static void usage(FILE *out)
{
	fprintf(out,
		"pgfold %s — a transparent, query-optimizing PostgreSQL proxy\n\n"
		"Usage: pgfold [-c FILE] [options]\n\n"
		"  -c, --config FILE      INI configuration file (see conf/pgfold.ini)\n"
		"      --listen HOST:PORT where clients connect (default 127.0.0.1:6432)\n"
		"      --backend ADDR     PostgreSQL: HOST:PORT or a unix socket directory /dir[:PORT]\n"
		"      --admin HOST:PORT  admin HTTP port, or off (default 127.0.0.1:6433)\n"
		"      --redis HOST:PORT  Redis for the result cache, or off\n"
		"      --set KEY=VALUE    set any configuration key, e.g. --set log_level=debug\n"
		"      --check-config     check the configuration and exit\n"
		"  -h, --help             this help and the configuration keys\n"
		"  -V, --version          print the version\n\n"
		"Configuration keys (file section.key; --set takes the same names):\n",
		PX_VERSION);
	cf_keys_print(out);
}

enum { OPT_LISTEN = 256, OPT_BACKEND, OPT_ADMIN, OPT_REDIS, OPT_SET, OPT_CHECK };

static int add_override(px_options *opts, const char *key, const char *value)
{
	if (opts->noverrides == PX_MAX_OVERRIDES) {
		fprintf(stderr, "pgfold: too many overrides (at most %d)\n", PX_MAX_OVERRIDES);
		return -1;
	}
	opts->overrides[opts->noverrides].key = key;
	opts->overrides[opts->noverrides].value = value;
	opts->noverrides++;
	return 0;
}

/* --set KEY=VALUE: split in place (argv strings are ours to modify). */
static int add_set(px_options *opts, char *arg)
{
	char *eq = strchr(arg, '=');
	if (!eq || eq == arg) {
		fprintf(stderr, "pgfold: --set wants KEY=VALUE, got '%s'\n", arg);
		return -1;
	}
	*eq = '\0';
	return add_override(opts, arg, eq + 1);
}

/* Returns -1 on a usage error, 1 when the program should exit 0, else 0. */
static int parse_args(int argc, char **argv, px_options *opts, int *check_only)
{
	static const struct option longopts[] = {
		{"config", required_argument, NULL, 'c'},     {"listen", required_argument, NULL, OPT_LISTEN},
		{"backend", required_argument, NULL, OPT_BACKEND}, {"admin", required_argument, NULL, OPT_ADMIN},
		{"redis", required_argument, NULL, OPT_REDIS},  {"set", required_argument, NULL, OPT_SET},
		{"check-config", no_argument, NULL, OPT_CHECK}, {"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},           {NULL, 0, NULL, 0},
	};
	int c, rc = 0;
	while (rc == 0 && (c = getopt_long(argc, argv, "c:hV", longopts, NULL)) != -1) {
		switch (c) {
		case 'c': opts->config_path = optarg; break;
		case OPT_LISTEN: rc = add_override(opts, "pgfold.listen", optarg); break;
		case OPT_BACKEND: rc = add_override(opts, "pgfold.backend", optarg); break;
		case OPT_ADMIN: rc = add_override(opts, "pgfold.admin", optarg); break;
		case OPT_REDIS: rc = add_override(opts, "cache.redis", optarg); break;
		case OPT_SET: rc = add_set(opts, optarg); break;
		case OPT_CHECK: *check_only = 1; break;
		case 'h': usage(stdout); return 1;
		case 'V': printf("pgfold %s\n", PX_VERSION); return 1;
		default: return -1;
		}
	}
	if (rc == 0 && optind < argc) {
		fprintf(stderr, "pgfold: unexpected argument '%s'\n", argv[optind]);
		return -1;
	}
	return rc;
}

/* Every client costs two descriptors: take what the hard limit allows. */
static void raise_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static int run(const px_options *opts, cf_config *cfg)
{
	uv_loop_t loop;
	if (uv_loop_init(&loop) < 0) {
		cf_config_free(cfg);
		return 1;
	}
	px_server *server = px_server_new(&loop, opts, cfg);
	int rc = px_server_start(server);
	uv_run(&loop, UV_RUN_DEFAULT);
	if (uv_loop_close(&loop) == UV_EBUSY)
		pf_error("event loop closed with handles still open");
	px_server_free(server);
	return rc < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
	static px_options opts; /* lives as long as the process: reload reads it */
	int check_only = 0;
	int rc = parse_args(argc, argv, &opts, &check_only);
	if (rc != 0) {
		if (rc < 0)
			fprintf(stderr, "Try 'pgfold --help'.\n");
		return rc < 0 ? 2 : 0;
	}
	cf_config *cfg;
	cf_error err;
	if (px_config_build(&opts, &cfg, &err) < 0) {
		char msg[900];
		fprintf(stderr, "pgfold: %s\n", cf_error_format(&err, msg, sizeof(msg)));
		return 1;
	}
	if (check_only) {
		printf("pgfold: configuration OK\n");
		cf_config_free(cfg);
		return 0;
	}
	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit();
	return run(&opts, cfg);
}
