"""The Inpaint widget's "Mask tools" section: masks from values, hot pixels, grow/shrink.

Each tool reads the chosen image in the planes of the run (the plane on screen, or every
plane with *all planes*) and writes into the chosen mask layer through napari's Labels
history (``data_setitem`` inside ``block_history``), so one click is one Ctrl+Z. The
section knows the Inpaint widget only through callables; the rules themselves are in
:mod:`napari_rnon._mask_tools`.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, Container, FloatSpinBox, LineEdit, PushButton, SpinBox

from napari_rnon._layers import THIN_BRUSH, layer_data, layer_geometry
from napari_rnon._mask_tools import grow_shrink, hot_pixel_mask, parse_value_rule, value_mask
from napari_rnon._planes import PlaneIndex, UserError, check_mask_shape

if TYPE_CHECKING:
    from napari.layers import Image, Labels

__all__ = ["ACROSS_MAX_PLANES", "MaskTools", "write_mask"]

#: "Same pixels in every plane" looks at this many planes at most, spread over the stack.
ACROSS_MAX_PLANES = 32


def write_mask(layer: Labels, region: tuple[Any, ...], new: np.ndarray, *, label: int = 1) -> int:
    """Make ``layer.data[region] != 0`` equal ``new``, through the layer's undo history.

    Pixels turned on get ``label``; pixels turned off get 0; the others keep their label.
    Call it inside ``layer.block_history()`` so that one tool click is one undo step, and
    refresh the layer after.

    Returns:
        The number of pixels changed.
    """
    data = layer.data
    old = np.asarray(data[region]) != 0
    on = np.nonzero(new & ~old)
    off = np.nonzero(old & ~new)
    n = int(on[0].size + off[0].size)
    if n == 0:
        return 0
    prefix = tuple(np.full(on[0].size, i, dtype=np.intp) for i in region)
    prefix_off = tuple(np.full(off[0].size, i, dtype=np.intp) for i in region)
    if on[0].size:
        layer.data_setitem((*prefix, *on), label, refresh=False)
    if off[0].size:
        layer.data_setitem((*prefix_off, *off), 0, refresh=False)
    return n


class MaskTools(Container):
    """Mask tools: value/range/NaN, hot/dead pixels, grow/shrink, brush size.

    Args:
        image: Returns the chosen image layer (or None).
        mask: Returns the chosen mask layer (or None).
        planes: Returns ``(planes, on_screen)``: the plane indices of the run for the
            image and whether that is the plane on screen only.
        report: Shows a message in the widget's status line.
    """

    def __init__(
        self,
        image: Callable[[], Image | None],
        mask: Callable[[], Labels | None],
        planes: Callable[[Image], list[PlaneIndex]],
        report: Callable[[str], None],
    ) -> None:
        self._get_image, self._get_mask, self._get_planes = image, mask, planes
        self._report = report
        self._attached: weakref.ref[Labels] | None = None
        self._toggle = CheckBox(text="Mask tools", value=False)
        self._value = LineEdit(
            label="Value",
            value="",
            tooltip="Pixels to repair by value, as rnon-batch --mask-value: 65535, a range "
            "with both ends included (0..10), or nan; any channel of an RGB image",
        )
        self._value_btn = PushButton(text="Add pixels of this value")
        self._threshold = FloatSpinBox(
            label="Threshold",
            min=1.0,
            max=100.0,
            step=0.5,
            value=6.0,
            tooltip="Hot/dead pixels: how far from the 3x3 median, in robust standard "
            "deviations (higher: fewer pixels)",
        )
        self._across = CheckBox(
            text="Same pixels in every plane",
            value=False,
            tooltip="Keep only pixels that are off in the same place through the planes "
            "(camera defects, not a bright cell)",
        )
        self._hot_btn = PushButton(text="Add hot/dead pixels")
        self._grow_px = SpinBox(label="By (px)", min=1, max=50, value=1)
        self._grow_btn = PushButton(text="Grow")
        self._shrink_btn = PushButton(text="Shrink")
        grow_row = Container(
            layout="horizontal",
            labels=False,
            widgets=[self._grow_btn, self._shrink_btn],
        )
        self._brush = SpinBox(
            label="Brush (px)",
            min=1,
            max=200,
            value=THIN_BRUSH,
            tooltip="Brush size of the mask layer: 3 px fits thin scratches ([ and ] change "
            "it in the viewer)",
        )
        self._body = Container(
            widgets=[
                self._value,
                self._value_btn,
                self._threshold,
                self._across,
                self._hot_btn,
                self._grow_px,
                grow_row,
                self._brush,
            ],
            visible=False,
        )
        super().__init__(widgets=[self._toggle, self._body], labels=False)
        self._toggle.changed.connect(lambda v: setattr(self._body, "visible", bool(v)))
        self._value_btn.clicked.connect(self.add_value)
        self._hot_btn.clicked.connect(self.add_hot_pixels)
        self._grow_btn.clicked.connect(lambda: self.grow(int(self._grow_px.value)))
        self._shrink_btn.clicked.connect(lambda: self.grow(-int(self._grow_px.value)))
        self._brush.changed.connect(self._on_brush)

    # ------------------------------------------------------------------ helpers
    def _on_brush(self, size: int) -> None:
        mask = self._get_mask()
        if mask is not None:
            mask.brush_size = int(size)

    def attach(self, mask: Labels | None) -> None:
        """Follow the chosen mask: it gets the Brush size, and Brush follows its brush.

        A mask chosen in the widget (a new one, a sample's, one read from OME-Zarr) gets
        the Brush field's size (thin by default); changing the brush on the layer
        (``[``, ``]``, layer controls) updates the field.
        """
        old = self._attached() if self._attached is not None else None
        if old is not None and old is not mask:
            old.events.brush_size.disconnect(self._on_layer_brush)
        self._attached = weakref.ref(mask) if mask is not None else None
        if mask is not None:
            if old is not mask:
                mask.events.brush_size.connect(self._on_layer_brush)
            mask.brush_size = int(self._brush.value)

    def _on_layer_brush(self, event: Any = None) -> None:
        mask = self._attached() if self._attached is not None else None
        if mask is not None and int(round(mask.brush_size)) != int(self._brush.value):
            self._brush.value = int(round(mask.brush_size))

    def _targets(self) -> tuple[Image, Labels, list[PlaneIndex], bool]:
        image, mask = self._get_image(), self._get_mask()
        if image is None:
            raise UserError("Choose the image layer first (Image).")
        if mask is None:
            raise UserError("Choose or add a mask first ('New mask'): the tools write into it.")
        if not isinstance(mask.data, np.ndarray) or getattr(mask, "multiscale", False):
            raise UserError(
                f"The mask '{mask.name}' is not held in memory (a lazy or multiscale array); "
                "the tools write only into an in-memory mask: click 'New mask'."
            )
        geometry = layer_geometry(image)
        broadcast = check_mask_shape(tuple(mask.data.shape), geometry)
        return image, mask, self._get_planes(image), broadcast

    def _run(self, what: str, fn: Callable[[], int]) -> int | None:
        mask = self._get_mask()
        try:
            if mask is None:
                n = fn()
            else:
                with mask.block_history():
                    n = fn()
                mask.refresh()
        except UserError as exc:
            from napari.utils.notifications import show_warning

            show_warning(str(exc))
            self._report(str(exc))
            return None
        self._report(f"{what}: {n} mask pixel(s) changed (Ctrl+Z on the mask undoes it).")
        return n

    @staticmethod
    def _plane(data: Any, idx: PlaneIndex) -> np.ndarray:
        return np.asarray(data[idx]) if idx else np.asarray(data)

    # ------------------------------------------------------------------ tools
    def add_value(self, text: str | None = None) -> int | None:
        """Add the pixels whose value matches ``text`` (the Value field by default).

        Returns:
            Pixels added to the mask, or None when refused (the status line says why).
        """

        def work() -> int:
            rule = parse_value_rule(self._value.value if text is None else text)
            image, mask, planes, broadcast = self._targets()
            data, rgb = layer_data(image), bool(image.rgb)
            if broadcast:
                found = np.zeros(mask.data.shape, bool)
                for idx in planes:
                    found |= value_mask(self._plane(data, idx), rule, rgb=rgb)
                return write_mask(mask, (), found | (mask.data != 0), label=_label(mask))
            n = 0
            for idx in planes:
                found = value_mask(self._plane(data, idx), rule, rgb=rgb)
                n += write_mask(mask, idx, found | (mask.data[idx] != 0), label=_label(mask))
            return n

        return self._run("Value", work)

    def add_hot_pixels(self) -> int | None:
        """Add hot and dead pixels (far from their neighbourhood median) to the mask.

        Plane by plane; with "Same pixels in every plane", one (Y, X) mask from up to
        :data:`ACROSS_MAX_PLANES` planes spread evenly over the run (a defect that is in
        every plane is in those), so a long stack is never loaded whole.
        """
        threshold = float(self._threshold.value)

        def find(planes: np.ndarray, rgb: bool, across: bool) -> np.ndarray:
            if not rgb:
                return hot_pixel_mask(planes, threshold=threshold, across_planes=across)
            found = [  # any colour channel
                hot_pixel_mask(planes[..., c], threshold=threshold, across_planes=across)
                for c in range(planes.shape[-1])
            ]
            return np.any(found, axis=0)

        def work() -> int:
            image, mask, planes, broadcast = self._targets()
            data, rgb = layer_data(image), bool(image.rgb)
            label = _label(mask)
            if self._across.value and len(planes) > 1:
                step = max(1, -(-len(planes) // ACROSS_MAX_PLANES))
                sample = np.stack([self._plane(data, idx) for idx in planes[::step]])
                yx = find(sample, rgb, across=True)
                if broadcast:
                    return write_mask(mask, (), yx | (mask.data != 0), label=label)
                return sum(
                    write_mask(mask, idx, yx | (mask.data[idx] != 0), label=label) for idx in planes
                )
            n = 0
            union = np.zeros(mask.data.shape, bool) if broadcast else None
            for idx in planes:
                found = find(self._plane(data, idx), rgb, across=False)
                if union is not None:
                    union |= found
                else:
                    n += write_mask(mask, idx, found | (mask.data[idx] != 0), label=label)
            if union is not None:
                n = write_mask(mask, (), union | (mask.data != 0), label=label)
            return n

        return self._run("Hot/dead pixels", work)

    def grow(self, pixels: int) -> int | None:
        """Grow (``pixels`` > 0) or shrink (< 0) the mask in the planes of the run."""

        def work() -> int:
            _, mask, planes, broadcast = self._targets()
            if broadcast or mask.data.ndim == 2:
                return write_mask(mask, (), grow_shrink(mask.data != 0, pixels), label=_label(mask))
            n = 0
            for idx in planes:
                new = grow_shrink(mask.data[idx] != 0, pixels)
                n += write_mask(mask, idx, new, label=_label(mask))
            return n

        return self._run("Grow" if pixels > 0 else "Shrink", work)


def _label(mask: Labels) -> int:
    """The label the tools paint with: the layer's selected label, 1 if that is 0."""
    return int(mask.selected_label) or 1
