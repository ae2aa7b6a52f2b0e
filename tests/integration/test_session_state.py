"""Session state as pgfold tracks it (GET /sessions on the admin port), through
a real pgfold and PostgreSQL 15, with psycopg2, psycopg 3 and raw wire
messages: BEGIN/COMMIT/ROLLBACK, failed transactions, savepoints, SET ROLE /
RESET ROLE, search_path changes kept by COMMIT and undone by ROLLBACK,
isolation levels, and implicit transactions in pipelines.

Each session is found in /sessions by the backend pid the client got from
BackendKeyData (pgfold passes PostgreSQL's own key through); pgfold updates
a session's state before it forwards the ReadyForQuery, so /sessions read
after a statement returned is never stale.

The ground truth is the server itself: after every step of the table-driven
scenarios the setting pgfold reports is compared with SHOW on the same
connection.  Scenarios and tests whose name starts with `bug_` are
sequences where pgfold currently disagrees with PostgreSQL: they fail until
the bug is fixed."""

import json

import psycopg
import psycopg.errors
import psycopg2
import psycopg2.extensions
import pytest

from pgharness import Target

DEFAULT_SEARCH_PATH = '"$user", public'


# --------------------------------------------------------------------------
# fixtures and helpers


@pytest.fixture(scope="module")
def proxy(module_pgfold_factory, postgres):
    postgres.psql(
        "DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ss_role') THEN "
        "CREATE ROLE ss_role NOLOGIN; END IF; END$$; GRANT ss_role TO app;", dbname="shop")
    postgres.psql("CREATE SCHEMA IF NOT EXISTS ss_a AUTHORIZATION app; "
                  "CREATE SCHEMA IF NOT EXISTS ss_b AUTHORIZATION app; "
                  "CREATE SCHEMA IF NOT EXISTS ss_c AUTHORIZATION app; "
                  "DROP TABLE IF EXISTS public.ss_items; "
                  "CREATE TABLE public.ss_items (id int); ALTER TABLE public.ss_items OWNER TO app; "
                  "DROP TABLE IF EXISTS public.ss_child, public.ss_parent; "
                  "CREATE TABLE public.ss_parent (id int PRIMARY KEY); "
                  "CREATE TABLE public.ss_child (pid int REFERENCES public.ss_parent "
                  "DEFERRABLE INITIALLY DEFERRED); "
                  "ALTER TABLE public.ss_parent OWNER TO app; ALTER TABLE public.ss_child OWNER TO app;",
                  dbname="shop")
    server = module_pgfold_factory(name="pgfold-session-state")
    yield server
    postgres.psql("DROP TABLE IF EXISTS public.ss_items, public.ss_child, public.ss_parent", dbname="shop")


@pytest.fixture
def target(proxy, postgres):
    proxy.ensure_running()
    return Target("pgfold", proxy.port, postgres, proxy)


def sessions(proxy):
    status, ctype, body = proxy.admin_get("/sessions")
    assert status == 200, f"/sessions answered {status}: {body[:300]!r}"
    assert ctype.startswith("application/json"), ctype
    return json.loads(body)["sessions"]


def session_of(proxy, pid):
    """The /sessions entry of the session whose backend pid is pid."""
    found = [s for s in sessions(proxy) if s["backend_pid"] == pid]
    assert len(found) == 1, f"backend pid {pid}: {len(found)} entries in /sessions"
    return found[0]


def state_of(proxy, pid):
    """The tracked state ("session" object) of backend pid."""
    s = session_of(proxy, pid)
    assert s["state"] == "active", s
    return s["session"]


def effective(state, name):
    """The statement in force for setting name (SET LOCAL first), or None."""
    return state["local_settings"].get(name, state["settings"].get(name))


def show(cur, what):
    cur.execute(f"SHOW {what}")
    return cur.fetchone()[0]


def run_ignoring_errors(cur, sql):
    try:
        cur.execute(sql)
    except psycopg2.Error:
        pass


# --------------------------------------------------------------------------
# transactions


def test_begin_commit_rollback(target, proxy):
    conn = target.connect(autocommit=True)
    try:
        pid = conn.get_backend_pid()
        s = session_of(proxy, pid)
        assert s["user"] == "app" and s["database"] == "shop" and s["inflight"] == 0
        st = s["session"]
        assert st["transaction"] == "idle" and st["wrote"] is False
        assert st["settings"] == {} and st["local_settings"] == {} and st["settings_unknown"] is False
        assert st["isolation"] == "default" and st["savepoints"] == 0
        cur = conn.cursor()
        cur.execute("BEGIN")
        st = state_of(proxy, pid)
        assert (st["transaction"], st["wrote"]) == ("in_transaction", False)
        cur.execute("SELECT count(*) FROM ss_items")
        assert state_of(proxy, pid)["wrote"] is False
        cur.execute("INSERT INTO ss_items VALUES (1)")
        st = state_of(proxy, pid)
        assert (st["transaction"], st["wrote"]) == ("in_transaction", True)
        cur.execute("SELECT count(*) FROM ss_items")
        assert state_of(proxy, pid)["wrote"] is True
        cur.execute("COMMIT")
        st = state_of(proxy, pid)
        assert (st["transaction"], st["wrote"]) == ("idle", False)
        cur.execute("BEGIN")
        cur.execute("DELETE FROM ss_items")
        assert state_of(proxy, pid)["wrote"] is True
        cur.execute("ROLLBACK")
        st = state_of(proxy, pid)
        assert (st["transaction"], st["wrote"]) == ("idle", False)
        assert session_of(proxy, pid)["inflight"] == 0

        # transactions opened by the driver (psycopg2 sends BEGIN itself)
        conn.autocommit = False
        cur.execute("SELECT 1")
        assert state_of(proxy, pid)["transaction"] == "in_transaction"
        conn.commit()
        assert state_of(proxy, pid)["transaction"] == "idle"
        cur.execute("INSERT INTO ss_items VALUES (2)")
        assert state_of(proxy, pid)["wrote"] is True
        conn.rollback()
        st = state_of(proxy, pid)
        assert (st["transaction"], st["wrote"]) == ("idle", False)
    finally:
        conn.close()


def test_psycopg3_transaction_blocks(target, proxy):
    with target.connect3(autocommit=True) as conn:
        pid = conn.info.backend_pid
        with conn.transaction():
            conn.execute("INSERT INTO ss_items VALUES (3)")
            st = state_of(proxy, pid)
            assert (st["transaction"], st["wrote"], st["savepoints"]) == ("in_transaction", True, 0)
            with conn.transaction():  # a savepoint
                assert state_of(proxy, pid)["savepoints"] == 1
            assert state_of(proxy, pid)["savepoints"] == 0
        st = state_of(proxy, pid)
        assert (st["transaction"], st["wrote"]) == ("idle", False)
        # an implicit transaction of one statement
        conn.execute("INSERT INTO ss_items VALUES (4)")
        st = state_of(proxy, pid)
        assert (st["transaction"], st["wrote"]) == ("idle", False)


def test_failed_transaction(target, proxy):
    conn = target.connect(autocommit=True)
    try:
        pid = conn.get_backend_pid()
        cur = conn.cursor()
        cur.execute("BEGIN")
        cur.execute("SET search_path = ss_a")
        with pytest.raises(psycopg2.errors.DivisionByZero):
            cur.execute("SELECT 1/0")
        st = state_of(proxy, pid)
        assert st["transaction"] == "failed_transaction"
        with pytest.raises(psycopg2.errors.InFailedSqlTransaction):
            cur.execute("SELECT 1")
        assert state_of(proxy, pid)["transaction"] == "failed_transaction"
        # COMMIT of a failed block rolls back (tag ROLLBACK): the SET is undone
        cur.execute("COMMIT")
        assert cur.statusmessage == "ROLLBACK"
        st = state_of(proxy, pid)
        assert st["transaction"] == "idle"
        assert "search_path" not in st["settings"]
        assert show(cur, "search_path") == DEFAULT_SEARCH_PATH
    finally:
        conn.close()

    with target.connect3() as conn3:
        pid = conn3.info.backend_pid
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn3.execute("SELECT 1/0")
        assert state_of(proxy, pid)["transaction"] == "failed_transaction"
        conn3.rollback()
        assert state_of(proxy, pid)["transaction"] == "idle"


def test_savepoints(target, proxy):
    conn = target.connect(autocommit=True)
    try:
        pid = conn.get_backend_pid()
        cur = conn.cursor()
        cur.execute("BEGIN")
        cur.execute("SET search_path = ss_a")
        cur.execute("SAVEPOINT s1")
        cur.execute("SET search_path = ss_b")
        cur.execute("SAVEPOINT s2")
        st = state_of(proxy, pid)
        assert st["savepoints"] == 2
        assert st["settings"]["search_path"] == "SET search_path = ss_b"
        cur.execute("ROLLBACK TO SAVEPOINT s1")
        st = state_of(proxy, pid)
        assert st["savepoints"] == 1
        assert show(cur, "search_path") == "ss_a"
        assert st["settings"]["search_path"] == "SET search_path = ss_a"
        # an error, then ROLLBACK TO gets the block going again
        cur.execute("SET search_path = ss_c")
        with pytest.raises(psycopg2.errors.DivisionByZero):
            cur.execute("SELECT 1/0")
        assert state_of(proxy, pid)["transaction"] == "failed_transaction"
        cur.execute("ROLLBACK TO s1")
        st = state_of(proxy, pid)
        assert st["transaction"] == "in_transaction"
        assert show(cur, "search_path") == "ss_a"
        assert st["settings"]["search_path"] == "SET search_path = ss_a"
        cur.execute("RELEASE SAVEPOINT s1")
        assert state_of(proxy, pid)["savepoints"] == 0
        cur.execute("COMMIT")
        st = state_of(proxy, pid)
        assert (st["transaction"], st["savepoints"]) == ("idle", 0)
        assert show(cur, "search_path") == "ss_a"
        assert st["settings"]["search_path"] == "SET search_path = ss_a"
        assert st["settings_unknown"] is False
    finally:
        conn.close()

    # psycopg 3 nested transaction blocks that fail roll back to the savepoint
    with target.connect3() as conn3:
        pid = conn3.info.backend_pid
        with conn3.transaction():
            conn3.execute("SET search_path = ss_b")
            with pytest.raises(psycopg.errors.DivisionByZero):
                with conn3.transaction():
                    conn3.execute("SET search_path = ss_c")
                    conn3.execute("SELECT 1/0")
            st = state_of(proxy, pid)
            assert st["transaction"] == "in_transaction" and st["savepoints"] == 0
            assert effective(st, "search_path") == "SET search_path = ss_b"
            assert conn3.execute("SHOW search_path").fetchone()[0] == "ss_b"
        conn3.commit()
        assert effective(state_of(proxy, pid), "search_path") == "SET search_path = ss_b"


# --------------------------------------------------------------------------
# roles


def test_set_role_and_reset_role(target, proxy):
    conn = target.connect(autocommit=True)
    try:
        pid = conn.get_backend_pid()
        cur = conn.cursor()
        cur.execute("SET ROLE ss_role")
        cur.execute("SELECT current_user")
        assert cur.fetchone()[0] == "ss_role"
        st = state_of(proxy, pid)
        assert st["settings"].get("role") == "SET ROLE ss_role"
        cur.execute("RESET ROLE")
        cur.execute("SELECT current_user")
        assert cur.fetchone()[0] == "app"
        assert "role" not in state_of(proxy, pid)["settings"]
        # SET ROLE in a block that rolls back is undone; one that commits is kept
        cur.execute("BEGIN")
        cur.execute("SET ROLE ss_role")
        assert state_of(proxy, pid)["settings"].get("role") == "SET ROLE ss_role"
        cur.execute("ROLLBACK")
        cur.execute("SELECT current_user")
        assert cur.fetchone()[0] == "app"
        assert "role" not in state_of(proxy, pid)["settings"]
        cur.execute("BEGIN")
        cur.execute("SET LOCAL ROLE ss_role")
        st = state_of(proxy, pid)
        assert st["local_settings"].get("role") == "SET LOCAL ROLE ss_role"
        cur.execute("COMMIT")
        assert "role" not in state_of(proxy, pid)["local_settings"]
        cur.execute("SELECT current_user")
        assert cur.fetchone()[0] == "app"
        # DISCARD ALL resets the role (SET SESSION AUTHORIZATION DEFAULT)
        cur.execute("SET ROLE ss_role")
        cur.execute("DISCARD ALL")
        cur.execute("SELECT current_user")
        assert cur.fetchone()[0] == "app"
        st = state_of(proxy, pid)
        assert st["settings"] == {} and st["settings_unknown"] is False
    finally:
        conn.close()


def test_reset_all_keeps_role(target, proxy):
    """SET ROLE ss_role; RESET ALL -> PostgreSQL keeps the role (role is
    GUC_NO_RESET_ALL).  (An earlier version forgot it.)"""
    conn = target.connect(autocommit=True)
    try:
        pid = conn.get_backend_pid()
        cur = conn.cursor()
        cur.execute("SET ROLE ss_role")
        cur.execute("RESET ALL")
        cur.execute("SELECT current_user")
        assert cur.fetchone()[0] == "ss_role"
        st = state_of(proxy, pid)
        assert st["settings"].get("role") == "SET ROLE ss_role", st
    finally:
        conn.close()


# --------------------------------------------------------------------------
# search_path: scenarios checked against SHOW after every step

# (id, steps): each step is one simple Query (psycopg2, autocommit); errors
# are expected where the SQL says so.
SEARCH_PATH_SCENARIOS = [
    ("plain_set", ["SET search_path = ss_a", "SET search_path TO ss_b"]),
    ("commit_keeps", ["BEGIN", "SET search_path = ss_a", "SELECT 1", "COMMIT"]),
    ("rollback_undoes", ["SET search_path = ss_a", "BEGIN", "SET search_path = ss_b", "ROLLBACK"]),
    ("failed_block_commit", ["BEGIN", "SET search_path = ss_b", "SELECT 1/0", "COMMIT"]),
    ("failed_block_rollback", ["SET search_path = ss_c", "BEGIN", "SET search_path = ss_b", "SELECT 1/0",
                               "ROLLBACK"]),
    ("implicit_failure", ["SET search_path = ss_a; SELECT 1/0"]),
    ("implicit_success", ["SET search_path = ss_a; SELECT 1"]),
    ("block_in_one_query", ["BEGIN; SET search_path = ss_a; COMMIT",
                            "BEGIN; SET search_path = ss_b; SELECT 1/0; COMMIT", "ROLLBACK"]),
    ("set_local", ["SET search_path = ss_a", "BEGIN", "SET LOCAL search_path = ss_b", "SELECT 1", "COMMIT"]),
    ("savepoint_release", ["BEGIN", "SAVEPOINT s", "SET search_path = ss_b", "RELEASE s", "COMMIT"]),
    ("savepoint_rollback_to", ["BEGIN", "SET search_path = ss_a", "SAVEPOINT s", "SET search_path = ss_b",
                               "ROLLBACK TO s", "COMMIT"]),
    ("reset", ["SET search_path = ss_a", "RESET search_path"]),
    ("reset_all", ["SET search_path = ss_a", "RESET ALL"]),
    ("discard_all", ["SET search_path = ss_a", "DISCARD ALL"]),
    ("set_config", ["SELECT set_config('search_path', 'ss_a', false)", "BEGIN",
                    "SELECT set_config('search_path', 'ss_b', true)", "COMMIT"]),
    ("rollback_outside_block", ["SET search_path = ss_a; ROLLBACK", "SET search_path = ss_b", "ROLLBACK"]),
    # an earlier version got these wrong (see the regressions in test_track.c):
    ("set_before_begin_in_one_query", ["SET search_path = ss_a; BEGIN; SELECT 1/0", "ROLLBACK"]),
    ("second_begin", ["BEGIN", "SET search_path = ss_a", "BEGIN", "ROLLBACK"]),
    ("rollback_to_undoes_set_local", ["BEGIN", "SAVEPOINT s", "SET LOCAL search_path = ss_a",
                                      "ROLLBACK TO s", "COMMIT"]),
    ("set_after_set_local", ["BEGIN", "SET LOCAL search_path = ss_a", "SET search_path = ss_b", "COMMIT"]),
    ("set_after_commit_in_failed_query", ["BEGIN; COMMIT; SET search_path = ss_a; SELECT 1/0"]),
    # COMMIT fails (deferred foreign key): the block is rolled back
    ("failed_commit", ["BEGIN", "SET search_path = ss_a, public", "INSERT INTO ss_child VALUES (42)", "COMMIT"]),
    # non-ASCII savepoint names
    ("savepoint_non_ascii_names", ["BEGIN", "SAVEPOINT café", "SET search_path = ss_a", "SAVEPOINT thé",
                                   "SET search_path = ss_b", "ROLLBACK TO café", "COMMIT"]),
]


@pytest.mark.parametrize("steps", [s for _, s in SEARCH_PATH_SCENARIOS],
                         ids=[i for i, _ in SEARCH_PATH_SCENARIOS])
def test_search_path(target, proxy, steps):
    conn = target.connect(autocommit=True)
    try:
        pid = conn.get_backend_pid()
        cur = conn.cursor()
        for n, sql in enumerate(steps, 1):
            run_ignoring_errors(cur, sql)
            if conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_INERROR:
                assert state_of(proxy, pid)["transaction"] == "failed_transaction"
                continue  # SHOW cannot run in a failed block
            server = show(cur, "search_path")
            st = state_of(proxy, pid)
            assert st["settings_unknown"] is False, f"after step {n} {sql!r}: {st}"
            stmt = effective(st, "search_path")
            where = f"after step {n} {sql!r}: server search_path {server!r}, pgfold {stmt!r}"
            if server == DEFAULT_SEARCH_PATH:
                assert stmt is None, where
            else:
                assert stmt is not None and server in stmt, where
    finally:
        conn.close()


# --------------------------------------------------------------------------
# isolation


def pgfold_isolation(st):
    return "read committed" if st["isolation"] == "default" else st["isolation"]


ISOLATION_SCENARIOS = [
    ("begin_serializable", ["BEGIN ISOLATION LEVEL SERIALIZABLE", "SELECT 1", "COMMIT"]),
    ("begin_repeatable_read_read_only", ["BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", "ROLLBACK"]),
    ("start_transaction", ["START TRANSACTION ISOLATION LEVEL SERIALIZABLE", "COMMIT"]),
    ("set_transaction", ["BEGIN", "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", "SELECT 1", "COMMIT"]),
    ("session_characteristics", ["SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE",
                                 "BEGIN", "COMMIT", "BEGIN ISOLATION LEVEL READ COMMITTED", "COMMIT",
                                 "RESET default_transaction_isolation"]),
    ("default_transaction_isolation", ["SET default_transaction_isolation = 'repeatable read'", "BEGIN",
                                       "ROLLBACK", "RESET ALL"]),
    ("failed_block", ["BEGIN ISOLATION LEVEL SERIALIZABLE", "SELECT 1/0", "ROLLBACK"]),
    ("session_characteristics_inside_block",
     ["SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE", "BEGIN",
      "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED", "COMMIT"]),
    ("read_uncommitted", ["SET default_transaction_isolation = 'read uncommitted'"]),
    # pgfold disagrees with PostgreSQL: read_only stays -1
    ("bug_set_transaction_read_only_guc", ["BEGIN", "SET transaction_read_only = on", "COMMIT"]),
    ("bug_default_transaction_read_only", ["SET default_transaction_read_only = on", "BEGIN", "COMMIT",
                                           "RESET default_transaction_read_only"]),
]


@pytest.mark.parametrize("steps", [s for _, s in ISOLATION_SCENARIOS], ids=[i for i, _ in ISOLATION_SCENARIOS])
def test_isolation(target, proxy, steps):
    conn = target.connect(autocommit=True)
    try:
        pid = conn.get_backend_pid()
        cur = conn.cursor()
        for n, sql in enumerate(steps, 1):
            run_ignoring_errors(cur, sql)
            if conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_INERROR:
                continue
            server = show(cur, "transaction_isolation")
            st = state_of(proxy, pid)
            assert pgfold_isolation(st) == server, \
                f"after step {n} {sql!r}: server {server!r}, pgfold {st['isolation']!r}"
            read_only = show(cur, "transaction_read_only") == "on"
            if st["read_only"] >= 0:
                assert bool(st["read_only"]) == read_only, f"after step {n} {sql!r}: {st}"
            else:
                assert not read_only, f"after step {n} {sql!r}: read only, pgfold says not given"
    finally:
        conn.close()


def test_begin_isolation_serializable(target, proxy):
    conn = target.connect(autocommit=True)
    try:
        pid = conn.get_backend_pid()
        cur = conn.cursor()
        assert state_of(proxy, pid)["isolation"] == "default"
        cur.execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
        st = state_of(proxy, pid)
        assert (st["transaction"], st["isolation"]) == ("in_transaction", "serializable")
        cur.execute("INSERT INTO ss_items VALUES (5)")
        assert state_of(proxy, pid)["isolation"] == "serializable"
        cur.execute("COMMIT")
        assert state_of(proxy, pid)["isolation"] == "default"
    finally:
        conn.close()


def test_driver_isolation_settings(target, proxy):
    """Isolation and read-only as the drivers ask for them."""
    conn = target.connect()
    try:
        conn.set_session(isolation_level="SERIALIZABLE", readonly=True)
        pid = conn.get_backend_pid()
        cur = conn.cursor()
        cur.execute("SELECT 1")
        assert show(cur, "transaction_isolation") == "serializable"
        st = state_of(proxy, pid)
        assert (st["transaction"], st["isolation"], st["read_only"]) == ("in_transaction", "serializable", 1)
        conn.commit()
    finally:
        conn.close()
    with target.connect3() as conn3:
        conn3.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        pid = conn3.info.backend_pid
        conn3.execute("SELECT 1")
        st = state_of(proxy, pid)
        assert (st["transaction"], st["isolation"]) == ("in_transaction", "repeatable read")
        conn3.commit()
        assert state_of(proxy, pid)["isolation"] in ("default", "repeatable read")


# --------------------------------------------------------------------------
# pipelines (implicit transactions)


def test_pipeline_insert_select_autocommit(target, proxy):
    with target.connect3(autocommit=True) as conn:
        pid = conn.info.backend_pid
        with conn.pipeline():
            conn.execute("INSERT INTO ss_items VALUES (10)")
            cur = conn.execute("SELECT count(*) FROM ss_items WHERE id = 10")
        assert cur.fetchone()[0] >= 1
        st = state_of(proxy, pid)
        assert (st["transaction"], st["wrote"]) == ("idle", False), st
        assert session_of(proxy, pid)["inflight"] == 0
        assert st["settings"] == {} and st["settings_unknown"] is False


def test_pipeline_insert_select_in_transaction(target, proxy):
    with target.connect3() as conn:
        pid = conn.info.backend_pid
        with conn.pipeline():
            conn.execute("INSERT INTO ss_items VALUES (11)")
            conn.execute("SELECT count(*) FROM ss_items")
        st = state_of(proxy, pid)
        assert (st["transaction"], st["wrote"]) == ("in_transaction", True), st
        conn.commit()
        st = state_of(proxy, pid)
        assert (st["transaction"], st["wrote"]) == ("idle", False), st
        assert session_of(proxy, pid)["inflight"] == 0


def test_pipeline_error(target, proxy):
    with target.connect3(autocommit=True) as conn:
        pid = conn.info.backend_pid
        before = conn.execute("SELECT count(*) FROM ss_items").fetchone()[0]
        with pytest.raises(psycopg.errors.DivisionByZero):
            with conn.pipeline():
                conn.execute("SET search_path = ss_a, public")
                conn.execute("INSERT INTO ss_items VALUES (12)")
                conn.execute("SELECT 1/0")
                conn.execute("INSERT INTO ss_items VALUES (13)")  # skipped
        # one implicit transaction up to the Sync: all of it rolled back
        assert conn.execute("SELECT count(*) FROM ss_items").fetchone()[0] == before
        assert conn.execute("SHOW search_path").fetchone()[0] == DEFAULT_SEARCH_PATH
        st = state_of(proxy, pid)
        assert (st["transaction"], st["wrote"]) == ("idle", False), st
        assert "search_path" not in st["settings"], st
        assert session_of(proxy, pid)["inflight"] == 0

        # a Sync between the SET and the error: the SET was committed
        with pytest.raises(psycopg.errors.DivisionByZero):
            with conn.pipeline() as p:
                conn.execute("SET search_path = ss_b, public")
                p.sync()
                conn.execute("SELECT 1/0")
        assert conn.execute("SHOW search_path").fetchone()[0] == "ss_b, public"
        st = state_of(proxy, pid)
        assert st["settings"].get("search_path") == "SET search_path = ss_b, public", st
        assert session_of(proxy, pid)["inflight"] == 0
        # and the session lines up afterwards
        with conn.pipeline():
            c1 = conn.execute("SELECT 1")
            c2 = conn.execute("SELECT 2")
        assert (c1.fetchone()[0], c2.fetchone()[0]) == (1, 2)
        assert state_of(proxy, pid)["transaction"] == "idle"


def test_pipeline_error_in_block(target, proxy):
    with target.connect3() as conn:
        pid = conn.info.backend_pid
        with pytest.raises(psycopg.errors.DivisionByZero):
            with conn.pipeline():
                conn.execute("INSERT INTO ss_items VALUES (14)")
                conn.execute("SELECT 1/0")
        st = state_of(proxy, pid)
        assert (st["transaction"], st["wrote"]) == ("failed_transaction", True), st
        conn.rollback()
        st = state_of(proxy, pid)
        assert (st["transaction"], st["wrote"]) == ("idle", False), st


# --------------------------------------------------------------------------
# statements pgfold does not analyse (a Query over 1 MiB streams through)

PADDING = "/*" + "x" * (1200 * 1024) + "*/"


def test_oversized_query_is_unknown(target, proxy):
    conn = target.connect(autocommit=True)
    try:
        pid = conn.get_backend_pid()
        cur = conn.cursor()
        cur.execute(f"SELECT 1 {PADDING}")
        assert cur.fetchone() == (1,)
        st = state_of(proxy, pid)
        assert (st["transaction"], st["wrote"], st["settings_unknown"]) == ("idle", False, True), st
        assert session_of(proxy, pid)["inflight"] == 0
        cur.execute("SELECT 2")
        assert state_of(proxy, pid)["settings_unknown"] is True  # until RESET ALL / DISCARD ALL
        cur.execute("BEGIN")
        cur.execute(f"INSERT INTO ss_items VALUES (30) {PADDING}")
        st = state_of(proxy, pid)
        assert (st["transaction"], st["wrote"], st["settings_unknown"]) == ("in_transaction", True, True), st
        cur.execute("ROLLBACK")
        cur.execute("DISCARD ALL")
        assert state_of(proxy, pid)["settings_unknown"] is False
    finally:
        conn.close()


def test_oversized_failed_query_keeps_unknown(target, proxy):
    """An oversized Query "SET search_path = ss_a; COMMIT; SELECT 1/0": the
    SET commits (the COMMIT ends the implicit transaction), the SELECT fails;
    the server keeps ss_a.  pgfold cannot know: it must not vouch for the
    default search_path.  (An earlier version cleared settings_unknown when it
    restored the failed transaction's snapshot.)"""
    conn = target.connect(autocommit=True)
    try:
        pid = conn.get_backend_pid()
        cur = conn.cursor()
        with pytest.raises(psycopg2.errors.DivisionByZero):
            cur.execute(f"SET search_path = ss_a; COMMIT; SELECT 1/0 {PADDING}")
        assert show(cur, "search_path") == "ss_a"
        st = state_of(proxy, pid)
        assert st["settings_unknown"] is True or effective(st, "search_path") is not None, st
    finally:
        conn.close()


# --------------------------------------------------------------------------
# raw wire: several messages in one write, before any answer


def wire_login(target):
    w = target.wire()
    w.startup("app", "shop")
    return w


def wire_pid(w):
    return w.backend_key[0]


def test_wire_session_found_by_client_port(target, proxy):
    with wire_login(target) as w:
        port = w.sock.getsockname()[1]
        s = session_of(proxy, wire_pid(w))
        assert s["client"] == f"127.0.0.1:{port}"
        r = w.simple_query("SELECT pg_backend_pid()")
        assert int(r["rows"][0][0]) == wire_pid(w)


def test_wire_pipelined_simple_queries(target, proxy):
    with wire_login(target) as w:
        pid = wire_pid(w)
        from wire import query
        w.send(query("BEGIN") + query("SET search_path = ss_a, public") + query("INSERT INTO ss_items VALUES (20)")
               + query("SELECT 1/0") + query("ROLLBACK") + query("SET search_path = ss_c"))
        results = [w.collect() for _ in range(6)]
        assert [r["status"] for r in results] == ["T", "T", "T", "E", "I", "I"]
        st = state_of(proxy, pid)
        assert (st["transaction"], st["wrote"]) == ("idle", False)
        assert st["settings"] == {"search_path": "SET search_path = ss_c"}
        assert w.simple_query("SHOW search_path")["rows"] == [["ss_c"]]
        assert session_of(proxy, pid)["inflight"] == 0


def test_wire_extended_pipeline_two_syncs(target, proxy):
    """Execute SET ss_a; Sync; Execute SET ss_b; Execute SELECT 1/0; Sync, in
    one write: the first SET commits, the second is rolled back with its
    implicit transaction, so the server has ss_a.  (An earlier version,
    tracking transactions by what was sent, reported ss_b.)"""
    from wire import bind, execute, parse, sync
    with wire_login(target) as w:
        pid = wire_pid(w)

        def pbe(sql):
            return parse(sql) + bind() + execute()
        w.send(pbe("SET search_path = ss_a") + sync() + pbe("SET search_path = ss_b") + pbe("SELECT 1/0") + sync())
        first, second = w.collect(), w.collect()
        assert first["errors"] == [] and second["errors"][0]["C"] == "22012"
        assert w.simple_query("SHOW search_path")["rows"] == [["ss_a"]]
        st = state_of(proxy, pid)
        assert effective(st, "search_path") == "SET search_path = ss_a", st
        assert session_of(proxy, pid)["inflight"] == 0


def test_wire_pipelined_rollback_after_set(target, proxy):
    """Query "SET search_path = ss_a" and Query "ROLLBACK" sent together: the
    SET commits in its own implicit transaction (the ROLLBACK only warns), so
    the server keeps ss_a.  (An earlier version 'restored' the default.)"""
    from wire import query
    with wire_login(target) as w:
        pid = wire_pid(w)
        w.send(query("SET search_path = ss_a") + query("ROLLBACK"))
        w.collect()
        second = w.collect()
        assert second["notices"] and second["notices"][0]["C"] == "25P01"  # no transaction in progress
        assert w.simple_query("SHOW search_path")["rows"] == [["ss_a"]]
        st = state_of(proxy, pid)
        assert effective(st, "search_path") == "SET search_path = ss_a", st


def test_wire_empty_prepared_statement(target, proxy):
    """Parse(""), Bind, Execute, Sync (pgjdbc's Connection.isValid() runs
    prepareStatement("").executeUpdate()): an empty statement does nothing.
    (An earlier version marked the session settings_unknown for good.)"""
    from wire import bind, execute, parse, sync
    with wire_login(target) as w:
        pid = wire_pid(w)
        w.send(parse("") + bind() + execute() + sync())
        r = w.collect()
        assert b"I" in r["types"] and r["errors"] == []  # EmptyQueryResponse
        st = state_of(proxy, pid)
        assert st["settings_unknown"] is False, st


def test_bug_wire_portal_bound_before_earlier_ready(target, proxy):
    """[Parse s, Bind "" s, Execute, Sync, Bind "p" s] in one write, then,
    once the first ReadyForQuery came back, [Execute "p", Sync]: the second
    implicit transaction binds p before the first one's ReadyForQuery and
    runs it after.  pgfold forgets every portal at ReadyForQuery 'I', also p,
    so the Execute is unknown and the session is settings_unknown for good."""
    from wire import bind, execute, parse, sync
    with wire_login(target) as w:
        pid = wire_pid(w)
        w.send(parse("SELECT id FROM ss_items WHERE id = $1", name="s") + bind(["1"], statement="s") + execute()
               + sync() + bind(["2"], portal="p", statement="s"))
        assert w.collect()["errors"] == []
        w.send(execute("p") + sync())
        r = w.collect()
        assert r["errors"] == [] and r["status"] == "I"
        st = state_of(proxy, pid)
        assert st["settings_unknown"] is False, st


def test_bug_reset_all_drops_set_local_role(target, proxy):
    """BEGIN; SET LOCAL ROLE ss_role; RESET ALL -> the server still runs as
    ss_role until the block ends (role is GUC_NO_RESET_ALL, SET LOCAL
    included); pgfold drops every SET LOCAL and reports no role."""
    conn = target.connect(autocommit=True)
    try:
        pid = conn.get_backend_pid()
        cur = conn.cursor()
        cur.execute("BEGIN")
        cur.execute("SET LOCAL ROLE ss_role")
        cur.execute("RESET ALL")
        cur.execute("SELECT current_user")
        assert cur.fetchone()[0] == "ss_role"
        st = state_of(proxy, pid)
        assert effective(st, "role") is not None, st
        cur.execute("COMMIT")
    finally:
        conn.close()
