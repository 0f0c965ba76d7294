"""Tasks and their exact checkers, found by name through the `ttcl.verifiers` entry points."""

from __future__ import annotations

import difflib
from importlib.metadata import entry_points

from ttcl.errors import TtclRuntimeError
from ttcl.runtime.tasks.base import Checker

ENTRY_POINT_GROUP = "ttcl.verifiers"


def _builtins() -> dict[str, Checker]:
    from ttcl.runtime.tasks.arith import checker as arith
    from ttcl.runtime.tasks.countdown import checker as countdown
    from ttcl.runtime.tasks.expr import checker as expr

    return {"arith": arith, "countdown": countdown, "expr": expr}


# Checkers the user named on the command line (`--verifier NAME=module:function`), for this process only:
# a program can still only say `check("NAME")`; which code NAME runs is never in the program text.
_CLI: dict[str, Checker] = {}
# ... and where each came from (NAME -> (module:function, the directory searched first)), so that Ray
# workers, which are other processes, register the same ones (runtime/distributed.py)
_CLI_SPECS: dict[str, tuple[str, str]] = {}


class FunctionChecker:
    """A user's `(question, completion) -> score` function as a checker: the whole completion is one step."""

    def __init__(self, name: str, fn: object) -> None:
        self.name, self.fn = name, fn

    def extract(self, completion: str) -> str | None:
        from ttcl.runtime.extract import after_marker, last_number

        return after_marker(completion) or last_number(completion)

    def outcome(self, question: str, completion: str) -> float:
        try:
            return float(self.fn(question, completion))  # type: ignore[operator]
        except Exception as e:  # the user's code: its failure is that item's failure, named
            raise TtclRuntimeError(f"verifier {self.name!r}: the user's function raised {type(e).__name__}: {e}") from e

    def steps(self, question: str, completion: str) -> list[float]:
        return [self.outcome(question, completion)]

    def split_steps(self, completion: str) -> list[str]:
        return [completion]


def register_cli_checker(name: str, target: str, search_dir: str | None = None) -> Checker:
    """`--verifier NAME=module:function`: import it (`search_dir`, by default the current directory,
    first) and register it under NAME."""
    import importlib
    import os
    import sys

    module, _, attr = target.partition(":")
    if not name.isidentifier() or not module or not attr:
        raise TtclRuntimeError(f"--verifier {name}={target}: expected NAME=module:function, "
                               "e.g. --verifier mine=my_checks:score")
    if name in _builtins():  # it replaced the built-in silently, and reports still said check('arith') (QA pass)
        raise TtclRuntimeError(f"--verifier {name}={target}: `{name}` is a built-in checker (check(\"{name}\"), "
                               f"--judge {name}); give yours another name, e.g. --verifier my_{name}={target}")
    search_dir = search_dir or os.getcwd()
    if search_dir not in sys.path:
        sys.path.insert(0, search_dir)
    try:
        obj = getattr(importlib.import_module(module), attr)
    except ModuleNotFoundError as e:
        raise TtclRuntimeError(f"--verifier {name}={target}: no module {e.name!r} (looked in the current "
                               "directory and the Python path)") from None
    except AttributeError:
        raise TtclRuntimeError(f"--verifier {name}={target}: module {module!r} has no {attr!r}") from None
    except Exception as e:  # importing the user's module ran their code
        raise TtclRuntimeError(f"--verifier {name}={target}: importing {module!r} raised "
                               f"{type(e).__name__}: {e}") from None
    if isinstance(obj, type):
        try:
            obj = obj()
        except Exception as e:  # constructing the user's class ran their code
            raise TtclRuntimeError(f"--verifier {name}={target}: constructing it raised "
                                   f"{type(e).__name__}: {e}") from None
    checker = obj if isinstance(obj, Checker) else FunctionChecker(name, obj) if callable(obj) else None
    if checker is None:
        raise TtclRuntimeError(f"--verifier {name}={target}: {attr!r} is neither a function "
                               "(question, completion) -> score nor a checker")
    _CLI[name] = checker
    _CLI_SPECS[name] = (target, search_dir)
    return checker


def cli_checker_specs() -> list[tuple[str, str, str]]:
    """(NAME, module:function, directory) of every `--verifier` checker registered in this process
    that is still registered, to register the same ones in another process."""
    return [(n, t, d) for n, (t, d) in sorted(_CLI_SPECS.items()) if n in _CLI]


def available_checkers() -> list[str]:
    names = set(_builtins()) | set(_CLI)
    names.update(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
    return sorted(names)


def get_checker(name: str) -> Checker:
    """The checker registered under `name` (the command line's, then entry points, built-ins as fallback)."""
    if name in _CLI:
        return _CLI[name]
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            try:
                obj = ep.load()
                return obj() if isinstance(obj, type) else obj
            except Exception as e:  # a broken plugin (its import or its constructor) must not hide the built-in
                builtin = _builtins().get(name)
                if builtin is not None:
                    return builtin
                raise TtclRuntimeError(f"verifier {name!r}: entry point {ep.value!r} failed to load: {e}") from e
    builtin = _builtins().get(name)
    if builtin is not None:
        return builtin
    known = available_checkers()
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise TtclRuntimeError(f"unknown checker {name!r}{hint} (known: {', '.join(known)})")


__all__ = ["Checker", "ENTRY_POINT_GROUP", "FunctionChecker", "available_checkers", "get_checker",
           "register_cli_checker", "cli_checker_specs"]
