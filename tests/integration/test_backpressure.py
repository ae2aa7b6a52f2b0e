"""Backpressure: a ~1 GB result streamed to a client that reads slowly at
first (small reads with pauses), then at full speed, through a fresh pgfold
while its RSS (/proc/PID/status VmRSS) is sampled.  pgfold must stop reading
from PostgreSQL while the client lags, so its RSS stays under 64 MiB
(PGFOLD_RSS_LIMIT_MB overrides, e.g. for sanitizer builds), and every byte must
arrive: exactly 1,000,000 rows of 1000 bytes.  The same reader runs directly
against PostgreSQL to check the counting itself."""

import os
import struct
import threading
import time

import pytest

from pgharness import Target
from wire import parse_fields, query

ROWS, WIDTH = 1_000_000, 1000
SQL = f"SELECT repeat('x', {WIDTH}) FROM generate_series(1, {ROWS})"
SLOW_BYTES = 48 * 1024 * 1024  # read this much slowly first
RSS_LIMIT_KIB = int(os.environ.get("PGFOLD_RSS_LIMIT_MB", "64")) * 1024


@pytest.fixture(params=["direct", "pgfold"])
def bp_target(request, postgres, pgfold_factory):
    if request.param == "direct":
        return Target("direct", postgres.port, postgres)
    proxy = pgfold_factory(name="pgfold-backpressure")
    return Target("pgfold", proxy.port, postgres, proxy)


class RssSampler(threading.Thread):
    def __init__(self, proxy):
        super().__init__(daemon=True)
        self.proxy = proxy
        self.samples = []
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                self.samples.append(self.proxy.rss_kib())
            except OSError:
                return
            self.stop.wait(0.02)


def stream(w, deadline):
    """Read the whole result; slow for the first SLOW_BYTES.  Returns counts."""
    sock = w.sock
    buf = bytearray(w.buf)
    w.buf = bytearray()
    pos = rows = value_bytes = received = 0
    tags, errors = [], []
    done = False
    unpack = struct.unpack_from
    while not done:
        if time.monotonic() > deadline:
            raise AssertionError(f"stream not finished in time: {rows} rows, {received} bytes")
        slow = received < SLOW_BYTES
        chunk = sock.recv(16384 if slow else 1 << 20)
        if not chunk:
            raise AssertionError(f"connection closed after {rows} rows")
        received += len(chunk)
        if slow:
            time.sleep(0.002)
        buf += chunk
        end = len(buf)
        while end - pos >= 5:
            t = buf[pos]
            (ln,) = unpack("!I", buf, pos + 1)
            if end - pos < 1 + ln:
                break
            if t == 0x44:  # 'D'
                rows += 1
                value_bytes += unpack("!i", buf, pos + 7)[0]
            elif t == 0x43:  # 'C'
                tags.append(bytes(buf[pos + 5:pos + ln]).rstrip(b"\0").decode())
            elif t == 0x45:  # 'E'
                errors.append(parse_fields(bytes(buf[pos + 5:pos + 1 + ln])))
            elif t == 0x5A:  # 'Z'
                done = True
            pos += 1 + ln
        del buf[:pos]
        pos = 0
    return rows, value_bytes, tags, errors, received


@pytest.mark.timeout(300)
def test_slow_reader_1gb_result_bounded_memory(bp_target):
    sampler = None
    with bp_target.wire(timeout=60) as w:
        w.startup("app", "shop")
        if bp_target.via_pgfold:
            baseline = bp_target.proxy.rss_kib()
            sampler = RssSampler(bp_target.proxy)
            sampler.start()
        start = time.monotonic()
        w.send(query(SQL))
        try:
            rows, value_bytes, tags, errors, received = stream(w, start + 240)
        finally:
            if sampler:
                sampler.stop.set()
                sampler.join(5)
        elapsed = time.monotonic() - start
        # the session is usable afterwards
        assert w.simple_query("SELECT 'after'")["rows"] == [["after"]]
    assert errors == []
    assert tags == [f"SELECT {ROWS}"]
    assert rows == ROWS
    assert value_bytes == ROWS * WIDTH
    assert received >= ROWS * (WIDTH + 11)
    print(f"{bp_target.name}: {received / 1e6:.0f} MB in {elapsed:.1f}s")
    if sampler:
        peak = max(sampler.samples)
        print(f"pgfold RSS baseline {baseline} KiB, peak {peak} KiB over {len(sampler.samples)} samples")
        assert len(sampler.samples) > 20, "too few RSS samples"
        assert peak < RSS_LIMIT_KIB, (f"pgfold RSS peaked at {peak / 1024:.1f} MiB "
                                      f"(limit {RSS_LIMIT_KIB // 1024} MiB, baseline {baseline / 1024:.1f} MiB)")
