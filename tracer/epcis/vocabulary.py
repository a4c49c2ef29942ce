"""The fixed vocabulary of our EPCIS 2.0 events: contexts, our namespace, bizTransaction types, CBV 2.0.

Every constant here is part of what an event *means* and so of its canonical hash: none is ever derived
from a deployment's URL, and changing one changes the hash of every event that uses it.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "BTT_CUSTOMS_RELEASE",
    "BTT_DECLARATION",
    "BTT_ORDER",
    "BTT_PAYMENT",
    "BTT_WAYBILL",
    "CBV_BIZSTEPS",
    "CBV_DISPOSITIONS",
    "CBV_PREFIX",
    "DEFAULT_CONTEXT",
    "EPCIS_CONTEXT_URL",
    "EVENT_TYPES",
    "TRACER_BTT",
    "TRACER_NS",
    "TRACER_PREFIX",
    "bizstep_uri",
    "disposition_uri",
    "is_cbv_bizstep",
    "is_cbv_disposition",
]

#: The EPCIS 2.0 JSON-LD context, pinned to its 2.0.0 version (the one GS1's reference hash ships).
EPCIS_CONTEXT_URL: Final = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"

#: Our extension namespace: fields ``tracer:hsCode`` etc. expand to ``https://ns.tracer.dev/epcis/hsCode``.
TRACER_PREFIX: Final = "tracer"
TRACER_NS: Final = "https://ns.tracer.dev/epcis/"

#: The ``@context`` of every event and document we write. The hash of an event with ``tracer:`` fields
#: depends on the prefix being declared, so documents we emit carry exactly this context.
DEFAULT_CONTEXT: Final[tuple[str | dict[str, str], ...]] = (EPCIS_CONTEXT_URL, {TRACER_PREFIX: TRACER_NS})

#: The five EPCIS 2.0 event types.
EVENT_TYPES: Final = frozenset(
    {"ObjectEvent", "AggregationEvent", "TransactionEvent", "TransformationEvent", "AssociationEvent"}
)

#: Our bizTransaction types: CBV has no customs vocabulary (MISSION.md).
BTT_DECLARATION: Final = "https://ns.tracer.dev/btt/declaration"
BTT_ORDER: Final = "https://ns.tracer.dev/btt/order"
BTT_PAYMENT: Final = "https://ns.tracer.dev/btt/payment"
BTT_WAYBILL: Final = "https://ns.tracer.dev/btt/waybill"
BTT_CUSTOMS_RELEASE: Final = "https://ns.tracer.dev/btt/customsRelease"
#: Short name -> type URI, in journey order.
TRACER_BTT: Final = {
    "declaration": BTT_DECLARATION,
    "order": BTT_ORDER,
    "payment": BTT_PAYMENT,
    "waybill": BTT_WAYBILL,
    "customsRelease": BTT_CUSTOMS_RELEASE,
}

#: Prefix of the CBV 2.0 web vocabulary.
CBV_PREFIX: Final = "https://ref.gs1.org/cbv/"

#: CBV 2.0 business steps (bare names), as the EPCIS 2.0 context defines them.
CBV_BIZSTEPS: Final = frozenset(
    {
        "accepting", "arriving", "assembling", "collecting", "commissioning", "consigning",
        "creating_class_instance", "cycle_counting", "decommissioning", "departing", "destroying",
        "disassembling", "dispensing", "encoding", "entering_exiting", "holding", "inspecting",
        "installing", "killing", "loading", "other", "packing", "picking", "receiving", "removing",
        "repackaging", "repairing", "replacing", "reserving", "retail_selling", "sampling",
        "sensor_reporting", "shipping", "staging_outbound", "stock_taking", "stocking", "storing",
        "transporting", "unloading", "unpacking", "void_shipping",
    }
)  # fmt: skip

#: CBV 2.0 dispositions (bare names), as the EPCIS 2.0 context defines them.
CBV_DISPOSITIONS: Final = frozenset(
    {
        "active", "available", "completeness_inferred", "completeness_verified", "conformant",
        "container_closed", "container_open", "damaged", "destroyed", "dispensed", "disposed",
        "encoded", "expired", "in_progress", "in_transit", "inactive", "mismatch_class",
        "mismatch_instance", "mismatch_quantity", "needs_replacement", "no_pedigree_match",
        "non_conformant", "non_sellable_other", "partially_dispensed", "recalled", "reserved",
        "retail_sold", "returned", "sellable_accessible", "sellable_not_accessible", "stolen",
        "unavailable", "unknown",
    }
)  # fmt: skip

_BIZSTEP_URI: Final = CBV_PREFIX + "BizStep-"
_DISP_URI: Final = CBV_PREFIX + "Disp-"
_BIZSTEP_URN: Final = "urn:epcglobal:cbv:bizstep:"
_DISP_URN: Final = "urn:epcglobal:cbv:disp:"


def bizstep_uri(name: str) -> str:
    """``https://ref.gs1.org/cbv/BizStep-{name}``; raises ValueError for a name CBV 2.0 does not define."""
    if name not in CBV_BIZSTEPS:
        raise ValueError(f"{name!r} is not a CBV 2.0 business step")
    return _BIZSTEP_URI + name


def disposition_uri(name: str) -> str:
    """``https://ref.gs1.org/cbv/Disp-{name}``; raises ValueError for a name CBV 2.0 does not define."""
    if name not in CBV_DISPOSITIONS:
        raise ValueError(f"{name!r} is not a CBV 2.0 disposition")
    return _DISP_URI + name


def _bare(value: str, uri_prefix: str, urn_prefix: str) -> str:
    for prefix in (uri_prefix, urn_prefix, "cbv:BizStep-" if "BizStep" in uri_prefix else "cbv:Disp-"):
        if value.startswith(prefix):
            return value[len(prefix) :]
    return value


def is_cbv_bizstep(value: object) -> bool:
    """True for a CBV 2.0 business step: a bare name, its web URI, its CURIE or its CBV 1.x URN."""
    return isinstance(value, str) and _bare(value, _BIZSTEP_URI, _BIZSTEP_URN) in CBV_BIZSTEPS


def is_cbv_disposition(value: object) -> bool:
    """True for a CBV 2.0 disposition: a bare name, its web URI, its CURIE or its CBV 1.x URN."""
    return isinstance(value, str) and _bare(value, _DISP_URI, _DISP_URN) in CBV_DISPOSITIONS
