#!/usr/bin/python3
"""cache_checker.py — the stale-read checker of bench/run_cache_bench.sh.

Runs beside pgbench's 90/10 mix for DURATION seconds, through the target
being measured (PORT), over the same hot set of pgbench_accounts rows, whose
abalance only ever grows (every write of the mix adds 1):

  every WRITE_MS it commits `UPDATE pgbench_accounts SET abalance =
  abalance + 1 WHERE aid = k RETURNING abalance` on a hot row k (autocommit)
  and notes w = the value its COMMIT returned; between writes it reads rows
  it wrote with `SELECT abalance FROM pgbench_accounts WHERE aid = k` (the
  text pgbench's reads use, so the entries are the ones the mix fills)
  through the target (p), then directly from PostgreSQL (d).

  stale:  p < w  — a read that began after a COMMIT had returned did not
          see it (the cache served an invalidated result);
  wrong:  p > d  — the target answered a value PostgreSQL never had yet.

Prints one JSON line: {"writes", "reads", "stale", "wrong", "examples"}.
Usage: cache_checker.py PORT DIRECT_PORT DURATION HOT [WRITE_MS]
"""

import json
import random
import sys
import time

import psycopg2


def connect(port):
    conn = psycopg2.connect(host="127.0.0.1", port=port, user="app", password="app", dbname="shop",
                            connect_timeout=10, application_name="cache_checker")
    conn.autocommit = True
    return conn


def main():
    port, direct_port, duration, hot = (int(x) for x in sys.argv[1:5])
    write_ms = int(sys.argv[5]) if len(sys.argv) > 5 else 250
    target, direct = connect(port), connect(direct_port)
    tw, tr, dr = target.cursor(), target.cursor(), direct.cursor()
    floor = {}  # aid -> value its last COMMIT returned
    writes = reads = stale = wrong = 0
    examples = []
    end = time.monotonic() + duration
    next_write = time.monotonic()
    rng = random.Random(7)
    while time.monotonic() < end:
        if time.monotonic() >= next_write:
            aid = rng.randint(1, hot)
            tw.execute(f"UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = {aid} RETURNING abalance")
            floor[aid] = tw.fetchone()[0]
            writes += 1
            next_write += write_ms / 1000.0
            continue
        if not floor:
            time.sleep(0.001)
            continue
        aid = rng.choice(list(floor))
        sql = f"SELECT abalance FROM pgbench_accounts WHERE aid = {aid}"
        tr.execute(sql)
        p = tr.fetchone()[0]
        dr.execute(sql)
        d = dr.fetchone()[0]
        reads += 1
        if p < floor[aid]:
            stale += 1
            if len(examples) < 5:
                examples.append(f"aid {aid}: read {p} after COMMIT returned {floor[aid]}")
        if p > d:
            wrong += 1
            if len(examples) < 5:
                examples.append(f"aid {aid}: read {p}, PostgreSQL has {d}")
        time.sleep(0.002)
    print(json.dumps({"writes": writes, "reads": reads, "stale": stale, "wrong": wrong, "examples": examples}))


if __name__ == "__main__":
    main()
