"""Problem documents carry plain titles: what a client shows a person, not a docstring's markup."""

from __future__ import annotations

from typing import Any

from tracer import exceptions


def _subclasses(cls: type[Any]) -> list[type[Any]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found += _subclasses(sub)
    return found


def test_every_error_kind_has_a_plain_title() -> None:
    for kind in _subclasses(exceptions.TracerError):
        title = kind.title or (kind.__doc__ or kind.__name__).strip().splitlines()[0]
        assert "``" not in title and title.strip(), f"{kind.__name__}: {title!r}"


def test_a_bad_field_answers_with_a_plain_title(api: Any, parties: Any, problem: Any) -> None:
    response = api.post("/lots", parties.enterprise, {"gtin": "not a gtin"})
    body = problem(response, 400)
    assert body["title"] == exceptions.InvalidInput.title
