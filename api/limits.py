"""Request limits: a body too large, too deeply nested, with too long a string or a control character in it is
refused before any route reads it, and a capture document of too many events before any of them is applied.

The size is taken from Content-Length before a byte is read and counted while the body streams in when there
is none, so an oversized body is never held in memory whole (413). A JSON body is then parsed once here, by
orjson, which bounds its own nesting, refuses invalid UTF-8, lone surrogates, NaN and infinities, and never
recurses in Python. Scans of its bytes at C speed tell whether it may pass a limit; only then is the parsed
document walked (without recursion) for the part that does: nesting past ``max_json_depth``, a key or string
past ``max_string_length``, a C0 control character other than tab, line feed and carriage return, or DEL;
refused with its JSON pointer (400). Python's own parser, which the routes use, would die of a RecursionError
on a deep document, and PostgreSQL refuses NUL in text; neither ever sees one. The capture route, which parses
whatever it is sent, refuses bodies not labelled JSON (415). The limits are settings (``TRACER_MAX_*``,
``TRACER_CAPTURE_LIMIT``), listed in docs/api.md, "Limits".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import problem
from tracer.capture import CaptureTooLarge
from tracer.config import Settings

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# The same characters as a JSON body spells them: \u escapes, the short escapes \b and \f, DEL as it is.
_CONTROL_ESCAPE = re.compile(rb"\\u00(?:0[0-8bBcCeEfF]|1[0-9a-fA-F])|\\u007[fF]|\\[bf]|\x7f")
_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_NOT_BRACKET = bytes(byte for byte in range(256) if byte not in b"[]{}")
_NESTING = [{ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}.get(byte, 0) for byte in range(256)]


@dataclass(frozen=True)
class Limits:
    """What one request may carry."""

    max_body_bytes: int
    max_depth: int
    max_string_length: int

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(settings.max_body_bytes, settings.max_json_depth, settings.max_string_length)


class _Refused(Exception):
    def __init__(self, response: JSONResponse) -> None:
        self.response = response


def _too_large(limits: Limits, what: str) -> _Refused:
    detail = f"{what}; at most {limits.max_body_bytes} bytes per request"
    return _Refused(problem(413, "The request body is too large", detail, kind="payload-too-large"))


def _invalid(pointer: str, message: str) -> _Refused:
    errors = [{"pointer": pointer, "message": message}]
    return _Refused(
        problem(400, "The request body is refused", f"{pointer}: {message}", kind="invalid-input", errors=errors)
    )


def _pointer(link: _Link) -> str:
    parts: list[str] = []
    while link is not None:
        link, key = link
        parts.append("/" + str(key).replace("~", "~0").replace("/", "~1"))
    return "".join(reversed(parts))


# Where a value sits: (its parent's link, its key or index); built only as a pair per container, so a document of
# 100,000 events is walked in a fraction of its parse time, and a pointer is spelled out only for an offender.
_Link = tuple["_Link", str | int] | None


def check_json(body: bytes, limits: Limits) -> None:
    """Raises _Refused naming a part of a JSON ``body`` past the limits, or the parser's complaint."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _invalid("", f"the body is not JSON within {limits.max_depth} levels of nesting: {exc}") from exc
    if _may_pass_limits(body, limits):
        _find_offender(document, limits)


def _may_pass_limits(body: bytes, limits: Limits) -> bool:
    """Whether a valid JSON ``body`` might pass a limit, from scans of its bytes that run at C speed and never
    underestimate; walking a parsed document of 100,000 events in Python would take longer than refusing it."""
    # Each escape becomes one byte (no more characters than it stands for), so the quotes left delimit strings.
    plain = _ESCAPE.sub(b"_", body)
    parts = plain.split(b'"')
    if max(map(len, parts[1::2]), default=0) > limits.max_string_length:
        return True  # bytes >= characters
    brackets = b"".join(parts[::2]).translate(None, _NOT_BRACKET)
    if max(accumulate(map(_NESTING.__getitem__, brackets)), default=0) > limits.max_depth:
        return True
    return bool(_CONTROL_ESCAPE.search(body))  # JSON carries control characters escaped, or DEL as it is


def _find_offender(document: Any, limits: Limits) -> None:
    """Raises _Refused at the first part of ``document`` past a limit, if there is one."""
    if isinstance(document, str):
        _check_string(document, None, limits)
    # A container's depth counts the brackets around its members, as the byte scan does.
    stack: list[tuple[Any, int, _Link]] = [(document, 1, None)] if isinstance(document, dict | list) else []
    while stack:
        value, depth, link = stack.pop()
        if depth > limits.max_depth:
            raise _invalid(_pointer(link), f"nested deeper than {limits.max_depth} levels")
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if isinstance(key, str):
                _check_string(key, (link, key), limits)
            if isinstance(item, str):
                _check_string(item, (link, key), limits)
            elif isinstance(item, dict | list):
                stack.append((item, depth + 1, (link, key)))


def _check_string(value: str, link: _Link, limits: Limits) -> None:
    if len(value) > limits.max_string_length:
        raise _invalid(_pointer(link), f"{len(value)} characters; at most {limits.max_string_length}")
    if _CONTROL.search(value):
        raise _invalid(_pointer(link), "holds a control character")


def is_json(headers: Headers) -> bool:
    """Whether a request's body is JSON by its Content-Type (as FastAPI reads it, plus no type at all)."""
    media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    # No content type at all is read as JSON by the routes too.
    return media_type in ("", "application/json") or media_type.endswith("+json")


class RequestLimits:
    """ASGI middleware enforcing ``Limits`` on every HTTP request's body."""

    def __init__(self, app: ASGIApp, limits: Limits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if "content-length" not in headers and "transfer-encoding" not in headers:
            # HTTP/1.1 frames a body by one of the two; without them there is none (every scan), nothing to hold.
            await self.app(scope, receive, send)
            return
        try:
            self._check_declared_size(headers)
            body = await self._read_body(receive)
            if body and is_json(headers):
                check_json(body, self.limits)
        except _Refused as refused:
            await refused.response(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    def _check_declared_size(self, headers: Headers) -> None:
        declared = headers.get("content-length")
        if declared is None:
            return
        if not declared.isdigit():
            raise _invalid("/Content-Length", "must be a number of bytes")
        if int(declared) > self.limits.max_body_bytes:
            raise _too_large(self.limits, f"Content-Length is {declared} bytes")

    async def _read_body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away; the route sees an empty body and the server drops the answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limits.max_body_bytes:
                raise _too_large(self.limits, f"the body passed {self.limits.max_body_bytes} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the route the body already read, then whatever the client sends next."""
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if delivered:
            return await receive()
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def _capture_too_large(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CaptureTooLarge)
    errors = [{"pointer": exc.pointer or "", "message": exc.message}]
    return problem(413, "The capture document has too many events", str(exc), kind="payload-too-large", errors=errors)


def install(app: FastAPI) -> None:
    """Enforces the limits of the settings of ``app.state.service`` on ``app``."""
    settings: Settings = app.state.service.settings
    app.add_middleware(RequestLimits, limits=Limits.of(settings))
    app.add_exception_handler(CaptureTooLarge, _capture_too_large)
