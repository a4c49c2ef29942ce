"""The scan page's Content-Security-Policy in a real Chromium: its own inline CSS applies, no script runs, and
markup declared in a lot's fields stays text."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from browser_support import GTIN, PHONE, RunningService
from playwright.sync_api import Page, expect

from tracer.identifiers import lot_path

pytestmark = [pytest.mark.browser, pytest.mark.anvil]

HOSTILE_NAME = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'
HOSTILE_MAKER = '"><svg onload="window.pwned=3">'


@pytest.fixture
def page(browser: Any) -> Iterator[Page]:
    context = browser.new_context(locale="en-GB", **PHONE)
    yield context.new_page()
    context.close()


def _hostile_lot(service: RunningService) -> str:
    """The scan URL of a lot whose name, maker and lot number are markup."""
    run = secrets.token_hex(3)
    admin = service.key("admin-api-key")
    enterprise = service.call("POST", "/actors", admin, {"name": f"csp-{run}", "role": "enterprise"}, 201)["api_key"]
    lot = f"<b>{run}</b>"  # GS1 AI 10 allows < > / in lot numbers
    declaration = {
        "gtin": GTIN,
        "lot": lot,
        "product_name": HOSTILE_NAME,
        "hs_code": "190110",
        "origin_country": "NZ",
        "manufacturer": HOSTILE_MAKER,
        "quantity": 10,
        "declaration_number": f"DEC-{run}",
    }
    service.call("POST", "/lots", enterprise, declaration)
    return service.url + lot_path(GTIN, lot)


def test_the_page_is_styled_and_markup_in_a_lot_is_text_that_runs_nothing(page: Page, service: RunningService) -> None:
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.goto(_hostile_lot(service))
    expect(page.locator("h1")).to_have_text(HOSTILE_NAME)
    expect(page.locator("dd").filter(has_text="window.pwned=3")).to_have_text(HOSTILE_MAKER)
    assert page.locator("img, script, svg[onload]").count() == 0
    assert page.evaluate("window.pwned") is None
    # The inlined stylesheet applied (its hash is in the policy): the badge has its coloured background.
    background = page.evaluate("getComputedStyle(document.querySelector('.badge')).backgroundColor")
    assert background not in ("rgba(0, 0, 0, 0)", "transparent")
    assert errors == [], errors  # no policy violation, nothing blocked


def test_the_policy_blocks_a_script_put_into_the_page(page: Page, service: RunningService) -> None:
    page.goto(_hostile_lot(service))
    ran = page.evaluate(
        """() => {
            const script = document.createElement('script');
            script.textContent = 'window.injected = true';
            document.body.appendChild(script);
            return window.injected === true;
        }"""
    )
    assert ran is False
