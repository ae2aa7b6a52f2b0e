"""Result cache (cache.mode = auto), first slice: simple Query only.

- cold then warm: what the client receives is byte for byte what PostgreSQL
  itself sends (recorded direct, through pgfold cold, through pgfold warm),
  and the warm run does not reach PostgreSQL (pg_stat_statements);
- a write through pgfold A (autocommit, and a committed block) then a read
  through pgfold B sharing the Redis returns the new value;
- a rolled-back write leaves the entries valid (B still hits);
- CALL, ON DELETE CASCADE and a trigger invalidate the whole database;
- a writer through A and readers through A and B for a few seconds: no
  reader ever sees less than what was committed before it asked;
- never cached: volatile / stable functions, FOR UPDATE, a session with a
  temporary table, a block that wrote, REPEATABLE READ, a custom setting,
  a catalog, a view, /* pgfold:nocache */;
- rules mode caches only hinted statements;
- Redis at a dead port, and Redis killed under a running pgfold: every query
  is still answered correctly;
- /cache, /metrics and POST /cache/flush.
No timing assertions.
"""

import json
import urllib.request
import uuid

import pytest

import pgharness
from pgharness import RedisServer, free_port, paused, wait_until
from wire import WireConn, query

DB = "qc_shop"

SCHEMA = """
DROP TABLE IF EXISTS qc_items, qc_tags;
CREATE TABLE qc_items (id int PRIMARY KEY, name text, price numeric(8,2), tags text[]);
CREATE TABLE qc_tags (item_id int NOT NULL, tag text NOT NULL);
INSERT INTO qc_items SELECT g, CASE WHEN g % 5 = 0 THEN NULL ELSE 'item ' || g END, g * 1.5,
  ARRAY['a' || g, 'b'] FROM generate_series(1, 40) g;
INSERT INTO qc_tags SELECT g, 't' || (g % 3) FROM generate_series(1, 40) g;
CREATE OR REPLACE FUNCTION qc_double(int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT $1 * 2';
CREATE OR REPLACE VIEW qc_view AS SELECT id, name FROM qc_items;
DROP TABLE IF EXISTS qc_child, qc_parent, qc_src, qc_log;
CREATE TABLE qc_parent (id int PRIMARY KEY);
CREATE TABLE qc_child (id int PRIMARY KEY, parent_id int REFERENCES qc_parent ON DELETE CASCADE);
INSERT INTO qc_parent SELECT generate_series(1, 5);
INSERT INTO qc_child SELECT g, g FROM generate_series(1, 5) g;
CREATE TABLE qc_src (id int PRIMARY KEY, v int);
DROP TABLE IF EXISTS qc_counter;
CREATE TABLE qc_counter (id int PRIMARY KEY, v int NOT NULL);
INSERT INTO qc_counter VALUES (1, 0);
CREATE TABLE qc_log (id serial PRIMARY KEY, src int);
INSERT INTO qc_src VALUES (1, 0);
CREATE OR REPLACE FUNCTION qc_log_it() RETURNS trigger LANGUAGE plpgsql
  AS $$ BEGIN INSERT INTO qc_log (src) VALUES (NEW.id); RETURN NEW; END $$;
CREATE TRIGGER qc_src_log AFTER UPDATE ON qc_src FOR EACH ROW EXECUTE FUNCTION qc_log_it();
"""


@pytest.fixture(scope="module")
def shop(postgres):
    postgres.create_database(DB, SCHEMA)
    yield DB
    postgres.drop_database(DB)


def functions_loaded(proxy):
    """pgfold knows the database's function volatility (count() is immutable)."""
    status, _, body = proxy.admin_get(f"/functions?db={DB}&fn=qc_double")
    return status == 200 and json.loads(body)["volatility"] == "immutable"


def cacheable_now(proxy):
    """A plain read of qc_items is looked up (pgfold knows the database's
    functions and relations: loaded at first use, reloaded after DDL)."""
    before = cache_stats(proxy)
    with WireConn("127.0.0.1", proxy.port) as w:
        w.startup("app", DB)
        w.simple_query(f"SELECT /* probe {marker()} */ /* pgfold:cache */ id FROM qc_items WHERE id = 1")
    after = cache_stats(proxy)
    return (after["lookups"] > before["lookups"] or after["bypasses"]["redis"] > before["bypasses"]["redis"]
            or after["bypasses"].get("cold_shape", 0) > before["bypasses"].get("cold_shape", 0))


def start_cache(factory, name, **sets):
    sets = {"cache.mode": "auto", "log_level": "debug", **sets}
    proxy = factory(sets=sets, name=name)
    with WireConn("127.0.0.1", proxy.port) as w:  # the first client starts loading pg_proc
        w.startup("app", DB)
        w.simple_query("SELECT 1")
    wait_until(lambda: functions_loaded(proxy), 20, "function volatility loaded")
    wait_until(lambda: cacheable_now(proxy), 20, "relations loaded")
    return proxy


@pytest.fixture(scope="module")
def proxies(shop, module_pgfold_factory):
    a = start_cache(module_pgfold_factory, "pgfold-cache-a")
    b = start_cache(module_pgfold_factory, "pgfold-cache-b")
    return a, b


def ready(*proxies):
    for proxy in proxies:
        wait_until(lambda: cacheable_now(proxy), 20, "reads cacheable")


def cache_stats(proxy):
    status, ctype, body = proxy.admin_get("/cache")
    assert status == 200 and ctype.startswith("application/json"), (status, body)
    return json.loads(body)


def admin_post(proxy, path):
    req = urllib.request.Request(f"http://127.0.0.1:{proxy.admin_port}{path}", data=b"", method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def record(port, script, db=DB):
    """Send each SQL string as one Query; every message received per Query."""
    got = []
    with WireConn("127.0.0.1", port) as w:
        w.startup("app", db)
        for sql in script:
            w.send(query(sql))
            got.append(w.read_until_ready())
        w.send(b"X\x00\x00\x00\x04")
    return got


def backend_calls(postgres, marker):
    """Executions PostgreSQL saw of statements containing marker."""
    (n,), = postgres.query("SELECT coalesce(sum(calls), 0)::int FROM pg_stat_statements s "
                           "JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = %s AND s.query LIKE %s",
                           (DB, f"%{marker}%"), dbname=DB)
    return n


def marker():
    return "m" + uuid.uuid4().hex[:12]


def run_ok(port, db, sqls):
    """One session on db: each SQL string as one Query; their results, none
    of which may fail."""
    with WireConn("127.0.0.1", port) as w:
        w.startup("app", db)
        out = [w.simple_query(sql) for sql in sqls]
    for sql, r in zip(sqls, out):
        assert not r["errors"], (sql, r["errors"])
    return out


def start_cached(factory, name, db, probe, **sets):
    """A pgfold with cache.mode=auto (cache.timeout_ms 500 unless sets say
    otherwise), once it looks up a read of db: probe, with {m} replaced by a
    new marker each try (pgfold loads the database's functions and
    relations at first use)."""
    proxy = factory(sets={"cache.mode": "auto", "cache.timeout_ms": "500", **sets}, name=name)
    run_ok(proxy.port, db, ["SELECT 1"])

    def looked_up():
        before = cache_stats(proxy)["lookups"]
        run_ok(proxy.port, db, [probe.format(m=marker())])
        return cache_stats(proxy)["lookups"] > before
    wait_until(looked_up, 20, f"{name}: reads cacheable")
    return proxy


def fresh(postgres):
    """A new marker, with pg_stat_statements emptied: statements of one shape
    share one entry whose text is the first seen, so counting by a marker in
    a comment works only for texts seen after the reset."""
    postgres.query("SELECT pg_stat_statements_reset()", dbname=DB)
    return marker()


def rows_of(msgs):
    return [body for t, body in msgs if t == b"D"]


def workload(m):
    return [
        f"SELECT /* {m} */ id, name, price, tags FROM qc_items ORDER BY id",
        f"SELECT /* {m} */ * FROM qc_items WHERE id = 7",
        f"SELECT /* {m} */ * FROM qc_items WHERE id = 9999",
        f"SELECT /* {m} */ count(*), sum(price), max(name) FROM qc_items",
        f"SELECT /* {m} */ i.id, t.tag, qc_double(i.id) FROM qc_items i JOIN qc_tags t ON t.item_id = i.id "
        "WHERE i.id < 10 ORDER BY 1, 2",
        f"SELECT /* {m} */ name IS NULL AS n, count(*) FROM qc_items GROUP BY 1 ORDER BY 1",
        f"VALUES (1, 'x /* {m} */'), (2, NULL)",  # no table: cached too
    ]


# --------------------------------------------------------------------------
# hits are exact and do not reach PostgreSQL


def test_cold_then_warm_identical(postgres, proxies):
    a, _ = proxies
    ready(*proxies)
    m = fresh(postgres)
    script = workload(m)
    direct = record(postgres.port, script)
    before = cache_stats(a)
    cold = record(a.port, script)
    wait_until(lambda: cache_stats(a)["stores"] - before["stores"] == len(script), 10, "entries stored")
    calls_after_cold = backend_calls(postgres, m)
    assert calls_after_cold == 2 * (len(script) - 1)  # direct and cold (VALUES has no marker there)
    mid = cache_stats(a)
    warm = record(a.port, script)
    after = cache_stats(a)
    assert cold == direct
    assert warm == direct
    assert after["hits"] - mid["hits"] == len(script)
    assert backend_calls(postgres, m) == calls_after_cold, "the warm run reached PostgreSQL"


def test_inside_block_before_write_is_served(postgres, proxies):
    a, _ = proxies
    ready(*proxies)
    m = fresh(postgres)
    sql = f"SELECT /* {m} */ name FROM qc_items WHERE id = 3"
    first = record(a.port, [sql])
    calls = backend_calls(postgres, m)
    got = record(a.port, ["BEGIN", sql, "COMMIT"])
    assert got[1][:-1] == first[0][:-1]
    assert got[1][-1] == (b"Z", b"T")  # the block's status, not the stored one
    assert backend_calls(postgres, m) == calls


# --------------------------------------------------------------------------
# invalidation across instances


def read_value(port, m, item=11):
    with WireConn("127.0.0.1", port) as w:
        w.startup("app", DB)
        r = w.simple_query(f"SELECT /* {m} */ name FROM qc_items WHERE id = {item}")
        assert not r["errors"], r["errors"]
        return r["rows"][0][0]


def write(port, *sqls, check=True):
    with WireConn("127.0.0.1", port) as w:
        w.startup("app", DB)
        for sql in sqls:
            r = w.simple_query(sql)
            assert not (check and r["errors"]), (sql, r["errors"])


def test_write_through_a_then_read_through_b(postgres, proxies):
    a, b = proxies
    ready(a, b)
    m = marker()
    write(postgres.port, "UPDATE qc_items SET name = 'v0' WHERE id = 11")
    assert read_value(b.port, m) == "v0"
    hits = cache_stats(b)["hits"]
    assert read_value(b.port, m) == "v0"
    assert cache_stats(b)["hits"] == hits + 1
    write(a.port, "UPDATE qc_items SET name = 'v1' WHERE id = 11")  # autocommit
    assert read_value(b.port, m) == "v1"
    assert read_value(b.port, m) == "v1"
    write(a.port, "BEGIN", "UPDATE qc_items SET name = 'v2' WHERE id = 11", "COMMIT")
    assert read_value(b.port, m) == "v2"
    write(a.port, "BEGIN; UPDATE qc_items SET name = 'v3' WHERE id = 11; COMMIT")  # one Query
    assert read_value(b.port, m) == "v3"
    write(a.port, "BEGIN", "SAVEPOINT s", "UPDATE qc_items SET name = 'v4' WHERE id = 11", "RELEASE s",
          "SAVEPOINT t", "UPDATE qc_tags SET tag = tag WHERE false", "ROLLBACK TO t", "COMMIT")
    assert read_value(b.port, m) == "v4"
    write(a.port, "TRUNCATE qc_tags", "INSERT INTO qc_tags SELECT g, 't' || (g % 3) FROM generate_series(1, 40) g")
    assert cache_stats(a)["invalidations"] > 0


def test_rolled_back_write_keeps_entries(postgres, proxies):
    a, b = proxies
    ready(*proxies)
    m = marker()
    write(postgres.port, "UPDATE qc_items SET name = 'kept' WHERE id = 12")
    assert read_value(b.port, m, 12) == "kept"
    write(a.port, "BEGIN", "UPDATE qc_items SET name = 'gone' WHERE id = 12", "ROLLBACK")
    write(a.port, "BEGIN", "UPDATE qc_items SET name = 'gone' WHERE id = 12", "SELECT 1/0", "COMMIT", check=False)
    hits = cache_stats(b)["hits"]
    assert read_value(b.port, m, 12) == "kept"
    assert cache_stats(b)["hits"] == hits + 1, "a rolled-back write invalidated the entry"


def test_function_call_invalidates_database(postgres, proxies):
    a, b = proxies
    ready(*proxies)
    m = marker()
    postgres.query("CREATE OR REPLACE PROCEDURE qc_rename(n text) LANGUAGE sql "
                   "AS $$ UPDATE qc_items SET name = n WHERE id = 13 $$", dbname=DB)
    postgres.query("GRANT EXECUTE ON PROCEDURE qc_rename(text) TO app", dbname=DB)
    write(postgres.port, "UPDATE qc_items SET name = 'p0' WHERE id = 13")
    assert read_value(b.port, m, 13) == "p0"
    assert read_value(b.port, m, 13) == "p0"
    write(a.port, "CALL qc_rename('p1')")
    assert read_value(b.port, m, 13) == "p1"


def test_cascade_and_trigger_invalidate_database(postgres, proxies):
    """A write whose effects reach other tables (ON DELETE CASCADE, a
    trigger) invalidates every entry of the database."""
    a, b = proxies
    ready(a, b)
    m = marker()
    child = f"SELECT /* {m} */ count(*) FROM qc_child"
    log = f"SELECT /* {m} */ count(*) FROM qc_log"
    first = record(b.port, [child, log, child, log])
    write(a.port, "DELETE FROM qc_parent WHERE id = (SELECT max(id) FROM qc_parent)")
    after_delete = record(b.port, [child])
    assert after_delete[0] != first[0], "ON DELETE CASCADE left a stale count"
    assert after_delete == record(postgres.port, [child])
    write(a.port, "UPDATE qc_src SET v = v + 1 WHERE id = 1")
    after_update = record(b.port, [log])
    assert after_update[0] != first[1], "a trigger's insert left a stale count"
    assert after_update == record(postgres.port, [log])


def test_no_stale_read_under_concurrent_writes(postgres, proxies):
    """A writer through A commits increments; readers through A and B note
    the last value whose COMMIT returned before they ask, and must never
    read less.  Runs a few seconds."""
    import threading
    import time
    a, b = proxies
    ready(a, b)
    write(a.port, "UPDATE qc_counter SET v = 0 WHERE id = 1")
    committed = [0]
    stop = threading.Event()
    problems = []
    m = marker()

    def writer():
        with WireConn("127.0.0.1", a.port) as w:
            w.startup("app", DB)
            for i in range(10 ** 6):
                if stop.is_set():
                    return
                if i % 2:
                    r = w.simple_query("UPDATE qc_counter SET v = v + 1 WHERE id = 1 RETURNING v")
                else:
                    w.simple_query("BEGIN")
                    w.simple_query("UPDATE qc_counter SET v = v + 1 WHERE id = 1")
                    r = w.simple_query("SELECT v FROM qc_counter WHERE id = 1")
                    w.simple_query("COMMIT")
                committed[0] = int(r["rows"][0][0])
                time.sleep(0.02)

    def reader(proxy):
        with WireConn("127.0.0.1", proxy.port) as w:
            w.startup("app", DB)
            while not stop.is_set():
                floor = committed[0]
                r = w.simple_query(f"SELECT /* {m} */ v FROM qc_counter WHERE id = 1")
                got = int(r["rows"][0][0])
                if got < floor:
                    problems.append(f"read {got} through {proxy.name} after {floor} committed")

    hits = cache_stats(a)["hits"] + cache_stats(b)["hits"]
    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader, args=(p,)) for p in (a, b, b)]
    for t in threads:
        t.start()
    time.sleep(3)
    stop.set()
    for t in threads:
        t.join(30)
    assert not problems, problems[:5]
    assert committed[0] > 10
    assert cache_stats(a)["hits"] + cache_stats(b)["hits"] > hits, "the readers never hit: nothing was tested"


# --------------------------------------------------------------------------
# never cached


def run_twice(port, setup, sql, teardown=()):
    with WireConn("127.0.0.1", port) as w:
        w.startup("app", DB)
        results = []
        for s in setup:
            w.simple_query(s)
        for _ in range(2):
            r = w.simple_query(sql)
            assert not r["errors"], (sql, r["errors"])
            results.append(r)
        for s in teardown:
            w.simple_query(s)
        return results


@pytest.mark.parametrize("setup, sql, teardown, reason", [
    ((), "SELECT /* {m} */ random() < 2, id FROM qc_items WHERE id = 1", (), "function"),
    ((), "SELECT /* {m} */ now() > '2000-01-01', id FROM qc_items WHERE id = 1", (), "function"),
    ((), "SELECT /* {m} */ current_user, id FROM qc_items WHERE id = 1", (), "function"),
    (("BEGIN",), "SELECT /* {m} */ * FROM qc_items WHERE id = 1 FOR UPDATE", ("ROLLBACK",), "locking"),
    (("CREATE TEMP TABLE qc_tmp AS SELECT 1 AS x",), "SELECT /* {m} */ * FROM qc_tmp", (), "temp"),
    (("BEGIN", "UPDATE qc_items SET price = price WHERE id = 2"), "SELECT /* {m} */ * FROM qc_items WHERE id = 2",
     ("ROLLBACK",), "tx_wrote"),
    (("BEGIN ISOLATION LEVEL REPEATABLE READ",), "SELECT /* {m} */ * FROM qc_items WHERE id = 2",
     ("COMMIT",), "isolation"),
    ((), "SELECT /* {m} */ /* pgfold:nocache */ * FROM qc_items WHERE id = 2", (), "hint"),
    (("SET app.tenant = '7'",), "SELECT /* {m} */ * FROM qc_items WHERE id = 2", (), "role"),
    ((), "SELECT /* {m} */ * FROM pg_class WHERE relname = 'qc_items'", (), "catalog"),
    ((), "SELECT /* {m} */ * FROM qc_view WHERE id = 3", (), "relation"),
])
def test_unsafe_never_cached(postgres, proxies, setup, sql, teardown, reason):
    a, _ = proxies
    m = fresh(postgres)
    sql = sql.replace("{m}", m)
    before = cache_stats(a)
    run_twice(a.port, setup, sql, teardown)
    run_twice(a.port, setup, sql, teardown)
    after = cache_stats(a)
    assert backend_calls(postgres, m) == 4, "a statement that must not be cached was answered from the cache"
    assert after["bypasses"][reason] - before["bypasses"][reason] == 4, after["bypasses"]


def test_rules_mode_caches_hinted_only(postgres, shop, pgfold_factory):
    proxy = start_cache(pgfold_factory, "pgfold-cache-rules", **{"cache.mode": "rules"})
    no_rule = cache_stats(proxy)["bypasses"]["no_rule"]
    m = fresh(postgres)
    plain = f"SELECT /* {m} */ id FROM qc_items WHERE id = 4"
    hinted = f"SELECT /* {m} */ /* pgfold:cache ttl=30 */ id FROM qc_items WHERE id = 5"
    record(proxy.port, [plain, hinted, plain, hinted])
    assert backend_calls(postgres, m) == 3
    assert cache_stats(proxy)["bypasses"]["no_rule"] == no_rule + 2


def test_mode_off_changes_nothing(postgres, shop, pgfold_factory):
    proxy = pgfold_factory(name="pgfold-cache-off")
    m = fresh(postgres)
    sql = f"SELECT /* {m} */ id FROM qc_items WHERE id = 4"
    record(proxy.port, [sql, sql])
    assert backend_calls(postgres, m) == 2
    st = cache_stats(proxy)
    assert st["mode"] == "off" and st["lookups"] == 0


# --------------------------------------------------------------------------
# Redis unavailable: fail open


def test_redis_dead_port_fails_open(postgres, shop, pgfold_factory):
    dead = free_port()
    proxy = start_cache(pgfold_factory, "pgfold-cache-deadredis", **{"cache.redis": f"127.0.0.1:{dead}"})
    m = marker()
    script = workload(m)
    assert record(proxy.port, script) == record(postgres.port, script)
    write(proxy.port, "UPDATE qc_items SET price = price WHERE id = 1")
    assert record(proxy.port, script) == record(postgres.port, script)
    st = cache_stats(proxy)
    assert st["hits"] == 0 and st["bypasses"]["redis"] >= len(script)


def test_redis_killed_under_load_fails_open(postgres, shop, pgfold_factory):
    own = RedisServer("redis-cache-kill")
    own.start()
    try:
        proxy = start_cache(pgfold_factory, "pgfold-cache-kill", **{"cache.redis": f"127.0.0.1:{own.port}"})
        wait_until(lambda: cache_stats(proxy)["redis"] == "up", 20, "redis up")
        m = marker()
        script = workload(m)
        want = record(postgres.port, script)
        assert record(proxy.port, script) == want
        assert record(proxy.port, script) == want
        assert cache_stats(proxy)["hits"] >= len(script) - 1
        with WireConn("127.0.0.1", proxy.port) as w:  # a session open across the kill
            w.startup("app", DB)
            own.proc.kill()
            own.proc.wait(10)
            for sql in script:
                w.send(query(sql))
                assert w.read_until_ready() == want[script.index(sql)]
            r = w.simple_query("UPDATE qc_items SET price = price WHERE id = 1")
            assert not r["errors"] and r["status"] == "I"
        assert record(proxy.port, script) == want
    finally:
        own.cleanup()


def test_redis_paused_fails_open(postgres, shop, pgfold_factory):
    """SIGSTOP: lookups and invalidations hit their deadlines (counted), every
    answer is still PostgreSQL's; after SIGCONT the cache works again."""
    own = RedisServer("redis-cache-pause")
    own.start()
    try:
        proxy = start_cache(pgfold_factory, "pgfold-cache-pause", **{"cache.redis": f"127.0.0.1:{own.port}"})
        m = marker()
        script = workload(m)
        want = record(postgres.port, script)
        with paused(own.proc):
            assert record(proxy.port, script) == want
            write(proxy.port, "UPDATE qc_items SET price = price WHERE id = 1")
            assert record(proxy.port, script) == want
            st = cache_stats(proxy)
            assert st["hits"] == 0 and st["timeouts"] + st["bypasses"]["redis"] >= len(script)
        wait_until(lambda: cache_stats(proxy)["redis"] == "up", 30, "redis up again")
        ready(proxy)
        assert record(proxy.port, script) == want
        assert record(proxy.port, script) == want
    finally:
        own.cleanup()


def test_redis_answering_errors_fails_open(postgres, shop, pgfold_factory, tmp_path):
    """A Redis without EVAL answers every lookup with an error."""
    import subprocess
    port = free_port()
    log = open(tmp_path / "redis.log", "wb")
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path), "--rename-command", "EVAL", ""],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    pgharness.record_pid(proc.pid)
    try:
        wait_until(lambda: pgharness.tcp_connectable(port), 20, "redis listening")
        proxy = start_cache(pgfold_factory, "pgfold-cache-noeval", **{"cache.redis": f"127.0.0.1:{port}"})
        m = marker()
        script = workload(m)
        want = record(postgres.port, script)
        assert record(proxy.port, script) == want
        write(proxy.port, "UPDATE qc_items SET price = price WHERE id = 1")
        assert record(proxy.port, script) == want
        st = cache_stats(proxy)
        assert st["hits"] == 0 and st["redis_errors"] > 0 and st["invalidation_errors"] > 0
    finally:
        proc.kill()
        proc.wait(10)
        log.close()


# --------------------------------------------------------------------------
# admin


def test_admin_cache_endpoints(proxies):
    a, _ = proxies
    ready(*proxies)
    st = cache_stats(a)
    for field in ("mode", "redis", "lookups", "hits", "misses", "stores", "invalidations", "redis_errors",
                  "timeouts", "bytes_served", "bytes_stored", "lookup_mean_us", "lookup_max_us", "bypasses"):
        assert field in st, field
    assert st["mode"] == "auto" and st["redis"] == "up"
    status, _, body = a.admin_get("/metrics")
    text = body.decode()
    assert status == 200
    assert "pgfold_cache_hits_total " in text
    assert 'pgfold_cache_bypasses_total{reason="function"}' in text
    m = marker()
    sql = f"SELECT /* {m} */ id FROM qc_items WHERE id = 6"
    record(a.port, [sql, sql])
    assert cache_stats(a)["hits"] >= st["hits"] + 1
    status, body = admin_post(a, "/cache/flush")
    assert status == 200, body
    wait_until(lambda: cache_stats(a)["flushes"] == st["flushes"] + 1, 5, "flush counted")
    misses = cache_stats(a)["misses"]
    record(a.port, [sql])
    assert cache_stats(a)["misses"] == misses + 1, "an entry survived POST /cache/flush"
    assert a.admin_get("/cache/flush")[0] == 405


def test_write_answer_reaches_the_client_in_one_piece(proxies):
    """The ReadyForQuery after a write waits for its invalidation; the
    CommandComplete before it waits with it, so the client reads the whole
    answer at once (one write by pgfold, one wake-up of the client) instead
    of the CommandComplete a Redis round trip before the rest."""
    a, _ = proxies
    split = 0
    with WireConn("127.0.0.1", a.port) as w:
        w.startup("app", DB)
        for _ in range(20):
            w.send(query("UPDATE qc_counter SET v = v + 1 WHERE id = 1"))
            w.sock.settimeout(10)
            first = w.sock.recv(65536)
            assert first, "pgfold closed the connection"
            if not (len(first) >= 6 and first[-6:-1] == b"Z\x00\x00\x00\x05"):
                split += 1
            w.buf += first
            msgs = w.read_until_ready()
            assert [m[0] for m in msgs] == [b"C", b"Z"] and msgs[0][1] == b"UPDATE 1\x00", msgs
    assert split == 0, f"{split} of 20 write answers came in pieces"
    assert cache_stats(a)["invalidations"] >= 20


def test_held_ready_for_query_stops_reading_the_backend(postgres, shop, pgfold_factory):
    """Redis paused: a write's ReadyForQuery is held past the bump's deadline.
    A 20 MB result pipelined behind it waits in PostgreSQL (pgfold stops
    reading the backend instead of buffering it), and everything arrives
    whole and in order once the hold ends."""
    own = RedisServer("redis-cache-held")
    own.start()
    try:
        proxy = start_cache(pgfold_factory, "pgfold-cache-held", **{"cache.redis": f"127.0.0.1:{own.port}"})
        rows, width = 20000, 1000
        big = f"SELECT /* pgfold:nocache */ g, repeat('x', {width}) FROM generate_series(1, {rows}) g"
        with WireConn("127.0.0.1", proxy.port, timeout=60) as w:
            w.startup("app", DB)
            with paused(own.proc):
                w.send(query("UPDATE qc_counter SET v = v + 1 WHERE id = 1") + query(big))
                first = w.read_until_ready()
                second = w.read_until_ready()
        assert [m[0] for m in first] == [b"C", b"Z"], first
        kinds = [m[0] for m in second]
        assert kinds[0] == b"T" and kinds[-2:] == [b"C", b"Z"] and kinds.count(b"D") == rows, kinds[:3]
        assert second[-2][1] == f"SELECT {rows}\x00".encode()
        st = cache_stats(proxy)
        assert st["invalidation_errors"] + st["timeouts"] >= 1, st
    finally:
        own.cleanup()


def test_backend_lost_during_held_ready_for_query(postgres, shop, pgfold_factory):
    """The backend goes away while a write's ReadyForQuery is held for its
    invalidation (Redis paused; cache.timeout_ms 1000 makes the bump's
    deadline 4 s): the client still gets the write's CommandComplete, then
    pgfold's FATAL, and no ReadyForQuery."""
    own = RedisServer("redis-cache-held-lost")
    own.start()
    try:
        proxy = start_cache(pgfold_factory, "pgfold-cache-held-lost",
                            **{"cache.redis": f"127.0.0.1:{own.port}", "cache.timeout_ms": "1000"})
        app = "held-" + marker()
        activity = f"SELECT state, query FROM pg_stat_activity WHERE application_name = '{app}'"

        def update_ran():  # PostgreSQL answered it: the hold is on in pgfold
            rows = run_ok(postgres.port, DB, [activity])[0]["rows"]
            return rows and [str(v, "utf-8") if isinstance(v, bytes) else v for v in rows[0]][0] == "idle" \
                and "UPDATE" in str(rows[0][1])

        with WireConn("127.0.0.1", proxy.port, timeout=30) as w:
            w.startup("app", DB, extra={"application_name": app})
            with paused(own.proc):
                w.send(query("UPDATE qc_counter SET v = v + 1 WHERE id = 1"))
                wait_until(update_ran, 3, "the UPDATE answered by PostgreSQL")
                killed = run_ok(postgres.port, DB, [
                    f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = '{app}'"])
                msgs = w.expect_eof(timeout=20)
        assert killed[0]["rows"][0][0] in (b"1", "1"), killed  # the session through pgfold was found
        kinds = [m[0] for m in msgs]
        assert kinds[0] == b"C" and msgs[0][1] == b"UPDATE 1\x00", msgs
        assert b"E" in kinds and b"Z" not in kinds, msgs
    finally:
        own.cleanup()
