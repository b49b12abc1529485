"""The public surface is exactly what nbllm/__init__.py exports, and every name resolves."""

from __future__ import annotations

import nbllm


def test_all_is_sorted_public_and_resolves():
    assert nbllm.__all__ == sorted(nbllm.__all__)
    for name in nbllm.__all__:
        assert getattr(nbllm, name) is not None, name


def test_public_classes_present_themselves_as_nbllm():
    for name in ("LLM", "KeyPool", "Response", "NbllmError", "Store"):
        assert getattr(nbllm, name).__module__ == "nbllm"


def test_every_error_is_an_nbllm_error():
    errors = [getattr(nbllm, n) for n in nbllm.__all__ if n.endswith(("Error", "Interrupted"))]
    assert len(errors) >= 12 and all(issubclass(e, nbllm.NbllmError) for e in errors)
