"""Result cache: reads and writes pinned to primary-key values
(proxy/rcache_rows.h), through two pgfold processes sharing one Redis.

A write that provably changes only rows with known primary-key values
invalidates the reads of those rows and every read not pinned to one key,
and keeps the cached reads of other keys (they still hit).  Everything else
invalidates the whole table (or database) as before:

- UPDATE / DELETE ... WHERE id = v (simple Query; quoted, zero-padded and
  negative literals; psycopg 3's extended protocol with binary parameters);
- INSERT ... VALUES with explicit keys (a cached empty answer for that key
  is invalidated), and without (serial: the whole table);
- UPDATE that assigns the key, INSERT ... ON CONFLICT: the whole table;
- a table with a trigger: the whole database;
- an aggregate (not pinned) after a pinned write is fresh;
- N+1 children pinned to the parent's keys: the batch fills an entry per
  key with that key's version, and the next run hits.
Correctness is asserted by values (never stale); keeping other keys by
cache hit counts.
"""

import psycopg
import pytest

from pgharness import wait_until
from test_cache import cache_stats, marker
from wire import WireConn

DB = "qc_rows"

SCHEMA = """
DROP TABLE IF EXISTS qr_acct, qr_serial, qr_trig, qr_big;
CREATE TABLE qr_acct (id int PRIMARY KEY, v int NOT NULL, email text UNIQUE);
INSERT INTO qr_acct SELECT g, 0, 'u' || g FROM generate_series(1, 60) g;
INSERT INTO qr_acct VALUES (-4, 0, 'neg');
CREATE TABLE qr_serial (id serial PRIMARY KEY, v int);
CREATE TABLE qr_big (id bigint PRIMARY KEY, v int NOT NULL);
INSERT INTO qr_big SELECT g, 0 FROM generate_series(1, 10) g;
CREATE TABLE qr_trig (id int PRIMARY KEY, v int);
INSERT INTO qr_trig VALUES (1, 0);
CREATE OR REPLACE FUNCTION qr_bump() RETURNS trigger LANGUAGE plpgsql
  AS $$ BEGIN UPDATE qr_acct SET v = v + 100 WHERE id = 59; RETURN NEW; END $$;
CREATE TRIGGER qr_trig_bump AFTER UPDATE ON qr_trig FOR EACH ROW EXECUTE FUNCTION qr_bump();
"""


@pytest.fixture(scope="module")
def rows_db(postgres):
    postgres.create_database(DB, SCHEMA)
    yield DB
    postgres.drop_database(DB)


def run(port, sqls):
    with WireConn("127.0.0.1", port) as w:
        w.startup("app", DB)
        out = [w.simple_query(sql) for sql in sqls]
    for sql, r in zip(sqls, out):
        assert not r["errors"], (sql, r["errors"])
    return out


def value(port, sql):
    return run(port, [sql])[0]["rows"]


def cacheable_now(proxy):
    """pgfold knows the relations (and their primary keys): a read is looked up."""
    before = cache_stats(proxy)
    run(proxy.port, [f"SELECT /* probe {marker()} */ v FROM qr_big WHERE id = 1"])
    return cache_stats(proxy)["lookups"] > before["lookups"]


def start(factory, name, **sets):
    proxy = factory(sets={"cache.mode": "auto", "cache.timeout_ms": "500", **sets}, name=name)
    run(proxy.port, ["SELECT 1"])
    wait_until(lambda: cacheable_now(proxy), 20, f"{name}: reads cacheable")
    return proxy


@pytest.fixture(scope="module")
def proxies(rows_db, module_pgfold_factory):
    return (start(module_pgfold_factory, "pgfold-rows-a"),
            start(module_pgfold_factory, "pgfold-rows-b", **{"nplusone.mode": "rewrite"}))


def hits(proxy):
    return cache_stats(proxy)["hits"]


def warm(proxy, sql):
    """Read sql until it is a cache hit; its rows."""
    value(proxy.port, sql)

    def hit():
        before = hits(proxy)
        got = value(proxy.port, sql)
        return hits(proxy) == before + 1 and [got]
    return wait_until(hit, 10, f"a hit on {proxy.name}", interval=0.05)[0]


def still_hits(proxy, sql, want):
    before = hits(proxy)
    assert value(proxy.port, sql) == want
    return hits(proxy) == before + 1


def read_sql(m, table, key):
    return f"SELECT /* {m} */ id, v FROM {table} WHERE id = {key}"


# --------------------------------------------------------------------------


@pytest.mark.parametrize("literal", ["3", "'3'", "003", "3::int"])
def test_pinned_update_invalidates_its_row_only(literal, proxies):
    a, b = proxies
    m = marker()
    mine, other = read_sql(m, "qr_acct", 3), read_sql(m, "qr_acct", 4)
    total = f"SELECT /* {m} */ sum(v), count(*) FROM qr_acct"
    before = warm(b, mine)
    other_rows = warm(b, other)
    old_total = warm(b, total)
    run(a.port, [f"UPDATE qr_acct SET v = v + 1 WHERE id = {literal}"])
    assert value(b.port, mine) == [[before[0][0], str(int(before[0][1]) + 1)]]
    assert value(b.port, total) == [[str(int(old_total[0][0]) + 1), old_total[0][1]]], "the aggregate went stale"
    assert still_hits(b, other, other_rows), "a write pinned to id 3 invalidated id 4"


def test_negative_key_and_bigint(proxies):
    a, b = proxies
    m = marker()
    neg, big, big_other = read_sql(m, "qr_acct", -4), read_sql(m, "qr_big", 7), read_sql(m, "qr_big", 8)
    warm(b, neg)
    want_other = warm(b, big_other)
    warm(b, big)
    run(a.port, ["UPDATE qr_acct SET v = 42 WHERE id = - 4", "UPDATE qr_big SET v = 43 WHERE id = 7::bigint"])
    assert value(b.port, neg) == [["-4", "42"]]
    assert value(b.port, big) == [["7", "43"]]
    assert still_hits(b, big_other, want_other)


def test_delete_and_insert_pinned(proxies):
    a, b = proxies
    m = marker()
    gone, absent, kept = read_sql(m, "qr_acct", 10), read_sql(m, "qr_acct", 1000), read_sql(m, "qr_acct", 11)
    assert warm(b, gone) == [["10", "0"]]
    assert warm(b, absent) == []  # an empty answer is cached too
    want_kept = warm(b, kept)
    run(a.port, ["DELETE FROM qr_acct WHERE id = 10", "INSERT INTO qr_acct (id, v) VALUES (1000, 5), (1001, 6)"])
    assert value(b.port, gone) == []
    assert value(b.port, absent) == [["1000", "5"]]
    assert still_hits(b, kept, want_kept)


def test_assigning_the_key_invalidates_the_table(proxies):
    a, b = proxies
    m = marker()
    moved_to = read_sql(m, "qr_acct", 2000)
    assert warm(b, moved_to) == []
    run(a.port, ["UPDATE qr_acct SET id = 2000 WHERE id = 12"])
    assert value(b.port, moved_to) == [["2000", "0"]], "a row moved to a cached key went unseen"


def test_upsert_invalidates_the_table(proxies):
    """ON CONFLICT may update a row whose key is not the one given (a
    conflict on another unique column)."""
    a, b = proxies
    m = marker()
    victim = read_sql(m, "qr_acct", 13)
    assert warm(b, victim) == [["13", "0"]]
    run(a.port, ["INSERT INTO qr_acct (id, v, email) VALUES (3000, 1, 'u13') "
                 "ON CONFLICT (email) DO UPDATE SET v = 77"])
    assert value(b.port, victim) == [["13", "77"]]


def test_insert_without_key_invalidates_the_table(proxies):
    a, b = proxies
    m = marker()
    first = f"SELECT /* {m} */ v FROM qr_serial WHERE id = 1"
    assert warm(b, first) == []
    run(a.port, ["INSERT INTO qr_serial (v) VALUES (9)"])
    assert value(b.port, first) == [["9"]]


def test_trigger_table_invalidates_the_database(proxies):
    a, b = proxies
    m = marker()
    touched = read_sql(m, "qr_acct", 59)
    before = warm(b, touched)
    run(a.port, ["UPDATE qr_trig SET v = v + 1 WHERE id = 1"])
    assert value(b.port, touched) == [["59", str(int(before[0][1]) + 100)]]


def test_extended_protocol_pinned(proxies):
    """psycopg 3: prepared statements, binary parameters; writes through A,
    reads through B."""
    a, b = proxies
    m = marker()
    read = f"SELECT /* {m} */ v FROM qr_acct WHERE id = %s"
    with psycopg.connect(host="127.0.0.1", port=b.port, user="app", dbname=DB, autocommit=True) as rb, \
            psycopg.connect(host="127.0.0.1", port=a.port, user="app", dbname=DB, autocommit=True) as wa:
        def get(key):
            return rb.execute(read, (key,), prepare=True, binary=True).fetchall()

        def warm_ext(key):
            get(key)

            def hit():
                before = hits(b)
                got = get(key)
                return hits(b) == before + 1 and [got]
            return wait_until(hit, 10, "an extended hit", interval=0.05)[0]

        base = warm_ext(20)
        other = warm_ext(21)
        wa.execute("UPDATE qr_acct SET v = v + %s WHERE id = %s", (5, 20), binary=True)
        assert get(20) == [(base[0][0] + 5,)]
        before = hits(b)
        assert get(21) == other
        assert hits(b) == before + 1, "a write pinned to id 20 invalidated id 21"
        wa.execute("DELETE FROM qr_acct WHERE id = %s", ("21",))  # a text parameter
        assert get(21) == []


def test_nplusone_children_pinned_fill_per_key(postgres, proxies):
    """Children `WHERE id = <parent key>` on the primary key: the batch stores
    one entry per key (each with its own row version); the next run hits
    every child; after a write to one key its child sees the new row."""
    _, b = proxies
    m = marker()
    parent = f"SELECT /* {m} */ id FROM qr_acct WHERE id BETWEEN 30 AND 49 ORDER BY id"
    kids = [f"SELECT /* {m} */ id, v, email FROM qr_acct WHERE id = {k}" for k in range(30, 50)]
    want = run(postgres.port, [parent] + kids)
    before = cache_stats(b)
    assert run(b.port, [parent] + kids) == want
    mid = cache_stats(b)
    assert mid["fills"] > before["fills"], "no batch filled the cache"
    wait_until(lambda: cache_stats(b)["stores"] - before["stores"] >= mid["fills"] - before["fills"], 10,
               "every group stored")
    h = hits(b)
    assert run(b.port, [parent] + kids) == want
    assert hits(b) - h == len(kids) + 1
    run(b.port, ["UPDATE qr_acct SET v = 99 WHERE id = 34"])
    want[1 + 4]["rows"] = [["34", "99", "u34"]]
    assert run(b.port, [parent] + kids) == want
