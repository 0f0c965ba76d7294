"""Sizing reads the keys of the architecture config.json's `model_type` names, the model transformers builds.

QA pass: arith-m's config relabelled `model_type: llama` checked "fits" with
GPT-2's numbers, and `ttcl run` built a default-size Llama (6.7B) and was
OOM-killed. No test here runs such a folder: each is refused by the check,
before anything loads.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ttcl.cli import main
from ttcl.compiler import models
from ttcl.compiler.model_sizes import ARCHITECTURES
from ttcl.compiler.models import ModelSpecError, model_spec
from ttcl.zoo.registry import MODELS_DIR


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    models.clear_cache()


def copy_model(tmp_path: Path, name: str = "arith-m", drop: tuple[str, ...] = (), **config: object) -> Path:
    """A copy of shipped model `name`, its config.json updated with `config` and without the keys `drop`."""
    dst = tmp_path / name
    shutil.copytree(MODELS_DIR / name, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg = {k: v for k, v in {**cfg, **config}.items() if k not in drop}
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


def test_a_gpt2_config_relabelled_llama_is_refused_by_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = copy_model(tmp_path, model_type="llama", architectures=["LlamaForCausalLM"])
    code = main(["check", "ttcl:self_consistency", "--model", f"policy={bad}"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert (f"error: model `policy`, overridden to `{bad}`: `{bad / 'config.json'}` says model_type `llama`, but has "
            "no num_hidden_layers, hidden_size, intermediate_size, num_attention_heads, max_position_embeddings (it "
            "has GPT-2's n_layer, n_embd, n_head, n_positions instead: is model_type right?): transformers would "
            "build a default-size Llama in their place\n") in err
    assert "hint: `" in err and "make model_type and the size keys of config.json describe the model its weights hold" in err


@pytest.mark.parametrize(("config", "drop", "says"), [
    ({}, ("n_head",), "has no n_head"),
    ({"n_head": 3}, (), "n_embd 64 is not a multiple of n_head 3"),
    ({"n_layer": "2"}, (), "n_layer is '2', not a positive whole number"),
    ({"n_embd": 0}, (), "n_embd is 0, not a positive whole number"),
    ({"hidden_size": 48}, (), "hidden_size is 48 and n_embd is 64 (transformers reads both as n_embd)"),
])
def test_a_gpt2_config_whose_size_keys_are_missing_or_do_not_fit_is_refused(
        tmp_path: Path, config: dict, drop: tuple[str, ...], says: str) -> None:
    bad = copy_model(tmp_path, drop=drop, **config)
    with pytest.raises(ModelSpecError) as e:
        model_spec(str(bad))  # arith-m's ttcl_meta.json gives its count: the config is checked all the same
    assert e.value.message.startswith(f"`{bad / 'config.json'}` says model_type `gpt2`, but {says}")


LLAMA = {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 96,
         "num_attention_heads": 4, "max_position_embeddings": 128, "vocab_size": 50}


@pytest.mark.parametrize(("config", "says"), [
    ({"model_type": "mistral"}, "has no num_key_value_heads"),  # Mistral's default is 8, not the head count
    ({"num_key_value_heads": 3}, "num_attention_heads 4 is not a multiple of num_key_value_heads 3"),
    ({"num_attention_heads": 5}, "hidden_size 64 is not a multiple of num_attention_heads 5 (and there is no head_dim)"),
])
def test_a_llama_style_config_that_does_not_fit_together_is_refused(tmp_path: Path, config: dict, says: str) -> None:
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({**LLAMA, **config}))
    with pytest.raises(ModelSpecError) as e:
        model_spec(str(d))
    assert e.value.message.startswith(f"`{d / 'config.json'}` says model_type `{config.get('model_type', 'llama')}`, "
                                      f"but {says}")


@pytest.mark.parametrize("config", [
    {**LLAMA},
    {**LLAMA, "num_key_value_heads": 2, "attention_bias": True, "mlp_bias": True},
    {**LLAMA, "num_key_value_heads": 1, "head_dim": 32},
    {**LLAMA, "model_type": "mistral", "num_key_value_heads": 2, "head_dim": 8, "attention_bias": True},
    {**LLAMA, "model_type": "qwen2", "num_key_value_heads": 2},  # q, k, v have biases whatever attention_bias says
    {**LLAMA, "model_type": "qwen2", "num_key_value_heads": 4, "attention_bias": True},
    {"model_type": "gpt2", "n_layer": 2, "n_embd": 48, "n_head": 4, "n_positions": 64, "vocab_size": 50, "n_inner": 100},
])
def test_the_check_counts_what_transformers_builds(tmp_path: Path, config: dict) -> None:
    """The check's count of each architecture it reads equals the run's count of the model transformers builds
    from the same config (on the meta device: no weights are made). Qwen2's q/k/v biases were not counted."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from ttcl.runtime.backends.transformers import model_spec as run_spec

    (tmp_path / "config.json").write_text(json.dumps(config))
    with torch.device("meta"):
        built = AutoModelForCausalLM.from_config(AutoConfig.for_model(**config))
    assert model_spec(str(tmp_path)).non_embedding_params == run_spec(built).non_embedding_params


def test_every_shipped_model_passes_and_sizes_from_its_config_as_its_card_says() -> None:
    for d in sorted(p for p in MODELS_DIR.iterdir() if (p / "config.json").is_file()):
        config = json.loads((d / "config.json").read_text())
        meta = json.loads((d / "ttcl_meta.json").read_text())
        spec = model_spec(str(d))
        assert spec.non_embedding_params == meta["params_non_embedding"], d.name
        if config["architectures"] == ["GPT2LMHeadModel"]:  # a reward model's card counts its score head too
            assert ARCHITECTURES["gpt2"].count(config) == spec.non_embedding_params, d.name
        assert (spec.n_layer, spec.d_model, spec.n_ctx) == (meta["n_layer"], meta["d_model"], meta["n_ctx"]), d.name


def test_a_type_ttcl_cannot_count_still_sizes_from_its_card(tmp_path: Path) -> None:
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "phi", "num_hidden_layers": 2, "hidden_size": 64}))
    with pytest.raises(ModelSpecError, match=r"cannot count the parameters of model type `phi` from config.json "
                                             r"\(ttcl counts gpt2, llama, mistral, qwen2\)"):
        model_spec(str(d))
    (d / "ttcl_meta.json").write_text(json.dumps({"non_embedding_params": 1000}))
    models.clear_cache()
    assert (model_spec(str(d)).non_embedding_params, model_spec(str(d)).n_layer) == (1000, 2)
