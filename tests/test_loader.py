"""The loader: imports resolved relative to the importing file, cycles and unreadable files as diagnostics."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ttcl.compiler.checks import check_program
from ttcl.compiler.diagnostics import SemanticDiagnosticError, SyntaxDiagnosticError
from ttcl.compiler.loader import load_program

HELPER = '''ttcl 1
model policy = "ttcl:arith-s"
param n: int = 4 in 1..64

strategy main(question: text) -> answer {
    return vote(sample(policy, question, n = n))
}
'''


def main_importing(*imports: tuple[str, str], call: str = "a") -> str:
    lines = ["ttcl 1", *(f'import "{p}" as {alias}' for p, alias in imports), ""]
    lines += ["strategy main(question: text[<=200]) -> answer {", f"    return {call}.main(question)", "}", ""]
    return "\n".join(lines)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_imports_resolve_relative_to_the_importing_file(tmp_path: Path) -> None:
    write(tmp_path / "lib" / "inner.ttc", HELPER)
    write(tmp_path / "lib" / "mid.ttc", main_importing(("inner.ttc", "a")))
    root = write(tmp_path / "root.ttc", main_importing(("lib/mid.ttc", "a")))
    program = load_program(root, file="root.ttc")
    assert program.diagnostics == ()
    assert [m.file for m in program.modules.values()] == ["root.ttc", os.path.join("lib", "mid.ttc"), os.path.join("lib", "inner.ttc")]
    assert [i.path for i in program.instances()] == ["", "a", "a.a"]
    assert set(program.sources) == {"root.ttc", "lib/mid.ttc", "lib/inner.ttc"}
    mid = program.imported(program.root, "a")
    assert mid is not None and mid.key == str((tmp_path / "lib" / "mid.ttc").resolve())
    checked = check_program(program, {"a.a.n": "9"})
    assert checked.params == {"": {}, "a": {}, "a.a": {"n": 9}}


def test_a_file_imported_twice_is_loaded_once_but_is_two_instances(tmp_path: Path) -> None:
    write(tmp_path / "h.ttc", HELPER)
    root = write(tmp_path / "root.ttc", main_importing(("h.ttc", "a"), ("./h.ttc", "b")))
    program = load_program(root, file="root.ttc")
    assert len(program.modules) == 2
    assert [i.path for i in program.instances()] == ["", "a", "b"]
    checked = check_program(program, {"a.n": "8"})
    assert checked.params == {"": {}, "a": {"n": 8}, "b": {"n": 4}}


def _render(program_error: SemanticDiagnosticError | SyntaxDiagnosticError) -> str:
    return program_error.render()


def test_missing_import_is_a_diagnostic_at_the_import(tmp_path: Path) -> None:
    write(tmp_path / "helper.ttc", HELPER)
    root = write(tmp_path / "root.ttc", main_importing(("helpr.ttc", "a")))
    program = load_program(root, file="root.ttc")
    with pytest.raises(SemanticDiagnosticError) as e:
        check_program(program)
    assert e.value.render() == (
        "root.ttc:2:1: error: cannot import `helpr.ttc`: no such file `helpr.ttc`\n"
        '   2 | import "helpr.ttc" as a\n'
        "       ^^^^^^^^^^^^^^^^^^^^^^^\n"
        "  expected: a readable .ttc file, relative to the importing file\n"
        "  hint: did you mean `helper.ttc`?"
    )


def test_import_cycle_names_the_cycle(tmp_path: Path) -> None:
    write(tmp_path / "a.ttc", main_importing(("b.ttc", "b"), call="b"))
    write(tmp_path / "b.ttc", main_importing(("a.ttc", "a"), call="a"))
    program = load_program(tmp_path / "a.ttc", file="a.ttc")
    (diag,) = program.diagnostics
    assert diag.message == "import cycle: a.ttc -> b.ttc -> a.ttc"
    assert (diag.span.file, diag.span.line) == ("b.ttc", 2)


def test_self_import(tmp_path: Path) -> None:
    root = write(tmp_path / "me.ttc", main_importing(("me.ttc", "a")))
    (diag,) = load_program(root, file="me.ttc").diagnostics
    assert diag.message == "import cycle: me.ttc -> me.ttc"


def test_non_utf8_root_points_at_the_byte(tmp_path: Path) -> None:
    root = tmp_path / "bad.ttc"
    root.write_bytes(b"ttcl 1\nmodel p = \"x\xff\"\n")
    with pytest.raises(SemanticDiagnosticError) as e:
        load_program(root, file="bad.ttc")
    assert e.value.render() == (
        "bad.ttc:2:13: error: `bad.ttc` is not UTF-8 text (byte 0xff at line 2, column 13)\n"
        "  hint: save the file as UTF-8"
    )


def test_non_utf8_import(tmp_path: Path) -> None:
    (tmp_path / "h.ttc").write_bytes(b"\xfe\xff")
    root = write(tmp_path / "root.ttc", main_importing(("h.ttc", "a")))
    (diag,) = load_program(root, file="root.ttc").diagnostics
    assert diag.message == "cannot import `h.ttc`: `h.ttc` is not UTF-8 text (byte 0xfe at line 1, column 1)"
    assert diag.span.line == 2


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p, "no such file `x.ttc`"),
        (lambda p: (p.mkdir(), p)[1], "`x.ttc` is a directory, not a .ttc file"),
    ],
)
def test_unreadable_root(tmp_path: Path, make, message: str) -> None:  # noqa: ANN001
    path = make(tmp_path / "x.ttc")
    with pytest.raises(SemanticDiagnosticError) as e:
        load_program(path, file="x.ttc")
    assert e.value.diagnostics[0].message == message
    assert e.value.render().startswith(f"x.ttc:1:1: error: {message}")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads any file")
def test_permission_denied(tmp_path: Path) -> None:
    path = write(tmp_path / "x.ttc", HELPER)
    path.chmod(0)
    try:
        with pytest.raises(SemanticDiagnosticError, match="permission denied"):
            load_program(path, file="x.ttc")
    finally:
        path.chmod(0o644)


def test_source_imports_resolve_against_file_or_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "sub" / "h.ttc", HELPER)
    text = main_importing(("h.ttc", "a"))
    program = load_program(source=text, file=str(tmp_path / "sub" / "virtual.ttc"))
    assert program.diagnostics == () and len(program.modules) == 2
    monkeypatch.chdir(tmp_path / "sub")
    program = load_program(source=text)
    assert program.root.file == "<input>" and program.diagnostics == ()
    assert program.imported(program.root, "a").file == "h.ttc"


def test_syntax_error_in_an_import_is_reported_with_the_rest(tmp_path: Path) -> None:
    write(tmp_path / "h.ttc", "ttcl 1\nstrategy (\n")
    root = write(tmp_path / "root.ttc", main_importing(("h.ttc", "a")) + "strategy other(q: text) -> answer {\n    return vote(q)\n}\n")
    program = load_program(root, file="root.ttc")
    assert program.syntax_failed
    with pytest.raises(SyntaxDiagnosticError) as e:
        check_program(program)
    files = [d.span.file for d in e.value.diagnostics]
    assert files[0] == "h.ttc" and "root.ttc" in files
    assert any(d.message == "`cands` of `vote` must be candidates, got text" for d in e.value.diagnostics)


def test_syntax_error_in_the_root_raises(tmp_path: Path) -> None:
    root = write(tmp_path / "root.ttc", "ttcl 1\nstrategy (\n")
    with pytest.raises(SyntaxDiagnosticError):
        load_program(root, file="root.ttc")


def test_unusable_import_names_are_diagnostics(tmp_path: Path) -> None:
    long_name = "a" * 300 + ".ttc"
    root = write(tmp_path / "root.ttc", main_importing(("a\x00b.ttc", "x"), (long_name, "y"), call="x"))
    first, second = load_program(root, file="root.ttc").diagnostics
    assert first.message == "cannot import `a\\x00b.ttc`: `a\\x00b.ttc` is not a valid file name"
    assert second.message == f"cannot import `{long_name}`: cannot read `{long_name}`: File name too long"


def test_a_byte_order_mark_is_ignored(tmp_path: Path) -> None:
    root = tmp_path / "bom.ttc"
    root.write_bytes(b"\xef\xbb\xbf" + HELPER.encode())
    assert check_program(load_program(root)).entry.name == "main"


def test_a_missing_import_suggests_only_a_close_stem(tmp_path: Path) -> None:
    """`missing.ttc` was 'did you mean `bin.ttc`?': every name shares `.ttc` (found by a QA pass)."""
    write(tmp_path / "bin.ttc", HELPER)
    root = write(tmp_path / "root.ttc", main_importing(("missing.ttc", "a")))
    with pytest.raises(SemanticDiagnosticError) as e:
        check_program(load_program(root, file="root.ttc"))
    assert "cannot import `missing.ttc`" in e.value.render() and "did you mean" not in e.value.render()


def test_a_bundled_program_imports_by_its_ttcl_name_from_anywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """`ttcl programs --show adaptive > mine.ttc` (the documented way to copy and edit a bundled program) gave a
    program that did not compile: it imported `weighted_best_of_n.ttc` beside it, and `import "ttcl:NAME"` was
    refused (QA pass). A bundled program now imports as `ttcl:NAME`, wherever the importer is; a misspelt name
    is a diagnostic at the import with the close name."""
    from ttcl.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["programs", "--show", "adaptive"]) == 0
    (tmp_path / "mine.ttc").write_text(capsys.readouterr().out)
    assert main(["check", "mine.ttc"]) == 0
    assert "verdict: fits" in capsys.readouterr().out
    (tmp_path / "typo.ttc").write_text((tmp_path / "mine.ttc").read_text().replace("ttcl:weighted_best_of_n",
                                                                                  "ttcl:weighted_best_ofn"))
    with pytest.raises(SemanticDiagnosticError) as e:
        check_program(load_program(tmp_path / "typo.ttc"))
    d = e.value.diagnostics[0]
    assert d.message == "cannot import `ttcl:weighted_best_ofn`: no bundled program named 'weighted_best_ofn'"
    assert d.hint == "did you mean `ttcl:weighted_best_of_n`?" and d.span.line == 11
