"""psycopg2 (libpq, simple query protocol) against PostgreSQL directly and
through pgfold: types, server errors with their SQLSTATEs, COPY both ways,
large results and server-side cursors, notices, transactions, session state
and pg_stat_statements counts.  Each test asserts the real values and that
both targets saw the same."""

import datetime
import decimal
import hashlib
import io

import psycopg2
import psycopg2.errors
import psycopg2.extras
import pytest


def test_query_types_roundtrip(target, same_both_ways):
    values = (42, -9_000_000_000, "héllo wörld ✓", decimal.Decimal("12345.6789"),
              datetime.date(2024, 2, 29), b"\x00\x01\xffbinary", [1, 2, 3], None, True,
              {"a": [1, 2]})
    with target.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT %s::int, %s::bigint, %s::text, %s::numeric, %s::date, %s::bytea, "
                    "%s::int[], %s::text, %s::bool, %s::jsonb",
                    values[:9] + (psycopg2.extras.Json(values[9]),))
        row = cur.fetchone()
    row = tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
    assert row == values
    same_both_ways(repr(row))


@pytest.mark.parametrize("sql,sqlstate,exc", [
    ("SELECT 1/0", "22012", psycopg2.errors.DivisionByZero),
    ("SELEC 1", "42601", psycopg2.errors.SyntaxError),
    ("SELECT * FROM no_such_table_xyz", "42P01", psycopg2.errors.UndefinedTable),
    ("SELECT 'abc'::int", "22P02", psycopg2.errors.InvalidTextRepresentation),
    ("DO $$ BEGIN RAISE EXCEPTION 'custom failure %', 7 USING ERRCODE = 'P0001'; END $$",
     "P0001", psycopg2.errors.RaiseException),
])
def test_server_error_sqlstate_and_recovery(target, same_both_ways, sql, sqlstate, exc):
    with target.connect() as conn:
        cur = conn.cursor()
        with pytest.raises(exc) as info:
            cur.execute(sql)
        assert info.value.pgcode == sqlstate
        assert info.value.diag.severity == "ERROR"
        conn.rollback()
        cur.execute("SELECT 'still usable'")
        assert cur.fetchone() == ("still usable",)
        same_both_ways((info.value.pgcode, info.value.diag.message_primary))


def test_unique_violation_details(target, same_both_ways):
    with target.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE uv (id int PRIMARY KEY)")
        cur.execute("INSERT INTO uv VALUES (1)")
        with pytest.raises(psycopg2.errors.UniqueViolation) as info:
            cur.execute("INSERT INTO uv VALUES (1)")
        diag = info.value.diag
        assert info.value.pgcode == "23505"
        assert diag.constraint_name == "uv_pkey"
        assert diag.message_detail == "Key (id)=(1) already exists."
        same_both_ways((diag.message_primary, diag.message_detail))


def test_copy_from_stdin_and_to_stdout(target, same_both_ways):
    rows = "".join(f"{i}\tname {i}\t{i * 3}\n" for i in range(20000))
    with target.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE cp (id int, name text, score bigint)")
        cur.copy_expert("COPY cp FROM STDIN", io.StringIO(rows))
        assert cur.rowcount == 20000
        cur.execute("SELECT count(*), sum(id), sum(score) FROM cp")
        assert cur.fetchone() == (20000, sum(range(20000)), 3 * sum(range(20000)))
        out = io.StringIO()
        cur.copy_expert("COPY (SELECT * FROM cp ORDER BY id) TO STDOUT", out)
    assert out.getvalue() == rows, "COPY TO STDOUT output differs from what COPY FROM loaded"
    same_both_ways(len(out.getvalue()))


def test_copy_bad_data_reports_error_and_recovers(target, same_both_ways):
    with target.connect() as conn:
        cur = conn.cursor()
        cur.execute("CREATE TEMP TABLE cpbad (id int)")
        conn.commit()
        with pytest.raises(psycopg2.errors.InvalidTextRepresentation) as info:
            cur.copy_expert("COPY cpbad FROM STDIN", io.StringIO("1\n2\nthree\n4\n"))
        assert info.value.pgcode == "22P02"
        conn.rollback()
        cur.execute("SELECT count(*) FROM cpbad")
        assert cur.fetchone() == (0,)
        same_both_ways(info.value.diag.context)


def test_large_result_fetchall(target, same_both_ways):
    with target.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT g, md5(g::text) FROM generate_series(1, 200000) g")
        rows = cur.fetchall()
    assert len(rows) == 200000
    assert sum(r[0] for r in rows) == 200000 * 200001 // 2
    assert rows[-1] == (200000, hashlib.md5(b"200000").hexdigest())
    same_both_ways(hash(tuple(r[1] for r in rows[::997])))


def test_single_large_value(target):
    with target.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT repeat('ab', 8 * 1024 * 1024)")
        (value,) = cur.fetchone()
    assert len(value) == 16 * 1024 * 1024 and value[:4] == "abab" and value[-2:] == "ab"


def test_large_parameter_sent(target):
    payload = "z" * (4 * 1024 * 1024)
    with target.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT length(%s), md5(%s)", (payload, payload))
        length, digest = cur.fetchone()
    assert length == len(payload) and digest == hashlib.md5(payload.encode()).hexdigest()


def test_named_cursor_streams_rows(target, same_both_ways):
    with target.connect() as conn:
        cur = conn.cursor(name="stream_cur")
        cur.itersize = 1000
        cur.execute("SELECT g FROM generate_series(1, 100000) g")
        total = count = 0
        for (g,) in cur:
            total += g
            count += 1
        cur.close()
    assert (count, total) == (100000, 100000 * 100001 // 2)
    same_both_ways(total)


def test_notices_reach_client(target, same_both_ways):
    with target.connect() as conn, conn.cursor() as cur:
        cur.execute("DO $$ BEGIN RAISE NOTICE 'first notice %', 1; RAISE WARNING 'a warning'; "
                    "RAISE NOTICE 'second notice'; END $$")
        notices = [n.strip() for n in conn.notices]
    assert notices == ["NOTICE:  first notice 1", "WARNING:  a warning", "NOTICE:  second notice"]
    same_both_ways(notices)


def test_transactions_commit_and_rollback(target, postgres, same_both_ways):
    table = f"tx_{target.name}"
    postgres.query(f"DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (id int); "
                   f"ALTER TABLE {table} OWNER TO app")
    try:
        with target.connect() as a, target.connect() as b:
            ca, cb = a.cursor(), b.cursor()
            ca.execute(f"INSERT INTO {table} VALUES (1)")
            cb.execute(f"SELECT count(*) FROM {table}")
            assert cb.fetchone() == (0,), "uncommitted row visible to another session"
            b.rollback()
            a.commit()
            cb.execute(f"SELECT count(*) FROM {table}")
            assert cb.fetchone() == (1,)
            b.rollback()
            ca.execute(f"INSERT INTO {table} VALUES (2)")
            ca.execute("SAVEPOINT s1")
            ca.execute(f"INSERT INTO {table} VALUES (3)")
            ca.execute("ROLLBACK TO SAVEPOINT s1")
            a.commit()
            ca.execute(f"INSERT INTO {table} VALUES (4)")
            a.rollback()
            cb.execute(f"SELECT array_agg(id ORDER BY id) FROM {table}")
            result = cb.fetchone()[0]
        assert result == [1, 2]
        same_both_ways(result)
    finally:
        postgres.query(f"DROP TABLE IF EXISTS {table}")


def test_failed_transaction_state(target, same_both_ways):
    with target.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
        with pytest.raises(psycopg2.errors.DivisionByZero):
            cur.execute("SELECT 1/0")
        with pytest.raises(psycopg2.errors.InFailedSqlTransaction) as info:
            cur.execute("SELECT 2")
        assert info.value.pgcode == "25P02"
        conn.rollback()
        cur.execute("SELECT 3")
        assert cur.fetchone() == (3,)
        same_both_ways(info.value.pgcode)


def test_session_state_persists(target, same_both_ways):
    with target.connect(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("SET work_mem = '7MB'")
        cur.execute("CREATE TEMP TABLE sess (v int)")
        cur.execute("INSERT INTO sess VALUES (11)")
        cur.execute("PREPARE p(int) AS SELECT $1 * 3")
        cur.execute("SHOW work_mem")
        assert cur.fetchone() == ("7MB",)
        cur.execute("SELECT v FROM sess")
        assert cur.fetchone() == (11,)
        cur.execute("EXECUTE p(5)")
        assert cur.fetchone() == (15,)
        cur.execute("SELECT pg_backend_pid() = pg_backend_pid()")
        assert cur.fetchone() == (True,)


def test_parameter_status_relayed(target, same_both_ways):
    with target.connect() as conn:
        status = {k: conn.get_parameter_status(k) for k in
                  ("server_version", "server_encoding", "client_encoding", "DateStyle",
                   "integer_datetimes", "standard_conforming_strings", "application_name")}
        assert status["server_version"].startswith("15.")
        assert status["server_encoding"] == "UTF8"
        assert status["application_name"] == f"pgfold-tests-{target.name}"
        conn.cursor().execute("SET application_name = 'renamed'")
        assert conn.get_parameter_status("application_name") == "renamed"
        del status["application_name"]
        same_both_ways(status)


def test_startup_options_reach_server(target, same_both_ways):
    with target.connect(options="-c work_mem=12MB -c search_path=pg_catalog,public") as conn:
        cur = conn.cursor()
        cur.execute("SHOW work_mem")
        work_mem = cur.fetchone()[0]
        cur.execute("SHOW search_path")
        path = cur.fetchone()[0]
    assert (work_mem, path) == ("12MB", "pg_catalog,public")
    same_both_ways((work_mem, path))


def test_multi_statement_query_string(target, same_both_ways):
    with target.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE ms (v int); INSERT INTO ms VALUES (1), (2); "
                    "UPDATE ms SET v = v * 10; SELECT sum(v) FROM ms")
        assert cur.fetchone() == (30,)


def test_pg_stat_statements_counts_calls(target, postgres):
    """Every query sent through the target reaches the server exactly once."""
    table = f"pss_{target.name}"
    postgres.query(f"DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (id int); "
                   f"INSERT INTO {table} SELECT generate_series(1, 10); "
                   f"ALTER TABLE {table} OWNER TO app")
    postgres.query("SELECT pg_stat_statements_reset()")
    try:
        with target.connect() as conn, conn.cursor() as cur:
            for i in range(7):
                cur.execute(f"SELECT count(*) FROM {table} WHERE id > %s", (i,))
                assert cur.fetchone() == (10 - i,)
        rows = postgres.query(
            "SELECT calls, rows FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
            "WHERE d.datname = 'shop' AND query LIKE %s", (f"SELECT count(*) FROM {table} WHERE%",))
        assert rows == [(7, 7)]
    finally:
        postgres.query(f"DROP TABLE IF EXISTS {table}")


def test_large_object_function_calls(target, same_both_ways):
    """libpq's lo_* calls use the FunctionCall ('F') protocol message."""
    data = bytes(range(256)) * 4096  # 1 MiB
    with target.connect() as conn:
        lob = conn.lobject(0, "wb")
        oid = lob.oid
        assert lob.write(data) == len(data)
        lob.close()
        lob = conn.lobject(oid, "rb")
        lob.seek(1000)
        assert lob.read(10) == data[1000:1010]
        lob.seek(0)
        back = lob.read()
        lob.close()
        assert back == data
        conn.lobject(oid).unlink()
        conn.commit()
    same_both_ways(len(back))
