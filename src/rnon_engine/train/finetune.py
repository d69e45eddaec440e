"""Fine-tune a repair generator on a user's own images, in minutes, on a CPU.

The napari **Fine-tune** widget and scripts share :func:`finetune`; the command line
(``python -m training.run --config finetune --init default --data DIR``) runs the same
trainer on a folder. What :func:`finetune` does:

1. **Planes.** Every image is cut into 2-D training planes exactly as
   :meth:`rnon_engine.inference.Inpainter.inpaint` cuts it: leading axes (Z, T...) give one
   plane each; with a channel axis, 3 or 4 channels are one RGB plane (alpha dropped) and
   any other number gives one grayscale plane per channel.
2. **Intensity.** Each plane is mapped to ``[0, 1]`` with the inference rule
   (:func:`rnon_engine.inference.intensity.intensity_map`: ``uint8`` by ``v / 255``, other types by
   the 0.1th-99.9th percentiles of the plane's *good* pixels), so the network trains on the
   contrast it will see when it repairs these images.
3. **Bad pixels.** Pixels marked in ``exclude_masks`` (nonzero), equal to
   ``exclude_value``, or not finite, are written as exclusion masks: the trainer never
   shows them as input and never uses them as targets (see
   :meth:`rnon_engine.train.losses.StageLoss.forward`).
4. **Training.** The planes go to a temporary folder (float32 TIFF in ``[0, 1]``, masks as
   PNG) and :class:`rnon_engine.train.trainer.Trainer` trains stage 1 from ``init`` with
   the packaged ``finetune`` configuration (:func:`finetune_config`: random 128-pixel
   crops, free-form hole masks, every layer trainable, lr 3e-4) until the time budget,
   ``max_steps`` or ``cancel()``.
5. **Result.** The generator is saved as ``<name>.safetensors`` in ``out_dir`` (default:
   :func:`user_weights_dir`), with metadata naming the starting weights and their SHA-256.
   The Inpaint widget lists that folder.

Weights folder: ``$RNON_WEIGHTS_DIR`` if set, else ``$XDG_DATA_HOME/napari-rnon/weights``
(``~/.local/share/napari-rnon/weights`` when ``XDG_DATA_HOME`` is unset).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rnon_engine.errors import Cancelled, ConfigError, InputError
from rnon_engine.inference.layout import PlaneLayout

__all__ = [
    "WEIGHTS_DIR_ENV",
    "check_exclude",
    "finetune",
    "finetune_config",
    "list_user_weights",
    "training_planes",
    "user_weights_dir",
    "write_training_folder",
]

#: Environment variable that overrides :func:`user_weights_dir`.
WEIGHTS_DIR_ENV = "RNON_WEIGHTS_DIR"

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,99}$")

ProgressFn = Callable[[int, int, float], None]


# ------------------------------------------------------------------------ weights folder


def user_weights_dir(create: bool = False) -> Path:
    """The folder where fine-tuned weights are saved and listed.

    ``$RNON_WEIGHTS_DIR`` if set, else ``$XDG_DATA_HOME/napari-rnon/weights`` (default
    ``~/.local/share/napari-rnon/weights``).

    Args:
        create: Make the folder if it does not exist.
    """
    env = os.environ.get(WEIGHTS_DIR_ENV)
    if env:
        path = Path(env).expanduser()
    else:
        base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        path = Path(base).expanduser() / "napari-rnon" / "weights"
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def list_user_weights(folder: str | Path | None = None) -> list[Path]:
    """Repair-generator files (``*.safetensors``) in the weights folder, newest first."""
    folder = user_weights_dir() if folder is None else Path(folder)
    if not folder.is_dir():
        return []
    files = [p for p in folder.glob("*.safetensors") if p.is_file()]
    return sorted(files, key=lambda p: (-p.stat().st_mtime, p.name))


def finetune_config(overrides: dict[str, Any] | None = None) -> Any:
    """The fine-tuning configuration, validated (a ``TrainConfig``).

    It is the packaged ``finetune`` config (``rnon_engine/train/configs/finetune.yaml``,
    also ``python -m training.run --config finetune``) with dotted-key ``overrides``.
    ``repair.model`` is empty: the architecture comes from ``init``.
    """
    from rnon_engine.train.config import config_from_dict, config_path, read_config

    return config_from_dict(read_config(config_path("finetune"), overrides))


# ------------------------------------------------------------------------------ planes


def training_planes(
    image: Any,
    *,
    channel_axis: int | str | None = "auto",
    exclude: Any = None,
    exclude_value: float | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Cut one image into training planes in ``[0, 1]`` with their bad-pixel masks.

    Args:
        image: ``H×W``, ``H×W×C`` or a stack with leading axes (numpy, dask, zarr...).
        channel_axis: As in :meth:`~rnon_engine.inference.Inpainter.inpaint` (``"auto"``:
            2-D has none, 3-D is channels-last, 4-D and up must say).
        exclude: Optional bad-pixel mask, nonzero = bad: the spatial ``H×W`` shape (for
            every plane) or the image shape without the channel axis (one per plane).
        exclude_value: Stored value of bad pixels (any channel), or None.

    Returns:
        ``[(plane, bad), ...]``: ``plane`` is float32 ``H×W`` or ``H×W×3`` in ``[0, 1]``,
        ``bad`` a bool ``H×W`` mask. Planes without a good pixel are left out.

    Raises:
        InputError: Unsupported dtype, bad channel axis, or a mask of the wrong shape.
    """
    from rnon_engine.inference.intensity import check_dtype, intensity_map

    shape = tuple(image.shape)
    check_dtype(np.dtype(image.dtype))
    if exclude is not None:
        exclude = np.asarray(exclude)
    layout = PlaneLayout.of(shape, channel_axis)
    per_plane = exclude is not None and layout.check_mask(exclude)
    spatial = layout.spatial
    view = layout.channels_last(image)
    groups = layout.groups
    out = []
    for idx in layout.planes:
        plane = np.asarray(view[idx] if idx else view)
        bad = np.zeros(spatial, bool)
        if exclude is not None:
            bad |= (exclude[idx] if per_plane else exclude) != 0
        for g in groups:
            src = plane if g is None else plane[..., g]
            vals = src if src.ndim == 2 else src.reshape(*spatial, -1)
            bad_g = bad.copy()
            if exclude_value is not None:
                eq = vals == exclude_value
                bad_g |= eq if eq.ndim == 2 else eq.any(axis=-1)
            if vals.dtype.kind == "f":
                fin = np.isfinite(vals)
                bad_g |= ~(fin if fin.ndim == 2 else fin.all(axis=-1))
            good = ~bad_g
            if not good.any():
                continue
            safe = np.where(good if vals.ndim == 2 else good[..., None], vals, 0)
            unit = intensity_map(safe, good).to_unit(safe)
            if unit.ndim == 3 and unit.shape[-1] == 1:
                unit = unit[..., 0]
            out.append((np.ascontiguousarray(unit, dtype=np.float32), bad_g))
    return out


def check_exclude(
    shape: Sequence[int], exclude: Any, channel_axis: int | str | None = "auto"
) -> None:
    """Raise :class:`InputError` unless ``exclude`` fits an image of ``shape``.

    A fitting mask has the image's spatial ``H×W`` shape or its shape without the channel
    axis (the rule of :func:`training_planes` and of inference masks).
    """
    PlaneLayout.of(tuple(shape), channel_axis).check_mask(np.asarray(exclude))


def write_training_folder(
    images: Sequence[Any],
    folder: str | Path,
    *,
    channel_axis: int | str | None | Sequence[int | str | None] = "auto",
    exclude_masks: Sequence[Any] | None = None,
    exclude_value: float | None = None,
) -> tuple[Path, Path, int]:
    """Write the training planes of ``images`` into ``folder``.

    Layout: ``folder/images/NNNNN.tif`` (float32 in ``[0, 1]``) and
    ``folder/exclude/NNNNN.png`` (nonzero = bad), only for planes with bad pixels.

    Args:
        images: Arrays (see :func:`training_planes`).
        folder: Destination (created).
        channel_axis: One value for all images, or one per image.
        exclude_masks: None, or one mask (or None) per image.
        exclude_value: Stored value of bad pixels.

    Returns:
        ``(images_dir, exclude_dir, number_of_planes)``.

    Raises:
        InputError: No image, lengths disagree, or no plane has a good pixel.
    """
    import tifffile

    from rnon_engine.train.masks import save_mask

    if len(images) == 0:
        raise InputError("no images to fine-tune on: give at least one image")
    axes = (
        list(channel_axis)
        if isinstance(channel_axis, list | tuple)
        else [channel_axis] * len(images)
    )
    masks = list(exclude_masks) if exclude_masks is not None else [None] * len(images)
    if len(axes) != len(images) or len(masks) != len(images):
        raise InputError(
            f"got {len(images)} images but {len(axes)} channel axes and {len(masks)} "
            "exclude masks; give one per image (or None)"
        )
    folder = Path(folder)
    img_dir, ex_dir = folder / "images", folder / "exclude"
    img_dir.mkdir(parents=True, exist_ok=True)
    ex_dir.mkdir(parents=True, exist_ok=True)
    n = 0
    for image, ax, mask in zip(images, axes, masks, strict=True):
        for plane, bad in training_planes(
            image, channel_axis=ax, exclude=mask, exclude_value=exclude_value
        ):
            name = f"{n:05d}"
            tifffile.imwrite(img_dir / f"{name}.tif", plane)
            if bad.any():
                save_mask(ex_dir / f"{name}.png", bad)
            n += 1
    if n == 0:
        raise InputError(
            "every plane of the given images is marked bad (exclude mask / value): "
            "nothing is left to learn from"
        )
    return img_dir, ex_dir, n


# ------------------------------------------------------------------------------ training


def _resolve_init(init: str | os.PathLike) -> Path:
    text = os.fspath(init)
    if text == "default":
        from rnon_engine.pretrained import default_paths

        return default_paths()[0]
    path = Path(text).expanduser()
    if not path.is_file():
        from rnon_engine.errors import WeightsError

        raise WeightsError(
            f"no weights file at {path}: give 'default' or the path of a repair-generator "
            ".safetensors file"
        )
    return path


def finetune(
    images: Sequence[Any] | str | os.PathLike,
    *,
    init: str | os.PathLike = "default",
    name: str = "finetuned",
    minutes: float | None = 5.0,
    max_steps: int | None = None,
    exclude_masks: Sequence[Any] | None = None,
    exclude_value: float | None = None,
    channel_axis: int | str | None | Sequence[int | str | None] = "auto",
    out_dir: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    device: str = "auto",
    progress: ProgressFn | None = None,
    cancel: Callable[[], bool] | None = None,
    run_dir: str | Path | None = None,
    overwrite: bool = False,
    deterministic: bool = True,
) -> Path:
    """Fine-tune a repair generator on ``images`` and save it as ``<name>.safetensors``.

    Args:
        images: Arrays (2-D, stacks, multichannel; see :func:`training_planes`) or a
            folder of image files (then used as it is, like ``training.run --data``).
        init: ``"default"`` (the packaged model) or a repair-generator weights file; the
            architecture comes from it.
        name: File name stem of the result (letters, digits, ``. _ -`` and spaces).
        minutes: Time budget of the training loop (None = no limit).
        max_steps: Step limit (None = the config's, 100,000).
        exclude_masks: One bad-pixel mask per image (nonzero = bad), or None.
        exclude_value: Stored value of bad pixels.
        channel_axis: One value for all images or one per image (arrays only).
        out_dir: Where to save (default :func:`user_weights_dir`).
        overrides: Dotted-key changes to the configuration (:func:`finetune_config`), e.g.
            ``{"repair.trainable": []}``.
        device: ``auto``, ``cpu``, ``cuda``...
        progress: Called after every step as ``progress(step, total, loss)``; ``total`` is
            the step limit (``max_steps`` or the config's).
        cancel: Polled after every step; True stops training and raises
            :class:`~rnon_engine.errors.Cancelled` (nothing is saved).
        run_dir: Keep the trainer's run directory there (``stats.jsonl``, checkpoint);
            default: a temporary folder that is removed.
        overwrite: Replace an existing ``<name>.safetensors``.
        deterministic: Passed to the trainer (torch's deterministic mode on the CPU);
            GUI hosts pass False (see :class:`~rnon_engine.train.trainer.Trainer`).

    Returns:
        The path of the saved weights.

    Raises:
        InputError: Bad name, images or masks; the result exists and ``overwrite`` is off.
        WeightsError: ``init`` is missing or not a repair generator.
        ConfigError: Bad ``overrides``.
        Cancelled: ``cancel()`` returned True.
    """
    from rnon_engine.nn.weights import file_sha256, load_model, save_weights
    from rnon_engine.train.batches import make_sources
    from rnon_engine.train.trainer import Trainer

    if not isinstance(name, str) or not _NAME_RE.match(name.strip()) or name != name.strip():
        raise InputError(
            f"name {name!r} is not a usable file name: use letters, digits, '.', '_', '-' "
            "or spaces (at most 100 characters, starting with a letter or digit)"
        )
    if minutes is not None and minutes <= 0:
        raise InputError(f"minutes must be > 0, got {minutes}")
    if max_steps is not None and max_steps < 1:
        raise InputError(f"max_steps must be >= 1, got {max_steps}")
    target_dir = user_weights_dir() if out_dir is None else Path(out_dir)
    target = target_dir / f"{name}.safetensors"
    if target.exists() and not overwrite:
        raise InputError(f"{target} exists already: choose another name or allow overwriting")
    init_path = _resolve_init(init)
    base = load_model(init_path)
    if base.model_name != "rnon-repair":
        from rnon_engine.errors import WeightsError

        raise WeightsError(
            f"{init_path} holds a {base.model_name!r} model; fine-tuning needs a repair "
            "generator ('rnon-repair')"
        )
    config = finetune_config(overrides)
    if config.repair.model:
        raise ConfigError("fine-tuning takes the architecture from init: leave repair.model {}")

    tmp = tempfile.mkdtemp(prefix="rnon-finetune-")
    try:
        if isinstance(images, str | os.PathLike):
            data, exclude_dir = Path(images), None
            if exclude_masks is not None:
                raise InputError("exclude_masks go with arrays; for a folder use exclude_value")
            ev = exclude_value
        else:
            data, exclude_dir, _ = write_training_folder(
                images,
                Path(tmp) / "data",
                channel_axis=channel_axis,
                exclude_masks=exclude_masks,
                exclude_value=exclude_value,
            )
            ev = None  # already in the written masks
        out = Path(run_dir) if run_dir is not None else Path(tmp) / "run"
        train, _ = make_sources(
            config, config.repair.batch_size, data, None, exclude_dir=exclude_dir, exclude_value=ev
        )
        trainer = Trainer(
            config,
            "repair",
            out,
            train,
            device=device,
            init_weights=init_path,
            deterministic=deterministic,
        )
        total = config.repair.steps if max_steps is None else max_steps

        def on_step(step: int, _total: int, metrics: dict[str, float]) -> None:
            if progress is not None:
                progress(step, total, float(metrics["g/total"]))

        def should_stop() -> bool:
            return bool(cancel is not None and cancel())

        trainer.fit(
            max_steps=total,
            max_minutes=minutes,
            progress=False,
            should_stop=should_stop,
            on_step=on_step,
        )
        if trainer.stop_reason == "stopped":
            raise Cancelled("fine-tuning cancelled; no weights were saved")
        model = trainer.g_raw.cpu().eval()
        target_dir.mkdir(parents=True, exist_ok=True)
        save_weights(  # atomic (temporary file + rename)
            model,
            target,
            description=f"fine-tuned from {init_path.name} for {trainer.step} steps",
            finetuned_from=str(init_path),
            finetuned_from_sha256=file_sha256(init_path),
            step=trainer.step,
            stage="repair",
            config_name=config.name,
            stop_reason=trainer.stop_reason,
        )
        return target
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
