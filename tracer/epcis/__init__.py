"""EPCIS 2.0 for the bonded-import journey: the canonical event hash, the vocabulary, the event builders.

``event_hash`` and ``document_hashes`` are the public interface of INTERFACES.md ("Python").
"""

from tracer.epcis.hashing import (
    document_hashes,
    event_hash,
    event_hash_bytes,
    event_hash_from_bytes,
    prehash,
)
from tracer.epcis.journey_events import (
    OrderLine,
    customs_release_event,
    declaration_event,
    delivery_event,
    entry_event,
    inspection_event,
    order_event,
    payment_event,
    recall_event,
    split_event,
    storage_event,
    waybill_event,
)

__all__ = [
    "OrderLine",
    "customs_release_event",
    "declaration_event",
    "delivery_event",
    "document_hashes",
    "entry_event",
    "event_hash",
    "event_hash_bytes",
    "event_hash_from_bytes",
    "inspection_event",
    "order_event",
    "payment_event",
    "prehash",
    "recall_event",
    "split_event",
    "storage_event",
    "waybill_event",
]
