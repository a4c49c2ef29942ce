"""Fixtures of the browser tests (in ``browser_support``: every test folder has a conftest)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from browser_support import CHROMIUM, CHROMIUM_ARGS, RunningService, chromium_missing_reason, run_service
from browser_support import screenshots as screenshots  # noqa: F401 - a fixture, found by pytest here


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright (never a downloaded browser)."""
    reason = chromium_missing_reason()
    if reason is not None:
        pytest.fail(f"{reason}; run scripts/test (or scripts/_setup.sh) to install what the browser tests need")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, anvil: str) -> Iterator[RunningService]:
    """One service for the module, on the session's anvil."""
    yield from run_service(tmp_path_factory.mktemp("service"), anvil)
