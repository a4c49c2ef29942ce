"""QR codes that carry GS1 Digital Link URIs, as PNG and SVG."""

from __future__ import annotations

import io

import qrcode
import qrcode.image.svg
from qrcode.constants import ERROR_CORRECT_M
from qrcode.image.pil import PilImage


def _code(data: str) -> qrcode.QRCode[PilImage]:
    # Level M survives a scuffed label; the box size suits a phone camera at arm's length. Pillow (the
    # `qrcode[pil]` extra) is what qrcode picks by default anyway; naming it keeps `save(format=...)` valid.
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, box_size=8, border=4, image_factory=PilImage)
    code.add_data(data)
    code.make(fit=True)
    return code


def qr_png(data: str) -> bytes:
    """A PNG QR code of ``data``."""
    buffer = io.BytesIO()
    _code(data).make_image().save(buffer, format="PNG")
    return buffer.getvalue()


def qr_svg(data: str) -> bytes:
    """An SVG QR code of ``data`` (one path: small and crisp when printed)."""
    buffer = io.BytesIO()
    _code(data).make_image(image_factory=qrcode.image.svg.SvgPathImage).save(buffer)
    return buffer.getvalue()
