"""Draw a compiled DAG as Graphviz DOT or Mermaid, each node labelled with its op, line and cost bound.

Guard nodes are diamonds and their arms are dashed edges labelled T / F, so
the branches and the unrolled loop exits stand out from the data flow.
PNG goes through the `dot` binary when Graphviz is installed.
"""

from __future__ import annotations

import shutil
import subprocess

from ttcl.compiler.budget_report import BudgetReport
from ttcl.compiler.dag import Dag, DagNode
from ttcl.errors import TtclError


class RenderError(TtclError):
    """The graph cannot be drawn in the requested format here (no Graphviz)."""


def human(x: float) -> str:
    """Compact numbers for labels and tables: 950, 8.2k, 1.1e+10."""
    if x == int(x) and abs(x) < 10_000:
        return str(int(x))
    if abs(x) < 1e6:
        return f"{x / 1e3:.1f}k"
    return f"{x:.2g}" if abs(x) >= 1e9 else f"{x / 1e6:.1f}M"


def node_label(node: DagNode, report: BudgetReport | None) -> str:
    """`sample L6` then, for nodes that spend, `calls≤4 tok≤519 flops≤1.1e+10`."""
    where = f"L{node.span.line}"
    if report is not None and node.span.file != report.file:  # an imported strategy's node: its own file's line
        where = f"{node.span.file.rsplit('/', 1)[-1]}:L{node.span.line}"
    head = f"{node.op} {where}"
    if node.var:
        head = f"{node.var} = {head}"
    row = report.row(node.id) if report is not None else None
    if row is None:
        return head
    b = row.bound
    return f"{head}\\ncalls≤{human(b['calls'])} tok≤{human(b['tokens'])} flops≤{human(b['flops'])}"


def _esc_dot(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\\\\n", "\\n")


def to_dot(dag: Dag, report: BudgetReport | None = None) -> str:
    lines = [f'digraph "{_esc_dot(dag.entry)}" {{', "  rankdir=TB;", '  node [shape=box, fontname="Helvetica", fontsize=10];']
    for node in dag.topological_order():
        attrs = [f'label="{_esc_dot(node_label(node, report))}"']
        if node.op == "guard":
            attrs.append("shape=diamond, style=filled, fillcolor=lightyellow")
        elif node.op == "phi":
            attrs.append("shape=ellipse, style=dashed")
        elif report is not None and report.row(node.id) is not None:
            attrs.append("style=filled, fillcolor=lightblue")
        lines.append(f'  "{_esc_dot(node.id)}" [{", ".join(attrs)}];')
    for src, dst, data in dag.graph.edges(data=True):
        if data.get("kind") == "guard":
            arm = "T" if data.get("arm") else "F"
            lines.append(f'  "{_esc_dot(src)}" -> "{_esc_dot(dst)}" [style=dashed, color=orange, label="{arm}"];')
        else:
            lines.append(f'  "{_esc_dot(src)}" -> "{_esc_dot(dst)}";')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _esc_mermaid(text: str) -> str:
    return text.replace('"', "#quot;").replace("\\n", "<br/>")


def to_mermaid(dag: Dag, report: BudgetReport | None = None) -> str:
    ids = {node.id: f"n{i}" for i, node in enumerate(dag.topological_order())}
    lines = ["flowchart TD"]
    for node in dag.topological_order():
        label = _esc_mermaid(f"{node.id}\\n{node_label(node, report)}")
        if node.op == "guard":
            lines.append(f'  {ids[node.id]}{{"{label}"}}')
        elif node.op == "phi":
            lines.append(f'  {ids[node.id]}(["{label}"])')
        else:
            lines.append(f'  {ids[node.id]}["{label}"]')
    for src, dst, data in dag.graph.edges(data=True):
        if data.get("kind") == "guard":
            arm = "T" if data.get("arm") else "F"
            lines.append(f"  {ids[src]} -.->|{arm}| {ids[dst]}")
        else:
            lines.append(f"  {ids[src]} --> {ids[dst]}")
    guards = [ids[n.id] for n in dag.topological_order() if n.op == "guard"]
    if guards:
        lines.append("  classDef guard fill:#ffffe0,stroke:#d90;")
        lines.append(f"  class {','.join(guards)} guard;")
    return "\n".join(lines) + "\n"


def dot_available() -> bool:
    return shutil.which("dot") is not None


def to_png(dot_source: str) -> bytes:
    """Run Graphviz on DOT text; RenderError when `dot` is missing or fails."""
    exe = shutil.which("dot")
    if exe is None:
        raise RenderError(
            "cannot write PNG: the Graphviz `dot` program is not installed "
            "(install graphviz, e.g. `apt-get install graphviz`, or use --format dot / mermaid)"
        )
    try:
        done = subprocess.run([exe, "-Tpng"], input=dot_source.encode(), capture_output=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RenderError(f"Graphviz `dot` failed: {e}") from e
    if done.returncode != 0:
        raise RenderError(f"Graphviz `dot` failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout
