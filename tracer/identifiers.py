"""GS1 identifiers of the bonded-import journey: GTIN, SSCC, GLN, lot numbers, serials, Digital Link.

Everything here is a pure function; bad input raises :class:`~tracer.exceptions.InvalidInput` with a
message naming the problem ("check digit should be 7, not 2").

Conventions (fixed; the chain, the events and the scan pages all rely on them):

* **GTINs are handled as 14 digits.** :func:`normalize_gtin` accepts GTIN-8/12/13/14 and left-pads with
  zeros; the check digit is verified with ``biip`` (GS1 General Specifications 7.9.1).
* **Lot numbers (AI 10) and serials (AI 21)** are 1 to 20 characters of the GS1 AI encodable character
  set 82 (letters, digits and ``!"%&'()*+,-./:;<=>?_``); no spaces, nothing outside ASCII.
* **Chain ids** (see ``contracts/ITraceRegistry.sol``) are keccak256 of the GS1 element string, AI 10/21
  last so no separator is needed: ``lotId = keccak256("01" + gtin14 + "10" + lot)``,
  ``unitId = keccak256("01" + gtin14 + "21" + serial)``, ``parcelId = keccak256("00" + sscc)``.
* **Digital Link paths** (relative to the service's public URL): ``/01/{gtin14}/10/{lot}``,
  ``/01/{gtin14}/21/{serial}``, ``/00/{sscc}``. Lot numbers and serials are percent-encoded with
  every character outside RFC 3986's unreserved set encoded (so ``/`` is ``%2F``, ``%`` is ``%25``);
  :func:`parse_digital_link_path` takes the *raw* path, still percent-encoded, splits it on ``/`` and
  only then decodes each segment. It accepts any valid percent-encoding and GTIN-8/12/13 in the path,
  and returns normalised references whose ``path`` is the canonical form.
* **Identifiers inside EPCIS events** are GS1 Digital Link URIs on the canonical ``https://id.gs1.org``
  host (EPCIS 2.0 allows them wherever an EPC URI may stand): ``https://id.gs1.org/01/{gtin14}/10/{lot}``
  is the lot's ``epcClass``, ``https://id.gs1.org/00/{sscc}`` a parcel, ``/01/{gtin14}/21/{serial}`` a
  unit. We do not use EPC URNs (``urn:epc:class:lgtin:...``): they need the length of the GS1 company
  prefix, which a GTIN alone does not tell. The host is a fixed constant, never the deployment's URL,
  so an event hashes the same everywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

from biip import ParseError
from biip.checksums import gs1_standard_check_digit
from biip.gtin import Gtin
from eth_utils.crypto import keccak

from tracer.exceptions import InvalidInput

__all__ = [
    "GS1_DL_HOST",
    "DigitalLink",
    "digital_link_path",
    "digital_link_to_epc_urn",
    "epc_urn_to_digital_link",
    "parse_digital_link",
    "LotRef",
    "ParcelRef",
    "UnitRef",
    "gln_location_uri",
    "gs1_check_digit",
    "lot_class_uri",
    "lot_id",
    "lot_path",
    "normalize_gtin",
    "parcel_id",
    "parcel_path",
    "parcel_uri",
    "parse_digital_link_path",
    "parse_digital_link_uri",
    "unit_id",
    "unit_path",
    "unit_uri",
    "validate_gln",
    "validate_lot",
    "validate_serial",
    "validate_sscc",
]

#: The canonical GS1 Digital Link host used for identifiers inside EPCIS events.
GS1_DL_HOST = "https://id.gs1.org"

_ASCII_DIGITS = re.compile(r"[0-9]+")
# GS1 AI encodable character set 82 (GS1 General Specifications, figure 7.11-1).
_CSET82 = re.compile(r"""[!"%&'()*+,\-./0-9:;<=>?A-Z_a-z]+""")
# One RFC 3986 path segment (pchar*), still percent-encoded.
_RAW_SEGMENT = re.compile(r"(?:%[0-9A-Fa-f]{2}|[A-Za-z0-9\-._~!$&'()*+,;=:@])+")
_GTIN_LENGTHS = (8, 12, 13, 14)


def gs1_check_digit(digits: str) -> int:
    """The GS1 mod-10 check digit for ``digits`` (the key *without* its check digit).

    Raises InvalidInput when ``digits`` is empty or not made of ASCII digits.
    """
    if not isinstance(digits, str) or not _ASCII_DIGITS.fullmatch(digits):
        raise InvalidInput(f"expected ASCII digits, got {digits!r}")
    return gs1_standard_check_digit(digits)


def _check_digits(value: object, *, kind: str, lengths: tuple[int, ...], pointer: str | None) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{kind} must be a string of digits, got {type(value).__name__}", pointer=pointer)
    if not _ASCII_DIGITS.fullmatch(value):
        raise InvalidInput(f"{kind} {value!r} must contain only the digits 0-9", pointer=pointer)
    if len(value) not in lengths:
        expected = " or ".join(str(n) for n in lengths)
        raise InvalidInput(f"{kind} {value!r} has {len(value)} digits; expected {expected}", pointer=pointer)
    expected_digit = gs1_standard_check_digit(value[:-1])
    if int(value[-1]) != expected_digit:
        raise InvalidInput(f"{kind} {value}: check digit should be {expected_digit}, not {value[-1]}", pointer=pointer)
    return value


def normalize_gtin(value: str, *, pointer: str | None = None) -> str:
    """Validate a GTIN-8/12/13/14 and return it as 14 digits.

    Raises InvalidInput for anything but ASCII digits, a wrong length, a wrong check digit, or the all-zero
    GTIN; the message names the problem (``check digit should be 7, not 2``).
    """
    known = _VALID_GTINS.get(value) if type(value) is str else None
    if known is not None:
        return known  # every scan parses its code's GTIN, and biip's parse was a tenth of a cached scan's CPU
    _check_digits(value, kind="GTIN", lengths=_GTIN_LENGTHS, pointer=pointer)
    gtin14 = value.rjust(14, "0")
    if set(gtin14) == {"0"}:
        raise InvalidInput("GTIN must not be all zeros", pointer=pointer)
    try:
        # biip agrees with the check above; it is the well-kept authority on GTIN structure.
        normalized = Gtin.parse(gtin14).as_gtin_14()
    except ParseError as exc:
        raise InvalidInput(f"GTIN {value}: {exc}", pointer=pointer) from exc
    if len(_VALID_GTINS) >= _MAX_VALID_GTINS:
        _VALID_GTINS.clear()  # bounded memory: a miss costs one parse
    _VALID_GTINS[value] = normalized
    return normalized


# GTINs found valid, as given -> as 14 digits (only valid ones: an error's message names its own pointer).
_VALID_GTINS: dict[str, str] = {}
_MAX_VALID_GTINS = 100_000


def validate_sscc(value: str, *, pointer: str | None = None) -> str:
    """Validate an SSCC (18 digits, GS1 mod-10 check digit) and return it unchanged.

    Raises InvalidInput naming the problem.
    """
    return _check_digits(value, kind="SSCC", lengths=(18,), pointer=pointer)


def validate_gln(value: str, *, pointer: str | None = None) -> str:
    """Validate a GLN (13 digits, GS1 mod-10 check digit) and return it unchanged.

    Raises InvalidInput naming the problem.
    """
    return _check_digits(value, kind="GLN", lengths=(13,), pointer=pointer)


def _validate_cset82(value: object, *, kind: str, max_length: int, pointer: str | None) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{kind} must be a string, got {type(value).__name__}", pointer=pointer)
    if not value:
        raise InvalidInput(f"{kind} must not be empty", pointer=pointer)
    if len(value) > max_length:
        raise InvalidInput(
            f"{kind} {value!r} has {len(value)} characters; at most {max_length} are allowed", pointer=pointer
        )
    if not _CSET82.fullmatch(value):
        bad = next(ch for ch in value if not _CSET82.fullmatch(ch))
        raise InvalidInput(
            f"{kind} {value!r} contains {bad!r}, which is not in the GS1 character set 82 "
            "(letters, digits and !\"%&'()*+,-./:;<=>?_)",
            pointer=pointer,
        )
    return value


def validate_lot(value: str, *, pointer: str | None = None) -> str:
    """Validate a lot/batch number (GS1 AI 10: 1-20 characters of character set 82) and return it.

    Raises InvalidInput naming the problem.
    """
    return _validate_cset82(value, kind="lot number", max_length=20, pointer=pointer)


def validate_serial(value: str, *, pointer: str | None = None) -> str:
    """Validate a serial number (GS1 AI 21: 1-20 characters of character set 82) and return it.

    Raises InvalidInput naming the problem.
    """
    return _validate_cset82(value, kind="serial number", max_length=20, pointer=pointer)


def _encode(value: str) -> str:
    # Everything outside RFC 3986 "unreserved" is percent-encoded: one canonical form per value.
    return quote(value, safe="")


# --- chain ids -------------------------------------------------------------------------------------


def lot_id(gtin14: str, lot: str) -> bytes:
    """The registry's lot id: ``keccak256(bytes("01" + gtin14 + "10" + lot))`` (32 bytes).

    Raises InvalidInput for a bad GTIN or lot number.
    """
    return keccak(text="01" + normalize_gtin(gtin14) + "10" + validate_lot(lot))


def parcel_id(sscc: str) -> bytes:
    """The registry's parcel id: ``keccak256(bytes("00" + sscc))`` (32 bytes).

    Raises InvalidInput for a bad SSCC.
    """
    return keccak(text="00" + validate_sscc(sscc))


def unit_id(gtin14: str, serial: str) -> bytes:
    """A unit's id: ``keccak256(bytes("01" + gtin14 + "21" + serial))`` (32 bytes).

    Raises InvalidInput for a bad GTIN or serial.
    """
    return keccak(text="01" + normalize_gtin(gtin14) + "21" + validate_serial(serial))


# --- Digital Link ------------------------------------------------------------------------------------


def lot_path(gtin14: str, lot: str) -> str:
    """``/01/{gtin14}/10/{lot, percent-encoded}``. Raises InvalidInput for a bad GTIN or lot."""
    return f"/01/{normalize_gtin(gtin14)}/10/{_encode(validate_lot(lot))}"


def parcel_path(sscc: str) -> str:
    """``/00/{sscc}``. Raises InvalidInput for a bad SSCC."""
    return f"/00/{validate_sscc(sscc)}"


def unit_path(gtin14: str, serial: str) -> str:
    """``/01/{gtin14}/21/{serial, percent-encoded}``. Raises InvalidInput for a bad GTIN or serial."""
    return f"/01/{normalize_gtin(gtin14)}/21/{_encode(validate_serial(serial))}"


def lot_class_uri(gtin14: str, lot: str) -> str:
    """The lot as an EPCIS ``epcClass``: ``https://id.gs1.org/01/{gtin14}/10/{lot}``."""
    return GS1_DL_HOST + lot_path(gtin14, lot)


def parcel_uri(sscc: str) -> str:
    """The parcel as an EPCIS EPC: ``https://id.gs1.org/00/{sscc}``."""
    return GS1_DL_HOST + parcel_path(sscc)


def unit_uri(gtin14: str, serial: str) -> str:
    """A unit as an EPCIS EPC: ``https://id.gs1.org/01/{gtin14}/21/{serial}``."""
    return GS1_DL_HOST + unit_path(gtin14, serial)


def gln_location_uri(gln: str, extension: str | None = None) -> str:
    """A location for ``readPoint`` / ``bizLocation``: ``https://id.gs1.org/414/{gln}[/254/{ext}]``.

    ``extension`` is the GLN extension (AI 254, 1-20 characters of set 82), e.g. a storage zone.
    Raises InvalidInput for a bad GLN or extension.
    """
    uri = f"{GS1_DL_HOST}/414/{validate_gln(gln)}"
    if extension is not None:
        ext = _validate_cset82(extension, kind="GLN extension", max_length=20, pointer=None)
        uri += f"/254/{_encode(ext)}"
    return uri


@dataclass(frozen=True, slots=True)
class LotRef:
    """A goods lot: GTIN-14 and lot number (decoded)."""

    gtin: str
    lot: str

    @property
    def path(self) -> str:
        """The canonical Digital Link path."""
        return lot_path(self.gtin, self.lot)

    @property
    def id(self) -> bytes:
        """The registry's lot id."""
        return lot_id(self.gtin, self.lot)


@dataclass(frozen=True, slots=True)
class ParcelRef:
    """A parcel (logistic unit) split off a lot: its SSCC."""

    sscc: str

    @property
    def path(self) -> str:
        """The canonical Digital Link path."""
        return parcel_path(self.sscc)

    @property
    def id(self) -> bytes:
        """The registry's parcel id."""
        return parcel_id(self.sscc)


@dataclass(frozen=True, slots=True)
class UnitRef:
    """A serialised unit: GTIN-14 and serial (decoded); ``lot`` when the link also named it."""

    gtin: str
    serial: str
    lot: str | None = None

    @property
    def path(self) -> str:
        """The canonical Digital Link path (serial only: it is the finer identification)."""
        return unit_path(self.gtin, self.serial)

    @property
    def id(self) -> bytes:
        """The unit id (``keccak256("01" + gtin14 + "21" + serial)``)."""
        return unit_id(self.gtin, self.serial)


def _decode_segment(raw: str, *, what: str, pointer: str) -> str:
    if not _RAW_SEGMENT.fullmatch(raw):
        raise InvalidInput(f"{what} {raw!r} is not a valid percent-encoded path segment", pointer=pointer)
    try:
        return unquote(raw, encoding="utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{what} {raw!r} does not decode as UTF-8", pointer=pointer) from exc


def parse_digital_link_path(raw_path: str) -> LotRef | ParcelRef | UnitRef:
    """Parse a raw (still percent-encoded) Digital Link path into a lot, parcel or unit reference.

    Accepted: ``/01/{gtin}/10/{lot}``, ``/01/{gtin}/21/{serial}``, ``/01/{gtin}/10/{lot}/21/{serial}``
    (a unit) and ``/00/{sscc}``; a single trailing ``/`` is tolerated. The path must not carry a query
    or fragment. Raises InvalidInput naming the part at fault (``pointer`` is the path segment, e.g.
    ``/01``, ``/10``).
    """
    if not isinstance(raw_path, str):
        raise InvalidInput("a Digital Link path must be a string")
    if "?" in raw_path or "#" in raw_path:
        raise InvalidInput(f"Digital Link path {raw_path!r} must not carry a query or fragment")
    if not raw_path.startswith("/"):
        raise InvalidInput(f"Digital Link path {raw_path!r} must start with '/'")
    body = raw_path[1:]
    if body.endswith("/"):
        body = body[:-1]
    segments = body.split("/")
    if len(segments) % 2 or not all(segments):
        raise InvalidInput(f"Digital Link path {raw_path!r} must be pairs of /AI/value with no empty segment")
    pairs = [(segments[i], segments[i + 1]) for i in range(0, len(segments), 2)]
    primary, key = pairs[0]
    if primary == "00":
        if len(pairs) != 1:
            raise InvalidInput(f"an SSCC path takes no qualifiers: {raw_path!r}", pointer="/00")
        return ParcelRef(validate_sscc(key, pointer="/00"))
    if primary != "01":
        raise InvalidInput(
            f"Digital Link path {raw_path!r} must start with /01/ (GTIN) or /00/ (SSCC), not /{primary}/"
        )
    gtin = normalize_gtin(key, pointer="/01")
    qualifiers = [ai for ai, _ in pairs[1:]]
    if qualifiers not in (["10"], ["21"], ["10", "21"]):
        raise InvalidInput(
            f"after /01/{key} expected /10/{{lot}}, /21/{{serial}} or /10/{{lot}}/21/{{serial}}, "
            f"got {'/' + '/'.join(qualifiers) if qualifiers else 'nothing'}",
            pointer="/01",
        )
    values = {ai: _decode_segment(value, what=f"AI {ai} value", pointer=f"/{ai}") for ai, value in pairs[1:]}
    lot = validate_lot(values["10"], pointer="/10") if "10" in values else None
    if "21" in values:
        return UnitRef(gtin, validate_serial(values["21"], pointer="/21"), lot)
    assert lot is not None
    return LotRef(gtin, lot)


_URI_PATH = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://[^/?#]*(?P<path>/[^?#]*)")


def parse_digital_link_uri(uri: str, *, base_path: str = "") -> LotRef | ParcelRef | UnitRef:
    """Parse a full Digital Link URI (any host), ignoring a query string and fragment.

    ``base_path`` is a path prefix of the resolver (e.g. ``/tracer``) stripped before parsing.
    Raises InvalidInput as :func:`parse_digital_link_path` does.
    """
    match = _URI_PATH.match(uri) if isinstance(uri, str) else None
    if match is None:
        raise InvalidInput(f"{uri!r} is not an absolute http(s) URI with a path")
    path = match.group("path")
    base = base_path.rstrip("/")
    if base:
        if not path.startswith(base + "/"):
            raise InvalidInput(f"{uri!r} is not under {base_path!r}")
        path = path[len(base) :]
    return parse_digital_link_path(path)


# --- full GS1 Digital Link: build, parse, EPC URNs (sgtin, lgtin, sscc, sgln) --------------------------


@dataclass(frozen=True, slots=True)
class DigitalLink:
    """The GS1 keys of a Digital Link: a GTIN with CPV (AI 22) / lot (10) / serial (21), an SSCC, or a GLN
    with its extension (254). Values are decoded; unset parts are ``None``."""

    gtin: str | None = None
    cpv: str | None = None
    lot: str | None = None
    serial: str | None = None
    sscc: str | None = None
    gln: str | None = None
    gln_extension: str | None = None

    @property
    def path(self) -> str:
        """The canonical path: qualifiers in the standard order (22, 10, 21), values percent-encoded."""
        return digital_link_path(self)

    @property
    def uri(self) -> str:
        """The link on the canonical ``https://id.gs1.org`` host."""
        return GS1_DL_HOST + self.path


def digital_link_path(link: DigitalLink) -> str:
    """The canonical Digital Link path of ``link`` (``/01/{gtin14}[/22/{cpv}][/10/{lot}][/21/{serial}]``,
    ``/00/{sscc}`` or ``/414/{gln}[/254/{ext}]``). Raises InvalidInput naming the part that is wrong."""
    keys = [k for k in (link.gtin, link.sscc, link.gln) if k is not None]
    if len(keys) != 1:
        raise InvalidInput("a Digital Link has exactly one primary key: GTIN (01), SSCC (00) or GLN (414)")
    if link.sscc is not None:
        if any(v is not None for v in (link.cpv, link.lot, link.serial, link.gln_extension)):
            raise InvalidInput("an SSCC (00) takes no qualifiers", pointer="/00")
        return parcel_path(link.sscc)
    if link.gln is not None:
        if any(v is not None for v in (link.cpv, link.lot, link.serial)):
            raise InvalidInput("a GLN (414) takes only the extension 254", pointer="/414")
        path = f"/414/{validate_gln(link.gln, pointer='/414')}"
        if link.gln_extension is not None:
            ext = _validate_cset82(link.gln_extension, kind="GLN extension", max_length=20, pointer="/254")
            path += f"/254/{_encode(ext)}"
        return path
    assert link.gtin is not None
    if link.gln_extension is not None:
        raise InvalidInput("a GTIN (01) does not take the GLN extension 254", pointer="/254")
    path = f"/01/{normalize_gtin(link.gtin, pointer='/01')}"
    if link.cpv is not None:
        path += f"/22/{_encode(_validate_cset82(link.cpv, kind='CPV', max_length=20, pointer='/22'))}"
    if link.lot is not None:
        path += f"/10/{_encode(validate_lot(link.lot, pointer='/10'))}"
    if link.serial is not None:
        path += f"/21/{_encode(validate_serial(link.serial, pointer='/21'))}"
    return path


_QUALIFIERS = {"01": ("22", "10", "21"), "00": (), "414": ("254",)}


def parse_digital_link(value: str) -> DigitalLink:
    """Parse a Digital Link URI (any host, query and fragment ignored) or a raw path into its keys.

    Accepts ``/01/{gtin}`` with ``22``, ``10``, ``21`` in that order (each optional), ``/00/{sscc}`` and
    ``/414/{gln}[/254/{ext}]``; GTIN-8/12/13 are padded to 14 digits. Raises InvalidInput naming the part
    that is wrong (``pointer`` is the AI, e.g. ``/01`` for a bad check digit, ``/21`` for a bad serial).
    """
    if not isinstance(value, str):
        raise InvalidInput("a Digital Link must be a string")
    path = value
    if not value.startswith("/"):
        match = _URI_PATH.match(value)
        if match is None:
            raise InvalidInput(f"{value!r} is not an absolute http(s) URI or a path")
        path = match.group("path")
    else:
        path = re.split(r"[?#]", value, maxsplit=1)[0]
    body = path[1:].removesuffix("/")
    segments = body.split("/")
    # A resolver may sit under a path prefix: the keys start at the first primary-key AI.
    start = next((i for i, s in enumerate(segments) if s in _QUALIFIERS), None)
    if start is None:
        raise InvalidInput(f"{value!r} names no GS1 key: expected /01/ (GTIN), /00/ (SSCC) or /414/ (GLN)")
    segments = segments[start:]
    if len(segments) % 2 or not all(segments):
        raise InvalidInput(f"{value!r}: the path must be pairs of /AI/value with no empty segment")
    primary = segments[0]
    pairs = [(segments[i], segments[i + 1]) for i in range(2, len(segments), 2)]
    allowed = _QUALIFIERS[primary]
    position = -1
    for ai, _ in pairs:
        if ai not in allowed:
            raise InvalidInput(
                f"AI {ai} is not a qualifier of /{primary}/ (allowed: {', '.join(allowed) or 'none'})", pointer=f"/{ai}"
            )
        if allowed.index(ai) <= position:
            raise InvalidInput(
                f"AI {ai} is out of order: after /{primary}/ the order is {' '.join(allowed)}", pointer=f"/{ai}"
            )
        position = allowed.index(ai)
    key = _decode_segment(segments[1], what=f"AI {primary} value", pointer=f"/{primary}")
    values = {ai: _decode_segment(raw, what=f"AI {ai} value", pointer=f"/{ai}") for ai, raw in pairs}
    if primary == "00":
        return DigitalLink(sscc=validate_sscc(key, pointer="/00"))
    if primary == "414":
        ext = values.get("254")
        if ext is not None:
            _validate_cset82(ext, kind="GLN extension", max_length=20, pointer="/254")
        return DigitalLink(gln=validate_gln(key, pointer="/414"), gln_extension=ext)
    cpv = values.get("22")
    if cpv is not None:
        _validate_cset82(cpv, kind="CPV", max_length=20, pointer="/22")
    lot = values.get("10")
    serial = values.get("21")
    return DigitalLink(
        gtin=normalize_gtin(key, pointer="/01"),
        cpv=cpv,
        lot=validate_lot(lot, pointer="/10") if lot is not None else None,
        serial=validate_serial(serial, pointer="/21") if serial is not None else None,
    )


# EPC Tag Data Standard: characters a URN serial carries as they are; the rest of set 82 is %-escaped.
_URN_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.:;=!'()*+,")
_URN = re.compile(r"urn:epc:(?:id|class):(sgtin|lgtin|sscc|sgln):(\d+)\.(\d*)(?:\.(.*))?")


def _urn_escape(value: str) -> str:
    return "".join(ch if ch in _URN_SAFE else f"%{ord(ch):02X}" for ch in value)


def epc_urn_to_digital_link(urn: str) -> str:
    """The canonical Digital Link of an EPC URN: ``urn:epc:id:sgtin:…`` → ``/01/…/21/…``,
    ``urn:epc:class:lgtin:…`` → ``/01/…/10/…``, ``urn:epc:id:sscc:…`` → ``/00/…``, ``urn:epc:id:sgln:…`` →
    ``/414/…[/254/…]`` (extension ``0`` means none), on ``https://id.gs1.org``. The company prefix length is
    where the first dot is; check digits are computed. Raises InvalidInput naming the part that is wrong."""
    match = _URN.fullmatch(urn) if isinstance(urn, str) else None
    if match is None:
        raise InvalidInput(f"{urn!r} is not an sgtin, lgtin, sscc or sgln EPC URN")
    scheme, prefix, ref, rest = match.groups()
    if (scheme == "lgtin") != (urn.split(":")[2] == "class"):
        raise InvalidInput(f"{urn!r}: only lgtin is an EPC class URN (urn:epc:class:lgtin:…)")
    if not 6 <= len(prefix) <= 12:
        raise InvalidInput(f"{urn!r}: the GS1 company prefix has 6 to 12 digits, not {len(prefix)}")
    digits = {"sgtin": 13, "lgtin": 13, "sscc": 17, "sgln": 12}[scheme]
    if len(prefix) + len(ref) != digits:
        raise InvalidInput(f"{urn!r}: company prefix and reference must have {digits} digits together")
    needs_rest = scheme != "sscc"
    if needs_rest != (rest is not None):
        raise InvalidInput(f"{urn!r}: wrong number of '.'-separated parts for {scheme}")
    decoded = None
    if rest is not None:
        try:
            decoded = unquote(rest, errors="strict")
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"{urn!r}: bad percent-escape") from exc
    if scheme in ("sgtin", "lgtin"):
        body = ref[0] + prefix + ref[1:]
        gtin = body + str(gs1_check_digit(body))
        assert decoded is not None
        if scheme == "sgtin":
            return DigitalLink(gtin=gtin, serial=decoded).uri
        return DigitalLink(gtin=gtin, lot=decoded).uri
    if scheme == "sscc":
        body = ref[0] + prefix + ref[1:]
        return DigitalLink(sscc=body + str(gs1_check_digit(body))).uri
    body = prefix + ref
    assert decoded is not None
    return DigitalLink(gln=body + str(gs1_check_digit(body)), gln_extension=None if decoded == "0" else decoded).uri


def digital_link_to_epc_urn(link: str | DigitalLink, *, company_prefix_length: int) -> str:
    """The EPC URN of a Digital Link: GTIN+serial → sgtin, GTIN+lot → lgtin (class), SSCC → sscc, GLN
    [+254] → sgln (extension ``0`` when none). A Digital Link does not say how long the GS1 company prefix
    is, so ``company_prefix_length`` (6-12) must be given. Raises InvalidInput naming the part at fault."""
    parsed = parse_digital_link(link) if isinstance(link, str) else link
    if not isinstance(company_prefix_length, int) or not 6 <= company_prefix_length <= 12:
        raise InvalidInput(f"company_prefix_length must be 6 to 12, not {company_prefix_length!r}")
    n = company_prefix_length
    if parsed.sscc is not None:
        digits = parsed.sscc[:-1]
        return f"urn:epc:id:sscc:{digits[1 : 1 + n]}.{digits[0]}{digits[1 + n :]}"
    if parsed.gln is not None:
        digits = parsed.gln[:-1]
        ext = _urn_escape(parsed.gln_extension) if parsed.gln_extension is not None else "0"
        return f"urn:epc:id:sgln:{digits[:n]}.{digits[n:]}.{ext}"
    assert parsed.gtin is not None
    digits = parsed.gtin[:-1]
    key = f"{digits[1 : 1 + n]}.{digits[0]}{digits[1 + n :]}"
    if parsed.serial is not None:
        return f"urn:epc:id:sgtin:{key}.{_urn_escape(parsed.serial)}"
    if parsed.lot is not None:
        return f"urn:epc:class:lgtin:{key}.{_urn_escape(parsed.lot)}"
    raise InvalidInput("a GTIN link needs a serial (21) or a lot (10) to have an EPC URN", pointer="/01")


def parse_identifier(value: str) -> LotRef | ParcelRef | UnitRef:
    """The lot, parcel or unit a Digital Link URI (any host) or an EPC URN (lgtin, sscc, sgtin) names.

    EPCIS events may carry either form; both resolve to the same reference. Raises InvalidInput.
    """
    if isinstance(value, str) and value.startswith("urn:epc:"):
        value = epc_urn_to_digital_link(value)
    return parse_digital_link_uri(value)
