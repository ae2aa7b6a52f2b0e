"""Result cache (cache.mode = auto): extended-protocol statements sent as one
group [Parse ""] Bind [Describe portal] Execute Sync, N+1 batches filling
the cache, and cold shapes skipping the lookup.

- raw wire: workloads of groups recorded direct, through pgfold cold and
  through pgfold warm are byte-for-byte identical (typed and untyped
  parameters, binary parameters, binary and per-column result formats, no
  Describe, a named statement, a row limit above and at the result's size,
  the unnamed statement used again after hits deferred its Parse), and the
  warm run does not reach PostgreSQL (pg_stat_statements);
- psycopg 3 (server-side binding, autocommit and in a block) and
  node-postgres (unnamed and named statements): a second run gives the same
  results and reaches PostgreSQL zero times (but for node-postgres's first
  use of a named statement, whose Parse comes in the same group);
- a Bind of the unnamed statement without a Parse, after hits deferred
  their Parse, reaches PostgreSQL behind that Parse;
- N+1 batches (nplusone.mode = rewrite) fill the cache per key, simple
  Query and extended children: the second run is all hits and reaches
  PostgreSQL zero times, byte-identical to PostgreSQL's own answers;
- miss cost: a shape of unique keys turns cold and mostly skips the lookup
  (counters), warms up again once its keys repeat; a shape whose keys
  repeat never turns cold.
No timing assertions.
"""

import json
import shutil
import subprocess
from pathlib import Path

import psycopg
import pytest

from pgharness import wait_until
from test_cache import (DB, backend_calls, cache_stats, fresh, ready, shop, start_cache)  # noqa: F401
from wire import (WireConn, bind, describe_portal, describe_unnamed, execute, ext_group as group, parse, query,
                  record_groups, sync)

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
INT4, TEXT = 23, 25


@pytest.fixture(scope="module")
def proxy(shop, module_pgfold_factory):
    return start_cache(module_pgfold_factory, "pgfold-cache-ext", **{"nplusone.mode": "off", "cache.timeout_ms": "500"})







def record(port, script):
    return record_groups(port, "app", DB, script)


def workloads(m):
    by_id = f"SELECT /* {m} */ id, name, price, tags FROM qc_items WHERE id = $1"
    by_name = f"SELECT /* {m} */ id FROM qc_items WHERE name = $1 OR $2::int IS NULL"
    tags = f"SELECT /* {m} */ i.id, t.tag FROM qc_items i JOIN qc_tags t ON t.item_id = i.id WHERE i.id < $1 ORDER BY 1"
    return {
        "typed": [group(by_id, [k], (INT4,)) for k in (1, 2, 3, 2, 9999)],
        "untyped": [group(by_id, [k]) for k in (4, 5, 4)] + [group(by_name, ["item 3", None]),
                                                            group(by_name, ["item 3", 1])],
        "binary_params": [group(by_id, [k], (INT4,), binary_params=True) for k in (6, 7)],
        "binary_results": [group(by_id, [k], (INT4,), result_formats=(1,)) for k in (8, 9)]
                          + [group(by_id, [8], (INT4,), result_formats=(1, 0, 0, 1))],
        "no_describe": [group(by_id, [k], (INT4,), describe=False) for k in (10, 11, 10)],
        "named": [parse(by_id, "st", (INT4,)) + sync()] + [group(by_id, [k], name="st") for k in (12, 13)]
                 + [group(by_id, [k], name="st", describe=False) for k in (12, 14)],
        "max_rows": [group(tags, [k], (INT4,), max_rows=100) for k in (4, 6)]
                    + [group(tags, [k], (INT4,), max_rows=3) for k in (4, 6)],
        # hits defer their Parse: the unnamed statement used again must be the last one parsed
        "unnamed_again": [group(by_id, [15], (INT4,)), group(tags, [5], (INT4,)), group(by_id, [16], (INT4,)),
                          bind([17]) + describe_portal() + execute() + sync(),
                          bind([15]) + execute() + sync(), describe_unnamed(),
                          group(tags, [5], (INT4,)), query(f"SELECT /* {m} */ 1"), group(by_id, [15], (INT4,)),
                          bind([15]) + execute() + sync()],
        "in_a_block": [query("BEGIN")] + [group(by_id, [k], (INT4,)) for k in (18, 19)] + [query("COMMIT")],
    }


@pytest.mark.parametrize("name", ["typed", "untyped", "binary_params", "binary_results", "no_describe", "named",
                                  "max_rows", "unnamed_again", "in_a_block"])
def test_extended_cold_then_warm_identical(name, postgres, proxy):
    ready(proxy)
    m = fresh(postgres)
    script = workloads(m)[name]
    direct = record(postgres.port, script)
    before = cache_stats(proxy)
    cold = record(proxy.port, script)
    for i in range(len(script)):
        assert cold[i] == direct[i], f"{name}: cold answer to group {i} differs"
    wait_stored(proxy, before)
    calls = backend_calls(postgres, m)
    mid = cache_stats(proxy)
    warm = record(proxy.port, script)
    after = cache_stats(proxy)
    for i in range(len(script)):
        assert warm[i] == direct[i], f"{name}: warm answer to group {i} differs"
    assert after["hits"] > mid["hits"], f"{name}: no hits in the warm run"
    if name not in ("max_rows", "unnamed_again"):  # a row limit reached, Binds without a group: relayed
        assert backend_calls(postgres, m) == calls, f"{name}: the warm run reached PostgreSQL"


def test_max_rows_reached_is_forwarded(postgres, proxy):
    """An Execute whose row limit the stored result reaches gets a
    PortalSuspended from PostgreSQL, never a cached CommandComplete."""
    ready(proxy)
    m = fresh(postgres)
    tags = f"SELECT /* {m} */ i.id FROM qc_items i WHERE i.id < $1 ORDER BY 1"
    record(proxy.port, [group(tags, [6], (INT4,))])  # stores 5 rows
    wait_until(lambda: backend_calls(postgres, m) == 1, 10, "stored")
    before = cache_stats(proxy)
    got = record(proxy.port, [group(tags, [6], (INT4,), max_rows=5), group(tags, [6], (INT4,), max_rows=6)])
    assert [t for t, _ in got[0]][-2:] == [b"s", b"Z"]
    assert [t for t, _ in got[1]][-2:] == [b"C", b"Z"]
    after = cache_stats(proxy)
    assert after["bypasses"]["max_rows"] == before["bypasses"]["max_rows"] + 1
    assert after["hits"] == before["hits"] + 1


def wait_stored(proxy, before):
    """Every miss since `before` stored (or failed to)."""
    def done():
        st = cache_stats(proxy)
        def settled(x):
            return x["stores"] + x["store_errors"] + x["bypasses"]["not_stored"] + x["bypasses"]["too_large"]
        return settled(st) - settled(before) >= st["misses"] - before["misses"]
    wait_until(done, 10, "entries stored")


def psycopg3_reads(port, autocommit, m):
    out = []
    with psycopg.connect(f"host=127.0.0.1 port={port} user=app dbname={DB}", autocommit=autocommit) as conn:
        for k in range(1, 13):  # past prepare_threshold: named statements too
            row = conn.execute(f"SELECT /* {m} */ id, name, price FROM qc_items WHERE id = %s", (k,)).fetchone()
            tags = conn.execute(f"SELECT /* {m} */ tag FROM qc_tags WHERE item_id = %s AND tag <> %s",
                                (k, "none")).fetchall()
            binary = conn.cursor(binary=True).execute(f"SELECT /* {m} */ id, tags FROM qc_items WHERE id = %s",
                                                      (k,)).fetchone()
            out.append((row, tags, binary))
    return out


@pytest.mark.parametrize("autocommit", [True, False])
def test_psycopg3_warm_run_reaches_postgres_zero_times(autocommit, postgres, proxy):
    ready(proxy)
    m = fresh(postgres)
    want = psycopg3_reads(postgres.port, autocommit, m)
    before = cache_stats(proxy)
    assert psycopg3_reads(proxy.port, autocommit, m) == want
    wait_stored(proxy, before)
    calls = backend_calls(postgres, m)
    mid = cache_stats(proxy)
    assert psycopg3_reads(proxy.port, autocommit, m) == want
    after = cache_stats(proxy)
    assert after["hits"] - mid["hits"] == 3 * 12
    assert backend_calls(postgres, m) == calls, "the warm run reached PostgreSQL"


NODE_SCRIPT = r"""
const { Client } = require('pg');
(async () => {
  const c = new Client();
  await c.connect();
  const m = process.env.MARK;
  const out = [];
  for (let k = 1; k <= 10; k++) {
    const r = await c.query(`SELECT /* ${m} */ id, name, price FROM qc_items WHERE id = $1`, [k]);
    const named = await c.query({name: 'tags_of', text: `SELECT /* ${m} */ count(*) AS n FROM qc_tags WHERE item_id = $1`,
                                 values: [k]});
    out.push([r.rows, r.fields.map(f => [f.name, f.dataTypeID]), named.rows[0].n]);
  }
  await c.end();
  console.log(JSON.stringify(out));
})().catch(e => { console.error(e); process.exit(1); });
"""


def node_reads(port, m):
    exe = shutil.which("node")
    assert exe, "node is not installed (scripts/install-deps.sh installs it)"
    env = dict(PGHOST="127.0.0.1", PGPORT=str(port), PGUSER="app", PGDATABASE=DB, MARK=m,
               PATH="/usr/bin:/bin", HOME="/tmp")
    proc = subprocess.run([exe, "-e", NODE_SCRIPT], env=env, cwd=NODE_DIR, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_node_pg_warm_run_reaches_postgres_zero_times(postgres, proxy):
    ready(proxy)
    m = fresh(postgres)
    want = node_reads(postgres.port, m)
    before = cache_stats(proxy)
    assert node_reads(proxy.port, m) == want
    wait_stored(proxy, before)
    calls = backend_calls(postgres, m)
    mid = cache_stats(proxy)
    assert node_reads(proxy.port, m) == want
    # a named statement's first use sends Parse "tags_of" in the same Sync
    # group: not a group pgfold answers (its Parse must reach PostgreSQL)
    assert cache_stats(proxy)["hits"] - mid["hits"] == 2 * 10 - 1
    assert backend_calls(postgres, m) == calls + 1, "the warm run reached PostgreSQL"


# --------------------------------------------------------------------------
# N+1 batches fill the cache per key


@pytest.fixture(scope="module")
def rewrite_proxy(shop, module_pgfold_factory):
    return start_cache(module_pgfold_factory, "pgfold-cache-np", **{"nplusone.mode": "rewrite", "cache.timeout_ms": "500"})


def lazy_script(m, extended, binary=False):
    parent = query(f"SELECT /* {m} */ id FROM qc_items WHERE id <= 30 ORDER BY id")
    child = f"SELECT /* {m} */ item_id, tag FROM qc_tags WHERE item_id = "
    if extended:
        kids = [group(child + "$1", [k], (INT4,), binary_params=binary) for k in range(1, 31)]
    else:
        kids = [query(child + str(k)) for k in range(1, 31)]
    return [parent] + kids


@pytest.mark.parametrize("extended,binary", [(False, False), (True, False), (True, True)])
def test_nplusone_batches_fill_the_cache(extended, binary, postgres, rewrite_proxy):
    """Simple Query children, extended ones with the key as text, and with
    the key as a binary int4 (asyncpg, PgJDBC)."""
    ready(rewrite_proxy)
    m = fresh(postgres)
    script = lazy_script(m, extended, binary)
    want = record(postgres.port, script)
    before = cache_stats(rewrite_proxy)
    seen = rewrite_proxy.stats()["nplusone"]["children_seen"]
    first = record(rewrite_proxy.port, script)
    assert first == want
    # the child the cache looked up first, missed and gave back is counted once
    assert rewrite_proxy.stats()["nplusone"]["children_seen"] - seen == len(script) - 1
    mid = cache_stats(rewrite_proxy)
    assert mid["fills"] > before["fills"], "no batch filled the cache"
    wait_until(lambda: cache_stats(rewrite_proxy)["stores"] - before["stores"] >= mid["fills"] - before["fills"],
               10, "batch groups stored")
    postgres.query("SELECT pg_stat_statements_reset()", dbname=DB)
    hits = cache_stats(rewrite_proxy)["hits"]
    second = record(rewrite_proxy.port, script)
    assert second == want
    assert cache_stats(rewrite_proxy)["hits"] - hits == len(script)
    assert backend_calls(postgres, m) == 0, "the second run reached PostgreSQL"


# --------------------------------------------------------------------------
# miss cost: cold shapes skip the lookup


def run_queries(port, sqls):
    with WireConn("127.0.0.1", port) as w:
        w.startup("app", DB)
        for sql in sqls:
            r = w.simple_query(sql)
            assert not r["errors"], r["errors"]


def test_unique_keys_skip_the_lookup_and_repeated_keys_still_hit(postgres, proxy):
    ready(proxy)
    unique = [f"SELECT id, price, name FROM qc_items WHERE id = {k} AND price > -1" for k in range(1, 401)]
    before = cache_stats(proxy)
    run_queries(proxy.port, unique)
    mid = cache_stats(proxy)
    looked = mid["lookups"] - before["lookups"]
    skipped = mid["bypasses"]["cold_shape"] - before["bypasses"]["cold_shape"]
    assert looked + skipped == len(unique), (looked, skipped)
    assert looked <= 32 + len(unique) // 16 + 2, f"{looked} lookups for {len(unique)} unique keys"
    assert mid["hits"] == before["hits"]
    # one in eight skipped ones is stored all the same: the shape warms up once its keys repeat
    wait_until(lambda: cache_stats(proxy)["stores"] - before["stores"] >= looked + skipped // 8 - 5, 10, "stored")
    run_queries(proxy.port, unique[:4] * 50)
    after = cache_stats(proxy)
    # four probes that hit (one in 16) make the window warm: every execution after hits
    assert after["hits"] - mid["hits"] >= 200 - 4 * 16 - 8, after["hits"] - mid["hits"]
    # a shape whose keys repeat from the start never goes cold
    repeated = [f"SELECT name, tags FROM qc_items WHERE id = {k % 5 + 1} AND id > -1" for k in range(200)]
    run_queries(proxy.port, repeated)
    final = cache_stats(proxy)
    assert final["hits"] - after["hits"] >= 190
    assert final["bypasses"]["cold_shape"] == after["bypasses"]["cold_shape"]


def test_bind_without_parse_after_hits_that_deferred_their_parse(postgres, proxy):
    """Hits leave their Parse deferred; a later Bind of the unnamed statement
    that misses must reach PostgreSQL behind that Parse."""
    ready(proxy)
    m = fresh(postgres)
    by_id = f"SELECT /* {m} */ id, name FROM qc_items WHERE id = $1"
    tags = f"SELECT /* {m} */ tag FROM qc_tags WHERE item_id = $1"
    warmup = [group(by_id, [21], (INT4,)), group(tags, [21], (INT4,))]
    before = cache_stats(proxy)
    record(proxy.port, warmup)
    wait_stored(proxy, before)
    script = warmup + [bind([22]) + describe_portal() + execute() + sync(),  # a miss, no Parse
                       bind([23]) + execute() + sync(), describe_unnamed()]
    want = record(postgres.port, script)
    hits = cache_stats(proxy)["hits"]
    got = record(proxy.port, script)
    assert cache_stats(proxy)["hits"] - hits == 2
    for i in range(len(script)):
        assert got[i] == want[i], f"answer to group {i} differs"


def test_psycopg3_pipeline_writes_then_reads_see_the_writes(postgres, proxy):
    """psycopg 3 pipeline mode, autocommit: cached reads of rows, then one
    pipeline of UPDATE ... RETURNING and a read of the same row, again and
    again, with a sync after each pair.  Each read answers the value its
    UPDATE returned (never a cached older one) and every answer comes back in
    order, though each write's ReadyForQuery waits for its invalidation with
    the next statements' answers queued behind it."""
    ready(proxy)
    m = fresh(postgres)
    read = f"SELECT /* {m} */ price FROM qc_items WHERE id = %s"
    ids = [3, 4, 5]
    with psycopg.connect(host="127.0.0.1", port=proxy.port, user="app", dbname=DB, autocommit=True) as conn:
        for _ in range(3):  # cached (and near) before the writes
            for k in ids:
                conn.execute(read, (k,)).fetchone()
        with conn.pipeline() as p:
            cursors = []
            for i in range(30):
                k = ids[i % len(ids)]
                cursors.append((conn.execute("UPDATE qc_items SET price = price + 1 WHERE id = %s RETURNING price",
                                             (k,)), conn.execute(read, (k,))))
                if i % 2:
                    p.sync()
        for i, (wrote, got) in enumerate(cursors):
            assert got.fetchone() == wrote.fetchone(), f"pair {i}"
        direct = psycopg.connect(host="127.0.0.1", port=postgres.port, user="app", dbname=DB, autocommit=True)
        with direct:
            for k in ids:
                assert conn.execute(read, (k,)).fetchone() == direct.execute(read, (k,)).fetchone()
