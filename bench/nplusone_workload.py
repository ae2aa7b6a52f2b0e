#!/usr/bin/python3
"""nplusone_workload.py — the application side of bench/run_nplusone_bench.sh.

Loads every user of a seeded blog schema (users, posts) and then each user's
posts, and times it, with one of three client stacks (MODE):

  lazy      SQLAlchemy 1.4 + psycopg2, relationship `lazy="select"`: 1 + N
            statements (the N+1), each a simple Query with its literals
            inline, in a transaction (BEGIN ... ROLLBACK: one new Session);
  selectin  the same with `selectinload(User.posts)` (2 statements);
  psycopg3  psycopg 3 (Debian's python3-psycopg) by hand, server-side
            binding: `conn.execute("SELECT ... FROM posts WHERE user_id = %s",
            (uid,))` per user — extended-protocol statements, one per Sync,
            named prepared statements after psycopg's prepare_threshold (5)
            — on a default connection (not autocommit: BEGIN, 1 + N,
            ROLLBACK);
  node      node-postgres (npm `pg`, from --node-modules) by hand,
            `client.query('SELECT ... WHERE user_id = $1', [id])` per user:
            unnamed extended-protocol statements with an untyped parameter,
            autocommit as a plain Client is; run in bench/nplusone_node.js, a
            node coprocess that times each load itself.

The psycopg 3 and node-postgres statements select the same columns in the
same order as SQLAlchemy's, so every load of every MODE returns the same data.

    nplusone_workload.py --target NAME MODE URL [--target ...]
                         [--cpu NAME ...] --stats-url URL
                         [--node-modules DIR] [--rounds 5] [--warmup 2]
                         [--out results.json]

Every target is warmed up --warmup times (which also lets pgfold learn the
N+1 pattern), then timed --rounds times, the targets alternating with their
order rotated each round.  Every load (warm-up or timed) must return exactly
the same data as the first one, else it exits 1.  Then, for the --cpu
targets (alternating the same way), the backend's own work per load from
pg_stat_statements (reset before each load, read through --stats-url, a
direct connection): statements (calls), total_exec_time and total_plan_time,
in the current database, the statements about pg_stat_statements itself
excluded.  Results go to --out as JSON.
"""

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time

import psycopg
import psycopg2
import sqlalchemy as sa
from sqlalchemy import orm

Base = orm.declarative_base()


class User(Base):
    __tablename__ = "users"
    id = sa.Column(sa.Integer, primary_key=True)
    name = sa.Column(sa.Text, nullable=False)
    email = sa.Column(sa.Text, nullable=False)
    posts = orm.relationship("Post", lazy="select", order_by="Post.id")


class Post(Base):
    __tablename__ = "posts"
    id = sa.Column(sa.Integer, primary_key=True)
    user_id = sa.Column(sa.Integer, sa.ForeignKey("users.id"), nullable=False)
    title = sa.Column(sa.Text, nullable=False)
    body = sa.Column(sa.Text, nullable=False)
    created_at = sa.Column(sa.DateTime, nullable=False)


def load(engine, mode):
    """One workload run: a new Session, every user and each user's posts."""
    out = []
    with orm.Session(engine) as s:
        q = sa.select(User).order_by(User.id)
        if mode == "selectin":
            q = q.options(orm.selectinload(User.posts))
        for u in s.execute(q).scalars():
            out.append((u.id, u.name, u.email,
                        [(p.id, p.user_id, p.title, p.body, p.created_at.isoformat()) for p in u.posts]))
    return out


def timed_load(engine, mode):
    gc.collect()
    t0 = time.perf_counter()
    data = load(engine, mode)
    return time.perf_counter() - t0, data


# psycopg 3 and node-postgres: the same columns in the same order as SQLAlchemy's
# lazy load (posts.id, posts.user_id, ...), written by hand.
PARENT_SQL = "SELECT id, name, email FROM users ORDER BY id"
CHILD_SQL = "SELECT id, user_id, title, body, created_at FROM posts WHERE user_id = %s ORDER BY id"


def load_psycopg3(conn):
    """One psycopg 3 run on an open connection (not autocommit): BEGIN (sent
    by psycopg before the first statement), every user, each user's posts,
    ROLLBACK."""
    out = []
    for uid, name, email in conn.execute(PARENT_SQL).fetchall():
        posts = conn.execute(CHILD_SQL, (uid,)).fetchall()
        out.append((uid, name, email, [(p[0], p[1], p[2], p[3], p[4].isoformat()) for p in posts]))
    conn.rollback()
    return out


class NodeError(Exception):
    pass


class NodeDriver:
    """bench/nplusone_node.js as a coprocess: one JSON line each way per command."""

    def __init__(self, node_modules):
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nplusone_node.js")
        env = dict(os.environ, NODE_PATH=node_modules)
        self.proc = subprocess.Popen(["node", "--expose-gc", script], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=env, text=True)

    def call(self, **cmd):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise NodeError("node exited (status %s)" % self.proc.poll())
        reply = json.loads(line)
        if "error" in reply:
            raise NodeError(reply["error"])
        return reply

    def close(self):
        try:
            self.call(op="close")
        except (NodeError, OSError, ValueError):
            pass
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


class Target:
    """One NAME MODE URL: load() returns the data, timed() (seconds, data)."""

    def __init__(self, name, mode, url, node):
        self.name, self.mode, self.node = name, mode, node
        self.url = url.replace("postgresql+psycopg2://", "postgresql://")
        self.engine = self.conn = None
        if mode in ("lazy", "selectin"):
            self.engine = sa.create_engine(url, future=True, pool_size=1, max_overflow=0)

    def _psycopg3(self):
        if self.conn is None:
            self.conn = psycopg.connect(self.url)
        return self.conn

    def load(self):
        if self.engine is not None:
            return load(self.engine, self.mode)
        if self.mode == "psycopg3":
            return load_psycopg3(self._psycopg3())
        return self.node.call(op="load", name=self.name, url=self.url)["data"]

    def timed(self):
        if self.engine is not None:
            return timed_load(self.engine, self.mode)
        if self.mode == "psycopg3":
            conn = self._psycopg3()
            gc.collect()
            t0 = time.perf_counter()
            data = load_psycopg3(conn)
            return time.perf_counter() - t0, data
        reply = self.node.call(op="load", name=self.name, url=self.url)  # timed by node itself
        return reply["secs"], reply["data"]

    def close(self):
        if self.engine is not None:
            self.engine.dispose()
        if self.conn is not None:
            self.conn.close()


def guarded(name, fn, *args):
    """fn(*args), or exit 1 with one line naming the target on a database error."""
    try:
        return fn(*args)
    except sa.exc.DBAPIError as e:
        msg = " ".join(str(e.orig).split())
        print(f"nplusone_workload: {name}: {type(e.orig).__name__}: {msg}", file=sys.stderr)
        sys.exit(1)
    except (psycopg.Error, NodeError) as e:
        msg = " ".join(str(e).split())
        print(f"nplusone_workload: {name}: {type(e).__name__}: {msg}", file=sys.stderr)
        sys.exit(1)


STATS_SQL = """
SELECT coalesce(sum(calls), 0)::bigint,
       coalesce(sum(total_exec_time), 0)::float8,
       coalesce(sum(total_plan_time), 0)::float8,
       coalesce(sum(calls) FILTER (WHERE query ILIKE '%FROM posts%'), 0)::bigint,
       coalesce(sum(rows), 0)::bigint
  FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
 WHERE d.datname = current_database() AND s.query NOT ILIKE '%pg_stat_statements%'
"""


def rotated(items, r):
    r %= len(items)
    return items[r:] + items[:r]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", nargs=3, action="append", metavar=("NAME", "MODE", "URL"), required=True)
    ap.add_argument("--cpu", action="append", default=[], metavar="NAME")
    ap.add_argument("--stats-url")
    ap.add_argument("--node-modules", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                                           "tests", "node", "node_modules"),
                    help="where node-postgres is installed (default tests/node/node_modules)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--out")
    args = ap.parse_args()

    names = [t[0] for t in args.target]
    modes = {t[0]: t[1] for t in args.target}
    for n, m in modes.items():
        if m not in ("lazy", "selectin", "psycopg3", "node"):
            ap.error(f"{n}: mode must be lazy, selectin, psycopg3 or node, not {m}")
    for n in args.cpu:
        if n not in modes:
            ap.error(f"--cpu {n}: no such target")
    if args.cpu and not args.stats_url:
        ap.error("--cpu needs --stats-url")
    node = NodeDriver(os.path.abspath(args.node_modules)) if "node" in modes.values() else None
    versions = {"python": sys.version.split()[0], "sqlalchemy": sa.__version__,
                "psycopg2": psycopg2.__version__.split()[0], "psycopg": psycopg.__version__,
                "psycopg_impl": psycopg.pq.__impl__, "libpq": psycopg.pq.version()}
    if node:
        versions.update(guarded("node", lambda: node.call(op="version")))
    targets = {t[0]: Target(t[0], t[1], t[2], node) for t in args.target}

    reference = None
    checked = 0

    def check(name, data):
        nonlocal reference, checked
        data = json.loads(json.dumps(data))  # tuples as lists, as node's data comes
        if reference is None:
            reference = data
        elif data != reference:
            diff = next((i for i, (a, b) in enumerate(zip(data, reference)) if a != b), min(len(data), len(reference)))
            print(f"nplusone_workload: {name} ({modes[name]}) loaded different data than {names[0]} "
                  f"(first difference at user #{diff}; {len(data)} users vs {len(reference)})", file=sys.stderr)
            sys.exit(1)
        checked += 1

    for name in names:
        for _ in range(args.warmup):
            check(name, guarded(name, targets[name].timed)[1])

    times = {n: [] for n in names}
    for r in range(args.rounds):
        for name in rotated(names, r):
            secs, data = guarded(name, targets[name].timed)
            check(name, data)
            times[name].append(secs)
        print("nplusone_workload: round %d/%d: %s" % (r + 1, args.rounds, ", ".join(
            "%s %.1f ms" % (n, times[n][-1] * 1000) for n in names)), file=sys.stderr)

    cpu = {n: [] for n in args.cpu}
    if args.cpu:
        stats = psycopg2.connect(args.stats_url.replace("postgresql+psycopg2://", "postgresql://"))
        stats.autocommit = True
        with stats.cursor() as cur:
            for r in range(args.rounds):
                for name in rotated(list(args.cpu), r):
                    cur.execute("SELECT pg_stat_statements_reset()")
                    check(name, guarded(name, targets[name].load))
                    cur.execute(STATS_SQL)
                    calls, exec_ms, plan_ms, posts_calls, rows = cur.fetchone()
                    cpu[name].append({"calls": calls, "exec_ms": exec_ms, "plan_ms": plan_ms,
                                      "posts_calls": posts_calls, "rows": rows})
        stats.close()

    for t in targets.values():
        t.close()
    if node:
        node.close()
    result = {
        "users": len(reference),
        "posts": sum(len(u[3]) for u in reference),
        "loads_checked": checked,
        "rounds": args.rounds,
        "warmup": args.warmup,
        "targets": [{"name": t[0], "mode": t[1]} for t in args.target],
        "times": times,
        "cpu": cpu,
        "versions": versions,
    }
    text = json.dumps(result, indent=1)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    else:
        print(text)
    print("nplusone_workload: %d loads, all equal; medians: %s" % (checked, ", ".join(
        "%s %.1f ms" % (n, statistics.median(times[n]) * 1000) for n in names if times[n])), file=sys.stderr)


if __name__ == "__main__":
    main()
