"""Throwaway servers for the integration tests: PostgreSQL 15, Redis and pgfold.

Every server listens on free loopback ports, writes its log to a file, is
waited for with a deadline (never a fixed sleep) and registers itself in
SERVERS so conftest.py can print the logs of the servers involved in a failed
test.  Nothing here depends on pytest.

Environment:
  PGFOLD_BIN      pgfold binary (default <repo>/build/pgfold)
  PGFOLD_LOG_DIR  when set, server logs go there (tests/run_all.sh scans the
                  pgfold logs for sanitizer reports); otherwise a temp dir
  PG_BINDIR       PostgreSQL server binaries (default /usr/lib/postgresql/15/bin)
"""

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PG_BINDIR = Path(os.environ.get("PG_BINDIR", "/usr/lib/postgresql/15/bin"))
PSQL = "/usr/bin/psql"
PGFOLD_BIN = Path(os.environ.get("PGFOLD_BIN", str(REPO / "build" / "pgfold")))
if not PGFOLD_BIN.is_absolute():
    PGFOLD_BIN = REPO / PGFOLD_BIN

# Roles and passwords created in every throwaway cluster.
PASSWORDS = {
    "app_scram": "scram-secret-1",
    "app_md5": "md5-secret-2",
    "app_password": "plain-secret-3",
}

SERVERS = []  # every server started in this process, in start order
_LOG_SEQ = [0]
_LOG_LOCK = threading.Lock()

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "WARNING: ThreadSanitizer", "==ERROR:")


_HANDED_OUT = set()


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now, and that
    this process has not handed out before (the kernel may give a port just
    released again at once: two servers started together must not get the
    same one)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError("no free TCP port on 127.0.0.1 that was not handed out already")


class GiveUp(Exception):
    """Raised by a wait_until predicate when waiting longer cannot help."""


@contextlib.contextmanager
def paused(proc):
    """proc (a Popen) stopped with SIGSTOP for the with block, continued
    with SIGCONT after it, whatever happens inside."""
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(proc.pid, signal.SIGCONT)


def wait_until(predicate, timeout, what, interval=0.05):
    """Poll predicate() until it returns a truthy value or the deadline passes.

    Exceptions from predicate count as "not yet" (the last one is reported),
    except GiveUp, which ends the wait at once."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except GiveUp:
            raise
        except Exception as exc:  # noqa: BLE001 - reported below
            last = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}"
                               + (f" (last error: {last!r})" if last else ""))
        time.sleep(interval)


def wait_for_backend_activity(postgres, pid, needle, timeout=10):
    """Wait until backend `pid` of `postgres` runs a statement containing needle."""
    def active():
        rows = postgres.query("SELECT state, query FROM pg_stat_activity WHERE pid = %s", (pid,))
        return rows and rows[0][0] == "active" and needle in rows[0][1]
    return wait_until(active, timeout, f"backend {pid} to run {needle!r}")


def record_pid(pid):
    """Append a child's pid to $PGFOLD_TEST_PIDFILE (tests/run_all.sh kills
    whatever is left there if the test process dies hard)."""
    path = os.environ.get("PGFOLD_TEST_PIDFILE")
    if path and pid:
        with open(path, "a") as f:
            f.write(f"{pid}\n")


def log_dir():
    d = os.environ.get("PGFOLD_LOG_DIR")
    if d:
        Path(d).mkdir(parents=True, exist_ok=True)
        return Path(d)
    global _TMP_LOG_DIR
    try:
        return _TMP_LOG_DIR
    except NameError:
        _TMP_LOG_DIR = Path(tempfile.mkdtemp(prefix="pgfold-test-logs-"))
        return _TMP_LOG_DIR


def new_log_path(name):
    with _LOG_LOCK:
        _LOG_SEQ[0] += 1
        seq = _LOG_SEQ[0]
    return log_dir() / f"{seq:03d}-{name}.log"


def tail(path, lines=60):
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


def tcp_connectable(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


class Server:
    """Common bookkeeping: a name, a log file, start/stop times."""

    name = "server"

    def __init__(self, name):
        self.name = name
        self.log_path = new_log_path(name)
        self.started_at = None
        self.stopped_at = None
        SERVERS.append(self)

    @property
    def running(self):
        return self.started_at is not None and self.stopped_at is None

    def log_tail(self, lines=60):
        return tail(self.log_path, lines)


# --------------------------------------------------------------------------
# PostgreSQL


class PostgresServer(Server):
    """A PostgreSQL 15 cluster in a temp dir, as the postgres user when root."""

    def __init__(self, name="postgres", extra_conf=None):
        super().__init__(name)
        self.port = free_port()
        self.extra_conf = extra_conf or {}
        self.as_postgres = os.geteuid() == 0
        self.base = Path(tempfile.mkdtemp(prefix=f"pgfold-{name}-"))
        self.datadir = self.base / "data"
        self.sockdir = self.base
        self.superuser = "postgres"
        if self.as_postgres:
            pw = pwd.getpwnam("postgres")
            os.chown(self.base, pw.pw_uid, pw.pw_gid)
        # the log is written by the server: keep it inside its own dir and
        # symlink-free; self.log_path is (re)pointed there.
        self.log_path = self.base / "postgres.log"

    # -- helpers
    def _cmd(self, argv):
        if self.as_postgres:
            return ["runuser", "-u", "postgres", "--"] + [str(a) for a in argv]
        return [str(a) for a in argv]

    def _run(self, argv, timeout=120, check=True):
        proc = subprocess.run(self._cmd(argv), capture_output=True, text=True, timeout=timeout,
                              cwd=self.base)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}\n"
                               f"--- log ---\n{self.log_tail()}")
        return proc

    def conf_text(self):
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.sockdir}'",
            "max_connections": "700",
            "shared_preload_libraries": "'pg_stat_statements'",
            "password_encryption": "'scram-sha-256'",
            "pg_stat_statements.track": "'top'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "log_line_prefix": "'%m [%p] %q%u@%d '",
            "log_min_messages": "warning",
        }
        settings.update(self.extra_conf)
        return "".join(f"{k} = {v}\n" for k, v in settings.items())

    HBA = (
        "local all all trust\n"
        "host all app_scram 127.0.0.1/32 scram-sha-256\n"
        "host all app_md5 127.0.0.1/32 md5\n"
        "host all app_password 127.0.0.1/32 password\n"
        "host all all 127.0.0.1/32 trust\n"
    )

    def start(self):
        self._run([PG_BINDIR / "initdb", "-D", self.datadir, "-U", self.superuser, "-A", "trust",
                   "-E", "UTF8", "--locale=C", "--no-sync"])
        with open(self.datadir / "postgresql.conf", "a") as f:
            f.write("\n# pgfold integration tests\n" + self.conf_text())
        (self.datadir / "pg_hba.conf").write_text(self.HBA)
        if self.as_postgres:
            pw = pwd.getpwnam("postgres")
            for p in (self.datadir / "postgresql.conf", self.datadir / "pg_hba.conf"):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        self.pg_start()
        self.bootstrap()
        return self

    def pg_start(self):
        self._run([PG_BINDIR / "pg_ctl", "-D", self.datadir, "-l", self.log_path, "-w", "-t", "60",
                   "start"])
        self.started_at = time.monotonic()
        self.stopped_at = None
        wait_until(lambda: self.psql("SELECT 1", check=False).returncode == 0, 30,
                   f"{self.name} to accept connections")
        try:
            record_pid(int((self.datadir / "postmaster.pid").read_text().split()[0]))
        except (OSError, ValueError, IndexError):
            pass

    def pg_stop(self, mode="fast"):
        self._run([PG_BINDIR / "pg_ctl", "-D", self.datadir, "-m", mode, "-w", "-t", "60", "stop"])
        self.stopped_at = time.monotonic()

    def accepting(self):
        return self.psql("SELECT 1", check=False).returncode == 0

    def bootstrap(self):
        roles = PASSWORDS
        script = f"""
CREATE ROLE app LOGIN;
CREATE ROLE app_scram LOGIN PASSWORD '{roles['app_scram']}';
SET password_encryption = 'md5';
CREATE ROLE app_md5 LOGIN PASSWORD '{roles['app_md5']}';
RESET password_encryption;
CREATE ROLE app_password LOGIN PASSWORD '{roles['app_password']}';
GRANT pg_read_all_stats TO app;
CREATE DATABASE shop OWNER app;
CREATE DATABASE bench OWNER app;
\\c shop
CREATE EXTENSION pg_stat_statements;
"""
        path = self.base / "bootstrap.sql"
        path.write_text(script)
        os.chmod(path, 0o644)
        self.psql_file(path)

    def psql(self, sql, dbname="postgres", user=None, check=True):
        """Run SQL as the superuser over the unix socket; unaligned output."""
        argv = [PSQL, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", str(self.sockdir),
                "-p", str(self.port), "-U", user or self.superuser, "-d", dbname, "-c", sql]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if check and proc.returncode != 0:
            raise RuntimeError(f"psql failed: {sql!r}\n{proc.stderr}")
        return proc

    def psql_file(self, path, dbname="postgres"):
        argv = [PSQL, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(self.sockdir), "-p",
                str(self.port), "-U", self.superuser, "-d", dbname, "-f", str(path)]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"psql -f {path} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def dsn(self, user="postgres", dbname="shop", **extra):
        parts = {"host": "127.0.0.1", "port": self.port, "user": user, "dbname": dbname,
                 "connect_timeout": 10}
        parts.update(extra)
        return " ".join(f"{k}={v}" for k, v in parts.items())

    def connect(self, dbname="shop", user="postgres"):
        """A direct psycopg2 connection (autocommit) for setup and checks."""
        import psycopg2
        conn = psycopg2.connect(self.dsn(user=user, dbname=dbname))
        conn.autocommit = True
        return conn

    def create_database(self, name, schema):
        """A fresh database `name` owned by app, with pg_stat_statements and
        `schema` run in it; app may use every table and sequence."""
        self.drop_database(name)
        self.query(f"CREATE DATABASE {name} OWNER app", dbname="postgres")
        self.query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements", dbname=name)
        conn = self.connect(dbname=name)
        try:
            with conn.cursor() as cur:
                cur.execute(schema)
                cur.execute("GRANT ALL ON ALL TABLES IN SCHEMA public TO app")
                cur.execute("GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO app")
        finally:
            conn.close()

    def drop_database(self, name):
        self.query(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", dbname="postgres")

    def query(self, sql, params=None, dbname="shop"):
        """Rows of one statement, run directly as the superuser."""
        conn = self.connect(dbname=dbname)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall() if cur.description else None
        finally:
            conn.close()

    def stop(self):
        if self.running:
            try:
                self.pg_stop("fast")
            except Exception:  # noqa: BLE001 - fall back to immediate
                self._run([PG_BINDIR / "pg_ctl", "-D", self.datadir, "-m", "immediate", "stop"],
                          check=False)
        self.stopped_at = self.stopped_at or time.monotonic()

    def cleanup(self):
        self.stop()
        # keep the log around in PGFOLD_LOG_DIR when asked to
        d = os.environ.get("PGFOLD_LOG_DIR")
        if d and self.log_path.exists():
            shutil.copy(self.log_path, new_log_path(self.name))
        shutil.rmtree(self.base, ignore_errors=True)


# --------------------------------------------------------------------------
# Redis


class RedisServer(Server):
    def __init__(self, name="redis"):
        super().__init__(name)
        self.port = free_port()
        self.base = Path(tempfile.mkdtemp(prefix="pgfold-redis-"))
        self.proc = None

    def ping(self):
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")

    def start(self):
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.base), "--daemonize", "no"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        record_pid(self.proc.pid)
        self.started_at = time.monotonic()

        def ready():
            if self.proc.poll() is not None:
                raise GiveUp(f"redis-server exited {self.proc.returncode}:\n{self.log_tail()}")
            return self.ping()
        wait_until(ready, 20, "redis-server PING")
        return self

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.stopped_at = self.stopped_at or time.monotonic()
        if getattr(self, "log", None):
            self.log.close()
        shutil.rmtree(self.base, ignore_errors=True)


# --------------------------------------------------------------------------
# pgfold


class PgfoldServer(Server):
    """One pgfold process.

    Either from command-line options (listen/backend/admin/redis on free
    ports plus `--set` overrides), or from a config file (config_path) that
    then holds every address; `ports` tells which ports that file uses."""

    def __init__(self, backend_port, redis_port=None, sets=None, config_path=None, ports=None,
                 name="pgfold", extra_args=(), backend=None):
        super().__init__(name)
        self.backend_port = backend_port
        self.backend = backend or f"127.0.0.1:{backend_port}"  # the --backend value
        self.redis_port = redis_port
        self.sets = dict(sets or {})
        self.config_path = config_path
        self.extra_args = list(extra_args)
        if ports:
            self.port, self.admin_port = ports
        else:
            self.port, self.admin_port = free_port(), free_port()
        self.proc = None
        self.exit_code = None
        self.deaths = []  # exit codes of unexpected deaths (restarted by ensure_running)
        self._log_offset = 0

    def argv(self):
        argv = [str(PGFOLD_BIN)]
        if self.config_path:
            argv += ["-c", str(self.config_path)]
        else:
            argv += ["--listen", f"127.0.0.1:{self.port}",
                     "--backend", self.backend,
                     "--admin", f"127.0.0.1:{self.admin_port}",
                     "--redis", f"127.0.0.1:{self.redis_port}" if self.redis_port else "off"]
        for k, v in self.sets.items():
            argv += ["--set", f"{k}={v}"]
        return argv + self.extra_args

    def start(self, timeout=20):
        if not PGFOLD_BIN.exists():
            raise RuntimeError(f"pgfold binary {PGFOLD_BIN} does not exist (run `make`, or set PGFOLD_BIN)")
        self.log = open(self.log_path, "ab")
        self.log.write(f"### {' '.join(self.argv())}\n".encode())
        self.log.flush()
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        record_pid(self.proc.pid)
        self.started_at = time.monotonic()
        self.stopped_at = None
        self.exit_code = None

        def ready():
            if self.proc.poll() is not None:
                raise GiveUp(f"pgfold exited with {self.proc.returncode} during startup:\n"
                             f"{self.log_tail()}")
            return self.admin_get("/health")[0] == 200 and tcp_connectable(self.port)
        try:
            wait_until(ready, timeout, f"pgfold /health on 127.0.0.1:{self.admin_port}")
        except GiveUp as exc:
            raise RuntimeError(str(exc)) from None
        except TimeoutError as exc:
            self.kill()
            raise RuntimeError(f"{exc}\n--- pgfold log ---\n{self.log_tail()}") from None
        return self

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def ensure_running(self):
        """Restart a process that died (recording the death) so one crash
        does not fail every later test."""
        if self.proc is not None and not self.alive():
            self.deaths.append(self.proc.returncode)
            self.stopped_at = time.monotonic()
            self.log.write(f"### pgfold died with {self.proc.returncode}; restarting\n".encode())
            self.log.flush()
            self.start()

    # -- admin port
    def admin_get(self, path, timeout=5):
        """(status, content_type, body bytes) of GET path on the admin port."""
        url = f"http://127.0.0.1:{self.admin_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return resp.status, resp.headers.get("Content-Type", ""), resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers.get("Content-Type", ""), exc.read()

    def stats(self):
        status, _, body = self.admin_get("/stats")
        assert status == 200, f"/stats answered {status}: {body[:200]!r}"
        return json.loads(body)

    def rss_kib(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    # -- logs
    def _flush(self):
        if getattr(self, "log", None) and not self.log.closed:
            self.log.flush()

    def log_text(self):
        self._flush()
        return Path(self.log_path).read_text(errors="replace")

    def mark_log(self):
        """Remember the current end of the log (see new_log_text)."""
        self._flush()
        self._log_offset = Path(self.log_path).stat().st_size

    def new_log_text(self):
        self._flush()
        with open(self.log_path, "rb") as f:
            f.seek(self._log_offset)
            return f.read().decode(errors="replace")

    def sanitizer_report(self, text=None):
        text = self.log_text() if text is None else text
        hits = [ln for ln in text.splitlines() if any(m in ln for m in SANITIZER_MARKERS)]
        return "\n".join(hits)

    # -- stopping
    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout):
        """Exit code, or None when still running after timeout seconds."""
        try:
            self.exit_code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self.stopped_at = self.stopped_at or time.monotonic()
        return self.exit_code

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.stopped_at = self.stopped_at or time.monotonic()

    def stop(self, timeout=20):
        """SIGTERM, wait, SIGKILL as the last resort.  Returns the exit code
        (None when it had to be killed)."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            self.stopped_at = self.stopped_at or time.monotonic()
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        code = self.wait(timeout)
        if code is None:
            self.kill()
            self.log.write(b"### pgfold did not exit after SIGTERM; killed\n")
        self._flush()
        return code

    def cleanup(self):
        code = self.stop()
        if getattr(self, "log", None):
            self.log.close()
        return code


def kill_all_pgfold():
    """Watchdog helper: SIGKILL every running pgfold so blocked clients wake up."""
    for s in SERVERS:
        if isinstance(s, PgfoldServer) and s.alive():
            s.proc.kill()


def write_pgfold_config(path, pgfold_port, admin_port, backend_port, redis_port=None, **keys):
    """Write a pgfold INI file holding every address plus keys of [pgfold].
    backend_port: a port on 127.0.0.1, or a whole backend address string."""
    backend = backend_port if isinstance(backend_port, str) else f"127.0.0.1:{backend_port}"
    lines = ["[pgfold]",
             f"listen = 127.0.0.1:{pgfold_port}",
             f"backend = {backend}",
             f"admin = 127.0.0.1:{admin_port}"]
    lines += [f"{k} = {v}" for k, v in keys.items()]
    lines += ["", "[cache]", f"redis = {'127.0.0.1:%d' % redis_port if redis_port else 'off'}", ""]
    Path(path).write_text("\n".join(lines))


# --------------------------------------------------------------------------
# targets


class Target:
    """Where a client connects: PostgreSQL itself ("direct") or pgfold."""

    host = "127.0.0.1"

    def __init__(self, name, port, postgres, proxy=None):
        self.name = name
        self.port = port
        self.postgres = postgres
        self.proxy = proxy

    def __repr__(self):
        return f"<Target {self.name} {self.host}:{self.port}>"

    @property
    def via_pgfold(self):
        return self.proxy is not None

    def dsn(self, user="app", dbname="shop", password=None, **extra):
        parts = {"host": self.host, "port": self.port, "user": user, "dbname": dbname,
                 "connect_timeout": 10, "application_name": f"pgfold-tests-{self.name}"}
        if password is not None:
            parts["password"] = password
        parts.update(extra)
        return " ".join(f"{k}='{v}'" for k, v in parts.items())

    def url(self, user="app", dbname="shop"):
        return f"postgresql+psycopg2://{user}@{self.host}:{self.port}/{dbname}"

    def env(self, user="app", dbname="shop"):
        env = dict(os.environ)
        for k in list(env):
            if k.startswith("PG") and k not in ("PGFOLD_BIN", "PGFOLD_LOG_DIR"):
                del env[k]
        env.update(PGHOST=self.host, PGPORT=str(self.port), PGUSER=user, PGDATABASE=dbname,
                   PGCONNECT_TIMEOUT="10", PGAPPNAME=f"pgfold-tests-{self.name}")
        return env

    def connect(self, autocommit=False, **kw):
        """psycopg2 connection."""
        import psycopg2
        conn = psycopg2.connect(self.dsn(**kw))
        conn.autocommit = autocommit
        return conn

    def connect3(self, autocommit=False, **kw):
        """psycopg 3 connection."""
        import psycopg
        return psycopg.connect(self.dsn(**kw), autocommit=autocommit)

    def wire(self, timeout=10.0):
        from wire import WireConn
        return WireConn(self.host, self.port, timeout=timeout)
