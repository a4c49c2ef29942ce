"""The scan page in a real Chromium on a phone-sized screen, against a real service and chain: what a
consumer sees for an honest parcel and for one tin's own code (zh and en), a claimed and then copied code,
a recall, records altered in the database, and the node down."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_support import PHONE, RunningService, delivered_lot, run_service
from playwright.sync_api import Page, expect

from tracer.chain.anvil import AnvilSupervisor
from tracer.epcis import event_hash

pytestmark = [pytest.mark.browser, pytest.mark.anvil]


@pytest.fixture
def phone(browser: Any, service: RunningService) -> Iterator[Page]:
    """A fresh phone (its own cookies: a distinct device) set to Chinese, that may talk to the service only."""
    yield from _phone(browser, service, "zh-CN")


def _phone(browser: Any, service: RunningService, locale: str) -> Iterator[Page]:
    context = browser.new_context(locale=locale, **PHONE)
    page = context.new_page()
    foreign: list[str] = []
    page.on("request", lambda r: None if r.url.startswith((service.url, "data:")) else foreign.append(r.url))
    yield page
    context.close()
    assert not foreign, f"the page fetched from elsewhere: {foreign}"  # no CDN, no web font, nothing


def _shot(page: Page, directory: Path, name: str) -> None:
    page.screenshot(path=directory / f"{name}.png", full_page=True)


def test_an_honest_parcel_reads_verified_in_chinese_then_english(
    phone: Page, service: RunningService, screenshots: Path
) -> None:
    lot = delivered_lot(service)
    phone.goto(lot.scan_url(lot.parcels[0]))
    badge = phone.locator("[data-status]")
    expect(badge).to_have_attribute("data-status", "verified")
    expect(badge).to_contain_text("已通过区块链核验")
    expect(phone.locator("li[data-step=inspection]")).to_contain_text("海关检验检疫 · 合格")
    expect(phone.locator("li[data-step=release]")).to_contain_text("海关放行")
    expect(phone.locator("li.verified")).to_have_count(10)
    expect(phone.locator("[data-test=recall], [data-test=clone]")).to_have_count(0)
    _shot(phone, screenshots, "scan-verified-zh")

    phone.get_by_role("link", name="English").click()
    expect(badge).to_contain_text("Verified on the blockchain")
    expect(phone.locator("li[data-step=delivery]")).to_contain_text("Delivered")
    _shot(phone, screenshots, "scan-verified-en")
    phone.goto(lot.scan_url(lot.parcels[0]))  # the switch is remembered
    expect(phone.locator("html")).to_have_attribute("lang", "en")


def test_the_proof_saved_from_the_page_verifies_against_the_node_alone(
    phone: Page, service: RunningService, anvil: str, tmp_path: Path
) -> None:
    lot = delivered_lot(service)
    registry = service.call("GET", "/healthz", expect=200)["registry"]
    phone.goto(lot.scan_url(lot.parcels[0]))
    with phone.expect_download() as download:
        phone.locator("[data-test=proof]").click()
    saved = tmp_path / "proof.json"
    download.value.save_as(saved)
    verify = [sys.executable, "-m", "tracer.cli", "verify", str(saved), "--rpc", anvil, "--registry", registry]
    result = subprocess.run(verify, capture_output=True, timeout=60, env={**service.env, "TRACER_RPC_URL": anvil})
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert result.stdout.decode().startswith("verified")


def test_a_tins_own_code_reads_verified_in_chinese_then_english_and_its_proof_verifies(
    phone: Page, service: RunningService, anvil: str, screenshots: Path, tmp_path: Path
) -> None:
    lot = delivered_lot(service)
    serial = lot.units[lot.parcels[0]][1]
    phone.goto(lot.unit_url(serial))
    badge = phone.locator("[data-status]")
    expect(badge).to_have_attribute("data-status", "verified")
    expect(badge).to_contain_text("已通过区块链核验")
    expect(phone.locator("[data-test=serial]")).to_have_text(serial)
    expect(phone.locator("li[data-step=split]")).to_contain_text("分拨装入包裹")
    expect(phone.locator("li.verified")).to_have_count(10)
    expect(phone.get_by_role("button", name="确认已签收")).to_be_visible()
    _shot(phone, screenshots, "scan-unit-zh")

    phone.get_by_role("link", name="English").click()
    expect(badge).to_contain_text("Verified on the blockchain")
    expect(phone.locator("[data-test=claim]")).to_contain_text("Did you receive this item?")
    _shot(phone, screenshots, "scan-unit-en")

    with phone.expect_download() as download:
        phone.locator("[data-test=proof]").click()
    saved = tmp_path / "unit-proof.json"
    download.value.save_as(saved)
    assert json.loads(saved.read_text())["unit"]["serial"] == serial
    registry = service.call("GET", "/healthz", expect=200)["registry"]
    verify = [sys.executable, "-m", "tracer.cli", "verify", str(saved), "--rpc", anvil, "--registry", registry]
    result = subprocess.run(verify, capture_output=True, timeout=60, env={**service.env, "TRACER_RPC_URL": anvil})
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def test_a_claimed_code_scanned_by_another_phone_warns_of_a_copy(
    browser: Any, phone: Page, service: RunningService, screenshots: Path
) -> None:
    lot = delivered_lot(service, parcels=2, delivered=1)
    phone.goto(lot.scan_url(lot.parcels[1]))  # not delivered yet: nothing to claim
    expect(phone.locator("[data-test=claim]")).to_contain_text("送达后")

    phone.goto(lot.scan_url(lot.parcels[0]))
    phone.get_by_role("button", name="确认已签收").click()
    expect(phone.locator("[data-test=claim]")).to_contain_text("您已确认签收")
    expect(phone.locator("[data-test=clone]")).to_have_count(0)  # the claimer may look again
    phone.reload()
    expect(phone.locator("[data-test=clone]")).to_have_count(0)
    _shot(phone, screenshots, "scan-claimed-zh")

    for other in _phone(browser, service, "zh-CN"):
        other.goto(lot.scan_url(lot.parcels[0]))
        warning = other.locator("[data-test=clone]")
        expect(warning).to_be_visible()
        expect(warning).to_contain_text("此二维码可能被复制")
        expect(other.locator("[data-test=claim]")).to_contain_text("收件人已确认签收")
        _shot(other, screenshots, "scan-clone-warning-zh")

    scan = service.call("GET", f"/00/{lot.parcels[0]}", expect=200)
    assert scan["clone_warning"]["reason"] == "scanned_after_claim"
    assert scan["clone_warning"]["scans_after_claim"] >= 2


def test_a_recall_banner_tops_the_page(phone: Page, service: RunningService, screenshots: Path) -> None:
    lot = delivered_lot(service)
    lot.recall("三聚氰胺超标 / melamine above the limit")
    phone.goto(lot.scan_url(lot.parcels[0]))
    banner = phone.locator("[data-test=recall]")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("该批次商品已被召回")
    expect(banner).to_contain_text("三聚氰胺超标")
    banner_box, badge_box = banner.bounding_box(), phone.locator("[data-status]").bounding_box()
    assert banner_box and badge_box and banner_box["y"] < badge_box["y"]
    _shot(phone, screenshots, "scan-recalled-zh")


def test_an_event_altered_in_the_database_reads_tampered(
    phone: Page, service: RunningService, screenshots: Path
) -> None:
    lot = delivered_lot(service)
    with sqlite3.connect(service.data_dir / "tracer.db") as db:
        row = db.execute(
            "SELECT event.id, event.payload FROM event JOIN lot ON lot.id = event.lot_pk "
            "WHERE lot.lot_id = ? AND event.step = 'entry'",
            (lot.lot_id,),
        ).fetchone()
        payload = json.loads(row[1])
        payload["quantityList"][0]["quantity"] = 1200  # more stock than was counted
        # the forger fixes our hash column too: only the chain can tell
        db.execute(
            "UPDATE event SET payload = ?, event_hash = ? WHERE id = ?",
            (json.dumps(payload), event_hash(payload), row[0]),
        )
    phone.goto(lot.scan_url(lot.parcels[0]))
    badge = phone.locator("[data-status]")
    expect(badge).to_have_attribute("data-status", "tampered")
    expect(badge).to_contain_text("警告：记录与区块链不符")
    expect(phone.locator("li[data-step=entry]")).to_have_class("tampered")
    expect(phone.locator("li[data-step=entry]")).to_contain_text("与区块链不符")
    _shot(phone, screenshots, "scan-tampered-zh")


@pytest.fixture
def own_chain(tmp_path: Path) -> Iterator[AnvilSupervisor]:
    """An anvil of this test's own, to stop while the service runs."""
    supervisor = AnvilSupervisor.in_directory(tmp_path, block_time=None)
    with supervisor:
        yield supervisor


def test_the_node_down_reads_unverifiable_never_verified(
    browser: Any, own_chain: AnvilSupervisor, tmp_path: Path, screenshots: Path
) -> None:
    for service in run_service(tmp_path, own_chain.rpc_url):
        lot = delivered_lot(service)
        own_chain.stop()
        for page in _phone(browser, service, "en-US"):
            page.goto(lot.scan_url(lot.parcels[0]))
            badge = page.locator("[data-status]")
            expect(badge).to_have_attribute("data-status", "unverifiable")
            expect(badge).to_contain_text("Not verified: the blockchain could not be reached")
            expect(page.locator("li.verified")).to_have_count(0)
            _shot(page, screenshots, "scan-unverifiable-en")
