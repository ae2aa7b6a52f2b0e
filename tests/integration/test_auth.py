"""Authentication directly and through pgfold, which relays PostgreSQL's own
exchange: SCRAM-SHA-256 (app_scram), MD5 (app_md5, stored as an md5 hash)
and cleartext password (app_password).  Checked with psycopg2 and with the
raw-wire client, which also asserts which authentication request the server
sent.  A wrong password must produce PostgreSQL's own error: SQLSTATE 28P01,
'password authentication failed for user "..."'."""

import psycopg2
import pytest

from pgharness import PASSWORDS
from wire import AUTH_CLEARTEXT, AUTH_MD5, AUTH_OK, AUTH_SASL, ServerError

METHODS = [("app_scram", AUTH_SASL), ("app_md5", AUTH_MD5), ("app_password", AUTH_CLEARTEXT)]


@pytest.mark.parametrize("role,auth_code", METHODS)
def test_password_login_succeeds(target, role, auth_code):
    with target.connect(user=role, password=PASSWORDS[role]) as conn, conn.cursor() as cur:
        cur.execute("SELECT current_user, current_database()")
        assert cur.fetchone() == (role, "shop")


@pytest.mark.parametrize("role,auth_code", METHODS)
def test_wire_login_uses_expected_method(target, role, auth_code):
    with target.wire() as w:
        w.startup(role, "shop", password=PASSWORDS[role])
        assert w.auth_codes[0] == auth_code and w.auth_codes[-1] == AUTH_OK, w.auth_codes
        assert w.backend_key is not None, "no BackendKeyData after login"
        assert w.params.get("server_version", "").startswith("15.")
        result = w.simple_query("SELECT current_user")
        assert result["rows"] == [[role]] and result["status"] == "I"


@pytest.mark.parametrize("role,auth_code", METHODS)
def test_wrong_password_rejected_with_postgres_error(target, role, auth_code, same_both_ways):
    with pytest.raises(psycopg2.OperationalError) as info:
        target.connect(user=role, password="not-the-password")
    assert f'password authentication failed for user "{role}"' in str(info.value)

    with target.wire() as w:
        with pytest.raises(ServerError) as err:
            w.startup(role, "shop", password="not-the-password")
        fields = err.value.fields
        assert fields["C"] == "28P01"
        assert fields["V"] == "FATAL"
        assert fields["M"] == f'password authentication failed for user "{role}"'
        w.expect_eof(5)
    same_both_ways(fields["M"])


def test_empty_scram_password_rejected(target):
    with target.wire() as w:
        with pytest.raises(ServerError) as err:
            w.startup("app_scram", "shop", password="")
        assert err.value.sqlstate == "28P01"
        assert w.auth_codes[0] == AUTH_SASL


def test_trust_role_needs_no_password(target):
    with target.wire() as w:
        w.startup("app", "shop")
        assert w.auth_codes == [AUTH_OK]


def test_unknown_database_error_relayed(target, same_both_ways):
    with target.wire() as w:
        with pytest.raises(ServerError) as err:
            w.startup("app", "no_such_db")
        assert err.value.sqlstate == "3D000"
        assert err.value.fields["M"] == 'database "no_such_db" does not exist'
        w.expect_eof(5)
    same_both_ways(err.value.fields["M"])


def test_unknown_role_error_relayed(target, same_both_ways):
    with target.wire() as w:
        with pytest.raises(ServerError) as err:
            w.startup("nobody_here", "shop")
        assert err.value.sqlstate == "28000"
        assert err.value.fields["M"] == 'role "nobody_here" does not exist'
    same_both_ways(err.value.fields["M"])
