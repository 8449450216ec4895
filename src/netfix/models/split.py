"""A model cut in two by tracing: a frozen body (``prefix``) computed once per input, and the tail that an edit or
a fine-tune changes (:class:`FrozenSplit`). Edits, Editable Training, edit measurements and the mixed-linear method
share it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .._runtime import eval_mode

__all__ = ["FrozenSplit"]


class FrozenSplit:
    """``model`` cut where the edited parameters start: ``model(x) == tail(*prefix(x))``, where ``prefix`` holds no
    edited parameter. An edit only changes the tail, so the prefix's outputs are computed once per input and reused
    by every editor step and every evaluation of an edited model — for netfix's ResNet edited at ``layer3``, most of
    the network's cost is paid once instead of at every step.

    Built by tracing the model with ``torch.fx``: a node is in the tail when it calls an edited module (or reads an
    edited parameter) or uses a tail node's output; the prefix outputs every other node the tail reads. The cut is
    checked on ``example`` inputs (eval mode) and, when the model can't be traced or the check fails, the split is
    the whole model (``prefix`` the identity): always correct, only slower. The tail shares the model's modules, so
    it sees the model's parameters and ``functional_call`` with the model's parameter names works on it.
    """

    def __init__(self, model: nn.Module, names: "Sequence[str]", example: torch.Tensor) -> None:
        self.model, self.exact = model, False
        self.prefix: Any = None
        self.tail: nn.Module = model
        try:
            self._trace(model, set(names))
        except Exception:  # untraceable (data-dependent control flow, ...): the whole model is the tail
            self.prefix, self.tail = None, model
            return
        with eval_mode(model), torch.no_grad():
            want = model(example)
            got = self.tail(*self.features(example))
        if got.shape != want.shape or not torch.allclose(got, want, rtol=1e-4, atol=1e-5):
            self.prefix, self.tail = None, model
        else:
            self.exact = True

    def _trace(self, model: nn.Module, names: set[str]) -> None:
        import torch.fx as fx

        gm = fx.symbolic_trace(model)
        owners = {n.rsplit(".", 1)[0] for n in names}

        def edited_module(target: str) -> bool:
            return any(target == o or o.startswith(target + ".") or target.startswith(o + ".") for o in owners)

        tail_nodes: set[fx.Node] = set()
        for node in gm.graph.nodes:
            if node.op == "call_module" and edited_module(node.target) or node.op == "get_attr" and \
                    node.target in names or node.op not in ("placeholder", "output", "get_attr") and \
                    any(a in tail_nodes for a in node.all_input_nodes):
                tail_nodes.add(node)
        output = next(n for n in gm.graph.nodes if n.op == "output")
        if not any(a in tail_nodes for a in output.all_input_nodes):
            raise ValueError("the output does not depend on the edited parameters")
        boundary: list[fx.Node] = []
        for node in list(tail_nodes) + [output]:
            for a in node.all_input_nodes:
                if a not in tail_nodes and a.op != "get_attr" and a not in boundary:
                    boundary.append(a)
        order = {n: i for i, n in enumerate(gm.graph.nodes)}
        boundary.sort(key=order.__getitem__)
        tail_graph, env = fx.Graph(), {}
        for b in boundary:
            env[b] = tail_graph.placeholder(f"cut_{b.name}")
        for node in gm.graph.nodes:
            if node in tail_nodes or node is output:
                for a in node.all_input_nodes:
                    if a not in env:  # an untouched attribute (a frozen constant) the tail reads
                        env[a] = tail_graph.node_copy(a, env.__getitem__)
                env[node] = tail_graph.node_copy(node, env.__getitem__)
        needed: set[fx.Node] = set()
        stack = list(boundary)
        while stack:
            node = stack.pop()
            if node not in needed:
                needed.add(node)
                stack.extend(node.all_input_nodes)
        prefix_graph = fx.Graph()
        penv: dict[Any, Any] = {}
        for node in gm.graph.nodes:
            if node in needed or node.op == "placeholder":
                penv[node] = prefix_graph.node_copy(node, penv.__getitem__)
        prefix_graph.output(tuple(penv[b] for b in boundary))
        self.prefix = fx.GraphModule(gm, prefix_graph)
        self.tail = fx.GraphModule(gm, tail_graph)

    def features(self, X: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The tail's inputs for ``X`` (the prefix's outputs; ``(X,)`` when the split is the whole model)."""
        if self.prefix is None:
            return (X,)
        out = self.prefix(X)
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)

    def batched_features(self, X: torch.Tensor, batch_size: int = 512) -> tuple[torch.Tensor, ...]:
        """:meth:`features` for a large set, in batches, without gradients (eval mode is the caller's)."""
        with torch.no_grad():
            parts = [self.features(X[i:i + batch_size]) for i in range(0, len(X), batch_size)]
        return tuple(torch.cat(p) for p in zip(*parts)) if parts else (X[:0],)
