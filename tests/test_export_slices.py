"""Chained Slice nodes merged into one (rnon_engine.export.slices)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from rnon_engine.export.slices import merge_slices  # noqa: E402


class _Crops(torch.nn.Module):
    """Box crops as the box graphs write them: rows then columns, bounds from a tensor."""

    def forward(self, x: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
        a = x[..., box[0] : box[1], box[2] : box[3]]  # two Slices, mergeable
        b = x[..., box[0] + 1 : box[1] + 1, :]  # read twice below: must stay
        c = b[..., box[2] : box[3]] + b[..., box[2] + 1 : box[3] + 1]
        d = x[..., box[0] + 2 : box[1] + 2, :][..., 1:, :]  # the same axis twice: must stay
        return torch.cat([a.flatten(1), c.flatten(1), d.flatten(1)], dim=1)


def _export(tmp_path: Path) -> Path:
    path = tmp_path / "crops.onnx"
    x, box = torch.rand(2, 3, 20, 24), torch.tensor([3, 12, 4, 15])
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Crops(),
            (x, box),
            str(path),
            dynamo=False,
            input_names=["x", "box"],
            dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}},
            opset_version=17,
        )
    return path


def _slices(model) -> int:
    return sum(node.op_type == "Slice" for node in model.graph.node)


def _run(model, x: np.ndarray, box: np.ndarray) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x, "box": box})[0]


def test_merged_slices_give_the_same_outputs_for_any_box(tmp_path):
    original = onnx.load(str(_export(tmp_path)))
    merged = onnx.load(str(tmp_path / "crops.onnx"))
    assert merge_slices(merged) == 1  # a's pair
    onnx.checker.check_model(merged)
    assert _slices(merged) == _slices(original) - 1
    rng = np.random.default_rng(0)
    for _ in range(5):
        h, w = int(rng.integers(14, 40)), int(rng.integers(14, 40))
        y0, x0 = int(rng.integers(0, h - 8)), int(rng.integers(0, w - 8))
        box = np.array([y0, y0 + int(rng.integers(3, 8)), x0, x0 + int(rng.integers(3, 7))])
        x = rng.random((2, 3, h, w), dtype=np.float32)
        np.testing.assert_array_equal(_run(merged, x, box), _run(original, x, box))


def test_slices_read_twice_or_on_the_same_axis_are_kept(tmp_path):
    model = onnx.load(str(_export(tmp_path)))
    merge_slices(model)
    producer = {out: node for node in model.graph.node for out in node.output}
    readers: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    chained = [
        node
        for node in model.graph.node
        if node.op_type == "Slice"
        and producer.get(node.input[0]) is not None
        and producer[node.input[0]].op_type == "Slice"
    ]
    # What is left chained is b (read by two slices) and d's repeated row axis.
    assert chained
    for node in chained:
        first = producer[node.input[0]]
        twice = readers[first.output[0]] > 1
        first_axes = set(np.atleast_1d(_constant(model, first.input[3])).tolist())
        same_axis = bool(first_axes & set(np.atleast_1d(_constant(model, node.input[3])).tolist()))
        assert twice or same_axis
    assert merge_slices(model) == 0  # nothing left to merge


def _constant(model, name: str) -> np.ndarray:
    from onnx import numpy_helper

    for t in model.graph.initializer:
        if t.name == name:
            return numpy_helper.to_array(t)
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            return numpy_helper.to_array(node.attribute[0].t)
    raise KeyError(name)


def test_exported_box_graphs_have_no_chained_slices_left(tmp_path):
    from rnon_engine import create_model
    from rnon_engine.export.onnx_export import export_graphs

    repair = create_model("rnon-repair", width=0.125, depth=4, prefill="pushpull").eval()
    optimize = create_model("rnon-optimize", width=0.25, blocks=1, guide="biharmonic").eval()
    paths = export_graphs(repair, optimize, tmp_path)
    for role in ("repair_box", "optimize_box"):
        model = onnx.load(str(paths[role]))
        assert merge_slices(model) == 0, role
