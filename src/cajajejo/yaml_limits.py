"""Limits on the shape of YAML that users hand us: no aliases, bounded nesting.

An alias (`*name`) repeats an anchored node; nested aliases multiply: a 256-byte file of seven levels
expands to gigabytes when constructed. Job configs and rendered job specs never need aliases, and
none is more than a few levels deep, so both are refused on the composed node tree, before anything
is constructed, in constant memory and without recursion.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

MAX_DEPTH = 32


@dataclass(frozen=True)
class ShapeProblem:
    message: str
    line: int


def shape_problem(root: yaml.Node) -> ShapeProblem | None:
    """The first alias or too-deep collection under `root`, or None when its shape is acceptable."""
    seen: set[int] = set()  # the composer hands an alias back as the anchored node object itself
    stack: list[tuple[yaml.Node, int]] = [(root, 0)]
    while stack:
        node, depth = stack.pop()
        line = node.start_mark.line + 1
        if id(node) in seen:
            return ShapeProblem(
                "this anchor (&name) is used again through an alias (*name); aliases are not supported, "
                "write the value out",
                line,
            )
        seen.add(id(node))
        if isinstance(node, yaml.CollectionNode) and depth >= MAX_DEPTH:
            return ShapeProblem(f"nested more than {MAX_DEPTH} levels deep; no job config or spec is", line)
        if isinstance(node, yaml.MappingNode):
            stack.extend((child, depth + 1) for pair in node.value for child in pair)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((child, depth + 1) for child in node.value)
    return None
