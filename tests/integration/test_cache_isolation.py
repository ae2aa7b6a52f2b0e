"""Result cache (cache.mode = auto): what one session is served never comes
from another session that could see different data.

- two roles under a row-level security policy on one table, through one
  pgfold: each sees only its own rows, cold and warm, byte for byte what
  PostgreSQL sends; the table owner (who bypasses RLS) does not leak to them;
- a role without SELECT on a table gets 42501 every time, also after a
  role that may read it warmed the cache; a REVOKE through pgfold takes
  effect at once;
- the same statement text under different search_path settings (two schemas
  with a same-named table: SET, set_config, ALTER ROLE ... SET) and in two
  databases: each its own result;
- SET ROLE disables caching for the session (counted under "role");
- settings given at startup (options=-c ...) are part of what a result
  depends on: search_path and role set there.
No timing assertions.
"""


import pytest

from pgharness import wait_until
from test_cache import cache_stats, marker
from wire import WireConn, query

DB = "qc_iso"
DB2 = "qc_iso2"
ROLES = ("qc_alice", "qc_bob", "qc_nosel")

SCHEMA = """
DROP TABLE IF EXISTS qc_notes, qc_secret, qc_plain;
DROP SCHEMA IF EXISTS qc_s1, qc_s2 CASCADE;
CREATE TABLE qc_notes (id int PRIMARY KEY, owner name NOT NULL, body text);
INSERT INTO qc_notes SELECT g, CASE WHEN g % 3 = 0 THEN 'qc_alice' WHEN g % 3 = 1 THEN 'qc_bob' ELSE 'app' END,
  'note ' || g FROM generate_series(1, 30) g;
ALTER TABLE qc_notes ENABLE ROW LEVEL SECURITY;
CREATE POLICY qc_own ON qc_notes FOR SELECT USING (owner = current_user);
GRANT SELECT ON qc_notes TO qc_alice, qc_bob;
CREATE TABLE qc_secret (id int PRIMARY KEY, v text);
INSERT INTO qc_secret VALUES (1, 'classified'), (2, 'top');
GRANT SELECT ON qc_secret TO qc_alice;
CREATE TABLE qc_plain (id int PRIMARY KEY, v text);
INSERT INTO qc_plain VALUES (1, 'plain');
GRANT SELECT ON qc_plain TO qc_alice, qc_bob, qc_nosel;
CREATE SCHEMA qc_s1;
CREATE SCHEMA qc_s2;
CREATE TABLE qc_s1.qc_same (id int PRIMARY KEY, v text);
CREATE TABLE qc_s2.qc_same (id int PRIMARY KEY, v text);
INSERT INTO qc_s1.qc_same VALUES (1, 'schema one');
INSERT INTO qc_s2.qc_same VALUES (1, 'schema two'), (2, 'schema two, second row');
GRANT USAGE ON SCHEMA qc_s1, qc_s2 TO PUBLIC;
GRANT SELECT ON ALL TABLES IN SCHEMA qc_s1 TO PUBLIC;
GRANT SELECT ON ALL TABLES IN SCHEMA qc_s2 TO PUBLIC;
CREATE TABLE qc_same (id int PRIMARY KEY, v text);
INSERT INTO qc_same VALUES (1, 'public of {db}');
GRANT SELECT ON qc_same TO PUBLIC;
DROP TABLE IF EXISTS qc_types;
CREATE TABLE qc_types (id int PRIMARY KEY, d date, f float8, t text);
INSERT INTO qc_types VALUES (1, '2026-11-28', 1 / 3.0, 'caf\u00e9'), (2, '1999-01-02', 0.1, 'na\u00efve');
GRANT SELECT ON qc_types TO PUBLIC;
"""


@pytest.fixture(scope="module")
def iso(postgres):
    for db in (DB, DB2):
        postgres.query(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)", dbname="postgres")
    for role in ROLES:
        postgres.query(f"DROP ROLE IF EXISTS {role}", dbname="postgres")
        postgres.query(f"CREATE ROLE {role} LOGIN", dbname="postgres")
    postgres.query("GRANT qc_alice TO app", dbname="postgres")  # for SET ROLE / options=-c role=
    for db in (DB, DB2):
        postgres.query(f"CREATE DATABASE {db} OWNER app", dbname="postgres")
        postgres.query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements", dbname=db)
        conn = postgres.connect(dbname=db)
        with conn.cursor() as cur:
            cur.execute("SET ROLE app")
            cur.execute(SCHEMA.replace("{db}", db))
        conn.close()
    yield DB
    for db in (DB, DB2):
        postgres.query(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)", dbname="postgres")
    postgres.query("REVOKE qc_alice FROM app", dbname="postgres")
    for role in ROLES:
        postgres.query(f"DROP ROLE IF EXISTS {role}", dbname="postgres")


def session_run(port, user, db, sqls, extra=None):
    """Every message received for each SQL string (one Query each)."""
    got = []
    with WireConn("127.0.0.1", port) as w:
        w.startup(user, db, extra=extra)
        for sql in sqls:
            w.send(query(sql))
            got.append(w.read_until_ready())
    return got


def rows(msgs):
    return [body for t, body in msgs if t == b"D"]


def sqlstates(msgs):
    from wire import parse_fields
    return [parse_fields(body).get("C") for t, body in msgs if t == b"E"]


def cacheable_now(proxy, db):
    before = cache_stats(proxy)
    session_run(proxy.port, "app", db, [f"SELECT /* probe {marker()} */ id FROM qc_plain WHERE id = 1"])
    after = cache_stats(proxy)
    return after["lookups"] > before["lookups"]


@pytest.fixture(scope="module")
def proxy(iso, module_pgfold_factory):
    p = module_pgfold_factory(sets={"cache.mode": "auto", "log_level": "debug"}, name="pgfold-cache-iso")
    for db in (DB, DB2):
        session_run(p.port, "app", db, ["SELECT 1"])  # starts loading pg_proc / pg_class
        wait_until(lambda: cacheable_now(p, db), 20, f"reads in {db} cacheable")
    return p


# --------------------------------------------------------------------------
# row-level security and grants


def test_rls_roles_see_only_their_rows_cold_and_warm(postgres, proxy):
    m = marker()
    sqls = [f"SELECT /* {m} */ id, owner, body FROM qc_notes ORDER BY id",
            f"SELECT /* {m} */ count(*), min(id), max(id) FROM qc_notes",
            f"SELECT /* {m} */ body FROM qc_notes WHERE id = 3",   # alice's row
            f"SELECT /* {m} */ body FROM qc_notes WHERE id = 4"]   # bob's row
    want = {u: session_run(postgres.port, u, DB, sqls) for u in ("qc_alice", "qc_bob", "app")}
    assert rows(want["qc_alice"][0]) != rows(want["qc_bob"][0])
    assert len(rows(want["qc_alice"][2])) == 1 and len(rows(want["qc_bob"][2])) == 0
    before = cache_stats(proxy)
    # cold: alice first, then bob and the owner with the very same texts;
    # warm: each again, in another order
    for order in (("qc_alice", "qc_bob", "app"), ("qc_bob", "app", "qc_alice"), ("app", "qc_alice", "qc_bob")):
        for user in order:
            assert session_run(proxy.port, user, DB, sqls) == want[user], f"{user} was served another role's rows"
    after = cache_stats(proxy)
    assert after["hits"] - before["hits"] >= 2 * 3 * len(sqls), "the warm runs were not served from the cache"


def test_no_select_gets_permission_error_every_time(postgres, proxy):
    m = marker()
    sql = f"SELECT /* {m} */ id, v FROM qc_secret ORDER BY id"
    direct = session_run(postgres.port, "qc_nosel", DB, [sql])[0]
    assert sqlstates(direct) == ["42501"]
    assert sqlstates(session_run(proxy.port, "qc_nosel", DB, [sql, sql])[0]) == ["42501"]
    alice = session_run(proxy.port, "qc_alice", DB, [sql, sql])  # alice warms the cache
    assert [len(rows(r)) for r in alice] == [2, 2] and not sqlstates(alice[1])
    hits = cache_stats(proxy)["hits"]
    for got in session_run(proxy.port, "qc_nosel", DB, [sql, sql, sql]):
        assert sqlstates(got) == ["42501"], f"qc_nosel was served {rows(got)!r}"
        assert not rows(got)
    assert session_run(proxy.port, "qc_alice", DB, [sql])[0] == alice[1]
    assert cache_stats(proxy)["hits"] == hits + 1  # only alice's read was a hit


def test_revoke_through_pgfold_takes_effect_at_once(postgres, proxy):
    m = marker()
    sql = f"SELECT /* {m} */ v FROM qc_plain WHERE id = 1"
    for _ in range(2):
        got = session_run(proxy.port, "qc_bob", DB, [sql])[0]
        assert rows(got) and not sqlstates(got)
    try:
        session_run(proxy.port, "app", DB, ["REVOKE SELECT ON qc_plain FROM qc_bob"])
        got = session_run(proxy.port, "qc_bob", DB, [sql])[0]
        assert sqlstates(got) == ["42501"], f"a cached result outlived REVOKE: {rows(got)!r}"
    finally:
        postgres.query("GRANT SELECT ON qc_plain TO qc_bob", dbname=DB)


# --------------------------------------------------------------------------
# search_path and databases


def test_search_path_set_in_session(postgres, proxy):
    m = marker()
    sql = f"SELECT /* {m} */ id, v FROM qc_same ORDER BY id"
    setups = {"public": [], "s1": ["SET search_path = qc_s1"], "s2": ["SET search_path TO qc_s2, public"],
              "s1local": ["BEGIN", "SET LOCAL search_path = qc_s1"]}
    want = {k: session_run(postgres.port, "app", DB, s + [sql])[-1] for k, s in setups.items()}
    assert len({tuple(rows(v)) for v in want.values()}) == 3
    before = cache_stats(proxy)
    for _ in range(2):
        for k, s in setups.items():
            assert session_run(proxy.port, "app", DB, s + [sql])[-1] == want[k], f"search_path {k}: wrong table"
    assert cache_stats(proxy)["hits"] - before["hits"] >= len(setups)
    # set_config() changes search_path too (a volatile function: pgfold also
    # invalidates the database after it, see the report of issue 5's tests)
    fn = ["SELECT set_config('search_path', 'qc_s2', false)"]
    want_fn = session_run(postgres.port, "app", DB, fn + [sql, sql])[1:]
    assert rows(want_fn[0]) == rows(want["s2"])
    assert session_run(proxy.port, "app", DB, fn + [sql, sql])[1:] == want_fn
    assert session_run(proxy.port, "app", DB, [sql])[0] == want["public"]


def test_search_path_from_alter_role(postgres, proxy):
    m = marker()
    sql = f"SELECT /* {m} */ id, v FROM qc_same ORDER BY id"
    postgres.query("ALTER ROLE qc_bob IN DATABASE qc_iso SET search_path = qc_s2", dbname="postgres")
    try:
        want_bob = session_run(postgres.port, "qc_bob", DB, [sql])[0]
        want_alice = session_run(postgres.port, "qc_alice", DB, [sql])[0]
        assert rows(want_bob) != rows(want_alice)
        for _ in range(2):
            assert session_run(proxy.port, "qc_alice", DB, [sql])[0] == want_alice
            assert session_run(proxy.port, "qc_bob", DB, [sql])[0] == want_bob
    finally:
        postgres.query("ALTER ROLE qc_bob IN DATABASE qc_iso RESET search_path", dbname="postgres")


def test_two_databases_two_results(postgres, proxy):
    m = marker()
    sql = f"SELECT /* {m} */ id, v FROM qc_same ORDER BY id"
    want = {db: session_run(postgres.port, "app", db, [sql])[0] for db in (DB, DB2)}
    assert rows(want[DB]) != rows(want[DB2])
    before = cache_stats(proxy)
    for _ in range(2):
        for db in (DB, DB2, DB):
            assert session_run(proxy.port, "app", db, [sql])[0] == want[db], f"{db} got another database's rows"
    assert cache_stats(proxy)["hits"] - before["hits"] >= 4


# --------------------------------------------------------------------------
# SET ROLE and startup settings


def test_set_role_disables_caching(postgres, proxy):
    m = marker()
    sql = f"SELECT /* {m} */ id, owner FROM qc_notes ORDER BY id"
    want_alice = session_run(postgres.port, "qc_alice", DB, [sql])[0]
    want_app = session_run(postgres.port, "app", DB, [sql])[0]
    assert rows(want_alice) != rows(want_app)
    session_run(proxy.port, "app", DB, [sql, sql])  # the owner's rows are cached under app
    before = cache_stats(proxy)
    got = session_run(proxy.port, "app", DB, ["SET ROLE qc_alice", sql, sql, sql])
    assert got[1:] == [want_alice] * 3, "after SET ROLE the owner's cached rows were served"
    after = cache_stats(proxy)
    assert after["bypasses"]["role"] - before["bypasses"]["role"] == 3
    assert after["hits"] == before["hits"] and after["lookups"] == before["lookups"]
    # the same inside a block with SET LOCAL ROLE
    got = session_run(proxy.port, "app", DB, ["BEGIN", "SET LOCAL ROLE qc_alice", sql, "COMMIT", sql])
    assert got[2] == [(t, b) if t != b"Z" else (t, b"T") for t, b in want_alice]
    assert got[4] == want_app




@pytest.mark.parametrize("table, extra", [
    pytest.param("qc_same", {"options": "-c search_path=qc_s2"}, id="options-search_path"),
    pytest.param("qc_same", {"search_path": "qc_s1"}, id="param-search_path"),
    pytest.param("qc_types", {"client_encoding": "LATIN1"}, id="param-client_encoding"),
    pytest.param("qc_types", {"DateStyle": "SQL, DMY"}, id="param-DateStyle"),
    pytest.param("qc_types", {"options": "-c extra_float_digits=0"}, id="options-extra_float_digits"),
])
def test_startup_settings_are_part_of_the_key(postgres, proxy, table, extra):
    m = marker()
    sql = f"SELECT /* {m} */ * FROM {table} ORDER BY id"
    want_set = session_run(postgres.port, "app", DB, [sql], extra=extra)[0]
    want_plain = session_run(postgres.port, "app", DB, [sql])[0]
    assert want_set != want_plain
    for _ in range(2):
        assert session_run(proxy.port, "app", DB, [sql])[0] == want_plain
        assert session_run(proxy.port, "app", DB, [sql], extra=extra)[0] == want_set, \
            f"a session started with {extra} was served the result of a session without it"


def test_startup_role_does_not_leak_rls_rows(postgres, proxy):
    m = marker()
    sql = f"SELECT /* {m} */ id, owner FROM qc_notes ORDER BY id"
    opts = {"options": "-c role=qc_alice"}
    want_alice = session_run(postgres.port, "app", DB, [sql], extra=opts)[0]
    want_app = session_run(postgres.port, "app", DB, [sql])[0]
    assert rows(want_alice) != rows(want_app)
    for _ in range(2):
        assert session_run(proxy.port, "app", DB, [sql])[0] == want_app
        assert session_run(proxy.port, "app", DB, [sql], extra=opts)[0] == want_alice, \
            "a session logged in as app with options=-c role=qc_alice was served the owner's rows (RLS bypassed)"
