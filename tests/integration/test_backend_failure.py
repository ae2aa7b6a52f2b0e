"""A client's backend goes away, directly and through pgfold.

pg_terminate_backend() of the session's backend (issued on a separate direct
connection) while it runs pg_sleep: the client must get an error promptly,
its connection must be closed, and a new connection through the same target
must work.  On the wire, for an idle session and one in a query: the
relayed FATAL 57P01 ErrorResponse, then the socket closes."""

import threading
import time

import psycopg2
import pytest
from pgharness import wait_for_backend_activity
from wire import parse_fields, query


def test_backend_terminated_mid_query(target, postgres):
    conn = target.connect(autocommit=True)
    cur = conn.cursor()
    cur.execute("SELECT pg_backend_pid()")
    (pid,) = cur.fetchone()
    result = {}

    def run():
        start = time.monotonic()
        try:
            cur.execute("SELECT pg_sleep(30)")
            result["error"] = None
        except Exception as exc:  # noqa: BLE001 - inspected below
            result["error"] = exc
        result["elapsed"] = time.monotonic() - start

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        wait_for_backend_activity(postgres, pid, "pg_sleep(30)")
        assert postgres.query("SELECT pg_terminate_backend(%s)", (pid,)) == [(True,)]
        t.join(20)
        assert not t.is_alive(), "client still blocked 20 s after its backend was terminated"
        err = result["error"]
        assert isinstance(err, psycopg2.OperationalError), f"expected OperationalError, got {err!r}"
        assert result["elapsed"] < 15
        # (libpq reports "server closed the connection unexpectedly" here even
        # directly; the wire test below checks the ErrorResponse itself)
        assert conn.closed != 0, "connection not marked closed after its backend died"
    finally:
        conn.close()

    with target.connect() as c2, c2.cursor() as cur2:
        cur2.execute("SELECT pg_backend_pid(), 'new session'")
        new_pid, text = cur2.fetchone()
    assert text == "new session" and new_pid != pid
    if target.via_pgfold:
        assert target.proxy.alive()


@pytest.mark.parametrize("state", ["idle", "mid_query"])
def test_terminated_backend_gives_error_then_close_on_wire(target, postgres, state):
    with target.wire() as w:
        w.startup("app", "shop")
        pid = w.backend_key[0]
        (backend_pid,) = w.simple_query("SELECT pg_backend_pid()")["rows"][0]
        assert int(backend_pid) == pid, "BackendKeyData must carry the backend's own pid"
        if state == "mid_query":
            w.send(query("SELECT pg_sleep(30)"))
            wait_for_backend_activity(postgres, pid, "pg_sleep(30)")
        assert postgres.query("SELECT pg_terminate_backend(%s)", (pid,)) == [(True,)]
        msgs = w.expect_eof(10)
    errors = [parse_fields(body) for t, body in msgs if t == b"E"]
    assert errors, f"no ErrorResponse before close: {msgs!r}"
    codes = [e["C"] for e in errors]
    # PostgreSQL's own FATAL is relayed first; pgfold may add its 08006
    assert codes[0] == "57P01", codes
    assert errors[0]["M"] == "terminating connection due to administrator command"
    assert all(c in ("57P01", "08006") for c in codes), codes
