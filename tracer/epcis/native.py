"""The canonical form, compiled to C with mypyc where the set-up could build it; else the pure-Python module.

Why: every captured, queried and scanned event is hashed. The pure-Python ``tracer.epcis.canonical`` runs
about 33x faster than GS1's reference package, the same source compiled by mypyc about 75x
(docs/performance.md, ``scripts/bench_hash``).

``build()`` (run by ``scripts/_setup.sh``) compiles a *copy* of ``canonical.py`` as
``tracer.epcis._canonical_native`` and records the digest of the source it compiled beside it. The compiled
copy is used only while that digest is canonical.py's own: an edited canonical.py runs as pure Python until the
next set-up, never as stale machine code. Without a C compiler, or with ``TRACER_PURE_PYTHON`` set, the pure
module runs; the two give the same hashes (``tests/tracer/test_epcis_native.py``).
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from tracer.epcis import canonical

log = logging.getLogger(__name__)

NATIVE_MODULE = "_canonical_native"
_HERE = Path(__file__).resolve().parent
SOURCE = _HERE / "canonical.py"
STAMP = _HERE / f"{NATIVE_MODULE}.sha256"


def source_digest(source: Path = SOURCE) -> str:
    """The SHA-256 of the canonical module's source, as the build records it."""
    return hashlib.sha256(source.read_bytes()).hexdigest()


def is_current(*, source: Path = SOURCE, stamp: Path = STAMP) -> bool:
    """True when a compiled copy exists and was built from ``source`` as it is now."""
    try:
        return stamp.read_text().strip() == source_digest(source)
    except OSError:
        return False


def load(*, source: Path = SOURCE, stamp: Path = STAMP) -> ModuleType:
    """The compiled module when it is current and importable, else the pure-Python one."""
    if os.environ.get("TRACER_PURE_PYTHON"):
        return canonical
    if not is_current(source=source, stamp=stamp):
        if stamp.exists():
            log.warning(
                "canonical.py changed since it was compiled: hashing in pure Python until scripts/_setup.sh runs"
            )
        return canonical
    try:
        return importlib.import_module(f"tracer.epcis.{NATIVE_MODULE}")
    except ImportError as exc:  # built for another Python or platform
        log.warning("the compiled canonical hash does not load (%s): hashing in pure Python", exc)
        return canonical


def build() -> bool:
    """Compiles canonical.py with mypyc into this package unless the compiled copy is current; True on success."""
    if is_current():
        return True
    digest = source_digest()
    with tempfile.TemporaryDirectory(prefix="tracer-mypyc-") as workdir:
        package = Path(workdir) / "tracer" / "epcis"
        package.mkdir(parents=True)
        (package.parent / "__init__.py").write_text("")
        (package / "__init__.py").write_text("")
        # Only for mypyc's type analysis of the copy's imports; at run time they resolve to this package.
        shutil.copy(_HERE / "vocabulary.py", package / "vocabulary.py")
        shutil.copy(SOURCE, package / f"{NATIVE_MODULE}.py")
        compiled = subprocess.run(
            [sys.executable, "-m", "mypyc", f"tracer/epcis/{NATIVE_MODULE}.py"],
            cwd=workdir,
            capture_output=True,
            text=True,
            check=False,
        )
        built = sorted(package.glob(f"{NATIVE_MODULE}*.so"))
        if compiled.returncode != 0 or not built:
            print(compiled.stdout[-2000:] + compiled.stderr[-2000:], file=sys.stderr)
            return False
        for old in _HERE.glob(f"{NATIVE_MODULE}*.so"):
            old.unlink()
        for library in built:
            shutil.copy(library, _HERE / library.name)
    STAMP.write_text(digest + "\n")
    return True


implementation: ModuleType = load()
#: True when the compiled copy is the one in use.
COMPILED: bool = implementation is not canonical
prehash_string: Callable[..., str] = implementation.prehash_string
clear_caches: Callable[[], None] = implementation.clear_caches
