"""Clone detection for QR codes without special chips: every scan of a parcel code is recorded, the first
scanner after delivery may claim it, and a code that looks copied says so at scan time.

A QR label can be photocopied; what a copy cannot hide is being scanned where the original is not. So:

* every scan of a parcel (or unit) code is recorded: when, a salted hash of the scanning device, and a
  coarse place only when the client offers one;
* once the parcel is delivered, the first scanner may **claim** it ("I received this");
* the scan carries a ``clone_warning`` when the code was scanned by another device after it was claimed,
  or when more than ``DEVICE_THRESHOLD`` distinct devices have scanned it (a household and a courier stay
  well below that; a label copied onto many tins does not).

Lot codes are not recorded: a lot's code is printed on every tin of the lot and is meant to be shared.

Recording a scan never makes the scan wait for the database's write lock (``ScanLog``): its answer counts the
scans committed before it plus itself, and its record is committed right after, batched with the records of
the scans around it by one thread per process.

Privacy (PIPL): nothing stored identifies a person. No IP address, no raw user agent, no cookie value is
kept. The "device" is a random identifier the page sets in a first-party cookie (or, for a client without
cookies, its user agent and language), stored only as an HMAC-SHA-256 under a secret of this deployment
(kept in the ``meta`` table), truncated to 128 bits: it links scans of one device to each other and to
nothing else. A place is kept only when the client sends one, rounded to 0.1 degree (about 11 km).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
import secrets
import threading
import time
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, and_, bindparam, case, insert
from sqlalchemy import select as sql_select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlmodel import Session, SQLModel, func

from tracer.exceptions import Conflict, InvalidInput, WouldBlock
from tracer.store.database import READ_ONLY
from tracer.store.models import Meta, ScanClaim, ScanRecord
from tracer.store.prepared import PreparedRead

DEVICE_THRESHOLD = 5
"""A code scanned by more than this many distinct devices gets a clone warning."""

LOCATION_DECIMALS = 1
"""Places are rounded to this many decimals of a degree (0.1 degree: about 11 km) before they are stored."""

_SALT_KEY = "scan_device_salt"

log = logging.getLogger(__name__)


def device_hash(*, connection: Connection, fingerprint: str, may_block: bool = True) -> str:
    """The salted hash (32 hex digits) under which scans of the device ``fingerprint`` are recorded.

    The secret is created on first use and kept in the ``meta`` table; the caller commits. With ``may_block``
    false, WouldBlock instead of creating it (a write).
    """
    bind = connection.engine
    salt = _SALTS.get(bind)
    if salt is None:
        salt = connection.execute(_SALT_READ).scalar_one_or_none()
        if salt is not None:
            _SALTS[bind] = salt  # committed: it stands (one just made is remembered once read back committed)
        elif not may_block:
            raise WouldBlock("the device hashes' secret is to be created")
        else:
            salt = _new_salt(connection)
    return hmac.new(bytes.fromhex(salt), fingerprint.encode(), hashlib.sha256).hexdigest()[:32]


# The secret per database (engine), read once per process: it never changes once made, and a read per scan was
# one of its few queries. Weak keys: an engine disposed of (a test's) takes its entry with it.
_SALTS: weakref.WeakKeyDictionary[object, str] = weakref.WeakKeyDictionary()


def _new_salt(connection: Connection) -> str:
    if connection.get_execution_options().get(READ_ONLY):
        # A scan's connection only reads: the secret is made once, in a write transaction of its own.
        with connection.engine.execution_options(**{READ_ONLY: False}).connect() as writing:
            salt = _new_salt(writing)
            writing.commit()
        return salt
    salt = secrets.token_hex(32)
    try:
        with connection.begin_nested():
            connection.execute(insert(_META).values(key=_SALT_KEY, value=salt))
    except IntegrityError:  # another request created it first
        stored: str = connection.execute(_SALT_READ).scalar_one()
        return stored
    return salt


def coarse_location(latitude: float | None, longitude: float | None) -> tuple[float | None, float | None]:
    """A place rounded to ``LOCATION_DECIMALS``; both or neither. Raises InvalidInput when out of range."""
    if latitude is None or longitude is None:
        return None, None
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        raise InvalidInput("latitude must be within ±90 and longitude within ±180", pointer="/lat")
    return round(latitude, LOCATION_DECIMALS), round(longitude, LOCATION_DECIMALS)


def record_scan(
    *,
    session: Session,
    subject: str,
    device: str,
    latitude: float | None = None,
    longitude: float | None = None,
    at: datetime | None = None,
) -> ScanRecord:
    """Records one scan of the code ``subject`` by the device hash ``device`` (the caller commits)."""
    lat, lon = coarse_location(latitude, longitude)
    record = ScanRecord(subject=subject, device_hash=device, latitude=lat, longitude=lon, scanned_at=at or _now())
    session.add(record)
    session.flush()
    return record


def claim(*, session: Session, subject: str, device: str, delivered: bool) -> tuple[ScanClaim, bool]:
    """The claim of a delivered code by ``device``, and whether this call made it (the caller commits).

    Claiming again from the claiming device is harmless (returns the existing claim). Raises Conflict when
    the code is not delivered yet, or when another device claimed it first.
    """
    existing = session.get(ScanClaim, subject)
    if existing is not None:
        if existing.device_hash == device:
            return existing, False
        raise Conflict(f"{subject} was already claimed as received on {_iso(existing.claimed_at)}")
    if not delivered:
        raise Conflict(f"{subject} is not delivered yet: it can be claimed once it is")
    made = ScanClaim(subject=subject, device_hash=device, claimed_at=_now())
    try:
        with session.begin_nested():
            session.add(made)
    except IntegrityError as exc:  # a concurrent claim won
        raise Conflict(f"{subject} was already claimed as received") from exc
    return made, True


@dataclass(frozen=True)
class ScanSummary:
    """What the scans of one code say: counts, first scan, claim, and the clone warning if any."""

    scan_count: int
    distinct_devices: int
    first_scan_at: datetime | None
    claimed_at: datetime | None
    claimed_by_this_device: bool
    scans_after_claim_by_others: int
    warning: str | None  # "scanned_after_claim" | "many_devices" | None
    device_scanned_before: bool = False  # the device it was summarised for is among the devices counted

    def with_scan(self, *, device: str, at: datetime) -> ScanSummary:
        """This summary (made for ``device``) with one more scan by ``device`` at ``at``."""
        after_claim = self.claimed_at is not None and at > self.claimed_at and not self.claimed_by_this_device
        return _summary(
            dataclasses.replace(
                self,
                scan_count=self.scan_count + 1,
                distinct_devices=self.distinct_devices + (0 if self.device_scanned_before else 1),
                first_scan_at=self.first_scan_at or at,
                scans_after_claim_by_others=self.scans_after_claim_by_others + after_claim,
                device_scanned_before=True,
            )
        )

    def public(self, *, claimable: bool) -> dict[str, Any]:
        """The ``scans`` object of the scan JSON."""
        return {
            "count": self.scan_count,
            "distinct_devices": self.distinct_devices,
            "first_scan_at": _iso(self.first_scan_at),
            "claimed": self.claimed_at is not None,
            "claimed_at": _iso(self.claimed_at),
            "claimed_by_you": self.claimed_by_this_device,
            "claimable": claimable and self.claimed_at is None,
        }

    def clone_warning(self) -> dict[str, Any] | None:
        """The ``clone_warning`` of the scan JSON: None, or why the code looks copied and its scan counts."""
        if self.warning is None:
            return None
        return {
            "reason": self.warning,
            "scan_count": self.scan_count,
            "distinct_devices": self.distinct_devices,
            "first_scan_at": _iso(self.first_scan_at),
            "claimed_at": _iso(self.claimed_at),
            "scans_after_claim": self.scans_after_claim_by_others,
            "device_threshold": DEVICE_THRESHOLD,
        }


def summarise(*, connection: Connection, subject: str, device: str | None = None) -> ScanSummary:
    """The scans of ``subject`` as the device ``device`` (a hash, or None) sees them (one statement)."""
    count, devices, first, claimed_at, claimed_by, after_claim, seen = _SUMMARY.one(
        connection, subject=subject, device=device
    )
    return _summary(
        ScanSummary(
            scan_count=count,
            distinct_devices=devices,
            first_scan_at=_aware(first),
            claimed_at=_aware(claimed_at),
            claimed_by_this_device=claimed_at is not None and device is not None and claimed_by == device,
            scans_after_claim_by_others=int(after_claim or 0),  # PostgreSQL sums to a Decimal
            warning=None,
            device_scanned_before=bool(seen),
        )
    )


def _summary(counted: ScanSummary) -> ScanSummary:
    """``counted`` with the warning its counts call for."""
    warning = None
    if counted.scans_after_claim_by_others:
        warning = "scanned_after_claim"
    elif counted.distinct_devices > DEVICE_THRESHOLD:
        warning = "many_devices"
    return dataclasses.replace(counted, warning=warning)


@dataclass(frozen=True)
class PendingScan:
    """A scan's record, not written yet (``ScanLog``): the columns of its ``ScanRecord``."""

    subject: str
    device_hash: str
    latitude: float | None
    longitude: float | None
    scanned_at: datetime


class ScanLog:
    """Records the scans of one process without making them wait for the database's write lock.

    ``summarise_scan`` answers a scan from the scans committed so far plus itself, ``record`` queues its record;
    one thread commits the queue, whatever has gathered while the previous batch was written, in one
    transaction. On SQLite, where one writer at a time holds the lock (the outbox writer's batches for tens of
    milliseconds), a scan that wrote its record itself waited for it: its busy handler sleeps milliseconds at
    a time. The records are written within ``GATHER_SECONDS`` and a commit; ``settle`` lets a scan wait for its
    own code's earlier records (one device scanning twice sees both), ``flush`` for all, and ``close`` writes
    what is left. A batch the database refuses is retried; the queue is bounded, and a full one makes scans wait
    (``FULL_WAIT_SECONDS``, then the record is dropped and logged: the database has refused writes all along).
    What a hard kill can lose: the records of the last moment's scans, never an event.
    """

    MAX_QUEUED = 20_000
    FULL_WAIT_SECONDS = 5.0
    RETRY_SECONDS = 0.5
    GATHER_SECONDS = 0.05
    """How long the thread lets records gather before it writes them: a transaction per record cost more CPU
    than the scan that made it (SQLite's commit, and its checkpoints, are per transaction)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._changed = threading.Condition()
        self._queue: list[tuple[int, PendingScan]] = []  # (sequence number, record), in order
        self._queued = 0  # sequence number of the newest record queued
        self._committed = 0  # every record up to this sequence number is committed (or given up)
        self._newest: dict[str, int] = {}  # subject -> its newest record's sequence number, until committed
        self._thread: threading.Thread | None = None
        self._closing = False

    def summarise_scan(
        self,
        *,
        connection: Connection,
        subject: str,
        device: str,
        latitude: float | None = None,
        longitude: float | None = None,
    ) -> tuple[ScanSummary, PendingScan]:
        """The scans of ``subject`` as ``device`` sees them with one more by it now: ``connection``'s summary (its
        view of the committed scans) and this one; and that scan's record, for ``record`` once the scan is
        answered. Call ``settle(subject)`` before ``connection`` first reads, so that its snapshot holds this
        process's earlier scans of the code."""
        lat, lon = coarse_location(latitude, longitude)
        at = _now()
        summary = summarise(connection=connection, subject=subject, device=device).with_scan(device=device, at=at)
        return summary, PendingScan(subject=subject, device_hash=device, latitude=lat, longitude=lon, scanned_at=at)

    def record(self, scan: PendingScan, *, may_block: bool = True) -> None:
        """Queues ``scan``'s record. While the queue is full (the database has refused the records for a while)
        this waits up to ``FULL_WAIT_SECONDS`` for room, then drops the record and logs it; ``may_block`` false:
        raises WouldBlock at once, nothing queued."""
        with self._changed:
            if len(self._queue) >= self.MAX_QUEUED:
                if not may_block:
                    raise WouldBlock(f"{len(self._queue)} scan records wait to be written")
                if not self._changed.wait_for(lambda: len(self._queue) < self.MAX_QUEUED, self.FULL_WAIT_SECONDS):
                    log.error("a scan of %s is not recorded: %d records wait for the database", scan.subject,
                              len(self._queue))  # fmt: skip
                    return
            self._queued += 1
            self._queue.append((self._queued, scan))
            self._newest[scan.subject] = self._queued
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="scan-log", daemon=True)
                self._thread.start()
            elif len(self._queue) == 1:
                self._changed.notify_all()  # the thread may be waiting for work; else it finds this one next

    def settled(self, subject: str) -> bool:
        """True when every record of ``subject`` this process has queued is committed."""
        return self._newest.get(subject, 0) <= self._committed

    def settle(self, subject: str, timeout: float = 2.0) -> None:
        """Waits (at most ``timeout`` s: it is for accurate counts, not for correctness) until the records of
        ``subject`` queued so far are committed; records queued meanwhile are not waited for."""
        with self._changed:
            target = self._newest.get(subject, 0)
            self._changed.wait_for(lambda: self._committed >= target, timeout)

    def flush(self, timeout: float = 30.0) -> bool:
        """Waits until every record queued so far is committed; False when ``timeout`` ran out first."""
        with self._changed:
            target = self._queued
            return self._changed.wait_for(lambda: self._committed >= target, timeout)

    def close(self) -> None:
        """Commits what is queued and stops the thread (a later record starts it again)."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join()
        with self._changed:
            self._closing = False

    @property
    def queued(self) -> int:
        """Records not committed yet."""
        return self._queued - self._committed

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._queue or self._closing)
                if not self._queue:
                    self._thread = None  # closing, and everything is written
                    return
                if not self._closing:
                    self._changed.wait(self.GATHER_SECONDS)  # only close() wakes it early
                batch, self._queue = self._queue, []
                self._changed.notify_all()  # room in the queue again
            try:
                self._write([scan for _, scan in batch])
            except Exception:  # not the database refusing (retried in _write): a bug; the thread must go on
                log.exception("%d scan records could not be written", len(batch))
            with self._changed:
                self._committed = batch[-1][0]
                for _, scan in batch:
                    if self._newest.get(scan.subject, 0) <= self._committed:
                        self._newest.pop(scan.subject, None)
                self._changed.notify_all()

    def _write(self, batch: list[PendingScan]) -> None:
        """Commits ``batch`` in one transaction, retrying while the database refuses it."""
        attempt = 0
        while True:
            try:
                with self.engine.begin() as connection:
                    connection.execute(_RECORD, [vars(scan) for scan in batch])
                return
            except SQLAlchemyError as exc:
                attempt += 1
                if self._closing and attempt >= 3:
                    log.error("%d scan records could not be written as the service stopped: %s", len(batch), exc)
                    return
                log.warning("scan records not written yet (%s); retrying in %.1f s", exc, self.RETRY_SECONDS)
                time.sleep(self.RETRY_SECONDS)


# Built once: the hot path of every parcel or unit scan. Core statements (no ORM unit of work or identity map:
# ~5x cheaper per scan); the claim is read in the same statement as the counts.
_RECORDS = SQLModel.metadata.tables[str(ScanRecord.__tablename__)]
_META = SQLModel.metadata.tables[str(Meta.__tablename__)]
_SALT_READ = sql_select(_META.c.value).where(_META.c.key == _SALT_KEY)
_CLAIMS = SQLModel.metadata.tables[str(ScanClaim.__tablename__)]
_RECORD = insert(_RECORDS).values(
    subject=bindparam("subject"),
    device_hash=bindparam("device_hash"),
    latitude=bindparam("latitude"),
    longitude=bindparam("longitude"),
    scanned_at=bindparam("scanned_at"),
)
_CLAIMED_AT = sql_select(_CLAIMS.c.claimed_at).where(_CLAIMS.c.subject == bindparam("subject")).scalar_subquery()
_CLAIMED_BY = sql_select(_CLAIMS.c.device_hash).where(_CLAIMS.c.subject == bindparam("subject")).scalar_subquery()
_SUMMARY = PreparedRead(
    sql_select(
        func.count(),  # not count(id): on PostgreSQL too the index alone answers (it holds no id)
        func.count(func.distinct(_RECORDS.c.device_hash)),
        func.min(_RECORDS.c.scanned_at),
        _CLAIMED_AT,
        _CLAIMED_BY,
        # Scans by another device than the claimant's after the claim (none when unclaimed: NULL compares false).
        func.sum(case((and_(_RECORDS.c.scanned_at > _CLAIMED_AT, _RECORDS.c.device_hash != _CLAIMED_BY), 1), else_=0)),
        # Whether the device asking scanned it before: a scan's own record, not committed yet, is counted once.
        func.max(case((_RECORDS.c.device_hash == bindparam("device"), 1), else_=0)),
    ).where(_RECORDS.c.subject == bindparam("subject"))
)


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands timestamps back naive; they were written in UTC.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _iso(value: datetime | None) -> str | None:
    value = _aware(value)
    return value.isoformat(timespec="seconds").replace("+00:00", "Z") if value else None


def _now() -> datetime:
    return datetime.now(UTC)
