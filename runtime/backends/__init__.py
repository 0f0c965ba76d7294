"""Model execution: batched generation, prefix sharing and honest usage, behind one small typed API.

`TransformersBackend` is imported lazily (it pulls in torch and transformers).
"""

from __future__ import annotations

from ttcl.runtime.backends.base import (
    Backend,
    ExtendRequest,
    GenRequest,
    GenResult,
    Sample,
    SamplingParams,
    Usage,
)

__all__ = [
    "Backend",
    "ExtendRequest",
    "GenRequest",
    "GenResult",
    "Sample",
    "SamplingParams",
    "TransformersBackend",
    "Usage",
]


def __getattr__(name: str):
    if name == "TransformersBackend":
        from ttcl.runtime.backends.transformers import TransformersBackend

        return TransformersBackend
    raise AttributeError(name)
