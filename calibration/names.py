"""Fresh tensor / node names for graph rewrites (Q/DQ insertion, FP16 casts) that never collide with a
name the graph already uses."""

from __future__ import annotations

import onnx

__all__ = ["UniqueNames"]


class UniqueNames:
    """``names("x_q")`` -> "x_q", then "x_q_2", ...: skips every initializer, node, input and output name."""

    def __init__(self, graph: onnx.GraphProto):
        self.used = {t.name for t in graph.initializer} | {n.name for n in graph.node}
        for n in graph.node:
            self.used.update(n.input)
            self.used.update(n.output)
        self.used.update(v.name for v in graph.input)
        self.used.update(v.name for v in graph.output)

    def __call__(self, base: str) -> str:
        name, k = base, 1
        while name in self.used:
            k += 1
            name = f"{base}_{k}"
        self.used.add(name)
        return name
