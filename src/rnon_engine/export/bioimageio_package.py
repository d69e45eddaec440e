"""Write a bioimage.io model package (spec 0.5, ``bioimageio.spec``) of an RNON model.

The package (a ``.zip``, what bioimage.io, deepImageJ, ilastik and QuPath load) holds:

- ``rnon.onnx`` and its TorchScript twin ``rnon.pt``: both stages in one graph
  (:class:`~rnon_engine.export.graphs.PipelineGraph`),
  dynamic batch, height and width; inputs ``image`` ``[b,c=3,y,x]`` and ``mask``
  ``[b,c=1,y,x]`` (nonzero = repair), output ``output`` ``[b,c=3,y,x]``.
- Pre-processing of ``image``: ``scale_range`` with the engine's percentiles
  (:data:`rnon_engine.inference.intensity.PERCENTILES`, 0.1 and 99.9, per sample over
  ``c, y, x``, so RGB channels share one scale) and ``clip`` to [0, 1]: the engine's
  mapping, except that the percentiles are taken over all pixels (the format cannot
  restrict them to the known ones) and uint8 images are scaled by their percentiles too
  rather than by 255. ``mask``: ``ensure_dtype`` float32.
- The output stays in [0, 1] (the scaled input's units): bioimage.io post-processing has no
  inverse of a per-sample percentile scaling. Outside the mask the output is the scaled
  input.
- Test tensors (a 128×128 crop of a scikit-image photograph with a stroke-and-dust mask,
  the expected output computed with ONNX Runtime), a cover image, the model card
  (``docs/model_card.md``) as documentation, citations and the licence.

``bioimageio.core.test_model`` passes on the written package (``tests/test_export.py``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from rnon_engine.errors import InputError
from rnon_engine.inference.intensity import PERCENTILES

__all__ = ["RNON_CITATION", "RNON_DOI", "PCONV_DOI", "export_bioimageio", "test_inputs"]

RNON_CITATION = (
    "Chen Y, Xia R, Zou K, Yang K (2023) RNON: image inpainting via repair network and "
    "optimization network. Int J Mach Learn Cybern"
)
RNON_DOI = "10.1007/s13042-023-01811-y"
PCONV_DOI = "10.1007/978-3-030-01252-6_6"
_SIZE = 128
_EPS = 1e-6  # scale_range's default eps


def test_inputs(size: int = _SIZE) -> tuple[np.ndarray, np.ndarray]:
    """The package's test inputs: an RGB photograph crop and a stroke + dust mask.

    Returns:
        ``image`` ``[1,3,size,size]`` float32 (0-255 values) and ``mask``
        ``[1,1,size,size]`` float32 (1 = repair).
    """
    from skimage import data, draw

    photo = data.astronaut()[40 : 40 + 2 * size : 2, 140 : 140 + 2 * size : 2]
    image = np.ascontiguousarray(photo.transpose(2, 0, 1)[None], dtype=np.float32)
    mask = np.zeros((size, size), np.float32)
    rr, cc = draw.line(10, 5, size - 20, size - 10)
    for d in range(-2, 3):
        mask[np.clip(rr + d, 0, size - 1), cc] = 1
    rng = np.random.default_rng(0)
    for y, x in rng.integers(4, size - 4, size=(12, 2)):
        mask[y - 1 : y + 2, x - 1 : x + 2] = 1
    mask[70:90, 20:45] = 1
    return image, mask[None, None]


def _preprocess(image: np.ndarray) -> np.ndarray:
    """``scale_range`` (per sample over c, y, x) and ``clip``, as the package declares."""
    lo = np.percentile(image, PERCENTILES[0], axis=(1, 2, 3), keepdims=True)
    hi = np.percentile(image, PERCENTILES[1], axis=(1, 2, 3), keepdims=True)
    return np.clip((image - lo) / (hi - lo + _EPS), 0.0, 1.0).astype(np.float32)


def _cover(image: np.ndarray, mask: np.ndarray, output: np.ndarray, path: Path) -> None:
    """A 2:1 cover: the damaged input (holes in magenta) beside the repaired output."""
    import imageio.v3 as iio

    x = _preprocess(image)[0].transpose(1, 2, 0)
    holes = mask[0, 0] != 0
    damaged = x.copy()
    damaged[holes] = (1.0, 0.0, 1.0)
    panel = np.concatenate([damaged, output[0].transpose(1, 2, 0)], axis=1)
    big = np.repeat(np.repeat(panel, 2, axis=0), 2, axis=1)
    iio.imwrite(path, (np.clip(big, 0, 1) * 255 + 0.5).astype(np.uint8))


def export_bioimageio(
    weights: str | os.PathLike = "default",
    out: str | os.PathLike = "export",
    *,
    stage2: str | os.PathLike | None = None,
    name: str = "RNON inpainting",
    model_card: str | os.PathLike | None = None,
) -> Path:
    """Export a model (``"default"`` or a repair ``.safetensors``) as a bioimage.io package.

    Args:
        weights: ``"default"`` or the path of a repair-generator weights file.
        out: A folder (the package is written into it as ``rnon-inpainting.zip``) or a
            ``.zip`` path.
        stage2: Explicit optimize-generator file.
        name: The model's name in the package.
        model_card: Markdown documentation (default: the repository's
            ``docs/model_card.md`` if present, else a short generated card).

    Returns:
        The path of the ``.zip`` package.

    Raises:
        InputError: ``bioimageio.spec`` is missing, or the model cannot be exported.
        WeightsError: A weights file is missing, corrupt or foreign.
    """
    try:
        from bioimageio.spec import save_bioimageio_package
        from bioimageio.spec.model import v0_5 as spec
    except ImportError:
        raise InputError(
            "writing a bioimage.io package needs bioimageio.spec: pip install "
            "'napari-rnon[bioimageio]'"
        ) from None
    import onnxruntime as ort
    import torch

    torch_version = torch.__version__.split("+")[0]

    from rnon_engine import __version__
    from rnon_engine.export.onnx_export import (
        FILES,
        OPSET,
        export_graphs,
        export_torchscript,
        load_generators,
    )

    out = Path(out)
    zip_path = out if out.suffix == ".zip" else out / "rnon-inpainting.zip"
    with tempfile.TemporaryDirectory(prefix="rnon-bioimageio-") as tmp_name:
        tmp = Path(tmp_name)
        repair, optimize, source = load_generators(weights, stage2)
        paths = export_graphs(repair, optimize, tmp / "onnx", metadata=source, pipeline_only=True)
        onnx_file = tmp / FILES["pipeline"]
        shutil.move(paths["pipeline"], onnx_file)
        ts_file = export_torchscript(repair, optimize, tmp / "rnon.pt")
        sess = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
        meta = {k: v for k, v in sess.get_modelmeta().custom_metadata_map.items()}
        stages = json.loads(meta.get("stages", '["repair"]'))

        image, mask = test_inputs()
        output = sess.run(None, {"image": _preprocess(image), "mask": mask})[0]
        files = {"image": tmp / "test_image.npy", "mask": tmp / "test_mask.npy"}
        files["output"] = tmp / "test_output.npy"
        np.save(files["image"], image)
        np.save(files["mask"], mask)
        np.save(files["output"], output)
        cover = tmp / "cover.png"
        _cover(image, mask, output, cover)
        card = tmp / "README.md"
        _write_card(card, model_card, meta, stages)

        yx = [
            spec.SpaceInputAxis(id=spec.AxisId(a), size=spec.ParameterizedSize(min=16, step=16))
            for a in ("y", "x")
        ]
        ref = [
            spec.SpaceInputAxis(
                id=spec.AxisId(a), size=spec.SizeReference(tensor_id="image", axis_id=a)
            )
            for a in ("y", "x")
        ]
        out_yx = [
            spec.SpaceOutputAxis(
                id=spec.AxisId(a), size=spec.SizeReference(tensor_id="image", axis_id=a)
            )
            for a in ("y", "x")
        ]
        rgb = spec.ChannelAxis(channel_names=[spec.Identifier(c) for c in ("R", "G", "B")])
        inputs = [
            spec.InputTensorDescr(
                id=spec.TensorId("image"),
                description="RGB image (any range; grayscale: repeat it in 3 channels)",
                axes=[spec.BatchAxis(), rgb, *yx],
                test_tensor=spec.FileDescr(source=files["image"]),
                data=spec.IntervalOrRatioDataDescr(type="float32"),
                preprocessing=[
                    spec.ScaleRangeDescr(
                        kwargs=spec.ScaleRangeKwargs(
                            axes=[spec.AxisId("channel"), spec.AxisId("y"), spec.AxisId("x")],
                            min_percentile=PERCENTILES[0],
                            max_percentile=PERCENTILES[1],
                            eps=_EPS,
                        )
                    ),
                    spec.ClipDescr(kwargs=spec.ClipKwargs(min=0.0, max=1.0)),
                ],
            ),
            spec.InputTensorDescr(
                id=spec.TensorId("mask"),
                description="pixels to repair: nonzero = repair, 0 = keep",
                axes=[
                    spec.BatchAxis(),
                    spec.ChannelAxis(channel_names=[spec.Identifier("mask")]),
                    *ref,
                ],
                test_tensor=spec.FileDescr(source=files["mask"]),
                data=spec.IntervalOrRatioDataDescr(type="float32"),
                preprocessing=[
                    spec.EnsureDtypeDescr(kwargs=spec.EnsureDtypeKwargs(dtype="float32"))
                ],
            ),
        ]
        outputs = [
            spec.OutputTensorDescr(
                id=spec.TensorId("output"),
                description="the repaired image in [0, 1] (the scaled input outside the mask)",
                axes=[spec.BatchAxis(), rgb, *out_yx],
                test_tensor=spec.FileDescr(source=files["output"]),
                data=spec.IntervalOrRatioDataDescr(type="float32"),
            )
        ]
        descr = spec.ModelDescr(
            name=name,
            description=(
                "Learned image inpainting (RNON: partial-convolution U-Net repair network"
                + (" + dilated residual optimization network" if "optimize" in stages else "")
                + ") from napari-rnon: fills the pixels a mask marks, keeps all others."
            ),
            covers=[spec.FileDescr(source=cover)],
            authors=[spec.Author(name="napari-rnon developers")],
            cite=[
                spec.CiteEntry(text=RNON_CITATION, doi=spec.Doi(RNON_DOI)),
                spec.CiteEntry(
                    text="Liu G et al. (2018) Image inpainting for irregular holes using "
                    "partial convolutions. ECCV",
                    doi=spec.Doi(PCONV_DOI),
                ),
            ],
            license=spec.LicenseId("BSD-3-Clause"),
            documentation=spec.FileDescr(source=card),
            tags=["inpainting", "restoration", "2d", "rgb", "onnx", "napari", "rnon"],
            inputs=inputs,
            outputs=outputs,
            weights=spec.WeightsDescr(
                onnx=spec.OnnxWeightsDescr(source=onnx_file, opset_version=OPSET),
                torchscript=spec.TorchscriptWeightsDescr(
                    source=ts_file,
                    pytorch_version=spec.Version(torch_version),
                    parent="onnx",  # the spec wants one root entry; both are traced alike
                    comment="traced from the same torch module as the ONNX weights",
                ),
            ),
            version=__version__.split(".dev")[0],
            config={"napari-rnon": {k: v for k, v in meta.items() if k != "description"}},
        )
        zip_path.parent.mkdir(parents=True, exist_ok=True)
        save_bioimageio_package(descr, output_path=zip_path)
    return zip_path


def _write_card(
    path: Path, model_card: str | os.PathLike | None, meta: dict[str, Any], stages: list[str]
) -> None:
    """The package's documentation: the model card, headed by how to run the package."""
    if model_card is None:
        repo_card = Path(__file__).resolve().parents[3] / "docs" / "model_card.md"
        model_card = repo_card if repo_card.is_file() else None
    head = (
        "# RNON inpainting (napari-rnon)\n\n"
        "Inputs: `image` (RGB, any range; scaled per image to its 0.1-99.9 percentiles and "
        "clipped to [0, 1]) and `mask` (nonzero = repair). Output: the repaired image in "
        f"[0, 1]. Stages: {', '.join(stages)}. Source weights: {meta.get('source', '?')}.\n\n"
        "Pixels outside the mask are the scaled input. In Python, `napari-rnon` runs the same "
        "model with the exact intensity mapping and tiling (`docs/export.md`).\n\n"
    )
    body = Path(model_card).read_text(encoding="utf-8") if model_card else ""
    path.write_text(head + body, encoding="utf-8")
