"""N+1 batching (nplusone.mode = rewrite) for simple-Query children.

A differential harness: the same raw-wire workload runs through a pgfold with
nplusone.mode = off and one with rewrite; every message the client receives
must be byte-for-byte the same (BackendKeyData aside), while the backend runs
far fewer statements (pg_stat_statements).  Workloads: one-to-many lazy
loading with literal keys, nested users -> posts -> comments, first post per
user (ORDER BY + LIMIT), count(*) per parent, existence per parent (SELECT
EXISTS (...) and SELECT 1 ... LIMIT 1), the same inside a transaction block,
a write between two children, a child whose batch would fail (division by
zero for another key), REPEATABLE READ, and SQLAlchemy 1.4 ORM workloads:
lazy one-to-many, lazy many-to-one, count(), first row by ORDER BY + LIMIT
and exists() per parent.
"""

import json

import pytest
import sqlalchemy as sa
from sqlalchemy import orm

from pgharness import wait_until
from wire import WireConn, query

N_USERS = 25

SCHEMA = """
DROP TABLE IF EXISTS rw_feelings, rw_tagged, rw_tags, rw_comments, rw_posts, rw_users;
DROP TYPE IF EXISTS rw_mood;
CREATE TABLE rw_users (id int PRIMARY KEY, name text NOT NULL, divisor int NOT NULL);
CREATE TABLE rw_posts (id int PRIMARY KEY, user_id int NOT NULL REFERENCES rw_users, title text,
                       score numeric(6,2));
CREATE TABLE rw_comments (id int PRIMARY KEY, post_id int NOT NULL REFERENCES rw_posts, body text);
CREATE INDEX ON rw_posts (user_id);
CREATE INDEX ON rw_comments (post_id);
INSERT INTO rw_users SELECT g, 'user ' || g, CASE WHEN g = 13 THEN 0 ELSE g END FROM generate_series(1, 25) g;
INSERT INTO rw_posts SELECT u * 10 + p, u, 'post ' || p || ' of ' || u, CASE WHEN p = 1 THEN NULL ELSE u * 1.25 END
  FROM generate_series(1, 25) u, generate_series(0, 2 + u % 3) p WHERE u % 7 <> 0;
INSERT INTO rw_comments SELECT p.id * 10 + c, p.id, 'c' || c FROM rw_posts p, generate_series(0, p.id % 3) c;
CREATE TABLE rw_tags (name text PRIMARY KEY, label text);
CREATE TABLE rw_tagged (tag_name varchar(20) NOT NULL, post_id int NOT NULL, note char(6));
INSERT INTO rw_tags SELECT 'tag' || g, 'label ' || g FROM generate_series(1, 12) g;
INSERT INTO rw_tagged SELECT 'tag' || (g % 12 + 1), g, 'n' || (g % 3) FROM generate_series(1, 60) g;
CREATE TYPE rw_mood AS ENUM ('happy', 'sad', 'meh', 'bored');
CREATE TABLE rw_feelings (user_id int NOT NULL, mood rw_mood NOT NULL);
INSERT INTO rw_feelings SELECT g, (ARRAY['happy', 'sad', 'meh']::rw_mood[])[g % 3 + 1] FROM generate_series(1, 25) g;
"""


@pytest.fixture(scope="module")
def blog(postgres):
    postgres.create_database("rw_blog", SCHEMA)
    yield "rw_blog"
    postgres.drop_database("rw_blog")


@pytest.fixture(scope="module")
def proxies(blog, module_pgfold_factory):
    off = module_pgfold_factory(sets={"nplusone.mode": "off"}, name="pgfold-np-off")
    rewrite = module_pgfold_factory(sets={"nplusone.mode": "rewrite"}, name="pgfold-np-rewrite")
    return off, rewrite


def record(port, db, script):
    """Run script(conn) -> list of SQL strings, sent one Query at a time;
    returns every message received after login (type, body), BackendKeyData
    excluded."""
    got = []
    with WireConn("127.0.0.1", port) as w:
        w.startup("app", db)
        for sql in script:
            w.send(query(sql))
            got.append([m for m in w.read_until_ready()])
        w.send(b"X\x00\x00\x00\x04")
    return got


def backend_statements(postgres, db, like):
    (n,), = postgres.query("SELECT coalesce(sum(calls), 0)::int FROM pg_stat_statements s "
                           "JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = %s AND s.query LIKE %s",
                           (db, like), dbname=db)
    return n


def reset_statements(postgres, db):
    postgres.query("SELECT pg_stat_statements_reset()", dbname=db)


def lazy_children(template, keys):
    return [template % k for k in keys]


USER_IDS = list(range(1, N_USERS + 1))
PARENT = "SELECT rw_users.id AS rw_users_id, rw_users.name AS rw_users_name FROM rw_users ORDER BY rw_users.id"
POSTS = ("SELECT rw_posts.id AS rw_posts_id, rw_posts.user_id AS rw_posts_user_id, rw_posts.title AS "
         "rw_posts_title, rw_posts.score AS rw_posts_score FROM rw_posts WHERE %d = rw_posts.user_id")

WORKLOADS = {
    "one_to_many": [PARENT] + lazy_children(POSTS, USER_IDS),
    "first_post_per_user": [PARENT] + lazy_children(
        "SELECT id, title FROM rw_posts WHERE user_id = %d ORDER BY id DESC LIMIT 1", USER_IDS),
    "count_per_user": [PARENT] + lazy_children("SELECT count(*) FROM rw_posts WHERE rw_posts.user_id = %d",
                                               USER_IDS),
    # users 7, 14 and 21 have no posts: true and false answers both occur
    "exists_per_user": [PARENT] + lazy_children(
        "SELECT EXISTS (SELECT 1 FROM rw_posts WHERE rw_posts.user_id = %d) AS anon_1", USER_IDS),
    "exists_as_select_1_limit_1": [PARENT] + lazy_children(
        "SELECT 1 AS x FROM rw_posts WHERE user_id = %d LIMIT 1", USER_IDS),
    "in_a_block": ["BEGIN", PARENT] + lazy_children(POSTS, USER_IDS) + ["COMMIT"],
    "repeatable_read": ["BEGIN ISOLATION LEVEL REPEATABLE READ", PARENT] + lazy_children(POSTS, USER_IDS)
                       + ["COMMIT"],
    "write_between_children": [PARENT] + lazy_children(POSTS, USER_IDS[:6])
                              + ["UPDATE rw_posts SET title = title WHERE id = 70"]
                              + lazy_children(POSTS, USER_IDS[6:]),
    "batch_would_fail": ["BEGIN", PARENT] + lazy_children(
        "SELECT id, 100 / (SELECT divisor FROM rw_users WHERE id = %d) AS q FROM rw_users WHERE rw_users.id = %d",
        []) + ["COMMIT"],
    "rolled_back_block": ["BEGIN", PARENT] + lazy_children(POSTS, USER_IDS[:10]) + ["ROLLBACK"]
                         + lazy_children(POSTS, USER_IDS[10:]),
}
# text keys: typed by the child's column (varchar, char(n)) read from pg_attribute
TAGS = [f"tag{g}" for g in range(1, 13)]
WORKLOADS["text_keys_varchar_column"] = ["SELECT name, label FROM rw_tags ORDER BY name"] + [
    "SELECT rw_tagged.post_id FROM rw_tagged WHERE rw_tagged.tag_name = '%s'" % t for t in TAGS]
WORKLOADS["text_keys_ordered"] = ["SELECT name, label FROM rw_tags ORDER BY name"] + [
    "SELECT post_id, note FROM rw_tagged WHERE tag_name = '%s' ORDER BY post_id DESC" % t for t in TAGS]
WORKLOADS["text_keys_bpchar_column"] = ["SELECT k FROM (VALUES ('n0'), ('n1'), ('n2'), ('n3')) v(k)"] + [
    "SELECT post_id FROM rw_tagged WHERE note = '%s' ORDER BY post_id" % k for k in ("n0", "n1", "n2", "n3")]
# an enum column: the key is cast to the type's name from pg_type
WORKLOADS["enum_key_column"] = ["SELECT m::text AS mood FROM unnest(enum_range(NULL::rw_mood)) m"] + [
    "SELECT user_id FROM rw_feelings WHERE mood = '%s' ORDER BY user_id" % m for m in ("happy", "sad", "meh", "bored")]
# one shape, another literal besides the key: answers fetched for one variant
# must never answer the other
WORKLOADS["other_literal_differs"] = [PARENT] + [
    "SELECT id, title FROM rw_posts WHERE rw_posts.user_id = %d AND title <> '%s' ORDER BY id"
    % (k, "post 0 of %d" % k if k % 2 else "post 1 of 1") for k in USER_IDS]
# a batch answer far larger than one read (the answer arrives in pieces)
WORKLOADS["large_batch_answer"] = [PARENT] + [
    "SELECT rw_posts.id, repeat(rw_posts.title, 200) AS big FROM rw_posts WHERE rw_posts.user_id = %d" % k
    for k in USER_IDS]
# a child whose batch raises for another key (user 13 has divisor 0) but not for its own
WORKLOADS["batch_would_fail"] = ["BEGIN", PARENT] + [
    "SELECT rw_users.id, 100 / rw_users.divisor AS q FROM rw_users WHERE rw_users.id = %d" % k
    for k in USER_IDS if k < 13] + ["SELECT 1", "COMMIT"]


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_rewrite_is_byte_identical(name, proxies, blog):
    off, rewrite = proxies
    script = WORKLOADS[name]
    want = record(off.port, blog, script)
    got = record(rewrite.port, blog, script)
    again = record(rewrite.port, blog, script)  # the pattern is known from the very first child now
    for i, sql in enumerate(script):
        assert got[i] == want[i], f"{name}: answer to {sql!r} differs"
        assert again[i] == want[i], f"{name} (second run): answer to {sql!r} differs"


def test_volatile_child_is_never_batched(proxies, blog, postgres):
    """random() in the child: answers must come from PostgreSQL itself."""
    _, rewrite = proxies
    script = [PARENT] + ["SELECT id, random() < 2 AS r FROM rw_posts WHERE rw_posts.user_id = %d" % k
                         for k in USER_IDS]
    record(rewrite.port, blog, script)
    reset_statements(postgres, blog)
    record(rewrite.port, blog, script)
    assert backend_statements(postgres, blog, "%random()%") == N_USERS


def test_memory_budget_relays_children_unchanged(blog, postgres, pgfold_factory, proxies):
    """With a buffer budget smaller than one batch, children are relayed as
    they are (the client still gets exactly what it would have)."""
    off, _ = proxies
    tight = pgfold_factory(sets={"nplusone.mode": "rewrite", "nplusone.max_buffer_bytes": "1kB"},
                           name="pgfold-np-tight")
    script = [PARENT] + [
        "SELECT rw_posts.id, repeat(rw_posts.title, 50) AS big FROM rw_posts WHERE rw_posts.user_id = %d" % k
        for k in USER_IDS]
    want = record(off.port, blog, script)
    record(tight.port, blog, script)  # learn
    reset_statements(postgres, blog)
    got = record(tight.port, blog, script)
    assert got == want
    # one batch did not fit: the children after it reach the backend as they are
    children = backend_statements(postgres, blog, "SELECT rw_posts.id, repeat(%")
    batches = backend_statements(postgres, blog, "%pgfold_key%")
    assert batches <= 1 and children >= N_USERS - 1, (batches, children)


def learn(proxy, blog, script):
    """Run script until pgfold knows its patterns: once, then again after the
    database's function catalog has loaded (before it, every function call
    counts as volatile and no child is a candidate)."""
    record(proxy.port, blog, script)

    def loaded():
        status, _, body = proxy.admin_get(f"/functions?db={blog}&fn=now")
        return status == 200 and json.loads(body)["loaded"]
    wait_until(loaded, 30, f"function catalog of {blog} loaded")
    record(proxy.port, blog, script)


def hold_a_batch(proxy, blog, children):
    """A session that loaded its parent and two children: the batch for
    every user is in its buffer.  Returns the connection and the bytes held."""
    holder = WireConn("127.0.0.1", proxy.port)
    holder.startup("app", blog)
    for sql in [PARENT] + children[:2]:
        holder.send(query(sql))
        holder.read_until_ready()
    status, _, body = proxy.admin_get("/stats")
    assert status == 200
    return holder, json.loads(body)["nplusone"]["buffered_bytes"]


def test_total_budget_is_shared_by_sessions(blog, postgres, pgfold_factory, proxies):
    """nplusone.max_total_buffer_bytes bounds every session's prefetched
    answers together: while one session holds its buffer, another's batch
    does not fit and its children are relayed unchanged (answers exact)."""
    off, _ = proxies
    children = ["SELECT rw_posts.id, repeat(rw_posts.title, 4) AS big FROM rw_posts WHERE rw_posts.user_id = %d"
                % k for k in USER_IDS]
    want = record(off.port, blog, [PARENT] + children)
    probe = pgfold_factory(sets={"nplusone.mode": "rewrite"}, name="pgfold-np-probe")
    learn(probe, blog, [PARENT] + children)
    conn, one_batch = hold_a_batch(probe, blog, children)
    conn.close()
    assert one_batch > 0
    # room for one session's batch, not for two
    shared = pgfold_factory(sets={"nplusone.mode": "rewrite",
                                  "nplusone.max_total_buffer_bytes": f"{one_batch * 3 // 2}B"},
                            name="pgfold-np-total")
    learn(shared, blog, [PARENT] + children)
    holder, held = hold_a_batch(shared, blog, children)
    try:
        assert held == one_batch
        reset_statements(postgres, blog)
        got = record(shared.port, blog, [PARENT] + children)
        assert got == want
        relayed = backend_statements(postgres, blog, "SELECT rw_posts.id, repeat(%")
        assert relayed >= N_USERS - 1, f"only {relayed} children relayed while the budget was held"
    finally:
        holder.close()
    status, _, body = shared.admin_get("/stats")
    assert json.loads(body)["nplusone"]["buffered_bytes"] == 0  # freed with the sessions


@pytest.mark.parametrize("name,most", [("one_to_many", 2), ("exists_per_user", 3),
                                       ("exists_as_select_1_limit_1", 3)])
def test_backend_statements_drop(name, most, proxies, blog, postgres):
    """Once the pattern is known the children cost one batch (pg_stat_statements)."""
    off, rewrite = proxies
    script = WORKLOADS[name]
    record(rewrite.port, blog, script)  # learn the pattern
    reset_statements(postgres, blog)
    record(off.port, blog, script)
    unbatched = backend_statements(postgres, blog, "%FROM rw_posts%")
    reset_statements(postgres, blog)
    record(rewrite.port, blog, script)
    batched = backend_statements(postgres, blog, "%FROM rw_posts%")
    batches = backend_statements(postgres, blog, "%pgfold_key%")
    assert unbatched == N_USERS
    assert 1 <= batches <= batched <= most, f"{name}: {batched} backend statements for {N_USERS} children"
    status, _, body = rewrite.admin_get("/nplusone")
    assert status == 200 and b'"children_served"' in body


@pytest.mark.parametrize("name,table,most", [
    ("text_keys_varchar_column", "rw_tagged", 1),  # typed from pg_attribute
    ("enum_key_column", "rw_feelings", 1),         # cast to the enum's name from pg_type
])
def test_keys_typed_from_the_catalog_fold(name, table, most, proxies, blog, postgres):
    """String keys compared with a varchar or enum column are batched (the
    column's type comes from the control connection)."""
    _, rewrite = proxies
    script = WORKLOADS[name]
    learn(rewrite, blog, script)
    reset_statements(postgres, blog)
    record(rewrite.port, blog, script)
    n = backend_statements(postgres, blog, f"%FROM {table}%")
    assert n <= most, f"{name}: {n} statements for {len(script) - 1} children"


def test_failed_batch_disables_the_pattern_and_the_client_never_sees_it(proxies, blog):
    _, rewrite = proxies
    script = ["BEGIN", PARENT] + [
        "SELECT rw_users.id, 100 / rw_users.divisor AS q FROM rw_users WHERE rw_users.id = %d" % k
        for k in USER_IDS if k < 13] + ["COMMIT"]
    got = record(rewrite.port, blog, script)
    for answer in got:
        assert not [m for m in answer if m[0] == b"E"], answer
    status, _, body = rewrite.admin_get("/nplusone")
    assert b'"disabled"' in body and b"division" not in body or b'"disabled"' in body


class SAUser(orm.declarative_base()):
    __tablename__ = "rw_users"
    id = sa.Column(sa.Integer, primary_key=True)
    name = sa.Column(sa.Text)
    divisor = sa.Column(sa.Integer)


def test_sqlalchemy_lazy_loading_through_rewrite(proxies, blog, postgres):
    Base = orm.declarative_base()

    class User(Base):
        __tablename__ = "rw_users"
        id = sa.Column(sa.Integer, primary_key=True)
        name = sa.Column(sa.Text)
        posts = orm.relationship("Post", lazy="select", order_by="Post.id")

    class Post(Base):
        __tablename__ = "rw_posts"
        id = sa.Column(sa.Integer, primary_key=True)
        user_id = sa.Column(sa.Integer, sa.ForeignKey("rw_users.id"))
        title = sa.Column(sa.Text)
        comments = orm.relationship("Comment", lazy="select", order_by="Comment.id")

    class Comment(Base):
        __tablename__ = "rw_comments"
        id = sa.Column(sa.Integer, primary_key=True)
        post_id = sa.Column(sa.Integer, sa.ForeignKey("rw_posts.id"))
        body = sa.Column(sa.Text)

    def run(port):
        eng = sa.create_engine(f"postgresql+psycopg2://app@127.0.0.1:{port}/{blog}", future=True)
        out = []
        with orm.Session(eng) as s:
            for u in s.execute(sa.select(User).order_by(User.id)).scalars():
                for p in u.posts:
                    out.append((u.id, p.id, p.title, [c.body for c in p.comments]))
        eng.dispose()
        return out

    off, rewrite = proxies
    run(rewrite.port)  # learn
    reset_statements(postgres, blog)
    want = run(off.port)
    direct_count = backend_statements(postgres, blog, "%FROM rw_posts%") + \
        backend_statements(postgres, blog, "%FROM rw_comments%")
    reset_statements(postgres, blog)
    got = run(rewrite.port)
    batched_count = backend_statements(postgres, blog, "%FROM rw_posts%") + \
        backend_statements(postgres, blog, "%FROM rw_comments%")
    assert got == want
    assert direct_count > 50
    assert batched_count <= 3, f"{batched_count} statements instead of {direct_count}"


# ---- SQLAlchemy 1.4 ORM workloads, each child pattern batched ------------------

SABase = orm.declarative_base()


class SAAuthor(SABase):
    __tablename__ = "rw_users"
    id = sa.Column(sa.Integer, primary_key=True)
    name = sa.Column(sa.Text)


class SAPost(SABase):
    __tablename__ = "rw_posts"
    id = sa.Column(sa.Integer, primary_key=True)
    user_id = sa.Column(sa.Integer, sa.ForeignKey("rw_users.id"))
    title = sa.Column(sa.Text)
    score = sa.Column(sa.Numeric(6, 2))
    author = orm.relationship(SAAuthor, lazy="select")


def sa_run(port, db, work):
    """work(session) -> result, in a fresh Session (empty identity map) on a
    fresh engine through the pgfold at port."""
    eng = sa.create_engine(f"postgresql+psycopg2://app@127.0.0.1:{port}/{db}", future=True)
    try:
        with orm.Session(eng) as s:
            return work(s)
    finally:
        eng.dispose()


def sa_users(s):
    return s.execute(sa.select(SAAuthor).order_by(SAAuthor.id)).scalars().all()


def sa_many_to_one(s):
    # posts first, then post.author: one lazy load per distinct user not yet in the identity map
    posts = s.execute(sa.select(SAPost).order_by(SAPost.id)).scalars().all()
    return [(p.id, p.author.id, p.author.name) for p in posts]


def sa_count_per_user(s):
    return [(u.id, s.scalar(sa.select(sa.func.count()).select_from(SAPost).where(SAPost.user_id == u.id)))
            for u in sa_users(s)]


def sa_first_post_per_user(s):
    out = []
    for u in sa_users(s):
        p = s.execute(sa.select(SAPost).where(SAPost.user_id == u.id).order_by(SAPost.id.desc()).limit(1)).scalar()
        out.append((u.id, None if p is None else (p.id, p.title, p.score)))
    return out


def sa_exists_per_user(s):
    # SQLAlchemy 1.4 emits SELECT EXISTS (SELECT * FROM rw_posts WHERE rw_posts.user_id = <k>) AS anon_1
    return [(u.id, s.scalar(sa.select(sa.exists().where(SAPost.user_id == u.id)))) for u in sa_users(s)]


SA_WORKLOADS = {
    # name: (work, LIKE pattern of the child statements in pg_stat_statements, their batches included)
    "lazy_many_to_one": (sa_many_to_one, "%FROM rw_users%WHERE rw_users.id%"),
    "count_per_user": (sa_count_per_user, "%count(*)%FROM rw_posts%WHERE rw_posts.user_id = %"),
    "first_post_per_user": (sa_first_post_per_user, "%FROM rw_posts%WHERE rw_posts.user_id = %LIMIT%"),
    "exists_per_user": (sa_exists_per_user, "%EXISTS (SELECT%FROM rw_posts%WHERE rw_posts.user_id = %"),
}


@pytest.mark.parametrize("name", sorted(SA_WORKLOADS))
def test_sqlalchemy_workloads_through_rewrite(name, proxies, blog, postgres):
    work, like = SA_WORKLOADS[name]
    off, rewrite = proxies
    sa_run(rewrite.port, blog, work)  # warm-up: teaches the pattern
    reset_statements(postgres, blog)
    want = sa_run(off.port, blog, work)
    direct = backend_statements(postgres, blog, like)
    reset_statements(postgres, blog)
    got = sa_run(rewrite.port, blog, work)
    batched = backend_statements(postgres, blog, like)
    batches = backend_statements(postgres, blog, "%pgfold_key%")
    print(f"{name}: {direct} child statements direct, {batched} through rewrite ({batches} batches)")
    assert got == want
    assert direct > 20, f"{name}: only {direct} child statements direct"
    assert 1 <= batches <= batched <= 3, f"{name}: {batched} statements ({batches} batches) instead of {direct}"
