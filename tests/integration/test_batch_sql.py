"""The batched SQL of rewrite/batch.c against a real PostgreSQL 15.

For each child statement of a seeded blog schema (users, posts, comments,
tags, post_tags; a few hundred rows with ties and NULLs) and a list of keys:
run the child alone once per key, run the batch that tests/unit/batch_cli.c
prints (rw_batch_build) once as a simple Query — as pgfold sends it — split
its rows by the first column, drop layout.extra_columns, and assert that
every key's rows (text form, in order), its column descriptions (name, type
OID, type modifier, size, format, table OID, attribute number; psycopg2's
cursor.description too) and its row count equal the child's own, including
keys with no rows, keys missing from the parent table and duplicate keys.

batch_cli is compiled by the module fixture from rewrite/*.c and common/*.c
(with ASan/UBSan when gcc supports them; a sanitizer report fails the test).  No pgfold process is involved.
"""

import glob
import json
import os
import subprocess
from dataclasses import dataclass, field

import psycopg
import psycopg2
import pytest

from pgharness import REPO

DB = "batch_blog"

SCHEMA = r"""
CREATE TABLE users (
    id integer PRIMARY KEY,
    name text,
    email varchar(60),
    uid uuid UNIQUE NOT NULL,
    code char(6)
);
CREATE TABLE posts (
    id serial PRIMARY KEY,
    user_id integer REFERENCES users (id),
    title text,
    published boolean,
    score numeric(6, 2),
    created_at timestamptz NOT NULL
);
CREATE TABLE comments (
    id serial PRIMARY KEY,
    post_id integer REFERENCES posts (id),
    user_id integer REFERENCES users (id),
    body text,
    created_at timestamptz NOT NULL
);
CREATE TABLE tags (id serial PRIMARY KEY, name text UNIQUE NOT NULL);
CREATE TABLE post_tags (
    post_id integer REFERENCES posts (id),
    tag_id integer REFERENCES tags (id),
    PRIMARY KEY (post_id, tag_id)
);
CREATE INDEX ON posts (user_id);
CREATE INDEX ON comments (post_id);

-- users 1..40: 31..40 have no posts; names with a quote, a backslash, NULLs
INSERT INTO users
SELECT g,
       CASE WHEN g = 3 THEN 'o''brien' WHEN g = 4 THEN 'back\slash' WHEN g % 7 = 0 THEN NULL
            ELSE 'user' || g END,
       'u' || g || '@example.com',
       md5('u' || g)::uuid,
       CASE WHEN g % 2 = 0 THEN 'c' || g END
FROM generate_series(1, 40) g;

-- 300 posts: user_id NULL for every 17th, 9 distinct created_at (ties),
-- NULL titles and scores, scores with ties
INSERT INTO posts (user_id, title, published, score, created_at)
SELECT CASE WHEN g % 17 = 0 THEN NULL ELSE (g * 7) % 30 + 1 END,
       CASE WHEN g % 11 = 0 THEN NULL ELSE 'post ' || g END,
       g % 3 <> 0,
       CASE WHEN g % 5 = 0 THEN NULL ELSE ((g * 13) % 40) / 4.0 END,
       timestamptz '2024-01-01 00:00:00+00' + (g % 9) * interval '1 day'
FROM generate_series(1, 300) g;

INSERT INTO comments (post_id, user_id, body, created_at)
SELECT (g * 11) % 300 + 1, g % 40 + 1, 'comment ' || g,
       timestamptz '2024-02-01 00:00:00+00' + (g % 4) * interval '1 hour'
FROM generate_series(1, 600) g;

INSERT INTO tags (name) SELECT 'tag' || g FROM generate_series(1, 12) g;
INSERT INTO post_tags
SELECT DISTINCT p, t FROM generate_series(1, 300) p,
       LATERAL (VALUES (p % 12 + 1), ((p * 5) % 12 + 1)) AS v(t)
WHERE p % 13 <> 0;
ANALYZE;
"""

INT4, INT8, TEXT, BOOL, UUID, BPCHAR, NUMERIC = 23, 20, 25, 16, 2950, 1042, 1700

USER_KEYS = ["5", "12", "35", "999", "5", "1", "30", "17"]  # 35: no posts, 999: no user
POST_KEYS = ["7", "1", "300", "77", "7", "301", "150"]  # 301: no post
SANITIZER = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


@dataclass
class Case:
    name: str
    child: str  # {k} is the key, rendered by `render`
    keys: list
    form: str  # the form the batch must come out in
    form_for: str = None  # rw_batch_form_for's answer (default: form)
    render: str = "number"  # number | string | raw
    key_type: int = INT4
    column_type: int = 0
    params: list = field(default_factory=list)  # [(oid, value)], $1 = the key's slot value
    key_param: int = 0  # the key's $n (its value is replaced per key)

    def text(self, key):
        if self.render == "string":
            return self.child.format(k="'" + key.replace("'", "''") + "'")
        return self.child.format(k=key)


CASES = [
    # SQLAlchemy lazy loads
    Case("lazy_one_to_many",
         "SELECT posts.id AS posts_id, posts.user_id AS posts_user_id, posts.title AS posts_title, "
         "posts.published AS posts_published, posts.score AS posts_score, posts.created_at AS posts_created_at "
         "FROM posts WHERE {k} = posts.user_id", USER_KEYS, "in"),
    Case("lazy_many_to_one",
         "SELECT users.id AS users_id, users.name AS users_name, users.email AS users_email, "
         "users.uid AS users_uid, users.code AS users_code FROM users WHERE users.id = {k}", USER_KEYS, "in"),
    Case("extra_filter",
         "SELECT posts.id, posts.title FROM posts WHERE posts.user_id = {k} AND posts.published = true",
         USER_KEYS, "in"),
    Case("nested_comments",
         "SELECT comments.id, comments.body, comments.user_id FROM comments WHERE comments.post_id = {k}",
         POST_KEYS, "in"),
    Case("star_and_duplicate_names",
         "SELECT *, posts.id, posts.title AS id FROM posts WHERE posts.user_id = {k}", USER_KEYS, "in"),
    # joins take LATERAL: the child's own join plan per key, so its row order
    Case("many_to_many_tags",
         "SELECT tags.id AS tags_id, tags.name AS tags_name FROM tags, post_tags "
         "WHERE {k} = post_tags.post_id AND tags.id = post_tags.tag_id", POST_KEYS, "lateral"),
    Case("join_star_duplicate_names",
         "SELECT *, users.id FROM posts JOIN users ON users.id = posts.user_id WHERE posts.user_id = {k}",
         USER_KEYS, "lateral"),
    Case("negative_and_parenthesized",
         "SELECT posts.id FROM posts WHERE (posts.user_id = {k})", ["5", "-1", "12", "0"], "in"),
    # LATERAL: ORDER BY, LIMIT, aggregates, DISTINCT, windows
    Case("first_post_per_user",
         "SELECT posts.id, posts.title, posts.created_at FROM posts WHERE posts.user_id = {k} "
         "ORDER BY posts.created_at DESC, posts.id LIMIT 1", USER_KEYS, "lateral"),
    Case("order_by_with_ties",
         "SELECT comments.id, comments.created_at FROM comments WHERE comments.post_id = {k} "
         "ORDER BY comments.created_at", POST_KEYS, "lateral"),
    Case("order_by_nulls_limit_offset",
         "SELECT posts.id, posts.score FROM posts WHERE posts.user_id = {k} "
         "ORDER BY posts.score DESC NULLS FIRST, posts.id LIMIT 3 OFFSET 1", USER_KEYS, "lateral"),
    Case("count_per_parent",
         "SELECT count(*) AS count_1 FROM posts WHERE posts.user_id = {k}", USER_KEYS, "lateral"),
    Case("aggregates_group_by",
         "SELECT posts.published, count(*), sum(posts.score), max(posts.title) FROM posts "
         "WHERE posts.user_id = {k} GROUP BY posts.published ORDER BY posts.published", USER_KEYS, "lateral"),
    Case("distinct_ordered",
         "SELECT DISTINCT comments.user_id FROM comments WHERE comments.post_id = {k} ORDER BY 1",
         POST_KEYS, "lateral"),
    Case("window_function",
         "SELECT posts.id, row_number() OVER (ORDER BY posts.score DESC NULLS LAST, posts.id) AS rn, "
         "rank() OVER (ORDER BY posts.created_at) AS rk FROM posts WHERE posts.user_id = {k} ORDER BY posts.id",
         USER_KEYS, "lateral"),
    Case("join_duplicate_names_lateral",
         "SELECT posts.id, users.id, posts.title, users.name FROM posts JOIN users ON users.id = posts.user_id "
         "WHERE posts.user_id = {k} ORDER BY posts.id DESC", USER_KEYS, "lateral"),
    # existence checks
    Case("exists_subquery",
         "SELECT EXISTS (SELECT * FROM posts WHERE posts.user_id = {k}) AS anon_1", USER_KEYS, "exists"),
    Case("select_1_limit_1",
         "SELECT 1 FROM posts WHERE posts.user_id = {k} LIMIT 1", USER_KEYS, "lateral"),
    # key types
    Case("string_keys_with_quotes",
         "SELECT users.id, users.email FROM users WHERE users.name = {k}",
         ["o'brien", "back\\slash", "user5", "nobody", "o'brien"], "in", render="string",
         key_type=TEXT, column_type=TEXT),
    Case("string_keys_lateral",
         "SELECT users.id FROM users WHERE users.name = {k} ORDER BY users.id",
         ["o'brien", "back\\slash", "user5", "nobody"], "lateral", render="string",
         key_type=TEXT, column_type=TEXT),
    Case("bpchar_keys",
         "SELECT users.id, users.code FROM users WHERE users.code = {k}", ["c2", "c4    ", "c40", "zz"],
         "lateral", form_for="in", render="string", key_type=BPCHAR, column_type=BPCHAR),
    Case("uuid_keys",
         "SELECT users.id, users.name FROM users WHERE users.uid = {k}", "UUIDS", "in", render="string",
         key_type=UUID),
    Case("uuid_keys_cast",
         "SELECT users.id FROM users WHERE users.uid = {k}::uuid", "UUIDS", "in", render="string",
         key_type=UUID),
    Case("uuid_keys_not_canonical",
         "SELECT users.id FROM users WHERE users.uid = {k}", "UUIDS_UPPER", "lateral", form_for="in",
         render="string", key_type=UUID),
    Case("numeric_keys",
         "SELECT posts.id FROM posts WHERE posts.score = {k}", ["4.50", "9.75", "3", "0.25", "4.5"], "lateral",
         form_for="in", key_type=NUMERIC),
    # bound parameters (extended protocol), inlined as typed literals
    Case("param_key_in",
         "SELECT posts.id, posts.title FROM posts WHERE posts.user_id = $1 AND posts.published = $2",
         USER_KEYS, "in", render="raw", params=[(INT8, None), (BOOL, "t")], key_param=1),
    Case("param_key_int2_widened",
         "SELECT posts.id FROM posts WHERE posts.user_id = $1", ["5", "40000", "12"], "in", render="raw",
         params=[(21, None)], key_param=1),
    Case("param_key_lateral_reused",
         "SELECT posts.id, $1::int AS again FROM posts WHERE $1 = posts.user_id AND posts.title <> $2 "
         "ORDER BY posts.id LIMIT $3", USER_KEYS, "lateral", render="raw",
         params=[(INT4, None), (TEXT, "it's \\ x"), (INT8, "2")], key_param=1),
    Case("param_key_uuid_and_null",
         "SELECT users.id FROM users WHERE users.uid = $2 AND users.code IS DISTINCT FROM $1",
         "UUIDS", "in", render="raw", params=[(BPCHAR, None), (UUID, None)], key_param=2, key_type=UUID),
]


# --------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def blog(postgres):
    postgres.query(f"DROP DATABASE IF EXISTS {DB}", dbname="postgres")
    postgres.query(f"CREATE DATABASE {DB}", dbname="postgres")
    conn = postgres.connect(dbname=DB)
    try:
        with conn.cursor() as cur:
            cur.execute(SCHEMA)
            cur.execute("SELECT uid::text FROM users WHERE id IN (2, 3, 9, 31) ORDER BY id")
            uuids = [r[0] for r in cur.fetchall()]
    finally:
        conn.close()
    keys = {"UUIDS": uuids + ["00000000-0000-0000-0000-000000000000", uuids[1]],
            "UUIDS_UPPER": [uuids[0].upper(), uuids[0], uuids[2].upper(), uuids[3]]}
    yield postgres, keys


@pytest.fixture(scope="module")
def batch_cli(tmp_path_factory):
    out = tmp_path_factory.mktemp("batch_cli") / "batch_cli"
    # rewrite/ depends on common/ only (rewrite/README.md)
    sources = ([str(REPO / "tests/unit/batch_cli.c")] + sorted(glob.glob(str(REPO / "rewrite/*.c")))
               + sorted(glob.glob(str(REPO / "common/*.c"))))
    base = ["gcc", "-std=c11", "-D_GNU_SOURCE", "-g", "-O1", "-o", str(out)]
    libs = ["-lpg_query", "-lprotobuf-c"]
    build = subprocess.run(base + ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"]
                           + sources + libs, capture_output=True, text=True)
    if build.returncode != 0:
        build = subprocess.run(base + sources + libs, capture_output=True, text=True)
    assert build.returncode == 0, f"building batch_cli failed:\n{build.stderr}"
    return out


def make_batch(cli, case, keys, extra_args=()):
    """The CLI's JSON answer for case with keys (the first key's child text)."""
    argv = [str(cli), "--key-type", str(case.key_type)]
    if case.column_type:
        argv += ["--column-type", str(case.column_type)]
    for i, (oid, value) in enumerate(case.params, start=1):
        if i == case.key_param:
            value = keys[0]
        argv += ["--param-null", str(oid)] if value is None else ["--param", f"{oid}={value}"]
    argv += list(extra_args) + [case.text(keys[0])] + list(keys)
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:halt_on_error=1")
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    assert not any(m in proc.stderr for m in SANITIZER), proc.stderr
    assert proc.returncode in (0, 2), f"batch_cli exited {proc.returncode}:\n{proc.stderr}"
    return json.loads(proc.stdout)


# --------------------------------------------------------------------------
# running statements: raw results as PostgreSQL sent them


def result_of(res):
    """(descriptions, rows as text bytes, command tag) of a libpq result."""
    assert res.status == psycopg.pq.ExecStatus.TUPLES_OK, res.error_message.decode(errors="replace")
    desc = [(res.fname(i), res.ftype(i), res.fmod(i), res.fsize(i), res.fformat(i), res.ftable(i),
             res.ftablecol(i)) for i in range(res.nfields)]
    rows = [[res.get_value(r, c) for c in range(res.nfields)] for r in range(res.ntuples)]
    return desc, rows, res.command_status.decode()


def run_child(conn, case, key):
    if not case.params:
        return result_of(conn.pgconn.exec_(case.text(key).encode()))
    values, types = [], []
    for i, (oid, value) in enumerate(case.params, start=1):
        value = key if i == case.key_param else value
        if oid == 21 and value is not None and not -32768 <= int(value) <= 32767:
            oid = 23  # as psycopg 3 types an int by its value: int2 for 5, int4 for 40000
        values.append(None if value is None else value.encode())
        types.append(oid)
    return result_of(conn.pgconn.exec_params(case.child.encode(), values, types))


def psycopg2_description(pg, sql):
    conn = pg.connect(dbname=DB)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return [tuple(d) for d in cur.description]
    finally:
        conn.close()


def split(rows, extra):
    """key text -> rows without the extra columns, in batch order."""
    groups = {}
    for row in rows:
        groups.setdefault(row[0].decode(), []).append(row[extra:])
    return groups


# --------------------------------------------------------------------------
# tests


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_batch_equals_children(blog, batch_cli, case):
    pg, named_keys = blog
    keys = named_keys[case.keys] if isinstance(case.keys, str) else case.keys
    got = make_batch(batch_cli, case, keys)
    assert "sql" in got, f"{case.name}: not batched: {got}"
    assert got["form"] == case.form, got
    assert got["form_for"] == (case.form_for or case.form), got
    extra = got["extra_columns"]
    assert extra == (2 if case.form == "lateral" else 1)
    assert got["nkeys"] == len(dict.fromkeys(keys))

    with psycopg.connect(pg.dsn(dbname=DB), autocommit=True) as conn:
        bdesc, brows, btag = result_of(conn.pgconn.exec_(got["sql"].encode()))
        assert btag == f"SELECT {len(brows)}"
        groups = split(brows, extra)
        assert set(groups) <= set(keys), f"rows for keys never asked for: {set(groups) - set(keys)}"
        if got["grouped"]:
            order = [row[0].decode() for row in brows]
            runs = [k for i, k in enumerate(order) if i == 0 or order[i - 1] != k]
            assert runs == [k for k in dict.fromkeys(keys) if k in groups], "groups not contiguous in key order"
        for key in keys:
            cdesc, crows, ctag = run_child(conn, case, key)
            assert bdesc[extra:] == cdesc, f"key {key!r}: RowDescription differs"
            assert groups.get(key, []) == crows, f"key {key!r}: rows differ\nchild: {crows}\nbatch: {groups.get(key)}"
            assert ctag == f"SELECT {len(groups.get(key, []))}"

    if not case.params:
        child_d = psycopg2_description(pg, case.text(keys[0]))
        batch_d = psycopg2_description(pg, got["sql"])
        assert batch_d[extra:] == child_d


def test_rowdescription_keeps_table_columns(blog, batch_cli):
    """The child's columns keep table OID and attribute number through the
    LATERAL subqueries (what a client such as JDBC's ResultSetMetaData or
    psycopg's ftable relies on), while the extra columns have none."""
    pg, _ = blog
    case = next(c for c in CASES if c.name == "join_duplicate_names_lateral")
    got = make_batch(batch_cli, case, ["5", "12"])
    with psycopg.connect(pg.dsn(dbname=DB), autocommit=True) as conn:
        desc, _, _ = result_of(conn.pgconn.exec_(got["sql"].encode()))
        oids = dict(conn.execute("SELECT relname, oid::int FROM pg_class WHERE relname IN ('posts', 'users')"))
    assert [(d[0], d[5], d[6]) for d in desc] == [
        (b"pgfold_key", 0, 0), (b"pgfold_row", 0, 0), (b"id", oids["posts"], 1), (b"id", oids["users"], 1),
        (b"title", oids["posts"], 3), (b"name", oids["users"], 2)]


@pytest.mark.parametrize("child, args", [
    ("SELECT posts.id FROM posts WHERE posts.user_id = 5 FOR UPDATE", []),
    ("SELECT posts.id FROM posts WHERE posts.user_id = 5 UNION SELECT 1", []),
    ("WITH p AS (SELECT * FROM posts) SELECT p.id FROM p WHERE p.user_id = 5", []),
    ("SELECT posts.id FROM posts WHERE posts.user_id = 5 OR posts.id = 1", []),
    ("SELECT users.id FROM users WHERE users.name = 'user5'", ["--key-type", "25"]),  # column type unknown
    ("SELECT posts.id FROM posts WHERE posts.user_id = $1", ["--param", "0=5"]),  # parameter type unknown
    ("SELECT posts.id FROM posts WHERE posts.user_id = 5", ["--key-type", "23"]),  # key "x" is no number
])
def test_not_batched(batch_cli, child, args):
    argv = [str(batch_cli)] + args + [child, "5", "x"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, ASAN_OPTIONS="detect_leaks=1"))
    assert not any(m in proc.stderr for m in SANITIZER), proc.stderr
    assert proc.returncode == 2, proc.stdout
    assert "error" in json.loads(proc.stdout)


def test_batch_of_500_keys(blog, batch_cli):
    """batch_size keys in one statement: every key's rows, one round trip."""
    pg, _ = blog
    case = next(c for c in CASES if c.name == "first_post_per_user")
    keys = [str(k) for k in range(1, 501)]
    got = make_batch(batch_cli, case, keys)
    with psycopg.connect(pg.dsn(dbname=DB), autocommit=True) as conn:
        _, rows, _ = result_of(conn.pgconn.exec_(got["sql"].encode()))
        groups = split(rows, got["extra_columns"])
        for key in ["1", "7", "30", "31", "500"]:
            assert groups.get(key, []) == run_child(conn, case, key)[1]
    assert sorted(groups, key=int) == [str(k) for k in range(1, 31)]
