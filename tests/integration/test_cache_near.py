"""Result cache: the near cache (proxy/rcache_near.h), entries kept in
pgfold itself, used under a lease from Redis's registry (every bump waits
for the acknowledgement of each instance holding one) or, without a lease,
after a sync with Redis's bump log.

- a repeated read is answered from pgfold's memory (near hits), byte for
  byte what PostgreSQL sends; under the lease without a Redis command each;
- a write through pgfold A, then at once a read through pgfold B holding the
  entry near: B returns the new value, every time (many rounds), B
  acknowledging each of A's bumps before A's COMMIT returns;
- B paused (SIGSTOP) while it holds a lease: A's write waits for B's lease
  to run out, and B, resumed, answers the new value;
- a bump whose fate is unknown (the script failed inside Redis) holds the
  COMMIT until any lease that could be running has ended, and until it is
  retried successfully this pgfold answers nothing that depends on it from
  the cache;
- cache.near_cache_bytes = 0: hits come from Redis, never near;
- a small near_cache_bytes keeps the memory bound (least recently used
  evicted), answers still right;
- Redis flushed (FLUSHALL: the log and versions gone): B drops its near
  entries at the next sync and answers right; Redis paused (SIGSTOP): once
  the lease ran out near entries are not used without a sync, the statement
  goes to PostgreSQL within the timeout and is answered right.
"""

import socket
import time

import pytest

from pgharness import RedisServer, paused, wait_until
from test_cache import cache_stats, marker, run_ok, start_cached
from wire import WireConn, query

DB = "qc_near"

SCHEMA = """
DROP TABLE IF EXISTS qn_items;
CREATE TABLE qn_items (id int PRIMARY KEY, name text NOT NULL, n int NOT NULL);
INSERT INTO qn_items SELECT g, 'item ' || g, 0 FROM generate_series(1, 200) g;
"""


@pytest.fixture(scope="module")
def near_db(postgres):
    postgres.create_database(DB, SCHEMA)
    yield DB
    postgres.drop_database(DB)


def run(port, sqls):
    return run_ok(port, DB, sqls)


def value(port, sql):
    return run(port, [sql])[0]["rows"]


def start(factory, name, **sets):
    return start_cached(factory, name, DB, "SELECT /* probe {m} */ name FROM qn_items WHERE id = 1", **sets)


@pytest.fixture(scope="module")
def proxies(near_db, module_pgfold_factory):
    return start(module_pgfold_factory, "pgfold-near-a"), start(module_pgfold_factory, "pgfold-near-b")


def near(proxy):
    return cache_stats(proxy)["near"]


def lease(proxy):
    return near(proxy)["lease"]


def wait_lease(proxy, held=True):
    wait_until(lambda: lease(proxy)["held"] == held, 10, f"{proxy.name}'s lease held={held}", interval=0.02)


def near_hit(proxy, sql):
    """Read sql until the near cache answers it; its rows."""
    value(proxy.port, sql)

    def hit():
        before = near(proxy)["hits"]
        got = value(proxy.port, sql)
        return near(proxy)["hits"] == before + 1 and [got]
    return wait_until(hit, 10, f"a near hit on {proxy.name}", interval=0.05)[0]


def redis_reply(port, *args):
    """One command to Redis; its whole answer (a status, error, integer or
    bulk string reply)."""
    msg = f"*{len(args)}\r\n" + "".join(f"${len(a)}\r\n{a}\r\n" for a in args)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(msg.encode())
        data = b""
        while True:
            data += s.recv(65536)
            head, sep, body = data.partition(b"\r\n")
            if not sep:
                continue
            if not head.startswith(b"$") or int(head[1:]) < 0 or len(body) >= int(head[1:]) + 2:
                return data


def redis_command(port, *args):
    """One command to Redis; the first line of its answer."""
    return redis_reply(port, *args).split(b"\r\n")[0]


def recorded(port, sql):
    with WireConn("127.0.0.1", port) as w:
        w.startup("app", DB)
        w.send(query(sql))
        return w.read_until_ready()


def test_near_hit_is_exact(postgres, proxies):
    _, b = proxies
    sql = f"SELECT /* {marker()} */ id, name, n, NULL::text AS z FROM qn_items WHERE id < 20 ORDER BY id"
    near_hit(b, sql)
    before = near(b)["hits"]
    assert recorded(b.port, sql) == recorded(postgres.port, sql)
    assert near(b)["hits"] == before + 1
    assert near(b)["enabled"] and near(b)["entries"] >= 1 and near(b)["syncs"] >= 1


@pytest.mark.parametrize("pinned", [True, False])
def test_write_through_a_then_read_through_b(pinned, proxies):
    """Each round: B holds the row near, A commits an increment, B reads at
    once and must see it (the sync B waits for is sent after the read
    arrived, so it carries A's bump)."""
    a, b = proxies
    m = marker()
    key = 5 if pinned else 6
    sql = (f"SELECT /* {m} */ n FROM qn_items WHERE id = {key}" if pinned
           else f"SELECT /* {m} */ n FROM qn_items WHERE name = 'item {key}'")
    n = int(near_hit(b, sql)[0][0])
    wait_lease(b)
    acked = lease(a)["bump_waits"]
    timeouts = lease(a)["bump_wait_timeouts"]
    served_near = 0
    with WireConn("127.0.0.1", a.port) as wa, WireConn("127.0.0.1", b.port) as wb:
        wa.startup("app", DB)
        wb.startup("app", DB)
        for _ in range(60):
            before = near(b)["hits"]
            assert wb.simple_query(sql)["rows"] == [[str(n)]]  # warm again (near or Redis)
            served_near += near(b)["hits"] - before
            r = wa.simple_query(f"UPDATE qn_items SET n = n + 1 WHERE id = {key}")
            assert not r["errors"] and r["status"] == "I"
            n += 1
            got = wb.simple_query(sql)["rows"]
            assert got == [[str(n)]], f"B returned {got} after A committed {n}"
    assert served_near > 0, "the near cache never answered between the writes"
    # every commit waited for B's lease, and B acknowledged each in time
    assert lease(a)["bump_waits"] >= acked + 60
    assert lease(a)["bump_wait_timeouts"] == timeouts


def evalsha_calls(redis_port):
    for line in redis_reply(redis_port, "INFO", "commandstats").decode().split("\r\n"):
        if line.startswith("cmdstat_evalsha:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


@pytest.mark.timeout(120)
def test_lease_answers_without_redis(near_db, pgfold_factory):
    """Under the lease a near hit sends nothing to Redis: 300 hits cost a
    few renewals (one each PX_NEAR_RENEW_MS), not 300 syncs."""
    own = RedisServer("redis-near-lease")
    own.start()
    try:
        c = start(pgfold_factory, "pgfold-near-lease", **{"cache.redis": f"127.0.0.1:{own.port}"})
        sql = f"SELECT /* {marker()} */ name FROM qn_items WHERE id = 3"
        near_hit(c, sql)
        wait_lease(c)
        hits, calls = near(c)["hits"], evalsha_calls(own.port)
        with WireConn("127.0.0.1", c.port) as w:
            w.startup("app", DB)
            for _ in range(300):
                assert w.simple_query(sql)["rows"] == [["item 3"]]
        assert near(c)["hits"] == hits + 300
        assert evalsha_calls(own.port) - calls < 100
        # pipelined: three in one packet, each answered in order
        with WireConn("127.0.0.1", c.port) as w:
            w.startup("app", DB)
            other = f"SELECT /* {marker()} */ name FROM qn_items WHERE id = 4"
            near_hit(c, other)
            hits = near(c)["hits"]
            w.send(query(sql) + query(other) + query(sql))
            got = [w.read_until_ready() for _ in range(3)]
            rows = [[m[1] for m in r if m[0] == b"D"] for r in got]
            assert [len(r) for r in rows] == [1, 1, 1], got
            assert [r[0].endswith(want) for r, want in zip(rows, (b"item 3", b"item 4", b"item 3"))] == [True] * 3
            assert near(c)["hits"] == hits + 3
    finally:
        own.cleanup()


@pytest.mark.timeout(120)
def test_paused_peer_lease_runs_out(near_db, pgfold_factory):
    """B holds a lease and the entry; B is paused; A's write waits for B's
    lease to run out (no acknowledgement can come), then B, resumed, must
    not answer the old value from its memory."""
    own = RedisServer("redis-near-peer")
    own.start()
    try:
        sets = {"cache.redis": f"127.0.0.1:{own.port}"}
        a = start(pgfold_factory, "pgfold-near-pa", **sets)
        b = start(pgfold_factory, "pgfold-near-pb", **sets)
        sql = f"SELECT /* {marker()} */ n FROM qn_items WHERE id = 12"
        n = int(near_hit(b, sql)[0][0])
        wait_lease(b)
        timeouts = lease(a)["bump_wait_timeouts"]
        with WireConn("127.0.0.1", b.port) as wb:
            wb.startup("app", DB)
            with paused(b.proc):
                run(a.port, ["UPDATE qn_items SET n = n + 1 WHERE id = 12"])
            assert wb.simple_query(sql)["rows"] == [[str(n + 1)]]
        assert lease(a)["bump_wait_timeouts"] == timeouts + 1
        status, _, body = a.admin_get("/metrics")
        metrics = body.decode()
        assert status == 200
        assert f"pgfold_cache_bump_wait_timeouts_total {timeouts + 1}\n" in metrics
        wait_lease(b)
        assert near_hit(b, sql) == [[str(n + 1)]]
    finally:
        own.cleanup()


def test_near_off(near_db, pgfold_factory):
    c = start(pgfold_factory, "pgfold-near-off", **{"cache.near_cache_bytes": "0"})
    sql = f"SELECT /* {marker()} */ name FROM qn_items WHERE id = 7"
    value(c.port, sql)
    wait_until(lambda: cache_stats(c)["hits"] > 0 or value(c.port, sql) is None, 10, "a hit")
    stats = cache_stats(c)
    assert stats["hits"] > 0 and not stats["near"]["enabled"]
    assert stats["near"]["hits"] == 0 and stats["near"]["entries"] == 0


def test_near_memory_is_bounded(near_db, pgfold_factory):
    c = start(pgfold_factory, "pgfold-near-small", **{"cache.near_cache_bytes": "4kB"})
    m = marker()
    sqls = [f"SELECT /* {m} */ id, name FROM qn_items WHERE id = {k}" for k in range(1, 61)]
    for _ in range(2):
        got = run(c.port, sqls)
        assert [r["rows"] for r in got] == [[[str(k), f"item {k}"]] for k in range(1, 61)]
    st = near(c)
    assert st["bytes"] <= 4096 and st["evictions"] > 0 and 0 < st["entries"] < 60, st


@pytest.mark.timeout(120)
def test_redis_flushed_and_paused(near_db, postgres, pgfold_factory):
    own = RedisServer("redis-near")
    own.start()
    try:
        sets = {"cache.redis": f"127.0.0.1:{own.port}", "cache.timeout_ms": "200"}
        a = start(pgfold_factory, "pgfold-near-fa", **sets)
        b = start(pgfold_factory, "pgfold-near-fb", **sets)
        m = marker()
        sql = f"SELECT /* {m} */ n FROM qn_items WHERE id = 9"
        n = int(near_hit(b, sql)[0][0])

        resets = near(b)["resets"]
        assert redis_command(own.port, "FLUSHALL") == b"+OK"
        run(a.port, ["UPDATE qn_items SET n = n + 1 WHERE id = 9"])
        assert value(b.port, sql) == [[str(n + 1)]]
        assert near(b)["resets"] > resets, "the flushed log did not reset the near cache"
        near_hit(b, sql)

        with paused(own.proc):
            postgres.query("UPDATE qn_items SET n = n + 10 WHERE id = 9", dbname=DB)
            wait_lease(b, held=False)  # no renewal answered: the lease runs out
            started = time.monotonic()
            # no sync can be answered: the entry is not used, PostgreSQL answers
            assert value(b.port, sql) == [[str(n + 11)]]
            assert time.monotonic() - started < 5
    finally:
        own.cleanup()


@pytest.mark.timeout(120)
def test_bump_of_unknown_fate_holds_commit(near_db, pgfold_factory):
    """The bump script fails inside Redis (the log's counter is not a number):
    it may have changed something before failing, so the COMMIT is held a
    whole lease (400 ms) past the failure, counted as an invalidation error,
    and the answer is still right."""
    own = RedisServer("redis-near-fence")
    own.start()
    try:
        c = start(pgfold_factory, "pgfold-near-fence", **{"cache.redis": f"127.0.0.1:{own.port}"})
        run(c.port, ["UPDATE qn_items SET n = n WHERE id = 20"])  # the registry exists from here on
        n = int(value(c.port, "SELECT n FROM qn_items WHERE id = 20")[0][0])
        assert redis_command(own.port, "SET", "pgfold:seq", "not-a-number") == b"+OK"
        errors = cache_stats(c)["invalidation_errors"]
        started = time.monotonic()
        run(c.port, ["UPDATE qn_items SET n = n + 1 WHERE id = 20"])
        held = time.monotonic() - started
        assert cache_stats(c)["invalidation_errors"] == errors + 1
        assert held >= 0.4, f"the COMMIT came back after {held:.3f} s, before a lease could have ended"
        # the entry of the old value is still in Redis and in memory, but this
        # pgfold does not use it while the bump waits for its retry
        assert cache_stats(c)["bumps_to_retry"] > 0
        hits = cache_stats(c)["hits"]
        for _ in range(3):
            assert value(c.port, "SELECT n FROM qn_items WHERE id = 20") == [[str(n + 1)]]
        assert cache_stats(c)["hits"] == hits
        # Redis healed: the retry goes through, and the cache serves again
        assert redis_command(own.port, "DEL", "pgfold:seq") == b":1"
        wait_until(lambda: cache_stats(c)["bumps_to_retry"] == 0, 20, "the bump retried")
        near_hit(c, "SELECT n FROM qn_items WHERE id = 20")
        assert value(c.port, "SELECT n FROM qn_items WHERE id = 20") == [[str(n + 1)]]
    finally:
        own.cleanup()


@pytest.mark.timeout(120)
def test_empty_instance_holds_no_lease(near_db, pgfold_factory):
    """A pgfold with nothing in its near cache has nothing to answer under a
    lease, so it holds none, and another's writes do not wait for it; once it
    holds an entry it takes one, and they do."""
    own = RedisServer("redis-near-empty")
    own.start()
    try:
        sets = {"cache.redis": f"127.0.0.1:{own.port}"}
        a = start(pgfold_factory, "pgfold-near-ea", **sets)
        idle = pgfold_factory(sets={"cache.mode": "auto", **sets}, name="pgfold-near-eb")
        wait_until(lambda: cache_stats(idle)["redis"] == "up", 20, "the idle pgfold's Redis up")
        time.sleep(0.3)  # several renewal periods
        assert not lease(idle)["held"]
        waits = lease(a)["bump_waits"]
        run(a.port, ["UPDATE qn_items SET n = n WHERE id = 30"])
        run(a.port, ["UPDATE qn_items SET n = n WHERE id = 30"])
        assert lease(a)["bump_waits"] == waits, "a write waited for an instance holding nothing"
        near_hit(idle, f"SELECT /* {marker()} */ n FROM qn_items WHERE id = 30")
        wait_lease(idle)
        run(a.port, ["UPDATE qn_items SET n = n WHERE id = 30"])
        assert lease(a)["bump_waits"] == waits + 1
    finally:
        own.cleanup()
