"""`ttcl run --resume --retry-failed`: items that failed because a server was down run again once it is
back, replaying their finished steps, with the budgets sound across both attempts.

The failure is real: a user's checker (`--verifier rfj=...`) that raises while a flag file exists, as a
checker server that is down would; the models are the shipped arith ones, run in this process.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from shipped import available

from ttcl.cli import main

pytestmark = pytest.mark.skipif(not available("ttcl:arith-s"), reason="needs the shipped arith models")

CHECKS = '''\
from pathlib import Path

DOWN = Path(__file__).with_name("server_down")


def score(question, completion):
    if DOWN.exists():
        raise ConnectionError("checker server unreachable after 4 tries")
    from ttcl.runtime.tasks import get_checker

    return get_checker("arith").outcome(question, completion)
'''

# Sample, score with the flaky checker, then (a node after the one that fails) sample again.
PROG = """\
ttcl 1
model policy = "ttcl:arith-s"
verifier j = check("rfj")
{budget}
strategy main(question: text[<=40]) -> answer {{
    drafts = sample(policy, "{{question}}\\n", n = 2, max_tokens = 112, temperature = 1.0)
    scored = verify(j, drafts)
    if best_score(scored) >= 0.0 {{
        more = sample(policy, "{{question}}\\n", n = 2, max_tokens = 112, temperature = 1.0)
        return vote(scored + verify(j, more))
    }}
    return vote(scored)
}}
"""
PER_ITEM = "budget per item { calls <= 3; on_exhaust = shrink }"  # `more` fits only after drafts' 2 calls count
POOL_CALLS = 16  # 6 items x 2 drafts = 12, so `more` (2 calls) fits for 2 items only
POOLED = f"budget per item {{ calls <= 4 }}\nbudget pooled {{ calls <= {POOL_CALLS} }}"


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ttcl.runtime.tasks.arith import iter_jsonl, make_problems

    root = tmp_path_factory.mktemp("retry")
    (root / "rf_flaky_checks.py").write_text(CHECKS)
    (root / "d.jsonl").write_text("".join(line if line.endswith("\n") else line + "\n"
                                          for line in iter_jsonl(make_problems(6, [1, 2, 3, 4], seed=0))))
    for name, budget in (("per_item", PER_ITEM), ("pooled", POOLED)):
        (root / f"{name}.ttc").write_text(PROG.format(budget=budget))
    return root


@pytest.fixture(autouse=True)
def checker_dir(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ttcl.runtime import tasks

    monkeypatch.chdir(work)  # --verifier imports the module from the current directory
    monkeypatch.setattr(tasks, "_CLI", {})
    monkeypatch.setattr(tasks, "_CLI_SPECS", {})


def run(capsys: pytest.CaptureFixture[str], work: Path, prog: str, trace: Path, *extra: str) -> tuple[int, dict, str]:
    code = main(["run", str(work / f"{prog}.ttc"), "--dataset", str(work / "d.jsonl"), "--verifier",
                 "rfj=rf_flaky_checks:score", "--device", "cpu", "--trace", str(trace), "--json", *extra])
    out = capsys.readouterr()
    return code, (json.loads(out.out) if code == 0 else {}), out.err


def results(trace: Path) -> list[dict]:
    """What each item ended with, from the trace: answers, status, and the costs a rerun reproduces."""
    from ttcl.runtime.trace import read_trace

    t = read_trace(trace)
    return [{"item": i, "answer": r.answer, "correct": r.correct, "status": r.status, "degraded": r.degraded,
             "calls": r.cost["calls"], "gen_tokens": r.cost["gen_tokens"],
             "nodes": sorted((n.node_id, n.status, n.cost.get("calls", 0.0)) for n in t.nodes[i])}
            for i, r in sorted(t.items.items())]


def records_after_last_resume(trace: Path) -> list[dict]:
    lines = [json.loads(ln) for ln in trace.read_text().splitlines()]
    last = max(k for k, r in enumerate(lines) if r["type"] == "resume")
    return lines[last + 1:]


def fail_then_retry(capsys: pytest.CaptureFixture[str], work: Path, prog: str, tmp: Path,
                    legacy: Path | None = None) -> tuple[Path, Path, dict]:
    """An uninterrupted run, then one while the checker's server is down, resumed as is, then retried.
    `legacy`: also save the failed trace there as a trace written before grant/spend records."""
    full, part = tmp / "full.jsonl", tmp / "part.jsonl"
    code, _, err = run(capsys, work, prog, full)
    assert code == 0, err
    (work / "server_down").touch()
    try:
        code, down, err = run(capsys, work, prog, part)
        assert code == 0, err
        assert down["failed"] == 6 and all("unreachable after 4 tries" in r["error"] for r in down["results"])
        if legacy is not None:
            legacy.write_text("".join(ln for ln in part.read_text().splitlines(keepends=True)
                                      if '"type": "grant"' not in ln and '"type": "spend"' not in ln))
        # a plain --resume keeps them failed, and says how to rerun them
        code, kept, err = run(capsys, work, prog, part, "--resume")
        assert code == 0 and kept["failed"] == 6
        assert ("6 items failed in the earlier run and are kept as failed; add --retry-failed to run them again"
                in err.splitlines())
    finally:
        (work / "server_down").unlink()
    code, retried, err = run(capsys, work, prog, part, "--resume", "--retry-failed")
    assert code == 0, err
    # each item's finished steps (its input, the drafts and the `if`'s constant) are replayed
    assert "rerunning the 6 items that failed in the earlier run (18 finished steps replayed)" in err.splitlines()
    return full, part, retried


def test_retry_failed_reruns_failed_items_and_replays_their_samples(
        capsys: pytest.CaptureFixture[str], work: Path, tmp_path: Path) -> None:
    """The retried items end as the uninterrupted run did (answers, statuses, shrinking, calls): the drafts
    come from the trace, not sampled again, and count towards each item's own budget (calls <= 3 shrinks
    `more` to one sample in both runs)."""
    full, part, retried = fail_then_retry(capsys, work, "per_item", tmp_path)
    assert retried["failed"] == 0 and retried["stopped"] == 0
    assert results(part) == results(full)
    assert all(r["calls"] == 3 and r["degraded"] for r in results(part))  # the per-item budget bound
    assert [r["status"] for r in retried["results"]] == ["ok"] * 6  # the summary shows the new results
    assert retried["actual_max"]["calls"] == 3
    new = records_after_last_resume(part)
    assert [r["item"] for r in new if r["type"] == "retry"] == list(range(6))
    assert all(sorted(r["kept"]) == ["main/drafts", "main/if.const", "main/question"]
               for r in new if r["type"] == "retry")
    ran = {(r["node_id"], r["type"]) for r in new if r["type"] in ("node", "grant", "spend")}
    assert not any(node == "main/drafts" for node, _ in ran)  # not generated, granted or paid again
    assert ("main/more", "spend") in ran
    # the failed attempt's records are retired: each item's nodes are the kept and the new ones
    from ttcl.runtime.trace import read_trace

    t = read_trace(part)
    assert sorted({n.node_id for n in t.retired if n.status == "failed"}) == ["main/scored"]
    assert not t.partial


def test_a_second_resume_after_the_retry_changes_nothing(
        capsys: pytest.CaptureFixture[str], work: Path, tmp_path: Path) -> None:
    full, part, retried = fail_then_retry(capsys, work, "per_item", tmp_path)
    before = results(part)
    for extra in ((), ("--retry-failed",)):
        code, again, err = run(capsys, work, "per_item", part, "--resume", *extra)
        assert code == 0, err
        assert "failed" not in err and "--retry-failed" not in err
        assert not [r for r in records_after_last_resume(part) if r["type"] != "resume"]
        assert results(part) == before == results(full)
        assert again["results"] == retried["results"]


def test_pooled_budget_is_charged_every_attempt(capsys: pytest.CaptureFixture[str], work: Path,
                                                tmp_path: Path) -> None:
    """The failed attempt's drafts (12 calls) stay charged to the pool: the retry has 4 calls left, so `more`
    runs for the same two items as in the uninterrupted run, and all attempts together stay within the pool."""
    from ttcl.runtime.trace import read_trace

    legacy = tmp_path / "legacy.jsonl"
    full, part, retried = fail_then_retry(capsys, work, "pooled", tmp_path, legacy)
    assert results(part) == results(full)
    assert [r["status"] for r in results(full)] == ["ok", "ok"] + ["stopped"] * 4  # the pool really bound
    t = read_trace(part)
    assert t.spent is not None and t.cut_short is not None
    charged = t.spent.get("calls", 0.0) + t.cut_short.get("calls", 0.0)
    assert charged <= POOL_CALLS
    # nothing paid twice, nothing dropped: every attempt's spend is the kept drafts plus the new samples
    assert charged == sum(r["calls"] for r in results(part)) == sum(r["calls"] for r in results(full)) == POOL_CALLS
    assert retried["actual_total"]["calls"] <= POOL_CALLS
    # a trace from before grant/spend records: the pool is charged from the failed attempt's node records
    code, _, err = run(capsys, work, "pooled", legacy, "--resume", "--retry-failed")
    assert code == 0, err
    assert results(legacy) == results(full)


def test_retry_failed_without_failed_items_is_a_no_op(capsys: pytest.CaptureFixture[str], work: Path,
                                                     tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    code, first, err = run(capsys, work, "per_item", trace)
    assert code == 0, err
    before = trace.read_text()
    code, again, err = run(capsys, work, "per_item", trace, "--resume", "--retry-failed")
    assert code == 0, err
    assert "rerunning" not in err and "kept as failed" not in err
    assert trace.read_text() == before + '{"type": "resume"}\n'
    assert again["results"] == first["results"]


@pytest.mark.parametrize(("extra", "message"), [
    ((), "--retry-failed reruns the failed items of a resumed run: add --resume"),
    (("--resume", "--ray"), "--retry-failed works on one machine only"),
])
def test_retry_failed_needs_resume_and_one_machine(capsys: pytest.CaptureFixture[str], work: Path, tmp_path: Path,
                                                    extra: tuple[str, ...], message: str) -> None:
    code = main(["run", str(work / "per_item.ttc"), "--dataset", str(work / "d.jsonl"), "--verifier",
                 "rfj=rf_flaky_checks:score", "--device", "cpu", "--trace", str(tmp_path / "t.jsonl"),
                 "--retry-failed", *extra])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    # under --json the same error is JSON on stdout
    code = main(["run", str(work / "per_item.ttc"), "--dataset", str(work / "d.jsonl"), "--verifier",
                 "rfj=rf_flaky_checks:score", "--device", "cpu", "--trace", str(tmp_path / "t.jsonl"),
                 "--retry-failed", *extra, "--json"])
    said = json.loads(capsys.readouterr().out)["diagnostics"][0]["message"]
    assert code == 2 and message in said
    assert not (tmp_path / "t.jsonl").exists()


def test_the_python_api_retries_failed_items_too(capsys: pytest.CaptureFixture[str], work: Path, tmp_path: Path) -> None:
    """`ttcl.run(..., resume=True, retry_failed=True)` is `--resume --retry-failed`."""
    import ttcl
    from ttcl.commands.compile import register_verifiers
    from ttcl.errors import TtclError

    full, part = tmp_path / "full.jsonl", tmp_path / "part.jsonl"
    assert run(capsys, work, "per_item", full)[0] == 0
    (work / "server_down").touch()
    try:
        code, down, _ = run(capsys, work, "per_item", part)
        assert code == 0 and down["failed"] == 6
    finally:
        (work / "server_down").unlink()
    register_verifiers(["rfj=rf_flaky_checks:score"])
    with pytest.raises(TtclError, match="retry_failed=True reruns the failed items of a resumed trace: add resume=True"):
        ttcl.run(work / "per_item.ttc", dataset=work / "d.jsonl", trace=part, retry_failed=True, device="cpu")
    out = ttcl.run(work / "per_item.ttc", dataset=work / "d.jsonl", trace=part, resume=True, retry_failed=True,
                   device="cpu")
    assert out.summary.failed == 0
    assert results(part) == results(full)


def test_eval_reusing_its_traces_runs_failed_items_again(capsys: pytest.CaptureFixture[str], work: Path,
                                                         tmp_path: Path) -> None:
    """`ttcl eval --traces DIR` reuses a finished trace: items that failed while a server was down used to stay
    failed (and count as wrong) on every rerun; they run again, and the figures equal a run that never failed."""
    def evaluate(traces: Path) -> tuple[dict, str]:
        code = main(["eval", str(work / "per_item.ttc"), "--dataset", str(work / "d.jsonl"), "--verifier",
                     "rfj=rf_flaky_checks:score", "--device", "cpu", "--traces", str(traces), "--json"])
        out = capsys.readouterr()
        assert code == 0, out.err
        return json.loads(out.out), out.err

    clean, _ = evaluate(tmp_path / "clean")
    (work / "server_down").touch()
    try:
        down, _ = evaluate(tmp_path / "flaky")
    finally:
        (work / "server_down").unlink()
    assert down["rows"][0]["failed"] == 6
    again, err = evaluate(tmp_path / "flaky")
    assert "rerunning the 6 items that failed in the earlier run" in err
    assert again["rows"][0]["failed"] == 0
    keep = ("accuracy", "lo", "hi", "items", "calls_per_item")
    assert {k: again["rows"][0][k] for k in keep} == {k: clean["rows"][0][k] for k in keep}
    # the second sample's prompt is no longer in the prefix cache (the drafts were replayed, not run): its prefill
    # is computed, and charged, again
    assert again["rows"][0]["flops_per_item"] >= clean["rows"][0]["flops_per_item"]
