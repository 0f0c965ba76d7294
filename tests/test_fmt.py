"""`ttcl fmt`: golden identity files, exact output for messy input, comments, and the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from ttcl.cli import main
from ttcl.compiler.ast import same_shape
from ttcl.compiler.fmt import format_module, format_source
from ttcl.compiler.parse import parse

GOLDEN = sorted((Path(__file__).parent / "golden" / "parse").glob("*.ttc"))
PROGRAMS = sorted((Path(__file__).parent.parent / "programs").glob("*.ttc"))


@pytest.mark.parametrize("path", GOLDEN, ids=[p.stem for p in GOLDEN])
def test_golden_files_are_fixed_points(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    assert format_source(source, str(path)) == source


@pytest.mark.parametrize("path", PROGRAMS, ids=[p.stem for p in PROGRAMS])
def test_library_programs_format_idempotently_and_safely(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    once = format_source(source)
    assert format_source(once) == once
    assert same_shape(parse(once), parse(source))


MESSY = '''ttcl 1
"""Doc."""
strategy main( question : text[ <= 64 ], ) -> answer
{
  drafts=sample( policy,
                 question,   # the prompt
                 n=4 ) ; x = ((1+2))*3
  if agreement(drafts)>=0.5 { return vote(drafts) }
  else { drafts = drafts+drafts }
  repeat 2 { drafts=top(drafts,1) }
  until best_score(drafts)>0.9


  return best( drafts )
}
param n : int=auto in 1 .. 8
budget per item { calls<=8;gen_tokens<=1k }
model policy="ttcl:arith-s"
'''

CANONICAL = '''ttcl 1
"""Doc."""

model policy = "ttcl:arith-s"

param n: int = auto in 1..8

budget per item {
    calls <= 8
    gen_tokens <= 1k
}

strategy main(question: text[<=64]) -> answer {
    # the prompt
    drafts = sample(policy, question, n = 4)
    x = (1 + 2) * 3
    if agreement(drafts) >= 0.5 {
        return vote(drafts)
    } else {
        drafts = drafts + drafts
    }
    repeat 2 {
        drafts = top(drafts, 1)
    } until best_score(drafts) > 0.9

    return best(drafts)
}
'''


def test_messy_program_formats_exactly() -> None:
    assert format_source(MESSY) == CANONICAL
    assert format_source(CANONICAL) == CANONICAL
    assert same_shape(parse(MESSY).model_copy(update={"comments": []}), parse(CANONICAL).model_copy(update={"comments": []}))


def test_strings_are_reescaped_canonically() -> None:
    source = 'ttcl 1\nstrategy m() -> answer {\n    x = "tab\there \\d+ {{a}} \\\\n {c.text}"\n}\n'
    assert format_source(source) == 'ttcl 1\n\nstrategy m() -> answer {\n    x = "tab\\there \\d+ {{a}} \\\\n {c.text}"\n}\n'


def test_numbers_keep_their_spelling() -> None:
    source = "ttcl 1\nbudget per item { flops <= 2E12; gen_tokens <= 8k; calls <= 0064 }\n"
    assert "flops <= 2E12\n    gen_tokens <= 8k\n    calls <= 0064\n" in format_source(source)


def test_format_module_without_source_keeps_comments_in_order() -> None:
    source = "ttcl 1\n# a\nmodel p = \"x\"  # b\nstrategy m() -> answer {\n    # c\n    return p\n}\n"
    module = parse(source)
    text = format_module(module)
    assert [line.strip() for line in text.splitlines() if "#" in line] == ["# a", 'model p = "x"  # b', "# c"]
    assert format_source(text) == text


def test_reordered_declarations_take_their_comments() -> None:
    source = 'ttcl 1\n# the strategy\nstrategy m() -> answer {\n    return 1\n}\n# the model\nmodel p = "x"\n'
    assert format_source(source) == (
        'ttcl 1\n\n# the model\nmodel p = "x"\n\n# the strategy\nstrategy m() -> answer {\n    return 1\n}\n'
    )


def test_blank_lines_between_comment_groups_are_kept() -> None:
    """Two comment groups separated by blank lines were merged into one (QA s36 #12); docs/language.md: one
    blank line is kept where the source had any."""
    assert format_source("ttcl 1\n# only comment\n\n\n# two\n") == "ttcl 1\n# only comment\n\n# two\n"
    source = ('ttcl 1\n# models\n\n# the policy\nmodel p = "x"\n'
              "strategy m() -> answer {\n    # a\n\n    # b\n    x = 1\n\n    # c\n\n    return x\n"
              "    # d\n\n\n    # e\n}\n# end\n\n# really\n")
    expected = ('ttcl 1\n\n# models\n\n# the policy\nmodel p = "x"\n\n'
                "strategy m() -> answer {\n    # a\n\n    # b\n    x = 1\n\n    # c\n\n    return x\n"
                "    # d\n\n    # e\n}\n# end\n\n# really\n")
    assert format_source(source) == expected
    assert format_source(expected) == expected
    # code between two comments is no blank line: comments moved out of an expression stay together
    moved = "ttcl 1\nstrategy m() -> answer {\n    x = f(1,  # a\n\n          2,  # c\n          3)\n    return x\n}\n"
    assert "    # a\n    # c\n    x = f(1, 2, 3)\n" in format_source(moved)


# ---------------------------------------------------------------- command line


def test_cli_rewrites_in_place(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "p.ttc"
    path.write_text(MESSY)
    assert main(["fmt", str(path)]) == 0
    assert path.read_text() == CANONICAL
    assert capsys.readouterr().err == f"reformatted {path}\n"
    assert main(["fmt", str(path)]) == 0
    assert capsys.readouterr().err == ""


def test_cli_check_lists_files_that_would_change(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    messy, clean = tmp_path / "a.ttc", tmp_path / "b.ttc"
    messy.write_text(MESSY)
    clean.write_text(CANONICAL)
    assert main(["fmt", "--check", str(tmp_path)]) == 1
    assert capsys.readouterr().err == f"would reformat {messy}\n"
    assert messy.read_text() == MESSY
    assert main(["fmt", "--check", str(clean)]) == 0


def test_cli_diff(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "p.ttc"
    path.write_text('ttcl 1\nmodel p="x"\n')
    assert main(["fmt", "--diff", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"--- {path} (original)\n+++ {path} (formatted)\n" in out
    assert '-model p="x"\n+\n+model p = "x"\n' in out
    assert path.read_text() == 'ttcl 1\nmodel p="x"\n'


def test_cli_stdin(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO('ttcl 1\nmodel   p="x"\n'))
    assert main(["fmt", "-"]) == 0
    assert capsys.readouterr().out == 'ttcl 1\n\nmodel p = "x"\n'


def test_cli_syntax_error_exits_2_and_continues(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad, good = tmp_path / "a.ttc", tmp_path / "b.ttc"
    bad.write_text("ttcl 1\nmodel p = \n")
    good.write_text('ttcl 1\nmodel p="x"\n')
    assert main(["fmt", str(bad), str(good)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{bad}:2:10: error: unexpected end of file\n")
    assert f"reformatted {good}" in err
    assert good.read_text() == 'ttcl 1\n\nmodel p = "x"\n'


def test_cli_a_directory_without_programs_is_said_not_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("no programs here\n")
    assert main(["fmt", "--check", str(tmp_path)]) == 0
    assert capsys.readouterr().err == f"{tmp_path}: no .ttc files below this directory; nothing to format\n"


def test_cli_usage_errors_exit_2_without_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fmt"]) == 2
    assert "Missing argument 'files'" in capsys.readouterr().err
    assert main(["fmt", "--bogus", "x.ttc"]) == 2
    assert "No such option: --bogus" in capsys.readouterr().err


def test_cli_read_errors_match_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    garbage = tmp_path / "garbage.ttc"
    garbage.write_bytes(b"ttcl 1\n\x01\x1b[31m\xc3\xa9x\xff\x07 rest\n")
    for path in (garbage, tmp_path / "missing.ttc"):
        assert main(["check", str(path)]) == 2
        checked = capsys.readouterr().err
        assert main(["fmt", "--check", str(path)]) == 2
        assert capsys.readouterr().err == checked
        assert ":0:0:" not in checked and "\x1b" not in checked and "\x01" not in checked
    assert checked.startswith(f"{tmp_path / 'missing.ttc'}:1:1: error: no such file")
    garbage.unlink()
    (tmp_path / "dir.ttc").mkdir()  # a directory named like a program is not a file to format
    assert main(["fmt", "--check", str(tmp_path)]) == 0
    assert capsys.readouterr().err == f"{tmp_path}: no .ttc files below this directory; nothing to format\n"


@pytest.mark.parametrize("name", ["pooled_adaptive", "adaptive", "countdown_kept"])
def test_a_crlf_file_formats_as_its_lf_copy_and_keeps_its_line_ends(name: str, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """The printer found `split` and comments by offsets into the LF text inside the CRLF one: `split = need` was
    dropped (the program then failed to check) and comments moved (QA pass)."""
    lf = (PROGRAMS[0].parent / f"{name}.ttc").read_text()
    assert format_source(lf.replace("\n", "\r\n")) == format_source(lf) == lf
    path = tmp_path / "p.ttc"
    path.write_bytes(("# padding\n" * 12 + lf).replace("\n", "\r\n").encode())
    assert main(["fmt", str(path)]) == 0
    assert path.read_bytes() == ("# padding\n" * 12 + lf).replace("\n", "\r\n").encode()  # canonical as it was


def test_cli_a_file_it_cannot_write_is_an_error_and_the_others_are_formatted(tmp_path: Path,
                                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """It was an internal error (exit 70) that left the later files unformatted (QA pass)."""
    import os
    import subprocess

    locked, later = tmp_path / "locked.ttc", tmp_path / "later.ttc"
    for p in (locked, later):
        p.write_text(MESSY)
    if os.geteuid() != 0:
        locked.chmod(0o444)
    elif subprocess.run(["chattr", "+i", str(locked)], capture_output=True).returncode != 0:
        pytest.skip("root without chattr: no file here is unwritable")
    try:
        assert main(["fmt", str(locked), str(later)]) == 2
    finally:
        subprocess.run(["chattr", "-i", str(locked)], capture_output=True) if os.geteuid() == 0 else locked.chmod(0o644)
    err = capsys.readouterr().err
    assert f"{locked}: error: cannot write the formatted file" in err and "internal error" not in err
    assert locked.read_text() == MESSY and later.read_text() == format_source(MESSY)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["later.ttc", "locked.ttc"]  # no temporary file left


def test_cli_formats_the_file_a_symlink_names_and_keeps_the_link(tmp_path: Path) -> None:
    """It replaced the link with a formatted regular file and left the file it named unformatted (QA pass)."""
    import os

    (tmp_path / "shared").mkdir()
    target, link = tmp_path / "shared" / "target.ttc", tmp_path / "link.ttc"
    target.write_text(MESSY)
    target.chmod(0o640)
    link.symlink_to(os.path.join("shared", "target.ttc"))
    assert main(["fmt", str(link)]) == 0
    assert link.is_symlink() and os.readlink(link) == os.path.join("shared", "target.ttc")
    assert target.read_text() == CANONICAL and target.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in (tmp_path / "shared").iterdir()) == ["target.ttc"]  # no temporary file left


def test_cli_keeps_hard_links_and_the_mode(tmp_path: Path) -> None:
    """A rename gave the formatted name a new inode: its other name kept the old text (QA pass)."""
    import os

    one, two = tmp_path / "h1.ttc", tmp_path / "h2.ttc"
    one.write_text(MESSY)
    one.chmod(0o640)
    os.link(one, two)
    inode = one.stat().st_ino
    assert main(["fmt", str(one)]) == 0
    assert one.stat().st_ino == two.stat().st_ino == inode and one.stat().st_nlink == 2
    assert two.read_text() == CANONICAL and one.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h1.ttc", "h2.ttc"]  # the backup is removed


@pytest.mark.parametrize("links", [1, 2])
def test_cli_a_write_that_fails_midway_leaves_the_old_file_whole(tmp_path: Path, links: int) -> None:
    """A real failed write (the file-size limit below the formatted size: EFBIG partway through), in a child
    process: the old text stays whole, whether it was replaced by a rename (one name) or rewritten in place
    (hard links), and nothing is left beside it."""
    import os
    import resource
    import subprocess
    import sys

    path = tmp_path / "p.ttc"
    path.write_text(MESSY)
    if links == 2:
        os.link(path, tmp_path / "other.ttc")
    assert len(MESSY.encode()) < 480 < len(CANONICAL.encode())

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (480, 480))

    p = subprocess.run([sys.executable, "-c", "import sys; from ttcl.cli import main; sys.exit(main(sys.argv[1:]))",
                        "fmt", str(path)], capture_output=True, text=True, preexec_fn=limit, timeout=120)
    assert p.returncode == 2, p.stderr
    assert f"{path}: error: cannot write the formatted file: File too large" in p.stderr
    assert "Traceback" not in p.stderr and path.read_text() == MESSY
    assert sorted(q.name for q in tmp_path.iterdir()) == sorted(["p.ttc", "other.ttc"][:links])


def test_cli_refuses_to_overwrite_a_backup_left_by_an_interrupted_fmt(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import os

    one = tmp_path / "h1.ttc"
    one.write_text(MESSY)
    os.link(one, tmp_path / "h2.ttc")
    backup = tmp_path / "h1.ttc.ttcl-fmt-backup"
    backup.write_text("the only copy of an old text")
    assert main(["fmt", str(one)]) == 2
    err = capsys.readouterr().err
    assert f"{one}: error: cannot write the formatted file: `{backup}` exists" in err
    assert backup.read_text() == "the only copy of an old text" and one.read_text() == MESSY


def test_a_trailing_comment_after_tab_indentation_keeps_its_column_as_shown() -> None:
    """A tab counted one column, so a comment aligned in a tab-indented file moved 3 columns left (QA pass)."""
    src = ("ttcl 1\nmodel policy = \"ttcl:arith-s\"\nstrategy main(question: text[<=40]) -> answer {\n"
           "\tpaths = sample(policy, \"{question}\\n\", n = 4, max_tokens = 40)      # the draws\n"
           "\treturn vote(paths)                                                 # the answer\n}\n")
    out = format_source(src).splitlines()
    shown = [line.expandtabs(4) for line in src.splitlines()]
    for said in ("# the draws", "# the answer"):
        was, now = (next(line for line in lines if said in line) for lines in (shown, out))
        assert now.index(said) == was.index(said), (now, was)
    assert format_source("\n".join(out) + "\n") == "\n".join(out) + "\n"  # and stays there
    # a tab inside a string before the comment: the same rule on both sides, so formatting twice changes
    # nothing (the slow suite's hypothesis sweep found it moving one column a pass)
    docstring = 'ttcl 1\n"""aaa\t"""  # c2\nmodel policy = "ttcl:arith-s"\n'
    once = format_source(docstring)
    assert format_source(once) == once and once.splitlines()[1] == '"""aaa\t"""  # c2'
    # a comment after a docstring of two lines keeps its column, and stays there (it moved on every pass: the
    # span's column runs on across the string, and the printer measured both of its lines as one)
    two = 'ttcl 1\n"""ab\ncd""" ;        # c1\n'
    once = format_source(two)
    assert format_source(once) == once and once.splitlines()[2] == 'cd"""          # c1'


def test_an_empty_path_and_a_closed_stdin_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """`ttcl fmt ""` formatted every program below the working directory; `ttcl fmt - <&-` was exit 70 (QA pass)."""
    (tmp_path / "x.ttc").write_text("ttcl 1\nstrategy   main(q: text) -> text {\n    return q\n}\n")
    monkeypatch.chdir(tmp_path)
    assert main(["fmt", ""]) == 2
    assert "'':1:1: error: an empty path names no file" in capsys.readouterr().err
    assert "strategy   main" in (tmp_path / "x.ttc").read_text()
    monkeypatch.setattr("sys.stdin", None)
    assert main(["fmt", "-"]) == 2
    assert "<stdin>:1:1: error: this process has no standard input to read a program from" in capsys.readouterr().err


def test_a_name_too_long_is_a_read_error_not_a_crash(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`Path.is_dir()` raised ENAMETOOLONG: exit 70 in fmt and in run/eval --dataset (QA pass)."""
    long = str(tmp_path / ("a" * 300))
    assert main(["fmt", "--check", long + ".ttc"]) == 2
    assert "File name too long" in capsys.readouterr().err
    assert main(["run", "ttcl:self_consistency", "--dataset", long + ".jsonl"]) == 2
    assert ".jsonl: error: cannot read: File name too long" in capsys.readouterr().err


def test_a_docstring_holding_a_carriage_return_formats_once_and_keeps_its_text(tmp_path: Path) -> None:
    """A CR before an escaped newline in a docstring was written as CR + newline, which reads back as a newline:
    the docstring changed and `fmt --check` failed on fmt's own output (QA fuzz; a `\\r\\r\\n` file too)."""
    from ttcl.compiler.fmt import format_source
    from ttcl.compiler.parse import parse

    body = ('model policy = "ttcl:arith-s"\nstrategy main(question: text[<=40]) -> answer {\n'
            '    return vote(sample(policy, "{question}\\n", n = 2, max_tokens = 16))\n}\n')
    crcrlf = ('ttcl 1\n"""Doc\nmore"""\n' + body).replace("\n", "\r\r\n")
    for src in ('ttcl 1\n"""Doc: a\r\\nb"""\n' + body, crcrlf):
        once = format_source(src)
        assert format_source(once) == once
    src = 'ttcl 1\n"""Doc: a\r\\nb"""\n' + body
    assert parse(format_source(src)).docstring == parse(src).docstring == "Doc: a\r\nb"


def test_standard_input_is_read_as_a_file_is(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """`fmt -` passed bytes that are not UTF-8 through (`fmt --check -` accepted a program `check` refuses) and
    refused a byte-order mark a file may carry (QA pass)."""
    import io

    def stdin(data: bytes) -> None:
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", errors="surrogateescape"))

    stdin(b"ttcl 1\n# caf\xe9\n")
    assert main(["fmt", "-"]) == 2
    assert "<stdin>:2:6: error: `<stdin>` is not UTF-8 text (byte 0xe9 at line 2, column 6)" in capsys.readouterr().err
    stdin(b'\xef\xbb\xbfttcl 1\nmodel p = "ttcl:arith-s"\n')
    assert main(["fmt", "-"]) == 0
    assert capsys.readouterr().out == 'ttcl 1\n\nmodel p = "ttcl:arith-s"\n'
