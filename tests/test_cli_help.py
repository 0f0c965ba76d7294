"""`--help` reads as it should: flags take no value, arguments are named, integer options say so."""

from __future__ import annotations

import re

import pytest

from ttcl.cli import main

COMMANDS = [[], ["check"], ["graph"], ["run"], ["eval"], ["fmt"], ["serve"], ["programs"], ["models"],
            ["data"], ["data", "arith"], ["data", "expr"], ["data", "countdown"], ["zoo", "train"]]


def help_text(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main([*argv, "--help"]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: " ".join(a) or "ttcl")
def test_flags_show_no_value_and_usage_names_the_arguments(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    text = help_text(capsys, *argv)
    assert "<bool>" not in text and "<list[" not in text
    usage = next(line for line in text.splitlines() if "Usage:" in line)
    assert "{" not in usage and "}" not in usage, usage
    for flag in ("--help", "--json", "--debug", "--check"):
        line = next((ln for ln in text.splitlines() if re.search(rf"{flag}\b(?!-)", ln)), None)
        if line is not None:
            assert not re.search(rf"{flag}\s+<", line), line


def test_program_arguments_are_named_and_say_what_they_take(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("check", "graph", "run", "eval"):
        text = help_text(capsys, command)
        assert re.search(rf"Usage: .*{command} \[OPTIONS\] PROGRAM\b", text), text
        assert "ttcl:NAME" in text
    assert re.search(r"Usage: .*fmt \[OPTIONS\] FILES\.\.\.", help_text(capsys, "fmt"))
    assert main(["check", "ttcl:best_of_n"]) == 0  # what the help says is true
    capsys.readouterr()


@pytest.mark.parametrize("task", ["arith", "expr", "countdown"])
def test_data_integer_options_show_int_and_refuse_other_values(task: str, capsys: pytest.CaptureFixture[str]) -> None:
    text = help_text(capsys, "data", task)
    for option in ("--n", "--seed"):
        line = next(ln for ln in text.splitlines() if re.search(rf"{option}\s", ln))
        assert "<int>" in line and "<str>" not in line, line
        assert main(["data", task, option, "1.5"]) == 2
        assert f"invalid value for {option}: expected an integer, got '1.5'" in capsys.readouterr().err


def test_arith_steps_have_an_upper_bound(capsys: pytest.CaptureFixture[str]) -> None:
    """`--steps 99999999` grew to 2 GB with no output; 100,000 steps wrote a line `ttcl run` refuses (QA pass)."""
    assert main(["data", "arith", "--steps", "1001", "--n", "1"]) == 2
    assert "invalid value for --steps: 1 to 1,000 operations, got '1001'" in capsys.readouterr().err
    assert main(["data", "arith", "--steps", "1000", "--n", "1", "--max-value", "999"]) == 0
    assert len(capsys.readouterr().out) < 1 << 20


@pytest.mark.parametrize("task", ["arith", "expr", "countdown"])
def test_data_output_writes_what_stdout_would_and_keeps_the_old_file_on_a_bad_run(
        task: str, tmp_path: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]) -> None:
    """`ttcl data` had no `--output` (left alone in session 37): a shell redirect leaves a cut file on Ctrl-C."""
    assert main(["data", task, "--n", "5", "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    out = tmp_path / "deep" / "d.jsonl"  # type: ignore[operator]
    assert main(["data", task, "--n", "5", "--seed", "3", "-o", str(out)]) == 0
    assert out.read_text() == printed and capsys.readouterr().err == f"wrote 5 problems to {out}\n"
    assert main(["data", task, "--n", "5", "--seed", "x", "-o", str(out)]) == 2  # refused before it writes
    assert out.read_text() == printed
    assert main(["data", task, "-o", str(out.parent)]) == 2
    assert f"invalid value for --output: `{out.parent}` is a folder" in capsys.readouterr().err
    assert sorted(p.name for p in out.parent.iterdir()) == ["d.jsonl"]  # no temporary file left
