"""An object's neighbourhood of referrers as a graphviz DOT document.

``dot_lines(nodes, edges, target)`` renders what
``pymemtrace.objects.show_backrefs`` gathered: ``nodes`` maps a node id
to its label (a description such as ``dict`` or ``module app``, and a
short repr), ``edges`` are ``(referrer id, referent id, label)``.  The
target is drawn filled; roots (modules, frames, objects only C code
holds) are drawn as boxes.
"""

from __future__ import annotations


def _quote(text: str) -> str:
    text = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


def dot_lines(nodes: dict, edges: list, target, roots=()) -> list:
    """The lines of a DOT digraph, referrers pointing at what they hold."""
    lines = ["digraph backrefs {", "  rankdir=BT;",
             '  node [shape=ellipse, fontname="Helvetica", fontsize=10];',
             '  edge [fontname="Helvetica", fontsize=9];']
    roots = set(roots)
    # DOT names by order, not by the keys (addresses, tuples)
    names = {node: f"n{i}" for i, node in enumerate(nodes)}
    for node, label in nodes.items():
        attrs = [f"label={_quote(label)}"]
        if node == target:
            attrs.append('style=filled, fillcolor="#f4b183"')
        elif node in roots:
            attrs.append('shape=box, style=filled, fillcolor="#c5e0b4"')
        lines.append(f"  {names[node]} [{', '.join(attrs)}];")
    for src, dst, label in edges:
        attr = f" [label={_quote(label)}]" if label else ""
        lines.append(f"  {names[src]} -> {names[dst]}{attr};")
    lines.append("}")
    return lines
