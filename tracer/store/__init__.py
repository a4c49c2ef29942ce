"""The off-chain store: tables (``models``) and the engine (``database``)."""

from tracer.store.database import create_db_engine, init_db
from tracer.store.models import (
    Actor,
    CaptureJob,
    ChainTask,
    Document,
    Event,
    Lot,
    Meta,
    Parcel,
    PersonalDatum,
)

__all__ = [
    "Actor",
    "CaptureJob",
    "ChainTask",
    "Document",
    "Event",
    "Lot",
    "Meta",
    "Parcel",
    "PersonalDatum",
    "create_db_engine",
    "init_db",
]
