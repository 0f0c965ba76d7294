"""ttcl: the test-time compute language."""

__version__ = "0.1.0"


def __getattr__(name: str):
    """`ttcl.run(...)`, imported lazily so `import ttcl` stays light (see ttcl/api.py)."""
    if name in ("run", "RunResult", "RunArgumentError"):
        from ttcl import api

        return getattr(api, name)
    if name == "TtclError":  # what every error `ttcl.run` raises is (ttcl/errors.py)
        from ttcl.errors import TtclError

        return TtclError
    raise AttributeError(f"module 'ttcl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), "run", "RunResult", "RunArgumentError", "TtclError"])
