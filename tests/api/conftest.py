"""The API tests' fixtures live in ``api_support`` (a unique module name: every test folder has a conftest)."""

from api_support import (  # noqa: F401 - fixtures, found by pytest through this module
    api,
    journey,
    parties,
    problem,
    service,
    settings,
    w3,
)
