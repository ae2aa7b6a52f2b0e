/*
 * testutil.h — small helpers shared by the C unit tests (header only: the
 * Makefile links each tests/unit/test_*.c on its own with pgfold's objects).
 *
 * mono_ms()             milliseconds on the monotonic clock
 * loopback_addr()       127.0.0.1:port as a struct sockaddr_in
 * free_port()           a TCP port on 127.0.0.1 that nothing listens on right
 *                       now (bound to port 0, read back, released), or -1
 * ticking_loop_init()   a libuv loop with a timer (loop_ticker) that wakes
 *                       uv_run(UV_RUN_ONCE) every 5 ms while a test waits
 * ticking_loop_close()  close that timer, run the loop until it has no
 *                       handles left (10 s at most) and close it; once
 * loop_run_until()      run a loop until a predicate holds or time is up
 * loop_run_for()        run a loop for a while
 */
#ifndef PGFOLD_TESTS_UNIT_TESTUTIL_H
#define PGFOLD_TESTS_UNIT_TESTUTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

static inline uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* 127.0.0.1:port; port 0 binds to any free port. */
static inline struct sockaddr_in loopback_addr(int port)
{
	struct sockaddr_in sin;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return sin;
}

static inline int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = loopback_addr(0);
	socklen_t len = sizeof(sin);
	if (fd < 0)
		return -1;
	int ok = bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
		 getsockname(fd, (struct sockaddr *)&sin, &len) == 0;
	close(fd);
	return ok ? ntohs(sin.sin_port) : -1;
}

/* The timer that wakes uv_run(UV_RUN_ONCE) every 5 ms while a test waits,
 * and whether its loop is open. */
typedef struct loop_ticker {
	uv_timer_t timer;
	bool open;
} loop_ticker;

static inline void ticking_loop_on_tick(uv_timer_t *t)
{
	(void)t;
}

static inline void ticking_loop_init(uv_loop_t *loop, loop_ticker *tick)
{
	assert_int_equal(uv_loop_init(loop), 0);
	assert_int_equal(uv_timer_init(loop, &tick->timer), 0);
	uv_timer_start(&tick->timer, ticking_loop_on_tick, 5, 5);
	tick->open = true;
}

/* uv_loop_close()'s result: 0 means every handle was closed and freed (or
 * the loop was closed already). */
static inline int ticking_loop_close(uv_loop_t *loop, loop_ticker *tick)
{
	if (!tick->open)
		return 0;
	if (!uv_is_closing((uv_handle_t *)&tick->timer))
		uv_close((uv_handle_t *)&tick->timer, NULL);
	uint64_t deadline = mono_ms() + 10000;
	while (uv_loop_alive(loop) && mono_ms() < deadline)
		uv_run(loop, UV_RUN_ONCE);
	tick->open = false;
	return uv_loop_close(loop);
}

/* Run the loop until pred(arg) or timeout_ms passed; returns pred(arg). */
static inline bool loop_run_until(uv_loop_t *loop, bool (*pred)(void *), void *arg, unsigned timeout_ms)
{
	uint64_t deadline = mono_ms() + timeout_ms;
	while (!pred(arg)) {
		if (mono_ms() > deadline)
			return false;
		uv_run(loop, UV_RUN_ONCE);
	}
	return true;
}

static inline void loop_run_for(uv_loop_t *loop, unsigned ms)
{
	uint64_t deadline = mono_ms() + ms;
	while (mono_ms() < deadline)
		uv_run(loop, UV_RUN_ONCE);
}

#endif
