"""Model specs: declared options, HF config.json (GPT-2, Llama), ttcl_meta.json, zoo refs, and their errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ttcl.compiler import models
from ttcl.compiler.costmodel import ModelSpec
from ttcl.compiler.models import ModelSpecError, model_spec


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    """Before and after: a spec read through a stand-in zoo must not outlive its test."""
    models.clear_cache()
    yield
    models.clear_cache()


def _write(path: Path, config: dict, meta: dict | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config))
    if meta is not None:
        (path / "ttcl_meta.json").write_text(json.dumps(meta))
    return path


GPT2 = {"model_type": "gpt2", "n_layer": 2, "n_embd": 64, "n_head": 4, "n_positions": 128, "vocab_size": 50}
LLAMA = {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 160,
         "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 128, "vocab_size": 50}


def test_declared_options_win_and_need_no_disk() -> None:
    spec = model_spec("/nowhere", {"params": 7e9, "n_layer": 32, "d_model": 4096})
    assert spec == ModelSpec(non_embedding_params=7_000_000_000, n_layer=32, d_model=4096)


def test_gpt2_config_counts_non_embedding_params_exactly(tmp_path: Path) -> None:
    # 100096 = what transformers' GPT2LMHeadModel(config) holds outside wte/wpe/lm_head (checked once by hand).
    spec = model_spec(str(_write(tmp_path / "g", GPT2)), {})
    assert spec == ModelSpec(non_embedding_params=100_096, n_layer=2, d_model=64, n_ctx=128)


def test_llama_config_counts_grouped_kv_heads(tmp_path: Path) -> None:
    # 86336 = LlamaForCausalLM(config) parameters outside embed_tokens/lm_head (checked once by hand).
    spec = model_spec(str(_write(tmp_path / "l", LLAMA)), {})
    assert spec == ModelSpec(non_embedding_params=86_336, n_layer=2, d_model=64, n_ctx=128)


def test_meta_file_count_wins_over_config(tmp_path: Path) -> None:
    spec = model_spec(str(_write(tmp_path / "m", GPT2, {"non_embedding_params": 12345})), {})
    assert spec.non_embedding_params == 12345 and spec.n_layer == 2


def test_relative_dir_resolves_against_the_module(tmp_path: Path) -> None:
    _write(tmp_path / "models" / "g", GPT2)
    assert model_spec("models/g", {}, base_dir=tmp_path).non_embedding_params == 100_096


def test_missing_dir_without_params_asks_for_params() -> None:
    with pytest.raises(ModelSpecError) as err:
        model_spec("/nonexistent/model", {})
    assert err.value.message == ("model `/nonexistent/model` is not a local model directory (no such directory), "
                                 "so its size is unknown")
    assert err.value.hint is not None and "params = " in err.value.hint and "check the path" in err.value.hint


def test_a_relative_missing_dir_names_where_it_was_looked_for(tmp_path: Path) -> None:
    with pytest.raises(ModelSpecError) as err:
        model_spec("models/typo", {}, base_dir=tmp_path)
    assert f"(no such directory: {tmp_path / 'models' / 'typo'})" in err.value.message


def test_a_file_is_not_a_model_directory_and_is_not_called_missing(tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ModelSpecError) as err:
        model_spec(str(tmp_path / "weights.bin"), {})
    assert err.value.message.endswith("is not a local model directory, so its size is unknown")


def test_unknown_architecture_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ModelSpecError) as err:
        model_spec(str(_write(tmp_path / "x", {"model_type": "mamba", "d": 3})), {})
    assert "cannot count the parameters of model type `mamba`" in err.value.message


def test_unknown_option_is_an_error() -> None:
    with pytest.raises(ModelSpecError) as err:
        model_spec("/x", {"parms": 1.0})
    assert err.value.message == "unknown model option `parms`"


def test_zoo_refs_go_through_the_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = _write(tmp_path / "zoo", GPT2)
    monkeypatch.setattr(models, "_resolve_zoo", lambda ref: target)
    assert model_spec("ttcl:arith-s", {}).non_embedding_params == 100_096


def test_specs_are_cached_per_ref(tmp_path: Path) -> None:
    path = _write(tmp_path / "g", GPT2)
    first = model_spec(str(path), {})
    (path / "config.json").write_text(json.dumps({**GPT2, "n_layer": 3}))
    assert model_spec(str(path), {}) is first


def test_zoo_meta_key_and_revise_template(tmp_path: Path) -> None:
    path = _write(tmp_path / "z", GPT2, {"params_non_embedding": 777, "revise_template": "{question}\nattempt:\n{attempt}\nfix:\n"})
    assert model_spec(str(path), {}).non_embedding_params == 777
    assert models.revise_template(str(path)) == "{question}\nattempt:\n{attempt}\nfix:\n"
    assert models.revise_template("/nonexistent") is None


def test_malformed_config_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(ModelSpecError) as err:
        model_spec(str(_write(tmp_path / "bad", {"n_layer": "x", "n_embd": 8})), {})
    assert err.value.message.startswith("cannot read the model size from")
