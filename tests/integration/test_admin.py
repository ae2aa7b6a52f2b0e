"""pgfold's admin HTTP port (shared pgfold): /health, /stats JSON with every
counter, /metrics in Prometheus text format with the pgfold_ prefix, and that
the counters move with real traffic (queries, bytes both ways, clients,
backend errors).  Unknown paths get 404, malformed requests 400, other
methods 405, and none of it disturbs the proxy."""

import json
import re
import socket

import psycopg
import psycopg2
import pytest

REQUIRED_STATS = ("clients_active", "clients_total", "backends_active", "bytes_from_clients",
                  "bytes_to_clients", "queries", "backend_errors", "protocol_errors",
                  "cancel_requests", "config_reloads", "uptime_seconds")

METRIC_LINE = re.compile(r"^(pgfold_[a-zA-Z0-9_:]*)(\{[^}]*\})? (-?[0-9.eE+-]+|NaN|[+-]Inf)( \d+)?$")


def raw_http(port, request, timeout=5):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data and b"Content-Length" not in data.split(b"\r\n\r\n")[0]:
                break
            head, _, body = data.partition(b"\r\n\r\n")
            m = re.search(rb"Content-Length: *(\d+)", head, re.I)
            if m and len(body) >= int(m.group(1)):
                break
    return data


def status_of(response):
    m = re.match(rb"HTTP/1\.[01] (\d{3})", response)
    assert m, f"not an HTTP response: {response[:200]!r}"
    return int(m.group(1))


def parse_metrics(text):
    values = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = METRIC_LINE.match(line)
        assert m, f"not a Prometheus sample line with the pgfold_ prefix: {line!r}"
        values[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return values


def test_health_ok(pgfold):
    status, _, body = pgfold.admin_get("/health")
    assert status == 200
    assert body.strip()


def test_stats_json_has_every_counter(pgfold):
    status, ctype, body = pgfold.admin_get("/stats")
    assert status == 200
    assert "application/json" in ctype
    stats = json.loads(body)
    missing = [k for k in REQUIRED_STATS if k not in stats]
    assert not missing, f"/stats lacks {missing}"
    for k in REQUIRED_STATS:
        assert isinstance(stats[k], (int, float)) and stats[k] >= 0, (k, stats[k])


def test_counters_move_with_traffic(pgfold):
    before = pgfold.stats()
    sent = 0
    with psycopg2.connect(f"host=127.0.0.1 port={pgfold.port} user=app dbname=shop") as conn:
        conn.autocommit = True
        cur = conn.cursor()
        for i in range(5):
            sql = f"SELECT {i}, repeat('q', 20000)"
            sent += len(sql)
            cur.execute(sql)
            assert len(cur.fetchone()[1]) == 20000
        with pytest.raises(psycopg2.errors.DivisionByZero):
            cur.execute("SELECT 1/0")
        during = pgfold.stats()
        assert during["clients_active"] >= 1 and during["backends_active"] >= 1
    with psycopg.connect(f"host=127.0.0.1 port={pgfold.port} user=app dbname=shop",
                         autocommit=True) as conn3:
        for i in range(3):
            assert conn3.execute("SELECT %s::int", (i,), prepare=True).fetchone() == (i,)
    after = pgfold.stats()
    assert after["queries"] >= before["queries"] + 5 + 1 + 3
    assert after["bytes_to_clients"] >= before["bytes_to_clients"] + 5 * 20000
    assert after["bytes_from_clients"] >= before["bytes_from_clients"] + sent
    assert after["clients_total"] >= before["clients_total"] + 2
    assert after["backend_errors"] >= before["backend_errors"] + 1
    assert after["uptime_seconds"] >= before["uptime_seconds"]


def test_metrics_prometheus_format_and_values(pgfold):
    status, ctype, body = pgfold.admin_get("/metrics")
    assert status == 200
    assert ctype.startswith("text/plain"), ctype
    text = body.decode()
    assert "# TYPE pgfold_" in text
    first = parse_metrics(text)
    query_metrics = [k for k in first if k.startswith("pgfold_queries")]
    assert query_metrics, f"no pgfold_queries* metric in {sorted(first)}"
    with psycopg2.connect(f"host=127.0.0.1 port={pgfold.port} user=app dbname=shop") as conn:
        conn.autocommit = True
        for _ in range(4):
            conn.cursor().execute("SELECT 1")
    second = parse_metrics(pgfold.admin_get("/metrics")[2].decode())
    assert second[query_metrics[0]] >= first[query_metrics[0]] + 4
    byte_metrics = [k for k in first if "bytes" in k]
    assert byte_metrics and any(second[k] > first[k] for k in byte_metrics)


def test_unknown_path_404(pgfold):
    assert pgfold.admin_get("/no/such/path")[0] == 404


def test_malformed_request_400(pgfold):
    assert status_of(raw_http(pgfold.admin_port, b"THIS IS NOT HTTP\r\n\r\n")) == 400
    assert status_of(raw_http(pgfold.admin_port, b"GET /stats HTTP/1.1\r\nBroken header line\r\n\r\n")) == 400


def test_oversized_request_head_rejected(pgfold):
    req = b"GET /stats HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
    assert status_of(raw_http(pgfold.admin_port, req)) in (400, 431)


def test_other_method_405(pgfold):
    resp = raw_http(pgfold.admin_port, b"DELETE /stats HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    assert status_of(resp) == 405


def test_bad_admin_requests_do_not_disturb_proxy(pgfold):
    with psycopg2.connect(f"host=127.0.0.1 port={pgfold.port} user=app dbname=shop") as conn:
        cur = conn.cursor()
        for req in (b"\x00\x01\x02garbage\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"G"):
            try:
                raw_http(pgfold.admin_port, req, timeout=2)
            except socket.timeout:
                pass  # an incomplete request may just wait: fine
            cur.execute("SELECT 'proxy fine'")
            assert cur.fetchone() == ("proxy fine",)
    assert pgfold.admin_get("/health")[0] == 200
