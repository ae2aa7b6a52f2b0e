"""GET /queries (per-shape statistics seen from pgfold) with real traffic through
a real pgfold and PostgreSQL 15: a SQLAlchemy 1.4 ORM workload (users/posts
with a lazy relationship), psycopg2 with inline literals, psycopg 3 with
server-side binding (prepare=True and unnamed statements), and pgbench -S -M
prepared.

For every statement on the test's own tables the calls and rows pgfold
counted are cross-checked with pg_stat_statements (reset together with
POST /queries/reset at the start of each test; entries matched by their
normalized text).  Errors (which pg_stat_statements does not count), the
unparsed entry, ?format=text, ?limit, POST /queries/reset and the /metrics
counters are checked too."""

import json
import re
import subprocess
import urllib.error
import urllib.request

import psycopg
import psycopg2
import pytest
import sqlalchemy as sa
from sqlalchemy import orm

from pgharness import Target

PGBENCH = "/usr/bin/pgbench"
BENCH_DB = "qe_bench"
USERS, POSTS_PER_USER = 6, 3

Base = orm.declarative_base()


class User(Base):
    __tablename__ = "qe_users"
    id = sa.Column(sa.Integer, primary_key=True)
    name = sa.Column(sa.String(80), nullable=False)
    visits = sa.Column(sa.Integer, nullable=False, default=0)
    posts = orm.relationship("Post", back_populates="user", lazy="select", order_by="Post.id")


class Post(Base):
    __tablename__ = "qe_posts"
    id = sa.Column(sa.Integer, primary_key=True)
    user_id = sa.Column(sa.Integer, sa.ForeignKey("qe_users.id"), nullable=False)
    title = sa.Column(sa.String(200), nullable=False)
    user = orm.relationship("User", back_populates="posts")


# --------------------------------------------------------------------------
# fixtures and helpers


@pytest.fixture(scope="module")
def proxy(module_pgfold_factory, postgres):
    postgres.psql(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
    postgres.psql(f"CREATE DATABASE {BENCH_DB} OWNER app")
    # N+1 batching off: /queries is compared with what the backend ran
    # (pg_stat_statements), which batching changes by design.
    server = module_pgfold_factory(name="pgfold-queries", sets={"nplusone.mode": "off"})
    yield server
    postgres.psql(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")


@pytest.fixture(scope="module")
def target(proxy, postgres):
    return Target("pgfold", proxy.port, postgres, proxy)


@pytest.fixture(scope="module")
def engine(target, proxy):
    eng = sa.create_engine(target.url(), future=True, pool_size=1, connect_args={"connect_timeout": 10})
    Base.metadata.drop_all(eng)
    Base.metadata.create_all(eng)
    with orm.Session(eng) as session:
        for u in range(1, USERS + 1):
            user = User(name=f"user {u}", visits=0)
            user.posts = [Post(title=f"post {u}.{p}") for p in range(1, POSTS_PER_USER + 1)]
            session.add(user)
        session.commit()
    yield eng
    Base.metadata.drop_all(eng)
    eng.dispose()


@pytest.fixture
def fresh(proxy, postgres):
    """Both statistics emptied: pgfold's and pg_stat_statements'."""
    proxy.ensure_running()
    reset(proxy)
    postgres.query("SELECT pg_stat_statements_reset()")
    assert queries(proxy)["queries"] == []
    return proxy


def admin_post(proxy, path):
    req = urllib.request.Request(f"http://127.0.0.1:{proxy.admin_port}{path}", data=b"", method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


def reset(proxy):
    status, _, body = admin_post(proxy, "/queries/reset")
    assert status == 200 and json.loads(body) == {"reset": True}, (status, body)


def queries(proxy, query=""):
    status, ctype, body = proxy.admin_get("/queries" + query)
    assert status == 200, f"/queries{query} answered {status}: {body[:300]!r}"
    assert ctype.startswith("application/json"), ctype
    return json.loads(body)


def norm(text):
    """Normalized statement text, comparable between pgfold and pg_stat_statements."""
    return re.sub(r"\s+", " ", text).strip().rstrip(";").strip()


def shapes_on(proxy, table):
    """pgfold entries whose tables include table, by normalized text."""
    out = {}
    for q in queries(proxy)["queries"]:
        if table in q["tables"]:
            key = norm(q["query"])
            assert key not in out, f"two entries with the text {key!r}"
            out[key] = q
    return out


def pgss(postgres, like, dbname="shop"):
    """pg_stat_statements entries of user app in dbname whose text matches like."""
    rows = postgres.query(
        "SELECT query, calls, rows FROM pg_stat_statements "
        "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = %s) AND userid = 'app'::regrole "
        "AND query LIKE %s", (dbname, like))
    out = {}
    for query, calls, nrows in rows:
        key = norm(query)
        calls0, rows0 = out.get(key, (0, 0))
        out[key] = (calls0 + calls, rows0 + nrows)
    return out


def cross_check(proxy, postgres, table, dbname="shop"):
    """Every statement on table: same calls and rows in pgfold and in
    pg_stat_statements (same set of statements).  Returns pgfold's entries."""
    ours = shapes_on(proxy, table)
    theirs = pgss(postgres, f"%{table}%", dbname)
    assert ours, f"pgfold has no entry on {table}: {queries(proxy)}"
    assert set(ours) == set(theirs), \
        f"statements on {table} differ:\npgfold only: {sorted(set(ours) - set(theirs))}\n" \
        f"pg_stat_statements only: {sorted(set(theirs) - set(ours))}"
    for key, q in ours.items():
        assert (q["calls"], q["rows"]) == theirs[key], \
            f"{key!r}: pgfold calls/rows {(q['calls'], q['rows'])}, pg_stat_statements {theirs[key]}"
    return ours


def check_timing(q):
    assert q["total_ms"] >= 0 and q["max_ms"] >= 0
    assert q["mean_ms"] == pytest.approx(q["total_ms"] / q["calls"], rel=0.01, abs=0.002), q
    assert q["max_ms"] <= q["total_ms"] + 0.001, q
    assert q["p99_ms"] <= q["max_ms"] + 0.001, q


def metric(proxy, name):
    status, _, body = proxy.admin_get("/metrics")
    assert status == 200
    m = re.search(rf"^{name} ([0-9.e+]+)$", body.decode(), re.M)
    assert m, f"{name} not in /metrics:\n{body.decode()[:2000]}"
    return float(m.group(1))


# --------------------------------------------------------------------------
# workloads


def test_sqlalchemy_orm_lazy_loading(engine, fresh, postgres):
    proxy = fresh
    with orm.Session(engine) as session:
        users = session.execute(sa.select(User).order_by(User.id)).scalars().all()
        assert len(users) == USERS
        titles = [[p.title for p in u.posts] for u in users]  # one lazy SELECT per user
        assert titles[0] == [f"post 1.{p}" for p in range(1, POSTS_PER_USER + 1)]
        session.execute(sa.update(User).where(User.id <= 2).values(visits=User.visits + 1))
        session.commit()

    ours = cross_check(proxy, postgres, "qe_posts")
    assert len(ours) == 1, ours
    (lazy,) = ours.values()
    assert lazy["kind"] == "read" and lazy["tables"] == ["qe_posts"]
    assert (lazy["calls"], lazy["rows"], lazy["errors"]) == (USERS, USERS * POSTS_PER_USER, 0)
    check_timing(lazy)

    ours = cross_check(proxy, postgres, "qe_users")
    by_kind = {q["kind"]: q for q in ours.values()}
    assert set(by_kind) == {"read", "write"}, ours
    assert (by_kind["read"]["calls"], by_kind["read"]["rows"]) == (1, USERS)
    assert (by_kind["write"]["calls"], by_kind["write"]["rows"]) == (1, 2)
    assert by_kind["write"]["query"].lstrip().upper().startswith("UPDATE")
    # the transaction psycopg2 opened for the Session
    tx = [q for q in queries(proxy)["queries"] if q["kind"] == "transaction"]
    assert {norm(q["query"]).upper() for q in tx} >= {"BEGIN", "COMMIT"}, tx


def test_psycopg2_literals(engine, fresh, postgres):
    proxy = fresh
    conn = psycopg2.connect(Target("pgfold", proxy.port, postgres, proxy).dsn())
    conn.autocommit = True
    try:
        cur = conn.cursor()
        for i in range(20):
            cur.execute("SELECT id, name FROM qe_users WHERE id = %s", (i % USERS + 1,))
            assert cur.fetchall()
        for i in range(4):
            cur.execute("SELECT title FROM qe_posts WHERE user_id IN (%s, %s) ORDER BY id", (1, i + 2))
        for i in range(7):
            cur.execute("UPDATE qe_users SET visits = visits + %s WHERE id = %s", (1, i % 3 + 1))
        cur.execute("UPDATE qe_users SET visits = 0 WHERE id > %s", (2,))
    finally:
        conn.close()

    ours = cross_check(proxy, postgres, "qe_users")
    select = ours["SELECT id, name FROM qe_users WHERE id = $1"]
    assert (select["kind"], select["tables"], select["calls"], select["rows"]) == ("read", ["qe_users"], 20, 20)
    update = ours["UPDATE qe_users SET visits = visits + $1 WHERE id = $2"]
    assert (update["kind"], update["calls"], update["rows"]) == ("write", 7, 7)
    assert ours["UPDATE qe_users SET visits = $1 WHERE id > $2"]["rows"] == USERS - 2
    posts = cross_check(proxy, postgres, "qe_posts")
    (q,) = posts.values()
    assert (q["calls"], q["rows"]) == (4, 4 * 2 * POSTS_PER_USER)
    for q in list(ours.values()) + list(posts.values()):
        check_timing(q)


def test_psycopg3_server_side_binding(engine, fresh, postgres):
    proxy = fresh
    with psycopg.connect(Target("pgfold", proxy.port, postgres, proxy).dsn(), autocommit=True) as conn:
        for i in range(10):
            rows = conn.execute("SELECT title FROM qe_posts WHERE user_id = %s ORDER BY id",
                                (i % USERS + 1,), prepare=True).fetchall()
            assert len(rows) == POSTS_PER_USER
        prepared = conn.execute("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
                                ("%FROM qe_posts%",)).fetchone()[0]
        assert prepared == 1
        for i in range(5):  # unnamed statements, parsed every time
            conn.execute("SELECT name FROM qe_users WHERE id = %s AND visits >= %s", (i + 1, 0),
                         prepare=False).fetchall()
        with conn.pipeline():
            for i in range(8):
                conn.execute("UPDATE qe_users SET visits = visits + 1 WHERE id = %s", (i % USERS + 1,))

    posts = cross_check(proxy, postgres, "qe_posts")
    q = posts["SELECT title FROM qe_posts WHERE user_id = $1 ORDER BY id"]
    assert (q["kind"], q["tables"], q["calls"], q["rows"], q["errors"]) == \
        ("read", ["qe_posts"], 10, 10 * POSTS_PER_USER, 0)
    users = cross_check(proxy, postgres, "qe_users")
    assert users["SELECT name FROM qe_users WHERE id = $1 AND visits >= $2"]["calls"] == 5
    # the literal 1 is masked after the parameters, as pg_stat_statements does
    upd = users["UPDATE qe_users SET visits = visits + $2 WHERE id = $1"]
    assert (upd["kind"], upd["calls"], upd["rows"]) == ("write", 8, 8)


@pytest.mark.timeout(240)
def test_pgbench_select_only_prepared(proxy, postgres):
    init = subprocess.run([PGBENCH, "-i", "-s", "1", "-q", "-h", "127.0.0.1", "-p", str(postgres.port),
                           "-U", "app", BENCH_DB], capture_output=True, text=True, timeout=180)
    assert init.returncode == 0, init.stderr
    proxy.ensure_running()
    reset(proxy)
    postgres.query("SELECT pg_stat_statements_reset()")
    clients, txns = 2, 150
    env = Target("pgfold", proxy.port, postgres, proxy).env(dbname=BENCH_DB)
    run = subprocess.run([PGBENCH, "-n", "-S", "-M", "prepared", "-c", str(clients), "-j", "2", "-t", str(txns)],
                         env=env, capture_output=True, text=True, timeout=180)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert f"number of transactions actually processed: {clients * txns}/{clients * txns}" in out, out

    ours = cross_check(proxy, postgres, "pgbench_accounts", dbname=BENCH_DB)
    q = ours["SELECT abalance FROM pgbench_accounts WHERE aid = $1"]
    assert (q["kind"], q["tables"], q["calls"], q["rows"], q["errors"]) == \
        ("read", ["pgbench_accounts"], clients * txns, clients * txns, 0)
    check_timing(q)


def test_errors_and_unparsed(engine, fresh, postgres):
    proxy = fresh
    conn = psycopg2.connect(Target("pgfold", proxy.port, postgres, proxy).dsn())
    conn.autocommit = True
    try:
        cur = conn.cursor()
        for i in range(3):
            with pytest.raises(psycopg2.errors.DivisionByZero):
                cur.execute("SELECT id / 0 FROM qe_users WHERE id = %s", (i + 1,))
        cur.execute("SELECT id / 1 FROM qe_users WHERE id = %s", (1,))
        for _ in range(2):
            with pytest.raises(psycopg2.errors.SyntaxError):
                cur.execute("SELEC name FROM qe_users")
        # the 2nd statement of a Query fails: the 3rd never runs, nor counts
        with pytest.raises(psycopg2.errors.UniqueViolation):
            cur.execute("SELECT 1 FROM qe_posts LIMIT 1; INSERT INTO qe_users (id, name, visits) "
                        "VALUES (1, 'dup', 0); SELECT 2 FROM qe_posts LIMIT 1")
    finally:
        conn.close()

    users = shapes_on(proxy, "qe_users")
    div = users["SELECT id / $1 FROM qe_users WHERE id = $2"]
    # the failing and the succeeding statement share one shape
    assert (div["calls"], div["errors"], div["rows"]) == (4, 3, 1), div
    ins = users["INSERT INTO qe_users (id, name, visits) VALUES ($1, $2, $3)"]
    assert (ins["kind"], ins["calls"], ins["errors"]) == ("write", 1, 1), ins
    posts = shapes_on(proxy, "qe_posts")
    assert [(q["calls"], q["errors"]) for q in posts.values()] == [(1, 0)], posts
    unparsed = [q for q in queries(proxy)["queries"] if q["kind"] == "unparsed"]
    assert len(unparsed) == 1, unparsed
    assert unparsed[0]["query"] is None and unparsed[0]["fingerprint"] == "0" * 16
    assert (unparsed[0]["calls"], unparsed[0]["errors"]) == (2, 2)
    # pg_stat_statements counts only the statement that completed
    assert pgss(postgres, "%qe_users%") == {"SELECT id / $1 FROM qe_users WHERE id = $2": (1, 1)}


# --------------------------------------------------------------------------
# the endpoint itself


def test_text_format_limit_and_reset(engine, fresh, postgres):
    proxy = fresh
    conn = psycopg2.connect(Target("pgfold", proxy.port, postgres, proxy).dsn())
    conn.autocommit = True
    try:
        cur = conn.cursor()
        for i in range(5):
            cur.execute("SELECT name FROM qe_users WHERE id = %s", (i + 1,))
        cur.execute("SELECT   title\n  FROM qe_posts   WHERE id = %s", (1,))
    finally:
        conn.close()

    doc = queries(proxy)
    assert doc["shapes"] == len(doc["queries"]) == 2, doc
    assert doc["evicted"] == 0
    for q in doc["queries"]:
        assert re.fullmatch(r"[0-9a-f]{16}", q["fingerprint"]) and q["fingerprint"] != "0" * 16
    totals = [q["total_ms"] for q in doc["queries"]]
    assert totals == sorted(totals, reverse=True), "entries are ordered by total time"
    assert len(queries(proxy, "?limit=1")["queries"]) == 1

    status, ctype, body = proxy.admin_get("/queries?format=text")
    assert status == 200 and ctype.startswith("text/plain"), (status, ctype)
    lines = body.decode().splitlines()
    header = lines[0].split()
    for col in ("calls", "total_ms", "mean_ms", "p99_ms", "max_ms", "rows", "errors", "kind"):
        assert col in header, lines[0]
    assert len([ln for ln in lines[1:] if ln.strip()]) == 2, lines
    users = next(ln for ln in lines if "FROM qe_users" in ln)
    assert users.split()[0] == "5" and " read " in users, users
    # white space runs collapse to one space
    assert any("SELECT title FROM qe_posts WHERE id = $1" in ln for ln in lines), lines
    for bad in ("?format=xml", "?limit=-1", "?limit=abc"):
        assert proxy.admin_get("/queries" + bad)[0] == 400, bad

    statements = metric(proxy, "pgfold_statements_total")
    assert statements >= 6
    reset(proxy)
    doc = queries(proxy)
    assert doc == {"shapes": 0, "evicted": 0, "queries": []}, doc
    assert proxy.admin_get("/queries?format=text")[0] == 200
    assert proxy.admin_get("/queries/reset")[0] in (404, 405)  # GET is not a reset
    # lifetime counters survive the reset
    assert metric(proxy, "pgfold_statements_total") == statements


def test_metrics(engine, fresh, postgres):
    proxy = fresh
    before = {n: metric(proxy, n) for n in ("pgfold_statements_total", "pgfold_statement_errors_total",
                                            "pgfold_statement_time_seconds_total")}
    assert metric(proxy, "pgfold_query_shapes") == 0
    conn = psycopg2.connect(Target("pgfold", proxy.port, postgres, proxy).dsn())
    conn.autocommit = True
    try:
        cur = conn.cursor()
        for i in range(4):
            cur.execute("SELECT name FROM qe_users WHERE id = %s", (i + 1,))
        with pytest.raises(psycopg2.errors.DivisionByZero):
            cur.execute("SELECT 1/0 FROM qe_users")
    finally:
        conn.close()
    assert metric(proxy, "pgfold_statements_total") == before["pgfold_statements_total"] + 5
    assert metric(proxy, "pgfold_statement_errors_total") == before["pgfold_statement_errors_total"] + 1
    assert metric(proxy, "pgfold_statement_time_seconds_total") >= before["pgfold_statement_time_seconds_total"]
    assert metric(proxy, "pgfold_query_shapes") == 2
    status, _, body = proxy.admin_get("/metrics")
    text = body.decode()
    assert "# TYPE pgfold_statements_total counter" in text
    assert "# TYPE pgfold_query_shapes gauge" in text
