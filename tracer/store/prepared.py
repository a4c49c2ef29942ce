"""Reads built once with Core and run on the driver's cursor: the scans' few queries, without SQLAlchemy's
execution machinery per call.

A scan reads three rows or row sets (what its code names, the code's scan counts, the lot's events). Through
``Connection.execute``, with the connection and the rows made models, they cost 0.48 ms of a cached parcel
scan's ~1.3 ms of CPU, 0.30 ms this way (the scan benchmark's store, in process). A
``PreparedRead`` is compiled once per dialect; each run binds the parameters in the compiled order, executes on the
connection's own DBAPI cursor, inside the transaction SQLAlchemy began (so a read-only scan still reads one
snapshot), and converts each column as SQLAlchemy would have (the type's result processor: SQLite's datetimes
and booleans are text and integers).

Only for drivers with positional ``?`` parameters (SQLite's); on any other dialect a run is
``Connection.execute``. Either way a row is a tuple of the selected columns, compared and hashed as one; read it
by position or by a column's attribute (an unnamed expression's name differs between the two). What it does
not do: SQLAlchemy's events around the query (echo, statement counters, disconnect handling), and statements
rendered at execution (an ``IN`` of a list), which it refuses when compiling.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Dialect, Select
from sqlalchemy.exc import DBAPIError, MultipleResultsFound, NoResultFound


@dataclass(frozen=True)
class _Compiled:
    sql: str
    order: tuple[str, ...]  # the bound parameters' names in the statement's order
    defaults: dict[str, Any]  # the values bound in the statement itself (literals)
    bind: tuple[tuple[int, Callable[[Any], Any]], ...]  # (parameter position, bind processor), where one exists
    convert: tuple[tuple[int, Callable[[Any], Any]], ...]  # (column index, result processor), where one exists
    row: Any  # the namedtuple class of the rows


class PreparedRead:
    """A Core SELECT, run with ``rows``, ``first`` or ``one`` on a Connection; see the module's notes."""

    def __init__(self, statement: Select[*tuple[Any, ...]]) -> None:
        self.statement = statement
        self._compiled: dict[str, _Compiled] = {}  # by dialect name: a process may hold engines of several

    def rows(self, connection: Connection, **params: Any) -> list[Any]:
        """Every row, in the statement's order."""
        dialect = connection.dialect
        if dialect.paramstyle != "qmark":
            return list(connection.execute(self.statement, params))
        compiled = self._compiled.get(dialect.name) or self._compile(dialect)
        if not connection.in_transaction():
            connection.begin()  # as the first execute would: the engine's begin (a read-only one's) applies
        bound = compiled.defaults | params
        missing = [name for name in compiled.order if name not in bound]
        if missing:
            raise ValueError(f"a value is required for the bound parameter {missing[0]!r}")
        values = [bound[name] for name in compiled.order]
        for index, process in compiled.bind:
            values[index] = process(values[index])
        cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(compiled.sql, values)
            fetched = cursor.fetchall()
        except dialect.loaded_dbapi.Error as exc:
            # Raised as Connection.execute raises it (OperationalError for a locked or broken database, ...).
            raise DBAPIError.instance(compiled.sql, values, exc, dialect.loaded_dbapi.Error) from exc
        finally:
            cursor.close()
        if compiled.convert:
            fetched = [_converted(row, compiled.convert) for row in fetched]
        return [compiled.row._make(row) for row in fetched]

    def first(self, connection: Connection, **params: Any) -> Any | None:
        """The first row, or None."""
        found = self.rows(connection, **params)
        return found[0] if found else None

    def one(self, connection: Connection, **params: Any) -> Any:
        """The only row (an aggregate's); NoResultFound or MultipleResultsFound otherwise, as ``Result.one``."""
        found = self.rows(connection, **params)
        if len(found) != 1:
            raise (NoResultFound if not found else MultipleResultsFound)(f"{len(found)} rows, one expected")
        return found[0]

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self.statement.compile(dialect=dialect)
        if compiled.literal_execute_params or compiled.post_compile_params:
            raise ValueError("a statement rendered at execution (an IN of a list) cannot be prepared")
        columns = self.statement.selected_columns
        processors = [column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns]
        assert compiled.positiontup is not None  # a positional paramstyle
        order = tuple(compiled.positiontup)
        literals = compiled.construct_params(_check=False)
        binders = [compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in order]
        made = _Compiled(
            sql=str(compiled),
            order=order,
            defaults={name: literals[name] for name in order if not compiled.binds[name].required},
            bind=tuple((index, process) for index, process in enumerate(binders) if process is not None),
            convert=tuple((index, process) for index, process in enumerate(processors) if process is not None),
            # Named like the selected columns' keys (SQLAlchemy makes a joined select's repeated names unique);
            # rename: any key that is no identifier.
            row=namedtuple("PreparedRow", list(columns.keys()), rename=True),
        )
        self._compiled[dialect.name] = made
        return made


def _converted(row: Sequence[Any], convert: tuple[tuple[int, Callable[[Any], Any]], ...]) -> list[Any]:
    values = list(row)
    for index, process in convert:
        values[index] = process(values[index])
    return values
