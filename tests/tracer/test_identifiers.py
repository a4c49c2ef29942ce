"""GS1 identifiers: check digits, chain ids, Digital Link paths (golden vectors and properties)."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from eth_utils import keccak
from hypothesis import given
from hypothesis import strategies as st

from tracer.exceptions import InvalidInput
from tracer.identifiers import (
    LotRef,
    ParcelRef,
    UnitRef,
    gln_location_uri,
    gs1_check_digit,
    lot_class_uri,
    lot_id,
    lot_path,
    normalize_gtin,
    parcel_id,
    parcel_path,
    parcel_uri,
    parse_digital_link_path,
    parse_digital_link_uri,
    unit_id,
    unit_path,
    validate_lot,
    validate_sscc,
)

CSET82 = "!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
GTIN = "09421902960017"
SSCC = "106141412345678908"

lots = st.text(alphabet=CSET82, min_size=1, max_size=20)


def with_check_digit(body: str) -> str:
    return body + str(gs1_check_digit(body))


# --- golden vectors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "digit"),
    [("950110153100", 0), ("9501234", 6), ("400638133393", 1), ("0942190296001", 7), ("10614141234567890", 8)],
)
def test_check_digit_matches_gs1_examples(body: str, digit: int) -> None:
    assert gs1_check_digit(body) == digit


@pytest.mark.parametrize(
    ("value", "gtin14"),
    [
        ("96385074", "00000096385074"),  # GTIN-8
        ("036000291452", "00036000291452"),  # GTIN-12 (UPC-A)
        ("9421902960017", "09421902960017"),  # GTIN-13
        ("09421902960017", "09421902960017"),  # GTIN-14
        ("19421902960014", "19421902960014"),  # GTIN-14, packaging indicator 1
    ],
)
def test_normalize_gtin_pads_every_length_to_14_digits(value: str, gtin14: str) -> None:
    assert normalize_gtin(value) == gtin14


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("4006381333932", "check digit should be 1, not 2"),
        ("9421902960010", "check digit should be 7, not 0"),
        ("12345", "has 5 digits; expected 8 or 12 or 13 or 14"),
        ("94219029600A7", "only the digits 0-9"),
        (" 9421902960017", "only the digits 0-9"),
        ("٩٤٢١٩٠٢٩٦٠٠١٧", "only the digits 0-9"),  # Arabic-Indic digits are decimal, not ASCII
        ("00000000", "all zeros"),
    ],
)
def test_normalize_gtin_names_the_problem(value: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        normalize_gtin(value)


def test_normalize_gtin_rejects_non_strings() -> None:
    with pytest.raises(InvalidInput, match="string"):
        normalize_gtin(9421902960017)  # type: ignore[arg-type]


def test_validate_sscc_accepts_valid_and_names_bad_check_digit() -> None:
    assert validate_sscc(SSCC) == SSCC
    with pytest.raises(InvalidInput, match="check digit should be 8, not 7"):
        validate_sscc("106141412345678907")
    with pytest.raises(InvalidInput, match="expected 18"):
        validate_sscc("1061414123456789")


def test_keccak_backend_matches_the_known_empty_string_vector() -> None:
    assert keccak(b"").hex() == "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"


def test_chain_ids_are_keccak_of_the_element_strings() -> None:
    assert lot_id(GTIN, "L/1") == keccak(b"01" + GTIN.encode() + b"10L/1")
    assert parcel_id(SSCC) == keccak(b"00" + SSCC.encode())
    assert unit_id(GTIN, "S1") == keccak(b"01" + GTIN.encode() + b"21S1")
    # A GTIN-13 names the same lot as its GTIN-14 form.
    assert lot_id("9421902960017", "L/1") == lot_id(GTIN, "L/1")


def test_lot_id_golden_vector() -> None:
    assert lot_id(GTIN, "NZ2024-001").hex() == keccak(text="0109421902960017" + "10NZ2024-001").hex()
    assert len(lot_id(GTIN, "NZ2024-001")) == 32


def test_paths_and_uris_golden() -> None:
    assert lot_path("9421902960017", "L/1%x") == "/01/09421902960017/10/L%2F1%25x"
    assert unit_path(GTIN, "A+B") == "/01/09421902960017/21/A%2BB"
    assert parcel_path(SSCC) == "/00/106141412345678908"
    assert lot_class_uri(GTIN, "L1") == "https://id.gs1.org/01/09421902960017/10/L1"
    assert parcel_uri(SSCC) == "https://id.gs1.org/00/106141412345678908"
    assert gln_location_uri("4012345000245", "ZONE/A") == "https://id.gs1.org/414/4012345000245/254/ZONE%2FA"


@pytest.mark.parametrize(
    ("raw", "ref"),
    [
        ("/01/09421902960017/10/L%2F1", LotRef(GTIN, "L/1")),
        ("/01/9421902960017/10/L1/", LotRef(GTIN, "L1")),
        ("/01/09421902960017/10/a%25b", LotRef(GTIN, "a%b")),
        ("/01/09421902960017/10/A+B", LotRef(GTIN, "A+B")),  # '+' is a literal plus in a path
        ("/01/09421902960017/21/S%3A1", UnitRef(GTIN, "S:1")),
        ("/01/09421902960017/10/L1/21/S1", UnitRef(GTIN, "S1", "L1")),
        ("/00/106141412345678908", ParcelRef(SSCC)),
    ],
)
def test_parse_digital_link_path_golden(raw: str, ref: object) -> None:
    assert parse_digital_link_path(raw) == ref


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "must start with '/'"),
        ("/", "pairs"),
        ("/01/09421902960017", "expected /10/"),
        ("/01/09421902960017/10/", "pairs"),
        ("/01/09421902960017/10/a/b", "pairs"),  # an unencoded '/' inside a lot
        ("/01/09421902960017/10/%ZZ", "not a valid percent-encoded"),
        ("/01/09421902960017/10/A%20B", "' '"),  # spaces are not in set 82
        ("/01/09421902960017/10/A B", "not a valid percent-encoded"),
        ("/01/09421902960017/10/%C3%A9", "not in the GS1 character set 82"),
        ("/01/09421902960017/10/%FF", "UTF-8"),
        ("/01/09421902960017/10/" + "A" * 21, "at most 20"),
        ("/01/09421902960017/22/X", "expected /10/"),
        ("/01/09421902960017/21/S/10/L", "expected /10/"),
        ("/01/9421902960010/10/L1", "check digit should be 7"),
        ("/00/106141412345678907", "check digit should be 8"),
        ("/00/106141412345678908/10/L", "no qualifiers"),
        ("/02/09421902960017/10/L1", "must start with /01/"),
        ("/01/09421902960017/10/L1?x=1", "query"),
    ],
)
def test_parse_digital_link_path_rejects_malformed(raw: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_digital_link_path(raw)


def test_parse_error_points_at_the_part_at_fault() -> None:
    with pytest.raises(InvalidInput) as info:
        parse_digital_link_path("/01/9421902960010/10/L1")
    assert info.value.pointer == "/01"
    with pytest.raises(InvalidInput) as info:
        parse_digital_link_path("/01/09421902960017/10/A%20B")
    assert info.value.pointer == "/10"


def test_parse_digital_link_uri_strips_host_base_path_and_query() -> None:
    uri = "http://127.0.0.1:8000/t/01/09421902960017/10/L%2F1?linkType=all"
    assert parse_digital_link_uri(uri, base_path="/t") == LotRef(GTIN, "L/1")
    assert parse_digital_link_uri("https://id.gs1.org/00/106141412345678908") == ParcelRef(SSCC)
    with pytest.raises(InvalidInput):
        parse_digital_link_uri("not a uri")


def test_refs_expose_their_canonical_path_and_id() -> None:
    ref = parse_digital_link_path("/01/9421902960017/10/L%2f1")
    assert ref.path == "/01/09421902960017/10/L%2F1"
    assert ref.id == lot_id(GTIN, "L/1")


# --- properties --------------------------------------------------------------------------------------


@given(st.sampled_from([7, 11, 12, 13]).flatmap(lambda n: st.text("0123456789", min_size=n, max_size=n)))
def test_check_digit_roundtrip(body: str) -> None:
    gtin = with_check_digit(body)
    if set(gtin) == {"0"}:
        return
    assert normalize_gtin(gtin) == gtin.rjust(14, "0")
    for wrong in set("0123456789") - {gtin[-1]}:
        with pytest.raises(InvalidInput, match=f"check digit should be {gtin[-1]}"):
            normalize_gtin(gtin[:-1] + wrong)


@given(st.text("0123456789", min_size=17, max_size=17))
def test_sscc_path_roundtrip(body: str) -> None:
    sscc = with_check_digit(body)
    assert parse_digital_link_path(parcel_path(sscc)) == ParcelRef(sscc)


@given(lot=lots)
def test_lot_path_roundtrip(lot: str) -> None:
    assert parse_digital_link_path(lot_path(GTIN, lot)) == LotRef(GTIN, lot)


@given(serial=lots)
def test_unit_path_roundtrip(serial: str) -> None:
    assert parse_digital_link_path(unit_path(GTIN, serial)) == UnitRef(GTIN, serial)


@given(lot=lots)
def test_parse_accepts_any_valid_percent_encoding(lot: str) -> None:
    # Sub-delimiters may stay literal in a path; '/', '%', '?', '#' and quotes may not.
    raw = "/01/" + GTIN + "/10/" + quote(lot, safe="!$&'()*+,;=:@")
    assert parse_digital_link_path(raw) == LotRef(GTIN, lot)


@given(lot=lots)
def test_lot_path_has_no_raw_reserved_characters(lot: str) -> None:
    segment = lot_path(GTIN, lot).split("/")[-1]
    assert "/" not in segment and all(ch.isalnum() or ch in "-._%" for ch in segment)


@given(
    prefix=st.text(alphabet=CSET82, max_size=5),
    bad=st.characters(blacklist_characters=CSET82, blacklist_categories=("Cs",)),
    suffix=st.text(alphabet=CSET82, max_size=5),
)
def test_lots_outside_set_82_are_rejected(prefix: str, bad: str, suffix: str) -> None:
    with pytest.raises(InvalidInput, match="character set 82"):
        validate_lot(prefix + bad + suffix)
    with pytest.raises(InvalidInput):
        parse_digital_link_path("/01/" + GTIN + "/10/" + quote(prefix + bad + suffix, safe=""))


def test_spaces_are_never_allowed_in_lots() -> None:
    for lot in (" ", "A B", "AB ", "\tAB"):
        with pytest.raises(InvalidInput):
            lot_path(GTIN, lot)
