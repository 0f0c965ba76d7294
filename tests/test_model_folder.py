"""A local model folder that transformers would load wrongly is refused in one line, exit 2 (QA pass).

Each bad folder is a copy of a shipped model with one file edited or removed:
a config.json that no longer matches the weights, weights that lack a
tensor, no tokenizer (or one with an empty vocabulary).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import ttcl
from ttcl.cli import main
from ttcl.compiler import models
from ttcl.compiler.diagnostics import SemanticDiagnosticError
from ttcl.compiler.pipeline import compile_program
from ttcl.errors import TtclRuntimeError
from ttcl.runtime.backends.transformers import TransformersBackend
from ttcl.runtime.verifiers import RewardModelVerifier
from ttcl.zoo.registry import MODELS_DIR

RUN = ["run", "ttcl:self_consistency", "--input", "1 +1", "--set", "n=1", "--device", "cpu"]


def copy_model(tmp_path: Path, name: str = "arith-m", **config: object) -> Path:
    """A copy of shipped model `name` in tmp_path, its config.json updated with `config`."""
    dst = tmp_path / name
    shutil.copytree(MODELS_DIR / name, dst)
    cfg = json.loads((dst / "config.json").read_text())
    (dst / "config.json").write_text(json.dumps({**cfg, **config}))
    models.clear_cache()
    return dst


def ttcl_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "250"}  # wide enough for transformers' whole LOAD REPORT, were it printed
    return subprocess.run([sys.executable, "-m", "ttcl", *args], capture_output=True, text=True, env=env, timeout=600)


def test_weights_that_do_not_match_the_config_are_refused_in_one_line(tmp_path: Path) -> None:
    """n_embd 64 -> 48: transformers raised RuntimeError after a 20-line LOAD REPORT; exit 70, "a bug in ttcl"."""
    bad = copy_model(tmp_path, n_embd=48)
    proc = ttcl_cli(*RUN, "--model", f"policy={bad}")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == (f"error: cannot load model from '{bad}': its weights do not match config.json (e.g. "
                           "transformer.wte.weight is 88x64 in the weights, 88x48 by the config; 28 tensors differ)\n")


def test_the_api_raises_a_ttcl_error_for_weights_that_do_not_match(tmp_path: Path) -> None:
    bad = copy_model(tmp_path, n_embd=32)
    with pytest.raises(TtclRuntimeError, match=r"its weights do not match config.json \(e.g\. "):
        ttcl.run("ttcl:self_consistency", inputs="1 +1", set={"n": 1}, models={"policy": str(bad)}, device="cpu")


def test_weights_that_lack_a_tensor_are_refused_not_filled_with_noise(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    bad = copy_model(tmp_path)
    weights = load_file(bad / "model.safetensors")
    del weights["transformer.ln_f.weight"]
    save_file(weights, bad / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(TtclRuntimeError) as e:
        ttcl.run("ttcl:self_consistency", inputs="1 +1", set={"n": 1}, models={"policy": str(bad)}, device="cpu")
    assert str(e.value) == (f"cannot load model from '{bad}': its weights have no transformer.ln_f.weight, which "
                            "config.json (GPT2LMHeadModel) describes; transformers would fill them with random numbers")


@pytest.mark.parametrize(("n_layer", "says"), [
    (3, "its weights have no transformer.h.2.attn.c_attn.bias and 11 more tensors, which config.json "
        "(GPT2LMHeadModel) describes; transformers would fill them with random numbers"),
    (1, "its weights do not match config.json (they hold transformer.h.1.attn.c_attn.weight and 10 more tensors, "
        "which the model it describes has no place for)"),
])
def test_a_config_with_another_depth_than_the_weights_is_refused(tmp_path: Path, n_layer: int, says: str) -> None:
    """n_layer 2 -> 3 ran a third layer of random numbers, 2 -> 1 dropped a trained layer: both exit 0."""
    bad = copy_model(tmp_path, n_layer=n_layer)
    with pytest.raises(TtclRuntimeError) as e:
        ttcl.run("ttcl:self_consistency", inputs="1 +1", set={"n": 1}, models={"policy": str(bad)}, device="cpu")
    assert str(e.value) == f"cannot load model from '{bad}': {says}"


def test_a_reward_model_whose_config_does_not_match_is_refused(tmp_path: Path) -> None:
    bad = copy_model(tmp_path, "arith-orm", n_embd=32)
    with pytest.raises(TtclRuntimeError, match=rf"cannot load AutoModelForSequenceClassification from '{bad}': "
                       r"its weights do not match config.json \(e\.g\. transformer\.wte\.weight is \d+x\d+ in the weights, "
                       r"\d+x32 by the config"):
        RewardModelVerifier(str(bad), device="cpu")


NO_TOKENIZER = ("it has no tokenizer (no tokenizer.json or tokenizer_config.json): save the model's tokenizer beside it "
                "(`tokenizer.save_pretrained(DIR)`)")


def without_tokenizer(tmp_path: Path) -> Path:
    bad = copy_model(tmp_path)
    (bad / "tokenizer.json").unlink()
    (bad / "tokenizer_config.json").unlink()
    return bad


@pytest.mark.parametrize("command", ["check", "run"])
def test_a_model_without_a_tokenizer_is_refused_before_it_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                               command: str) -> None:
    """transformers built an empty-vocabulary tokenizer from config.json: every item failed "empty prompt", exit 0."""
    bad = without_tokenizer(tmp_path)
    args = RUN if command == "run" else ["check", "ttcl:self_consistency"]
    code = main([*args, "--model", f"policy={bad}"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"error: model `policy`, overridden to `{bad}`: model `{bad}`: {NO_TOKENIZER}\n" in err


def test_the_run_refuses_a_model_without_a_tokenizer_before_loading_it(tmp_path: Path) -> None:
    bad = without_tokenizer(tmp_path)
    with pytest.raises(TtclRuntimeError) as e:
        TransformersBackend(bad, device="cpu")
    assert str(e.value) == f"cannot load model from '{bad}': {NO_TOKENIZER}"


def test_a_folder_with_a_config_alone_still_checks_for_its_sizes(tmp_path: Path) -> None:
    bad = without_tokenizer(tmp_path)
    (bad / "model.safetensors").unlink()
    compile_program(source=f'ttcl 1\nmodel policy = "{bad}"\nstrategy main(question: text[<=20]) -> answer {{\n'
                           '    return vote(sample(policy, "{question}", n = 2, max_tokens = 10))\n}\n')


def test_a_tokenizer_with_an_empty_vocabulary_is_refused(tmp_path: Path) -> None:
    bad = copy_model(tmp_path)
    tok = json.loads((bad / "tokenizer.json").read_text())
    (bad / "tokenizer.json").write_text(json.dumps({**tok, "model": {**tok["model"], "vocab": {}}}))
    with pytest.raises(SemanticDiagnosticError, match=f"model `{bad}`: its tokenizer.json has an empty vocabulary: "):
        compile_program(source=f'ttcl 1\nmodel policy = "{bad}"\n'
                               'strategy main(question: text[<=20]) -> answer {\n'
                               '    return vote(sample(policy, "{question}", n = 2, max_tokens = 10))\n}\n')


def test_a_tokenizer_that_only_loading_shows_empty_is_refused_by_the_run(tmp_path: Path) -> None:
    """A tokenizer_config.json naming a slow tokenizer, with no vocabulary file beside it: it loads, empty."""
    bad = without_tokenizer(tmp_path)
    (bad / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "GPT2Tokenizer"}))
    with pytest.raises(TtclRuntimeError) as e:
        TransformersBackend(bad, device="cpu")
    assert str(e.value) == (f"cannot load model from '{bad}': its tokenizer has an empty vocabulary: save the model's "
                            "tokenizer beside it (`tokenizer.save_pretrained(DIR)`)")


def test_a_verifier_loaded_beside_a_server_policy_shows_no_loading_bar(capfd: pytest.CaptureFixture[str]) -> None:
    """transformers' "Loading weights" bar was turned off only where a local policy loaded: with the policy on a
    server, a run loading its PRM printed the bar amid the run's own (SGLang pass). Every load is quiet now, and
    the caller's setting of the bar is left as it was."""
    from transformers.utils import logging as hf_logging

    hf_logging.enable_progress_bar()
    RewardModelVerifier(str(MODELS_DIR / "arith-orm"), device="cpu")
    assert "Loading weights" not in capfd.readouterr().err
    assert hf_logging.is_progress_bar_enabled()
