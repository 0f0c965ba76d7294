"""`ttcl run --resume` refuses a trace written with other weights, another tokenizer or other card templates at the
same path (tests/test_run_cli.py holds the rest of `ttcl run`'s command line)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_run_cli import PROG

from ttcl.cli import main


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from ttcl.runtime.backends.random_model import save_random_gpt2

    root = tmp_path_factory.mktemp("resume")
    prog = root / "p.ttc"
    prog.write_text(PROG)
    ds = root / "d.jsonl"
    ds.write_text("".join(json.dumps({"question": f"{i + 2} +{i}", "answer": f"#### {2 * i + 2}"}) + "\n" for i in range(6)))
    return {"model": save_random_gpt2(root / "rand", n_positions=128), "prog": prog, "ds": ds}


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def copied_run(setup: dict[str, Path], tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """A copy of the test model (edited by the test), a trace, and the `ttcl run` arguments that use both."""
    model, trace = tmp_path / "m", tmp_path / "t.jsonl"
    shutil.copytree(setup["model"], model)
    return model, trace, ["run", str(setup["prog"]), "--dataset", str(setup["ds"]), "--model", f"policy={model}",
                          "--limit", "2", "--trace", str(trace)]


def test_a_resume_refuses_other_weights_at_the_same_path(capsys: pytest.CaptureFixture[str], setup: dict[str, Path],
                                                         tmp_path: Path) -> None:
    """The header named models by path only: a model folder whose weights changed (a retrained checkpoint) was
    resumed without a word, and the results mixed two models (QA pass: arith-s's and arith-m's)."""
    model, trace, run = copied_run(setup, tmp_path)
    assert cli(capsys, *run)[0] == 0
    assert cli(capsys, *run, "--resume")[0] == 0  # the same weights
    shutil.copytree(model, tmp_path / "copy")  # the same weights at another path: the same model (QA pass: refused)
    assert cli(capsys, *[f"policy={tmp_path / 'copy'}" if a == f"policy={model}" else a for a in run], "--resume")[0] == 0
    weights = model / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # one weight's last bit: another model of the same shape
    weights.write_bytes(bytes(data))
    code, _, err = cli(capsys, *run, "--resume")
    assert code == 2 and "cannot --resume: the model weights differ from those this trace was written with (policy '" in err


def test_a_resume_refuses_another_tokenizer_at_the_same_path(capsys: pytest.CaptureFixture[str],
                                                             setup: dict[str, Path], tmp_path: Path) -> None:
    """The fingerprint read the weights and config.json only: a tokenizer whose vocabulary changed (two digits
    swapped, the same weights) was resumed without a word, and its answers read other tokens."""
    model, trace, run = copied_run(setup, tmp_path)
    assert cli(capsys, *run)[0] == 0
    assert json.loads(trace.read_text().splitlines()[0])["tokenizer_files"].keys() == {"policy"}
    tok = model / "tokenizer.json"
    spec = json.loads(tok.read_text())
    vocab = spec["model"]["vocab"]
    vocab["3"], vocab["4"] = vocab["4"], vocab["3"]
    tok.write_text(json.dumps(spec))
    code, _, err = cli(capsys, *run, "--resume")
    assert code == 2 and "cannot --resume: the tokenizer files or card templates differ from those this trace was written with (policy '" in err
    header = json.loads(trace.read_text().splitlines()[0])
    header.pop("tokenizer_files")  # a trace written before tokenizers were fingerprinted resumes as it did
    trace.write_text("\n".join([json.dumps(header), *trace.read_text().splitlines()[1:]]) + "\n")
    assert cli(capsys, *run, "--resume")[0] == 0


def test_a_resume_refuses_a_model_card_that_reads_inputs_otherwise(capsys: pytest.CaptureFixture[str],
                                                                   setup: dict[str, Path], tmp_path: Path) -> None:
    """A reward model's `input_template` edited at the same path resumed without a word, and its scores mixed
    0.718 with 0.017 (review). What the runtime reads of ttcl_meta.json is fingerprinted; a card's figures are
    not, so re-carding a model does not refuse its traces."""
    model, _, run = copied_run(setup, tmp_path)
    meta = {"input_template": "{question}\n{completion}", "wall_seconds": 1.0}
    (model / "ttcl_meta.json").write_text(json.dumps(meta))
    assert cli(capsys, *run)[0] == 0
    (model / "ttcl_meta.json").write_text(json.dumps({**meta, "wall_seconds": 2.0}))
    assert cli(capsys, *run, "--resume")[0] == 0  # a card's figure: the same model
    (model / "ttcl_meta.json").write_text(json.dumps({**meta, "input_template": "Q: {question}\nA: {completion}"}))
    code, _, err = cli(capsys, *run, "--resume")
    assert code == 2 and "cannot --resume: the tokenizer files or card templates differ from those this trace was written with" in err
