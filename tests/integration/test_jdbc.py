"""PgJDBC (Debian's /usr/share/java/postgresql.jar) directly and through
pgfold: tests/java/JdbcProbe.java is compiled with javac at test time and
run against each target.  It uses prepareThreshold=2 so named server-side
statements are used (checked in pg_prepared_statements), a batch insert, a
rollback, a unique violation (SQLState 23505) and a fetch-size cursor."""

import shutil
import subprocess
from pathlib import Path

import pytest

JAR = Path("/usr/share/java/postgresql.jar")
SOURCE = Path(__file__).resolve().parents[1] / "java" / "JdbcProbe.java"


@pytest.fixture(scope="module")
def probe_classes(tmp_path_factory):
    javac = shutil.which("javac")
    if not javac or not JAR.exists():
        pytest.fail("javac or /usr/share/java/postgresql.jar missing "
                    "(default-jdk-headless, libpostgresql-jdbc-java)")
    out = tmp_path_factory.mktemp("jdbc")
    proc = subprocess.run([javac, "-cp", str(JAR), "-d", str(out), str(SOURCE)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.mark.timeout(180)
def test_jdbc_prepared_statements_batch_and_errors(probe_classes, target, same_both_ways):
    proc = subprocess.run(["java", "-cp", f"{JAR}:{probe_classes}", "JdbcProbe", target.host,
                           str(target.port)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines == [
        "squares=1,4,9,16,25,36",
        "server_prepare=true",
        "named_statements_on_server=1",
        "batch_rows=50",
        'error=23505 ERROR: duplicate key value violates unique constraint "jt_pkey"',
        "rows=50 qty_sum=12750 last=item-50",
        "session=app/shop/pgfold-jdbc-probe",
    ]
    same_both_ways(lines)
