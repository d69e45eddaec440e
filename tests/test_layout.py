"""PlaneLayout: the one rule for array -> planes + channel groups + masks (issue 20.3)."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from rnon_engine.batch.io import ArrayRef, ImageInfo
from rnon_engine.errors import InputError
from rnon_engine.inference import Inpainter
from rnon_engine.inference.layout import PlaneLayout
from rnon_engine.train.finetune import check_exclude, training_planes


# ------------------------------------------------------------------ channel axis
@pytest.mark.parametrize(
    ("shape", "channel_axis", "ch", "leading", "spatial", "n_channels"),
    [
        ((8, 9), "auto", None, (), (8, 9), 0),
        ((8, 9, 3), "auto", 2, (), (8, 9), 3),
        ((5, 8, 9), None, None, (5,), (8, 9), 0),
        ((3, 8, 9), 0, 0, (), (8, 9), 3),
        ((2, 3, 8, 9), -3, 1, (2,), (8, 9), 3),
        ((2, 4, 8, 9, 5), -1, 4, (2, 4), (8, 9), 5),
        ((8, 9, 2, 6), 0, 0, (9,), (2, 6), 8),  # spatial = the last two other axes
        ((4, 5, 8, 9), None, None, (4, 5), (8, 9), 0),
        ((8, 9, 3), np.int64(2), 2, (), (8, 9), 3),
    ],
)
def test_axes(shape, channel_axis, ch, leading, spatial, n_channels):
    lay = PlaneLayout.of(shape, channel_axis)
    assert lay.channel_axis == ch and type(lay.channel_axis) in (int, type(None))
    assert lay.leading == leading and lay.spatial == spatial
    assert lay.n_channels == n_channels
    assert lay.mask_shape == leading + spatial
    assert lay.n_planes == int(np.prod(leading))
    assert lay.plane_shape == spatial + ((n_channels,) if ch is not None else ())
    assert lay.plane_channel_axis == (None if ch is None else -1)


def test_built_from_a_shape_of_numpy_ints_equals_one_of_ints():
    a = PlaneLayout.of(tuple(np.int64(s) for s in (2, 8, 9, 3)), 3)
    b = PlaneLayout.of((2, 8, 9, 3), -1)
    assert a == b and all(type(s) is int for s in a.shape)


def test_planes_in_c_order_and_single_plane():
    assert PlaneLayout.of((8, 9)).planes == [()]
    assert PlaneLayout.of((8, 9, 4)).planes == [()]
    lay = PlaneLayout.of((2, 3, 8, 9), None)
    assert lay.planes == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert all(type(i) is int for p in lay.planes for i in p)
    assert PlaneLayout.of((0, 8, 9), None).planes == []


@pytest.mark.parametrize(
    ("n", "groups"),
    [
        (1, [slice(0, 1)]),
        (2, [slice(0, 1), slice(1, 2)]),
        (3, [slice(0, 3)]),
        (4, [slice(0, 3)]),
        (5, [slice(c, c + 1) for c in range(5)]),
    ],
)
def test_channel_groups(n, groups):
    assert PlaneLayout.of((8, 9, n)).groups == groups
    assert PlaneLayout.of((n, 2, 8, 9), 0).groups == groups


def test_no_channel_axis_is_one_group():
    assert PlaneLayout.of((8, 9)).groups == [None]
    assert PlaneLayout.of((3, 8, 9), None).groups == [None]


def test_planes_and_groups_cover_every_value_once():
    """Reading each plane and group from the channels-last view gives back the array."""
    rng = np.random.default_rng(0)
    for shape, ch in [((2, 5, 6, 7), 1), ((4, 6, 7, 3), -1), ((3, 6, 7), None), ((6, 7), "auto")]:
        a = rng.random(shape)
        lay = PlaneLayout.of(shape, ch)
        view = lay.channels_last(a)
        assert np.shares_memory(view, a)
        assert view.shape == lay.leading + lay.plane_shape
        rebuilt = np.full(view.shape, np.nan)
        for idx in lay.planes:
            for g in lay.groups:
                if g is None:
                    rebuilt[idx] = view[idx]
                else:
                    rebuilt[idx][..., g] = view[idx][..., g]
        np.testing.assert_array_equal(rebuilt, view)
        ch = lay.channel_axis
        np.testing.assert_array_equal(a, rebuilt if ch is None else np.moveaxis(rebuilt, -1, ch))


def test_rgba_alpha_is_outside_the_group():
    lay = PlaneLayout.of((8, 9, 4))
    (g,) = lay.groups
    assert np.arange(4)[g].tolist() == [0, 1, 2]


@pytest.mark.parametrize(
    ("shape", "channel_axis", "message"),
    [
        ((5,), "auto", "image must have at least 2 dimensions, got shape (5,)"),
        ((5,), None, "image must have at least 2 dimensions, got shape (5,)"),
        (
            (2, 8, 9, 3),
            "auto",
            "image has 4 dimensions (2, 8, 9, 3): say which axis holds the channels with "
            "channel_axis=<int> (or channel_axis=None if there is none)",
        ),
        ((8, 9), "last", "channel_axis must be 'auto', an int or None, got 'last'"),
        ((8, 9, 3), True, "channel_axis must be 'auto', an int or None, got True"),
        ((8, 9, 3), 1.0, "channel_axis must be 'auto', an int or None, got 1.0"),
        (
            (8, 9),
            0,
            "an image with a channel axis needs at least 3 dimensions, got shape (8, 9)",
        ),
        ((8, 9, 3), 3, "channel_axis 3 is out of range for shape (8, 9, 3)"),
        ((8, 9, 3), -4, "channel_axis -4 is out of range for shape (8, 9, 3)"),
    ],
)
def test_channel_axis_errors(shape, channel_axis, message):
    with pytest.raises(InputError, match=re.escape(message)):
        PlaneLayout.of(shape, channel_axis)


def test_constructor_checks_a_normalised_axis():
    with pytest.raises(InputError, match=re.escape("channel_axis 3 is out of range")):
        PlaneLayout((8, 9, 3), 3)
    with pytest.raises(InputError, match="at least 3 dimensions"):
        PlaneLayout((8, 9), 1)
    assert PlaneLayout((8, 9, 3), 2) == PlaneLayout.of((8, 9, 3))


# ------------------------------------------------------------------ masks
def test_mask_broadcast_or_per_plane():
    stack = PlaneLayout.of((4, 8, 9), None)
    assert stack.check_mask(np.zeros((8, 9), bool)) is False
    assert stack.check_mask(np.zeros((4, 8, 9), np.uint8)) is True
    assert stack.mask_per_plane((8, 9)) is False
    assert stack.mask_per_plane((4, 8, 9)) is True
    assert stack.mask_per_plane((4, 9, 8)) is None
    single = PlaneLayout.of((8, 9, 3))
    assert single.check_mask(np.zeros((8, 9), np.float32)) is False
    assert single.mask_per_plane((8, 9, 3)) is None
    cstack = PlaneLayout.of((2, 3, 8, 9), 1)
    assert cstack.check_mask(np.ones((2, 8, 9), np.int16)) is True


@pytest.mark.parametrize(
    ("shape", "channel_axis", "mask_shape", "message"),
    [
        (
            (3, 8, 9),
            "auto",
            (8, 9),
            "mask shape (8, 9) does not match image shape (3, 8, 9): expected (3, 8) (Y, X) "
            "(channels first, e.g. RGB as C×Y×X? pass channel_axis=0; a Z/T stack of "
            "grayscale planes? pass channel_axis=None)",
        ),
        (
            (4, 8, 9),
            "auto",
            (8, 9),
            "mask shape (8, 9) does not match image shape (4, 8, 9): expected (4, 8) (Y, X) "
            "(channels first, e.g. RGBA as C×Y×X?",
        ),
        (
            (5, 8, 9),
            "auto",
            (8, 9),
            "expected (5, 8) (Y, X) (a Z/T stack? pass channel_axis=None)",
        ),
        (
            (4, 8, 9),
            None,
            (8, 8),
            "mask shape (8, 8) does not match image shape (4, 8, 9): expected (8, 9) (Y, X) "
            "or (4, 8, 9) (one per plane)",
        ),
        (
            (8, 9, 3),
            "auto",
            (8, 9, 3),
            "mask shape (8, 9, 3) does not match image shape (8, 9, 3): expected (8, 9) (Y, X)",
        ),
    ],
)
def test_mask_shape_errors(shape, channel_axis, mask_shape, message):
    with pytest.raises(InputError, match=re.escape(message)):
        PlaneLayout.of(shape, channel_axis).check_mask(np.zeros(mask_shape, bool))


def test_mask_shape_error_without_hint_for_a_channels_last_stack():
    with pytest.raises(InputError) as err:
        PlaneLayout.of((2, 8, 9, 3), -1).check_mask(np.zeros((8, 9, 2), bool))
    assert str(err.value).endswith("expected (8, 9) (Y, X) or (2, 8, 9) (one per plane)")


def test_mask_value_errors():
    lay = PlaneLayout.of((8, 9))
    with pytest.raises(InputError, match="mask must be boolean or numeric"):
        lay.check_mask(np.zeros((8, 9), dtype="U1"))
    with pytest.raises(InputError, match="mask contains NaN"):
        m = np.zeros((8, 9))
        m[2, 3] = np.nan
        lay.check_mask(m)


# ------------------------------------------------------------------ the four users
_BAD = [
    ((2, 8, 9, 3), "auto", (8, 9)),
    ((3, 8, 9), "auto", (8, 9)),
    ((8, 9, 3), 5, (8, 9)),
    ((4, 8, 9), None, (8, 8)),
]


@pytest.mark.parametrize(("shape", "channel_axis", "mask_shape"), _BAD)
def test_inpaint_and_finetune_refuse_with_the_layout_message(shape, channel_axis, mask_shape):
    with pytest.raises(InputError) as ref:
        PlaneLayout.of(shape, channel_axis).check_mask(np.zeros(mask_shape, bool))
    img = np.zeros(shape, np.uint8)
    mask = np.zeros(mask_shape, bool)
    with pytest.raises(InputError) as a:
        Inpainter(method="telea").inpaint(img, mask, channel_axis=channel_axis)
    with pytest.raises(InputError) as b:
        training_planes(img, channel_axis=channel_axis, exclude=mask)
    with pytest.raises(InputError) as c:
        check_exclude(shape, mask, channel_axis)
    assert str(a.value) == str(b.value) == str(c.value) == str(ref.value)


def test_training_planes_follow_the_layout():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 255, (2, 5, 8, 9), dtype=np.uint8)  # Z, C=5, Y, X
    lay = PlaneLayout.of(img.shape, 1)
    out = training_planes(img, channel_axis=1)
    assert len(out) == lay.n_planes * len(lay.groups) == 10
    assert all(p.shape == lay.spatial and b.shape == lay.spatial for p, b in out)


def test_napari_geometry_delegates_to_the_layout():
    from napari_rnon._planes import Geometry, check_mask_shape

    g = Geometry((2, 8, 9, 3), True)
    assert g.layout == PlaneLayout.of((2, 8, 9, 3), -1)
    assert g.leading_shape == (2,) and g.yx == (8, 9) and g.plane_shape == (8, 9, 3)
    assert g.all_planes() == [(0,), (1,)] and g.n_planes == 2 and g.channel_axis == -1
    gray = Geometry((3, 8, 9), False)
    assert gray.layout == PlaneLayout.of((3, 8, 9), None) and gray.channel_axis is None
    assert check_mask_shape((3, 8, 9), gray) is False  # one mask per plane
    assert check_mask_shape((8, 9), gray) is True  # broadcast
    assert check_mask_shape((8, 9), Geometry((8, 9), False)) is False


def _info(axes: str, shape: tuple[int, ...], color_axis: int | None) -> ImageInfo:
    return ImageInfo(
        form="zarr",
        path="in.zarr",
        ref=ArrayRef("zarr", "in.zarr"),
        shape=shape,
        dtype="uint8",
        chunks=shape,
        write_chunks=shape,
        axes=axes,
        axes_source="--axes",
        color_axis=color_axis,
    )


def test_batch_image_info_builds_on_the_layout():
    colour = _info("CZYX", (3, 5, 8, 9), 0)
    assert colour.lead_axes == [1] and colour.plane_order == [1, 2, 3, 0]
    assert colour.layout == PlaneLayout.of((5, 8, 9, 3), -1)
    assert colour.layout.groups == [slice(0, 3)] and colour.planes == 5
    # channels that are not colour are leading axes: inpainted one by one
    chans = _info("ZCYX", (2, 4, 8, 9), None)
    assert chans.layout == PlaneLayout.of((2, 4, 8, 9), None) and chans.planes == 8
    # Y, X anywhere: the layout is of the array in the engine's order
    odd = _info("YXZ", (8, 9, 6), None)
    assert odd.plane_order == [2, 0, 1] and odd.layout.spatial == (8, 9)
    assert odd.layout_of((8, 9, 2)).planes == [(0,), (1,)]


def test_layout_module_imports_no_torch():
    code = (
        "import sys, rnon_engine.inference.layout, rnon_engine.batch.io\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
