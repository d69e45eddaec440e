"""Axis letters of ``rnon-batch`` data: the rule, ``--axes`` checks and metadata names.

Axes are letters: ``Y`` and ``X`` (the plane that is inpainted), ``C`` (channels), ``T``,
``Z`` and ``Q`` (any other leading axis). They come, in this order of precedence, from OME
metadata (OME-Zarr ``multiscales.axes``, OME-TIFF), from ``--axes``, from zarr v3
``dimension_names``, and otherwise from the rule in :func:`default_axes`.
"""

from __future__ import annotations

from rnon_engine.errors import InputError

__all__ = [
    "check_axes",
    "colour_axis",
    "default_axes",
    "letters_from_names",
    "resolve_axes",
]


def default_axes(shape: tuple[int, ...], *, image_file: bool = False) -> str:
    """The documented rule for data without axis metadata.

    The last two axes are ``YX``; every axis before them is an independent leading axis
    (``Q``). Exception: a single image file (PNG, JPEG, non-OME TIFF...) whose trailing axis
    has 3 or 4 entries is colour, ``...YXC``.
    """
    if len(shape) < 2:
        raise InputError(f"an image needs at least two axes (Y, X); got shape {shape}.")
    if image_file and len(shape) >= 3 and shape[-1] in (3, 4):
        return "Q" * (len(shape) - 3) + "YXC"
    return "Q" * (len(shape) - 2) + "YX"


def check_axes(axes: str, shape: tuple[int, ...], what: str = "--axes") -> str:
    """Validate an axes string against a shape and return it upper-cased."""
    axes = axes.upper()
    if len(axes) != len(shape):
        raise InputError(
            f"{what} {axes!r} has {len(axes)} letters but the data has {len(shape)} "
            f"dimensions (shape {shape}); give one letter per dimension, e.g. "
            f"{default_axes(shape)!r}."
        )
    for letter in "YXC":
        if axes.count(letter) > 1:
            raise InputError(f"{what} {axes!r} names {letter} more than once.")
    if "Y" not in axes or "X" not in axes:
        raise InputError(f"{what} {axes!r} must contain both Y and X (the inpainted plane).")
    bad = set(axes) - set("TCZYXQ")
    if bad:
        raise InputError(
            f"{what} {axes!r} uses unknown letters {sorted(bad)}; use T, C, Z, Y, X, or Q "
            "for any other axis."
        )
    return axes


def letters_from_names(names: list[str], types: list[str | None] | None = None) -> str:
    """Axis letters from metadata names (``t c z y x``) and OME types (channel, time)."""
    out = []
    for i, n in enumerate(names):
        t = (types[i] if types else None) or ""
        n = (n or "").lower()
        if n in ("t", "c", "z", "y", "x"):
            out.append(n.upper())
        elif t == "channel":
            out.append("C")
        elif t == "time":
            out.append("T")
        else:
            out.append("Q")
    return "".join(out)


def colour_axis(axes: str, shape: tuple[int, ...], colour_data: bool) -> int | None:
    """The C axis handed to the engine as colour, or None.

    Only RGB(A) data (image files, TIFF samples) has one; channels of zarr / OME-Zarr data
    are inpainted one by one.
    """
    if "C" not in axes or not colour_data:
        return None
    c = axes.index("C")
    return c if shape[c] in (3, 4) else None


def resolve_axes(
    meta_axes: str | None,
    source: str,
    user_axes: str | None,
    shape: tuple[int, ...],
    *,
    image_file: bool = False,
) -> tuple[str, str]:
    """The axes of data of ``shape`` and where they come from (see the module docstring).

    Args:
        meta_axes: Letters from the data's metadata, or None.
        source: Where ``meta_axes`` come from: ``"ome"`` (binding) or ``"dimension_names"``.
        user_axes: ``--axes``, or None.
        shape: The data's shape.
        image_file: Apply the colour rule of single image files.

    Returns:
        ``(axes, source)`` with source ``"ome"``, ``"--axes"``, ``"dimension_names"`` or
        ``"rule"``.
    """
    if meta_axes is not None and source == "ome":
        meta_axes = check_axes(meta_axes, shape, "the OME metadata's axes")
        if user_axes is not None and user_axes.upper() != meta_axes:
            raise InputError(
                f"--axes {user_axes!r} contradicts the OME metadata, which says {meta_axes!r}; "
                "leave --axes out for OME data."
            )
        return meta_axes, "ome"
    if user_axes is not None:
        return check_axes(user_axes, shape), "--axes"
    if meta_axes is not None:
        try:
            return check_axes(meta_axes, shape, source), source
        except InputError:
            pass
    return default_axes(shape, image_file=image_file), "rule"
