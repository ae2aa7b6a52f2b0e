"""A tiny PostgreSQL v3 wire-protocol client for raw-socket tests.

Builds messages by hand (so tests can also build broken ones), parses what
the server sends, and logs in with trust, cleartext password, MD5 or
SCRAM-SHA-256.  Every read has a deadline: a server that goes quiet makes the
test fail with socket.timeout instead of hanging.
"""

import base64
import hashlib
import hmac
import os
import socket
import struct
import time

PROTOCOL_V3 = 196608
SSL_REQUEST_CODE = 80877103
GSSENC_REQUEST_CODE = 80877104
CANCEL_REQUEST_CODE = 80877102

AUTH_OK, AUTH_CLEARTEXT, AUTH_MD5, AUTH_SASL, AUTH_SASL_CONTINUE, AUTH_SASL_FINAL = 0, 3, 5, 10, 11, 12


class ServerError(Exception):
    """An ErrorResponse; .fields maps field codes ('S', 'V', 'C', 'M', ...) to text."""

    def __init__(self, fields):
        self.fields = fields
        super().__init__(f"{fields.get('S')} {fields.get('C')}: {fields.get('M')}")

    @property
    def sqlstate(self):
        return self.fields.get("C")


# ---- building ----------------------------------------------------------


def message(type_byte, body=b""):
    return type_byte + struct.pack("!I", len(body) + 4) + body


def cstr(text):
    return text.encode() + b"\0"


def startup_packet(params, protocol=PROTOCOL_V3):
    body = struct.pack("!I", protocol)
    for k, v in params.items():
        body += cstr(k) + cstr(v)
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def ssl_request():
    return struct.pack("!II", 8, SSL_REQUEST_CODE)


def gssenc_request():
    return struct.pack("!II", 8, GSSENC_REQUEST_CODE)


def cancel_request(pid, key):
    return struct.pack("!IIII", 16, CANCEL_REQUEST_CODE, pid, key)


def query(sql):
    return message(b"Q", cstr(sql))


def parse(sql, name="", param_types=()):
    return message(b"P", cstr(name) + cstr(sql) + struct.pack("!H", len(param_types))
                   + b"".join(struct.pack("!I", t) for t in param_types))


def bind(params=(), portal="", statement="", result_formats=(), binary_params=False):
    """Bind with text parameters, or (binary_params) binary int4 ones."""
    body = cstr(portal) + cstr(statement)
    body += struct.pack("!HH", 1, 1) if binary_params else struct.pack("!H", 0)
    body += struct.pack("!H", len(params))
    for p in params:
        if p is None:
            body += struct.pack("!i", -1)
        else:
            if binary_params:
                b = struct.pack("!i", p)
            else:
                b = p if isinstance(p, bytes) else str(p).encode()
            body += struct.pack("!I", len(b)) + b
    return message(b"B", body + struct.pack("!H", len(result_formats))
                   + b"".join(struct.pack("!H", f) for f in result_formats))


def describe_portal(portal=""):
    return message(b"D", b"P" + cstr(portal))


def execute(portal="", max_rows=0):
    return message(b"E", cstr(portal) + struct.pack("!I", max_rows))


def sync():
    return message(b"S")


def terminate():
    return message(b"X")


def ext_group(sql, params, types=(), name=None, describe=True, result_formats=(), max_rows=0,
              binary_params=False):
    """One statement as drivers send it: Parse "" (unless name is a prepared
    statement's), Bind "", Describe portal, Execute, Sync."""
    out = b"" if name else parse(sql, "", types)
    out += bind(params, statement=name or "", result_formats=result_formats, binary_params=binary_params)
    if describe:
        out += describe_portal()
    return out + execute(max_rows=max_rows) + sync()


def record_groups(port, user, db, script):
    """Log in to port as user on db, send each item of script (bytes) and
    read up to its ReadyForQuery: every message received, per item."""
    got = []
    with WireConn("127.0.0.1", port) as w:
        w.startup(user, db)
        for data in script:
            w.send(data)
            got.append(list(w.read_until_ready()))
        w.send(terminate())
    return got


def describe_unnamed():
    """Describe of the unnamed statement, then Sync."""
    return message(b"D", b"S" + cstr("")) + sync()


# ---- parsing -------------------------------------------------------------


def parse_fields(body):
    """Fields of an ErrorResponse / NoticeResponse body."""
    fields = {}
    pos = 0
    while pos < len(body) and body[pos] != 0:
        code = chr(body[pos])
        end = body.index(b"\0", pos + 1)
        fields[code] = body[pos + 1:end].decode(errors="replace")
        pos = end + 1
    return fields


def parse_data_row(body):
    (n,) = struct.unpack_from("!H", body, 0)
    pos = 2
    values = []
    for _ in range(n):
        (ln,) = struct.unpack_from("!i", body, pos)
        pos += 4
        if ln < 0:
            values.append(None)
        else:
            values.append(body[pos:pos + ln].decode())
            pos += ln
    return values


class WireConn:
    """One raw connection.  Messages are (type byte, body bytes) tuples."""

    def __init__(self, host, port, timeout=10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.buf = bytearray()
        self.params = {}
        self.backend_key = None
        self.auth_codes = []

    # -- raw I/O
    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("deadline passed waiting for server bytes")
        self.sock.settimeout(left)
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("server closed the connection")
        self.buf += chunk

    def recv_exact(self, n, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while len(self.buf) < n:
            self._fill(deadline)
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def read_message(self, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while len(self.buf) < 5:
            self._fill(deadline)
        type_byte = bytes(self.buf[:1])
        (length,) = struct.unpack_from("!I", self.buf, 1)
        if length < 4:
            raise ValueError(f"server sent a bad length {length} for {type_byte!r}")
        while len(self.buf) < 1 + length:
            self._fill(deadline)
        body = bytes(self.buf[5:1 + length])
        del self.buf[:1 + length]
        return type_byte, body

    def read_until_ready(self, timeout=None):
        """Messages up to and including ReadyForQuery."""
        out = []
        while True:
            m = self.read_message(timeout)
            out.append(m)
            if m[0] == b"Z":
                return out

    def expect_eof(self, timeout=5.0):
        """True when the server closes within timeout (any data before the
        close is returned as messages)."""
        deadline = time.monotonic() + timeout
        msgs = []
        while True:
            try:
                msgs.append(self.read_message(max(deadline - time.monotonic(), 0.001)))
            except (EOFError, ConnectionResetError, BrokenPipeError):
                return msgs
            except socket.timeout:
                raise AssertionError(f"server did not close the connection within {timeout}s; "
                                     f"got {msgs!r}") from None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- startup and login
    def startup(self, user, database, password=None, extra=None, timeout=None):
        """Send a StartupMessage and log in; returns the messages up to
        ReadyForQuery.  Raises ServerError for an ErrorResponse."""
        params = {"user": user, "database": database, "application_name": "pgfold-wire-test"}
        params.update(extra or {})
        self.send(startup_packet(params))
        return self.login(user, password, timeout)

    def login(self, user, password=None, timeout=None):
        msgs = []
        scram = None
        while True:
            t, body = self.read_message(timeout)
            msgs.append((t, body))
            if t == b"E":
                raise ServerError(parse_fields(body))
            if t == b"R":
                (code,) = struct.unpack_from("!I", body, 0)
                self.auth_codes.append(code)
                if code == AUTH_OK:
                    continue
                if password is None:
                    raise AssertionError(f"server asked for authentication {code} but no password given")
                if code == AUTH_CLEARTEXT:
                    self.send(message(b"p", cstr(password)))
                elif code == AUTH_MD5:
                    salt = body[4:8]
                    inner = hashlib.md5((password + user).encode()).hexdigest()
                    digest = "md5" + hashlib.md5(inner.encode() + salt).hexdigest()
                    self.send(message(b"p", cstr(digest)))
                elif code == AUTH_SASL:
                    mechs = [m.decode() for m in body[4:].split(b"\0") if m]
                    self.sasl_mechanisms = mechs
                    assert "SCRAM-SHA-256" in mechs, mechs
                    scram = _Scram(password)
                    first = scram.client_first()
                    self.send(message(b"p", cstr("SCRAM-SHA-256") + struct.pack("!I", len(first)) + first))
                elif code == AUTH_SASL_CONTINUE:
                    self.send(message(b"p", scram.client_final(body[4:])))
                elif code == AUTH_SASL_FINAL:
                    scram.verify_server_final(body[4:])
                else:
                    raise AssertionError(f"unsupported authentication request {code}")
            elif t == b"K":
                self.backend_key = struct.unpack("!II", body)
            elif t == b"S":
                name, value = body.split(b"\0")[:2]
                self.params[name.decode()] = value.decode()
            elif t == b"Z":
                return msgs

    # -- queries
    def simple_query(self, sql, timeout=None):
        """Run one Query; returns dict(rows, tags, errors, notices, status)."""
        self.send(query(sql))
        return self.collect(timeout)

    def collect(self, timeout=None):
        result = {"rows": [], "tags": [], "errors": [], "notices": [], "status": None, "types": []}
        for t, body in self.read_until_ready(timeout):
            result["types"].append(t)
            if t == b"D":
                result["rows"].append(parse_data_row(body))
            elif t == b"C":
                result["tags"].append(body.rstrip(b"\0").decode())
            elif t == b"E":
                result["errors"].append(parse_fields(body))
            elif t == b"N":
                result["notices"].append(parse_fields(body))
            elif t == b"Z":
                result["status"] = body.decode()
        return result


class _Scram:
    """Client side of SCRAM-SHA-256 (RFC 5802/7677) without channel binding."""

    def __init__(self, password):
        self.password = password.encode()
        self.nonce = base64.b64encode(os.urandom(18)).decode()
        self.client_first_bare = f"n=,r={self.nonce}"

    def client_first(self):
        return ("n,," + self.client_first_bare).encode()

    def client_final(self, server_first):
        server_first = server_first.decode()
        attrs = dict(part.split("=", 1) for part in server_first.split(","))
        assert attrs["r"].startswith(self.nonce), "server nonce does not extend ours"
        salt = base64.b64decode(attrs["s"])
        iterations = int(attrs["i"])
        salted = hashlib.pbkdf2_hmac("sha256", self.password, salt, iterations)
        client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = f"c=biws,r={attrs['r']}"
        auth_message = f"{self.client_first_bare},{server_first},{without_proof}".encode()
        signature = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
        self.expected_server_sig = hmac.new(server_key, auth_message, hashlib.sha256).digest()
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def verify_server_final(self, data):
        text = data.decode()
        assert text.startswith("v="), f"unexpected SCRAM server-final {text!r}"
        assert base64.b64decode(text[2:]) == self.expected_server_sig, "bad SCRAM server signature"
