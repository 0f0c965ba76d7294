"""Issue 11 ("Trust"), security: what a program, a model directory or its metadata can never do.

A `.ttc` file from an untrusted pull request is checked in CI. It must not
be able to read files outside its tree, run code (templates, checkers,
model code, pickles), or reach a model hub. These tests hold each of those
promises with the real loaders (no model is run: each refusal happens
before any weights are read).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ttcl.compiler import models
from ttcl.compiler.diagnostics import DiagnosticError, SemanticDiagnosticError
from ttcl.compiler.models import MetaTemplateError, fill_meta_template, meta_template_parts
from ttcl.compiler.pipeline import compile_program
from ttcl.errors import TtclError, TtclRuntimeError
from ttcl.runtime.backends.transformers import model_dir
from ttcl.zoo.registry import MODELS_DIR, resolve_model

HEAD = 'ttcl 1\nmodel policy = "/nonexistent/p" (params = 1M, n_layer = 2, d_model = 64)\n'


def program(prompt: str) -> str:
    return HEAD + (
        "strategy main(question: text[<=20]) -> answer {\n"
        f"    return vote(sample(policy, \"{prompt}\", n = 2, max_tokens = 10))\n"
        "}\n"
    )


@pytest.mark.parametrize(("field", "message"), [
    ("{question.__class__}", "template field `{question.__class__}`: `question` is text, which has no fields"),
    ("{0.__globals__}", "bad template field in string"),
    ("{question[0]}", "bad template field in string"),
    ("{question!r}", "bad template field in string"),
    ("{question:>9}", "bad template field in string"),
])
def test_template_tricks_in_a_program_are_rejected(field: str, message: str) -> None:
    with pytest.raises(DiagnosticError) as e:
        compile_program(source=program(field))
    assert str(e.value).startswith(f"<input>:4:33: error: {message}")


@pytest.mark.parametrize("template", ["{question.__class__}", "{0.__globals__}", "{completion.__init__.__globals__}", "{x}", "{question[0]}"])
def test_metadata_templates_are_never_str_format(template: str) -> None:
    with pytest.raises(MetaTemplateError, match="is not one of"):
        meta_template_parts(template, ("question", "completion"))


def test_metadata_templates_fill_by_name_only() -> None:
    parts = meta_template_parts("Q: {question}\n{{literal}} {completion}", ("question", "completion"))
    # a value that looks like a template is text, never read again
    assert fill_meta_template(parts, {"question": "{completion.__class__}", "completion": "42"}) == "Q: {completion.__class__}\n{literal} 42"


def _model_copy(tmp_path: Path, name: str = "arith-revise") -> Path:
    dst = tmp_path / name
    shutil.copytree(MODELS_DIR / name, dst)
    models.clear_cache()
    return dst


def test_a_revise_template_with_attribute_access_is_a_check_error(tmp_path: Path) -> None:
    d = _model_copy(tmp_path)
    meta = json.loads((d / "ttcl_meta.json").read_text())
    meta["revise_template"] = "{question.__class__}\n{attempt}"
    (d / "ttcl_meta.json").write_text(json.dumps(meta))
    src = (f'ttcl 1\nmodel policy = "{d}"\n'
           "strategy main(question: text[<=20]) -> answer {\n"
           '    d = sample(policy, "{question}", n = 2, max_tokens = 10)\n'
           "    return vote(revise(policy, d, max_tokens = 10))\n}\n")
    with pytest.raises(SemanticDiagnosticError, match=r"ttcl_meta.json `revise_template`: template field `\{question.__class__\}`"):
        compile_program(source=src)


def test_pickled_weights_are_refused_before_loading(tmp_path: Path) -> None:
    d = _model_copy(tmp_path)
    (d / "model.safetensors").unlink()
    (d / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(TtclRuntimeError, match=r"only pickled weights \(pytorch_model.bin\); ttcl loads safetensors only"):
        model_dir(d)


def test_a_run_without_loadable_weights_says_what_it_found(tmp_path: Path) -> None:
    d = _model_copy(tmp_path)
    (d / "model.safetensors").rename(d / "adapter_model.safetensors")
    with pytest.raises(TtclRuntimeError, match=r"it has no weights \(no model.safetensors or "
                       r"model.safetensors.index.json\); found adapter_model.safetensors"):
        model_dir(d)


def test_custom_model_code_is_refused(tmp_path: Path) -> None:
    d = _model_copy(tmp_path)
    config = json.loads((d / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilModel"}
    (d / "config.json").write_text(json.dumps(config))
    (d / "modeling_evil.py").write_text("raise SystemExit('ran custom code')\n")
    with pytest.raises(TtclRuntimeError, match="names custom model code"):
        model_dir(d)


def _using(d: Path, options: str = "") -> str:
    return (f'ttcl 1\nmodel policy = "{d}"{options}\nmodel unused = "{d}"\n'
            "strategy main(question: text[<=20]) -> answer {\n"
            '    return vote(sample(policy, "{question}", n = 2, max_tokens = 10))\n}\n')


@pytest.mark.parametrize("options", ["", " (params = 100096)"])
def test_check_refuses_what_the_run_would_refuse_at_the_declaration(tmp_path: Path, options: str) -> None:
    """`ttcl check` never says a program fits that `ttcl run` cannot start: a model with pickled
    weights, or with custom code, is refused at its declaration with the run's own words, with
    declared sizes too. A declared model the strategy never uses is not loaded by a run either."""
    d = _model_copy(tmp_path)
    compile_program(source=_using(d, options))  # as shipped: fits
    (d / "model.safetensors").rename(d / "pytorch_model.bin")
    models.clear_cache()
    with pytest.raises(SemanticDiagnosticError, match=r"only pickled weights \(pytorch_model.bin\)") as e:
        compile_program(source=_using(d, options))
    (diag,) = e.value.diagnostics
    assert diag.span.line == 2
    (d / "adapter.safetensors").write_bytes(b"")  # a stray safetensors file is not what from_pretrained reads
    models.clear_cache()
    with pytest.raises(SemanticDiagnosticError, match=r"only pickled weights \(pytorch_model.bin\) beside adapter.safetensors, which from_pretrained does not read; ttcl loads safetensors only"):
        compile_program(source=_using(d, options))
    with pytest.raises(TtclRuntimeError, match="only pickled weights"):
        model_dir(d)
    (d / "adapter.safetensors").unlink()
    (d / "pytorch_model.bin").rename(d / "model.safetensors")
    config = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**config, "auto_map": {"AutoModelForCausalLM": "evil.Evil"}}))
    models.clear_cache()
    with pytest.raises(SemanticDiagnosticError, match="names custom model code"):
        compile_program(source=_using(d, options))
    (d / "model.safetensors").unlink()  # a config alone still names that code: refused too (found by QA)
    models.clear_cache()
    with pytest.raises(SemanticDiagnosticError, match="names custom model code"):
        compile_program(source=_using(d, options))


@pytest.mark.parametrize("ref", ["ttcl:..", "ttcl:../zoo", "ttcl:arith-s/../arith-m", "ttcl:.", "ttcl:/etc"])
def test_bundled_names_cannot_escape_the_zoo(ref: str) -> None:
    with pytest.raises(TtclRuntimeError, match="unknown bundled model"):
        resolve_model(ref)


def test_a_hub_name_is_never_fetched() -> None:
    with pytest.raises(SemanticDiagnosticError, match="is not a local model directory"):
        compile_program(source=program("{question}").replace('"/nonexistent/p" (params = 1M, n_layer = 2, d_model = 64)',
                                                               '"openai-community/gpt2"'))


def test_checkers_come_only_from_registered_entry_points() -> None:
    src = HEAD + ('verifier v = check("os:system")\n'
                  "strategy main(question: text[<=20]) -> answer {\n"
                  '    return vote(verify(v, sample(policy, "{question}", n = 2, max_tokens = 10)), weight = score)\n}\n')
    with pytest.raises(TtclError) as e:
        compile_program(source=src)
    assert "os:system" in str(e.value) and "checker" in str(e.value)
