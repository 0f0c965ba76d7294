"""The default backend: a local transformers causal LM on CPU or CUDA.

Loading is the ordinary `from_pretrained` (local files only). A call to
`generate` or `extend` is one batched job: every distinct context is
prefilled once (minus whatever the prefix cache already holds), its KV cache is
shared by its n samples, and all rows decode together whatever their sampling
settings (temperature, top-p, max_tokens and stop strings are per row).

Accounting (per request, with `ttcl.compiler.costmodel.forward_flops`):
  prompt_tokens  new prefill positions, as if the request's owner (its item) ran
                 alone: a context shared by several requests of one owner in one
                 call is charged to the first of them, positions the prefix cache
                 holds from that owner's own earlier calls are not charged, and
                 positions it holds only from other owners' calls are charged
                 but not computed (counted in `shared_prompt_tokens` and
                 `shared_flops`); padding never. A request without an owner
                 shares with everyone, as one owner.
  flops          forward_flops(c, L) for that prefill (c cached, L context length)
                 plus forward_flops(L, L + g) for each sample of g tokens
  gen_tokens     tokens sampled (an EOS included); finished rows are not charged
  seconds        the call's wall time (after a device sync), split by FLOPs share
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import torch

from ttcl.compiler.costmodel import ModelSpec, forward_flops
from ttcl.errors import TtclRuntimeError
from ttcl.runtime.backends.base import (
    ExtendRequest,
    GenRequest,
    GenResult,
    Sample,
    SamplingParams,
    Usage,
    resolve_ref,
)
from ttcl.runtime.backends.decode import (
    Context,
    ModelCall,
    Row,
    RowOut,
    prefill,
    row_kv,
    run_batch,
    trim_at_stop,
)
from ttcl.runtime.backends.hf_load import load_tokenizer, load_weights, missing_message
from ttcl.runtime.backends.prefix_cache import PrefixCache
from ttcl.runtime.backends.sampling import stream_key
from ttcl.safeio import is_dir, unsafe_model_files

_CACHED_CHARS = 65_536  # texts longer than this are encoded each time they are asked for, never kept

OOM_ERRORS: tuple[type[BaseException], ...] = tuple(
    {getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError), torch.cuda.OutOfMemoryError}
)


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise TtclRuntimeError(f"unknown device {device!r} (use auto, cpu, cuda, cuda:N)") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TtclRuntimeError(f"device {device!r} requested but CUDA is not available")
    return dev


def pick_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    names = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float16": torch.float16,
        "fp16": torch.float16,
    }
    if dtype not in names:
        raise TtclRuntimeError(f"unknown dtype {dtype!r} (use auto, {', '.join(names)})")
    return names[dtype]


def model_dir(ref_or_path: str | Path) -> Path:
    path = Path(resolve_ref(str(ref_or_path)))
    if not is_dir(path):
        raise TtclRuntimeError(f"model {str(ref_or_path)!r}: no such directory {str(path)!r}")
    if not (path / "config.json").is_file():
        raise TtclRuntimeError(f"model {str(ref_or_path)!r}: {str(path)!r} has no config.json")
    refuse_unsafe_weights(path, str(ref_or_path))
    return path


def refuse_unsafe_weights(path: Path, shown: str) -> None:
    """Refuse a model that could run code when loaded: pickled weights, or custom model code
    (`ttcl.safeio.unsafe_model_files`, which `ttcl check` reads too)."""
    why = unsafe_model_files(path)
    if why is not None:
        raise TtclRuntimeError(f"model {shown!r}: {why}")


def model_spec(model: torch.nn.Module) -> ModelSpec:
    """Kaplan's N: all weights minus the token, position and output embeddings (tied weights once),
    the same count `ttcl check` derives from config.json, so bound and spend agree."""
    embed_ids = {id(p) for p in model.get_input_embeddings().parameters()}
    out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if out is not None:
        embed_ids |= {id(p) for p in out.parameters()}
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] in {"wpe", "embed_positions", "position_embeddings"}:
            embed_ids |= {id(p) for p in module.parameters()}
    n = sum(p.numel() for p in model.parameters() if id(p) not in embed_ids)
    cfg = model.config
    n_ctx = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)
    return ModelSpec(
        non_embedding_params=n,
        n_layer=getattr(cfg, "num_hidden_layers", 0) or 0,
        d_model=getattr(cfg, "hidden_size", 0) or 0,
        n_ctx=n_ctx,
    )


@dataclass
class _Job:
    """Samples `indices` of request `req`, all from one context."""

    req: int
    ids: tuple[int, ...]
    indices: list[int]
    params: SamplingParams
    seed: int
    keep_kv: bool
    owner: object = None  # the run's item this job works for (None: anyone's)


class TransformersBackend:
    """Batched sampling on one local causal LM. See the module docstring for the accounting."""

    def __init__(
        self,
        ref_or_path: str | Path,
        device: str = "auto",
        dtype: str | torch.dtype = "auto",
        *,
        prefix_cache_bytes: int = 512 << 20,
        max_batch_rows: int | None = None,
        simulate_oom_rows: int | None = None,
        share_prefix: bool = True,
        warm_shared: bool = True,
    ) -> None:
        from transformers import AutoModelForCausalLM

        self.path = model_dir(ref_or_path)
        self.device = pick_device(device)
        self.dtype = pick_dtype(dtype, self.device)
        self.tokenizer = load_tokenizer(self.path, f"cannot load model from {str(self.path)!r}")
        model, missing = load_weights(AutoModelForCausalLM, self.path)
        if missing:  # the run would sample noise
            raise TtclRuntimeError(missing_message(self.path, missing, model))
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        self.spec = model_spec(self.model)
        self.call = ModelCall(self.model)
        tok = self.tokenizer
        self.eos_id: int | None = tok.eos_token_id
        self.pad_id: int = next(i for i in (tok.pad_token_id, tok.eos_token_id, 0) if i is not None)
        self.warnings: list[str] = []
        if self.eos_id is None:
            self.warnings.append(
                f"model {ref_or_path} has no end-of-sequence token (tokenizer eos_token is unset): a sample ends only "
                "at max_tokens or a `stop =` string, so every sample costs its full max_tokens"
                + ("; padding uses token id 0 (no pad token either)" if tok.pad_token_id is None else ""))
        self.prefix_cache = PrefixCache(prefix_cache_bytes)
        self.max_batch_rows = max_batch_rows  # planned split: never run more rows at once
        self.simulate_oom_rows = simulate_oom_rows  # testing hook: raise OOM above this many rows
        self.oom_splits = 0
        # called before each decode step; may raise to abandon a batch no one waits for (`ttcl serve` sets it)
        self.on_decode_step: Callable[[], None] | None = None
        # charged to items as if each ran alone but computed once, for another item (module docstring)
        self.shared_prompt_tokens, self.shared_flops = 0, 0.0
        # False: every sample prefills its own prompt (an ablation for benchmark (c))
        self.share_prefix = share_prefix
        # False: contexts of one call that begin alike prefill their common part each (ablation, benchmark (d))
        self.warm_shared = warm_shared
        self._encode_cached = lru_cache(maxsize=16384)(self._encode_uncached)
        self._piece = self._token_pieces()

    # -- text ------------------------------------------------------------------------------

    def _encode(self, text: str) -> tuple[int, ...]:
        # prompts repeat (n samples, a vote's candidates, beams); a text far past any context does not, and caching
        # it kept it and its tokens for good (QA pass: 100 MB per refused 1 MB input under `ttcl serve`)
        return self._encode_cached(text) if len(text) <= _CACHED_CHARS else self._encode_uncached(text)

    def _encode_uncached(self, text: str) -> tuple[int, ...]:
        # verbose=False: a text over the model's length is only counted here (the accountant refuses to feed it),
        # so the tokenizer's "will result in indexing errors" warning is noise on stderr
        return tuple(self.tokenizer(text, verbose=False)["input_ids"])

    def encode(self, text: str) -> list[int]:
        return list(self._encode(text))

    def count_tokens(self, text: str) -> int:
        return len(self._encode(text))

    def chat_prompt(self, text: str) -> str:
        """`text` as one user message in the tokenizer's chat template, ready for the assistant's reply."""
        if not getattr(self.tokenizer, "chat_template", None):
            raise TtclRuntimeError(f"model {self.path.name} has no chat template (tokenizer_config.json `chat_template`)")
        out = self.tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True)
        return str(out)

    @cached_property
    def _chat_parts(self) -> tuple[str, str]:
        from ttcl.compiler.chat import ChatTemplateError, chat_parts

        try:
            return chat_parts(self.path)
        except ChatTemplateError as e:  # refused by `ttcl check` already; said again for a caller that skipped it
            raise TtclRuntimeError(f"model {self.path.name}: {e}") from None

    def chat_parts(self) -> tuple[str, str]:
        """The text `ttcl check` measured the chat template to write before and after a message (read once, not
        per prompt)."""
        return self._chat_parts

    def _token_pieces(self):
        """Per-token strings for incremental stop detection; exact for tokenizers that decode by concatenation."""
        tok = self.tokenizer
        table = tok.batch_decode([[i] for i in range(len(tok))], skip_special_tokens=True)
        size = len(table)
        return lambda i: table[i] if 0 <= i < size else ""  # the model may pad its vocab

    # -- public API ------------------------------------------------------------------------

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        jobs = [
            self._job(k, r.prompt, r.n, r.params, r.seed, r.keeps_kv, r.max_prompt_tokens, r.owner)
            for k, r in enumerate(requests)
        ]
        return self._results(len(requests), jobs)

    def extend(self, requests: list[ExtendRequest]) -> list[GenResult]:
        jobs = [
            self._job(
                k, r.prompt + r.partial, r.n, r.params, r.seed, r.keep_kv, r.max_prompt_tokens, r.owner
            )
            for k, r in enumerate(requests)
        ]
        return self._results(len(requests), jobs)

    @torch.no_grad()
    def next_token_logprobs(
        self, prompts: list[str], token_ids: list[int]
    ) -> tuple[list[list[float]], Usage]:
        """Log-probabilities of `token_ids` as the next token after each prompt, in one batched prefill.

        Distinct prompts are prefilled once; the prefix cache serves what it holds.
        """
        if not prompts:
            return [], Usage()
        try:
            return self._logprobs(prompts, token_ids)
        except OOM_ERRORS as e:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            if len(prompts) == 1:
                raise TtclRuntimeError(f"out of memory on {self.device} scoring one prompt") from e
            self.oom_splits += 1
            half = len(prompts) // 2
            a, ua = self.next_token_logprobs(prompts[:half], token_ids)
            b, ub = self.next_token_logprobs(prompts[half:], token_ids)
            return a + b, ua + ub

    def _logprobs(
        self, prompts: list[str], token_ids: list[int]
    ) -> tuple[list[list[float]], Usage]:
        if self.simulate_oom_rows is not None and len(prompts) > self.simulate_oom_rows:
            raise torch.cuda.OutOfMemoryError(
                f"simulated: {len(prompts)} rows > {self.simulate_oom_rows}"
            )
        _sync(self.device)
        t0 = time.perf_counter()
        jobs = [self._job(k, p, 1, SamplingParams(), 0, False, None) for k, p in enumerate(prompts)]
        if self.warm_shared and self.prefix_cache.max_bytes > 0:  # a judge's rubric before each candidate
            self._warm_shared_prefixes({job.ids: {None} for job in jobs})  # the judge's adapter charges items
        index: dict[tuple[int, ...], int] = {}
        contexts: list[Context] = []
        for job in jobs:
            if job.ids not in index:
                index[job.ids] = len(contexts)
                contexts.append(Context.from_hit(job.ids, self.prefix_cache.lookup(job.ids)))
        logits, cache, mask, _ = prefill(self.call, contexts, self.pad_id, self.device, room=0)
        for i, ctx in enumerate(contexts):
            self.prefix_cache.insert(ctx.ids, row_kv(cache, mask[i], i), logits[i].clone())
        cand = torch.tensor(token_ids, dtype=torch.long, device=self.device)
        picked = torch.log_softmax(logits.float(), dim=-1)[:, cand].tolist()  # [D, K]
        _sync(self.device)
        usage = Usage(
            calls=len(prompts),
            prompt_tokens=sum(len(c.ids) - c.cached for c in contexts),
            flops=sum(forward_flops(self.spec, c.cached, len(c.ids)) for c in contexts),
            seconds=time.perf_counter() - t0,
        )
        return [picked[index[job.ids]] for job in jobs], usage

    def clear_cache(self) -> None:
        """Forget cached KV prefixes (so a fresh run charges every prefill again)."""
        self.prefix_cache.clear()
        self.shared_prompt_tokens, self.shared_flops = 0, 0.0

    # -- batching ----------------------------------------------------------------------------

    def _job(self, k, text, n, params, seed, keep_kv, max_prompt_tokens, owner=None) -> _Job:
        ids = self._encode(text)
        if not ids:
            raise TtclRuntimeError(f"request {k}: empty prompt")
        if max_prompt_tokens is not None and len(ids) > max_prompt_tokens:
            raise TtclRuntimeError(
                f"request {k}: prompt has {len(ids)} tokens, more than the declared {max_prompt_tokens}"
            )
        if self.spec.n_ctx is not None and len(ids) >= self.spec.n_ctx:
            raise TtclRuntimeError(
                f"request {k}: prompt has {len(ids)} tokens; model {self.path.name} has a context of "
                f"{self.spec.n_ctx}, leaving no room to generate"
            )
        return _Job(k, ids, list(range(n)), params, seed, keep_kv, owner)

    def _results(self, n_requests: int, jobs: list[_Job]) -> list[GenResult]:
        samples: list[dict[int, Sample]] = [{} for _ in range(n_requests)]
        usage = [Usage() for _ in range(n_requests)]
        if jobs:
            for job, got, use in self._run_split(jobs):
                samples[job.req].update(zip(job.indices, got, strict=True))
                usage[job.req] = usage[job.req] + use
        return [
            GenResult([s[j] for j in sorted(s)], u) for s, u in zip(samples, usage, strict=True)
        ]

    def _run_split(self, jobs: list[_Job]) -> list[tuple[_Job, list[Sample], Usage]]:
        """Run jobs as one batch; on out-of-memory split the rows in halves and retry each."""
        rows = sum(len(j.indices) for j in jobs)
        if self.max_batch_rows is not None and rows > self.max_batch_rows:
            first, second = _halve(jobs)
            return self._run_split(first) + self._run_split(second)
        try:
            return self._run(jobs)
        except OOM_ERRORS as e:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            if rows <= 1:
                raise TtclRuntimeError(
                    f"out of memory on {self.device} with a single sequence; use a smaller "
                    f"max_tokens or a smaller dtype"
                ) from e
            self.oom_splits += 1
            self.max_batch_rows = max(1, rows // 2)  # remember: later calls start split
            first, second = _halve(jobs)
            return self._run_split(first) + self._run_split(second)

    def _run(self, jobs: list[_Job]) -> list[tuple[_Job, list[Sample], Usage]]:
        rows_total = sum(len(j.indices) for j in jobs)
        if self.simulate_oom_rows is not None and rows_total > self.simulate_oom_rows:
            raise torch.cuda.OutOfMemoryError(
                f"simulated: {rows_total} rows > {self.simulate_oom_rows}"
            )
        _sync(self.device)
        t0 = time.perf_counter()
        owners_of: dict[tuple[int, ...], set[object]] = {}  # each distinct context -> the items it works for
        for job in jobs:
            owners_of.setdefault(job.ids, set()).add(job.owner)
        alone, warmed = self._alone(owners_of)  # before this call changes the cache
        if self.share_prefix and self.warm_shared and self.prefix_cache.max_bytes > 0:
            self._warm_shared_prefixes(owners_of)

        ctx_index: dict[tuple[int, ...], int] = {}
        contexts: list[Context] = []
        # (context, owner) -> (the owner's first job on it, which pays its prefill; the positions the owner would
        # find cached running alone): each item pays as if it ran alone, whatever other items cached
        payers: dict[tuple[int, object], tuple[int, int]] = {}
        rows: list[Row] = []
        row_job: list[tuple[int, int]] = []  # row -> (job, position in job)
        for jn, job in enumerate(jobs):
            c = ctx_index.get(job.ids) if self.share_prefix else None
            p = job.params
            for pos, j in enumerate(job.indices):
                if c is None:
                    c = ctx_index[job.ids] = len(contexts)
                    if self.share_prefix:
                        contexts.append(
                            Context.from_hit(job.ids, self.prefix_cache.lookup(job.ids))
                        )
                    else:
                        contexts.append(Context(job.ids))
                if (c, job.owner) not in payers:
                    payers[(c, job.owner)] = (jn, alone[(job.ids, job.owner)])
                rows.append(
                    Row(
                        c,
                        stream_key(job.seed, j),
                        p.temperature,
                        p.top_p,
                        p.max_tokens,
                        p.stop,
                        job.keep_kv,
                    )
                )
                row_job.append((jn, pos))
                if not self.share_prefix:
                    c = None

        outs, ctx_kv = run_batch(
            self.call,
            contexts,
            rows,
            pad_id=self.pad_id,
            eos_id=self.eos_id,
            n_ctx=self.spec.n_ctx,
            device=self.device,
            piece=self._piece,
            keep_ctx_kv=self.share_prefix,
            on_step=self.on_decode_step,
        )
        for ctx, kept in zip(contexts, ctx_kv, strict=True):
            if kept is not None:
                self.prefix_cache.insert(ctx.ids, *kept, owners=frozenset(owners_of[ctx.ids] - {None}))
        texts = self.tokenizer.batch_decode([o.token_ids for o in outs], skip_special_tokens=True)
        _sync(self.device)
        seconds = time.perf_counter() - t0

        per_job = [([None] * len(j.indices), Usage(calls=len(j.indices))) for j in jobs]
        jobs_of: dict[object, list[int]] = {}
        for jn, job in enumerate(jobs):
            jobs_of.setdefault(job.owner, []).append(jn)
        for (owner, q), (tokens, flops) in warmed.items():  # a warmed prefix: each owner's share, on its first
            # job whose context begins with it (QA pass: booked on the owner's first job whatever its context, a
            # node was charged past its static bound for another node's prompt and its item failed)
            use = per_job[next(jn for jn in jobs_of[owner] if jobs[jn].ids[: len(q)] == q)][1]
            use.prompt_tokens += int(tokens)
            use.flops += flops
            self.shared_prompt_tokens += int(tokens)
            self.shared_flops += flops
        for (c, _), (jn, cached) in payers.items():
            ctx, use = contexts[c], per_job[jn][1]
            use.prompt_tokens += len(ctx.ids) - cached
            use.flops += forward_flops(self.spec, cached, len(ctx.ids))
            self.shared_prompt_tokens += ctx.cached - cached  # charged here, computed for another item
            self.shared_flops += forward_flops(self.spec, cached, len(ctx.ids)) - forward_flops(
                self.spec, ctx.cached, len(ctx.ids))
        for row, out, text, (jn, pos) in zip(rows, outs, texts, row_job, strict=True):
            sample, use = self._sample(row, out, text), per_job[jn][1]
            per_job[jn][0][pos] = sample
            n_ctx_row = len(contexts[row.ctx].ids)
            use.gen_tokens += len(out.token_ids)
            use.flops += forward_flops(self.spec, n_ctx_row, n_ctx_row + len(out.token_ids))
            if out.kv is not None:
                owner = jobs[jn].owner
                self.prefix_cache.insert(contexts[row.ctx].ids + tuple(out.token_ids[:-1]), out.kv,
                                         owners=frozenset(() if owner is None else (owner,)))
        total = sum(u.flops for _, u in per_job) or 1.0
        for _, use in per_job:
            use.seconds = seconds * use.flops / total
        return [(job, got, use) for job, (got, use) in zip(jobs, per_job, strict=True)]

    def _alone(self, owners_of: dict[tuple[int, ...], set[object]]
               ) -> tuple[dict[tuple[tuple[int, ...], object], int], dict[tuple[object, tuple[int, ...]], list[float]]]:
        """What each owner (item) would find cached for each of its contexts if it ran this call alone, and
        what it would pay to warm each prefix its own contexts share: (context, owner) -> cached positions,
        (owner, prefix) -> [prompt tokens, FLOPs]. Charges follow these, not what this call computes."""
        mine: dict[object, set[tuple[int, ...]]] = {}
        for ids, owners in owners_of.items():
            for owner in owners:
                mine.setdefault(owner, set()).add(ids)
        cached: dict[tuple[tuple[int, ...], object], int] = {}
        warm: dict[tuple[object, tuple[int, ...]], list[float]] = {}
        for owner, contexts in mine.items():
            if not self.share_prefix:
                cached.update({(c, owner): 0 for c in contexts})
                continue
            own = [q for q in (shared_prefixes(contexts, MIN_SHARED_PREFIX) if self.warm_shared else [])
                   if self.prefix_cache.own_length(q, owner) < len(q)]
            for q in own:
                have = self.prefix_cache.own_hit(q, owner)
                warm[(owner, q)] = [len(q) - have, forward_flops(self.spec, have, len(q))]
            for c in contexts:
                cover = max((len(q) for q in own if c[: len(q)] == q), default=0)
                cached[(c, owner)] = len(c) if cover == len(c) else max(
                    self.prefix_cache.own_hit(c, owner), min(cover, len(c) - 1))
        return cached, warm

    def _warm_shared_prefixes(self, owners_of: dict[tuple[int, ...], set[object]]) -> None:
        """Prefill, once, each prefix that two or more of a call's contexts begin with (a shared system
        prompt or few-shot preamble) and is not yet cached, so that their own prefills start from it;
        tagged with the owners of those contexts. What it computes counts against what the cache
        saved (`shared_prompt_tokens`); charges are set apart (`_alone`)."""
        todo = [p for p in shared_prefixes(set(owners_of), MIN_SHARED_PREFIX)
                if self.prefix_cache.own_length(p, None) < len(p)]
        if not todo:
            return
        warm = [Context.from_hit(p, self.prefix_cache.lookup(p)) for p in todo]
        logits, cache, mask, _ = prefill(self.call, warm, self.pad_id, self.device, room=0)
        for i, (p, ctx) in enumerate(zip(todo, warm, strict=True)):
            who = frozenset(o for c, os in owners_of.items() if c[: len(p)] == p for o in os if o is not None)
            self.prefix_cache.insert(ctx.ids, row_kv(cache, mask[i], i), logits[i].clone(), owners=who)
            self.shared_prompt_tokens -= len(p) - ctx.cached  # computed once, here
            self.shared_flops -= forward_flops(self.spec, ctx.cached, len(p))

    @staticmethod
    def _sample(row: Row, out: RowOut, text: str) -> Sample:
        reason = out.finish_reason
        if row.stop and reason != "eos":
            cut = trim_at_stop(text, row.stop)
            if cut is not None:
                text, reason = cut, "stop"
        return Sample(text=text, token_ids=list(out.token_ids), finish_reason=reason)


MIN_SHARED_PREFIX = 16  # tokens: a shorter common beginning is not worth a prefill of its own


def shared_prefixes(contexts: set[tuple[int, ...]], min_len: int) -> list[tuple[int, ...]]:
    """For each group of two or more `contexts` that begin with the same `min_len` tokens or more, the
    prefix they all share (a system prompt, a few-shot preamble). Sorted, such a group is a run of
    neighbours, and its common prefix is its first and last context's. Longer prefixes shared within
    a group (two questions that begin alike after the preamble) are left out: each would need a
    prefill round of its own, for a few tokens."""
    order = sorted(contexts)
    out, start = [], 0
    for i in range(1, len(order) + 1):
        if i == len(order) or _common(order[i - 1], order[i]) < min_len:
            if i - start >= 2:
                out.append(order[start][: _common(order[start], order[i - 1])])
            start = i
    return out


def _common(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    return next((k for k, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def _halve(jobs: list[_Job]) -> tuple[list[_Job], list[_Job]]:
    """Split the rows of `jobs` into two halves, splitting one job's sample indices if needed."""
    flat = [(jn, j) for jn, job in enumerate(jobs) for j in job.indices]
    half = len(flat) // 2

    def build(part: list[tuple[int, int]]) -> list[_Job]:
        out: dict[int, _Job] = {}
        for jn, j in part:
            if jn not in out:
                src = jobs[jn]
                out[jn] = _Job(src.req, src.ids, [], src.params, src.seed, src.keep_kv, src.owner)
            out[jn].indices.append(j)
        return list(out.values())

    return build(flat[:half]), build(flat[half:])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
