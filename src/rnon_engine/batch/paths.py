"""Where ``rnon-batch`` reads and writes: default output and mask, and the write rule.

INPUT and MASK are never written to: an OUTPUT that is, contains or lies inside either is
refused.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from rnon_engine.batch.io import ImageInfo
from rnon_engine.batch.masks import MaskInfo, describe_mask
from rnon_engine.errors import InputError

__all__ = [
    "check_output_path",
    "check_writable",
    "default_mask",
    "default_output",
    "describe_given_mask",
    "resolve_path",
]


def resolve_path(text: str | os.PathLike, what: str) -> Path:
    """``text`` as an absolute path with links resolved, or a message on a link loop.

    Raises:
        InputError: ``text`` is (or passes through) a link that points back to itself.
    """
    try:
        return Path(text).expanduser().resolve()
    except (RuntimeError, OSError) as exc:  # "Symlink loop" (RuntimeError before 3.13)
        raise InputError(
            f"{what} {str(text)!r} cannot be resolved: {exc}. A symbolic link on that path "
            "points (directly or through others) back to itself; give the real path."
        ) from exc


def check_writable(output: Path) -> None:
    """Check, before any work, that ``output`` can be created (or replaced) where it is.

    Creates and removes a small probe file in the nearest existing folder on the path, so a
    read-only mount, missing permission or a regular file in the way is found before the
    model is loaded, not after.

    Raises:
        InputError: a part of the path is a regular file, or the folder cannot be written.
    """
    folder = output if output.is_dir() else output.parent
    while not folder.exists():
        if folder.is_symlink() or folder.parent == folder:
            break
        folder = folder.parent
    if folder.exists() and not folder.is_dir():
        raise InputError(
            f"--output {str(output)!r} lies under {str(folder)!r}, which is a file, not a "
            "folder; choose another --output."
        )
    try:
        fd, probe = tempfile.mkstemp(prefix=".rnon-batch-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InputError(
            f"cannot write the output {str(output)!r}: {str(folder)!r} is not writable "
            f"({exc.strerror or exc}). Choose an --output in a folder you can write to. "
            "Nothing was written."
        ) from exc


def _inside(a: Path, b: Path) -> bool:
    """True if ``a`` is ``b`` or lies inside it."""
    try:
        a.relative_to(b)
        return True
    except ValueError:
        return False


def default_output(inp: Path) -> Path:
    """INPUT's name with ``.repaired`` before its suffix, beside it.

    ``x.ome.zarr`` → ``x.repaired.ome.zarr``; a folder ``imgs`` → ``imgs.repaired``.
    """
    inp = Path(inp)
    if inp.is_dir() and inp.suffix.lower() != ".zarr":
        return inp.with_name(inp.name + ".repaired")
    name = inp.name
    for suffix in (".ome.zarr", ".ome.tiff", ".ome.tif", inp.suffix):
        if suffix and name.lower().endswith(suffix):
            return inp.with_name(name[: -len(suffix)] + ".repaired" + name[-len(suffix) :])
    return inp.with_name(name + ".repaired")


def default_mask(inp: Path, image: ImageInfo | None) -> Path:
    """INPUT's repair label ``INPUT/labels/repair``, or a message on how to give a mask.

    Raises:
        InputError: INPUT is not an OME-Zarr image holding that label.
    """
    label = inp / "labels" / "repair"
    if image is not None and image.form == "ome-zarr" and label.is_dir():
        return label
    where = (
        f"{str(inp)!r} has no label image 'repair' ({str(label)!r} does not exist)"
        if image is not None and image.form == "ome-zarr"
        else f"{str(inp)!r} is not an OME-Zarr image, so it cannot hold a repair label"
    )
    raise InputError(
        f"no mask given and {where}. Nothing was written. Give a mask in one of three ways: "
        "(1) in napari, open the OME-Zarr image, paint the pixels to repair and click "
        "'Save mask to OME-Zarr' in the Inpaint widget (this writes INPUT/labels/repair; "
        "then run this command again); (2) --mask MASK: a file or array of the image's "
        "shape or its YX shape, nonzero = repair; (3) --mask-value V: repair the pixels "
        "equal to V (dead or saturated pixels)."
    )


def describe_given_mask(mask_path: Path, image: ImageInfo, *, from_label: bool) -> MaskInfo:
    """:func:`describe_mask`, with a message that names INPUT's ``labels/repair``."""
    if not from_label:
        return describe_mask(mask_path, image)
    try:
        return describe_mask(mask_path, image)
    except InputError as exc:
        raise InputError(
            f"the repair label {str(mask_path)!r} (used because no --mask was given) does not "
            f"fit the image: {exc} Save the mask again from napari (Inpaint > Save mask to "
            "OME-Zarr), or pass --mask MASK or --mask-value V."
        ) from exc


def check_output_path(output: Path, inputs: list[Path]) -> None:
    """Refuse an OUTPUT that is, contains or lies inside one of ``inputs``."""
    for p in inputs:
        if _inside(output, p) or _inside(p, output):
            raise InputError(
                f"--output {str(output)!r} is (or contains, or lies inside) the input "
                f"{str(p)!r}; rnon-batch never writes into its input: choose another --output."
            )
