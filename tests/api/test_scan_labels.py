"""Printable A4 label sheets of a lot's parcels (a parcel's units: test_scan_units.py)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from api_support import GTIN, LOT, Journey, ProblemCheck, sscc

from tracer import identifiers, labels
from tracer.qr import qr_modules, qr_svg_path

SVG = "{http://www.w3.org/2000/svg}"


def _split(journey: Journey, count: int) -> list[str]:
    journey.to_stored()
    parcels = [sscc(100 + i) for i in range(count)]
    response = journey.split(*[(code, 1) for code in parcels])
    assert response.status_code == 202, response.text
    return parcels


def _sheet_path() -> str:
    return "/labels" + identifiers.lot_path(GTIN, LOT) + ".svg"


def test_a_sheet_shows_each_parcels_code_and_keys_on_a4(journey: Journey) -> None:
    parcels = _split(journey, 3)
    response = journey.api.get(_sheet_path(), journey.parties.warehouse)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("image/svg+xml")
    assert response.headers["x-total-pages"] == "1" and "link" not in response.headers
    root = ET.fromstring(response.content)
    assert (root.get("width"), root.get("height")) == ("210.0mm", "297.0mm")
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert texts[0::2] == [f"(00) {code}" for code in parcels]
    assert set(texts[1::2]) == {f"(01) {GTIN} (10) {LOT}"}
    titles = [t.text for t in root.iter(f"{SVG}title")]
    assert titles == [f"https://trace.example/00/{code}" for code in parcels]


def test_a_long_run_takes_several_sheets(journey: Journey) -> None:
    _split(journey, labels.LABELS_PER_PAGE + 2)
    first = journey.api.get(_sheet_path(), journey.parties.enterprise)
    assert first.headers["x-total-pages"] == "2" and 'rel="next"' in first.headers["link"]
    assert first.content.count(b"<title>") == labels.LABELS_PER_PAGE
    second = journey.api.get(_sheet_path() + "?page=2", journey.parties.enterprise)
    assert second.content.count(b"<title>") == 2


def test_sheets_need_an_api_key_of_a_labelling_role(journey: Journey, problem: ProblemCheck) -> None:
    _split(journey, 1)
    problem(journey.api.get(_sheet_path()), 401)
    problem(journey.api.get(_sheet_path(), journey.parties.payment), 403)


def test_a_sheet_past_the_last_or_not_svg_is_refused(journey: Journey, problem: ProblemCheck) -> None:
    _split(journey, 1)
    problem(journey.api.get(_sheet_path() + "?page=2", journey.parties.warehouse), 404)
    problem(journey.api.get("/labels" + identifiers.lot_path(GTIN, LOT), journey.parties.warehouse), 400)


def test_the_svg_path_draws_exactly_the_dark_modules() -> None:
    modules = qr_modules("https://trace.example/00/095212340000001007")
    size = len(modules)
    drawn = [[False] * size for _ in range(size)]
    for left, top, width in re.findall(r"M([\d.]+) ([\d.]+)h([\d.]+)v", qr_svg_path(modules, x=0, y=0, size=size)):
        for column in range(round(float(left)), round(float(left) + float(width))):
            drawn[round(float(top))][column] = True
    assert drawn == modules
