"""The `ttcl` console script (pyproject.toml) and `python -m ttcl`: the CLI, with Ctrl-C covered from start-up.

Importing the CLI (ttcl/cli.py: typer, every command module, the compiler) is most of a short command's time,
and `ttcl.cli.main` can catch a Ctrl-C only once it runs: a Ctrl-C during those imports printed a Python
traceback. Here only the standard library's `atexit`, `os`, `signal` and `sys` are imported before the CLI's import is
guarded, so a Ctrl-C at any point of start-up, of the command, or of the exit after it ends the same way: the
one word `interrupted` on stderr and exit 130 (docs/trust.md). What runs before this module (the interpreter's
own start-up, a few milliseconds) is outside any Python code's reach.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys

EXIT_INTERRUPTED = 130  # ttcl.errors.EXIT_INTERRUPTED, not imported: nothing of ttcl runs before the guard


_SIGINT_SEEN = [False]  # a Ctrl-C reached Python's own handler (ours, which says so and raises as it does)


def _sigint(signum: int, frame: object) -> None:
    _SIGINT_SEEN[0] = True
    raise KeyboardInterrupt


def main() -> int:
    """Run the CLI; a Ctrl-C it does not handle itself (during imports, or at its end) exits 130 quietly."""
    atexit.register(_ignore_ctrl_c)  # registered first, so it runs last
    try:
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, _sigint)
    except ValueError:  # not the main thread
        pass
    try:
        from ttcl.cli import main as cli_main

        code = cli_main()
    except BaseException as e:
        # a library may turn the KeyboardInterrupt into its own error, its text only (CI: pydantic's SchemaError
        # "Error building ... validator: KeyboardInterrupt" during the imports printed a traceback)
        if not (_interrupted(e) or _SIGINT_SEEN[0]):
            raise
        code = _say_interrupted()
    # the command is done and its output flushed: a Ctrl-C in an exit handler (a library's atexit) would print
    # "Exception ignored ... KeyboardInterrupt"; it says `interrupted` and exits 130 instead
    try:
        signal.signal(signal.SIGINT, _interrupted_while_exiting)
    except ValueError:  # not the main thread (main() called from a thread): nothing to cover
        pass
    return code


def _interrupted(e: BaseException) -> bool:
    """Whether `e` is a Ctrl-C, or an error raised while handling one (an import that failed half-way through)."""
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__  # type: ignore[assignment]
    return False


def _say_interrupted() -> int:
    try:
        sys.stderr.write("interrupted\n")
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):  # stderr closed or None
        pass
    return EXIT_INTERRUPTED


def _ignore_ctrl_c() -> None:
    """The last exit handler: the interpreter then disables Python's signal handlers and tears its modules down,
    where a Ctrl-C would kill the process silently (the command's work and output are done by then): ignored."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:
        pass


def _interrupted_while_exiting(signum: int, frame: object) -> None:
    try:
        os.write(2, b"interrupted\n")
    except OSError:
        pass
    os._exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    sys.exit(main())
