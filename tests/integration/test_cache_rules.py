"""Result cache, [cache.rules] (issue 5): pgfold started from a config file.

- rules mode caches exactly what an entry selects: a statement reading a
  listed table (alone or joined with an unlisted one), a statement of a
  listed shape given as statement text (other literal values, same shape);
  nothing else (bypass no_rule), and an "off" entry wins over a table entry
  (bypass rule);
- SIGHUP replaces the entries: a table no longer listed is no longer
  cached, a shape added by the fingerprint /queries shows is;
- a file with a bad entry is refused at startup (--check-config) and on
  SIGHUP with FILE:LINE, and the running entries stay;
- in auto mode an "off" entry opts a table out, and an entry's TTL is the
  entry's TTL in Redis (a pgfold with a Redis of its own: PTTL of the keys).
Counting is by executions PostgreSQL saw (pg_stat_statements), as in
test_cache.py.  No timing assertions.
"""

import json
import signal
import subprocess

from pgharness import PGFOLD_BIN, RedisServer, free_port, wait_until
from test_cache import DB, backend_calls, cache_stats, cacheable_now, fresh, functions_loaded, record, shop  # noqa: F401
from wire import WireConn


def write_config(path, ports, postgres, redis, mode, rules):
    lines = ["[pgfold]",
             f"listen = 127.0.0.1:{ports[0]}",
             f"backend = 127.0.0.1:{postgres.port}",
             f"admin = 127.0.0.1:{ports[1]}",
             "log_level = debug",
             "",
             "[cache]",
             f"redis = 127.0.0.1:{redis.port}",
             f"mode = {mode}",
             "",
             "[cache.rules]"]
    lines += [f"{k} = {v}" for k, v in rules.items()]
    path.write_text("\n".join(lines) + "\n")


def start_from_file(pgfold_factory, postgres, redis, tmp_path, mode, rules, name):
    path = tmp_path / f"{name}.ini"
    ports = (free_port(), free_port())
    write_config(path, ports, postgres, redis, mode, rules)
    proxy = pgfold_factory(config_path=path, ports=ports, name=name)
    proxy.config_file = path
    with WireConn("127.0.0.1", proxy.port) as w:  # the first client starts loading pg_proc
        w.startup("app", DB)
        w.simple_query("SELECT 1")
    wait_until(lambda: functions_loaded(proxy), 20, "function volatility loaded")
    wait_until(lambda: cacheable_now(proxy), 20, "relations loaded")
    return proxy


def reload(proxy, postgres, redis, mode, rules):
    before = proxy.stats()["config_reloads"]
    write_config(proxy.config_file, (proxy.port, proxy.admin_port), postgres, redis, mode, rules)
    proxy.signal(signal.SIGHUP)
    wait_until(lambda: proxy.stats()["config_reloads"] == before + 1, 5, "config_reloads after SIGHUP")


def calls_twice(proxy, postgres, sql):
    """Run sql twice through proxy: how often PostgreSQL executed it."""
    m = fresh(postgres)
    text = sql.replace("{m}", m)
    record(proxy.port, [text, text])
    return backend_calls(postgres, m)


def fingerprint_of(proxy, needle):
    status, _, body = proxy.admin_get("/queries?limit=1000")
    assert status == 200
    doc = json.loads(body)
    rows = doc["queries"] if isinstance(doc, dict) else doc
    found = [q["fingerprint"] for q in rows if q.get("query") and needle in q["query"]]
    assert found, f"no shape with {needle!r} in /queries"
    return found[0]


TAGS = "SELECT /* {m} */ tag FROM qc_tags WHERE item_id = 3"
TAGS_BY_NAME = "SELECT /* {m} */ item_id FROM qc_tags WHERE tag = 't1' ORDER BY 1"
ITEM_SHAPE = "SELECT /* {m} */ id, name FROM qc_items WHERE id = 7"
ITEM_OTHER = "SELECT /* {m} */ name, price FROM qc_items WHERE id = 8"
JOIN = ("SELECT /* {m} */ i.id, t.tag FROM qc_items i JOIN qc_tags t ON t.item_id = i.id "
        "WHERE i.id < 5 ORDER BY 1, 2")
COUNTER = "SELECT /* {m} */ v FROM qc_counter WHERE id = 1"

RULES = {
    "table.qc_tags": "30s",
    "table.public.qc_counter": "off",
    "statement.one_item": "30s SELECT id, name FROM qc_items WHERE id = $1",
}


def test_rules_mode_caches_exactly_the_listed(postgres, redis, shop, pgfold_factory, tmp_path):  # noqa: F811
    proxy = start_from_file(pgfold_factory, postgres, redis, tmp_path, "rules", RULES, "pgfold-rules")
    no_rule = cache_stats(proxy)["bypasses"]["no_rule"]
    assert calls_twice(proxy, postgres, TAGS) == 1          # a listed table
    assert calls_twice(proxy, postgres, JOIN) == 1          # any listed table selects
    assert calls_twice(proxy, postgres, ITEM_SHAPE) == 1    # the listed shape, other literal
    assert calls_twice(proxy, postgres, ITEM_OTHER) == 2    # unlisted table, other shape
    assert cache_stats(proxy)["bypasses"]["no_rule"] == no_rule + 2
    rule = cache_stats(proxy)["bypasses"]["rule"]
    assert calls_twice(proxy, postgres, COUNTER) == 2       # an off entry
    assert cache_stats(proxy)["bypasses"]["rule"] == rule + 2
    hinted = "SELECT /* {m} */ /* pgfold:cache */ v FROM qc_counter WHERE id = 1"
    assert calls_twice(proxy, postgres, hinted) == 1        # a hint wins over entries
    nocache = "SELECT /* {m} */ /* pgfold:nocache */ tag FROM qc_tags WHERE item_id = 3"
    assert calls_twice(proxy, postgres, nocache) == 2       # nocache always wins

    # SIGHUP: the qc_tags entry goes, the tags shape above comes back by fingerprint
    fp = fingerprint_of(proxy, "FROM qc_tags WHERE item_id")
    reload(proxy, postgres, redis, "rules", {"table.qc_items": "30s", f"shape.{fp}": "1min"})
    assert calls_twice(proxy, postgres, TAGS_BY_NAME) == 2  # qc_tags no longer listed
    assert calls_twice(proxy, postgres, TAGS) == 1          # but this shape is
    assert calls_twice(proxy, postgres, ITEM_OTHER) == 1    # qc_items now listed
    assert calls_twice(proxy, postgres, COUNTER) == 2       # no entry: rules mode does not cache it


def test_bad_rules_refused_with_file_and_line(postgres, redis, shop, pgfold_factory, tmp_path):  # noqa: F811
    proxy = start_from_file(pgfold_factory, postgres, redis, tmp_path, "rules", RULES, "pgfold-rules-bad")
    path = proxy.config_file
    good = path.read_text()
    bad = good + "table.qc_items = soon\n"
    line = len(bad.splitlines())
    path.write_text(bad)
    check = subprocess.run([str(PGFOLD_BIN), "-c", str(path), "--check-config"], capture_output=True,
                           text=True, timeout=10)
    assert check.returncode != 0
    assert f"{path}:{line}: cache.rules.table.qc_items" in check.stdout + check.stderr
    before = proxy.stats()["config_reloads"]
    proxy.mark_log()
    proxy.signal(signal.SIGHUP)
    wait_until(lambda: f"{path}:{line}" in proxy.new_log_text(), 5, f"{path}:{line} in pgfold's log")
    assert proxy.stats()["config_reloads"] == before
    assert calls_twice(proxy, postgres, TAGS) == 1  # the running entries stay
    assert calls_twice(proxy, postgres, ITEM_OTHER) == 2


def entry_ttls_ms(redis):
    """PTTL of every cache entry in redis."""
    def cli(*args):
        return subprocess.run(["redis-cli", "-p", str(redis.port), *args], capture_output=True, text=True,
                              timeout=10).stdout.split()
    return sorted(int(cli("PTTL", key)[0]) for key in cli("--scan", "--pattern", "pgfold:e:*"))


def test_auto_mode_entries(postgres, shop, pgfold_factory, tmp_path):  # noqa: F811
    own = RedisServer("redis-rules-ttl")
    own.start()
    try:
        rules = {"table.qc_counter": "off", "table.qc_tags": "20s"}
        proxy = start_from_file(pgfold_factory, postgres, own, tmp_path, "auto", rules, "pgfold-rules-auto")
        assert all(ttl > 20000 for ttl in entry_ttls_ms(own))  # the probes: default_ttl 60s
        assert calls_twice(proxy, postgres, ITEM_OTHER) == 1  # auto: everything cacheable
        assert calls_twice(proxy, postgres, TAGS) == 1        # with the entry's TTL
        assert calls_twice(proxy, postgres, COUNTER) == 2     # opted out
        ttls = entry_ttls_ms(own)
        assert len([t for t in ttls if 0 < t <= 20000]) == 1, ttls  # the qc_tags entry
        assert len([t for t in ttls if t > 20000]) == len(ttls) - 1, ttls
    finally:
        own.cleanup()
