"""Merging chained ``Slice`` nodes of an exported graph into one.

The tracer writes ``x[..., r0:r1, c0:c1]`` as two ``Slice`` nodes, one per axis, and ONNX
Runtime runs them as two copies, the first of a tensor as wide as the input. The box
graphs cut windows out of full-resolution levels this way at every layer (the slice is
dynamic: its bounds are computed from the holes' box), so that intermediate copy is a
large part of what they spend outside the convolutions. One ``Slice`` over both axes
computes the same tensor with one copy. Only the bounds' lists are joined (``Concat``):
the values are untouched, the outputs identical (``tests/test_export_slices.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnx

__all__ = ["merge_slices"]


def _constant_tensors(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    """The graph's initializers and ``Constant`` nodes' tensors, by output name."""
    tensors = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            tensors[node.output[0]] = node.attribute[0].t
    return tensors


def _int64_names(model: onnx.ModelProto, tensors: dict[str, onnx.TensorProto]) -> set[str]:
    """Names of the graph's int64 tensors: by shape inference, and the constant ``tensors``."""
    import onnx

    graph = onnx.shape_inference.infer_shapes(model).graph
    infos = [*graph.value_info, *graph.input, *graph.output]
    names = {v.name for v in infos if v.type.tensor_type.elem_type == onnx.TensorProto.INT64}
    return names | {k for k, t in tensors.items() if t.data_type == onnx.TensorProto.INT64}


def merge_slices(model: onnx.ModelProto) -> int:
    """Merge every ``Slice`` that only feeds another ``Slice`` on other axes into it.

    Both nodes need constant ``axes`` (no repeated axis) and no ``steps`` other than 1,
    and int64 bounds; the pair becomes one ``Slice`` whose bounds are the two lists joined.
    Chains of more than two merge pairwise. The model is changed in place.

    Returns:
        How many ``Slice`` nodes were removed.
    """
    import numpy as np
    from onnx import helper, numpy_helper

    graph = model.graph
    tensors = _constant_tensors(graph)  # read as arrays only where a Slice asks
    int64 = _int64_names(model, tensors)

    def const(name: str) -> np.ndarray | None:
        return numpy_helper.to_array(tensors[name]) if name in tensors else None

    merged = 0
    while True:
        producer = {out: node for node in graph.node for out in node.output}
        readers: dict[str, int] = {}
        for node in graph.node:
            for name in node.input:
                readers[name] = readers.get(name, 0) + 1
        outputs = {o.name for o in graph.output}
        pair = None
        for node in graph.node:
            first = producer.get(node.input[0]) if node.op_type == "Slice" else None
            if first is None or first.op_type != "Slice":
                continue
            if readers.get(first.output[0]) != 1 or first.output[0] in outputs:
                continue
            if any(len(n.input) < 4 or n.input[3] not in tensors for n in (first, node)):
                continue
            if any(
                len(n.input) > 4 and n.input[4] and not np.all(const(n.input[4]) == 1)
                for n in (first, node)
            ):
                continue
            if not all(n.input[i] in int64 for n in (first, node) for i in (1, 2)):
                continue
            axes = [int(a) for n in (first, node) for a in np.atleast_1d(const(n.input[3]))]
            if len(set(axes)) != len(axes) or min(axes) < 0:
                continue
            pair = first, node, axes
            break
        if pair is None:
            return merged
        first, second, axes = pair
        tag = second.output[0]
        axes_name = f"{tag}__merged_axes"
        graph.initializer.append(numpy_helper.from_array(np.array(axes, np.int64), axes_name))
        tensors[axes_name] = graph.initializer[-1]
        new_nodes = [
            helper.make_node(
                "Concat", [first.input[i], second.input[i]], [f"{tag}__merged_{what}"], axis=0
            )
            for i, what in ((1, "starts"), (2, "ends"))
        ]
        int64.update(n.output[0] for n in new_nodes)
        new_nodes.append(
            helper.make_node(
                "Slice",
                [first.input[0], new_nodes[0].output[0], new_nodes[1].output[0], axes_name],
                list(second.output),
                name=second.name,
            )
        )
        nodes = list(graph.node)
        at = nodes.index(second)
        nodes[at : at + 1] = new_nodes
        nodes.remove(first)
        del graph.node[:]
        graph.node.extend(nodes)
        merged += 1
