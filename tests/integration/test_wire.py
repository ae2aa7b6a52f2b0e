"""Raw-wire tests with hand-made frames, against this module's own pgfold
(started with --set max_message_bytes=65536) and, where PostgreSQL behaves
the same, directly.

- SSLRequest / GSSENCRequest get exactly b'N', then a normal startup works on
  the same connection (GSSENC through pgfold only: Debian's PostgreSQL is
  built with GSSAPI and answers 'G').
- Malformed frames after login (length < 4, length 0xFFFFFFF0, unknown type
  byte, Sync with length 8, a Query over max_message_bytes) get an
  ErrorResponse with SQLSTATE 08P01, severity FATAL, and the socket is closed,
  while a client connected at the same time keeps working.
- Startup packets with a bad length get an ErrorResponse 08P01 and a close.
- Frames split into single bytes, and many messages in one packet, work.
"""

import struct
import time

import pytest

from pgharness import Target, wait_until
from wire import (WireConn, bind, describe_portal, execute, gssenc_request, message, parse,
                  parse_fields, query, ssl_request, startup_packet, sync, terminate)

MAX_MESSAGE_BYTES = 65536


@pytest.fixture(scope="module")
def wire_pgfold(module_pgfold_factory):
    return module_pgfold_factory(sets={"max_message_bytes": MAX_MESSAGE_BYTES}, name="pgfold-wire")


@pytest.fixture(params=["direct", "pgfold"])
def wtarget(request, postgres):
    if request.param == "direct":
        return Target("direct", postgres.port, postgres)
    proxy = request.getfixturevalue("wire_pgfold")
    return Target("pgfold", proxy.port, postgres, proxy)


@pytest.fixture
def bystander(wire_pgfold):
    """A client logged in through the same pgfold before the bad one."""
    w = WireConn("127.0.0.1", wire_pgfold.port)
    w.startup("app", "shop")
    assert w.simple_query("SELECT 1")["rows"] == [["1"]]
    yield w
    w.close()


def logged_in(target):
    w = target.wire()
    w.startup("app", "shop")
    return w


def assert_fatal_then_close(w, sqlstate="08P01", timeout=5):
    msgs = w.expect_eof(timeout)
    errors = [parse_fields(body) for t, body in msgs if t == b"E"]
    assert errors, f"connection closed without an ErrorResponse; got {msgs!r}"
    err = errors[0]
    assert err.get("C") == sqlstate, err
    assert err.get("V", err.get("S")) == "FATAL", err
    assert err.get("M"), err
    return err


# ---- SSL / GSSAPI encryption requests ----------------------------------


def test_ssl_request_answered_N_then_startup(wtarget):
    with wtarget.wire() as w:
        w.send(ssl_request())
        assert w.recv_exact(1) == b"N"
        w.startup("app", "shop")
        assert w.auth_codes == [0], "first message after 'N' must be the login's"
        assert w.simple_query("SELECT 'plain after N'")["rows"] == [["plain after N"]]


@pytest.mark.parametrize("requests", [[gssenc_request()], [gssenc_request(), ssl_request()]],
                         ids=["gssenc", "gssenc_then_ssl"])
def test_gssenc_request_answered_N_then_startup(wire_pgfold, requests):
    """pgfold only: Debian's PostgreSQL, built with GSSAPI, answers 'G'."""
    with WireConn("127.0.0.1", wire_pgfold.port) as w:
        for req in requests:
            w.send(req)
            assert w.recv_exact(1) == b"N"
        w.startup("app", "shop")
        assert w.auth_codes == [0], "first message after 'N' must be the login's"
        assert w.simple_query("SELECT 'plain after N'")["rows"] == [["plain after N"]]


# ---- malformed frames after login ---------------------------------------


MALFORMED = {
    "length_below_4": b"Q" + struct.pack("!I", 3),
    "length_0xFFFFFFF0": b"Q" + struct.pack("!I", 0xFFFFFFF0) + b"SELECT 1",
    "unknown_type_byte": message(b"@", b"junk\0"),
    "sync_with_length_8": b"S" + struct.pack("!I", 8) + b"\0\0\0\0",
    # only the header and a first slice: the size alone must be refused
    "query_over_max_message_bytes": b"Q" + struct.pack("!I", MAX_MESSAGE_BYTES + 4096)
                                    + b"SELECT '" + b"x" * 1000,
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_frame_gets_08P01_and_close(wire_pgfold, bystander, case):
    before = wire_pgfold.stats()["protocol_errors"]
    with logged_in(Target("pgfold", wire_pgfold.port, None, wire_pgfold)) as w:
        w.send(MALFORMED[case])
        assert_fatal_then_close(w)
    # the other client, connected all along, still works
    result = bystander.simple_query("SELECT 40 + 2")
    assert result["rows"] == [["42"]] and result["status"] == "I"
    wait_until(lambda: wire_pgfold.stats()["protocol_errors"] >= before + 1, 5,
               "/stats protocol_errors to count the violation")


def test_full_query_over_max_message_bytes_rejected(wire_pgfold, bystander):
    """The whole oversized Query sent (not just its header)."""
    sql = "SELECT '" + "y" * (MAX_MESSAGE_BYTES + 10) + "'"
    with logged_in(Target("pgfold", wire_pgfold.port, None, wire_pgfold)) as w:
        try:
            w.send(query(sql))
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed before we finished sending: still must have said why
        assert_fatal_then_close(w)
    assert bystander.simple_query("SELECT 7")["rows"] == [["7"]]


def test_query_just_under_max_message_bytes_works(wire_pgfold):
    n = MAX_MESSAGE_BYTES - 100
    with logged_in(Target("pgfold", wire_pgfold.port, None, wire_pgfold)) as w:
        result = w.simple_query(f"SELECT length('{'z' * n}')")
    assert result["rows"] == [[str(n)]]


def test_unknown_message_type_on_postgres_itself(postgres):
    """PostgreSQL's own answer to an unknown type byte: the reference the
    proxy's 08P01 mirrors (and a check of this file's helpers)."""
    with logged_in(Target("direct", postgres.port, postgres)) as w:
        w.send(MALFORMED["unknown_type_byte"])
        err = assert_fatal_then_close(w)
    assert err["M"] == "invalid frontend message type 64"


# ---- bad startup packets --------------------------------------------------


BAD_STARTUP = {
    "length_4": struct.pack("!II", 4, 196608),
    "length_7": struct.pack("!II", 7, 196608),
    "length_20000": struct.pack("!II", 20000, 196608) + b"user\0app\0",
    "length_0xFFFFFFFF": struct.pack("!II", 0xFFFFFFFF, 196608),
    "ssl_request_length_16": struct.pack("!IIII", 16, 80877103, 0, 0),
}


@pytest.mark.parametrize("case", list(BAD_STARTUP))
def test_bad_startup_length_gets_error_and_close(wire_pgfold, bystander, case):
    with WireConn("127.0.0.1", wire_pgfold.port) as w:
        w.send(BAD_STARTUP[case])
        assert_fatal_then_close(w)
    assert bystander.simple_query("SELECT 'ok'")["rows"] == [["ok"]]


def test_startup_without_user_rejected(wtarget):
    with wtarget.wire() as w:
        w.send(startup_packet({"database": "shop"}))
        msgs = w.expect_eof(5)
    errors = [parse_fields(b) for t, b in msgs if t == b"E"]
    assert errors and errors[0]["C"] in ("28000", "08P01"), msgs


def test_startup_with_many_parameters(wtarget):
    """PostgreSQL takes any number of startup parameters within its 10,000
    byte packet limit; a transparent proxy must too."""
    params = {"user": "app", "database": "shop"}
    params.update({f"pgfold_test.p{i}": f"v{i}" for i in range(80)})
    with wtarget.wire() as w:
        w.send(startup_packet(params))
        w.login("app")
        assert w.simple_query('SHOW "pgfold_test.p79"')["rows"] == [["v79"]]


def test_startup_packet_near_size_limit(wtarget):
    params = {"user": "app", "database": "shop", "pgfold_test.long": "L" * 9000}
    packet = startup_packet(params)
    assert 9000 < len(packet) < 10000
    with wtarget.wire() as w:
        w.send(packet)
        w.login("app")
        result = w.simple_query("SELECT length(current_setting('pgfold_test.long'))")
        assert result["rows"] == [["9000"]]


def test_many_small_messages_in_one_write(wtarget):
    with logged_in(wtarget) as w:
        n = 20000
        w.send(sync() * n + query("SELECT 'after syncs'"))
        for i in range(n):
            assert w.read_message() == (b"Z", b"I"), f"message {i}"
        assert w.collect()["rows"] == [["after syncs"]]


def test_protocol_3_1_negotiated_down(wtarget):
    """A minor version PostgreSQL does not know: it answers
    NegotiateProtocolVersion and the session goes on with 3.0."""
    with wtarget.wire() as w:
        w.send(startup_packet({"user": "app", "database": "shop"}, protocol=(3 << 16) | 1))
        msgs = w.login("app")
        assert msgs[0][0] == b"v", msgs[0]
        assert struct.unpack("!I", msgs[0][1][:4])[0] == 196608
        assert w.simple_query("SELECT 'negotiated'")["rows"] == [["negotiated"]]


# ---- framing -----------------------------------------------------------


def test_messages_split_into_single_bytes(wtarget):
    with wtarget.wire() as w:
        packet = startup_packet({"user": "app", "database": "shop"})
        for i in range(len(packet)):
            w.send(packet[i:i + 1])
        w.login("app")
        msg = query("SELECT 'byte by byte', 17 * 3")
        for i in range(len(msg)):
            w.send(msg[i:i + 1])
            if i % 8 == 0:
                time.sleep(0.001)  # let the bytes travel as separate segments
        result = w.collect()
    assert result["rows"] == [["byte by byte", "51"]]


def test_pipelined_extended_messages_in_one_packet(wtarget, same_both_ways):
    with logged_in(wtarget) as w:
        batch = b""
        for i in range(3):
            batch += parse("SELECT $1::int * 10, $2::text", f"s{i}", ()) + \
                bind([i, f"row{i}"], statement=f"s{i}") + describe_portal() + execute() + sync()
        batch += query("SELECT 'after pipeline'")
        w.send(batch)
        results = [w.collect() for _ in range(4)]
    assert [r["rows"] for r in results] == [[["0", "row0"]], [["10", "row1"]], [["20", "row2"]],
                                           [["after pipeline"]]]
    assert [t for t in results[0]["types"]] == [b"1", b"2", b"T", b"D", b"C", b"Z"]
    same_both_ways([r["types"] for r in results])


def test_error_inside_extended_batch_skips_to_sync(wtarget, same_both_ways):
    with logged_in(wtarget) as w:
        w.send(parse("SELECT 1/0") + bind() + execute() + parse("SELECT 'skipped'") + bind()
               + execute() + sync() + query("SELECT 'next'"))
        first, second = w.collect(), w.collect()
    assert [e["C"] for e in first["errors"]] == ["22012"]
    assert first["rows"] == [] and first["status"] == "I"
    assert second["rows"] == [["next"]]
    same_both_ways(first["types"])


def test_flush_delivers_results_before_sync(wtarget, same_both_ways):
    """Flush ('H') must reach the backend and its answers the client at once,
    with no Sync sent yet."""
    with logged_in(wtarget) as w:
        w.send(parse("SELECT $1::int + 1") + bind(["41"]) + execute() + message(b"H"))
        got = [w.read_message() for _ in range(3)]
        assert [t for t, _ in got] == [b"1", b"2", b"D"]
        assert w.read_message()[0] == b"C"
        w.send(sync())
        assert w.read_message() == (b"Z", b"I")
    same_both_ways([t for t, _ in got])


def test_empty_query_and_describe(wtarget, same_both_ways):
    with logged_in(wtarget) as w:
        empty = w.simple_query("")
        assert empty["types"] == [b"I", b"Z"]
        w.send(parse("SELECT 1 AS a, 'x'::text AS b", "named") + message(b"D", b"Snamed\0") + sync())
        described = w.collect()
        assert described["types"] == [b"1", b"t", b"T", b"Z"]
        w.send(message(b"C", b"Snamed\0") + sync())
        assert w.collect()["types"] == [b"3", b"Z"]
    same_both_ways((empty["types"], described["types"]))


def test_terminate_closes_connection(wtarget):
    proxy = wtarget.proxy
    with logged_in(wtarget) as w:
        if proxy:
            during = wait_until(lambda: proxy.stats()["clients_active"], 5, "clients_active >= 1")
        w.send(terminate())
        assert w.expect_eof(5) == []
    if proxy:
        wait_until(lambda: proxy.stats()["clients_active"] <= during - 1, 5,
                   "clients_active to drop after Terminate")
