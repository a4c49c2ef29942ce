"""The GS1 EPCIS event pre-hash string, computed in-house: pure Python, no JSON-LD processor, no network.

The algorithm is CBV 2.0's "EPCIS Event Hash ID" (the reference implementation's README, kept in
``../shared/fixtures/epcis-hash/REFERENCE-README.md``). Where that text and GS1's reference package
``epcis-event-hash-generator`` differ, the package's *results* are what every other EPCIS tool
computes, so this module reproduces them, quirks included; the package itself is only a test oracle
(:mod:`tracer.epcis.reference`). The steps, for one JSON-LD event:

1. **Bare CBV values.** The package expands the document with JSON-LD and collects every expanded
   value under ``https://ref.gs1.org/cbv`` or ``https://gs1.org/voc``; then *every* string of the event
   that is the tail (after ``-`` or ``/``) of exactly one of them is replaced by it. So ``"receiving"``
   becomes ``https://ref.gs1.org/cbv/BizStep-receiving`` wherever it stands, an extension value
   included, once the event's ``bizStep`` is ``receiving``. We compute the same set without a JSON-LD
   processor, from the term tables of the EPCIS 2.0 context (:data:`_VOCAB_TABLES`) and its prefixes.
2. **Tree.** Each JSON value becomes a node ``(name, text, children)``; keys ``prefix:local`` become
   ``{namespace}local`` through the ``@context`` prefixes (values ``prefix:rest`` become
   ``namespace + rest``); scalars become ``str()`` of the Python value (so JSON ``true`` is ``True``);
   list items take their key as name; children are sorted, except inside a bizTransaction, source or
   destination object, whose key order is kept.
3. **XML shape.** Children named ``…List`` are grouped under one node (``epcList`` → ``epc`` items);
   a bizTransaction/source/destination item keeps its first two fields as a pair; ``childEPCs`` are
   grouped; ``inputEPC``/``outputEPC`` become ``epc``, quantity items ``quantityElement``.
4. **Canonical order.** ``eventType=…``, then the fields of :data:`_PROPERTY_ORDER` in that order (each
   ``name=value``, same-name values sorted, nested fields by their own order, extensions of a nested
   field after its regular fields), then everything not consumed (ILMD, the three typed lists, user
   extensions) as sorted ``name=value`` strings. ``eventID``, ``recordTime`` and ``errorDeclaration``
   are left out.
5. **Values.** Timestamps (field names containing ``time`` but not ``offset``) go to UTC with
   milliseconds (``.0005`` rounds half to even, as the package does); other values: CBV 1.x URNs to
   CBV 2.0 web URIs, number-like strings to Python's shortest number form (``"1.0"`` → ``1``), EPC URNs
   and Digital Link URIs to the constrained canonical Digital Link (:func:`canonical_digital_link`).

Deliberate differences, all where the package fails instead of hashing (so no vector or oracle result
can disagree): a bizTransaction/source/destination without a ``type`` hashes its one field (the package
raises ``IndexError``); a timestamp whose milliseconds round up to 1000 carries into the seconds (the
package raises); ``"inf"`` stays ``inf`` (the package raises ``OverflowError``); a ``@context`` term
defined as an object uses its ``@id``; a timestamp without an offset is read as UTC (the package uses
the machine's time zone; ours run in UTC).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Final

from tracer.epcis.vocabulary import CBV_BIZSTEPS, CBV_DISPOSITIONS

__all__ = ["canonical_digital_link", "clear_caches", "gs1_check_digit_int", "prehash_string"]

# A node of the tree: (name, text, children). A bizTransaction/source/destination item is a tuple of up
# to two nodes instead (a "pair"); ``_is_node`` tells them apart.
Node = tuple[Any, ...]

# --- step 1: the values JSON-LD expansion would produce ----------------------------------------------

_CBV: Final = "https://ref.gs1.org/cbv/"
_VOC: Final = "https://gs1.org/voc/"
_EXPANDED_PREFIXES: Final = ("https://ref.gs1.org/cbv", "https://gs1.org/voc")

#: Prefixes the EPCIS 2.0 context defines (documents may add their own).
_CONTEXT_PREFIXES: Final[Mapping[str, str]] = {
    "epcis": "https://ref.gs1.org/epcis/",
    "cbv": _CBV,
    "cbvmda": "urn:epcglobal:cbv:mda:",
    "gs1": _VOC,
    "rdfs": "http://www.w3.org/2000/01/rdf-schema#",
    "owl": "http://www.w3.org/2002/07/owl#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "dcterms": "http://purl.org/dc/terms/",
}

_MEASUREMENT_TYPES: Final = frozenset(
    [
        "AbsoluteHumidity",
        "AbsorbedDose",
        "AbsorbedDoseRate",
        "Acceleration",
        "Radioactivity",
        "Altitude",
        "AmountOfSubstance",
        "AmountOfSubstancePerUnitVolume",
        "Angle",
        "AngularAcceleration",
        "AngularMomentum",
        "AngularVelocity",
        "Area",
        "Capacitance",
        "Conductance",
        "Conductivity",
        "Count",
        "Density",
        "Dimensionless",
        "DoseEquivalent",
        "DoseEquivalentRate",
        "DynamicViscosity",
        "ElectricCharge",
        "ElectricCurrent",
        "ElectricCurrentDensity",
        "ElectricFieldStrength",
        "Energy",
        "Exposure",
        "Force",
        "Frequency",
        "Illuminance",
        "Inductance",
        "Irradiance",
        "KinematicViscosity",
        "Length",
        "LinearMomentum",
        "Luminance",
        "LuminousFlux",
        "LuminousIntensity",
        "MagneticFlux",
        "MagneticFluxDensity",
        "MagneticVectorPotential",
        "Mass",
        "MassConcentration",
        "MassFlowRate",
        "MassPerAreaTime",
        "MemoryCapacity",
        "MolalityOfSolute",
        "MolarEnergy",
        "MolarMass",
        "MolarVolume",
        "Power",
        "Pressure",
        "RadiantFlux",
        "RadiantIntensity",
        "RelativeHumidity",
        "Resistance",
        "Resistivity",
        "SolidAngle",
        "SpecificVolume",
        "Speed",
        "SurfaceDensity",
        "SurfaceTension",
        "Temperature",
        "Time",
        "Torque",
        "Voltage",
        "Volume",
        "VolumeFlowRate",
        "VolumeFraction",
        "VolumetricFlux",
        "Wavenumber",
    ]
)
_BTT: Final = frozenset(
    [
        "bol",
        "cert",
        "desadv",
        "inv",
        "pedigree",
        "po",
        "poc",
        "prodorder",
        "recadv",
        "rma",
        "testprd",
        "testres",
        "upevt",
    ]
)
_SDT: Final = frozenset(("owning_party", "possessing_party", "location"))
_COMPONENTS: Final = frozenset(
    [
        "x",
        "y",
        "z",
        "axial_distance",
        "azimuth",
        "height",
        "spherical_radius",
        "polar_angle",
        "elevation_angle",
        "easting",
        "northing",
        "latitude",
        "longitude",
        "altitude",
    ]
)


def _table(names: Iterable[str], prefix: str) -> dict[str, str]:
    return {name: prefix + name for name in names}


_BIZSTEP_TABLE: Final = _table(CBV_BIZSTEPS, _CBV + "BizStep-")
_DISP_TABLE: Final = _table(CBV_DISPOSITIONS, _CBV + "Disp-")
#: The terms of the EPCIS 2.0 context's ``@vocab``-typed fields: bare name -> expanded URI.
_VOCAB_TABLES: Final[Mapping[str, Mapping[str, str]]] = {
    "bizStep": _BIZSTEP_TABLE,
    "disposition": _DISP_TABLE,
    "set": _DISP_TABLE,
    "unset": _DISP_TABLE,
    "exception": {"ALARM_CONDITION": _VOC + "ALARM_CONDITION", "ERROR_CONDITION": _VOC + "ERROR_CONDITION"},
    "component": _table(_COMPONENTS, _CBV + "Comp-"),
    "reason": {"did_not_occur": _CBV + "ER-did_not_occur", "incorrect_data": _CBV + "ER-incorrect_data"},
}
#: ``type`` is @vocab-typed with a table of its own inside these fields (elsewhere it is ``@type``).
_TYPE_TABLES: Final[Mapping[str, Mapping[str, str]]] = {
    "bizTransactionList": _table(_BTT, _CBV + "BTT-"),
    "sourceList": _table(_SDT, _CBV + "SDT-"),
    "destinationList": _table(_SDT, _CBV + "SDT-"),
    "sensorReport": _table(_MEASUREMENT_TYPES, _VOC),
}
_NO_TABLE: Final[Mapping[str, str]] = {}
#: Fields whose values are IRIs (``"@type": "@id"``): compact IRIs in them are expanded.
_ID_FIELDS: Final = frozenset(
    [
        "id",
        "eventID",
        "epcList",
        "parentID",
        "childEPCs",
        "epcClass",
        "transformationID",
        "certificationInfo",
        "inputEPCList",
        "outputEPCList",
        "bizTransaction",
        "source",
        "destination",
        "deviceID",
        "deviceMetadata",
        "rawData",
        "dataProcessingMethod",
        "bizRules",
        "coordinateReferenceSystem",
        "microorganism",
        "chemicalSubstance",
        "uriValue",
        "correctiveEventIDs",
        "readPoint",
        "bizLocation",
        "member",
        "children",
    ]
)
#: Every term the EPCIS 2.0 context defines (at the top or in a scoped context). JSON-LD expansion drops
#: other keys without a colon, so their values never reach the expanded set.
_TERMS: Final = frozenset(
    [
        "type",
        "id",
        "member",
        "eventTime",
        "recordTime",
        "eventTimeZoneOffset",
        "action",
        "certificationInfo",
        "bizStep",
        "disposition",
        "bizLocation",
        "readPoint",
        "transformationID",
        "epcList",
        "sourceList",
        "destinationList",
        "persistentDisposition",
        "quantity",
        "epcClass",
        "uom",
        "quantityList",
        "bizTransactionList",
        "parentID",
        "childEPCs",
        "childQuantityList",
        "inputEPCList",
        "outputEPCList",
        "inputQuantityList",
        "outputQuantityList",
        "sensorElementList",
        "errorDeclaration",
        "eventID",
        "creationDate",
        "sender",
        "receiver",
        "instanceIdentifier",
        "schemaVersion",
        "ilmd",
        "epcisHeader",
        "masterData",
        "vocabularyList",
        "epcisBody",
        "queryResults",
        "subscriptionID",
        "queryName",
        "resultsBody",
        "eventList",
        "children",
        "baseURL",
        "source",
        "destination",
        "bizTransaction",
        "deviceID",
        "deviceMetadata",
        "rawData",
        "dataProcessingMethod",
        "time",
        "sensorMetadata",
        "sensorReport",
        "startTime",
        "endTime",
        "bizRules",
        "exception",
        "coordinateReferenceSystem",
        "microorganism",
        "chemicalSubstance",
        "value",
        "component",
        "stringValue",
        "booleanValue",
        "hexBinaryValue",
        "uriValue",
        "minValue",
        "maxValue",
        "meanValue",
        "sDev",
        "percRank",
        "percValue",
        "reason",
        "correctiveEventIDs",
        "declarationTime",
        "set",
        "unset",
        "ObjectEvent",
        "AggregationEvent",
        "TransformationEvent",
        "AssociationEvent",
        "TransactionEvent",
        "Collection",
        "EPCISDocument",
        "EPCISQueryDocument",
    ]
) | frozenset(_CONTEXT_PREFIXES)


def _expand_curie(value: str, prefixes: Mapping[str, str]) -> str:
    prefix, sep, rest = value.partition(":")
    if sep and not rest.startswith("//"):
        iri = prefixes.get(prefix)
        if iri is not None:
            return iri + rest
    return value


def _expanded_values(event: Mapping[str, Any], prefixes: Mapping[str, str]) -> set[str]:
    """The CBV / GS1 voc URIs JSON-LD expansion of the event yields (the package's replacement set)."""
    found: set[str] = set()
    # Only these can expand into the two namespaces; every other string is skipped at once.
    interesting = {p for p, iri in prefixes.items() if iri.startswith(_EXPANDED_PREFIXES)}

    def curie(value: str) -> None:
        if value.startswith(_EXPANDED_PREFIXES):
            found.add(value)
        elif ":" in value:
            prefix, _, rest = value.partition(":")
            if prefix in interesting and not rest.startswith("//"):
                found.add(prefixes[prefix] + rest)

    def visit(key: str, value: Any, parent: str) -> None:
        if isinstance(value, str):
            table = _VOCAB_TABLES.get(key)
            if table is None and key == "type":
                table = _TYPE_TABLES.get(parent, _NO_TABLE)
            if table is not None:  # @vocab: a term of the field's table, a prefix, or a compact IRI
                term = table.get(value)
                if term is not None:
                    found.add(term)
                elif value in interesting:
                    found.add(prefixes[value])
                else:
                    curie(value)
            elif key in _ID_FIELDS:
                curie(value)
            elif value.startswith(_EXPANDED_PREFIXES):
                found.add(value)
        elif isinstance(value, list):
            for item in value:
                visit(key, item, parent)
        elif isinstance(value, dict):
            walk(value, key)

    def walk(obj: Mapping[str, Any], parent: str) -> None:
        for key, value in obj.items():
            if not isinstance(key, str) or key.startswith("@"):
                continue
            if ":" not in key and key not in _TERMS:
                continue
            visit(key, value, parent)

    walk(event, "")
    return found


class _TailIndex:
    """Every tail (the text after one of its ``-`` or ``/``) of the expanded values seen so far -> those
    values. Shared by all events: an event's own values are indexed before its strings are looked up,
    so a string that is no key here is the tail of none of them. Only ever grows (a full index is
    replaced, never emptied, so an event running in another thread keeps the one it indexed into)."""

    __slots__ = ("by_tail", "indexed")

    def __init__(self) -> None:
        self.by_tail: dict[str, tuple[str, ...]] = {}
        self.indexed: set[str] = set()

    def add(self, uri: str) -> None:
        by_tail = self.by_tail
        for cut, char in enumerate(uri):
            if char == "-" or char == "/":
                tail = uri[cut + 1 :]
                known = by_tail.get(tail, ())
                if uri not in known:
                    by_tail[tail] = (*known, uri)
        self.indexed.add(uri)  # after its tails: whoever sees it indexed finds them


_MAX_INDEXED: Final = 4096
_TAIL_INDEX = _TailIndex()
_TAIL_INDEX_LOCK: Final = threading.Lock()


def _tail_index(expanded: AbstractSet[str]) -> Mapping[str, tuple[str, ...]]:
    """The shared tail index, with the values of ``expanded`` in it."""
    global _TAIL_INDEX
    index = _TAIL_INDEX
    for uri in expanded:
        if uri not in index.indexed:
            with _TAIL_INDEX_LOCK:  # two threads adding to one tail's tuple would lose one
                index = _TAIL_INDEX
                if len(index.indexed) + len(expanded) > _MAX_INDEXED:
                    index = _TAIL_INDEX = _TailIndex()
                for missing in expanded:
                    if missing not in index.indexed:
                        index.add(missing)
            break
    return index.by_tail


class _Tails:
    """Which of one event's expanded values a string is the tail of, if exactly one (the package's
    replacement of bare CBV values)."""

    __slots__ = ("by_tail", "expanded")

    def __init__(self, expanded: AbstractSet[str]) -> None:
        self.expanded = expanded
        #: A string that is no key here is no tail of the event's values (the hot paths test this first).
        self.by_tail = _tail_index(expanded)

    def get(self, value: str) -> str | None:
        candidates = self.by_tail.get(value)
        if candidates is None:
            return None
        match = None
        for uri in candidates:
            if uri in self.expanded:
                if match is not None:
                    return None  # ambiguous: the package leaves the value alone
                match = uri
        return match

    def replace(self, value: str) -> str:
        """The expanded value ``value`` is the tail of, or ``value`` (the first step of ``_Builder.text``)."""
        return self.get(value) or value


# --- step 2: the tree ----------------------------------------------------------------------------------

_UNSORTED_MARKERS: Final = ("bizTransaction", "source", "destination")
_SKIPPED_KEYS: Final = frozenset(("#text", "rdfs:comment", "comment"))


def _value_namespaces(namespaces: Mapping[str, str]) -> dict[str, str]:
    return {k: v.replace("{", "").replace("}", "") for k, v in namespaces.items()}


class _Builder:
    """JSON -> tree. Children are *not* sorted here, unlike in the package: every place that reads them
    sorts the strings it produces (or, for bizTransaction/source/destination objects, keeps the key
    order the package keeps), so the order of the tree cannot show in the result. The one exception,
    a typed-list item without its id field, is sorted where it is read (:func:`_pair`)."""

    __slots__ = ("key_ns", "tails", "value_ns")

    def __init__(self, namespaces: dict[str, str], tails: _Tails, value_ns: dict[str, str] | None = None) -> None:
        self.key_ns = namespaces  # prefix -> "{iri}"
        if value_ns is None:
            value_ns = _value_namespaces(namespaces)
        self.value_ns = value_ns
        self.tails = tails

    def key(self, text: str) -> str:
        if ":" in text:
            prefix, _, rest = text.partition(":")
            iri = self.key_ns.get(prefix)
            if iri is not None:
                return iri + rest
        return text

    def text(self, value: str) -> str:
        """A JSON string as the package sees it: bare CBV value replaced, then the value's prefix."""
        if value in self.tails.by_tail:
            value = self.tails.replace(value)
        if ":" in value:
            prefix, _, rest = value.partition(":")
            iri = self.value_ns.get(prefix)
            if iri is not None:
                return iri + rest
        return value

    def node(self, obj: Any) -> Node:
        children: list[Node] = []
        append = children.append
        if isinstance(obj, list):
            for item in obj:
                if isinstance(item, str):
                    append(("", self.text(item), []))
                elif isinstance(item, (dict, list)):
                    append(self.node(item))
                else:
                    append(("", str(item), []))
            return ("", "", children)
        if isinstance(obj, dict):
            name: Any = ""
            text: Any = ""
            if "type" in obj:
                kind = obj["type"]
                name = (self.tails.get(kind) or kind) if isinstance(kind, str) else kind
            if "#text" in obj:
                raw = obj["#text"]
                text = (self.tails.get(raw) or raw) if isinstance(raw, str) else raw
            for key, value in obj.items():
                if key in _SKIPPED_KEYS:
                    continue
                if key.startswith("@xmlns"):  # XML namespaces carried over into JSON
                    self.key_ns[key[7:]] = "{" + str(value) + "}"
                    self.value_ns[key[7:]] = str(value)
                    name = self.key(name) if isinstance(name, str) else name
                    continue
                child_name = self.key(key)
                if isinstance(value, str):
                    append((child_name, self.text(value), []))
                elif isinstance(value, list):
                    for item in value:
                        if isinstance(item, str):
                            append((child_name, self.text(item), []))
                        elif isinstance(item, (dict, list)):
                            element = self.node(item)
                            append((child_name, element[1], element[2]))
                        else:
                            append((child_name, str(item), []))
                elif isinstance(value, dict):
                    element = self.node(value)
                    append((child_name, element[1], element[2]))
                else:
                    append((child_name, str(value), []))
            return (name, text, children)
        if isinstance(obj, str):
            return ("", self.text(obj), [])
        return ("", str(obj), [])


# --- step 3: the XML shape -------------------------------------------------------------------------------

_PAIRED_LISTS: Final = frozenset(("sourceList", "destinationList", "bizTransactionList"))
_QUANTITY_ITEMS: Final = frozenset(("inputQuantity", "outputQuantity", "childQuantity"))


def _is_node(item: Node) -> bool:
    return len(item) == 3 and not isinstance(item[0], tuple)


def _pair(fields: list[Node]) -> Node:
    """A bizTransaction/source/destination item: its first two fields, in key order when the object has
    its id field (the package leaves those unsorted), sorted otherwise. One field when there is no type
    (where the package fails)."""
    if not any(field[0] in _UNSORTED_MARKERS for field in fields):
        fields = sorted(fields)
    return tuple(fields[:2])


def _reshape(node: Node) -> Node:
    children: list[Node] = node[2]
    lists: dict[str, list[Node]] = {}
    kept: list[Node] = []
    epcs: list[Node] = []
    for child in children:
        name = child[0]
        if isinstance(name, str) and name.endswith("List"):
            lists.setdefault(name, []).append((name[:-4], child[1], child[2]))
        else:
            kept.append(child)
    for list_name, items in lists.items():
        if list_name in _PAIRED_LISTS:
            kept.append((list_name, "", [_pair(item[2]) for item in items]))
        else:
            kept.append((list_name, "", items))
    children = []
    for child in kept:
        if child[0] == "childEPCs":
            epcs.append(("epc", child[1], []))
        else:
            children.append(child)
    if epcs:
        children.append(("childEPCs", "", epcs))
    reshaped = [_reshape(child) if child[2] and child[0] not in _PAIRED_LISTS else _rename(child) for child in children]
    return _rename((node[0], node[1], reshaped))


def _rename(node: Node) -> Node:
    name, text, reshaped = node
    if name == "inputEPC" or name == "outputEPC":
        name = "epc"
    elif name in _QUANTITY_ITEMS or (name == "quantity" and reshaped):
        name = "quantityElement"
    return (name, text, reshaped)


# --- step 4: the canonical order ---------------------------------------------------------------------------

Order = tuple[tuple[str, "Order | None"], ...]

_QUANTITY_ORDER: Final[Order] = (("quantityElement", (("epcClass", None), ("quantity", None), ("uom", None))),)
_SENSOR_METADATA_ORDER: Final[Order] = tuple(
    (name, None)
    for name in [
        "time",
        "startTime",
        "endTime",
        "deviceID",
        "deviceMetadata",
        "rawData",
        "dataProcessingMethod",
        "bizRules",
    ]
)
_SENSOR_REPORT_ORDER: Final[Order] = tuple(
    (name, None)
    for name in [
        "type",
        "exception",
        "deviceID",
        "deviceMetadata",
        "rawData",
        "dataProcessingMethod",
        "time",
        "microorganism",
        "chemicalSubstance",
        "value",
        "component",
        "stringValue",
        "booleanValue",
        "hexBinaryValue",
        "uriValue",
        "minValue",
        "maxValue",
        "meanValue",
        "sDev",
        "percRank",
        "percValue",
        "uom",
        "coordinateReferenceSystem",
    ]
)
_EPC_ORDER: Final[Order] = (("epc", None),)
#: The canonical property order. bizTransactionList, sourceList and destinationList have their place
#: after bizLocation in the README, but the package never consumes them here (their items are pairs),
#: so they land among the sorted remainder; they are left out of this table to the same effect.
_PROPERTY_ORDER: Final[Order] = (
    ("eventTime", None),
    ("eventTimeZoneOffset", None),
    ("certificationInfo", None),
    ("parentID", None),
    ("epcList", _EPC_ORDER),
    ("inputEPCList", _EPC_ORDER),
    ("childEPCs", _EPC_ORDER),
    ("quantityList", _QUANTITY_ORDER),
    ("childQuantityList", _QUANTITY_ORDER),
    ("inputQuantityList", _QUANTITY_ORDER),
    ("outputEPCList", _EPC_ORDER),
    ("outputQuantityList", _QUANTITY_ORDER),
    ("action", None),
    ("transformationID", None),
    ("bizStep", None),
    ("disposition", None),
    ("persistentDisposition", (("set", None), ("unset", None))),
    ("readPoint", (("id", None),)),
    ("bizLocation", (("id", None),)),
    (
        "sensorElementList",
        (("sensorElement", (("sensorMetadata", _SENSOR_METADATA_ORDER), ("sensorReport", _SENSOR_REPORT_ORDER))),),
    ),
)
_IGNORED_FIELDS: Final = frozenset(("recordTime", "eventID", "type", "errorDeclaration"))


def _user_extensions(children: list[Node]) -> list[Node]:
    """Namespaced fields of a nested standard field, taken out to follow its regular fields."""
    if len(children) <= 1:
        return []
    # The package recognises the event's own level by these names (substrings, as it does) and leaves
    # top-level extensions to the sorted remainder.
    for child in children:
        if "eventTime" in child[0] or "action" in child[0]:
            return []
    extensions = [c for c in children if "{" in c[0] and "/}" in c[0]]
    if extensions:
        children[:] = [c for c in children if not ("{" in c[0] and "/}" in c[0])]
    return extensions


def _ordered(children: list[Node], order: Order) -> str:
    extensions = _user_extensions(children)
    by_name: dict[Any, list[Node]] = {}
    for child in children:
        by_name.setdefault(child[0], []).append(child)
    parts: list[str] = []
    consumed = False
    for name, sub_order in order:
        same = by_name.get(name)
        if same is None:
            continue
        values: list[str] = []
        for child in same:
            text = _field(child, sub_order)
            if text:
                values.append(text)
            if not child[2]:
                consumed = True
        if values:
            if len(values) > 1:
                values.sort()
            parts.extend(values)
    if consumed:
        names = {name for name, _ in order}
        children[:] = [c for c in children if c[2] or c[0] not in names]
    if extensions:
        parts.append(_remainder(extensions))
    return "".join(parts)


def _field(node: Node, sub_order: Order | None) -> str:
    nested = _ordered(node[2], sub_order) if sub_order else ""
    name: str = node[0]
    text = ""
    if node[1]:
        text = node[1].strip()
        lowered = name.lower()
        text = _utc_millis(text) if "time" in lowered and "offset" not in lowered else _canonical_value(text)
        if text:
            text = "=" + text
    if text or nested:
        return name + text + nested
    return ""


def _remainder(children: list[Node]) -> str:
    values: list[str] = []
    keep_order = False
    for child in children:
        if _is_node(child):
            name = child[0]
            if name == "bizTransaction" or name == "source" or name == "destination":
                keep_order = True
            text = child[1].strip()
            if text:
                text = "=" + _canonical_value(text)
            values.append(name + text + _remainder(child[2]))
        else:
            values.append(_remainder(list(child)))
    if len(children) > 1 and not keep_order:
        values.sort()
    return "".join(values)


# --- step 5: values ---------------------------------------------------------------------------------------

_CBV_URNS: Final = (
    ("urn:epcglobal:cbv:bizstep:", _CBV + "BizStep-"),
    ("urn:epcglobal:cbv:disp:", _CBV + "Disp-"),
    ("urn:epcglobal:cbv:btt:", _CBV + "BTT-"),
    ("urn:epcglobal:cbv:sdt:", _CBV + "SDT-"),
    ("urn:epcglobal:cbv:er:", _CBV + "ER-"),
)
_NUMBER_START: Final = frozenset("0123456789+-.iInN")


#: Bound of each value cache below: the values that recur across events (units, CBV names, locations,
#: GTINs) stay; one-off ones (serials, times) pass through.
_VALUE_CACHE_SIZE: Final = 8192


#: Memo of :func:`_canonical_value` (emptied when full); hot callers read it directly.
_CANONICAL: dict[str, str] = {}


def _canonical_value(text: str) -> str:
    """A non-timestamp value as the package writes it (CBV URN -> web URI, number-like -> shortest number
    form, EPC URN / Digital Link -> constrained canonical Digital Link). Pure, so memoised by value."""
    found = _CANONICAL.get(text)
    if found is None:
        found = _canonical_value_uncached(text)
        if len(_CANONICAL) >= _VALUE_CACHE_SIZE:
            _CANONICAL.clear()
        _CANONICAL[text] = found
    return found


def _canonical_value_uncached(text: str) -> str:
    if "urn:epcglobal:cbv:" in text:
        for urn, uri in _CBV_URNS:
            text = text.replace(urn, uri)
    if text and (text[0] in _NUMBER_START or not text[0].isascii()):
        try:
            number: float | int = float(text)
        except ValueError:
            pass
        else:
            try:
                if int(number) == number:
                    number = int(number)
                text = str(number)
            except (ValueError, OverflowError):  # nan, inf: left as written
                pass
    if "." in text and (text.startswith("urn:epc:") or text.startswith("http")):
        link = _urn_to_dl(text) if text[0] == "u" else _dl_to_canonical(text)
        if link is not None:
            return link
    return text


_TIMESTAMP = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d)(?::(\d\d)(?:[.,](\d+))?)?\s*(?:([Zz])|([+-])(\d\d)(?::?(\d\d))?)?"
)


#: The tails of the common timestamp forms after ``YYYY-MM-DDTHH:MM:SS``, by length: ``Z``, ``.fffZ``,
#: ``±HH:MM``, ``.fff±HH:MM`` (the separators checked in :func:`_utc_millis`).
_FAST_TAILS: Final = frozenset((20, 24, 25, 29))


#: Memo of :func:`_utc_millis` (emptied when full).
_UTC_MILLIS: dict[str, str] = {}


def _utc_millis(text: str) -> str:
    """``YYYY-MM-DDTHH:MM:SS.mmmZ`` in UTC; microseconds (digits beyond the sixth dropped) round half-even
    to milliseconds. Text that is not a timestamp is returned unchanged. Pure, so memoised by value."""
    found = _UTC_MILLIS.get(text)
    if found is None:
        found = _utc_millis_uncached(text)
        if len(_UTC_MILLIS) >= _VALUE_CACHE_SIZE:
            _UTC_MILLIS.clear()
        _UTC_MILLIS[text] = found
    return found


#: The UTC ``YYYY-MM-DDTHH`` of a local ``YYYY-MM-DDTHH`` and zone (``Z`` or ``±HH:00``), or "" where the
#: parsing path must decide. A whole-hour offset changes only that part of a timestamp, and the events of
#: an hour share it, so it is remembered (emptied when full) and only minutes, seconds and milliseconds
#: are checked per value.
_UTC_HOURS: dict[str, str] = {}
_SIXTY: Final = frozenset(f"{n:02d}" for n in range(60))
_MILLIS_TEXT: Final = frozenset(f".{n:03d}" for n in range(1000))


def _utc_millis_uncached(text: str) -> str:
    if (
        19 < len(text) < 30
        and text[10] == "T"
        and text[13] == ":"
        and text[16] == ":"
        and text[14:16] in _SIXTY
        and text[17:19] in _SIXTY
    ):
        if text[19] == ".":
            millis, zone = text[19:23], text[23:]
        else:
            millis, zone = ".000", text[19:]
        if millis in _MILLIS_TEXT and (zone == "Z" or (len(zone) == 6 and zone[0] in "+-" and zone[3:] == ":00")):
            hour_key = text[:13] + zone
            hour = _UTC_HOURS.get(hour_key)
            if hour is None:
                # The whole hour through the parsing path: minutes and seconds (valid, as checked) pass
                # through unchanged, milliseconds too (exactly three digits: nothing to round).
                whole = _utc_millis_parsed(text[:13] + ":00:00" + zone)
                hour = whole[:13] if len(whole) == 24 and whole.endswith(":00:00.000Z") else ""
                if len(_UTC_HOURS) >= _VALUE_CACHE_SIZE:
                    _UTC_HOURS.clear()
                _UTC_HOURS[hour_key] = hour
            if hour:
                return hour + text[13:19] + millis + "Z"
    return _utc_millis_parsed(text)


def _utc_millis_parsed(text: str) -> str:
    size = len(text)
    if (
        size in _FAST_TAILS
        and text[10] == "T"
        and text[4] == text[7] == "-"
        and text[13] == text[16] == ":"
        and (size < 24 or text[19] == ".")
        and (text[-1] == "Z" if size in (20, 24) else text[-6] in "+-" and text[-3] == ":")
    ):
        # Exactly whole seconds or milliseconds: nothing to round, so the C parser and formatter give
        # what the general path below would (anything they refuse still goes there).
        try:
            moment = datetime.fromisoformat(text)  # validates the digits and the date
            offset = moment.utcoffset()
            millis = text[19:23] if size == 24 or size == 29 else ".000"
            if not offset:
                return text[:19] + millis + "Z"
            moment = moment.replace(tzinfo=None) - offset
        except (ValueError, OverflowError):
            pass
        else:
            return "%04d-%02d-%02dT%02d:%02d:%02d%sZ" % (  # noqa: UP031 - the fastest form here
                moment.year,
                moment.month,
                moment.day,
                moment.hour,
                moment.minute,
                moment.second,
                millis,
            )
    return _utc_millis_general(text)


def _utc_millis_general(text: str) -> str:
    match = _TIMESTAMP.fullmatch(text)
    try:
        if match is None:
            moment = datetime.fromisoformat(text)
            micro = moment.microsecond
            if moment.tzinfo is not None:
                moment = moment.astimezone(UTC)
            moment = moment.replace(microsecond=0, tzinfo=None)
        else:
            year, month, day, hour, minute, second, fraction, _zulu, sign, off_h, off_m = match.groups()
            moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second or 0))
            if sign:
                offset = timedelta(hours=int(off_h), minutes=int(off_m or 0))
                if offset >= _DAY:
                    return text  # not a valid UTC offset
                moment = moment + offset if sign == "-" else moment - offset
            micro = int(fraction[:6].ljust(6, "0")) if fraction else 0
    except (ValueError, OverflowError):
        return text
    millis, rest = divmod(micro, 1000)
    if rest > 500 or (rest == 500 and millis % 2):
        millis += 1
    if millis == 1000:
        moment += _SECOND
        millis = 0
    return f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:{moment.minute:02d}:" + (
        f"{moment.second:02d}.{millis:03d}Z"
    )


_DAY: Final = timedelta(days=1)
_SECOND: Final = timedelta(seconds=1)


# --- EPC URNs and Digital Link URIs -> constrained canonical Digital Link -----------------------------------

_DL: Final = "https://id.gs1.org/"
# One character of an EPC URN serial/lot/reference (EPC Tag Data Standard): letters, digits, some
# punctuation, or a percent-escape of the printable ASCII characters the URN form must escape.
_X = r"(?:%2[125-9A-Fa-f]|%3[0-9A-Fa-f]|%4[1-9A-Fa-f]|%5[0-9AaFf]|%6[1-9A-Fa-f]|%7[0-9Aa]|[!')(*+,.0-9:;=A-Za-z_-])"
_X_RUN = re.compile(_X + "+")
# A CPI component reference character.
_CPI_RUN = re.compile(r"(?:%2[3dfDF]|%3[0-9]|%4[1-9A-Fa-f]|%5[0-9Aa]|[0-9A-Z-])+")
_DIGITS = re.compile(r"\d+")
_CP_REF = re.compile(r"(\d{6,12})\.(\d*)")


def gs1_check_digit_int(digits: str) -> int:
    """The GS1 mod-10 check digit of ``digits`` (the key without it)."""
    if digits.isascii():  # sum(b - 48 ...) without the per-digit subtraction
        odd = digits[::-2].encode()
        even = digits[-2::-2].encode()
        total = 3 * (sum(odd) - 48 * len(odd)) + sum(even) - 48 * len(even)
    else:  # other Unicode decimal digits, as the package's int() accepts them
        total = 3 * sum(map(int, digits[::-2])) + sum(map(int, digits[-2::-2]))
    return (10 - total % 10) % 10


@lru_cache(maxsize=_VALUE_CACHE_SIZE)
def _with_check(digits: str) -> str:
    """``digits`` and their check digit (cached: a GTIN or GLN recurs across the serials it carries)."""
    return digits + str(gs1_check_digit_int(digits))


# Only these are escaped by the package; an EPC URN already carries the rest escaped.
_DL_ESCAPES: Final = str.maketrans({"!": "%21", "(": "%28", ")": "%29", "*": "%2A", "+": "%2B", ",": "%2C", ":": "%3A"})


_NEEDS_DL_ESCAPE = re.compile(r"[!()*+,:]")


def _dl_escape(value: str) -> str:
    return value.translate(_DL_ESCAPES) if _NEEDS_DL_ESCAPE.search(value) else value


def _runs(pattern: re.Pattern[str], text: str, low: int, high: int) -> bool:
    return low <= len(text) and pattern.fullmatch(text) is not None and _count(pattern, text) <= high


def _count(pattern: re.Pattern[str], text: str) -> int:
    # characters of a run, a percent-escape counting as one
    return len(text) - 2 * text.count("%")


def _split_key(rest: str, digits: int, *, extra_dot_for_12: bool = False) -> tuple[str, str, str] | None:
    """``companyPrefix.reference`` at the start of ``rest``: (prefix, reference, what follows).

    The reference has ``digits - len(prefix)`` digits. ``extra_dot_for_12``: the package's patterns for
    some keys want one more ``.`` when the prefix has 12 digits (and so the reference none).
    """
    match = _CP_REF.match(rest)
    if match is None:
        return None
    prefix = match.group(1)
    size = digits - len(prefix)
    if size < 0:
        return None
    ref = rest[len(prefix) + 1 : len(prefix) + 1 + size]
    if len(ref) != size or (size and _DIGITS.fullmatch(ref) is None):
        return None
    after = rest[len(prefix) + 1 + size :]
    if extra_dot_for_12 and len(prefix) == 12:
        if not after.startswith("."):
            return None
        after = after[1:]
    return prefix, ref, after


def _gtin(prefix: str, ref: str) -> str:
    return _with_check(ref[0] + prefix + ref[1:])


# The fast path: one compiled pattern per common EPC scheme, ASCII digits only. Each accepts only URNs the
# general code below converts, to the same result (``X{1,20}`` counts a percent-escape as one character, as
# :func:`_runs` does); anything else falls through to it.
_FAST_CP = r"([0-9]{6,12})\.([0-9]{0,11})"
# _X with the plain characters tried first (same language).
_X_FAST = r"(?:[!')(*+,.0-9:;=A-Za-z_-]|%(?:2[125-9A-Fa-f]|3[0-9A-Fa-f]|4[1-9A-Fa-f]|5[0-9AaFf]|6[1-9A-Fa-f]|7[0-9Aa]))"


def _fast_sgtin(match: re.Match[str]) -> str | None:
    prefix, ref, serial = match.groups()
    if len(prefix) + len(ref) != 13:
        return None
    if _NEEDS_DL_ESCAPE.search(serial):
        serial = serial.translate(_DL_ESCAPES)
    return _DL + "01/" + _with_check(ref[0] + prefix + ref[1:]) + "/21/" + serial


def _fast_lgtin(match: re.Match[str]) -> str | None:
    prefix, ref, lot = match.groups()
    if len(prefix) + len(ref) != 13:
        return None
    if _NEEDS_DL_ESCAPE.search(lot):
        lot = lot.translate(_DL_ESCAPES)
    return _DL + "01/" + _with_check(ref[0] + prefix + ref[1:]) + "/10/" + lot


def _fast_sgln(match: re.Match[str]) -> str | None:
    prefix, ref, ext = match.groups()
    if len(prefix) + len(ref) != 12:
        return None
    if ext == "0":
        return _DL + "414/" + _with_check(prefix + ref)
    if _NEEDS_DL_ESCAPE.search(ext):
        ext = ext.translate(_DL_ESCAPES)
    return _DL + "414/" + _with_check(prefix + ref) + "/254/" + ext


def _fast_sscc(match: re.Match[str]) -> str | None:
    prefix, ref = match.groups()
    if len(prefix) + len(ref) != 17:
        return None
    return _DL + "00/" + _with_check(ref[0] + prefix + ref[1:])


def _fast_pgln(match: re.Match[str]) -> str | None:
    prefix, ref = match.groups()
    if len(prefix) + len(ref) != 12:
        return None
    return _DL + "417/" + _with_check(prefix + ref)


def _fast_giai(match: re.Match[str]) -> str | None:
    prefix, ref = match.groups()
    if len(ref) - 2 * ref.count("%") > 30 - len(prefix):
        return None
    return _DL + "8004/" + prefix + _dl_escape(ref)


_FAST_URNS: Final[Mapping[str, tuple[re.Pattern[str], Callable[[re.Match[str]], str | None]]]] = {
    "id:sgtin": (re.compile(rf"{_FAST_CP}\.({_X_FAST}{{1,20}})"), _fast_sgtin),
    "class:lgtin": (re.compile(rf"{_FAST_CP}\.({_X_FAST}{{1,20}})"), _fast_lgtin),
    "id:sgln": (re.compile(rf"{_FAST_CP}\.({_X_FAST}{{1,20}})"), _fast_sgln),
    "id:sscc": (re.compile(_FAST_CP), _fast_sscc),
    "id:pgln": (re.compile(_FAST_CP), _fast_pgln),
    "id:giai": (re.compile(rf"([0-9]{{6,12}})\.({_X_FAST}+)"), _fast_giai),
}


#: ``urn:epc:id:sgtin:CP.REF`` -> ``https://id.gs1.org/01/<GTIN>/21/`` ("" where the code below must
#: decide): the serials of one trade item share it, so it is remembered (emptied when full).
_SGTIN_HEADS: dict[str, str] = {}
_SGTIN_HEAD = re.compile(r"urn:epc:id:sgtin:([0-9]{6,12})\.([0-9]{0,11})")
#: A serial ``_X_FAST{1,20}`` without the characters the Digital Link escapes.
_PLAIN_SERIAL = re.compile(
    r"(?:['.0-9;=A-Za-z_-]|%(?:2[125-9A-Fa-f]|3[0-9A-Fa-f]|4[1-9A-Fa-f]|5[0-9AaFf]|6[1-9A-Fa-f]|7[0-9Aa])){1,20}"
)


def _urn_to_dl(uri: str) -> str | None:
    if uri.startswith("urn:epc:id:sgtin:"):
        # The company prefix and item reference are digits, so the second dot ends them (the serial may
        # hold dots); the fast pattern below would split the URN there too.
        first = uri.find(".", 17)
        cut = uri.find(".", first + 1) if first > 0 else -1
        if cut > 0:
            sgtin_head = _SGTIN_HEADS.get(uri[:cut])
            if sgtin_head is None:
                match = _SGTIN_HEAD.fullmatch(uri, 0, cut)
                sgtin_head = ""
                if match is not None:
                    prefix, ref = match.groups()
                    if len(prefix) + len(ref) == 13:
                        sgtin_head = _DL + "01/" + _with_check(ref[0] + prefix + ref[1:]) + "/21/"
                if len(_SGTIN_HEADS) >= _VALUE_CACHE_SIZE:
                    _SGTIN_HEADS.clear()
                _SGTIN_HEADS[uri[:cut]] = sgtin_head
            if sgtin_head and _PLAIN_SERIAL.fullmatch(uri, cut + 1) is not None:
                return sgtin_head + uri[cut + 1 :]
    head = uri.find(":", uri.find(":", 8) + 1)  # "urn:epc:id:sgtin:..." -> "id:sgtin"
    fast = _FAST_URNS.get(uri[8:head]) if head > 8 else None
    if fast is not None:
        match = fast[0].fullmatch(uri, head + 1)
        if match is not None:
            link = fast[1](match)
            if link is not None:
                return link
    return _urn_to_dl_general(uri)


def _urn_to_dl_general(uri: str) -> str | None:  # noqa: C901 - one branch per EPC scheme
    scheme, _, rest = uri[len("urn:epc:") :].partition(":")
    if scheme == "id":
        kind, _, rest = rest.partition(":")
        if kind == "sgtin":
            key = _split_key(rest, 13)
            if key and key[2][:1] == "." and _runs(_X_RUN, key[2][1:], 1, 20):
                return _DL + "01/" + _gtin(key[0], key[1]) + "/21/" + _dl_escape(key[2][1:])
        elif kind == "sscc":
            key = _split_key(rest, 17)
            if key and not key[2]:
                return _DL + "00/" + _with_check(key[1][0] + key[0] + key[1][1:])
        elif kind == "sgln":
            key = _split_key(rest, 12)
            if key and key[2][:1] == "." and _runs(_X_RUN, key[2][1:], 1, 20):
                gln = _with_check(key[0] + key[1])
                ext = key[2][1:]
                return _DL + "414/" + gln + ("" if ext == "0" else "/254/" + _dl_escape(ext))
        elif kind == "grai":
            key = _split_key(rest, 12, extra_dot_for_12=True)
            if key and key[2][:1] == "." and _runs(_X_RUN, key[2][1:], 1, 16):
                serial = rest[14:]
                return _DL + "8003/" + _with_check("0" + key[0] + key[1]) + _dl_escape(serial)
        elif kind == "giai":
            match = _CP_REF.match(rest)
            if match:
                prefix = match.group(1)
                ref = rest[len(prefix) + 1 :]
                if _runs(_X_RUN, ref, 1, 30 - len(prefix)):
                    return _DL + "8004/" + prefix + _dl_escape(ref)
        elif kind in ("gsrn", "gsrnp"):
            key = _split_key(rest, 17)
            if key and not key[2]:
                return _DL + ("8018/" if kind == "gsrn" else "8017/") + _with_check(key[0] + key[1])
        elif kind == "gdti":
            key = _split_key(rest, 12, extra_dot_for_12=True)
            if key and _runs(_X_RUN, key[2], 1, 20):
                return _DL + "253/" + _with_check(key[0] + key[1]) + _dl_escape(rest[14:])
        elif kind == "cpi":
            match = _CP_REF.match(rest)
            if match:
                prefix = match.group(1)
                body, dot, serial = rest[len(prefix) + 1 :].rpartition(".")
                if (
                    dot
                    and _runs(_CPI_RUN, body, 1, 30 - len(prefix))
                    and _DIGITS.fullmatch(serial)
                    and len(serial) <= 12
                ):
                    return _DL + "8010/" + _dl_escape(prefix + body) + "/8011/" + serial
        elif kind == "sgcn":
            key = _split_key(rest, 12)
            if key and key[2][:1] == "." and _DIGITS.fullmatch(key[2][1:]) and len(key[2]) <= 13:
                return _DL + "255/" + _with_check(key[0] + key[1]) + key[2][1:]
        elif kind == "ginc":
            match = _CP_REF.match(rest)
            if match:
                prefix = match.group(1)
                ref = rest[len(prefix) + 1 :]
                if _runs(_X_RUN, ref, 1, 30 - len(prefix)):
                    return _DL + "401/" + prefix + _dl_escape(ref)
        elif kind == "gsin":
            key = _split_key(rest, 16)
            if key and not key[2]:
                return _DL + "402/" + _with_check(key[0] + key[1])
        elif kind == "itip":
            key = _split_key(rest, 13)
            if key:
                tail = key[2]
                if (
                    len(tail) >= 8
                    and tail[0] == "."
                    and tail[3] == "."
                    and tail[6] == "."
                    and _DIGITS.fullmatch(tail[1:3] + tail[4:6])
                    and _runs(_X_RUN, tail[7:], 1, 20)
                ):
                    return _DL + "8006/" + _gtin(key[0], key[1]) + tail[1:3] + tail[4:6] + "/21/" + _dl_escape(tail[7:])
        elif kind == "upui":
            key = _split_key(rest, 13)
            if key and key[2][:1] == "." and _runs(_X_RUN, key[2][1:], 1, 28):
                return _DL + "01/" + _gtin(key[0], key[1]) + "/235/" + _dl_escape(key[2][1:])
        elif kind == "pgln":
            key = _split_key(rest, 12)
            if key and not key[2]:
                return _DL + "417/" + _with_check(key[0] + key[1])
    elif scheme == "class":
        kind, _, rest = rest.partition(":")
        if kind == "lgtin":
            key = _split_key(rest, 13)
            if key and key[2][:1] == "." and _runs(_X_RUN, key[2][1:], 1, 20):
                return _DL + "01/" + _gtin(key[0], key[1]) + "/10/" + _dl_escape(key[2][1:])
    elif scheme == "idpat":
        kind, _, rest = rest.partition(":")
        if kind in ("sgtin", "upui"):
            key = _split_key(rest, 13)
            if key and key[2] == ".*":
                return _DL + "01/" + _gtin(key[0], key[1])
        elif kind in ("grai", "gdti", "sgcn"):
            key = _split_key(rest, 12, extra_dot_for_12=True)
            if key and key[2] == ".*":
                if kind == "grai":
                    return _DL + "8003/" + _with_check("0" + key[0] + key[1])
                return _DL + ("253/" if kind == "gdti" else "255/") + _with_check(key[0] + key[1])
        elif kind == "cpi":
            match = _CP_REF.match(rest)
            if match and rest.endswith(".*"):
                prefix = match.group(1)
                body = rest[len(prefix) + 1 : -2]
                if _runs(_CPI_RUN, body, 1, 30 - len(prefix)):
                    return _DL + "8010/" + _dl_escape(prefix + body)
        elif kind == "itip":
            key = _split_key(rest, 13)
            if key:
                tail = key[2]
                if (
                    len(tail) == 8
                    and tail[0] == "."
                    and tail[3] == "."
                    and tail[6:] == ".*"
                    and _DIGITS.fullmatch(tail[1:3] + tail[4:6])
                ):
                    return _DL + "8006/" + _gtin(key[0], key[1]) + tail[1:3] + tail[4:6]
    return None


_DL_KEYS = "01|gtin|8006|itip|8010|cpid|414|gln|417|party|8017|gsrnp|8018|gsrn|255|gcn|00|sscc|253|gdti|401|ginc|402|gsin|8003|grai|8004|giai"  # noqa: E501
_DL_SHAPE = re.compile(rf"https?:(?:[^?#]*/(?:{_DL_KEYS})/\d{{4}}[^/]|(?://[^/?#]*)?/[A-Za-z_-]{{10}}$)")
_SHORT_NAMES: Final = (
    ("/gtin/", "/01/"),
    ("/itip/", "/8006/"),
    ("/cpid/", "/8010/"),
    ("/gln/", "/414/"),
    ("/party/", "/417/"),
    ("/gsrnp/", "/8017/"),
    ("/gsrn/", "/8018/"),
    ("/gcn/", "/255/"),
    ("/sscc/", "/00/"),
    ("/gdti/", "/253/"),
    ("/ginc/", "/401/"),
    ("/gsin/", "/402/"),
    ("/grai/", "/8003/"),
    ("/giai/", "/8004/"),
    ("/cpv/", "/22/"),
    ("/lot/", "/10/"),
    ("/ser/", "/21/"),
)
# ``.`` unescaped on purpose: the package's patterns accept any character there too.
_ON_CANONICAL_HOST = re.compile(
    r"https://id.gs1.org/(?:01|8006|8010|414|417|8017|8018|255|00|253|401|402|8003|8004)/\d{4}[^/]"
)
#: The primary keys, in the order the package looks for them on another host.
_REHOST_KEYS: Final = (
    "/00/", "/01/", "/253/", "/255/", "/401/", "/402/", "/414/", "/417/",
    "/8003/", "/8004/", "/8006/", "/8010/", "/8017/", "/8018/",
)  # fmt: skip
_C = r"[\x22\x27\x2D\x2E\x30-\x39\x3B-\x3F\x41-\x5A\x5F\x61-\x7A]"
_C_SLASH = r"[\x22\x27\x2D\x2E\x2F\x30-\x39\x3B-\x3F\x41-\x5A\x5F\x61-\x7A]"
_GTIN14 = re.compile(r"https://id.gs1.org/01/\d{14}")
_GTIN13 = re.compile(r"https://id.gs1.org/01/\d{13}")
_GTIN12 = re.compile(r"https://id.gs1.org/01/\d{12}")
_GTIN8 = re.compile(r"https://id.gs1.org/01/\d{8}")
_CPV_LAST = re.compile(rf"https://id.gs1.org/(?:8006/\d{{18}}|01/\d{{14}})/22/{_C}{{0,20}}$")
_CPV_BEFORE = re.compile(rf"https://id.gs1.org/(?:8006/\d{{18}}|01/\d{{14}})/22/{_C_SLASH}{{0,20}}$")
_LOT_AND_SERIAL = re.compile(rf"https://id.gs1.org/(?:8006/\d{{18}}|01/\d{{14}})/10/{_C}{{0,20}}/21/{_C}{{0,20}}$")
_CPI = r"[\x23\x2D\x2F\x30-\x39\x41-\x5A]"
_CONSTRAINED = re.compile(
    r"https://id.gs1.org/(?:"
    + "|".join(
        (
            r"00/\d{18}",
            rf"01/\d{{14}}(?:/21/{_C}{{0,20}}|/10/{_C}{{0,20}}|/235/{_C}{{0,28}})?",
            rf"253/\d{{13}}{_C}{{0,17}}",
            r"255/\d{13}\d{0,12}",
            rf"401/{_C}{{0,30}}",
            r"402/\d{17}",
            rf"414/\d{{13}}(?:/254/{_C}{{0,20}})?",
            r"417/\d{13}",
            rf"8003/\d{{14}}{_C}{{0,16}}",
            rf"8004/{_C}{{0,30}}",
            rf"8006/\d{{18}}(?:/21/{_C}{{0,20}}|/10/{_C}{{0,20}})?",
            rf"8010/{_CPI}{{0,30}}(?:/8011/\d{{0,12}})?",
            r"8017/\d{18}",
            r"8018/\d{18}",
        )
    )
    + r")$"
)


#: Digital Links already in constrained canonical form, in the common keys (ASCII digits, no query): the
#: general code below returns them unchanged, so they skip it.
_C_NO_QUERY = r"[\x22\x27\x2D\x2E\x30-\x39\x3B-\x3E\x41-\x5A\x5F\x61-\x7A]"
_CANONICAL_ALREADY = re.compile(
    r"https://id\.gs1\.org/(?:"
    + "|".join(
        (
            r"00/[0-9]{18}",
            rf"01/[0-9]{{14}}(?:/(?:21|10)/{_C_NO_QUERY}{{1,20}})?",
            rf"414/[0-9]{{13}}(?:/254/{_C_NO_QUERY}{{1,20}})?",
            r"417/[0-9]{13}",
        )
    )
    + ")"
)


def _dl_to_canonical(uri: str) -> str | None:
    if _CANONICAL_ALREADY.fullmatch(uri) is not None:
        return uri
    if uri.startswith("https://id.gs1.org/00/") and uri[22:].isascii() and uri[22:].isdigit():
        # Digits only, and not the 18 of an SSCC (that was the line above): nothing below rewrites
        # this form, and only the 18 digits are constrained canonical.
        return None
    if _DL_SHAPE.match(uri) is None:
        return None
    query = uri.find("?")
    if query >= 0:
        uri = uri[:query]
    for short, ai in _SHORT_NAMES:
        if short in uri:
            uri = uri.replace(short, ai)
    if _ON_CANONICAL_HOST.match(uri) is None:
        for key in _REHOST_KEYS:
            at = uri.find(key)
            if at != -1:
                uri = "https://id.gs1.org" + uri[at:]
                break
    if "/01/" in uri and _GTIN14.match(uri) is None:
        if _GTIN13.match(uri):
            uri = uri.replace("/01/", "/01/0")
        elif _GTIN12.match(uri):
            uri = uri.replace("/01/", "/01/00")
        elif _GTIN8.match(uri):
            uri = uri.replace("/01/", "/01/000000")
    if "/22/" in uri:
        after_cpv = uri[uri.find("/22/") + 4 :]
        if _CPV_LAST.match(uri):
            uri = uri[: uri.find("/22/")] + after_cpv[after_cpv.find("/") : -1]
        if _CPV_BEFORE.match(uri):
            uri = uri[: uri.find("/22/")] + after_cpv[after_cpv.find("/") :]
    if "/10/" in uri and _LOT_AND_SERIAL.match(uri):
        after_lot = uri[uri.find("/10/") + 4 :]
        uri = uri[: uri.find("/10/")] + after_lot[after_lot.find("/") :]
    return uri if _CONSTRAINED.match(uri) else None


def canonical_digital_link(value: str) -> str | None:
    """The constrained canonical GS1 Digital Link of an EPC URN, EPC class/pattern URN or Digital Link URI.

    ``https://id.gs1.org`` host, no query string, only the finest identification (a serial wins over a
    lot, no CPV); GTIN-8/12/13 padded to 14 digits; URN check digits computed. ``None`` for anything
    else (including values the reference normaliser would not convert). Pure; never raises.
    """
    if "." not in value:
        return None
    if value.startswith("urn:epc:"):
        return _urn_to_dl(value)
    if value.startswith("http"):
        return _dl_to_canonical(value)
    return None


# --- the pre-hash string ---------------------------------------------------------------------------------


def _namespaces(context: Iterable[Any]) -> dict[str, str]:
    namespaces: dict[str, str] = {}
    for item in context:
        if isinstance(item, str):
            namespaces[item] = "{" + item + "}"
        elif isinstance(item, dict):
            for key, value in item.items():
                if isinstance(value, str):
                    namespaces[key] = "{" + value + "}"
                elif isinstance(value, dict) and isinstance(value.get("@id"), str):
                    namespaces[key] = "{" + value["@id"] + "}"
    return namespaces


# --- the direct path -----------------------------------------------------------------------------------
#
# The tree above reproduces the package step by step and handles any input; building it costs most of the
# time. Events of the usual shapes (standard fields with their standard sub-fields, namespaced extensions
# anywhere an extension point allows them) go straight from JSON to the same strings instead; anything else
# raises _Slow and takes the tree. The property tests check the two against each other and the package.


class _Slow(Exception):
    """The event has a shape the direct path does not handle."""


_SIMPLE_FIELDS: Final = frozenset(
    ("eventTime", "eventTimeZoneOffset", "certificationInfo", "parentID", "action", "transformationID")
) | frozenset(("bizStep", "disposition"))
_EPC_FIELDS: Final = frozenset(("epcList", "inputEPCList", "outputEPCList", "childEPCs"))
_QUANTITY_FIELDS: Final = frozenset(("quantityList", "childQuantityList", "inputQuantityList", "outputQuantityList"))
_QUANTITY_KEYS: Final = ("epcClass", "quantity", "uom")
_POSITION: Final = {name: index for index, (name, _) in enumerate(_PROPERTY_ORDER)}
_RENAMED: Final = frozenset(
    ("inputEPC", "outputEPC", "inputQuantity", "outputQuantity", "childQuantity", "childEPCs", "quantity")
)
_LEAVES: Final = (str, int, float)  # bool is an int
_METADATA_FIELDS: Final = tuple(name for name, _ in _SENSOR_METADATA_ORDER)
_REPORT_FIELDS: Final = tuple(name for name, _ in _SENSOR_REPORT_ORDER)

# What the event walk does with a top-level key (_Key.code): one of the positioned standard fields, ...
_SIMPLE: Final = 0  # a scalar standard field
_EPCS: Final = 1
_QUANTITIES: Final = 2
_LOCATION: Final = 3  # readPoint, bizLocation
_PERSISTENT: Final = 4
_SENSORS: Final = 5
# ... or a field kept for the sorted remainder, one the hash leaves out, a comment, or one the tree must place.
_EXTENSION: Final = 6
_PAIRED: Final = 7
_IGNORED: Final = 8
_SKIP: Final = 9
_SLOW: Final = 10
_POSITIONED_CODES: Final = {
    **dict.fromkeys(_SIMPLE_FIELDS, _SIMPLE),
    **dict.fromkeys(_EPC_FIELDS, _EPCS),
    **dict.fromkeys(_QUANTITY_FIELDS, _QUANTITIES),
    "readPoint": _LOCATION,
    "bizLocation": _LOCATION,
    "persistentDisposition": _PERSISTENT,
    "sensorElementList": _SENSORS,
}


def _is_extension(name: str) -> bool:
    return "{" in name and "/}" in name


def _named(name: str, texts: list[str]) -> str:
    """``name`` and the sorted ``texts`` (a list field's items), or nothing without items."""
    if not texts:
        return ""
    if len(texts) > 1:
        texts.sort()
    return name + "".join(texts)


class _Pieces:
    """The ``name=value`` strings of one name under one context, memoised by value.

    ``raw`` is keyed by the JSON value (a string or an int): only pieces no event can change (no bare CBV
    value was replaced, no check against the event's replacement set was needed). ``expanded`` is keyed
    by a value of the replacement set (a replaced bare value, or one written in the CBV / GS1 voc
    namespaces) and read only after that check. ``texts`` is keyed by the text of another scalar (a
    float, a boolean, null)."""

    __slots__ = ("empty", "expanded", "is_time", "name", "prefix", "raw", "texts")

    def __init__(self, name: str, *, leaf: bool) -> None:
        self.name = name
        self.prefix = name + "="
        #: An empty value: a standard field is left out (``_field``), an extension leaf keeps its name
        #: (``_remainder``).
        self.empty = name if leaf else ""
        lowered = name.lower()
        #: As the package decides (extension leaves are never converted).
        self.is_time = not leaf and "time" in lowered and "offset" not in lowered
        self.raw: dict[str | int, str] = {}
        self.expanded: dict[str, str] = {}
        self.texts: dict[str, str] = {}

    def make(self, text: str) -> str:
        """The piece of a value's text (after the bare-value and prefix steps): stripped, normalised.
        (Neither normalisation makes a non-empty text empty.) Memoised by the callers."""
        text = text.strip()
        if not text:
            return self.empty
        return self.prefix + (_utc_millis(text) if self.is_time else _canonical_value_uncached(text))


class _Layout:
    """A standard object's fields (readPoint, quantity element, sensor metadata/report...) in canonical
    order, each with its position and pieces. A key in ``order`` is its own name (a prefixed key maps to
    ``{iri}local``, never to a plain name)."""

    __slots__ = ("fields", "order")

    def __init__(self, order: tuple[str, ...], ctx: _Context) -> None:
        self.order = order
        self.fields = {name: (position, ctx.pieces(name, leaf=False)) for position, name in enumerate(order)}


class _Key:
    """How the direct path reads one JSON key under one context (worked out once per key)."""

    __slots__ = ("blocks", "code", "field", "is_extension", "leaf", "leafable", "name", "position")

    def __init__(self, name: str, ctx: _Context | None) -> None:
        self.name = name
        position = _POSITION.get(name)
        self.position = -1 if position is None else position
        if position is not None:
            self.code = _POSITIONED_CODES[name]
        elif name in _IGNORED_FIELDS:
            self.code = _IGNORED
        elif name in _PAIRED_LISTS:
            self.code = _PAIRED
        elif name in _UNSORTED_MARKERS:
            self.code = _SLOW
        else:
            self.code = _EXTENSION if ctx is not None else _SKIP
        #: The package recognises the event's own level by these names (substrings, as it does): where
        #: neither shows, it places extensions differently.
        self.blocks = "eventTime" in name or "action" in name
        self.is_extension = _is_extension(name)
        #: An extension with a scalar value is one leaf.
        self.leafable = not name.endswith("List") and name not in _RENAMED
        if ctx is not None:
            self.field = ctx.pieces(name, leaf=False)
            self.leaf = ctx.pieces(name, leaf=True)


#: A comment key (skipped wherever it stands).
_SKIPPED: Final = _Key("", None)


class _Direct(_Tails):
    """Pre-hash string straight from JSON, for one event (and its replacement set, as a :class:`_Tails`).
    The replacement set is gathered from the standard vocabulary fields only (:func:`_vocabulary_values`);
    a string that could add to it anywhere else (a literal in the CBV / GS1 voc namespaces, a compact IRI
    into them) sends the event to the full path.

    The hot loops test a string against ``by_tail`` (could it be a bare CBV value to replace?), read its
    memoised piece, and on a miss call :meth:`fresh`; every other scalar goes through :meth:`piece`."""

    __slots__ = ("ctx", "interesting", "keys", "value_ns")

    def __init__(self, ctx: _Context, expanded: AbstractSet[str]) -> None:
        super().__init__(expanded)
        self.ctx = ctx
        self.keys = ctx.keys
        self.interesting = ctx.interesting
        self.value_ns = ctx.value_ns

    def piece(self, pieces: _Pieces, value: Any) -> str:
        """``name=value`` of one scalar (``_field`` / ``_remainder`` of a leaf). Raises _Slow where the
        full path must decide."""
        if isinstance(value, str):
            if value in self.by_tail:
                uri = self.get(value)
                if uri is not None:
                    colon = value.find(":")
                    if colon >= 0:
                        if value.startswith(_EXPANDED_PREFIXES):
                            if value not in self.expanded:
                                raise _Slow
                        elif value[:colon] in self.interesting:
                            raise _Slow
                    return self.expanded_piece(pieces, uri)
            found = pieces.raw.get(value)
            return found if found is not None else self.fresh(pieces, value)
        if isinstance(value, (dict, list)):
            raise _Slow
        if type(value) is int:  # not bool: True == 1 would share its entry
            found = pieces.raw.get(value)
            if found is None:
                found = pieces.make(str(value))
                self.remember(pieces.raw, value, found)
            return found
        text = str(value)
        found = pieces.texts.get(text)
        if found is None:
            found = pieces.make(text)
            self.remember(pieces.texts, text, found)
        return found

    def fresh(self, pieces: _Pieces, value: str) -> str:
        """The piece of a string not met before under this name and no bare value to replace (the one
        call per new value: ``make`` and the memo store are written out here)."""
        text = value
        colon = value.find(":")
        if colon >= 0:
            if value.startswith(_EXPANDED_PREFIXES):
                if value not in self.expanded:
                    raise _Slow
                return self.expanded_piece(pieces, value)
            prefix = value[:colon]
            if prefix in self.interesting:
                raise _Slow
            iri = self.value_ns.get(prefix)
            if iri is not None:
                text = iri + value[colon + 1 :]
        text = text.strip()
        if not text:
            found = pieces.empty
        elif pieces.is_time:
            found = pieces.prefix + _utc_millis(text)
        else:
            found = pieces.prefix + _canonical_value_uncached(text)
        self.remember(pieces.raw, value, found)
        return found

    def remember(self, memo: dict[Any, str], key: Any, piece: str) -> None:
        """Store a piece: each memo is bounded, and so is the context's total (extension names are the
        sender's to choose), emptying them all when it is spent."""
        if len(memo) >= _VALUE_CACHE_SIZE:
            memo.clear()
        memo[key] = piece
        ctx = self.ctx
        ctx.stored += 1
        if ctx.stored > _CONTEXT_PIECES:
            ctx.forget()

    def expanded_piece(self, pieces: _Pieces, uri: str) -> str:
        """The piece of a value of the event's replacement set (checked by the caller)."""
        found = pieces.expanded.get(uri)
        if found is None:
            text = uri
            colon = uri.find(":")
            if colon >= 0:
                iri = self.value_ns.get(uri[:colon])
                if iri is not None:
                    text = iri + uri[colon + 1 :]
            found = pieces.make(text)
            self.remember(pieces.expanded, uri, found)
        return found

    def pieces_of(self, pieces: _Pieces, items: Iterable[Any]) -> list[str]:
        """The non-empty pieces of a list of scalars, in list order."""
        by_tail = self.by_tail
        raw = pieces.raw
        texts = []
        for item in items:
            if item.__class__ is str and item not in by_tail:
                text = raw.get(item)
                if text is None:
                    text = self.fresh(pieces, item)
            else:
                text = self.piece(pieces, item)
            if text:
                texts.append(text)
        return texts

    def plan(self, key: Any) -> _Key:
        found = self.keys.get(key) if isinstance(key, str) else None
        return found if found is not None else self.ctx.plan(key)

    def extension(self, key: _Key, value: Any) -> list[str]:
        """The remainder strings of one extension field (one per tree node it makes)."""
        name = key.name
        if name.endswith("List"):
            item_name = name[:-4]
            if item_name in _RENAMED or item_name in _UNSORTED_MARKERS:
                raise _Slow
            items = value if isinstance(value, list) else (value,)
            if not items:
                return []
            item_pieces = self.ctx.pieces(item_name, leaf=True)
            parts = [self.node(item_pieces, item) for item in items]
            if len(parts) > 1:
                parts.sort()
            return [name + "".join(parts)]
        if isinstance(value, list):
            return [self.node(key.leaf, item) for item in value]
        if isinstance(value, _LEAVES) and key.leafable:
            return [self.piece(key.leaf, value)]
        return [self.node(key.leaf, value)]

    def node(self, pieces: _Pieces, value: Any) -> str:
        if pieces.name in _RENAMED:
            raise _Slow
        if isinstance(value, dict):
            return pieces.name + self.members(value)
        if isinstance(value, list):
            raise _Slow
        return self.piece(pieces, value)

    def members(self, obj: Mapping[str, Any]) -> str:
        by_tail = self.by_tail
        keys = self.keys
        parts: list[str] = []
        for key, value in obj.items():
            plan = keys.get(key)
            if plan is None:
                plan = self.ctx.plan(key)
                if plan.code == _SKIP:
                    continue
            if plan.code == _SLOW:
                raise _Slow
            if plan.leafable and value.__class__ is str and value not in by_tail:
                text = plan.leaf.raw.get(value)
                parts.append(text if text is not None else self.fresh(plan.leaf, value))
            else:
                parts.extend(self.extension(plan, value))
        if len(parts) > 1:
            parts.sort()
        return "".join(parts)

    def standard(self, obj: Any, layout: _Layout) -> str:
        """A standard object: its fields in canonical order, then its namespaced extensions, sorted (what
        its ``_field`` gives when all is consumed). The usual case, only standard scalar fields in their
        canonical order, here."""
        if not isinstance(obj, dict):
            raise _Slow
        fields = layout.fields
        by_tail = self.by_tail
        parts: list[str] = []
        last = -1
        for key, value in obj.items():
            field = fields.get(key)
            if field is None or field[0] < last or isinstance(value, list):
                return self.standard_general(obj, layout)
            last, pieces = field
            if value.__class__ is str and value not in by_tail:
                text = pieces.raw.get(value)
                if text is None:
                    text = self.fresh(pieces, value)
            else:
                text = self.piece(pieces, value)
            parts.append(text)
        return "".join(parts)

    def standard_general(self, obj: Mapping[str, Any], layout: _Layout) -> str:
        found: dict[str, Any] = {}
        extensions: list[tuple[_Key, Any]] = []
        count = 0
        blocked = False
        for key, value in obj.items():
            plan = self.plan(key)
            if plan.code == _SKIP:
                continue
            count += len(value) if isinstance(value, list) else 1
            blocked = blocked or plan.blocks
            if plan.name in layout.fields:
                found[plan.name] = value
            elif plan.is_extension:
                extensions.append((plan, value))
            else:
                raise _Slow  # left unconsumed by the package: the tree knows where it goes
        if extensions and (count <= 1 or blocked):
            raise _Slow
        parts: list[str] = []
        for name in layout.order:
            if name in found:
                value = found[name]
                texts = self.pieces_of(layout.fields[name][1], value if isinstance(value, (list, tuple)) else (value,))
                if len(texts) > 1:
                    texts.sort()
                parts.extend(texts)
        if extensions:
            rest: list[str] = []
            for plan, value in extensions:
                rest.extend(self.extension(plan, value))
            if len(rest) > 1:
                rest.sort()
            parts.extend(rest)
        return "".join(parts)

    def sensor_element(self, obj: Any) -> str:
        if not isinstance(obj, dict):
            raise _Slow
        metadata: list[str] = []
        reports: list[str] = []
        extensions: list[tuple[_Key, Any]] = []
        count = 0
        blocked = False
        ctx = self.ctx
        for key, value in obj.items():
            if key in _SKIPPED_KEYS:
                raise _Slow
            plan = self.plan(key)
            blocked = blocked or plan.blocks
            items = value if isinstance(value, list) else (value,)
            count += len(items)
            if plan.name == "sensorMetadata":
                for item in items:
                    text = self.standard(item, ctx.metadata_layout)
                    if text:
                        metadata.append("sensorMetadata" + text)
            elif plan.name == "sensorReport":
                for item in items:
                    text = self.standard(item, ctx.report_layout)
                    if text:
                        reports.append("sensorReport" + text)
            elif plan.is_extension:
                extensions.append((plan, value))
            else:
                raise _Slow
        if extensions and (count <= 1 or blocked):
            raise _Slow
        metadata.sort()
        reports.sort()
        rest: list[str] = []
        for plan, value in extensions:
            rest.extend(self.extension(plan, value))
        rest.sort()
        return "".join(metadata) + "".join(reports) + "".join(rest)

    def paired(self, name: str, value: Any) -> str:
        items = value if isinstance(value, list) else (value,)
        if not items:
            return ""
        by_tail = self.by_tail
        keys = self.keys
        pairs: list[str] = []
        for item in items:
            if not isinstance(item, dict) or not (
                "bizTransaction" in item or "source" in item or "destination" in item
            ):
                raise _Slow
            parts: list[str] = []
            for key, field in item.items():
                plan = keys.get(key)  # a key answered before is no skipped or "@" key
                if plan is None:
                    if key in _SKIPPED_KEYS or key.startswith("@"):
                        raise _Slow
                    plan = self.ctx.plan(key)
                if field.__class__ is str and field not in by_tail:
                    if len(parts) < 2:
                        text = plan.leaf.raw.get(field)
                        parts.append(text if text is not None else self.fresh(plan.leaf, field))
                elif isinstance(field, (dict, list)):
                    raise _Slow
                elif len(parts) < 2:
                    parts.append(self.piece(plan.leaf, field))
            pairs.append("".join(parts))
        if len(pairs) > 1:
            pairs.sort()
        return name + "".join(pairs)

    def positioned(self, key: _Key, value: Any) -> str:
        """A standard event field other than a scalar one (``_field`` of it, when all is consumed)."""
        code = key.code
        ctx = self.ctx
        items = value if isinstance(value, list) else (value,)
        if code == _SIMPLE:
            texts = self.pieces_of(key.field, value if isinstance(value, (list, tuple)) else (value,))
            if len(texts) > 1:
                texts.sort()
            return "".join(texts)
        if code == _EPCS:
            return _named(key.name, self.pieces_of(ctx.epc, items))
        if code == _QUANTITIES:
            texts = []
            for item in items:
                if not item:
                    raise _Slow  # an empty element is not a quantityElement
                text = self.standard(item, ctx.quantity_layout)
                if text:
                    texts.append("quantityElement" + text)
            return _named(key.name, texts)
        if code == _LOCATION:
            if not isinstance(value, dict):
                return "".join(self.pieces_of(key.field, value if isinstance(value, (list, tuple)) else (value,)))
            text = self.standard(value, ctx.location_layout)
            return key.name + text if text else ""
        if code == _PERSISTENT:
            if not isinstance(value, dict):
                raise _Slow
            text = self.standard(value, ctx.persistent_layout)
            return key.name + text if text else ""
        texts = []  # _SENSORS
        for item in items:
            text = self.sensor_element(item)
            if text:
                texts.append("sensorElement" + text)
        return _named(key.name, texts)

    def event(self, event: Mapping[str, Any]) -> str:
        kind = event.get("type")
        if not isinstance(kind, str) or kind.startswith(_EXPANDED_PREFIXES) or ":" in kind:
            raise _Slow
        ctx = self.ctx
        shape = ctx.shapes.get(tuple(event))
        if shape is None:
            shape = ctx.shape(event)
        plans, blocked = shape
        if not blocked:
            raise _Slow  # no eventTime/action: the package treats top-level extensions differently
        slots: list[str] = [""] * len(_PROPERTY_ORDER)
        rest: list[str] = []
        by_tail = self.by_tail
        # plans has one per key, so the lengths are equal
        for plan, value in zip(plans, event.values(), strict=False):
            code = plan.code
            if code == _SIMPLE and value.__class__ is str and value not in by_tail:
                text = plan.field.raw.get(value)
                slots[plan.position] = text if text is not None else self.fresh(plan.field, value)
            elif code == _EPCS and value.__class__ is list:
                slots[plan.position] = _named(plan.name, self.pieces_of(ctx.epc, value))
            elif code <= _SENSORS:
                slots[plan.position] = self.positioned(plan, value)
            elif code == _EXTENSION:
                if plan.leafable and value.__class__ is str and value not in by_tail:
                    text = plan.leaf.raw.get(value)
                    rest.append(text if text is not None else self.fresh(plan.leaf, value))
                else:
                    rest.extend(self.extension(plan, value))
            elif code == _PAIRED:
                text = self.paired(plan.name, value)
                if text:
                    rest.append(text)
        if len(rest) > 1:
            rest.sort()
        if kind in by_tail:
            kind = self.get(kind) or kind
        return "eventType=" + kind + "".join(slots) + "".join(rest)


def _vocab(found: set[str], value: Any, table: Mapping[str, str], ctx: _Context) -> None:
    """Add what JSON-LD expansion makes of one @vocab-typed value (or list of them) to ``found``."""
    if isinstance(value, list):
        for item in value:
            _vocab(found, item, table, ctx)
        return
    if not isinstance(value, str):
        return
    term = table.get(value)
    if term is not None:
        found.add(term)
    elif value.startswith(_EXPANDED_PREFIXES):
        found.add(value)
    elif value in ctx.interesting:
        found.add(ctx.prefixes[value])
    elif ":" in value:
        prefix, _, rest = value.partition(":")
        if prefix in ctx.interesting and not rest.startswith("//"):
            found.add(ctx.prefixes[prefix] + rest)


_SENSOR_REPORT_TYPES: Final = _TYPE_TABLES["sensorReport"]
_EXCEPTIONS: Final = _VOCAB_TABLES["exception"]
_COMPONENT_TABLE: Final = _VOCAB_TABLES["component"]


def _vocabulary_values(event: Mapping[str, Any], ctx: _Context) -> set[str] | None:
    """The replacement set from the standard vocabulary fields where the direct path expects them, and
    from the fields the hash ignores (expansion still sees those). None for a shape to leave to the full
    walk. (A missing field and a null one add nothing, so each field is looked up, not searched for; a
    bare name of the field's table, the usual value, is added without a call.)"""
    found: set[str] = set()
    get = event.get
    value = get("bizStep")
    if value is not None:
        term = _BIZSTEP_TABLE.get(value) if value.__class__ is str else None
        if term is not None:
            found.add(term)
        else:
            _vocab(found, value, _BIZSTEP_TABLE, ctx)
    value = get("disposition")
    if value is not None:
        term = _DISP_TABLE.get(value) if value.__class__ is str else None
        if term is not None:
            found.add(term)
        else:
            _vocab(found, value, _DISP_TABLE, ctx)
    value = get("persistentDisposition")
    if isinstance(value, dict):
        _vocab(found, value.get("set"), _DISP_TABLE, ctx)
        _vocab(found, value.get("unset"), _DISP_TABLE, ctx)
    for key, table in _TYPE_TABLES.items():  # sensorReport too: expansion reads it at any level
        value = get(key)
        if value is not None:
            for item in value if isinstance(value, list) else (value,):
                if isinstance(item, dict):
                    kind = item.get("type")
                    term = table.get(kind) if kind.__class__ is str else None
                    if term is not None:
                        found.add(term)
                    else:
                        _vocab(found, kind, table, ctx)
    value = get("sensorElementList")
    if value is not None:
        for element in value if isinstance(value, list) else (value,):
            if isinstance(element, dict):
                reports = element.get("sensorReport")
                for report in reports if isinstance(reports, list) else (reports,):
                    if isinstance(report, dict):
                        kind = report.get("type")
                        term = _SENSOR_REPORT_TYPES.get(kind) if kind.__class__ is str else None
                        if term is not None:
                            found.add(term)
                        else:
                            _vocab(found, kind, _SENSOR_REPORT_TYPES, ctx)
                        if "exception" in report:
                            _vocab(found, report["exception"], _EXCEPTIONS, ctx)
                        if "component" in report:
                            _vocab(found, report["component"], _COMPONENT_TABLE, ctx)
    for key in _IGNORED_VALUES:
        if key in event:
            found |= _expanded_values({key: event[key]}, ctx.prefixes)
    return found


_IGNORED_VALUES: Final = tuple(sorted(_IGNORED_FIELDS - {"type"}))


class _Context:
    """What the pre-hash string needs from a ``@context``: computed once per distinct context (see
    :func:`_context`), shared by the events under it (its memos only ever hold pure results)."""

    __slots__ = (
        "epc",
        "interesting",
        "keys",
        "location_layout",
        "metadata_layout",
        "namespaces",
        "persistent_layout",
        "prefixes",
        "quantity_layout",
        "report_layout",
        "shapes",
        "shared_pieces",
        "stored",
        "value_ns",
    )

    def __init__(self, context: list[Any]) -> None:
        self.namespaces = _namespaces(context)
        prefixes = dict(_CONTEXT_PREFIXES)
        for item in context:
            if isinstance(item, dict):
                for key, value in item.items():
                    if isinstance(value, str) and not key.startswith("@"):
                        prefixes[key] = value
        self.prefixes = prefixes
        #: The prefixes that expand into the CBV / GS1 voc namespaces.
        self.interesting = {p for p, iri in prefixes.items() if iri.startswith(_EXPANDED_PREFIXES)}
        self.value_ns = _value_namespaces(self.namespaces)
        #: How the direct path reads each JSON key met so far (:meth:`plan`).
        self.keys: dict[str, _Key] = {}
        #: The plans of an event's keys, in order, and whether one of them is eventTime/action, by the
        #: keys (:meth:`shape`).
        self.shapes: dict[tuple[str, ...], tuple[tuple[_Key, ...], bool]] = {}
        self.shared_pieces: dict[tuple[str, bool], _Pieces] = {}
        #: Pieces stored in their memos since the last :meth:`forget`.
        self.stored = 0
        self.epc = self.pieces("epc", leaf=False)
        self.quantity_layout = _Layout(_QUANTITY_KEYS, self)
        self.location_layout = _Layout(("id",), self)
        self.persistent_layout = _Layout(("set", "unset"), self)
        self.metadata_layout = _Layout(_METADATA_FIELDS, self)
        self.report_layout = _Layout(_REPORT_FIELDS, self)

    def key(self, text: str) -> str:
        """``_Builder.key``: a JSON key as a tree name."""
        if ":" in text:
            prefix, _, rest = text.partition(":")
            iri = self.namespaces.get(prefix)
            if iri is not None:
                return iri + rest
        return text

    def pieces(self, name: str, *, leaf: bool) -> _Pieces:
        """The memoised pieces of a field (``leaf``: an extension leaf) named ``name``."""
        found = self.shared_pieces.get((name, leaf))
        if found is None:
            found = _Pieces(name, leaf=leaf)
            if len(self.shared_pieces) < _MAX_PIECES:  # room for every remembered key's two
                self.shared_pieces[name, leaf] = found
        return found

    def forget(self) -> None:
        """Empty the memos of every :class:`_Pieces` that outlives an event (shared, or a remembered key's)."""
        self.stored = 0
        kept = list(self.shared_pieces.values())
        for plan in list(self.keys.values()):
            kept += (plan.field, plan.leaf)
        for pieces in kept:
            pieces.raw.clear()
            pieces.expanded.clear()
            pieces.texts.clear()

    def plan(self, key: Any) -> _Key:
        """How the direct path reads a JSON key (remembered). Raises _Slow for a key it leaves to the tree."""
        if not isinstance(key, str):
            raise _Slow
        found = self.keys.get(key)
        if found is not None:
            return found
        if key in _SKIPPED_KEYS:
            if key == "#text":
                raise _Slow
            return _SKIPPED
        if key.startswith("@"):
            raise _Slow
        found = _Key(self.key(key), self)
        if len(self.keys) < _MAX_NAMES:
            self.keys[key] = found
        return found

    def shape(self, event: Mapping[str, Any]) -> tuple[tuple[_Key, ...], bool]:
        """The plans of the event's keys (comments left out) and whether one blocks extensions there
        (remembered by the key tuple). Raises _Slow for a key the tree must place."""
        plans = tuple(self.plan(key) for key in event)
        for plan in plans:
            if plan.code == _SLOW:
                raise _Slow
        found = (plans, any(plan.blocks for plan in plans))
        if len(self.shapes) < _MAX_SHAPES:
            self.shapes[tuple(event)] = found
        return found


_MAX_NAMES: Final = 4096
_MAX_PIECES: Final = 2 * _MAX_NAMES + 64
#: Pieces a context keeps in all its memos together (a few tens of MB at most).
_CONTEXT_PIECES: Final = 200_000
_MAX_CONTEXTS: Final = 64
_MAX_SHAPES: Final = 1024
_CONTEXTS: dict[tuple[Any, ...], _Context] = {}
#: The context list met last (a copy) and its _Context.
_LAST_CONTEXT: tuple[list[Any], _Context] | None = None


def _context(context: list[Any]) -> _Context:
    """The :class:`_Context` of a list of context entries, shared by equal lists. Only strings and the
    string-or-``@id`` members of objects count (what :func:`_namespaces` and the prefixes read), so the
    key is the entries with objects as their item tuples; an object with an object member is not
    hashable and gets a context of its own."""
    global _LAST_CONTEXT
    last = _LAST_CONTEXT
    if last is not None and context == last[0]:  # the usual case: every event of a document, every call of a service
        return last[1]
    key = tuple(
        [item if isinstance(item, str) else tuple(item.items()) if isinstance(item, dict) else None for item in context]
    )
    try:
        found = _CONTEXTS.get(key)
    except TypeError:  # an unhashable member (a term definition object)
        return _Context(context)
    if found is None:
        if len(_CONTEXTS) >= _MAX_CONTEXTS:
            _CONTEXTS.clear()
        found = _CONTEXTS[key] = _Context(context)
    # A copy to compare with: the caller may change its objects in place later.
    _LAST_CONTEXT = ([dict(item) if isinstance(item, dict) else item for item in context], found)
    return found


def prehash_string(event: Mapping[str, Any], context: Iterable[Any], *, direct: bool = True) -> str:
    """The canonical pre-hash string of one JSON-LD event (its ``@context`` already merged into
    ``context``, a list of context entries). Pure; raises only TypeError/AttributeError for a tree the
    algorithm cannot read (the caller reports those as invalid input)."""
    ctx = _context(context if isinstance(context, list) else list(context))
    if direct:
        vocabulary = _vocabulary_values(event, ctx)
        if vocabulary is not None:
            try:
                return _Direct(ctx, vocabulary).event(event)
            except _Slow:
                pass
    builder = _Builder(dict(ctx.namespaces), _Tails(_expanded_values(event, ctx.prefixes)))
    root = _reshape(builder.node(event))
    children: list[Node] = root[2]
    ordered = _ordered(children, _PROPERTY_ORDER)
    rest = [child for child in children if child[0] not in _IGNORED_FIELDS]
    return "eventType=" + str(root[0]) + ordered + (_remainder(rest) if rest else "")


def clear_caches() -> None:
    """Empty the value caches (canonical values, timestamps, check digits, bare-value tails) and the
    context cache with its per-context memos; for benchmarks that must not time a warm cache. Results
    never depend on them."""
    global _TAIL_INDEX, _LAST_CONTEXT
    _LAST_CONTEXT = None
    _CANONICAL.clear()
    _UTC_MILLIS.clear()
    _UTC_HOURS.clear()
    _SGTIN_HEADS.clear()
    _with_check.cache_clear()
    _CONTEXTS.clear()
    _TAIL_INDEX = _TailIndex()
