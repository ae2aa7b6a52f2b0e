"""N+1 detection through pgfold (nplusone.mode = detect): SQLAlchemy 1.4 lazy
loading (one-to-many, many-to-one, nested users -> posts -> comments) and
psycopg 3 with server-side parameters make patterns that GET /nplusone
reports as active, with the right child shape, key column, counters and a
suggested fix; what the application receives is the same as direct; with
nplusone.mode = off nothing is recorded.  Each test uses its own blog schema
in its own database."""

import json

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy import orm

Base = orm.declarative_base()


class User(Base):
    __tablename__ = "users"
    id = sa.Column(sa.Integer, primary_key=True)
    name = sa.Column(sa.String(80), nullable=False)
    posts = orm.relationship("Post", back_populates="user", lazy="select", order_by="Post.id")


class Post(Base):
    __tablename__ = "posts"
    id = sa.Column(sa.Integer, primary_key=True)
    user_id = sa.Column(sa.Integer, sa.ForeignKey("users.id"), nullable=False)
    title = sa.Column(sa.String(120), nullable=False)
    user = orm.relationship("User", back_populates="posts", lazy="select")
    comments = orm.relationship("Comment", lazy="select", order_by="Comment.id")


class Comment(Base):
    __tablename__ = "comments"
    id = sa.Column(sa.Integer, primary_key=True)
    post_id = sa.Column(sa.Integer, sa.ForeignKey("posts.id"), nullable=False)
    body = sa.Column(sa.String(200), nullable=False)


N_USERS = 12


@pytest.fixture(scope="module")
def blog_db(postgres):
    postgres.query("DROP DATABASE IF EXISTS np_blog", dbname="postgres")
    postgres.query("CREATE DATABASE np_blog OWNER app", dbname="postgres")
    eng = sa.create_engine(f"postgresql+psycopg2://app@127.0.0.1:{postgres.port}/np_blog", future=True)
    Base.metadata.create_all(eng)
    with orm.Session(eng) as s:
        for u in range(1, N_USERS + 1):
            user = User(id=u, name=f"user {u}")
            for p in range(3):
                post = Post(id=u * 10 + p, title=f"post {p} of {u}")
                post.comments = [Comment(id=(u * 10 + p) * 10 + c, body=f"c{c}") for c in range(2)]
                user.posts.append(post)
            s.add(user)
        s.commit()
    eng.dispose()
    yield "np_blog"
    postgres.query("DROP DATABASE IF EXISTS np_blog WITH (FORCE)", dbname="postgres")


def nplusone(proxy):
    status, ctype, body = proxy.admin_get("/nplusone")
    assert status == 200 and ctype.startswith("application/json"), body
    return json.loads(body)["patterns"]


def lazy_workload(port, db):
    """users -> posts (lazy) -> comments (lazy), then posts -> user (many-to-one)."""
    eng = sa.create_engine(f"postgresql+psycopg2://app@127.0.0.1:{port}/{db}", future=True)
    seen = []
    with orm.Session(eng) as s:
        for user in s.execute(sa.select(User).order_by(User.id)).scalars():
            for post in user.posts:
                seen.append((user.id, post.id, post.title, [c.body for c in post.comments]))
    with orm.Session(eng) as s:
        for post in s.execute(sa.select(Post).order_by(Post.id)).scalars():
            seen.append((post.id, post.user.name))
    eng.dispose()
    return seen


def pattern_for(patterns, child_table):
    found = [p for p in patterns if p["status"] == "active" and f"FROM {child_table}" in p["child"]]
    assert found, json.dumps(patterns, indent=1)
    return found[0]


def test_sqlalchemy_lazy_loading_is_detected(blog_db, postgres, pgfold_factory):
    proxy = pgfold_factory(sets={"nplusone.mode": "detect"}, name="pgfold-np-detect")
    direct = lazy_workload(postgres.port, blog_db)
    through = lazy_workload(proxy.port, blog_db)
    assert through == direct  # detection changes nothing the application sees

    patterns = nplusone(proxy)
    posts = pattern_for(patterns, "posts")
    assert posts["children_seen"] >= N_USERS
    assert "users" in posts["parent"] and "posts.user_id" in json.dumps(posts)
    assert "selectinload" in posts["suggestion"] and "prefetch_related" in posts["suggestion"]
    comments = pattern_for(patterns, "comments")  # nested: posts -> comments
    assert comments["children_seen"] >= N_USERS * 3
    users = pattern_for(patterns, "users")  # many-to-one: posts -> user
    assert "joinedload" in users["suggestion"] or "select_related" in users["suggestion"]
    # detect mode never batches
    assert all(p["children_served"] == 0 and p["batches"] == 0 for p in patterns)
    assert "N+1 pattern confirmed" in proxy.log_text()
    stats = proxy.stats()["nplusone"]
    assert stats["active"] >= 3 and stats["children_seen"] >= N_USERS * 4
    status, _, metrics = proxy.admin_get("/metrics")
    assert b"pgfold_nplusone_patterns_active" in metrics


def test_psycopg3_server_side_parameters_are_detected(blog_db, pgfold_factory):
    proxy = pgfold_factory(sets={"nplusone.mode": "detect"}, name="pgfold-np-psycopg3")
    with psycopg.connect(host="127.0.0.1", port=proxy.port, user="app", dbname=blog_db) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM users ORDER BY id")]
        titles = []
        for uid in ids:  # extended protocol: $1 bound as a parameter, prepared after a few runs
            titles += [r[0] for r in conn.execute("SELECT title FROM posts WHERE user_id = %s ORDER BY id",
                                                   (uid,), prepare=True)]
    assert len(titles) == N_USERS * 3
    p = pattern_for(nplusone(proxy), "posts")
    assert p["children_seen"] >= N_USERS
    assert "$1" in p["child"]


def test_text_report_and_off_mode(blog_db, pgfold_factory):
    proxy = pgfold_factory(sets={"nplusone.mode": "detect"}, name="pgfold-np-text")
    lazy_workload(proxy.port, blog_db)
    status, ctype, body = proxy.admin_get("/nplusone?format=text")
    assert status == 200 and ctype.startswith("text/plain")
    assert b"active" in body and b"posts" in body
    off = pgfold_factory(sets={"nplusone.mode": "off"}, name="pgfold-np-off")
    lazy_workload(off.port, blog_db)
    assert nplusone(off) == []
