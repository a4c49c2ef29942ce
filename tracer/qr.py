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


def qr_modules(data: str) -> list[list[bool]]:
    """The dark (True) and light modules of ``data``'s QR code, quiet zone included, row by row."""
    return [list(row) for row in _code(data).get_matrix()]


def qr_svg_path(modules: list[list[bool]], *, x: float, y: float, size: float) -> str:
    """An SVG path ``d`` drawing ``modules`` as a square of side ``size`` at (``x``, ``y``): one rectangle
    per horizontal run of dark modules, so a sheet of codes stays small."""
    unit = size / len(modules)
    parts = []
    for row_index, row in enumerate(modules):
        column = 0
        while column < len(row):
            if not row[column]:
                column += 1
                continue
            start = column
            while column < len(row) and row[column]:
                column += 1
            left, top = x + start * unit, y + row_index * unit
            parts.append(
                f"M{left:.3f} {top:.3f}h{(column - start) * unit:.3f}v{unit:.3f}h{-(column - start) * unit:.3f}z"
            )
    return "".join(parts)
