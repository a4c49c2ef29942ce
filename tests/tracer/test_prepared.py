"""PreparedRead gives the rows Connection.execute gives, converted alike, inside the connection's transaction.

On SQLite it runs the statement on the driver's cursor itself; on PostgreSQL it hands it to Connection.execute,
so there these tests hold the fallback to the same interface (rows, attributes, errors)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Dialect,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    TypeDecorator,
    bindparam,
    case,
    func,
    insert,
    select,
)
from sqlalchemy.exc import DBAPIError

from tests.postgres_support import postgres_schema_url
from tracer import scans, views
from tracer.store.database import create_db_engine, init_db, read_only
from tracer.store.prepared import PreparedRead


class _Lowered(TypeDecorator[str]):
    """Text bound in lower case: a bind processor that changes what is compared."""

    impl = String
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return value.lower() if value is not None else None


_METADATA = MetaData()
_THINGS = Table(
    "things",
    _METADATA,
    Column("id", Integer, primary_key=True),
    Column("name", String, nullable=False),
    Column("flag", Boolean, nullable=True),
    Column("seen_at", DateTime, nullable=True),
)
_KINDS = Table("kinds", _METADATA, Column("id", Integer, primary_key=True), Column("name", String))

# Bound parameters of every sort: named, a literal compiled into the statement, one with a bind processor (a
# datetime, text on SQLite), one used twice; columns with result processors (booleans, datetimes) and repeated
# names (both tables' "id").
_BY_NAME = PreparedRead(
    select(_THINGS.c.id, _THINGS.c.name, _THINGS.c.flag, _THINGS.c.seen_at, _KINDS.c.id, _KINDS.c.name)
    .join_from(_THINGS, _KINDS, _KINDS.c.id == _THINGS.c.id % 3)
    .where(_THINGS.c.name.like(bindparam("prefix") + "%"), _THINGS.c.id > 0)
    .order_by(_THINGS.c.id)
)
_SINCE = PreparedRead(
    select(_THINGS.c.id, _THINGS.c.seen_at)
    .where(_THINGS.c.seen_at >= bindparam("since", type_=DateTime))
    .order_by(_THINGS.c.id)
)
_SUMMARY = PreparedRead(
    select(
        func.count(_THINGS.c.id),
        func.min(_THINGS.c.seen_at),
        func.max(case((_THINGS.c.name == bindparam("name"), 1), else_=0)),
        func.count(case((_THINGS.c.name == bindparam("shouted", type_=_Lowered), 1))),
        func.sum(case((_THINGS.c.name == bindparam("name"), _THINGS.c.id), else_=0)),
    )
)

_BASE = datetime(2026, 1, 1)
_THING = st.tuples(
    st.sampled_from(["a", "ab", "b", "x%", "名"]),
    st.none() | st.booleans(),
    st.none() | st.integers(0, 10**6).map(lambda s: _BASE + timedelta(seconds=s, microseconds=s % 997)),
)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        made = create_db_engine(f"sqlite:///{tmp_path / 'prepared.db'}")
        yield made
        made.dispose()
        return
    for url in postgres_schema_url("tracer_prepared_"):
        made = create_db_engine(url)
        yield made
        made.dispose()


def _fill(engine: Engine, things: list[tuple[str, bool | None, datetime | None]]) -> None:
    with engine.begin() as connection:
        _METADATA.drop_all(connection)
        _METADATA.create_all(connection)
        connection.execute(insert(_KINDS), [{"id": n, "name": f"kind {n}"} for n in range(3)])
        if things:
            rows = [{"name": n, "flag": f, "seen_at": s} for n, f, s in things]
            connection.execute(insert(_THINGS), rows)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    things=st.lists(_THING, max_size=12),
    prefix=st.sampled_from(["", "a", "x%", "名", "z"]),
    since=st.integers(0, 10**6).map(lambda s: _BASE + timedelta(seconds=s)),
)
def test_rows_are_those_execute_gives(
    engine: Engine, things: list[tuple[str, bool | None, datetime | None]], prefix: str, since: datetime
) -> None:
    _fill(engine, things)
    with read_only(engine).connect() as connection:
        for prepared, params in (
            (_BY_NAME, {"prefix": prefix}),
            (_SINCE, {"since": since}),
            (_SUMMARY, {"name": prefix, "shouted": prefix.upper()}),
        ):
            expected = [tuple(row) for row in connection.execute(prepared.statement, params)]
            got = prepared.rows(connection, **params)
            assert [tuple(row) for row in got] == expected
            assert [type(v) for row in got for v in row] == [type(v) for row in expected for v in row]
        first = _SINCE.first(connection, since=since)
        assert first == (_SINCE.rows(connection, since=since) or [None])[0]
        counted = _SUMMARY.one(connection, name=prefix, shouted=prefix.upper())
        assert (counted[0], counted[3]) == (len(things), sum(name == prefix.lower() for name, _, _ in things))


def test_columns_are_attributes_and_repeated_names_are_read_by_position(engine: Engine) -> None:
    _fill(engine, [("ab", True, _BASE)])
    with read_only(engine).connect() as connection:
        (row,) = _BY_NAME.rows(connection, prefix="a")
    assert (row.name, row.flag, row.seen_at) == ("ab", True, _BASE)
    assert (row[0], row[4], row[5]) == (1, 1, "kind 1")  # things.id, then kinds.id and kinds.name


def test_a_missing_parameter_is_refused_not_bound_as_null(engine: Engine) -> None:
    _fill(engine, [])
    with read_only(engine).connect() as connection, pytest.raises(Exception, match="prefix"):
        _BY_NAME.rows(connection)


def test_a_list_rendered_at_execution_is_refused_when_compiling(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'in.db'}")
    _fill(engine, [])
    prepared = PreparedRead(select(_THINGS.c.id).where(_THINGS.c.name.in_(bindparam("names", expanding=True))))
    with read_only(engine).connect() as connection, pytest.raises(ValueError, match="IN of a list"):
        prepared.rows(connection, names=["a"])
    engine.dispose()


def test_a_database_error_is_raised_as_execute_raises_it(engine: Engine) -> None:
    _fill(engine, [])
    with engine.begin() as connection:
        _KINDS.drop(connection)
    with read_only(engine).connect() as connection, pytest.raises(DBAPIError) as raised:
        _BY_NAME.rows(connection, prefix="a")
    with read_only(engine).connect() as connection, pytest.raises(DBAPIError) as expected:
        connection.execute(_BY_NAME.statement, {"prefix": "a"})
    assert type(raised.value) is type(expected.value)


def test_reads_see_the_snapshot_of_their_transaction(tmp_path: Path) -> None:
    """On SQLite (WAL) a read-only connection's reads all see one snapshot, the one its first read took: a
    commit in between is not seen by its later prepared reads, and is by the next connection."""
    engine = create_db_engine(f"sqlite:///{tmp_path / 'snapshot.db'}")
    _fill(engine, [("a", None, None)])
    with read_only(engine).connect() as reading:
        assert _SUMMARY.one(reading, name="a", shouted="A")[0] == 1
        with engine.begin() as writing:
            writing.execute(insert(_THINGS), [{"name": "b"}])
        assert _SUMMARY.one(reading, name="a", shouted="A")[0] == 1
    with read_only(engine).connect() as reading:
        assert _SUMMARY.one(reading, name="a", shouted="A")[0] == 2
    engine.dispose()


def test_the_scan_statements_read_alike(tmp_path: Path) -> None:
    """The scans' own prepared reads compile and run (a statement the compiler cannot take would only show at
    the first scan); their values on real rows are held by the scan tests (tests/api/test_scan*.py) and the
    scan log's property test."""
    engine = create_db_engine(f"sqlite:///{tmp_path / 'scan.db'}")
    init_db(engine)
    with read_only(engine).connect() as connection:
        for prepared, params in (
            (views._SCANNED_LOT, {"lot_id": "0x00"}),
            (views._SCANNED_PARCEL, {"sscc": "1"}),
            (views._SCANNED_UNIT, {"gtin": "1", "serial": "s"}),
            (views._SCAN_EVENTS, {"lot_pk": 1}),
            (scans._SUMMARY, {"subject": "/00/1", "device": "d"}),
        ):
            expected = [tuple(row) for row in connection.execute(prepared.statement, params)]
            assert [tuple(row) for row in prepared.rows(connection, **params)] == expected
    engine.dispose()
