"""ttcl: the test-time compute language.

The Python API is `ttcl.run`, which takes `ttcl run`'s options as keywords (see `help(ttcl.run)`):

    >>> out = ttcl.run("ttcl:self_consistency", inputs=["35 *2 -10"], set={"n": 4})
    >>> out.answers, out.summary.rows                   # out.summary.model_dump_json() is `ttcl run --json`

It returns a `ttcl.RunResult`; every error it raises is a `ttcl.TtclError` (a bad argument: `ttcl.RunArgumentError`),
whose `exit_code` is the one `ttcl run` would exit with. A run over Ray is `ttcl.runtime.distributed`
(docs/runtime.md, "From Python"). The names are imported on first use, so `import ttcl` stays light.
"""

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
