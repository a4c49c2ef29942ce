"""Helpers and fixtures for the API tests: the real app over an in-process eth-tester chain, on SQLite and PostgreSQL.

The outbox writer does not run in a thread here; tests call ``anchor()`` to drain it, so every step of a
test is deterministic. The same tests run against PostgreSQL (each in a schema of its own) when the
server answers, and fail instead of skipping when ``TRACER_REQUIRE_POSTGRES`` is set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from web3 import EthereumTesterProvider, Web3

from api.main import create_app
from tracer.chain.client import ChainClient
from tracer.config import DEV_DEPLOYER_KEY, Settings
from tracer.service import ADMIN_KEY_FILE, CUSTOMS_ADMIN_KEY_FILE, Service, open_service


@pytest.fixture
def w3() -> Web3:
    """A fresh in-process chain with anvil's first development key funded, as on anvil."""
    w3 = Web3(EthereumTesterProvider())
    deployer = w3.eth.account.from_key(DEV_DEPLOYER_KEY).address
    w3.eth.send_transaction({"from": w3.eth.accounts[0], "to": deployer, "value": 10**23})
    return w3


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """Settings of a throw-away deployment in ``tmp_path``."""
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        rpc_url="http://eth-tester.invalid",
        key_passphrase="test passphrase",
        public_url="https://trace.example",
    )


@pytest.fixture
def service(settings: Settings, w3: Web3) -> Iterator[Service]:
    """The opened service: platform actors created, registry deployed on the eth-tester chain."""
    service = open_service(settings, client=ChainClient(w3))
    service.writer.drain()
    yield service
    service.engine.dispose()


@dataclass
class Api:
    """A test client with helpers: keys of the platform actors, actor creation, anchoring."""

    http: TestClient
    service: Service
    admin_key: str
    customs_admin_key: str

    def post(self, path: str, key: str | None, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return self.http.post(path, json=body if body is not None else {}, headers=headers)

    def get(self, path: str, key: str | None = None, **kwargs: Any) -> Any:
        headers = kwargs.pop("headers", {})
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return self.http.get(path, headers=headers, **kwargs)

    def actor(self, name: str, role: str) -> str:
        """Creates an actor through the API and returns its API key."""
        key = self.customs_admin_key if role == "customs" else self.admin_key
        response = self.post("/actors", key, {"name": name, "role": role})
        assert response.status_code == 201, response.text
        return str(response.json()["api_key"])

    def anchor(self) -> None:
        """Runs the outbox writer until nothing is pending."""
        self.service.writer.drain(timeout=60)


@pytest.fixture
def api(service: Service, settings: Settings) -> Iterator[Api]:
    """The app over ``service``, without the writer thread."""
    app = create_app(service, run_writer=False)
    with TestClient(app) as http:
        yield Api(
            http=http,
            service=service,
            admin_key=(settings.data_dir / ADMIN_KEY_FILE).read_text().strip(),
            customs_admin_key=(settings.data_dir / CUSTOMS_ADMIN_KEY_FILE).read_text().strip(),
        )


@dataclass
class Parties:
    """The API keys of one actor per role."""

    enterprise: str
    warehouse: str
    customs: str
    carrier: str
    payment: str


@pytest.fixture
def parties(api: Api) -> Parties:
    """One actor per role, granted and funded on chain."""
    parties = Parties(**{role: api.actor(f"{role}-1", role) for role in Parties.__dataclass_fields__})
    api.anchor()
    return parties


GTIN = "09421902960055"  # a valid GTIN-14 (check digit 5)
LOT = "NZ-2026/11"


def declaration(**overrides: Any) -> dict[str, Any]:
    """A valid advance declaration of 1,000 cans of infant formula from New Zealand."""
    body = {
        "gtin": GTIN,
        "lot": LOT,
        "product_name": "Infant formula stage 1, 900 g",
        "hs_code": "190110",
        "origin_country": "NZ",
        "manufacturer": "Waikato Dairy Ltd",
        "quantity": 1000,
        "expiry": "2028-06-30",
        "declaration_number": "DEC-2026-0001",
    }
    body.update(overrides)
    return body


ZONE = "https://id.gs1.org/414/9521234000006"
SHELF = "https://id.gs1.org/414/9521234000006/254/A-01-03"
CONSIGNEE = {"name": "李娜", "id_number": "110101199003074518", "phone": "13800138000", "address": "北京市朝阳区"}


def order(sscc: str, *, quantity: int = 2, total: str = "398.00", **overrides: Any) -> dict[str, Any]:
    """A consumer order covering ``quantity`` cans."""
    body = {
        "order_number": f"ORD-{sscc[-6:]}",
        "items": [{"gtin": GTIN, "quantity": quantity, "unit_price": "199.00"}],
        "total": total,
        "consignee": CONSIGNEE,
    }
    body.update(overrides)
    return body


def payment(sscc: str, *, amount: str = "398.00", **overrides: Any) -> dict[str, Any]:
    """The payment of ``order(sscc)`` by its consignee."""
    body = {
        "payment_number": f"PAY-{sscc[-6:]}",
        "order_number": f"ORD-{sscc[-6:]}",
        "amount": amount,
        "payer": {"name": CONSIGNEE["name"], "id_number": CONSIGNEE["id_number"]},
    }
    body.update(overrides)
    return body


def waybill(sscc: str, **overrides: Any) -> dict[str, Any]:
    """The waybill of ``sscc`` for ``order(sscc)``."""
    body = {"waybill_number": f"WB-{sscc[-6:]}", "order_number": f"ORD-{sscc[-6:]}", "consignee": CONSIGNEE}
    body.update(overrides)
    return body


def sscc(serial: int) -> str:
    """A valid SSCC with extension digit 0, company prefix 9521234 and ``serial``."""
    body = f"0{9521234}{serial:09d}"
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return body + str((10 - total % 10) % 10)


@dataclass
class Journey:
    """A lot taken through the journey step by step."""

    api: Api
    parties: Parties
    lot_id: str = ""

    def declare(self, **overrides: Any) -> Any:
        response = self.api.post("/lots", self.parties.enterprise, declaration(**overrides))
        if response.status_code == 202:
            self.lot_id = response.json()["lot_id"]
        return response

    def to_stored(self, counted: int = 1000) -> None:
        for response in (
            self.declare(),
            self.api.post(
                f"/lots/{self.lot_id}/entry",
                self.parties.warehouse,
                {"counted_quantity": counted, "biz_location": ZONE},
            ),
            self.api.post(f"/lots/{self.lot_id}/inspection", self.parties.customs, {"result": "conformant"}),
            self.api.post(f"/lots/{self.lot_id}/storage", self.parties.warehouse, {"storage_location": SHELF}),
        ):
            assert response.status_code == 202, response.text

    def split(self, *parcels: tuple[str, int]) -> Any:
        body = {"parcels": [{"sscc": code, "quantity": quantity} for code, quantity in parcels]}
        return self.api.post(f"/lots/{self.lot_id}/parcels", self.parties.warehouse, body)

    def documents(self, code: str, quantity: int = 2) -> None:
        for response in (
            self.api.post(f"/parcels/{code}/order", self.parties.enterprise, order(code, quantity=quantity)),
            self.api.post(f"/parcels/{code}/payment", self.parties.payment, payment(code)),
            self.api.post(f"/parcels/{code}/waybill", self.parties.carrier, waybill(code)),
        ):
            assert response.status_code == 202, response.text

    def release(self, code: str) -> Any:
        return self.api.post(f"/parcels/{code}/release", self.parties.customs)

    def deliver(self, code: str) -> Any:
        return self.api.post(f"/parcels/{code}/delivery", self.parties.carrier)


@pytest.fixture
def journey(api: Api, parties: Parties) -> Journey:
    """A journey helper over the API."""
    return Journey(api=api, parties=parties)


ProblemCheck = Callable[..., dict[str, Any]]


@pytest.fixture
def problem() -> ProblemCheck:
    """``problem(response, 409)`` asserts an RFC 7807 answer with that status and returns its body."""

    def check(response: Any, status: int, pointer: str | None = None) -> dict[str, Any]:
        assert response.status_code == status, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        body = response.json()
        assert {"type", "title", "status", "detail"} <= set(body)
        assert body["status"] == status
        if pointer is not None:
            assert pointer in [error["pointer"] for error in body.get("errors", [])], body
        return dict(body)

    return check
