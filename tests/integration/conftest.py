"""Fixtures for pgfold's integration tests.

Session-wide throwaway servers (pgharness.py):
  postgres  PostgreSQL 15 on a free 127.0.0.1 port (roles app, app_scram,
            app_md5, app_password; databases shop and bench; pg_stat_statements)
  redis     redis-server on a free port, no persistence
  pgfold    one pgfold in front of them (started lazily, restarted if it dies)

`target` is parametrized over ["direct", "pgfold"]: the same test code runs
against PostgreSQL itself and through pgfold.  `same_both_ways(value)` then
asserts that both runs observed the same value.

`pgfold_factory` starts extra pgfold processes (own options) for one test;
`module_pgfold_factory` for one module.  Every pgfold is checked for
sanitizer reports and unexpected exits when its fixture ends.

Each test runs under a watchdog (marker `timeout(seconds)`, default 120 s):
on expiry the thread stacks are dumped and every pgfold is SIGKILLed so a
client blocked on a stuck proxy wakes up with an error.  Server logs are
attached to the report of a failed test.
"""

import atexit
import difflib
import faulthandler
import os
import resource
import signal
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import pgharness  # noqa: E402
from pgharness import PgfoldServer, PostgresServer, RedisServer, Target  # noqa: E402

DEFAULT_TIMEOUT = float(os.environ.get("PGFOLD_TEST_TIMEOUT", "120"))


# --------------------------------------------------------------------------
# process-wide setup


def _cleanup_all_servers():
    for server in reversed(pgharness.SERVERS):
        if server.running:
            try:
                server.cleanup()
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass


def _on_sigterm(signum, frame):
    _cleanup_all_servers()
    os._exit(128 + signum)


def pytest_configure(config):
    config.addinivalue_line("markers", "timeout(seconds): watchdog limit for one test")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536) if hard != resource.RLIM_INFINITY
                                                    else 65536, hard))
    atexit.register(_cleanup_all_servers)
    signal.signal(signal.SIGTERM, _on_sigterm)


def pytest_runtest_setup(item):
    item._pgfold_started = time.monotonic()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    started = getattr(item, "_pgfold_started", 0)
    for server in pgharness.SERVERS:
        if server.started_at is None:
            continue
        if server.stopped_at is None or server.stopped_at >= started:
            report.sections.append((f"{server.name} log ({server.log_path})", server.log_tail(80)))


@pytest.fixture(autouse=True)
def _watchdog(request):
    marker = request.node.get_closest_marker("timeout")
    limit = float(marker.args[0]) if marker else DEFAULT_TIMEOUT
    done = threading.Event()

    def watch():
        if done.wait(limit):
            return
        sys.stderr.write(f"\n*** WATCHDOG: {request.node.nodeid} still running after {limit:.0f}s; "
                         "thread stacks follow, then every pgfold is killed\n")
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        pgharness.kill_all_pgfold()
        if done.wait(60):
            return
        sys.stderr.write(f"\n*** WATCHDOG: {request.node.nodeid} still stuck 60s later; aborting the run\n")
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        _cleanup_all_servers()
        os._exit(3)

    threading.Thread(target=watch, name="watchdog", daemon=True).start()
    yield
    done.set()


# --------------------------------------------------------------------------
# servers


@pytest.fixture(scope="session")
def postgres():
    server = PostgresServer("postgres")
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def redis():
    server = RedisServer("redis")
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


def _check_pgfold_end(server, code):
    """Problems seen when a pgfold's fixture ends: sanitizer reports, deaths,
    a non-zero exit on SIGTERM."""
    problems = []
    report = server.sanitizer_report()
    if report:
        problems.append(f"sanitizer report in {server.log_path}:\n{report}")
    if server.deaths:
        problems.append(f"died unexpectedly with exit codes {server.deaths}")
    if code != 0:
        problems.append(f"exit code {code} after SIGTERM (expected 0)")
    return problems


@pytest.fixture(scope="session")
def pgfold(postgres, redis):
    """The shared pgfold for tests that do not need special options."""
    server = PgfoldServer(postgres.port, redis.port, sets={"max_client_conn": 1000},
                          name="pgfold-session")
    code = None
    try:
        server.start()
        yield server
    finally:
        code = server.cleanup()
    problems = _check_pgfold_end(server, code)
    assert not problems, f"session pgfold: {'; '.join(problems)}\n--- log ---\n{server.log_tail()}"


class _Factory:
    def __init__(self, postgres, redis):
        self.postgres, self.redis = postgres, redis
        self.servers = []

    def __call__(self, sets=None, config_path=None, ports=None, name="pgfold", start=True,
                 backend_port=None, extra_args=(), backend=None):
        server = PgfoldServer(backend_port or self.postgres.port, self.redis.port, sets=sets,
                              config_path=config_path, ports=ports, name=name, extra_args=extra_args,
                              backend=backend)
        self.servers.append(server)
        if start:
            server.start()
        return server

    def finish(self):
        problems = []
        for server in self.servers:
            if server.proc is None:
                continue
            already_exited = server.proc.poll() is not None
            code = server.cleanup()
            # A test that stopped pgfold itself checked its exit code.
            found = _check_pgfold_end(server, 0 if already_exited else code)
            problems += [f"{server.name}: {p}" for p in found]
        return problems


@pytest.fixture
def pgfold_factory(postgres, redis):
    """Start extra pgfold processes for one test: factory(sets={...})."""
    factory = _Factory(postgres, redis)
    yield factory
    problems = factory.finish()
    assert not problems, "\n".join(problems)


@pytest.fixture(scope="module")
def module_pgfold_factory(postgres, redis):
    factory = _Factory(postgres, redis)
    yield factory
    problems = factory.finish()
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------
# targets


@pytest.fixture(params=["direct", "pgfold"])
def target(request, postgres):
    if request.param == "direct":
        yield Target("direct", postgres.port, postgres)
        return
    proxy = request.getfixturevalue("pgfold")
    proxy.ensure_running()
    proxy.mark_log()
    yield Target("pgfold", proxy.port, postgres, proxy)
    problems = []
    if not proxy.alive():
        problems.append(f"pgfold exited with {proxy.proc.returncode} during this test")
    report = proxy.sanitizer_report(proxy.new_log_text())
    if report:
        problems.append(f"sanitizer report:\n{report}")
    assert not problems, "; ".join(problems) + f"\n--- pgfold log ---\n{proxy.log_tail()}"


_COMPARE = {}


@pytest.fixture
def same_both_ways(request):
    """check(value, key='') records what this run observed; when the run of
    the same test against the other target already recorded a value under
    the same key, assert both are equal."""
    callspec = getattr(request.node, "callspec", None)
    params = dict(callspec.params) if callspec else {}
    names = [k for k, v in params.items() if v in ("direct", "pgfold")]
    assert len(names) == 1, "same_both_ways needs a fixture parametrized over direct/pgfold"
    name = params.pop(names[0])
    base = (request.node.module.__name__, request.node.originalname, repr(sorted(params.items())))

    def check(value, key=""):
        entry = _COMPARE.setdefault(base + (key,), {})
        entry[name] = value
        other = "pgfold" if name == "direct" else "direct"
        if other in entry and entry[other] != value:
            a, b = entry["direct"], entry["pgfold"]
            if isinstance(a, str) and isinstance(b, str):
                diff = "\n".join(difflib.unified_diff(a.splitlines(), b.splitlines(), "direct",
                                                      "pgfold", lineterm="", n=2))
            else:
                diff = f"direct: {a!r}\npgfold: {b!r}"
            raise AssertionError(f"{key or 'result'} differs between direct and pgfold:\n{diff[:6000]}")

    return check

