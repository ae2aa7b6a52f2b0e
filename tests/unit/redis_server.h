/*
 * redis_server.h — a throwaway redis-server for the unit tests that talk to
 * a real Redis (test_redis.c, test_sub.c): Debian's /usr/bin/redis-server on
 * a free loopback port, no persistence, its --dir and log in a temp dir.
 * Header only (the Makefile links each tests/unit/test_*.c on its own with
 * pgfold's objects); the helpers fail the running cmocka test on errors.
 *
 *   redis_server_init     pick the port and create the temp dir (in setup)
 *   redis_server_start    start it, with extra arguments, and wait until it
 *                         answers PING (10 s at most)
 *   redis_server_signal   send it a signal: SIGSTOP freezes, SIGCONT thaws
 *   redis_server_kill     SIGKILL and reap it (restart with _start, same port)
 *   redis_server_cleanup  kill it and remove the temp dir (in teardown)
 *   redis_server_require  skip the test when redis-server is not installed
 *   tcp_addr              a cf_addr for host:port
 */
#ifndef PGFOLD_TESTS_UNIT_REDIS_SERVER_H
#define PGFOLD_TESTS_UNIT_REDIS_SERVER_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../conf/conf.h"
#include "testutil.h"

#define REDIS_SERVER "/usr/bin/redis-server"

typedef struct redis_server {
	pid_t pid;    /* 0 when not running */
	bool stopped; /* SIGSTOPped */
	int port;
	char dir[64]; /* redis-server's --dir and log */
} redis_server;

static inline cf_addr tcp_addr(const char *host, int port)
{
	cf_addr a;
	memset(&a, 0, sizeof(a));
	a.kind = CF_ADDR_TCP;
	snprintf(a.host, sizeof(a.host), "%s", host);
	a.port = port;
	return a;
}

/* One blocking PING; true when the server answers it (+PONG, or -NOAUTH under requirepass). */
static inline bool redis_pings(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = loopback_addr(port);
	struct timeval tv = {1, 0};
	char buf[16] = "";
	bool ok = false;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0 && write(fd, "PING\r\n", 6) == 6 &&
	    read(fd, buf, sizeof(buf) - 1) > 0)
		ok = strncmp(buf, "+PONG", 5) == 0 || strncmp(buf, "-NOAUTH", 7) == 0; /* NOAUTH: requirepass */
	close(fd);
	return ok;
}

/* A free port and a fresh temp dir made from dir_template ("/tmp/...-XXXXXX"); not started yet. */
static inline void redis_server_init(redis_server *rs, const char *dir_template)
{
	memset(rs, 0, sizeof(*rs));
	rs->port = free_port();
	assert_true(rs->port > 0);
	snprintf(rs->dir, sizeof(rs->dir), "%s", dir_template);
	assert_non_null(mkdtemp(rs->dir));
}

/* Start redis-server with extra arguments (NULL-terminated; NULL for none). */
static inline void redis_server_start(redis_server *rs, const char *const *extra)
{
	char port[16], log[128];
	snprintf(port, sizeof(port), "%d", rs->port);
	snprintf(log, sizeof(log), "%s/redis.log", rs->dir);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a crashed test */
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		const char *argv[32] = {"redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
					"--appendonly", "no", "--dir", rs->dir, "--daemonize", "no"};
		int argc = 13;
		for (int i = 0; extra && extra[i] && argc < 31; i++)
			argv[argc++] = extra[i];
		argv[argc] = NULL;
		execv(REDIS_SERVER, (char *const *)argv);
		_exit(127);
	}
	rs->pid = pid;
	rs->stopped = false;
	uint64_t deadline = mono_ms() + 10000;
	while (!redis_pings(rs->port)) {
		int status;
		if (waitpid(pid, &status, WNOHANG) == pid) {
			rs->pid = 0;
			fail_msg("redis-server exited at start (see %s)", log);
		}
		if (mono_ms() > deadline)
			fail_msg("redis-server did not answer PING within 10 s (see %s)", log);
		usleep(20 * 1000);
	}
}

static inline void redis_server_signal(redis_server *rs, int sig)
{
	assert_true(rs->pid > 0);
	assert_int_equal(kill(rs->pid, sig), 0);
	if (sig == SIGSTOP)
		rs->stopped = true;
	else if (sig == SIGCONT)
		rs->stopped = false;
}

static inline void redis_server_kill(redis_server *rs)
{
	if (rs->pid <= 0)
		return;
	kill(rs->pid, SIGKILL);
	waitpid(rs->pid, NULL, 0);
	rs->pid = 0;
	rs->stopped = false;
}

/* Kill the server (if running) and remove its temp dir. */
static inline void redis_server_cleanup(redis_server *rs)
{
	redis_server_kill(rs);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", rs->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", rs->dir);
}

static inline void redis_server_require(void)
{
	if (access(REDIS_SERVER, X_OK) != 0) {
		print_message("%s not installed: skipping\n", REDIS_SERVER);
		skip();
	}
}

#endif
