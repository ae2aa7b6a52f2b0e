"""psycopg 3 (extended query protocol) against PostgreSQL directly and through
pgfold: pipeline mode (many Parse/Bind/Execute before one Sync, errors inside
a pipeline), COPY with copy.write / write_row / rows (text and binary),
server-side prepared statements (prepare=True, verified in
pg_prepared_statements and pg_stat_statements), binary results, async."""

import asyncio

import psycopg
import psycopg.errors
import pytest


def test_pipeline_mode_results(target, same_both_ways):
    with target.connect3() as conn:
        conn.execute("CREATE TEMP TABLE pl (id int PRIMARY KEY, v text)")
        with conn.pipeline():
            cursors = []
            for i in range(200):
                conn.execute("INSERT INTO pl VALUES (%s, %s)", (i, f"v{i}"))
            for i in range(0, 200, 20):
                cursors.append(conn.execute("SELECT v, %s::int FROM pl WHERE id = %s", (i, i)))
            count_cur = conn.execute("SELECT count(*) FROM pl")
        results = [c.fetchone() for c in cursors]
        assert results == [(f"v{i}", i) for i in range(0, 200, 20)]
        assert count_cur.fetchone() == (200,)
        conn.commit()
        same_both_ways(results)


def test_pipeline_error_aborts_rest_and_recovers(target, same_both_ways):
    with target.connect3(autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE ple (id int PRIMARY KEY)")
        with pytest.raises(psycopg.errors.UniqueViolation) as info:
            with conn.pipeline():
                conn.execute("INSERT INTO ple VALUES (1)")
                conn.execute("INSERT INTO ple VALUES (1)")
                conn.execute("INSERT INTO ple VALUES (2)")
        assert info.value.sqlstate == "23505"
        rows = conn.execute("SELECT id FROM ple ORDER BY id").fetchall()
        # statements up to the pipeline's Sync form one implicit transaction:
        # the failure rolls back the first insert and skips the third.
        assert rows == []
        assert conn.execute("SELECT 'ok'").fetchone() == ("ok",)
        same_both_ways(rows)


def test_copy_write_row_and_rows(target, same_both_ways):
    data = [(i, f"name-{i}", i * 7) for i in range(5000)]
    with target.connect3() as conn:
        conn.execute("CREATE TEMP TABLE c3 (id int, name text, n bigint)")
        with conn.cursor() as cur:
            with cur.copy("COPY c3 (id, name, n) FROM STDIN") as copy:
                for row in data:
                    copy.write_row(row)
            assert cur.rowcount == 5000
            with cur.copy("COPY (SELECT id, name, n FROM c3 ORDER BY id) TO STDOUT") as copy:
                copy.set_types(["int4", "text", "int8"])
                back = list(copy.rows())
    assert back == data
    same_both_ways(len(back))


def test_copy_write_raw_text_and_binary(target, same_both_ways):
    raw = "".join(f"{i}\tline {i}\n" for i in range(3000)).encode()
    with target.connect3() as conn:
        conn.execute("CREATE TEMP TABLE craw (id int, t text)")
        with conn.cursor() as cur:
            with cur.copy("COPY craw FROM STDIN") as copy:
                for start in range(0, len(raw), 4096):  # arbitrary chunk borders
                    copy.write(raw[start:start + 4096])
            chunks = []
            with cur.copy("COPY (SELECT * FROM craw ORDER BY id) TO STDOUT") as copy:
                for chunk in copy:
                    chunks.append(bytes(chunk))
            assert b"".join(chunks) == raw
            with cur.copy("COPY (SELECT id, t FROM craw ORDER BY id) TO STDOUT (FORMAT BINARY)") as copy:
                copy.set_types(["int4", "text"])
                binrows = list(copy.rows())
    assert binrows == [(i, f"line {i}") for i in range(3000)]
    same_both_ways(len(chunks) > 0)


def test_prepared_statements_are_server_side(target, postgres, same_both_ways):
    table = f"prep3_{target.name}"
    postgres.query(f"DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (id int, v int); "
                   f"INSERT INTO {table} SELECT g, g * g FROM generate_series(1, 100) g; "
                   f"ALTER TABLE {table} OWNER TO app")
    postgres.query("SELECT pg_stat_statements_reset()")
    try:
        with target.connect3(autocommit=True) as conn:
            values = [conn.execute(f"SELECT v FROM {table} WHERE id = %s", (i,), prepare=True)
                      .fetchone()[0] for i in range(1, 11)]
            prepared = conn.execute("SELECT count(*) FROM pg_prepared_statements "
                                    "WHERE statement LIKE %s", (f"%FROM {table}%",)).fetchone()[0]
        assert values == [i * i for i in range(1, 11)]
        assert prepared == 1, "prepare=True did not leave a named server-side statement"
        rows = postgres.query("SELECT calls FROM pg_stat_statements WHERE query LIKE %s",
                              (f"SELECT v FROM {table}%",))
        assert rows == [(10,)]
        same_both_ways(values)
    finally:
        postgres.query(f"DROP TABLE IF EXISTS {table}")


def test_prepare_threshold_zero_prepares_everything(target, same_both_ways):
    with psycopg.connect(target.dsn(), prepare_threshold=0, autocommit=True) as conn:
        out = [conn.execute("SELECT %s::int + 1", (i,)).fetchone()[0] for i in range(5)]
        # both statements, this one included, are named server-side statements
        names = conn.execute("SELECT array_agg(statement ORDER BY statement) "
                             "FROM pg_prepared_statements").fetchone()[0]
    assert out == [1, 2, 3, 4, 5]
    assert len(names) == 2 and any("+ 1" in n for n in names), names
    same_both_ways(out)


def test_binary_results_and_params(target, same_both_ways):
    with target.connect3() as conn:
        cur = conn.cursor(binary=True)
        cur.execute("SELECT %b::int8, %b::text, %b::bytea, %b::float8",
                    (2 ** 40, "bin ✓", b"\x00\xff", 0.25))
        row = cur.fetchone()
        assert row == (2 ** 40, "bin ✓", b"\x00\xff", 0.25)
        same_both_ways(row)


def test_errors_carry_sqlstate(target, same_both_ways):
    with target.connect3() as conn:
        with pytest.raises(psycopg.errors.DivisionByZero) as info:
            conn.execute("SELECT %s::int / 0", (1,))
        assert info.value.sqlstate == "22012"
        assert info.value.diag.message_primary == "division by zero"
        conn.rollback()
        assert conn.execute("SELECT 1").fetchone() == (1,)
        same_both_ways(info.value.diag.message_primary)


def test_server_side_cursor_fetchmany(target, same_both_ways):
    with target.connect3() as conn:
        with conn.cursor(name="c3named") as cur:
            cur.execute("SELECT g FROM generate_series(1, 50000) g")
            total = 0
            while True:
                batch = cur.fetchmany(4000)
                if not batch:
                    break
                total += sum(r[0] for r in batch)
    assert total == 50000 * 50001 // 2
    same_both_ways(total)


def test_async_connection_queries(target, same_both_ways):
    async def run():
        async with await psycopg.AsyncConnection.connect(target.dsn()) as conn:
            cur = await conn.execute("SELECT %s::int * 2, %s::text", (21, "async"))
            first = await cur.fetchone()
            async with conn.pipeline():
                c1 = await conn.execute("SELECT 1")
                c2 = await conn.execute("SELECT 2")
            return first, await c1.fetchone(), await c2.fetchone()

    result = asyncio.run(run())
    assert result == ((42, "async"), (1,), (2,))
    same_both_ways(result)
