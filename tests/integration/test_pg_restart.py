"""PostgreSQL going away under a running pgfold, with this module's own
PostgreSQL and pgfold so the shared servers are not disturbed.

- `pg_ctl stop -m fast`: sessions open through pgfold get PostgreSQL's FATAL
  and are closed; while PostgreSQL is down, a new client gets a clear
  ErrorResponse from pgfold (a connection-exception SQLSTATE, class 08, or
  57P03) and is closed, promptly; pgfold itself stays up; after `pg_ctl
  start`, new connections through the same pgfold work.
- A backend killed with SIGKILL (it sends nothing): pgfold must tell its
  client with an ErrorResponse 08006 and close it."""

import os
import signal
import time

import psycopg2
import pytest

from pgharness import PostgresServer, wait_until
from wire import ServerError, WireConn, parse_fields

CONNECT_TIMEOUT_S = 3


@pytest.fixture(scope="module")
def own_postgres():
    server = PostgresServer("postgres-restart")
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="module")
def own_pgfold(own_postgres, module_pgfold_factory):
    return module_pgfold_factory(backend_port=own_postgres.port, name="pgfold-restart",
                                 sets={"connect_timeout": f"{CONNECT_TIMEOUT_S}s"})


def dsn(proxy):
    return f"host=127.0.0.1 port={proxy.port} user=app dbname=shop connect_timeout=10"


def login_error(proxy):
    """Log in through pgfold on the wire; the ErrorResponse fields it sends
    (or None when the login worked) and the seconds it took to be closed."""
    start = time.monotonic()
    with WireConn("127.0.0.1", proxy.port, timeout=CONNECT_TIMEOUT_S + 10) as w:
        try:
            w.startup("app", "shop")
        except ServerError as exc:
            w.expect_eof(5)
            return exc.fields, time.monotonic() - start
        except (EOFError, ConnectionResetError):
            return {"C": "<closed without an ErrorResponse>"}, time.monotonic() - start
    return None, time.monotonic() - start


@pytest.mark.timeout(180)
def test_postgres_stop_and_start_while_pgfold_runs(own_postgres, own_pgfold):
    proxy = own_pgfold
    # sessions open before the stop
    old = psycopg2.connect(dsn(proxy))
    old.autocommit = True
    old.cursor().execute("SELECT 1")
    watcher = WireConn("127.0.0.1", proxy.port)
    watcher.startup("app", "shop")

    own_postgres.pg_stop("fast")

    # the idle wire session is told and closed
    msgs = watcher.expect_eof(10)
    watcher.close()
    codes = [parse_fields(b)["C"] for t, b in msgs if t == b"E"]
    assert codes and codes[0] in ("57P01", "08006"), f"open session got {msgs!r} before close"

    # the psycopg2 session fails on its next use
    with pytest.raises(psycopg2.OperationalError):
        old.cursor().execute("SELECT 1")
    old.close()

    # new clients get a clear error while PostgreSQL is down
    assert proxy.alive(), "pgfold exited when PostgreSQL stopped"
    fields, took = login_error(proxy)
    assert fields is not None, "login through pgfold worked while PostgreSQL was down?"
    sqlstate = fields.get("C", "")
    assert sqlstate.startswith("08") or sqlstate == "57P03", f"unclear error: {fields!r}"
    assert fields.get("V", fields.get("S")) == "FATAL", fields
    assert fields.get("M"), "ErrorResponse without a message"
    assert took < CONNECT_TIMEOUT_S + 5, f"client waited {took:.1f}s for the error"
    with pytest.raises(psycopg2.OperationalError) as info:
        psycopg2.connect(dsn(proxy))
    assert "server closed the connection unexpectedly" not in str(info.value), \
        "pgfold closed without telling the client why"
    assert proxy.admin_get("/stats")[0] == 200

    own_postgres.pg_start()

    # the same pgfold serves new connections again
    with psycopg2.connect(dsn(proxy)) as conn, conn.cursor() as cur:
        cur.execute("SELECT 'back again'")
        assert cur.fetchone() == ("back again",)
    assert proxy.alive()


@pytest.mark.timeout(180)
def test_backend_killed_by_sigkill_gives_08006(own_postgres, own_pgfold):
    proxy = own_pgfold
    with WireConn("127.0.0.1", proxy.port) as w:
        w.startup("app", "shop")
        pid = w.backend_key[0]
        os.kill(pid, signal.SIGKILL)
        msgs = w.expect_eof(10)
    errors = [parse_fields(b) for t, b in msgs if t == b"E"]
    assert errors, f"no ErrorResponse when the backend vanished: {msgs!r}"
    assert errors[-1]["C"] == "08006", errors
    assert errors[-1].get("V", errors[-1].get("S")) == "FATAL", errors

    # PostgreSQL restarts its backends after a crash; then pgfold works again
    wait_until(own_postgres.accepting, 60, "PostgreSQL crash recovery")

    def works():
        with psycopg2.connect(dsn(proxy)) as conn, conn.cursor() as cur:
            cur.execute("SELECT 42")
            return cur.fetchone() == (42,)
    wait_until(works, 30, "a query through pgfold after the crash recovery")
    assert proxy.alive()
