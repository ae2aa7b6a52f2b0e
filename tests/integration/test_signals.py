"""pgfold's signal handling, each test with its own pgfold.

SIGTERM / SIGINT: stop accepting at once, let a running query finish (within
shutdown_timeout), then close and exit 0; a query longer than
shutdown_timeout is cut off and pgfold still exits 0 on time.
SIGHUP: re-read the config file; a changed reloadable key takes effect and
/stats config_reloads increments; a broken file is reported in the log with
FILE:LINE, the old config stays, config_reloads does not move and clients
are still served; a restart-only key (listen) keeps its running value."""

import signal
import threading
import time

import psycopg2
import pytest

from pgharness import free_port, tcp_connectable, wait_for_backend_activity, wait_until, \
    write_pgfold_config
from wire import WireConn, parse_fields, startup_packet


def dsn(proxy):
    return f"host=127.0.0.1 port={proxy.port} user=app dbname=shop connect_timeout=5"


def refused(proxy):
    """True when a new client cannot get a working session."""
    try:
        conn = psycopg2.connect(dsn(proxy))
    except psycopg2.OperationalError:
        return True
    try:
        conn.cursor().execute("SELECT 1")
    except psycopg2.Error:
        return True
    finally:
        conn.close()
    return False


def start_query(proxy, sql):
    conn = psycopg2.connect(dsn(proxy))
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("SELECT pg_backend_pid()")
    (pid,) = cur.fetchone()
    result = {}

    def run():
        try:
            cur.execute(sql)
            result["row"] = cur.fetchone()
        except Exception as exc:  # noqa: BLE001 - checked by the test
            result["error"] = exc
        result["finished_at"] = time.monotonic()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return conn, pid, t, result


@pytest.mark.timeout(60)
def test_sigterm_lets_running_query_finish_then_exits_0(pgfold_factory, postgres):
    proxy = pgfold_factory(sets={"shutdown_timeout": "5s"}, name="pgfold-sigterm")
    conn, pid, t, result = start_query(proxy, "SELECT pg_sleep(2), 'query finished'")
    try:
        wait_for_backend_activity(postgres, pid, "pg_sleep(2)")
        sent = time.monotonic()
        proxy.signal(signal.SIGTERM)
        wait_until(lambda: refused(proxy), 3, "new connections to be refused after SIGTERM")
        t.join(10)
        assert "error" not in result, f"running query failed: {result.get('error')!r}"
        assert result["row"] == ("", "query finished")
        code = proxy.wait(5 + 3 - (time.monotonic() - sent))
        assert code == 0, f"pgfold exit code {code} (None = still running 8 s after SIGTERM)"
    finally:
        conn.close()


@pytest.mark.timeout(60)
def test_sigterm_cuts_query_longer_than_shutdown_timeout(pgfold_factory, postgres):
    proxy = pgfold_factory(sets={"shutdown_timeout": "2s"}, name="pgfold-sigterm-timeout")
    conn, pid, t, result = start_query(proxy, "SELECT pg_sleep(30)")
    try:
        wait_for_backend_activity(postgres, pid, "pg_sleep(30)")
        sent = time.monotonic()
        proxy.signal(signal.SIGTERM)
        code = proxy.wait(2 + 4)
        assert code == 0, f"pgfold exit code {code} (None = still running 6 s after SIGTERM)"
        t.join(10)
        assert isinstance(result.get("error"), psycopg2.OperationalError), result
        assert result["finished_at"] - sent < 8
    finally:
        conn.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_with_idle_client_exits_0_promptly(pgfold_factory, sig):
    proxy = pgfold_factory(sets={"shutdown_timeout": "20s"}, name="pgfold-idle-stop")
    idle = psycopg2.connect(dsn(proxy))
    try:
        idle.cursor().execute("SELECT 1")
        idle.commit()
        proxy.signal(sig)
        code = proxy.wait(5)
        assert code == 0, f"exit code {code} (None = an idle client kept pgfold up 5 s)"
    finally:
        idle.close()


# ---- SIGHUP ----------------------------------------------------------------


@pytest.fixture
def configured(pgfold_factory, postgres, redis, tmp_path):
    """A pgfold started from a config file: (proxy, write(**keys))."""
    path = tmp_path / "pgfold.ini"
    ports = (free_port(), free_port())

    def write(backend=None, **keys):
        base = {"log_level": "info", "max_client_conn": 100, "shutdown_timeout": "5s"}
        base.update(keys)
        write_pgfold_config(path, ports[0], ports[1], backend or postgres.port, redis.port, **base)

    write()
    proxy = pgfold_factory(config_path=path, ports=ports, name="pgfold-sighup")
    proxy.config_file = path
    return proxy, write


def test_sighup_reload_applies_reloadable_keys(configured):
    proxy, write = configured
    before = proxy.stats()["config_reloads"]
    a, b = psycopg2.connect(dsn(proxy)), psycopg2.connect(dsn(proxy))
    try:
        write(log_level="debug", max_client_conn=2)
        proxy.signal(signal.SIGHUP)
        wait_until(lambda: proxy.stats()["config_reloads"] == before + 1, 5,
                   "config_reloads to increment after SIGHUP")
        with WireConn("127.0.0.1", proxy.port) as third:
            third.send(startup_packet({"user": "app", "database": "shop"}))
            msgs = third.expect_eof(5)
        errors = [parse_fields(body) for t, body in msgs if t == b"E"]
        assert errors, f"a third client was not refused with max_client_conn reloaded to 2: {msgs!r}"
        assert errors[0]["C"] == "53300", errors[0]  # too_many_connections, as PostgreSQL
        for c in (a, b):
            cur = c.cursor()
            cur.execute("SELECT 'still served'")
            assert cur.fetchone() == ("still served",)
    finally:
        a.close()
    wait_until(lambda: not refused(proxy), 5, "a free slot after one client left")
    b.close()
    assert proxy.stats()["config_reloads"] == before + 1


def test_sighup_broken_file_keeps_old_config(configured):
    proxy, write = configured
    before = proxy.stats()["config_reloads"]
    path = proxy.config_file
    good = path.read_text()
    lines = good.splitlines()
    lines.insert(2, "max_client_conn = banana")  # becomes line 3
    path.write_text("\n".join(lines) + "\n")
    proxy.mark_log()
    proxy.signal(signal.SIGHUP)
    logged = wait_until(lambda: f"{path}:3" in proxy.new_log_text() and proxy.new_log_text(), 5,
                        f"an error naming {path}:3 in pgfold's log")
    assert "max_client_conn" in logged
    assert proxy.alive()
    assert proxy.stats()["config_reloads"] == before
    with psycopg2.connect(dsn(proxy)) as conn, conn.cursor() as cur:
        cur.execute("SELECT 'served after bad reload'")
        assert cur.fetchone() == ("served after bad reload",)
    # a fixed file reloads again
    path.write_text(good)
    proxy.signal(signal.SIGHUP)
    wait_until(lambda: proxy.stats()["config_reloads"] == before + 1, 5,
               "config_reloads to increment once the file is fixed")


def test_sighup_restart_only_key_keeps_running_value(configured, postgres, redis):
    proxy, write = configured
    before = proxy.stats()["config_reloads"]
    other_port = free_port()
    text = proxy.config_file.read_text().replace(f"listen = 127.0.0.1:{proxy.port}",
                                                 f"listen = 127.0.0.1:{other_port}")
    proxy.config_file.write_text(text)
    proxy.mark_log()
    proxy.signal(signal.SIGHUP)
    wait_until(lambda: proxy.stats()["config_reloads"] == before + 1
               or "listen" in proxy.new_log_text(), 5, "pgfold to process the SIGHUP")
    assert not tcp_connectable(other_port), "listen changed without a restart"
    with psycopg2.connect(dsn(proxy)) as conn, conn.cursor() as cur:
        cur.execute("SELECT 'old listener'")
        assert cur.fetchone() == ("old listener",)


def test_sighup_backend_change_applies_to_new_connections(configured, postgres):
    proxy, write = configured
    before = proxy.stats()["config_reloads"]
    old = psycopg2.connect(dsn(proxy))
    try:
        cur = old.cursor()
        cur.execute("SELECT inet_server_addr() IS NULL")
        assert cur.fetchone() == (False,), "initial backend should be TCP"
        write(backend=f"{postgres.sockdir}:{postgres.port}")
        proxy.signal(signal.SIGHUP)
        wait_until(lambda: proxy.stats()["config_reloads"] == before + 1, 5, "the reload")
        with psycopg2.connect(dsn(proxy)) as new, new.cursor() as ncur:
            ncur.execute("SELECT inet_server_addr() IS NULL")
            assert ncur.fetchone() == (True,), "new connection did not use the reloaded (unix) backend"
        cur.execute("SELECT inet_server_addr() IS NULL")
        assert cur.fetchone() == (False,), "existing session changed backend"
    finally:
        old.close()


def test_sighup_max_message_bytes_applies(configured):
    proxy, write = configured
    before = proxy.stats()["config_reloads"]
    big = "SELECT length('" + "m" * 100_000 + "')"
    with psycopg2.connect(dsn(proxy)) as conn, conn.cursor() as cur:
        cur.execute(big)
        assert cur.fetchone() == (100_000,)
    write(max_message_bytes=65536)
    proxy.signal(signal.SIGHUP)
    wait_until(lambda: proxy.stats()["config_reloads"] == before + 1, 5, "the reload")
    conn = psycopg2.connect(dsn(proxy))
    try:
        with pytest.raises(psycopg2.OperationalError) as info:
            conn.cursor().execute(big)
        assert info.value.pgcode in (None, "08P01")
    finally:
        conn.close()
    with psycopg2.connect(dsn(proxy)) as conn, conn.cursor() as cur:
        cur.execute("SELECT 'small still fine'")
        assert cur.fetchone() == ("small still fine",)
