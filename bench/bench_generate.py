"""Generation benchmarks for the transformers backend, measured side by side in one run.

(a) best-of-n over many items: TransformersBackend.generate (one call) vs a
    hand-written batched transformers loop doing the same sampling (and, for
    reference, `model.generate(num_return_sequences=n)` on the whole batch).
(b) the same job vs a naive loop calling `model.generate` once per sample.
(c) one long prompt sampled n times: shared prefix vs unshared (every sample
    prefills its own copy), same backend; prompt tokens computed and wall time.
(d) many items whose prompts begin with one long preamble, in one call: the
    preamble prefilled once for all vs once per item; same charges, computed
    prompt tokens and wall time.

Timings alternate the contenders and report the median of --repeats runs after a
warm-up. The backend's prefix cache is cleared before every timed run.

    python bench/bench_generate.py                      # all four, default model (minutes: the naive loop of (b))
    python bench/bench_generate.py --only a --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from baselines import handwritten_batched, hf_generate_batched, naive_loop  # noqa: E402
from cli import main_guarded, nonnegative_int, positive_int, positive_int_list, temperature  # noqa: E402

from ttcl.runtime.backends import GenRequest, SamplingParams  # noqa: E402
from ttcl.runtime.backends.transformers import TransformersBackend  # noqa: E402

CPU: list[tuple[str, float]] = []  # (label, process CPU seconds) of the last timed() calls


def timed(fn, label: str = "") -> tuple[float, object]:
    """Wall seconds (and, recorded in CPU, process CPU seconds: robust on a shared machine)."""
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    CPU.append((label, cpu))
    return wall, out


def cpu_median(label: str) -> float:
    return statistics.median(c for lab, c in CPU if lab == label)


def prompts_for(items: int, steps: list[int], seed: int) -> list[str]:
    from ttcl.runtime.tasks.arith import make_problems

    return [p.prompt for p in make_problems(items, steps, seed)]


def bench_a_b(args) -> None:
    be = TransformersBackend(args.model, device="cpu")
    model, tok = be.model, be.tokenizer
    prompts = prompts_for(args.items, args.steps, args.seed)
    n, m, temp = args.n, args.max_tokens, args.temperature
    params = SamplingParams(temperature=temp, max_tokens=m)
    reqs = [GenRequest(p, n, params, seed=i) for i, p in enumerate(prompts)]

    def ours():
        be.clear_cache()
        return be.generate(reqs)

    def hand():
        return handwritten_batched(model, tok, prompts, n, m, temp)

    def hfgen():
        return hf_generate_batched(model, tok, prompts, n, m, temp)

    print(
        f"model {args.model}: {be.spec.non_embedding_params:,} non-embedding params, "
        f"n_layer {be.spec.n_layer}, d_model {be.spec.d_model}, n_ctx {be.spec.n_ctx}"
    )
    print(
        f"job: {len(prompts)} items x n={n}, max_tokens={m}, temperature={temp}, "
        f"torch threads {torch.get_num_threads()}"
    )
    ours(), hand()  # warm-up
    t_ours, t_hand, t_hf = [], [], []
    for _ in range(args.repeats):
        dt, res = timed(ours, "ours")
        t_ours.append(dt)
        t_hand.append(timed(hand, "hand")[0])
        if not args.skip_hf_generate:
            t_hf.append(timed(hfgen, "hf")[0])
    gen = sum(r.usage.gen_tokens for r in res)
    ptok = sum(r.usage.prompt_tokens for r in res)
    med = statistics.median
    print(
        f"  ttcl backend          {med(t_ours):7.2f} s  (runs {', '.join(f'{t:.2f}' for t in t_ours)});"
        f" {gen} gen tokens, {ptok} prompt tokens, {gen / med(t_ours):,.0f} tok/s"
    )
    print(
        f"  hand-written batched  {med(t_hand):7.2f} s  (runs {', '.join(f'{t:.2f}' for t in t_hand)})"
    )
    if t_hf:
        print(
            f"  hf generate batched   {med(t_hf):7.2f} s  (runs {', '.join(f'{t:.2f}' for t in t_hf)})"
        )
    print(
        f"  CPU seconds (median): ttcl {cpu_median('ours'):.2f}, hand-written {cpu_median('hand'):.2f}"
        + (f", hf generate {cpu_median('hf'):.2f}" if t_hf else "")
    )
    print(
        f"(a) ttcl / hand-written = {med(t_ours) / med(t_hand):.3f} wall, "
        f"{cpu_median('ours') / cpu_median('hand'):.3f} CPU   (target <= 1.10)"
    )
    if t_hf:
        print(
            f"    ttcl / hf generate batched = {med(t_ours) / med(t_hf):.3f} wall, "
            f"{cpu_median('ours') / cpu_median('hf'):.3f} CPU"
        )
    if "b" in args.only and args.naive_items == 0:
        print("(b) skipped: --naive-items 0")
    elif "b" in args.only:
        sub = prompts[: args.naive_items]
        t_naive, naive_gen = timed(lambda: naive_loop(model, tok, sub, n, m, temp), "naive")
        scale = len(prompts) / len(sub)
        est, est_cpu = t_naive * scale, cpu_median("naive") * scale
        note = "" if scale == 1 else f" (measured on {len(sub)} item{'s' * (len(sub) != 1)}, x{scale:g})"
        print(
            f"  naive generate loop   {est:7.2f} s wall, {est_cpu:.2f} s CPU{note}; "
            f"{naive_gen} gen tokens measured"
        )
        print(
            f"(b) naive loop / ttcl = {est / med(t_ours):.1f}x wall, "
            f"{est_cpu / cpu_median('ours'):.1f}x CPU   (target >= 10x)"
        )


def alternate(run, contenders: dict[str, object], repeats: int) -> list[tuple[list[float], object]]:
    """One warm-up run of each, then `repeats` rounds alternating them: per contender, its wall times
    and its last result (CPU seconds recorded under its label)."""
    for be in contenders.values():
        run(be)
    out: dict[str, tuple[list[float], object]] = {k: ([], None) for k in contenders}
    for _ in range(repeats):
        for label, be in contenders.items():
            dt, res = timed(lambda be=be: run(be), label)
            out[label] = (out[label][0] + [dt], res)
    return list(out.values())


def long_model(args, need: int) -> tuple[object, str]:
    """args.model when its context holds `need` tokens, else a random GPT-2 of its shape that does."""
    ref = TransformersBackend(args.model, device="cpu")
    cfg = ref.model.config
    if (ref.spec.n_ctx or 0) >= need:
        path, what = args.model, args.model
    else:
        from ttcl.runtime.backends.random_model import save_random_gpt2

        tmp = tempfile.mkdtemp(dir=args.tmp)  # inside main's temporary directory, removed at the end
        path = save_random_gpt2(
            Path(tmp) / "wide",
            n_layer=cfg.n_layer,
            n_embd=cfg.n_embd,
            n_head=cfg.n_head,
            n_positions=1024,
            tokenizer=ref.tokenizer,
        )
        what = (
            f"random-init GPT-2 of {args.model}'s shape (n_layer {cfg.n_layer}, d_model "
            f"{cfg.n_embd}, n_head {cfg.n_head}) with n_positions 1024; {args.model} has n_ctx "
            f"{ref.spec.n_ctx} < {need}"
        )
    return path, what


def bench_c(args) -> None:
    path, what = long_model(args, args.long_prompt + args.long_gen)
    shared = TransformersBackend(path, device="cpu")
    unshared = TransformersBackend(path, device="cpu", share_prefix=False)
    prompt = " ".join(prompts_for(200, args.steps, args.seed + 1)).replace("\n", " ")
    ids = shared.encode(prompt)[: args.long_prompt]
    prompt = shared.tokenizer.decode(ids)
    assert shared.count_tokens(prompt) == args.long_prompt
    params = SamplingParams(temperature=args.temperature, max_tokens=args.long_gen)
    req = [GenRequest(prompt, args.n, params, seed=0)]

    def run(be):
        be.clear_cache()
        return be.generate(req)[0]

    (ts, rs), (tu, ru) = alternate(run, {"shared": shared, "unshared": unshared}, args.repeats)
    assert [s.token_ids for s in rs.samples] == [s.token_ids for s in ru.samples]
    med = statistics.median
    print(f"(c) model: {what}")
    print(f"    prompt {args.long_prompt} tokens, n={args.n}, max_tokens={args.long_gen}")
    print(
        f"    shared   : prompt tokens computed {rs.usage.prompt_tokens:6d} "
        f"({rs.usage.prompt_tokens / args.long_prompt:.0f}x prompt), {med(ts):.2f} s, "
        f"{rs.usage.flops:.3e} FLOPs"
    )
    print(
        f"    unshared : prompt tokens computed {ru.usage.prompt_tokens:6d} "
        f"({ru.usage.prompt_tokens / args.long_prompt:.0f}x prompt), {med(tu):.2f} s, "
        f"{ru.usage.flops:.3e} FLOPs"
    )
    print(
        f"    unshared / shared = {med(tu) / med(ts):.2f}x wall, "
        f"{cpu_median('unshared') / cpu_median('shared'):.2f}x CPU; samples identical: True"
    )


def bench_d(args) -> None:
    """Many items whose prompts begin with one long preamble, in one call: the preamble prefilled
    once for all (warm) against once per item (cold, `warm_shared=False`). Each item is charged its
    whole prompt either way; what was computed is the charge minus what the cache served."""
    question = 24
    path, what = long_model(args, args.long_prompt + question + args.long_gen)
    warm = TransformersBackend(path, device="cpu")
    cold = TransformersBackend(path, device="cpu", warm_shared=False)
    text = " ".join(prompts_for(200, args.steps, args.seed + 1)).replace("\n", " ")
    preamble = warm.tokenizer.decode(warm.encode(text)[: args.long_prompt])
    questions = [q.replace("\n", " ") for q in prompts_for(args.items, args.steps, args.seed)]
    params = SamplingParams(temperature=args.temperature, max_tokens=args.long_gen)
    reqs = [GenRequest(f"{preamble} {q}", 4, params, seed=k, owner=k) for k, q in enumerate(questions)]

    def run(be):
        be.clear_cache()
        return be.generate(reqs)

    (tw, rw), (tc, rc) = alternate(run, {"warm": warm, "cold": cold}, args.repeats)
    same = [[s.token_ids for s in r.samples] for r in rw] == [[s.token_ids for s in r.samples] for r in rc]
    charged = sum(r.usage.prompt_tokens for r in rw)
    assert charged == sum(r.usage.prompt_tokens for r in rc)
    med = statistics.median
    print(f"(d) model: {what}")
    print(f"    {args.items} items, a {args.long_prompt}-token preamble then the question, n=4, max_tokens={args.long_gen}")
    for name, be, ts in (("warm", warm, tw), ("cold", cold, tc)):
        print(f"    {name} : prompt tokens charged {charged:7d}, computed {charged - be.shared_prompt_tokens:7d}, "
              f"{med(ts):.2f} s")
    print(f"    cold / warm = {med(tc) / med(tw):.2f}x wall, {cpu_median('cold') / cpu_median('warm'):.2f}x CPU; "
          f"samples identical: {same}")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="ttcl:arith-s", help="the model: ttcl:NAME or a model directory")
    ap.add_argument("--only", default="abcd", help="which benchmarks: any of a, b, c, d (e.g. ab or a,b)")
    ap.add_argument("--items", type=positive_int, default=64, help="arith items of (a), (b) and (d)")
    ap.add_argument("--n", type=positive_int, default=16, help="samples per item")
    ap.add_argument("--max-tokens", type=positive_int, default=64, help="generated tokens per sample at most")
    ap.add_argument("--temperature", type=temperature, default=0.8, help="sampling temperature")
    ap.add_argument("--steps", type=positive_int_list, default="2,3,4", help="arith difficulty levels of the items")
    ap.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the items")
    ap.add_argument("--repeats", type=positive_int, default=3, help="timed runs per contender (the median is printed)")
    ap.add_argument("--threads", type=positive_int, default=1, help="torch intra-op threads (both sides)")
    ap.add_argument("--naive-items", type=nonnegative_int, default=64,
                    help="(b): items the naive loop runs, scaled up to --items (0: skip (b); the default 64 "
                         "makes 1,024 generate calls, minutes)")
    ap.add_argument("--skip-hf-generate", action="store_true", help="(a): do not time model.generate on the batch")
    ap.add_argument("--long-prompt", type=positive_int, default=512, help="(c), (d): tokens of the long prompt")
    ap.add_argument("--long-gen", type=positive_int, default=32, help="(c), (d): generated tokens per sample at most")
    args = ap.parse_args()
    letters = args.only.replace(",", "")
    if not letters or set(letters) - set("abcd"):
        ap.error(f"--only {args.only!r}: expected letters among a, b, c, d")
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {args.threads}, python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="ttcl-bench-c-") as tmp:  # (c)'s and (d)'s random model, if any
        args.tmp = tmp
        if "a" in args.only or "b" in args.only:
            bench_a_b(args)
        if "c" in args.only:
            bench_c(args)
        if "d" in args.only:
            bench_d(args)


if __name__ == "__main__":
    main_guarded(main)
