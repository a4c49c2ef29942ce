"""The mypyc-compiled canonical form: the same hashes as the pure module, used only while it is current."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from test_epcis_hash_oracle import epcis_event

from tracer.epcis import canonical, native
from tracer.epcis.vocabulary import EPCIS_CONTEXT_URL, TRACER_NS

CONTEXT: list[Any] = [EPCIS_CONTEXT_URL, {"tracer": TRACER_NS}]


@pytest.mark.skipif(shutil.which("gcc") is None, reason="mypyc needs a C compiler; scripts/_setup.sh falls back")
def test_the_set_up_built_the_compiled_module_and_the_service_uses_it() -> None:
    assert native.is_current(), "scripts/_setup.sh did not compile tracer/epcis/canonical.py (see its output)"
    assert native.COMPILED
    assert native.implementation.__name__ == f"tracer.epcis.{native.NATIVE_MODULE}"


@settings(max_examples=150)
@given(epcis_event())
def test_compiled_and_pure_canonical_forms_are_identical(event: dict[str, Any]) -> None:
    assert native.prehash_string(event, CONTEXT) == canonical.prehash_string(event, CONTEXT)


def test_an_edited_source_falls_back_to_pure_python(tmp_path: Path) -> None:
    source = tmp_path / "canonical.py"
    stamp = tmp_path / "stamp.sha256"
    source.write_text("# as compiled\n")
    stamp.write_text(native.source_digest(source) + "\n")
    assert native.is_current(source=source, stamp=stamp)
    source.write_text("# edited after the build\n")
    assert not native.is_current(source=source, stamp=stamp)
    assert native.load(source=source, stamp=stamp) is canonical


def test_no_build_or_the_pure_switch_means_pure_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert native.load(stamp=tmp_path / "never-built.sha256") is canonical
    monkeypatch.setenv("TRACER_PURE_PYTHON", "1")
    assert native.load() is canonical
