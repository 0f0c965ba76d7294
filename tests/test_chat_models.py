"""Chat models (issue 11): `model m = "..." (chat = true)` sends each prompt through the tokenizer's chat
template; the static bound counts the template's own text; a model without a template is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ttcl.cli import main
from ttcl.zoo.registry import resolve_model

# Characters the bundled character-level vocabulary knows, so the template costs real tokens.
TEMPLATE = ("{% for m in messages %}USER: {{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}ASSISTANT: {% endif %}")


def _program(model: Path, *, chat: str = "true", bound: int = 12) -> str:
    return (f'ttcl 1\nmodel policy = "{model}" (chat = {chat})\nbudget per item {{ calls <= 4 }}\n'
            f"strategy main(question: text[<={bound}]) -> answer {{\n"
            '    return vote(sample(policy, "{question}\\n", n = 2, max_tokens = 24, temperature = 0.0))\n}\n')


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("chat")
    src = Path(resolve_model("ttcl:arith-s"))
    chat = root / "arith-chat"
    shutil.copytree(src, chat)
    config = json.loads((chat / "tokenizer_config.json").read_text())
    config["chat_template"] = TEMPLATE
    (chat / "tokenizer_config.json").write_text(json.dumps(config))
    plain = root / "arith-plain"
    shutil.copytree(src, plain)
    return {"chat": chat, "plain": plain, "root": root}


def test_a_chat_prompt_carries_the_template_and_fits_its_bound(capsys: pytest.CaptureFixture[str],
                                                               models: dict[str, Path]) -> None:
    prog = models["root"] / "chat.ttc"
    prog.write_text(_program(models["chat"]))
    trace = models["root"] / "chat.jsonl"
    question = "12 + 30 = ?"  # 11 characters, near the declared bound of 12: the template must not be charged to it
    code = main(["run", str(prog), "--input", question, "--device", "cpu", "--trace", str(trace), "--strict"])
    out = capsys.readouterr()
    assert code == 0, out.out + out.err
    text = trace.read_text()
    assert "status: stopped" not in out.out and "longer than its declared bound" not in out.out
    assert json.dumps(f"USER: {question}\n\nASSISTANT: ")[1:-1] in text, text[:2000]


def test_the_bound_counts_the_template(capsys: pytest.CaptureFixture[str], models: dict[str, Path]) -> None:
    from ttcl.compiler.pipeline import compile_program

    with_chat = compile_program(source=_program(models["chat"]))
    without = compile_program(source=_program(models["chat"], chat="false"))
    overhead = len("USER: \nASSISTANT: ")
    assert with_chat.report.total["prompt_tokens"] == without.report.total["prompt_tokens"] + overhead


def test_a_model_without_a_chat_template_is_refused(capsys: pytest.CaptureFixture[str], models: dict[str, Path]) -> None:
    prog = models["root"] / "plain.ttc"
    prog.write_text(_program(models["plain"]))
    for command in (["check", str(prog)], ["run", str(prog), "--input", "1 + 1", "--device", "cpu"]):
        code = main(command)
        out = capsys.readouterr()
        assert code == 2, out.out + out.err
        said = " ".join((out.out + out.err).split())
        assert "plain.ttc:2" in said and "chat = true" in said and "has no chat template" in said
        assert "Traceback" not in said


def test_chat_must_be_a_boolean(capsys: pytest.CaptureFixture[str], models: dict[str, Path]) -> None:
    prog = models["root"] / "num.ttc"
    prog.write_text(_program(models["chat"], chat="1"))
    code = main(["check", str(prog)])
    out = capsys.readouterr()
    said = " ".join((out.out + out.err).split())
    assert code == 2 and "must be `true` or `false`" in said


def _with_template(models: dict[str, Path], name: str, template: str) -> Path:
    d = models["root"] / name
    if not d.exists():
        shutil.copytree(models["chat"], d)
        config = json.loads((d / "tokenizer_config.json").read_text())
        config["chat_template"] = template
        (d / "tokenizer_config.json").write_text(json.dumps(config))
    return d


@pytest.mark.parametrize(("name", "template"), [
    ("escape", "{% for m in messages %}USER: {{ m['content'] | e }}\n{% endfor %}ASSISTANT: "),
    ("replace", "{% for m in messages %}USER: {{ m['content'] | replace('\\n', '\\n\\n\\n\\n') }}\n{% endfor %}ASSISTANT: "),
    ("depends", "{% for m in messages %}{% if '<' in m['content'] %}USE THE RULES: {% endif %}USER: {{ m['content'] }}"
                "\n{% endfor %}ASSISTANT: "),
    ("plus", "{% for m in messages %}{% if '+' in m['content'] %}{{ 'p' * 100 }}{% endif %}USER: {{ m['content'] }}"
             "\n{% endfor %}ASSISTANT: "),  # QA pass: '+' was not in the probe, and every arith question has one
    ("length", "{% for m in messages %}{% if m['content'] | length > 70 %}LONG: {% endif %}USER: {{ m['content'] }}"
               "\n{% endfor %}ASSISTANT: "),
])
def test_a_template_that_changes_the_message_is_refused(capsys: pytest.CaptureFixture[str], models: dict[str, Path],
                                                        name: str, template: str) -> None:
    """QA pass: a template that escapes or rewrites the message passed the marker check, so `check` said "fits"
    and the run then refused a short input as "longer than its declared bound"."""
    prog = models["root"] / f"{name}.ttc"
    prog.write_text(_program(_with_template(models, name, template)))
    code = main(["check", str(prog)])
    out = capsys.readouterr()
    said = " ".join((out.out + out.err).split())
    assert code == 2 and "its chat template changes the user's message" in said, said
    assert "use a template that writes the message as it is, or drop `chat = true`" in said
    assert "add a `chat_template`" not in said  # it has one (QA pass: the hint said to add it)


def test_a_template_that_trims_the_message_is_bounded(capsys: pytest.CaptureFixture[str], models: dict[str, Path]) -> None:
    """`| trim` (Llama 3's template) only shortens a message: it is accepted, and what check bounds, run fits."""
    chat = _with_template(models, "trim", "{% for m in messages %}USER: {{ m['content'] | trim }}\n{% endfor %}"
                                          "{% if add_generation_prompt %}ASSISTANT: {% endif %}")
    prog = models["root"] / "trim.ttc"
    prog.write_text(_program(chat))
    code = main(["run", str(prog), "--input", " 12 + 3 = ? ", "--device", "cpu", "--strict"])  # 12 tokens, 10 trimmed
    out = capsys.readouterr()
    assert code == 0, out.out + out.err


def test_a_template_whose_text_depends_on_a_message_no_probe_sent_is_named_when_its_prompt_is_over(
        capsys: pytest.CaptureFixture[str], models: dict[str, Path]) -> None:
    """No probe sees every message. QA pass: a prompt such a template made longer was refused as "the input is
    longer than its declared bound" for a 6-token input, blaming the input for the template's text."""
    chat = _with_template(models, "hidden", "{% for m in messages %}{% if '##' in m['content'] %}{{ 'RULES ' * 9 }}"
                                            "{% endif %}USER: {{ m['content'] }}\n{% endfor %}ASSISTANT: ")
    prog = models["root"] / "hidden.ttc"
    prog.write_text(_program(chat))
    assert main(["check", str(prog)]) == 0  # no probe has '##'
    capsys.readouterr()
    assert main(["run", str(prog), "--input", "1 + 2", "--device", "cpu", "--strict"]) == 0
    capsys.readouterr()
    code = main(["run", str(prog), "--input", "1 ## 2", "--device", "cpu", "--json"])
    out = capsys.readouterr()
    said = " ".join((out.out + out.err).split())
    assert "the chat template of model `policy` wrote 72 characters around this prompt, where `ttcl check` measured 18" \
        in said, said
    assert "the input is longer" not in said and "Traceback" not in said
    result = json.loads(out.out)["results"][0]
    assert result["status"] == "stopped" and result["cost"]["calls"] == 0 and code == 0
