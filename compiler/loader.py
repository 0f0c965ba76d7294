"""Load a program: the root module and, recursively, every module it imports.

`import "best_of_n.ttc" as bon` is resolved relative to the importing file.
Each file is read and parsed once, however many modules import it. Problems
with imports (a missing file, a cycle, a file that cannot be read or does
not parse) become diagnostics at the `import` statement, kept on
`Program.diagnostics`. `check_program` reports them together with its own,
so one run shows every problem. Only a root that cannot be read or parsed
raises here, since nothing can be checked without it.

Sources are kept by file name, so that any later stage can render a
diagnostic with its source line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ttcl.compiler.ast import Import, Module, Span
from ttcl.compiler.diagnostics import (
    Diagnostic,
    DiagnosticError,
    SemanticDiagnosticError,
    SyntaxDiagnosticError,
    closest,
)
from ttcl.programs import PREFIX, ProgramNameError, resolve_program
from ttcl.safeio import PROGRAM_LIMIT, UnsafeRead, is_within, program_target, read_bounded

STDIN_NAME = "<input>"


@dataclass(frozen=True)
class LoadedModule:
    """One parsed file.

    `key` identifies the file (its resolved path, or the display name for
    text given directly); `file` is the name its spans and diagnostics use.
    `imports` maps each alias to the key of the module it names, or to None
    when that import failed (the failure is in `Program.diagnostics`).
    """

    key: str
    file: str
    module: Module
    source: str
    imports: dict[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Instance:
    """A module as reached from the root through a chain of aliases (`""`, `"bon"`, `"bon.inner"`).

    The same file imported twice is two instances: each can get its own `--set alias.x=...`.
    """

    path: str
    module: LoadedModule

    def qualify(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name


@dataclass(frozen=True)
class Program:
    """The root module and every module it imports, transitively."""

    root_key: str
    modules: dict[str, LoadedModule]
    diagnostics: tuple[Diagnostic, ...] = ()
    syntax_failed: bool = False  # some imported file did not parse

    @property
    def root(self) -> LoadedModule:
        return self.modules[self.root_key]

    @property
    def sources(self) -> dict[str, str]:
        """Source text by file name, for rendering diagnostics."""
        return {m.file: m.source for m in self.modules.values()} | dict(self.extra_sources)

    extra_sources: tuple[tuple[str, str], ...] = ()

    def imported(self, importer: LoadedModule, alias: str) -> LoadedModule | None:
        key = importer.imports.get(alias)
        return None if key is None else self.modules.get(key)

    def instances(self) -> Iterator[Instance]:
        """Every module instance, root first, depth first; cycles were cut by the loader."""
        yield from self._walk("", self.root, ())

    def _walk(self, path: str, mod: LoadedModule, stack: tuple[str, ...]) -> Iterator[Instance]:
        yield Instance(path, mod)
        for alias, key in mod.imports.items():
            if key is None or key in stack or key == mod.key or key not in self.modules:
                continue
            yield from self._walk(f"{path}.{alias}" if path else alias, self.modules[key], (*stack, mod.key))

    def error(self, extra: list[Diagnostic] | None = None) -> DiagnosticError:
        """The error reporting the loader's diagnostics plus `extra`, of the right class."""
        diags = [*self.diagnostics, *(extra or [])]
        cls = SyntaxDiagnosticError if self.syntax_failed else SemanticDiagnosticError
        return cls(diags, self.sources)


class _ReadFailure(Exception):
    def __init__(self, message: str, hint: str | None = None, span: Span | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.span = span


_HEADER = re.compile(r"\A(?:[ \t\r]*(?:#[^\n]*)?\n)*[ \t]*ttcl(?![A-Za-z0-9_])")
MAX_IMPORT_DEPTH = 64  # a chain of imports deeper than this is refused, not recursed into


def _read(path: Path, shown: str) -> str:
    """The file's text, or _ReadFailure with a user-facing reason (never an OSError traceback).

    Only a regular `.ttc` file (after symlinks) of at most PROGRAM_LIMIT bytes is read; a file
    that does not begin with the `ttcl` header is refused without quoting any of its bytes.
    """
    try:
        data = read_bounded(program_target(path), PROGRAM_LIMIT, what=".ttc program")
    except UnsafeRead as e:
        raise _ReadFailure(f"`{shown}` {e.reason}") from None
    except FileNotFoundError:
        raise _ReadFailure(f"no such file `{shown}`", _sibling_hint(path)) from None
    except IsADirectoryError:
        raise _ReadFailure(f"`{shown}` is a directory, not a .ttc file") from None
    except PermissionError:
        raise _ReadFailure(f"cannot read `{shown}`: permission denied") from None
    except OSError as e:
        raise _ReadFailure(f"cannot read `{shown}`: {e.strerror or e}") from None
    except ValueError:  # a NUL byte in the path
        raise _ReadFailure(f"`{_printable(shown)}` is not a valid file name") from None
    return _decode(data, shown)


def _decode(data: bytes, shown: str) -> str:
    """A program's bytes as text: UTF-8, a byte-order mark dropped, the `ttcl` header first (_ReadFailure if not)."""
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")  # editors on Windows may add a byte-order mark
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        span = Span(file=shown, line=line, column=column, end_line=line, end_column=column + 1, start_pos=e.start, end_pos=e.start + 1)
        raise _ReadFailure(
            f"`{shown}` is not UTF-8 text (byte 0x{data[e.start]:02x} at line {line}, column {column})",
            "save the file as UTF-8",
            span,
        ) from None
    if not _HEADER.match(text):
        raise _ReadFailure(
            f"`{shown}` is not a ttcl program: it does not begin with the header `ttcl 1`",
            "a .ttc file starts with the line `ttcl 1` (its content is not shown, since it may not be a program)",
        )
    return text


def decode_program(data: bytes, file: str) -> str:
    """Program bytes from elsewhere than a file (`ttcl fmt -`) read as a file's are: the same UTF-8, byte-order
    mark and header rules and messages (QA pass: stdin passed bytes that are not UTF-8 through, and refused a BOM)."""
    try:
        return _decode(data, file)
    except _ReadFailure as e:
        span = e.span or Span(file=file, line=1, column=1, end_line=1, end_column=1)
        raise SemanticDiagnosticError([Diagnostic(span=span, message=e.message, hint=e.hint)]) from None


def read_program(path: Path | str, file: str | None = None) -> str:
    """The text of the `.ttc` file `path`, read as `load_program` reads a root: the same checks and messages.

    Raises SemanticDiagnosticError naming `file` (default: `path` as given) at 1:1, or at the first
    byte that is not UTF-8; no byte of a file that is not a program is quoted.
    """
    shown = file or str(path)
    try:
        return _read(Path(path), shown)
    except _ReadFailure as e:
        span = e.span or Span(file=shown, line=1, column=1, end_line=1, end_column=1)
        raise SemanticDiagnosticError([Diagnostic(span=span, message=e.message, hint=e.hint)]) from None


def _printable(text: str) -> str:
    """A path as a message can show it: control characters escaped."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def _sibling_hint(path: Path) -> str | None:
    """The closest `.ttc` file beside the missing one, compared by stem: every name shares `.ttc`, which made
    `missing.ttc` look like `bin.ttc`."""
    try:
        stems = {p.stem: p.name for p in path.parent.iterdir() if p.suffix == ".ttc"}
    except (OSError, ValueError):
        return None
    stem = closest(path.stem, stems)
    return None if stem is None else f"did you mean `{stems[stem]}`?"


def _parse(source: str, file: str) -> Module:
    from ttcl.compiler.parse import parse

    return parse(source, file)


def _display_join(importer_file: str, rel: str) -> str:
    if importer_file == STDIN_NAME or os.path.isabs(rel):
        return os.path.normpath(rel)
    return os.path.normpath(os.path.join(os.path.dirname(importer_file), rel))


IMPORT_PATH_ENV = "TTCL_IMPORT_PATH"
MAX_INSTANCES = 1_000  # module instances reached from the root (a file imported twice counts twice); checks.py
TOO_MANY_INSTANCES = (f"the imports unfold into more than {MAX_INSTANCES:,} module instances (each import of a file "
                      "is its own instance)")


class _Loader:
    def __init__(self, import_roots: list[Path]) -> None:
        self.import_roots = import_roots
        self.modules: dict[str, LoadedModule] = {}
        self.diagnostics: list[Diagnostic] = []
        self.syntax_failed = False
        self.failed_sources: dict[str, str] = {}
        self._bad_keys: dict[str, str] = {}  # key -> why it failed (reported at the first import)

    def load_root(self, key: str, file: str, source: str, base: Path) -> str:
        module = _parse(source, file)  # a root that does not parse raises SyntaxDiagnosticError
        self._add(key, file, module, source, base, stack=[(key, file)])
        return key

    def _add(self, key: str, file: str, module: Module, source: str, base: Path, stack: list[tuple[str, str]]) -> None:
        imports: dict[str, str | None] = {}
        loaded = LoadedModule(key, file, module, source, imports)
        self.modules[key] = loaded
        for imp in module.imports:
            if imp.alias in imports:
                continue  # a duplicate alias: the checks report it
            imports[imp.alias] = self._import(imp, file, base, stack)

    def _import(self, imp: Import, importer_file: str, base: Path, stack: list[tuple[str, str]]) -> str | None:
        bundled = imp.path.startswith(PREFIX)  # `import "ttcl:NAME"`: a bundled program, wherever pip put it
        if bundled:
            try:
                target = resolve_program(imp.path)
            except ProgramNameError as e:
                message, _, hint = str(e).partition("\n  hint: ")
                why = message.partition(": error: ")[2].partition(" (bundled: ")[0]
                self._fail(imp, imp.path, f"cannot import `{_printable(imp.path)}`: {why}", hint or None)
                return None
        else:
            target = (base / imp.path) if not os.path.isabs(imp.path) else Path(imp.path)
        shown = imp.path if bundled else _display_join(importer_file, imp.path)
        try:
            key = str(target.resolve()) if target.exists() else str(target.absolute())
        except (OSError, ValueError):  # a NUL byte, a name too long for the file system
            key = str(target.absolute())
        on_stack = [k for k, _ in stack]
        if key in on_stack:
            cycle = [f for _, f in stack[on_stack.index(key):]] + [shown]
            self.diagnostics.append(Diagnostic(
                span=imp.span,
                message="import cycle: " + " -> ".join(cycle),
                expected="imports that form a tree (no module may import itself, directly or through others)",
                hint="move what both modules need into a third module that each imports",
            ))
            return None
        if key in self.modules:
            return key
        if key in self._bad_keys:
            return None
        if not bundled and not imp.path.endswith(".ttc"):
            self._fail(imp, key, f"cannot import `{_printable(imp.path)}`: imports name .ttc files", None)
            return None
        if len(stack) > MAX_IMPORT_DEPTH:
            self._fail(imp, key, f"cannot import `{_printable(imp.path)}`: the chain of imports is more than "
                       f"{MAX_IMPORT_DEPTH} files deep", "flatten the imports: a module may import several others")
            return None
        try:
            program_target(target)
        except UnsafeRead as e:
            self._fail(imp, key, f"cannot import `{_printable(imp.path)}`: `{shown}` {e.reason}", None)
            return None
        if self.import_roots and not bundled and not is_within(Path(key), self.import_roots):
            self._fail(imp, key, f"cannot import `{_printable(imp.path)}`: it resolves to `{_printable(key)}`, "
                       f"outside the program's directory `{self.import_roots[0]}`",
                       "imports stay inside the root program's directory tree; list another directory in $TTCL_IMPORT_PATH to allow it")
            return None
        try:
            source = _read(target, shown)
        except _ReadFailure as e:
            self._fail(imp, key, f"cannot import `{_printable(imp.path)}`: {e.message}", e.hint)
            return None
        try:
            module = _parse(source, shown)
        except SyntaxDiagnosticError as e:
            self.syntax_failed = True
            self.failed_sources[shown] = source
            self.diagnostics.extend(e.diagnostics)
            self._bad_keys[key] = "syntax"
            return None
        self._add(key, shown, module, source, target.parent, [*stack, (key, shown)])
        return key

    def _fail(self, imp: Import, key: str, message: str, hint: str | None) -> None:
        self._bad_keys[key] = message
        self.diagnostics.append(Diagnostic(span=imp.span, message=message, expected="a readable .ttc file, relative to the importing file", hint=hint))


def load_program(
    path: Path | str | None = None, *, source: str | None = None, file: str | None = None,
    import_paths: list[Path | str] | None = None,
) -> Program:
    """Read and parse `path` (or `source`) and everything it imports.

    `file` is the name diagnostics use; it defaults to `path` as given, or `<input>` for
    `source`. Imports in `source` resolve relative to `file`'s directory, or to the current
    directory for `<input>`. Raises SyntaxDiagnosticError / SemanticDiagnosticError only when
    the root itself cannot be parsed or read; import problems land on `Program.diagnostics`.

    Imports must lie inside the root's directory tree (the current directory for `<input>`),
    or inside one of `import_paths` (default: the directories in $TTCL_IMPORT_PATH, separated
    by `:`): a program checked in CI cannot reach files elsewhere.
    """
    if source is None:
        if path is None:
            raise ValueError("load_program needs a path or a source")
        p = Path(path)
        shown = file or str(path)
        source = read_program(p, shown)
        key = str(p.resolve())
        base = p.resolve().parent
    else:
        shown = file or (str(path) if path is not None else STDIN_NAME)
        key = str(Path(shown).resolve()) if shown != STDIN_NAME else STDIN_NAME
        base = Path(shown).resolve().parent if shown != STDIN_NAME else Path.cwd()
        source = _encodable(source, shown)
    if import_paths is None:
        import_paths = [d for d in os.environ.get(IMPORT_PATH_ENV, "").split(os.pathsep) if d]
    roots = [base, *(Path(d).resolve() for d in import_paths)]
    loader = _Loader(roots)
    root = loader.load_root(key, shown, source, base)
    diagnostics = loader.diagnostics
    too_many = _instance_overflow(loader.modules, root)
    if too_many is not None:
        diagnostics = [*diagnostics, too_many]
    return Program(
        root_key=root,
        modules=loader.modules,
        diagnostics=tuple(diagnostics),
        syntax_failed=loader.syntax_failed,
        extra_sources=tuple(loader.failed_sources.items()),
    )


def _encodable(source: str, shown: str) -> str:
    """`source`, if UTF-8 can encode it; a lone surrogate (which no file can hold) is a syntax error at its place."""
    try:
        source.encode("utf-8")
        return source
    except UnicodeEncodeError as e:
        line = source.count("\n", 0, e.start) + 1
        column = e.start - (source.rfind("\n", 0, e.start) + 1) + 1
        span = Span(file=shown, line=line, column=column, end_line=line, end_column=column + 1)
        raise SyntaxDiagnosticError([Diagnostic(
            span=span, message=f"the source holds a lone surrogate U+{ord(source[e.start]):04X}, which is not text",
            hint="pass the program as valid Unicode text (as read from a UTF-8 file)",
        )]) from None


def _instance_overflow(modules: dict[str, LoadedModule], root: str) -> Diagnostic | None:
    """A diagnostic when the import tree unfolds into more than MAX_INSTANCES module instances.

    Each import of a file is its own instance, so a chain of files that each import the next
    twice doubles at every level; counted bottom-up, never unfolded.
    """
    counts: dict[str, int] = {}

    def count(key: str, stack: frozenset[str]) -> int:
        if key in counts:
            return counts[key]
        mod = modules[key]
        total = 1
        for target in mod.imports.values():
            if target is None or target in stack or target == key or target not in modules:
                continue
            total = min(total + count(target, stack | {key}), MAX_INSTANCES + 1)
        counts[key] = total
        return total

    if count(root, frozenset()) <= MAX_INSTANCES:
        return None
    imp = next(iter(modules[root].module.imports))
    return Diagnostic(
        span=imp.span, message=TOO_MANY_INSTANCES,
        hint="import a shared module once and pass what it needs, rather than importing it from every level",
    )
