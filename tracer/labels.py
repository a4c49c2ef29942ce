"""Printable label sheets: the QR codes of a lot's parcels, or of a parcel's serialised units, on A4, with the
human-readable keys under each.

The layout is the common 3 x 7 sheet of 63.5 x 38.1 mm labels (21 per A4 page), so sheets print on
stock label paper at 100 % scale. Each label carries the Digital Link QR code and, under it, the keys in
GS1 human-readable form: a parcel's ``(00) …`` and ``(01) … (10) …``, a unit's ``(01) … (21) …`` and
``(10) …``. The output is one SVG per sheet, measured in millimetres; it needs no font of its own (the
text is Latin digits, the lot and the serial).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from xml.sax.saxutils import escape

from sqlalchemy import ColumnElement
from sqlmodel import Session, SQLModel, col, func, select

from tracer import identifiers
from tracer.exceptions import NotFound
from tracer.qr import qr_modules, qr_svg_path
from tracer.store.models import Lot, Parcel, Unit

_Row = TypeVar("_Row", bound=SQLModel)

PAGE_WIDTH, PAGE_HEIGHT = 210.0, 297.0
COLUMNS, ROWS = 3, 7
LABELS_PER_PAGE = COLUMNS * ROWS
LABEL_WIDTH, LABEL_HEIGHT = 63.5, 38.1
MARGIN_LEFT, MARGIN_TOP, COLUMN_GAP = 7.2, 15.15, 2.5
QR_SIZE = 27.0  # mm, quiet zone included: about 0.6 mm a module for a parcel's link, easy for a phone
TEXT_SIZE = 2.5  # mm, about 7 pt


@dataclass(frozen=True)
class Label:
    """One label: the URL its QR code carries and the lines printed under it."""

    url: str
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Sheet:
    """One A4 sheet of labels, and how many sheets the whole run takes."""

    svg: bytes
    page: int
    pages: int
    count: int


def parcel_label(*, public_url: str, gtin: str, lot: str, sscc: str) -> Label:
    """The label of one parcel: its Digital Link, ``(00) SSCC`` and ``(01) GTIN (10) lot``."""
    return Label(
        url=public_url + identifiers.parcel_path(sscc),
        lines=(f"(00) {sscc}", f"(01) {gtin} (10) {lot}"),
    )


def render_sheet(labels: list[Label]) -> bytes:
    """An A4 SVG with up to 21 ``labels``, row by row (pure)."""
    if len(labels) > LABELS_PER_PAGE:
        raise ValueError(f"one sheet holds {LABELS_PER_PAGE} labels, not {len(labels)}")
    body = []
    for index, label in enumerate(labels):
        row, column = divmod(index, COLUMNS)
        left = MARGIN_LEFT + column * (LABEL_WIDTH + COLUMN_GAP)
        top = MARGIN_TOP + row * LABEL_HEIGHT
        qr_x = left + (LABEL_WIDTH - QR_SIZE) / 2
        path = qr_svg_path(qr_modules(label.url), x=qr_x, y=top + 1.0, size=QR_SIZE)
        body.append(f'<g><title>{escape(label.url)}</title><path d="{path}"/>')
        for line_index, line in enumerate(label.lines):
            baseline = top + 1.0 + QR_SIZE + (line_index + 1) * (TEXT_SIZE + 0.6)
            body.append(f'<text x="{left + LABEL_WIDTH / 2:.2f}" y="{baseline:.2f}">{escape(line)}</text>')
        body.append("</g>")
    svg = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{PAGE_WIDTH}mm" height="{PAGE_HEIGHT}mm" '
        f'viewBox="0 0 {PAGE_WIDTH} {PAGE_HEIGHT}">'
        f'<style>text{{font:{TEXT_SIZE}px "DejaVu Sans Mono",Menlo,Consolas,monospace;text-anchor:middle}}'
        "path{fill:#000;shape-rendering:crispEdges}</style>"
        f'<rect width="{PAGE_WIDTH}" height="{PAGE_HEIGHT}" fill="#fff"/>' + "".join(body) + "</svg>\n"
    )
    return svg.encode()


def unit_label(*, public_url: str, gtin: str, lot: str, serial: str) -> Label:
    """The label of one unit: its Digital Link, ``(01) GTIN (21) serial`` and ``(10) lot``."""
    return Label(
        url=public_url + identifiers.unit_path(gtin, serial),
        lines=(f"(01) {gtin} (21) {serial}", f"(10) {lot}"),
    )


def lot_sheet(*, session: Session, lot: Lot, public_url: str, page: int = 1) -> Sheet:
    """Sheet ``page`` (from 1) of the labels of every parcel split from ``lot``, in split order.

    Raises NotFound when the lot has no parcels yet, or fewer sheets than ``page``.
    """
    return _sheet(
        session=session,
        table=Parcel,
        where=col(Parcel.lot_pk) == lot.id,
        order=(col(Parcel.index), col(Parcel.id)),
        label=lambda p: parcel_label(public_url=public_url, gtin=lot.gtin, lot=lot.lot_number, sscc=p.sscc),
        page=page,
        what=f"lot {lot.gtin}/{lot.lot_number}",
    )


def parcel_units_sheet(*, session: Session, lot: Lot, parcel: Parcel, public_url: str, page: int = 1) -> Sheet:
    """Sheet ``page`` (from 1) of the labels of the serialised units packed into ``parcel``, in the order its
    split named them. Raises NotFound when the parcel names no units, or has fewer sheets than ``page``."""
    return _sheet(
        session=session,
        table=Unit,
        where=col(Unit.parcel_pk) == parcel.id,
        order=(col(Unit.id),),
        label=lambda u: unit_label(public_url=public_url, gtin=u.gtin, lot=lot.lot_number, serial=u.serial),
        page=page,
        what=f"the units of parcel {parcel.sscc}",
    )


def _sheet(
    *,
    session: Session,
    table: type[_Row],
    where: ColumnElement[bool],
    order: tuple[Any, ...],
    label: Callable[[_Row], Label],
    page: int,
    what: str,
) -> Sheet:
    """Sheet ``page`` of the labels of the rows of ``table`` that match ``where``, ordered by ``order``."""
    count = session.exec(select(func.count()).select_from(table).where(where)).one()
    pages = math.ceil(count / LABELS_PER_PAGE)
    if page > pages:
        raise NotFound("label sheet", f"page {page} of {what} ({pages} sheet(s))")
    rows = session.exec(
        select(table).where(where).order_by(*order).offset((page - 1) * LABELS_PER_PAGE).limit(LABELS_PER_PAGE)
    ).all()
    return Sheet(svg=render_sheet([label(row) for row in rows]), page=page, pages=pages, count=count)
