"""pgfold's Redis client as the admin port reports it, against a redis-server
each test starts (and kills, freezes, restarts) itself: /stats redis.state
follows Redis up -> down -> up while SQL through pgfold keeps working
(fail-open), /health stays 200 and names the Redis state, /metrics has
pgfold_redis_up and the pgfold_redis_*_total counters, `--redis off` reports
"off", and SIGTERM still ends pgfold promptly with exit 0 whatever Redis is
doing."""

import json
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg2
import pytest

from pgharness import Server, free_port, record_pid, wait_until


class OwnRedis(Server):
    """A redis-server on a fixed free port that can be killed, frozen and
    restarted on the same port (the session `redis` fixture cannot)."""

    def __init__(self, name="redis-own"):
        super().__init__(name)
        self.port = free_port()
        self.base = Path(tempfile.mkdtemp(prefix="pgfold-redis-own-"))
        self.proc = None
        self.frozen = False

    def _ping(self):
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")

    def start(self):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.base), "--daemonize", "no"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        record_pid(self.proc.pid)
        self.started_at, self.stopped_at, self.frozen = time.monotonic(), None, False

        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited {self.proc.returncode}:\n{self.log_tail()}")
            return self._ping()
        wait_until(ready, 20, f"redis-server PING on port {self.port}")
        return self

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.stopped_at, self.frozen = time.monotonic(), False

    def freeze(self):
        self.proc.send_signal(signal.SIGSTOP)
        self.frozen = True

    def thaw(self):
        self.proc.send_signal(signal.SIGCONT)
        self.frozen = False

    def cleanup(self):
        if self.frozen:
            self.thaw()
        self.kill()
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def own_redis():
    server = OwnRedis()
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


def start_pgfold(pgfold_factory, redis_arg):
    # extra_args come after the factory's own --redis, so they win.
    return pgfold_factory(extra_args=["--redis", redis_arg], name="pgfold-redis")


def redis_stats(proxy):
    return proxy.stats()["redis"]


def wait_state(proxy, state, timeout):
    return wait_until(lambda: redis_stats(proxy)["state"] == state and redis_stats(proxy), timeout,
                      f"/stats redis.state == {state!r} (pgfold log:\n{proxy.log_tail(20)})")


def health(proxy):
    status, ctype, body = proxy.admin_get("/health")
    return status, json.loads(body)


def metrics(proxy):
    status, _, body = proxy.admin_get("/metrics")
    assert status == 200
    values = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def sql_works(proxy, n=3):
    with psycopg2.connect(f"host=127.0.0.1 port={proxy.port} user=app dbname=shop connect_timeout=10") as conn:
        conn.autocommit = True
        cur = conn.cursor()
        for i in range(n):
            cur.execute("SELECT %s::int + 1", (i,))
            assert cur.fetchone() == (i + 1,)


@pytest.mark.timeout(120)
def test_redis_state_follows_the_server(pgfold_factory, own_redis):
    proxy = start_pgfold(pgfold_factory, f"127.0.0.1:{own_redis.port}")
    up = wait_state(proxy, "up", 10)
    assert up["address"] == f"127.0.0.1:{own_redis.port}"
    for key in ("commands", "errors", "timeouts", "reconnects", "ping_us"):
        assert isinstance(up[key], int) and up[key] >= 0, (key, up)
    assert health(proxy) == (200, {"status": "ok", "redis": "up"})
    m = metrics(proxy)
    assert m["pgfold_redis_up"] == 1
    for name in ("commands", "errors", "timeouts", "reconnects"):
        assert f"pgfold_redis_{name}_total" in m, sorted(m)
    assert "pgfold_redis_ping_seconds" in m
    sql_works(proxy)

    # Redis dies: pgfold notices without any traffic and keeps serving SQL.
    own_redis.kill()
    deadline = time.monotonic() + 20
    while redis_stats(proxy)["state"] != "down":
        assert time.monotonic() < deadline, f"still {redis_stats(proxy)} 20 s after the kill"
        sql_works(proxy, 1)
        time.sleep(0.05)
    assert health(proxy) == (200, {"status": "ok", "redis": "down"})
    assert metrics(proxy)["pgfold_redis_up"] == 0
    sql_works(proxy)

    # Back on the same port: the reconnect probe finds it.
    own_redis.start()
    back = wait_state(proxy, "up", 20)
    assert back["reconnects"] >= 1
    assert health(proxy) == (200, {"status": "ok", "redis": "up"})
    sql_works(proxy)

    log = proxy.log_text()
    assert log.count(f"redis 127.0.0.1:{own_redis.port} is down") == 1, log
    assert log.count(f"redis 127.0.0.1:{own_redis.port} is up") == 2, log
    assert proxy.stop() == 0


@pytest.mark.timeout(60)
def test_frozen_redis_goes_down_and_sigterm_still_exits(pgfold_factory, own_redis):
    proxy = start_pgfold(pgfold_factory, f"127.0.0.1:{own_redis.port}")
    wait_state(proxy, "up", 10)
    own_redis.freeze()  # connected but silent: only timeouts tell
    wait_state(proxy, "down", 20)
    sql_works(proxy)
    assert health(proxy)[0] == 200
    started = time.monotonic()
    assert proxy.stop(timeout=10) == 0
    assert time.monotonic() - started < 5


@pytest.mark.timeout(60)
def test_redis_absent_at_start(pgfold_factory):
    port = free_port()  # nothing listens there
    proxy = start_pgfold(pgfold_factory, f"127.0.0.1:{port}")
    sql_works(proxy)
    down = wait_state(proxy, "down", 20)
    assert down["address"] == f"127.0.0.1:{port}"
    assert health(proxy) == (200, {"status": "ok", "redis": "down"})
    sql_works(proxy)
    started = time.monotonic()
    assert proxy.stop(timeout=10) == 0
    assert time.monotonic() - started < 5


def test_redis_off(pgfold_factory):
    proxy = start_pgfold(pgfold_factory, "off")
    r = redis_stats(proxy)
    assert r["state"] == "off" and r["address"] == "off", r
    assert health(proxy) == (200, {"status": "ok"})
    assert not [k for k in metrics(proxy) if k.startswith("pgfold_redis_")]
    sql_works(proxy)
    assert not [ln for ln in proxy.log_text().splitlines()
                if not ln.startswith("###") and "redis" in ln], "Redis contacted with --redis off"
