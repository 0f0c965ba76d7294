"""`ttcl check` / `ttcl graph` from the command line: exit codes, --set, --model, --json, drawings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ttcl.cli import main

GOLDEN = Path(__file__).parent / "golden" / "valid"
PROGRAM = """ttcl 1
model policy = "/nonexistent/p" (params = 1M, n_layer = 2, d_model = 64)
param n: int = 8 in 1..64
budget per item { calls <= 4; gen_tokens <= 1k }
strategy main(question: text[<=20]) -> answer {
    drafts = sample(policy, question, n = n, max_tokens = 100)
    return vote(drafts)
}
"""


@pytest.fixture
def prog(tmp_path: Path) -> Path:
    path = tmp_path / "p.ttc"
    path.write_text(PROGRAM)
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_over_budget_exits_1_and_names_the_node(prog: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", str(prog))
    assert code == 1
    assert "verdict: OVER BUDGET" in out
    assert "  calls: bound 8 > limit 4, over by 4" in out
    assert "    main/drafts (sample, line 6): 8 (100%)" in out


def test_set_fixes_over_budget(prog: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", str(prog), "--set", "n=4")
    assert code == 0
    assert "verdict: fits" in out
    assert "budget per item: calls 4 / 4 ok; gen_tokens 400 / 1,000 ok" in out


def test_invalid_program_exits_2_with_a_positioned_diagnostic(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.ttc"
    bad.write_text(PROGRAM.replace("vote(drafts)", "vote(draft)"))
    code, out, err = run(capsys, "check", str(bad))
    assert code == 2
    assert f"{bad}:7:17: error:" in err
    assert "Traceback" not in err + out


def test_bad_set_value_exits_2(prog: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "check", str(prog), "--set", "n=5000")
    assert code == 2
    assert "outside the range 1..64" in err


def test_bad_model_option_exits_2(prog: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "check", str(prog), "--model", "policy")
    assert code == 2
    assert "expected NAME=PATH" in err


def test_model_override_reads_the_directory(prog: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"n_layer": 1, "n_embd": 8, "n_positions": 256}))
    code, out, _ = run(capsys, "check", str(prog), "--set", "n=1", "--model", f"policy={model}", "--json")
    assert code == 0
    report = json.loads(out)
    # GPT-2 block with d=8: 12·64 + 13·8 = 872 per layer, + ln_f 16 -> N = 888; prompt 21, 100 generated.
    n_params, ld = 888, 1 * 8
    flops = sum(2 * n_params + 2 * ld * p for p in range(1, 122))
    assert report["total"]["flops"] == flops


def test_json_report(prog: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", str(prog), "--json")
    assert code == 1
    report = json.loads(out)
    assert report["verdict"] == "over"
    assert report["total"]["calls"] == 8
    assert [r["node"] for r in report["rows"]] == ["main/drafts"]
    assert report["limits"][0]["dominating"][0]["node"] == "main/drafts"
    assert report["exit_code"] == 1  # as the invalid and `auto` answers carry it (QA pass)
    code, out, _ = run(capsys, "check", str(prog), "--json", "--set", "n=4")
    assert (code, json.loads(out)["verdict"], json.loads(out)["exit_code"]) == (0, "fits", 0)


def test_json_invalid_program(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.ttc"
    bad.write_text("ttcl 1\nstrategy main( -> answer {}\n")
    code, out, _ = run(capsys, "check", str(bad), "--json")
    assert code == 2
    data = json.loads(out)
    assert data["verdict"] == "invalid"
    assert data["diagnostics"][0]["span"]["line"] == 2


def test_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "check", str(tmp_path / "nope.ttc"))
    assert code == 2
    assert "no such file" in err
    code, out, _ = run(capsys, "check", "ttcl:nope", "--json")  # no place in a program: the same keys, span null
    diag = json.loads(out)["diagnostics"][0]
    assert code == 2 and diag["span"] is None and diag["severity"] == "error" and "ttcl:nope" in diag["rendered"]


def test_graph_dot_and_mermaid(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "graph", str(GOLDEN / "branch.ttc"))
    assert code == 0
    assert out.startswith('digraph "main" {')
    assert '"main/if" [label="guard L13", shape=diamond' in out
    assert '"main/if" -> "main/extra" [style=dashed, color=orange, label="T"];' in out
    assert 'calls≤12' in out
    code, out, _ = run(capsys, "graph", str(GOLDEN / "branch.ttc"), "--format", "mermaid")
    assert code == 0
    assert out.startswith("flowchart TD\n")
    assert "-.->|F|" in out


def test_graph_bad_format(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "graph", str(GOLDEN / "branch.ttc"), "--format", "svg")
    assert code == 2
    assert "expected dot, mermaid or png" in err


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` is not installed")
def test_graph_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_file = tmp_path / "g.png"
    code, _, _ = run(capsys, "graph", str(GOLDEN / "branch.ttc"), "--format", "png", "-o", str(out_file))
    assert code == 0
    assert out_file.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_png_without_dot_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    code, _, err = run(capsys, "graph", str(GOLDEN / "branch.ttc"), "--format", "png", "-o", str(tmp_path / "g.png"))
    assert code == 2
    assert "Graphviz `dot` program is not installed" in err


def test_auto_that_cannot_fit_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "a.ttc"
    path.write_text(PROGRAM.replace("param n: int = 8 in 1..64", "param n: int = auto in 5..64"))
    code, _, err = run(capsys, "check", str(path))
    assert code == 1
    assert f"{path}:3:16: error: no value of `n` in 5..64 fits the budget: with n = 5, calls 5 > 4" in err


def test_auto_choice_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "a.ttc"
    path.write_text(PROGRAM.replace("param n: int = 8 in 1..64", "param n: int = auto in 1..64"))
    code, out, _ = run(capsys, "check", str(path))
    assert code == 0
    assert "auto: n = 4 in 1..64 (n = 5 would give calls 5 > 4)" in out


def test_an_auto_param_of_an_imported_module_says_how_to_set_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Only the checked program's own `auto` params are solved; an imported one was an error at the module's line
    with no hint (QA pass). The hint names the `--set` that gives it a value, and that `--set` fits."""
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "sc.ttc").write_text(PROGRAM.replace("param n: int = 8 in 1..64", "param n: int = auto in 1..64"))
    top = tmp_path / "top.ttc"
    top.write_text('ttcl 1\nimport "lib/sc.ttc" as sc\nstrategy main(question: text[<=40]) -> answer {\n'
                   "    return sc.main(question)\n}\n")
    code, _, err = run(capsys, "check", str(top))
    assert code == 2 and "param `n` is `auto`" in err
    assert "hint: `auto` is solved for the program on the command line, not for a module it imports: give `sc`'s " \
           "`n` a value, e.g. `--set sc.n=4`" in " ".join(err.split())
    code, out, _ = run(capsys, "check", str(top), "--set", "sc.n=4")
    assert code == 0 and "fits" in out
    assert "sc.ttc:6 " in out  # the node's line, in its own file, named (QA pass: `6` alone, read as top.ttc's)


def test_a_bool_param_is_shown_as_the_language_spells_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "b.ttc"
    path.write_text(PROGRAM.replace("param n: int = 8 in 1..64", "param n: int = 2 in 1..64\nparam loud: bool = true"))
    code, out, _ = run(capsys, "check", str(path))
    assert code == 0 and "loud = true" in out and "True" not in out  # Python's spelling before (QA pass)


def test_imported_sub_budget_over(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(GOLDEN)
    code, out, _ = run(capsys, "check", "import_call.ttc", "--set", "bon.n=5")
    assert code == 1
    assert ("sub-budget of main/bon.main#1 (called at import_call.ttc:15, declared in sub_budget.ttc): "
            "calls 10 / 8 OVER by 2") in out
    assert "  sub-budget of main/bon.main#1: calls: bound 10 > limit 8, over by 2" in out
    assert "    main/bon.main#1/drafts (sample, line 13): 5 (50%)" in out


def test_model_overrides_bind_library_models(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--model policy=DIR --model orm=DIR`: a declared model and a verifier's model ref, rebound to local dirs."""
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"n_layer": 1, "n_embd": 8, "n_positions": 256}))
    program = Path(__file__).resolve().parent.parent / "programs" / "weighted_best_of_n.ttc"
    code, out, err = run(capsys, "check", str(program), "--model", f"policy={model}", "--model", f"orm={model}", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert {r["op"] for r in report["rows"]} == {"sample", "verify"}
    assert report["verdict"] == "fits"


def test_context_overflow_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 11: the runtime cannot run a sequence past the context, so `check` must not accept it."""
    path = tmp_path / "p.ttc"
    path.write_text(PROGRAM.replace("(params = 1M, n_layer = 2, d_model = 64)", "(params = 1M, n_layer = 2, d_model = 64, n_ctx = 100)"))
    code, _, err = run(capsys, "check", str(path), "--set", "n=1")
    assert code == 2
    assert f"{path}:6:14: error: main/drafts (sample) may need 121 tokens of context; model `policy` has 100" in err


def test_a_bad_model_override_says_it_is_the_override(prog: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The caret shows the declaration, but the unresolvable ref came from --model: the message says so."""
    code, out, err = run(capsys, "check", str(prog), "--model", "policy=ttcl:arith-ss")
    assert code == 2 and "Traceback" not in err + out
    assert f"{prog}:2:1: error: model `policy`, overridden to `ttcl:arith-ss`: unknown bundled model" in err
    assert "did you mean 'ttcl:arith-s'" in err
    assert "hint: `ttcl:arith-ss` comes from an override of `policy` (e.g. --model), not from this line; " \
           "`ttcl models` lists them" in err


def test_a_relative_model_override_is_read_from_the_current_directory(tmp_path: Path, monkeypatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """`--model policy=zoo/arith-s` names ./zoo/arith-s, as at a shell prompt, whatever directory the program
    is in (it was read from the program's directory, so a freshly built zoo could not be named)."""
    from ttcl.zoo.registry import MODELS_DIR

    here, elsewhere = tmp_path / "here", tmp_path / "progs"
    shutil.copytree(MODELS_DIR / "arith-s", here / "zoo" / "arith-s")
    elsewhere.mkdir()
    program = elsewhere / "p.ttc"
    program.write_text(PROGRAM.replace(' (params = 1M, n_layer = 2, d_model = 64)', ''))
    monkeypatch.chdir(here)
    code, out, err = run(capsys, "check", str(program), "--model", "policy=zoo/arith-s", "--set", "n=4")
    assert code == 0, err
    assert "fits" in out
    code, _, err = run(capsys, "check", str(program), "--model", "policy=zoo/arith-z", "--set", "n=4")
    assert code == 2
    assert f"overridden to `{here / 'zoo' / 'arith-z'}`" in err and "(no such directory)" in err
    assert "read from the current directory" in err


def test_graph_never_writes_over_the_program_it_draws(prog: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`ttcl graph p.ttc -o p.ttc` replaced the program with DOT text (found by a QA pass); through a link too."""
    before = prog.read_text()
    link = tmp_path / "link.dot"
    link.symlink_to(prog)
    for target in (prog, link):
        code, _, err = run(capsys, "graph", str(prog), "-o", str(target))
        assert code == 2
        assert err == (f"error: --output {target}: that is the program this command reads, and writing there would "
                       "destroy it; give --output another path\n")
    assert prog.read_text() == before
    code, _, _ = run(capsys, "graph", str(prog), "-o", str(tmp_path / "g.dot"))
    assert code == 0 and (tmp_path / "g.dot").read_text().startswith("digraph")


def test_graph_never_writes_over_a_program_named_with_a_colon_or_an_import(prog: Path, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """QA pass: the guard compared `-o` with the argument's text after its last `:`, so `ttcl graph v1:p.ttc -o
    v1:p.ttc` (and `ttcl:dvts` -o the shipped dvts.ttc) wrote the drawing over the program; an imported file was
    not guarded at all."""
    from ttcl.programs import BUNDLED_DIR

    colon = tmp_path / "v1:p.ttc"
    colon.write_text(prog.read_text())
    (tmp_path / "m.ttc").write_text('ttcl 1\nimport "v1:p.ttc" as p\n'
                                    "strategy main(question: text[<=20]) -> answer {\n    return p.main(question)\n}\n")
    shipped = BUNDLED_DIR / "dvts.ttc"
    before = shipped.read_bytes()
    for argv, target, what in (([str(colon)], colon, "program"), (["ttcl:dvts"], shipped, "program"),
                               ([str(tmp_path / "m.ttc")], colon, f"imported file {colon}")):
        code, _, err = run(capsys, "graph", *argv, "-o", str(target))
        assert code == 2 and err.startswith(f"error: --output {target}: that is the {what} this command reads"), err
    assert colon.read_text() == prog.read_text() and shipped.read_bytes() == before


def test_graph_names_the_file_of_an_imported_node(capsys: pytest.CaptureFixture[str]) -> None:
    """QA pass: an imported strategy's nodes showed their own file's line numbers as if they were the root's."""
    code, out, _ = run(capsys, "graph", "ttcl:adaptive")
    assert code == 0
    assert 'drafts = sample ttcl:weighted_best_of_n:L29' in out and "probe_paths = sample L27" in out


def test_graph_output_makes_its_folders_as_trace_does(prog: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """`graph -o nodir/sub/g.dot` failed on the missing folder while `--trace` makes it (QA s36 #11); a part of
    the path that is a file is named, not "Not a directory"."""
    target = tmp_path / "nodir" / "sub" / "g.dot"
    code, _, err = run(capsys, "graph", str(prog), "-o", str(target))
    assert (code, err) == (0, f"wrote {target}\n") and target.read_text().startswith("digraph")
    afile = tmp_path / "afile"
    afile.write_text("x")
    for bad in (afile / "g.dot", afile / "sub" / "g.dot"):
        code, _, err = run(capsys, "graph", str(prog), "-o", str(bad))
        assert (code, err) == (2, f"error: cannot write `{bad}`: `{afile}` is not a directory\n")
    assert afile.read_text() == "x"


def test_an_option_error_reads_error_first(prog: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every bad input starts `error:` (a program's diagnostic as `file:line:col: error:`), options too."""
    code, _, err = run(capsys, "graph", str(prog), "--format", "svg")
    assert (code, err) == (2, "error: --format 'svg': expected dot, mermaid or png\n")


def test_a_budget_of_seconds_alone_is_named_not_called_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "s.ttc"
    path.write_text(PROGRAM.replace("calls <= 4; gen_tokens <= 1k", "seconds <= 0.5"))
    code, out, _ = run(capsys, "check", str(path))
    assert code == 0
    assert "verdict: nothing to prove statically: the per-item budget sets only run-time limits" in out
    assert "no per-item budget declared" not in out  # said so though one was declared (QA pass)


def test_auto_without_a_budget_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "a.ttc"
    path.write_text(PROGRAM.replace("param n: int = 8 in 1..64", "param n: int = auto in 1..64")
                    .replace("budget per item { calls <= 4; gen_tokens <= 1k }\n", ""))
    code, _, err = run(capsys, "check", str(path))
    assert code == 2  # was 1, the exit of a budget verdict (QA pass)
    assert "`auto` param `n` needs a budget to fit" in err


def test_max_input_tokens_must_be_positive_and_is_said_unused(prog: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "check", str(prog), "--set", "n=4", "--max-input-tokens", "0")
    assert code == 2 and "--max-input-tokens 0: expected a positive number of tokens" in err
    code, out, _ = run(capsys, "check", str(prog), "--set", "n=4", "--max-input-tokens", "50")
    assert code == 0  # the input declares `text[<=20]`: 50 changes nothing, and says so
    assert "warning: max_input_tokens 50 is not used: every input of `main` declares its own bound" in out


def test_auto_with_a_bound_that_dips_inside_its_range_is_an_error(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Both ends over and k = 38..42 fitting: "no value of `k` fits", exit 1 (QA pass); now the dip is named."""
    path = tmp_path / "a.ttc"
    path.write_text(PROGRAM.replace("param n: int = 8 in 1..64", "param k: int = auto in 1..100")
                    .replace("n = n,", "n = (k - 40) * (k - 40) + 1,"))
    code, _, err = run(capsys, "check", str(path))
    assert code == 2
    assert "with k = 1, calls 1522 > 4" in err and ", but k = " in err and "assuming a larger value never costs" in err


def test_a_model_call_that_does_not_reach_the_answer_is_a_warning(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """QA pass: `e = verify(orm, d)`, never read, ran and was charged without a word. A leading `_` says it is
    meant (a pool program's scores, which `ttcl eval --pool` reads from the trace)."""
    src = ('ttcl 1\nmodel policy = "ttcl:arith-s"\nverifier orm = reward("ttcl:arith-orm")\n'
           'strategy main(question: text[<=40]) -> answer {\n'
           '    d = sample(policy, "{question}\\n", n = 4, max_tokens = 40)\n'
           '    e = verify(orm, d)\n'
           '    return vote(d)\n}\n')
    path = tmp_path / "unused.ttc"
    path.write_text(src)
    assert main(["check", str(path)]) == 0
    assert ("warning: `e` (line 6, verify) does not reach the answer: its model calls still run and are charged "
            "(their output is in the trace); drop it, or name it `_e` if that is meant") in capsys.readouterr().out
    path.write_text(src.replace("    e = verify", "    _e = verify"))
    assert main(["check", str(path)]) == 0
    assert "does not reach the answer" not in capsys.readouterr().out
    # a strategy call's value: warned at the call, and a `_` name silences it too (left alone last stop: no way to)
    call = ('ttcl 1\nmodel policy = "ttcl:arith-s"\n'
            'strategy helper(q: text[<=40]) -> answer {\n    return vote(sample(policy, "{q}\\n", n = 2, max_tokens = 20))\n}\n'
            'strategy main(question: text[<=40]) -> answer {\n    h = helper(question)\n'
            '    return vote(sample(policy, "{question}\\n", n = 2, max_tokens = 20))\n}\n')
    path.write_text(call)
    assert main(["check", str(path)]) == 0
    assert ("warning: the call of helper (line 7) does not reach the answer: its model calls still run and are "
            "charged (their output is in the trace); drop it, or assign it to a name that begins with `_` if that is "
            "meant") in capsys.readouterr().out.replace("\n", " ").replace("  ", " ")
    path.write_text(call.replace("    h = helper", "    _h = helper"))
    assert main(["check", str(path)]) == 0
    assert "does not reach the answer" not in capsys.readouterr().out
    # read only by a loop's `until` (whose last iteration checks nothing), or inside a `_` name: no warning
    # (QA pass: "score until good enough" was warned about, and `_b = verify(orm, sample(...))` too)
    path.write_text(src.replace("    e = verify(orm, d)\n", "    repeat 3 {\n        _b = verify(orm, sample("
                                "policy, \"{question}\\n\", n = 2, max_tokens = 40))\n        s = verify(orm, d)\n"
                                "        d = d + sample(policy, \"{question}\\n\", n = 2, max_tokens = 40)\n"
                                "    } until best_score(s) > 0.9\n"))
    assert main(["check", str(path)]) == 0
    assert "does not reach the answer" not in capsys.readouterr().out


def test_check_says_when_the_server_of_a_model_url_did_not_answer(capsys: pytest.CaptureFixture[str]) -> None:
    """`check --model policy=URL?local=...` with the server down bounded the program by the URL and said "fits"
    without a word, where the docs say check asks the server as run would (QA pass). It still bounds it (a check
    works with the server down), and says that it could not ask."""
    import socket

    with socket.socket() as s:  # a port that was free a moment ago, and that nothing listens on now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1?local=ttcl:arith-s"
    assert main(["check", "ttcl:self_consistency", "--model", f"policy={url}"]) == 0
    out, err = capsys.readouterr()
    assert "verdict: fits" in out
    assert f"note: http://127.0.0.1:{port}/v1 did not answer (" in err
    assert "without comparing the served model's context and config with it; `ttcl run` asks the server at start" in err


MARKUP = '''ttcl 1
model policy = "ttcl:arith-s"
param p: text = "[/]"
strategy main(question: text[<=40]) -> text {
    d = sample(policy, "{question}{p}\\n", n = 1, max_tokens = 4)
    if count(d) > 0 {
        return question
    }
    return question
}
'''


def test_user_text_is_printed_as_text_never_as_markup(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`[/]` in a param's value, a path, an answer or a `--by` value was Rich markup: exit 70 after the report
    (MarkupError), and `[x]` vanished (QA pass)."""
    folder = tmp_path / "a[" / "b]"
    folder.mkdir(parents=True)
    prog = folder / "p.ttc"
    prog.write_text(MARKUP)
    assert main(["check", str(prog)]) == 0
    out = capsys.readouterr().out
    assert "params: p = [/]" in out and "a[/b]/p.ttc: worst" in out
    assert main(["check", str(prog), "--set", "p=[x]"]) == 0 and "params: p = [x]" in capsys.readouterr().out
    assert main(["run", str(prog), "--input", "[/x]"]) == 0
    assert "answer: [/x]" in capsys.readouterr().out
    data = tmp_path / "d.jsonl"
    data.write_text('{"question": "1 +2", "answer": "3", "steps": "[/]"}\n')
    assert main(["run", str(prog), "--dataset", str(data), "--by", "steps"]) == 0
    assert "steps = [/]: accuracy" in capsys.readouterr().out


def test_a_text_param_set_to_undecodable_bytes_is_refused_at_its_declaration(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--set p=$'\\xff'` reached the budget's token count as a lone surrogate: exit 70 (QA pass)."""
    prog = tmp_path / "p.ttc"
    prog.write_text(MARKUP)
    for command in (["check", str(prog)], ["run", str(prog), "--input", "1 +2"]):
        assert main([*command, "--set", "p=\udcff"]) == 2
        err = capsys.readouterr().err
        assert "p.ttc:3:1: error: `--set p=\\udcff`: the value is not valid Unicode: a lone surrogate U+DCFF" in err


def test_a_program_ttcl_may_not_read_is_a_positioned_error(tmp_path: Path) -> None:
    """Click's own check answered first: "Usage: ... Invalid value for 'program': path 'F.ttc' is not readable",
    with no position and not in ttcl's words (QA pass)."""
    import os
    import subprocess
    import sys

    prog = tmp_path / "p.ttc"
    prog.write_text(MARKUP)
    prog.chmod(0)
    drop = []
    if os.geteuid() == 0:  # root reads any file: drop the capability that lets it
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv")
        drop = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    for command in (["check"], ["graph"], ["run", "--input", "1 +2"]):
        out = subprocess.run([*drop, sys.executable, "-m", "ttcl.cli", command[0], str(prog), *command[1:]],
                             capture_output=True, text=True)
        assert out.returncode == 2 and f"p.ttc:1:1: error: cannot read `{prog}`: permission denied" in out.stderr, out.stderr
        assert "Usage:" not in out.stderr


def test_a_report_of_many_nodes_shows_the_first_and_counts_the_rest(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """43k rows took 25 s to print (QA pass): the table stops at MAX_ROWS, and --json keeps every node."""
    from ttcl.commands.compile import MAX_ROWS

    prog = tmp_path / "big.ttc"
    prog.write_text('ttcl 1\nmodel policy = "ttcl:arith-s"\nstrategy main(question: text[<=4]) -> answer {\n'
                    '    acc = sample(policy, "{question}\\n", n = 1, max_tokens = 1)\n    repeat 600 {\n'
                    '        a0 = sample(policy, "{question}\\n", n = 1, max_tokens = 1)\n'
                    '        acc = top(acc + top(a0, 1), 1)\n    }\n    return vote(acc)\n}\n')
    assert main(["check", str(prog), "--json"]) == 0
    rows = len(json.loads(capsys.readouterr().out)["rows"])
    assert rows > MAX_ROWS
    assert main(["check", str(prog)]) == 0
    out = capsys.readouterr().out
    assert f"... {rows - MAX_ROWS:,} more nodes (--json lists them all)" in out and "total" in out
    assert main(["run", str(prog), "--input", "1 +2"]) == 0
    assert f"... {rows - MAX_ROWS:,} more nodes (--json lists them all)" in capsys.readouterr().out


def test_a_context_overflow_hint_names_the_default_max_tokens_and_the_verifier(tmp_path: Path,
                                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A first program with no `max_tokens` on a bundled model (160 tokens of context) was told to "lower
    max_tokens", which it never wrote, and so was its `verify`, which has none (QA pass)."""
    path = tmp_path / "p.ttc"
    path.write_text('ttcl 1\nmodel policy = "ttcl:arith-s"\nverifier prm = prm("ttcl:arith-prm")\n'
                    'strategy main(question: text[<=40]) -> answer {\n'
                    '    d = verify(prm, sample(policy, "{question}\\n", n = 4, temperature = 0.7))\n'
                    '    return best(d)\n}\n')
    code, _, err = run(capsys, "check", str(path))
    assert code == 2
    assert "main/d.sample (sample) may need 298 tokens of context; model `policy` has 160" in err
    assert "hint: `max_tokens` is 256 (`sample`'s default where a call gives none): give `max_tokens = 118` or less" in err
    assert "hint: lower the `max_tokens` of `sample` at line 5, whose candidates it reads; or lower the input's" in err
    path.write_text(path.read_text().replace("temperature = 0.7", "temperature = 0.7, max_tokens = 150"))
    code, _, err = run(capsys, "check", str(path))
    assert code == 2 and "hint: give `max_tokens = 118` or less" in err and "default" not in err


def test_a_set_of_an_imported_param_every_call_overrides_is_refused(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """`--set s1.more=30` where both calls give `more = ...` themselves changed nothing, and the trace header,
    the summary and a sweep (`+0.000 at 1.00x the FLOPs`) reported it as if it had (QA pass)."""
    (tmp_path / "s1.ttc").write_text(
        'ttcl 1\nmodel policy = "ttcl:arith-s"\nparam more: int = 4 in 1..16\nparam t: float = 0.8 in 0.0..2.0\n'
        'strategy main(question: text[<=40]) -> answer {\n'
        '    return vote(sample(policy, "{question}\\n", n = more, max_tokens = 100, temperature = t))\n}\n')
    top = tmp_path / "top.ttc"
    top.write_text('ttcl 1\nimport "s1.ttc" as s1\nimport "s1.ttc" as unused\n'
                   'strategy main(question: text[<=40]) -> answer {\n'
                   '    a = s1.main(question, more = 12)\n    b = s1.main(question, more = 2, t = 1.2)\n'
                   '    if a == b {\n        return a\n    }\n    return b\n}\n')
    code, _, err = run(capsys, "check", str(top), "--set", "s1.more=9")
    assert code == 2
    assert (f"{top}:5:9: error: `--set s1.more=9` changes nothing: no call of `s1`'s strategies (lines 5, 6) reads "
            "its own `more`: each gives `more = ...` itself, or does not use it") in err
    assert run(capsys, "check", str(top), "--set", "s1.t=0.5")[0] == 0  # the first call reads s1's own `t`
    code, _, err = run(capsys, "check", str(top), "--set", "unused.more=3")
    assert code == 2 and "`--set unused.more=3` changes nothing: no strategy of `unused` is called" in err
    (tmp_path / "d.jsonl").write_text('{"question": "1 +2", "answer": "#### 3"}\n')
    code, _, err = run(capsys, "eval", str(top), "--dataset", str(tmp_path / "d.jsonl"), "--sweep", "s1.more=2,9")
    assert code == 2 and "`--sweep s1.more=2` changes nothing" in err, err


def test_a_set_of_a_model_or_verifier_name_says_what_it_is(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--set orm=3` was told only "no param `orm`" (QA pass)."""
    program = Path(__file__).resolve().parent.parent / "programs" / "weighted_best_of_n.ttc"
    code, _, err = run(capsys, "check", str(program), "--set", "orm=3")
    assert code == 2 and "hint: `orm` is a verifier, not a param: `--model orm=PATH` loads another model for it" in err
    code, _, err = run(capsys, "check", str(program), "--set", "policy=3")
    assert code == 2 and "hint: `policy` is a model, not a param: `--model policy=PATH`" in err
