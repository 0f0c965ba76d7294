"""The `ttcl` command line.

Each area registers its commands from its own module in `ttcl.commands`,
so the compiler, runtime and zoo commands evolve independently. Every
`TtclError` is printed as a diagnostic with its exit code. Anything else
is a bug in ttcl: one line says so and where to report it, the exit code
is EXIT_INTERNAL (70), and the traceback is printed only with `--debug`.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import os
import re
import sys
from typing import Any

import typer
from typer.core import TyperGroup

from ttcl import __version__
from ttcl.errors import (
    BUG_REPORT,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_IO,
    EXIT_OK,
    EXIT_PIPE,
    TtclError,
)


def _click_style_help() -> None:
    """Help that does not misread: typer 0.2x's rich help prints a type after every flag (`--json <bool>`,
    `--help <bool>`), as if it took a value, `<list[str]>` after a repeatable option or argument, and
    writes a required argument `{program}` in the usage line.

    A flag shows no type (as typer's plain help already does), a repeated parameter the type of one
    value, and the usage line names an argument as click does: PROGRAM, [PROGRAM] when optional,
    FILES... when repeated. A typer without these methods is left as it is.
    """
    from typer import core

    option, argument = getattr(core, "TyperOption", None), getattr(core, "TyperArgument", None)
    for cls in (option, argument):
        type_of = getattr(cls, "display_type_rich", None)
        if cls is None or type_of is None or getattr(type_of, "ttcl", False):
            continue

        def display_type_rich(self: Any, ctx: Any, type_of: Any = type_of) -> str | None:
            if getattr(self, "is_flag", False):
                return None
            shown = type_of(self, ctx)  # a repeated parameter takes one value each time: <str>, not <list[str]>
            if isinstance(shown, str) and shown.startswith("<list[") and shown.endswith("]>"):
                return "<" + shown[len("<list["):-len("]>")].lower() + ">"
            return shown

        display_type_rich.ttcl = True  # type: ignore[attr-defined]
        cls.display_type_rich = display_type_rich
    if argument is not None and hasattr(argument, "_usage_display_name"):
        def _usage_display_name(self: Any) -> str:
            name = self.metavar or self.name.upper()
            name = name if self.required else f"[{name}]"
            return name + ("..." if self.nargs != 1 else "")

        argument._usage_display_name = _usage_display_name


_click_style_help()

class _Interrupted(BaseException):
    """A Ctrl-C in a command, carried past typer, which turns a KeyboardInterrupt into a silent `Exit(130)` (an
    older one: into "Aborted!"), so that `_main` says `interrupted` as docs/trust.md promises."""

    def __init__(self, interrupt: KeyboardInterrupt) -> None:
        super().__init__()
        self.interrupt = interrupt


class _Group(TyperGroup):
    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().make_context(*args, **kwargs)
        except KeyboardInterrupt as e:
            raise _Interrupted(e) from e

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as e:
            raise _Interrupted(e) from e


app = typer.Typer(
    name="ttcl",
    cls=_Group,
    help="ttcl: the test-time compute language. Check, run and evaluate inference-time strategies under a budget.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Modules that define `register(app)`; a missing one is skipped so a partial
# checkout still gives a working CLI.
_COMMAND_MODULES = ("compile", "fmt", "run", "eval", "zoo", "programs", "serve")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ttcl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="On an internal error (a bug in ttcl), print its traceback."),
) -> None:
    """ttcl: the test-time compute language."""


def _register_all() -> None:
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(f"ttcl.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"ttcl.commands.{name}":
                continue
            raise
        module.register(app)


_register_all()


# what `--ray` takes as its ADDRESS: HOST:PORT (the port in digits), ray://..., auto or local. Anything else is the
# next argument: `--ray ttcl:self_consistency` ran no program ("Missing argument 'program'", QA pass)
_RAY_ADDRESS = re.compile(r"^(auto|local|ray://\S*|\S*:\d+)$")
# a host, or a host and a port that is no number: what follows `--ray` otherwise is the program (`.ttc`, `ttcl:NAME`)
_HOST_ALONE = re.compile(r"^(localhost|\d{1,3}(\.\d{1,3}){3}|\[[0-9a-fA-F:]+\]|[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+)(:\S*)?$")


def _ray_option(argv: list[str]) -> list[str]:
    """`--ray` alone means a local cluster, `--ray ADDRESS` joins one: click has no optional-value option."""
    out: list[str] = []
    k = 0
    while k < len(argv):
        tok = argv[k]
        if tok == "--ray":
            nxt = argv[k + 1] if k + 1 < len(argv) else None
            if nxt == "":  # `--ray ""`: an empty address, refused by name (was "unexpected extra argument ()")
                out.append("--ray=")
                k += 2
                continue
            if nxt and _RAY_ADDRESS.match(nxt):
                out.append(f"--ray={nxt}")
                k += 2
                continue
            if nxt and _HOST_ALONE.match(nxt) and not nxt.endswith(".ttc") and not os.path.exists(nxt):
                host = nxt.rsplit(":", 1)[0] if nxt.count(":") == 1 else nxt  # "unexpected extra argument" (QA)
                raise TtclError(f"--ray {nxt}: a cluster's address is HOST:PORT (e.g. {host}:6379, the port `ray "
                                "start --head` printed); --ray alone starts a local cluster")
            out.append("--ray=local")
        else:
            out.append(tok)
        k += 1
    return out


class _BestEffort:
    """stderr that cannot fail a command: progress, notes and errors are written while it takes them, and dropped
    once it fails (QA pass: with stderr on a full disk the progress bar's write failed, the run printed no result,
    blamed stdout, and exited 1, the over-budget verdict's code)."""

    def __init__(self, stream: Any) -> None:
        self._stream, self.broken = stream, False

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                return self._stream.write(text)
            except OSError:
                self.broken = True
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self._stream.flush()
            except OSError:
                self.broken = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app, turning ttcl errors into clean messages and exit codes."""
    if sys.stdout is None:  # started with stdout closed (`ttcl ... >&-`): say so before doing any work
        typer.echo("error: stdout is closed; redirect it to a file (or to /dev/null)", err=True)
        return EXIT_IO
    stderr = sys.stderr
    if stderr is not None and not isinstance(stderr, _BestEffort):
        sys.stderr = _BestEffort(stderr)
    try:
        return _main_and_flush(argv)
    finally:
        if sys.stderr is not stderr and isinstance(sys.stderr, _BestEffort) and sys.stderr._stream is stderr:
            if sys.stderr.broken:  # the interpreter's own flush at exit would fail again (and say so nowhere)
                with contextlib.suppress(OSError, ValueError):
                    null = os.open(os.devnull, os.O_WRONLY)
                    os.dup2(null, stderr.fileno())
                    os.close(null)
            sys.stderr = stderr


def _main_and_flush(argv: list[str] | None) -> int:
    code = _main(argv)
    try:  # what is still buffered fails here, not in the interpreter's exit (exit 120, "Exception ignored")
        sys.stdout.flush()
    except BrokenPipeError:
        return _stdout_closed()
    except OSError as e:
        return code if code != EXIT_OK else _unwritable(e)
    except ValueError:
        pass
    return code


def _main(argv: list[str] | None) -> int:
    try:
        result = app(args=_ray_option(sys.argv[1:] if argv is None else list(argv)), standalone_mode=False)
        if isinstance(result, int):  # a command's `raise typer.Exit(code)` comes back as its code here
            return result
    except TtclError as e:
        typer.echo(_as_error(str(e)), err=True)
        return e.exit_code
    except typer.Exit as e:
        return e.exit_code
    except _Interrupted as e:
        return _interrupted(e.interrupt)
    except typer.Abort:
        typer.echo("aborted", err=True)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt as e:
        return _interrupted(e)
    except BrokenPipeError:
        return _stdout_closed()
    except SystemExit as e:
        # typer turns an EPIPE from a command into `sys.exit(1)`, and 1 is a budget verdict's code
        if isinstance(e.__context__, OSError) and e.__context__.errno == errno.EPIPE:
            return _stdout_closed()
        raise
    except Exception as e:  # click usage errors come through here, and bugs
        import click

        # typer >= 0.20 raises its vendored click's exceptions (`typer._click`), not `click`'s.
        if isinstance(e, click.ClickException) or any(c.__name__ == "ClickException" for c in type(e).__mro__):
            e.show()  # type: ignore[attr-defined]
            return e.exit_code  # type: ignore[attr-defined]
        if _writing_stdout(e):
            return _unwritable(e)  # type: ignore[arg-type]
        return _internal_error(e, argv)
    return 0


def _interrupted(e: KeyboardInterrupt) -> int:
    """A Ctrl-C (or SIGTERM) no command handled itself: the one word `interrupted`, and 130 (143)."""
    from ttcl.commands.interrupts import exit_code

    typer.echo("interrupted", err=True)
    return exit_code(e)


def _writing_stdout(e: Exception) -> bool:
    """An OSError from writing stdout (a full disk under `> file`, `> /dev/full`): not a bug in ttcl. Seen
    from the frames it passed through (click's and rich's writers hold the stream), or, for `print`, from
    an error only a write to an open file gives."""
    if not isinstance(e, OSError) or isinstance(e, BrokenPipeError):
        return False
    streams = {id(sys.stdout), id(getattr(sys.stdout, "buffer", None)), id(sys.__stdout__)}
    tb = e.__traceback__
    while tb is not None:
        if any(id(v) in streams for v in tb.tb_frame.f_locals.values()):
            return True
        tb = tb.tb_next
    return e.filename is None and e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _unwritable(e: OSError) -> int:
    """stdout could not be written: one line on stderr and EX_IOERR; what was buffered is dropped, so that the
    interpreter's own flush at exit does not fail again."""
    typer.echo(f"error: cannot write the output to stdout: {e.strerror or e}", err=True)
    _stdout_closed()
    return EXIT_IO


def _as_error(message: str) -> str:
    """`error: ` before a message whose first line does not already say where and that it is one (a program's
    diagnostic reads `file:line:col: error: ...`), so every bad input reads alike."""
    return message if "error:" in message.split("\n", 1)[0] else f"error: {message}"


def _stdout_closed() -> int:
    """The reader of stdout went away (`ttcl data ... | head -1`): end quietly with 141, as a Unix tool killed by
    SIGPIPE does. Whatever is still buffered for stdout goes to /dev/null, so nothing fails again (and prints
    "Exception ignored") when the interpreter flushes it at exit. A run's trace is written and closed by then:
    results are printed only after the run."""
    try:
        fd = sys.__stdout__.fileno() if sys.__stdout__ is not None else 1
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    except (OSError, ValueError):
        pass
    return EXIT_PIPE


def _internal_error(e: BaseException, argv: list[str] | None) -> int:
    """A bug in ttcl: one line (what and where to report), the traceback only with --debug."""
    args = sys.argv[1:] if argv is None else argv
    if "--debug" in args or os.environ.get("TTCL_DEBUG"):
        import traceback

        traceback.print_exception(e)
    where = ""
    tb = e.__traceback__
    while tb is not None:
        where = f" at {tb.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno}"
        tb = tb.tb_next
    what = str(e).splitlines()[0][:200] if str(e) else ""
    typer.echo(f"ttcl: internal error (a bug in ttcl, not in your input): {type(e).__name__}{where}"
               f"{': ' + what if what else ''}; {BUG_REPORT}", err=True)
    return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
