"""The DAG a checked program compiles to: what the budget stage bounds and the runtime executes.

Built by `build_dag(checked)` (the builder lives in `dag_build.py`). The
graph is acyclic and self-sufficient: a scheduler needs nothing but this
module's types to run it.

Nodes
-----
Every node is a `DagNode` with

- `id`: unique, namespaced by the call path. A value bound to a variable is
  `<ns>/<var>` (a re-binding gets `#2`, `#3`...); an unnamed sub-expression
  is `<ns>/<op>@<line>:<col>`. The root namespace is `main` (the entry
  strategy's name); an inlined strategy call adds `<alias>.<strategy>#<k>`
  (or `<strategy>#<k>` for a local one, k counting calls in the caller), and
  iteration i of an unrolled `repeat` on line L adds `repeat@L[i]`:
  `main/bon.main#1/drafts`, `main/repeat@12[3]/x`.
- `op` (see `Op`) and `args` (`NodeArgs`: the static arguments, already
  evaluated: model, n, max_tokens, temperature, prompt template parts,
  verifier...). Built-in defaults come from `builtins.BUILTINS`, so `args`
  holds every value the runtime needs.
- `inputs`: the data dependencies, as ordered `Port(role, node)` pairs. The
  roles per op: `prompt` (sources of a prompt's template fields; sample,
  template), `cands` (extend, verify, revise, vote, best, top, filter and
  the statistics), `left`/`right` (concat, arith, compare, and/or),
  `operand` (neg, not), `value` (phi, in order; return), `cond` (guard),
  `temperature`/`top_p` (when not static), `pred:<name>` (a variable a
  filter predicate reads; the predicate's params are already folded to
  literals, so it needs no other scope). A prompt's `PromptPart.source`
  names the input node each field reads.
- `guard`: `GuardCond(node, arm)` or None. A node runs iff its guard holds;
  `(g, arm)` holds iff guard node g ran and its condition evaluated to
  `arm`. Guards nest through the guard nodes' own guards, so a node's full
  condition is `Dag.guard_chain(id)`. By construction a node's guard
  implies the guards of all its non-phi inputs.
- `span`, `module` (the source file), `ns` (the namespace) and `var` (the
  variable it binds, if any): every cost row and runtime error points back
  to a line.

Control flow
------------
- `if c { A } else { B }`: a `guard` node on c; A's nodes guarded
  `(g, True)`, B's `(g, False)`. Variables re-bound in an arm meet in a
  `phi` node after the `if`.
- `phi`: the value of the *last* input, in `inputs` order, that ran (none
  if none ran). It is how a variable merges after branches, after an early
  exit and after a loop; it costs nothing. An assignment inside an arm or a
  loop body always binds a node that runs there (`x = y` gets a one-input
  phi copying y), so "ran" identifies the path taken.
- `repeat K { body } until u`: the body is copied K times. After iteration
  i, a guard node `.../repeat@L[i]/stop` evaluates "u_i, or a break/return
  happened"; iteration i+1 is guarded by `(stop_i, False)`. Variables
  re-bound in the loop are merged after it by a phi over the iterations.
- `break` / an early `return` inside a branch: a `const true` node under the
  branch's guard marks the exit; after the branch a phi of `false` and those
  markers feeds a guard, and the rest of the block runs under its False arm.
- Each `return` statement is a `return` node; the strategy's value is its
  single unguarded return or a phi over them (`<ns>/result`). `Dag.output`
  is the entry strategy's value.

Prompts are always explicit parts (`PromptPart`). `revise` without a
`prompt` gets the model card's `revise_template` (`{question}` -> the
item's question, `{attempt}` -> the candidate's text), else
`{c.prompt}{c.text}\n` (with `Feedback: {feedback}\n` when a feedback
verifier is given); a judge's rubric is read as-is, with the candidate's
prompt and text appended when it names no `{c...}` field.

Strategy calls are inlined: the callee's inputs are bound to the argument
nodes, and keyword arguments set the callee module's params for that call.

`Dag.nodes` is in creation order, which is a topological order.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import networkx as nx
from pydantic import BaseModel, ConfigDict, Field

from ttcl.compiler.ast import Expr, Span

Op = Literal[
    "input",  # a strategy input of the entry strategy
    "param",  # a param's value (static)
    "const",  # a literal
    "budget_left",  # budget.left.<unit>: what the item may still spend (its budget, its share of the pool);
    # budget_left/budget_pool carry an `after` port: the latest model node or `allot` before them in the source
    "budget_pool",  # budget.pool.<unit>: the pooled budget's balance (at the last allotment under a split)
    "allot",  # waits for every item, then shares the rest of the pool by need; the item's share
    "template",  # text built from a string template
    "sample",
    "extend",
    "verify",
    "revise",
    "vote",
    "best",
    "top",
    "filter",
    "concat",  # c1 + c2 on candidates
    "agreement",
    "best_score",
    "mean_score",
    "count",
    "entropy",
    "all_finished",  # bool: every candidate ended
    "backup",  # candidates scored by their best rollout
    "balance",  # copies of candidates shared out by softmax(score / temperature)
    "arith",  # + - * / on numbers, `neg`
    "compare",  # < <= > >= == !=
    "bool",  # and / or / not
    "guard",  # evaluates `cond`; guards its arms
    "phi",  # the last input that ran
    "return",  # a `return` statement's value
]

# Ops that run a model (or a verifier that may); everything else costs nothing.
MODEL_OPS: frozenset[str] = frozenset({"sample", "extend", "verify", "revise"})

ValueType = Literal["text", "candidates", "number", "answer", "bool"]


_DEFAULTS: dict[type, dict[str, Any]] = {}


class _Fast(BaseModel):
    """Base of the DAG's models: `make` builds an instance without validation.

    The builder creates thousands of nodes per compile (and again for each
    trial value of an `auto` param) from values it already typed, and
    `model_construct` resolves every field default on each call, which
    dominated the build time. `make` copies precomputed defaults instead.
    """

    model_config = ConfigDict(frozen=True)

    @classmethod
    def make(cls, **values: Any) -> Any:
        defaults = _DEFAULTS.get(cls)
        if defaults is None:
            defaults = {name: f.get_default(call_default_factory=True) for name, f in cls.model_fields.items() if not f.is_required()}
            _DEFAULTS[cls] = defaults
        data = dict(defaults)
        data.update(values)
        return construct(cls, data, set(values))


def construct(cls: type[BaseModel], data: dict[str, Any], fields_set: set[str] | None = None) -> Any:
    """An instance of pydantic model `cls` holding `data` (every field, already typed), unvalidated."""
    obj = cls.__new__(cls)
    object.__setattr__(obj, "__dict__", data)
    object.__setattr__(obj, "__pydantic_fields_set__", fields_set if fields_set is not None else set(data))
    object.__setattr__(obj, "__pydantic_extra__", None)
    object.__setattr__(obj, "__pydantic_private__", None)
    return obj


class GuardCond(_Fast):
    """The node runs only if guard node `node` ran and its condition was `arm`."""

    model_config = ConfigDict(frozen=True)

    node: str
    arm: bool


class Port(_Fast):
    """One data input of a node: the producing node and the role it plays."""

    model_config = ConfigDict(frozen=True)

    role: str
    node: str


class PromptPart(_Fast):
    """One piece of a prompt template.

    Literal text has `text`. A field has `path`: with `source`, the value of
    node `source` then the attributes after its name (`{question}` ->
    path ["question"]; `{c.text}` on a variable c -> ["c", "text"]); without
    `source`, a per-candidate field of revise prompts and judge rubrics
    (`{c.text}`, `{c.prompt}`, `{feedback}`) filled for each candidate.
    Static values (params) are already folded into text.
    """

    model_config = ConfigDict(frozen=True)

    text: str | None = None
    path: list[str] = []
    source: str | None = None


class ModelRef(_Fast):
    """A model declaration as used by a node: its name, the ref after `--model` overrides, and its options."""

    model_config = ConfigDict(frozen=True)

    name: str
    ref: str
    module: str
    options: dict[str, float] = {}
    span: Span
    overridden: bool = Field(default=False, exclude=True)  # `ref` came from a model override, not from `span`

    @property
    def base_dir(self) -> Path | None:
        """The directory a relative `ref` is read from: the declaring module's, None for a program
        given as text (`<string>`, `<stdin>`)."""
        return None if self.module.startswith("<") else Path(self.module).parent


class VerifierRef(_Fast):
    """A verifier declaration: `check("arith")`, `reward(ref)`, `prm(ref, agg)`, `likelihood(ref)`,
    `judge(model, rubric)`."""

    model_config = ConfigDict(frozen=True)

    name: str
    kind: Literal["check", "reward", "prm", "likelihood", "judge"]
    checker: str | None = None  # check: the registered checker's name
    model: ModelRef | None = None  # reward/prm/likelihood/judge: the scoring model
    agg: str | None = None  # prm: last | min | prod; check: None (the outcome) or last | min | prod
    rubric: list[PromptPart] | None = None  # judge: the prompt, with per-candidate fields
    span: Span


class NodeArgs(_Fast):
    """The static arguments of a node; which fields are set depends on `op`."""

    model_config = ConfigDict(frozen=True)

    model: ModelRef | None = None
    verifier: VerifierRef | None = None
    n: int | None = None
    max_tokens: int | None = None
    temperature: float | None = None  # None with a `temperature` input port when dynamic
    top_p: float | None = None
    stop: list[str] | None = None
    seed: int | None = None
    prompt: list[PromptPart] | None = None  # sample: the prompt; revise: the rewrite template; template: the text
    feedback: VerifierRef | None = None  # revise
    rounds: int | None = None  # revise
    k: int | None = None  # top
    weight: str | None = None  # vote
    predicate: Expr | None = None  # filter: a bool expression over `score`, `length` and `finished`
    symbol: str | None = None  # arith/compare/bool: + - * / neg < <= ... and or not
    value: int | float | bool | str | None = None  # const, param; balance: a static `total`
    name: str | None = None  # input/param name; budget_left unit
    max_len: int | None = None  # input: its length bound in tokens


class DagNode(_Fast):
    """One operation of the compiled program."""

    model_config = ConfigDict(frozen=True)

    id: str
    op: Op
    type: ValueType
    args: NodeArgs = NodeArgs()
    inputs: list[Port] = []
    guard: GuardCond | None = None
    span: Span
    module: str
    ns: str
    var: str | None = None

    def input_nodes(self, role: str | None = None) -> list[str]:
        return [p.node for p in self.inputs if role is None or p.role == role]


class Dag:
    """A compiled program: nodes by id in topological (creation) order, and the networkx graph over them.

    Graph edges carry `kind="data"` (with the port's `role`) or `kind="guard"`.
    """

    def __init__(self, nodes: dict[str, DagNode], output: str, inputs: list[str], entry: str):
        self.nodes = nodes
        self.output = output
        self.inputs = inputs
        self.entry = entry
        self.calls: list[Any] = []  # dag_build.CallSite per inlined strategy call, in order
        # per imported module instance, the names of its params whose own value some call read (a call's keyword
        # hides the instance's value): `--set ALIAS.NAME` of a name outside it changes nothing
        self.params_read: dict[str, set[str]] = {}
        self._graph: nx.DiGraph | None = None

    @property
    def graph(self) -> nx.DiGraph:
        """The networkx view (built on first use: `ttcl check` itself never needs it)."""
        if self._graph is None:
            graph = nx.DiGraph()
            for node in self.nodes.values():
                graph.add_node(node.id, node=node)
                for port in node.inputs:
                    graph.add_edge(port.node, node.id, kind="data", role=port.role)
                if node.guard is not None and not graph.has_edge(node.guard.node, node.id):
                    graph.add_edge(node.guard.node, node.id, kind="guard", arm=node.guard.arm)
            self._graph = graph
        return self._graph

    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self) -> Iterator[DagNode]:
        return iter(self.nodes.values())

    def __getitem__(self, node_id: str) -> DagNode:
        return self.nodes[node_id]

    def topological_order(self) -> list[DagNode]:
        """Nodes so that every node comes after its inputs and its guard (the creation order)."""
        return list(self.nodes.values())

    def guard_chain(self, node_id: str) -> list[GuardCond]:
        """Every condition under which a node runs, outermost first."""
        chain: list[GuardCond] = []
        guard = self.nodes[node_id].guard
        while guard is not None:
            chain.append(guard)
            guard = self.nodes[guard.node].guard
        chain.reverse()
        return chain

    def nodes_at_line(self, line: int, file: str | None = None) -> list[DagNode]:
        """The nodes whose source span starts on `line` (of `file`, when given): the rows of one source line."""
        return [
            n for n in self.nodes.values()
            if n.span.line == line and (file is None or n.span.file == file or n.module == file)
        ]

    def successors(self, node_id: str) -> list[str]:
        return list(self.graph.successors(node_id))

    def shape(self) -> dict[str, Any]:
        """Node ids, ops, guards and edges as plain data: what golden files compare."""
        return {
            "output": self.output,
            "nodes": [
                {
                    "id": n.id,
                    "op": n.op,
                    "line": n.span.line,
                    **({"guard": [n.guard.node, n.guard.arm]} if n.guard else {}),
                    **({"inputs": [[p.role, p.node] for p in n.inputs]} if n.inputs else {}),
                }
                for n in self.nodes.values()
            ],
        }

    def to_json(self) -> dict[str, Any]:
        """The whole DAG as JSON-ready data (for tools and the runtime's trace header)."""
        return {
            "entry": self.entry,
            "output": self.output,
            "inputs": self.inputs,
            "nodes": [n.model_dump(mode="json", exclude_defaults=True) for n in self.nodes.values()],
        }


def build_dag(checked: Any, **kwargs: Any) -> Dag:
    """Compile a checked program to its DAG (see `dag_build.build`)."""
    from ttcl.compiler.dag_build import build

    return build(checked, **kwargs)
