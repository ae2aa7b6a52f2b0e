"""pgfold's Redis settings in [cache] against a redis-server each test starts
itself with requirepass and a Redis 6 ACL user:

- cache.redis_password / cache.redis_db / cache.redis_connections: every
  connection AUTHs and SELECTs; /stats lists each connection (up, its share
  of the commands), /health names each, /metrics counts the ready ones; the
  result cache hits, and its keys are in the configured database only;
- cache.redis_user: AUTH as the ACL user;
- a wrong password: Redis never counts as up, each connection's last_error
  says WRONGPASS (the password itself appears nowhere), and SQL through
  pgfold is answered as usual (fail open).
"""

import socket
import subprocess
import time

import pytest

from pgharness import record_pid, wait_until
from test_cache import DB, backend_calls, cache_stats, cacheable_now, fresh, functions_loaded, record, shop  # noqa: F401
from test_redis_health import OwnRedis, health, metrics, sql_works
from wire import WireConn

PASSWORD = "s3cret pass:with=signs"
ACL_USER, ACL_PASSWORD = "pgfold", "acl-pw-1"


class AuthRedis(OwnRedis):
    """OwnRedis with requirepass and an ACL user."""

    def _ping(self):
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith((b"+PONG", b"-NOAUTH"))

    def start(self):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.base), "--daemonize", "no",
             "--requirepass", PASSWORD,
             "--user", ACL_USER, "on", f">{ACL_PASSWORD}", "~*", "&*", "+@all"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        record_pid(self.proc.pid)
        self.started_at, self.stopped_at, self.frozen = time.monotonic(), None, False
        wait_until(self._ping, 20, f"redis-server PING on port {self.port}")
        return self

    def cli(self, *args, db=0):
        out = subprocess.run(["redis-cli", "-p", str(self.port), "--no-auth-warning", "-a", PASSWORD,
                              "-n", str(db), *args], capture_output=True, text=True, timeout=10)
        return out.stdout.strip()


@pytest.fixture
def auth_redis():
    server = AuthRedis("redis-auth")
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


def start(pgfold_factory, redis, name, **sets):
    return pgfold_factory(sets={"log_level": "debug", **sets}, name=name,
                          extra_args=["--redis", f"127.0.0.1:{redis.port}"])


def redis_up(proxy):
    return proxy.stats()["redis"]["state"] == "up"


def test_password_database_and_pool(pgfold_factory, auth_redis, postgres, shop):  # noqa: F811
    proxy = start(pgfold_factory, auth_redis, "pgfold-redis-auth", **{
        "cache.redis_password": PASSWORD, "cache.redis_db": "7", "cache.redis_connections": "3",
        "cache.mode": "auto"})
    conns_up = lambda: all(c["state"] == "up" for c in proxy.stats()["redis"]["connections"])  # noqa: E731
    wait_until(conns_up, 20, f"3 Redis connections up (pgfold log:\n{proxy.log_tail(20)})")
    st = proxy.stats()["redis"]
    assert st["state"] == "up" and st["database"] == 7 and len(st["connections"]) == 3, st
    assert health(proxy) == (200, {"status": "ok", "redis": "up", "redis_connections": ["up"] * 3})
    assert metrics(proxy)["pgfold_redis_connections_up"] == 3
    clients = auth_redis.cli("CLIENT", "LIST")
    assert clients.count(" db=7 ") >= 3, clients

    with WireConn("127.0.0.1", proxy.port) as w:  # the first client starts loading pg_proc
        w.startup("app", DB)
        w.simple_query("SELECT 1")
    wait_until(lambda: functions_loaded(proxy), 20, "function volatility loaded")
    wait_until(lambda: cacheable_now(proxy), 20, "relations loaded")
    m = fresh(postgres)
    sql = f"SELECT /* {m} */ id, name FROM qc_items WHERE id = 3"
    record(proxy.port, [sql])
    wait_until(lambda: cache_stats(proxy)["stores"] >= 1, 10, "an entry stored")
    got = record(proxy.port, [sql, sql, sql])
    assert backend_calls(postgres, m) == 1, "no hit through the AUTHed pool"
    assert len({repr(g) for g in got}) == 1
    assert int(auth_redis.cli("DBSIZE", db=7)) > 0
    assert int(auth_redis.cli("DBSIZE", db=0)) == 0
    shares = [c["commands"] for c in proxy.stats()["redis"]["connections"]]
    assert all(n > 0 for n in shares), shares  # round-robin: every connection carried commands


def test_acl_user(pgfold_factory, auth_redis):
    proxy = start(pgfold_factory, auth_redis, "pgfold-redis-acl", **{
        "cache.redis_user": ACL_USER, "cache.redis_password": ACL_PASSWORD})
    wait_until(lambda: redis_up(proxy), 20, f"Redis up as {ACL_USER}")
    clients = auth_redis.cli("CLIENT", "LIST")
    assert f" user={ACL_USER} " in clients, clients
    assert health(proxy) == (200, {"status": "ok", "redis": "up"})  # one connection: no list


def test_wrong_password_fails_open(pgfold_factory, auth_redis):
    proxy = start(pgfold_factory, auth_redis, "pgfold-redis-wrongpass", **{
        "cache.redis_password": "not-the-password", "cache.redis_connections": "2", "cache.mode": "auto"})
    wrongpass = lambda: all("WRONGPASS" in c["last_error"]  # noqa: E731
                            for c in proxy.stats()["redis"]["connections"])
    wait_until(wrongpass, 20, f"WRONGPASS on both connections (pgfold log:\n{proxy.log_tail(20)})")
    assert proxy.stats()["redis"]["state"] in ("connecting", "down")
    sql_works(proxy)
    status, body = health(proxy)
    assert status == 200 and body["redis"] != "up" and len(body["redis_connections"]) == 2
    _, _, raw = proxy.admin_get("/stats")
    assert b"not-the-password" not in raw
    own_lines = [line for line in proxy.log_text().splitlines() if not line.startswith("###")]  # not the argv
    assert not any("not-the-password" in line for line in own_lines)
