"""Security headers on every response: a strict Content-Security-Policy and the usual companions.

The pages run no script at all: ``script-src`` is never granted to them. Their only inline code is the
``<style>`` blocks of our own templates (scan and audit pages inline their CSS so one request brings the
whole page, and the SVG label sheets carry theirs), so ``style-src`` lists the SHA-256 of each block the
response actually holds, computed from the body: no ``'unsafe-inline'``, and a style injected through
data would not match (every template escapes, so none can be).

The framework's interactive documentation (``/docs``, ``/redoc``) is the one exception: its fixed HTML
loads Swagger UI or ReDoc from their CDN and starts it with an inline script, hashed the same way. Those
pages carry nothing from a request or the database.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Pages that may be framed by nobody, send no referrer (scan URLs name lots) and use no device features.
_COMMON_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=(), usb=(), interest-cohort=()"),
    (b"cross-origin-opener-policy", b"same-origin"),
)
BASE_POLICY = "default-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; img-src 'self' data:"
_DOCS_CDN = "https://cdn.jsdelivr.net"
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})
_DOCS_POLICY = (
    "default-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; connect-src 'self'; "
    f"img-src 'self' data: https://fastapi.tiangolo.com {_DOCS_CDN}; font-src https://fonts.gstatic.com; "
    f"worker-src blob:; style-src 'unsafe-inline' {_DOCS_CDN} https://fonts.googleapis.com; script-src {_DOCS_CDN}"
)
# Bodies worth reading for inline blocks; everything else (JSON, PNG, CSV) passes through untouched.
_MARKUP_TYPES = (b"text/html", b"image/svg+xml")


def inline_blocks(body: bytes, tag: bytes) -> list[bytes]:
    """The contents of each ``<tag …>…</tag>`` element of ``body``, as written by our templates (lower case).

    Plain ``find`` rather than a regular expression: a page is read per response, and this is ~20x faster.
    An element spelled otherwise is simply not allowed, which fails safe.
    """
    blocks, at = [], 0
    opening, closing = b"<" + tag, b"</" + tag + b">"
    while (start := body.find(opening, at)) != -1:
        content = body.find(b">", start) + 1
        end = body.find(closing, content)
        if content == 0 or end == -1:
            break
        if body[start + len(opening)] in b" >\t\n/":  # <style …>, not <styles>
            blocks.append(body[content:end])
        at = end + len(closing)
    return blocks


def source_hashes(blocks: Iterable[bytes]) -> str:
    """The CSP source expressions (``'sha256-…'``) of inline blocks, in order, without repeats."""
    seen: dict[str, None] = {}
    for block in blocks:
        seen["'sha256-" + base64.b64encode(hashlib.sha256(block).digest()).decode() + "'"] = None
    return " ".join(seen)


def content_security_policy(body: bytes, *, docs: bool = False) -> str:
    """The policy for a markup ``body``: inline styles allowed by hash only; scripts only on the docs pages."""
    if docs:
        scripts = source_hashes(block for block in inline_blocks(body, b"script") if block.strip())
        return _DOCS_POLICY + (" " + scripts if scripts else "")
    styles = source_hashes(inline_blocks(body, b"style"))
    return BASE_POLICY + ("; style-src " + styles if styles else "")


class SecurityHeaders:
    """ASGI middleware adding the headers; markup responses are held back whole to hash their inline blocks."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        docs = scope["path"] in DOCS_PATHS
        start: Message | None = None
        chunks: list[bytes] = []

        async def send_with_headers(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"content-security-policy"]
                headers.extend(_COMMON_HEADERS)
                content_type = next((v for k, v in headers if k.lower() == b"content-type"), b"")
                if content_type.startswith(_MARKUP_TYPES):
                    start = {**message, "headers": headers}
                    return
                headers.append((b"content-security-policy", BASE_POLICY.encode()))
                await send({**message, "headers": headers})
            elif start is not None and message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                body = b"".join(chunks)
                policy = content_security_policy(body, docs=docs).encode()
                await send({**start, "headers": [*start["headers"], (b"content-security-policy", policy)]})
                await send({"type": "http.response.body", "body": body})
            else:
                await send(message)

        await self.app(scope, receive, send_with_headers)


def install(app: FastAPI) -> None:
    """Adds the headers to every response of ``app`` (install last: outermost, so refusals carry them too)."""
    app.add_middleware(SecurityHeaders)
