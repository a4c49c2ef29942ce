"""The off-chain store: SQLModel tables.

The database holds full event payloads, their hashes and chain anchors; the chain holds only hashes.
Personal data of consignees and payers lives in ``PersonalDatum`` alone, so it can be shown to whom it
may be shown and erased without breaking any hash. API keys are stored hashed, actor keys encrypted.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Boolean, Column, Index, Text, UniqueConstraint, false
from sqlalchemy.orm import configure_mappers
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    """The current time in UTC (a default factory for timestamp columns)."""
    return datetime.now(UTC)


class Meta(SQLModel, table=True):
    """Key/value facts about this deployment: registry address, chain id, deploy block."""

    key: str = Field(primary_key=True, max_length=64)
    value: str = Field(max_length=256)


class Actor(SQLModel, table=True):
    """A party with an API key and a chain account (custodial when ``encrypted_key`` is set)."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True, max_length=128)
    role: str = Field(max_length=32)
    address: str = Field(index=True, max_length=42)
    api_key_hash: str = Field(index=True, unique=True, max_length=64)
    encrypted_key: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(default_factory=utcnow)


class ChainTask(SQLModel, table=True):
    """An administrative chain write waiting in the outbox: a role grant or an account funding."""

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=16)  # "grant" | "fund"
    actor_id: int = Field(foreign_key="actor.id", index=True)
    role: str | None = Field(default=None, max_length=32)
    status: str = Field(default="pending", index=True, max_length=16)
    tx_hash: str | None = Field(default=None, max_length=66)
    reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(default_factory=utcnow)


class Lot(SQLModel, table=True):
    """A goods lot under one advance declaration, mirrored from the chain's ledger."""

    __table_args__ = (UniqueConstraint("gtin", "lot_number"),)

    id: int | None = Field(default=None, primary_key=True)
    lot_id: str = Field(index=True, unique=True, max_length=66)
    gtin: str = Field(max_length=14)
    lot_number: str = Field(max_length=20)
    product_name: str = Field(max_length=200)
    hs_code: str = Field(max_length=12)
    origin_country: str = Field(max_length=2)
    manufacturer: str = Field(max_length=200)
    expiry: str | None = Field(default=None, max_length=10)
    declaration_number: str = Field(max_length=64)
    declared_quantity: int
    received_quantity: int | None = None
    split_quantity: int = 0
    released_quantity: int = 0
    state: str = Field(max_length=16)
    recalled: bool = False
    enterprise_id: int = Field(foreign_key="actor.id")
    next_seq: int = 0
    created_at: datetime = Field(default_factory=utcnow)


class Parcel(SQLModel, table=True):
    """A logistic unit (SSCC) split off a lot for one consumer order."""

    id: int | None = Field(default=None, primary_key=True)
    sscc: str = Field(index=True, unique=True, max_length=18)
    parcel_id: str = Field(unique=True, max_length=66)
    lot_pk: int = Field(foreign_key="lot.id", index=True)
    index: int
    quantity: int
    state: str = Field(max_length=16)
    created_at: datetime = Field(default_factory=utcnow)


class Unit(SQLModel, table=True):
    """A serialised trade item (GTIN + serial, GS1 AI 21) packed into a parcel when it was split off its lot.

    Nothing per unit is on chain: the split event names the unit among its ``childEPCs``, so the unit is
    covered by that event's hash and anchored with it. ``lot_pk`` is kept beside ``parcel_pk`` so that a
    scan reaches the lot (and its recall) in one query.
    """

    __table_args__ = (UniqueConstraint("gtin", "serial"),)

    id: int | None = Field(default=None, primary_key=True)
    gtin: str = Field(max_length=14)
    serial: str = Field(max_length=20)
    parcel_pk: int = Field(foreign_key="parcel.id", index=True)
    lot_pk: int = Field(foreign_key="lot.id", index=True)


class Document(SQLModel, table=True):
    """One of the three documents of a parcel's order; ``public`` holds no personal data."""

    __table_args__ = (UniqueConstraint("parcel_pk", "kind"),)

    id: int | None = Field(default=None, primary_key=True)
    parcel_pk: int = Field(foreign_key="parcel.id", index=True)
    kind: str = Field(max_length=16)  # "order" | "payment" | "waybill"
    number: str = Field(max_length=64)
    order_number: str = Field(max_length=64)
    public: str = Field(sa_column=Column(Text, nullable=False))  # JSON, no personal data
    commitment: str = Field(max_length=66)
    salt: str | None = Field(default=None, max_length=66)  # None for a captured event's own commitments
    # Salt of the person commitment the event carries; personal data, erased with the PersonalDatum rows.
    person_salt: str | None = Field(default=None, max_length=66)
    created_at: datetime = Field(default_factory=utcnow)


class PersonalDatum(SQLModel, table=True):
    """A personal value (name, phone, ID number, address) behind a salted commitment; erasable."""

    id: int | None = Field(default=None, primary_key=True)
    document_pk: int = Field(foreign_key="document.id", index=True)
    field: str = Field(max_length=32)  # e.g. "consignee.name"
    value: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    salt: str = Field(max_length=66)
    commitment: str = Field(max_length=66)


class Event(SQLModel, table=True):
    """An accepted EPCIS event of a lot's chain, with its outbox state and chain anchor."""

    # (status, block_number): the writer's and the metrics' look-ups by status, the newest anchored block.
    __table_args__ = (UniqueConstraint("lot_pk", "seq"), Index("ix_event_status_block", "status", "block_number"))

    id: int | None = Field(default=None, primary_key=True)
    lot_pk: int = Field(foreign_key="lot.id", index=True)
    seq: int
    parcel_pk: int | None = Field(default=None, foreign_key="parcel.id", index=True)
    step: str = Field(max_length=32)
    actor_id: int = Field(foreign_key="actor.id")
    payload: str = Field(sa_column=Column(Text, nullable=False))  # the EPCIS event as captured, JSON
    # The capture document's @context (JSON) when the event came through POST /capture; None: our own.
    context: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    event_hash: str = Field(index=True, max_length=100)  # ni:///sha-256;<hex>?ver=CBV2.0
    # A correction (errorDeclaration) names the event it corrects; GS1's hash ignores errorDeclaration,
    # so both share one event_hash and only this tells them apart.
    corrects: int | None = Field(default=None, foreign_key="event.id")
    chain_function: str = Field(max_length=64)
    chain_args: str = Field(sa_column=Column(Text, nullable=False))  # JSON list, bytes as 0x-hex
    status: str = Field(default="pending", index=True, max_length=16)
    tx_hash: str | None = Field(default=None, max_length=66)
    block_number: int | None = None
    block_hash: str | None = Field(default=None, max_length=66)
    log_index: int | None = None
    # True once the indexer read this anchor's log from the chain. The writer anchors from receipts; an
    # anchor whose block the indexer has passed without seeing its log was lost (a node restored from an
    # older state, a reorg above the index) and goes back to the outbox.
    indexed: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default=false(), index=True))
    reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(default_factory=utcnow)


class CaptureJob(SQLModel, table=True):
    """An EPCIS capture: which events of a document were accepted, and why others were not."""

    id: str = Field(primary_key=True, max_length=32)
    actor_id: int = Field(foreign_key="actor.id", index=True)
    error_behaviour: str = Field(max_length=16)
    success: bool
    errors: str = Field(sa_column=Column(Text, nullable=False))  # JSON list of problems
    event_ids: str = Field(sa_column=Column(Text, nullable=False))  # JSON list of accepted eventIDs
    created_at: datetime = Field(default_factory=utcnow)


class ChainLog(SQLModel, table=True):
    """An event the indexer read from the registry's logs (an ``EventRecorded`` log, or one parcel's event of a
    ``ParcelsSplit`` log): the chain's own account of a lot."""

    # A split batch's ParcelsSplit log holds one event per parcel: the log and the sequence number name a row.
    __table_args__ = (UniqueConstraint("block_hash", "log_index", "seq"),)

    id: int | None = Field(default=None, primary_key=True)
    lot_id: str = Field(index=True, max_length=66)
    seq: int
    step: int
    subject: str = Field(max_length=66)
    event_hash: str = Field(max_length=66)  # the 32 digest bytes, 0x-hex
    author: str = Field(max_length=42)
    tx_hash: str = Field(max_length=66)
    block_number: int = Field(index=True)
    block_hash: str = Field(max_length=66)
    log_index: int


class IndexedBlock(SQLModel, table=True):
    """The hash of a block the indexer reached: a changed hash at the same height means a reorg."""

    number: int = Field(primary_key=True)
    hash: str = Field(max_length=66)


class ScanRecord(SQLModel, table=True):
    """One consumer scan of a parcel (or unit) code: when, a salted device hash, a coarse place if offered.

    Nothing here identifies a person: no IP address, no raw user agent, no cookie value; the device hash is
    an HMAC under a per-deployment secret, and a place is rounded to 0.1 degree (about 11 km).
    """

    # Every scan of a code summarises the code's records (tracer.scans): this index holds all that summary reads,
    # so it never visits the table. With the subject alone indexed, each of a code's records cost a row read
    # from anywhere in the table: 300 µs a summary at ~120 records a code, 51 µs with it.
    __table_args__ = (Index("ix_scanrecord_subject_device_time", "subject", "device_hash", "scanned_at"),)

    id: int | None = Field(default=None, primary_key=True)
    subject: str = Field(max_length=200)  # the canonical Digital Link path, e.g. /00/{sscc}
    scanned_at: datetime = Field(default_factory=utcnow)
    device_hash: str = Field(max_length=32)
    latitude: float | None = None
    longitude: float | None = None


class ScanClaim(SQLModel, table=True):
    """The first scanner's confirmation that a delivered parcel (or unit) reached them: one per code."""

    subject: str = Field(primary_key=True, max_length=200)
    claimed_at: datetime = Field(default_factory=utcnow)
    device_hash: str = Field(max_length=32)


# Mapped now, not at the first ORM query: instances made without one (model_construct, as the scans make them
# from Core rows) need their attributes instrumented.
configure_mappers()
