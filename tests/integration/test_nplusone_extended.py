"""N+1 batching of children sent with the extended protocol.

The differential harness of test_nplusone_rewrite.py over raw extended
groups ([Parse] Bind [Describe] Execute Sync), as libpq, psycopg 3,
node-postgres and JDBC send them: typed and untyped parameters, a named
prepared statement, a transaction block, a second parameter that differs
between children, no Describe, binary results (never batched), a Parse that
fails.  Every message the client receives must be byte-for-byte the same
through nplusone.mode = off and = rewrite.  Then the real drivers: psycopg 3
with server-side binding and node-postgres, whose results must be the same
while pg_stat_statements shows the children folded.
"""

import json
import shutil
import subprocess
from pathlib import Path

import psycopg
import pytest

from test_nplusone_rewrite import SCHEMA, N_USERS
from wire import (bind, describe_portal, describe_unnamed, execute, ext_group as group, parse, query,
                  record_groups, sync)

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
DB = "rw_ext"
INT4, TEXT = 23, 25
USER_IDS = list(range(1, N_USERS + 1))
PARENT = "SELECT id, name FROM rw_users ORDER BY id"
POSTS = "SELECT id, user_id, title, score FROM rw_posts WHERE rw_posts.user_id = $1"


@pytest.fixture(scope="module")
def blog(postgres):
    postgres.create_database(DB, SCHEMA)
    yield DB
    postgres.drop_database(DB)


@pytest.fixture(scope="module")
def proxies(blog, module_pgfold_factory):
    off = module_pgfold_factory(sets={"nplusone.mode": "off"}, name="pgfold-ext-off")
    rewrite = module_pgfold_factory(sets={"nplusone.mode": "rewrite"}, name="pgfold-ext-rewrite")
    return off, rewrite



def record(port, script):
    return record_groups(port, "app", DB, script)


def children(sql, types=(), keys=USER_IDS, **kw):
    return [group(sql, [k], types, **kw) for k in keys]


FIRST = "SELECT title FROM rw_posts WHERE user_id = $1 ORDER BY id LIMIT 1"


def interleaved(keys, types=()):
    """Two patterns per parent row, as ORMs load two relations lazily: each
    child's Parse differs from the one before."""
    return [g for k in keys for g in (group(POSTS, [k], types), group(FIRST, [k], types))]




WORKLOADS = {
    "typed_int4": [query(PARENT)] + children(POSTS, (INT4,)),
    "untyped": [query(PARENT)] + children(POSTS),
    "extended_parent": [group(PARENT, [])] + children(POSTS, (INT4,)),
    "no_describe": [query(PARENT)] + children(POSTS, (INT4,), describe=False),
    "named_statement": [query(PARENT), parse(POSTS, "kids", (INT4,)) + sync()]
                       + children(POSTS, name="kids"),
    "named_untyped": [query(PARENT), parse(POSTS, "kids2") + sync()] + children(POSTS, name="kids2"),
    "in_a_block": [query("BEGIN"), query(PARENT)] + children(POSTS, (INT4,)) + [query("COMMIT")],
    "untyped_in_a_block": [query("BEGIN"), query(PARENT)] + children(POSTS) + [query("COMMIT")],
    "first_post_limit": [query(PARENT)] + children(
        "SELECT id, title FROM rw_posts WHERE user_id = $1 ORDER BY id DESC LIMIT 1", (INT4,)),
    "second_param_differs": [query(PARENT)] + [
        group("SELECT id, title FROM rw_posts WHERE user_id = $1 AND title <> $2 ORDER BY id",
              [k, "post 0 of %d" % k if k % 2 else "post 1 of 1"], (INT4, TEXT)) for k in USER_IDS],
    "binary_results": [query(PARENT)] + children(POSTS, (INT4,), result_formats=(1,)),
    "binary_results_per_column": [query(PARENT)] + children(POSTS, (INT4,), result_formats=(1, 0, 0, 1)),
    "binary_results_in_a_block": [query("BEGIN"), query(PARENT)]
                                 + children(FIRST, (INT4,), result_formats=(1,)) + [query("COMMIT")],
    "binary_results_change": [query(PARENT)] + children(POSTS, (INT4,), keys=USER_IDS[:5], result_formats=(1,))
                             + children(POSTS, (INT4,), keys=USER_IDS[5:]),
    "binary_batch_would_fail": [query("BEGIN"), query(PARENT)] + children(
        "SELECT rw_users.id, 100 / rw_users.divisor AS q FROM rw_users WHERE rw_users.id = $1", (INT4,),
        keys=USER_IDS[:12], result_formats=(1,)) + [query("SELECT 1"), query("COMMIT")],
    "write_between": [query(PARENT)] + children(POSTS, (INT4,), keys=USER_IDS[:5])
                     + [query("UPDATE rw_posts SET title = title WHERE id = 70")]
                     + children(POSTS, (INT4,), keys=USER_IDS[5:]),
    "interleaved_untyped": [query(PARENT)] + interleaved(USER_IDS),
    # a row limit (asyncpg's fetchrow/fetchval: 1): PortalSuspended when rows remain
    "max_rows_one": [query(PARENT)] + children(POSTS, (INT4,), max_rows=1),
    "max_rows_two_in_a_block": [query("BEGIN"), query(PARENT)] + children(POSTS, (INT4,), max_rows=2)
                               + [query("COMMIT")],
    "max_rows_above_the_rows": [query(PARENT)] + children(POSTS, (INT4,), max_rows=100),
    "interleaved_typed_in_a_block": [query("BEGIN"), query(PARENT)] + interleaved(USER_IDS, (INT4,))
                                    + [query("COMMIT")],
    # answered children deferred their Parse: using the unnamed statement must see the last one
    "deferred_parse_then_describe": [query(PARENT)] + interleaved(USER_IDS[:8]) + [describe_unnamed()]
                                    + interleaved(USER_IDS[8:12]),
    "deferred_parse_then_bind": [query(PARENT)] + interleaved(USER_IDS[:8])
                                + [bind([3]) + describe_portal() + execute() + sync()]
                                + [bind([30]) + execute() + sync(), describe_unnamed()],
    "deferred_parse_then_query": [query(PARENT)] + interleaved(USER_IDS[:8]) + [query("SELECT 1")]
                                 + [bind([3]) + execute() + sync()],
    # the unnamed statement is bound again without a Parse after batches ran
    "rebind_unnamed": [query(PARENT)] + children(POSTS, (INT4,), keys=USER_IDS[:6])
                      + [bind([7]) + describe_portal() + execute() + sync()]
                      + children(POSTS, (INT4,), keys=USER_IDS[7:]),
}


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_extended_rewrite_is_byte_identical(name, proxies, blog):
    off, rewrite = proxies
    script = WORKLOADS[name]
    want = record(off.port, script)
    got = record(rewrite.port, script)
    again = record(rewrite.port, script)  # known pattern: batched from the first child
    for i in range(len(script)):
        assert got[i] == want[i], f"{name}: answer to message group {i} differs"
        assert again[i] == want[i], f"{name} (second run): answer to message group {i} differs"


def calls(postgres, like):
    (n,), = postgres.query("SELECT coalesce(sum(calls), 0)::int FROM pg_stat_statements s "
                           "JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = %s AND s.query LIKE %s",
                           (DB, like), dbname=DB)
    return n


def reset(postgres):
    postgres.query("SELECT pg_stat_statements_reset()", dbname=DB)


def driver_runs(run, proxies, postgres):
    """run(port) through rewrite (to learn), through off, then through rewrite
    with pg_stat_statements reset before it: (want, got)."""
    off, rewrite = proxies
    run(rewrite.port)
    want = run(off.port)
    reset(postgres)
    return want, run(rewrite.port)


@pytest.mark.parametrize("name,most", [("typed_int4", 1), ("untyped", 2), ("named_untyped", 2), ("in_a_block", 1),
                                       ("interleaved_untyped", 4), ("deferred_parse_then_bind", 5),
                                       ("binary_results", 1), ("binary_results_per_column", 1),
                                       ("binary_results_in_a_block", 1), ("max_rows_one", 1),
                                       ("max_rows_above_the_rows", 1)])
def test_extended_children_fold(name, most, proxies, blog, postgres):
    """Once the pattern is known, one batched statement per pattern (the
    parent has 25 rows, under batch_size); with untyped parameters the first
    child of each session goes unbatched behind the Describe that learns
    their types.  (deferred_parse_then_bind: one more child, key 30, is no
    parent value.)"""
    _, rewrite = proxies
    record(rewrite.port, WORKLOADS[name])  # learn
    reset(postgres)
    record(rewrite.port, WORKLOADS[name])
    n = calls(postgres, "%FROM rw_posts%")
    assert n <= most, f"{n} statements on rw_posts instead of {most}"


def psycopg3_lazy(port, autocommit):
    out = []
    with psycopg.connect(f"host=127.0.0.1 port={port} user=app dbname={DB}", autocommit=autocommit) as conn:
        users = conn.execute("SELECT id, name FROM rw_users ORDER BY id").fetchall()
        for uid, _ in users:
            rows = conn.execute("SELECT id, title, score FROM rw_posts WHERE user_id = %s", (uid,)).fetchall()
            first = conn.execute("SELECT title FROM rw_posts WHERE user_id = %s ORDER BY id LIMIT 1",
                                 (uid,)).fetchone()
            name = conn.execute("SELECT name FROM rw_users WHERE name = %s", ("user %d" % uid,)).fetchone()
            out.append((uid, sorted(rows), first, name))
    return out


@pytest.mark.parametrize("autocommit", [True, False])
def test_psycopg3_server_side_binding(autocommit, proxies, blog, postgres):
    want, got = driver_runs(lambda port: psycopg3_lazy(port, autocommit), proxies, postgres)
    assert got == want
    assert len(want) == N_USERS and sum(len(r[1]) for r in want) > N_USERS
    n = calls(postgres, "%FROM rw_posts WHERE user_id%")
    seen = postgres.query("SELECT calls, query FROM pg_stat_statements WHERE query LIKE '%rw_posts%'", dbname=DB)
    assert n <= 6, f"{n} statements for {2 * N_USERS} psycopg 3 children: {seen}"


NODE_SCRIPT = r"""
const { Client } = require('pg');
(async () => {
  const c = new Client();
  await c.connect();
  const users = (await c.query('SELECT id, name FROM rw_users ORDER BY id')).rows;
  const out = [];
  for (const u of users) {
    const posts = await c.query('SELECT id, title, score FROM rw_posts WHERE user_id = $1 ORDER BY id', [u.id]);
    const named = await c.query({name: 'count_posts',
                                 text: 'SELECT count(*) AS n FROM rw_posts WHERE user_id = $1', values: [u.id]});
    out.push([u.id, posts.rows, posts.fields.map(f => [f.name, f.dataTypeID]), named.rows[0].n]);
  }
  await c.end();
  console.log(JSON.stringify(out));
})().catch(e => { console.error(e); process.exit(1); });
"""


def node_lazy(port, postgres):
    exe = shutil.which("node")
    assert exe, "node is not installed (scripts/install-deps.sh installs it)"
    env = dict(PGHOST="127.0.0.1", PGPORT=str(port), PGUSER="app", PGDATABASE=DB,
               PATH="/usr/bin:/bin", HOME="/tmp")
    proc = subprocess.run([exe, "-e", NODE_SCRIPT], env=env, cwd=NODE_DIR, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_node_pg_lazy_loading(proxies, blog, postgres):
    want, got = driver_runs(lambda port: node_lazy(port, postgres), proxies, postgres)
    assert got == want
    assert len(want) == N_USERS
    n = calls(postgres, "%FROM rw_posts WHERE user_id%")
    assert n <= 6, f"{n} statements for {2 * N_USERS} node-postgres children"


JAR = Path("/usr/share/java/postgresql.jar")
JAVA_DIR = Path(__file__).resolve().parents[1] / "java"


@pytest.fixture(scope="module")
def jdbc_lazy(tmp_path_factory):
    javac = shutil.which("javac")
    assert javac and JAR.exists(), "javac or /usr/share/java/postgresql.jar missing (scripts/install-deps.sh)"
    out = tmp_path_factory.mktemp("jdbc-lazy")
    proc = subprocess.run([javac, "-cp", str(JAR), "-d", str(out), str(JAVA_DIR / "JdbcLazy.java")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return out


def jdbc_run(classes, port):
    proc = subprocess.run(["java", "-cp", f"{JAR}:{classes}", "JdbcLazy", "127.0.0.1", str(port), DB],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.splitlines()


@pytest.mark.timeout(300)
def test_jdbc_lazy_loading(jdbc_lazy, proxies, blog, postgres):
    """PgJDBC: unnamed statements, then named ones with binary results after
    prepareThreshold; a new PreparedStatement per child for the count."""
    want, got = driver_runs(lambda port: jdbc_run(jdbc_lazy, port), proxies, postgres)
    assert got == want
    assert len(want) == N_USERS and "post=" in want[0]
    n = calls(postgres, "%FROM rw_posts WHERE%user_id = $1%")
    seen = postgres.query("SELECT calls, left(query, 90) FROM pg_stat_statements WHERE query LIKE '%rw_posts%'", dbname=DB)
    assert n <= 6, f"{n} statements for {2 * N_USERS} JDBC children: {seen}"


def asyncpg_lazy(port):
    """asyncpg: named statements prepared with a Describe, binary parameters
    and results."""
    import asyncio

    import asyncpg

    async def run():
        conn = await asyncpg.connect(host="127.0.0.1", port=port, user="app", database=DB)
        try:
            out = []
            for (uid,) in await conn.fetch("SELECT id FROM rw_users ORDER BY id"):
                rows = await conn.fetch("SELECT id, title, score FROM rw_posts WHERE user_id = $1 ORDER BY id", uid)
                n = await conn.fetchval("SELECT count(*) FROM rw_posts WHERE rw_posts.user_id = $1", uid)
                out.append((uid, [tuple(r) for r in rows], n))
            return out
        finally:
            await conn.close()

    return asyncio.run(run())


def test_asyncpg_lazy_loading(proxies, blog, postgres):
    want, got = driver_runs(asyncpg_lazy, proxies, postgres)
    assert got == want
    assert len(want) == N_USERS and sum(len(r[1]) for r in want) > N_USERS
    n = calls(postgres, "%FROM rw_posts WHERE%user_id = $1%")
    seen = postgres.query("SELECT calls, left(query, 90) FROM pg_stat_statements WHERE query LIKE '%rw_posts%'",
                          dbname=DB)
    assert n <= 6, f"{n} statements for {2 * N_USERS} asyncpg children: {seen}"
