"""Pure builders of the EPCIS 2.0 events of the bonded-import journey, one per step.

Each builder takes keyword-only arguments (the caller passes ``event_time``: builders never read the
clock), validates them (:class:`~tracer.exceptions.InvalidInput` with a pointer ``/<argument>``) and
returns a JSON-LD event ``dict`` with keys as EPCIS 2.0 spells them, no ``eventID`` (that is the event's
canonical hash, :func:`tracer.epcis.event_hash`) and no ``@context`` (the enclosing document carries
:data:`~tracer.epcis.vocabulary.DEFAULT_CONTEXT`, which declares the ``tracer`` prefix of our fields).

Choices, fixed because they are part of every hash (docs/epcis-mapping.md publishes the mapping):

* ``eventTime`` is UTC with milliseconds (``2024-05-01T08:00:00.000Z``, truncated) and
  ``eventTimeZoneOffset`` is ``+00:00``.
* Identifiers are GS1 Digital Link URIs on ``https://id.gs1.org`` (see :mod:`tracer.identifiers`): the
  lot is the ``epcClass`` of a ``quantityList`` entry (no ``uom``: the quantity counts trade items),
  a parcel is an EPC (``https://id.gs1.org/00/{sscc}``), a serialised unit one too
  (``https://id.gs1.org/01/{gtin14}/21/{serial}``, among a split's ``childEPCs``).
* bizStep and disposition are bare CBV 2.0 names (the EPCIS 2.0 context maps them to
  ``https://ref.gs1.org/cbv/BizStep-…``; the hash is the same either way).
* Customs, order, payment, waybill and release numbers sit in ``bizTransactionList`` with our type
  URIs (:mod:`tracer.epcis.vocabulary`) and the value ``urn:tracer:{kind}:{number}``, the number
  percent-encoded outside RFC 3986's unreserved characters. ``tracer`` is an informal (unregistered)
  URN namespace: the numbers are the parties' own, unique only together with their kind, so they are
  not made to look like URLs anyone could resolve.
* The declaration is a TransactionEvent (it ties the lot to the customs declaration), and EPCIS allows
  ``ilmd`` only on ObjectEvent with action ADD and on TransformationEvent; so its product master data
  (HS code, origin, manufacturer, name, expiry) are extension fields ``tracer:…`` instead of ``ilmd``.
* Personal data never enters an event. The document events take only non-personal figures (totals,
  amounts, items) and salted commitments (``0x`` + 64 hex, :mod:`tracer.commitments`); no builder has
  a parameter for a name, phone number, ID number or address.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal
from urllib.parse import quote

from tracer.epcis.vocabulary import (
    BTT_CUSTOMS_RELEASE,
    BTT_DECLARATION,
    BTT_ORDER,
    BTT_PAYMENT,
    BTT_WAYBILL,
    TRACER_PREFIX,
)
from tracer.exceptions import InvalidInput
from tracer.identifiers import lot_class_uri, normalize_gtin, parcel_uri, unit_uri

__all__ = [
    "InspectionOutcome",
    "OrderLine",
    "customs_release_event",
    "declaration_event",
    "delivery_event",
    "entry_event",
    "inspection_event",
    "order_event",
    "payment_event",
    "recall_event",
    "split_event",
    "storage_event",
    "transaction_uri",
    "waybill_event",
]

Event = dict[str, Any]
InspectionOutcome = Literal["conformant", "non_conformant", "sampled"]

_MAX_QUANTITY = 2**64 - 1  # the registry stores quantities as uint64
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[^\s\"<>\\^`{|}]+")
_COMMITMENT = re.compile(r"0x[0-9a-f]{64}")
_CSET82 = re.compile(r"""[!"%&'()*+,\-./0-9:;<=>?A-Z_a-z]+""")
_CURRENCY = re.compile(r"[A-Z]{3}")
_COUNTRY = re.compile(r"[A-Z]{2}")
_HS_CODE = re.compile(r"[0-9]{6,10}")


def _p(name: str) -> str:
    return f"{TRACER_PREFIX}:{name}"


# --- argument checks --------------------------------------------------------------------------------


def _time(value: datetime) -> str:
    if not isinstance(value, datetime):
        raise InvalidInput("event_time must be a datetime", pointer="/event_time")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput("event_time must be timezone-aware", pointer="/event_time")
    utc = value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S") + f".{utc.microsecond // 1000:03d}Z"


def _quantity(value: int, name: str, *, allow_zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{name} must be an integer", pointer=f"/{name}")
    low = 0 if allow_zero else 1
    if not low <= value <= _MAX_QUANTITY:
        raise InvalidInput(f"{name} must be between {low} and {_MAX_QUANTITY}, got {value}", pointer=f"/{name}")
    return value


def _uri(value: str, name: str) -> dict[str, str]:
    if not isinstance(value, str) or len(value) > 512 or not _URI.fullmatch(value):
        raise InvalidInput(
            f"{name} must be a URI (e.g. https://id.gs1.org/414/<GLN>/254/<ext> or urn:epc:id:sgln:…), got {value!r}",
            pointer=f"/{name}",
        )
    return {"id": value}


def _text(value: str, name: str, *, max_length: int = 200) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string", pointer=f"/{name}")
    text = unicodedata.normalize("NFC", value.strip())
    if not text:
        raise InvalidInput(f"{name} must not be empty", pointer=f"/{name}")
    if len(text) > max_length:
        raise InvalidInput(f"{name} has {len(text)} characters; at most {max_length}", pointer=f"/{name}")
    if any(unicodedata.category(ch) == "Cc" for ch in text):
        raise InvalidInput(f"{name} must not contain control characters", pointer=f"/{name}")
    return text


def _number(value: str, name: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 64 or not _CSET82.fullmatch(value):
        raise InvalidInput(
            f"{name} must be 1-64 characters of the GS1 character set 82 (no spaces), got {value!r}",
            pointer=f"/{name}",
        )
    return value


def _commitment(value: str, name: str) -> str:
    if not isinstance(value, str) or not _COMMITMENT.fullmatch(value):
        raise InvalidInput(f"{name} must be a commitment: 0x followed by 64 lower-case hex digits", pointer=f"/{name}")
    return value


def _money(value: Decimal | int | str, name: str) -> str:
    if isinstance(value, (bool, float)) or not isinstance(value, (Decimal, int, str)):
        raise InvalidInput(f"{name} must be a Decimal, an integer or a decimal string", pointer=f"/{name}")
    try:
        amount = Decimal(value.strip() if isinstance(value, str) else value)
    except InvalidOperation:
        raise InvalidInput(f"{name} {value!r} is not a decimal number", pointer=f"/{name}") from None
    if not amount.is_finite() or amount < 0:
        raise InvalidInput(f"{name} must be a finite amount of at least 0, got {value!r}", pointer=f"/{name}")
    return format(amount, "f")


def _currency(value: str) -> str:
    if not isinstance(value, str) or not _CURRENCY.fullmatch(value):
        raise InvalidInput(f"currency must be an ISO 4217 code like CNY, got {value!r}", pointer="/currency")
    return value


def transaction_uri(kind: str, number: str) -> str:
    """The ``bizTransaction`` value of a document: ``urn:tracer:{kind}:{percent-encoded number}``."""
    return f"urn:tracer:{kind}:{quote(number, safe='')}"


def _btt(type_uri: str, kind: str, number: str, name: str) -> dict[str, str]:
    return {"type": type_uri, "bizTransaction": transaction_uri(kind, _number(number, name))}


def _lot_class(gtin: str, lot: str) -> str:
    # identifiers raise InvalidInput with the right message; add the argument pointer.
    try:
        return lot_class_uri(gtin, lot)
    except InvalidInput as exc:
        pointer = "/gtin" if exc.message.startswith("GTIN") else "/lot"
        raise InvalidInput(exc.message, pointer=pointer) from exc


def _parcel(sscc: str) -> str:
    try:
        return parcel_uri(sscc)
    except InvalidInput as exc:
        raise InvalidInput(exc.message, pointer="/sscc") from exc


def _unit(gtin: str, serial: str, index: int) -> str:
    try:
        return unit_uri(gtin, serial)
    except InvalidInput as exc:
        pointer = "/gtin" if exc.message.startswith("GTIN") else f"/serials/{index}"
        raise InvalidInput(exc.message, pointer=pointer) from exc


def _base(kind: str, event_time: datetime) -> Event:
    return {"type": kind, "eventTime": _time(event_time), "eventTimeZoneOffset": "+00:00"}


def _locations(event: Event, read_point: str | None, biz_location: str | None) -> None:
    if read_point is not None:
        event["readPoint"] = _uri(read_point, "read_point")
    if biz_location is not None:
        event["bizLocation"] = _uri(biz_location, "biz_location")


def _quantity_element(gtin: str, lot: str, quantity: int | None, name: str = "quantity") -> dict[str, Any]:
    element: dict[str, Any] = {"epcClass": _lot_class(gtin, lot)}
    if quantity is not None:
        element["quantity"] = _quantity(quantity, name)
    return element


# --- lot steps --------------------------------------------------------------------------------------


def declaration_event(
    *,
    event_time: datetime,
    gtin: str,
    lot: str,
    quantity: int,
    declaration_number: str,
    hs_code: str,
    origin_country: str,
    manufacturer: str,
    product_name: str,
    expiry_date: date | None = None,
    read_point: str | None = None,
    biz_location: str | None = None,
) -> Event:
    """Advance declaration (enterprise): TransactionEvent ADD, bizStep ``other``, disposition ``in_transit``.

    The lot and its declared quantity in ``quantityList``; the declaration number in
    ``bizTransactionList``; product master data as ``tracer:`` fields (``ilmd`` is not allowed on a
    TransactionEvent). ``origin_country`` is ISO 3166-1 alpha-2, ``hs_code`` 6-10 digits.
    Raises InvalidInput naming the argument at fault.
    """
    event = _base("TransactionEvent", event_time)
    event["action"] = "ADD"
    event["bizStep"] = "other"
    event["disposition"] = "in_transit"
    _locations(event, read_point, biz_location)
    event["bizTransactionList"] = [_btt(BTT_DECLARATION, "declaration", declaration_number, "declaration_number")]
    event["quantityList"] = [_quantity_element(gtin, lot, quantity)]
    if not isinstance(hs_code, str) or not _HS_CODE.fullmatch(hs_code):
        raise InvalidInput(f"hs_code must be 6 to 10 digits, got {hs_code!r}", pointer="/hs_code")
    if not isinstance(origin_country, str) or not _COUNTRY.fullmatch(origin_country):
        raise InvalidInput(
            f"origin_country must be an ISO 3166-1 alpha-2 code like NZ, got {origin_country!r}",
            pointer="/origin_country",
        )
    event[_p("hsCode")] = hs_code
    event[_p("originCountry")] = origin_country
    event[_p("manufacturer")] = _text(manufacturer, "manufacturer")
    event[_p("productName")] = _text(product_name, "product_name")
    if expiry_date is not None:
        if not isinstance(expiry_date, date) or isinstance(expiry_date, datetime):
            raise InvalidInput("expiry_date must be a date", pointer="/expiry_date")
        event[_p("itemExpirationDate")] = expiry_date.isoformat()
    return event


def entry_event(
    *,
    event_time: datetime,
    gtin: str,
    lot: str,
    counted_quantity: int,
    declared_quantity: int,
    biz_location: str,
    read_point: str | None = None,
) -> Event:
    """Bonded entry (warehouse): ObjectEvent OBSERVE, bizStep ``receiving``, ``sellable_not_accessible``.

    ``quantityList`` holds the counted quantity (zero allowed: nothing arrived), ``tracer:declaredQuantity``
    the declared one, so a discrepancy is in the event itself. ``biz_location`` is the bonded zone (URI).
    Raises InvalidInput naming the argument at fault.
    """
    event = _base("ObjectEvent", event_time)
    event["action"] = "OBSERVE"
    event["bizStep"] = "receiving"
    event["disposition"] = "sellable_not_accessible"
    _locations(event, read_point, biz_location)
    event["quantityList"] = [
        {
            "epcClass": _lot_class(gtin, lot),
            "quantity": _quantity(counted_quantity, "counted_quantity", allow_zero=True),
        }
    ]
    event[_p("declaredQuantity")] = _quantity(declared_quantity, "declared_quantity")
    return event


def inspection_event(
    *,
    event_time: datetime,
    gtin: str,
    lot: str,
    result: InspectionOutcome,
    read_point: str | None = None,
    biz_location: str | None = None,
) -> Event:
    """Entry inspection (customs): ObjectEvent OBSERVE, bizStep ``inspecting``.

    Disposition ``conformant`` or ``non_conformant``; ``sampled`` (released on a sample, the low-risk
    path) is ``conformant`` with ``tracer:sampled: true``. Raises InvalidInput for another result.
    """
    if result not in ("conformant", "non_conformant", "sampled"):
        raise InvalidInput(f"result must be conformant, non_conformant or sampled, got {result!r}", pointer="/result")
    event = _base("ObjectEvent", event_time)
    event["action"] = "OBSERVE"
    event["bizStep"] = "inspecting"
    event["disposition"] = "non_conformant" if result == "non_conformant" else "conformant"
    _locations(event, read_point, biz_location)
    event["quantityList"] = [_quantity_element(gtin, lot, None)]
    if result == "sampled":
        event[_p("sampled")] = True
    return event


def storage_event(
    *,
    event_time: datetime,
    gtin: str,
    lot: str,
    storage_location: str,
    quantity: int | None = None,
    read_point: str | None = None,
) -> Event:
    """Bonded storage (warehouse): ObjectEvent OBSERVE, bizStep ``storing``, ``sellable_not_accessible``.

    ``bizLocation`` is the storage location (URI). Raises InvalidInput naming the argument at fault.
    """
    event = _base("ObjectEvent", event_time)
    event["action"] = "OBSERVE"
    event["bizStep"] = "storing"
    event["disposition"] = "sellable_not_accessible"
    _locations(event, read_point, None)
    event["bizLocation"] = _uri(storage_location, "storage_location")
    event["quantityList"] = [_quantity_element(gtin, lot, quantity)]
    return event


def split_event(
    *,
    event_time: datetime,
    gtin: str,
    lot: str,
    sscc: str,
    quantity: int,
    serials: Sequence[str] = (),
    read_point: str | None = None,
    biz_location: str | None = None,
) -> Event:
    """A parcel split off the lot (warehouse): AggregationEvent ADD, bizStep ``packing``, ``container_closed``.

    ``parentID`` is the parcel, ``childQuantityList`` the lot and the quantity packed into it. ``serials``
    (GS1 AI 21) name serialised units among that quantity: they become ``childEPCs``
    (``https://id.gs1.org/01/{gtin14}/21/{serial}``, in the order given), so the event's hash covers them;
    there are never more of them than ``quantity``. Raises InvalidInput naming the argument at fault.
    """
    event = _base("AggregationEvent", event_time)
    event["parentID"] = _parcel(sscc)
    if isinstance(serials, (str, bytes)) or not isinstance(serials, Sequence):
        raise InvalidInput("serials must be a list of serial numbers", pointer="/serials")
    if serials:
        if len(serials) > _quantity(quantity, "quantity"):
            raise InvalidInput(f"{len(serials)} serials for a quantity of {quantity}", pointer="/serials")
        event["childEPCs"] = [_unit(gtin, serial, index) for index, serial in enumerate(serials)]
    event["childQuantityList"] = [_quantity_element(gtin, lot, quantity)]
    event["action"] = "ADD"
    event["bizStep"] = "packing"
    event["disposition"] = "container_closed"
    _locations(event, read_point, biz_location)
    return event


def recall_event(
    *,
    event_time: datetime,
    gtin: str,
    lot: str,
    reason: str,
    quantity: int | None = None,
    read_point: str | None = None,
    biz_location: str | None = None,
) -> Event:
    """Recall of a lot (enterprise or customs): ObjectEvent OBSERVE, bizStep ``holding``, ``recalled``.

    ``tracer:reason`` says why (free text, at most 500 characters; not a place for personal data).
    Raises InvalidInput naming the argument at fault.
    """
    event = _base("ObjectEvent", event_time)
    event["action"] = "OBSERVE"
    event["bizStep"] = "holding"
    event["disposition"] = "recalled"
    _locations(event, read_point, biz_location)
    event["quantityList"] = [_quantity_element(gtin, lot, quantity)]
    event[_p("reason")] = _text(reason, "reason", max_length=500)
    return event


# --- parcel steps -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderLine:
    """One item line of an order: GTIN, quantity, unit price (non-personal)."""

    gtin: str
    quantity: int
    unit_price: Decimal | int | str


def _order_lines(items: Sequence[OrderLine | Mapping[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence) or not items:
        raise InvalidInput("items must be a non-empty list of order lines", pointer="/items")
    lines = []
    for index, item in enumerate(items):
        pointer = f"/items/{index}"
        if isinstance(item, Mapping):
            try:
                item = OrderLine(gtin=item["gtin"], quantity=item["quantity"], unit_price=item["unit_price"])
            except KeyError as exc:
                raise InvalidInput(f"order line lacks {exc.args[0]!r}", pointer=pointer) from None
        if not isinstance(item, OrderLine):
            raise InvalidInput("an order line must be an OrderLine or a mapping", pointer=pointer)
        try:
            line = {
                _p("gtin"): normalize_gtin(item.gtin),
                _p("quantity"): _quantity(item.quantity, "quantity"),
                _p("unitPrice"): _money(item.unit_price, "unit_price"),
            }
        except InvalidInput as exc:
            raise InvalidInput(exc.message, pointer=pointer) from exc
        lines.append(line)
    return lines


def _document_base(event_time: datetime, sscc: str, bizstep: str) -> Event:
    event = _base("TransactionEvent", event_time)
    event["epcList"] = [_parcel(sscc)]
    event["action"] = "ADD"
    event["bizStep"] = bizstep
    event["disposition"] = "reserved"
    return event


def order_event(
    *,
    event_time: datetime,
    sscc: str,
    order_number: str,
    total: Decimal | int | str,
    currency: str,
    items: Sequence[OrderLine | Mapping[str, Any]],
    consignee_commitment: str,
    document_commitment: str,
) -> Event:
    """The order of a parcel (enterprise): TransactionEvent ADD, bizStep ``other``, disposition ``reserved``.

    Carries the order number (``bizTransactionList``), ``tracer:orderTotal``, ``tracer:currency``,
    ``tracer:items`` (gtin, quantity, unit price) and the commitments ``tracer:consigneeCommitment``
    and ``tracer:documentCommitment``. Raises InvalidInput naming the argument at fault.
    """
    event = _document_base(event_time, sscc, "other")
    event["bizTransactionList"] = [_btt(BTT_ORDER, "order", order_number, "order_number")]
    event[_p("orderTotal")] = _money(total, "total")
    event[_p("currency")] = _currency(currency)
    event[_p("items")] = _order_lines(items)
    event[_p("consigneeCommitment")] = _commitment(consignee_commitment, "consignee_commitment")
    event[_p("documentCommitment")] = _commitment(document_commitment, "document_commitment")
    return event


def payment_event(
    *,
    event_time: datetime,
    sscc: str,
    payment_number: str,
    order_number: str,
    amount: Decimal | int | str,
    currency: str,
    payer_commitment: str,
    document_commitment: str,
) -> Event:
    """The payment of a parcel's order (payment institution): TransactionEvent ADD, ``other``, ``reserved``.

    ``bizTransactionList`` holds the payment and the order number; ``tracer:paidAmount``,
    ``tracer:currency``, ``tracer:payerCommitment``, ``tracer:documentCommitment``.
    Raises InvalidInput naming the argument at fault.
    """
    event = _document_base(event_time, sscc, "other")
    event["bizTransactionList"] = [
        _btt(BTT_PAYMENT, "payment", payment_number, "payment_number"),
        _btt(BTT_ORDER, "order", order_number, "order_number"),
    ]
    event[_p("paidAmount")] = _money(amount, "amount")
    event[_p("currency")] = _currency(currency)
    event[_p("payerCommitment")] = _commitment(payer_commitment, "payer_commitment")
    event[_p("documentCommitment")] = _commitment(document_commitment, "document_commitment")
    return event


def waybill_event(
    *,
    event_time: datetime,
    sscc: str,
    waybill_number: str,
    order_number: str,
    consignee_commitment: str,
    document_commitment: str,
) -> Event:
    """The waybill of a parcel (carrier): TransactionEvent ADD, bizStep ``staging_outbound``, ``reserved``.

    ``bizTransactionList`` holds the waybill and the order number; ``tracer:consigneeCommitment``,
    ``tracer:documentCommitment``. Raises InvalidInput naming the argument at fault.
    """
    event = _document_base(event_time, sscc, "staging_outbound")
    event["bizTransactionList"] = [
        _btt(BTT_WAYBILL, "waybill", waybill_number, "waybill_number"),
        _btt(BTT_ORDER, "order", order_number, "order_number"),
    ]
    event[_p("consigneeCommitment")] = _commitment(consignee_commitment, "consignee_commitment")
    event[_p("documentCommitment")] = _commitment(document_commitment, "document_commitment")
    return event


def customs_release_event(
    *,
    event_time: datetime,
    sscc: str,
    release_number: str,
    order_number: str,
    waybill_number: str,
    read_point: str | None = None,
    biz_location: str | None = None,
) -> Event:
    """Release of a parcel from the bonded zone (customs): ObjectEvent OBSERVE, ``departing``, ``in_transit``.

    ``bizTransactionList``: the customs release, the order and the waybill numbers.
    Raises InvalidInput naming the argument at fault.
    """
    event = _base("ObjectEvent", event_time)
    event["epcList"] = [_parcel(sscc)]
    event["action"] = "OBSERVE"
    event["bizStep"] = "departing"
    event["disposition"] = "in_transit"
    _locations(event, read_point, biz_location)
    event["bizTransactionList"] = [
        _btt(BTT_CUSTOMS_RELEASE, "customsRelease", release_number, "release_number"),
        _btt(BTT_ORDER, "order", order_number, "order_number"),
        _btt(BTT_WAYBILL, "waybill", waybill_number, "waybill_number"),
    ]
    return event


def delivery_event(
    *,
    event_time: datetime,
    sscc: str,
    read_point: str | None = None,
    biz_location: str | None = None,
) -> Event:
    """Delivery of a parcel to its consignee (carrier): ObjectEvent OBSERVE, ``accepting``, ``retail_sold``.

    Raises InvalidInput naming the argument at fault.
    """
    event = _base("ObjectEvent", event_time)
    event["epcList"] = [_parcel(sscc)]
    event["action"] = "OBSERVE"
    event["bizStep"] = "accepting"
    event["disposition"] = "retail_sold"
    _locations(event, read_point, biz_location)
    return event
