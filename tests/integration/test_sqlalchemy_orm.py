"""SQLAlchemy 1.4 ORM (psycopg2 driver) directly and through pgfold: a small
customer/order model, create_all, inserts with generated keys, queries with
filters and aggregates, relationship lazy loading (checked to really be lazy),
updates, deletes and an IntegrityError rollback.  The serialized results must
match between the two targets."""

import datetime
import decimal

import pytest
import sqlalchemy as sa
from sqlalchemy import orm

Base = orm.declarative_base()


class Customer(Base):
    __tablename__ = "sa_customer"
    id = sa.Column(sa.Integer, primary_key=True)
    name = sa.Column(sa.String(80), nullable=False)
    email = sa.Column(sa.String(120), unique=True, nullable=False)
    orders = orm.relationship("Order", back_populates="customer", lazy="select",
                              order_by="Order.id", cascade="all, delete-orphan")


class Order(Base):
    __tablename__ = "sa_order"
    id = sa.Column(sa.Integer, primary_key=True)
    customer_id = sa.Column(sa.Integer, sa.ForeignKey("sa_customer.id"), nullable=False)
    amount = sa.Column(sa.Numeric(10, 2), nullable=False)
    placed = sa.Column(sa.Date, nullable=False)
    customer = orm.relationship("Customer", back_populates="orders")


@pytest.fixture
def engine(target):
    eng = sa.create_engine(target.url(), future=True, pool_size=2,
                           connect_args={"connect_timeout": 10})
    Base.metadata.drop_all(eng)
    Base.metadata.create_all(eng)
    yield eng
    Base.metadata.drop_all(eng)
    eng.dispose()


def test_orm_insert_query_lazy_load(engine, same_both_ways):
    with orm.Session(engine) as session:
        for c in range(1, 21):
            cust = Customer(name=f"Customer {c}", email=f"c{c}@example.com")
            cust.orders = [Order(amount=decimal.Decimal(f"{c}.{o}0"), placed=datetime.date(2024, 1, o))
                           for o in range(1, (c % 4) + 2)]
            session.add(cust)
        session.commit()

    with orm.Session(engine) as session:
        cust = session.execute(sa.select(Customer).where(Customer.email == "c7@example.com")).scalar_one()
        assert "orders" in sa.inspect(cust).unloaded, "relationship should not be loaded yet"
        orders = [(str(o.amount), o.placed.isoformat()) for o in cust.orders]  # lazy load now
        assert "orders" not in sa.inspect(cust).unloaded
        assert orders == [("7.10", "2024-01-01"), ("7.20", "2024-01-02"), ("7.30", "2024-01-03"),
                          ("7.40", "2024-01-04")]

        totals = session.execute(
            sa.select(Customer.name, sa.func.count(Order.id), sa.func.sum(Order.amount))
            .join(Order).group_by(Customer.name).order_by(sa.func.sum(Order.amount).desc()).limit(3)
        ).all()
        totals = [(n, c, str(s)) for n, c, s in totals]
        assert totals[0] == ("Customer 19", 4, "77.00")

        first_order = session.get(Order, 1)
        assert first_order.customer.name == "Customer 1"  # many-to-one lazy load

        n_orders = session.scalar(sa.select(sa.func.count()).select_from(Order))
        assert n_orders == sum((c % 4) + 1 for c in range(1, 21))
    same_both_ways((orders, totals, n_orders))


def test_orm_update_delete_and_integrity_error(engine, same_both_ways):
    with orm.Session(engine) as session:
        session.add_all([Customer(name="A", email="a@x"), Customer(name="B", email="b@x",
                         orders=[Order(amount=5, placed=datetime.date(2024, 5, 5))])])
        session.commit()

        session.add(Customer(name="dup", email="a@x"))
        with pytest.raises(sa.exc.IntegrityError) as info:
            session.commit()
        assert info.value.orig.pgcode == "23505"
        session.rollback()

        b = session.execute(sa.select(Customer).where(Customer.name == "B")).scalar_one()
        b.name = "B2"
        session.delete(session.execute(sa.select(Customer).where(Customer.name == "A")).scalar_one())
        session.commit()

        names = session.execute(sa.select(Customer.name).order_by(Customer.name)).scalars().all()
        assert names == ["B2"]
        session.delete(b)
        session.commit()
        left = session.scalar(sa.select(sa.func.count()).select_from(Order))
        assert left == 0, "delete-orphan cascade did not remove the order"
    same_both_ways(names)
