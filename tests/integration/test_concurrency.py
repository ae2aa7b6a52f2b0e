"""500 concurrent client connections, directly and through pgfold (psycopg 3
async): every client runs a query returning its own number while all 500
are open at once, all must succeed with the right answer, and pgfold's
/stats must show clients_active reach 500 (then drop back once they close)."""

import asyncio

import psycopg
import pytest

from pgharness import wait_until

N_CLIENTS = 500


async def run_clients(target, n):
    held = asyncio.Event()
    opened = 0
    all_open = asyncio.Event()
    peak = {"clients_active": None}

    async def client(i):
        nonlocal opened
        conn = await psycopg.AsyncConnection.connect(target.dsn(), autocommit=True)
        try:
            opened += 1
            if opened == n:
                all_open.set()
            cur = await conn.execute("SELECT %s::int, pg_backend_pid()", (i,))
            row = await cur.fetchone()
            await held.wait()  # keep every connection open until all ran
            cur = await conn.execute("SELECT %s::int * 2", (i,))
            return row[0], (await cur.fetchone())[0], row[1]
        finally:
            await conn.close()

    tasks = [asyncio.ensure_future(client(i)) for i in range(n)]
    try:
        await asyncio.wait_for(all_open.wait(), 90)
        if target.via_pgfold:
            loop = asyncio.get_running_loop()
            stats = await loop.run_in_executor(None, target.proxy.stats)
            peak["clients_active"] = stats["clients_active"]
        held.set()
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 90)
    finally:
        held.set()
        for t in tasks:
            t.cancel()
    return results, peak


@pytest.mark.timeout(240)
def test_500_concurrent_connections(target):
    results, peak = asyncio.run(run_clients(target, N_CLIENTS))
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, f"{len(errors)} of {N_CLIENTS} clients failed, first: {errors[0]!r}"
    assert [(a, b) for a, b, _ in results] == [(i, 2 * i) for i in range(N_CLIENTS)]
    assert len({pid for _, _, pid in results}) == N_CLIENTS, "two clients shared a backend"
    if target.via_pgfold:
        assert peak["clients_active"] >= N_CLIENTS, f"/stats clients_active was {peak['clients_active']}"
        wait_until(lambda: target.proxy.stats()["clients_active"] < 10, 30,
                   "clients_active to drop after the clients closed")
