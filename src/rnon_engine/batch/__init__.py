"""``rnon-batch``: tiled, resumable, distributed inpainting of large stacks.

The command line lives in :mod:`rnon_engine.batch.cli`; :func:`run_batch` is the same
thing for Python callers. One module per job:

- :mod:`~rnon_engine.batch.options`: what a run takes and what it reports;
- :mod:`~rnon_engine.batch.driver`: :func:`run_batch`, checks and dispatch;
- :mod:`~rnon_engine.batch.stack` / :mod:`~rnon_engine.batch.folder`: a zarr / OME-Zarr /
  TIFF stack cut into blocks, or image files one by one;
- :mod:`~rnon_engine.batch.plan`: the blocks and which hold holes;
- :mod:`~rnon_engine.batch.tasks`: what a worker does with a block or a file;
- :mod:`~rnon_engine.batch.executor`: threads, a LocalCluster or a scheduler, progress;
- :mod:`~rnon_engine.batch.models`: the per-process inpainter cache;
- :mod:`~rnon_engine.batch.resume`: fingerprint, provenance, what an existing output means;
- :mod:`~rnon_engine.batch.writers`: creating and finishing outputs (pyramid, TIFF);
- :mod:`~rnon_engine.batch.io`, :mod:`~rnon_engine.batch.axes`,
  :mod:`~rnon_engine.batch.masks`, :mod:`~rnon_engine.batch.paths`: reading inputs, axis
  letters, masks, default paths.
"""

from rnon_engine.batch.driver import run_batch
from rnon_engine.batch.options import BatchOptions, BatchReport

__all__ = ["BatchOptions", "BatchReport", "run_batch"]
