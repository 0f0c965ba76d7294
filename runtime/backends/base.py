"""The typed, batch-first interface between the scheduler and a model.

A backend takes a whole batch of requests for one model and returns one result
per request, in order. Requests say *what* to sample; the backend decides how
to batch, pad, share prefixes and split on memory pressure. Usage is charged
per request with the shared cost model (`ttcl.compiler.costmodel`), so the
static bound and the actual spend use the same arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ttcl.compiler.costmodel import Cost, ModelSpec
from ttcl.errors import TtclRuntimeError

FINISH_REASONS = ("stop", "length", "eos")


@dataclass(frozen=True)
class SamplingParams:
    """How to sample. temperature 0 means greedy; top_p 1 means no nucleus cut.

    Stop strings are *kept*: a sample that hits one ends right after it
    (`text.endswith(stop)`), so a partial candidate can be extended step by
    step without re-sampling the delimiter.
    """

    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 256
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.temperature < float("inf"):  # false for NaN too
            raise TtclRuntimeError(f"temperature must be a finite number >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise TtclRuntimeError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens < 1:
            raise TtclRuntimeError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if any(not s for s in self.stop):
            raise TtclRuntimeError("stop strings must be non-empty")


@dataclass(frozen=True)
class GenRequest:
    """Draw n samples from one prompt. The prompt is prefilled once and its KV cache shared by the n samples.

    Sample j uses a random stream derived from (seed, j) only, so a sample does
    not depend on what else is in the batch, nor on how the batch is split.
    `keep_kv` asks the backend to keep each finished sample's KV cache in its
    prefix cache, for a later `extend` of the same candidates; None (default)
    keeps it when the request has stop strings, i.e. when it samples a step.
    """

    prompt: str
    n: int
    params: SamplingParams = field(default_factory=SamplingParams)
    seed: int = 0
    max_prompt_tokens: int | None = None
    keep_kv: bool | None = None
    owner: object = None  # the run's item it works for: its prefill is charged as if that item ran alone

    @property
    def keeps_kv(self) -> bool:
        return bool(self.params.stop) if self.keep_kv is None else self.keep_kv

    def __post_init__(self) -> None:
        if self.n < 1:
            raise TtclRuntimeError(f"n must be >= 1, got {self.n}")


@dataclass(frozen=True)
class ExtendRequest:
    """Continue a partial candidate: the model sees `prompt + partial` and samples what comes next.

    Returned samples hold only the new text (not `partial`). The longest cached
    KV prefix of `prompt + partial` is reused and only the rest is prefilled and
    charged. `keep_kv` defaults to True because step-level search extends the
    results again.
    """

    prompt: str
    partial: str
    n: int
    params: SamplingParams = field(default_factory=SamplingParams)
    seed: int = 0
    max_prompt_tokens: int | None = None
    keep_kv: bool = True
    owner: object = None  # as GenRequest's

    def __post_init__(self) -> None:
        if self.n < 1:
            raise TtclRuntimeError(f"n must be >= 1, got {self.n}")


@dataclass
class Sample:
    """One continuation. `token_ids` are every token sampled (an EOS included), so
    len(token_ids) is what was charged; `text` is their decoding, cut right after
    the first stop string when finish_reason == "stop"."""

    text: str
    token_ids: list[int]
    finish_reason: str  # "stop" | "length" | "eos"


@dataclass
class Usage:
    """Spend of one request. prompt_tokens counts prefill as if the request's owner (its item) ran
    alone: a prefix shared or cached within one owner is charged once, one another owner computed
    is charged again (a backend counts those apart, `shared_prompt_tokens`); padding never."""

    calls: int = 0
    prompt_tokens: int = 0
    gen_tokens: int = 0
    flops: float = 0.0
    seconds: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            calls=self.calls + other.calls,
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            gen_tokens=self.gen_tokens + other.gen_tokens,
            flops=self.flops + other.flops,
            seconds=self.seconds + other.seconds,
        )

    def to_cost(self) -> Cost:
        """The accountant's unit-wise view."""
        return Cost(
            calls=self.calls,
            prompt_tokens=self.prompt_tokens,
            gen_tokens=self.gen_tokens,
            flops=self.flops,
            seconds=self.seconds,
        )


@dataclass
class GenResult:
    samples: list[Sample]
    usage: Usage


@runtime_checkable
class Backend(Protocol):
    """What the scheduler needs from a model. All methods are batch-first."""

    spec: ModelSpec

    def count_tokens(self, text: str) -> int: ...

    def generate(self, requests: list[GenRequest]) -> list[GenResult]: ...

    def extend(self, requests: list[ExtendRequest]) -> list[GenResult]: ...


def resolve_ref(ref: str) -> str:
    """Map a model ref (`ttcl:arith-s` or a local directory) to a directory path.

    The zoo registry is imported lazily; until it exists a ref is read as a path.
    """
    try:
        from ttcl.zoo.registry import resolve_model
    except ImportError:
        resolve_model = None
    if resolve_model is not None:
        try:
            return str(resolve_model(ref))
        except TtclRuntimeError:
            raise
        except Exception as e:  # the registry's own error types are not ours to know
            raise TtclRuntimeError(f"cannot resolve model {ref!r}: {e}") from e
    if ref.startswith("ttcl:"):
        raise TtclRuntimeError(
            f"bundled model {ref!r} is not available (no zoo registry installed)"
        )
    return ref
