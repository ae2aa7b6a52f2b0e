/*
 * conf_addr.c — cf_addr_parse() and cf_addr_format(): the address syntax of
 * listen, backend, admin and cache.redis.
 *
 *   off                      CF_ADDR_OFF (any case)
 *   host:port  host          TCP; host is a name or an IPv4 literal
 *   [v6]:port  [v6]          TCP; an IPv6 literal needs the brackets
 *   /dir  /dir:port          UNIX, PostgreSQL style: path = dir/.s.PGSQL.port
 *   /dir/.s.PGSQL.port       UNIX, the socket file itself (what format prints)
 *
 * A missing port is default_port, or an error when default_port <= 0.  Names
 * are not resolved here; that is the caller's business at connect/bind time.
 */
#include "conf.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "conf_value.h"

#define PG_SOCKET_PREFIX ".s.PGSQL."

/* Exactly 1-5 digits with a value in 1..65535. */
static int parse_port(const char *s, size_t n, int *port, cf_error *err)
{
	int v = 0;
	bool ok = n >= 1 && n <= 5;
	for (size_t i = 0; ok && i < n; i++) {
		ok = isdigit((unsigned char)s[i]);
		v = v * 10 + (s[i] - '0');
	}
	if (!ok || v < 1 || v > 65535)
		return cf__error_set(err, "bad port \"%.*s\": expected a number from 1 to 65535", (int)n, s);
	*port = v;
	return 0;
}

static int port_or_default(const char *text, int default_port, int *port, cf_error *err)
{
	if (default_port <= 0)
		return cf__error_set(err, "\"%s\": missing port", text);
	*port = default_port;
	return 0;
}

/* A host name (letters, digits, '.', '-', '_') or, when it has only digits and
 * dots, a valid IPv4 literal. */
static int check_host_name(const char *host, cf_error *err)
{
	bool numeric = true;
	for (const char *p = host; *p; p++) {
		if (!isalnum((unsigned char)*p) && *p != '.' && *p != '-' && *p != '_')
			return cf__error_set(err, "bad host \"%s\": unexpected character '%c'", host, *p);
		numeric = numeric && (isdigit((unsigned char)*p) || *p == '.');
	}
	struct in_addr a4;
	if (numeric && inet_pton(AF_INET, host, &a4) != 1)
		return cf__error_set(err, "bad IPv4 address \"%s\"", host);
	return 0;
}

/* An IPv6 literal, optionally with a %zone suffix (not checked). */
static int check_host_v6(const char *host, cf_error *err)
{
	char bare[INET6_ADDRSTRLEN + 1];
	size_t n = strcspn(host, "%");
	struct in6_addr a6;
	if (n >= sizeof(bare))
		return cf__error_set(err, "bad IPv6 address \"%s\"", host);
	memcpy(bare, host, n);
	bare[n] = '\0';
	if (inet_pton(AF_INET6, bare, &a6) != 1)
		return cf__error_set(err, "bad IPv6 address \"%s\"", host);
	return 0;
}

static int copy_host(const char *text, const char *host, size_t n, cf_addr *a, cf_error *err)
{
	if (n == 0)
		return cf__error_set(err, "\"%s\": missing host", text);
	if (n >= sizeof(a->host))
		return cf__error_set(err, "\"%s\": host is longer than %zu bytes", text, sizeof(a->host) - 1);
	memcpy(a->host, host, n);
	a->host[n] = '\0';
	return 0;
}

static int parse_tcp(const char *text, int default_port, cf_addr *a, cf_error *err)
{
	const char *port = NULL;
	const char *colon = strchr(text, ':');
	bool v6 = text[0] == '[';
	if (v6) {
		const char *close = strchr(text, ']');
		if (!close)
			return cf__error_set(err, "\"%s\": missing ']'", text);
		if (close[1] != '\0' && close[1] != ':')
			return cf__error_set(err, "\"%s\": expected ':port' after ']'", text);
		if (copy_host(text, text + 1, (size_t)(close - text - 1), a, err) < 0)
			return -1;
		port = close[1] ? close + 2 : NULL;
	} else {
		if (colon && strchr(colon + 1, ':'))
			return cf__error_set(err, "\"%s\": put an IPv6 address in brackets, as in [::1]:5432", text);
		size_t n = colon ? (size_t)(colon - text) : strlen(text);
		if (copy_host(text, text, n, a, err) < 0)
			return -1;
		port = colon ? colon + 1 : NULL;
	}
	if ((v6 ? check_host_v6 : check_host_name)(a->host, err) < 0)
		return -1;
	a->kind = CF_ADDR_TCP;
	if (port)
		return parse_port(port, strlen(port), &a->port, err);
	return port_or_default(text, default_port, &a->port, err);
}

/* Split a unix address into directory and port.  Only a ':' after the last
 * '/' starts a port.  *dir_len excludes trailing slashes (keeps a lone "/"). */
static int split_unix(const char *text, int default_port, size_t *dir_len, int *port, cf_error *err)
{
	const char *slash = strrchr(text, '/');
	const char *colon = strchr(slash, ':');
	size_t prefix_len = strlen(PG_SOCKET_PREFIX);
	size_t n = strlen(text);
	if (colon) {
		n = (size_t)(colon - text);
		if (parse_port(colon + 1, strlen(colon + 1), port, err) < 0)
			return -1;
	} else if (strncmp(slash + 1, PG_SOCKET_PREFIX, prefix_len) == 0) {
		n = (size_t)(slash - text);
		const char *digits = slash + 1 + prefix_len;
		if (parse_port(digits, strlen(digits), port, err) < 0)
			return -1;
	} else if (port_or_default(text, default_port, port, err) < 0) {
		return -1;
	}
	while (n > 1 && text[n - 1] == '/')
		n--;
	*dir_len = n == 0 ? 1 : n; /* "/.s.PGSQL.5432" lives in "/" */
	return 0;
}

static int parse_unix(const char *text, int default_port, cf_addr *a, cf_error *err)
{
	size_t n;
	if (split_unix(text, default_port, &n, &a->port, err) < 0)
		return -1;
	if (n >= sizeof(a->host))
		return cf__error_set(err, "\"%s\": directory is longer than %zu bytes", text, sizeof(a->host) - 1);
	memcpy(a->host, text, n);
	a->host[n] = '\0';
	const char *sep = strcmp(a->host, "/") == 0 ? "" : "/";
	int len = snprintf(a->path, sizeof(a->path), "%s%s" PG_SOCKET_PREFIX "%d", a->host, sep, a->port);
	if (len < 0 || (size_t)len >= sizeof(a->path))
		return cf__error_set(err, "\"%s\": socket path %s%s" PG_SOCKET_PREFIX "%d is longer than %zu bytes",
				     text, a->host, sep, a->port, sizeof(a->path) - 1);
	a->kind = CF_ADDR_UNIX;
	return 0;
}

int cf_addr_parse(const char *text, int default_port, cf_addr *out, cf_error *err)
{
	cf_addr a;
	memset(&a, 0, sizeof(a));
	cf__error_clear(err);
	int rc = 0;
	if (strcasecmp(text, "off") == 0)
		a.kind = CF_ADDR_OFF;
	else if (text[0] == '/')
		rc = parse_unix(text, default_port, &a, err);
	else
		rc = parse_tcp(text, default_port, &a, err);
	if (rc == 0)
		*out = a;
	return rc;
}

const char *cf_addr_format(const cf_addr *addr, char *buf, size_t size)
{
	switch (addr->kind) {
	case CF_ADDR_TCP:
		if (strchr(addr->host, ':'))
			snprintf(buf, size, "[%s]:%d", addr->host, addr->port);
		else
			snprintf(buf, size, "%s:%d", addr->host, addr->port);
		break;
	case CF_ADDR_UNIX:
		snprintf(buf, size, "%s", addr->path);
		break;
	case CF_ADDR_OFF:
	default:
		snprintf(buf, size, "off");
		break;
	}
	return buf;
}
