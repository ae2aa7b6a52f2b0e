"""pgbench directly and through pgfold: initialization (COPY-heavy), then the
TPC-B-like script with -M simple / extended / prepared and a custom script in
pipeline mode, each for a fixed number of transactions.  pgbench must exit 0,
process exactly clients x transactions with none failed, and the balances it
wrote must add up (sum of history deltas == sum of account balances)."""

import re
import subprocess

import pytest

PGBENCH = "/usr/bin/pgbench"
CLIENTS, TXNS = 8, 200


def pgbench(target, args, timeout=180):
    return subprocess.run([PGBENCH] + args, env=target.env(dbname="bench"), capture_output=True,
                          text=True, timeout=timeout)


def processed(output):
    m = re.search(r"number of transactions actually processed: (\d+)/(\d+)", output)
    assert m, f"no transaction count in pgbench output:\n{output}"
    return int(m.group(1)), int(m.group(2))


def failed_count(output):
    m = re.search(r"number of failed transactions: (\d+)", output)
    return int(m.group(1)) if m else 0


def check_consistent(postgres):
    (accounts, history), = postgres.query(
        "SELECT (SELECT sum(abalance) FROM pgbench_accounts), "
        "(SELECT coalesce(sum(delta), 0) FROM pgbench_history)", dbname="bench")
    assert accounts == history, f"account balances {accounts} != history deltas {history}"


@pytest.fixture
def initialized(target, postgres):
    """pgbench -i through the target (this is itself a COPY + DDL workout)."""
    proc = pgbench(target, ["-i", "-s", "1", "-q"])
    assert proc.returncode == 0, proc.stderr
    assert "done in" in proc.stderr
    (n,), = postgres.query("SELECT count(*) FROM pgbench_accounts", dbname="bench")
    assert n == 100000
    return target


@pytest.mark.timeout(240)
@pytest.mark.parametrize("mode", ["simple", "extended", "prepared"])
def test_pgbench_tpcb(initialized, postgres, mode):
    proc = pgbench(initialized, ["-n", "-M", mode, "-c", str(CLIENTS), "-j", "2", "-t", str(TXNS)])
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert processed(out) == (CLIENTS * TXNS, CLIENTS * TXNS)
    assert failed_count(out) == 0
    (n,), = postgres.query("SELECT count(*) FROM pgbench_history", dbname="bench")
    assert n == CLIENTS * TXNS
    check_consistent(postgres)


@pytest.mark.timeout(240)
def test_pgbench_new_connection_per_transaction(initialized):
    """-C: a fresh connection (startup, login, Terminate) for every transaction."""
    proc = pgbench(initialized, ["-n", "-C", "-S", "-M", "extended", "-c", "4", "-j", "2", "-t", "100"])
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert processed(out) == (400, 400)
    assert failed_count(out) == 0


@pytest.mark.timeout(240)
def test_pgbench_pipeline_script(initialized, postgres, tmp_path):
    script = tmp_path / "pipeline.sql"
    script.write_text(
        "\\set aid random(1, 100000)\n"
        "\\set delta random(-5000, 5000)\n"
        "\\startpipeline\n"
        "UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;\n"
        "SELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n"
        "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) "
        "VALUES (1, 1, :aid, :delta, CURRENT_TIMESTAMP);\n"
        "\\endpipeline\n")
    proc = pgbench(initialized, ["-n", "-M", "prepared", "-c", "2", "-t", "300", "-f", str(script)])
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert processed(out) == (600, 600)
    (n,), = postgres.query("SELECT count(*) FROM pgbench_history", dbname="bench")
    assert n == 600
    check_consistent(postgres)
