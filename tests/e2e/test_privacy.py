"""No personal data on chain, in events or on the scan pages, in any encoding (issue 8, "Private and locked").

The service runs as a user runs it (``python -m api``, its own anvil, one-second blocks). The demo journey runs
as shipped, then again with consignees in Latin script and with another Chinese one (names, ID numbers, phone
numbers, addresses). Then every transaction's calldata and every log of every block, the scan JSON and HTML,
the proof bundles, the EPCIS query results and the audit report are searched for those values in every
encoding ``privacy_support`` knows: zero occurrences. The same search over the service's own database, where
the values legitimately live, must find them: the scan is not blind.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from Crypto.Hash import keccak
from eth_abi import encode
from hypothesis import given
from hypothesis import strategies as st
from privacy_support import Leak, find_personal_data, needles
from test_service_e2e import Service

from tracer import identifiers
from tracer.chain.anvil import AnvilSupervisor
from tracer.config import PROJECT_ROOT


def _load_demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tracer_demo_script", PROJECT_ROOT / "scripts" / "demo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


demo = _load_demo()

LATIN = {
    "name": "Olivia Martínez-Okafor",
    "id_number": "G48213957",
    "phone": "+86 139 1024 7788",
    "address": "Flat 12B, 88 Jianguo Road, Chaoyang District, Beijing 100022",
}
CHINESE = {
    "name": "欧阳振华",
    "id_number": "44030419850612701X",
    "phone": "0755-8832 1966",
    "address": "广东省深圳市南山区科技园深南大道 10000 号",
}
PEOPLE = [demo.CONSIGNEE, LATIN, CHINESE]
EVENTS_PER_PAGE = 1000  # every event of the three journeys on one page
PERSONAL_VALUES = [value for person in PEOPLE for value in person.values()]


# -- the scanner finds what it must (no chain needed) ---------------------------------------------------------


def _planted(value: str) -> dict[str, bytes]:
    """``value`` as code might have put it into calldata, a log or a page, each through a library of its own."""
    document = {"consignee": {"name": value}, "order": "ORD-1"}
    as_json = json.dumps(document).encode()
    utf8 = value.encode()
    planted = {
        "abi string": encode(["string"], [value]),
        "abi bytes": encode(["uint256", "bytes"], [7, utf8]),
        "json ascii": as_json,
        "json utf-8": json.dumps(document, ensure_ascii=False).encode(),
        "hex of json": ("0x" + json.dumps(document, ensure_ascii=False).encode().hex()).encode(),
        "HEX of utf-8": utf8.hex().upper().encode(),
        "base64 of json": base64.b64encode(as_json),
        "base64 shifted": base64.b64encode(b"x" + utf8 + b"y"),
        "urlsafe base64": base64.urlsafe_b64encode(b"ab" + json.dumps(document, ensure_ascii=False).encode()),
        "utf-16 page": json.dumps(document, ensure_ascii=False).encode("utf-16"),
        "query": urlencode({"q": value}).encode(),
        "html refs": f"<td>{value}</td>".encode("ascii", "xmlcharrefreplace"),
        "unsalted keccak": encode(["bytes32"], [keccak.new(digest_bits=256, data=utf8).digest()]),
        "unsalted sha-256": hashlib.sha256(utf8).hexdigest().encode(),
        "upper case": value.upper().encode(),
        "lower case in utf-16": value.lower().encode("utf-16-le"),
    }
    if value.isdigit():
        planted["abi uint"] = encode(["uint256"], [int(value)])
    return planted


@pytest.mark.parametrize("value", PERSONAL_VALUES)
def test_the_scanner_finds_each_personal_value_planted_in_every_encoding(value: str) -> None:
    for how, planted in _planted(value).items():
        haystack = b"\x00\x13 random prefix \xff" + planted + b"\x01 random suffix"
        assert find_personal_data({how: haystack}, [value]), f"{value!r} planted as {how} was not found"


@given(
    value=st.text(st.characters(codec="utf-8", categories=["L", "N"]), min_size=5, max_size=30),
    prefix=st.binary(max_size=40),
    suffix=st.binary(max_size=40),
)
def test_the_scanner_finds_any_value_inside_any_base64_blob(value: str, prefix: bytes, suffix: bytes) -> None:
    blob = base64.b64encode(prefix + value.encode() + suffix)
    assert find_personal_data({"blob": blob}, [value])


def test_the_scanner_does_not_see_a_salted_commitment_or_unrelated_values() -> None:
    value = demo.CONSIGNEE["id_number"]
    commitment = hashlib.sha256(b"per-record secret salt" + value.encode()).digest()
    haystacks = {"commitment": commitment, "hex": commitment.hex().encode(), "other": b"110101199003074519"}
    assert find_personal_data(haystacks, [value]) == []
    assert all(len(n.data) >= 4 for v in PERSONAL_VALUES for n in needles(v))


# -- the service ---------------------------------------------------------------------------------------------


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    """The service on a chain of its own (automine, so the walk from genesis sees only this test's blocks)."""
    node = AnvilSupervisor.in_directory(tmp_path / "chain", block_time=None)
    service = Service(tmp_path / "data")
    service.env["TRACER_RPC_URL"] = node.rpc_url
    with node:
        yield service
        service.stop()


def _rpc(url: str, method: str, *params: Any) -> Any:
    answer = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}, timeout=30)
    body = answer.json()
    assert "error" not in body, body
    return body["result"]


def _chain(rpc: str) -> dict[str, bytes]:
    """Every transaction's calldata and every log (topics and data) of every block from genesis."""
    haystacks: dict[str, bytes] = {}
    head = int(_rpc(rpc, "eth_blockNumber"), 16)
    for number in range(head + 1):
        for tx in _rpc(rpc, "eth_getBlockByNumber", hex(number), True)["transactions"]:
            haystacks[f"block {number} tx {tx['hash']} calldata"] = bytes.fromhex(tx["input"][2:])
    for entry in _rpc(rpc, "eth_getLogs", {"fromBlock": "0x0", "toBlock": hex(head)}):
        raw = b"".join(bytes.fromhex(part[2:]) for part in [*entry["topics"], entry["data"]])
        haystacks[f"block {int(entry['blockNumber'], 16)} log {entry['logIndex']} of {entry['address']}"] = raw
    assert head > 0 and len(haystacks) > 50
    return haystacks


def _pages(base: str, scan_urls: list[str], admin_key: str, auditor_key: str) -> dict[str, bytes]:
    """What the service shows: scans (JSON and HTML) and proofs of each lot and parcel, events, the audit."""
    pages: dict[str, bytes] = {}
    json_only = {"Accept": "application/json"}
    with httpx.Client(timeout=120) as client:
        for scan_url in scan_urls:
            scan = client.get(scan_url, headers=json_only).json()
            lot_url = base + identifiers.lot_path(scan["product"]["gtin"], scan["product"]["lot"])
            for url in (scan_url, lot_url):
                pages[f"scan JSON {url}"] = client.get(url, headers=json_only).content
                pages[f"scan HTML {url}"] = client.get(url, headers={"Accept": "text/html"}).content
                proof = json.loads(pages[f"scan JSON {url}"])["links"]["proof"]
                pages[f"proof {proof}"] = client.get(proof).content
        for path, key in ((f"/events?perPage={EVENTS_PER_PAGE}", admin_key), ("/audit", auditor_key),
                          ("/audit?format=html", auditor_key)):  # fmt: skip
            answer = client.get(base + path, headers={"Authorization": f"Bearer {key}"})
            assert answer.status_code == 200, answer.text
            pages[path] = answer.content
    return pages


def _report(leaks: list[Leak]) -> str:
    return "\n".join(f"{leak.value!r} as {leak.encoding} in {leak.where} at {leak.offset}" for leak in leaks[:20])


@pytest.mark.anvil
def test_no_personal_value_reaches_the_chain_the_events_or_the_pages(
    service: Service, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    service.start()
    shipped = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "scripts/demo.py")], env=service.env, capture_output=True, timeout=300
    )
    assert shipped.returncode == 0, shipped.stderr.decode()
    scan_urls = [shipped.stdout.decode().strip().splitlines()[-1]]
    for variable in ("TRACER_API_URL", "TRACER_DATA_DIR"):
        monkeypatch.setenv(variable, service.env[variable])
    clients: list[Any] = []

    class ClosedAfterwards(demo.Client):  # type: ignore[name-defined,misc]
        def __init__(self, base_url: str) -> None:
            super().__init__(base_url)
            clients.append(self.http)

    monkeypatch.setattr(demo, "Client", ClosedAfterwards)
    try:
        for person in (LATIN, CHINESE):
            monkeypatch.setattr(demo, "CONSIGNEE", person)
            capsys.readouterr()
            assert demo.main() == 0
            scan_urls.append(capsys.readouterr().out.strip().splitlines()[-1])
    finally:
        for client in clients:
            client.close()

    base = f"http://127.0.0.1:{service.port}"
    admin_key = (service.data_dir / "admin-api-key").read_text().strip()
    auditor = httpx.post(
        base + "/actors",
        json={"name": "privacy-auditor", "role": "auditor"},
        headers={"Authorization": f"Bearer {admin_key}"},
        timeout=30,
    )
    assert auditor.status_code == 201, auditor.text
    haystacks = _chain(service.env["TRACER_RPC_URL"])
    haystacks |= _pages(base, scan_urls, admin_key, auditor.json()["api_key"])
    assert len(scan_urls) == 3

    leaks = find_personal_data(haystacks, PERSONAL_VALUES)
    assert leaks == [], _report(leaks)

    # The control: the database, where personal data lives (erasable, off chain), holds every person's values.
    service.interrupt()
    database = b"".join(path.read_bytes() for path in service.data_dir.glob("tracer.db*"))
    found = {leak.value for leak in find_personal_data({"database": database}, PERSONAL_VALUES)}
    assert {person["name"] for person in PEOPLE} | {person["id_number"] for person in PEOPLE} <= found
