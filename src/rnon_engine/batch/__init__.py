"""``rnon-batch``: tiled, resumable, distributed inpainting of large stacks.

The command line lives in :mod:`rnon_engine.batch.cli`; :func:`run_batch` is the same
thing for Python callers. Readers and writers are in :mod:`rnon_engine.batch.io`, the plan
(which blocks to compute, which to copy) in :mod:`rnon_engine.batch.plan` and the
execution (threads or a dask cluster, progress, resume markers) in
:mod:`rnon_engine.batch.run`.
"""

from rnon_engine.batch.run import BatchOptions, BatchReport, run_batch

__all__ = ["BatchOptions", "BatchReport", "run_batch"]
