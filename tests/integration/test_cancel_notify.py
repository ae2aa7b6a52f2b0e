"""Query cancellation and asynchronous notifications, directly and through
pgfold.

Cancel: a `SELECT pg_sleep(30)` cancelled with psycopg2's conn.cancel() from
another thread (libpq opens a new connection and sends a CancelRequest with
the BackendKeyData key it got at login) must fail with QueryCanceled (57014)
well under 30 s, and the connection must still work.  A CancelRequest with an
unknown key must be harmless.

LISTEN/NOTIFY: a notification must reach a listener that sits idle (no query
in flight) — the proxy has to relay a backend message nobody asked for."""

import os
import select
import threading
import time

import psycopg2
import psycopg2.errors
import psycopg2.extensions

from pgharness import wait_for_backend_activity
from wire import cancel_request


def run_in_thread(fn):
    """Run fn in a thread; returns (thread, result dict with 'value' or 'error', 'elapsed')."""
    result = {}

    def body():
        start = time.monotonic()
        try:
            result["value"] = fn()
        except Exception as exc:  # noqa: BLE001 - handed to the test
            result["error"] = exc
        result["elapsed"] = time.monotonic() - start

    t = threading.Thread(target=body, daemon=True)
    t.start()
    return t, result


def test_cancel_long_query(target, postgres):
    conn = target.connect(autocommit=True)
    try:
        cur = conn.cursor()
        cur.execute("SELECT pg_backend_pid()")
        (pid,) = cur.fetchone()
        before = target.proxy.stats()["cancel_requests"] if target.via_pgfold else None

        def sleeper():
            cur.execute("SELECT pg_sleep(30)")
        thread, result = run_in_thread(sleeper)
        wait_for_backend_activity(postgres, pid, "pg_sleep(30)")
        conn.cancel()
        thread.join(20)
        assert not thread.is_alive(), "query still running 20 s after cancel"
        err = result.get("error")
        assert isinstance(err, psycopg2.errors.QueryCanceled), f"expected QueryCanceled, got {err!r}"
        assert err.pgcode == "57014"
        assert "canceling statement due to user request" in str(err)
        assert result["elapsed"] < 15
        cur.execute("SELECT 'alive after cancel', pg_backend_pid()")
        assert cur.fetchone() == ("alive after cancel", pid)
        if target.via_pgfold:
            assert target.proxy.stats()["cancel_requests"] >= before + 1
    finally:
        conn.close()


def test_cancel_hits_only_the_right_session(target, postgres):
    conns = [target.connect(autocommit=True) for _ in range(3)]
    try:
        pids, threads = [], []
        for c in conns:
            cur = c.cursor()
            cur.execute("SELECT pg_backend_pid()")
            pids.append(cur.fetchone()[0])
            threads.append(run_in_thread(lambda cur=cur: cur.execute("SELECT pg_sleep(30)")))
        for pid in pids:
            wait_for_backend_activity(postgres, pid, "pg_sleep(30)")
        conns[1].cancel()
        threads[1][0].join(15)
        assert isinstance(threads[1][1].get("error"), psycopg2.errors.QueryCanceled)
        for i in (0, 2):  # the others still run
            assert threads[i][0].is_alive(), f"session {i} was disturbed: {threads[i][1]!r}"
            rows = postgres.query("SELECT state FROM pg_stat_activity WHERE pid = %s", (pids[i],))
            assert rows == [("active",)]
        for i in (0, 2):
            conns[i].cancel()
            threads[i][0].join(15)
            assert isinstance(threads[i][1].get("error"), psycopg2.errors.QueryCanceled)
    finally:
        for c in conns:
            c.close()


def test_cancel_request_with_unknown_key_is_harmless(target, postgres):
    conn = target.connect(autocommit=True)
    try:
        cur = conn.cursor()
        cur.execute("SELECT pg_backend_pid()")
        (pid,) = cur.fetchone()

        def short_sleep():
            cur.execute("SELECT pg_sleep(1.5), 'finished'")
            return cur.fetchone()
        thread, result = run_in_thread(short_sleep)
        wait_for_backend_activity(postgres, pid, "pg_sleep(1.5)")
        # the right pid with a wrong secret, and a pid nobody has
        for bogus_pid, key in ((pid, 0x12345678), (0x7FFFFFF0, int.from_bytes(os.urandom(4), "big"))):
            with target.wire() as w:
                w.send(cancel_request(bogus_pid, key))
                assert w.expect_eof(5) == [], "a CancelRequest gets no reply"
        thread.join(20)
        assert result.get("error") is None, f"query was disturbed: {result.get('error')!r}"
        assert result["value"] == ("", "finished")
    finally:
        conn.close()
    with target.connect() as c2, c2.cursor() as cur2:
        cur2.execute("SELECT 2")
        assert cur2.fetchone() == (2,)


def _wait_notifies(conn, count, timeout):
    deadline = time.monotonic() + timeout
    while len(conn.notifies) < count:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        if select.select([conn], [], [], left) != ([], [], []):
            conn.poll()
    return list(conn.notifies)


def test_notify_reaches_idle_listener(target, same_both_ways):
    listener = target.connect(autocommit=True)
    notifier = target.connect(autocommit=True)
    try:
        lc = listener.cursor()
        lc.execute("LISTEN pgfold_channel")
        nc = notifier.cursor()
        nc.execute("SELECT pg_backend_pid()")
        (notifier_pid,) = nc.fetchone()
        nc.execute("NOTIFY pgfold_channel, 'first payload'")
        nc.execute("SELECT pg_notify('pgfold_channel', 'second ✓')")
        notes = _wait_notifies(listener, 2, 10)
        assert [(n.channel, n.payload) for n in notes] == [("pgfold_channel", "first payload"),
                                                          ("pgfold_channel", "second ✓")]
        assert all(n.pid == notifier_pid for n in notes)
        # the listener connection still answers queries afterwards
        lc.execute("SELECT 'listener ok'")
        assert lc.fetchone() == ("listener ok",)
        same_both_ways([(n.channel, n.payload) for n in notes])
    finally:
        listener.close()
        notifier.close()


def test_notify_in_transaction_delivered_on_commit(target):
    listener = target.connect(autocommit=True)
    notifier = target.connect()
    try:
        listener.cursor().execute("LISTEN tx_channel")
        nc = notifier.cursor()
        for i in range(5):
            nc.execute("NOTIFY tx_channel, %s", (f"msg {i}",))
        assert _wait_notifies(listener, 1, 0.3) == [], "notification delivered before COMMIT"
        notifier.commit()
        notes = _wait_notifies(listener, 5, 10)
        assert [n.payload for n in notes] == [f"msg {i}" for i in range(5)]
    finally:
        listener.close()
        notifier.close()
