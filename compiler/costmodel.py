"""The cost model shared by the static bound (`ttcl check`) and the accountant (`ttcl run`).

Both sides must use the same arithmetic, or "actual <= bound" means nothing,
so the formulas live here and nowhere else. No torch import: `ttcl check`
must start fast.

FLOPs follow Kaplan et al. 2020 (Table 1): a forward pass costs, per token,
2·N for the non-embedding weights plus 2·n_layer·n_ctx·d_model for attention,
where n_ctx is the number of positions the token attends to. Snell et al.
2024 count inference as 2·N·D (no attention term); `FORMULA` names ours so
every report can say which one it used.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

FORMULA = "2*N*tokens + 2*n_layer*d_model*ctx per token (Kaplan et al. 2020, forward only)"


class Unit(StrEnum):
    """Budget units. `tokens` is prompt_tokens + gen_tokens."""

    calls = "calls"
    prompt_tokens = "prompt_tokens"
    gen_tokens = "gen_tokens"
    tokens = "tokens"
    flops = "flops"
    seconds = "seconds"


# Units a static bound can be proved for; seconds are enforced at run time only.
STATIC_UNITS: tuple[Unit, ...] = (
    Unit.calls,
    Unit.prompt_tokens,
    Unit.gen_tokens,
    Unit.tokens,
    Unit.flops,
)


class ModelSpec(BaseModel):
    """What the cost model needs to know about one model."""

    model_config = ConfigDict(frozen=True)

    non_embedding_params: int = Field(ge=0)
    n_layer: int = Field(default=0, ge=0)
    d_model: int = Field(default=0, ge=0)
    n_ctx: int | None = Field(default=None, ge=1)


def forward_flops(spec: ModelSpec, start: int, end: int) -> float:
    """FLOPs to push positions start+1..end through the model, with `start` positions already cached.

    Prefill of a p-token prompt is forward_flops(spec, 0, p); decoding g tokens
    after a context of c is forward_flops(spec, c, c + g). The sum is exact:
    sum over p in (start, end] of 2N + 2·L·d·p.
    """
    if end <= start:
        return 0.0
    tokens = end - start
    position_sum = (end * (end + 1) - start * (start + 1)) // 2
    return float(2 * spec.non_embedding_params * tokens + 2 * spec.n_layer * spec.d_model * position_sum)


class Cost(BaseModel):
    """An amount of spend (or a bound on it) in every unit."""

    model_config = ConfigDict(frozen=True)

    calls: float = 0
    prompt_tokens: float = 0
    gen_tokens: float = 0
    flops: float = 0
    seconds: float = 0

    @property
    def tokens(self) -> float:
        return self.prompt_tokens + self.gen_tokens

    def get(self, unit: Unit | str) -> float:
        return float(getattr(self, Unit(unit).value))

    def __add__(self, other: Cost) -> Cost:
        return Cost(
            calls=self.calls + other.calls,
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            gen_tokens=self.gen_tokens + other.gen_tokens,
            flops=self.flops + other.flops,
            seconds=self.seconds + other.seconds,
        )

    def scale(self, k: float) -> Cost:
        return Cost(
            calls=self.calls * k,
            prompt_tokens=self.prompt_tokens * k,
            gen_tokens=self.gen_tokens * k,
            flops=self.flops * k,
            seconds=self.seconds * k,
        )

    def max(self, other: Cost) -> Cost:
        """Unit-wise maximum: the bound of two branch arms."""
        return Cost(
            calls=max(self.calls, other.calls),
            prompt_tokens=max(self.prompt_tokens, other.prompt_tokens),
            gen_tokens=max(self.gen_tokens, other.gen_tokens),
            flops=max(self.flops, other.flops),
            seconds=max(self.seconds, other.seconds),
        )

    def as_dict(self) -> dict[str, float]:
        return {u.value: self.get(u) for u in Unit}
