"""Security headers on pages and API answers, and pages that render hostile text as text."""

from __future__ import annotations

import base64
import hashlib
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

from api_support import GTIN, SHELF, ZONE, Api, Journey, Parties, declaration, sscc
from hypothesis import given
from hypothesis import strategies as st

from api.routes.scan import templates
from api.security import inline_blocks
from tracer.identifiers import lot_path

SCRIPT = "<script>alert('xss')</script>"
IMG = '"><img src=x onerror=alert(1)>'
LOT = "<script>1</script>"  # GS1 AI 10 (CSET 82) allows <, >, / and quotes, up to 20 characters
LOT_IMG = '"><img/onerror=1>'


class _Elements(HTMLParser):
    """The element names and the text of a page, as a browser's parser sees them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: set[str] = set()
        self.attributes: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attributes += [name for name, _ in attrs]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(html: str) -> _Elements:
    parser = _Elements()
    parser.feed(html)
    return parser


def _policy(response: object) -> dict[str, str]:
    header = response.headers["content-security-policy"]  # type: ignore[attr-defined]
    return {part.split(" ", 1)[0]: part.partition(" ")[2] for part in header.split("; ")}


def _assert_common_headers(response: object) -> None:
    headers = response.headers  # type: ignore[attr-defined]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"
    assert "geolocation=()" in headers["permissions-policy"] and "camera=()" in headers["permissions-policy"]
    policy = _policy(response)
    assert policy["default-src"] == "'none'" and policy["frame-ancestors"] == "'none'"
    assert policy["base-uri"] == "'none'" and policy["form-action"] == "'self'"
    assert "unsafe-inline" not in str(policy) and "unsafe-eval" not in str(policy)
    assert "script-src" not in policy  # default-src 'none': no script runs, inline or not


def _declare(api: Api, parties: Parties, **fields: str) -> tuple[str, str]:
    """The scan path and the id of a lot declared (and anchored) with ``fields``."""
    response = api.post("/lots", parties.enterprise, declaration(**fields))
    assert response.status_code == 202, response.text
    api.anchor()
    return lot_path(GTIN, fields.get("lot", "NZ-2026/11")), str(response.json()["lot_id"])


def test_the_scan_page_allows_its_own_inline_style_by_hash_and_nothing_else(api: Api, parties: Parties) -> None:
    response = api.get(_declare(api, parties)[0], headers={"Accept": "text/html"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    _assert_common_headers(response)
    styles = re.findall(r"<style>(.*?)</style>", response.text, re.DOTALL)
    assert styles, "the scan page inlines its CSS"
    expected = {"'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'" for s in styles}
    assert set(_policy(response)["style-src"].split()) == expected


def test_api_answers_and_problems_carry_the_headers(api: Api, parties: Parties) -> None:
    for response in (
        api.get("/healthz"),
        api.get(_declare(api, parties)[0], headers={"Accept": "application/json"}),
        api.get("/01/09421902960055/10/NOPE"),
        api.post("/lots", None, declaration()),
        api.post("/lots", parties.enterprise, {"gtin": "123"}),
    ):
        _assert_common_headers(response)
        assert "style-src" not in _policy(response)


def test_the_docs_page_runs_only_its_cdn_script_and_its_hashed_inline_one(api: Api) -> None:
    response = api.get("/docs")
    policy = _policy(response)
    inline = [s for s in re.findall(r"<script>(.*?)</script>", response.text, re.DOTALL) if s.strip()]
    assert inline
    hashes = {"'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'" for s in inline}
    assert set(policy["script-src"].split()) == {"https://cdn.jsdelivr.net"} | hashes
    assert policy["frame-ancestors"] == "'none'" and response.headers["x-frame-options"] == "DENY"


_TEXT = st.text(alphabet=st.characters(blacklist_characters="<", blacklist_categories=("Cs",)), max_size=30)


@given(pieces=st.lists(st.tuples(_TEXT, _TEXT, st.sampled_from(["", ' media="print"'])), max_size=5), tail=_TEXT)
def test_inline_blocks_finds_exactly_the_style_elements(pieces: list[tuple[str, str, str]], tail: str) -> None:
    page = "".join(f"{text}<style{attrs}>{css}</style>" for text, css, attrs in pieces) + tail + "<styles>x</styles>"
    assert inline_blocks(page.encode(), b"style") == [css.encode() for _, css, _ in pieces]


def test_every_page_template_is_autoescaped() -> None:
    for name in templates.env.list_templates():
        assert templates.env.autoescape(name) is True, name  # type: ignore[operator]


def test_a_lot_whose_text_fields_hold_markup_is_shown_as_text(api: Api, parties: Parties) -> None:
    path, lot_id = _declare(
        api, parties, product_name=SCRIPT, manufacturer=IMG, lot=LOT, declaration_number=LOT_IMG + LOT
    )
    assert api.post(f"/lots/{lot_id}/recall", parties.enterprise, {"reason": IMG + SCRIPT}).status_code == 202
    api.anchor()
    for lang in ("en", "zh"):
        response = api.get(f"{path}?lang={lang}", headers={"Accept": "text/html"})
        assert response.status_code == 200, response.text
        page = _parse(response.text)
        assert not page.tags & {"script", "img", "iframe", "object"}
        assert "onerror" not in page.attributes
        text = "".join(page.text)
        for shown in (SCRIPT, IMG, LOT, IMG + SCRIPT):
            assert shown in text, shown
        assert SCRIPT not in response.text and "<img" not in response.text
        assert "&lt;script&gt;" in response.text


def test_a_lot_number_with_markup_is_escaped_in_the_auditors_html_report(api: Api, parties: Parties) -> None:
    _declare(api, parties, lot=LOT_IMG)
    auditor = api.actor("auditor-1", "auditor")
    response = api.get("/audit", auditor, params={"format": "html", "lot": f"{GTIN}/{LOT_IMG}"})
    assert response.status_code == 200, response.text
    page = _parse(response.text)
    assert "img" not in page.tags and "onerror" not in page.attributes
    assert LOT_IMG in "".join(page.text)
    _assert_common_headers(response)


def test_a_lot_number_with_markup_stays_text_in_its_label_sheet(journey: Journey) -> None:
    api, parties = journey.api, journey.parties
    assert journey.declare(lot=LOT_IMG).status_code == 202
    for path, key, body in (
        ("entry", parties.warehouse, {"counted_quantity": 1000, "biz_location": ZONE}),
        ("inspection", parties.customs, {"result": "conformant"}),
        ("storage", parties.warehouse, {"storage_location": SHELF}),
    ):
        assert api.post(f"/lots/{journey.lot_id}/{path}", key, body).status_code == 202
    assert journey.split((sscc(7), 1)).status_code == 202
    response = api.get("/labels" + lot_path(GTIN, LOT_IMG) + ".svg", parties.warehouse)
    assert response.status_code == 200, response.text
    root = ET.fromstring(response.content)  # well-formed: the quote and brackets were escaped
    assert not [element for element in root.iter() if element.tag.endswith("img") or element.get("onerror")]
    assert f"(10) {LOT_IMG}" in [element.text for element in root.iter("{http://www.w3.org/2000/svg}text")][1]
    _assert_common_headers(response)
    assert _policy(response)["style-src"].startswith("'sha256-")  # the sheet's own <style>, by hash
