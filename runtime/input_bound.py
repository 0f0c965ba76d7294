"""An input against its strategy's declared `text[<=N]`, counted in each model's own tokens as `ttcl check`
bounded it.

`ttcl serve` refuses an over-long request with it before anything runs; a run (`ttcl run`, `ttcl eval`, a wide
run's workers) stops such an item at its first model call, with the same words. Before, a run stopped an item
only where a node's prompt went past that node's bound, which holds a token of slack (a special-token slot
`sample` does not use), so a 41-token input ran under `text[<=40]` (QA pass).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ttcl.errors import TtclError

# An input over this many characters per token of its bound is refused without being tokenized: no bundled
# tokenizer has a token longer than a few characters (a BPE vocabulary's longest are about 16-32)
CHARS_PER_TOKEN = 64
INPUT_IS = "the input is"  # how every reason here begins: a refusal's text says which check made it


def declared_bound(dag: Any) -> tuple[str, int | None]:
    """The name and `text[<=N]` of the entry strategy's first input: the one an item's question fills."""
    if not dag.inputs:
        return "question", None
    node = dag.nodes[dag.inputs[0]]
    return node.args.name or "question", node.args.max_len if node.type == "text" else None


def count_input(question: str, backends: Mapping[str, Any]) -> tuple[int, str] | None:
    """The most tokens any of the run's models counts in `question`, and that model's ref; None when none can
    count here (an endpoint without a local tokenizer or /tokenize: the node's own bound still holds)."""
    counts: list[tuple[int, str]] = []
    for ref, be in backends.items():
        try:
            counts.append((int(be.count_tokens(question)), ref.split("?")[0] if "://" in ref else ref))  # a URL
            # without ttcl's own keys (QA pass: "model http://...?model=/.../arith-m&engine=vllm's tokenizer")
        except (TtclError, OSError):
            continue
    return max(counts) if counts else None


def over_bound(question: str, name: str, bound: int | None, backends: Mapping[str, Any]) -> str | None:
    """Why `question` is longer than `name: text[<=bound]` (None when it is not, or cannot be counted)."""
    if bound is None:
        return None
    declared = f"the strategy's declared bound `{name}: text[<={bound}]`"
    if len(question) > bound * CHARS_PER_TOKEN:
        return f"{INPUT_IS} {len(question):,} characters, more than {CHARS_PER_TOKEN} per token of {declared}"
    counted = count_input(question, backends)
    if counted is None or counted[0] <= bound:
        return None
    return f"{INPUT_IS} {counted[0]} tokens (model {counted[1]}'s tokenizer), longer than {declared}"
