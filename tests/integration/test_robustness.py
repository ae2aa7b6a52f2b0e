"""Resource and failure handling, directly and through pgfold where the
behaviour is PostgreSQL's own, and against dedicated pgfold processes for
pgfold's own timeouts:

- a client that vanishes in the middle of a result, or inside a transaction
  holding a lock: its backend goes away and the lock is released;
- connection churn (normal sessions, logins abandoned half way, sockets that
  close at once) leaves no client, backend or PostgreSQL session behind;
- client_login_timeout closes clients that never finish their startup;
- connect_timeout: a backend that accepts TCP but never answers gets the
  client an ErrorResponse, promptly;
- a unix-socket backend (--backend /dir:PORT) works;
- client->server backpressure: COPY data pushed while the table is locked
  (the backend reads nothing) stalls the sender instead of growing pgfold's
  memory, and every row arrives once the lock is released."""

import os
import socket
import struct
import threading
import time

import psycopg2
import pytest

from pgharness import Target, wait_until
from wire import AUTH_SASL, WireConn, message, parse_fields, query, startup_packet

RSS_LIMIT_KIB = int(os.environ.get("PGFOLD_RSS_LIMIT_MB", "64")) * 1024


def client_backends(postgres):
    # pgfold's own control connection (function volatility) lingers on purpose;
    # only connections opened for clients must go away.
    (n,), = postgres.query("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
                           " AND application_name <> 'pgfold-control'")
    return n


def backend_gone(postgres, pid):
    return not postgres.query("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,))


def test_client_vanishing_mid_result_frees_backend(target, postgres):
    w = target.wire()
    w.startup("app", "shop")
    pid = w.backend_key[0]
    w.send(query("SELECT repeat('v', 1000) FROM generate_series(1, 5000000)"))
    w.read_message()  # the result has started (RowDescription)
    w.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    w.close()  # abrupt: RST, unread data dropped
    wait_until(lambda: backend_gone(postgres, pid), 15,
               f"backend {pid} to end after its client vanished mid-result")
    if target.via_pgfold:
        assert target.proxy.alive()


def test_client_vanishing_in_transaction_releases_locks(target, postgres):
    table = f"lock_{target.name}"
    postgres.query(f"DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (id int PRIMARY KEY, v int); "
                   f"INSERT INTO {table} VALUES (1, 0); ALTER TABLE {table} OWNER TO app")
    try:
        w = target.wire()
        w.startup("app", "shop")
        pid = w.backend_key[0]
        assert w.simple_query(f"BEGIN; SELECT v FROM {table} WHERE id = 1 FOR UPDATE")["status"] == "T"
        w.close()
        wait_until(lambda: backend_gone(postgres, pid), 10, "the abandoned session's backend to end")
        other = postgres.connect()
        try:
            cur = other.cursor()
            cur.execute("SET lock_timeout = '2s'")
            cur.execute(f"UPDATE {table} SET v = v + 1 WHERE id = 1")
            assert cur.rowcount == 1
        finally:
            other.close()
    finally:
        postgres.query(f"DROP TABLE IF EXISTS {table}")


@pytest.mark.timeout(180)
def test_connection_churn_leaves_nothing_behind(postgres, pgfold_factory):
    proxy = pgfold_factory(name="pgfold-churn")
    baseline = client_backends(postgres)
    dsn = f"host=127.0.0.1 port={proxy.port} user=app dbname=shop connect_timeout=10"
    for i in range(60):
        conn = psycopg2.connect(dsn)
        conn.cursor().execute("SELECT %s", (i,))
        conn.close()
    for _ in range(20):  # logins abandoned at the SCRAM exchange
        with WireConn("127.0.0.1", proxy.port) as w:
            w.send(startup_packet({"user": "app_scram", "database": "shop"}))
            t, body = w.read_message()
            assert t == b"R" and struct.unpack("!I", body[:4])[0] == AUTH_SASL
    for _ in range(20):  # connect and close at once
        socket.create_connection(("127.0.0.1", proxy.port), timeout=5).close()
    for _ in range(20):  # half a startup packet
        with WireConn("127.0.0.1", proxy.port) as w:
            w.send(startup_packet({"user": "app", "database": "shop"})[:11])
    for _ in range(20):  # in a transaction, then gone
        with WireConn("127.0.0.1", proxy.port) as w:
            w.startup("app", "shop")
            w.simple_query("BEGIN; SELECT 1")
    wait_until(lambda: proxy.stats()["clients_active"] == 0, 15, "clients_active back to 0")
    wait_until(lambda: proxy.stats()["backends_active"] == 0, 15, "backends_active back to 0")
    wait_until(lambda: client_backends(postgres) == baseline, 15,
               "PostgreSQL's client backends back to the baseline")
    stats = proxy.stats()
    assert stats["clients_total"] >= 140
    # still serving
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT 'after churn'")
        assert cur.fetchone() == ("after churn",)


def test_client_login_timeout_closes_silent_clients(pgfold_factory):
    proxy = pgfold_factory(sets={"client_login_timeout": "1s"}, name="pgfold-login-timeout")
    start = time.monotonic()
    silent = WireConn("127.0.0.1", proxy.port, timeout=10)
    partial = WireConn("127.0.0.1", proxy.port, timeout=10)
    partial.send(startup_packet({"user": "app", "database": "shop"})[:9])
    try:
        for w in (silent, partial):
            w.expect_eof(6)
        took = time.monotonic() - start
        assert took < 5, f"clients closed only after {took:.1f}s with client_login_timeout=1s"
    finally:
        silent.close()
        partial.close()
    wait_until(lambda: proxy.stats()["clients_active"] == 0, 5, "clients_active back to 0")
    with WireConn("127.0.0.1", proxy.port) as w:  # a prompt login is unaffected
        w.startup("app", "shop")
        assert w.simple_query("SELECT 1")["rows"] == [["1"]]


def test_backend_that_never_answers_hits_connect_timeout(pgfold_factory):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # completes TCP handshakes, never reads or answers
    try:
        proxy = pgfold_factory(backend_port=silent.getsockname()[1], sets={"connect_timeout": "2s"},
                               name="pgfold-silent-backend")
        start = time.monotonic()
        with WireConn("127.0.0.1", proxy.port, timeout=15) as w:
            w.send(startup_packet({"user": "app", "database": "shop"}))
            msgs = w.expect_eof(10)
        took = time.monotonic() - start
        errors = [parse_fields(b) for t, b in msgs if t == b"E"]
        assert errors, f"closed without an ErrorResponse: {msgs!r}"
        assert errors[0]["C"].startswith("08") or errors[0]["C"] == "57P03", errors[0]
        assert 1.5 < took < 6, f"error after {took:.1f}s with connect_timeout=2s"
    finally:
        silent.close()


def test_unix_socket_backend(postgres, pgfold_factory):
    proxy = pgfold_factory(backend=f"{postgres.sockdir}:{postgres.port}", name="pgfold-unix-backend")
    with psycopg2.connect(f"host=127.0.0.1 port={proxy.port} user=app dbname=shop") as conn:
        cur = conn.cursor()
        cur.execute("SELECT inet_server_addr() IS NULL, current_user, pg_backend_pid()")
        is_unix, user, pid = cur.fetchone()
    assert (is_unix, user) == (True, "app"), "backend connection is not over the unix socket"


@pytest.fixture(params=["direct", "pgfold"])
def copy_target(request, postgres, pgfold_factory):
    if request.param == "direct":
        return Target("direct", postgres.port, postgres)
    proxy = pgfold_factory(name="pgfold-copy-backpressure")
    return Target("pgfold", proxy.port, postgres, proxy)


@pytest.mark.timeout(180)
def test_copy_in_backpressure_when_backend_stalls(copy_target, postgres):
    table = f"bp_copy_{copy_target.name}"
    chunk_rows, chunks = 64, 2000  # 2000 CopyData messages of 64,000 bytes = 128 MB
    line = b"x" * 999 + b"\n"
    chunk = message(b"d", line * chunk_rows)
    postgres.query(f"DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (v text); "
                   f"ALTER TABLE {table} OWNER TO app")
    locker = postgres.connect()
    locker.autocommit = False
    locker.cursor().execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
    w = copy_target.wire(timeout=60)
    sent = [0]
    failure = []
    try:
        w.startup("app", "shop")
        w.send(query(f"COPY {table} FROM STDIN"))
        w.sock.settimeout(90)

        def push():
            try:
                for _ in range(chunks):
                    w.sock.sendall(chunk)
                    sent[0] += len(chunk)
                w.sock.sendall(message(b"c"))
            except Exception as exc:  # noqa: BLE001 - reported below
                failure.append(exc)
        sender = threading.Thread(target=push, daemon=True)
        sender.start()

        # wait until the sender is stalled: no progress for 0.5 s
        samples = []
        last = [-1, time.monotonic()]

        def stalled():
            if copy_target.via_pgfold:
                samples.append(copy_target.proxy.rss_kib())
            now = time.monotonic()
            if sent[0] != last[0]:
                last[:] = [sent[0], now]
                return False
            return now - last[1] >= 0.5
        wait_until(stalled, 30, "the COPY sender to stall while the table is locked", interval=0.02)
        stalled_at = sent[0]
        assert stalled_at < 64 * 1024 * 1024, f"{stalled_at} bytes accepted while the backend read nothing"
        if copy_target.via_pgfold:
            assert max(samples) < RSS_LIMIT_KIB, f"pgfold RSS reached {max(samples)} KiB"

        locker.commit()  # release: the COPY proceeds
        sender.join(90)
        assert not failure, failure
        assert not sender.is_alive()
        result = w.collect(timeout=60)
        assert result["errors"] == []
        assert result["tags"] == [f"COPY {chunk_rows * chunks}"]
        assert result["types"][0] == b"G"
    finally:
        w.close()
        locker.close()
    (n,), = postgres.query(f"SELECT count(*) FROM {table}")
    postgres.query(f"DROP TABLE IF EXISTS {table}")
    assert n == chunk_rows * chunks
