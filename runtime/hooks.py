"""Lifecycle hooks around every node the scheduler runs.

Accounting, tracing and progress reporting are hooks, not code inlined in
the scheduler (STYLE.md: Hamilton's `lifecycle/`). Every method takes
keyword-only arguments and a `**future` catch-all, so the scheduler can pass
more context later without breaking a hook someone else wrote.

The one hook whose return value matters is `before_node`: a hook that gates
execution (the accountant) returns an `Allowance`; the others return None.
`before_node`/`after_phase` come in pairs, once per allowance (a revise node
asks once per round); `after_node` or `skip_node` comes once per node and item.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ttcl.compiler.costmodel import Cost

if TYPE_CHECKING:
    from ttcl.compiler.dag import DagNode
    from ttcl.runtime.accountant import Allowance, Resize


class NodeHook:
    """Base class: every method is a no-op, override what you need."""

    # Whether `after_node` reads its `inputs` and `outputs` (turned into JSON for it, one dict per candidate): True
    # for the trace; None (a hook that does not say) means it does when it overrides `after_node`.
    wants_io: bool | None = None

    def before_run(self, *, items: int, **future: Any) -> None:
        return None

    def before_node(
        self,
        *,
        item: int,
        node_id: str,
        op: str,
        worst_case: Cost,
        n: int | None,
        max_tokens: int | None,
        resize: Resize | None,
        **future: Any,
    ) -> Allowance | None:
        return None

    def granted(self, *, item: int, node_id: str, allowance: Allowance, **future: Any) -> None:
        """An allowance that spends was granted; the calls it pays for run next (the trace records it first)."""
        return None

    def after_phase(
        self,
        *,
        item: int,
        node_id: str,
        allowance: Allowance,
        actual: Cost,
        error: str | None,
        **future: Any,
    ) -> None:
        """A granted allowance was used (a node runs one phase per allowance; revise one per round)."""
        return None

    def after_node(
        self,
        *,
        item: int,
        node: DagNode,
        status: str,
        actual: Cost,
        inputs: dict[str, Any],
        outputs: Any,
        error: str | None,
        reason: str | None,
        started: float,
        seconds: float,
        **future: Any,
    ) -> None:
        """A node finished for one item (ok, shrunk, refused or failed), with its total spend."""
        return None

    def skip_node(self, *, item: int, node: DagNode, reason: str, **future: Any) -> None:
        return None

    def before_calls(self, *, step: int, **future: Any) -> None:
        """Once per scheduler step, after every allowance of the step is granted, before any model call."""
        return None

    def before_completions(self, *, step: int, **future: Any) -> None:
        """A step's calls are back: its jobs are about to be completed (phases charged, nodes finished)."""
        return None

    def after_completions(self, *, step: int, **future: Any) -> None:
        """Every job of the step was completed: what the step did is whole."""
        return None

    def after_item(self, *, item: int, result: Any, **future: Any) -> None:
        return None

    def after_run(self, *, results: list[Any], **future: Any) -> None:
        return None
