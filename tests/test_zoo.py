"""The bundled model family: registry, tokenizer, a training smoke test, and offline loading
of every shipped model through the ordinary transformers path."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from ttcl.errors import TtclRuntimeError  # noqa: E402
from ttcl.runtime.tasks.arith import checker, make_problems  # noqa: E402
from ttcl.zoo import registry  # noqa: E402
from ttcl.zoo.registry import MODELS_DIR, list_models, model_card, resolve_model  # noqa: E402

SHIPPED = ("arith-s", "arith-m", "arith-l", "arith-revise", "arith-direct", "arith-orm", "arith-prm")
POLICIES = ("arith-s", "arith-m", "arith-l", "arith-revise")


# ------------------------------------------------------------------ registry (no torch)


def test_registry_does_not_import_torch() -> None:
    code = "import sys, ttcl.zoo.registry as r; r.list_models(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("name", SHIPPED)
def test_every_model_is_shipped_and_resolves(name: str) -> None:
    path = resolve_model(f"ttcl:{name}")
    assert path == MODELS_DIR / name
    for f in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
              "ttcl_meta.json", "README.md"):
        assert (path / f).is_file(), f
    meta = model_card(f"ttcl:{name}")
    assert meta["name"] == name
    assert meta["task"] == "arith"
    for key in ("params_total", "params_non_embedding", "n_layer", "d_model", "n_ctx", "kind",
                "training_tokens", "training_flops", "wall_seconds", "seed", "headline"):
        assert key in meta, key
    assert meta["training_flops"] == 6 * meta["params_non_embedding"] * meta["training_tokens"]
    assert "| steps |" in (path / "README.md").read_text()


def test_weights_are_small_safetensors() -> None:
    total = sum(f.stat().st_size for f in MODELS_DIR.rglob("*") if f.is_file())
    assert total <= 25 * 2**20
    assert not list(MODELS_DIR.rglob("*.bin"))


def test_family_spans_sixteen_times_in_parameters() -> None:
    s, l_ = model_card("ttcl:arith-s"), model_card("ttcl:arith-l")
    assert l_["params_non_embedding"] >= 16 * s["params_non_embedding"]
    assert l_["params_total"] >= 16 * s["params_total"]


def test_list_models_lists_all() -> None:
    names = [m["name"] for m in list_models()]
    assert set(SHIPPED) <= set(names)


def test_revise_template_is_documented() -> None:
    meta = model_card("ttcl:arith-revise")
    assert meta["revise_template"].format(question="1 +1", attempt="#### 3").startswith("1 +1\n")
    assert set(meta["revise_template_fields"]) == {"question", "attempt"}
    assert "{question}" in meta["revise_template"] and "{attempt}" in meta["revise_template"]


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("ttcl:arith-xl", r"unknown bundled model 'ttcl:arith-xl'; did you mean 'ttcl:arith-"),
        ("ttcl:", r"unknown bundled model 'ttcl:'"),
        ("ttcl:../arith-s", r"unknown bundled model"),
        ("arith-s", r"not a bundled model \(ttcl:NAME\) nor a local directory; did you mean 'ttcl:arith-s'\?"),
        ("gpt2", r"ttcl never downloads models"),
        ("", r"empty model reference"),
    ],
)
def test_resolve_errors(ref: str, message: str) -> None:
    with pytest.raises(TtclRuntimeError, match=message):
        resolve_model(ref)


def test_resolve_local_directory(tmp_path: Path) -> None:
    assert resolve_model(str(tmp_path)) == tmp_path
    (tmp_path / "config.json").write_text(json.dumps({"n_layer": 2, "n_embd": 8, "n_positions": 16}))
    card = model_card(str(tmp_path))
    assert (card["n_layer"], card["d_model"], card["n_ctx"]) == (2, 8, 16)


def test_registry_with_no_models(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(registry, "MODELS_DIR", tmp_path / "none")
    assert registry.list_models() == []
    with pytest.raises(TtclRuntimeError, match="none are installed"):
        registry.resolve_model("ttcl:arith-s")


# ------------------------------------------------------------------ tokenizer and data


def test_tokenizer_matches_training_encoding_and_pads_left() -> None:
    from ttcl.zoo.data import EOS_ID, PAD_ID, build_tokenizer, encode

    tok = build_tokenizer(64)
    text = "37 +12 *3\n37+12=49\n#### 49"
    assert tok(text)["input_ids"] == encode(text)
    assert tok.decode(encode(text)) == text
    assert (tok.pad_token_id, tok.eos_token_id) == (PAD_ID, EOS_ID)
    enc = tok(["1 +1\n", "12 +3 -4\n"], padding=True)
    assert enc["input_ids"][0][:4] == [PAD_ID] * 4
    assert enc["attention_mask"][0][:4] == [0] * 4
    assert tok.decode(encode("héllo")) == "h<unk>llo"


def test_collate_masks_the_prompt() -> None:
    from ttcl.zoo.data import EOS_ID, PAD_ID, collate, cot_example, encode

    ps = make_problems(2, [1, 3], seed=0)
    ids, mask, labels, n_target = collate([cot_example(p) for p in ps])
    p0 = encode(ps[0].prompt)
    assert (labels[0, : len(p0)] == -100).all()
    assert labels[0, len(p0)] == ids[0, len(p0)]
    row_len = int(mask[0].sum())
    assert int(ids[0, row_len - 1]) == EOS_ID
    assert (ids[0, row_len:] == PAD_ID).all()
    assert n_target == sum(len(p.solution) + 1 for p in ps)


def test_corrupted_attempts_are_wrong_and_revise_targets_right() -> None:
    from ttcl.zoo.data import REVISE_TEMPLATE, corrupt_solution, revise_example

    rng = random.Random(0)
    for p in make_problems(200, range(1, 9), seed=5):
        bad = corrupt_solution(p, rng)
        assert 0.0 in checker.steps(p.question, bad)
        ex = revise_example(p, rng)
        assert ex.completion == p.solution
        assert ex.prompt.startswith(REVISE_TEMPLATE.split("{attempt}")[0].format(question=p.question))


# ------------------------------------------------------------------ training smoke test


def test_training_smoke_lowers_loss(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ttcl.zoo.train import LMRecipe, train_lm

    r = LMRecipe("tiny", "policy", n_embd=16, n_layer=1, n_head=2, n_ctx=64, train_steps=60,
                 batch_size=16, lr=1e-2, warmup=5, init_std=0.15, seed=0)
    r = r.__class__(**{**r.__dict__, "data": r.data.__class__(steps=(1, 2))})
    lines: list[str] = []
    _, meta = train_lm(r, tmp_path / "tiny", log=lines.append, log_every=10)
    losses = [float(x.split("loss ")[1].split()[0]) for x in lines if " loss " in x]
    assert losses[-1] < 0.75 * losses[0]
    assert meta["final_loss"] < meta["first_loss"]
    assert meta["training_flops"] == 6 * meta["params_non_embedding"] * meta["training_tokens"]
    model = AutoModelForCausalLM.from_pretrained(str(tmp_path / "tiny"))
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "tiny"))
    assert model.config.n_embd == 16 and tok.padding_side == "left"


# ------------------------------------------------------------------ offline loading


@pytest.fixture(scope="module")
def easy() -> list:
    return make_problems(16, [1, 2], seed=99)


def _load_lm(name: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model(f"ttcl:{name}")
    model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    return model, tok


@pytest.mark.parametrize("name", POLICIES)
def test_policy_loads_offline_and_writes_well_formed_answers(name: str, easy: list) -> None:
    import torch

    model, tok = _load_lm(name)
    assert type(model).__name__ == "GPT2LMHeadModel"
    assert tok.padding_side == "left"
    enc = tok([p.prompt for p in easy], return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=40, do_sample=False, pad_token_id=tok.pad_token_id)
    texts = tok.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    well_formed = [checker.extract(t) is not None and checker.split_steps(t)[-1].startswith("####") for t in texts]
    assert sum(well_formed) >= 0.9 * len(texts)
    if name == "arith-l":
        right = sum(checker.outcome(p.question, t) for p, t in zip(easy, texts, strict=True))
        assert right >= 0.75 * len(easy)


def test_left_padding_matches_unpadded_generation(easy: list) -> None:
    import torch

    model, tok = _load_lm("arith-m")
    prompts = [easy[0].prompt, easy[1].prompt + ""]
    enc = tok(prompts, return_tensors="pt", padding=True)
    with torch.no_grad():
        batched = model.generate(**enc, max_new_tokens=30, do_sample=False, pad_token_id=tok.pad_token_id)
        one = model.generate(**tok(prompts[1:], return_tensors="pt"), max_new_tokens=30, do_sample=False,
                             pad_token_id=tok.pad_token_id)
    a = tok.decode(batched[1, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    b = tok.decode(one[0, len(tok(prompts[1])["input_ids"]) :], skip_special_tokens=True)
    assert a == b


def test_direct_policy_answers_without_steps(easy: list) -> None:
    from ttcl.zoo.sampling import generate

    model, tok = _load_lm("arith-direct")
    texts = [c[0] for c in generate(model, tok, [p.prompt for p in easy], max_new_tokens=12)]
    assert all(t.startswith("#### ") and len(checker.split_steps(t)) == 1 for t in texts)


def test_revise_policy_follows_the_revision_template(easy: list) -> None:
    from ttcl.zoo.sampling import generate

    model, tok = _load_lm("arith-revise")
    template = model_card("ttcl:arith-revise")["revise_template"]
    p = easy[0]
    wrong = p.solution.replace(f"#### {p.answer}", f"#### {p.answer + 1}")
    out = generate(model, tok, [template.format(question=p.question, attempt=wrong)], max_new_tokens=40)[0][0]
    assert checker.extract(out) is not None


def test_reward_models_load_offline_and_score() -> None:
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
        AutoTokenizer,
    )

    ps = make_problems(8, [2, 3], seed=3)
    right = [p.question + "\n" + p.solution for p in ps]
    wrong = [p.question + "\n" + p.solution.replace("=", "=1", 1) for p in ps]

    orm_dir = resolve_model("ttcl:arith-orm")
    orm = AutoModelForSequenceClassification.from_pretrained(str(orm_dir), local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(str(orm_dir), local_files_only=True)
    assert tok.padding_side == "right" and orm.config.num_labels == 1
    with torch.no_grad():
        s_right = torch.sigmoid(orm(**tok(right, return_tensors="pt", padding=True)).logits[:, 0])
        s_wrong = torch.sigmoid(orm(**tok(wrong, return_tensors="pt", padding=True)).logits[:, 0])
    assert s_right.mean() > s_wrong.mean()

    prm_dir = resolve_model("ttcl:arith-prm")
    prm = AutoModelForTokenClassification.from_pretrained(str(prm_dir), local_files_only=True).eval()
    meta = model_card("ttcl:arith-prm")
    assert meta["step_end_token"] == "\n"
    from ttcl.zoo.sampling import score_steps

    steps_right = score_steps(prm, tok, [p.question + "\n" for p in ps], [p.solution for p in ps])
    assert [len(s) for s in steps_right] == [p.steps + 1 for p in ps]
    assert all(0.0 <= x <= 1.0 for s in steps_right for x in s)


# ------------------------------------------------------------------ command line


def _ttcl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ttcl.cli", *args], capture_output=True, text=True)


def test_cli_models_table() -> None:
    out = _ttcl("models")
    assert out.returncode == 0, out.stderr
    for name in SHIPPED:
        assert f"ttcl:{name}" in out.stdout
    assert "train s: each model's training on one thread" in out.stdout


def test_cli_models_json_reads_the_build_times() -> None:
    """`train s` was the card's wall_seconds, recorded under load: 923 s for arith-direct, which a rebuild trains in
    about 90 s (QA pass); it is the last whole-zoo build's seconds, as `--plan` reads them. `--json` is new."""
    from ttcl.zoo.build import recorded_seconds

    out = _ttcl("models", "--json")
    assert out.returncode == 0, out.stderr
    rows = {m["name"]: m for m in json.loads(out.stdout)["models"]}
    assert set(SHIPPED) <= set(rows)
    assert {n: m["train_s"] for n, m in rows.items()} == recorded_seconds(list(rows))
    assert rows["arith-direct"]["train_s"] < 200 < rows["arith-direct"]["wall_seconds"]


def test_cli_data_arith() -> None:
    out = _ttcl("data", "arith", "--steps", "2..3", "--n", "4", "--seed", "1")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(x) for x in out.stdout.splitlines()]
    assert [r["steps"] for r in rows] == [2, 3, 2, 3]
    assert all(checker.outcome(r["question"], r["answer"]) == 1.0 for r in rows)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("data", "arith", "--steps", "0..3"), "invalid value for --steps"),
        (("data", "arith", "--n", "many"), "invalid value for --n: expected an integer, got 'many'"),
        (("zoo", "train", "--only", "arith-xs"), "no model named 'arith-xs'; did you mean"),
        (("zoo", "train", "--only", "ARITH-DIRECT"), "no model named 'ARITH-DIRECT'; did you mean 'arith-direct'?"),
        (("zoo", "train", "--quick", "--into-package"), "quick models are not for shipping"),
        (("zoo", "train", "--out", "x", "--into-package"), "not both"),
        # the shipped directory as --out, by its path or a link to it, wrote a 30-step model over the shipped one
        (("zoo", "train", "--only", "arith-direct", "--quick", "--no-eval", "--out", str(MODELS_DIR)),
         "is the shipped models' directory"),
        (("zoo", "train", "--only", "arith-direct", "--quick", "--no-eval", "--out",
          str(MODELS_DIR / "arith-s")), "is the shipped models' directory"),
        (("data", "expr", "--steps", "1..3"), "invalid value for --steps"),
        (("data", "expr", "--steps", "2..13"), "2 to 12 operations"),
        (("data", "expr", "--steps", "0"), "invalid value for --steps: 2 to 12 operations"),  # said "1 <= A" (QA)
        (("data", "expr", "--seed", "x"), "invalid value for --seed"),
        (("data", "countdown", "--seed", "-7"), "invalid value for --seed: must be >= 0, got -7"),  # drew seed 7's items
        (("data", "arith", "--seed", "-1"), "invalid value for --seed: must be >= 0, got -1"),
        (("data", "expr", "--style", "tree"), "invalid value for --style: one of ops, state"),
        # the range was built before its ends were checked: exit 70 MemoryError (QA pass)
        (("data", "arith", "--steps", "3..1000000000000"), "invalid value for --steps: 1 to 1,000 operations"),
        (("data", "countdown", "--steps", "3..1" + "0" * 5000), "invalid value for --steps: 2 to "),
        (("data", "arith", "--steps", "\u0663..\u0664"), "invalid value for --steps: steps must be an integer"),
        (("data", "arith", "--seed", "1" + "0" * 5000), "invalid value for --seed: at most 1,000 digits, got 5,001"),
        (("data", "arith", "--max-value", "1" + "0" * 1000), "invalid value for --max-value: at most 1,000 digits"),
    ],
)
def test_cli_bad_arguments(args: tuple[str, ...], message: str) -> None:
    out = _ttcl(*args)
    assert out.returncode != 0
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_cli_data_expr() -> None:
    from ttcl.runtime.tasks.expr import checker as expr_checker

    out = _ttcl("data", "expr", "--steps", "2..4", "--n", "6", "--seed", "1")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(x) for x in out.stdout.splitlines()]
    assert [r["steps"] for r in rows] == [2, 3, 4, 2, 3, 4]
    assert all(expr_checker.strict(r["question"], r["answer"]) for r in rows)
    assert _ttcl("data", "expr", "--steps", "2..4", "--n", "6", "--seed", "1").stdout == out.stdout
    state = _ttcl("data", "expr", "--steps", "2..4", "--n", "6", "--seed", "1", "--style", "state")
    srows = [json.loads(x) for x in state.stdout.splitlines()]
    assert [r["question"] for r in srows] == [r["question"] for r in rows]  # the same problems
    assert all(expr_checker.strict(r["question"], r["answer"]) and "=" not in r["answer"] for r in srows)


def test_zoo_train_never_writes_into_the_package_by_default(tmp_path) -> None:
    """Issue 11: a plain `ttcl zoo train` writes under ./ttcl-zoo, not over the shipped weights."""
    from ttcl.zoo.registry import MODELS_DIR

    shipped = (MODELS_DIR / "arith-s" / "model.safetensors").read_bytes()
    out = subprocess.run([sys.executable, "-m", "ttcl.cli", "zoo", "train", "--only", "arith-s", "--quick",
                          "--no-eval"], capture_output=True, text=True, cwd=tmp_path, timeout=600,
                         env={**os.environ, "TTCL_ZOO_CACHE": str(tmp_path / "cache")})
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "ttcl-zoo" / "arith-s" / "model.safetensors").is_file()
    assert (MODELS_DIR / "arith-s" / "model.safetensors").read_bytes() == shipped


def test_training_is_deterministic_in_the_seed() -> None:
    """What makes `ttcl zoo train` reproduce the shipped weights: same seed, same weights."""
    import torch

    from ttcl.zoo.train import LMRecipe, train_lm

    r = LMRecipe("tiny", "policy", n_embd=16, n_layer=1, n_head=2, n_ctx=128, train_steps=8,
                 batch_size=8, warmup=2, seed=3)
    a, _ = train_lm(r, None, log=lambda s: None)
    b, _ = train_lm(r, None, log=lambda s: None)
    c, _ = train_lm(r.__class__(**{**r.__dict__, "seed": 4}), None, log=lambda s: None)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


@pytest.mark.parametrize(("task", "steps"), [("arith", "1..8"), ("expr", "2..8"), ("countdown", "2..5")])
def test_data_streams_the_same_problems_make_problems_builds(task: str, steps: str) -> None:
    """`ttcl data` writes each line as it is drawn (`--n 3000000 | head -1` took 30 s, building every problem
    first); the lines are those of the list `make_problems` builds."""
    import importlib
    import subprocess
    import sys
    import time

    from ttcl.runtime.tasks.arith import parse_steps_spec

    mod = importlib.import_module(f"ttcl.runtime.tasks.{task}")
    out = _ttcl("data", task, "--steps", steps, "--n", "40", "--seed", "7")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == list(mod.iter_jsonl(mod.make_problems(40, parse_steps_spec(steps), 7)))
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "ttcl.cli", "data", task, "--n", "100000000"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    proc.kill()
    proc.wait()
    assert first.startswith(b'{"question"') and time.monotonic() - t0 < 60


def test_data_output_keeps_what_the_path_is(tmp_path: Path) -> None:
    """`ttcl data -o PATH` renamed a new 0600 file over PATH: as root, `-o /dev/null` replaced the device with a
    file; a symlink became a file; a FIFO was replaced; a 0664 file became 0600 (QA pass)."""
    import stat
    import threading

    target = tmp_path / "target.txt"
    target.write_text("old\n")
    (tmp_path / "link.jsonl").symlink_to(target)
    keep = tmp_path / "keep.jsonl"
    keep.write_text("x\n")
    keep.chmod(0o664)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    for name in ("link.jsonl", "keep.jsonl", "new.jsonl", "pipe"):
        out = _ttcl("data", "arith", "--n", "3", "--seed", "1", "-o", str(tmp_path / name))
        assert out.returncode == 0 and f"wrote 3 problems to {tmp_path / name}" in out.stderr, out.stderr
    reader.join(timeout=30)
    assert (tmp_path / "link.jsonl").is_symlink() and len(target.read_text().splitlines()) == 3
    assert stat.S_IMODE(keep.stat().st_mode) == 0o664 and len(keep.read_text().splitlines()) == 3
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "new.jsonl").stat().st_mode) == 0o666 & ~umask
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and len(got[0].splitlines()) == 3
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_data_output_killed_by_sigterm_leaves_no_temporary_file(tmp_path: Path) -> None:
    """SIGTERM or SIGHUP left a hidden `.NAME.XXXX.part` beside the output (936 MB in one QA run)."""
    import signal
    import time

    for sig, code in ((signal.SIGTERM, 143), (signal.SIGHUP, 129)):
        p = subprocess.Popen([sys.executable, "-m", "ttcl.cli", "data", "arith", "--n", "50000000", "-o",
                              str(tmp_path / "big.jsonl")], stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while not [q for q in tmp_path.iterdir() if q.name.endswith(".part") and q.stat().st_size]:
                assert time.monotonic() < deadline and p.poll() is None
                time.sleep(0.05)
            p.send_signal(sig)
            _, err = p.communicate(timeout=60)
        finally:
            p.kill()
        assert p.returncode == code and err.strip().endswith("interrupted"), err
        assert list(tmp_path.iterdir()) == []
