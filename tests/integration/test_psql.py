"""psql scripts run directly and through pgfold: \\copy in and out,
multi-statement query strings (\\; and -c), DO blocks with notices, a
transaction, a large \\copy to stdout, and scripts that stop on an error
(ON_ERROR_STOP).  stdout and stderr must be identical both ways and hold the
expected values."""

import subprocess

import pytest

PSQL = "/usr/bin/psql"

MAIN_SCRIPT = r"""
CREATE TEMP TABLE items (id int PRIMARY KEY, name text NOT NULL, price numeric(10,2));
\copy items FROM '{items_csv}' WITH (FORMAT csv, HEADER true)
SELECT count(*) AS n, sum(price) AS total FROM items;
SELECT 1 AS one \; SELECT 'two' AS two \; SELECT 3 AS three;
DO $$
DECLARE n int;
BEGIN
  SELECT count(*) INTO n FROM items;
  RAISE NOTICE 'items loaded: %', n;
  UPDATE items SET price = price * 2 WHERE id % 2 = 0;
END
$$;
SELECT id, name, price FROM items ORDER BY id LIMIT 5;
BEGIN;
INSERT INTO items VALUES (100000, 'rolled back', 1);
ROLLBACK;
SELECT count(*) AS after_rollback FROM items WHERE id = 100000;
\copy (SELECT id, upper(name) FROM items WHERE id <= 100 ORDER BY id) TO '{out_csv}' WITH (FORMAT csv)
\copy (SELECT g, md5(g::text) FROM generate_series(1, 50000) g) TO STDOUT
SELECT sum(price) AS doubled_total FROM items;
\echo script done
"""

ERROR_SCRIPT = r"""
CREATE TEMP TABLE t (id int PRIMARY KEY);
INSERT INTO t VALUES (1);
SELECT 'before error' AS marker;
INSERT INTO t VALUES (1);
SELECT 'not reached' AS marker;
"""


@pytest.fixture(scope="module")
def psql_files(tmp_path_factory):
    """Script files shared by both targets, so psql's messages (which name
    the file) are identical."""
    d = tmp_path_factory.mktemp("psql")
    items = d / "items.csv"
    items.write_text("id,name,price\n" + "".join(f"{i},item {i},{i}.25\n" for i in range(1, 1001)))
    return d


def run_psql(target, args, cwd):
    return subprocess.run([PSQL, "-X", "-v", "ON_ERROR_STOP=1"] + args, env=target.env(), cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_psql_script_with_copy_do_and_multistatement(target, psql_files, same_both_ways):
    out_csv = psql_files / f"out-{target.name}.csv"
    script = psql_files / f"main-{target.name}.sql"
    script.write_text(MAIN_SCRIPT.format(items_csv=psql_files / "items.csv", out_csv=out_csv))
    proc = run_psql(target, ["-f", script.name], psql_files)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    total = sum(i + 0.25 for i in range(1, 1001))
    assert f"1000 | {total:.2f}" in out
    for expected in (" one \n-----\n   1\n", " two \n-----\n two\n", " three \n-------\n     3\n",
                     "  1 | item 1 |  1.25\n", "  2 | item 2 |  4.50\n", "script done",
                     "COPY 1000", "after_rollback \n----------------\n              0\n"):
        assert expected in out, f"{expected!r} missing from psql output"
    lines = out.splitlines()
    copy_lines = [ln for ln in lines if "\t" in ln]
    assert len(copy_lines) == 50000 and copy_lines[-1].startswith("50000\t")
    doubled = sum((i + 0.25) * (2 if i % 2 == 0 else 1) for i in range(1, 1001))
    assert f"{doubled:.2f}" in out
    assert "NOTICE:  items loaded: 1000" in proc.stderr
    assert out_csv.read_text() == "".join(f"{i},ITEM {i}\n" for i in range(1, 101))
    same_both_ways(out, "stdout")
    same_both_ways(proc.stderr.replace(target.name, "TARGET"), "stderr")


def test_psql_stops_on_error(target, psql_files, same_both_ways):
    script = psql_files / "error.sql"
    script.write_text(ERROR_SCRIPT)
    proc = run_psql(target, ["-f", script.name], psql_files)
    assert proc.returncode == 3, (proc.returncode, proc.stderr)
    assert "before error" in proc.stdout and "not reached" not in proc.stdout
    assert ('psql:error.sql:5: ERROR:  duplicate key value violates unique constraint "t_pkey"'
            in proc.stderr)
    assert "DETAIL:  Key (id)=(1) already exists." in proc.stderr
    same_both_ways(proc.stdout, "stdout")
    same_both_ways(proc.stderr, "stderr")


def test_psql_c_multistatement_with_error(target, psql_files, same_both_ways):
    proc = run_psql(target, ["-c", "SELECT 10 AS a; SELECT 1/0; SELECT 30 AS c"], psql_files)
    assert proc.returncode == 1
    assert "ERROR:  division by zero" in proc.stderr
    assert "30" not in proc.stdout
    same_both_ways((proc.stdout, proc.stderr))


def test_psql_copy_from_stdin_inline(target, psql_files, same_both_ways):
    script = psql_files / "inline.sql"
    script.write_text("CREATE TEMP TABLE inl (a int, b text);\n"
                      "COPY inl FROM STDIN;\n1\tone\n2\ttwo\n3\tthree\n\\.\n"
                      "SELECT string_agg(b, ',' ORDER BY a) FROM inl;\n")
    proc = run_psql(target, ["-A", "-t", "-f", script.name], psql_files)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "one,two,three"
    same_both_ways(proc.stdout)
