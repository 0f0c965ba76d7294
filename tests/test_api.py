"""The Python API (`ttcl.run`) checks what `ttcl run` checks: every bad argument is a TtclError naming its
keyword before any model loads; each `ttcl run` option has its keyword; errors shared with the CLI say which."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LONG = "12 +3 -4 *2 +7 -1 +9 -3 *2 +5 -8 +1 *3 -2 +4"  # far over text[<=8] in arith-s tokens


SHORT = ('ttcl 1\nmodel policy = "ttcl:arith-s"\nbudget per item { calls <= 8 }\n'
         'strategy main(question: text[<=8]) -> answer {\n    return vote(sample(policy, "{question}\\n", n = 2, '
         'max_tokens = 16))\n}\n')


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"inputs": ["1 +1", "2 +2"], "limit": -1}, "limit=-1: expected a positive number of items"),
    ({"dataset": "DS", "limit": 0}, "limit=0: expected a positive number of items"),
    ({"inputs": 123}, "inputs: expected a string or a list of strings, got int"),
    ({"inputs": [1, 2]}, "inputs[0]: expected a string, got int"),
    ({"inputs": []}, "inputs: expected at least one input text"),
    ({"inputs": "  "}, "inputs: the input text is empty"),
    ({"inputs": ["1 +1", "\udcff +1"]}, "inputs[1]: the input text is not valid Unicode: a lone surrogate U+DCFF"),
    ({"inputs": "1 +1", "seed": "x"}, "seed: expected an int, got str"),
    ({"inputs": "1 +1", "set": "n=8"}, "set: expected a mapping of param names to values, e.g. set={'n': 8}"),
    ({"inputs": "1 +1", "set": {"n": None}}, "set={'n': None}: expected a number, a string or a bool"),
    ({"inputs": "1 +1", "models": ["policy=ttcl:arith-m"]},
     "models: expected a mapping of model names to paths or URLs, e.g. models={'policy': 'ttcl:arith-m'}"),
    ({"path": None, "inputs": "1 +1"}, "path: expected a .ttc path or `ttcl:NAME`, got None"),
    ({"path": "ttcl 1\nmodel policy = \"ttcl:arith-s\"\n", "inputs": "1 +1"},  # said "File name too long" (QA pass)
     "path: got the text of a program, not a path: save it to a .ttc file"),
    ({"inputs": "1 +1", "resume": True}, "resume=True needs trace=FILE"),
    ({"inputs": "1 +1", "resume": True, "overwrite": True, "trace": "TRACE"},
     "resume=True and overwrite=True contradict each other"),
    ({"inputs": "1 +1", "device": "gpu"}, "device='gpu': expected one of auto, cpu, cuda"),
    ({"inputs": "1 +1", "judge": 3}, "judge: expected a checker's name"),
    ({"inputs": "1 +1", "fields": {"question": "q"}}, "fields= maps a dataset's fields"),
    # an int past Python's 4,300 digits was a bare ValueError (QA pass)
    ({"inputs": "1 +1", "seed": 10 ** 4400}, "seed: an int of more than 4,300 digits"),
    ({"inputs": "1 +1", "set": {"n": 10 ** 4400}}, "set['n']: an int of more than 4,300 digits"),
    # `ttcl run` options that were no keyword at all (QA pass: TypeError)
    ({"inputs": "1 +1", "batch_items": 0}, "batch_items=0: expected a positive number of items"),
    ({"inputs": "1 +1", "schedule": "fast"}, "schedule='fast': expected one of auto, lockstep, stream"),
    ({"inputs": "1 +1", "allow_remote": "gpu-box"}, "allow_remote: expected a list of host names"),
    ({"inputs": "1 +1", "allow_remote": ["http://gpu-box:8000"]}, "--allow-remote 'http://gpu-box:8000': expected a host"),
    # keys that are one after stripping were merged, the last one winning (QA pass)
    ({"inputs": "1 +1", "set": {" n ": 2, "n": 3}}, "set: ' n ' and 'n' name the same key; keep one"),
    ({"inputs": "1 +1", "models": {"policy": "ttcl:arith-s", " policy": "ttcl:arith-m"}},
     "models: 'policy' and ' policy' name the same key; keep one"),
])
def test_api_arguments_are_checked_and_named(tmp_path: Path, kwargs: dict, message: str) -> None:
    """A wrong type or value is a TtclError naming the keyword, never a TypeError/ValidationError or a silent
    drop (`limit=-1` ran all but the last input), and it comes before any model loads."""
    import ttcl
    from ttcl.errors import TtclError

    ds = tmp_path / "d.jsonl"
    ds.write_text("".join(json.dumps({"question": f"{i + 2} +{i}", "answer": str(2 * i + 2)}) + "\n" for i in range(3)))
    swap = {"DS": str(ds), "TRACE": str(tmp_path / "t.jsonl")}
    kwargs = {k: swap.get(v, v) if isinstance(v, str) else v for k, v in kwargs.items()}
    with pytest.raises(TtclError, match=re.escape(message)) as raised:
        ttcl.run(kwargs.pop("path", str(ROOT / "programs" / "self_consistency.ttc")), device=kwargs.pop("device", "cpu"), **kwargs)
    assert raised.value.exit_code == 2 and not (tmp_path / "t.jsonl").exists()


def test_api_set_takes_numpy_scalars_as_numbers(tmp_path: Path) -> None:
    """`set={"n": numpy.int64(2)}` (a sweep over `numpy.arange`) was refused as "got int64" (QA pass)."""
    import numpy as np

    import ttcl

    out = ttcl.run(ROOT / "programs" / "self_consistency.ttc", inputs="3 +4", device="cpu",
                   set={"n": np.int64(2), "temperature": np.float32(0.5)})
    assert out.summary.header["params"]["n"] == 2 and out.summary.header["params"]["temperature"] == 0.5
    assert out.summary.actual_total["calls"] == 2


def test_api_takes_max_input_tokens_and_verifiers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two `ttcl run` flags the API lacked (QA pass): a program whose input is plain `text` could not run from
    Python, and its error pointed at a flag; a user's checker could not be named."""
    import ttcl
    from ttcl.compiler import checks_calls
    from ttcl.errors import TtclError
    from ttcl.runtime import tasks

    prog = tmp_path / "plain.ttc"
    prog.write_text('ttcl 1\nmodel policy = "ttcl:arith-s"\nverifier mine = check("qa_mine")\n'
                    'strategy main(question: text) -> answer {\n    d = sample(policy, "{question}\\n", n = 2, max_tokens = 16)\n'
                    '    return vote(verify(mine, d))\n}\n')
    (tmp_path / "qa_checks.py").write_text("def score(question, completion):\n    return 1.0\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    try:
        with pytest.raises(TtclError) as e:
            ttcl.run(prog, inputs="1 +1", device="cpu", verifiers={"qa_mine": "qa_checks:score"})
        assert "input `question` has no length bound" in str(e.value)
        assert "--max-input-tokens is max_input_tokens=N" in "".join(getattr(e.value, "__notes__", []))
        out = ttcl.run(prog, inputs="1 +1", device="cpu", max_input_tokens=8, verifiers={"qa_mine": "qa_checks:score"},
                       judge="qa_mine")
        assert out.summary.results[0]["correct"] is True  # judged by the user's checker: every answer is right
        with pytest.raises(TtclError, match="max_input_tokens=0: expected a positive number"):
            ttcl.run(prog, inputs="1 +1", device="cpu", max_input_tokens=0)
    finally:
        tasks._CLI.pop("qa_mine", None)
        tasks._CLI_SPECS.pop("qa_mine", None)
        checks_calls.registered_checkers.cache_clear()


def test_api_reads_a_dataset_from_a_text_only_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    """A notebook's or a test runner's `sys.stdin` has no `.buffer`: `dataset="-"` raised AttributeError (QA pass)."""
    import io

    import ttcl
    from ttcl.errors import TtclError

    monkeypatch.setattr(sys, "stdin", io.StringIO('{"question": "1 +1", "answer": "2"}\n'))
    out = ttcl.run(ROOT / "programs" / "self_consistency.ttc", dataset="-", set={"n": 2}, device="cpu")
    assert len(out.answers) == 1 and out.summary.graded == 1
    monkeypatch.setattr(sys, "stdin", None)
    with pytest.raises(TtclError, match="this process has no standard input"):
        ttcl.run(ROOT / "programs" / "self_consistency.ttc", dataset="-", set={"n": 2}, device="cpu")


def test_api_trace_never_overwrites_what_it_reads(tmp_path: Path) -> None:
    import ttcl
    from ttcl.errors import TtclError

    prog = tmp_path / "p.ttc"
    prog.write_text(SHORT)
    with pytest.raises(TtclError, match=r"trace='.*p\.ttc': that is the program this run reads"):
        ttcl.run(prog, inputs="3 +4", trace=prog, overwrite=True, device="cpu")
    assert prog.read_text() == SHORT  # the API wrote its trace over the program
    with pytest.raises(TtclError, match="is a directory; give a file name"):
        ttcl.run(prog, inputs="3 +4", trace=tmp_path, device="cpu")


def test_api_one_input_over_its_bound_raises_like_input_and_a_list_stops_it(tmp_path: Path) -> None:
    import ttcl
    from ttcl.errors import TtclError

    prog = tmp_path / "short.ttc"
    prog.write_text(SHORT)
    with pytest.raises(TtclError, match=r"inputs: the input is 44 tokens \(model ttcl:arith-s's tokenizer\), longer "
                                        r"than the strategy's declared bound `question: text\[<=8\]`, so main/\S+ did "
                                        r"not run"):
        ttcl.run(prog, inputs=LONG, device="cpu")
    out = ttcl.run(prog, inputs=["3 +4", LONG], device="cpu")  # a list is a dataset: the long item is stopped
    assert out.answers[1] is None and out.summary.stopped == 1 and out.summary.items == 2


def test_api_batch_items_and_schedule_keep_the_answers_and_charges(tmp_path: Path) -> None:
    """`batch_items=` and `schedule=` (QA pass: `ttcl run` options the API lacked) change how items are batched,
    never what an item answers or is charged."""
    import ttcl

    inputs = ["3 +4", "12 -5 *2", "7 *3"]
    base = ttcl.run(ROOT / "programs" / "self_consistency.ttc", inputs=inputs, device="cpu", set={"n": 2}, seed=3)
    for kw in ({"batch_items": 1}, {"schedule": "stream"}):
        out = ttcl.run(ROOT / "programs" / "self_consistency.ttc", inputs=inputs, device="cpu", set={"n": 2}, seed=3, **kw)
        assert out.answers == base.answers
        def charged(o: ttcl.RunResult) -> list[dict]:  # the ledger less wall time
            return [{k: v for k, v in r["cost"].items() if k != "seconds"} for r in o.summary.results]

        assert charged(out) == charged(base)


def test_api_errors_shared_with_the_cli_say_which_keyword_a_flag_is() -> None:
    import ttcl
    from ttcl.errors import TtclError

    with pytest.raises(TtclError, match="`--set n=0`") as raised:
        ttcl.run("ttcl:self_consistency", inputs="1 +1", set={"n": 0}, device="cpu")
    assert "in ttcl.run(): --set is set={NAME: VALUE}" in getattr(raised.value, "__notes__", [])
    with pytest.raises(TtclError, match="--allow-remote 'gpu-box:80'") as raised:
        ttcl.run("ttcl:self_consistency", inputs="1 +1", allow_remote=["gpu-box:80"], device="cpu")
    assert "in ttcl.run(): --allow-remote is allow_remote=[HOST]" in getattr(raised.value, "__notes__", [])


def test_api_docstring_example_prints_what_it_shows() -> None:
    import ttcl.api

    doc = ttcl.api.__doc__ or ""
    call = re.search(r"out = (ttcl\.run\(.*\))\n", doc)
    shown = re.search(r"out\.answers +# (\[.*?\])", doc)
    assert call and shown, doc
    out = eval(call.group(1), {"ttcl": ttcl})  # noqa: S307 - the module's own docstring
    assert out.answers == json.loads(shown.group(1))
