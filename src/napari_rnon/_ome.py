"""OME-Zarr for the plugin: open a stack with its repair mask, save the mask, run it in batch.

The workflow this module serves (see docs/batch.md, "Workflow: napari → rnon-batch"):

1. napari opens ``stack.zarr`` with this plugin's reader: the image is read lazily (dask
   over the zarr levels, with the axes, scale and translation of the OME metadata) and an
   existing label image ``stack.zarr/labels/repair`` becomes the repair-mask Labels layer.
2. The user paints the mask; the Inpaint widget's "Save mask to OME-Zarr" writes it back
   as the OME-NGFF label image ``labels/repair`` (ome-zarr's ``write_labels``, in the
   image's own NGFF version and zarr format), asking before it replaces one. Nothing else
   inside the image is ever written.
3. The widget shows the ``rnon-batch`` command that repairs the whole stack with the same
   model and settings (``rnon-batch stack.zarr``: the batch reads ``labels/repair`` when no
   ``--mask`` is given), with a Copy button.

Reading and writing need only zarr, dask, numpy and ome-zarr; the widget part
(:class:`BatchSection`, magicgui) builds Qt widgets only when the Inpaint widget opens.
"""

from __future__ import annotations

import shlex
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import Container, Label, LineEdit, PushButton

from napari_rnon._layers import MASK_COLOR, MASK_FOR_KEY
from napari_rnon._planes import UserError
from rnon_engine.inference.classical import CLASSICAL_METHODS as CLASSICAL

if TYPE_CHECKING:
    from napari.layers import Image, Labels

    from napari_rnon._widget import EngineSettings, InpaintWidget

__all__ = [
    "OME_KEY",
    "REPAIR_LABEL",
    "OmeImage",
    "open_ome_image",
    "find_ome_root",
    "read_repair_label",
    "save_repair_label",
    "batch_command",
    "BatchSection",
    "napari_get_reader",
    "read_ome_zarr",
]

OME_KEY = "rnon_ome"
"""Layer metadata key: ``{"path": <OME-Zarr image root>, ...}`` on layers read from OME-Zarr."""
REPAIR_LABEL = "repair"
"""Name of the label image that holds the repair mask: ``<image>/labels/repair``."""
BATCH_DEFAULT_TILE = 512  # rnon-batch's --tile default
BATCH_DEFAULT_DEVICE = "auto"


@dataclass(frozen=True)
class OmeImage:
    """An OME-Zarr image group (NGFF 0.4 on zarr v2, or 0.5 on zarr v3).

    Attributes:
        path: The image group's directory.
        name: A display name (the directory name without ``.ome.zarr`` / ``.zarr``).
        version: NGFF version (``"0.4"``, ``"0.5"``).
        zarr_format: 2 or 3.
        axes: The ``multiscales.axes`` entries (dicts with ``name``, maybe ``type``/``unit``).
        datasets: Level paths, full resolution first.
        shape: Shape of the full-resolution level.
        chunks: Chunks of the full-resolution level.
        scale: Level-0 scale per axis (1.0 when absent).
        translation: Level-0 translation per axis (0.0 when absent).
        omero: The ``omero`` rendering metadata, if any.
    """

    path: Path
    name: str
    version: str
    zarr_format: int
    axes: tuple[dict[str, Any], ...]
    datasets: tuple[str, ...]
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    scale: tuple[float, ...]
    translation: tuple[float, ...]
    omero: dict[str, Any] | None = None

    @property
    def axis_names(self) -> tuple[str, ...]:
        """Lower-case axis names, e.g. ``("z", "y", "x")``."""
        return tuple(str(a.get("name", "")).lower() for a in self.axes)

    @property
    def channel_axis(self) -> int | None:
        """Index of the channel axis (``c`` or type ``channel``), if any."""
        for i, a in enumerate(self.axes):
            if str(a.get("name", "")).lower() == "c" or a.get("type") == "channel":
                return i
        return None

    @property
    def label_path(self) -> Path:
        """Where the repair mask lives: ``<image>/labels/repair``."""
        return self.path / "labels" / REPAIR_LABEL

    @property
    def has_repair_label(self) -> bool:
        """True when ``labels/repair`` exists."""
        return self.label_path.is_dir()


def _multiscales(attrs: dict[str, Any]) -> tuple[str | None, list[dict[str, Any]] | None]:
    """NGFF version and ``multiscales`` of a group's attributes (0.5: under ``"ome"``)."""
    ome = attrs.get("ome")
    if isinstance(ome, dict) and ome.get("multiscales"):
        return ome.get("version"), ome["multiscales"]
    ms = attrs.get("multiscales")
    if ms:
        return ms[0].get("version"), ms
    return None, None


def _level0_transform(ms: dict[str, Any], ndim: int) -> tuple[tuple[float, ...], ...]:
    scale, translation = [1.0] * ndim, [0.0] * ndim
    for t in ms["datasets"][0].get("coordinateTransformations", []) or []:
        if t.get("type") == "scale" and len(t.get("scale", [])) == ndim:
            scale = [float(v) for v in t["scale"]]
        elif t.get("type") == "translation" and len(t.get("translation", [])) == ndim:
            translation = [float(v) for v in t["translation"]]
    return tuple(scale), tuple(translation)


def _display_name(path: Path) -> str:
    name = path.name
    for suffix in (".ome.zarr", ".zarr"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or name
    return name


def open_ome_image(path: str | Path) -> OmeImage | None:
    """Describe the OME-Zarr image group at ``path``, or None when it is not one.

    Plates, wells, label images and plain zarr arrays are not images here (None).
    """
    import zarr

    p = Path(path).expanduser()
    if not p.is_dir():
        return None
    try:
        group = zarr.open_group(str(p), mode="r")
    except Exception:
        return None
    attrs = dict(group.attrs)
    version, ms = _multiscales(attrs)
    if not ms or "image-label" in attrs.get("ome", attrs):
        return None
    m0 = ms[0]
    try:
        datasets = tuple(str(d["path"]) for d in m0["datasets"])
        arr = group[datasets[0]]
    except Exception:
        return None
    shape = tuple(int(s) for s in arr.shape)
    axes_meta = m0.get("axes") or []
    if axes_meta and isinstance(axes_meta[0], str):  # NGFF 0.3: a list of names
        axes_meta = [{"name": a} for a in axes_meta]
    if len(axes_meta) != len(shape):
        axes_meta = [{"name": n} for n in "tczyx"[-len(shape) :]] if len(shape) <= 5 else []
    scale, translation = _level0_transform(m0, len(shape))
    return OmeImage(
        path=p.resolve(),
        name=_display_name(p.resolve()),
        version=str(version or "0.4"),
        zarr_format=int(arr.metadata.zarr_format),
        axes=tuple(dict(a) for a in axes_meta),
        datasets=datasets,
        shape=shape,
        chunks=tuple(int(c) for c in arr.chunks),
        scale=scale,
        translation=translation,
        omero=attrs.get("ome", attrs).get("omero"),
    )


def find_ome_root(path: str | Path | None) -> OmeImage | None:
    """The OME-Zarr image at ``path`` or at one of its two parents (``stack.zarr/s0``)."""
    if not path:
        return None
    p = Path(str(path).rstrip("/\\")).expanduser()
    for candidate in (p, p.parent, p.parent.parent):
        info = open_ome_image(candidate)
        if info is not None:
            return info
    return None


def layer_ome_image(layer: Any) -> OmeImage | None:
    """The OME-Zarr image a layer was read from (this plugin's reader, or ``source.path``)."""
    if layer is None:
        return None
    meta = getattr(layer, "metadata", {}) or {}
    ome = meta.get(OME_KEY)
    if isinstance(ome, dict) and ome.get("path"):
        info = open_ome_image(ome["path"])
        if info is not None:
            return info
    source = getattr(layer, "source", None)
    return find_ome_root(getattr(source, "path", None))


def read_repair_label(info: OmeImage) -> np.ndarray | None:
    """The full-resolution level of ``labels/repair`` as a numpy array, or None."""
    import zarr

    if not info.has_repair_label:
        return None
    group = zarr.open_group(str(info.label_path), mode="r")
    _, ms = _multiscales(dict(group.attrs))
    if not ms:
        return None
    return np.asarray(group[str(ms[0]["datasets"][0]["path"])][...])


def save_repair_label(
    root: str | Path, mask: Any, *, replace: bool = False, image: OmeImage | None = None
) -> Path:
    """Write ``mask`` as the OME-NGFF label image ``<root>/labels/repair``.

    One resolution level, written with ``ome_zarr.writer.write_labels`` in the image's NGFF
    version and zarr format, with the image's axes, units, level-0 scale and chunks for the
    mask's (trailing) dimensions (ome-zarr writes no translation for labels). Only
    ``labels/`` is written: the image's own arrays and attributes are left as they are.

    Args:
        root: The OME-Zarr image directory.
        mask: Integer array, nonzero = repair; the image's full shape or a trailing part of
            it (at least YX, broadcast over the leading axes by ``rnon-batch``).
        replace: Replace an existing ``labels/repair``; otherwise that is an error.
        image: ``open_ome_image(root)`` if already known.

    Returns:
        The label image's path.

    Raises:
        UserError: ``root`` is not an OME-Zarr image, the mask does not fit, or a repair
            label exists and ``replace`` is False.
    """
    import zarr
    from ome_zarr.format import format_from_version
    from ome_zarr.writer import write_labels

    info = image or open_ome_image(root)
    if info is None:
        raise UserError(f"{str(root)!r} is not an OME-Zarr image; the mask cannot be saved there.")
    data = np.asarray(mask)
    if data.dtype == bool:
        data = data.astype(np.uint8)
    if data.dtype.kind not in "iu":
        raise UserError(f"A repair mask must hold integers (labels), not {data.dtype}.")
    nd = data.ndim
    if nd < 2 or nd > len(info.shape) or tuple(data.shape) != info.shape[-nd:]:
        raise UserError(
            f"The mask has shape {tuple(data.shape)} but the OME-Zarr image {info.name!r} has "
            f"shape {info.shape} (axes {''.join(info.axis_names)}): the mask must have the "
            f"image's shape or a trailing part of it, such as {info.shape[-2:]}."
        )
    if info.has_repair_label and not replace:
        raise UserError(f"{info.label_path} exists already; pass replace=True to replace it.")
    names = info.axis_names[-nd:]
    units = {
        n: str(a["unit"]) for n, a in zip(names, info.axes[-nd:], strict=True) if a.get("unit")
    }
    if info.has_repair_label:
        shutil.rmtree(info.label_path)
    group = zarr.open_group(str(info.path), mode="r+")
    write_labels(
        data,
        group,
        name=REPAIR_LABEL,
        scaler=None,
        scale_factors=[],
        fmt=format_from_version(info.version),
        axes=[dict(a) for a in info.axes[-nd:]],
        scale=dict(zip(names, info.scale[-nd:], strict=True)),
        axes_units=units or None,
        storage_options={
            "chunks": tuple(min(c, s) for c, s in zip(info.chunks[-nd:], data.shape, strict=True))
        },
    )
    return info.label_path


def batch_command(
    settings: EngineSettings, input_path: str | Path | None, *, mask: str | None = None
) -> list[str]:
    """The ``rnon-batch`` argument list that repairs ``input_path`` like the widget would.

    Options equal to rnon-batch's defaults are left out, so for an OME-Zarr image with a
    saved ``labels/repair``, the packaged model and default settings this is just
    ``["rnon-batch", "stack.zarr"]``.

    Args:
        settings: The widget's :meth:`InpaintWidget.settings` for "Repair".
        input_path: The stack on disk (``"STACK.zarr"`` placeholder when None).
        mask: A ``--mask`` argument, when the mask is not the image's ``labels/repair``.
    """
    args = ["rnon-batch", str(input_path) if input_path else "STACK.zarr"]
    if mask:
        args += ["--mask", mask]
    name = settings.name_or_path
    if name != "default":
        args += ["--model", name if name in CLASSICAL else str(Path(name).resolve())]
    if name not in CLASSICAL:
        if settings.stage2:
            args += ["--stage2", str(Path(settings.stage2).resolve())]
        if settings.stages == "repair":
            args += ["--stages", "repair"]
        if settings.device != BATCH_DEFAULT_DEVICE:
            args += ["--device", settings.device]
    if settings.tile_size != BATCH_DEFAULT_TILE:
        args += ["--tile", str(settings.tile_size)]
    return args


# --------------------------------------------------------------------------- reader


def napari_get_reader(path: str | list[str]) -> Callable[[Any], list[tuple]] | None:
    """npe2 reader: accept one OME-Zarr image directory, else return None."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    if open_ome_image(path) is None:
        return None
    return read_ome_zarr


def read_ome_zarr(path: str | list[str]) -> list[tuple]:
    """Read an OME-Zarr image lazily, plus its ``labels/repair`` as the repair mask.

    Returns napari layer-data tuples: the image (dask arrays over every level, multiscale
    when there are several; a channel axis is split into one layer per channel, named from
    ``omero``), then, when ``labels/repair`` exists, a Labels layer
    ``"<name> repair mask"`` in memory (so it can be painted) that the Inpaint widget
    picks as the mask for the image.
    """
    import dask.array as da
    import zarr

    if isinstance(path, (list, tuple)):
        path = path[0]
    info = open_ome_image(path)
    if info is None:
        raise UserError(f"{path!r} is not an OME-Zarr image.")
    group = zarr.open_group(str(info.path), mode="r")
    levels = [da.from_zarr(group[d]) for d in info.datasets]
    names = info.axis_names
    scale, translate = list(info.scale), list(info.translation)
    labels = [n if n else f"axis {i}" for i, n in enumerate(names)]
    kwargs: dict[str, Any] = {"name": info.name}
    c = info.channel_axis
    first_name = info.name
    if c is not None:
        del scale[c], translate[c], labels[c]
        kwargs["channel_axis"] = c
        channels = (info.omero or {}).get("channels") or []
        if len(channels) == info.shape[c]:
            kwargs["name"] = [
                str(ch.get("label") or f"{info.name} c{i}") for i, ch in enumerate(channels)
            ]
        else:
            kwargs["name"] = [f"{info.name} c{i}" for i in range(info.shape[c])]
        first_name = kwargs["name"][0]
    kwargs.update(
        scale=tuple(scale),
        translate=tuple(translate),
        axis_labels=tuple(labels),
        multiscale=len(levels) > 1,
        metadata={OME_KEY: {"path": str(info.path), "axes": "".join(names)}},
    )
    data: Any = levels if len(levels) > 1 else levels[0]
    out: list[tuple] = [(data, kwargs, "image")]
    mask = read_repair_label(info)
    if mask is not None:
        from napari.utils.colormaps import DirectLabelColormap

        nd = mask.ndim
        spatial = [i for i in range(len(info.shape)) if i != c][-nd:]
        mkw = {
            "name": f"{first_name} repair mask",
            "scale": tuple(info.scale[i] for i in spatial),
            "translate": tuple(info.translation[i] for i in spatial),
            "axis_labels": tuple(names[i] if names[i] else f"axis {i}" for i in spatial),
            "opacity": 0.7,
            "metadata": {
                MASK_FOR_KEY: first_name,
                OME_KEY: {"path": str(info.path), "label": REPAIR_LABEL},
            },
            "colormap": DirectLabelColormap(
                color_dict={None: MASK_COLOR, 0: np.zeros(4), 1: MASK_COLOR}
            ),
        }
        out.append((mask, mkw, "labels"))
    return out


# --------------------------------------------------------------------------- widget part


def ask_replace_label(parent: Any, path: Path) -> bool:
    """Ask (Qt message box) whether to replace an existing ``labels/repair``."""
    from qtpy.QtWidgets import QMessageBox

    answer = QMessageBox.question(
        parent,
        "Replace the repair mask?",
        f"{path} already holds a repair mask.\n\nReplace it with the current mask? "
        "The image data is not changed either way.",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        QMessageBox.StandardButton.No,
    )
    return answer == QMessageBox.StandardButton.Yes


class BatchSection(Container):
    """Inpaint widget part: save the mask into the OME-Zarr, show the rnon-batch command.

    Attributes:
        confirm: ``confirm(path) -> bool``, asked before replacing an existing
            ``labels/repair`` (a Qt question box; tests replace it).
        clipboard: ``clipboard(text)``, used by Copy (the Qt clipboard by default).
    """

    def __init__(self, widget: InpaintWidget) -> None:
        self._inpaint = widget
        self.confirm: Callable[[Path], bool] = lambda path: ask_replace_label(self.native, path)
        self.clipboard: Callable[[str], None] = _qt_copy
        title = Label(value="<b>Whole stack (rnon-batch)</b>")
        self._save_btn = PushButton(
            text="Save mask to OME-Zarr",
            tooltip="Write the mask into the image's OME-Zarr as labels/repair, where "
            "rnon-batch finds it (only labels/ is written; the image data never)",
        )
        self._command = LineEdit(value="", tooltip="The command that repairs the whole stack")
        self._command.native.setReadOnly(True)
        self._copy_btn = PushButton(text="Copy", tooltip="Copy the command to the clipboard")
        row = Container(layout="horizontal", labels=False, widgets=[self._command, self._copy_btn])
        self._info = Label(value="")
        self._info.native.setWordWrap(True)
        super().__init__(widgets=[title, self._save_btn, row, self._info], labels=False)
        self._save_btn.clicked.connect(self.save_mask)
        self._copy_btn.clicked.connect(self.copy_command)
        for control in (
            widget._image,
            widget._mask,
            widget._method,
            widget._weights,
            widget._device,
            widget._tile_size,
            widget._stage2,
        ):
            control.changed.connect(self.refresh)
        self.refresh()

    # ------------------------------------------------------------------ state
    def image_layer(self) -> Image | None:
        """The image chosen in the widget."""
        return self._inpaint._image.value

    def mask_layer(self) -> Labels | None:
        """The mask chosen in the widget."""
        return self._inpaint._mask.value

    def ome_image(self) -> OmeImage | None:
        """The OME-Zarr image the chosen image layer was read from, if any."""
        return layer_ome_image(self.image_layer())

    def _mask_is_saved(self, info: OmeImage) -> bool:
        mask = self.mask_layer()
        ome = (getattr(mask, "metadata", {}) or {}).get(OME_KEY) if mask is not None else None
        return (
            isinstance(ome, dict)
            and ome.get("label") == REPAIR_LABEL
            and Path(str(ome.get("path"))) == info.path
            and info.has_repair_label
        )

    def command(self) -> list[str]:
        """The rnon-batch argument list for the current image, mask, model and settings."""
        info = self.ome_image()
        settings = self._inpaint.settings("repair")
        if info is not None:
            return batch_command(settings, info.path)
        image = self.image_layer()
        source = getattr(getattr(image, "source", None), "path", None) if image else None
        return batch_command(settings, source, mask="MASK")

    def command_text(self) -> str:
        """:meth:`command` as one shell-quoted line."""
        return shlex.join(self.command())

    def refresh(self, *_: Any) -> None:
        """Update the command line and the note under it."""
        try:
            self._command.value = self.command_text()
            self._info.value = self._note()
            self._save_btn.enabled = self.ome_image() is not None and self.mask_layer() is not None
        except RuntimeError:  # the Qt widgets are already gone (viewer closing)
            return

    def _note(self) -> str:
        image = self.image_layer()
        if image is None:
            return "Choose the image to repair."
        info = self.ome_image()
        if info is None:
            return (
                f"'{image.name}' was not opened from an OME-Zarr image. To run the whole "
                "stack with rnon-batch, save the stack as OME-Zarr and open it in napari, "
                "or give rnon-batch a mask file (--mask) or --mask-value."
            )
        if not info.has_repair_label:
            return (
                f"Paint the mask, then click 'Save mask to OME-Zarr': rnon-batch reads it "
                f"from {info.label_path}."
            )
        if self._mask_is_saved(info):
            return (
                f"rnon-batch uses the mask saved in {info.label_path} (save again after "
                f"painting more); writes {_out(info)}."
            )
        return (
            f"rnon-batch uses the mask saved in {info.label_path}: click 'Save mask to "
            f"OME-Zarr' to save the current mask there first. Writes {_out(info)}."
        )

    # ---------------------------------------------------------------- actions
    def save_mask(self) -> Path | None:
        """Save the chosen mask as ``labels/repair`` of the image's OME-Zarr.

        Asks :attr:`confirm` before replacing an existing one. Returns the label path, or
        None when nothing was saved (a notification says why).
        """
        from napari.utils.notifications import show_error, show_info, show_warning

        from napari_rnon._layers import layer_data, layer_geometry
        from napari_rnon._planes import check_mask_shape

        image, mask = self.image_layer(), self.mask_layer()
        if image is None or mask is None:
            show_warning("Choose the image and its mask (Labels layer) first.")
            return None
        info = self.ome_image()
        if info is None:
            show_warning(
                f"'{image.name}' was not opened from an OME-Zarr image, so there is no "
                "OME-Zarr to save the mask into. Open the stack from OME-Zarr in napari."
            )
            return None
        try:
            check_mask_shape(tuple(layer_data(mask).shape), layer_geometry(image))
        except UserError as exc:
            show_error(str(exc))
            return None
        if info.has_repair_label and not self.confirm(info.label_path):
            show_info(f"Not saved: {info.label_path} was kept as it was.")
            return None
        try:
            path = save_repair_label(
                info.path, np.asarray(layer_data(mask)), replace=True, image=info
            )
        except UserError as exc:
            show_error(str(exc))
            return None
        mask.metadata = {
            **mask.metadata,
            OME_KEY: {"path": str(info.path), "label": REPAIR_LABEL},
        }
        show_info(f"Saved the repair mask to {path}. Run: {self.command_text()}")
        self.refresh()
        return path

    def copy_command(self) -> str:
        """Copy the command line to the clipboard and return it."""
        text = self.command_text()
        self.clipboard(text)
        return text


def _out(info: OmeImage) -> str:
    from rnon_engine.batch.run import _default_output

    return str(_default_output(info.path))


def _qt_copy(text: str) -> None:
    from qtpy.QtWidgets import QApplication

    QApplication.clipboard().setText(text)
