"""Where the tasks of ``rnon-batch`` run: threads, a ``LocalCluster`` or a scheduler.

One interface (:class:`Executor`) over a thread pool of this process (the default), a
``LocalCluster`` started for the run (``workers=N``) and an existing dask.distributed
scheduler (``scheduler=ADDRESS``); :func:`execute` runs every unit of a plan with a progress
bar, and turns Ctrl-C into :class:`~rnon_engine.errors.Cancelled` with the output left
resumable.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import sys
from collections.abc import Callable, Iterator
from typing import Any

from rnon_engine.batch.models import InpainterSpec, get_inpainter, load_inpainter
from rnon_engine.batch.options import BatchOptions
from rnon_engine.batch.tasks import STOP
from rnon_engine.errors import Cancelled, InputError, OutputError, RnonError

__all__ = ["Executor", "check_scheduler", "execute"]


def check_scheduler(address: str, timeout: float = 5.0) -> None:
    """Fail fast when nothing listens at the dask scheduler ``address``.

    Opens (and closes) a TCP connection to it (``tcp://`` and ``tls://`` addresses, or
    ``HOST:PORT``); the dask client would otherwise wait its whole connect timeout and end
    in an ``OSError``.

    Raises:
        InputError: the address is malformed, unknown, or nothing answers there.
    """
    from urllib.parse import urlsplit

    text = address if "://" in address else f"tcp://{address}"
    try:
        parts = urlsplit(text)
        scheme, host, port = parts.scheme, parts.hostname, parts.port
    except ValueError:
        scheme, host, port = "", None, None
    if "://" in address and scheme not in ("tcp", "tls"):
        return  # another transport (ucx, inproc...): dask checks it
    if not host or port is None:
        raise InputError(
            f"--scheduler {address!r} is not a scheduler address: give HOST:PORT or "
            "tcp://HOST:PORT (the address a dask scheduler prints when it starts)."
        )
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        raise InputError(
            f"no dask scheduler answers at {address!r} ({exc.strerror or exc}). Start one "
            "(`dask scheduler`, then `dask worker ADDRESS` on each node) or check the "
            "address; or run without --scheduler (this machine) or with --workers N. "
            "Nothing was written."
        ) from exc


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
                check_scheduler(self.scheduler)
                try:
                    self.client = Client(self.scheduler, timeout="20s")
                except OSError as exc:
                    raise InputError(
                        f"cannot connect to the dask scheduler {self.scheduler!r}: {exc}"
                    ) from exc
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
    output: str = "the output",
) -> list[dict[str, Any]]:
    """Run ``fn(job, unit)`` for every unit with a progress bar; Ctrl-C stops cleanly.

    The executor starts first and loads ``model`` where the units run (if any unit may
    need it); only then ``job = start()`` makes the first write (the output, its
    provenance), so a model that cannot be loaded leaves nothing behind. An error of a
    unit after that (a damaged chunk, a full disk) stops the run; its message then says
    how many units are done and that the same command resumes.
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
        try:
            job = start()
        except OSError as exc:
            raise stopped_error(exc, output, 0, len(units), unit_name) from exc
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
        except KeyboardInterrupt as exc:
            pool.stop(futures)
            bar.close()
            how = str(exc) or "Ctrl-C"
            raise Cancelled(
                f"stopped by {how} after {len(results)} of {len(units)} {unit_name}s; run the "
                "same command again to finish the rest."
            ) from None
        except Cancelled:
            pool.stop(futures)
            raise
        except (RnonError, OSError) as exc:
            pool.stop(futures)
            raise stopped_error(exc, output, len(results), len(units), unit_name) from exc
        except BaseException:
            pool.stop(futures)
            raise
        finally:
            bar.close()
    return results


def stopped_error(exc: BaseException, output: str, done: int, total: int, unit: str) -> RnonError:
    """The error that stopped a run after its first write, saying what is kept and what to do.

    Args:
        exc: The error (a user's error, or an ``OSError`` while writing).
        output: The output (named in the message).
        done: Units finished before it.
        total: Units in the run.
        unit: ``"block"`` or ``"image"``.
    """
    resume = (
        f" {done} of {total} {unit}s were finished before this and are kept in {output}: "
        "run the same command again to finish the rest (it resumes from there)."
    )
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            what = f"no space left to write {output} ({exc.strerror}): free some space."
        else:
            where = f" {exc.filename!r}" if exc.filename else ""
            what = f"cannot write{where} ({exc.strerror or exc}): fix the cause."
        return OutputError(what + resume)
    return type(exc)(f"{str(exc).rstrip('.')}.{resume}")
