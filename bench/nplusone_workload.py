#!/usr/bin/python3
"""nplusone_workload.py — the SQLAlchemy 1.4 side of bench/run_nplusone_bench.sh.

Loads every user of a seeded blog schema (users, posts) and then each user's
posts, either lazily (`lazy="select"`: 1 + N statements, the N+1) or with
`selectinload(User.posts)` (2 statements), through SQLAlchemy 1.4 and
psycopg2 (which sends every statement as a simple Query with its literals
inline), and times it.

    nplusone_workload.py --target NAME MODE URL [--target ...]
                         [--cpu NAME ...] --stats-url URL
                         [--rounds 5] [--warmup 2] [--out results.json]

MODE is lazy or selectin.  Every target is warmed up --warmup times (which
also lets pgfold learn the N+1 pattern), then timed --rounds times, the
targets alternating with their order rotated each round.  Every load (warm-up
or timed) must return exactly the same data as the first one, else it exits
1.  Then, for the --cpu targets (alternating the same way), the backend's own
work per load from pg_stat_statements (reset before each load, read through
--stats-url, a direct connection): statements (calls), total_exec_time and
total_plan_time, in the current database, the statements about
pg_stat_statements itself excluded.  Results go to --out as JSON.
"""

import argparse
import gc
import json
import statistics
import sys
import time

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


def guarded(name, fn, *args):
    """fn(*args), or exit 1 with one line naming the target on a database error."""
    try:
        return fn(*args)
    except sa.exc.DBAPIError as e:
        msg = " ".join(str(e.orig).split())
        print(f"nplusone_workload: {name}: {type(e.orig).__name__}: {msg}", file=sys.stderr)
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
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--out")
    args = ap.parse_args()

    names = [t[0] for t in args.target]
    modes = {t[0]: t[1] for t in args.target}
    for n, m in modes.items():
        if m not in ("lazy", "selectin"):
            ap.error(f"{n}: mode must be lazy or selectin, not {m}")
    for n in args.cpu:
        if n not in modes:
            ap.error(f"--cpu {n}: no such target")
    if args.cpu and not args.stats_url:
        ap.error("--cpu needs --stats-url")
    engines = {t[0]: sa.create_engine(t[2], future=True, pool_size=1, max_overflow=0) for t in args.target}

    reference = None
    checked = 0

    def check(name, data):
        nonlocal reference, checked
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
            check(name, guarded(name, timed_load, engines[name], modes[name])[1])

    times = {n: [] for n in names}
    for r in range(args.rounds):
        for name in rotated(names, r):
            secs, data = guarded(name, timed_load, engines[name], modes[name])
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
                    check(name, guarded(name, load, engines[name], modes[name]))
                    cur.execute(STATS_SQL)
                    calls, exec_ms, plan_ms, posts_calls, rows = cur.fetchone()
                    cpu[name].append({"calls": calls, "exec_ms": exec_ms, "plan_ms": plan_ms,
                                      "posts_calls": posts_calls, "rows": rows})
        stats.close()

    for e in engines.values():
        e.dispose()
    result = {
        "users": len(reference),
        "posts": sum(len(u[3]) for u in reference),
        "loads_checked": checked,
        "rounds": args.rounds,
        "warmup": args.warmup,
        "targets": [{"name": t[0], "mode": t[1]} for t in args.target],
        "times": times,
        "cpu": cpu,
        "versions": {"python": sys.version.split()[0], "sqlalchemy": sa.__version__,
                     "psycopg2": psycopg2.__version__.split()[0]},
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
