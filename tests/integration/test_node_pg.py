"""node-postgres (npm `pg`, tests/node/pg_client.js) directly and through
pgfold: parameterized queries, a reused named prepared statement, committed
and rolled-back transactions, errors with SQLSTATEs, a 20k-row result,
a multi-statement query and a notice.  The JSON it prints must hold the
expected values and be identical for both targets."""

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

NODE_DIR = Path(__file__).resolve().parents[1] / "node"


@pytest.fixture(scope="module")
def node():
    exe = shutil.which("node")
    if not exe:
        pytest.fail("node is not installed (scripts/install-deps.sh installs it)")
    if not (NODE_DIR / "node_modules" / "pg").is_dir():
        pytest.fail("tests/node/node_modules/pg is missing: run `npm ci` in tests/node "
                    "(scripts/install-deps.sh does)")
    return exe


def test_node_pg_session(node, target, same_both_ways):
    proc = subprocess.run([node, str(NODE_DIR / "pg_client.js")], env=target.env(), cwd=NODE_DIR,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["params"] == [{"sum": 42, "t": "héllo ✓", "n": True}]
    assert out["prepared"] == [2, 4, 6, 8, 10]
    assert out["prepared_on_server"] == 1
    assert out["rows_after_tx"] == [{"id": 1, "v": "v1"}, {"id": 2, "v": "v2"}, {"id": 3, "v": "v3"}]
    assert out["error"] == {"code": "22012", "message": "division by zero", "severity": "ERROR"}
    assert out["unique"] == {"code": "23505", "constraint": "node_t_pkey",
                             "detail": "Key (id)=(1) already exists."}
    assert out["after_error"] == 1
    assert out["big_count"] == 20000
    assert out["big_last"] == [20000, hashlib.md5(b"20000").hexdigest()]
    assert out["multi"] == [[{"a": 1}], [{"b": "b"}]]
    assert out["notices"] == ["hello from node"]
    same_both_ways(out)
