"""Function volatility read from pg_proc through pgfold's control connection
(proxy/volatility.c, proxy/pgctl.c), observed on the admin port:

    GET /functions?db=NAME&fn=NAME[&user=NAME][&refresh=1]

With this module's own PostgreSQL (it is restarted) and pgfolds started per
test.  Covers: builtins (now() stable, random() volatile, lower() immutable,
schema-qualified names), user-defined functions created before pgfold
started (VOLATILE, IMMUTABLE, STABLE, overloads, the same name in two
schemas, a quoted mixed-case name), a function created and altered after
the map was loaded (unknown -> volatile until refresh=1 reloads it; the old
map keeps answering meanwhile), the control connection as control_user or
as the client's user, one control connection per database at a time,
databases it cannot connect to (no CONNECT privilege, wrong password, no such
database: all volatile, logged once, pgfold keeps relaying), a config reload
fixing the password, a unix-socket backend, PostgreSQL restarted under a
loaded map, the cap on tracked databases, and bad requests.  Every pgfold is
checked by the factory for sanitizer reports and a clean SIGTERM exit."""

import json
import signal
import time
import urllib.parse

import psycopg2
import pytest

from pgharness import PASSWORDS, PostgresServer, free_port, wait_until, write_pgfold_config

SETUP_SQL = """
CREATE ROLE ctl LOGIN;
CREATE DATABASE voldb OWNER app;
CREATE DATABASE secretdb;
REVOKE CONNECT ON DATABASE secretdb FROM PUBLIC;
\\c voldb
CREATE SCHEMA myschema;
CREATE SCHEMA s1;
CREATE SCHEMA s2;
CREATE FUNCTION vol_f() RETURNS int VOLATILE LANGUAGE sql AS 'SELECT 1';
CREATE FUNCTION imm_f(int) RETURNS int IMMUTABLE LANGUAGE sql AS 'SELECT $1';
CREATE FUNCTION myschema.stab_f() RETURNS int STABLE LANGUAGE sql AS 'SELECT 1';
CREATE FUNCTION over_f(int) RETURNS int IMMUTABLE LANGUAGE sql AS 'SELECT 1';
CREATE FUNCTION over_f(text) RETURNS int VOLATILE LANGUAGE sql AS 'SELECT 1';
CREATE FUNCTION s1.dup_f() RETURNS int IMMUTABLE LANGUAGE sql AS 'SELECT 1';
CREATE FUNCTION s2.dup_f() RETURNS int STABLE LANGUAGE sql AS 'SELECT 1';
CREATE FUNCTION "MixedCase"() RETURNS int IMMUTABLE LANGUAGE sql AS 'SELECT 1';
"""

WORD = {"i": "immutable", "s": "stable", "v": "volatile"}


@pytest.fixture(scope="module")
def vpg():
    server = PostgresServer("postgres-volatility")
    try:
        server.start()
        path = server.base / "volatility.sql"
        path.write_text(SETUP_SQL)
        path.chmod(0o644)
        server.psql_file(path)
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def start(vpg, pgfold_factory):
    """start(**sets) -> a pgfold in front of vpg with those --set values."""
    def _start(backend=None, **sets):
        sets.setdefault("log_level", "debug")
        return pgfold_factory(backend_port=vpg.port, backend=backend, name="pgfold-volatility", sets=sets)
    return _start


def functions(proxy, db, fn, **params):
    """The /functions answer as a dict (asserting 200)."""
    query = urllib.parse.urlencode({"db": db, "fn": fn, **params})
    status, ctype, body = proxy.admin_get(f"/functions?{query}")
    assert status == 200, f"/functions?{query} answered {status}: {body[:300]!r}"
    assert ctype.startswith("application/json")
    return json.loads(body)


def wait_loaded(proxy, db="voldb", min_loads=1, timeout=15, **params):
    """Ask until db's map has been loaded min_loads times; the last answer."""
    def loaded():
        ans = functions(proxy, db, "now", **params)
        return ans if ans["loaded"] and ans["loads"] >= min_loads and ans["state"] == "loaded" else None
    return wait_until(loaded, timeout, f"{db} loaded {min_loads} time(s)")


def wait_state(proxy, db, state, timeout=15, **params):
    return wait_until(lambda: (lambda a: a if a["state"] == state else None)(functions(proxy, db, "now", **params)),
                      timeout, f"{db} in state {state}")


def expect(proxy, db, cases, **params):
    got = {fn: functions(proxy, db, fn, **params)["volatility"] for fn in cases}
    want = {fn: WORD[v] for fn, v in cases.items()}
    assert got == want


def control_backends(pg, dbname=None):
    """(datname, usename) of pgfold's control connections now."""
    sql = "SELECT datname, usename FROM pg_stat_activity WHERE application_name = 'pgfold-control'"
    rows = pg.query(sql, dbname="postgres")
    return [r for r in rows if dbname is None or r[0] == dbname]


def relay_works(proxy):
    conn = psycopg2.connect(host="127.0.0.1", port=proxy.port, user="app", dbname="shop", connect_timeout=10)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 6 * 7")
            return cur.fetchone()[0] == 42
    finally:
        conn.close()


# --------------------------------------------------------------------------


def test_builtins_and_user_functions(start, vpg):
    proxy = start(control_user="ctl")
    first = functions(proxy, "voldb", "now")
    # the first question starts the load; the answer cannot wait for it
    assert first == {**first, "database": "voldb", "function": "now", "volatility": "volatile",
                     "loaded": False, "tracked": True}
    ans = wait_loaded(proxy)
    assert ans["functions"] > 2000 and ans["error"] == ""
    expect(proxy, "voldb", {
        "now": "s", "random": "v", "lower": "i", "pg_catalog.now": "s", "pg_catalog.random": "v",
        "pg_catalog.lower": "i", "NOW": "s", "clock_timestamp": "v", "abs": "i", "count": "i",
        "no_such_function": "v", "pg_catalog.no_such_function": "v", "myschema.now": "v",
        # defined before pgfold started
        "vol_f": "v", "public.vol_f": "v", "imm_f": "i", "public.imm_f": "i",
        "stab_f": "s", "myschema.stab_f": "s", "public.stab_f": "v",
        "over_f": "v", "public.over_f": "v",          # the most volatile overload
        "dup_f": "s", "s1.dup_f": "i", "s2.dup_f": "s",  # the most volatile schema when unqualified
        "mixedcase": "i", "public.mixedcase": "i",
    })
    assert functions(proxy, "voldb", "now")["loads"] == 1  # answers come from memory
    assert control_backends(vpg, "voldb") == [("voldb", "ctl")]  # lingers, as ctl
    assert relay_works(proxy)


def test_function_created_and_altered_after_load(start, vpg):
    proxy = start(control_user="ctl")
    wait_loaded(proxy)
    vpg.query("CREATE FUNCTION late_f() RETURNS int IMMUTABLE LANGUAGE sql AS 'SELECT 1'", dbname="voldb")
    try:
        # unknown to the loaded map: volatile, and still so without a refresh
        assert functions(proxy, "voldb", "late_f")["volatility"] == "volatile"
        assert functions(proxy, "voldb", "late_f")["loads"] == 1
        # refresh=1 (what the lead's DDL hook will call): the old map keeps
        # answering while the new one loads
        ans = functions(proxy, "voldb", "now", refresh=1)
        assert ans["volatility"] == "stable" and ans["loaded"]
        wait_until(lambda: functions(proxy, "voldb", "late_f")["volatility"] == "immutable", 15,
                   "late_f to be immutable after refresh")
        assert functions(proxy, "voldb", "public.late_f")["volatility"] == "immutable"
        vpg.query("ALTER FUNCTION late_f() STABLE", dbname="voldb")
        loads = functions(proxy, "voldb", "now")["loads"]
        functions(proxy, "voldb", "now", refresh=1)
        wait_loaded(proxy, min_loads=loads + 1)
        assert functions(proxy, "voldb", "late_f")["volatility"] == "stable"
    finally:
        vpg.query("DROP FUNCTION late_f()", dbname="voldb")


def test_refresh_storm_uses_one_connection(start, vpg):
    """Many invalidations: loads are coalesced, never two control
    connections to one database at once."""
    proxy = start(control_user="ctl")
    wait_loaded(proxy)
    most = 0
    for _ in range(40):
        functions(proxy, "voldb", "now", refresh=1)
        most = max(most, len(control_backends(vpg, "voldb")))
    assert most == 1
    ans = wait_loaded(proxy, min_loads=2)
    assert ans["volatility"] == "stable"
    assert len(control_backends(vpg, "voldb")) == 1


def test_connects_as_the_client_user_when_control_user_is_empty(start, vpg):
    proxy = start()
    # nobody to connect as yet: nothing starts
    ans = functions(proxy, "voldb", "now")
    assert (ans["volatility"], ans["loaded"], ans["state"]) == ("volatile", False, "new")
    time.sleep(0.3)  # give a wrongly started load time to show up
    assert functions(proxy, "voldb", "now")["state"] == "new"
    assert control_backends(vpg, "voldb") == []
    # the first user given is the one used
    functions(proxy, "voldb", "now", user="app")
    wait_loaded(proxy)
    functions(proxy, "voldb", "now", user="postgres")
    assert control_backends(vpg, "voldb") == [("voldb", "app")]
    expect(proxy, "voldb", {"now": "s", "imm_f": "i"})


def test_databases_it_cannot_read(start, vpg):
    proxy = start(control_user="ctl", connect_timeout="2s")
    wait_loaded(proxy)  # voldb works as ctl
    for db in ("secretdb", "no_such_db"):
        ans = wait_state(proxy, db, "failed")
        assert ans["volatility"] == "volatile" and not ans["loaded"] and ans["error"]
    assert "permission denied" in functions(proxy, "secretdb", "now")["error"]
    assert "does not exist" in functions(proxy, "no_such_db", "now")["error"]
    # retried with a backoff when used, but logged once per database
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        assert functions(proxy, "secretdb", "lower")["volatility"] == "volatile"
        time.sleep(0.1)
    log = proxy.log_text()
    assert log.count('cannot read the functions of database "secretdb"') == 1, log[-3000:]
    assert log.count('cannot read the functions of database "no_such_db"') == 1
    assert 'database "secretdb" still failing' in log  # it did retry
    # pgfold keeps relaying, and the readable database still answers
    assert relay_works(proxy)
    expect(proxy, "voldb", {"now": "s", "lower": "i"})


def test_wrong_password_then_reload(vpg, pgfold_factory, tmp_path):
    path = tmp_path / "pgfold.ini"
    ports = (free_port(), free_port())

    def write(password):
        write_pgfold_config(path, ports[0], ports[1], vpg.port, None, log_level="debug",
                            control_user="app_scram", control_password=password)

    write("wrong")
    proxy = pgfold_factory(config_path=path, ports=ports, name="pgfold-volatility-reload")
    ans = wait_state(proxy, "voldb", "failed")
    assert "password authentication failed" in ans["error"]
    assert ans["volatility"] == "volatile"
    assert PASSWORDS["app_scram"] not in proxy.log_text()
    write(PASSWORDS["app_scram"])
    proxy.signal(signal.SIGHUP)
    wait_until(lambda: "configuration reloaded" in proxy.log_text(), 10, "the reload")
    ans = wait_loaded(proxy)  # retried at once after the reload, no backoff
    assert ans["volatility"] == "stable"
    assert control_backends(vpg, "voldb") == [("voldb", "app_scram")]
    assert PASSWORDS["app_scram"] not in proxy.log_text()


def test_unix_socket_backend(start, vpg):
    proxy = start(backend=f"{vpg.sockdir}:{vpg.port}", control_user="ctl")
    wait_loaded(proxy)
    expect(proxy, "voldb", {"now": "s", "random": "v", "imm_f": "i"})


def test_too_many_databases(start):
    proxy = start(control_user="ctl", connect_timeout="2s")
    names = [f"nodb_{i}" for i in range(70)]
    tracked = [functions(proxy, n, "lower")["tracked"] for n in names]
    assert tracked == [True] * 64 + [False] * 6
    ans = functions(proxy, "nodb_69", "lower")
    assert (ans["volatility"], ans["loaded"], ans["state"]) == ("volatile", False, "new")
    # the tracked ones fail (no such database) and stay volatile
    wait_state(proxy, "nodb_0", "failed")
    assert proxy.log_text().count("more than 64 databases") == 1
    assert relay_works(proxy)


def test_bad_requests(start):
    proxy = start(control_user="ctl")
    for query, word in [("", "db="), ("db=voldb", "fn="), ("fn=now", "db="), ("db=&fn=now", "db="),
                        ("db=voldb&fn=%zz", "fn="), ("db=voldb&fn=a%00b", "fn="),
                        ("db=" + "d" * 64 + "&fn=now", "db="), ("db=voldb&fn=" + "f" * 256, "fn="),
                        ("db=voldb&fn=now&user=" + "u" * 64, "user")]:
        status, _, body = proxy.admin_get(f"/functions?{query}")
        assert status == 400, (query, status, body)
        assert word in json.loads(body)["error"], (query, body)
    # encoded names are decoded
    wait_loaded(proxy)
    assert functions(proxy, "voldb", "pg_catalog.now")["function"] == "pg_catalog.now"
    status, _, body = proxy.admin_get("/functions?db=vol%64b&fn=pg_catalog%2Enow&x=1")
    assert status == 200 and json.loads(body)["volatility"] == "stable", body


@pytest.mark.timeout(180)
def test_postgres_restart(start, vpg):
    proxy = start(control_user="ctl", connect_timeout="2s")
    wait_loaded(proxy)
    vpg.pg_stop("fast")
    try:
        # the lingering connection is gone; a refresh fails, the old map stays
        functions(proxy, "voldb", "now", refresh=1)
        ans = wait_state(proxy, "voldb", "failed")
        assert ans["loaded"] and ans["volatility"] == "stable"
        assert functions(proxy, "voldb", "random")["volatility"] == "volatile"
    finally:
        vpg.pg_start()
    vpg.query("CREATE FUNCTION after_restart_f() RETURNS int IMMUTABLE LANGUAGE sql AS 'SELECT 1'",
              dbname="voldb")
    try:
        loads = functions(proxy, "voldb", "now")["loads"]
        # the next use after the backoff reloads
        wait_loaded(proxy, min_loads=loads + 1, timeout=40)
        expect(proxy, "voldb", {"after_restart_f": "i", "now": "s"})
        log = proxy.log_text()
        assert log.count('cannot read the functions of database "voldb"') == 1
        assert relay_works(proxy)
    finally:
        vpg.query("DROP FUNCTION after_restart_f()", dbname="voldb")


def test_ddl_through_pgfold_refreshes_the_map_and_queries_show_volatility(start, vpg):
    """A CREATE FUNCTION sent through pgfold reloads the map once it commits
    (no refresh=1), and /queries reports each shape's most volatile function."""
    proxy = start(control_user="ctl")
    conn = psycopg2.connect(host="127.0.0.1", port=proxy.port, user="app", dbname="voldb", connect_timeout=10)
    try:
        wait_loaded(proxy)
        loads = functions(proxy, "voldb", "now")["loads"]
        with conn.cursor() as cur:
            cur.execute("CREATE FUNCTION ddl_f() RETURNS int IMMUTABLE LANGUAGE sql AS 'SELECT 7'")
            # not committed yet: no reload may read the catalog before the change is visible
            assert functions(proxy, "voldb", "ddl_f")["volatility"] == "volatile"
        conn.commit()
        wait_loaded(proxy, min_loads=loads + 1)
        assert functions(proxy, "voldb", "ddl_f")["volatility"] == "immutable"
        with conn.cursor() as cur:
            cur.execute("SELECT ddl_f(), lower('X')")
            cur.execute("SELECT now()")
            cur.execute("SELECT vol_f()")
            cur.execute("SELECT 1 + 1")
        conn.commit()
        status, _, body = proxy.admin_get("/queries")
        assert status == 200
        vol = {q["query"]: q["volatility"] for q in json.loads(body)["queries"] if q["query"]}
        assert vol["SELECT ddl_f(), lower($1)"] == "immutable"
        assert vol["SELECT now()"] == "stable"
        assert vol["SELECT vol_f()"] == "volatile"
        assert vol["SELECT $1 + $2"] == "immutable"
    finally:
        with conn.cursor() as cur:
            cur.execute("DROP FUNCTION IF EXISTS ddl_f()")
        conn.commit()
        conn.close()
