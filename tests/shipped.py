"""Which bundled models are installed (tests that need one skip without it)."""

from __future__ import annotations


def available(ref: str) -> bool:
    try:
        from ttcl.zoo.registry import resolve_model

        resolve_model(ref)
    except Exception:
        return False
    return True
