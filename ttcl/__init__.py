"""ttcl: the test-time compute language."""

__version__ = "0.1.0"


def __getattr__(name: str):
    """`ttcl.run(...)`, imported lazily so `import ttcl` stays light (see ttcl/api.py)."""
    if name in ("run", "RunResult"):
        from ttcl import api

        return getattr(api, name)
    raise AttributeError(f"module 'ttcl' has no attribute {name!r}")
