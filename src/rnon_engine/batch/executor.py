"""Where the tasks of ``rnon-batch`` run: threads, a ``LocalCluster`` or a scheduler.

One interface (:class:`Executor`) over a thread pool of this process (the default), a
``LocalCluster`` started for the run (``workers=N``) and an existing dask.distributed
scheduler (``scheduler=ADDRESS``); :func:`execute` runs every unit of a plan with a progress
bar, and turns Ctrl-C into :class:`~rnon_engine.errors.Cancelled` with the output left
resumable.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

from rnon_engine.batch.models import InpainterSpec, get_inpainter, load_inpainter
from rnon_engine.batch.options import BatchOptions
from rnon_engine.batch.tasks import STOP
from rnon_engine.errors import Cancelled

__all__ = ["Executor", "execute"]


class Executor:
    """Threads in this process, a LocalCluster, or an existing scheduler: one interface."""

    def __init__(self, workers: int | None, scheduler: str | None, threads: int) -> None:
        self.workers, self.scheduler, self.threads = workers, scheduler, threads
        self.client: Any = None
        self.cluster: Any = None
        self.pool: Any = None

    def __enter__(self) -> Executor:
        if self.scheduler or self.workers:
            from distributed import Client, LocalCluster

            if self.scheduler:
                self.client = Client(self.scheduler, timeout="30s")
            else:
                self.cluster = LocalCluster(
                    n_workers=self.workers,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address=None,
                )
                self.client = Client(self.cluster)
        else:
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(self.threads, thread_name_prefix="rnon-batch")
        return self

    def load(self, spec: InpainterSpec) -> None:
        """Load the model in every worker (or this process) now, before anything is written.

        Bad weights, a device the workers lack, a path they cannot see: the error is raised
        here, in the driver. Each process keeps the model for its tasks.
        """
        if self.client is None:
            get_inpainter(spec)
            return
        for error in self.client.run(load_inpainter, spec).values():
            if error is not None:
                raise error

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Start ``fn(*args)`` on a worker; returns its future."""
        if self.client is not None:
            return self.client.submit(fn, *args, pure=False)
        return self.pool.submit(fn, *args)

    def as_completed(self, futures: list[Any]) -> Iterator[Any]:
        """The futures in the order they finish."""
        if self.client is not None:
            from distributed import as_completed

            return iter(as_completed(futures))
        from concurrent.futures import as_completed

        return as_completed(futures)

    def stop(self, futures: list[Any]) -> None:
        """Cancel the pending futures and ask the running tasks to stop."""
        STOP.set()
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.cancel(futures)
        else:
            for f in futures:
                f.cancel()

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.close()
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.close()
        STOP.clear()


def execute(
    opts: BatchOptions,
    fn: Callable[..., Any],
    units: list[Any],
    unit_name: str,
    *,
    model: InpainterSpec | None,
    start: Callable[[], Any],
) -> list[dict[str, Any]]:
    """Run ``fn(job, unit)`` for every unit with a progress bar; Ctrl-C stops cleanly.

    The executor starts first and loads ``model`` where the units run (if any unit may
    need it); only then ``job = start()`` makes the first write (the output, its
    provenance), so a model that cannot be loaded leaves nothing behind.
    """
    from tqdm.auto import tqdm

    results: list[dict[str, Any]] = []
    if not units:
        start()
        return results
    threads = 2 if opts.threads is None else max(1, opts.threads)
    with Executor(opts.workers, opts.scheduler, threads) as pool:
        if model is not None:
            pool.load(model)
        job = start()
        futures: list[Any] = []
        bar = tqdm(
            total=len(units),
            unit=unit_name,
            desc="rnon-batch",
            file=sys.stderr,
            disable=not opts.progress,
            dynamic_ncols=True,
        )
        try:
            futures = [pool.submit(fn, job, u) for u in units]
            for f in pool.as_completed(futures):
                results.append(f.result())
                bar.update(1)
        except KeyboardInterrupt:
            pool.stop(futures)
            bar.close()
            raise Cancelled(
                f"stopped by Ctrl-C after {len(results)} of {len(units)} {unit_name}s; run the "
                "same command again to finish the rest."
            ) from None
        except BaseException:
            pool.stop(futures)
            raise
        finally:
            bar.close()
    return results
