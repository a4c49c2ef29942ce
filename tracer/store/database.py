"""Engine creation for SQLite (default) and PostgreSQL, and the schema set-up."""

from __future__ import annotations

from sqlalchemy import Engine, event, func, inspect
from sqlalchemy.pool import StaticPool
from sqlmodel import Session, SQLModel, create_engine, select

from tracer.store import models

READ_ONLY = "tracer_read_only"
"""The execution option of ``read_only``'s engines: their SQLite transactions begin DEFERRED."""


def create_db_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL mode and a busy timeout so the API and the writer share it."""
    if url.startswith("postgresql://"):
        # psycopg 3 is the driver we ship; a bare postgresql:// URL would ask for psycopg2.
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    in_memory = url in ("sqlite://", "sqlite:///:memory:")
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30},
        poolclass=StaticPool if in_memory else None,
    )

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        # Let SQLAlchemy, not the sqlite3 module, begin transactions: savepoints (a capture's
        # per-event rollback) then work as on PostgreSQL.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if not in_memory:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _sqlite_begin(connection):  # type: ignore[no-untyped-def]
        # IMMEDIATE: take the write lock up front, so a transaction that reads and then writes waits its
        # turn (busy timeout) instead of failing with "database is locked" when another writer got there
        # first; SQLite serialises writers anyway. PostgreSQL is the store for concurrent production load.
        # A read-only session's transaction begins DEFERRED: in WAL mode it reads its snapshot while a writer
        # holds the lock, where IMMEDIATE would queue it behind every write (the busy handler sleeps for
        # milliseconds at a time: the scans' p99 on a live chain).
        read_only = connection.get_execution_options().get(READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def read_only(engine: Engine) -> Engine:
    """``engine`` for sessions that only read (the scans): the same pool, but on SQLite their transactions
    begin DEFERRED and never wait for the write lock. A write through it may fail with "database is locked"
    when another connection wrote meanwhile: write through ``engine`` itself. One per engine, kept."""
    # Kept on the engine itself: the reader refers to its engine, so a weak mapping from the engine to it would
    # keep every engine (its pool, its open files) alive.
    reader: Engine | None = getattr(engine, "_tracer_reader", None)
    if reader is None:
        reader = engine.execution_options(**{READ_ONLY: True})
        engine._tracer_reader = reader  # type: ignore[attr-defined]
    return reader


def init_db(engine: Engine) -> None:
    """Creates the tables that do not exist yet, and the columns a newer version added to existing ones."""
    SQLModel.metadata.create_all(engine)
    _add_missing_columns(engine)


def _add_missing_columns(engine: Engine) -> None:
    """``ALTER TABLE … ADD COLUMN`` for each model column an older database lacks.

    New columns are always nullable or carry a server default, so adding them to a filled table is safe; no
    column or table is ever dropped or changed here (a data dir stays readable by the version that wrote it),
    only the indexes a newer one covers (``SUPERSEDED_INDEXES``).
    """
    with engine.begin() as connection:
        existing = inspect(connection)
        tables = set(existing.get_table_names())
        for table in SQLModel.metadata.sorted_tables:
            if table.name not in tables:
                continue
            present = {column["name"] for column in existing.get_columns(table.name)}
            for column in table.columns:
                if column.name in present:
                    continue
                ddl = f"{column.name} {column.type.compile(dialect=engine.dialect)}"
                if column.server_default is not None:
                    default = column.server_default.arg  # type: ignore[attr-defined]
                    ddl += f" DEFAULT {default.compile(dialect=engine.dialect)}"
                    if not column.nullable:
                        ddl += " NOT NULL"
                connection.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {ddl}")
            for index in table.indexes:
                index.create(connection, checkfirst=True)
        for superseded in SUPERSEDED_INDEXES:
            # Its columns lead a newer index: it only cost every insert its update. A version that wants it back
            # creates it when it opens the database.
            connection.exec_driver_sql(f"DROP INDEX IF EXISTS {superseded}")


SUPERSEDED_INDEXES = ("ix_scanrecord_subject",)
"""Indexes an older version made that a newer one covers (subject: by ``ix_scanrecord_subject_device_time``)."""


def get_meta(session: Session, key: str) -> str | None:
    """The value stored under ``key`` in the deployment facts, or None."""
    row = session.get(models.Meta, key)
    return row.value if row else None


def set_meta(session: Session, key: str, value: str) -> None:
    """Stores a deployment fact (the caller commits)."""
    row = session.get(models.Meta, key)
    if row is None:
        session.add(models.Meta(key=key, value=value))
    else:
        row.value = value
        session.add(row)


def count(session: Session, model: type[SQLModel]) -> int:
    """How many rows ``model`` has."""
    return session.exec(select(func.count()).select_from(model)).one()
